#!/usr/bin/env node
// `npm test` with no arguments: every test file, in lanes that run side by
// side. The lab files spend most of their time waiting (hosts booting,
// headscale and tailscaled settling, pings), so two lanes roughly halve the
// whole run on a 2-core machine.
//
// The rule that keeps lanes apart: a lab file names its lab instance
// (`const INSTANCE = N`, `lab(N)`, `labUp({ instance: N`), and every file of
// one instance runs in the same lane, one after another, because each boots
// that instance fresh and takes it down at its end. The files that use no
// lab run in one lane together, one at a time, as before. A file that boots
// a lab without naming its instance stops the run before anything starts.
//
// Each lane is one `vitest run` over its files (fileParallelism stays off
// inside a lane). Lines are prefixed with the lane; each lane writes its
// JSON report, and the lanes' reports are joined into one
// (MESHFLEET_TEST_REPORT, read by .ci/run). A lane that ends without a
// report counts as a failed file.
//
//   MESHFLEET_TEST_LANES=N   lanes (default 2; 1 runs everything in one lane)
//   MESHFLEET_TEST_REPORT=F  the joined JSON report
//   node scripts/test-lanes.mjs --list          print the lanes and exit
//   node scripts/test-lanes.mjs --only REGEX    only the files whose path matches
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os, { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const say = (s) => process.stderr.write(`[meshfleet test] ${s}\n`);

/** Seconds each lab file took in the last full run or its own last runs (2 cores); a new lab file counts as LAB_DEFAULT. */
const SECONDS = {
  "test/lab/e2e.test.ts": 364,
  "test/lab/lab-pebble.test.ts": 100,
  "test/lab/seed-rotation-lab.test.ts": 63,
  "test/lab/docker-lab.test.ts": 68,
  "test/lab/docker-variant-lab.test.ts": 401,
  "test/lab/docker-postgres-lab.test.ts": 212,
  // lab check --drills on one boot: upgrade, backup, OIDC, key expiry, move, and two faults (987-1122 s at load 6-15)
  "test/lab/drills-lab.test.ts": 1000,
  "test/lab/staged-upgrade-lab.test.ts": 150,
  "test/lab/acme-lab.test.ts": 90,
  "test/lab/sites-lab.test.ts": 210,
  "test/cli/fleet-lab.test.ts": 156,
  "test/cli/tailscale-apt-lab.test.ts": 83,
  "test/agent/real.test.ts": 60,
  "test/cli/import-lab.test.ts": 150,
  "test/lab/guide-lab.test.ts": 137,
  "test/cli/backup-lab.test.ts": 302,
  "test/lab/postgres-lab.test.ts": 470,
  "test/lab/hosts.test.ts": 60,
  "test/cli/reboot-lab.test.ts": 200,
  "test/lab/peers.test.ts": 60,
  "test/lab/oidc-lab.test.ts": 239,
};
const LAB_DEFAULT = 150;
/** The files without a lab, together (about 600 s in the last full run). */
const UNIT_SECONDS_PER_FILE = 3;

/** Every test file under test/, as vitest's `include` has it. */
export function testFiles(dir = join(root, "test")) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...testFiles(p));
    else if (e.name.endsWith(".test.ts")) out.push(relative(root, p));
  }
  return out.sort();
}

