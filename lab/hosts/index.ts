/**
 * The lab's real Debian hosts: bring them up, tear them down, say how they
 * are, and run commands on them. This is the surface other code uses (the
 * CLI, the end-to-end lab, tests); the rest of lab/hosts is internal.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import type { LabHost, LabTopology } from "../topology.ts";
import { findHost, hostsNeeded, labTopology, primaryAddress } from "../topology.ts";
import { LabError, netnsExec, run, type RunResult } from "./exec.ts";
import { boot, containerInit, isMounted, isOurProcess, killContainer, mountOverlay, mountPoints, prepareRoot, stop } from "./machine.ts";
import { applyNetwork, networkPlan } from "./network.ts";
import { HOST_TOOLS_DIR, knownHostsPath, rootfsDir, runDir, sshKeyPath } from "./paths.ts";
import { ensureRootfs, withLock } from "./rootfs.ts";
import { ensureDockerLayer, lowerDirs } from "./docker.ts";
import { ensureLabKey, setKnownHost, sshArgs as sshArgsFor, sshExec as sshExecFor, waitForSsh, type SshExecOptions } from "./ssh.ts";
import { emptyState, forget, readState, record, writeState, type LabState, type Made } from "./state.ts";

export { LabError, netnsExec, type RunResult } from "./exec.ts";
export { HOST_TOOLS_DIR, labCacheDir, toolsDir, rootfsDir } from "./paths.ts";
export { PACKAGES, ensureRootfs, readMarker, rootfsSize } from "./rootfs.ts";
export { DOCKER_PACKAGES, ensureDockerLayer } from "./docker.ts";
export type { LabState, Made } from "./state.ts";

/** The instance used when none is given: env MESHFLEET_LAB_INSTANCE, else 0. */
export function defaultInstance(): number {
  const v = process.env.MESHFLEET_LAB_INSTANCE;
  return v ? Number(v) : 0;
}

export interface InstanceOption {
  /** Lab instance (0..9); tests use their own so they never touch a developer's lab. */
  instance?: number;
}

export interface UpOptions extends InstanceOption {
  /** Hosts to boot (the routers and NATs on their paths come along). @default every host */
  hosts?: string[];
  /** Progress lines ("  1.2s  boot  vps"). @default none */
  log?: (line: string) => void;
  /** Per-host limit from nspawn start to sshd answering. @default 120000 */
  bootTimeoutMs?: number;
  /**
   * Generated clients (client01..clientNN, `labTopology`'s `clients`) for
   * bench/deploy's scale run; recorded in the lab's state so every later call
   * on the instance knows them, until `down`. Never fewer than the lab already
   * has. @default what the state records, else 0 (the standard lab)
   */
  clients?: number;
  /**
   * Hosts booted as docker hosts (issue 20): Debian's docker.io in a layer
   * above the lab root, and what dockerd needs from nspawn. @default none
   */
  docker?: string[];
}

export interface HostStatus {
  name: string;
  role: string;
  kind: LabHost["kind"];
  netns: string;
  addresses: string[];
  mgmt?: string;
  /** down: not made; up: namespace there (and for nspawn, the host is running); stopped: namespace there, nspawn gone. */
  state: "down" | "up" | "stopped";
  /** sshd answered a TCP probe (nspawn hosts). */
  ssh?: boolean;
  pid?: number;
  bootMs?: number;
}

export interface LabStatus {
  instance: number;
  up: boolean;
  keyPath: string;
  knownHostsPath: string;
  hosts: HostStatus[];
}

export interface UpResult extends LabStatus {
  totalMs: number;
  rootfs: { path: string; made: boolean; debootstrapMs?: number };
  /** Hosts booted by this call, ms from nspawn start to sshd accepting the lab key. */
  bootMs: Record<string, number>;
}

const lockPath = (instance: number) => `${runDir(instance)}.lock`;

/** The instance's topology, with the generated clients its state records (none for the standard lab). */
export function topologyOf(instance: number): LabTopology {
  return labTopology(instance, { clients: readState(instance)?.clients ?? 0 });
}

/** Bring the lab up (idempotent: what is already up stays as it is). */
/** What the lab's hosts need of fs.inotify.max_user_instances (the kernel's default is 128). */
export const INOTIFY_INSTANCES = 1024;

