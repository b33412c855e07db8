/**
 * One booted lab host: a copy-on-write root (overlay: the cached Debian root
 * below, the host's own upper layer above) booted by systemd-nspawn inside the
 * host's network namespace.
 */
import { spawn } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LabHost, LabTopology } from "../topology.ts";
import { LabError, run } from "./exec.ts";
import { HOST_TOOLS_DIR, hostDir, toolsDir } from "./paths.ts";
import { processAlive } from "./rootfs.ts";
import { apiVfsWritable, dockerNspawnArgs } from "./docker.ts";

export interface HostPaths {
  dir: string;
  upper: string;
  work: string;
  merged: string;
  log: string;
}

/** A docker host's /var/lib/docker: a plain folder beside its overlay (overlay2 cannot stack on the overlay root). */
export function dockerDataDir(p: HostPaths): string {
  return join(p.dir, "docker");
}

export function hostPaths(instance: number, host: string): HostPaths {
  const dir = hostDir(instance, host);
  return { dir, upper: join(dir, "upper"), work: join(dir, "work"), merged: join(dir, "root"), log: join(dir, "console.log") };
}

/** Mount points currently in this mount namespace (decoded from /proc/self/mountinfo). */
export function mountPoints(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(" ")[4]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export function isMounted(path: string): boolean {
  return mountPoints().includes(path);
}

export async function mountOverlay(topo: LabTopology, host: LabHost, lower: string): Promise<HostPaths> {
  const p = hostPaths(topo.instance, host.name);
  for (const d of [p.upper, p.work, p.merged]) mkdirSync(d, { recursive: true });
  if (!isMounted(p.merged)) {
    // The source name marks the mount as this lab's in `mount` listings.
    await run(["mount", "-t", "overlay", `${topo.prefix}${host.name}`, "-o", `lowerdir=${lower},upperdir=${p.upper},workdir=${p.work}`, p.merged]);
  }
  return p;
}

/**
 * Write what makes this host itself into its upper layer: hostname, the lab's
 * key for root, its own SSH host key (made here, so its public half goes
 * straight into the lab's known_hosts without trusting anything on the wire).
 * Returns the host's public key line.
 */
export async function prepareRoot(host: LabHost, p: HostPaths, labPublicKey: string): Promise<string> {
  const r = p.merged;
  writeFileSync(join(r, "etc/hostname"), `${host.name}\n`);
  writeFileSync(
    join(r, "etc/hosts"),
    `127.0.0.1\tlocalhost\n127.0.1.1\t${host.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n`,
  );
  mkdirSync(join(r, "root/.ssh"), { recursive: true, mode: 0o700 });
  writeFileSync(join(r, "root/.ssh/authorized_keys"), labPublicKey.trim() + "\n", { mode: 0o600 });
  const key = join(r, "etc/ssh/ssh_host_ed25519_key");
  if (!existsSync(key)) {
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `root@${host.name}`, "-f", key]);
  }
  chmodSync(key, 0o600);
  return readFileSync(`${key}.pub`, "utf8").trim();
}

/** Field 22 of /proc/<pid>/stat: the process start time, to tell a reused pid apart. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** Alive (a zombie is not), and the same process we started (not a reused pid). */
export function isOurProcess(pid: number, startTime: string): boolean {
  if (!processAlive(pid)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[0] !== "Z" && fields[19] === startTime;
  } catch {
    return false;
  }
}

export function nspawnArgs(host: LabHost, p: HostPaths, machine: string, docker = false): string[] {
  const args = [
    "systemd-nspawn",
    "-D", p.merged,
    "--boot",
    // No systemd as PID 1 on CI machines: no machined, no scope units.
    "--register=no",
    "--keep-unit",
    `--machine=${machine}`,
    `--hostname=${host.name}`,
    `--network-namespace-path=/run/netns/${host.netns}`,
    "--bind=/dev/net/tun",
    "--capability=CAP_NET_ADMIN",
    "--resolv-conf=off",
    "--timezone=off",
    "--link-journal=no",
    "--console=read-only",
  ];
  if (existsSync(toolsDir())) args.push(`--bind-ro=${toolsDir()}:${HOST_TOOLS_DIR}`);
  if (docker) args.push(...dockerNspawnArgs(dockerDataDir(p)));
  return args;
}

export interface Booted {
  pid: number;
  startTime: string;
}

/**
 * The loop around nspawn: a reboot inside the container makes systemd-nspawn
 * exit with 133, and the host is booted again (systemd-nspawn@.service does
 * the same with RestartForceExitStatus=133; `up --reboot-check` needs it).
 * SIGTERM (`lab down`) is passed on to nspawn, which powers the container
 * off, and ends the loop. nspawn gets SIGKILL when the loop dies (setpriv
 * --pdeathsig): killing the recorded pid never leaves an nspawn behind.
 */
