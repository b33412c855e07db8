/**
 * The deploy engine behind `meshfleet up | preview | refresh | destroy` and
 * `meshfleet lab up`: index.ts's default-exported program run *inline*
 * through Pulumi's Automation API. The Node process serves the program to the
 * CLI (`--client`), so no Node.js language host is needed, and meshfleet's own
 * provider is found through Pulumi.yaml's `plugins.providers`. The workspace's
 * folder is the repo root, so the CLI reads the same Pulumi.yaml (and its
 * stackConfigDir) as a plain `pulumi up` there; the workspace is never given
 * project settings, so it never rewrites that file.
 *
 * Engine events are turned into per-resource lines grouped by host (a
 * resource belongs to the host its inputs or its name or its parent's name
 * name), and into a result with counts per host.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, appendFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { EngineEvent, LocalWorkspace, OpMap, PulumiCommand, PulumiFn, Stack } from "@pulumi/pulumi/automation/index.js";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { MeshfleetError } from "../../core/diagnostics.ts";
import { unreadableCoreMessage } from "../../core/sites.ts";
import { projectStackFile, selectHosts, stackConfigFile, stackHostsDir } from "../fleet-hosts.ts";
import { toolBinary } from "../../lab/tools/index.ts";
import { automation } from "../pulumi-sdk.ts";
import { createOrSelectShared, exportPending, onLockError, redact, redactError, redactUrl, rememberBackend, rewritePendingWarning } from "../state-backend.ts";

export { projectStackFile, selectHosts, stackConfigFile, stackHostsDir };

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PROJECT = "meshfleet";

export type Verb = "up" | "preview" | "refresh" | "destroy";

// ---------------------------------------------------------------------------
// Where state lives, and the environment the Pulumi CLI runs with.

/** `$MESHFLEET_STATE_DIR`, else `$XDG_STATE_HOME/meshfleet/pulumi`, else `~/.local/state/meshfleet/pulumi`. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MESHFLEET_STATE_DIR) return resolve(env.MESHFLEET_STATE_DIR);
  const base = env.XDG_STATE_HOME ? resolve(env.XDG_STATE_HOME) : join(homedir(), ".local", "state");
  return join(base, "meshfleet", "pulumi");
}

/**
 * The variables every Pulumi CLI call of a deploy gets: the backend (a local
 * file backend under the state folder unless PULUMI_BACKEND_URL names
 * another), PULUMI_HOME (the state folder's own unless set), no update check,
 * no plugin downloads, and this Node first on PATH (the provider's shim runs
 * `node`). `extra` (the lab's values) wins over the process environment.
 */
export function deployEnv(extra: Record<string, string> = {}, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const base: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) base[k] = v;
  Object.assign(base, extra);
  const state = defaultStateDir(base);
  const out: Record<string, string> = {
    ...base,
    PULUMI_BACKEND_URL: base.PULUMI_BACKEND_URL || `file://${join(state, "state")}`,
    PULUMI_HOME: base.PULUMI_HOME || join(state, "home"),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PATH: [dirname(process.execPath), base.PATH ?? ""].filter(Boolean).join(delimiter),
  };
  if (out.PULUMI_BACKEND_URL.startsWith("file://")) mkdirSync(out.PULUMI_BACKEND_URL.slice("file://".length), { recursive: true });
  mkdirSync(out.PULUMI_HOME, { recursive: true });
  return out;
}

/**
 * The pinned Pulumi CLI from the tools cache (or PATH at the pinned version),
 * as the Automation API wants it. PulumiCommand.get would run `pulumi version`
 * to learn what the tools cache's stamp already says (or what the PATH probe
 * asked): about 0.3 s of CPU on every deploy, for the Go CLI's start. The
 * version goes through the SDK's own check all the same.
 */
export async function pulumiCommand(): Promise<PulumiCommand> {
  let bin: string;
  let version: string;
  try {
    ({ path: bin, version } = toolBinary("pulumi"));
  } catch (e) {
    throw new MeshfleetError(`${(e as Error).message} (the deploy runs the pinned Pulumi CLI; \`npm run lab\` and scripts/setup.sh build it too)`, [], { cause: e });
  }
  // The Automation API runs <root>/bin/pulumi; the cache and PATH both keep it in a bin folder.
  if (dirname(bin).split(/[\\/]/).pop() !== "bin") throw new MeshfleetError(`${bin}: the Pulumi CLI must sit in a folder named bin (the Automation API runs <root>/bin/pulumi)`);
  const { PulumiCommand } = await automation();
  const [{ parseAndValidatePulumiVersion }, { minimumVersion }] = await Promise.all([
    import("@pulumi/pulumi/automation/cmd.js") as unknown as Promise<{ parseAndValidatePulumiVersion: (min: unknown, current: string, optOut: boolean) => unknown }>,
    import("@pulumi/pulumi/automation/minimumVersion.js") as unknown as Promise<{ minimumVersion: unknown }>,
  ]);
  const checked = parseAndValidatePulumiVersion(minimumVersion, version, false);
  // The constructor PulumiCommand.get ends with (private in the typings only).
  return new (PulumiCommand as unknown as new (command: string, version: unknown) => PulumiCommand)(resolve(bin), checked);
}

// ---------------------------------------------------------------------------
// The program and the stack's files.

/**
 * index.ts's default export: the one Pulumi program, the same function `pulumi
 * up` at the repo root runs. From this repo it is imported by a path the
 * bundler sees, so the prebuilt CLI (dist/cli) runs its own build of it and
 * compiles no TypeScript; tsx compiles it otherwise.
 */
