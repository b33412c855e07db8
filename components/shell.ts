/**
 * Small pure helpers every component shares: shell quoting for commands run
 * over SSH, the SSH connection a HostSystem describes, and the user-facing
 * error class for problems found before anything is created.
 */
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import type { HostSystem } from "../core/types.ts";

/** Quote one argument for a POSIX shell; plain words stay readable in previews. */
export function shq(arg: string): string {
  if (arg !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'"'"'`)}'`;
}

/** One argv list as a shell command line (one flag per element, never re-split). */
export function shArgv(argv: readonly string[]): string {
  return argv.map(shq).join(" ");
}

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

/**
 * The SSH connection to a host. The private key is a secret Input (read from
 * the stack's key file); without one the command provider uses the SSH agent.
 */
export function connectionFor(
  target: { address: string; user: string; port: number; hostKey?: string },
  privateKey?: pulumi.Input<string>,
): command.types.input.remote.ConnectionArgs {
  return {
    host: target.address,
    user: target.user,
    port: target.port,
    // A known host key is checked on every connection; without one the provider ignores it.
    ...(target.hostKey ? { hostKey: target.hostKey } : {}),
    // Hosts answer slowly right after `pct start` or a reboot; retry dials instead of failing the deploy.
    dialErrorLimit: 30,
    perDialTimeout: 10,
    ...(privateKey !== undefined ? { privateKey: pulumi.secret(privateKey) } : {}),
  };
}

export function hostConnection(host: HostSystem, privateKey?: pulumi.Input<string>): command.types.input.remote.ConnectionArgs {
  return connectionFor({ address: host.address, user: host.ssh.user, port: host.ssh.port, hostKey: host.ssh.hostKey }, privateKey);
}

/** A Pulumi-safe resource name fragment (hostnames and user names stay readable). */
export function slug(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]+/g, "-");
}

/**
 * known_hosts lines (`host[,host] keytype key`, or `[host]:port ...`) as a map
 * from `host` / `[host]:port` to `keytype key`. Hashed entries (`|1|...`)
 * cannot be matched to an address and are skipped.
 */
export function parseKnownHosts(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t || t.startsWith("#") || t.startsWith("|") || t.startsWith("@")) continue;
    const [hosts, type, key] = t.split(/\s+/);
    if (!type || !key) continue;
    for (const h of hosts.split(",")) if (!out.has(h)) out.set(h, `${type} ${key}`);
  }
  return out;
}

/** The known key for a host at address:port, as ssh itself would look it up. */
export function knownHostKey(known: Map<string, string>, address: string, port: number): string | undefined {
  return port === 22 ? known.get(address) ?? known.get(`[${address}]:22`) : known.get(`[${address}]:${port}`);
}
