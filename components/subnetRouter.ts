/**
 * SubnetRouter: a host advertising LAN routes into the mesh (the seeds'
 * LXC_tailscale in CT 205). On Proxmox its CT is created or adopted with
 * `pct` (TUN passthrough, started) before the agent configures it; then the
 * routes are checked as approved on the coordinator.
 */
import type * as pulumi from "@pulumi/pulumi";
import { NodeBase, validateMeshNodeArgs, type MeshNodeArgs } from "./node.ts";

export type SubnetRouterArgs = MeshNodeArgs;

export function validateSubnetRouterArgs(args: SubnetRouterArgs): string[] {
  const h = args.host;
  const p = validateMeshNodeArgs(args);
  if (!h.tailscale.enable || h.tailscale.advertiseRoutes.length === 0) p.push(`${h.file}: tailscale.advertiseRoutes: a subnet router must advertise at least one route, found none`);
  if (h.sysctl["net.ipv4.ip_forward"] !== "1") p.push(`${h.file}: sysctl: a subnet router needs net.ipv4.ip_forward = 1 (tailscale does not set it), found ${JSON.stringify(h.sysctl["net.ipv4.ip_forward"] ?? null)}`);
  if (!h.agent) p.push(`${h.file}: agent: a subnet router is configured by the agent; found agent: false`);
  return p;
}

export class SubnetRouter extends NodeBase {
  constructor(name: string, args: SubnetRouterArgs, opts?: pulumi.ComponentResourceOptions) {
    super("meshfleet:index:SubnetRouter", name, args, validateSubnetRouterArgs(args), opts);
  }
}
