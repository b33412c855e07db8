/**
 * Evaluate and render a fleet on several threads (issue 19: 10,000 hosts).
 *
 * The main thread takes the first shard of the host files, worker threads
 * (cli/parallel-eval-worker.ts) the others (core/shard.ts): each loads its
 * hosts and evaluates their options, the main thread runs the fleet phase on
 * every peer (a warning of it that names where a host's option was set asks
 * the shard holding that host), then each shard runs its hosts' modules and
 * renders their files, and the main thread joins them in order. The result
 * is the serial path's (`evaluateFleet`, then `allArtifacts`): the same
 * hosts, files and diagnostics in the same order; a fleet the shards would
 * not reproduce exactly (an error before phase 3, anything the loader or
 * phase 1 has to say, a `.ts` host, sites) goes
 * through the serial path, as does a small one (threads cost more than they
 * save under `MIN_HOSTS`), and any fleet while the machine has no free core
 * (load average above cores - 1), unless the threads are given
 * (`threads`, MESHFLEET_THREADS).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import os from "node:os";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { Artifact } from "../core/artifacts.ts";
import type { EvalResult } from "../core/eval.ts";
import type { Diagnostic, FleetSystem, HostSystem } from "../core/types.ts";
import type { HostEnforcement, PeerView } from "../core/module.ts";
import type { NamedHost } from "../core/load.ts";
import {
  fleetHasSites, joinPeers, joinShards, planShards, serialEvaluateAndRender, shardedFleetPhase, shardHosts, shardOptions, shardOrigins, Unsharded, type FleetPhaseOrigins, type OriginAsk, type FleetPhasePolicy, type ShardedResult, type ShardHosts,
} from "../core/shard.ts";
import { REGISTRY } from "../modules/index.ts";

/** Below this many host files a worker's start (about 250-300 ms of CPU: node's worker, the modules) is too large a share (bench/eval-scale). */
export const MIN_HOSTS = 2_000;

/**
 * The main thread's shard against a worker's: the main thread starts on its hosts at once, a worker
 * only once node has started it and loaded its modules (about 200-250 ms at 10,000 hosts, with the
 * prebuilt CLI's worker), and at the end a worker packs its files and the main thread takes them in
 * (about 100-150 ms), so with equal shards the main thread waited for it at both ends. 1.35 puts
 * about 57% of the hosts on the main thread of two: over 8 and 10 alternating runs at 10,000 hosts,
 * medians of 1,848 and 2,257 ms of wall against 2,008 and 2,472 ms with 1.2, and 1,863 and 2,369 ms
 * with 1.5 and 1.45 (bench/eval-scale README, "threads").
 */
export const MAIN_SHARD_WEIGHT = 1.35;

export interface ParallelOptions {
  /** Threads in all, the main one included (default: MESHFLEET_THREADS, else the machine's cores, at most 4, when the load average leaves one free, else 1). 1 is the serial path. */
  threads?: number;
  /** Render every artifact too (allArtifacts' list). */
  render?: boolean;
  /** Give the FleetSystem, every host's HostSystem in it (default). false: only `hostNames`, the diagnostics and the artifacts (the hosts stay in their threads: copying them back costs). */
  keepHosts?: boolean;
  /** Shard even a small fleet (tests). */
  minHosts?: number;
  /** Fill `threadCpuMs` (bench/eval-scale). */
  threadTimes?: boolean;
  /** Tests only: a fault in a worker's shard, to show the comparison catches it. */
  fault?: "artifact-byte" | "swap-hosts" | "throw";
}

export interface ParallelResult extends ShardedResult {
  /** How it ran: "sharded" on `threads` threads, else why it took the serial path. */
  path: string;
  /** With `threadTimes`, on Linux: each thread's own CPU, ms (the main thread's, then each worker's). */
  threadCpuMs?: number[];
}