/**
 * Each booted host's systemd, journald, dbus and logind hold about a dozen
 * inotify instances, all counted against root's fs.inotify.max_user_instances.
 * At the kernel's default of 128 about ten hosts boot in all labs together,
 * and the next host's systemd exits at boot ("Failed to allocate manager
 * object"): two labs at once (npm test's lanes) or a 20-host lab run out. The
 * lab raises it to INOTIFY_INSTANCES (never lowers it) and says so; the
 * setting lasts until the machine reboots. Returns the line to log, or null
 * when it was high enough already.
 */
export function ensureInotifyInstances(file = "/proc/sys/fs/inotify/max_user_instances"): string | null {
  let now: number;
  try {
    now = Number(readFileSync(file, "utf8").trim());
  } catch {
    return null;
  }
  if (!Number.isFinite(now) || now >= INOTIFY_INSTANCES) return null;
  try {
    writeFileSync(file, `${INOTIFY_INSTANCES}\n`);
  } catch (e) {
    throw new LabError(`lab up: fs.inotify.max_user_instances is ${now}, too few for the lab's hosts (each host's systemd holds about 12), and it could not be raised (${(e as Error).message}). Fix: run as root, or sysctl -w fs.inotify.max_user_instances=${INOTIFY_INSTANCES}`);
  }
  return `raised fs.inotify.max_user_instances from ${now} to ${INOTIFY_INSTANCES} (each host's systemd holds about 12; at ${now} a host fails to boot once about ${Math.floor(now / 12)} run on the machine)`;
}

