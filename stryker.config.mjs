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

/**
 * The unit suites over core/policy/ (per-test coverage: a mutant runs only the tests that reach it).
 * Not fail-closed.test.ts or plan-nodes.test.ts: each spawns the CLI (6 s and 3 s a run), too slow to
 * repeat for every mutant; fail-closed-rules.test.ts checks the same diagnostics in process.
 */
const POLICY_TESTS = [
  "test/policy/policy.test.ts",
  "test/policy/enforce-rules.test.ts",
  "test/policy/fail-closed-rules.test.ts",
  "test/policy/synthetic.test.ts",
  "test/policy/render-approvers.test.ts",
  "test/policy/alias.test.ts",
  "test/policy/resolve.test.ts",
  "test/policy/compile.test.ts",
  "test/policy/validate.test.ts",
  "test/policy/tests.test.ts",
  "test/policy/reachability.test.ts",
  "test/policy/sshtests.test.ts",
  "test/policy/schema.test.ts",
  "test/policy/fleet.test.ts",
  "test/policy/live.test.ts",
  "test/policy/saas-policy.test.ts",
  "test/policy/fleet-policy.test.ts",
  "test/core/enforce.test.ts",
];

/** The files issue 16 names, and the tests that exercise each. */
export const GROUPS = [
  { name: "merge", mutate: ["core/merge.ts"], tests: ["test/core/merge.test.ts", "test/core/merge-edges.test.ts"] },
  { name: "ipset", mutate: ["core/policy/ipset.ts"], tests: ["test/policy/ipset.test.ts", "test/policy/ipset-edges.test.ts"] },
  // core/policy/ beside ipset: some 3,900 mutants, far more than one run of an evening on a shared
  // 2-core machine, so a group per part, in the order they matter (each group's report is kept
  // when it ends, so the first parts have figures even if a later one is stopped).
  // Not corpus.test.ts: it needs the built headscale.
  // policy-compile held alias, autoapprovers and render too until 2026-11-30 22:20: policy-alias's
  // report then was that run's figures for those three files.
  { name: "policy-alias", mutate: ["core/policy/alias.ts", "core/policy/autoapprovers.ts", "core/policy/render.ts"], tests: POLICY_TESTS },
  { name: "policy-compile", mutate: ["core/policy/compile.ts", "core/policy/resolve.ts"], tests: POLICY_TESTS },
  { name: "policy-enforce", mutate: ["core/policy/enforce.ts", "core/policy/fail-closed.ts", "core/policy/synthetic.ts"], tests: POLICY_TESTS },
  { name: "policy-validate", mutate: ["core/policy/validate.ts"], tests: POLICY_TESTS },
  // The evaluator, split by size (mutants counted 2026-11-30: reachability 441, tests 194, sshtests 457,
  // fleet 391, schema 37; about 40 a minute at load 10-14): each group ends well inside an hour.
  // At load 16 policy-reach's own estimate for both files was 50 min: each file is now a group of its own.
  { name: "policy-reach", mutate: ["core/policy/reachability.ts"], tests: POLICY_TESTS },
  { name: "policy-tests", mutate: ["core/policy/tests.ts"], tests: POLICY_TESTS },
  { name: "policy-ssh", mutate: ["core/policy/sshtests.ts"], tests: POLICY_TESTS },
  { name: "policy-fleet", mutate: ["core/policy/fleet.ts", "core/policy/schema.ts"], tests: POLICY_TESTS },
  // saas.test.ts evaluates two fleets before its tests and runs the CLI: slow, so only here (live 238, saas 388).
  { name: "policy-io", mutate: ["core/policy/live.ts", "core/policy/saas.ts", "core/policy/index.ts"], tests: [...POLICY_TESTS, "test/policy/saas.test.ts"] },
  // Not bundle.test.ts: its goldens follow every module's output (and it builds the agent), so any
  // other change in flight fails its dry run; nor fuzz.test.ts, whose property runs cover every schema
  // mutant and would triple the run. bundle-edges.test.ts holds the contract's own cases.
  // The schemas are built once, on first use: bundle-edges builds them in its beforeAll, outside any
  // test, so their mutants count as static and run against every test of the file. (Coverage "all"
  // does not do it: the vitest runner reports per-test coverage anyway and Stryker uses it, so a
  // schema mutant met only the first test that parsed a bundle: the 136 survivors of 16:10.)
  { name: "bundle", mutate: ["core/bundle.ts", "contract/bundle.ts"], tests: ["test/contract/bundle-edges.test.ts"] },
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
  // Not the CLI's build output either: another session rebuilding dist/ while a sandbox was copied
  // failed that group's run (ENOENT on dist/cli/manifest.json), and no unit suite here reads it.
  ignorePatterns: ["/.stryker-tmp", "/.lab", "/reports", "/scratch", "/dist"],
  cleanTempDir: "always",
  thresholds: { high: 90, low: 80, break: null },
};