// Each at the start of a line, as code has them (not inside a string).
const INSTANCE_PATTERNS = [
  /^(?:export )?const INSTANCE(?:: number)? = (\d+)\b/m,
  /^(?:export )?const \w+ = lab\((\d+)\)/m,
  /^\s*(?:const \w+ = )?await labUp\(\{\s*instance:\s*(\d+)/m,
];
// What a file that uses a lab instance does: boots it, takes it down, runs commands on its hosts, reads its
// files, or runs the lab's CLI. Any of these makes the file a lab file, which must name its instance.
const USES_LAB = [
  /^\s*(?:(?:const|let) \w+ = )?(?:await )?(?:labUp|hostsUp|labDown|hostsDown|labChecks)\(/m,
  /^(?:export )?const \w+ = lab\(/m,
  /^\s*(?:(?:const|let) \w+ = )?(?:await )?(?:labOn|e2ePaths|writeLabFleet|writeCoordinatorFleet)\(/m,
  /^\s*(?:(?:const|let) \w+ = )?(?:await )?[\w.]+\(["']lab["'],\s*["'](?:up|check|down|hosts|report)["']/m,
];

/** The lab instance a file uses, undefined for a file without a lab; throws for one that uses a lab without naming one instance. */
export function labInstance(file, text) {
  const found = new Set();
  for (const re of INSTANCE_PATTERNS) {
    const m = text.match(re);
    if (m) found.add(Number(m[1]));
  }
  if (found.size > 1) throw new Error(`${file} names lab instances ${[...found].join(" and ")}: a lab file uses one instance (const INSTANCE = N)`);
  if (found.size === 1) return [...found][0];
  if (USES_LAB.some((re) => re.test(text)))
    throw new Error(`${file} uses a lab but names no instance: write const INSTANCE = N at the top (lab/hosts/README.md lists the instances taken), so npm test keeps it in one lane with that instance's other files`);
  return undefined;
}

/** The lanes: the files without a lab as one block, each instance's files as one block, placed largest first on the lightest lane. */
export function planLanes(files, read, lanes) {
  const unit = [];
  const byInstance = new Map();
  for (const f of files) {
    const i = labInstance(f, read(f));
    if (i === undefined) unit.push(f);
    else byInstance.set(i, [...(byInstance.get(i) ?? []), f]);
  }
  const blocks = [{ name: "no lab", files: unit, seconds: unit.length * UNIT_SECONDS_PER_FILE }];
  for (const [i, fs] of [...byInstance].sort((a, b) => a[0] - b[0]))
    blocks.push({ name: `lab instance ${i}`, files: fs, seconds: fs.reduce((s, f) => s + (SECONDS[f] ?? LAB_DEFAULT), 0) });
  const out = Array.from({ length: Math.max(1, lanes) }, () => ({ blocks: [], seconds: 0 }));
  for (const b of [...blocks].sort((a, b) => b.seconds - a.seconds || a.name.localeCompare(b.name))) {
    if (b.files.length === 0) continue;
    const lane = out.reduce((min, l) => (l.seconds < min.seconds ? l : min), out[0]);
    lane.blocks.push(b);
    lane.seconds += b.seconds;
  }
  return out.filter((l) => l.blocks.length > 0);
}

/** The lanes' vitest JSON reports joined into one; a lane without a report is a failed file. */
export function joinReports(reports) {
  const sum = (k) => reports.reduce((s, r) => s + (r.report?.[k] ?? 0), 0);
  const testResults = [];
  for (const r of reports) {
    if (r.report) testResults.push(...(r.report.testResults ?? []));
    else testResults.push({ name: `${root}/lane ${r.lane}`, status: "failed", message: `lane ${r.lane} ended (exit ${r.code}) without a JSON report`, assertionResults: [] });
  }
  const missing = reports.filter((r) => !r.report).length;
  return {
    numTotalTestSuites: sum("numTotalTestSuites") + missing,
    numPassedTestSuites: sum("numPassedTestSuites"),
    numFailedTestSuites: sum("numFailedTestSuites") + missing,
    numPendingTestSuites: sum("numPendingTestSuites"),
    numTotalTests: sum("numTotalTests"),
    numPassedTests: sum("numPassedTests"),
    numFailedTests: sum("numFailedTests"),
    numPendingTests: sum("numPendingTests"),
    numTodoTests: sum("numTodoTests"),
    startTime: Math.min(...reports.map((r) => r.report?.startTime ?? Date.now())),
    success: reports.every((r) => r.report?.success === true && r.code === 0),
    testResults,
  };
}

/**
 * One line per failed test of a (joined) vitest JSON report, and per file that
 * failed before any of its tests ran: the file (relative to `base`), the
 * test's full name, and the first line of its failure. Printed last by
 * `npm test` and by .ci/run, so the end of a long log names them.
 */
export function failedLines(report, base = root) {
  const rel = (f) => relative(base, f) || f;
  const out = [];
  for (const t of report.testResults ?? []) {
    const tests = t.assertionResults ?? [];
    if (t.status === "failed" && tests.length === 0) out.push(`failed before any test ran: ${rel(t.name)}: ${(t.message ?? "").split("\n")[0]}`);
    for (const a of tests) {
      if (a.status !== "failed") continue;
      const why = (a.failureMessages ?? []).join("\n").split("\n").find((l) => l.trim() !== "") ?? "";
      out.push(`failed: ${rel(t.name)}: ${a.fullName}${why ? ` (${why.trim().slice(0, 300)})` : ""}`);
    }
  }
  return out;
}

function runLane(n, files, reportFile) {
  return new Promise((resolve) => {
    const args = ["vitest", "run", "--reporter=default", "--reporter=json", `--outputFile=${reportFile}`, ...files];
    // A process group of its own, so a signal to the run reaches the lane's vitest and everything under it.
    const child = spawn("npx", args, { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"], env: process.stdout.isTTY ? process.env : { ...process.env, NO_COLOR: "1" } });
    running.add(child);
    const prefix = (stream, out) => {
      let rest = "";
      stream.on("data", (d) => {
        const lines = (rest + d.toString()).split("\n");
        rest = lines.pop() ?? "";
        for (const l of lines) out.write(`[lane ${n}] ${l}\n`);
      });
      stream.on("end", () => rest && out.write(`[lane ${n}] ${rest}\n`));
    };
    prefix(child.stdout, process.stdout);
    prefix(child.stderr, process.stderr);
    child.on("close", (code, signal) => {
      running.delete(child);
      resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1));
    });
  });
}

const running = new Set();
let stoppedBy;
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    stoppedBy = sig;
    say(`${sig}: stopping the lanes (their labs are taken down by their own afterAll hooks where vitest gets to run them)`);
    for (const c of running) {
      try {
        process.kill(-c.pid, sig);
      } catch {
        c.kill(sig);
      }
    }
  });
}

async function main() {
  const lanes = Number(process.env.MESHFLEET_TEST_LANES ?? "2");
  if (!Number.isInteger(lanes) || lanes < 1) {
    say(`MESHFLEET_TEST_LANES must be a whole number of 1 or more, found "${process.env.MESHFLEET_TEST_LANES}"`);
    process.exit(2);
  }
  let plan;
  try {
    const at = process.argv.indexOf("--only");
    const only = at > 0 ? new RegExp(process.argv[at + 1]) : undefined;
    const files = testFiles().filter((f) => !only || only.test(f));
    if (files.length === 0) throw new Error(`no test file matches --only ${process.argv[at + 1]}`);
    plan = planLanes(files, (f) => readFileSync(join(root, f), "utf8"), lanes);
  } catch (e) {
    say(`cannot place the test files in lanes: ${e.message}`);
    process.exit(2);
  }
  for (const [i, l] of plan.entries())
    say(`lane ${i + 1} (about ${Math.round(l.seconds / 60)} min by its files' recorded times): ${l.blocks.map((b) => `${b.name} (${b.files.length} file${b.files.length === 1 ? "" : "s"})`).join(", ")}`);
  if (process.argv.includes("--list")) {
    for (const [i, l] of plan.entries()) for (const b of l.blocks) for (const f of b.files) console.log(`${i + 1}\t${b.name}\t${f}`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "meshfleet-lanes-"));
  const started = Date.now();
  const codes = await Promise.all(
    plan.map(async (l, i) => {
      const code = await runLane(i + 1, l.blocks.flatMap((b) => b.files), join(dir, `lane-${i + 1}.json`));
      say(`lane ${i + 1} ended (exit ${code}) after ${Math.round((Date.now() - started) / 1000)} s`);
      return code;
    }),
  );
  const reports = codes.map((code, i) => {
    const f = join(dir, `lane-${i + 1}.json`);
    let report;
    try {
      report = existsSync(f) ? JSON.parse(readFileSync(f, "utf8")) : undefined;
    } catch (e) {
      say(`lane ${i + 1}: its JSON report cannot be read (${e.message}); it counts as a lane without one`);
    }
    return { lane: i + 1, code, report };
  });
  const joined = joinReports(reports);
  if (process.env.MESHFLEET_TEST_REPORT) writeFileSync(process.env.MESHFLEET_TEST_REPORT, JSON.stringify(joined));
  rmSync(dir, { recursive: true, force: true });
  say(`all lanes: ${joined.numPassedTests} passed, ${joined.numFailedTests} failed, ${joined.numPendingTests + joined.numTodoTests} skipped or todo, in ${Math.round((Date.now() - started) / 1000)} s`);
  for (const l of failedLines(joined)) say(l);
  if (stoppedBy) process.exit(128 + (os.constants.signals[stoppedBy] ?? 0));
  process.exit(codes.some((c) => c !== 0) || !joined.success ? 1 : 0);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
