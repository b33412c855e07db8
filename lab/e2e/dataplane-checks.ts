/**
 * Issue 18's lab checks of a subnet router's data plane and of route
 * approvals (`lab check` runs them; each returns a verdict and cleans up).
 *
 * MSS (section 1): a download from the NAS to the laptop through
 * lxc-tailscale, with the router's tailscale0 MTU lowered below the laptop's
 * (the tailnet path is smaller than the laptop's own tunnel says) and the
 * router's ICMP "fragmentation needed" dropped (path MTU discovery fails, as
 * on many real paths). The NAS then sends segments as large as the laptop's
 * MSS, which do not fit the router's tailscale0: only the router's clamp
 * (`tcp option maxseg size set rt mtu`, which also looks at the route back to
 * the sender) keeps the transfer moving. Without it the transfer stalls.
 *
 * Approvals (section 5): an edited copy of the deployed fleet where
 * lxc-tailscale (tagged tag:router) is also an exit node and routes
 * 192.168.9.0/24, which it announces by hand before the deploy, while the
 * policy does not allow it yet. After `meshfleet up` headscale must approve
 * all of them; after deploying the fleet back, none of them.
 */
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { HOST_TOOLS_DIR, sshExec } from "../hosts/index.ts";
import { loadVersions } from "../tools/index.ts";
import { labDeploy } from "./deploy-checks.ts";
import { e2ePaths } from "./paths.ts";
import { labPulumiEnv, REPO, runPulumi, STACK } from "./pulumi.ts";

export type Verdict = { ok: boolean; why: string };

const NAS = "192.168.8.10";
const ROUTER = "lxc-tailscale";
const PORT = 9931;
const PMTUD_TABLE = "meshfleet_e2e_pmtud";
const version = (name: string) => loadVersions().tools.find((t) => t.name === name)?.version ?? "?";
const tsCli = () => `${HOST_TOOLS_DIR}/tailscale@${version("tailscale")}/bin/tailscale --socket=/run/tailscale/tailscaled.sock`;
import { hsCli } from "./coordinator-runtime.ts";
const tail = (s: string, n = 2) => s.trim().split("\n").slice(-n).join(" | ");

export interface MssOptions {
  /** Bytes the NAS sends (default 4 MiB: about 3,600 segments of the clamped size). */
  bytes?: number;
  /** tailscale0's MTU on the router during the transfer (default 1200; the laptop's stays 1280). */
  routerMtu?: number;
}

