/**
 * RouteApproval: after a node joined, headscale approves exactly the routes
 * the fleet declares for it (meshfleet:headscale:RouteApproval). Approval
 * itself is declarative (the policy's autoApprovers, generated from the
 * fleet) and verified against the coordinator's view (`nodes list`), never
 * assumed: headscale 0.25–0.26 had autoApprover bugs (juanfont/headscale#2485,
 * #2547). An approval the fleet no longer declares is revoked: headscale
 * keeps approving a route a router stopped advertising. A missing approval
 * fails the deploy naming host and route.
 */
import * as pulumi from "@pulumi/pulumi";
import { RouteApprovalResource } from "../provider/sdk.ts";
import type { SshConnection } from "../provider/types.ts";
import type { HeadscaleCli, RouteExpectation } from "./headscaleCli.ts";

export interface RouteApprovalArgs {
  /**
   * What the fleet declares for the node.
   * @example { host: "router", hostname: "router", routes: ["192.168.8.0/24"], exitNode: false }
   */
  expect: RouteExpectation;
  /**
   * Where the headscale CLI runs.
   * @example coordinator.cli
   */
  cli: HeadscaleCli;
  /**
   * SSH connection to the coordinator host (with its pinned host keys).
   * @example hostConnection(fleet.hosts["vps"], ssh)
   */
  connection: SshConnection;
  /**
   * Private key text (a secret) when the connection names no key file.
   * @default undefined
   * @example privateKeyInput(ssh).sshPrivateKey
   */
  sshPrivateKey?: pulumi.Input<string>;
  /**
   * Re-verified when this changes (the node's generation hash).
   * @default ""
   * @example agent.generation
   */
  trigger?: pulumi.Input<string>;
  /**
   * Seconds to wait for the node to register and its routes to show up as approved.
   * @default 60
   * @example 180
   */
  timeoutSeconds?: number;
}

export class RouteApproval extends pulumi.ComponentResource {
  /** The declared routes headscale approves (the resource fails the deploy when one is missing). */
  public readonly approvedRoutes: pulumi.Output<string[]>;
  public readonly resource: RouteApprovalResource;

  constructor(name: string, args: RouteApprovalArgs, opts?: pulumi.ComponentResourceOptions) {
    super("meshfleet:index:RouteApproval", name, {}, opts);
    const want = args.expect;
    this.resource = new RouteApprovalResource(
      `${name}-approval`,
      {
        host: want.host,
        hostname: want.hostname,
        routes: [...want.routes],
        exitNode: want.exitNode,
        cli: args.cli,
        connection: args.connection,
        ...(args.sshPrivateKey !== undefined ? { sshPrivateKey: args.sshPrivateKey } : {}),
        trigger: args.trigger ?? "",
        timeoutSeconds: args.timeoutSeconds ?? 60,
      },
      { parent: this },
    );
    this.approvedRoutes = this.resource.approvedRoutes;
    this.registerOutputs({ approvedRoutes: this.approvedRoutes });
  }
}
