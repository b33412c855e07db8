/**
 * The tailnet policy as typed data: its schema, its checks, its rendering to
 * headscale's HuJSON, and an evaluator that answers "who can reach what, and
 * why" with headscale 0.29's semantics.
 */
export { policySchema, type Policy, type AutoApprovers, type AclRule, type GrantRule, type SshRule, type PolicyTest } from "./schema.ts";
export { validatePolicy, type PolicyContext } from "./validate.ts";
export { generateAutoApprovers, type AdvertisingHost } from "./autoapprovers.ts";
export { renderPolicyHuJson } from "./render.ts";
export { evaluateReachability, canonicalSpec, type ReachabilityResult, type ReachTarget, type ReachPair, type PairAccess } from "./reachability.ts";
export { runPolicyTests, type PolicyTestResult, type PolicyTestsReport, type TestLine } from "./tests.ts";
export { tailnetRulesForHost, type HostTailnetRules } from "./enforce.ts";
export { syntheticIps } from "./synthetic.ts";
export type { PolicyNode } from "./resolve.ts";
export type { RuleOrigin } from "./compile.ts";
export { fleetPolicyNodes, fleetUsers, runFleetTests, type FleetTestsOptions } from "./fleet.ts";
export { runSshTests, type SshTestsReport, type SshTestResult, type SshTestLine } from "./sshtests.ts";
export { parseNodesList, readNodesFile, MAX_NODES_FILE, type LiveNode } from "./live.ts";