export async function hostsUp(opts: UpOptions = {}): Promise<UpResult> {
  const instance = opts.instance ?? defaultInstance();
  const clients = Math.max(opts.clients ?? 0, readState(instance)?.clients ?? 0);
  const topo = labTopology(instance, { clients });
  const t0 = Date.now();
  const log = (step: string, host = "") =>
    opts.log?.(`${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s  ${step.padEnd(10)} ${host}`.trimEnd());
  const wanted = hostsNeeded(topo, opts.hosts ?? topo.hosts.map((h) => h.name));

  const rootfs = await ensureRootfs((m) => log("rootfs", m));
  log("rootfs", rootfs.made ? `made in ${((rootfs.debootstrapMs ?? 0) / 1000).toFixed(1)}s` : "cached");
  const dockerHosts = new Set(opts.docker ?? []);
  for (const d of dockerHosts) if (findHost(topo, d).kind !== "nspawn") throw new LabError(`lab up: docker: ${d} is not a booted (nspawn) host`);
  if (dockerHosts.size > 0) {
    const layer = await ensureDockerLayer((m) => log("docker", m));
    log("docker", layer.made ? `layer made in ${((layer.installMs ?? 0) / 1000).toFixed(1)}s` : "layer cached");
  }

  const inotify = ensureInotifyInstances();
  if (inotify) log("inotify", inotify);

  const bootMs: Record<string, number> = {};
  await withLock(lockPath(instance), `lab ${instance}`, async () => {
    let state = readState(instance) ?? emptyState(instance);
    const have = new Set(state.hosts);
    if (state.networkReady && !wanted.every((h) => have.has(h.name))) {
      log("rebuild", "network (more hosts asked for)");
      await teardown(state, log);
      state = emptyState(instance);
    }
    const hosts = state.networkReady ? hostsNeeded(topo, state.hosts) : wanted;
    if (!state.networkReady) {
      if (state.made.length > 0) {
        log("cleanup", "half-made lab");
        await teardown(state, log);
        state = emptyState(instance);
      }
      state.hosts = hosts.map((h) => h.name);
      if (clients > 0) state.clients = clients;
      writeState(state);
      log("network", `${hosts.length} namespaces`);
      await applyNetwork(state, networkPlan(topo, hosts));
      state.networkReady = true;
      writeState(state);
    }

    const pub = await ensureLabKey(instance);
    const booted = wanted.filter((h) => h.kind === "nspawn");
    // Every boot runs to its end (and is recorded) before a failure is thrown, with the lab's lock
    // still held: hosts still booting when one failed outlived the `down` that followed.
    const boots = await Promise.allSettled(
      booted.map(async (h) => {
        const running = processOf(state, h.name);
        if (running) {
          await waitForSsh(topo, h.name, opts.bootTimeoutMs ?? 120_000, () => isOurProcess(running.pid, running.startTime));
          log("running", h.name);
          // A lab up after one whose docker wait failed: the host runs, its docker may still not.
          if (dockerHosts.has(h.name)) await waitForDocker(topo, h.name, log);
          return;
        }
        // nspawn gone: a container it left behind (nspawn killed hard) must go
        // before the same root is booted again.
        for (const m of [...state.made]) {
          if (m.kind === "container" && m.host === h.name) {
            if (isOurProcess(m.pid, m.startTime)) log("kill", `${h.name} (orphaned container ${m.pid})`);
            await killContainer(m.pid, m.startTime);
            forget(state, m);
          }
          if (m.kind === "process" && m.host === h.name) forget(state, m);
        }
        const docker = dockerHosts.has(h.name);
        const p = await mountOverlay(topo, h, docker ? lowerDirs(true) : rootfsDir());
        record(state, { kind: "mount", host: h.name, path: p.merged });
        const hostKey = await prepareRoot(h, p, pub);
        setKnownHost(instance, h.mgmt!, hostKey);
        log("boot", h.name);
        const tb = Date.now();
        const bootOnce = async () => {
          const b = await boot(topo, h, p, docker);
          record(state, { kind: "process", host: h.name, pid: b.pid, startTime: b.startTime });
          const init = await containerInit(b.pid);
          if (init) record(state, { kind: "container", host: h.name, pid: init.pid, startTime: init.startTime });
          await waitForSsh(topo, h.name, opts.bootTimeoutMs ?? 120_000, () => isOurProcess(b.pid, b.startTime));
        };
        try {
          await bootOnce();
        } catch (e) {
          // Seen a few times with several labs booting at once: nspawn exits while the host boots. Its
          // console says why; the same root is booted once more (what it left is killed and forgotten first).
          if (!(e instanceof LabError) || !/exited while booting/.test(e.message)) throw e;
          log("retry", `${h.name}: systemd-nspawn exited while booting; booting it once more. Its console ended: ${consoleTail(p.log)}`);
          for (const m of [...state.made]) {
            if (m.kind === "container" && m.host === h.name) await killContainer(m.pid, m.startTime);
            if ((m.kind === "container" || m.kind === "process") && m.host === h.name) forget(state, m);
          }
          await bootOnce().catch((again: Error) => {
            throw new LabError(`${again.message} (twice; its console ended: ${consoleTail(p.log)})`);
          });
        }
        bootMs[h.name] = Date.now() - tb;
        state.bootMs[h.name] = bootMs[h.name]!;
        writeState(state);
        log("ssh ok", `${h.name} (${(bootMs[h.name]! / 1000).toFixed(1)}s)`);
        if (docker) await waitForDocker(topo, h.name, log);
      }),
    );
    const failed = boots.find((b): b is PromiseRejectedResult => b.status === "rejected");
    if (failed) throw failed.reason;
  });
  const status = await hostsStatus({ instance });
  log("up", `${status.hosts.filter((h) => h.state === "up").length} hosts`);
  return { ...status, totalMs: Date.now() - t0, rootfs, bootMs };
}

/**
 * A docker host answers ssh before its docker has started: `systemctl is-active docker` says "activating" for
 * a few seconds (seen once in CI, where a test's first docker command then failed), or "inactive" while its
 * start job still waits in the queue. Wait until it is active or failed, up to 120 s; a docker that does not
 * become active fails the boot with its state and journal.
 */
async function waitForDocker(topo: LabTopology, host: string, log: (step: string, what?: string) => void): Promise<void> {
  const t = Date.now();
  const r = await sshExecFor(topo, host, 'systemctl cat docker.service >/dev/null 2>&1 || { echo "not installed"; exit 0; }; for i in $(seq 120); do s=$(systemctl is-active docker); case "$s" in active|failed) break;; esac; sleep 1; done; echo "$s"', { timeoutMs: 150_000 });
  const state = r.stdout.trim();
  if (state === "not installed") throw new LabError(`lab up: ${host} runs without docker: it was booted by a lab up without docker. Fix: lab down, then lab up with docker`);
  if (state !== "active") {
    const j = await sshExecFor(topo, host, "journalctl -u docker.service -n 20 --no-pager", { timeoutMs: 30_000 });
    const said = state || `no answer (ssh exit ${r.code}: ${r.stderr.trim().slice(-300)})`;
    throw new LabError(`lab up: docker on ${host} is ${said} after ${((Date.now() - t) / 1000).toFixed(0)}s, expected active. Its journal:\n${j.stdout.trim() || j.stderr.trim()}\nFix: lab down, then lab up again; if it stays, remake the docker layer (delete it, the next lab up makes it)`);
  }
  log("docker ok", `${host} (${((Date.now() - t) / 1000).toFixed(1)}s)`);
}

