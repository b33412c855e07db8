/**
 * bench/eval-scale: load + evaluate + render generated fleets of 10, 100 and
 * 1,000 hosts (and 10,000: `--sizes 1000,10000`, issue 19), each size in a
 * fresh process (so peak RSS is its own, and the
 * figure includes the JIT warming up, as a `meshfleet` command does), and
 * print per phase (load = read + YAML + loader checks, evaluate = modules +
 * fleet phase, render = every host's bundle and files, allArtifacts) the CPU
 * time (user + sys: holds when other work shares the cores) and the wall time
 * (what a person waits), the peak memory, the 1,000/100 and 10,000/1,000
 * growth, the targets (1,000 hosts < 1 s and < 300 MB; 10,000 hosts < 2 s
 * and < 500 MB), and the ratio
 * against a baseline measured in the same run: only reading and YAML-parsing
 * the same files (the floor any evaluator pays).
 *
 * Then the whole process at the largest size (issue 13 item 10), as a
 * person runs it: `meshfleet --help`, `check` and `render --out` (into a new
 * folder, and over the earlier render), each a fresh `node bin/meshfleet.mjs`,
 * beside same-run baselines: `node -e 0` (starting node) and a plain loop
 * writing the same files (paths and sizes: the same folders) with
 * mkdirSync/writeFileSync (the floor any render pays for its files). CPU of a child is read from
 * /proc/self/stat (cutime + cstime, 10 ms ticks), so it holds on a loaded
 * machine; where /proc is missing only the wall time is shown.
 *
 *   node --import tsx bench/eval-scale/run.ts [--sizes 10,100,1000] [--runs 3] [--no-process | --process-only] [--build] [--cli-root DIR] [--tmp DIR]
 *
 * Each size also runs on threads (cli/parallel-eval.ts) through tsx, and, when dist/cli is fresh, as
 * `meshfleet render` runs it: the prebuilt CLI's own evaluateParallel and worker, in-process (the
 * files are not written: see the whole-process runs for that).
 *
 * --build rebuilds the prebuilt CLI (npm run build:cli) first; --cli-root
 * DIR runs another checkout's bin/meshfleet.mjs (a before and after); without a
 * fresh dist/cli, bin/meshfleet.mjs runs the TypeScript through tsx, and the
 * figures say so.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const self = fileURLToPath(import.meta.url);
import { generateFleet } from "./generate.ts";

type Phase = { cpu: number; wall: number };
type Sample = { ms: number; wallMs: number; hosts: number; maxRssMb: number; phases: Record<string, Phase> };

async function child(mode: string, dir: string) {
  // Modules are loaded (and compiled by tsx) before the clock starts: the
  // figure is loading, evaluation and rendering, not start-up.
  const { parse } = await import("yaml");
  const { evaluateLoaded, formatDiagnostics } = await import("../../core/index.ts");
  const { loadFleetDir } = await import("../../core/load.ts");
  const { REGISTRY } = await import("../../modules/index.ts");
  const { allArtifacts } = await import("../../core/artifacts.ts");
  const { evaluateParallel } = await import("../../cli/parallel-eval.ts");
  // V8 tuned as `meshfleet check` and `render` run (cli/short-run.ts: no optimizing tier).
  if (mode !== "baseline") (await import("../../cli/short-run.ts")).tuneForShortRun();
  const phases: Record<string, Phase> = {};
  const clock = () => ({ c: process.cpuUsage(), t: performance.now() });
  const lap = (name: string, from: ReturnType<typeof clock>) => {
    const c = process.cpuUsage(from.c);
    phases[name] = { cpu: (c.user + c.system) / 1000, wall: performance.now() - from.t };
    return clock();
  };
  const start = clock();
  let at = start;
  let hosts = 0;
  if (mode === "baseline") {
    for (const f of readdirSync(dir)) { parse(readFileSync(path.join(dir, f), "utf8")); hosts++; }
  } else if (mode === "parallel") {
    // cli/parallel-eval.ts: the same load + evaluate + render, shards on threads (its worker threads start inside the clock).
    const r = await evaluateParallel(dir, "bench", { render: true, keepHosts: false, threadTimes: true, minHosts: 0, threads: os.cpus().length });
    if (!r.hostNames || !r.artifacts) throw new Error(formatDiagnostics(r.diagnostics));
    if (!r.path.startsWith("sharded")) console.error(`parallel: ${r.path}`);
    hosts = r.hostNames.length;
    at = lap("load+evaluate+render", at);
    // Each thread's own CPU (its busiest is the least wall time two idle cores could give).
    phases.threads = { cpu: Math.max(...(r.threadCpuMs ?? [phases["load+evaluate+render"].cpu])), wall: 0 };
  } else {
    const loaded = await loadFleetDir(dir);
    at = lap("load", at);
    const r = evaluateLoaded(REGISTRY, loaded, "bench");
    if (!r.fleet) throw new Error(formatDiagnostics(r.diagnostics));
    hosts = Object.keys(r.fleet.hosts).length;
    at = lap("evaluate", at);
    allArtifacts(r.fleet);
    at = lap("render", at);
  }
  const all = lap("total", start);
  void all;
  const sample: Sample = { ms: phases.total.cpu, wallMs: phases.total.wall, hosts, maxRssMb: process.resourceUsage().maxRSS / 1024, phases };
  console.log(JSON.stringify(sample));
}

/**
 * A child's command line. "prebuilt" (as `meshfleet render` runs it: the prebuilt CLI's modules and
 * worker, when dist/cli is fresh) is a plain node process: under `--import tsx` node would start the
 * worker threads with tsx too.
 */
