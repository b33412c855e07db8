/**
 * bench/eval-scale enforcing: fleets where half the hosts enforce the
 * policy themselves (`firewall.trustTailnet: false`), against the same
 * fleets where none does, in the same run. The fleet phase works out each
 * enforcing host's rules from the policy; compiled once per host, that was
 * quadratic (1,000 hosts, 500 enforcing: 11 s of fleet phase). Each fleet is
 * loaded, evaluated and rendered in a cold process (run.ts's serial child),
 * `--runs` times, alternating; it prints the medians (by CPU) of the
 * evaluation (modules and fleet phase) and of the whole, the ratio
 * enforcing / none, and the growth between sizes. `--root DIR` runs another
 * checkout's code (before and after).
 *
 *   node --import tsx bench/eval-scale/enforcing.ts [--sizes 500,1000,2000] [--runs 3] [--root DIR]
 */
import { execFileSync } from "node:child_process";
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { generateFleet } from "./generate.ts";

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const argv = process.argv.slice(2);
const arg = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
const sizes = arg("--sizes", "500,1000,2000").split(",").map(Number);
const runs = Number(arg("--runs", "3"));
const root = path.resolve(arg("--root", here));

type Sample = { ms: number; wallMs: number; maxRssMb: number; phases: Record<string, { cpu: number; wall: number }> };
const tmp = mkdtempSync(path.join(os.tmpdir(), "meshfleet-enforcing-"));

function fleet(n: number, enforcing: boolean): string {
  const dir = path.join(tmp, `${n}-${enforcing ? "enforcing" : "none"}`);
  mkdirSync(dir);
  generateFleet(dir, n, 100);
  if (enforcing) {
    const hosts = readdirSync(dir).filter((f) => /^h\d+\.yaml$/.test(f)).sort();
    hosts.forEach((f, i) => { if (i % 2 === 0) appendFileSync(path.join(dir, f), "firewall:\n  trustTailnet: false\n"); });
  }
  return dir;
}

const child = (dir: string): Sample =>
  JSON.parse(execFileSync(process.execPath, ["--import", "tsx", path.join(root, "bench/eval-scale/run.ts"), "--child", "serial", dir], { cwd: root, encoding: "utf8", maxBuffer: 64 << 20 }).trim().split("\n").pop()!);
const median = (xs: Sample[]) => [...xs].sort((a, b) => a.ms - b.ms)[Math.floor(xs.length / 2)];

try {
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(1)).join(" ")} on ${os.cpus().length} cores; code of ${root === here ? "this checkout" : root}`);
  console.log(`each fleet in a cold process, median of ${runs} by CPU; ms of CPU (wall)`);
  console.log("hosts  enforcing        evaluate          total   peak RSS   evaluate enforcing / none");
  const rows: { n: number; enf: Sample; none: Sample }[] = [];
  for (const n of sizes) {
    const dirs = { enf: fleet(n, true), none: fleet(n, false) };
    const out = { enf: [] as Sample[], none: [] as Sample[] };
    for (let i = 0; i < runs; i++) for (const k of ["enf", "none"] as const) out[k].push(child(dirs[k]));
    const row = { n, enf: median(out.enf), none: median(out.none) };
    rows.push(row);
    for (const [k, s] of [["none", row.none], ["enf", row.enf]] as const) {
      const e = s.phases.evaluate;
      console.log(`${String(n).padStart(5)}  ${(k === "enf" ? `${Math.ceil(n / 2)}` : "0").padStart(9)}  ${e.cpu.toFixed(0).padStart(7)} (${e.wall.toFixed(0).padStart(6)})  ${s.ms.toFixed(0).padStart(7)} (${s.wallMs.toFixed(0).padStart(6)})  ${s.maxRssMb.toFixed(0).padStart(6)} MB${k === "enf" ? `   ${(row.enf.phases.evaluate.cpu / row.none.phases.evaluate.cpu).toFixed(2)}x` : ""}`);
    }
  }
  for (let i = 1; i < rows.length; i++) {
    const [a, b] = [rows[i - 1], rows[i]];
    const g = (s: (r: typeof a) => number) => (s(b) / s(a)).toFixed(2);
    console.log(`growth ${b.n}/${a.n} (${(b.n / a.n).toFixed(1)}x the hosts): evaluate ${g((r) => r.enf.phases.evaluate.cpu)}x enforcing, ${g((r) => r.none.phases.evaluate.cpu)}x none`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
