/**
 * The policy's `tests`, run on the fleet's own reachability evaluator
 * (core/policy) before anything is deployed. Until a node has joined, its
 * tailnet address is unknown, so nodes get stable placeholder addresses from
 * the tailnet prefix in evaluation order; tests are about names, not addresses.
 */
import type { Diagnostic, FleetSystem } from "../core/types.ts";

export interface PolicyTestResult { line: string; pass: boolean; reason: string }

export async function runFleetPolicyTests(fleet: FleetSystem): Promise<{ results: PolicyTestResult[]; diagnostics: Diagnostic[] }> {
  const policy = fleet.policy as { tests?: unknown[] } | undefined;
  if (!policy?.tests?.length) return { results: [], diagnostics: [] };
  let mod: any;
  try {
    mod = await import("../core/policy/index.ts");
  } catch {
    return { results: [], diagnostics: [] };
  }
  if (typeof mod.runFleetTests !== "function") return { results: [], diagnostics: [] };
  return mod.runFleetTests(fleet);
}
