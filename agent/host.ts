/**
 * Every effect the agent has on a host goes through this one interface, so
 * the same activation code runs on a real host (root "/") and in tests
 * against a temp root dir (paths prefixed, programs found on PATH).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
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
  /** What is at the path itself (lstat: a symlink is never followed). */
  type: "file" | "symlink" | "dir" | "other";
  mode: number;
  uid: number;
  gid: number;
}

export interface Host {
  /** "/" on a real host; a temp dir in tests. */
  readonly root: string;
  /** Map a host path to where it lives under the root. */
  p(hostPath: string): string;
  /** A regular file's content; null for anything else (a symlink is never followed). */
  readFile(hostPath: string): string | null;
  /** lstat: what is at the path itself. */
  stat(hostPath: string): FileStat | null;
  /**
   * A random temp name beside the target opened O_EXCL|O_NOFOLLOW, fsync,
   * rename, fsync dir: readers see old or new, never half, and nothing
   * planted at the path (a symlink) is followed. Every folder above the
   * file must belong to root, the agent or the file's own owner (`uid`) and
   * not be writable by others (sticky folders aside).
   */
  writeFileAtomic(hostPath: string, content: string | Buffer, mode: number, uid?: number, gid?: number): void;
  /** Make a symlink at hostPath (atomically, same checks as writeFileAtomic): restoring a link the agent took over. */
  writeSymlink(hostPath: string, target: string): void;
  removeFile(hostPath: string): void;
  /** Names in a folder (not followed if it is a symlink), or [] when there is none. */
  listDir(hostPath: string): string[];
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

function fsyncFd(fd: number): void {
  try {
    fs.fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  }
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
      let fd: number;
      try {
        fd = fs.openSync(p(hostPath), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
      } catch {
        return null;
      }
      try {
        return fs.fstatSync(fd).isFile() ? fs.readFileSync(fd, "utf8") : null;
      } catch {
        return null;
      } finally {
        fs.closeSync(fd);
      }
    },
    stat(hostPath) {
      try {
        const s = fs.lstatSync(p(hostPath));
        const type = s.isFile() ? "file" : s.isSymbolicLink() ? "symlink" : s.isDirectory() ? "dir" : "other";
        return { type, mode: s.mode & 0o7777, uid: s.uid, gid: s.gid };
      } catch {
        return null;
      }
    },
    writeFileAtomic(hostPath, content, mode, uid, gid) {
      const target = p(hostPath);
      const dir = path.dirname(target);
      checkLinks(absRoot, dir, hostPath);
      mkdirs(dir);
      const d = openCheckedDir(absRoot, dir, hostPath, uid);
      const tmp = `.${path.basename(target)}.${randomBytes(6).toString("hex")}.meshfleet-tmp`;
      try {
        const fd = fs.openSync(d.at(tmp), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
        try {
          fs.writeSync(fd, typeof content === "string" ? Buffer.from(content, "utf8") : content);
          if (canChown && uid !== undefined && gid !== undefined) fs.fchownSync(fd, uid, gid);
          // chmod after chown: chown clears setuid bits, and the umask must not narrow the mode.
          fs.fchmodSync(fd, mode);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        // rename(2) replaces the directory entry: a symlink planted at the target is replaced, never followed.
        fs.renameSync(d.at(tmp), d.at(path.basename(target)));
        fsyncFd(d.fd);
      } catch (e) {
        fs.rmSync(d.at(tmp), { force: true });
        throw e;
      } finally {
        fs.closeSync(d.fd);
      }
    },
    writeSymlink(hostPath, linkTarget) {
      const target = p(hostPath);
      const dir = path.dirname(target);
      checkLinks(absRoot, dir, hostPath);
      mkdirs(dir);
      const d = openCheckedDir(absRoot, dir, hostPath, undefined);
      const tmp = `.${path.basename(target)}.${randomBytes(6).toString("hex")}.meshfleet-tmp`;
      try {
        fs.symlinkSync(linkTarget, d.at(tmp));
        fs.renameSync(d.at(tmp), d.at(path.basename(target)));
        fsyncFd(d.fd);
      } catch (e) {
        fs.rmSync(d.at(tmp), { force: true });
        throw e;
      } finally {
        fs.closeSync(d.fd);
      }
    },
    removeFile(hostPath) {
      try {
        fs.unlinkSync(p(hostPath));
        fsyncDir(path.dirname(p(hostPath)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
    },
    listDir(hostPath) {
      try {
        if (!fs.lstatSync(p(hostPath)).isDirectory()) return [];
        return fs.readdirSync(p(hostPath)).sort();
      } catch {
        return [];
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

export class UnsafePathError extends Error {}

/**
 * Open the folder a file is about to be written in, after checking every
 * folder from / down to it (symlinks resolved): each must belong to root,
 * to the agent's own user, or to the file's intended owner, and must not be
 * writable by group or others unless sticky. A folder a service user owns
 * (headscale's state) may hold that user's files, never anybody else's, so
 * what the user plants there cannot make root write elsewhere. The temp file
 * and the rename go through the open folder (/proc/self/fd/N/...), so
 * swapping a folder on the way after the check changes nothing.
 */
/**
 * A symlink on the way is followed only if root made it in a folder only root
 * can change: a link a service user planted in its own folder
 * (/var/lib/headscale/sub -> /etc) would send root's write anywhere. Stops at
 * the first component that does not exist yet (checked before any folder is made).
 */
function checkLinks(root: string, dir: string, hostPath: string): void {
  const self = typeof process.getuid === "function" ? process.getuid() : 0;
  const rel = path.relative(root, dir);
  let at = root;
  for (const part of rel ? rel.split(path.sep) : []) {
    const next = path.join(at, part);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(next);
    } catch {
      return;
    }
    if (st.isSymbolicLink()) {
      const parent = fs.statSync(at);
      if (![0, self].includes(st.uid) || ![0, self].includes(parent.uid))
        throw new UnsafePathError(`${hostPath}: refused to write it: ${next} is a symlink that uid ${st.uid === 0 ? parent.uid : st.uid} controls; meshfleet follows only links root made`);
    }
    at = next;
  }
}

function openCheckedDir(root: string, dir: string, hostPath: string, ownerUid: number | undefined): { fd: number; at(name: string): string } {
  const self = typeof process.getuid === "function" ? process.getuid() : 0;
  const allowed = new Set([0, ownerUid ?? 0, self]);
  checkLinks(root, dir, hostPath);
  const real = fs.realpathSync(dir);
  const chain: string[] = [];
  for (let d = real; ; d = path.dirname(d)) {
    chain.unshift(d);
    if (d === path.dirname(d)) break;
  }
  for (const d of chain) {
    const st = fs.lstatSync(d);
    const why =
      !allowed.has(st.uid) ? `belongs to uid ${st.uid}` : st.mode & 0o022 && !(st.mode & 0o1000) ? `is writable by ${st.mode & 0o002 ? "others" : "its group"} (mode ${(st.mode & 0o7777).toString(8)})` : "";
    if (why)
      throw new UnsafePathError(
        `${hostPath}: refused to write it: folder ${d} ${why}; meshfleet writes only into folders owned by root or by the file's owner (fix the folder's owner or mode, or move the file)`,
      );
  }
  const fd = fs.openSync(real, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  const st = fs.fstatSync(fd);
  const checked = fs.lstatSync(real);
  if (st.ino !== checked.ino || st.dev !== checked.dev) {
    fs.closeSync(fd);
    throw new UnsafePathError(`${hostPath}: refused to write it: folder ${real} changed while it was checked`);
  }
  const viaProc = fs.existsSync(`/proc/self/fd/${fd}`);
  return { fd, at: (name) => (viaProc ? `/proc/self/fd/${fd}/${name}` : path.join(real, name)) };
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
