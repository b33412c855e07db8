/**
 * Evaluation: loaded files -> one HostSystem per host and a FleetSystem, in
 * phases, each pure (apart from reading the folder, load.ts) and each
 * building new values, never editing an earlier phase's result:
 *
 *  1. host options: imports and profiles, the priority merge, the schema;
 *     then the options modules set on each other (`settings`), merged by the
 *     same priority rules; then each module's facts (services, tailnet node)
 *     and the host's roles;
 *  2. fleet phase: the coordinator, node names and routes across hosts, the
 *     policy, its auto-approvers, and host-side enforcement per host;
 *  3. host modules: every module's `config` -> the host's primitives;
 *  4. fleet records: DNS records, DERP regions, pre-auth keys, users.
 *
 * (`renderHost`, core/render.ts, turns a HostSystem into its bundle.)
 *
 * core/ never imports modules/: the caller passes the registry in
 * (modules/index.ts `REGISTRY`), as nixpkgs passes modules to evalModules.
 * Every problem found is returned, none thrown.
 */
import path from "node:path";
import { z } from "zod";
import { diag, hasErrors, MeshfleetError, show } from "./diagnostics.ts";
import { fleetSchema, type FleetConfig } from "./fleet-schema.ts";
import { loadFleetDir, displayPath, inPolicyFile, readImportFile, type LoadedFleet } from "./load.ts";
import { loadSites, type LoadedSites } from "./sites.ts";
import { definitionsAt, mergeDefinitions, mergeMore, schemaKind, sourceOf, stripPrio, zodDiagnostics, type Definition } from "./merge.ts";
import type {
  AnyModule, Contribution, HostConfig, HostEnforcement, HostFacts, HostIdentity, ModuleContext, ModuleRegistry, OptionSetting, PeerView,
} from "./module.ts";
import { PRIORITY, Prio } from "./priority.ts";
import { cidr, parseCidr } from "./schema-types.ts";
import { policyHooks, type PolicyHost } from "./policy-hooks.ts";
import { hostEnforcement, oidcReachingEnforced, policyNodesOf, policyUserNames } from "./policy/fleet.ts";
import { compiledForHosts } from "./policy/enforce.ts";
import type { Policy } from "./policy/index.ts";
import type { Diagnostic, FleetSystem, HostServices, HostSystem, InboundRule, TailscaleSettings, UnitSpec } from "./types.ts";

export const hostBaseShape = {
  imports: z.array(z.string()).default([]).describe("Profiles or ./files.yaml to import."),
  address: z.string().min(1).describe("Address (IP or DNS name) Pulumi reaches the host's sshd on."),
  ssh: z
    .object({
      user: z.string().default("root").describe("SSH user meshfleet deploys as."),
      port: z.number().int().min(1).max(65535).default(22).describe("sshd port."),
      privateKeyPath: z.string().default("").describe("Private key for this host (empty: the stack's meshfleet:sshPrivateKeyPath)."),
      hostKey: z
        .union([z.string().regex(/^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/=]+$/, { message: "an SSH public key such as ssh-ed25519 AAAA…" }), z.literal("")])
        .default("")
        .describe("The host's SSH public key, checked on every deploy (empty: from the stack's meshfleet:knownHostsPath, else unchecked)."),
    })
    .strict()
    .default({ user: "root", port: 22, privateKeyPath: "", hostKey: "" })
    .describe("How Pulumi reaches the host."),
  lan: z.array(cidr).default([]).describe("LAN subnets the host is attached to (advertised routes must be inside one)."),
  agent: z.boolean().default(true).describe("Run the meshfleet agent (false for phones and other nodes you configure by hand)."),
  runtime: z.enum(["systemd", "docker"]).default("systemd").describe("How services run: native systemd units, or docker containers (one container per service, as on a VPS that runs everything in docker)."),
  description: z.string().default("").describe("Free text shown by `meshfleet hosts`."),
};

function checkRegistry(registry: ModuleRegistry | undefined): ModuleRegistry {
  if (!registry || typeof registry !== "object" || !Array.isArray(registry.modules))
    throw new MeshfleetError("evaluation needs the module registry: pass REGISTRY from modules/index.ts (evaluateFleet(REGISTRY, dir, stack))");
  return registry;
}

/** The schema of a host file for these modules. */
export function hostSchema(registry: ModuleRegistry) {
  const { modules, profiles } = checkRegistry(registry);
  const shape: Record<string, z.ZodType> = {
    ...hostBaseShape,
    imports: hostBaseShape.imports.describe(`Profiles (${Object.keys(profiles).join(", ")}) or ./files.yaml to import.`),
  };
  for (const m of modules) shape[m.name] = m.options.prefault({} as never); // prefault: zod 4 parses it, so inner defaults apply
  return z.object(shape).strict();
}

export interface EvalResult {
  fleet?: FleetSystem;
  diagnostics: Diagnostic[];
}

export async function evaluateFleet(registry: ModuleRegistry, dir: string, stack = path.basename(path.resolve(dir))): Promise<EvalResult> {
  checkRegistry(registry);
  // A site or a core with sites evaluates as the whole fleet; the layout says what this stack deploys (core/sites.ts).
  return evaluateSites(registry, await loadSites(dir), stack);
}

/** `evaluateFleet` of a fleet `loadSites` has read (plan's worker looks at the layout first). */
export function evaluateSites(registry: ModuleRegistry, { loaded, layout }: LoadedSites, stack: string): EvalResult {
  const r = evaluateLoaded(registry, loaded, stack);
  if (r.fleet && layout) r.fleet.sites = layout;
  // A policy read from its own file (fleet.yaml policy: ./policy.hujson): its problems are named there.
  const policyFile = loaded.fleet?.policyFile;
  if (r.fleet && policyFile) Object.assign(r.fleet, { policyFile, warnings: inPolicyFile(r.fleet.warnings, loaded.dir, policyFile) });
  return { ...r, diagnostics: inPolicyFile(r.diagnostics, loaded.dir, policyFile) };
}

/** A host after phase 1: its final options, where each came from, its facts. */
export interface HostOptions {
  peer: PeerView;
  /** Where an option path's value was defined: a file and the path in it (see `originOf`). */
  origin: (optionPath: string) => { file: string; path: string };
  /** The host's definitions (files, imports, profiles, module settings): the options modules contribute to are merged again with them. */
  defs: Definition[];
}

