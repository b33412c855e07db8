import { defineConfig } from "vitest/config";

// The unit suites that exercise the mutated files (stryker.config.mjs); pure, no root, no lab.
export default defineConfig({
  test: {
    include: [
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
