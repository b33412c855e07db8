#!/usr/bin/env node
// `npm run mutate`: Stryker once per group of stryker.config.mjs, each group's
// files against its own narrow test set, then one table of every file's
// mutants (killed, survived, no coverage, timeouts, ignored) and score.
// Out of CI (far beyond its time limit on a small machine).
//   npm run mutate                      every group
//   npm run mutate -- agent ipset       these groups
//   npm run mutate -- --concurrency 2   test runners per group (default 1)
//   npm run mutate -- --summary         only the table, from the last reports
//   npm run mutate -- --force bundle    every mutant again, not only the changed ones
// Reports: reports/mutation/<group>.json and .html, reports/mutation/summary.md.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { GROUPS } from "../stryker.config.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const OUT = path.join(REPO, "reports", "mutation");
const args = process.argv.slice(2);
let concurrency = "1";
const names = [];
let summaryOnly = false;
let force = false;
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--concurrency") concurrency = args[++i];
  else if (args[i] === "--summary") summaryOnly = true;
  else if (args[i] === "--force") force = true;
  else names.push(args[i]);
}
const unknown = names.filter((n) => !GROUPS.some((g) => g.name === n));
if (unknown.length) {
  console.error(`mutate: unknown group ${unknown.join(", ")}; the groups are ${GROUPS.map((g) => g.name).join(", ")} (stryker.config.mjs)`);
  process.exit(2);
}
const chosen = names.length ? GROUPS.filter((g) => names.includes(g.name)) : GROUPS;

let failed = false;
if (!summaryOnly) {
  fs.mkdirSync(OUT, { recursive: true });
  for (const g of chosen) {
    console.log(`\n== mutate ${g.name}: ${g.mutate.join(" ")} against ${g.tests.join(" ")}`);
    const started = Date.now();
    const load0 = os.loadavg()[0];
    // Incremental runs rely on per-test coverage: Stryker reuses a survivor unless a test that
    // covers it changed or was added, so a group run with coverage "all" (no test known to cover
    // anything) always runs in full.
    const full = force || g.coverageAnalysis === "all";
    const r = spawnSync(
      path.join(REPO, "node_modules", ".bin", "stryker"),
      ["run", "--concurrency", concurrency, "--mutate", g.mutate.join(","), ...(full ? ["--force"] : [])],
      { cwd: REPO, stdio: "inherit", env: { ...process.env, MESHFLEET_MUTATE_GROUP: g.name, MESHFLEET_MUTATE_COVERAGE: g.coverageAnalysis ?? "perTest", MESHFLEET_MUTATE_TESTS: g.tests.join(","), MESHFLEET_MUTATE_FILES: g.mutate.join(",") } },
    );
    if (r.status !== 0) {
      console.error(`mutate ${g.name}: stryker exited with ${r.status ?? r.signal}`);
      failed = true;
      continue;
    }
    // The machine is shared: the time means little without the load it ran under.
    console.log(`== ${g.name}: ${Math.round((Date.now() - started) / 1000)} s (${new Date().toISOString()}; 1-min load average ${load0.toFixed(1)} at the start, ${os.loadavg()[0].toFixed(1)} at the end, ${os.cpus().length} cores)`);
  }
}

// The table, from every group's last report.
const COLS = ["Killed", "Timeout", "Survived", "NoCoverage", "Ignored", "CompileError", "RuntimeError"];
const rows = [];
for (const g of GROUPS) {
  const file = path.join(OUT, `${g.name}.json`);
  if (!fs.existsSync(file)) continue;
  const report = JSON.parse(fs.readFileSync(file, "utf8"));
  for (const [name, f] of Object.entries(report.files)) {
    // An incremental run's report also carries files its incremental file knew from before a group
    // was split (policy-compile's held alias.ts): count a file only under the group that mutates it.
    if (!g.mutate.includes(path.relative(REPO, path.resolve(REPO, name)))) continue;
    const n = Object.fromEntries(COLS.map((c) => [c, 0]));
    for (const m of f.mutants) n[m.status] = (n[m.status] ?? 0) + 1;
    rows.push({ group: g.name, file: path.relative(REPO, path.resolve(REPO, name)), at: fs.statSync(file).mtime, ...n });
  }
}
rows.sort((a, b) => a.file.localeCompare(b.file));
const score = (r) => {
  const detected = r.Killed + r.Timeout;
  const valid = detected + r.Survived + r.NoCoverage;
  return valid ? ((100 * detected) / valid).toFixed(2) : "n/a";
};
const total = Object.fromEntries(COLS.map((c) => [c, rows.reduce((a, r) => a + r[c], 0)]));
const lines = [
  "| file | killed | timeout | survived | no coverage | ignored | errors | score % |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ...rows.map((r) => `| ${r.file} | ${r.Killed} | ${r.Timeout} | ${r.Survived} | ${r.NoCoverage} | ${r.Ignored} | ${r.CompileError + r.RuntimeError} | ${score(r)} |`),
  `| **all** | ${total.Killed} | ${total.Timeout} | ${total.Survived} | ${total.NoCoverage} | ${total.Ignored} | ${total.CompileError + total.RuntimeError} | ${score(total)} |`,
];
const missing = GROUPS.filter((g) => !fs.existsSync(path.join(OUT, `${g.name}.json`))).map((g) => g.name);
if (missing.length) lines.push("", `Not run yet: ${missing.join(", ")}.`);
lines.push("", "score = (killed + timeout) / (killed + timeout + survived + no coverage); ignored = `// Stryker disable` with a reason.");
fs.mkdirSync(OUT, { recursive: true });
fs.writeFileSync(path.join(OUT, "summary.md"), lines.join("\n") + "\n");
console.log("\n" + lines.join("\n"));
process.exit(failed ? 1 : 0);
