/**
 * `npm test`'s lanes (scripts/test-lanes.mjs): every test file runs in
 * exactly one lane, the files of one lab instance in the same lane (they boot
 * that instance fresh and take it down, one after another), a file that
 * boots a lab without naming its instance stops the run, and the lanes'
 * reports join into one that CI's verdict reads, a lane without a report
 * counting as a failed file.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
// @ts-expect-error: a plain ES module without types
import { failedLines, joinReports, labInstance, planLanes, testFiles } from "../../scripts/test-lanes.mjs";

const REPO = join(import.meta.dirname, "..", "..");
const read = (f: string) => readFileSync(join(REPO, f), "utf8");
const dir = mkdtempSync(join(tmpdir(), "mf-lanes-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Lane = { blocks: { name: string; files: string[]; seconds: number }[]; seconds: number };

describe("npm test's lanes", () => {
  it("place every test file once, and every lab instance's files in one lane", () => {
    const files: string[] = testFiles();
    expect(files.length).toBeGreaterThan(100);
    expect(files).toContain("test/lab/lanes.test.ts");
    const lanes: Lane[] = planLanes(files, read, 2);
    expect(lanes).toHaveLength(2);
    const placed = lanes.flatMap((l) => l.blocks.flatMap((b) => b.files));
    expect([...placed].sort()).toEqual([...files].sort());
    const laneOf = new Map<number, number>();
    for (const [n, l] of lanes.entries())
      for (const b of l.blocks)
        for (const f of b.files) {
          const i = labInstance(f, read(f));
          if (i === undefined) continue;
          expect(laneOf.get(i) ?? n, `${f}: lab instance ${i} split across lanes`).toBe(n);
          laneOf.set(i, n);
        }
    // The files known to boot labs are found as such, with their instances.
    expect(labInstance("test/lab/e2e.test.ts", read("test/lab/e2e.test.ts"))).toBe(0);
    expect(labInstance("test/agent/real.test.ts", read("test/agent/real.test.ts"))).toBe(6);
    expect(labInstance("test/lab/drills-lab.test.ts", read("test/lab/drills-lab.test.ts"))).toBe(3);
    expect(labInstance("test/lab/drills.test.ts", read("test/lab/drills.test.ts"))).toBeUndefined();
    expect(laneOf.size).toBeGreaterThanOrEqual(8);
    // Neither lane holds everything: the heaviest block is under half of the whole.
    const total = lanes.reduce((s, l) => s + l.seconds, 0);
    for (const l of lanes) expect(l.seconds).toBeLessThan(total * 0.75);
    // One lane: everything in it.
    expect(planLanes(files, read, 1)).toHaveLength(1);
  });

  it("refuse a file that boots a lab without naming its instance, or names two", () => {
    const boots = `import { labUp } from "../../lab/e2e/up.ts";\nawait labUp({ log: () => {} });\n`;
    expect(() => labInstance("test/lab/new-lab.test.ts", boots)).toThrow(/test\/lab\/new-lab.test.ts uses a lab but names no instance: write const INSTANCE = N/);
    expect(() => planLanes(["test/lab/new-lab.test.ts"], () => boots, 2)).toThrow(/names no instance/);
    // Using a lab another way than booting it still needs the instance named.
    for (const uses of [
      `const r = await meshfleet("lab", "check", "--instance", "3");\n`,
      `const on = labOn(n);\n`,
      `  await labDown({ instance: n, log });\n`,
      `const p = e2ePaths(n);\n`,
    ])
      expect(() => labInstance("x.test.ts", uses), uses).toThrow(/uses a lab but names no instance/);
    expect(labInstance("x.test.ts", `export const INSTANCE = 7;\nconst r = await meshfleet("lab", "up", "--instance", String(INSTANCE));\n`)).toBe(7);
    expect(() => labInstance("x.test.ts", "const INSTANCE = 3;\nconst L = lab(4);\n")).toThrow(/names lab instances 3 and 4/);
    expect(labInstance("x.test.ts", "const INSTANCE = 3;\nawait labUp({ instance: INSTANCE });\n")).toBe(3);
    expect(labInstance("x.test.ts", "  const r = await labUp({ instance: 5, log });\n")).toBe(5);
    // Inside a string, as in this file, nothing counts.
    expect(labInstance("x.test.ts", 'const s = "const INSTANCE = 3;";\n')).toBeUndefined();
    expect(labInstance("x.test.ts", "async function lab(edits) {}\nawait lab({});\n")).toBeUndefined();
  });

  it("join the lanes' reports, and a lane without a report fails CI's verdict", () => {
    const file = (name: string, status: string, tests: string[]) => ({ name: join(REPO, name), status, assertionResults: tests.map((t) => ({ fullName: t, status })) });
    const lane1 = { numTotalTests: 2, numPassedTests: 2, numFailedTests: 0, numPendingTests: 0, numTodoTests: 0, startTime: 5, success: true, testResults: [file("test/a.test.ts", "passed", ["a1", "a2"])] };
    const lane2 = { numTotalTests: 1, numPassedTests: 1, numFailedTests: 0, numPendingTests: 0, numTodoTests: 0, startTime: 3, success: true, testResults: [file("test/b.test.ts", "passed", ["b1"])] };
    const both = joinReports([{ lane: 1, code: 0, report: lane1 }, { lane: 2, code: 0, report: lane2 }]);
    expect(both).toMatchObject({ numPassedTests: 3, numFailedTests: 0, startTime: 3, success: true });
    expect(both.testResults).toHaveLength(2);
    const verdict = (r: unknown) => {
      const f = join(dir, `r${Math.random()}.json`);
      writeFileSync(f, JSON.stringify(r));
      return spawnSync(process.execPath, [join(REPO, "scripts", "ci-verdict.mjs"), f], { cwd: REPO, encoding: "utf8" });
    };
    expect(verdict(both).stdout.trim()).toBe("3 0 0");
    const lost = joinReports([{ lane: 1, code: 0, report: lane1 }, { lane: 2, code: 137 }]);
    expect(lost.success).toBe(false);
    const v = verdict(lost);
    expect(v.stdout.trim()).toBe("2 1 0");
    expect(v.stderr).toMatch(/lane 2 ended \(exit 137\) without a JSON report/);
    // What npm test prints last: each failed test with its first line, each lane or file that failed before its tests.
    const failing = { ...lane1, numFailedTests: 1, success: false, testResults: [{ name: join(REPO, "test/c.test.ts"), status: "failed", assertionResults: [{ fullName: "c1", status: "failed", failureMessages: ["Error: boom\n    at c.test.ts:1"] }, { fullName: "c2", status: "passed" }] }] };
    expect(failedLines(joinReports([{ lane: 1, code: 1, report: failing }, { lane: 2, code: 137 }]))).toEqual([
      "failed: test/c.test.ts: c1 (Error: boom)",
      "failed before any test ran: lane 2: lane 2 ended (exit 137) without a JSON report",
    ]);
    // A lane that failed with a report still fails the whole.
    expect(joinReports([{ lane: 1, code: 1, report: { ...lane1, success: false } }]).success).toBe(false);
  });
});
