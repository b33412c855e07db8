import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Lab suites boot real hosts in network namespaces: one file at a time,
    // so two suites never fight over the lab.
    fileParallelism: false,
    // Every scratchDir (test/scratch.ts) is under one folder per run, removed at its end.
    globalSetup: ["test/scratch.ts"],
    testTimeout: 120_000,
    hookTimeout: 600_000,
    reporters: ["default"],
  },
});