export async function loadProgram(root = REPO_ROOT): Promise<() => Promise<Record<string, unknown>>> {
  const file = join(root, "index.ts");
  // Before the program's `import "@pulumi/pulumi"`.
  await automation();
  let mod: { default?: unknown };
  if (resolve(root) === REPO_ROOT) mod = await import("../../index.ts");
  else {
    // The prebuilt CLI starts its TypeScript hooks on demand (as core/load.ts does for a .ts host file).
    const startHooks = (globalThis as Record<symbol, unknown>)[Symbol.for("meshfleet.registerTsHooks")];
    if (typeof startHooks === "function") startHooks();
    mod = await import(pathToFileURL(file).href);
  }
  if (typeof mod.default !== "function") {
    throw new MeshfleetError(`${file}: expected a default-exported program function, found ${typeof mod.default}`);
  }
  return mod.default as () => Promise<Record<string, unknown>>;
}

/**
 * The program as the Automation API runs it: what it returns becomes the
 * stack's outputs, exactly as Pulumi's Node.js host treats a default export.
 */
export function inlineProgram(program: () => Promise<Record<string, unknown>> | Record<string, unknown>): PulumiFn {
  return async () => (await program()) ?? {};
}

type StackFile = { encryptionsalt?: string; secretsprovider?: string; config?: Record<string, unknown> };

function readYamlFile<T>(path: string): T | undefined {
  if (!existsSync(path)) return undefined;
  return (parseYaml(readFileSync(path, "utf8")) as T | null) ?? undefined;
}

/** Host names of a fleet folder: one YAML per host (fleet.yaml and `_` files are not hosts). */
export function fleetHostNames(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f) && !/^fleet\.ya?ml$/.test(f) && !f.startsWith("_"))
    .map((f) => f.replace(/\.ya?ml$/, ""))
    .sort();
}

/** Fails before Pulumi does, with the fix, when a passphrase stack has no passphrase. */
export function checkPassphrase(stack: string, env: Record<string, string>, configFile?: string, secretsProvider?: string): void {
  const file = readYamlFile<StackFile>(stackConfigFile(stack, configFile)) ?? {};
  const provider = secretsProvider ?? file.secretsprovider ?? "passphrase";
  if (provider !== "passphrase") return;
  if (env.PULUMI_CONFIG_PASSPHRASE !== undefined || env.PULUMI_CONFIG_PASSPHRASE_FILE) return;
  throw new MeshfleetError(
    `stack ${stack}: its secrets are encrypted with a passphrase and none is set; ` +
      `set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (a file holding it), ` +
      `or create the stack with --secrets-provider (e.g. awskms://..., hashivault://...)`,
  );
}

export interface OpenOptions {
  stack: string;
  /** The stack's config in this file (`--config-file`); the project's stack file is then left exactly as it was. */
  configFile?: string;
  /** Variables for the CLI beyond deployEnv()'s (the lab's backend, home and passphrase). */
  env?: Record<string, string>;
  /** For a new stack: `passphrase` (default), `awskms://...`, ... */
  secretsProvider?: string;
  program?: PulumiFn;
  root?: string;
}

export interface OpenStack {
  stack: Stack;
  env: Record<string, string>;
  /**
   * Start loading index.ts now (without `program`): a verb that runs the
   * program calls this before the CLI starts, so the import overlaps the
   * CLI's own start-up. Otherwise the program loads when the engine runs it
   * (refresh and destroy never do).
   */
  prefetchProgram: () => void;
}

/**
 * Select the stack, creating it if it is new. With `configFile`, `stack init`
 * would write the passphrase's salt into the project's stack file: the salt
 * is moved into `configFile` and the project's file restored byte for byte.
 */
export async function openStack(o: OpenOptions): Promise<OpenStack> {
  const root = o.root ?? REPO_ROOT;
  const env = deployEnv(o.env);
  rememberBackend(env.PULUMI_BACKEND_URL);
  checkPassphrase(o.stack, env, o.configFile, o.secretsProvider);
  let loading: Promise<PulumiFn> | undefined;
  const load = () => (loading ??= loadProgram(root).then(inlineProgram));
  // A failed load is reported when the engine runs the program (as the program's error).
  const prefetchProgram = () => void load().catch(() => {});
  const program: PulumiFn = o.program ?? (async () => (await load())());
  const cmd = await pulumiCommand();
  const projectFile = projectStackFile(o.stack, root);
  const before = existsSync(projectFile) ? readFileSync(projectFile, "utf8") : undefined;
  let stack: Stack;
  try {
    const { LocalWorkspace, Stack } = await automation();
    // No projectSettings: the workspace reads the repo's Pulumi.yaml and never writes it.
    const ws = await LocalWorkspace.create({ workDir: root, pulumiCommand: cmd, envVars: env, program, secretsProvider: o.secretsProvider });
    if (stackExists(env.PULUMI_BACKEND_URL, o.stack)) {
      // Every command the stack runs names it (--stack): `pulumi stack select` would only
      // say that it exists (0.3 s: the Go CLI's start), which its checkpoint already does.
      const select = ws.selectStack;
      ws.selectStack = async () => {};
      try {
        stack = await Stack.select(o.stack, ws);
      } finally {
        ws.selectStack = select;
      }
    } else {
      // Two first runs against a shared backend race in creating the table and the stack (cli/state-backend.ts).
      stack = await createOrSelectShared(() => Stack.createOrSelect(o.stack, ws), () => Stack.select(o.stack, ws));
    }
  } catch (e) {
    if (o.configFile) restoreFile(projectFile, before);
    throw new MeshfleetError(`stack ${o.stack}: ${cliError(e)}`, [], { cause: redactError(e) });
  }
  if (o.configFile) {
    const salt = readYamlFile<StackFile>(projectFile)?.encryptionsalt;
    const had = before === undefined ? undefined : ((parseYaml(before) as StackFile | null) ?? {}).encryptionsalt;
    const mine = readYamlFile<StackFile>(o.configFile) ?? {};
    if (salt && salt !== had && !mine.encryptionsalt) {
      mkdirSync(dirname(o.configFile), { recursive: true });
      writeFileSync(o.configFile, stringifyStackFile({ ...mine, encryptionsalt: salt }));
    }
    restoreFile(projectFile, before);
  }
  return { stack, env, prefetchProgram: o.program ? () => {} : prefetchProgram };
}

