/**
 * HeadscaleUser: a user on the coordinator (meshfleet:headscale:User),
 * created with the headscale CLI over SSH (an existing user of that name is
 * adopted) and destroyed with it on `pulumi destroy`. A changed name is a
 * new user (replace), never a rename behind the fleet's back.
 */
import * as pulumi from "@pulumi/pulumi";
import type { SshConnection } from "../provider/types.ts";
import { HeadscaleUserResource } from "../provider/sdk.ts";
import { assertNoProblems } from "./shell.ts";
import type { HeadscaleCli } from "./headscaleCli.ts";

export interface HeadscaleUserArgs {
  /**
   * The user name (≥ 2 characters, starts with a letter; letters, digits, `-._` and one `@`).
   * @example "alice"
   */
  user: string;
  /**
   * Where the headscale CLI runs.
   * @example { runtime: "docker", container: "headscale" }
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
}

const USER_NAME = /^[A-Za-z][A-Za-z0-9._-]*(@[A-Za-z0-9._-]*)?$/;

export function validateHeadscaleUserArgs(args: Pick<HeadscaleUserArgs, "user">): string[] {
  return USER_NAME.test(args.user) && args.user.length >= 2
    ? []
    : [`fleet.yaml: users: expected a headscale user name (≥ 2 characters, a letter first, then letters, digits, -._ and at most one @), found ${JSON.stringify(args.user)}`];
}

export class HeadscaleUser extends pulumi.ComponentResource {
  /** The user's numeric id in headscale (what `preauthkeys create -u` takes). */
  public readonly userId: pulumi.Output<number>;
  public readonly userName: pulumi.Output<string>;
  public readonly resource: HeadscaleUserResource;

  constructor(name: string, args: HeadscaleUserArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateHeadscaleUserArgs(args), `HeadscaleUser ${name}`);
    super("meshfleet:index:HeadscaleUser", name, {}, opts);
    this.resource = new HeadscaleUserResource(
      `${name}-user`,
      { name: args.user, cli: args.cli, connection: args.connection, ...(args.sshPrivateKey !== undefined ? { sshPrivateKey: args.sshPrivateKey } : {}) },
      { parent: this },
    );
    this.userId = this.resource.userId;
    this.userName = pulumi.output(args.user);
    this.registerOutputs({ userId: this.userId, userName: this.userName });
  }
}
