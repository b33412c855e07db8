/**
 * The cached Debian bookworm root every lab host boots from (as the lower
 * layer of its own overlay). Made once with debootstrap; a marker file records
 * what it was made from, so a changed package list remakes it.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, renameSync, symlinkSync, unlinkSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { LabError, run } from "./exec.ts";
import { rootfsDir } from "./paths.ts";

export const SUITE = "bookworm";
export const VARIANT = "minbase";

/**
 * What the hosts need. tailscaled needs no iptables: the lab runs it with
 * TS_DEBUG_FIREWALL_MODE=nftables (it talks netlink, not the nft binary).
 * python3 is there only for bench/deploy's Ansible baseline (Ansible runs
 * its modules with the managed host's Python); meshfleet itself needs none.
 */
export const PACKAGES: readonly string[] = [
  "ca-certificates",
  "curl",
  "dbus",
  "ethtool",
  "iproute2",
  "iputils-ping",
  "netcat-openbsd",
  "nftables",
  "nodejs",
  "openssh-server",
  "procps",
  "python3",
  "systemd",
  "systemd-sysv",
];

/** Bump when `finish()` changes what it does to the root. */
const FINISH_VERSION = 1;
const MARKER = ".meshfleet-rootfs.json";

export interface RootfsMarker {
  format: 1;
  suite: string;
  variant: string;
  packages: string[];
  finish: number;
  madeAt?: string;
  debootstrapMs?: number;
}

/** The marker a root made by this code must carry. Pure. */
export function wantedMarker(): RootfsMarker {
  return { format: 1, suite: SUITE, variant: VARIANT, packages: [...PACKAGES].sort(), finish: FINISH_VERSION };
}

function sameRecipe(a: RootfsMarker, b: RootfsMarker): boolean {
  return (
    a.format === b.format &&
    a.suite === b.suite &&
    a.variant === b.variant &&
    a.finish === b.finish &&
    JSON.stringify(a.packages) === JSON.stringify(b.packages)
  );
}

export function readMarker(root = rootfsDir()): RootfsMarker | undefined {
  try {
    return JSON.parse(readFileSync(join(root, MARKER), "utf8")) as RootfsMarker;
  } catch {
    return undefined;
  }
}

export function rootfsIsCurrent(root = rootfsDir()): boolean {
  const m = readMarker(root);
  return m !== undefined && sameRecipe(m, wantedMarker());
}

/** The Debian mirror this machine's apt uses (deb822 or one-line format). */
export function debianMirror(): string {
  const files: string[] = [];
  for (const f of ["/etc/apt/sources.list"]) if (existsSync(f)) files.push(f);
  if (existsSync("/etc/apt/sources.list.d")) {
    for (const f of readdirSync("/etc/apt/sources.list.d").sort()) files.push(join("/etc/apt/sources.list.d", f));
  }
  for (const f of files) {
    const text = readFileSync(f, "utf8");
    const lines = text.split("\n").filter((l) => !l.trim().startsWith("#"));
    for (const l of lines) {
      const one = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(l.trim());
      if (one && one[1] && one[2] === SUITE && !one[1].includes("security")) return one[1];
    }
    // deb822: a stanza whose Suites name bookworm
    for (const stanza of lines.join("\n").split(/\n\s*\n/)) {
      const uris = /^URIs:\s*(\S+)/im.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.+)$/im.exec(stanza)?.[1]?.split(/\s+/) ?? [];
      if (uris && suites.includes(SUITE) && !uris.includes("security")) return uris;
    }
  }
  return "http://deb.debian.org/debian";
}

/**
 * A lock held across processes: a file made with O_EXCL holding our pid; a
 * lock whose pid is gone is stale and taken over.
 */
