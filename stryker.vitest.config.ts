import { defineConfig } from "vitest/config";

// The unit suites that exercise the mutated files (stryker.config.mjs); pure, no root, no lab.
// MESHFLEET_MUTATE_TESTS (comma-separated) narrows them for a scoped run, e.g.
//   MESHFLEET_MUTATE_TESTS=test/policy/ipset.test.ts npm run mutate -- --mutate core/policy/ipset.ts
export default defineConfig({
  test: {
    include: process.env.MESHFLEET_MUTATE_TESTS?.split(",") ?? [
      "test/core/merge.test.ts",
      "test/policy/ipset.test.ts",
      "test/policy/policy.test.ts",
      "test/contract/bundle.test.ts",
      "test/contract/render.test.ts",
      "test/agent/agent.test.ts",
    ],
    testTimeout: 60_000,
  },
});