/** This thread's CPU (user + sys), ms, from /proc (10 ms ticks); NaN where there is none. */
export function threadCpuMs(): number {
  try {
    const stat = readFileSync("/proc/thread-self/stat", "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

/** Messages between the main thread and a shard's worker. */
export type ToWorker =
  | { type: "options"; dir: string; only: string[]; fault?: ParallelOptions["fault"]; since: number }
  | { type: "peers"; index: number; peers: (PeerView[] | null)[] }
  | { type: "hosts"; stack: string; pol: Omit<FleetPhasePolicy, "policy">; enforcement: Record<string, HostEnforcement>; render: boolean; keepHosts: boolean }
  | { type: "fleet"; dir: string; stack: string; since: number; withBase: boolean }
  | { type: "base"; digests: Record<string, string> }
  | { type: "origins"; wants: OriginAsk[] };
export type FromWorker =
  | { type: "options"; peers: PeerView[]; named: NamedHost[] }
  | { type: "origins"; origins: FleetPhaseOrigins }
  | { type: "hosts"; shard: ShardHosts; packed?: PackedArtifacts; cpuMs: number }
  | { type: "fleet"; fleet?: FleetSystem; diagnostics: Diagnostic[]; order?: string[]; kept?: Record<string, KeptHost> }
  | { type: "unsharded"; why: string }
  | { type: "error"; message: string };

/**
 * The shard's thread runs the prebuilt worker when this code is the prebuilt CLI's (cli/build.mjs
 * defines MESHFLEET_PREBUILT there): the worker file of the same build, beside this chunk
 * (import.meta.resolve, which the build leaves as it is, unlike import.meta.url). Else the TypeScript
 * through tsx.
 */
declare const MESHFLEET_PREBUILT: boolean | undefined;
const prebuilt = typeof MESHFLEET_PREBUILT !== "undefined" && MESHFLEET_PREBUILT === true;
const workerUrl = prebuilt ? new URL(import.meta.resolve("./parallel-eval-worker.mjs")) : new URL("./parallel-eval-worker.ts", import.meta.url);

/** A worker on the shard's file; a .ts one (run through tsx) starts tsx's loader first, as node 20 will not take --import for it. */
function startWorker(): Worker {
  if (!workerUrl.pathname.endsWith(".ts")) return new Worker(workerUrl);
  const api = pathToFileURL(createRequire(import.meta.url).resolve("tsx/esm/api")).href;
  return new Worker(`import(${JSON.stringify(api)}).then((t) => { t.register(); return import(${JSON.stringify(workerUrl.href)}); });`, { eval: true });
}

/**
 * A shard's artifacts as the worker sends them: each distinct text once (most
 * hosts' files are alike: 112,000 files of 10,000 hosts are 20,000 distinct
 * texts, 14 of 48 MB), each file as its path, mode and text's index, per host.
 */
export interface PackedArtifacts { texts: string[]; hosts: [path: string, mode: string, text: number][][] }

export function packArtifacts(perHost: Artifact[][]): PackedArtifacts {
  const index = new Map<string, number>();
  const texts: string[] = [];
  const hosts = perHost.map((list) =>
    list.map((a): [string, string, number] => {
      let i = index.get(a.content);
      if (i === undefined) index.set(a.content, (i = texts.push(a.content) - 1));
      return [a.path, a.mode, i];
    }),
  );
  return { texts, hosts };
}

export function unpackArtifacts(p: PackedArtifacts): Artifact[][] {
  return p.hosts.map((list) => list.map(([path, mode, i]) => ({ path, content: p.texts[i], mode })));
}

class ShardWorker {
  private worker: Worker;
  private waiting: ((m: FromWorker) => void)[] = [];
  private queued: FromWorker[] = [];
  private stopped = false;
  constructor() {
    this.worker = startWorker();
    this.worker.on("message", (m: FromWorker) => this.deliver(m));
    this.worker.on("error", (e) => this.deliver({ type: "error", message: e.message }));
    this.worker.on("exit", (code) => this.deliver({ type: "error", message: `a shard's thread exited (${code})` }));
  }
  private deliver(m: FromWorker) {
    const w = this.waiting.shift();
    if (w) w(m);
    else this.queued.push(m);
  }
  post(m: ToWorker) {
    this.worker.postMessage(m);
  }
  async next<T extends FromWorker["type"]>(type: T): Promise<Extract<FromWorker, { type: T }>> {
    const m = this.queued.shift() ?? (await new Promise<FromWorker>((resolve) => this.waiting.push(resolve)));
    if (m.type === "unsharded") throw new Unsharded(m.why);
    if (m.type === "error") throw new Error(m.message);
    if (m.type !== type) throw new Error(`a shard answered ${m.type}, not ${type}`);
    return m as Extract<FromWorker, { type: T }>;
  }
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    this.worker.removeAllListeners("exit");
    void this.worker.terminate();
  }
}

/** How many threads in all (2 or more), else why one. */
function threadsFor(opts: Pick<ParallelOptions, "threads">): number | string {
  // MESHFLEET_THREADS=N: N threads in all (1: the serial path), to compare or to keep a command to one core.
  const env = Number(process.env.MESHFLEET_THREADS);
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  let threads = opts.threads ?? (Number.isInteger(env) && env >= 1 ? env : undefined);
  if (threads === undefined) {
    // Threads only pay when a core is free: on a busy machine they add CPU (the second thread's start,
    // each thread's own caches, copying between them: 1.2-1.6x) and no core to run it on
    // (bench/eval-scale: slower by wall at a load average of 5-6 on 2 cores).
    const load = os.loadavg()[0];
    if (load > cores - 1) return `load average ${load.toFixed(1)} on ${cores} cores`;
    threads = Math.min(cores, 4);
  }
  return threads < 2 ? "one thread" : threads;
}

/**
 * A HostSystem's digest but for its file and warnings (plan reads the base
 * from a folder of another name): its JSON's (sha1, base64). The same digest
 * on both threads means the same plain data, key order included
 * (evaluateFleet's result is plain data: test/cli/plan-worker.test.ts), so
 * the worker need not send a host the main thread already holds the same:
 * only its file and warnings.
 */
export function hostDigest(h: HostSystem): string {
  return createHash("sha1").update(JSON.stringify({ ...h, file: "", warnings: [] })).digest("base64");
}

/** What the worker sends of a host whose digest is the base's. */
export type KeptHost = Pick<HostSystem, "file" | "warnings">;

/** A whole fleet's evaluation on a worker thread (`evaluateOnWorker`). */
export interface WorkerEvaluation {
  /** `evaluateFleet`'s result, cloned; undefined when the worker would not or could not evaluate it (`why`): evaluate it on this thread then. */
  result: Promise<EvalResult | undefined>;
  /** Why the result is undefined, once it is. */
  why?: string;
  /**
   * With `withBase`: the hosts this thread already has (plan's base; none
   * when it did not evaluate), which the worker waits for. It sends only the
   * hosts whose digest differs; the others in `result` are these objects.
   * Call it once, before awaiting `result` (the worker waits for it).
   */
  base(hosts: Record<string, HostSystem> | undefined): void;
  /** How many hosts of `result` came from `base` (bench and tests). */
  reused: number;
  stop(): void;
}

/**
 * `evaluateFleet(dir, stack)` on a worker thread while this one does other
 * work (plan: the working tree there, the base here). A string (why not)
 * where a thread would not pay: the gate of `evaluateParallel` (threads, load
 * average, `MIN_HOSTS` host files), a folder the shards do not read (a `.ts`
 * host, a host named by digits), or a fleet with sites (its fleet.yaml is
 * read while the worker starts: the caller then reads the base with the
 * sibling folders, once). With `withBase` the worker, once done, waits for
 * `base()` and sends only the hosts that differ from it.
 */
export async function evaluateOnWorker(dir: string, stack: string, opts: Pick<ParallelOptions, "threads" | "minHosts"> & { withBase?: boolean } = {}): Promise<WorkerEvaluation | string> {
  const threads = threadsFor(opts);
  if (typeof threads === "string") return threads;
  let count: number;
  try {
    count = planShards(dir, 1)[0].length;
  } catch (e) {
    if (e instanceof Unsharded) return e.message;
    throw e;
  }
  if (count < (opts.minHosts ?? MIN_HOSTS)) return `${count} hosts, under ${opts.minHosts ?? MIN_HOSTS}`;
  const w = new ShardWorker();
  // Read while the worker loads its modules; the worker is stopped on every way out (a running one keeps the process alive).
  const sites = await fleetHasSites(dir).catch((e: unknown) => {
    w.stop();
    throw e;
  });
  if (sites) {
    w.stop();
    return "a fleet with sites";
  }
  const withBase = opts.withBase ?? false;
  let baseHosts: Record<string, HostSystem> = {};
  let baseSent = false;
  const job: WorkerEvaluation = {
    result: Promise.resolve(undefined),
    reused: 0,
    base(hosts) {
      if (!withBase) return;
      if (baseSent) throw new Error("evaluateOnWorker: base() is called once");
      baseSent = true;
      baseHosts = hosts ?? {};
      const digests: Record<string, string> = {};
      for (const name of Object.keys(baseHosts)) digests[name] = hostDigest(baseHosts[name]);
      w.post({ type: "base", digests });
    },
    stop: () => w.stop(),
  };
  job.result = (async () => {
    try {
      w.post({ type: "fleet", dir, stack, since: performance.timeOrigin + performance.now(), withBase });
      const m = await w.next("fleet");
      if (!m.fleet || !m.order || !m.kept) return { fleet: m.fleet, diagnostics: m.diagnostics };
      // The hosts in the worker's order; those it did not send, the base's with their own file and warnings.
      const sent = m.fleet.hosts;
      const hosts: Record<string, HostSystem> = {};
      for (const name of m.order) {
        // Own keys only, as every lookup by host name should be (the loader refuses a host named constructor).
        if (!Object.hasOwn(m.kept, name)) {
          hosts[name] = sent[name];
          continue;
        }
        const kept = m.kept[name];
        if (!Object.hasOwn(baseHosts, name)) throw new Error(`the worker left out ${name}, which this thread does not have`);
        hosts[name] = { ...baseHosts[name], ...kept };
        job.reused++;
      }
      return { fleet: { ...m.fleet, hosts }, diagnostics: m.diagnostics };
    } catch (e) {
      job.why = e instanceof Unsharded ? e.message : `the worker failed: ${(e as Error).message.split("\n")[0]}`;
      return undefined;
    } finally {
      w.stop();
    }
  })();
  return job;
}

/** `evaluateFleet` (and `allArtifacts` with `render`), its per-host work shared among threads; the same result. */
export async function evaluateParallel(dir: string, stack: string, opts: ParallelOptions = {}): Promise<ParallelResult> {
  const render = opts.render ?? false;
  const keepHosts = opts.keepHosts ?? true;
  const serial = async (why: string): Promise<ParallelResult> => {
    const r = await serialEvaluateAndRender(REGISTRY, dir, stack, render);
    return { ...(keepHosts ? r : { ...r, fleet: undefined }), path: `serial: ${why}` };
  };
  const threads = threadsFor(opts);
  if (typeof threads === "string") return serial(threads);
  let plan: string[][];
  try {
    plan = planShards(dir, threads, [MAIN_SHARD_WEIGHT, ...Array<number>(threads - 1).fill(1)]);
  } catch (e) {
    if (e instanceof Unsharded) return serial(e.message);
    throw e;
  }
  const count = plan.reduce((a, s) => a + s.length, 0);
  if (count < (opts.minHosts ?? MIN_HOSTS)) return serial(`${count} hosts, under ${opts.minHosts ?? MIN_HOSTS}`);
  const t0 = performance.now();
  const cpu0 = threadCpuMs();
  const lap = (what: string) => { if (process.env.MESHFLEET_SHARD_TIMES) console.error(`[main] ${what} ${(performance.now() - t0).toFixed(0)} ms, thread cpu ${threadCpuMs() - cpu0}`); };
  const workers = plan.slice(1).map(() => new ShardWorker());
  try {
    workers.forEach((w, i) => w.post({ type: "options", dir, only: plan[i + 1], fault: opts.fault, since: performance.timeOrigin + t0 }));
    const own = await shardOptions(REGISTRY, dir, plan[0]);
    lap("own options");
    const theirs = [];
    for (const w of workers) theirs.push(await w.next("options"));
    lap("their options");
    const lists = [own.peers, ...theirs.map((t) => t.peers)];
    const peers = joinPeers(lists);
    // Every other shard's peers go out now: a worker takes them in while this thread runs the fleet phase.
    workers.forEach((w, i) => w.post({ type: "peers", index: i + 1, peers: lists.map((l, k) => (k === i + 1 ? null : l)) }));
    const named = [...own.named, ...theirs.flatMap((t) => t.named)];
    let phase = shardedFleetPhase(own, peers, named);
    if (phase.asks.length) {
      // A warning names where a host's option was set: asked of the shard that holds the host, only for
      // those hosts, then the phase again with the answers (it is the serial path's exactly then).
      const shardOf = new Map<string, number>();
      lists.forEach((l, k) => { for (const p of l) shardOf.set(p.name, k); });
      const wants = lists.map((): OriginAsk[] => []);
      for (const a of phase.asks) wants[shardOf.get(a.host)!].push(a);
      const asked = workers.flatMap((w, i) => (wants[i + 1].length ? (w.post({ type: "origins", wants: wants[i + 1] }), [w]) : []));
      const answers: FleetPhaseOrigins = shardOrigins(own, wants[0]);
      for (const w of asked) Object.assign(answers, (await w.next("origins")).origins);
      phase = shardedFleetPhase(own, peers, named, answers);
    }
    const { pol, enforcement, warnings } = phase;
    lap("fleet phase");
    workers.forEach((w, i) => {
      const index = i + 1;
      const mine: Record<string, HostEnforcement> = {};
      for (const p of lists[index]) if (enforcement[p.name]) mine[p.name] = enforcement[p.name];
      w.post({ type: "hosts", stack, pol: { huJson: pol.huJson, autoApprovers: pol.autoApprovers }, enforcement: mine, render, keepHosts });
    });
    lap("posted");
    const shards = [shardHosts(REGISTRY, own, peers, stack, pol, enforcement, { render, keepHosts })];
    lap("own hosts");
    const cpu: number[] = [];
    for (const w of workers) {
      const m = await w.next("hosts");
      shards.push(m.packed ? { ...m.shard, artifacts: unpackArtifacts(m.packed) } : m.shard);
      cpu.push(m.cpuMs);
    }
    lap("their hosts");
    // A shard that found an error renders nothing (it cannot see the others): render none then.
    const renderAll = render && shards.every((s) => s.artifacts);
    const joined = joinShards(own, stack, peers, pol, shards, { render: renderAll, keepHosts }, warnings);
    return { ...joined, path: `sharded: ${threads} threads, ${plan.map((s) => s.length).join(" + ")} hosts`, ...(opts.threadTimes ? { threadCpuMs: [threadCpuMs() - cpu0, ...cpu] } : {}) };
  } catch (e) {
    for (const w of workers) w.stop();
    if (e instanceof Unsharded) return serial(e.message);
    // A thread that failed (it should not: tests hold the shards to the serial path) costs the speed, not the answer.
    return serial(`a shard failed: ${(e as Error).message.split("\n")[0]}`);
  } finally {
    for (const w of workers) w.stop();
  }
}

export type { Artifact };
