/**
 * Reaching a stack's hosts from the workstation, for the commands that read
 * or act on live hosts (status, doctor, rollback, generations). The stack is
 * resolved exactly as `meshfleet up` resolves it (cli/commands/deploy.ts):
 * its config file (stacks/Pulumi.<stack>.yaml, or --config-file), the fleet
 * folder from meshfleet:hostsDir, the SSH key from meshfleet:sshPrivateKeyPath
 * and pins from each host's ssh.hostKey or meshfleet:knownHostsPath. SSH goes
 * through the provider's own layer (provider/ssh.ts): OpenSSH with
 * StrictHostKeyChecking=yes against the pins alone.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { spawnSync } from "node:child_process";
import { AGENT_HOST_PATH } from "../contract/constants.ts";
import { MeshfleetError } from "../core/diagnostics.ts";
import type { FleetSystem, HostSystem } from "../core/types.ts";
import type { HeadscaleCli } from "../provider/headscale-cli.ts";
import { shq } from "../provider/quote.ts";
import { localPath, pinsFor } from "../provider/pins.ts";
import { SshSession, type RunResult } from "../provider/ssh.ts";
import type { SshConnection } from "../provider/types.ts";
import type { Flag } from "./args.ts";

/** The repo root (Pulumi.yaml, hosts/, stacks/). */
export const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..");

// The stack's files and `--on`, for `meshfleet up` (cli/commands/deploy.ts)
// and the live reads alike. They live here, not in deploy.ts, because deploy.ts
// loads the Pulumi Automation API (2 s on a loaded machine) and a status read
// must not wait for it.

function readYaml<T>(file: string): T | undefined {
  return existsSync(file) ? ((parseYaml(readFileSync(file, "utf8")) as T | null) ?? undefined) : undefined;
}

/** Where the project keeps `Pulumi.<stack>.yaml`: Pulumi.yaml's stackConfigDir. */
export function projectStackFile(stack: string, root = REPO_ROOT): string {
  const project = readYaml<{ stackConfigDir?: string }>(path.join(root, "Pulumi.yaml")) ?? {};
  return path.join(root, project.stackConfigDir ?? ".", `Pulumi.${stack}.yaml`);
}

/** The stack's config file: `configFile` if given, else the project's. */
export function stackConfigFile(stack: string, configFile?: string, root = REPO_ROOT): string {
  return configFile ? path.resolve(configFile) : projectStackFile(stack, root);
}

/** The fleet folder: meshfleet:hostsDir from the stack's config, else hosts/<stack>. */
export function stackHostsDir(stack: string, configFile?: string, root = REPO_ROOT): string {
  const cfg = readYaml<{ config?: Record<string, unknown> }>(stackConfigFile(stack, configFile, root))?.config ?? {};
  const dir = typeof cfg["meshfleet:hostsDir"] === "string" ? (cfg["meshfleet:hostsDir"] as string) : path.join("hosts", stack);
  return path.isAbsolute(dir) ? dir : path.join(root, dir);
}

/** `--on` selectors: a name, `@role`, `@tag` or `@tag:name`; what matches nothing is an error listing what exists. */
export function selectHosts(selectors: string[], hosts: { name: string; roles: string[]; tags: string[] }[]): string[] {
  const out = new Set<string>();
  const problems: string[] = [];
  for (const raw of selectors.flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean)) {
    if (raw.startsWith("@")) {
      const want = raw.slice(1);
      const tag = want.startsWith("tag:") ? want : `tag:${want}`;
      const hit = hosts.filter((h) => h.roles.includes(want) || h.tags.includes(tag));
      if (hit.length === 0) {
        const roles = [...new Set(hosts.flatMap((h) => h.roles))].sort();
        const tags = [...new Set(hosts.flatMap((h) => h.tags))].sort();
        problems.push(`--on ${raw}: no host has the role or tag "${want}" (roles: ${roles.join(", ") || "none"}; tags: ${tags.join(", ") || "none"})`);
      }
      for (const h of hit) out.add(h.name);
    } else if (hosts.some((h) => h.name === raw)) out.add(raw);
    else problems.push(`--on ${raw}: no such host (hosts: ${hosts.map((h) => h.name).join(", ")})`);
  }
  if (problems.length > 0) throw new MeshfleetError(problems.join("\n"));
  return [...out];
}