/**
 * Whether a local file backend (`file://DIR`) holds this project's stack:
 * its checkpoint, DIR/.pulumi/stacks/meshfleet/<stack>.json (or .json.gz).
 * Any other backend, a qualified name or no checkpoint: false, so the CLI
 * is asked (and creates the stack when it is new).
 */
/**
 * A site's StackReference to a core stack the backend does not hold: the
 * engine fails the read with only `unknown stack "core"` (the site's program
 * never sees an error to explain), so the site, the core and the fix are said
 * here (docs/sites.md). Any other message is returned as it is.
 */
export function rewriteCoreRead(message: string, urn?: string): string {
  if (!urn || !urn.includes("::pulumi:pulumi:StackReference::")) return message;
  const m = /unknown stack "([^"]+)"/.exec(message);
  return m ? unreadableCoreMessage(m[1]!, message.split("\n")[0]!) : message;
}

export function stackExists(backend: string | undefined, stack: string, project = PROJECT): boolean {
  if (!backend?.startsWith("file://") || !/^[A-Za-z0-9_.-]+$/.test(stack)) return false;
  const dir = join(backend.slice("file://".length), ".pulumi", "stacks", project);
  return existsSync(join(dir, `${stack}.json`)) || existsSync(join(dir, `${stack}.json.gz`));
}

function stringifyStackFile(f: StackFile): string {
  // Key order as Pulumi writes it: salt first, then config.
  const { encryptionsalt, secretsprovider, config, ...rest } = f;
  const ordered: Record<string, unknown> = {};
  if (secretsprovider) ordered.secretsprovider = secretsprovider;
  if (encryptionsalt) ordered.encryptionsalt = encryptionsalt;
  Object.assign(ordered, rest);
  ordered.config = config ?? {};
  return stringifyYaml(ordered);
}

function restoreFile(path: string, before: string | undefined): void {
  const now = existsSync(path) ? readFileSync(path, "utf8") : undefined;
  if (now === before) return;
  if (before === undefined) rmSync(path, { force: true });
  else writeFileSync(path, before);
}

/** The useful part of an Automation API error: the CLI's `error:` lines, not its whole output. */
export function cliError(e: unknown): string {
  const msg = redact(String((e as Error)?.message ?? e));
  const lines = msg.split("\n").map((l) => l.trim().replace(/^(stdout|stderr):\s*/, "")).filter(Boolean);
  const errs = lines.filter((l) => /^error:/i.test(l)).map((l) => l.replace(/^error:\s*/i, ""));
  if (errs.length > 0) return [...new Set(errs)].join("; ");
  return lines.filter((l) => !/^(code|stdout|stderr|err\?):?\s*$/i.test(l) && !/^(code|stdout|stderr):/.test(l)).slice(-3).join(" | ") || msg;
}

// ---------------------------------------------------------------------------
// Which host a resource belongs to.

/** The resource's name: the last `::` part of its URN. */
export const urnName = (urn: string) => urn.slice(urn.lastIndexOf("::") + 2);
/** The resource's own type: the last `$` part of the URN's qualified type. */
export function urnType(urn: string): string {
  const parts = urn.split("::");
  const qualified = parts[parts.length - 2] ?? "";
  return qualified.slice(qualified.lastIndexOf("$") + 1);
}

const HOST_INPUT_KEYS = ["host", "hostName", "hostname"];

/** A host whose name stands in `name` as a whole word (between `-`, `/`, `:`, `.` or the ends); the longest wins. */
export function hostInName(name: string, hosts: string[]): string | undefined {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return [...hosts]
    .sort((a, b) => b.length - a.length)
    .find((h) => new RegExp(`(^|[-/:.])${esc(h)}($|[-/:.])`).test(name));
}

export interface ResourceInfo {
  urn: string;
  type: string;
  name: string;
  parent?: string;
  /** The default or explicit provider's URN. */
  provider?: string;
  host?: string;
  /** A string `host` input naming a fleet host. */
  hostInput?: string;
}

/** Attributes every resource to a host: its `host` input, else a host in its name, else its parent's host. */
export function attributeHosts(resources: Map<string, ResourceInfo>, hosts: string[]): void {
  const memo = new Map<string, string | undefined>();
  const hostOf = (urn: string, depth = 0): string | undefined => {
    if (memo.has(urn)) return memo.get(urn);
    const r = resources.get(urn);
    if (!r || depth > 64) return undefined;
    const h = (r.hostInput && hosts.includes(r.hostInput) ? r.hostInput : undefined) ?? hostInName(r.name, hosts) ?? (r.parent ? hostOf(r.parent, depth + 1) : undefined);
    memo.set(urn, h);
    return h;
  };
  for (const r of resources.values()) r.host = hostOf(r.urn);
  // A component named for its role (lab-coordinator) belongs to the one host all its children belong to.
  const below = new Map<string, Set<string>>();
  for (const r of resources.values()) {
    if (!r.host) continue;
    for (let p = r.parent, i = 0; p && i < 64; p = resources.get(p)?.parent, i++) {
      if (!below.has(p)) below.set(p, new Set());
      below.get(p)!.add(r.host);
    }
  }
  for (const r of resources.values()) {
    const hs = below.get(r.urn);
    if (!r.host && hs && hs.size === 1 && !r.type.startsWith("pulumi:")) r.host = [...hs][0];
  }
}

// ---------------------------------------------------------------------------
// Events to progress lines and a per-host result.