export function evaluateLoaded(registry: ModuleRegistry, loaded: LoadedFleet, stack: string): EvalResult {
  const { modules } = checkRegistry(registry);
  const diagnostics: Diagnostic[] = [...loaded.diagnostics];
  const schema = hostSchema(registry);
  const { fleetCfg, fleetFile } = fleetConfigOf(loaded, diagnostics);

  // Phase 1: each host's options
  const evaluated: Record<string, HostOptions> = {};
  for (const { name, source } of loaded.hosts) {
    const h = hostOptions(registry, schema, loaded, name, source.file, source.value, diagnostics);
    if (h) evaluated[name] = h;
  }
  const peers: Record<string, PeerView> = Object.fromEntries(Object.entries(evaluated).map(([n, h]) => [n, h.peer]));
  if (!fleetCfg || hasErrors(diagnostics)) return { diagnostics };

  // Phase 2: the fleet
  const fleetPhase = evaluateFleetPhase(fleetCfg, fleetFile, loaded, evaluated, diagnostics);
  if (!fleetPhase || hasErrors(diagnostics)) return { diagnostics };

  // Phase 3: host modules
  const hosts: Record<string, HostSystem> = {};
  const fleetWarnings: Diagnostic[] = [];
  const fleetParts: Contribution["fleet"][][] = [];
  const shared = { hosts: peers, fleet: fleetCfg, fleetFile, stack, pol: fleetPhase.pol, enforcement: fleetPhase.enforcement };
  for (const h of Object.values(evaluated)) {
    const { host, fleet } = evaluateHostModules(modules, schema, h, shared, diagnostics);
    hosts[host.name] = host;
    fleetParts.push(fleet);
    fleetWarnings.push(...host.warnings);
  }
  diagnostics.push(...fleetWarnings);
  if (hasErrors(diagnostics)) return { diagnostics };

  // Phase 4: the fleet's records
  return { fleet: fleetSystemOf(fleetCfg, stack, loaded.dir, peers, fleetPhase.pol, fleetParts, hosts, fleetWarnings), diagnostics };
}

/** fleet.yaml, through its schema (its problems into `diagnostics`), and the file it is shown as. */
export function fleetConfigOf(loaded: LoadedFleet, diagnostics: Diagnostic[]): { fleetCfg?: FleetConfig; fleetFile: string } {
  let fleetCfg: FleetConfig | undefined;
  const fleetFile = loaded.fleet?.file ?? displayPath(path.join(loaded.dir, "fleet.yaml"));
  if (loaded.fleet) {
    const r = fleetSchema.safeParse(stripPrio(loaded.fleet.value), { reportInput: true });
    if (r.success) fleetCfg = r.data;
    else diagnostics.push(...zodDiagnostics(fleetSchema, r.error, new Map(), fleetFile));
  }
  return { fleetCfg, fleetFile };
}

/** What phase 3 gives every host's modules alike: the fleet, every peer, the fleet phase's policy and enforcement. */
export interface FleetShared {
  hosts: Record<string, PeerView>;
  fleet: FleetConfig;
  fleetFile: string;
  stack: string;
  pol: { huJson: string; autoApprovers: ModuleContext["autoApprovers"] };
  enforcement: Record<string, HostEnforcement>;
}

/** Phase 3 for one host: every module's `config`, merged into its HostSystem; the modules' mesh-wide parts, in module order. */
export function evaluateHostModules(
  modules: readonly AnyModule[], schema: z.ZodType, h: HostOptions, shared: FleetShared, diagnostics: Diagnostic[],
): { host: HostSystem; fleet: Contribution["fleet"][] } {
  const { peer, origin, defs } = h;
  const ctx: ModuleContext = {
    host: peer.name, file: peer.file, self: peer, hosts: shared.hosts, fleet: shared.fleet, fleetFile: shared.fleetFile, stack: shared.stack,
    policyHuJson: shared.pol.huJson, autoApprovers: shared.pol.autoApprovers, enforcement: shared.enforcement[peer.name] ?? null,
  };
  const contribs: { module: string; c: Contribution }[] = [];
  for (let i = 0; i < modules.length; i++) {
    const m = modules[i];
    try {
      contribs.push({ module: m.name, c: m.config(optionsOf(peer.config, m), ctx) });
    } catch (e) {
      diagnostics.push(diag(peer.file, m.name, `module ${m.name} to evaluate`, (e as Error).message, "report this: a module must not throw (use assertions)"));
    }
  }
  const host = assemble(peer, origin, contribs, diagnostics, { schema, defs });
  return { host, fleet: contribs.map((x) => x.c.fleet) };
}

/** Phase 4: the fleet's records from every host's modules' mesh-wide parts (hosts in phase 3's order), and the FleetSystem. */
export function fleetSystemOf(
  fleetCfg: FleetConfig, stack: string, dir: string, peers: Record<string, PeerView>, pol: { policy?: unknown; huJson: string; autoApprovers: FleetSystem["autoApprovers"] },
  fleetParts: Contribution["fleet"][][], hosts: Record<string, HostSystem>, fleetWarnings: Diagnostic[],
): FleetSystem {
  const dnsRecords: FleetSystem["dnsRecords"] = [...fleetCfg.dns.extraRecords];
  const derpRegions: FleetSystem["derpRegions"] = [];
  const preAuthKeys: FleetSystem["preAuthKeys"] = [];
  const users = new Set<string>(fleetCfg.users);
  for (let h = 0; h < fleetParts.length; h++)
    for (let i = 0; i < fleetParts[h].length; i++) {
      const f = fleetParts[h][i];
      if (!f) continue;
      if (f.dnsRecords) dnsRecords.push(...f.dnsRecords);
      for (const r of f.derpRegions ?? []) if (!derpRegions.some((x) => x.regionId === r.regionId)) derpRegions.push(r);
      if (f.preAuthKeys) for (let k = 0; k < f.preAuthKeys.length; k++) preAuthKeys.push(f.preAuthKeys[k]);
      if (f.users) for (let k = 0; k < f.users.length; k++) users.add(f.users[k]);
    }
  const coordHost = fleetCfg.coordinator.host;
  return {
    stack,
    dir,
    coordinator: {
      host: coordHost,
      serverUrl: fleetCfg.coordinator.serverUrl,
      headscaleVersion: fleetCfg.coordinator.headscaleVersion,
      baseDomain: fleetCfg.dns.baseDomain,
      runtime: peers[coordHost].runtime,
    },
    tailscaleVersion: fleetCfg.tailscaleVersion,
    users: [...users],
    ...(fleetCfg.oidcUsers.length ? { oidcUsers: [...fleetCfg.oidcUsers] } : {}),
    policy: pol.policy as FleetSystem["policy"],
    policyHuJson: pol.huJson,
    dnsRecords,
    derpRegions,
    preAuthKeys,
    autoApprovers: pol.autoApprovers,
    hosts,
    warnings: fleetWarnings,
  };
}