export const SUPERVISOR = [
  "stop=0",
  'trap \'stop=1; kill -TERM "$c" 2>/dev/null\' TERM INT HUP',
  "while :; do",
  '  setpriv --pdeathsig KILL -- "$@" & c=$!',
  '  rc=0; wait "$c" || rc=$?',
  '  while kill -0 "$c" 2>/dev/null; do rc=0; wait "$c" || rc=$?; done',
  '  if [ "$stop" != 0 ] || [ "$rc" != 133 ]; then exit "$rc"; fi',
  '  echo "meshfleet lab: the container rebooted (systemd-nspawn exit 133); booting it again"',
  "done",
].join("\n");

/** The supervising loop's argv around nspawn's. */
export function supervisedArgs(nspawn: string[]): string[] {
  return ["sh", "-c", SUPERVISOR, "meshfleet-lab-host", ...nspawn];
}

/**
 * Start nspawn detached (it outlives the CLI that started it), console to the
 * host's log. SYSTEMD_NSPAWN_API_VFS_WRITABLE=network leaves /proc/sys/net
 * writable: without it forwarding sysctls fail with EPERM inside.
 */
export async function boot(topo: LabTopology, host: LabHost, p: HostPaths, docker = false): Promise<Booted> {
  const out = openSync(p.log, "a");
  if (docker) mkdirSync(dockerDataDir(p), { recursive: true });
  const [file, ...args] = supervisedArgs(nspawnArgs(host, p, `${topo.prefix}${host.name}`, docker));
  const child = spawn(file!, args, {
    detached: true,
    stdio: ["ignore", out, out],
    env: { ...process.env, SYSTEMD_NSPAWN_API_VFS_WRITABLE: apiVfsWritable(docker) },
  });
  closeSync(out);
  const pid = child.pid;
  if (!pid) throw new LabError(`boot ${host.name}: systemd-nspawn did not start (see ${p.log})`);
  child.unref();
  // /proc/<pid>/stat is there as soon as spawn returns a pid.
  const startTime = processStartTime(pid);
  if (!startTime) throw new LabError(`boot ${host.name}: systemd-nspawn exited at once (see ${p.log})`);
  return { pid, startTime };
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const c = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim();
      if (c) out.push(...c.split(/\s+/).map(Number));
    }
  } catch {
    /* gone */
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function inOtherPidNs(pid: number, ours: string): boolean {
  try {
    return readlinkSync(`/proc/${pid}/ns/pid`) !== ours;
  } catch {
    return false;
  }
}

/** Container inits below `pid`: its children, or its children's children (nspawn under the supervising loop), in a pid namespace of their own. */
function initsBelow(pid: number): number[] {
  const ours = readlinkSync("/proc/self/ns/pid");
  const out: number[] = [];
  for (const c of childrenOf(pid)) {
    if (inOtherPidNs(c, ours)) out.push(c);
    else for (const g of childrenOf(c)) if (inOtherPidNs(g, ours)) out.push(g);
  }
  return out;
}

/**
 * The container's init: the first of nspawn's children in a pid namespace of
 * its own. (nspawn first forks an "outer child" in our pid namespace that
 * lives only a few ms; that one is not it.) `nspawnPid` may be the
 * supervising loop around nspawn.
 */
export async function containerInit(nspawnPid: number, timeoutMs = 10_000): Promise<Booted | undefined> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    for (const c of initsBelow(nspawnPid)) {
      const startTime = processStartTime(c);
      if (startTime) return { pid: c, startTime };
    }
    await sleep(20);
  }
  return undefined;
}

/** Kill a container whose nspawn is gone: SIGKILL to its init ends its whole pid namespace. */
export async function killContainer(pid: number, startTime: string): Promise<void> {
  if (!isOurProcess(pid, startTime)) return;
  process.kill(pid, "SIGKILL");
  const until = Date.now() + 5_000;
  while (isOurProcess(pid, startTime) && Date.now() < until) await sleep(50);
  if (isOurProcess(pid, startTime)) throw new LabError(`stop: container init pid ${pid} survived SIGKILL`);
}

/**
 * Stop a host: SIGTERM makes nspawn ask the container's systemd for an
 * orderly poweroff. If that hangs, kill the container's init (nspawn's child,
 * PID 1 of its pid namespace; killing it ends every process in the container)
 * and then nspawn itself. Killing only nspawn would leave the container running.
 */
export async function stop(pid: number, startTime: string, graceMs = 15_000): Promise<void> {
  if (!isOurProcess(pid, startTime)) return;
  process.kill(pid, "SIGTERM");
  const until = Date.now() + graceMs;
  while (Date.now() < until) {
    if (!isOurProcess(pid, startTime)) return;
    await sleep(100);
  }
  // The container's init first (one booted after a reboot is in no record), then nspawn and the loop.
  for (const c of [...initsBelow(pid), ...childrenOf(pid)]) {
    try {
      process.kill(c, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  await sleep(500);
  if (isOurProcess(pid, startTime)) process.kill(pid, "SIGKILL");
  const until2 = Date.now() + 5_000;
  while (isOurProcess(pid, startTime) && Date.now() < until2) await sleep(100);
  if (isOurProcess(pid, startTime)) throw new LabError(`stop: systemd-nspawn pid ${pid} survived SIGKILL`);
}