const childArgs = (mode: string, dir: string) =>
  mode === "prebuilt" ? [path.join(path.dirname(self), "prebuilt-child.mjs"), dir] : ["--import", "tsx", self, "--child", mode, dir];

/** `runs` cold processes of each mode, alternating (a change in the machine's load hits both alike); the median by CPU of each. */
function measure(modes: string[], dir: string, runs: number): Sample[] {
  const out: Sample[][] = modes.map(() => []);
  for (let i = 0; i < runs; i++)
    modes.forEach((mode, m) =>
      out[m].push(JSON.parse(execFileSync(process.execPath, childArgs(mode, dir), { encoding: "utf8" }).trim().split("\n").pop()!)),
    );
  return out.map((xs) => xs.sort((a, b) => a.ms - b.ms)[Math.floor(xs.length / 2)]);
}

const cw = (p: Phase | undefined) => (p ? `${p.cpu.toFixed(0).padStart(5)} / ${p.wall.toFixed(0).padStart(5)}` : "");

// ---------------------------------------------------------------- whole process

// --cli-root DIR: another checkout's bin/meshfleet.mjs (a before/after of the CLI on the same fleets).
const cliArg = process.argv.indexOf("--cli-root");
const repo = path.resolve(cliArg > 0 ? process.argv[cliArg + 1] : path.join(path.dirname(self), "../.."));
const bin = path.join(repo, "bin", "meshfleet.mjs");
/** This checkout (the in-process modes always run its code, the prebuilt one its dist/cli; --cli-root changes only the whole-process runs). */
const here = path.resolve(path.dirname(self), "../..");

/** CPU (user + sys) of this process's waited-for children, ms; undefined without /proc. */
function childrenCpu(): number | undefined {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields from the 3rd on
    return ((Number(f[13]) + Number(f[14])) * 1000) / 100; // cutime, cstime (fields 16, 17), USER_HZ 100
  } catch {
    return undefined;
  }
}

/** One child process: its CPU and wall time; throws on a non-zero exit. */
function runProcess(args: string[]): Phase {
  const c0 = childrenCpu();
  const t0 = performance.now();
  const r = spawnSync(process.execPath, args, { cwd: repo, encoding: "utf8", maxBuffer: 64 << 20 });
  const wall = performance.now() - t0;
  const c1 = childrenCpu();
  if (r.status !== 0) throw new Error(`node ${args.join(" ")}: exit ${r.status ?? r.signal}\n${r.stderr}`);
  return { cpu: c0 === undefined || c1 === undefined ? NaN : c1 - c0, wall };
}

/** A plain loop: the render's files (same paths, so the same folders, and sizes), each folder made once, each file written: what writing them costs at least. */
const WRITE_LOOP = `
const fs = require("node:fs"), path = require("node:path");
const [out, list] = [process.argv[1], JSON.parse(fs.readFileSync(process.argv[2], "utf8"))];
const dirs = new Set();
for (const [f] of list) for (let d = path.dirname(f); d !== "." && !dirs.has(d); d = path.dirname(d)) dirs.add(d);
fs.mkdirSync(out, { recursive: true });
for (const d of [...dirs].sort((a, b) => a.length - b.length)) fs.mkdirSync(path.join(out, d));
for (const [f, n] of list) fs.writeFileSync(path.join(out, f), "x".repeat(n));
`;