// ---------------------------------------------------------------- phase 1

/** How a module's settings are labelled in the merge (never a file name: files end in .yaml or .ts). */
const MODULE_LABEL = "module:";

export function hostOptions(
  registry: ModuleRegistry, schema: z.ZodType, loaded: LoadedFleet, name: string, file: string, raw: unknown, diagnostics: Diagnostic[],
): HostOptions | undefined {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    diagnostics.push(diag(file, "", "a mapping of options (imports, address, ssh, modules...)", show(stripPrio(raw)), "write the host as key: value lines"));
    return undefined;
  }
  const defs: Definition[] = [];
  collectImports(registry, loaded, file, file, raw as Record<string, unknown>, defs, diagnostics, new Set([file]));
  defs.push({ file, priority: PRIORITY.plain, value: raw });

  const before = diagnostics.length;
  // No source map here: it is worked out (from the same definitions) only when a problem is reported.
  const first = mergeDefinitions(schema, defs, "", false);
  const firstParsed = first.diagnostics.length ? undefined : parseOptions(schema, first.value);
  // With the modules' settings: only the options they set are merged and parsed again, the rest is the first round's.
  const parse = (more: Definition[]) => {
    const merged = mergeMore(schema, defs, first.value, more);
    const parsed = merged.diagnostics.length ? undefined : parseOptions(schema, merged.value, firstParsed?.success ? { value: first.value, data: firstParsed.data } : undefined);
    return { merged, parsed };
  };
  let [merged, parsed] = [first, firstParsed];
  // The options modules set on each other, merged like a host file's; again until they settle.
  let settings: { module: AnyModule; list: OptionSetting[] }[] = [];
  let settingsKey = "[]";
  let allDefs = defs;
  for (let round = 0; parsed?.success && round < 4; round++) {
    const config = parsed.data as HostConfig;
    const identity: HostIdentity = { name, file, config };
    const next: { module: AnyModule; list: OptionSetting[] }[] = [];
    for (let i = 0; i < registry.modules.length; i++) {
      const m = registry.modules[i];
      if (!m.settings) continue;
      const list = m.settings(optionsOf(config, m), identity);
      if (list.length) next.push({ module: m, list });
    }
    const key = next.length ? JSON.stringify(next.map((s) => [s.module.name, s.list])) : "[]";
    if (key === settingsKey) break;
    if (round === 3) {
      diagnostics.push(diag(file, next.map((s) => s.module.name).join(", "), "module settings that settle", "settings that change each time they are applied", "report this: a module's settings must not depend on what they set"));
      return undefined;
    }
    settings = next;
    settingsKey = key;
    const more = settings.map((s): Definition => ({ file: `${MODULE_LABEL}${s.module.name}`, priority: PRIORITY.plain, value: nest(s.list) }));
    allDefs = [...defs, ...more];
    ({ merged, parsed } = parse(more));
  }
  // Where each value came from is only needed to report a problem: the source map is worked out
  // (from the same definitions) on demand, kept while this host is checked, then dropped.
  let sources: Map<string, string> | undefined;
  const finalDefs = allDefs;
  const sourcesOf = () => (sources ??= mergeDefinitions(schema, finalDefs).sources);
  const origin = makeOrigin(file, sourcesOf, settings);
  diagnostics.push(...merged.diagnostics.map((d) => relabel(d, origin)));
  if (!parsed) return undefined;
  if (!parsed.success) {
    diagnostics.push(
      ...zodDiagnostics(schema, parsed.error, sourcesOf(), file)
        .filter((d) => !(d.found.startsWith("unknown option") && diagnostics.length > before))
        .map((d) => relabel(d, origin)),
    );
    return undefined;
  }
  if (diagnostics.length > before) return undefined;

  sources = undefined;
  const config = parsed.data as HostConfig;
  const identity: HostIdentity = { name, file, config };
  const facts: HostFacts = { services: {}, tailnet: null };
  for (let i = 0; i < registry.modules.length; i++) {
    const m = registry.modules[i];
    const f = m.facts?.(optionsOf(config, m), identity);
    if (!f) continue;
    Object.assign(facts.services, f.services);
    if (f.tailnet !== undefined) facts.tailnet = f.tailnet;
    if (f.enforcePolicy) facts.enforcePolicy = true;
  }
  const peer: PeerView = {
    name, file, address: config.address, roles: rolesOf(registry, config), runtime: config.runtime, lan: config.lan, config, facts,
  };
  return { peer, origin, defs: finalDefs };
}

/**
 * The host schema's parse, option by option, memoised per schema: a fleet's
 * hosts mostly give a module the same options (the profile's), so each
 * distinct value of a top-level option (its JSON text) is parsed once per
 * evaluation, and the hosts that give it share the result, deep-frozen: an
 * evaluated config is read, never edited (a module that wrote to one would
 * throw, in strict mode, rather than change another host's options), and
 * copying it for each host cost a JSON parse of every module's options per
 * host. Only plain data (text, finite numbers, booleans, null, lists,
 * mappings) is memoised, in and out. Anything that fails, or an unknown
 * option, takes the schema's own parse, so problems are reported exactly as
 * before.
 */
const optionMemo = new WeakMap<z.ZodType, Map<string, Map<string, unknown>>>();
const OPTION_MEMO_MAX = 10_000;