export async function mssTransferCheck(instance: number, o: MssOptions = {}): Promise<Verdict> {
  const bytes = o.bytes ?? 4 * 1024 * 1024;
  const mtu = o.routerMtu ?? 1200;
  const run = (host: string, cmd: string, timeoutMs = 30_000) => sshExec(host, cmd, { instance, timeoutMs });
  const chain = await run(ROUTER, "nft list chain inet meshfleet forward");
  const clamp = /maxseg size set rt mtu/.test(chain.stdout) ? "clamp rule present" : "no clamp rule in lxc-tailscale's forward chain";
  const mtuBefore = (await run(ROUTER, "cat /sys/class/net/tailscale0/mtu")).stdout.trim();
  if (!/^\d+$/.test(mtuBefore)) return { ok: false, why: "lxc-tailscale has no tailscale0" };
  const pmtud = [
    `table inet ${PMTUD_TABLE} {`,
    "  chain out {",
    "    type filter hook output priority -10; policy accept;",
    "    icmp type destination-unreachable icmp code frag-needed drop",
    "    icmpv6 type packet-too-big drop",
    "  }",
    "}",
  ].join("\n");
  try {
    const setup = await sshExec(ROUTER, `nft -f - && ip link set tailscale0 mtu ${mtu}`, { instance, input: pmtud });
    if (setup.code !== 0) return { ok: false, why: `could not lower tailscale0's MTU or drop frag-needed on lxc-tailscale: ${tail(setup.stderr)}` };
    // The NAS serves `bytes` once, then closes (openbsd nc: -N shuts the socket down at EOF); its pid is kept to end it.
    const serve = await run("nas", `rm -f /tmp/mf-mss.pid; (setsid sh -c 'echo $$ > /tmp/mf-mss.pid; head -c ${bytes} /dev/zero | exec timeout 60 nc -N -l ${PORT}' >/dev/null 2>&1 &); for i in $(seq 50); do ss -ltn | grep -q ':${PORT} ' && exit 0; sleep 0.1; done; exit 1`);
    if (serve.code !== 0) return { ok: false, why: `the NAS listener on :${PORT} did not start` };
    // -w 6: nc gives up after 6 s without data, so a stalled transfer ends with the bytes it got.
    const t = await run("laptop", `s=$(date +%s%N); n=$(timeout 40 nc -w 6 ${NAS} ${PORT} </dev/null | wc -c); echo "$n $(( ($(date +%s%N) - s) / 1000000 ))"`, 60_000);
    const [got, ms] = t.stdout.trim().split(/\s+/).map(Number);
    const what = `${bytes} bytes NAS -> laptop through lxc-tailscale (its tailscale0 MTU ${mtu}, laptop's 1280, frag-needed dropped; ${clamp})`;
    if (got === bytes) return { ok: true, why: `${what}: all arrived in ${(ms / 1000).toFixed(1)} s` };
    return { ok: false, why: `${what}: ${got ?? "?"} bytes arrived, then the transfer stalled (${((ms ?? 0) / 1000).toFixed(1)} s; nc waits 6 s for data): segments larger than the router's tailscale0 were dropped` };
  } finally {
    await run("nas", "test -f /tmp/mf-mss.pid && kill -- -$(cat /tmp/mf-mss.pid) 2>/dev/null; rm -f /tmp/mf-mss.pid; true");
    await run(ROUTER, `ip link set tailscale0 mtu ${mtuBefore}; nft delete table inet ${PMTUD_TABLE} 2>/dev/null; true`);
  }
}

type HsNode = { id: string | number; given_name?: string; approved_routes?: string[]; available_routes?: string[]; tags?: string[] };

