/**
 * `meshfleet lab check`: proves the deployed mesh with real traffic between
 * the lab's hosts. Every check runs real programs on the hosts (nc, ping,
 * tailscale, headscale, nft) and passes only on what they answer.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { HOST_TOOLS_DIR, netnsExec, sshExec } from "../hosts/index.ts";
import { labTopology } from "../topology.ts";
import { AGENT_HOST_PATH } from "../../core/types.ts";
import { loadVersions } from "../tools/index.ts";
import { e2ePaths } from "./paths.ts";
import { deployChecks, labDeploy } from "./deploy-checks.ts";
import { labPulumiEnv, REPO, runPulumi, STACK } from "./pulumi.ts";
import { lockoutCheck, noChangesCheck, outageCheck, preAuthKeyCheck } from "./hold-checks.ts";
import { impostorCheck } from "./routed-checks.ts";
import { approvalChecks, mssTransferCheck, type ApprovalVerdicts } from "./dataplane-checks.ts";
import { drillChecks } from "./drills/index.ts";

export { labDeploy };

export interface CheckResult {
  name: string;
  ok: boolean;
  reason: string;
  ms: number;
  /** A drill's phase times in ms (backup, restore, ...), shown in the report. */
  timings?: Record<string, number>;
}

export interface PeerView {
  name: string;
  ips: string[];
  online: boolean;
  active: boolean;
  curAddr: string;
  relay: string;
}

export interface ChecksFile {
  at: string;
  instance: number;
  totalMs: number;
  checks: CheckResult[];
  /** laptop's view of its peers, per phase ("normal", "udp-blocked"). */
  peers: Record<string, PeerView[]>;
  versions: Record<string, string>;
}

const NAS = "192.168.8.10";
const HOME_NAT = "203.0.113.20";
const LAPTOP_NAT = "198.51.100.20";
const BLOCK_TABLE = "meshfleet_e2e_block";

const version = (name: string) => loadVersions().tools.find((t) => t.name === name)?.version ?? "?";
export const tsCli = () => `${HOST_TOOLS_DIR}/tailscale@${version("tailscale")}/bin/tailscale --socket=/run/tailscale/tailscaled.sock`;
import { hsCli, hsPolicyPath, hsService } from "./coordinator-runtime.ts";
import { labFleetDir } from "./docker-variant.ts";
export { hsCli };
/** Shell: wait (30 s by the clock) until headscale's CLI answers; headscale.service is Type=simple (and docker restart returns once the process runs), so a restart returns before it serves. */
// In braces: after `a && b && restart && ${hsReady()}` a failed step must stay the command's status (`;` binds looser than `&&`).
export const hsReady = () => `{ end=$(($(date +%s) + 30)); until ${hsCli()} users list >/dev/null 2>&1; do [ "$(date +%s)" -lt "$end" ] || exit 1; sleep 0.5; done; }`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll `probe` until it returns a pass string or the deadline; the last failure is the reason. */
async function until(ms: number, probe: () => Promise<{ ok: boolean; why: string }>): Promise<{ ok: boolean; why: string }> {
  const end = Date.now() + ms;
  let last = { ok: false, why: "not tried" };
  while (Date.now() < end) {
    last = await probe();
    if (last.ok) return last;
    await sleep(700);
  }
  return last;
}

type Status = { BackendState?: string; Self?: { HostName?: string; TailscaleIPs?: string[] }; Peer?: Record<string, Record<string, unknown>> };