function parseOptions(
  schema: z.ZodType, value: unknown, reuse?: { value: unknown; data: unknown },
): { success: true; data: unknown } | { success: false; error: z.ZodError } {
  const full = () => schema.safeParse(value, { reportInput: true });
  const shape = (schema as unknown as { _zod: { def: { type: string; shape?: Record<string, z.ZodType>; catchall?: unknown } } })._zod.def;
  if (shape.type !== "object" || !shape.shape || !isPlainRecord(value)) return full();
  const fields = shape.shape;
  for (const k in value) if (!Object.prototype.hasOwnProperty.call(fields, k)) return full();
  let memo = optionMemo.get(schema);
  if (!memo) optionMemo.set(schema, (memo = new Map()));
  const out: Record<string, unknown> = {};
  const was = reuse && isPlainRecord(reuse.value) && isPlainRecord(reuse.data) ? reuse : undefined;
  const keys = Object.keys(fields);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const v = value[k];
    // The very value an earlier parse of this schema took (merged again, the options a module did not set stay the same objects): its result.
    if (was && v !== undefined && v === (was.value as Record<string, unknown>)[k] && Object.prototype.hasOwnProperty.call(was.data, k)) {
      const data = (was.data as Record<string, unknown>)[k];
      // Shared only when read-only (the memo's frozen values, or a scalar): a module's settings() sees the first round's config.
      if (data === null || typeof data !== "object" || Object.isFrozen(data)) {
        out[k] = data;
        continue;
      }
    }
    const text = v === undefined ? "" : plainJson(v); // "" is no JSON text: it stands for an option not given
    let seen = memo.get(k);
    if (!seen) memo.set(k, (seen = new Map()));
    const parsed = text === undefined ? undefined : seen.get(text);
    if (parsed !== undefined) {
      out[k] = parsed;
      continue;
    }
    const r = fields[k].safeParse(v);
    if (!r.success) return full();
    if (r.data === undefined) {
      if (k in value) out[k] = undefined;
      continue;
    }
    out[k] = r.data;
    if (text !== undefined && isPlainData(r.data, 0)) {
      if (seen.size >= OPTION_MEMO_MAX) seen.clear();
      seen.set(text, deepFreeze(r.data));
    }
  }
  return { success: true, data: out };
}

const isPlainRecord = (v: unknown): v is Record<string, unknown> => {
  if (!v || typeof v !== "object" || Array.isArray(v)) return false;
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
};

/** JSON text of plain data that JSON carries exactly (no undefined, NaN, -0, class instances), else undefined. */
function plainJson(v: unknown): string | undefined {
  return isPlainData(v, 0) ? JSON.stringify(v) : undefined;
}

/** Plain data (isPlainData), frozen all the way down; returned as given. */
function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k in v) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

function isPlainData(v: unknown, depth: number): boolean {
  if (v === null || typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return Number.isFinite(v) && !Object.is(v, -0);
  if (typeof v !== "object" || depth > 32) return false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!(i in v) || !isPlainData(v[i], depth + 1)) return false;
    return true;
  }
  if (!isPlainRecord(v)) return false;
  for (const k in v) if (k === "__proto__" || !isPlainData(v[k], depth + 1)) return false;
  return true;
}


/** A module's own options in a host's config (the registry is only known at run time). */
function optionsOf(config: HostConfig, m: AnyModule | string): never {
  return (config as unknown as Record<string, unknown>)[typeof m === "string" ? m : m.name] as never;
}

/** `[{option: "a.b", value}]` -> `{a: {b: value}}` (values keep their priority wrappers). */
function nest(list: OptionSetting[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of list) {
    const parts = Array.isArray(s.option) ? s.option : s.option.split(".");
    let cur = out;
    for (const p of parts.slice(0, -1)) cur = (cur[p] ??= {}) as Record<string, unknown>;
    const last = parts[parts.length - 1];
    const prev = cur[last];
    // Two settings of one list option from one module concatenate.
    cur[last] = Array.isArray(prev) && Array.isArray(s.value) ? [...prev, ...s.value] : s.value;
  }
  return out;
}

const isRealFile = (label: string) => !label.startsWith(MODULE_LABEL) && !label.startsWith("profile ");

/**
 * Where the value at an option path was defined: the file and the path in
 * that file. A list item is counted within its own file's list; a value a
 * module set from one of its own options (`from`) is traced to that option.
 */
function makeOrigin(hostFile: string, sourcesOf: () => Map<string, string>, settings: { module: AnyModule; list: OptionSetting[] }[]) {
  const itemIndex = (listPath: string, i: number, label: string) => {
    const sources = sourcesOf();
    let first = i;
    while (first > 0 && sources.get(`${listPath}[${first - 1}]`) === label) first--;
    return i - first;
  };
  const origin = (optionPath: string, depth = 0): { file: string; path: string } => {
    const sources = sourcesOf();
    const label = sourceOf(sources, optionPath, hostFile);
    const item = /^(.*)\[(\d+)\](.*)$/.exec(optionPath);
    if (!label.startsWith(MODULE_LABEL)) {
      if (item && sources.get(`${item[1]}[${item[2]}]`) === label)
        return { file: isRealFile(label) ? label : hostFile, path: `${item[1]}[${itemIndex(item[1], Number(item[2]), label)}]${item[3]}` };
      return { file: isRealFile(label) ? label : hostFile, path: optionPath };
    }
    const mod = label.slice(MODULE_LABEL.length);
    const s = settings
      .find((x) => x.module.name === mod)
      ?.list.map((x) => ({ ...x, option: Array.isArray(x.option) ? x.option.join(".") : x.option }))
      .find((x) => optionPath === x.option || optionPath.startsWith(`${x.option}.`) || optionPath.startsWith(`${x.option}[`));
    if (!s?.from || depth > 4) return { file: hostFile, path: s?.option ?? optionPath };
    let rest = optionPath.slice(s.option.length);
    const head = /^\[(\d+)\](.*)$/.exec(rest);
    if (head) rest = `[${itemIndex(s.option, Number(head[1]), label)}]${head[2]}`;
    return origin(`${s.from}${rest}`, depth + 1);
  };
  return origin;
}

/** A problem the merge or the schema found in a value a module set: reported where that value came from. */
function relabel(d: Diagnostic, origin: (p: string) => { file: string; path: string }): Diagnostic {
  if (!d.file.startsWith(MODULE_LABEL)) return d;
  const mod = d.file.slice(MODULE_LABEL.length);
  const o = origin(d.path);
  return { ...d, file: o.file, path: o.path, found: `${d.found} (set by the ${mod} module)` };
}

/**
 * The host's roles: the profiles whose `enable` definitions all hold in the
 * evaluated config, whichever way they were spelled; a profile implied by a
 * more specific one that holds (`client` by `subnet-router`) is left out.
 */
function rolesOf(registry: ModuleRegistry, config: HostConfig): string[] {
  const holding = profileEnables(registry).filter((p) => p.mods.every((m) => (optionsOf(config, m) as { enable?: unknown } | undefined)?.enable === true));
  return holding
    .filter((p) => !holding.some((q) => q !== p && q.mods.length > p.mods.length && p.mods.every((m) => q.mods.includes(m))))
    .map((p) => p.role);
}

