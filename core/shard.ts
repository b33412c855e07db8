/**
 * Evaluation and render in shards (issue 19): the steps one shard of a
 * fleet's hosts goes through, so that threads can share the per-host work
 * (cli/parallel-eval.ts runs them) while the result stays the serial path's
 * (core/eval.ts `evaluateLoaded`, core/artifacts.ts `allArtifacts`).
 *
 * A shard is a contiguous run of the host files in the loader's order. Each
 * shard loads its own hosts (`loadFleetShard`), evaluates their options
 * (phase 1), and hands its peers on; the fleet phase (phase 2) runs once, on
 * every peer; then each shard runs its hosts' modules (phase 3) and renders
 * their files, and phase 4 joins them. The pieces are the serial path's own
 * functions, so the hosts, files and diagnostics are the same, in the same
 * order (shards are joined in order).
 *
 * The shards only take the path where the serial one finds nothing to say
 * before phase 3 but the fleet phase's warnings: any diagnostic of the loader
 * or of phase 1, an error of the fleet phase (or a warning that asks where an
 * option was set beyond what the shards handed on), a `.ts` host file, a
 * fleet with sites, or a host named by digits alone (a JS object puts such
 * keys first, so the serial order is not the file order) sends the whole
 * fleet through the serial path instead (`Unsharded`). The fleet phase's
 * warnings go first, as in the serial path; phase 3's diagnostics are per
 * host, and joined in order.
 */
import { readdirSync } from "node:fs";
import type { z } from "zod";
import { allArtifacts, fleetArtifacts, hostArtifacts, type Artifact } from "./artifacts.ts";
import { hasErrors } from "./diagnostics.ts";
import { evaluateFleetPhase, evaluateHostModules, fleetConfigOf, fleetSystemOf, hostOptions, hostSchema, evaluateFleet, type FleetShared, type HostOptions } from "./eval.ts";
import type { FleetConfig } from "./fleet-schema.ts";
import { inPolicyFile, loadFleetShard, nodeNameProblems, type LoadedFleet, type NamedHost } from "./load.ts";
import type { Contribution, ModuleRegistry, PeerView } from "./module.ts";
import { Prio } from "./priority.ts";
import type { Diagnostic, FleetSystem, HostSystem } from "./types.ts";

/** Why a fleet cannot take the sharded path: it goes through the serial one. */
export class Unsharded extends Error {}

const HOST_ENTRY = /\.(ya?ml|ts)$/i;

/**
 * The host files of `dir` in the loader's order, split into `count`
 * contiguous shards (by `weights`, default equal); throws Unsharded when the
 * folder is not one the shards reproduce exactly.
 */
export function planShards(dir: string, count: number, weights?: number[]): string[][] {
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch {
    throw new Unsharded("the folder cannot be listed");
  }
  const hosts = entries.filter((e) => e !== "fleet.yaml" && e !== "fleet.yml" && !e.startsWith("_") && !e.startsWith(".") && HOST_ENTRY.test(e));
  for (const e of hosts) {
    if (/\.ts$/i.test(e)) throw new Unsharded(`${e}: a TypeScript host file`);
    if (/^\d+\.ya?ml$/i.test(e)) throw new Unsharded(`${e}: a host named by digits`);
  }
  const w = weights ?? Array.from({ length: count }, () => 1);
  const total = w.reduce((a, b) => a + b, 0);
  const out: string[][] = [];
  let from = 0;
  let acc = 0;
  for (let i = 0; i < count; i++) {
    acc += w[i];
    const to = i === count - 1 ? hosts.length : Math.round((hosts.length * acc) / total);
    out.push(hosts.slice(from, to));
    from = to;
  }
  return out;
}

/** A shard after phase 1: what it keeps for phase 3, and what it hands on. */
export interface ShardOptions {
  loaded: LoadedFleet;
  fleetCfg: FleetConfig;
  fleetFile: string;
  schema: z.ZodType;
  evaluated: HostOptions[];
  /** Handed on: the peers in file order, the node names for the loader's check across shards. */
  peers: PeerView[];
  named: NamedHost[];
}

/** Host -> option path -> where it was set: what a fleet-phase warning names, worked out by the shard that holds the host. */
export type FleetPhaseOrigins = Record<string, Record<string, { file: string; path: string }>>;

/** An origin the fleet phase asked for on the main thread, which only the shard holding the host can tell. */
export interface OriginAsk {
  host: string;
  option: string;
}

/**
 * Where `wants` were set, for the hosts of this shard (`ShardOptions`): the
 * answer to the asks of the fleet phase (`shardedFleetPhase`). Worked out
 * only for the hosts a warning names, as the serial path does: a source map
 * per host is the dearest part of phase 1.
 */