export async function tailscaleStatus(host: string, instance: number): Promise<Status> {
  const r = await sshExec(host, `${tsCli()} status --json`, { instance, timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`tailscale status on ${host}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return JSON.parse(r.stdout) as Status;
}

export function peersOf(s: Status): PeerView[] {
  return Object.values(s.Peer ?? {}).map((p) => ({
    name: String(p.HostName ?? ""),
    ips: (p.TailscaleIPs as string[] | undefined) ?? [],
    online: p.Online === true,
    active: p.Active === true,
    curAddr: String(p.CurAddr ?? ""),
    relay: String(p.Relay ?? ""),
  }));
}

async function tcp(from: string, ip: string, port: number, instance: number, waitS = 3): Promise<{ ok: boolean; why: string }> {
  const r = await sshExec(from, `nc -z -w ${waitS} ${ip} ${port}`, { instance, timeoutMs: (waitS + 10) * 1000 });
  return { ok: r.code === 0, why: r.code === 0 ? `${from} -> ${ip}:${port} connected` : `${from} -> ${ip}:${port} refused or timed out (${r.stderr.trim() || `nc exit ${r.code}`})` };
}

function internetNs(instance: number): string {
  const h = labTopology(instance).hosts.find((x) => x.name === "internet");
  if (!h) throw new Error("lab topology has no internet namespace");
  return h.netns;
}

/** Drop UDP between the two NATs in the lab's internet namespace (direct WireGuard paths die; DERP over TCP stays). */
export async function blockUdp(instance: number): Promise<void> {
  const ruleset = [
    `table inet ${BLOCK_TABLE} {`,
    "  chain forward {",
    "    type filter hook forward priority -10; policy accept;",
    `    ip saddr ${HOME_NAT} ip daddr ${LAPTOP_NAT} meta l4proto udp drop`,
    `    ip saddr ${LAPTOP_NAT} ip daddr ${HOME_NAT} meta l4proto udp drop`,
    "  }",
    "}",
  ].join("\n");
  await netnsExec(internetNs(instance), ["nft", "-f", "-"], { input: ruleset });
}

export async function unblockUdp(instance: number): Promise<void> {
  const ns = internetNs(instance);
  if (!existsSync(`/run/netns/${ns}`)) return;
  await netnsExec(ns, ["nft", "delete", "table", "inet", BLOCK_TABLE], { allowFail: true });
}

export interface LabChecksOptions {
  instance: number;
  log: (line: string) => void;
  /** Skip the slow ones (relay, outage, idempotence). */
  quick?: boolean;
  /** Also run the coordinator drills of issue 15 that fit the standard lab (drills/index.ts), after the other items. */
  drills?: boolean;
}

export async function labChecks(opts: LabChecksOptions): Promise<ChecksFile> {
  const { instance } = opts;
  const t0 = Date.now();
  const out: ChecksFile = { at: new Date().toISOString(), instance, totalMs: 0, checks: [], peers: {}, versions: {} };
  const check = async (name: string, fn: () => Promise<{ ok: boolean; why: string; timings?: Record<string, number> }>) => {
    const t = Date.now();
    let r: { ok: boolean; why: string; timings?: Record<string, number> };
    try {
      r = await fn();
    } catch (e) {
      r = { ok: false, why: (e as Error).message };
    }
    const c: CheckResult = { name, ok: r.ok, reason: r.why, ms: Date.now() - t, ...(r.timings ? { timings: r.timings } : {}) };
    out.checks.push(c);
    opts.log(`${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s  ${c.ok ? "PASS" : "FAIL"}  ${name} (${(c.ms / 1000).toFixed(1)}s): ${c.reason}`);
    return c.ok;
  };
  const peer = async (name: string) => peersOf(await tailscaleStatus("laptop", instance)).find((p) => p.name === name);

  try {
    await check("subnet route: laptop reaches nas 192.168.8.10 (no tailscale on nas)", async () => {
      // 45 s: on a fresh deploy the router admits the laptop to its peer sets at its switch or at the next
      // meshfleet-peers timer run (every 30 s) when the laptop registered after it.
      const r = await until(45_000, () => tcp("laptop", NAS, 22, instance));
      const route = await sshExec("laptop", `ip route get ${NAS}`, { instance });
      const via = route.stdout.trim().split("\n")[0] ?? "";
      if (!r.ok) return { ok: false, why: `${r.why}; route: ${via || route.stderr.trim()}` };
      if (!/tailscale0/.test(via)) return { ok: false, why: `connected but not through the tunnel: ${via}` };
      return { ok: true, why: `${r.why} via tailscale0` };
    });

    const meshUp = await check("tailscale status on laptop lists lxc-tailscale and vps", async () => {
      const s = await tailscaleStatus("laptop", instance);
      out.peers.normal = peersOf(s);
      const names = out.peers.normal.map((p) => p.name);
      const missing = ["lxc-tailscale", "vps"].filter((n) => !names.includes(n));
      if (s.BackendState !== "Running") return { ok: false, why: `BackendState ${s.BackendState}` };
      return missing.length ? { ok: false, why: `missing ${missing.join(", ")}; peers: ${names.join(", ") || "none"}` } : { ok: true, why: `peers: ${names.join(", ")}` };
    });

    // The agent's own view: every host matches its generation and writes its metrics.
    await check("agent verify: no drift on laptop, lxc-tailscale, vps; metrics say tailscale is up", async () => {
      const bad: string[] = [];
      for (const h of ["laptop", "lxc-tailscale", "vps"]) {
        const v = await sshExec(h, `node ${AGENT_HOST_PATH} verify && node ${AGENT_HOST_PATH} metrics --print | grep -x 'tailscale_up 1'`, { instance, timeoutMs: 30_000 });
        if (v.code !== 0) bad.push(`${h}: ${(v.stdout + v.stderr).trim().split("\n").slice(-3).join(" | ")}`);
      }
      return bad.length ? { ok: false, why: bad.join("; ") } : { ok: true, why: "3 hosts: no drift, tailscale_up 1" };
    });

    // hosts/lab/fleet.yaml: alice reaches tag:server on every port but tag:router only on 80/443.
    await check("policy denies laptop -> lxc-tailscale:22 over the tailnet (allows laptop -> vps:22)", async () => {
      const vps = (await peer("vps"))?.ips.find((x) => x.includes("."));
      const lxc = (await peer("lxc-tailscale"))?.ips.find((x) => x.includes("."));
      if (!vps || !lxc) return { ok: false, why: "vps or lxc-tailscale has no tailnet IPv4 in laptop's status" };
      const allowed = await tcp("laptop", vps, 22, instance);
      if (!allowed.ok) return { ok: false, why: `the allowed control flow failed too, so a denial proves nothing: ${allowed.why}` };
      const denied = await tcp("laptop", lxc, 22, instance, 3);
      return denied.ok ? { ok: false, why: `${denied.why}, but the policy denies it` } : { ok: true, why: `vps:22 open, lxc-tailscale:22 dropped (${lxc})` };
    });

    // Seed 003: the coordinator is the root of trust and could push wider ACLs.
    // lxc-tailscale enforces the fleet's policy in its own nft table too, so a
    // policy widened on headscale alone (not in git) lets tailscaled pass the
    // packets, and meshfleet's table still drops them (its drop counter moves).
    await check("policy widened on headscale alone: lxc-tailscale's own table still drops laptop -> :22", async () => {
      const lxc = (await peer("lxc-tailscale"))?.ips.find((x) => x.includes("."));
      if (!lxc) return { ok: false, why: "lxc-tailscale has no tailnet IPv4 in laptop's status" };
      const policy = "$p";
      const at = `p=${hsPolicyPath()}; `;
      const counter = async () => {
        const r = await sshExec("lxc-tailscale", "nft list chain inet meshfleet tailnet", { instance });
        return Number(/counter packets (\d+) bytes \d+ drop/.exec(r.stdout)?.[1] ?? NaN);
      };
      const widen = await sshExec("vps", `${at}cp -p ${policy} ${policy}.mf-check && sed -i 's/"tag:router:80,443"/"tag:router:*"/' ${policy} && grep -q '"tag:router:\\*"' ${policy} && ${hsService("restart")} && ${hsReady()}`, { instance });
      try {
        if (widen.code !== 0) return { ok: false, why: `could not widen the policy on vps: ${widen.stderr.trim() || widen.stdout.trim()}` };
        const before = await counter();
        // Wait until the wider netmap reached lxc-tailscale: its table starts counting laptop's SYNs.
        const r = await until(30_000, async () => {
          const t = await tcp("laptop", lxc, 22, instance, 2);
          const n = await counter();
          if (t.ok) return { ok: false, why: `${t.why}: the host's own table let it in` };
          return { ok: n > before, why: `lxc-tailscale:22 still closed; meshfleet's tailnet drop counter ${before} -> ${n}` };
        });
        return r;
      } finally {
        await sshExec("vps", `${at}test -f ${policy}.mf-check && mv ${policy}.mf-check ${policy} && ${hsService("restart")} && ${hsReady()}`, { instance });
      }
    });

    // Issue 12 item 4: what lxc-tailscale routes to the LAN is filtered by the git policy, and a node is
    // admitted by the key the agent pinned, never by the name it reports.
    await check("a node registering as 'laptop' with another key is not admitted to the NAS by lxc-tailscale's routed chain", () => impostorCheck(instance));

    // Issue 12 item 1: the kernel boots without meshfleet's table. Delete it (what a reboot does), run the
    // boot unit that loads it before the network, and the table with its tailnet rules is back.
    await check("firewall after a reboot: meshfleet-firewall.service brings lxc-tailscale's table back", async () => {
      const r = await sshExec("lxc-tailscale", "nft delete table inet meshfleet && ! nft list table inet meshfleet >/dev/null 2>&1 && systemctl restart meshfleet-firewall.service && nft list chain inet meshfleet tailnet", { instance });
      if (r.code !== 0) await sshExec("lxc-tailscale", "systemctl restart meshfleet-boot.service", { instance });
      return r.code === 0 && /drop/.test(r.stdout) ? { ok: true, why: "table deleted, loaded again by the boot unit (tailnet chain present)" } : { ok: false, why: `exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 200)}` };
    });

    // Issue 18 section 1: TCP through the router with path MTU discovery broken works only with the MSS clamp.
    if (!opts.quick) await check("MSS clamp: 4 MiB NAS -> laptop through lxc-tailscale, its tailscale0 MTU lowered and frag-needed dropped, all arrive", () => mssTransferCheck(instance));

    // Relay, outage and reconnect checks need the peers; without them they would only wait out their timeouts.
    const needsMesh = (name: string) => check(name, async () => ({ ok: false, why: "not run: laptop does not see lxc-tailscale and vps (see the status check)" }));
    if (!opts.quick && !meshUp) {
      for (const n of ["UDP blocked between the NATs: laptop -> nas relayed through the lab's DERP", "UDP unblocked: laptop <-> lxc-tailscale direct again", "headscale held down ~60 s: every connection and ping laptop -> nas through the tunnel passes", "headscale started again: nodes reconnect"]) await needsMesh(n);
    }
    if (!opts.quick && meshUp) {
      let blocked = false;
      try {
        await check("UDP blocked between the NATs: laptop -> nas relayed through the lab's DERP", async () => {
          await blockUdp(instance);
          blocked = true;
          // Traffic keeps the peer Active, and makes tailscaled notice the dead direct path.
          await sshExec("laptop", `(ping -i 0.5 -c 60 ${NAS} >/dev/null 2>&1 &)`, { instance });
          const r = await until(35_000, async () => {
            const p = await peer("lxc-tailscale");
            if (!p) return { ok: false, why: "lxc-tailscale not in laptop's status" };
            out.peers["udp-blocked"] = peersOf(await tailscaleStatus("laptop", instance));
            const ok = p.active && p.curAddr === "" && p.relay !== "";
            return { ok, why: `Active=${p.active} CurAddr=${JSON.stringify(p.curAddr)} Relay=${JSON.stringify(p.relay)}` };
          });
          if (!r.ok) return r;
          // Right after the switch to DERP a first SYN can be lost; TCP itself would retry, so do we.
          const t = await until(20_000, () => tcp("laptop", NAS, 22, instance, 5));
          return { ok: t.ok, why: `${r.why}; ${t.why}` };
        });
      } finally {
        if (blocked) await unblockUdp(instance);
      }

      await check("UDP unblocked: laptop <-> lxc-tailscale direct again", async () => {
        const lxc = await peer("lxc-tailscale");
        const ip = lxc?.ips.find((x) => x.includes("."));
        if (!ip) return { ok: false, why: "lxc-tailscale has no tailnet IPv4" };
        const r = await until(40_000, async () => {
          const p = await sshExec("laptop", `${tsCli()} ping -c 3 --timeout 3s ${ip}`, { instance, timeoutMs: 20_000 });
          const line = p.stdout.trim().split("\n").pop() ?? p.stderr.trim();
          const s = await peer("lxc-tailscale");
          return { ok: !!s && s.curAddr !== "", why: `CurAddr=${JSON.stringify(s?.curAddr ?? "")}; ${line}` };
        });
        if (r.ok) out.peers.normal = peersOf(await tailscaleStatus("laptop", instance));
        return r;
      });

      await check("headscale held down ~60 s: every connection and ping laptop -> nas through the tunnel passes", () => outageCheck(instance, 60));

      await check("headscale started again: nodes reconnect", async () => {
        return until(40_000, async () => {
          const r = await sshExec("vps", `${hsCli()} nodes list -o json`, { instance, timeoutMs: 10_000 });
          if (r.code !== 0) return { ok: false, why: `headscale nodes list: ${r.stderr.trim().split("\n").pop()}` };
          const nodes = JSON.parse(r.stdout || "[]") as { name?: string; given_name?: string; online?: boolean }[];
          const want = ["laptop", "lxc-tailscale"];
          const off = want.filter((w) => !nodes.some((n) => (n.given_name === w || n.name === w) && n.online === true));
          return off.length ? { ok: false, why: `not online in headscale: ${off.join(", ")}` } : { ok: true, why: `${want.join(", ")} online` };
        });
      });

    }
    if (!opts.quick) {
      await check("a second run makes no changes (meshfleet preview --expect-no-changes) and agent verify is clean on every host", () => noChangesCheck(instance));

      await check("an edited host file (a new advertised route): preview shows it, up applies it, headscale approves it", () => editedRouteCheck(instance));

      // Issue 18 section 5: one edited deploy (and one back) covers the three reported approval cases.
      let approvals: ApprovalVerdicts | undefined;
      await check("route approvals, exit node: lxc-tailscale as an exit node gets 0.0.0.0/0 and ::/0 approved by meshfleet up, revoked once it leaves the fleet", async () => (approvals = await approvalChecks(instance)).exitNode);
      await check("route approvals, tagged router: tag:router's routes approved, the new one revoked after", async () => approvals?.taggedRouter ?? { ok: false, why: "not run" });
      await check("route approvals, route announced before the policy allowed it: approved once meshfleet up brings the policy", async () => approvals?.routeBeforePolicy ?? { ok: false, why: "not run" });

      await check("a replaced pre-auth key is refused by headscale (tailscale up --auth-key=<old key>)", () => preAuthKeyCheck(instance));

      await check("a deploy that locks itself out (laptop's SSH limited to 192.0.2.0/24) fails naming the host, and the host is back on its previous generation", () => lockoutCheck(instance));

      await deployChecks(instance, check);

      await check("after every check: a second run makes no changes and agent verify is clean on every host", () => noChangesCheck(instance));
    }
    if (opts.drills) await drillChecks(instance, check, tsCli(), opts.log);
  } finally {
    out.totalMs = Date.now() - t0;
    out.versions = await versionsOnHosts(instance);
    const p = e2ePaths(instance);
    mkdirSync(p.dir, { recursive: true });
    writeFileSync(p.checks, JSON.stringify(out, null, 2));
  }
  return out;
}

