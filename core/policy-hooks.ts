/**
 * The seam between fleet evaluation and the policy model (core/policy):
 * parse and validate the typed policy against the fleet, generate
 * autoApprovers from the hosts that advertise routes, render the HuJSON
 * headscale reads, and describe the fleet's nodes to the evaluator.
 */
import type { FleetConfig } from "./fleet-schema.ts";
import { zodDiagnostics } from "./merge.ts";
import type { PeerView } from "./module.ts";
import {
  generateAutoApprovers, policySchema, renderPolicyHuJson, syntheticIps, validatePolicy,
  type AdvertisingHost, type Policy, type PolicyNode,
} from "./policy/index.ts";
import type { Diagnostic, FleetSystem } from "./types.ts";

export interface PolicyPrepared {
  policy: Policy | undefined;
  huJson: string;
  autoApprovers: { routes: Record<string, string[]>; exitNode: string[] };
  diagnostics: Diagnostic[];
}

export interface PolicyInput {
  fleetFile: string;
  fleet: FleetConfig;
  peers: Record<string, PeerView>;
}

function advertisedRoutes(p: PeerView): string[] {
  const ts = p.options.tailscale;
  return [...new Set([...(ts?.advertiseRoutes ?? []), ...(p.options["subnet-router"]?.enable ? p.options["subnet-router"].routes : [])])];
}
const isExitNode = (p: PeerView) => !!(p.options.tailscale?.advertiseExitNode || p.options["exit-node"]?.enable);
const inMesh = (p: PeerView) => !!p.options.tailscale?.enable;

export const policyHooks = {
  prepare(raw: unknown, input: PolicyInput): PolicyPrepared {
    const empty = { policy: undefined, huJson: "", autoApprovers: { routes: {}, exitNode: [] } };
    const parsed = policySchema.safeParse(raw ?? {}, { reportInput: true });
    if (!parsed.success) return { ...empty, diagnostics: zodDiagnostics(policySchema, parsed.error, new Map(), input.fleetFile, "policy") };
    const policy = parsed.data;
    const peers = Object.values(input.peers).filter(inMesh);
    const diagnostics = validatePolicy(policy, {
      file: input.fleetFile,
      basePath: "policy",
      users: input.fleet.users,
      hostTags: Object.fromEntries(peers.map((p) => [p.name, p.options.tailscale.tags])),
      hostNames: Object.keys(input.peers),
      advertisedRoutes: Object.fromEntries(peers.map((p) => [p.name, advertisedRoutes(p)])),
      exitNodes: peers.filter(isExitNode).map((p) => p.name),
      coordinatorHost: input.fleet.coordinator.host,
      adminUsers: input.fleet.admins,
    });
    const hosts: AdvertisingHost[] = peers.map((p) => ({
      name: p.name, tags: p.options.tailscale.tags, user: p.options.tailscale.user || undefined,
      routes: advertisedRoutes(p), exitNode: isExitNode(p),
    }));
    const autoApprovers = generateAutoApprovers(hosts, policy.autoApprovers);
    return { policy, huJson: renderPolicyHuJson(policy, autoApprovers), autoApprovers, diagnostics };
  },
};

/**
 * The fleet's nodes as the policy evaluator sees them, before any joined:
 * declared routes count as approved (autoApprovers approve them), and nodes
 * get stable placeholder tailnet addresses.
 */
export function fleetPolicyNodes(fleet: FleetSystem): PolicyNode[] {
  return syntheticIps(
    Object.values(fleet.hosts)
      .filter((h) => h.tailscale.enable)
      .map((h) => {
        const user = (fleet.hosts[h.name] && userOf(fleet, h.name)) || undefined;
        return {
          name: h.name,
          user,
          tags: h.tailscale.tags,
          ips: [],
          approvedRoutes: [...h.tailscale.advertiseRoutes, ...(h.tailscale.advertiseExitNode ? ["0.0.0.0/0", "::/0"] : [])],
        };
      }),
  );
}

function userOf(fleet: FleetSystem, host: string): string | undefined {
  return fleet.preAuthKeys.find((k) => k.host === host)?.user || undefined;
}
