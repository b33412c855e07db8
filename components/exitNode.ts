/**
 * ExitNode: a host offering 0.0.0.0/0 and ::/0 to the mesh. Same shape as a
 * subnet router (Proxmox CT or plain host, agent, approval check of both
 * exit routes).
 */
import type * as pulumi from "@pulumi/pulumi";
import { NodeBase, validateMeshNodeArgs, type MeshNodeArgs } from "./node.ts";

export type ExitNodeArgs = MeshNodeArgs;

export function validateExitNodeArgs(args: ExitNodeArgs): string[] {
  const h = args.host;
  const p = validateMeshNodeArgs(args);
  if (!h.tailscale.enable || !h.tailscale.advertiseExitNode) p.push(`${h.file}: tailscale.advertiseExitNode: an exit node must set it to true, found false`);
  for (const k of ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]) {
    if (h.sysctl[k] !== "1") p.push(`${h.file}: sysctl: an exit node needs ${k} = 1, found ${JSON.stringify(h.sysctl[k] ?? null)}`);
  }
  if (!h.agent) p.push(`${h.file}: agent: an exit node is configured by the agent; found agent: false`);
  return p;
}

export class ExitNode extends NodeBase {
  constructor(name: string, args: ExitNodeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("meshfleet:index:ExitNode", name, args, validateExitNodeArgs(args), opts);
  }
}
