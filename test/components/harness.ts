/**
 * A Pulumi mock engine that records what a program registers: every resource
 * with its type, name, parent, dependencies, options and its inputs exactly
 * as serialized for the engine (secrets still wrapped), and every component's
 * registered outputs. The headscale CLI and the agent are simulated by
 * `respond` so that outputs (user ids, keys, node lists) flow like for real.
 */
import * as pulumi from "@pulumi/pulumi";

export const SIG = "4dabf18193072939515e22adb298388d";
export const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export interface Registered {
  urn: string;
  type: string;
  name: string;
  custom: boolean;
  parent: string;
  dependencies: string[];
  propertyDependencies: Record<string, string[]>;
  additionalSecretOutputs: string[];
  replaceOnChanges: string[];
  ignoreChanges: string[];
  deleteBeforeReplace: boolean;
  provider: string;
  /** Inputs as sent to the engine: secrets are `{[SIG]: SECRET_SIG, value}`. */
  raw: Record<string, unknown>;
  /** Inputs with secrets unwrapped (what the provider would receive). */
  inputs: Record<string, any>;
  /** State the mock returned (outputs of a custom resource). */
  state: Record<string, any>;
  /** For components: what registerOutputs sent (raw, secrets wrapped). */
  outputs?: Record<string, unknown>;
}

/** What a simulated remote command prints, by its create script. */
export type Responder = (r: { type: string; name: string; inputs: Record<string, any> }) => Record<string, unknown> | undefined;

export function unwrap(v: unknown): any {
  if (Array.isArray(v)) return v.map(unwrap);
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (o[SIG] === SECRET_SIG) return unwrap(o.value);
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, unwrap(x)]));
  }
  return v;
}

export class Recorder {
  readonly resources: Registered[] = [];
  byName(name: string): Registered {
    const r = this.resources.find((x) => x.name === name);
    if (!r) throw new Error(`no resource named ${name}; have: ${this.resources.map((x) => x.name).join(", ")}`);
    return r;
  }
  byUrn(urn: string): Registered | undefined {
    return this.resources.find((x) => x.urn === urn);
  }
  ofType(type: string): Registered[] {
    return this.resources.filter((x) => x.type === type);
  }
  /** Names of the resources `name` depends on (options and inputs). */
  dependsOn(name: string): string[] {
    const r = this.byName(name);
    const urns = new Set([...r.dependencies, ...Object.values(r.propertyDependencies).flat()]);
    return [...urns].map((u) => this.byUrn(u)?.name ?? u).sort();
  }
  /** Every resource that transitively comes before `name`, parents' dependencies included. */
  before(name: string): Set<string> {
    const seen = new Set<string>();
    const walk = (n: string) => {
      const r = this.byName(n);
      const urns = [...r.dependencies, ...Object.values(r.propertyDependencies).flat()];
      for (const u of urns) {
        const d = this.byUrn(u);
        if (!d || seen.has(d.name)) continue;
        seen.add(d.name);
        walk(d.name);
        // Depending on a component means depending on all its children.
        for (const c of this.resources.filter((x) => isUnder(this, x, d))) if (!seen.has(c.name)) { seen.add(c.name); walk(c.name); }
      }
      const parent = this.byUrn(r.parent);
      if (parent) walk(parent.name);
    };
    walk(name);
    return seen;
  }
  parentName(name: string): string | undefined {
    return this.byUrn(this.byName(name).parent)?.name;
  }
}

function isUnder(rec: Recorder, r: Registered, ancestor: Registered): boolean {
  let p = rec.byUrn(r.parent);
  while (p) {
    if (p.urn === ancestor.urn) return true;
    p = rec.byUrn(p.parent);
  }
  return false;
}

let idCounter = 0;

/** Install mocks for one program run; returns the recorder. */
export async function installMocks(respond: Responder, opts: { stack?: string; preview?: boolean; config?: Record<string, string>; secretKeys?: string[] } = {}): Promise<Recorder> {
  const rec = new Recorder();
  const pending = new Map<string, Partial<Registered>>();
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const extra = respond({ type: args.type, name: args.name, inputs: unwrap(args.inputs) }) ?? {};
        const state = { ...args.inputs, ...extra };
        pending.set(`${args.type}::${args.name}`, { state: unwrap(state) });
        return { id: args.custom ? `${args.name}-id-${++idCounter}` : undefined, state };
      },
      call(args) {
        return args.inputs;
      },
    },
    "meshfleet",
    opts.stack ?? "home",
    opts.preview ?? false,
  );
  if (opts.config) pulumi.runtime.setAllConfig(opts.config, opts.secretKeys ?? []);
  const monitor = pulumi.runtime.getMonitor() as any;
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req: any, cb: any) =>
    register(req, (err: any, resp: any) => {
      if (!err) {
        const type = req.getType();
        const name = req.getName();
        const propDeps: Record<string, string[]> = {};
        req.getPropertydependenciesMap().forEach((v: any, k: string) => (propDeps[k] = v.getUrnsList()));
        const raw = req.getObject()?.toJavaScript() ?? {};
        rec.resources.push({
          urn: resp.getUrn(),
          type,
          name,
          custom: req.getCustom(),
          parent: req.getParent(),
          dependencies: req.getDependenciesList(),
          propertyDependencies: propDeps,
          additionalSecretOutputs: req.getAdditionalsecretoutputsList(),
          replaceOnChanges: req.getReplaceonchangesList(),
          ignoreChanges: req.getIgnorechangesList(),
          deleteBeforeReplace: req.getDeletebeforereplace(),
          provider: req.getProvider(),
          raw,
          inputs: unwrap(raw),
          state: pending.get(`${type}::${name}`)?.state ?? {},
        });
      }
      cb(err, resp);
    });
  const registerOutputs = monitor.registerResourceOutputs.bind(monitor);
  monitor.registerResourceOutputs = (req: any, cb: any) => {
    const r = rec.byUrn(req.getUrn());
    if (r) r.outputs = req.getOutputs()?.toJavaScript() ?? {};
    return registerOutputs(req, cb);
  };
  return rec;
}

/** The value of an Output (rejects when the Output failed). */
export function valueOf<T>(o: pulumi.Output<T>): Promise<T> {
  return (o as any).promise() as Promise<T>;
}

/** Is this Output a secret? */
export function isSecret(o: pulumi.Output<unknown>): Promise<boolean> {
  return (o as any).isSecret as Promise<boolean>;
}

export async function settle(): Promise<void> {
  await (pulumi.runtime as any).waitForRPCs();
}

/** Paths of strings inside `v` that contain a needle in clear (outside any secret wrapper). */
export function clearSecrets(v: unknown, needles: (string | RegExp)[], path = ""): string[] {
  if (typeof v === "string") return needles.some((n) => (typeof n === "string" ? v.includes(n) : n.test(v))) ? [path || "(root)"] : [];
  if (Array.isArray(v)) return v.flatMap((x, i) => clearSecrets(x, needles, `${path}[${i}]`));
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (o[SIG] === SECRET_SIG) return [];
    return Object.entries(o).flatMap(([k, x]) => clearSecrets(x, needles, path ? `${path}.${k}` : k));
  }
  return [];
}
