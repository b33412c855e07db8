/**
 * The LXC container of a host on Proxmox, created or adopted with `pct` over
 * SSH to the Proxmox node: TUN passthrough in its config, started. Pure
 * script building here; the component runs it as one `remote.Command`.
 */
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import type { HostSystem, LxcSettings } from "../core/types.ts";
import { assertNoProblems, connectionFor, parseSshTarget, shArgv, shq } from "./shell.ts";

export function validateLxc(host: HostSystem): string[] {
  const l = host.lxc;
  if (!l) return [];
  const where = `${host.file}: lxc`;
  const p: string[] = [];
  if (!Number.isInteger(l.ctid) || l.ctid < 100) p.push(`${where}.ctid: expected a Proxmox CT id (an integer ≥ 100), found ${l.ctid}`);
  if (!l.proxmoxHost) p.push(`${where}.proxmoxHost: expected the Proxmox node's SSH address, found nothing`);
  for (const [i, argv] of l.pctCommands.entries()) {
    const shell = argv[0] === "sh" && argv[1] === "-c" && argv.length === 3;
    if (argv[0] !== "pct" && !shell) p.push(`${where}.pctCommands[${i}]: expected a pct command (or sh -c SCRIPT), found ${JSON.stringify(argv.join(" "))}`);
    else if (argv[0] === "pct" && argv[2] !== undefined && argv[2] !== String(l.ctid)) p.push(`${where}.pctCommands[${i}]: targets CT ${argv[2]}, but the host's ctid is ${l.ctid}`);
  }
  if (l.mode === "create" && !l.pctCommands.some((a) => a[1] === "create")) p.push(`${where}.mode: "create" needs a \`pct create\` among pctCommands, found none`);
  return p;
}

/**
 * The script run on the Proxmox node: the lxc module's pctCommands, in
 * order, made safe to re-run. `pct create` runs only when the CT does not
 * exist; config lines the module asks for are added only when missing
 * (inserted before any snapshot section, so snapshots stay as they were),
 * after the create and before the other commands (which start or reboot
 * the CT so that TUN passthrough takes effect). When the module's commands
 * never start the CT, it is started here if stopped, or rebooted if the
 * config changed under it.
 */
export function pctScript(host: string, l: LxcSettings): string {
  const id = String(l.ctid);
  const conf = `/etc/pve/lxc/${id}.conf`;
  const lines: string[] = ["set -eu", "changed=0"];
  if (l.mode === "adopt") {
    lines.push(`pct status ${id} >/dev/null 2>&1 || { echo ${shq(`meshfleet: ${host}: CT ${id} does not exist on this Proxmox node (lxc.mode is adopt); create it or set lxc.mode: create`)} >&2; exit 1; }`);
  }
  const isCreate = (a: string[]) => a[0] === "pct" && a[1] === "create";
  for (const argv of l.pctCommands.filter(isCreate)) lines.push(`if ! pct status ${id} >/dev/null 2>&1; then ${shArgv(argv)}; changed=1; fi`);
  for (const line of l.config) {
    const q = shq(line);
    lines.push(
      `if ! grep -qxF -- ${q} ${conf}; then awk -v l=${q} '!d && /^\\[/ {print l; d=1} {print} END {if (!d) print l}' ${conf} > ${conf}.meshfleet && cat ${conf}.meshfleet > ${conf} && rm -f ${conf}.meshfleet; changed=1; fi`,
    );
  }
  const rest = l.pctCommands.filter((a) => !isCreate(a));
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

export function pctDeleteScript(l: LxcSettings): string | undefined {
  // An adopted CT was there before meshfleet and stays after it.
  if (l.mode === "adopt") return undefined;
  return `if pct status ${l.ctid} >/dev/null 2>&1; then pct stop ${l.ctid} || true; pct destroy ${l.ctid}; fi`;
}

export interface ProxmoxLxcArgs {
  /**
   * The host that lives in the CT (its `lxc` settings are used).
   * @example fleet.hosts["router"]
   */
  host: HostSystem & { lxc: LxcSettings };
  /**
   * SSH private key text (secret) for the Proxmox node.
   * @default undefined (SSH agent)
   * @example config.requireSecret("sshPrivateKey")
   */
  sshPrivateKey?: pulumi.Input<string>;
}

export class ProxmoxLxc extends pulumi.ComponentResource {
  public readonly ctid: pulumi.Output<number>;
  /** `pct status` after the run. */
  public readonly status: pulumi.Output<string>;
  public readonly command: command.remote.Command;

  constructor(name: string, args: ProxmoxLxcArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateLxc(args.host), `ProxmoxLxc ${name}`);
    super("meshfleet:index:ProxmoxLxc", name, {}, opts);
    const l = args.host.lxc;
    const target = parseSshTarget(l.proxmoxHost);
    const script = pctScript(args.host.name, l);
    const del = pctDeleteScript(l);
    this.command = new command.remote.Command(
      `${name}-pct`,
      {
        connection: connectionFor({ address: target.host, user: target.user, port: target.port }, args.sshPrivateKey),
        create: script,
        // An `update` makes a changed setting re-run the script in place, never destroy-and-create the CT.
        update: script,
        ...(del ? { delete: del } : {}),
        triggers: [JSON.stringify(l)],
      },
      { parent: this },
    );
    this.ctid = pulumi.output(l.ctid);
    this.status = this.command.stdout;
    this.registerOutputs({ ctid: this.ctid, status: this.status });
  }
}
