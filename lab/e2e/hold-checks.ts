/**
 * Lab checks that hold: each one fails when what it guards breaks.
 *
 *  - the coordinator's outage: headscale held down ~60 s while the laptop
 *    keeps opening connections and pinging through the tunnel (all counted,
 *    all must pass);
 *  - "a second run makes no changes": the preview with --expect-no-changes
 *    AND `agent verify` clean on every host (a flushed table is drift that a
 *    preview without refresh cannot see);
 *  - a replaced pre-auth key is refused by headscale: the fleet asks for a
 *    different key for the laptop, `meshfleet up` replaces it, and a fresh
 *    tailscaled given the old key is refused while one given a new key (made
 *    for the probe) registers — so the refusal is the key's, not the probe's;
 *  - a deploy that locks itself out (SSH limited to a network the deploy is
 *    not on) fails naming the host, and the host's guard puts the previous
 *    generation back.
 *
 * Every check puts the lab back as it was (hostsDir, keys, probe nodes), so
 * the checks after it and a second `up` are still no-ops.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { AGENT_HOST_PATH } from "../../core/types.ts";
import { HOST_TOOLS_DIR, sshExec } from "../hosts/index.ts";
import { loadVersions } from "../tools/index.ts";
import { labDeploy } from "./deploy-checks.ts";
import { e2ePaths } from "./paths.ts";
import { labPulumiEnv, REPO, runPulumi, STACK } from "./pulumi.ts";
import { fleetHosts } from "./fleet.ts";

export type Verdict = { ok: boolean; why: string };

const NAS = "192.168.8.10";
const AUTH_KEY_FILE = "/var/lib/meshfleet/secrets/tailscale-authkey";
const version = (name: string) => loadVersions().tools.find((t) => t.name === name)?.version ?? "?";
const tsBin = () => `${HOST_TOOLS_DIR}/tailscale@${version("tailscale")}/bin`;
import { hsCli, hsService } from "./coordinator-runtime.ts";
import { labFleetDir } from "./docker-variant.ts";
const tsCli = () => `${tsBin()}/tailscale --socket=/run/tailscale/tailscaled.sock`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Never let a key reach a log line. */
const redact = (s: string) => s.replace(/hskey-[A-Za-z0-9_-]+/g, "hskey-[redacted]").replace(/\b[0-9a-f]{40,}\b/g, "[redacted]");
const last = (s: string, n = 2) => redact(s.trim().split("\n").slice(-n).join(" | "));

/** The agent's current generation (number and hash) on a host, from `agent status --json`. */
export async function generationOf(host: string, instance: number): Promise<{ generation: string; hash: string } | null> {
  const r = await sshExec(host, `node ${AGENT_HOST_PATH} status --json`, { instance, timeoutMs: 20_000 });
  if (r.code !== 0) return null;
  try {
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    return { generation: String(j.generation ?? j.current ?? ""), hash: String(j.hash ?? "") };
  } catch {
    return null;
  }
}

/** `agent verify` on every fleet host; the hosts that fail, with why. */
export async function verifyAll(instance: number): Promise<string[]> {
  const bad: string[] = [];
  await Promise.all(
    fleetHosts().map(async (h) => {
      const v = await sshExec(h, `node ${AGENT_HOST_PATH} verify`, { instance, timeoutMs: 30_000 });
      if (v.code !== 0) bad.push(`${h}: ${last(v.stdout + v.stderr, 3)}`);
    }),
  );
  return bad.sort();
}

export async function noChangesCheck(instance: number): Promise<Verdict> {
  const r = await labDeploy(instance, { verb: "preview", expectNoChanges: true });
  const changed = r.resources.filter((x) => x.op !== "same" && x.op !== "read").map((x) => `${x.host ?? "fleet"}: ${x.op} ${x.name}`);
  if (!r.ok) return { ok: false, why: `preview: ${changed.join(", ") || r.errors.join("; ")}` };
  const bad = await verifyAll(instance);
  return bad.length ? { ok: false, why: `preview shows no changes, but agent verify finds drift: ${bad.join("; ")}` } : { ok: true, why: `no changes; agent verify clean on ${fleetHosts().length} hosts` };
}

