// Mutation testing of the core (issue 16, item 5): `npm run mutate`.
// Out of CI: a full run takes far longer than CI's time limit on a small machine.
// Scope it with --mutate, e.g. `npm run mutate -- --mutate core/merge.ts,core/policy/ipset.ts`.
// The tests it runs are the pure unit suites of these files (stryker.vitest.config.ts),
// never the lab's or the real-tool suites.
/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  plugins: ["@stryker-mutator/vitest-runner"],
  vitest: { configFile: "stryker.vitest.config.ts", related: false },
  mutate: ["core/merge.ts", "core/policy/**/*.ts", "core/bundle.ts", "contract/bundle.ts", "agent/plan.ts", "agent/activate.ts"],
  coverageAnalysis: "perTest",
  concurrency: 2,
  timeoutMS: 20_000,
  reporters: ["clear-text", "progress", "html"],
  htmlReporter: { fileName: "reports/mutation/index.html" },
  tempDirName: ".stryker-tmp",
  cleanTempDir: "always",
  thresholds: { high: 90, low: 80, break: null },
};