/** Per profile, the modules whose `enable` it sets (worked out once per registry). */
const enablesCache = new WeakMap<ModuleRegistry, { role: string; mods: string[] }[]>();
function profileEnables(registry: ModuleRegistry) {
  let cached = enablesCache.get(registry);
  if (!cached) {
    const enables = (defs: Record<string, unknown>) =>
      Object.entries(defs).filter(([, v]) => v && typeof v === "object" && !(v instanceof Prio) && "enable" in (v as object)).map(([k]) => k);
    cached = Object.entries(registry.profiles).map(([role, p]) => ({ role, mods: enables(p.definitions) })).filter((p) => p.mods.length > 0);
    enablesCache.set(registry, cached);
  }
  return cached;
}

/** `hostFile`: the host whose imports these are; its folder (a site's own, in a fleet with sites) is the one they may not leave. */
function collectImports(registry: ModuleRegistry, loaded: LoadedFleet, hostFile: string, file: string, raw: Record<string, unknown>, defs: Definition[], out: Diagnostic[], seen: Set<string>) {
  const profiles = registry.profiles;
  const imports = stripPrio(raw.imports);
  if (imports === undefined) return;
  if (!Array.isArray(imports)) {
    out.push(diag(file, "imports", "a list of profiles or ./files.yaml", show(imports), "write imports: [client]"));
    return;
  }
  imports.forEach((imp, i) => {
    if (typeof imp !== "string") {
      out.push(diag(file, `imports[${i}]`, "a profile name or ./file.yaml", show(imp), "write the import as a string"));
      return;
    }
    if (imp.startsWith("./") || imp.startsWith("../")) {
      const full = path.resolve(path.dirname(file), imp);
      const shown = displayPath(full);
      if (seen.has(shown)) return;
      // The loader has read (and vetted) every file a host it loaded imports; a LoadedFleet made without
      // them has it read here, as the loader reads one (a base read from git is not on the disk).
      let value: unknown;
      const vetted = loaded.imports?.[shown];
      if (vetted) value = vetted.value;
      else {
        const r = readImportFile(path.dirname(path.resolve(hostFile)), imp, file, `imports[${i}]`);
        out.push(...r.diagnostics);
        value = r.value;
      }
      if (value && typeof value === "object") {
        seen.add(shown);
        collectImports(registry, loaded, hostFile, shown, value as Record<string, unknown>, defs, out, seen);
        defs.push({ file: shown, priority: PRIORITY.plain, value });
      }
      return;
    }
    const profile = profiles[imp];
    if (!profile) {
      out.push(diag(file, `imports[${i}]`, `one of the profiles ${Object.keys(profiles).join(", ")} or a ./file.yaml`, JSON.stringify(imp), `fix the name${suggestName(profiles, imp)}`));
      return;
    }
    defs.push({ file: `profile "${imp}" (imported by ${file})`, priority: PRIORITY.mkDefault, value: profile.definitions });
  });
}

function suggestName(profiles: Record<string, unknown>, imp: string): string {
  const near = Object.keys(profiles).find((p) => p.startsWith(imp.slice(0, 3)));
  return near ? `: did you mean "${near}"?` : "";
}

// ---------------------------------------------------------------- phase 2

export function evaluateFleetPhase(fleetCfg: FleetConfig, fleetFile: string, loaded: LoadedFleet, evaluated: Record<string, HostOptions>, diagnostics: Diagnostic[]) {
  const peers = Object.values(evaluated).map((h) => h.peer);
  const byName = Object.fromEntries(peers.map((p) => [p.name, p]));
  const coordinators = peers.filter((p) => p.facts.services.headscale);
  const coordHost = fleetCfg.coordinator.host;
  if (!byName[coordHost] && !loaded.hosts.some((h) => h.name === coordHost)) {
    diagnostics.push(diag(fleetFile, "coordinator.host", `the name of a host file in ${displayPath(loaded.dir)} (${peers.map((p) => p.name).join(", ") || "none"})`, JSON.stringify(coordHost), `create ${coordHost}.yaml importing "coordinator", or point coordinator.host at an existing host`));
  } else if (coordinators.length === 0) {
    diagnostics.push(diag(byName[coordHost]?.file ?? fleetFile, "imports", 'the coordinator host to import "coordinator" (headscale.enable)', "no host runs headscale", `add "coordinator" to imports in ${byName[coordHost]?.file ?? coordHost + ".yaml"}`));
  }
  if (coordinators.length > 1) {
    for (const c of coordinators.slice(1))
      diagnostics.push(diag(c.file, "headscale.enable", `one coordinator per fleet (already ${coordinators[0].name} in ${coordinators[0].file})`, "a second host running headscale", `remove "coordinator" from this host's imports, or set coordinator.host in ${fleetFile}`));
  } else if (coordinators.length === 1 && coordinators[0].name !== coordHost && byName[coordHost]) {
    diagnostics.push(diag(fleetFile, "coordinator.host", `the host that runs headscale (${coordinators[0].name})`, JSON.stringify(coordHost), `set coordinator.host: ${coordinators[0].name}`));
  }
  checkNames(evaluated, diagnostics);
  checkRoutesAcrossHosts(evaluated, diagnostics);

  // The policy: typed, validated, rendered, with auto-approvers from the hosts' facts.
  const nodes: PolicyHost[] = peers.flatMap((p) => {
    const t = p.facts.tailnet;
    return t ? [{ name: p.name, tags: t.tags, user: t.user, routes: t.routes.map((r) => r.cidr), exitNode: t.exitNode }] : [];
  });
  const pol = policyHooks.prepare(fleetCfg.policy, { fleetFile, fleet: fleetCfg, hostNames: peers.map((p) => p.name), nodes });
  diagnostics.push(...pol.diagnostics);
  if (hasErrors(diagnostics) || !pol.policy) return undefined;

  // Host-side enforcement: the policy's rules that reach a host become its own rules on tailscale0.
  const enforcement: Record<string, HostEnforcement> = {};
  const enforced = peers.filter((p) => p.facts.enforcePolicy && p.facts.tailnet);
  if (enforced.length) {
    const policyNodes = policyNodesOf(nodes, pol.policy, pol.autoApprovers);
    const users = policyUserNames(fleetCfg);
    // The policy compiled once for every enforcing host (once per host was quadratic).
    const compiled = compiledForHosts(policyNodes, pol.policy as Policy, users);
    for (const p of enforced) {
      // A router's routed prefixes as git has them (advertised, approved or not): its forward chain filters them.
      const t = p.facts.tailnet!;
      enforcement[p.name] = hostEnforcement(p.name, policyNodes, pol.policy as Policy, { users, routes: t.routes.map((r) => r.cidr), exitNode: t.exitNode }, compiled);
    }
    // A person who logs in through OIDC has no host in the fleet: an enforcing host does not know their nodes' addresses.
    const enforcing = new Set(fleetCfg.oidcUsers.length ? enforced.map((p) => p.name) : []);
    const enforcedNodes = enforcing.size ? nodes.filter((n) => enforcing.has(n.name)) : [];
    for (const w of oidcReachingEnforced(pol.policy as Policy, enforcedNodes, fleetCfg.oidcUsers, users)) {
      const at = evaluated[w.host].origin("firewall.trustTailnet");
      const who = w.people.join(", ");
      diagnostics.push(diag(at.file, at.path, `a host the policy's OIDC people can reach, with the policy left to headscale (trustTailnet: true)`,
        `firewall.trustTailnet: false on ${w.host}, and the policy lets ${who} reach it or what it routes (${w.why}): ${w.host} enforces the policy with the fleet's own nodes' addresses only, so it drops their traffic`,
        `set firewall.trustTailnet: true on ${w.host} (headscale's policy still filters what reaches it), or leave ${who} out of the rules that reach it`, "warning"));
    }
  }
  return { pol, enforcement };
}

