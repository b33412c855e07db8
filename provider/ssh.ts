/**
 * SSH through the OpenSSH client. One provider process serves a whole run,
 * so it keeps one folder of its own for the run: the known_hosts file built
 * from the pins, ControlMaster sockets (one TCP connection per host for the
 * run), and key files written from secret key text. The folder goes away
 * when the process ends; a folder left by a killed run is removed by the
 * next one.
 *
 * Host keys are always checked (StrictHostKeyChecking=yes) against the pins
 * alone: the user's own known_hosts files are not read, so a stale entry
 * there can neither block nor admit a host.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { log } from "./log.ts";
import { shq } from "./quote.ts";
import { ProviderError } from "./wire.ts";
import type { SshConnection } from "./types.ts";

export interface RunOptions {
  /** Bytes for the remote command's stdin (bundles, files): never logged. */
  stdin?: string | Buffer;
  /** A separate TCP connection and login, not the run's shared one (the lockout guard's confirm). */
  fresh?: boolean;
  /** ms before the command is killed. @default 600000 */
  timeoutMs?: number;
  /** What the command is, for the log and errors (the script itself is logged only when not `quiet`). */
  what: string;
  /**
   * Epoch ms after which a failed dial is not tried again (and no dial waits
   * past it): the lockout guard's confirm is useless once the guard's window
   * has closed. A dial that still fails then throws, naming the host.
   */
  until?: number;
  /** Dial attempts for this command (at most the connection's `dialAttempts`). */
  attempts?: number;
  /** Keep the command's output out of the log (it may hold a key). */
  quiet?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const PREFIX = "mf-ssh-";

/** `host` or `[host]:port`, the way known_hosts and `ssh-keygen -F` name a host. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** The pins as known_hosts lines for one target. */
export function knownHostsLines(c: Pick<SshConnection, "host" | "port" | "hostKeys">): string[] {
  return c.hostKeys.map((k) => `${knownHostsName(c.host, c.port)} ${k.trim().split(/\s+/).slice(0, 2).join(" ")}`);
}

/** Problems with a connection, found before anything is sent. */
export function connectionProblems(c: SshConnection): string[] {
  const p: string[] = [];
  if (!c.host) p.push(`host ${c.name}: no address to reach its sshd. Fix: set address in its host file`);
  if (!c.hostKeys?.length || c.hostKeys.every((k) => !k.trim())) {
    p.push(
      `host ${c.name} (${knownHostsName(c.host, c.port)}): no pinned SSH host key, so nothing is sent to it. Fix: \`npx meshfleet pin ${c.name}\` (shows the fingerprint and records it), or set ssh.hostKey in its host file`,
    );
  }
  for (const k of c.hostKeys ?? []) {
    if (k.trim() && !/^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]+$/.test(k.trim().split(/\s+/).slice(0, 2).join(" "))) {
      p.push(`host ${c.name}: pinned host key ${JSON.stringify(k.slice(0, 40))}: expected "<type> <base64>" (e.g. ssh-ed25519 AAAA…)`);
    }
  }
  if (c.privateKeyPath && !existsSync(c.privateKeyPath)) p.push(`host ${c.name}: private key ${c.privateKeyPath} does not exist. Fix: point the host's ssh.privateKeyPath or the stack's meshfleet:sshPrivateKeyPath at an existing key`);
  return p;
}

const DIAL_FAILURE =
  /(Connection refused|Connection timed out|timed out during banner exchange|No route to host|Network is unreachable|Connection reset by peer|Connection closed by .* port|kex_exchange_identification|ssh_exchange_identification|Operation timed out|Host is down)/i;