/**
 * Stop headscale and hold it down for `holdS` seconds while the laptop pings
 * the nas (through the subnet route, so through the tunnel) and opens TCP
 * connections to it one after another. Every ping and every connection must
 * succeed; headscale must still be down at the end.
 */
export async function outageCheck(instance: number, holdS = 60): Promise<Verdict> {
  const route = await sshExec("laptop", `ip route get ${NAS}`, { instance });
  if (!/tailscale0/.test(route.stdout)) return { ok: false, why: `laptop does not route ${NAS} through tailscale0: ${route.stdout.trim() || route.stderr.trim()}` };
  const st = await sshExec("vps", `${hsService("stop")} && ! ${hsService("is-active")} >/dev/null`, { instance });
  if (st.code !== 0) return { ok: false, why: `could not stop headscale: ${st.stderr.trim()}` };
  try {
    const t0 = Date.now();
    const count = Math.round(holdS * 2);
    // -i 0.5 needs root (the lab logs in as root); -W 2 per reply.
    const ping = sshExec("laptop", `ping -n -q -i 0.5 -W 2 -c ${count} ${NAS}`, { instance, timeoutMs: (holdS + 30) * 1000 });
    let tries = 0;
    const failed: string[] = [];
    while (Date.now() - t0 < holdS * 1000) {
      tries++;
      const c = await sshExec("laptop", `nc -z -w 3 ${NAS} 22`, { instance, timeoutMs: 15_000 });
      if (c.code !== 0) failed.push(`#${tries} at ${((Date.now() - t0) / 1000).toFixed(0)}s: ${c.stderr.trim() || `nc exit ${c.code}`}`);
      await sleep(1500);
    }
    const p = await ping;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(p.stdout);
    const sent = Number(m?.[1] ?? 0);
    const got = Number(m?.[2] ?? 0);
    const still = await sshExec("vps", hsService("is-active"), { instance });
    const down = still.stdout.trim() !== "active";
    const held = ((Date.now() - t0) / 1000).toFixed(0);
    const summary = `headscale down ${held}s (${down ? "still down at the end" : "UP again at the end"}); connections ${tries - failed.length}/${tries}; pings ${got}/${sent}`;
    if (!down) return { ok: false, why: `${summary}: headscale came back during the hold, so the outage was not held` };
    if (tries < holdS / 5) return { ok: false, why: `${summary}: too few connections to count` };
    if (sent < count || got !== sent) return { ok: false, why: `${summary}: ping lost packets or stopped early (${last(p.stdout + p.stderr)})` };
    if (failed.length) return { ok: false, why: `${summary}: failed ${failed.slice(0, 3).join("; ")}` };
    return { ok: true, why: summary };
  } finally {
    await sshExec("vps", hsService("start"), { instance });
  }
}

