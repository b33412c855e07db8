/**
 * SSH into lab hosts with the lab's own key, checking each host's key against
 * the lab's known_hosts (StrictHostKeyChecking=yes), ignoring the user's
 * ~/.ssh config so that runs do not depend on the machine.
 */
import { execa } from "execa";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { dirname } from "node:path";
import type { LabTopology } from "../topology.ts";
import { findHost } from "../topology.ts";
import { LabError, run, type RunResult } from "./exec.ts";
import { knownHostsPath, sshKeyPath } from "./paths.ts";

/** Make the lab's key pair if missing; returns the public key line. */
export async function ensureLabKey(instance: number): Promise<string> {
  const key = sshKeyPath(instance);
  if (!existsSync(key)) {
    mkdirSync(dirname(key), { recursive: true, mode: 0o700 });
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `meshfleet-lab${instance}`, "-f", key]);
  }
  return readFileSync(`${key}.pub`, "utf8").trim();
}

/** Replace the lines for `address` in the lab's known_hosts. */
export function setKnownHost(instance: number, address: string, publicKey: string): void {
  const path = knownHostsPath(instance);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const keep = existsSync(path)
    ? readFileSync(path, "utf8").split("\n").filter((l) => l && l.split(" ")[0] !== address)
    : [];
  const [type, blob] = publicKey.split(/\s+/);
  keep.push(`${address} ${type} ${blob}`);
  writeFileSync(path, keep.join("\n") + "\n");
}

/** ssh options (everything but the command) for reaching `host` as root. */
export function sshArgs(topo: LabTopology, host: string, connectTimeoutS = 5): string[] {
  const h = findHost(topo, host);
  if (!h.mgmt) throw new LabError(`lab host "${host}" is not booted with sshd (kind ${h.kind}); use netnsExec("${h.netns}", ...)`);
  return [
    "-F", "/dev/null",
    "-i", sshKeyPath(topo.instance),
    "-o", "IdentitiesOnly=yes",
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=yes",
    "-o", `UserKnownHostsFile=${knownHostsPath(topo.instance)}`,
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", `ConnectTimeout=${connectTimeoutS}`,
    "-o", "ServerAliveInterval=5",
    "-o", "LogLevel=ERROR",
    `root@${h.mgmt}`,
  ];
}

export interface SshExecOptions {
  input?: string;
  timeoutMs?: number;
}

/** Run `cmd` (a shell command line) on `host`; never throws for a failing command. */
export async function sshExec(topo: LabTopology, host: string, cmd: string, opts: SshExecOptions = {}): Promise<RunResult> {
  const r = await execa("ssh", [...sshArgs(topo, host), cmd], {
    input: opts.input ?? "",
    timeout: opts.timeoutMs ?? 60_000,
    reject: false,
    stripFinalNewline: false,
  });
  const code = typeof r.exitCode === "number" ? r.exitCode : -1;
  let stderr = String(r.stderr ?? "");
  if (r.timedOut) stderr += `\n(ssh ${host}: timed out after ${opts.timeoutMs ?? 60_000} ms)`;
  return { code, stdout: String(r.stdout ?? ""), stderr };
}

function tcpOpen(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port, timeout: timeoutMs });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
    s.once("error", () => resolve(false));
  });
}

/** Wait until `host`'s sshd accepts the lab key; cheap TCP probes first, then one real login. */
export async function waitForSsh(topo: LabTopology, host: string, timeoutMs: number, alive: () => boolean): Promise<void> {
  const h = findHost(topo, host);
  const until = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < until) {
    if (!alive()) throw new LabError(`host ${host}: systemd-nspawn exited while booting`);
    if (await tcpOpen(h.mgmt!, 22, 1000)) {
      const r = await sshExec(topo, host, "true", { timeoutMs: 10_000 });
      if (r.code === 0) return;
      last = r.stderr.trim();
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new LabError(`host ${host}: sshd at ${h.mgmt} did not accept the lab key within ${timeoutMs} ms${last ? `: ${last}` : ""}`);
}
