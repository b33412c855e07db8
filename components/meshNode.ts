/**
 * MeshNode: a client host. With an agent, its generation (tailscale flags,
 * firewall, files) is pushed by HostAgent with its pre-auth key; without one
 * (a phone), it gets join instructions — login server and key — as a secret.
 */
import type * as pulumi from "@pulumi/pulumi";
import { NodeBase, validateMeshNodeArgs, type MeshNodeArgs } from "./node.ts";

export type { MeshNodeArgs } from "./node.ts";

export class MeshNode extends NodeBase {
  constructor(name: string, args: MeshNodeArgs, opts?: pulumi.ComponentResourceOptions) {
    super("meshfleet:index:MeshNode", name, args, validateMeshNodeArgs(args), opts);
  }
}