const HOSTKEY_FAILURE = /(Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known for|host key for .* has changed)/i;
const AUTH_FAILURE = /Permission denied \(/;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Remove run folders whose provider process is gone (a run killed before it could clean up). */
function sweepStale(): void {
  let names: string[] = [];
  try {
    names = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const n of names) {
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(n);
    if (!m || pidAlive(Number(m[1]))) continue;
    try {
      rmSync(path.join(tmpdir(), n), { recursive: true, force: true });
    } catch {
      // not ours to fight over
    }
  }
}

export class SshSession {
  private dir: string | null = null;
  private known = new Set<string>();
  private keys = new Map<string, string>();
  private masters = new Map<string, [string, string, string]>();
  private sleep: (ms: number) => Promise<void>;

  constructor(o: { sleep?: (ms: number) => Promise<void> } = {}) {
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** The run folder (made on first use; short, since ControlPath sockets have a 104-byte limit). */
  runDir(): string {
    if (!this.dir) {
      sweepStale();
      this.dir = mkdtempSync(path.join(tmpdir(), `${PREFIX}${process.pid}-`));
    }
    return this.dir;
  }

  private keyFile(text: string): string {
    const id = createHash("sha256").update(text).digest("hex").slice(0, 16);
    let f = this.keys.get(id);
    if (!f) {
      f = path.join(this.runDir(), `key-${id}`);
      writeFileSync(f, text.endsWith("\n") ? text : `${text}\n`, { mode: 0o600 });
      this.keys.set(id, f);
    }
    return f;
  }

  /** The ssh(1) argv for a target (without the remote command). */
  sshArgs(c: SshConnection, o: { privateKey?: string; fresh?: boolean; connectTimeoutSeconds?: number } = {}): string[] {
    const problems = connectionProblems(c);
    if (problems.length) throw new ProviderError(problems.join("; "));
    const dir = this.runDir();
    const keyPath = c.privateKeyPath ?? (o.privateKey ? this.keyFile(o.privateKey) : undefined);
    // One known_hosts file and one master per target with its pins and key: a host is checked against
    // its own pins only, and a client on a shared master would skip the host key check.
    const id = createHash("sha256").update(JSON.stringify([c.user, c.host, c.port, [...c.hostKeys].sort(), keyPath ?? ""])).digest("hex").slice(0, 20);
    const kh = path.join(dir, `kh-${id}`);
    if (!this.known.has(kh)) {
      writeFileSync(kh, knownHostsLines(c).join("\n") + "\n", { mode: 0o600 });
      this.known.add(kh);
    }
    const args = [
      "-o", "BatchMode=yes",
      "-o", "StrictHostKeyChecking=yes",
      "-o", `UserKnownHostsFile=${kh}`,
      "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "UpdateHostKeys=no",
      "-o", "CheckHostIP=no",
      "-o", `ConnectTimeout=${o.connectTimeoutSeconds ?? c.connectTimeoutSeconds ?? 10}`,
      "-o", "ServerAliveInterval=15",
      "-o", "ServerAliveCountMax=4",
      "-o", "LogLevel=ERROR",
    ];
    if (o.fresh) args.push("-o", "ControlMaster=no", "-o", "ControlPath=none");
    if (!o.fresh) {
      const cp = path.join(dir, `cm-${id}`);
      args.push("-o", "ControlMaster=auto", "-o", `ControlPath=${cp}`, "-o", "ControlPersist=30");
      this.masters.set(cp, [c.user, c.host, String(c.port)]);
    }
    if (keyPath) args.push("-i", keyPath, "-o", "IdentitiesOnly=yes");
    args.push("-p", String(c.port), "-l", c.user, c.host);
    return args;
  }

  /**
   * Run `script` with `sh -c` on the host. Dial failures are retried
   * (`dialAttempts`); a host key that does not match its pin and a refused
   * login are not, and say so. A non-zero exit of the script is returned,
   * not thrown.
   */
  async run(c: SshConnection, script: string, o: RunOptions & { privateKey?: string }): Promise<RunResult> {
    const attempts = Math.max(1, Math.min(c.dialAttempts ?? 30, o.attempts ?? Infinity));
    const dialTimeout = c.connectTimeoutSeconds ?? 10;
    for (let i = 1; ; i++) {
      const t0 = Date.now();
      // Within a deadline, no dial may outlast it.
      const left = o.until === undefined ? dialTimeout : Math.max(1, Math.min(dialTimeout, Math.ceil((o.until - t0) / 1000)));
      const args = [...this.sshArgs(c, { ...o, connectTimeoutSeconds: left }), "--", `sh -c ${shq(script)}`];
      const r = await spawnSsh(args, o.stdin, o.timeoutMs ?? 600_000);
      log(`ssh ${c.user}@${knownHostsName(c.host, c.port)}${o.fresh ? " (new connection)" : ""}: ${o.what}: exit ${r.code} in ${Date.now() - t0} ms${o.quiet ? "" : r.stderr.trim() ? `; stderr: ${clip(r.stderr)}` : ""}`);
      if (r.code !== 255) return r;
      if (HOSTKEY_FAILURE.test(r.stderr)) {
        throw new ProviderError(
          `host ${c.name} (${knownHostsName(c.host, c.port)}): its SSH host key does not match the pinned key, so nothing was sent to it. If the host was reinstalled, check its key out of band and pin it again: \`npx meshfleet pin ${c.name}\``,
        );
      }
      if (AUTH_FAILURE.test(r.stderr)) {
        throw new ProviderError(`host ${c.name} (${c.user}@${knownHostsName(c.host, c.port)}): ssh login refused (${clip(r.stderr)}). Fix: authorize the deploy key (meshfleet:sshPrivateKeyPath) for ${c.user} on ${c.name}`);
      }
      const pause = Math.min(2000, 250 * i);
      const late = o.until !== undefined && Date.now() + pause >= o.until;
      if (!DIAL_FAILURE.test(r.stderr) || i >= attempts || late) {
        if (DIAL_FAILURE.test(r.stderr)) {
          throw new ProviderError(
            `host ${c.name} (${knownHostsName(c.host, c.port)}): cannot reach sshd after ${i} attempts${late ? " (its deadline passed)" : ""}: ${clip(r.stderr)}`,
          );
        }
        return r;
      }
      await this.sleep(pause);
    }
  }

  /** Close the run's shared connections and remove the run folder. */
  close(): void {
    if (!this.dir) return;
    for (const [cp, [user, host, port]] of this.masters) {
      if (existsSync(cp)) spawnSync("ssh", ["-o", `ControlPath=${cp}`, "-O", "exit", "-p", port, "-l", user, host], { stdio: "ignore", timeout: 5000 });
    }
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // the next run's sweep removes it
    }
    this.dir = null;
    this.masters.clear();
    this.keys.clear();
    this.known.clear();
  }
}

function clip(s: string): string {
  const t = s.trim().replace(/\s+/g, " ");
  return t.length > 300 ? `${t.slice(0, 300)}…` : t;
}

function spawnSsh(args: string[], stdin: string | Buffer | undefined, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.stdin.on("error", () => {});
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ code: 255, stdout: "", stderr: `cannot run ssh: ${e.message}` });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stderr = Buffer.concat(err).toString("utf8");
      resolve({
        code: code ?? 255,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: timedOut ? `${stderr}\n(timed out after ${timeoutMs} ms)` : signal ? `${stderr}\n(killed by ${signal})` : stderr,
      });
    });
    child.stdin.end(stdin ?? "");
  });
}

/** The session every resource of this provider process shares. */
export const session = new SshSession();

let cleanupInstalled = false;
/** Close the session when the process ends (the engine stops the provider at the end of a run). */
export function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  process.on("exit", () => session.close());
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      session.close();
      process.exit(0);
    });
  }
}
