/**
 * Scratch folders (test/scratch.ts): every one a test makes is under the run's
 * own folder, and the run's teardown removes it. Before, 35 to 50 folders were
 * left in the system's temp folder by each run of the suite (fixtures that
 * never removed theirs, and an exit handler vitest's workers do not run).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { globalSetup, SCRATCH_ENV, scratchDir } from "../scratch.ts";
import { fakeAgentFile } from "../components/fixtures.ts";
import { privateAgent } from "../provider/agent.ts";

const inside = (dir: string, root: string) => path.relative(root, dir) !== "" && !path.relative(root, dir).startsWith("..");

describe("test scratch folders", () => {
  it("the run has its own scratch folder (vitest.config.ts names the global setup), and scratchDir makes folders in it", () => {
    const root = process.env[SCRATCH_ENV];
    expect(root, `${SCRATCH_ENV} is not set: vitest.config.ts must name test/scratch.ts as its globalSetup`).toBeTruthy();
    expect(inside(root!, tmpdir())).toBe(true);
    const d = scratchDir("meshfleet-probe-");
    expect(inside(d, root!)).toBe(true);
    expect(existsSync(d)).toBe(true);
  });

  it("the fixtures that once leaked folders make them there", () => {
    const root = process.env[SCRATCH_ENV]!;
    expect(inside(fakeAgentFile(), root)).toBe(true);
  });

  it("the provider tests' private agent is built there", () => {
    expect(inside(privateAgent(), process.env[SCRATCH_ENV]!)).toBe(true);
  }, 120_000);

  it("the teardown removes the run's folder with everything in it, and sets it for the workers", () => {
    const before = process.env[SCRATCH_ENV];
    try {
      const teardown = globalSetup();
      const root = process.env[SCRATCH_ENV]!;
      expect(root).not.toBe(before);
      const d = scratchDir("meshfleet-probe-");
      mkdirSync(path.join(d, "deep"));
      writeFileSync(path.join(d, "deep", "file"), "x");
      teardown();
      expect(existsSync(root)).toBe(false);
    } finally {
      process.env[SCRATCH_ENV] = before;
    }
  });
});