async function routerNode(instance: number): Promise<HsNode> {
  const r = await sshExec("vps", `${hsCli()} nodes list -o json`, { instance, timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`headscale nodes list: ${tail(r.stderr)}`);
  const n = (JSON.parse(r.stdout || "[]") as HsNode[]).find((x) => x.given_name === ROUTER);
  if (!n) throw new Error(`headscale has no node ${ROUTER}`);
  return n;
}

const EXTRA = "192.168.9.0/24";
const EXIT = ["0.0.0.0/0", "::/0"];

export interface ApprovalVerdicts {
  exitNode: Verdict;
  taggedRouter: Verdict;
  routeBeforePolicy: Verdict;
  /** ms of the whole (edit, announce, deploy, read, deploy back, read). */
  ms: number;
}

/** The fleet folder the lab stack deploys now (hosts/lab, or an instance's copy). */
function deployedFleetDir(instance: number): string {
  const p = e2ePaths(instance);
  const cfg = existsSync(p.stackConfig) ? ((parse(readFileSync(p.stackConfig, "utf8")) as { config?: Record<string, unknown> } | null)?.config ?? {}) : {};
  return String(cfg["meshfleet:hostsDir"] ?? join(REPO, "hosts", "lab"));
}

export async function approvalChecks(instance: number): Promise<ApprovalVerdicts> {
  const t0 = Date.now();
  const fail = (why: string): ApprovalVerdicts => ({ exitNode: { ok: false, why }, taggedRouter: { ok: false, why }, routeBeforePolicy: { ok: false, why }, ms: Date.now() - t0 });
  const p = e2ePaths(instance);
  const env = labPulumiEnv(instance);
  const original = deployedFleetDir(instance);
  const edited = join(p.dir, "hosts-approvals");
  rmSync(edited, { recursive: true, force: true });
  cpSync(original, edited, { recursive: true });
  const f = join(edited, `${ROUTER}.yaml`);
  const text = readFileSync(f, "utf8");
  const next = text
    .replace("lan: [192.168.8.0/24]", `lan: [192.168.8.0/24, ${EXTRA}]`)
    .replace("routes: [192.168.8.0/24]", `routes: [192.168.8.0/24, ${EXTRA}]`)
    .concat("\nexit-node:\n  enable: true\n");
  if (!next.includes(`routes: [192.168.8.0/24, ${EXTRA}]`)) return fail(`${ROUTER}.yaml no longer has the lines this check edits`);
  writeFileSync(f, next);
  const cfg = (dir: string) => runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:hostsDir", dir], { env });

  const before = await routerNode(instance);
  const stale = [...EXIT, EXTRA].filter((r) => before.approved_routes?.includes(r));
  if (stale.length) return fail(`before the edit headscale already approves ${stale.join(", ")} for ${ROUTER} (stale: the fleet does not declare them)`);
  if (!before.tags?.includes("tag:router")) return fail(`${ROUTER} is not tagged tag:router in headscale (tags: ${before.tags?.join(", ") || "none"}), so this is not the tagged-router case`);

  // Announced by hand first: headscale sees the route while its policy does not allow it yet.
  const announce = await sshExec(ROUTER, `${tsCli()} set --advertise-routes=192.168.8.0/24,${EXTRA}`, { instance, timeoutMs: 20_000 });
  if (announce.code !== 0) return fail(`tailscale set --advertise-routes on ${ROUTER}: ${tail(announce.stderr)}`);
  let announced: HsNode = before;
  for (let i = 0; i < 20; i++) {
    announced = await routerNode(instance);
    if (announced.available_routes?.includes(EXTRA)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  const pre = announced.available_routes?.includes(EXTRA) && !announced.approved_routes?.includes(EXTRA);

  let after: HsNode | undefined;
  let upErr = "";
  try {
    await cfg(edited);
    const up = await labDeploy(instance, { verb: "up" });
    if (!up.ok) upErr = up.errors.join("; ");
    after = await routerNode(instance);
  } finally {
    await cfg(original);
    const back = await labDeploy(instance, { verb: "up" });
    if (!back.ok) upErr ||= `deploying the fleet back: ${back.errors.join("; ")}`;
    rmSync(edited, { recursive: true, force: true });
  }
  const revoked = await routerNode(instance);
  const left = [...EXIT, EXTRA].filter((r) => revoked.approved_routes?.includes(r));
  const ms = Date.now() - t0;
  if (upErr || !after) return { ...fail(`meshfleet up: ${upErr}`), ms };
  const approved = after.approved_routes ?? [];
  const backNote = left.length ? `; but after the fleet went back headscale still approves ${left.join(", ")}` : "; revoked after the fleet went back";
  const v = (ok: boolean, why: string): Verdict => ({ ok: ok && left.length === 0, why: why + backNote });
  return {
    exitNode: v(EXIT.every((r) => approved.includes(r)), `exit node on ${ROUTER}: approved ${approved.join(", ") || "nothing"} (want ${EXIT.join(" and ")})`),
    taggedRouter: v(approved.includes("192.168.8.0/24") && approved.includes(EXTRA) && !!after.tags?.includes("tag:router"), `${ROUTER} (tags ${after.tags?.join(",") || "none"}): approved ${approved.join(", ") || "nothing"}`),
    routeBeforePolicy: v(!!pre && approved.includes(EXTRA), pre ? `${EXTRA} announced by hand first (available, not approved), approved after the deploy allowed it: ${approved.includes(EXTRA)}` : `the hand announcement did not show as an unapproved route (available: ${announced.available_routes?.join(", ") || "none"}; approved: ${announced.approved_routes?.join(", ") || "none"})`),
    ms,
  };
}
