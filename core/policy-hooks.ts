/**
 * The seam between fleet evaluation and the policy model (core/policy):
 * parse and validate the typed policy against the fleet's nodes, generate
 * autoApprovers from the nodes that advertise routes, and render the HuJSON
 * headscale reads. The nodes are the hosts' facts (their routes computed
 * once, by the option merge), so nothing here reads module options.
 */
import type { FleetConfig } from "./fleet-schema.ts";
import { zodDiagnostics } from "./merge.ts";
import {
  generateAutoApprovers, policySchema, renderPolicyHuJson, validatePolicy,
  type AdvertisingHost, type Policy,
} from "./policy/index.ts";
import type { FleetNode } from "./policy/fleet.ts";
import { failClosedDiagnostics } from "./policy/fail-closed.ts";
import type { Diagnostic } from "./types.ts";

export interface PolicyPrepared {
  policy: Policy | undefined;
  huJson: string;
  autoApprovers: { routes: Record<string, string[]>; exitNode: string[] };
  diagnostics: Diagnostic[];
}

/** A host that joins the mesh, as the policy needs it. */
export type PolicyHost = FleetNode;

export interface PolicyInput {
  fleetFile: string;
  fleet: FleetConfig;
  /** Every host of the fleet (a policy may name hosts that are not nodes). */
  hostNames: string[];
  /** The hosts that join the mesh. */
  nodes: PolicyHost[];
}

export const policyHooks = {
  prepare(raw: unknown, input: PolicyInput): PolicyPrepared {
    const empty = { policy: undefined, huJson: "", autoApprovers: { routes: {}, exitNode: [] } };
    const parsed = policySchema.safeParse(raw ?? {}, { reportInput: true });
    if (!parsed.success) return { ...empty, diagnostics: zodDiagnostics(policySchema, parsed.error, new Map(), input.fleetFile, "policy") };
    const policy = parsed.data;
    const nodes = input.nodes;
    const diagnostics = validatePolicy(policy, {
      file: input.fleetFile,
      basePath: "policy",
      users: input.fleet.users,
      oidcUsers: input.fleet.oidcUsers,
      hostTags: Object.fromEntries(nodes.map((n) => [n.name, n.tags])),
      hostNames: input.hostNames,
      advertisedRoutes: Object.fromEntries(nodes.map((n) => [n.name, n.routes])),
      exitNodes: nodes.filter((n) => n.exitNode).map((n) => n.name),
      coordinatorHost: input.fleet.coordinator.host,
      adminUsers: input.fleet.admins,
    });
    diagnostics.push(...failClosedDiagnostics(policy, raw, input.fleetFile)); // a policy fails closed (core/policy/fail-closed.ts)
    const hosts: AdvertisingHost[] = nodes.map((n) => ({
      name: n.name, tags: n.tags, user: n.user || undefined, routes: n.routes, exitNode: n.exitNode,
    }));
    const autoApprovers = generateAutoApprovers(hosts, policy.autoApprovers);
    return { policy, huJson: renderPolicyHuJson(policy, autoApprovers), autoApprovers, diagnostics };
  },
};
