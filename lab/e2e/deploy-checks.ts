/**
 * `lab check`'s deploy checks: what the deploy itself promises, each proved
 * by breaking the thing it guards on the real lab hosts.
 *
 *  - a file edited by hand on a host shows up in `meshfleet refresh` on that
 *    host, and `meshfleet up` puts it back (agent verify clean again);
 *  - a host whose SSH key does not match its pin is refused, naming it, and
 *    nothing is sent to it (its generation does not move);
 *  - `meshfleet pin` records the same key the lab saw at boot;
 *  - the stack's state holds none of the lab's secrets in clear.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { AGENT_HOST_PATH } from "../../core/types.ts";
import { labKeyPath, labKnownHostsPath, sshExec } from "../hosts/index.ts";
import { runDeploy, type DeployOptions } from "../../cli/commands/deploy.ts";
import { e2ePaths, STACK } from "./paths.ts";
import { keptSecret, labPulumiEnv, REPO, runPulumi } from "./pulumi.ts";
import { hsCli } from "./coordinator-runtime.ts";
import { labFleetDir } from "./docker-variant.ts";

/** `meshfleet <verb> --stack lab --config-file <lab>/Pulumi.lab.yaml --yes`, in this process. */
export function labDeploy(instance: number, o: Omit<DeployOptions, "stack" | "configFile" | "env">) {
  const p = e2ePaths(instance);
  return runDeploy({ stack: STACK, configFile: p.stackConfig, env: labPulumiEnv(instance), logFile: p.log, ...o });
}

type Verdict = { ok: boolean; why: string };
type Check = (name: string, fn: () => Promise<Verdict>) => Promise<boolean>;

const DRIFT_HOST = "laptop";
// A unit every agent host gets; a comment line is harmless to systemd and still drift.
const DRIFT_FILE = "/etc/systemd/system/meshfleet-metrics.service";

/** The agent's current generation number on a host, from `agent status`. */
async function generation(host: string, instance: number): Promise<string> {
  const r = await sshExec(host, `node ${AGENT_HOST_PATH} status --json 2>/dev/null || node ${AGENT_HOST_PATH} status`, { instance, timeoutMs: 30_000 });
  const text = r.stdout.trim();
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    return String(j.generation ?? j.current ?? JSON.stringify(j).slice(0, 80));
  } catch {
    return /generation\D*(\d+)/i.exec(text)?.[1] ?? text.split("\n")[0] ?? "";
  }
}

