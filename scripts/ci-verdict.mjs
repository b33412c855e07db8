#!/usr/bin/env node
// Reads vitest's JSON report and prints "passed failed skipped" (one line) for
// .ci/run; lists every failed, skipped or todo test on stderr (failures last,
// so the tail of a long CI log names them). A file that failed
// before its tests ran (a gate that refuses to skip in CI, a syntax error)
// counts as one failure. Usage: node scripts/ci-verdict.mjs <report.json>
import { existsSync, readFileSync } from "node:fs";
import { failedLines } from "./test-lanes.mjs";

const file = process.argv[2];
if (!file || !existsSync(file)) {
  console.error(`[ci] no vitest JSON report at ${file}`);
  process.exit(2);
}
const r = JSON.parse(readFileSync(file, "utf8"));
const files = r.testResults ?? [];
const emptyFailed = files.filter((t) => t.status === "failed" && (t.assertionResults ?? []).length === 0);
const skipped = [];
for (const t of files) {
  for (const a of t.assertionResults ?? []) {
    if (a.status === "pending" || a.status === "skipped" || a.status === "todo") skipped.push(`${t.name.replace(process.cwd() + "/", "")}: ${a.fullName}`);
  }
}
for (const s of skipped) console.error(`[ci] skipped: ${s}`);
// Failures last, so the tail of a long CI log names them.
for (const l of failedLines(r, process.cwd())) console.error(`[ci] ${l}`);
const passed = r.numPassedTests ?? 0;
const failed = (r.numFailedTests ?? 0) + emptyFailed.length;
console.log(`${passed} ${failed} ${Math.max(skipped.length, (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0))}`);
