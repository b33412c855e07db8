/** The lab fleet's policy as a who-can-reach-what matrix and its advertised routes, from core's own evaluator. */
import { evaluateFleet } from "../../core/eval.ts";
import { REGISTRY } from "../../modules/index.ts";
import { evaluateReachability, fleetPolicyNodes, type Policy } from "../../core/policy/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { FLEET_DIR } from "./fleet.ts";

async function fleet(): Promise<FleetSystem> {
  const r = await evaluateFleet(REGISTRY, FLEET_DIR, "lab");
  if (!r.fleet) throw new Error(`hosts/lab does not evaluate: ${r.diagnostics.map((d) => JSON.stringify(d)).slice(0, 3).join("; ")}`);
  return r.fleet;
}

export async function policyMatrix(): Promise<{ sources: string[]; destinations: string[]; cells: Record<string, Record<string, string>> }> {
  const f = await fleet();
  const reach = evaluateReachability(fleetPolicyNodes(f), (f.policy ?? {}) as Policy, { users: f.users.map((u) => u.replace(/@$/, "")) });
  const sources = [...reach.nodes];
  const destinations = reach.targets.map((t) => t.id);
  const cells: Record<string, Record<string, string>> = {};
  for (const p of reach.pairs()) (cells[p.src] ??= {})[p.dst] = p.spec;
  return { sources, destinations, cells };
}

export async function fleetRoutes(): Promise<{ host: string; routes: string[] }[]> {
  const f = await fleet();
  return Object.values(f.hosts)
    .filter((h) => h.tailscale.enable)
    .map((h) => ({ host: h.name, routes: [...h.tailscale.advertiseRoutes] }));
}
