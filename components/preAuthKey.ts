/**
 * PreAuthKey: a headscale pre-auth key for one host
 * (meshfleet:headscale:PreAuthKey), made with the CLI on the coordinator.
 * The key is a Pulumi secret from the moment it exists (an additional secret
 * output; the provider keeps the CLI's output out of its log). Any change of
 * the request makes a new key (replace) and expires the old one.
 */
import * as pulumi from "@pulumi/pulumi";
import type { PreAuthKeyRequest } from "../core/types.ts";
import { PreAuthKeyResource } from "../provider/sdk.ts";
import type { SshConnection } from "../provider/types.ts";
import { assertNoProblems } from "./shell.ts";
import type { HeadscaleCli } from "./headscaleCli.ts";

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
   * The name the host's node registers with (its tailscale hostname). Before
   * each deploy the key is renewed when its host has not joined under this
   * name and the key expires within 14 days (or half its lifetime), or when
   * the joined node's key has expired (so `up` logs it in again).
   * @default request.host
   * @example "nas-router"
   */
  hostname?: string;
  /**
   * Where the headscale CLI runs.
   * @example { runtime: "systemd" }
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
  public readonly resource: PreAuthKeyResource;

  constructor(name: string, args: PreAuthKeyArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validatePreAuthKeyArgs(args.request), `PreAuthKey ${name}`);
    super("meshfleet:index:PreAuthKey", name, {}, opts);
    const req = args.request;
    this.resource = new PreAuthKeyResource(
      `${name}-key`,
      {
        host: req.host,
        ...(args.hostname && args.hostname !== req.host ? { hostname: args.hostname } : {}),
        ...(args.userId !== undefined ? { userId: args.userId } : {}),
        reusable: req.reusable,
        ephemeral: req.ephemeral,
        expiration: req.expiration,
        tags: [...req.tags],
        cli: args.cli,
        connection: args.connection,
        ...(args.sshPrivateKey !== undefined ? { sshPrivateKey: args.sshPrivateKey } : {}),
      },
      { parent: this },
    );
    this.key = pulumi.secret(this.resource.key);
    this.keyId = pulumi.unsecret(this.resource.keyId);
    this.registerOutputs({ key: this.key, keyId: this.keyId });
  }
}
