/**
 * Issue 12 item 4 in the lab: lxc-tailscale (trustTailnet: false) filters
 * what it routes to the home LAN by the git policy, with the laptop admitted
 * by the node key its agent pinned, never by a name.
 *
 * The impostor: a throwaway tailscaled (userspace networking, its own state
 * and socket) on the laptop registers with a fresh pre-auth key of alice's
 * and calls itself "laptop". The coordinator's policy (alice@ -> 192.168.8.0/24)
 * lets it through, so tailscaled on lxc-tailscale passes its packets; the
 * router's own `routed` chain must drop them (its drop counter moves). The
 * control: the same impostor reaches vps:22 (alice@ -> tag:server:*; vps
 * trusts its tailnet), so the denial is the router's table, not a dead probe.
 *
 * Run by `lab check` after the "policy widened on headscale alone" check.
 */
import { HOST_TOOLS_DIR, sshExec } from "../hosts/index.ts";
import { loadVersions } from "../tools/index.ts";

export type Verdict = { ok: boolean; why: string };

const NAS = "192.168.8.10";
const IMPOSTOR = "laptop";
const version = (name: string) => loadVersions().tools.find((t) => t.name === name)?.version ?? "?";
const tsBin = () => `${HOST_TOOLS_DIR}/tailscale@${version("tailscale")}/bin`;
import { hsCli } from "./coordinator-runtime.ts";
const tsCli = () => `${tsBin()}/tailscale --socket=/run/tailscale/tailscaled.sock`;
const redact = (s: string) => s.replace(/hskey-[A-Za-z0-9_-]+/g, "hskey-[redacted]").replace(/\b[0-9a-f]{40,}\b/g, "[redacted]");
const last = (s: string, n = 2) => redact(s.trim().split("\n").slice(-n).join(" | "));

/** The packets lxc-tailscale's routed chain has dropped (NaN when the chain is not there). */
async function routedDrops(instance: number): Promise<number> {
  const r = await sshExec("lxc-tailscale", "nft list chain inet meshfleet routed", { instance });
  return Number(/counter packets (\d+) bytes \d+ drop/.exec(r.stdout)?.[1] ?? NaN);
}

type HsNode = { id?: string | number; name?: string; given_name?: string; node_key?: string };

export async function impostorCheck(instance: number): Promise<Verdict> {
  const prefs = await sshExec("laptop", `${tsCli()} debug prefs`, { instance });
  const loginServer = (JSON.parse(prefs.stdout || "{}") as { ControlURL?: string }).ControlURL ?? "";
  if (!/^https?:\/\//.test(loginServer)) return { ok: false, why: `no ControlURL in laptop's tailscale prefs (${last(prefs.stderr)})` };
  const st = JSON.parse((await sshExec("laptop", `${tsCli()} status --json`, { instance })).stdout || "{}") as { Peer?: Record<string, { DNSName?: string; TailscaleIPs?: string[] }> };
  const vps = Object.values(st.Peer ?? {}).find((p) => p.DNSName?.split(".")[0] === "vps")?.TailscaleIPs?.find((a) => a.includes("."));
  if (!vps) return { ok: false, why: "vps has no tailnet IPv4 in laptop's status" };
  const before = await routedDrops(instance);
  if (Number.isNaN(before)) return { ok: false, why: "lxc-tailscale has no routed chain in its meshfleet table" };

  const users = await sshExec("vps", `${hsCli()} users list -o json`, { instance });
  const alice = (JSON.parse(users.stdout || "[]") as { id: number | string; name: string }[]).find((u) => u.name === "alice");
  if (!alice) return { ok: false, why: "headscale has no user alice" };
  const made = await sshExec("vps", `${hsCli()} preauthkeys create -u ${alice.id} -e 10m -o json`, { instance });
  const key = JSON.parse(made.stdout || "{}") as { id?: string | number; key?: string };
  if (!key.key) return { ok: false, why: `headscale preauthkeys create: ${last(made.stderr)}` };
  let impostorKey = "";
  try {
    // Each probe: stdin kept open 4 s, the connection's first bytes (an SSH banner) printed under a marker.
    const probe = (ip: string) => `echo "== ${ip}"; sleep 4 | timeout 8 $ts nc ${ip} 22 2>&1 | head -c 40; echo`;
    const script = [
      "set -u",
      "d=$(mktemp -d /tmp/mf-impostor.XXXXXX)",
      "umask 077; cat > $d/key",
      `${tsBin()}/tailscaled --tun=userspace-networking --statedir=$d/state --socket=$d/sock --port=0 >$d/log 2>&1 & pid=$!`,
      "for i in $(seq 100); do [ -S $d/sock ] && break; sleep 0.1; done",
      `ts="${tsBin()}/tailscale --socket=$d/sock"`,
      `if $ts up --login-server=${loginServer} --auth-key=file:$d/key --hostname=${IMPOSTOR} --accept-routes --timeout=25s >$d/up 2>&1; then`,
      "  sleep 3",
      `  echo "== key $($ts status --json | grep -m1 -o 'nodekey:[0-9a-f]*')"`,
      `  ${probe(vps)}`,
      `  ${probe(NAS)}`,
      "else echo \"== up failed: $(tail -n 2 $d/up)\"; fi",
      "$ts logout >/dev/null 2>&1 || true",
      "kill $pid; wait $pid 2>/dev/null; rm -rf $d",
    ].join("\n");
    const r = await sshExec("laptop", script, { instance, input: key.key.trim() + "\n", timeoutMs: 90_000 });
    // The node key is public, but redact() hides long hex: read it from the raw output first.
    impostorKey = /== key (nodekey:[0-9a-f]+)/.exec(r.stdout)?.[1] ?? "";
    const out = redact(r.stdout + r.stderr);
    const section = (name: string) => new RegExp(`== ${name.replace(/\./g, "\\.")}\\n([^\\n]*)`).exec(out)?.[1] ?? "";
    if (/== up failed/.test(out)) return { ok: false, why: `the impostor could not register: ${last(out)}` };
    if (!impostorKey) return { ok: false, why: `the impostor registered but showed no node key: ${last(out)}` };
    if (!section(vps).startsWith("SSH-")) return { ok: false, why: `control failed: the impostor does not reach vps:22 either (${section(vps) || "nothing"}), so a denial proves nothing` };
    const after = await routedDrops(instance);
    if (section(NAS).startsWith("SSH-")) return { ok: false, why: `the impostor calling itself ${IMPOSTOR} reached ${NAS}:22 through lxc-tailscale` };
    if (!(after > before)) return { ok: false, why: `the impostor did not reach ${NAS}:22, but lxc-tailscale's routed drop counter did not move (${before} -> ${after})` };
    return { ok: true, why: `impostor (another key, hostname ${IMPOSTOR}, alice's pre-auth key): vps:22 answered, ${NAS}:22 dropped by lxc-tailscale's routed chain (counter ${before} -> ${after})` };
  } finally {
    // The impostor's node only (by its node key), and its key expired.
    const nodes = await sshExec("vps", `${hsCli()} nodes list -o json`, { instance, timeoutMs: 15_000 });
    const mine = (JSON.parse(nodes.stdout || "[]") as HsNode[]).filter((n) => impostorKey !== "" && n.node_key === impostorKey);
    for (const n of mine) await sshExec("vps", `${hsCli()} nodes delete -i ${n.id} --force`, { instance, timeoutMs: 15_000 });
    await sshExec("vps", `${hsCli()} preauthkeys expire --id ${key.id} -o json`, { instance });
  }
}