function checkNames(evaluated: Record<string, HostOptions>, out: Diagnostic[]) {
  const byTsName = new Map<string, PeerView>();
  for (const { peer: p, origin } of Object.values(evaluated)) {
    const t = p.facts.tailnet;
    if (!t) continue;
    const prev = byTsName.get(t.name);
    if (prev) {
      const at = origin(t.nameOption);
      out.push(diag(at.file, at.path, `a node name no other host uses (${prev.name} in ${prev.file} is "${t.name}")`, JSON.stringify(t.name), `set ${t.nameOption} to a unique name`));
    } else byTsName.set(t.name, p);
  }
}

/**
 * Two routers' routes may be equal (high availability), not overlap; reported where the later one was written.
 * CIDRs nest or are disjoint, so the overlapping pairs come from one sweep over the routes sorted by start
 * (wider first): the routes still open when one starts are exactly those that contain it. Each pair is then
 * reported as the pairwise loop did: by the later route, in the order the routes were written. (Pairwise, a
 * fleet of 1,000 routers compared half a million pairs.)
 */
function checkRoutesAcrossHosts(evaluated: Record<string, HostOptions>, out: Diagnostic[]) {
  const seen: { host: PeerView; origin: HostOptions["origin"]; option: string; route: string; lo: bigint; hi: bigint; v6: boolean }[] = [];
  for (const { peer: p, origin } of Object.values(evaluated)) {
    for (const { cidr: route, option } of p.facts.tailnet?.routes ?? []) {
      const c = parseCidr(route);
      if (!c) continue;
      const hostBits = BigInt((c.v6 ? 128 : 32) - c.bits);
      const lo = (c.addr >> hostBits) << hostBits;
      seen.push({ host: p, origin, option, route, lo, hi: lo + (1n << hostBits) - 1n, v6: c.v6 });
    }
  }
  const order = seen.map((_, i) => i).sort((a, b) => {
    const x = seen[a], y = seen[b];
    if (x.v6 !== y.v6) return x.v6 ? 1 : -1;
    if (x.lo !== y.lo) return x.lo < y.lo ? -1 : 1;
    return x.hi === y.hi ? a - b : x.hi > y.hi ? -1 : 1;
  });
  const pairs: [earlier: number, later: number][] = [];
  const open: number[] = [];
  for (const i of order) {
    const x = seen[i];
    while (open.length) {
      const top = seen[open[open.length - 1]];
      if (top.v6 === x.v6 && top.hi >= x.lo) break;
      open.pop();
    }
    for (const j of open) {
      const y = seen[j];
      if (y.host === x.host || y.route === x.route) continue;
      pairs.push(j < i ? [j, i] : [i, j]);
    }
    open.push(i);
  }
  pairs.sort((a, b) => a[1] - b[1] || a[0] - b[0]);
  for (const [e, l] of pairs) {
    const s = seen[e], p = seen[l];
    const at = p.origin(p.option);
    out.push(diag(at.file, at.path, `a route that does not overlap other routers' routes`, `${p.route}, which overlaps ${s.route} from ${s.host.name} (${s.host.file})`, "advertise the same CIDR on both (high availability) or make them disjoint"));
  }
}

// ---------------------------------------------------------------- phase 3

const NO_SERVICES: HostServices = { headscale: false, proxy: null, derp: null, subnetRouter: false, exitNode: false, tailnet: false, nodeExporter: false };

/**
 * Options that modules' contributions define alongside the host's own
 * definitions (NixOS: a module's `networking.firewall.allowedTCPPorts` and a
 * host file's merge by priority). A module's public inbound rule defines its
 * port in the port list of its protocol, its unit `systemd.units.<name>`; a
 * host file's `!mkForce` wins over them as over any module setting. The
 * registry's schemas for these options are used when it has them.
 */
const CONTRIBUTED = { tcp: ["firewall", "allowedTCPPorts"], udp: ["firewall", "allowedUDPPorts"], units: ["systemd", "units"] } as const;
const FALLBACK_SCHEMAS = {
  ports: z.array(z.number()),
  units: z.record(z.string(), z.object({ enable: z.boolean(), content: z.string(), restartTriggers: z.array(z.string()) }).partial()),
};

/** The schema of the option at `path` in the host schema, or undefined. */
function optionSchema(schema: z.ZodType, path: readonly string[]): z.ZodType | undefined {
  let s: z.ZodType | undefined = schema;
  for (const key of path) {
    const kind: ReturnType<typeof schemaKind> | undefined = s ? schemaKind(s) : undefined;
    s = kind?.kind === "object" ? kind.shape[key] : undefined;
  }
  return s;
}

interface HostDefinitions {
  schema: z.ZodType;
  defs: Definition[];
}

/**
 * The public ports, per module: each module's inbound rules that its
 * definition of the port list kept (a host's `!mkForce` list drops them,
 * but a port the forced list names is opened as the module opens it), and
 * the ports the host's own definitions add (owner `firewall`, or the module
 * whose settings set them). A dropped rule that says it must stay
 * (`required`: sshd's, the deploy path) is an error while the firewall is on.
 */
