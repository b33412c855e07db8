/**
 * bench/plan-scale command: the whole `meshfleet plan` command, as a
 * process, on a generated fleet (bench/eval-scale/generate.ts, 10,000 hosts
 * by default) in a throwaway git repository: a base commit, then a head
 * that changes the port of a rule from tag:server (who reaches what
 * changes) and one host's acceptRoutes. Each round runs,
 * in turn (the order rotating):
 *
 *  - `plan --base HEAD`, the base read from git objects (the default);
 *  - the same with MESHFLEET_PLAN_BASE=archive: the base extracted with
 *    `git archive | tar -x` into a temporary folder, as before;
 *  - `check` on the same fleet: one evaluation, the baseline;
 *  - `plan --base HEAD` on one thread (MESHFLEET_THREADS=1): the working
 *    tree evaluated before the base, not beside it (the two plans above
 *    ask for two threads: left to choose, plan takes a worker only while
 *    the load average leaves a core free);
 *  - with `--before DIR` (a copy of an earlier revision with its CLI built,
 *    asked for two threads as the first plan),
 *    that revision's `plan --base HEAD`.
 *
 * and prints the median (by CPU) of each: CPU (user + sys of the process and
 * the git and tar processes it waited for, which holds on a shared machine),
 * wall, peak RSS, and the ratios to check and to the extracted base. The two
 * plans' outputs must be the same bytes, or the run stops. Objects are
 * packed (git repack) as in a clone. Needs /usr/bin/time; build the CLI
 * first (node cli/build.mjs), else bin/meshfleet.mjs runs it through tsx.
 *
 *   node --import tsx bench/plan-scale/command.ts [--hosts 10000] [--rules 100] [--runs 5] [--before DIR] [--keep]
 */
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { generateFleet } from "../eval-scale/generate.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const argv = process.argv.slice(2);
const arg = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const hosts = Number(arg("--hosts", "10000"));
const rules = Number(arg("--rules", "100"));
const runs = Number(arg("--runs", "5"));
const TIME = "/usr/bin/time";

type Mode = { name: string; args: string[]; env?: Record<string, string>; cli?: string };
type Sample = { cpu: number; user: number; sys: number; wall: number; rssMb: number; out: string; code: number };

// The plans on two threads are asked for (MESHFLEET_THREADS=2): left to choose, plan uses a worker only while
// the load average leaves a core free, and the runs of a bench one after another keep it near 1 on 2 cores.
const modes: Mode[] = [
  { name: "plan, base from git objects", args: ["plan", "--base", "HEAD", "--hosts-dir", "hosts/bench", "--stack", "bench"], env: { MESHFLEET_THREADS: "2" } },
  { name: "plan, base extracted", args: ["plan", "--base", "HEAD", "--hosts-dir", "hosts/bench", "--stack", "bench"], env: { MESHFLEET_PLAN_BASE: "archive", MESHFLEET_THREADS: "2" } },
  { name: "check (baseline)", args: ["check", "--hosts-dir", "hosts/bench", "--stack", "bench"] },
  { name: "plan, one thread", args: ["plan", "--base", "HEAD", "--hosts-dir", "hosts/bench", "--stack", "bench"], env: { MESHFLEET_THREADS: "1" } },
];
const before = arg("--before", "");
if (before) modes.push({ name: "plan before (--before)", args: modes[0].args, env: modes[0].env, cli: path.resolve(before) });