export function shardOrigins(own: ShardOptions, wants: readonly OriginAsk[]): FleetPhaseOrigins {
  const byName = new Map(own.evaluated.map((h) => [h.peer.name, h]));
  const out: FleetPhaseOrigins = {};
  for (const { host, option } of wants) {
    const h = byName.get(host);
    if (!h) throw new Unsharded(`an origin asked of the wrong shard (${host})`);
    (out[host] ??= {})[option] = h.origin(option);
  }
  return out;
}

const fieldOf = (v: unknown, k: string): unknown => {
  const o = v instanceof Prio ? v.value : v;
  return o && typeof o === "object" && !Array.isArray(o) ? (o as Record<string, unknown>)[k] : undefined;
};

/** A site, or a core with sites (core/sites.ts): it evaluates as a whole fleet of several folders. */
const withSites = (loaded: LoadedFleet) => fieldOf(loaded.fleet?.value, "core") !== undefined || fieldOf(loaded.fleet?.value, "sites") !== undefined;

/** Whether the fleet.yaml of `dir` makes it a site or a core with sites (only fleet.yaml is read). */
export async function fleetHasSites(dir: string): Promise<boolean> {
  return withSites((await loadFleetShard(dir, new Set())).loaded);
}

/** Load one shard's hosts and evaluate their options (phase 1). Throws Unsharded on anything the serial path would report. */
export async function shardOptions(registry: ModuleRegistry, dir: string, only: string[]): Promise<ShardOptions> {
  const { loaded, named } = await loadFleetShard(dir, new Set(only));
  if (loaded.diagnostics.length) throw new Unsharded("the loader has something to say");
  if (loaded.hosts.length !== only.length) throw new Unsharded("a host file was not loaded");
  if (withSites(loaded)) throw new Unsharded("a fleet with sites");
  const diagnostics: Diagnostic[] = [];
  const schema = hostSchema(registry);
  const { fleetCfg, fleetFile } = fleetConfigOf(loaded, diagnostics);
  if (!fleetCfg || diagnostics.length) throw new Unsharded("fleet.yaml has something to say");
  const evaluated: HostOptions[] = [];
  for (const { name, source } of loaded.hosts) {
    const h = hostOptions(registry, schema, loaded, name, source.file, source.value, diagnostics);
    if (diagnostics.length || !h) throw new Unsharded(`${source.file}: phase 1 has something to say`);
    evaluated.push(h);
  }
  return { loaded, fleetCfg, fleetFile, schema, evaluated, peers: evaluated.map((h) => h.peer), named };
}

/** Every shard's peers, in shard order, as the serial path's record (keyed by name, in file order). */
export function joinPeers(shards: PeerView[][]): Record<string, PeerView> {
  const out: Record<string, PeerView> = {};
  for (const list of shards) for (const p of list) out[p.name] = p;
  return out;
}

/**
 * Phase 2 on every peer, as the serial path runs it. Its warnings go on with
 * the shards (joinShards puts them where the serial path does); an error
 * throws Unsharded. Only the shard holding a host can say where one of its
 * options was set: without `answers`, a warning that needs it is listed in
 * `asks` (the origins given meanwhile stand in, and the warnings are not to
 * be used); the caller asks the shards (`shardOrigins`) and runs the phase
 * again with their answers, which then gives the serial path's warnings
 * exactly (a diagnostic's file and path go through the same shortening and
 * escaping, and its fix may depend on them). Any other ask then throws
 * Unsharded.
 */
export function shardedFleetPhase(
  own: ShardOptions, peers: Record<string, PeerView>, named: NamedHost[], answers?: FleetPhaseOrigins,
): { pol: FleetPhasePolicy; enforcement: FleetShared["enforcement"]; warnings: Diagnostic[]; asks: OriginAsk[] } {
  if (nodeNameProblems(named).length) throw new Unsharded("node names across shards");
  const asks: OriginAsk[] = [];
  const originOf = (host: string) => (option: string) => {
    if (!answers) {
      asks.push({ host, option });
      return { file: "", path: "" };
    }
    const at = answers[host]?.[option];
    if (!at) throw new Unsharded("the fleet phase asked where an option was set of no shard");
    return at;
  };
  const evaluated: Record<string, HostOptions> = {};
  for (const [name, peer] of Object.entries(peers)) evaluated[name] = { peer, origin: originOf(name), defs: [] };
  const diagnostics: Diagnostic[] = [];
  const loaded: LoadedFleet = { dir: own.loaded.dir, hosts: [], diagnostics: [] };
  const r = evaluateFleetPhase(own.fleetCfg, own.fleetFile, loaded, evaluated, diagnostics);
  if (!r || hasErrors(diagnostics)) throw new Unsharded("the fleet phase has something to say");
  return { pol: { policy: r.pol.policy, huJson: r.pol.huJson, autoApprovers: r.pol.autoApprovers }, enforcement: r.enforcement, warnings: diagnostics, asks };
}

