/**
 * bench/eval-scale's "prebuilt" child: load + evaluate + render of one fleet
 * as `meshfleet render` runs it, in a plain node process (no tsx: with
 * `--import tsx` node starts every worker thread with tsx too, which the CLI
 * never does). The prebuilt CLI's own modules (dist/cli, fresh: run.ts checks
 * before it starts this), V8 tuned as render tunes it, every core's thread.
 * Prints one Sample as JSON, as run.ts's other children do.
 *
 *   node bench/eval-scale/prebuilt-child.mjs DIR
 */
import os from "node:os";

const dist = new URL("../../dist/cli/", import.meta.url);
// Modules loaded before the clock starts, as run.ts's other children do.
const { evaluateParallel } = await import(new URL("parallel-eval.mjs", dist).href);
const { tuneForShortRun } = await import(new URL("short-run.mjs", dist).href);
tuneForShortRun();
const cpu = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
const [c0, t0] = [cpu(), performance.now()];
const r = await evaluateParallel(process.argv[2], "bench", { render: true, keepHosts: false, threadTimes: true, threads: os.cpus().length });
const phase = { cpu: cpu() - c0, wall: performance.now() - t0 };
if (!r.hostNames || !r.artifacts) throw new Error(JSON.stringify(r.diagnostics.slice(0, 3)));
if (!r.path.startsWith("sharded")) console.error(`prebuilt: ${r.path}`);
const threads = { cpu: Math.max(...(r.threadCpuMs ?? [phase.cpu])), wall: 0 };
console.log(JSON.stringify({ ms: phase.cpu, wallMs: phase.wall, hosts: r.hostNames.length, maxRssMb: process.resourceUsage().maxRSS / 1024, phases: { "load+evaluate+render": phase, threads, total: phase } }));
