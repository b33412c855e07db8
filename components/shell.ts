/**
 * Small helpers every component shares: shell quoting, the SSH connection a
 * host gets (with its pinned host keys), and the user-facing error class for
 * problems found before anything is created.
 */
import { spawnSync } from "node:child_process";
import * as pulumi from "@pulumi/pulumi";
import type { HostSystem } from "../core/types.ts";
import { knownHostsKeys, localPath, pinsFor } from "../provider/pins.ts";
import { connectionProblems, knownHostsName } from "../provider/ssh.ts";
import type { SshConnection } from "../provider/types.ts";

export { knownHostsKeys, pinsFor };

export { shq, shArgv } from "../provider/quote.ts";

/**
 * Problems found before any resource exists. Printed without a stack trace
 * (pulumi.RunError), one line per problem.
 */
export class DeployError extends pulumi.RunError {
  constructor(
    public readonly problems: string[],
    title = "meshfleet cannot deploy this fleet",
  ) {
    super(`${title}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
  }
}

/** Throw a DeployError when `problems` is not empty. */
export function assertNoProblems(problems: string[], title?: string): void {
  if (problems.length > 0) throw new DeployError(problems, title);
}

/** `user@host:port` (user and port optional) as its parts. */
export function parseSshTarget(target: string, defaults: { user: string; port: number } = { user: "root", port: 22 }): {
  user: string;
  host: string;
  port: number;
} {
  let rest = target.trim();
  let user = defaults.user;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    user = rest.slice(0, at);
    rest = rest.slice(at + 1);
  }
  let port = defaults.port;
  // An IPv6 literal is written [addr]:port; a bare host:port has exactly one colon.
  const m = /^\[(.+)\](?::(\d+))?$/.exec(rest) ?? (rest.split(":").length === 2 ? /^([^:]+):(\d+)$/.exec(rest) : null);
  if (m) {
    rest = m[1];
    if (m[2]) port = Number(m[2]);
  }
  return { user, host: rest, port };
}

/** How the deploy logs in to hosts: the pins' second source and the private key. */
export interface SshAccess {
  /**
   * A known_hosts file with pins for hosts whose file sets no `ssh.hostKey`
   * (the stack's `meshfleet:knownHostsPath`; read with `ssh-keygen -F`, so hashed entries work).
   * @default undefined (only the fleet's own pins)
   * @example "~/.config/meshfleet/known_hosts"
   */
  knownHostsPath?: string;
  /**
   * Private key file for every host (`meshfleet:sshPrivateKeyPath`).
   * @default undefined (ssh's own defaults and agent)
   * @example "/home/me/.ssh/id_ed25519"
   */
  privateKeyPath?: string;
  /**
   * Private key text (a secret) when there is no file; written 0600 for the run only.
   * @default undefined
   * @example config.requireSecret("sshPrivateKey")
   */
  privateKey?: pulumi.Input<string>;
}


/** The connection to a fleet host; the host's own `ssh.privateKeyPath` wins over the stack's key. */
export function hostConnection(host: HostSystem, ssh: SshAccess = {}): SshConnection {
  const keyPath = host.ssh.privateKeyPath ? localPath(host.ssh.privateKeyPath) : ssh.privateKeyPath;
  return {
    name: host.name,
    host: host.address,
    port: host.ssh.port,
    user: host.ssh.user,
    hostKeys: pinsFor(host.ssh.hostKey, host.address, host.ssh.port, ssh.knownHostsPath),
    ...(keyPath ? { privateKeyPath: keyPath } : {}),
  };
}

/** The connection to a machine outside the fleet's hosts (a Proxmox node, `user@host:port`). */
export function targetConnection(name: string, target: string, ssh: SshAccess = {}, hostKey?: string): SshConnection {
  const t = parseSshTarget(target);
  return {
    name,
    host: t.host,
    port: t.port,
    user: t.user,
    hostKeys: pinsFor(hostKey, t.host, t.port, ssh.knownHostsPath),
    ...(ssh.privateKeyPath ? { privateKeyPath: ssh.privateKeyPath } : {}),
  };
}

/** The private key text as a resource input (a secret), only when there is no key file. */
export function privateKeyInput(ssh: SshAccess = {}): { sshPrivateKey?: pulumi.Input<string> } {
  return !ssh.privateKeyPath && ssh.privateKey !== undefined ? { sshPrivateKey: pulumi.secret(ssh.privateKey) } : {};
}

/** Problems with a connection (no pin, no address), phrased for the fleet's files. */
export function connectionIssues(c: SshConnection, where: string): string[] {
  return connectionProblems(c).map((p) => `${where}: ${p}`);
}

/** A Pulumi-safe resource name fragment (hostnames and user names stay readable). */
export function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]+/g, "-");
}

/** `deps`, after `after` has resolved too (a promise of resources declared later). */
export function withAfter(after: Promise<pulumi.Resource[]> | undefined, deps: pulumi.Resource[]): pulumi.Input<pulumi.Input<pulumi.Resource>[]> {
  if (!after) return deps;
  const all: Promise<pulumi.Input<pulumi.Resource>[]> = after.then((ps) => [...ps, ...deps]);
  return all;
}