export async function withLock<T>(path: string, what: string, fn: () => Promise<T>, waitMs = 30 * 60_000): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  const start = Date.now();
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(path, "wx");
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const pid = Number(readFileSync(path, "utf8").trim());
      if (!pid || !processAlive(pid)) {
        rmSync(path, { force: true });
        continue;
      }
      if (Date.now() - start > waitMs) throw new LabError(`${what}: still locked by pid ${pid} (${path}) after ${waitMs} ms`);
      if (!announced) {
        process.stderr.write(`${what}: waiting for pid ${pid} (lock ${path})\n`);
        announced = true;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(path, { force: true });
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export interface RootfsResult {
  path: string;
  made: boolean;
  debootstrapMs?: number;
}

/** Make the cached root if it is missing or made from another recipe. */
export async function ensureRootfs(log: (msg: string) => void = () => {}): Promise<RootfsResult> {
  const root = rootfsDir();
  if (rootfsIsCurrent(root)) return { path: root, made: false };
  return withLock(`${root}.lock`, "lab rootfs", async () => {
    if (rootfsIsCurrent(root)) return { path: root, made: false };
    // Replacing a lower layer under a mounted overlay corrupts the hosts on it.
    const users = overlaysOn(root);
    if (users.length > 0) {
      throw new LabError(
        `lab rootfs: ${root} must be remade (its package list changed) but running hosts use it: ${users.join(", ")}; run 'meshfleet lab hosts down --instance N' for each lab first`,
      );
    }
    const partial = `${root}.partial`;
    rmSync(partial, { recursive: true, force: true });
    const mirror = debianMirror();
    log(`debootstrap ${SUITE} (${PACKAGES.length} packages) from ${mirror}`);
    const t0 = Date.now();
    await run(
      ["debootstrap", `--variant=${VARIANT}`, `--include=${[...PACKAGES].sort().join(",")}`, SUITE, partial, mirror],
      { timeoutMs: 30 * 60_000 },
    );
    const debootstrapMs = Date.now() - t0;
    finish(partial, { ...wantedMarker(), madeAt: new Date().toISOString(), debootstrapMs });
    rmSync(root, { recursive: true, force: true });
    renameSync(partial, root);
    return { path: root, made: true, debootstrapMs };
  });
}

/** Mount points of overlays whose lower layer is `root`. */
export function overlaysOn(root: string): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter((l) => / - overlay /.test(l) && (l.includes(`lowerdir=${root},`) || l.includes(`:${root},`)))
    .map((l) => l.split(" ")[4]!);
}

function mask(root: string, unit: string) {
  const p = join(root, "etc/systemd/system", unit);
  rmSync(p, { force: true });
  symlinkSync("/dev/null", p);
}

/**
 * Turn a fresh debootstrap into a lab base. Every host gets its own SSH host
 * key at boot, so the shared ones debootstrap made are removed; the host
 * machine's resolv.conf and hostname, which debootstrap copies in, are
 * replaced (lab hosts have no resolver and no internet).
 */
export function finish(root: string, marker: RootfsMarker): void {
  for (const f of readdirSync(join(root, "etc/ssh"))) {
    if (f.startsWith("ssh_host_")) unlinkSync(join(root, "etc/ssh", f));
  }
  writeFileSync(
    join(root, "etc/ssh/sshd_config.d/meshfleet-lab.conf"),
    "# meshfleet lab: key-only root login, one host key made per host\nHostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n",
  );
  writeFileSync(join(root, "etc/resolv.conf"), "# meshfleet lab: hosts have no resolver\n");
  writeFileSync(join(root, "etc/hostname"), "lab\n");
  // An empty machine-id makes systemd derive a per-boot id from the container's uuid.
  writeFileSync(join(root, "etc/machine-id"), "");
  // Timers that reach for the internet or scan disks only slow boots and fill logs.
  for (const unit of [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "getty@tty1.service",
    "console-getty.service",
  ]) {
    mask(root, unit);
  }
  mkdirSync(join(root, "opt/meshfleet/tools"), { recursive: true });
  mkdirSync(join(root, "root/.ssh"), { recursive: true, mode: 0o700 });
  writeFileSync(join(root, MARKER), JSON.stringify(marker, null, 2) + "\n");
}

/** Apparent size of the cached root, in bytes (du). */
export async function rootfsSize(root = rootfsDir()): Promise<number> {
  const r = await run(["du", "-sb", root]);
  return Number(r.stdout.split(/\s/)[0]);
}