/** The last lines of a host's console log, on one line, for a message. */
function consoleTail(log: string): string {
  try {
    return readFileSync(log, "utf8").trim().split("\n").slice(-4).join(" | ").slice(-600) || "(empty)";
  } catch {
    return "(no console log)";
  }
}

function processOf(state: LabState, host: string): (Made & { kind: "process" }) | undefined {
  for (const m of state.made) {
    if (m.kind === "process" && m.host === host && isOurProcess(m.pid, m.startTime)) return m;
  }
  return undefined;
}

export interface DownResult {
  instance: number;
  removed: Made[];
}

/** Remove everything the lab recorded making: processes, mounts, root links and tables, namespaces, its run folder. */
export async function hostsDown(opts: InstanceOption & { log?: (line: string) => void } = {}): Promise<DownResult> {
  const instance = opts.instance ?? defaultInstance();
  const t0 = Date.now();
  const log = (step: string, what = "") =>
    opts.log?.(`${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s  ${step.padEnd(10)} ${what}`.trimEnd());
  return withLock(lockPath(instance), `lab ${instance}`, async () => {
    const state = readState(instance);
    if (!state) {
      log("down", "nothing recorded");
      if (existsSync(runDir(instance))) removeRunDir(instance);
      return { instance, removed: [] };
    }
    const removed = [...state.made];
    await teardown(state, log);
    removeRunDir(instance);
    log("down", `${removed.length} things removed`);
    return { instance, removed };
  });
}

/** The run folder holds the overlays' upper layers; never delete through a live mount. */
function removeRunDir(instance: number): void {
  const dir = runDir(instance);
  const live = mountPoints().filter((m) => m === dir || m.startsWith(`${dir}/`));
  if (live.length > 0) throw new LabError(`lab down: ${live.join(", ")} still mounted; not removing ${dir}`);
  rmSync(dir, { recursive: true, force: true });
}

const gone = (stderr: string) => /cannot find|does not exist|no such|not found|not mounted|No such file/i.test(stderr);

/** Undo `state.made` in reverse dependency order; what fails stays recorded and is reported. */
async function teardown(state: LabState, log: (step: string, what?: string) => void): Promise<void> {
  const errors: string[] = [];
  const attempt = async (m: Made, fn: () => Promise<void>) => {
    try {
      await fn();
      forget(state, m);
    } catch (e) {
      errors.push((e as Error).message);
    }
  };
  const of = <K extends Made["kind"]>(k: K) => state.made.filter((m): m is Extract<Made, { kind: K }> => m.kind === k);

  await Promise.all(
    of("process").map((m) =>
      attempt(m, async () => {
        log("stop", m.host);
        await stop(m.pid, m.startTime);
      }),
    ),
  );
  for (const m of of("container")) {
    await attempt(m, () => killContainer(m.pid, m.startTime));
  }
  for (const m of of("mount")) {
    await attempt(m, async () => {
      if (!isMounted(m.path)) return;
      log("umount", m.host);
      await run(["umount", m.path]);
    });
  }
  for (const m of of("nft")) {
    await attempt(m, async () => {
      const r = await run(["nft", "delete", "table", m.family, m.name], { allowFail: true });
      if (r.code !== 0 && !gone(r.stderr)) throw new LabError(`nft delete table ${m.family} ${m.name}: ${r.stderr.trim()}`);
    });
  }
  for (const m of of("link").reverse()) {
    await attempt(m, async () => {
      const r = await run(["ip", "link", "del", m.name], { allowFail: true });
      if (r.code !== 0 && !gone(r.stderr)) throw new LabError(`ip link del ${m.name}: ${r.stderr.trim()}`);
    });
  }
  for (const m of of("netns").reverse()) {
    await attempt(m, async () => {
      log("netns del", m.name);
      const r = await run(["ip", "netns", "del", m.name], { allowFail: true });
      if (r.code !== 0 && !gone(r.stderr)) throw new LabError(`ip netns del ${m.name}: ${r.stderr.trim()}`);
    });
  }
  state.networkReady = false;
  writeState(state);
  if (errors.length > 0) throw new LabError(`lab teardown left things behind (still recorded, run down again):\n  ${errors.join("\n  ")}`);
}

