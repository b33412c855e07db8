/**
 * PreAuthKey: a headscale pre-auth key for one host, made with the CLI on the
 * coordinator. The key is a Pulumi secret from the moment it exists (the
 * command's stdout is an additional secret output and its logging is off).
 * Any change of its inputs makes a new key (replace) and expires the old one.
 */
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { assertNoProblems } from "./shell.ts";
import type { PreAuthKeyRequest } from "../core/types.ts";
import { headscaleCommand, parsePreAuthKeyJson, preAuthKeyCreateArgs, preAuthKeyExpireScript, type HeadscaleCli } from "./headscaleCli.ts";

export interface PreAuthKeyArgs {
  /**
   * What the fleet asks for (host, user, reusable, ephemeral, expiration, tags).
   * @example { host: "router", user: "alice", reusable: false, ephemeral: false, expiration: "90d", tags: ["tag:router"] }
   */
  request: PreAuthKeyRequest;
  /**
   * The owning user's numeric id (from HeadscaleUser.userId); undefined for a tags-only key.
   * @default undefined
   * @example user.userId
   */
  userId?: pulumi.Input<number>;
  /**
   * Where the headscale CLI runs.
   * @example { runtime: "systemd" }
   */
  cli: HeadscaleCli;
  /**
   * SSH connection to the coordinator host.
   * @example hostConnection(fleet.hosts["vps"], sshPrivateKey)
   */
  connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
}

const DURATION = /^\d+(ns|us|µs|ms|s|m|h|d|w|y)$/;
const TAG = /^tag:[A-Za-z0-9][A-Za-z0-9_-]*$/;

export function validatePreAuthKeyArgs(req: PreAuthKeyRequest): string[] {
  const p: string[] = [];
  const where = `fleet.yaml: preAuthKeys[${req.host}]`;
  if (!DURATION.test(req.expiration)) p.push(`${where}.expiration: expected a duration like 90d or 24h, found ${JSON.stringify(req.expiration)}`);
  for (const t of req.tags) if (!TAG.test(t)) p.push(`${where}.tags: expected tag:<name>, found ${JSON.stringify(t)}`);
  if (!req.user && req.tags.length === 0) p.push(`${where}: a pre-auth key needs a user or tags (headscale 0.29), found neither. Fix: set user or tags`);
  return p;
}

export class PreAuthKey extends pulumi.ComponentResource {
  /** The key (`hskey-auth-…`), always a secret. */
  public readonly key: pulumi.Output<string>;
  /** The key's id in headscale (not secret). */
  public readonly keyId: pulumi.Output<number>;
  public readonly command: command.remote.Command;

  constructor(name: string, args: PreAuthKeyArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validatePreAuthKeyArgs(args.request), `PreAuthKey ${name}`);
    super("meshfleet:index:PreAuthKey", name, {}, opts);
    const req = args.request;
    const create = pulumi
      .output(args.userId)
      .apply((id) => headscaleCommand(args.cli, preAuthKeyCreateArgs(id, req)));
    this.command = new command.remote.Command(
      `${name}-create`,
      {
        connection: args.connection,
        create,
        delete: preAuthKeyExpireScript(args.cli),
        // Nothing of the key reaches the engine's log.
        logging: "none",
        addPreviousOutputInEnv: true,
      },
      {
        parent: this,
        additionalSecretOutputs: ["stdout"],
        // Keys are made, never edited: any change means a new key, the old one expired after.
        replaceOnChanges: ["create"],
      },
    );
    const info = this.command.stdout.apply((out) => parsePreAuthKeyJson(out, req.host));
    this.key = pulumi.secret(info.apply((i) => i.key));
    this.keyId = pulumi.unsecret(info.apply((i) => i.id));
    this.registerOutputs({ key: this.key, keyId: this.keyId });
  }
}
