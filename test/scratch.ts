/**
 * Scratch folders for tests. A folder a test makes in the system's temp folder
 * and never removes, or means to remove in a process exit handler (vitest ends
 * its workers without running those), stays there for good: 35 to 50 per run
 * of the suite, before this. `scratchDir` makes its folders under one folder per test run
 * (`MESHFLEET_TEST_SCRATCH`, made by `globalSetup` below, which vitest.config.ts
 * names), and the run's teardown removes that folder, whatever the tests did.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export const SCRATCH_ENV = "MESHFLEET_TEST_SCRATCH";

/** A new folder for a test, removed at the end of the test run at the latest. */
export function scratchDir(prefix: string): string {
  return mkdtempSync(path.join(process.env[SCRATCH_ENV] || tmpdir(), prefix));
}

/** Vitest's global setup: the run's scratch folder, set for every worker; the teardown it returns removes it. */
export function globalSetup(): () => void {
  const root = mkdtempSync(path.join(tmpdir(), "meshfleet-test-"));
  process.env[SCRATCH_ENV] = root;
  return () => rmSync(root, { recursive: true, force: true });
}
export default globalSetup;