/**
 * A host's base-chain policies before and after ("input drop, forward accept",
 * provider/summary.ts) in words: which hook starts dropping what it accepted,
 * or stops. Null when neither is known or nothing changed.
 */
export function firewallPolicyNote(before: unknown, after: unknown): string | null {
  const parse = (v: unknown) => new Map(typeof v === "string" && v !== "" ? v.split(", ").map((x) => x.split(" ") as [string, string]) : []);
  if (typeof before !== "string" || typeof after !== "string" || before === after) return null;
  const b = parse(before), a = parse(after);
  const parts: string[] = [];
  for (const hook of ["input", "forward", "output"]) {
    const was = b.get(hook) ?? "none", now = a.get(hook) ?? "none";
    if (was === now) continue;
    if (now === "drop") parts.push(`${hook} policy becomes drop (was ${was === "none" ? "no chain: accepted" : was}): everything not opened by a rule is now dropped`);
    else if (was === "drop") parts.push(`${hook} policy becomes ${now === "none" ? "no chain" : now} (was drop): what was dropped is now accepted`);
    else parts.push(`${hook} policy ${was} -> ${now}`);
  }
  return parts.length ? `firewall: ${parts.join("; ")}` : null;
}

export type Op = string;

export interface ResourceRecord extends ResourceInfo {
  op: Op;
  /** Detailed diff keys and their kind (never values). */
  diff?: { key: string; kind: string }[];
  /** Said in words beside the diff: what a change does to the host (a firewall that starts dropping). */
  notes?: string[];
  ms?: number;
  failed?: boolean;
  errors: string[];
  done: boolean;
}

export interface HostResult {
  host: string;
  ops: Record<string, number>;
  failed: string[];
  errors: string[];
  ms: number;
}

export interface DeployResult {
  verb: Verb;
  stack: string;
  ok: boolean;
  /** Pulumi's counts, e.g. { same: 40, update: 2 }. */
  changes: Record<string, number>;
  hosts: HostResult[];
  resources: ResourceRecord[];
  /** Stack outputs; secret values are replaced by "[secret]". */
  outputs: Record<string, unknown>;
  /** Targeted URNs (--on), if any. */
  targets?: string[];
  selectedHosts?: string[];
  errors: string[];
  warnings: string[];
  ms: number;
  backend: string;
}

export const FLEET_WIDE = "(fleet)";

const OP_SIGN: Record<string, string> = {
  create: "+", update: "~", delete: "-", replace: "+-", "create-replacement": "+-", "delete-replaced": "--",
  same: " ", read: ">", refresh: "~", "discard": "-", import: "=",
};

/** Engine events in, lines out (one per resource start and end, grouped by host in the summary). */
export class EventTracker {
  readonly resources = new Map<string, ResourceRecord>();
  readonly diagnostics: { severity: string; message: string; urn?: string; host?: string }[] = [];
  readonly started = new Map<string, number>();
  changes: OpMap | undefined;
  /** The stack's outputs as the engine reports them (secrets already "[secret]"). */
  stackOutputs: Record<string, unknown> | undefined;

  constructor(
    private readonly hosts: string[],
    private readonly opts: { say?: (line: string) => void; diff?: boolean; verbose?: boolean; preview?: boolean; t0?: number } = {},
  ) {}

  private record(meta: { urn: string; type: string; op: string; new?: { parent?: string; inputs?: Record<string, unknown>; provider?: string }; old?: { parent?: string; inputs?: Record<string, unknown>; outputs?: Record<string, unknown>; provider?: string }; detailedDiff?: Record<string, { diffKind: string }>; diffs?: string[] }): ResourceRecord {
    let r = this.resources.get(meta.urn);
    const state = meta.new ?? meta.old;
    const inputs = state?.inputs ?? {};
    const hostInput = HOST_INPUT_KEYS.map((k) => inputs[k]).find((v): v is string => typeof v === "string");
    if (!r) {
      r = { urn: meta.urn, type: meta.type || urnType(meta.urn), name: urnName(meta.urn), op: meta.op, errors: [], done: false };
      this.resources.set(meta.urn, r);
    }
    r.op = meta.op;
    if (state?.parent) r.parent = state.parent;
    if (state?.provider) r.provider = state.provider.split("::").slice(0, -1).join("::");
    if (hostInput) r.hostInput = hostInput;
    if (meta.detailedDiff && Object.keys(meta.detailedDiff).length > 0) {
      r.diff = Object.entries(meta.detailedDiff).map(([key, d]) => ({ key, kind: d.diffKind }));
      if (meta.detailedDiff.firewallPolicy) {
        const note = firewallPolicyNote(meta.old?.outputs?.firewallPolicy ?? meta.old?.inputs?.firewallPolicy, meta.new?.inputs?.firewallPolicy);
        r.notes = note ? [note] : [];
      }
    } else if (meta.diffs && meta.diffs.length > 0 && !r.diff) {
      r.diff = meta.diffs.map((key) => ({ key, kind: "update" }));
    } else if (!r.diff && meta.old?.inputs && meta.new?.inputs && meta.op !== "same") {
      // A provider that gives no diff keys: the top-level inputs that differ (names only).
      const o = meta.old.inputs, n = meta.new.inputs;
      const keys = [...new Set([...Object.keys(o), ...Object.keys(n)])].filter((k) => JSON.stringify(o[k]) !== JSON.stringify(n[k])).sort();
      if (keys.length > 0) r.diff = keys.map((key) => ({ key, kind: !(key in o) ? "add" : !(key in n) ? "delete" : "update" }));
    }
    attributeHosts(this.resources, this.hosts);
    return r;
  }

  private elapsed(): string {
    return this.opts.t0 === undefined ? "" : `${((Date.now() - this.opts.t0) / 1000).toFixed(1).padStart(6)}s  `;
  }