/**
 * Deploy a copy of hosts/lab whose lxc-tailscale advertises one more route
 * (192.168.9.0/24): `pulumi preview` must name that host's agent and no other
 * host's, `pulumi up` must apply it, and headscale must approve the route
 * (autoApprovers). Then the lab is deployed back as it was.
 */
export async function editedRouteCheck(instance: number): Promise<{ ok: boolean; why: string }> {
  const p = e2ePaths(instance);
  const env = labPulumiEnv(instance);
  const edited = join(p.dir, "hosts-edited");
  rmSync(edited, { recursive: true, force: true });
  cpSync(labFleetDir(instance), edited, { recursive: true });
  const f = join(edited, "lxc-tailscale.yaml");
  const text = readFileSync(f, "utf8");
  const next = text.replace("lan: [192.168.8.0/24]", "lan: [192.168.8.0/24, 192.168.9.0/24]").replace("routes: [192.168.8.0/24]", "routes: [192.168.8.0/24, 192.168.9.0/24]");
  if (next === text) return { ok: false, why: "hosts/lab/lxc-tailscale.yaml no longer has the lines this check edits" };
  writeFileSync(f, next);
  const cfg = (k: string, v: string) => runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, k, v], { env });
  const original = labFleetDir(instance);
  const EXTRA = "192.168.9.0/24";
  const approvedOf = async () => {
    const r = await sshExec("vps", `${hsCli()} nodes list -o json`, { instance, timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`headscale nodes list: ${r.stderr.trim().split("\n").pop()}`);
    const nodes = JSON.parse(r.stdout || "[]") as { given_name?: string; approved_routes?: string[] }[];
    return nodes.find((n) => n.given_name === "lxc-tailscale")?.approved_routes ?? [];
  };
  // A stale approval (left by an earlier run, or approved by hand) would let this check pass without autoApprovers.
  const stale = await approvedOf();
  if (stale.includes(EXTRA)) rmSync(edited, { recursive: true, force: true });
  if (stale.includes(EXTRA)) return { ok: false, why: `before the edit headscale already approves ${EXTRA} for lxc-tailscale (stale: the fleet does not declare it, so the provider should have revoked it)` };
  let verdict: { ok: boolean; why: string } = { ok: false, why: "not run" };
  try {
    verdict = await editAndApply();
  } finally {
    await cfg("meshfleet:hostsDir", original);
    const back = await labDeploy(instance, { verb: "up" });
    rmSync(edited, { recursive: true, force: true });
    // The route left the fleet: its approval must be revoked, or the next run's check would pass on it.
    const after = await approvedOf().catch((e: Error) => [`(${e.message})`]);
    if (verdict.ok && !back.ok) verdict = { ok: false, why: `deploying the lab back failed: ${back.errors.join("; ")}` };
    else if (verdict.ok && after.includes(EXTRA)) verdict = { ok: false, why: `${verdict.why}; but after the route left the fleet headscale still approves ${EXTRA} (approvals: ${after.join(", ")})` };
    else if (verdict.ok) verdict = { ok: true, why: `${verdict.why}; not approved before; revoked after the route left the fleet (approvals: ${after.join(", ")})` };
  }
  return verdict;

  async function editAndApply(): Promise<{ ok: boolean; why: string }> {
    await cfg("meshfleet:hostsDir", edited);
    const pv = await labDeploy(instance, { verb: "preview", diff: true });
    if (!pv.ok) return { ok: false, why: `preview failed: ${pv.errors.join("; ")}` };
    const changed = pv.resources.filter((r) => r.op !== "same" && r.op !== "read");
    const byHost = (h: string) => changed.filter((r) => r.host === h).map((r) => `${r.op} ${r.type} ${r.name}`);
    // The route also widens the policy's autoApprovers, so the coordinator's files change too; the laptop's must not.
    if (byHost("lxc-tailscale").length === 0 || byHost("laptop").length > 0) {
      return { ok: false, why: `preview changes: ${changed.map((r) => `${r.host ?? "fleet"}: ${r.op} ${r.name}`).join(", ") || "none"} (want lxc-tailscale's, and nothing of the laptop's)` };
    }
    const up = await labDeploy(instance, { verb: "up" });
    if (!up.ok) return { ok: false, why: `up failed: ${up.errors.join("; ")}` };
    const routes = await sshExec("vps", `${hsCli()} nodes list -o json`, { instance, timeoutMs: 10_000 });
    const nodes = JSON.parse(routes.stdout || "[]") as { given_name?: string; approved_routes?: string[] }[];
    const approved = nodes.find((n) => n.given_name === "lxc-tailscale")?.approved_routes ?? [];
    return approved.includes(EXTRA)
      ? { ok: true, why: `preview: lxc-tailscale ${byHost("lxc-tailscale").join(", ")}; applied; headscale approved ${approved.join(", ")}` }
      : { ok: false, why: `applied, but headscale approved only ${approved.join(", ") || "nothing"}` };
  }
}

async function versionsOnHosts(instance: number): Promise<Record<string, string>> {
  const v: Record<string, string> = {};
  for (const t of loadVersions().tools) v[t.name] = t.version;
  const run = async (host: string, cmd: string) => {
    const r = await sshExec(host, cmd, { instance, timeoutMs: 8000 }).catch(() => undefined);
    return r && r.code === 0 ? r.stdout.trim().split("\n")[0]! : "unreachable";
  };
  v["tailscale on laptop"] = await run("laptop", `${tsCli()} version`);
  v["headscale on vps"] = await run("vps", `${hsCli()} version 2>/dev/null || ${HOST_TOOLS_DIR}/headscale@${version("headscale")}/bin/headscale version`);
  v["caddy on vps"] = await run("vps", "caddy version");
  v["containers on vps"] = await run("vps", "docker ps --format '{{.Names}} {{.Image}}' 2>/dev/null | sort | tr '\\n' ' ' | grep . || echo none");
  v["node on hosts"] = await run("laptop", "node --version");
  return v;
}
