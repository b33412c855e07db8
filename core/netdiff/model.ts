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
  /**
   * What meshfleet's table does to inbound traffic outside the tailnet that
   * no rule accepts: drop it, accept it (a plain client's default), or
   * nothing at all (`off`: no table, firewall.enable false or no agent).
   */
  inputPolicy: InputPolicy;
  /**
   * With inputPolicy drop, what stays open: `from anywhere (reverse-proxy)`
   * keyed by `proto/port`, and ports open on one interface or to one source
   * keyed `tcp/445 on eth0`, `tcp/445 from 192.168.8.0/24`. Empty otherwise
   * (everything is open, or meshfleet drops nothing).
   */
  publicPorts: Record<string, string>;
  /**
   * With inputPolicy accept, what is dropped all the same because the host
   * asked for it: `tcp/22` -> `only from 192.0.2.0/24 (ssh)`, `icmp echo`.
   */
  limited: Record<string, string>;
}

export type InputPolicy = "drop" | "accept" | "off";

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
  // The first node of each name (a find per host was quadratic: 50 million comparisons at 10,000 hosts).
  const nodeOf = new Map<string, (typeof nodes)[number]>();
  for (const n of nodes) if (!nodeOf.has(n.name)) nodeOf.set(n.name, n);
  for (const h of Object.values(fleet.hosts)) {
    const node = nodeOf.get(h.name);
    const publicPorts: Record<string, string> = {};
    const limited: Record<string, string> = {};
    const inputPolicy: InputPolicy = h.firewall.enable ? (h.firewall.defaultPolicy ?? "drop") : "off";
    // In the table's order: by protocol and port, then the scoped ports (core/render.ts hostFirewall).
    const inbound = [...h.firewall.inbound].sort((x, y) => x.proto.localeCompare(y.proto) || x.port - y.port);
    if (inputPolicy === "drop") {
      for (const r of inbound) {
        publicPorts[`${r.proto}/${r.port}`] = `from ${r.from.length ? r.from.join(", ") : "anywhere"} (${r.owner})`;
      }
      for (const r of h.firewall.scoped ?? [])
        for (const p of [...r.ports, ...(r.ranges ?? [])]) {
          const where = [...(r.iifname !== undefined ? [`on ${r.iifname}`] : []), ...(r.from?.length ? [`from ${r.from.join(", ")}`] : [])].join(" ");
          publicPorts[`${r.proto}/${p}${where ? ` ${where}` : ""}`] = `(${r.comment})`;
        }
    } else if (inputPolicy === "accept") {
      // Only what the host asked to drop (core/render.ts hostFirewall, policy accept).
      for (const r of inbound) if (r.from.length) limited[`${r.proto}/${r.port}`] = `only from ${r.from.join(", ")} (${r.owner})`;
      if (!h.firewall.allowPing) limited["icmp echo"] = "(firewall.allowPing: false)";
    }
    hosts[h.name] = {
      name: h.name,
      roles: [...h.roles].sort(),
      tags: h.tailscale.enable ? [...h.tailscale.tags].sort() : [],
      routes: h.tailscale.enable ? [...h.tailscale.advertiseRoutes].sort() : [],
      approvedRoutes: (node?.approvedRoutes ?? []).filter((r) => !EXIT_ROUTES.includes(r)).sort(),
      exitNode: h.tailscale.enable && h.tailscale.advertiseExitNode,
      inputPolicy,
      publicPorts,
      limited,
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