  private line(r: ResourceRecord, what: string): void {
    const host = (r.host ?? FLEET_WIDE).padEnd(16);
    const sign = (OP_SIGN[r.op] ?? "?").padEnd(2);
    this.opts.say?.(`${this.elapsed()}${host} ${sign} ${r.type} ${r.name}${what ? `  ${what}` : ""}`);
  }

  private isChange(op: string): boolean {
    return op !== "same" && op !== "read";
  }

  handle(e: EngineEvent): void {
    if (e.resourcePreEvent) {
      const m = e.resourcePreEvent.metadata;
      const r = this.record(m);
      this.started.set(m.urn, Date.now());
      if (this.isChange(m.op) && !this.opts.preview && !e.resourcePreEvent.planning) this.line(r, `${m.op}...`);
    } else if (e.resOutputsEvent) {
      const m = e.resOutputsEvent.metadata;
      if (m.type === "pulumi:pulumi:Stack" && m.new?.outputs) this.stackOutputs = m.new.outputs as Record<string, unknown>;
      const r = this.record(m);
      r.done = true;
      const t = this.started.get(m.urn);
      if (t !== undefined) r.ms = Date.now() - t;
      if (this.isChange(m.op) || this.opts.verbose) {
        const what = this.opts.preview ? `will ${m.op}` : `${m.op} done${r.ms !== undefined && r.ms >= 100 ? ` (${(r.ms / 1000).toFixed(1)}s)` : ""}`;
        this.line(r, what);
        for (const n of r.notes ?? []) this.opts.say?.(`${" ".repeat(this.elapsed().length + 20)}! ${n}`);
        if (this.opts.diff) for (const d of r.diff ?? []) this.opts.say?.(`${" ".repeat(this.elapsed().length + 20)}${(OP_SIGN[d.kind.replace(/-replace$/, "")] ?? "~").padEnd(2)} ${d.key}${d.kind.endsWith("replace") ? " (forces replacement)" : ""}`);
      }
    } else if (e.resOpFailedEvent) {
      const m = e.resOpFailedEvent.metadata;
      const r = this.record(m);
      r.failed = true;
      r.done = true;
      const t = this.started.get(m.urn);
      if (t !== undefined) r.ms = Date.now() - t;
      this.line(r, `${m.op} FAILED`);
    } else if (e.diagnosticEvent) {
      const d = e.diagnosticEvent;
      const message = rewriteCoreRead(rewritePendingWarning(redact(d.message).replace(/\u001b\[[0-9;]*m/g, "").replace(/<\{%[^%]*%\}>/g, "").trim()), d.urn);
      if (!message) return;
      const r = d.urn ? this.resources.get(d.urn) : undefined;
      const host = r?.host ?? (d.urn ? hostInName(urnName(d.urn), this.hosts) : undefined);
      this.diagnostics.push({ severity: d.severity, message, urn: d.urn, host });
      if (r && d.severity === "error") r.errors.push(message);
      if (d.severity === "error" || d.severity === "warning") {
        const where = r ? `${r.type} ${r.name}` : d.urn ? urnName(d.urn) : "";
        this.opts.say?.(`${this.elapsed()}${(host ?? FLEET_WIDE).padEnd(16)} ${d.severity}: ${where ? `${where}: ` : ""}${message.split("\n").join("\n    ")}`);
      } else if (this.opts.verbose || (d.severity === "info" && !d.ephemeral)) {
        this.opts.say?.(`${this.elapsed()}${(host ?? FLEET_WIDE).padEnd(16)} ${message}`);
      }
    } else if (e.summaryEvent) {
      this.changes = e.summaryEvent.resourceChanges;
    }
  }

  /** Counts per host (fleet-wide resources under "(fleet)"), in fleet order. */
  perHost(): HostResult[] {
    const by = new Map<string, HostResult>();
    const get = (h: string) => {
      let x = by.get(h);
      if (!x) by.set(h, (x = { host: h, ops: {}, failed: [], errors: [], ms: 0 }));
      return x;
    };
    for (const h of this.hosts) get(h);
    for (const r of this.resources.values()) {
      if (r.type === "pulumi:pulumi:Stack" || r.type.startsWith("pulumi:providers:")) continue;
      const x = get(r.host ?? FLEET_WIDE);
      x.ops[r.op] = (x.ops[r.op] ?? 0) + 1;
      if (r.failed) x.failed.push(`${r.type} ${r.name}`);
      x.errors.push(...r.errors);
      if (this.isChange(r.op)) x.ms += r.ms ?? 0;
    }
    for (const d of this.diagnostics) {
      if (d.severity === "error" && d.host && !d.urn) get(d.host).errors.push(d.message);
    }
    return [...by.values()];
  }
}

// ---------------------------------------------------------------------------
// --on: hosts by name, @tag or @role, with what they need.

export type SelectorHost = { name: string; roles: string[]; tags: string[] };

/** The selected hosts plus what they need deployed first: every host with tailscale joins through the coordinator. */
export function withDependencies(selected: string[], fleet: { coordinator: string; hosts: { name: string; joins: boolean }[] }): string[] {
  const out = new Set(selected);
  for (const name of selected) {
    const h = fleet.hosts.find((x) => x.name === name);
    if (h?.joins && fleet.coordinator) out.add(fleet.coordinator);
  }
  return [...out];
}

/**
 * URNs to target for hosts: their resources, the fleet-wide ones (users, the
 * mesh itself), every ancestor of those, and their providers.
 */
export function targetUrns(resources: Iterable<ResourceInfo>, hosts: string[]): string[] {
  const all = new Map([...resources].map((r) => [r.urn, r]));
  const out = new Set<string>();
  const add = (urn: string | undefined) => {
    for (let u = urn, i = 0; u && all.has(u) && !out.has(u) && i < 64; u = all.get(u)!.parent, i++) {
      out.add(u);
      const p = all.get(u)!.provider;
      if (p) out.add(p);
    }
  };
  for (const r of all.values()) {
    if (r.type.startsWith("pulumi:providers:")) continue;
    if (r.host === undefined || hosts.includes(r.host)) add(r.urn);
  }
  return [...out].sort();
}

// ---------------------------------------------------------------------------
// One operation.

export interface DeployOptions extends OpenOptions {
  verb: Verb;
  /** `--on` selectors. */
  on?: string[];
  /** Show which properties (files, units) change per resource. */
  diff?: boolean;
  expectNoChanges?: boolean;
  /** up: refresh first. */
  refresh?: boolean;
  /** refresh/destroy: only show what would happen. */
  previewOnly?: boolean;
  /** Progress lines. */
  say?: (line: string) => void;
  /** Every line the CLI prints, appended here. */
  logFile?: string;
  /** Print unchanged resources and info lines too. */
  verbose?: boolean;
  /** Asked before up/refresh/destroy with the preview's counts; false stops. Absent: go ahead. */
  confirm?: (plan: DeployResult) => Promise<boolean>;
  /** How long to wait for another run's lock on the stack, in seconds (default 600; 0 fails at once). */
  lockWaitSeconds?: number;
  /** up: reboot each selected host (`--on`, else every agent host) after its switch and check what comes back (provider/resources/reboot.ts). */
  rebootCheck?: boolean;
}

/** Why `rebootCheck` cannot go with these options, or null. */
export function rebootCheckProblem(o: Pick<DeployOptions, "verb" | "rebootCheck" | "expectNoChanges">): string | null {
  if (!o.rebootCheck) return null;
  if (o.verb !== "up") return `--reboot-check: only \`meshfleet up\` reboots hosts, not ${o.verb}`;
  if (o.expectNoChanges) return "--reboot-check with --expect-no-changes: the reboot is a change of its own (each selected host's Generation updates); drop one of them";
  return null;
}

/**
 * MESHFLEET_REBOOT_CHECK for the run, which HostAgent reads (the program runs in
 * this process): the hosts `--on` picked (not the coordinator they bring along), else `*`.
 */
export function rebootCheckValue(picked: string[] | undefined): string {
  return picked && picked.length > 0 ? picked.join(",") : "*";
}

/** Fleet facts `--on` needs, from the evaluated fleet. */
export async function fleetForSelection(hostsDir: string, stack: string): Promise<{ hosts: SelectorHost[]; coordinator: string; joins: Record<string, boolean> }> {
  const { evaluateFleet, formatDiagnostics, hasErrors } = await import("../../core/index.ts");
  const { REGISTRY } = await import("../../modules/index.ts");
  const { fleet, diagnostics } = await evaluateFleet(REGISTRY, hostsDir, stack);
  if (!fleet || hasErrors(diagnostics)) throw new MeshfleetError(`the fleet in ${hostsDir} has errors:\n${formatDiagnostics(diagnostics.filter((d) => d.severity === "error"))}`);
  const hosts = Object.values(fleet.hosts).map((h) => ({ name: h.name, roles: h.roles, tags: h.tailscale.tags }));
  const joins = Object.fromEntries(Object.values(fleet.hosts).map((h) => [h.name, h.tailscale.enable && h.name !== fleet.coordinator.host]));
  return { hosts, coordinator: fleet.coordinator.host, joins };
}

const SECRET_SIG = "4dabf18193072939515e22adb298388d";

/** Outputs as events carry them, with every secret (already masked by the engine) shown as "[secret]". */
export function maskSecrets(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(maskSecrets);
  if (v && typeof v === "object") {
    if (SECRET_SIG in (v as object)) return "[secret]";
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, maskSecrets(x)]));
  }
  return v;
}

