/**
 * HeadscaleUser: a user on the coordinator, created with the headscale CLI
 * over SSH and destroyed with it on `pulumi destroy`. A changed name is a new
 * user (replace), never a rename behind the fleet's back.
 */
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { assertNoProblems } from "./shell.ts";
import { headscaleCommand, parseUserJson, usersCreateArgs, usersDestroyArgs, type HeadscaleCli } from "./headscaleCli.ts";

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
   * SSH connection to the coordinator host.
   * @example hostConnection(fleet.hosts["vps"], sshPrivateKey)
   */
  connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
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
  public readonly command: command.remote.Command;

  constructor(name: string, args: HeadscaleUserArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateHeadscaleUserArgs(args), `HeadscaleUser ${name}`);
    super("meshfleet:index:HeadscaleUser", name, {}, opts);
    this.command = new command.remote.Command(
      `${name}-create`,
      {
        connection: args.connection,
        create: headscaleCommand(args.cli, usersCreateArgs(args.user)),
        delete: headscaleCommand(args.cli, usersDestroyArgs(args.user)),
      },
      // `create` holds the name: a new name replaces the resource (destroy old user after creating the new).
      { parent: this, replaceOnChanges: ["create"], deleteBeforeReplace: true },
    );
    const info = this.command.stdout.apply((out) => parseUserJson(out, args.user));
    this.userId = info.apply((i) => i.id);
    this.userName = info.apply((i) => i.name);
    this.registerOutputs({ userId: this.userId, userName: this.userName });
  }
}
