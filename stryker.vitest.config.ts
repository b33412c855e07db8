import { defineConfig } from "vitest/config";
// @ts-expect-error: a plain ESM config file without types
import { GROUPS } from "./stryker.config.mjs";

// The unit suites that exercise the mutated files (stryker.config.mjs GROUPS); pure, no root, no lab.
// MESHFLEET_MUTATE_TESTS (comma-separated) narrows them for one group's run (scripts/mutate.mjs sets it), e.g.
//   MESHFLEET_MUTATE_TESTS=test/policy/ipset.test.ts npx stryker run --mutate core/policy/ipset.ts
const all = [...new Set((GROUPS as { tests: string[] }[]).flatMap((g) => g.tests))];
export default defineConfig({
  test: {
    include: process.env.MESHFLEET_MUTATE_TESTS?.split(",").filter(Boolean) ?? all,
    testTimeout: 60_000,
  },
});