/** Runs one verb against the stack and returns what happened per host. Throws only for problems before Pulumi runs. */
export async function runDeploy(o: DeployOptions): Promise<DeployResult> {
  const t0 = Date.now();
  const root = o.root ?? REPO_ROOT;
  // The program resolves relative paths (hosts/<stack>, dist/) against the working folder, as `pulumi up` at the root does.
  if (process.cwd() !== root) {
    try {
      process.chdir(root);
    } catch {
      /* a worker thread cannot chdir; the stack's config then needs absolute paths (the lab's has) */
    }
  }
  const hostsDir = stackHostsDir(o.stack, o.configFile, root);
  const hostNames = fleetHostNames(hostsDir);
  const rcProblem = rebootCheckProblem(o);
  if (rcProblem) throw new MeshfleetError(rcProblem);
  let selected: string[] | undefined;
  let picked: string[] | undefined;
  let selection: Awaited<ReturnType<typeof fleetForSelection>> | undefined;
  if (o.on && o.on.length > 0) {
    selection = await fleetForSelection(hostsDir, o.stack);
    picked = selectHosts(o.on, selection.hosts);
    selected = o.verb === "up" || o.verb === "preview"
      ? withDependencies(picked, { coordinator: selection.coordinator, hosts: selection.hosts.map((h) => ({ name: h.name, joins: selection!.joins[h.name] ?? false })) })
      : picked;
  }
  // With --config-file the project's stack file must stay as it is, but some CLI calls the
  // Automation API makes (`stack output --show-secrets` after up) write a salt into it.
  const projectFile = projectStackFile(o.stack, root);
  const before = o.configFile && existsSync(projectFile) ? readFileSync(projectFile, "utf8") : undefined;
  const rebootBefore = process.env.MESHFLEET_REBOOT_CHECK;
  if (o.rebootCheck) process.env.MESHFLEET_REBOOT_CHECK = rebootCheckValue(picked);
  else delete process.env.MESHFLEET_REBOOT_CHECK;
  try {
    return await deployOpened(o, root, t0, hostsDir, hostNames, selected);
  } finally {
    if (o.configFile) restoreFile(projectFile, before);
    if (rebootBefore === undefined) delete process.env.MESHFLEET_REBOOT_CHECK;
    else process.env.MESHFLEET_REBOOT_CHECK = rebootBefore;
  }
}