export async function deployChecks(instance: number, check: Check): Promise<void> {
  const p = e2ePaths(instance);

  await check(`drift: ${DRIFT_FILE} edited by hand on ${DRIFT_HOST} shows in meshfleet refresh, and meshfleet up repairs it`, async () => {
    const before = await sshExec(DRIFT_HOST, `sha256sum ${DRIFT_FILE}`, { instance });
    if (before.code !== 0) return { ok: false, why: `${DRIFT_HOST}:${DRIFT_FILE} is not there to edit (${before.stderr.trim()})` };
    await sshExec(DRIFT_HOST, `echo '# edited by hand (lab check)' >> ${DRIFT_FILE}`, { instance });
    const verify = await sshExec(DRIFT_HOST, `node ${AGENT_HOST_PATH} verify`, { instance, timeoutMs: 30_000 });
    if (verify.code === 0) return { ok: false, why: "agent verify did not notice the edit, so refresh cannot either" };
    const refresh = await labDeploy(instance, { verb: "refresh" });
    if (!refresh.ok) return { ok: false, why: `refresh failed: ${refresh.errors.join("; ")}` };
    const drifted = refresh.resources.filter((r) => r.op !== "same" && r.op !== "read" && r.op !== "refresh" || (r.diff?.length ?? 0) > 0);
    const changedHosts = [...new Set(refresh.hosts.filter((h) => Object.entries(h.ops).some(([op, n]) => op !== "same" && op !== "read" && n > 0)).map((h) => h.host))];
    const seen = drifted.some((r) => r.host === DRIFT_HOST) || changedHosts.includes(DRIFT_HOST);
    if (!seen) return { ok: false, why: `refresh reported no change on ${DRIFT_HOST} (changes: ${JSON.stringify(refresh.changes)})` };
    const up = await labDeploy(instance, { verb: "up" });
    if (!up.ok) return { ok: false, why: `up failed: ${up.errors.join("; ")}` };
    const after = await sshExec(DRIFT_HOST, `sha256sum ${DRIFT_FILE} && node ${AGENT_HOST_PATH} verify`, { instance, timeoutMs: 30_000 });
    if (after.code !== 0) return { ok: false, why: `after up, agent verify still fails: ${(after.stdout + after.stderr).trim().split("\n").slice(-2).join(" | ")}` };
    if (after.stdout.split(" ")[0] !== before.stdout.split(" ")[0]) return { ok: false, why: "after up the file differs from what was deployed" };
    return { ok: true, why: `refresh: ${DRIFT_HOST} changed (${JSON.stringify(refresh.changes)}); up: ${JSON.stringify(up.changes)}; file restored, agent verify clean` };
  });

  await check(`a host whose key does not match its pin (${DRIFT_HOST}) is refused before anything is sent, and the next up --refresh repairs the hand edit it left`, async () => {
    let repaired = "";
    const verdict = await pinRefused((r) => {
      repaired = r;
    });
    if (!verdict.ok) return verdict;
    return repaired ? { ok: false, why: `${verdict.why}; but ${repaired}` } : { ...verdict, why: `${verdict.why}; the next up --refresh repaired the hand edit (agent verify clean)` };
  });

  /** The pin check itself; `notRepaired` hears when the up --refresh after it left the hand edit. */
  async function pinRefused(notRepaired: (why: string) => void): Promise<Verdict> {
    const known = readFileSync(labKnownHostsPath({ instance }), "utf8");
    const dir = mkdtempSync(join(tmpdir(), "mf-pin-check-"));
    const env = labPulumiEnv(instance);
    const cfgBefore = readFileSync(p.stackConfig, "utf8");
    try {
      const k = join(dir, "other");
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", k]);
      const other = readFileSync(`${k}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
      // The deployed fleet (hosts/lab names instance 0's addresses; another instance or the docker variant has its own).
      const address = (parse(readFileSync(join(labFleetDir(instance), `${DRIFT_HOST}.yaml`), "utf8")) as { address: string }).address;
      const lines = known.split("\n").filter(Boolean);
      const mine = lines.filter((l) => l.split(/\s+/)[0] === address || l.split(/\s+/)[0]?.startsWith(`[${address}]`));
      if (mine.length === 0) return { ok: false, why: `the lab's known_hosts has no entry for ${address}` };
      const wrong = [...lines.filter((l) => !mine.includes(l)), ...mine.map((l) => `${l.split(/\s+/)[0]} ${other}`)];
      writeFileSync(join(dir, "known_hosts"), wrong.join("\n") + "\n");
      const gen0 = await generation(DRIFT_HOST, instance);
      // A change on that host only, so a deploy that ignored the pin would have something to send.
      await sshExec(DRIFT_HOST, `echo '# edited by hand (pin check)' >> ${DRIFT_FILE}`, { instance });
      const set = await runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:knownHostsPath", join(dir, "known_hosts")], { env });
      if (set.code !== 0) return { ok: false, why: `pulumi config set: ${set.stderr.trim()}` };
      const r = await labDeploy(instance, { verb: "up", on: [DRIFT_HOST], refresh: true });
      const gen1 = await generation(DRIFT_HOST, instance);
      const text = r.errors.join("; ");
      if (r.ok) return { ok: false, why: "the deploy succeeded against a host whose key does not match its pin" };
      if (!text.includes(DRIFT_HOST)) return { ok: false, why: `failed without naming ${DRIFT_HOST}: ${text}` };
      if (!/host key|known_hosts|REMOTE HOST IDENTIFICATION|pin/i.test(text)) return { ok: false, why: `failed, but not on the host key: ${text}` };
      if (gen1 !== gen0) return { ok: false, why: `${DRIFT_HOST} moved from generation ${gen0} to ${gen1}` };
      return { ok: true, why: `refused: ${text.slice(0, 200)}; ${DRIFT_HOST} stayed on generation ${gen0}` };
    } finally {
      writeFileSync(p.stackConfig, cfgBefore);
      const up = await labDeploy(instance, { verb: "up", refresh: true });
      // Right after the refused run, up --refresh must repair the hand edit: the refused run's
      // refresh stored the drift, and a second refresh once forgot it (the stored hash carried the
      // drift note). Then repair it for the checks that follow.
      const v = await sshExec(DRIFT_HOST, `node ${AGENT_HOST_PATH} verify`, { instance, timeoutMs: 30_000 });
      if (v.code !== 0 || !up.ok) {
        notRepaired(`up --refresh after it ${up.ok ? `left the hand edit (${JSON.stringify(up.changes)}; agent verify: ${(v.stdout + v.stderr).trim().split("\n").slice(-1)[0]})` : `failed: ${up.errors.join("; ").slice(0, 200)}`}`);
        await labDeploy(instance, { verb: "refresh" });
        await labDeploy(instance, { verb: "up" });
      }
      rmSync(dir, { recursive: true, force: true });
    }
  }

  await check("meshfleet pin records the key the lab saw at boot (ssh-keyscan, ssh-keygen -F)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mf-pin-"));
    try {
      const file = join(dir, "known_hosts");
      const r = spawnSync(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "pin", "vps", "--stack", STACK, "--hosts-dir", labFleetDir(instance), "--known-hosts", file, "--json"], { encoding: "utf8", cwd: REPO, timeout: 60_000 });
      if (r.status !== 0) return { ok: false, why: `meshfleet pin vps: ${r.stderr.trim()}` };
      const got = JSON.parse(r.stdout) as { key: string; address: string; port: number; fingerprint: string };
      const lab = spawnSync("ssh-keygen", ["-F", got.port === 22 ? got.address : `[${got.address}]:${got.port}`, "-f", labKnownHostsPath({ instance })], { encoding: "utf8" });
      const keys = lab.stdout.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => l.split(/\s+/).slice(1, 3).join(" "));
      return keys.includes(got.key) ? { ok: true, why: `vps ${got.fingerprint} = the lab's boot-time key` } : { ok: false, why: `pin recorded ${got.key.slice(0, 40)}…, the lab saw ${keys.map((k) => k.slice(0, 40)).join(", ") || "nothing"}` };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  await check("the stack's state holds none of the lab's secrets in clear (key seed, derived keys, pre-auth keys, SSH key)", async () => {
    const files = stateFiles(join(p.dir, "state"));
    if (files.length === 0) return { ok: false, why: `no state files under ${join(p.dir, "state")}` };
    const state = files.map((f) => readFileSync(f, "utf8")).join("\n");
    const secrets: Record<string, string[]> = {
      "key seed": [keptSecret(p.keySeed)],
      passphrase: [keptSecret(p.passphrase)],
      "SSH private key": readFileSync(labKeyPath({ instance }), "utf8").split("\n").filter((l) => l.length > 20 && !l.startsWith("-----")),
    };
    const noise = await sshExec("vps", "cat /var/lib/headscale/noise_private.key 2>/dev/null; cat /var/lib/derper/derper.key 2>/dev/null; ls /var/lib/headscale", { instance });
    secrets["derived keys (noise, DERP)"] = [...noise.stdout.matchAll(/(privkey|nodekey|private)[:\w]*[:=]?\s*"?([0-9a-f]{64})/gi)].map((m) => m[2]!).concat(noise.stdout.split(/\s+/).filter((w) => /^privkey:[0-9a-f]{64}$/.test(w)).map((w) => w.slice(8)));
    const hs = await sshExec("vps", `${hsCli()} preauthkeys list -o json 2>/dev/null || true`, { instance });
    secrets["pre-auth keys"] = [...hs.stdout.matchAll(/hskey-auth-[A-Za-z0-9_-]{8,}|"key":\s*"([A-Za-z0-9_-]{20,})"/g)].map((m) => m[1] ?? m[0]);
    const found = Object.entries(secrets).flatMap(([what, vals]) => vals.filter((v) => v && v.length >= 12 && state.includes(v)).map(() => what));
    const counted = Object.entries(secrets).map(([k, v]) => `${k}: ${v.length}`).join(", ");
    if (secrets["key seed"]!.length === 0 || secrets["SSH private key"]!.length === 0) return { ok: false, why: `could not read the secrets to look for (${counted})` };
    return found.length === 0 ? { ok: true, why: `${files.length} state files, none holds any of (${counted})` } : { ok: false, why: `in clear in the state: ${[...new Set(found)].join(", ")}` };
  });
}

/** Every file of a file backend (checkpoints, history, backups). */
function stateFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const x = join(d, f);
      if (statSync(x).isDirectory()) walk(x);
      else out.push(x);
    }
  };
  walk(dir);
  return out;
}

