/**
 * CI's verdict: gates that refuse to skip in CI, and .ci/run's reading of
 * vitest's JSON report (skips and todos count, a file that failed before its
 * tests ran counts as a failure).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { skipOrFail, skipUnlessCi, strict } from "./ci-gate.ts";

const REPO = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "mf-ci-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const withEnv = <T>(env: Record<string, string | undefined>, fn: () => T): T => {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
  }
};

describe("test gates", () => {
  it("skip outside CI, saying why; fail in CI naming what is missing", () => {
    const off = { CI: undefined, MESHFLEET_REQUIRE_TOOLS: undefined };
    expect(withEnv(off, () => skipUnlessCi("needs root"))).toBe(true);
    expect(withEnv(off, () => skipUnlessCi(false))).toBe(false);
    expect(withEnv({ ...off, CI: "false" }, () => strict())).toBe(false);
    expect(() => withEnv({ ...off, CI: "true" }, () => skipUnlessCi("headscale 0.29.2 is not built: run `meshfleet tools build`"))).toThrow(
      "CI: cannot skip: headscale 0.29.2 is not built: run `meshfleet tools build`",
    );
    expect(() => withEnv({ ...off, MESHFLEET_REQUIRE_TOOLS: "1" }, () => skipUnlessCi("needs root"))).toThrow(/^CI: cannot skip: needs root$/);
    const notes: string[] = [];
    withEnv(off, () => skipOrFail({ skip: (n) => void notes.push(n ?? "") }, "lab hosts could not be booted: x"));
    expect(notes).toEqual(["lab hosts could not be booted: x"]);
    expect(() => withEnv({ ...off, CI: "1" }, () => skipOrFail({ skip: () => undefined }, "lab hosts could not be booted: x"))).toThrow("CI: cannot skip: lab hosts could not be booted: x");
  });
});

describe(".ci/run's verdict", () => {
  it("counts skipped and todo tests and files that failed before any test ran", () => {
    const report = join(dir, "r.json");
    writeFileSync(report, JSON.stringify({
      numPassedTests: 3, numFailedTests: 1, numPendingTests: 1, numTodoTests: 1,
      testResults: [
        { name: join(REPO, "test/x.test.ts"), status: "failed", assertionResults: [{ status: "passed", fullName: "a" }, { status: "failed", fullName: "f", failureMessages: ["\nAssertionError: expected true to be false\n    at x.test.ts:3"] }, { status: "pending", fullName: "b" }, { status: "todo", fullName: "c" }] },
        { name: join(REPO, "test/y.test.ts"), status: "failed", message: "CI: cannot skip: needs root", assertionResults: [] },
      ],
    }));
    const r = spawnSync(process.execPath, [join(REPO, "scripts", "ci-verdict.mjs"), report], { encoding: "utf8", cwd: REPO });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe("3 2 2");
    expect(r.stderr).toContain("[ci] failed before any test ran: test/y.test.ts: CI: cannot skip: needs root");
    expect(r.stderr).toContain("[ci] skipped: test/x.test.ts: b");
    expect(r.stderr).toContain("[ci] skipped: test/x.test.ts: c");
    expect(r.stderr).toContain("[ci] failed: test/x.test.ts: f (AssertionError: expected true to be false)");
    // The failures last, in file order, so the tail of a long log names them.
    expect(r.stderr.trimEnd().split("\n").slice(-2)).toEqual([
      "[ci] failed: test/x.test.ts: f (AssertionError: expected true to be false)",
      "[ci] failed before any test ran: test/y.test.ts: CI: cannot skip: needs root",
    ]);
    expect(spawnSync(process.execPath, [join(REPO, "scripts", "ci-verdict.mjs"), join(dir, "none.json")]).status).toBe(2);
  });

  it("ends .ci/run with the counts line, and fails on skips", () => {
    const text = spawnSync("cat", [join(REPO, ".ci", "run")], { encoding: "utf8" }).stdout;
    expect(text).toMatch(/echo "\$\{passed:-0\} passed, \$\{failed:-0\} failed, \$\{skipped:-0\} skipped"\nexit "\$status"\n$/);
    expect(text).toContain('export MESHFLEET_TOOLS_DIR="$work/tools"');
    expect(text).toContain('export PULUMI_HOME="$work/pulumi-home"');
  });
});