/** A copy of hosts/lab with one host file edited; points the stack's hostsDir at it until `restore`. */
async function editedFleet(instance: number, name: string, edit: (files: Record<string, string>) => Record<string, string>) {
  const p = e2ePaths(instance);
  const env = labPulumiEnv(instance);
  const dir = join(p.dir, `hosts-${name}`);
  rmSync(dir, { recursive: true, force: true });
  cpSync(labFleetDir(instance), dir, { recursive: true });
  const files = Object.fromEntries(fleetHosts().map((h) => [h, readFileSync(join(dir, `${h}.yaml`), "utf8")]));
  const next = edit(files);
  for (const [h, text] of Object.entries(next)) writeFileSync(join(dir, `${h}.yaml`), text);
  const cfg = async (v: string) => {
    const r = await runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:hostsDir", v], { env });
    if (r.code !== 0) throw new Error(`pulumi config set meshfleet:hostsDir: ${r.stderr.trim()}`);
  };
  await cfg(dir);
  return {
    dir,
    restore: async () => {
      await cfg(labFleetDir(instance));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A throwaway tailscaled (userspace networking, its own state and socket) on
 * the laptop runs `tailscale up --auth-key=file:…` with the key given on
 * stdin; the key only ever sits in a 0600 file in the probe's folder.
 */
async function probeKey(instance: number, key: string, hostname: string, loginServer: string): Promise<{ code: number; out: string }> {
  const script = [
    "set -u",
    "d=$(mktemp -d /tmp/mf-keyprobe.XXXXXX)",
    "umask 077; cat > $d/key",
    `${tsBin()}/tailscaled --tun=userspace-networking --statedir=$d/state --socket=$d/sock --port=0 >$d/log 2>&1 & pid=$!`,
    "for i in $(seq 100); do [ -S $d/sock ] && break; sleep 0.1; done",
    `${tsBin()}/tailscale --socket=$d/sock up --login-server=${loginServer} --auth-key=file:$d/key --hostname=${hostname} --timeout=25s 2>&1; rc=$?`,
    `${tsBin()}/tailscale --socket=$d/sock logout >/dev/null 2>&1 || true`,
    "kill $pid; wait $pid 2>/dev/null; rm -rf $d",
    "exit $rc",
  ].join("\n");
  const r = await sshExec("laptop", script, { instance, input: key.trim() + "\n", timeoutMs: 60_000 });
  return { code: r.code, out: redact((r.stdout + r.stderr).trim()) };
}

type HsNode = { id?: string | number; name?: string; given_name?: string; approved_routes?: string[]; available_routes?: string[] };
async function hsNodes(instance: number): Promise<HsNode[]> {
  const r = await sshExec("vps", `${hsCli()} nodes list -o json`, { instance, timeoutMs: 15_000 });
  if (r.code !== 0) throw new Error(`headscale nodes list: ${last(r.stderr)}`);
  return JSON.parse(r.stdout || "[]") as HsNode[];
}

async function deleteProbeNodes(instance: number, names: string[]): Promise<void> {
  for (const n of (await hsNodes(instance).catch(() => [])).filter((x) => names.includes(String(x.given_name)) || names.includes(String(x.name)))) {
    await sshExec("vps", `${hsCli()} nodes delete -i ${n.id} --force`, { instance, timeoutMs: 15_000 });
  }
}

export async function preAuthKeyCheck(instance: number): Promise<Verdict> {
  const readKey = async () => {
    const r = await sshExec("laptop", `cat ${AUTH_KEY_FILE}`, { instance });
    return r.code === 0 ? r.stdout.trim() : "";
  };
  const prefs = await sshExec("laptop", `${tsCli()} debug prefs`, { instance });
  const loginServer = (JSON.parse(prefs.stdout || "{}") as { ControlURL?: string }).ControlURL ?? "";
  if (!/^https?:\/\//.test(loginServer)) return { ok: false, why: `no ControlURL in laptop's tailscale prefs (${last(prefs.stderr)})` };
  const old = await readKey();
  if (!old.startsWith("hskey-auth-")) return { ok: false, why: `laptop's ${AUTH_KEY_FILE} holds no pre-auth key` };
  const probes = ["mf-keyprobe-old", "mf-keyprobe-new"];
  const fleet = await editedFleet(instance, "key", (f) => {
    const text = f.laptop!;
    const next = text.replace(/^tailscale:\n/m, "tailscale:\n  authKey: { expiration: 89d }\n");
    if (next === text) throw new Error("hosts/lab/laptop.yaml no longer has the `tailscale:` block this check edits");
    return { laptop: next };
  });
  let probeKeyId = "";
  try {
    const up = await labDeploy(instance, { verb: "up", on: ["laptop"] });
    if (!up.ok) return { ok: false, why: `up with laptop's new key request failed: ${up.errors.join("; ")}` };
    const now = await readKey();
    if (!now.startsWith("hskey-auth-") || now === old) return { ok: false, why: "after up the laptop still holds the same pre-auth key: it was not replaced" };
    const refused = await probeKey(instance, old, probes[0]!, loginServer);
    // The control: a key made now for the probe's user registers, so the probe itself works.
    const users = await sshExec("vps", `${hsCli()} users list -o json`, { instance });
    const alice = (JSON.parse(users.stdout || "[]") as { id: number | string; name: string }[]).find((u) => u.name === "alice");
    if (!alice) return { ok: false, why: "headscale has no user alice for the control key" };
    const made = await sshExec("vps", `${hsCli()} preauthkeys create -u ${alice.id} -e 10m -o json`, { instance });
    const ctl = JSON.parse(made.stdout || "{}") as { id?: string | number; key?: string };
    if (!ctl.key) return { ok: false, why: `headscale preauthkeys create (control): ${last(made.stderr)}` };
    probeKeyId = String(ctl.id);
    const accepted = await probeKey(instance, ctl.key, probes[1]!, loginServer);
    if (accepted.code !== 0) return { ok: false, why: `the control key was refused too, so the probe proves nothing: ${last(accepted.out)}` };
    if (refused.code === 0) return { ok: false, why: "headscale accepted the laptop's replaced pre-auth key" };
    if (!/expired|invalid|not found|auth.?key|unauthori[sz]ed|rejected/i.test(refused.out)) return { ok: false, why: `tailscale up with the old key failed, but not on the key: ${last(refused.out)}` };
    return { ok: true, why: `key replaced by up; old key refused (${last(refused.out, 1).slice(0, 160)}); a fresh key registers (control)` };
  } finally {
    await deleteProbeNodes(instance, probes);
    if (probeKeyId) await sshExec("vps", `${hsCli()} preauthkeys expire --id ${probeKeyId} -o json`, { instance });
    await fleet.restore();
    await labDeploy(instance, { verb: "up" });
  }
}

/** The lab's lockout guard window (meshfleet:confirmTimeoutSeconds' default). */
const LOCKOUT_CONFIRM_S = 120;

export async function lockoutCheck(instance: number, host = "laptop"): Promise<Verdict> {
  const before = await generationOf(host, instance);
  if (!before?.hash) return { ok: false, why: `agent status on ${host} gave no generation` };
  // SSH only from TEST-NET-1: the deploy comes from the lab's management network, so it is locked out.
  const fleet = await editedFleet(instance, "lockout", (f) => ({ [host]: `${f[host]!.trimEnd()}\nfirewall:\n  sshFrom: [192.0.2.0/24]\n` }));
  let why: Verdict | null = null;
  try {
    const t0 = Date.now();
    const up = await labDeploy(instance, { verb: "up", on: [host] });
    const failedAfter = Date.now() - t0;
    const text = up.errors.join("; ");
    if (up.ok) why = { ok: false, why: `the deploy that limits ${host}'s SSH to 192.0.2.0/24 succeeded` };
    else if (!text.includes(`host ${host}`)) why = { ok: false, why: `the deploy failed without naming ${host}: ${text.slice(0, 300)}` };
    // The confirm's dials stop when the guard's window closes: the failure is the lockout itself,
    // not a later "was not kept" from a dial that got through after the rollback.
    else if (!/could not be confirmed/i.test(text)) why = { ok: false, why: `the deploy failed, but not on the lockout's confirm: ${text.slice(0, 300)}` };
    else if (failedAfter > (LOCKOUT_CONFIRM_S + 60) * 1000) why = { ok: false, why: `the deploy failed only ${(failedAfter / 1000).toFixed(0)} s after it started: the confirm outlasted the guard's ${LOCKOUT_CONFIRM_S} s window` };
    // The guard (confirm timeout 120 s) puts the previous generation back; SSH answers again after it.
    const end = Date.now() + 200_000;
    let after: { generation: string; hash: string } | null = null;
    while (Date.now() < end) {
      after = await generationOf(host, instance);
      if (after) break;
      await sleep(3000);
    }
    if (why) return why;
    if (!after) return { ok: false, why: `${host} is still unreachable over SSH 200 s after the failed deploy: the guard did not roll back` };
    if (after.hash !== before.hash) return { ok: false, why: `${host} runs ${after.hash.slice(0, 12)} (generation ${after.generation}), not its previous ${before.hash.slice(0, 12)}` };
    const v = await sshExec(host, `node ${AGENT_HOST_PATH} verify`, { instance, timeoutMs: 30_000 });
    if (v.code !== 0) return { ok: false, why: `${host} is back on ${before.hash.slice(0, 12)} but agent verify fails: ${last(v.stdout + v.stderr)}` };
    return { ok: true, why: `failed after ${(failedAfter / 1000).toFixed(0)} s naming ${host} (${redact(text).slice(0, 160)}); back on generation ${after.generation} (${after.hash.slice(0, 12)}), agent verify clean` };
  } finally {
    await fleet.restore();
    await labDeploy(instance, { verb: "up" });
  }
}