export const stackFlags: Flag[] = [
  { name: "stack", value: true, help: "the stack (required): its config is stacks/Pulumi.<stack>.yaml, its fleet meshfleet:hostsDir or hosts/<stack>" },
  { name: "config-file", value: true, help: "read the stack's config from this file instead of stacks/Pulumi.<stack>.yaml (as `meshfleet up --config-file`)" },
  { name: "on", value: true, repeat: true, help: "only these hosts: HOST, @role or @tag; repeatable, or comma-separated" },
  { name: "json", help: "machine-readable output on stdout" },
];

/** How the CLI logs in to hosts: the pins' second source and the private key (the stack's config). */
export interface SshAccess {
  knownHostsPath?: string;
  privateKeyPath?: string;
}

export { pinsFor };

/** Where the headscale CLI runs on the coordinator (as components/coordinator.ts coordinatorCli decides). */
export function headscaleCliOf(a: Pick<StackAccess, "fleet" | "config">): HeadscaleCli | undefined {
  const h = a.fleet.hosts[a.fleet.coordinator.host];
  if (!h) return undefined;
  if (h.runtime === "docker") return { runtime: "docker", container: "headscale" };
  if (typeof a.config["meshfleet:headscaleBinaryPath"] === "string") return { runtime: "systemd", binary: "/usr/local/bin/headscale" };
  const unit = h.units.find((u) => u.name === "headscale.service");
  return { runtime: "systemd", binary: (unit ? /^ExecStart=-?(\S+)/m.exec(unit.content)?.[1] : undefined) ?? "headscale" };
}

export interface StackAccess {
  stack: string;
  configFile: string;
  hostsDir: string;
  fleet: FleetSystem;
  ssh: SshAccess;
  /** Plain (not secret) config values of the stack, e.g. meshfleet:confirmTimeoutSeconds. */
  config: Record<string, unknown>;
  /** `--stack S` plus `--config-file F` when one was given: for the commands messages suggest. */
  stackArgs: string;
  /** Hosts picked by --on (all hosts when none), in fleet order. */
  selected: HostSystem[];
}

/** Open a stack's fleet the way `meshfleet up` reads it; `on` selects hosts as `up --on` does. */
export async function openStackFleet(o: { stack: string; configFile?: string; on?: string[] }): Promise<StackAccess> {
  const configFile = stackConfigFile(o.stack, o.configFile);
  if (o.configFile && !existsSync(configFile)) throw new MeshfleetError(`--config-file ${o.configFile}: no such file`);
  const raw = existsSync(configFile) ? ((parseYaml(readFileSync(configFile, "utf8")) as { config?: Record<string, unknown> } | null)?.config ?? {}) : {};
  const plain = (k: string) => (typeof raw[k] === "string" || typeof raw[k] === "number" ? String(raw[k]) : undefined);
  const hostsDir = stackHostsDir(o.stack, o.configFile);
  if (!existsSync(hostsDir)) throw new MeshfleetError(`stack ${o.stack}: the fleet folder ${hostsDir} does not exist. Fix: set meshfleet:hostsDir in ${configFile}, or create hosts/${o.stack}`);
  const knownHostsPath = plain("meshfleet:knownHostsPath");
  const privateKeyPath = plain("meshfleet:sshPrivateKeyPath");
  if (knownHostsPath && !existsSync(localPath(knownHostsPath))) {
    throw new MeshfleetError(`${configFile}: meshfleet:knownHostsPath: ${knownHostsPath} does not exist. Fix: \`meshfleet pin HOST --stack ${o.stack} --known-hosts ${knownHostsPath}\``);
  }
  const { evaluateFleet, formatDiagnostics, hasErrors } = await import("../core/index.ts");
  const { REGISTRY } = await import("../modules/index.ts");
  const { fleet, diagnostics } = await evaluateFleet(REGISTRY, path.resolve(hostsDir), o.stack);
  if (!fleet || hasErrors(diagnostics)) throw new MeshfleetError(`the fleet in ${hostsDir} has errors:\n${formatDiagnostics(diagnostics.filter((d) => d.severity === "error"))}`);
  const all = Object.values(fleet.hosts);
  let selected = all;
  if (o.on && o.on.length > 0) {
    const names = selectHosts(o.on, all.map((h) => ({ name: h.name, roles: h.roles, tags: h.tailscale.tags })));
    selected = all.filter((h) => names.includes(h.name));
  }
  return {
    stack: o.stack,
    configFile,
    hostsDir,
    fleet,
    ssh: {
      knownHostsPath: knownHostsPath ? localPath(knownHostsPath) : undefined,
      privateKeyPath: privateKeyPath ? localPath(privateKeyPath) : undefined,
    },
    config: raw,
    stackArgs: `--stack ${o.stack}${o.configFile ? ` --config-file ${o.configFile}` : ""}`,
    selected,
  };
}

