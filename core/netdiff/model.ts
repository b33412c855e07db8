/**
 * The network a fleet describes, reduced to what a reviewer cares about:
 * hosts and their roles, tags, routes and exit nodes, public ports, DNS
 * records, versions, and who can reach what under the policy.
 */
import type { FleetSystem } from "../types.ts";
import { evaluateReachability, fleetPolicyNodes, fleetUsers, type LiveNode, type ReachabilityResult } from "../policy/index.ts";
import type { Policy } from "../policy/index.ts";
import { EXIT_ROUTES } from "../../contract/constants.ts";

export interface HostModel {
  name: string;
  roles: string[];
  tags: string[];
  /** Advertised subnet routes. */
  routes: string[];
  /** Routes the policy's autoApprovers approve (the rest need manual approval). */
  approvedRoutes: string[];
  exitNode: boolean;
  /** `tcp/443 from anywhere (reverse-proxy)` keyed by `proto/port`. */
  publicPorts: Record<string, string>;
}

export interface NetworkModel {
  stack: string;
  hosts: Record<string, HostModel>;
  /** `name A value` */
  dns: string[];
  /** `headscale` -> `0.29.2`, `vps: container headscale` -> image, `lxc-tailscale: pve` -> `8.2`. */
  versions: Record<string, string>;
  policyHuJson: string;
  reach: ReachabilityResult;
}

/** `live`: the coordinator's nodes (plan --nodes), so reachability is evaluated on their real addresses. */
export function networkModel(fleet: FleetSystem, live?: LiveNode[]): NetworkModel {
  const nodes = fleetPolicyNodes(fleet, live);
  const reach = evaluateReachability(nodes, (fleet.policy ?? {}) as Policy, { users: fleetUsers(fleet, live) });
  const hosts: Record<string, HostModel> = {};
  const versions: Record<string, string> = {};
  if (fleet.coordinator?.headscaleVersion) versions.headscale = fleet.coordinator.headscaleVersion;
  for (const h of Object.values(fleet.hosts)) {
    const node = nodes.find((n) => n.name === h.name);
    const publicPorts: Record<string, string> = {};
    if (h.firewall.enable) {
      for (const r of h.firewall.inbound) {
        publicPorts[`${r.proto}/${r.port}`] = `from ${r.from.length ? r.from.join(", ") : "anywhere"} (${r.owner})`;
      }
    }
    hosts[h.name] = {
      name: h.name,
      roles: [...h.roles].sort(),
      tags: h.tailscale.enable ? [...h.tailscale.tags].sort() : [],
      routes: h.tailscale.enable ? [...h.tailscale.advertiseRoutes].sort() : [],
      approvedRoutes: (node?.approvedRoutes ?? []).filter((r) => !EXIT_ROUTES.includes(r)).sort(),
      exitNode: h.tailscale.enable && h.tailscale.advertiseExitNode,
      publicPorts,
    };
    for (const c of h.containers) versions[`${h.name}: container ${c.name}`] = c.image;
    if (h.lxc) versions[`${h.name}: proxmox`] = h.lxc.pveVersion;
  }
  return {
    stack: fleet.stack,
    hosts,
    dns: fleet.dnsRecords.map((r) => `${r.name} ${r.type} ${r.value}`).sort(),
    versions,
    policyHuJson: fleet.policyHuJson,
    reach,
  };
}

/** The model of "no fleet yet" (a base revision without the stack). */
export function emptyModel(stack: string): NetworkModel {
  return { stack, hosts: {}, dns: [], versions: {}, policyHuJson: "", reach: evaluateReachability([], { grants: [] }) };
}