function openPorts(peer: PeerView, origin: (p: string) => { file: string; path: string }, contribs: { module: string; c: Contribution }[], hd: HostDefinitions, out: Diagnostic[]): Map<string, InboundRule[]> {
  const byModule = new Map<string, InboundRule[]>();
  const add = (module: string, r: InboundRule) => {
    const list = byModule.get(module);
    if (list) list.push(r);
    else byModule.set(module, [r]);
  };
  const firewallOn = (peer.config as { firewall?: { enable?: boolean } }).firewall?.enable !== false;
  const own = { tcp: definitionsAt(hd.defs, CONTRIBUTED.tcp), udp: definitionsAt(hd.defs, CONTRIBUTED.udp) };
  if (!own.tcp.length && !own.udp.length) {
    // The host defines neither list (most hosts): every module rule stays, as the merge would give.
    for (let i = 0; i < contribs.length; i++) {
      const { module, c } = contribs[i];
      if (c.inbound) for (let k = 0; k < c.inbound.length; k++) add(module, c.inbound[k]);
    }
    return byModule;
  }
  for (const proto of ["tcp", "udp"] as const) {
    const path = CONTRIBUTED[proto];
    const optionPath = path.join(".");
    const rules = contribs.flatMap(({ module, c }) => (c.inbound ?? []).filter((r) => r.proto === proto).map((r) => ({ module, r })));
    if (!own[proto].length) {
      // Nothing of the host's to merge with: every module rule stays (what the merge would give).
      for (const { module, r } of rules) add(module, r);
      continue;
    }
    const moduleDefs = rules.map(({ module, r }): Definition => ({ file: `${MODULE_LABEL}${module}`, priority: PRIORITY.plain, value: [r.port] }));
    const merged = mergeDefinitions(optionSchema(hd.schema, path) ?? FALLBACK_SCHEMAS.ports, [...own[proto], ...moduleDefs], optionPath);
    out.push(...merged.diagnostics.map((d) => relabel(d, origin)));
    const kept = new Set<InboundRule>();
    const hostPorts: number[] = [];
    ((merged.value ?? []) as unknown[]).forEach((port, i) => {
      if (typeof port !== "number") return;
      const label = merged.sources.get(`${optionPath}[${i}]`) ?? peer.file;
      if (label.startsWith(MODULE_LABEL)) {
        const module = label.slice(MODULE_LABEL.length);
        const rule = rules.find((x) => x.module === module && x.r.port === port && !kept.has(x.r));
        if (rule) { kept.add(rule.r); add(module, rule.r); return; }
        if (firewallOn) add(module, { proto, port, from: [], owner: module, comment: optionPath });
      } else hostPorts.push(port);
    });
    for (const port of hostPorts) {
      // A port the host's (forced) list keeps that a module's definition also had: opened as the
      // module opens it (its sources, e.g. firewall.sshFrom, and its comment).
      const rule = rules.find((x) => x.r.port === port && !kept.has(x.r));
      if (rule && !rules.some((x) => x.r.port === port && kept.has(x.r))) { kept.add(rule.r); add(rule.module, rule.r); }
      else if (firewallOn) add("firewall", { proto, port, from: [], owner: "firewall", comment: optionPath });
    }
    for (const { r } of rules) {
      if (kept.has(r) || !r.required || !firewallOn) continue;
      const at = origin(optionPath);
      out.push(diag(at.file, at.path, `${proto} port ${r.port} open (${r.owner}: ${r.required})`, `a list set with a higher priority (!mkForce) without ${r.port}`, `add ${r.port} to ${optionPath} there, or drop its !mkForce`));
    }
  }
  return byModule;
}

/**
 * The host's units: each module's, merged with the host's definitions of
 * `systemd.units.<name>` (`enable: !mkForce false` stops a module's unit,
 * `content: !mkForce ...` replaces its text), and units of the host's own
 * (with their content).
 */
function mergedUnits(origin: (p: string) => { file: string; path: string }, contribs: { module: string; u: UnitSpec }[], hd: HostDefinitions, out: Diagnostic[]): UnitSpec[] {
  const own = definitionsAt(hd.defs, CONTRIBUTED.units);
  if (!own.length) return contribs.map((x) => x.u);
  const optionPath = CONTRIBUTED.units.join(".");
  const moduleDefs = contribs.map(({ module, u }): Definition => ({
    file: `${MODULE_LABEL}${module}`,
    priority: PRIORITY.plain,
    value: { [u.name]: { enable: u.enable, content: u.content, ...(u.restartTriggers ? { restartTriggers: u.restartTriggers } : {}) } },
  }));
  const merged = mergeDefinitions(optionSchema(hd.schema, CONTRIBUTED.units) ?? FALLBACK_SCHEMAS.units, [...own, ...moduleDefs], optionPath, false);
  out.push(...merged.diagnostics.map((d) => relabel(d, origin)));
  const units = (merged.value ?? {}) as Record<string, { enable?: boolean; content?: string; restartTriggers?: string[] }>;
  // Modules' units in their order, then the host's own.
  const names = [...new Set([...contribs.map((x) => x.u.name), ...Object.keys(units)])];
  const result: UnitSpec[] = [];
  for (const name of names) {
    const u = units[name];
    if (!u) continue;
    if (u.content === undefined) {
      const at = origin(`${optionPath}.${name}`);
      out.push(diag(at.file, at.path, "a unit a module on this host provides, or the unit's content", `settings for ${name}, which no module on this host provides`, `add content: to ${optionPath}.${name}, or fix the name (this host's units: ${contribs.map((x) => x.u.name).join(", ") || "none"})`));
      continue;
    }
    result.push({ name, content: u.content, enable: u.enable ?? true, ...(u.restartTriggers ? { restartTriggers: u.restartTriggers } : {}) });
  }
  return result;
}