function tcpOpen(address: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port, timeout: timeoutMs });
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.once("connect", () => done(true));
    s.once("timeout", () => done(false));
    s.once("error", () => done(false));
  });
}

/** How the lab is: every host of the topology with its addresses and state. */
export async function hostsStatus(opts: InstanceOption = {}): Promise<LabStatus> {
  const instance = opts.instance ?? defaultInstance();
  const state = readState(instance);
  const topo = labTopology(instance, { clients: state?.clients ?? 0 });
  const nsMade = new Set((state?.made ?? []).filter((m) => m.kind === "netns").map((m) => (m as { name: string }).name));
  const hosts = await Promise.all(
    topo.hosts.map(async (h): Promise<HostStatus> => {
      const addresses = [...h.links.map((l) => l.address), ...h.bridges.flatMap((b) => b.addresses)];
      const base: HostStatus = { name: h.name, role: h.role, kind: h.kind, netns: h.netns, addresses, mgmt: h.mgmt, state: "down" };
      if (!nsMade.has(h.netns) || !existsSync(`/run/netns/${h.netns}`)) return base;
      if (h.kind === "netns") return { ...base, state: "up" };
      const p = state ? processOf(state, h.name) : undefined;
      if (!p) return { ...base, state: "stopped" };
      return { ...base, state: "up", pid: p.pid, ssh: await tcpOpen(h.mgmt!, 22, 1000), bootMs: state?.bootMs[h.name] };
    }),
  );
  return {
    instance,
    up: hosts.some((h) => h.state !== "down"),
    keyPath: sshKeyPath(instance),
    knownHostsPath: knownHostsPath(instance),
    hosts,
  };
}

/** ssh options and destination (everything but the command) for `host` as root. */
export function sshArgs(host: string, opts: InstanceOption = {}): string[] {
  return sshArgsFor(topologyOf(opts.instance ?? defaultInstance()), host);
}

/** Run a shell command line on `host` over SSH; returns {code, stdout, stderr}, never throws for a failing command. */
export function sshExec(host: string, cmd: string, opts: SshExecOptions & InstanceOption = {}): Promise<RunResult> {
  return sshExecFor(topologyOf(opts.instance ?? defaultInstance()), host, cmd, opts);
}

/** Run argv in a host's network namespace (works for every host, nspawn or not). */
export function hostNetnsExec(host: string, argv: readonly string[], opts: InstanceOption & { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const h = findHost(topologyOf(opts.instance ?? defaultInstance()), host);
  return netnsExec(h.netns, argv, { allowFail: true, timeoutMs: opts.timeoutMs, input: opts.input });
}

export function labKeyPath(opts: InstanceOption = {}): string {
  return sshKeyPath(opts.instance ?? defaultInstance());
}

export function labKnownHostsPath(opts: InstanceOption = {}): string {
  return knownHostsPath(opts.instance ?? defaultInstance());
}

/** A handle bound to one lab instance. */
export function lab(instance = defaultInstance()) {
  const topo: LabTopology = topologyOf(instance);
  return {
    instance,
    topology: topo,
    up: (o: Omit<UpOptions, "instance"> = {}) => hostsUp({ ...o, instance }),
    down: (o: { log?: (line: string) => void } = {}) => hostsDown({ ...o, instance }),
    status: () => hostsStatus({ instance }),
    sshArgs: (host: string) => sshArgsFor(topo, host),
    sshExec: (host: string, cmd: string, o: SshExecOptions = {}) => sshExecFor(topo, host, cmd, o),
    netnsExec: (host: string, argv: readonly string[], o: { timeoutMs?: number; input?: string } = {}) =>
      hostNetnsExec(host, argv, { ...o, instance }),
    address: (host: string) => primaryAddress(findHost(topo, host)),
    keyPath: sshKeyPath(instance),
    knownHostsPath: knownHostsPath(instance),
    toolsDir: HOST_TOOLS_DIR,
  };
}

export type Lab = ReturnType<typeof lab>;
