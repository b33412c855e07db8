import { defineConfig } from "vitest/config";
// @ts-expect-error: a plain ESM config file without types
import { GROUPS } from "./stryker.config.mjs";

// The unit suites that exercise the mutated files (stryker.config.mjs GROUPS); pure, no root, no lab.
// MESHFLEET_MUTATE_TESTS (comma-separated) narrows them for one group's run (scripts/mutate.mjs sets it), e.g.
//   MESHFLEET_MUTATE_TESTS=test/policy/ipset.test.ts npx stryker run --mutate core/policy/ipset.ts
const all = [...new Set((GROUPS as { tests: string[] }[]).flatMap((g) => g.tests))];

interface Task {
  type: string;
  name: string;
  mode: string;
  tasks?: Task[];
  file?: Task;
  suite?: Task;
  filepath?: string;
  result?: { state?: string; errors?: { message?: string }[] };
}
const hasFailedTest = (t: Task): boolean => (t.tasks ?? []).some((x) => (x.type === "test" && x.result?.state === "fail") || hasFailedTest(x));

/**
 * A test file that fails to load is a failed test. Stryker's vitest runner
 * counts only the tests it collects, so a mutant that makes a module throw on
 * import (ipset's constants are computed at load) would look survived: with
 * bail 1, the failed import also cancels every other file, 0 tests run, and
 * nothing failed. Here such a file gets one failed test that carries its error.
 * The same for a file whose beforeAll throws (bundle-edges builds the schemas
 * there, and a mutant such as an empty z.union([]) makes that build throw):
 * vitest fails the file and runs none of its tests, so no test failed either.
 */
const loadFailures = {
  onFinished(files: Task[] = []) {
    for (const file of files) {
      if (file.result?.state !== "fail" || hasFailedTest(file)) continue;
      const errors = file.result.errors?.length ? file.result.errors : [{ message: `${file.filepath}: the test file did not load, or a hook before its tests failed` }];
      (file.tasks ??= []).push({ type: "test", name: "the test file loads", mode: "run", file, suite: file, result: { state: "fail", errors } });
    }
  },
};

export default defineConfig({
  test: {
    include: process.env.MESHFLEET_MUTATE_TESTS?.split(",").filter(Boolean) ?? all,
    globalSetup: ["test/scratch.ts"], // scratch folders under one per run, removed at its end
    testTimeout: 60_000,
    reporters: ["default", loadFailures],
  },
});
