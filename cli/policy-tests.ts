/** The policy's `tests`, run on core/policy's evaluator against the fleet's declared nodes. */
import { fleetPolicyNodes } from "../core/policy-hooks.ts";
import { runPolicyTests, type Policy } from "../core/policy/index.ts";
import type { Diagnostic, FleetSystem } from "../core/types.ts";
import { diag } from "../core/diagnostics.ts";

export interface PolicyTestLine { path: string; pass: boolean; reason: string }

export async function runFleetPolicyTests(fleet: FleetSystem): Promise<{ results: PolicyTestLine[]; diagnostics: Diagnostic[] }> {
  const policy = fleet.policy as Policy | undefined;
  if (!policy?.tests?.length) return { results: [], diagnostics: [] };
  const report = runPolicyTests(fleetPolicyNodes(fleet), policy, { users: fleet.users });
  const file = `${fleet.dir}/fleet.yaml`;
  const results = report.results.map((r) => ({ path: `policy.${r.path}`, pass: r.passed, reason: r.errors.join("; ") || "as expected" }));
  const diagnostics = report.results
    .filter((r) => !r.passed)
    .map((r) => diag(file, `policy.${r.path}`, "the test to hold on the fleet's policy", r.errors.join("; "), "change the acls/grants, or the test if the policy is right"));
  return { results, diagnostics };
}
