/**
 * bench/eval-scale: evaluate + render generated fleets of 10, 100 and 1,000
 * hosts, each size in a fresh process (so peak RSS is its own), and print the
 * time, peak memory, the 1,000/100 growth ratio, and the ratio against a
 * baseline measured in the same run: only reading and YAML-parsing the same
 * files (the floor any evaluator pays).
 *
 *   node --import tsx bench/eval-scale/run.ts [--sizes 10,100,1000] [--runs 3]
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const self = fileURLToPath(import.meta.url);
import { generateFleet } from "./generate.ts";

async function child(mode: string, dir: string) {
  // Modules are loaded (and compiled by tsx) before the clock starts: the
  // figure is evaluation + rendering, not start-up.
  const { parse } = await import("yaml");
  const { evaluateFleet, formatDiagnostics } = await import("../../core/index.ts");
  const { REGISTRY } = await import("../../modules/index.ts");
  const { allArtifacts } = await import("../../core/artifacts.ts");
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let hosts = 0;
  if (mode === "baseline") {
    for (const f of readdirSync(dir)) { parse(readFileSync(path.join(dir, f), "utf8")); hosts++; }
  } else {
    const r = await evaluateFleet(REGISTRY, dir, "bench");
    if (!r.fleet) throw new Error(formatDiagnostics(r.diagnostics));
    hosts = Object.keys(r.fleet.hosts).length;
    allArtifacts(r.fleet);
  }
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(cpu0);
  // CPU time holds when other work shares the cores; wall time is what a person waits.
  console.log(JSON.stringify({ ms: (c.user + c.system) / 1000, wallMs, hosts, maxRssMb: process.resourceUsage().maxRSS / 1024 }));
}

function measure(mode: string, dir: string, runs: number) {
  const out = [];
  for (let i = 0; i < runs; i++)
    out.push(JSON.parse(execFileSync(process.execPath, ["--import", "tsx", self, "--child", mode, dir], { encoding: "utf8" }).trim().split("\n").pop()!));
  out.sort((a, b) => a.ms - b.ms);
  return out[Math.floor(out.length / 2)] as { ms: number; wallMs: number; hosts: number; maxRssMb: number };
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === "--child") return child(argv[1], argv[2]);
  const sizes = (argv[argv.indexOf("--sizes") + 1] && argv.includes("--sizes") ? argv[argv.indexOf("--sizes") + 1] : "10,100,1000").split(",").map(Number);
  const runs = argv.includes("--runs") ? Number(argv[argv.indexOf("--runs") + 1]) : 3;
  const root = mkdtempSync(path.join(os.tmpdir(), "mf-bench-"));
  const results: Record<number, { eval: ReturnType<typeof measure>; base: ReturnType<typeof measure> }> = {};
  try {
    console.log(`load average ${os.loadavg().map((x) => x.toFixed(1)).join(" ")} on ${os.cpus().length} cores`);
    console.log(`eval-scale: load + evaluate + render (CPU ms, cold process), median of ${runs} runs`);
    console.log("hosts   eval+render (cpu / wall)   peak RSS   baseline read+parse (cpu)   ratio to baseline");
    for (const n of sizes) {
      const dir = path.join(root, String(n));
      execFileSync("mkdir", [dir]);
      generateFleet(dir, n);
      const e = measure("eval", dir, runs);
      const b = measure("baseline", dir, runs);
      results[n] = { eval: e, base: b };
      console.log(`${String(e.hosts).padStart(5)}   ${e.ms.toFixed(0).padStart(7)} ms / ${e.wallMs.toFixed(0).padStart(5)} ms   ${e.maxRssMb.toFixed(0).padStart(6)} MB   ${b.ms.toFixed(0).padStart(14)} ms            ${(e.ms / b.ms).toFixed(2)}x`);
    }
    if (results[1000] && results[100]) {
      const g = results[1000].eval.ms / results[100].eval.ms;
      console.log(`growth 1000/100: ${g.toFixed(2)}x (linear would be 10x)`);
      // Wall time is the target (what a person waits); CPU time also counts the
      // GC's and loader's threads, so it can exceed wall on an idle machine.
      const ok = results[1000].eval.wallMs < 1000 && results[1000].eval.maxRssMb < 300;
      console.log(`target 1,000 hosts < 1 s (wall) and < 300 MB: ${ok ? "met" : "NOT met"} (${results[1000].eval.wallMs.toFixed(0)} ms, ${results[1000].eval.maxRssMb.toFixed(0)} MB)`);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