async function deployOpened(o: DeployOptions, root: string, t0: number, hostsDir: string, hostNames: string[], selected: string[] | undefined): Promise<DeployResult> {
  const { stack, env, prefetchProgram } = await openStack({ ...o, root });
  if (o.verb === "up" || o.verb === "preview") prefetchProgram();
  const backend = redactUrl(env.PULUMI_BACKEND_URL);
  const log = o.logFile;
  if (log) mkdirSync(dirname(log), { recursive: true });
  const onOutput = (s: string) => {
    if (log) appendFileSync(log, redact(s));
  };
  const common = { color: "never" as const, configFile: o.configFile ? resolve(o.configFile) : undefined, onOutput, onError: onOutput };

  // --on: learn the program's resources from a preview (up/preview) or the state (refresh/destroy), then target the selected hosts'.
  let target: string[] | undefined;
  if (selected) {
    const learn = new EventTracker(hostNames, { preview: true });
    if (o.verb === "up" || o.verb === "preview") {
      o.say?.(`--on ${selected.join(", ")}: previewing the whole program to find their resources`);
      try {
        await stack.preview({ ...common, onEvent: (e) => learn.handle(e) });
      } catch (e) {
        return failed(o, t0, backend, learn, e, selected);
      }
    } else {
      // `stack export` without --show-secrets (the Automation API's exportStack decrypts them).
      const ws = stack.workspace as LocalWorkspace;
      const exported = spawnSync(ws.pulumiCommand.command, ["stack", "export", "--stack", o.stack, "--non-interactive"], { cwd: ws.workDir, env, encoding: "utf8", maxBuffer: 256 << 20 });
      if (exported.status !== 0) throw new MeshfleetError(`pulumi stack export --stack ${o.stack}: ${cliError(exported.stderr)}`);
      const state = JSON.parse(exported.stdout) as { deployment?: unknown };
      const res = (state.deployment as { resources?: { urn: string; type: string; parent?: string; provider?: string; inputs?: Record<string, unknown> }[] })?.resources ?? [];
      for (const r of res) {
        learn.handle({ sequence: 0, timestamp: 0, resOutputsEvent: { metadata: { op: "same", urn: r.urn, type: r.type, provider: r.provider ?? "", new: { type: r.type, urn: r.urn, id: "", parent: r.parent ?? "", inputs: r.inputs ?? {}, outputs: {}, provider: r.provider ?? "" } } } });
      }
    }
    target = targetUrns(learn.resources.values(), selected);
    if (target.length === 0) {
      throw new MeshfleetError(`--on ${o.on!.join(" ")}: the program has no resources for ${selected.join(", ")}${o.verb === "refresh" || o.verb === "destroy" ? " in the stack's state" : ""}`);
    }
  }
  const targeting = target ? { target, targetDependents: o.verb === "destroy" } : {};

  // Ask first (a terminal without --yes): the preview's counts.
  if (o.confirm && o.verb !== "preview") {
    const plan = await runVerb({ ...o, verb: o.verb === "up" ? "preview" : o.verb, previewOnly: true, say: o.say }, stack, common, targeting, hostNames, t0, backend, selected);
    if (!plan.ok) return plan;
    if (!(await o.confirm(plan))) {
      return { ...plan, verb: o.verb, ok: false, errors: ["not confirmed: nothing was changed"] };
    }
  }
  return runVerb(o, stack, common, targeting, hostNames, t0, backend, selected);
}

type Common = { color: "never"; configFile?: string; onOutput: (s: string) => void; onError: (s: string) => void };