export type FleetPhasePolicy = { policy?: unknown; huJson: string; autoApprovers: FleetSystem["autoApprovers"] };

/** A shard after phase 3 (and its render): its hosts in file order, with what phase 4 and the caller join. */
export interface ShardHosts {
  diagnostics: Diagnostic[];
  /** Per host, in file order. */
  names: string[];
  hosts?: HostSystem[];
  warnings: Diagnostic[][];
  fleetParts: Contribution["fleet"][][];
  /** Per host: its artifacts, paths under `<host>/` (allArtifacts' form). */
  artifacts?: Artifact[][];
}

/** Phase 3 for one shard's hosts, and (with `render`) their artifacts; `keepHosts` hands the HostSystems on. */
export function shardHosts(
  registry: ModuleRegistry, own: ShardOptions, peers: Record<string, PeerView>, stack: string, pol: FleetPhasePolicy, enforcement: FleetShared["enforcement"],
  opts: { render: boolean; keepHosts: boolean },
): ShardHosts {
  const shared: FleetShared = { hosts: peers, fleet: own.fleetCfg, fleetFile: own.fleetFile, stack, pol, enforcement };
  const diagnostics: Diagnostic[] = [];
  const out: ShardHosts = { diagnostics, names: [], warnings: [], fleetParts: [], ...(opts.keepHosts ? { hosts: [] } : {}), ...(opts.render ? { artifacts: [] } : {}) };
  const built: HostSystem[] = [];
  for (const h of own.evaluated) {
    const { host, fleet } = evaluateHostModules(registry.modules, own.schema, h, shared, diagnostics);
    out.names.push(host.name);
    out.warnings.push(host.warnings);
    out.fleetParts.push(fleet);
    built.push(host);
  }
  // The serial path renders nothing when phase 3 found an error (anywhere; a shard cannot see the others).
  if (opts.render && !hasErrors(diagnostics))
    for (const h of built) out.artifacts!.push(hostArtifacts(h, `${h.name}/`));
  if (opts.keepHosts) out.hosts = built;
  return out;
}

export interface ShardedResult {
  /** The fleet (without `keepHosts`, not given: `hostNames` and the artifacts are). */
  fleet?: FleetSystem;
  diagnostics: Diagnostic[];
  artifacts?: Artifact[];
  /** Every host's name, in the fleet's order, when there is a fleet. */
  hostNames?: string[];
}

/**
 * Phase 4: the shards joined in order, as the serial path gives them: the
 * fleet phase's warnings, then phase 3's problems, then the hosts' warnings.
 * With `keepHosts`, `hosts` must be set on every shard.
 */
export function joinShards(
  own: ShardOptions, stack: string, peers: Record<string, PeerView>, pol: FleetPhasePolicy, shards: ShardHosts[], opts: { render: boolean; keepHosts: boolean },
  phaseWarnings: Diagnostic[] = [],
): ShardedResult {
  // A policy read from its own file: its problems named there, as evaluateFleet names them.
  const policyFile = own.loaded.fleet?.policyFile;
  const diagnostics = inPolicyFile([...phaseWarnings, ...shards.flatMap((s) => s.diagnostics)], own.loaded.dir, policyFile);
  const fleetWarnings = inPolicyFile(shards.flatMap((s) => s.warnings.flat()), own.loaded.dir, policyFile);
  diagnostics.push(...fleetWarnings);
  if (hasErrors(diagnostics)) return { diagnostics };
  const hosts: Record<string, HostSystem> = {};
  if (opts.keepHosts) for (const s of shards) s.hosts!.forEach((h) => (hosts[h.name] = h));
  const fleet = fleetSystemOf(own.fleetCfg, stack, own.loaded.dir, peers, pol, shards.flatMap((s) => s.fleetParts), hosts, fleetWarnings);
  if (policyFile) fleet.policyFile = policyFile;
  const out: ShardedResult = { diagnostics, hostNames: shards.flatMap((s) => s.names), ...(opts.keepHosts ? { fleet } : {}) };
  if (!opts.render) return out;
  const artifacts = shards.flatMap((s) => s.artifacts!.flat());
  artifacts.push(...fleetArtifacts(fleet).map((a) => ({ ...a, path: `fleet/${a.path}` })));
  return { ...out, artifacts };
}

/** The serial path, as the shards must match it: evaluateFleet, then allArtifacts when there is a fleet. */
export async function serialEvaluateAndRender(registry: ModuleRegistry, dir: string, stack: string, render: boolean): Promise<ShardedResult> {
  const r = await evaluateFleet(registry, dir, stack);
  return { ...r, ...(r.fleet ? { hostNames: Object.keys(r.fleet.hosts) } : {}), ...(render && r.fleet ? { artifacts: allArtifacts(r.fleet) } : {}) };
}
