// Mutation testing of the core (issue 16, item 5): `npm run mutate`.
// Out of CI: a full run takes far longer than CI's time limit on a small machine.
//
// `npm run mutate` (scripts/mutate.mjs) runs Stryker once per group below,
// each group's files against only the unit suites that exercise them, and
// prints killed/survived/no coverage/timeouts and the score per file.
//   npm run mutate -- agent ipset        some groups only
//   npm run mutate -- --concurrency 2    more test runners (default 1)
// A group's mutants that run at module load ("static": ipset's constants)
// re-run that group's whole test set, which is why each set stays narrow.
// Never the lab's or the real-tool suites.

/** The files issue 16 names, and the tests that exercise each. */
export const GROUPS = [
  { name: "merge", mutate: ["core/merge.ts"], tests: ["test/core/merge.test.ts", "test/core/merge-edges.test.ts"] },
  { name: "ipset", mutate: ["core/policy/ipset.ts"], tests: ["test/policy/ipset.test.ts", "test/policy/ipset-edges.test.ts"] },
  {
    name: "policy",
    mutate: ["core/policy/**/*.ts", "!core/policy/ipset.ts"],
    // Not corpus.test.ts: it needs the built headscale.
    tests: ["test/policy/policy.test.ts", "test/policy/fail-closed.test.ts", "test/policy/fleet-policy.test.ts", "test/policy/plan-nodes.test.ts", "test/core/enforce.test.ts"],
  },
  // Not bundle.test.ts: its goldens follow every module's output (and it builds the agent), so any
  // other change in flight fails its dry run; nor fuzz.test.ts, whose property runs cover every schema
  // mutant and would triple the run. bundle-edges.test.ts holds the contract's own cases.
  // coverage "all": the schemas are built once, on first use, so per-test coverage would credit only the
  // first test that parsed a bundle with a schema mutant and never run the tests that check each message.
  { name: "bundle", mutate: ["core/bundle.ts", "contract/bundle.ts"], tests: ["test/contract/bundle-edges.test.ts"], coverageAnalysis: "all" },
  { name: "agent", mutate: ["agent/plan.ts", "agent/activate.ts"], tests: ["test/agent/plan.test.ts", "test/agent/activate.test.ts"] },
];

const env = (k) => process.env[k]?.split(",").filter(Boolean);
// One group's run has its own report and sandbox folder, so two groups can run side by side.
const run = process.env.MESHFLEET_MUTATE_GROUP ?? "mutation";

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  plugins: ["@stryker-mutator/vitest-runner"],
  // The test files come from MESHFLEET_MUTATE_TESTS (stryker.vitest.config.ts).
  vitest: { configFile: "stryker.vitest.config.ts", related: false },
  mutate: env("MESHFLEET_MUTATE_FILES") ?? GROUPS.flatMap((g) => g.mutate),
  coverageAnalysis: process.env.MESHFLEET_MUTATE_COVERAGE ?? "perTest",
  // A group's next run retests only the mutants whose code or covering tests changed (--force: all).
  incremental: true,
  incrementalFile: `reports/stryker-incremental-${run}.json`,
  concurrency: 1,
  timeoutMS: 20_000,
  reporters: ["clear-text", "progress-append-only", "json", "html"],
  jsonReporter: { fileName: `reports/mutation/${run}.json` },
  htmlReporter: { fileName: `reports/mutation/${run}.html` },
  tempDirName: `.stryker-tmp/${run}`,
  // Not copied into a sandbox: another group's sandbox, the lab's state, reports.
  ignorePatterns: ["/.stryker-tmp", "/.lab", "/reports", "/scratch"],
  cleanTempDir: "always",
  thresholds: { high: 90, low: 80, break: null },
};
