/**
 * The seam between fleet evaluation and the policy model (core/policy):
 * parse and validate the typed policy against the fleet, generate
 * autoApprovers from the hosts that advertise routes, and render the HuJSON
 * headscale reads. (The fleet's nodes as the evaluator sees them:
 * core/policy/fleet.ts.)
 */
import type { FleetConfig } from "./fleet-schema.ts";
import { zodDiagnostics } from "./merge.ts";
import type { PeerView } from "./module.ts";
import {
  generateAutoApprovers, policySchema, renderPolicyHuJson, validatePolicy,
  type AdvertisingHost, type Policy,
} from "./policy/index.ts";
import type { Diagnostic } from "./types.ts";

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