function once(repo: string, m: Mode): Sample {
  const times = path.join(repo, ".time");
  const r = spawnSync(TIME, ["-f", "%U %S %e %M", "-o", times, process.execPath, path.join(m.cli ?? root, "bin", "meshfleet.mjs"), ...m.args], {
    cwd: repo,
    env: { ...process.env, ...m.env },
    encoding: "utf8",
    maxBuffer: 256 << 20,
  });
  const [user, sys, wall, rssKb] = readFileSync(times, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
  if (r.status !== 0 && m.args[0] === "plan") throw new Error(`${m.name} exited ${r.status}: ${r.stderr.slice(0, 2000)}`);
  return { cpu: (user + sys) * 1000, user: user * 1000, sys: sys * 1000, wall: wall * 1000, rssMb: rssKb / 1024, out: r.stdout, code: r.status ?? -1 };
}

function setup(): string {
  const repo = mkdtempSync(path.join(os.tmpdir(), "meshfleet-plan-command-"));
  const dir = path.join(repo, "hosts", "bench");
  mkdirSync(dir, { recursive: true });
  // A policy over fleet.yaml's YAML limit (~120 rules) goes to policy.hujson.
  generateFleet(dir, hosts, rules, { policyFile: rules > 100 });
  const git = (...a: string[]) => execFileSync("git", a, { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", "base");
  git("repack", "-a", "-d", "-q");
  // The head: the port of the last rule from tag:server (who reaches what changes), and one client that stops accepting routes.
  const i = rules - 2 + (rules % 2);
  const was = JSON.stringify(`tag:t${i % 10}:${1000 + i}`);
  const policy = [path.join(dir, "policy.hujson"), path.join(dir, "fleet.yaml")].find((f) => existsSync(f) && readFileSync(f, "utf8").includes(was))!;
  writeFileSync(policy, readFileSync(policy, "utf8").replace(was, JSON.stringify(`tag:t${i % 10}:${9000 + i}`)));
  const h = path.join(dir, "h1.yaml");
  writeFileSync(h, readFileSync(h, "utf8").replace("acceptRoutes: true", "acceptRoutes: false"));
  return repo;
}

function main() {
  if (!existsSync(TIME)) throw new Error(`${TIME} is needed (it reports the command's CPU with its git and tar processes, and its peak RSS)`);
  const load = () => os.loadavg().map((x) => x.toFixed(1)).join(" ");
  console.log(`load average ${load()} on ${os.cpus().length} cores`);
  const t0 = performance.now();
  const repo = setup();
  console.log(`fleet: ${hosts} hosts, ${rules + 1} rules, in a git repository (set up in ${((performance.now() - t0) / 1000).toFixed(1)} s); ${runs} rounds, order rotating`);
  try {
    const samples: Sample[][] = modes.map(() => []);
    for (let i = 0; i < runs; i++)
      for (let k = 0; k < modes.length; k++) {
        const j = (i + k) % modes.length;
        samples[j].push(once(repo, modes[j]));
      }
    const plans = samples.filter((_, j) => modes[j].args[0] === "plan");
    const outs = new Set(plans.flat().map((s) => createHash("sha256").update(s.out).digest("hex")));
    if (outs.size !== 1) throw new Error(`the plans' outputs differ (${outs.size} different outputs)`);
    const median = (xs: Sample[]) => [...xs].sort((a, b) => a.cpu - b.cpu)[Math.floor(xs.length / 2)];
    const m = samples.map(median);
    const ms = (x: number) => x.toFixed(0).padStart(6);
    console.log(`median of ${runs} by CPU, ms (CPU = user + sys, with the git and tar processes)`);
    console.log(`${"".padEnd(31)}    CPU    user     sys    wall   peak RSS   CPU / check   CPU / extracted`);
    modes.forEach((mode, j) =>
      console.log(`${mode.name.padEnd(31)} ${ms(m[j].cpu)}  ${ms(m[j].user)}  ${ms(m[j].sys)}  ${ms(m[j].wall)}  ${m[j].rssMb.toFixed(0).padStart(6)} MB   ${(m[j].cpu / m[2].cpu).toFixed(2).padStart(8)}x   ${(m[j].cpu / m[1].cpu).toFixed(2).padStart(8)}x`),
    );
    console.log(`every run, CPU ms: ${modes.map((mode, j) => `${mode.name} ${samples[j].map((s) => s.cpu.toFixed(0)).join(" ")}`).join("; ")}`);
    console.log(`every run, wall ms: ${modes.map((mode, j) => `${mode.name} ${samples[j].map((s) => s.wall.toFixed(0)).join(" ")}`).join("; ")}`);
    const wallMedian = (j: number) => [...samples[j].map((s) => s.wall)].sort((a, b) => a - b)[Math.floor(runs / 2)];
    console.log(`median wall: plan on two threads ${wallMedian(0).toFixed(0)} ms, one thread ${wallMedian(3).toFixed(0)} ms (${(wallMedian(0) / wallMedian(3)).toFixed(2)}x)`);
    console.log(`plan output: ${samples[0][0].out.length} bytes, the same from every plan; check exited ${m[2].code}`);
    console.log(`load average ${load()} at the end`);
  } finally {
    if (argv.includes("--keep")) console.log(`kept ${repo}`);
    else rmSync(repo, { recursive: true, force: true });
  }
}

main();
