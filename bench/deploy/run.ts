/**
 * bench/deploy: `meshfleet up` on the lab's hosts, against a floor measured
 * in the same run, with ratios.
 *
 *   node --import tsx bench/deploy/run.ts [--instance 0] [--runs 3]
 *
 * Needs a deployed lab (`meshfleet lab up`); leaves it deployed as it found it.
 * Measured, each through runDeploy (the code behind `meshfleet up`):
 *   - no-op up (median of --runs);
 *   - a one-host change: one more advertised route on lxc-tailscale;
 *   - an all-hosts change: one file (the sshd drop-in) on every host;
 *   - refresh;
 *   - the floor: per host, in parallel, one ssh piping a tar of that host's
 *     rendered files into a scratch folder, then `nft -c -f` of its ruleset
 *     and `sysctl -p` of its sysctl file (what any push tool must at least do).
 * Not measured here: the first deploy (see `lab up`'s "meshfleet up" step,
 * printed from up.json when present) and Ansible (not installed on the lab's
 * Debian roots, which have no Python).
 */
import { execa } from "execa";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runDeploy, type DeployResult } from "../../cli/commands/deploy.ts";
import { sshArgs } from "../../lab/hosts/index.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO, runPulumi } from "../../lab/e2e/pulumi.ts";
import { fleetHosts } from "../../lab/e2e/up.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const instance = arg("instance", 0);
const runs = arg("runs", 3);
const p = e2ePaths(instance);
const env = labPulumiEnv(instance);
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function up(label: string, verb: "up" | "refresh" = "up"): Promise<{ ms: number; r: DeployResult }> {
  const t = Date.now();
  const r = await runDeploy({ verb, stack: STACK, configFile: p.stackConfig, env, logFile: p.log });
  const ms = Date.now() - t;
  if (!r.ok) throw new Error(`${label}: ${r.errors.join("; ")}`);
  console.log(`  ${label.padEnd(34)} ${s(ms).padStart(8)}  ${JSON.stringify(r.changes)}`);
  return { ms, r };
}

async function setHostsDir(dir: string): Promise<void> {
  const r = await runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:hostsDir", dir], { env });
  if (r.code !== 0) throw new Error(`pulumi config set meshfleet:hostsDir: ${r.stderr.trim()}`);
}

/** A copy of hosts/lab with `edit` applied to one file; returns its folder. */
function editedFleet(name: string, file: string, edit: (text: string) => string): string {
  const dir = join(p.dir, `bench-${name}`);
  rmSync(dir, { recursive: true, force: true });
  cpSync(join(REPO, "hosts", "lab"), dir, { recursive: true });
  const f = join(dir, file);
  const before = readFileSync(f, "utf8");
  const after = edit(before);
  if (after === before) throw new Error(`${file}: the bench's edit no longer applies`);
  writeFileSync(f, after);
  return dir;
}

/** One ssh per host, in parallel: tar of its rendered files, nft -c -f, sysctl -p. */
async function floor(): Promise<number> {
  const rendered = join(p.dir, "rendered");
  const hosts = fleetHosts().filter((h) => existsSync(join(rendered, h)));
  const t = Date.now();
  await Promise.all(
    hosts.map(async (h) => {
      const dir = join(rendered, h);
      const nft = existsSync(join(dir, "meshfleet", "nftables.nft")) ? "nft -c -f /tmp/mf-floor/meshfleet/nftables.nft" : "true";
      const sysctl = readdirSync(join(dir, "etc")).includes("sysctl.d") ? "sysctl -q -p /tmp/mf-floor/etc/sysctl.d/*.conf" : "true";
      const tar = execa("tar", ["-C", dir, "-cf", "-", "."]);
      const ssh = execa("ssh", [...sshArgs(h, { instance }), `rm -rf /tmp/mf-floor && mkdir -p /tmp/mf-floor && tar -C /tmp/mf-floor -xf - && ${nft} && ${sysctl}`], { reject: false });
      tar.stdout!.pipe(ssh.stdin!);
      const r = await ssh;
      if (r.exitCode !== 0) throw new Error(`floor on ${h}: ${String(r.stderr).trim()}`);
    }),
  );
  return Date.now() - t;
}

async function main(): Promise<void> {
  console.log(`bench/deploy on lab ${instance} (${fleetHosts().join(", ")}); load ${(await import("node:os")).loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  const first = existsSync(p.upResult) ? (JSON.parse(readFileSync(p.upResult, "utf8")) as { steps?: { step: string; ms: number; detail?: string }[] }).steps?.find((x) => x.step === "meshfleet up") : undefined;
  if (first) console.log(`  ${"last lab up's deploy (up.json)".padEnd(34)} ${s(first.ms).padStart(8)}  ${first.detail ?? ""}`);
  await up("settle (not counted)");
  const noop: number[] = [];
  for (let i = 0; i < runs; i++) noop.push((await up(`no-op up #${i + 1}`)).ms);
  const floors: number[] = [];
  for (let i = 0; i < runs; i++) {
    floors.push(await floor());
    console.log(`  ${`floor #${i + 1} (ssh+tar+nft+sysctl)`.padEnd(34)} ${s(floors.at(-1)!).padStart(8)}`);
  }
  const original = join(REPO, "hosts", "lab");
  let one = 0;
  let all = 0;
  try {
    await setHostsDir(editedFleet("route", "lxc-tailscale.yaml", (t) => t.replace("lan: [192.168.8.0/24]", "lan: [192.168.8.0/24, 192.168.9.0/24]").replace("routes: [192.168.8.0/24]", "routes: [192.168.8.0/24, 192.168.9.0/24]")));
    one = (await up("one host: one more route")).ms;
    await setHostsDir(editedFleet("file", "_tools.yaml", (t) => `${t}sshd:\n  permitRootLogin: "yes"\n`));
    all = (await up("all hosts: one file (sshd drop-in)")).ms;
  } finally {
    await setHostsDir(original);
    await up("back to hosts/lab (not counted)");
  }
  const refresh = (await up("refresh", "refresh")).ms;
  const n = median(noop);
  const f = median(floors);
  console.log("");
  console.log(`no-op up ${s(n)} (target <= 4 s: ${n <= 4000 ? "met" : "missed"}); floor ${s(f)}; no-op / floor ${(n / f).toFixed(1)}x`);
  console.log(`one-host change ${s(one)} = ${(one / (f + n)).toFixed(2)}x (floor + no-op) (target <= 3x: ${one <= 3 * (f + n) ? "met" : "missed"})`);
  console.log(`all-hosts change ${s(all)} = ${(all / one).toFixed(2)}x the one-host change (hosts in parallel: target < 1.5x)`);
  console.log(`refresh ${s(refresh)} = ${(refresh / n).toFixed(2)}x no-op up`);
}

main().catch((e) => {
  console.error(`bench/deploy: ${(e as Error).message}`);
  process.exitCode = 1;
});
