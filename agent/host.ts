/**
 * Every effect the agent has on a host goes through this one interface, so
 * the same activation code runs on a real host (root "/") and in tests
 * against a temp root dir (paths prefixed, programs found on PATH).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { NFT_FAMILY, NFT_TABLE } from "../contract/constants.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface FileStat {
  mode: number;
  uid: number;
  gid: number;
}

export interface Host {
  /** "/" on a real host; a temp dir in tests. */
  readonly root: string;
  /** Map a host path to where it lives under the root. */
  p(hostPath: string): string;
  readFile(hostPath: string): string | null;
  stat(hostPath: string): FileStat | null;
  /** Temp file beside the target, fsync, rename, fsync dir: readers see old or new, never half. */
  writeFileAtomic(hostPath: string, content: string | Buffer, mode: number, uid?: number, gid?: number): void;
  removeFile(hostPath: string): void;
  run(argv: string[], opts?: { timeoutMs?: number; input?: string }): RunResult;
  readSysctl(key: string): string | null;
  writeSysctl(key: string, value: string): void;
  /** Load one nft file as one transaction. */
  nftApply(file: string): RunResult;
  /** `nft -s list table inet meshfleet` (stateless: no counter values), or null when absent. */
  nftList(): string | null;
  systemctl(args: string[]): RunResult;
  tailscale(args: string[], timeoutMs?: number): RunResult;
  lookupUser(name: string): number | null;
  lookupGroup(name: string): number | null;
}

export function describeFailure(argv: string[], r: RunResult): string {
  const why = r.timedOut ? "timed out" : `exited with code ${r.code}`;
  const err = (r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ");
  return `\`${argv.join(" ")}\` ${why}${err ? `: ${err}` : ""}`;
}

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, "r");
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  }
}

function lookupIn(file: string, name: string): number | null {
  if (/^\d+$/.test(name)) return Number(name);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return name === "root" ? 0 : null;
  }
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f[2] !== undefined) return Number(f[2]);
  }
  return null;
}

export function realHost(root = "/"): Host {
  const absRoot = path.resolve(root);
  const simulated = absRoot !== "/";
  const p = (hostPath: string) => (simulated ? path.join(absRoot, hostPath) : hostPath);
  const run = (argv: string[], opts: { timeoutMs?: number; input?: string } = {}): RunResult => {
    const r = spawnSync(argv[0], argv.slice(1), {
      encoding: "utf8",
      timeout: opts.timeoutMs ?? 60_000,
      input: opts.input,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      maxBuffer: 64 * 1024 * 1024,
    });
    const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === "ETIMEDOUT";
    if (r.error && !timedOut) return { code: 127, stdout: "", stderr: String(r.error.message), timedOut: false };
    return { code: r.status ?? (timedOut ? 124 : 128), stdout: r.stdout ?? "", stderr: r.stderr ?? "", timedOut };
  };
  const passwd = () => (fs.existsSync(p("/etc/passwd")) ? p("/etc/passwd") : "/etc/passwd");
  const group = () => (fs.existsSync(p("/etc/group")) ? p("/etc/group") : "/etc/group");
  const canChown = typeof process.getuid === "function" && process.getuid() === 0;

  return {
    root: absRoot,
    p,
    readFile(hostPath) {
      try {
        return fs.readFileSync(p(hostPath), "utf8");
      } catch {
        return null;
      }
    },
    stat(hostPath) {
      try {
        const s = fs.statSync(p(hostPath));
        return { mode: s.mode & 0o7777, uid: s.uid, gid: s.gid };
      } catch {
        return null;
      }
    },
    writeFileAtomic(hostPath, content, mode, uid, gid) {
      const target = p(hostPath);
      const dir = path.dirname(target);
      mkdirs(dir);
      const tmp = path.join(dir, `.${path.basename(target)}.meshfleet-tmp`);
      const fd = fs.openSync(tmp, "w", 0o600);
      try {
        fs.writeSync(fd, typeof content === "string" ? Buffer.from(content, "utf8") : content);
        if (canChown && uid !== undefined && gid !== undefined) fs.fchownSync(fd, uid, gid);
        // chmod after chown: chown clears setuid bits, and the umask must not narrow the mode.
        fs.fchmodSync(fd, mode);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, target);
      fsyncDir(dir);
    },
    removeFile(hostPath) {
      try {
        fs.unlinkSync(p(hostPath));
        fsyncDir(path.dirname(p(hostPath)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    },
    run,
    readSysctl(key) {
      try {
        return fs.readFileSync(p(`/proc/sys/${key.replace(/\./g, "/")}`), "utf8").trim();
      } catch {
        return null;
      }
    },
    writeSysctl(key, value) {
      const file = p(`/proc/sys/${key.replace(/\./g, "/")}`);
      // Under a test root /proc/sys is plain files; on a host the kernel's file must already exist.
      if (simulated) fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, value + "\n");
    },
    nftApply(file) {
      return run(["nft", "-f", file], { timeoutMs: 30_000 });
    },
    nftList() {
      const r = run(["nft", "-s", "list", "table", NFT_FAMILY, NFT_TABLE], { timeoutMs: 30_000 });
      return r.code === 0 ? r.stdout : null;
    },
    systemctl(args) {
      return run(["systemctl", ...args], { timeoutMs: 120_000 });
    },
    tailscale(args, timeoutMs = 90_000) {
      // The bundle names the CLI (hosts may keep it off PATH); see useTailscaleCli.
      return run([process.env.MESHFLEET_TAILSCALE_CLI || "tailscale", ...args], { timeoutMs });
    },
    lookupUser: (name) => lookupIn(passwd(), name),
    lookupGroup: (name) => lookupIn(group(), name),
  };
}

/**
 * Create missing directories 0755 whatever the umask (the agent runs under
 * `umask 077` over SSH, which would leave /etc/headscale unreadable to the
 * service). Existing directories keep their mode.
 */
function mkdirs(dir: string): void {
  if (fs.existsSync(dir)) return;
  mkdirs(path.dirname(dir));
  fs.mkdirSync(dir);
  fs.chmodSync(dir, 0o755);
}