/** The contributions of all modules, merged into a new HostSystem. */
function assemble(peer: PeerView, origin: (p: string) => { file: string; path: string }, contribs: { module: string; c: Contribution }[], out: Diagnostic[], hd: HostDefinitions): HostSystem {
  const o = peer.config;
  const host: HostSystem = {
    name: peer.name,
    file: peer.file,
    address: peer.address,
    ssh: { user: o.ssh.user, port: o.ssh.port, privateKeyPath: o.ssh.privateKeyPath, hostKey: o.ssh.hostKey },
    roles: peer.roles,
    services: { ...NO_SERVICES, ...peer.facts.services },
    agentNodePath: "",
    agent: o.agent,
    runtime: o.runtime,
    files: [],
    sysctl: {},
    firewall: { enable: false, inbound: [], tailnetInbound: [], tailnet: [], sets: {}, setMembers: {}, forward: false, trustedInterfaces: [], trustTailnet: true, allowPing: true },
    units: [],
    containers: [],
    tailscale: {
      enable: false, loginServer: "", authKeyFile: "", hostname: peer.name, tags: [], advertiseRoutes: [], advertiseExitNode: false,
      acceptRoutes: false, acceptDns: true, ssh: false, snatSubnetRoutes: true, cli: "", netfilterMode: "on", extraUpFlags: [], upArgs: [], setArgs: [],
    },
    packages: [],
    lxc: null,
    probes: [],
    metrics: { enable: false, textfileDir: "" },
    bestEffort: [],
    lan: peer.lan,
    warnings: [],
  };
  const fileOwner = new Map<string, string>();
  const unitOwner = new Map<string, string>();
  const portOwner = new Map<string, InboundRule>();
  const tailscaleSetBy = new Map<string, string>();
  const at = (a: { path: string; file?: string }) => {
    if (a.file) return { file: a.file, path: a.path };
    return origin(a.path);
  };
  const open = openPorts(peer, origin, contribs, hd, out);
  const units: { module: string; u: UnitSpec }[] = [];
  const portsOf = (module: string) => {
    const rules = open.get(module) ?? [];
    open.delete(module);
    return rules;
  };
  const checkPorts = (list: InboundRule[], rules: readonly InboundRule[]) => {
    for (let i = 0; i < rules.length; i++) {
      const r = rules[i];
      const key = `${r.proto}/${r.port}`;
      const prev = portOwner.get(key);
      if (prev && prev.owner !== r.owner)
        out.push(diag(peer.file, `${r.owner}`, `one service per port (${r.proto} ${r.port} is ${prev.owner}'s: ${prev.comment})`, `${r.owner} also wants ${r.proto} ${r.port}`, `move one of them to another port`));
      else if (!prev) { portOwner.set(key, r); list.push(r); }
    }
  };
  // Indexed loops on this path: V8's baseline tier (cli/short-run.ts) allocates an iterator and a
  // result object for every step of a for...of, a quarter of what 10,000 hosts' evaluation allocated.
  for (let ci = 0; ci < contribs.length; ci++) {
    const { module, c } = contribs[ci];
    const files = c.files ?? [];
    for (let i = 0; i < files.length; i++) {
      const f = files[i];
      const prev = fileOwner.get(f.path);
      if (prev) out.push(diag(peer.file, module, `one module writing ${f.path}`, `both ${prev} and ${module}`, `disable one of the two modules on this host`));
      else { fileOwner.set(f.path, module); host.files.push(f); }
    }
    const sysctl = c.sysctl ?? {};
    for (const k in sysctl) {
      if (!Object.prototype.hasOwnProperty.call(sysctl, k)) continue;
      const v = sysctl[k];
      if (host.sysctl[k] !== undefined && host.sysctl[k] !== v)
        out.push(diag(peer.file, module, `one value for sysctl ${k}`, `${host.sysctl[k]} and ${v}`, "make the modules agree"));
      host.sysctl[k] = v;
    }
    checkPorts(host.firewall.inbound, portsOf(module));
    checkPorts(host.firewall.tailnetInbound, c.tailnetInbound ?? []);
    if (c.forward) host.firewall.forward = true;
    if (c.firewall) host.firewall = { ...host.firewall, ...c.firewall };
    const cUnits = c.units ?? [];
    for (let i = 0; i < cUnits.length; i++) {
      const u = cUnits[i];
      const prev = unitOwner.get(u.name);
      if (prev) out.push(diag(peer.file, module, `one module owning ${u.name}`, `both ${prev} and ${module}`, "disable one of the two modules on this host"));
      else { unitOwner.set(u.name, module); units.push({ module, u }); }
    }
    host.containers.push(...(c.containers ?? []));
    host.packages.push(...(c.packages ?? []).filter((p) => !host.packages.includes(p)));
    if (c.lxc) host.lxc = c.lxc;
    if (c.metrics) host.metrics = c.metrics;
    if (c.agentNodePath) host.agentNodePath = c.agentNodePath;
    host.probes.push(...(c.probes ?? []));
    host.bestEffort.push(...(c.bestEffort ?? []));
    if (c.tailscale) mergeTailscale(host.tailscale, c.tailscale, tailscaleSetBy, peer, module, out);
    const assertions = c.assertions ?? [];
    for (let i = 0; i < assertions.length; i++) {
      const a = assertions[i];
      if (a.assertion) continue;
      const w = at(a);
      out.push(diag(w.file, w.path, a.expected, a.found, a.fix));
    }
    const warnings = c.warnings ?? [];
    for (let i = 0; i < warnings.length; i++) {
      const wn = warnings[i];
      if (!wn.when) continue;
      const w = at(wn);
      host.warnings.push(diag(w.file, w.path, wn.expected, wn.found, wn.fix, "warning"));
    }
  }
  // Ports of modules that contributed nothing else in order (set through settings), and the units.
  for (const module of [...open.keys()]) checkPorts(host.firewall.inbound, portsOf(module));
  host.units = mergedUnits(origin, units, hd, out);
  if (!host.agent) {
    // A node without an agent (a phone) is configured by hand from its join
    // instructions: nothing is rendered for the host itself.
    Object.assign(host, { files: [], sysctl: {}, units: [], containers: [], packages: [], probes: [], bestEffort: [], lxc: null });
    host.firewall = { ...host.firewall, enable: false, inbound: [], tailnetInbound: [] };
    host.metrics = { ...host.metrics, enable: false };
    host.services = { ...host.services, nodeExporter: false };
  }
  return host;
}

/** Tailscale settings from the modules: lists concatenate, enable/exit-node are or-ed, other values must agree. */
function mergeTailscale(t: TailscaleSettings, c: Partial<TailscaleSettings>, setBy: Map<string, string>, peer: PeerView, module: string, out: Diagnostic[]) {
  const w = t as unknown as Record<string, unknown>;
  const given = c as Record<string, unknown>;
  for (const key in given) {
    if (!Object.prototype.hasOwnProperty.call(given, key)) continue;
    const k = key as keyof TailscaleSettings;
    const v = given[k];
    if (Array.isArray(v)) w[k] = (w[k] as unknown[]).concat(v);
    else if (typeof v === "boolean") w[k] = k === "advertiseExitNode" || k === "enable" ? (w[k] as boolean) || v : v;
    else if (typeof v === "string") {
      const prev = setBy.get(k);
      if (prev !== undefined && w[k] !== v)
        out.push(diag(peer.file, `tailscale.${k}`, `one value`, `${String(w[k])} (from ${prev}) and ${v} (from ${module})`, "make them agree"));
      setBy.set(k, module);
      w[k] = v;
    }
  }
}