/** The prebuilt CLI's state: fresh (bin/meshfleet.mjs runs it) or not (bin runs tsx). */
async function prebuiltFresh(root = repo): Promise<boolean> {
  const { freshManifest } = (await import(pathToFileURL(path.join(root, "bin", "meshfleet.mjs")).href)) as { freshManifest: () => Promise<unknown> };
  return (await freshManifest()) !== null;
}

const median = (xs: Phase[]): Phase => {
  const by = (k: keyof Phase) => [...xs].map((x) => x[k]).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return { cpu: by("cpu"), wall: by("wall") };
};

async function wholeProcess(root: string, dir: string, hosts: number, runs: number, fresh: boolean) {
  const cases: [string, (i: number) => string[]][] = [
    ["node -e 0 (starting node)", () => ["-e", "0"]],
    ["meshfleet --help", () => [bin, "--help"]],
    [`meshfleet check (${hosts} hosts)`, () => [bin, "check", "--hosts-dir", dir]],
    ["meshfleet render --out NEW", (i) => [bin, "render", "--hosts-dir", dir, "--out", path.join(root, `render-new-${i}`)]],
    ["meshfleet render --out EARLIER", () => [bin, "render", "--hosts-dir", dir, "--out", path.join(root, "render-again")]],
  ];
  // The sizes of the files a render writes (taken from one, before the clock), for the plain loop.
  runProcess([bin, "render", "--hosts-dir", dir, "--out", path.join(root, "render-again")]);
  const written = readFileSync(path.join(root, "render-again", ".meshfleet-render"), "utf8").split("\n").slice(1).filter(Boolean);
  const listFile = path.join(root, "render-files.json");
  writeFileSync(listFile, JSON.stringify(written.map((f) => [f, statSync(path.join(root, "render-again", f)).size])));
  const loop = (i: number) => ["-e", WRITE_LOOP, path.join(root, `loop-${i}`), listFile];
  const all: [string, (i: number) => string[]][] = [...cases, [`plain loop writing the same ${written.length} files`, loop]];
  const samples: Phase[][] = all.map(() => []);
  // Every run writes a folder of its own, and none is removed until the end: on ext4 without a
  // journal (this machine's disk) a new inode skips every inode freed in the last 60 s (300 s while
  // its inode table block is not yet written back: ext4's recently_deleted), one buffer lookup each,
  // so creating ~22,000 files and folders just after removing as many cost 5-20 s of system CPU
  // instead of about 0.5 s. Removing each output between runs measured mostly that.
  for (let i = 0; i < runs; i++) all.forEach(([, args], k) => samples[k].push(runProcess(args(i))));
  const m = samples.map(median);
  const [start, help, check, renderNew, renderAgain, write] = m;
  console.log(`whole process, ${hosts} hosts, ${fresh ? "prebuilt CLI (dist/cli fresh)" : "dist/cli NOT fresh: bin/meshfleet.mjs ran the TypeScript through tsx (--build to rebuild)"}; median of ${runs}, ms as CPU / wall`);
  all.forEach(([name], k) => console.log(`  ${name.padEnd(40)} ${cw(m[k])}`));
  const r = (a: number, b: number) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : "n/a");
  console.log(`  --help: ${r(help.cpu, start.cpu)} CPU (${r(help.wall, start.wall)} wall) of starting node; target <= 150 ms wall: ${help.wall <= 150 ? "met" : "NOT met"} (${help.wall.toFixed(0)} ms)`);
  // The floor of a render: evaluating (check) plus writing as many files (the loop), less one node start counted twice.
  const floor = { cpu: check.cpu + write.cpu - start.cpu, wall: check.wall + write.wall - start.wall };
  console.log(`  render NEW: ${r(renderNew.cpu, floor.cpu)} CPU (${r(renderNew.wall, floor.wall)} wall) of check + the plain loop; EARLIER (over the last render): ${r(renderAgain.cpu, floor.cpu)} CPU`);
  console.log(`  render target <= 1.5 s: ${renderNew.wall <= 1500 ? "met" : "NOT met"} by wall (${renderNew.wall.toFixed(0)} ms), ${renderNew.cpu <= 1500 ? "met" : "NOT met"} by CPU (${renderNew.cpu.toFixed(0)} ms; writing the files alone takes ${write.cpu.toFixed(0)} ms CPU here)`);
  console.log(`  render EARLIER: ${r(renderAgain.cpu, renderNew.cpu)} CPU (${r(renderAgain.wall, renderNew.wall)} wall) of render NEW`);
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === "--child") return child(argv[1], argv[2]);
  const sizes = (argv[argv.indexOf("--sizes") + 1] && argv.includes("--sizes") ? argv[argv.indexOf("--sizes") + 1] : "10,100,1000").split(",").map(Number);
  const runs = argv.includes("--runs") ? Number(argv[argv.indexOf("--runs") + 1]) : 3;
  // --tmp DIR: where the fleets and the renders go (another filesystem, e.g. a fresh one with no recent deletions).
  const root = mkdtempSync(path.join(argv.includes("--tmp") ? argv[argv.indexOf("--tmp") + 1] : os.tmpdir(), "mf-bench-"));
  const results: Record<number, { eval: Sample; base: Sample; par: Sample; pre?: Sample }> = {};
  // The prebuilt CLI's path is measured too when dist/cli is fresh (--build makes it so).
  if (argv.includes("--build")) for (const r of new Set([here, repo])) execFileSync(process.execPath, [path.join(r, "cli", "build.mjs")], { cwd: r, stdio: "ignore" });
  const [fresh, freshHere] = [await prebuiltFresh(), await prebuiltFresh(here)];
  try {
    console.log(`load average ${os.loadavg().map((x) => x.toFixed(1)).join(" ")} on ${os.cpus().length} cores`);
    console.log(`eval-scale: load + evaluate + render, each size in a cold process, median (by CPU) of ${runs} runs; ms as CPU / wall`);
    console.log(process.env.MESHFLEET_FULL_JIT === "1" ? "V8 default tiers (MESHFLEET_FULL_JIT=1)" : "V8 as check/render run it: baseline tier only (cli/short-run.ts; MESHFLEET_FULL_JIT=1 for V8's default)");
    if (!freshHere) console.log("dist/cli is not fresh (sources changed since its build): the prebuilt CLI's path is not measured; --build builds it first");
    console.log("hosts        load       evaluate         render          total   peak RSS   baseline read+parse   ratio cpu (wall)");
    for (const n of sizes) {
      const dir = path.join(root, String(n));
      execFileSync("mkdir", [dir]);
      generateFleet(dir, n);
      if (argv.includes("--process-only")) continue;
      const [e, b, par, pre] = measure(["eval", "baseline", "parallel", ...(freshHere ? ["prebuilt"] : [])], dir, runs);
      results[n] = { eval: e, base: b, par, pre };
      const p = e.phases;
      console.log(
        `${String(e.hosts).padStart(5)}  ${cw(p.load)}  ${cw(p.evaluate)}  ${cw(p.render)}  ${cw(p.total)}  ${e.maxRssMb.toFixed(0).padStart(6)} MB  ${cw(b.phases.total).padStart(20)}   ${(e.ms / b.ms).toFixed(2)}x (${(e.wallMs / b.wallMs).toFixed(2)}x)`,
      );
      console.log(
        `  parallel (cli/parallel-eval.ts, ${os.cpus().length} threads): ${cw(par.phases.total)} in all, busiest thread ${par.phases.threads.cpu.toFixed(0)} ms CPU, ${par.maxRssMb.toFixed(0)} MB; of serial: ${(par.ms / e.ms).toFixed(2)}x CPU, ${(par.wallMs / e.wallMs).toFixed(2)}x wall, busiest thread ${(par.phases.threads.cpu / e.ms).toFixed(2)}x`,
      );
      if (pre)
        console.log(
          `  as meshfleet render runs it (prebuilt dist/cli, ${os.cpus().length} threads): ${cw(pre.phases.total)} in all, busiest thread ${pre.phases.threads.cpu.toFixed(0)} ms CPU, ${pre.maxRssMb.toFixed(0)} MB; of serial: ${(pre.ms / e.ms).toFixed(2)}x CPU, ${(pre.wallMs / e.wallMs).toFixed(2)}x wall`,
        );
    }
    if (results[1000] && results[100]) {
      const g = results[1000].eval.ms / results[100].eval.ms;
      console.log(`growth 1000/100: ${g.toFixed(2)}x CPU (linear would be 10x)`);
      // Wall time is the target (what a person waits); on a loaded machine it
      // also counts waiting for a core, so the CPU time is printed beside it.
      const e = results[1000].eval;
      const ok = e.wallMs < 1000 && e.maxRssMb < 300;
      console.log(`target 1,000 hosts < 1 s (wall) and < 300 MB: ${ok ? "met" : "NOT met"} (${e.wallMs.toFixed(0)} ms wall, ${e.ms.toFixed(0)} ms CPU, ${e.maxRssMb.toFixed(0)} MB)`);
      // With more runnable work than cores the wall time mostly measures the wait: judge the CPU time then.
      const load = os.loadavg()[0];
      if (load > os.cpus().length)
        console.log(`  load average ${load.toFixed(1)} on ${os.cpus().length} cores: the wall figure is mostly waiting; CPU ${e.ms.toFixed(0)} ms is ${(e.ms / 1000).toFixed(2)}x the 1 s target, ${(e.ms / results[1000].base.ms).toFixed(2)}x reading and parsing the same files`);
    }
    // Issue 19, ten times larger: 10,000 hosts in < 2 s (wall) and < 500 MB, growing no worse than linearly.
    if (results[10000] && results[1000]) {
      const [a, b] = [results[1000].eval, results[10000].eval];
      console.log(`growth 10000/1000: ${(b.ms / a.ms).toFixed(2)}x CPU, ${(b.wallMs / a.wallMs).toFixed(2)}x wall (linear would be 10x); per phase CPU: ${["load", "evaluate", "render"].map((k) => `${k} ${(b.phases[k].cpu / a.phases[k].cpu).toFixed(1)}x`).join(", ")}`);
      const ok = b.wallMs < 2000 && b.maxRssMb < 500;
      console.log(`target 10,000 hosts < 2 s (wall) and < 500 MB: ${ok ? "met" : "NOT met"} (${b.wallMs.toFixed(0)} ms wall, ${b.ms.toFixed(0)} ms CPU, ${b.maxRssMb.toFixed(0)} MB); by CPU ${b.ms < 2000 ? "met" : "NOT met"}; ${(b.ms / results[10000].base.ms).toFixed(2)}x reading and parsing the same files`);
      const [pa, pb] = [results[1000].par, results[10000].par];
      const pok = pb.wallMs < 2000 && pb.maxRssMb < 500;
      console.log(`  parallel: growth 10000/1000 ${(pb.ms / pa.ms).toFixed(2)}x CPU, ${(pb.wallMs / pa.wallMs).toFixed(2)}x wall; target ${pok ? "met" : "NOT met"} (${pb.wallMs.toFixed(0)} ms wall, ${pb.ms.toFixed(0)} ms CPU in all, busiest thread ${pb.phases.threads.cpu.toFixed(0)} ms, ${pb.maxRssMb.toFixed(0)} MB); by the busiest thread's CPU ${pb.phases.threads.cpu < 2000 ? "met" : "NOT met"}`);
      const [qa, qb] = [results[1000].pre, results[10000].pre];
      if (qa && qb)
        console.log(`  as meshfleet render runs it: growth 10000/1000 ${(qb.ms / qa.ms).toFixed(2)}x CPU, ${(qb.wallMs / qa.wallMs).toFixed(2)}x wall; target ${qb.wallMs < 2000 && qb.maxRssMb < 500 ? "met" : "NOT met"} (${qb.wallMs.toFixed(0)} ms wall, ${qb.ms.toFixed(0)} ms CPU in all, busiest thread ${qb.phases.threads.cpu.toFixed(0)} ms, ${qb.maxRssMb.toFixed(0)} MB)`);
      else console.log("  as meshfleet render runs it: not measured, dist/cli is not fresh (--build builds it)");
    }
    const largest = Math.max(...sizes);
    if (!argv.includes("--no-process")) await wholeProcess(root, path.join(root, String(largest)), largest, runs, fresh);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
