#!/usr/bin/env node
// Reads vitest's JSON report and prints "passed failed skipped" (one line) for
// .ci/run; lists every failed, skipped or todo test on stderr (failures last,
// so the tail of a long CI log names them). A file that failed
// before its tests ran (a gate that refuses to skip in CI, a syntax error)
// counts as one failure. Usage: node scripts/ci-verdict.mjs <report.json>
import { existsSync, readFileSync } from "node:fs";

const file = process.argv[2];
if (!file || !existsSync(file)) {
  console.error(`[ci] no vitest JSON report at ${file}`);
  process.exit(2);
}
const r = JSON.parse(readFileSync(file, "utf8"));
const files = r.testResults ?? [];
const emptyFailed = files.filter((t) => t.status === "failed" && (t.assertionResults ?? []).length === 0);
for (const t of emptyFailed) console.error(`[ci] failed before any test ran: ${t.name.replace(process.cwd() + "/", "")}: ${(t.message ?? "").split("\n")[0]}`);
const skipped = [];
for (const t of files) {
  for (const a of t.assertionResults ?? []) {
    if (a.status === "pending" || a.status === "skipped" || a.status === "todo") skipped.push(`${t.name.replace(process.cwd() + "/", "")}: ${a.fullName}`);
  }
}
for (const s of skipped) console.error(`[ci] skipped: ${s}`);
for (const t of files) {
  for (const a of t.assertionResults ?? []) {
    if (a.status !== "failed") continue;
    const why = (a.failureMessages ?? []).join("\n").split("\n").find((l) => l.trim() !== "") ?? "";
    console.error(`[ci] failed: ${t.name.replace(process.cwd() + "/", "")}: ${a.fullName}${why ? ` (${why.trim().slice(0, 300)})` : ""}`);
  }
}
const passed = r.numPassedTests ?? 0;
const failed = (r.numFailedTests ?? 0) + emptyFailed.length;
console.log(`${passed} ${failed} ${Math.max(skipped.length, (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0))}`);
