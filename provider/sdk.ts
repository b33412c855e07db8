/**
 * The program side of meshfleet's provider: one `pulumi.CustomResource` class
 * per resource type, typed like a generated SDK. The engine loads the
 * provider for the `meshfleet` package from the project's
 * `plugins.providers` (no schema, no version). Outputs derived from a secret
 * under a new key are listed in `additionalSecretOutputs`, or the state
 * would hold them in clear.
 */
import * as pulumi from "@pulumi/pulumi";
import {
  TOKENS,
  type ContainerInputs,
  type DriftItem,
  type FileInputs,
  type GenerationInputs,
  type PlacementInputs,
  type PreAuthKeyInputs,
  type PrerequisitesInputs,
  type ReadyInputs,
  type RouteApprovalInputs,
  type ServiceCheckInputs,
  type UserInputs,
} from "./types.ts";

export type Args<T> = { [K in keyof T]: pulumi.Input<T[K]> };

function secretOutputs(opts: pulumi.CustomResourceOptions | undefined, names: string[]): pulumi.CustomResourceOptions {
  return { ...opts, additionalSecretOutputs: [...new Set([...(opts?.additionalSecretOutputs ?? []), ...names])] };
}

/** meshfleet:host:Generation — one host's generation, switched, confirmed and verified by its agent. */
export class Generation extends pulumi.CustomResource {
  declare readonly host: pulumi.Output<string>;
  /** The bundle hash the host runs (after the confirm; at the last refresh). */
  declare readonly hash: pulumi.Output<string>;
  /** The agent's generation number on the host. */
  declare readonly generation: pulumi.Output<number>;
  /** `meshfleet-agent status --json`. */
  declare readonly status: pulumi.Output<string>;
  /** What `verify` found different from the generation on the host. */
  declare readonly drift: pulumi.Output<DriftItem[]>;

  constructor(name: string, args: Args<GenerationInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.generation, name, { ...args, generation: undefined, status: undefined, drift: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}

/** meshfleet:host:File — a local file installed on a host (rename into place). */
export class HostFile extends pulumi.CustomResource {
  declare readonly remotePath: pulumi.Output<string>;
  declare readonly sha256: pulumi.Output<string>;
  declare readonly liveSha256: pulumi.Output<string>;

  constructor(name: string, args: Args<FileInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.file, name, { ...args, liveSha256: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}

/** meshfleet:host:ServiceCheck — systemd units that must be active. */
export class ServiceCheck extends pulumi.CustomResource {
  declare readonly states: pulumi.Output<Record<string, string>>;

  constructor(name: string, args: Args<ServiceCheckInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.serviceCheck, name, { ...args, states: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}

/** meshfleet:host:Prerequisites — the host's OS, agent runtime and declared packages, missing packages installed. */
export class Prerequisites extends pulumi.CustomResource {
  declare readonly installed: pulumi.Output<string[]>;

  constructor(name: string, args: Args<PrerequisitesInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.prerequisites, name, { ...args, installed: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}

/** meshfleet:headscale:User. */
export class HeadscaleUserResource extends pulumi.CustomResource {
  /** The user's numeric id (what `preauthkeys create -u` takes). */
  declare readonly userId: pulumi.Output<number>;

  constructor(name: string, args: Args<UserInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.user, name, { ...args, userId: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}

/** meshfleet:headscale:PreAuthKey — the key is a secret output from the moment it exists. */
export class PreAuthKeyResource extends pulumi.CustomResource {
  /** `hskey-auth-…` (secret). */
  declare readonly key: pulumi.Output<string>;
  declare readonly keyId: pulumi.Output<number>;
  declare readonly expired: pulumi.Output<boolean>;

  constructor(name: string, args: Args<PreAuthKeyInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.preAuthKey, name, { ...args, key: undefined, keyId: undefined, expired: undefined }, secretOutputs(opts, ["key", "sshPrivateKey"]));
  }
}

/** meshfleet:headscale:RouteApproval — declared routes approved, undeclared ones revoked. */
export class RouteApprovalResource extends pulumi.CustomResource {
  declare readonly nodeId: pulumi.Output<number>;
  declare readonly approvedRoutes: pulumi.Output<string[]>;

  constructor(name: string, args: Args<RouteApprovalInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.routeApproval, name, { ...args, nodeId: undefined, approvedRoutes: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}

/** meshfleet:headscale:Ready — headscale's CLI answers on the coordinator. */
export class HeadscaleReady extends pulumi.CustomResource {
  /** "serving" once headscale answered. */
  declare readonly state: pulumi.Output<string>;

  constructor(name: string, args: Args<ReadyInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.ready, name, { ...args, state: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}

/** meshfleet:headscale:Placement — the coordinator's host; a new host gets headscale's database moved to it first. */
export class CoordinatorPlacement extends pulumi.CustomResource {
  declare readonly movedFrom: pulumi.Output<string | undefined>;

  constructor(name: string, args: Args<PlacementInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.placement, name, { ...args, movedFrom: undefined, movedAt: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}

/** meshfleet:proxmox:Container — a host's LXC container, created or adopted with `pct`. */
export class ProxmoxContainer extends pulumi.CustomResource {
  declare readonly ctid: pulumi.Output<number>;
  /** `pct status`. */
  declare readonly status: pulumi.Output<string>;
  declare readonly missingConfig: pulumi.Output<string[]>;

  constructor(name: string, args: Args<ContainerInputs>, opts?: pulumi.CustomResourceOptions) {
    super(TOKENS.container, name, { ...args, status: undefined, missingConfig: undefined }, secretOutputs(opts, ["sshPrivateKey"]));
  }
}