async function runVerb(
  o: DeployOptions,
  stack: Stack,
  common: Common,
  targeting: { target?: string[]; targetDependents?: boolean },
  hostNames: string[],
  t0: number,
  backend: string,
  selected: string[] | undefined,
): Promise<DeployResult> {
  const preview = o.verb === "preview" || !!o.previewOnly;
  const tracker = new EventTracker(hostNames, { say: o.say, diff: o.diff || preview, verbose: o.verbose, preview, t0 });
  // After up/refresh the Automation API runs three more CLI commands (stack output twice, stack
  // history) for outputs and a summary the engine's own events already carried: about 2 s of a
  // 4 s no-op. This stack's results come from the events instead.
  const quick = stack as unknown as { outputs: () => Promise<unknown>; info: () => Promise<unknown> };
  quick.outputs = async () => ({});
  quick.info = async () => undefined;
  const onEvent = (e: EngineEvent) => tracker.handle(e);
  const base = { ...common, ...targeting, onEvent };
  try {
    let outputs: Record<string, unknown> = {};
    let changes: Record<string, number> | undefined;
    switch (o.verb) {
      case "preview": {
        const r = await stack.preview({ ...base, diff: o.diff, expectNoChanges: o.expectNoChanges, refresh: o.refresh });
        changes = r.changeSummary as Record<string, number>;
        break;
      }
      case "up": {
        if (o.previewOnly) {
          const r = await stack.preview({ ...base, expectNoChanges: o.expectNoChanges, refresh: o.refresh });
          changes = r.changeSummary as Record<string, number>;
        } else {
          await stack.up({ ...base, diff: o.diff, expectNoChanges: o.expectNoChanges, refresh: o.refresh });
          changes = tracker.changes as Record<string, number>;
          outputs = maskSecrets(tracker.stackOutputs ?? {}) as Record<string, unknown>;
        }
        break;
      }
      case "refresh": {
        if (o.previewOnly) {
          const r = await stack.previewRefresh({ ...base, expectNoChanges: o.expectNoChanges });
          changes = r.changeSummary as Record<string, number>;
        } else {
          // A run killed mid-create leaves a pending create, which a refresh without a terminal keeps; meshfleet's
          // resources adopt what exists, so dropping it and creating again on the next up is safe.
          await stack.refresh({ ...base, expectNoChanges: o.expectNoChanges, clearPendingCreates: true });
          changes = tracker.changes as Record<string, number>;
          outputs = maskSecrets(tracker.stackOutputs ?? {}) as Record<string, unknown>;
        }
        break;
      }
      case "destroy": {
        if (o.previewOnly) {
          const r = await stack.previewDestroy(base);
          changes = r.changeSummary as Record<string, number>;
        } else {
          await stack.destroy(base);
          changes = tracker.changes as Record<string, number>;
        }
        break;
      }
    }
    const resources = [...tracker.resources.values()];
    return {
      verb: o.verb,
      stack: o.stack,
      ok: true,
      changes: (changes ?? tracker.changes ?? {}) as Record<string, number>,
      hosts: tracker.perHost(),
      resources,
      outputs,
      targets: targeting.target,
      selectedHosts: selected,
      errors: [],
      warnings: tracker.diagnostics.filter((d) => d.severity === "warning").map((d) => d.message),
      ms: Date.now() - t0,
      backend,
    };
  } catch (e) {
    // A stack locked by another run: wait for it (or clear a dead run's lock in refresh), else say who holds it.
    const ws = stack.workspace as LocalWorkspace;
    const lock = await onLockError(o, e, {
      seconds: o.lockWaitSeconds ?? 600, stack: o.stack, verb: o.verb, say: o.say,
      cancel: () => stack.cancel(),
      pending: () => exportPending(ws.pulumiCommand.command, ws.workDir, ws.envVars, o.stack),
    });
    if (lock === "retry") return runVerb(o, stack, common, targeting, hostNames, t0, backend, selected);
    return failed(o, t0, backend, tracker, lock ?? e, selected, targeting.target);
  }
}

function failed(o: DeployOptions, t0: number, backend: string, tracker: EventTracker, e: unknown, selected?: string[], target?: string[]): DeployResult {
  const errs = tracker.diagnostics.filter((d) => d.severity === "error").map((d) => (d.host ? `${d.host}: ${d.message}` : d.message));
  return {
    verb: o.verb,
    stack: o.stack,
    ok: false,
    changes: (tracker.changes ?? {}) as Record<string, number>,
    hosts: tracker.perHost(),
    resources: [...tracker.resources.values()],
    outputs: {},
    targets: target,
    selectedHosts: selected,
    errors: errs.length > 0 ? [...new Set(errs)] : [cliError(e)],
    warnings: tracker.diagnostics.filter((d) => d.severity === "warning").map((d) => d.message),
    ms: Date.now() - t0,
    backend,
  };
}

// ---------------------------------------------------------------------------
// The summary people read.

const fmtOps = (ops: Record<string, number>) => {
  const order = ["create", "update", "replace", "delete", "refresh", "read", "same"];
  const names: Record<string, string> = { create: "created", update: "updated", replace: "replaced", delete: "deleted", same: "unchanged", read: "read", refresh: "refreshed" };
  const keys = Object.keys(ops).filter((k) => ops[k]! > 0).sort((a, b) => (order.indexOf(a) + 99) % 99 - (order.indexOf(b) + 99) % 99);
  return keys.map((k) => `${ops[k]} ${names[k] ?? k}`).join(", ") || "nothing";
};

const planOps = (ops: Record<string, number>) => fmtOps(ops).replace(/\bcreated\b/, "to create").replace(/\bupdated\b/, "to update").replace(/\breplaced\b/, "to replace").replace(/\bdeleted\b/, "to delete");

/** The end-of-run summary: one line overall, one per host, then outputs and errors. */
export function summaryLines(r: DeployResult): string[] {
  const preview = r.verb === "preview";
  const total = Object.values(r.changes).reduce((a, b) => a + b, 0);
  const lines = [
    `meshfleet ${r.verb} ${r.stack}: ${r.ok ? (preview ? "plan" : "done") : "FAILED"} in ${(r.ms / 1000).toFixed(1)}s, ${total} resources: ${preview ? planOps(r.changes) : fmtOps(r.changes)}`,
  ];
  if (r.selectedHosts) lines.push(`  --on: ${r.selectedHosts.join(", ")} (${r.targets?.length ?? 0} resources targeted; other hosts left as they are)`);
  const width = Math.max(8, ...r.hosts.map((h) => h.host.length));
  for (const h of r.hosts) {
    const untargeted = r.selectedHosts && !r.selectedHosts.includes(h.host) && h.host !== FLEET_WIDE;
    const counts = untargeted
      ? `not targeted (${Object.values(h.ops).reduce((a, b) => a + b, 0)} resources left as they are)`
      : Object.keys(h.ops).length === 0 ? "no resources" : preview ? planOps(h.ops) : fmtOps(h.ops);
    const state = h.failed.length > 0 || h.errors.length > 0 ? "FAILED " : "";
    lines.push(`  ${h.host.padEnd(width)}  ${state}${counts}${h.ms >= 100 && !preview ? ` (${(h.ms / 1000).toFixed(1)}s)` : ""}`);
  }
  for (const [k, v] of Object.entries(r.outputs)) {
    if (typeof v === "string" && !v.includes("\n")) lines.push(`  output ${k}: ${v}`);
    else lines.push(`  output ${k}: ${JSON.stringify(v).slice(0, 200)}`);
  }
  for (const e of r.errors) lines.push(`  error: ${e}`);
  return lines;
}
