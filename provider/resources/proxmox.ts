/**
 * meshfleet:proxmox:Container — the LXC container a host lives in, created
 * or adopted with `pct` on the Proxmox node over SSH: TUN passthrough lines
 * in its config, started. Every value reaches `pct` as its own quoted
 * argument. A changed setting re-runs the script in place (never destroy and
 * create); delete destroys a CT meshfleet created and leaves an adopted one.
 */
import { shArgv, shq } from "../quote.ts";
import { connectionProblems, session } from "../ssh.ts";
import type { ContainerInputs, ContainerOutputs } from "../types.ts";
import { ProviderError, topLevelDiff } from "../wire.ts";
import { isUnknown, type CheckFailure, type ResourceHandler } from "./common.ts";

export type PctSettings = Pick<ContainerInputs, "ctid" | "mode" | "config" | "pctCommands">;

/**
 * The script run on the Proxmox node: the lxc module's pctCommands, in
 * order, made safe to re-run. `pct create` runs only when the CT does not
 * exist; config lines are added only when missing (before any snapshot
 * section, so snapshots stay as they were), after the create and before the
 * other commands (which start or reboot the CT so that TUN passthrough takes
 * effect). When the commands never start the CT, it is started here if
 * stopped, or rebooted if the config changed under it.
 */
export function pctScript(host: string, l: PctSettings): string {
  const id = String(l.ctid);
  const conf = `/etc/pve/lxc/${id}.conf`;
  const lines: string[] = ["set -eu", "changed=0"];
  if (l.mode === "adopt") {
    lines.push(`pct status ${id} >/dev/null 2>&1 || { echo ${shq(`meshfleet: ${host}: CT ${id} does not exist on this Proxmox node (lxc.mode is adopt); create it or set lxc.mode: create`)} >&2; exit 1; }`);
  }
  const isCreate = (a: string[]) => a[0] === "pct" && a[1] === "create";
  // Checks on the node itself (a script that touches neither pct nor /etc/pve, such as the lxc module's TUN check) run before anything changes.
  const isNodeCheck = (a: string[]) => a[0] === "sh" && a[1] === "-c" && !/\bpct\b|\/etc\/pve\//.test(a[2] ?? "");
  for (const argv of l.pctCommands.filter(isNodeCheck)) lines.push(shArgv(argv));
  for (const argv of l.pctCommands.filter(isCreate)) lines.push(`if ! pct status ${id} >/dev/null 2>&1; then ${shArgv(argv)}; changed=1; fi`);
  for (const line of l.config) {
    const q = shq(line);
    lines.push(
      `if ! grep -qxF -- ${q} ${conf}; then awk -v l=${q} '!d && /^\\[/ {print l; d=1} {print} END {if (!d) print l}' ${conf} > ${conf}.meshfleet && cat ${conf}.meshfleet > ${conf} && rm -f ${conf}.meshfleet; changed=1; fi`,
    );
  }
  const rest = l.pctCommands.filter((a) => !isCreate(a) && !isNodeCheck(a));
  for (const argv of rest) lines.push(shArgv(argv));
  const starts = rest.some((a) => (a[0] === "pct" && (a[1] === "start" || a[1] === "reboot")) || (a[0] === "sh" && /pct (start|reboot)/.test(a[2] ?? "")));
  if (!starts) {
    lines.push(
      `if pct status ${id} | grep -q 'status: running'; then`,
      // TUN passthrough is read when the CT starts: a config change needs a reboot to take effect.
      `  if [ "$changed" = 1 ]; then pct reboot ${id}; fi`,
      `else`,
      `  pct start ${id}`,
      `fi`,
    );
  }
  lines.push(`pct status ${id}`);
  return lines.join("\n");
}

/** Destroy a CT meshfleet created; undefined for an adopted one (it was there before and stays). */
export function pctDeleteScript(l: Pick<ContainerInputs, "ctid" | "mode">): string | undefined {
  if (l.mode === "adopt") return undefined;
  return `if pct status ${l.ctid} >/dev/null 2>&1; then pct stop ${l.ctid} || true; pct destroy ${l.ctid}; fi`;
}

/** `pct status`, then each wanted config line that the CT's config lacks, one per line after a marker. */
export function pctReadScript(l: Pick<ContainerInputs, "ctid" | "config">): string {
  const conf = `/etc/pve/lxc/${l.ctid}.conf`;
  return [
    `pct status ${l.ctid} 2>/dev/null || echo 'status: missing'`,
    "echo @@missing@@",
    ...l.config.map((line) => `grep -qxF -- ${shq(line)} ${conf} 2>/dev/null || printf '%s\\n' ${shq(line)}`),
  ].join("\n");
}

async function apply(n: ContainerInputs): Promise<ContainerOutputs> {
  const r = await session.run(n.connection, pctScript(n.host, n), { what: `pct (CT ${n.ctid} for ${n.host})`, privateKey: n.sshPrivateKey, timeoutMs: 900_000 });
  if (r.code !== 0) throw new ProviderError(`Proxmox node ${n.connection.name}: CT ${n.ctid} (host ${n.host}) failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").slice(-4).join(" | ")}`);
  return { ...n, status: r.stdout.trim().split("\n").pop() ?? "", missingConfig: [] };
}

export const container: ResourceHandler<ContainerInputs, ContainerOutputs> = {
  check(n) {
    const f: CheckFailure[] = isUnknown(n.connection) ? [] : connectionProblems(n.connection).map((reason) => ({ property: "connection", reason }));
    if (!isUnknown(n.ctid) && (!Number.isInteger(n.ctid) || n.ctid < 100)) f.push({ property: "ctid", reason: `host ${n.host}: expected a Proxmox CT id ≥ 100, found ${n.ctid}` });
    return f;
  },
  diff(olds, news) {
    const d = topLevelDiff(olds as never, news as never, { replaceKeys: ["ctid"] });
    const drift = (olds.missingConfig?.length ?? 0) > 0 || (olds.status !== undefined && !/running/.test(olds.status));
    if (drift) return { ...d, changes: true, detailedDiff: { ...d.detailedDiff, status: "update" } };
    return d;
  },
  async create(n) {
    return { id: String(n.ctid), outs: await apply(n) };
  },
  update: (_id, _o, n) => apply(n),
  async read(_id, o) {
    const r = await session.run(o.connection, pctReadScript(o), { what: `pct status ${o.ctid} (refresh)`, privateKey: o.sshPrivateKey });
    if (r.code !== 0) throw new ProviderError(`Proxmox node ${o.connection.name}: reading CT ${o.ctid} failed: ${r.stderr.trim().slice(0, 300)}`);
    const [status, missing = ""] = r.stdout.split("@@missing@@");
    if (/status: missing/.test(status) && o.mode === "create") return null;
    return { ...o, status: status.trim(), missingConfig: missing.split("\n").map((x) => x.trim()).filter(Boolean) };
  },
  async delete(_id, o) {
    const script = pctDeleteScript(o);
    if (!script) return;
    const r = await session.run(o.connection, script, { what: `pct destroy ${o.ctid}`, privateKey: o.sshPrivateKey });
    if (r.code !== 0) throw new ProviderError(`Proxmox node ${o.connection.name}: destroying CT ${o.ctid} failed: ${r.stderr.trim().slice(0, 300)}`);
  },
};