/** The SSH connection to a fleet host, with the pins the deploy uses; quick to give up (a status, not a deploy). */
export function connectionTo(a: Pick<StackAccess, "ssh">, h: HostSystem, o: { connectTimeoutSeconds?: number; dialAttempts?: number } = {}): SshConnection {
  const keyPath = h.ssh.privateKeyPath ? localPath(h.ssh.privateKeyPath) : a.ssh.privateKeyPath;
  return {
    name: h.name,
    host: h.address,
    port: h.ssh.port,
    user: h.ssh.user,
    hostKeys: pinsFor(h.ssh.hostKey, h.address, h.ssh.port, a.ssh.knownHostsPath),
    ...(keyPath ? { privateKeyPath: keyPath } : {}),
    connectTimeoutSeconds: o.connectTimeoutSeconds ?? 5,
    dialAttempts: o.dialAttempts ?? 1,
  };
}

/** `node /usr/local/lib/meshfleet/meshfleet-agent.mjs ARGS`, quoted for sh. */
export function agentCommand(h: HostSystem, args: string[]): string {
  return [h.agentNodePath || "node", AGENT_HOST_PATH, ...args].map(shq).join(" ");
}

export { AGENT_HOST_PATH };

/** A run's SSH session; close() it when done (it ends the shared connections). */
export function newSession(): SshSession {
  return new SshSession();
}

/** Run `script` on a host; an SSH failure (no pin, key mismatch, refused, unreachable) comes back as `error`, never thrown. */
export async function tryRun(session: SshSession, c: SshConnection, script: string, o: { what: string; fresh?: boolean; timeoutMs?: number; stdin?: string }): Promise<RunResult & { error?: string; ms: number }> {
  const t0 = Date.now();
  try {
    const r = await session.run(c, script, { what: o.what, fresh: o.fresh, timeoutMs: o.timeoutMs ?? 30_000, stdin: o.stdin, quiet: true });
    if (r.code === 255 && !r.stdout) return { ...r, error: `host ${c.name} (${c.host}): ssh failed: ${r.stderr.trim().split("\n").slice(-2).join(" ")}`, ms: Date.now() - t0 };
    return { ...r, ms: Date.now() - t0 };
  } catch (e) {
    return { code: 255, stdout: "", stderr: "", error: (e as Error).message, ms: Date.now() - t0 };
  }
}

/** Split the output of a script that prints `@@mf:NAME@@` before each section. */
export function sections(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /^@@mf:([a-z0-9-]+)@@$/gm;
  const marks = [...stdout.matchAll(re)];
  marks.forEach((m, i) => {
    const start = m.index! + m[0].length + 1;
    const end = i + 1 < marks.length ? marks[i + 1]!.index! : stdout.length;
    out[m[1]!] = stdout.slice(start, end).trim();
  });
  return out;
}

/** Parse JSON or return undefined (a tool's error text instead of JSON). */
export function jsonOr<T>(text: string | undefined): T | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text.replace(/^note: .*$/gm, "")) as T;
  } catch {
    return undefined;
  }
}

/** "3d", "5h", "12m", "40s" */
export function age(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  const v = s >= 86400 ? `${Math.floor(s / 86400)}d` : s >= 3600 ? `${Math.floor(s / 3600)}h` : s >= 60 ? `${Math.floor(s / 60)}m` : `${s}s`;
  return ms < 0 ? `-${v}` : v;
}

/** Left-aligned columns. */
export function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  return [head, ...rows].map((r) => r.map((c, i) => (c ?? "").padEnd(widths[i]!)).join("  ").trimEnd());
}
