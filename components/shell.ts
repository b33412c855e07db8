/**
 * Small helpers every component shares: shell quoting, the SSH connection a
 * host gets (with its pinned host keys), and the user-facing error class for
 * problems found before anything is created.
 */
import { spawnSync } from "node:child_process";
import * as pulumi from "@pulumi/pulumi";
import type { HostSystem } from "../core/types.ts";
import { connectionProblems, knownHostsName } from "../provider/ssh.ts";
import type { SshConnection } from "../provider/types.ts";

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

const pinCache = new Map<string, string[]>();

/** `type base64` keys for `name` in a known_hosts file, via `ssh-keygen -F` (hashed entries match too). */
export function knownHostsKeys(file: string, address: string, port: number): string[] {
  const names = port === 22 ? [address, `[${address}]:22`] : [knownHostsName(address, port)];
  const out: string[] = [];
  for (const name of names) {
    const ck = `${file}\0${name}`;
    let keys = pinCache.get(ck);
    if (!keys) {
      const r = spawnSync("ssh-keygen", ["-F", name, "-f", file], { encoding: "utf8", timeout: 10_000 });
      keys = (r.status === 0 ? r.stdout : "")
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith("#") && !l.startsWith("@"))
        .map((l) => l.split(/\s+/).slice(1, 3).join(" "))
        .filter((k) => / /.test(k));
      pinCache.set(ck, keys);
    }
    for (const k of keys) if (!out.includes(k)) out.push(k);
  }
  return out;
}

/** The pins for one target: the fleet's own key, else the known_hosts file's entries. */
export function pinsFor(fleetKey: string | undefined, address: string, port: number, knownHostsPath?: string): string[] {
  if (fleetKey?.trim()) return [fleetKey.trim().split(/\s+/).slice(0, 2).join(" ")];
  return knownHostsPath ? knownHostsKeys(knownHostsPath, address, port) : [];
}

/** The connection to a fleet host. */
export function hostConnection(host: HostSystem, ssh: SshAccess = {}): SshConnection {
  return {
    name: host.name,
    host: host.address,
    port: host.ssh.port,
    user: host.ssh.user,
    hostKeys: pinsFor(host.ssh.hostKey, host.address, host.ssh.port, ssh.knownHostsPath),
    ...(ssh.privateKeyPath ? { privateKeyPath: ssh.privateKeyPath } : {}),
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
