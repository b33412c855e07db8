/**
 * meshfleet plan: what a change does to the network. Evaluates the fleet at
 * a base git revision (read from git objects, cli/git-tree.ts, so the
 * working tree is never touched) and in the working tree, and prints the difference: hosts,
 * roles, routes, exit nodes, who can reach what (and the rule responsible),
 * public ports, DNS records, versions; then warnings and, per host whose
 * generation (bundle) changes, the files, restarts, tailscale settings and
 * firewall lines. Markdown by default (a PR comment), JSON with --json (the
 * same, as data). Exit 0 when both sides evaluate, 1 otherwise.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { evaluateFleet, formatDiagnostics, hasErrors, MeshfleetError } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { diffNetwork, emptyModel, networkModel, renderDiffJson, renderDiffMarkdown, type NetworkModel } from "../../core/netdiff/index.ts";
import type { Diagnostic, FleetSystem, HostSystem } from "../../core/types.ts";
import { renderHost, secretRefs } from "../../core/bundle.ts";
import { desiredFiles, type Bundle } from "../../contract/index.ts";
import { nftRuleset } from "../../contract/nftables.ts";
import { allowAllWarnings } from "../../core/policy/fail-closed.ts";
import { unitDependencies } from "../../agent/desired.ts";
import { fleetFlags, fleetLine, flagHelp, parseArgs, resolveFleet, UsageError, type Flag } from "../args.ts";
import type { Command } from "../command.ts";
import { readNodesFile, type LiveNode } from "../../core/policy/index.ts";
import { moveRefusalReason, moveSteps, MOVED_BY_HAND } from "../../provider/placement.ts";
import { placementFacts } from "../../components/placement-facts.ts";
import { tuneForShortRun } from "../short-run.ts";
import { evaluateOnWorker, MIN_HOSTS } from "../parallel-eval.ts";
import type { EvalResult } from "../../core/eval.ts";
import { mountFileSource } from "../../core/load.ts";
import { archiveMayRewrite, attributePaths, GitTreeSource, listTree, readBlobs, type GitEntry } from "../git-tree.ts";

const flags: Flag[] = [
  { name: "base", value: true, help: "git revision to compare with (e.g. origin/main, HEAD~1)" },
  ...fleetFlags,
  { name: "nodes", value: true, help: "the coordinator's nodes (headscale nodes list --output json saved to a file): reachability on their real addresses, the tailnet's other devices included" },
];

export const command: Command = {
  name: "plan",
  flags,
  summary: "show what a change does to the network (hosts, routes, reachability, ports, DNS, versions)",
  usage: `usage: meshfleet plan --base <git ref> [--stack S | --hosts-dir DIR] [--nodes FILE] [--json]\n\nEvaluates the fleet at <git ref> and in the working tree and prints the\ndifference as Markdown (for a pull-request comment) or JSON: the network\n(hosts, routes, reachability, public ports, DNS, versions), warnings (a\ndowngrade, a client losing the routes it used, a host losing reachability\nor starting to drop traffic), and a section per host whose generation\nchanges: files changed, units and containers restarted, tailscale settings,\nfirewall lines added and removed. Secrets are not read: a changed secret\nvalue does not show. With --nodes, both sides are evaluated on the\ncoordinator's node addresses (and its other nodes) instead of stand-ins.\nA fleet of 2,000 host files or more, without sites, is evaluated on two\nthreads (the working tree beside the base) while a core is free;\nMESHFLEET_THREADS=1 keeps plan on one.\n\n${flagHelp(flags)}`,
  async run(argv) {
    const { opts } = parseArgs(argv, flags, { positionals: [] });
    if (typeof opts.base !== "string") throw new UsageError("plan needs --base <git ref>, e.g. --base origin/main");
    const { dir, stack } = resolveFleet(opts);
    // Evaluates two fleets and exits, as check does: V8's optimizing tier costs more than it saves (cli/short-run.ts).
    tuneForShortRun();
    const live = typeof opts.nodes === "string" ? readNodesFile(opts.nodes) : undefined;
    if (live && hasErrors(live.diagnostics)) {
      console.error(formatDiagnostics(live.diagnostics));
      console.error(`cannot plan: --nodes ${opts.nodes} is not the coordinator's nodes list`);
      return 1;
    }
    const { head, base } = await bothSides(opts.base, dir, stack, live?.nodes);
    const problems = [...base.diagnostics.map((d) => ({ ...d, file: `${opts.base}:${d.file}` })), ...head.diagnostics];
    if (hasErrors(problems)) {
      console.error(formatDiagnostics(problems.filter((d) => d.severity === "error")));
      console.error(`cannot plan: the fleet does not evaluate${hasErrors(base.diagnostics) ? ` at ${opts.base}` : ""}; run meshfleet check`);
      return 1;
    }
    const diff = diffNetwork(base.model!, head.model!);
    const hosts = withStacks(diffGenerations(base.fleet ?? NO_HOSTS, head.fleet!), head.fleet!, base.fleet);
    const warnings = planWarnings(base.fleet ?? NO_HOSTS, head.fleet!, diff);
    if (opts.json) {
      process.stdout.write(JSON.stringify({ ...JSON.parse(renderDiffJson(diff)), warnings, generations: hosts, empty: diff.empty && !hosts.length && !warnings.length }, null, 2) + "\n");
      return 0;
    }
    const title = `meshfleet plan: ${fleetLine({ dir, stack })}${sitesLine(head.fleet!)}, ${opts.base} → working tree`;
    let md = renderDiffMarkdown(diff, title);
    if (diff.empty && (hosts.length || warnings.length)) md = md.replace("No change to the network.", "The network (hosts, routes, reachability, ports, DNS, versions) is the same; the hosts below change.");
    process.stdout.write([md.trimEnd(), renderWarnings(warnings), renderGenerations(hosts)].filter(Boolean).join("\n\n") + "\n");
    return 0;
  },
};

type Side = { model?: NetworkModel; fleet?: FleetSystem; diagnostics: Diagnostic[] };

async function evaluate(dir: string, stack: string, live?: LiveNode[]): Promise<Side> {
  return sideOf(await evaluateFleet(REGISTRY, dir, stack), live);
}

function sideOf(r: EvalResult, live?: LiveNode[]): Side {
  if (!r.fleet || hasErrors(r.diagnostics)) return { diagnostics: r.diagnostics };
  return { model: networkModel(r.fleet, live), fleet: r.fleet, diagnostics: r.diagnostics };
}

/** Where each plan evaluated its working tree, in this process, and the least host files for the worker (what the tests hold it to). */
export const headReads = { worker: 0, here: 0, reused: 0, minHosts: MIN_HOSTS };

/**
 * Both sides. A large fleet's working tree is evaluated on a worker thread
 * while this one reads and evaluates the base (cli/parallel-eval.ts
 * `evaluateOnWorker`: when a core is free, as render's threads); else the
 * working tree first, then the base. Either way the same result: the worker
 * runs `evaluateFleet` and sends it back, but for the hosts whose HostSystem
 * is the base's (all but their file and warnings): those are the base's
 * objects here, so neither thread copies them, and the per-host comparison
 * finds them the same at once.
 */
async function bothSides(ref: string, dir: string, stack: string, live?: LiveNode[]): Promise<{ head: Side; base: Side }> {
  const beside = await evaluateOnWorker(dir, stack, { minHosts: headReads.minHosts, withBase: true });
  const t0 = performance.now();
  const say = (what: string) => process.env.MESHFLEET_SHARD_TIMES && console.error(`[plan] ${what} (${(performance.now() - t0).toFixed(0)} ms)`);
  if (typeof beside === "string") {
    say(`working tree on this thread: ${beside}`);
    headReads.here++;
    const head = await evaluate(dir, stack, live);
    // A fleet with sites is read from its sibling folders: the base needs them too (core/sites.ts).
    return { head, base: await atRevision(ref, dir, stack, live, head.fleet?.sites !== undefined) };
  }
  try {
    let base = await atRevision(ref, dir, stack, live);
    say("base evaluated");
    // The worker sends only the hosts whose HostSystem differs from the base's; the others are the base's own objects.
    beside.base(base.fleet?.hosts);
    say("base's digests sent; waiting for the worker's working tree");
    const r = await beside.result;
    if (r) {
      say(`working tree from the worker (${beside.reused} hosts the same as the base's)`);
      headReads.worker++;
      headReads.reused += beside.reused;
      return { head: sideOf(r, live), base };
    }
    // The worker failed (a fleet with sites is declined before it starts): the working tree here.
    say(`working tree on this thread: ${beside.why}`);
    headReads.here++;
    const head = await evaluate(dir, stack, live);
    if (head.fleet?.sites !== undefined) base = await atRevision(ref, dir, stack, live, true);
    return { head, base };
  } finally {
    beside.stop();
  }
}

// ---------------------------------------------------------------------------
// Per host: what its next generation changes on it.

/** What the per-host comparison reads of a fleet (a base without the fleet folder has no hosts). */
type Fleetish = Pick<FleetSystem, "hosts"> & Partial<Pick<FleetSystem, "coordinator">>;
const NO_HOSTS: Fleetish = { hosts: {} };

export interface HostGeneration {
  host: string;
  /** new: the host gets its first generation; removed: it leaves the fleet (the agent keeps what is there). */
  change: "new" | "changed" | "removed";
  files: { added: string[]; removed: string[]; changed: string[] };
  units: { restarted: { unit: string; because: string[] }[]; started: string[]; stopped: string[] };
  /** Docker containers (runtime: docker): replaced when their spec changes, restarted when a file uploaded into them changes. */
  containers: { restarted: { container: string; because: string[] }[]; started: string[]; stopped: string[] };
  firewall: { added: string[]; removed: string[] };
  tailscale: { setting: string; before: unknown; after: unknown }[];
  /** A fleet with sites: the stack that deploys the host (the core's, or its site's); a change shows from every stack, only this one applies it. */
  stack?: string;
}

/** The stack that deploys each host of a fleet with sites (the core's stack, or the site's folder name); undefined without sites. */
export function stackOfHost(f: Pick<FleetSystem, "sites">, host: string): string | undefined {
  const l = f.sites;
  if (!l) return undefined;
  if (l.core.hosts.includes(host)) return l.core.stack || "the core";
  return Object.entries(l.sites).find(([, s]) => s.hosts.includes(host))?.[0];
}

function withStacks(hs: HostGeneration[], head: Pick<FleetSystem, "sites">, base?: Pick<FleetSystem, "sites">): HostGeneration[] {
  return hs.map((g) => {
    const stack = stackOfHost(head, g.host) ?? (base ? stackOfHost(base, g.host) : undefined);
    return stack ? { ...g, stack } : g;
  });
}

/** ", one of the stacks of core (core, home-site, office)" for a fleet with sites. */
function sitesLine(f: Pick<FleetSystem, "sites">): string {
  const l = f.sites;
  if (!l) return "";
  return `, the whole fleet of stacks ${[l.core.stack || "core", ...Object.keys(l.sites)].join(", ")} (this stack deploys ${l.local.join(", ") || "no host"})`;
}

export interface PlanWarning {
  kind: "downgrade" | "routes-lost" | "reachability-lost" | "firewall-closes" | "allow-all" | "coordinator-moves";
  host?: string;
  message: string;
}

/** Secrets are not read by plan: each stands for itself, so only a change of which secret a file holds shows. */
function bundleOf(h: HostSystem): Bundle {
  return renderHost(h, Object.fromEntries(secretRefs(h).map((r) => [r, `(secret ${r})`])));
}

const lines = (text: string | null) => (text ?? "").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));

function lineDiff(a: string[], b: string[]): { added: string[]; removed: string[] } {
  const count = (xs: string[]) => xs.reduce((m, x) => m.set(x, (m.get(x) ?? 0) + 1), new Map<string, number>());
  const ca = count(a), cb = count(b);
  const added = [...cb].flatMap(([l, n]) => Array(Math.max(0, n - (ca.get(l) ?? 0))).fill(l));
  const removed = [...ca].flatMap(([l, n]) => Array(Math.max(0, n - (cb.get(l) ?? 0))).fill(l));
  return { added, removed };
}

/**
 * The same host on both sides: every field of its HostSystem equal but
 * `file` (the base names it in a temporary folder) and `warnings` (which
 * name that file), so the same bundle and containers, and no entry. The
 * render is a pure function of the rest (core/render.ts reads `file` only in
 * its error messages); skipping it for the hosts a change leaves alone saves
 * two renders a host, most of plan's per-host work at 10,000 hosts
 * (bench/plan-scale/README.md). Plain data only: anything else (a Map, a
 * class instance, a function) is not called equal, and is rendered.
 * So a host whose bundle breaks the bundle contract (renderHost throws) and
 * is the same on both sides no longer fails plan; check and render still do.
 */
export function sameHost(a: HostSystem | undefined, b: HostSystem | undefined): boolean {
  if (!a || !b) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    const k = ka[i] as keyof HostSystem;
    if (k !== kb[i]) return false;
    if (k !== "file" && k !== "warnings" && !samePlain(a[k], b[k])) return false;
  }
  return true;
}

/** Equal plain data: primitives, arrays, and objects of Object's prototype with the same keys in the same order. */
function samePlain(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!samePlain(a[i], b[i])) return false;
    return true;
  }
  if (Object.getPrototypeOf(a) !== Object.prototype || Object.getPrototypeOf(b) !== Object.prototype) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] !== kb[i]) return false;
    if (!samePlain((a as Record<string, unknown>)[ka[i]], (b as Record<string, unknown>)[kb[i]])) return false;
  }
  return true;
}

/** One entry per agent host whose bundle (its generation) differs between the two fleets. */
export function diffGenerations(base: Fleetish, head: Fleetish): HostGeneration[] {
  const out: HostGeneration[] = [];
  const names = [...new Set([...Object.keys(base.hosts), ...Object.keys(head.hosts)])].sort();
  for (const name of names) {
    if (sameHost(base.hosts[name], head.hosts[name])) continue;
    const b = base.hosts[name]?.agent ? bundleOf(base.hosts[name]) : undefined;
    const h = head.hosts[name]?.agent ? bundleOf(head.hosts[name]) : undefined;
    if (!b && !h) continue;
    const bc = new Map((base.hosts[name]?.agent ? base.hosts[name].containers : []).map((c) => [c.name, c]));
    const hc = head.hosts[name]?.agent ? head.hosts[name].containers : [];
    if (b && h && b.hash === h.hash && JSON.stringify([...bc.values()]) === JSON.stringify(hc)) continue;
    const bf = new Map((b ? desiredFiles(b) : []).map((f) => [f.path, f]));
    const hf = new Map((h ? desiredFiles(h) : []).map((f) => [f.path, f]));
    const files = {
      added: [...hf.keys()].filter((p) => !bf.has(p)).sort(),
      removed: [...bf.keys()].filter((p) => !hf.has(p)).sort(),
      changed: [...hf.keys()].filter((p) => bf.has(p) && bf.get(p)!.sha256 !== hf.get(p)!.sha256).sort(),
    };
    const changed = new Set([...files.changed, ...files.added]);
    const bu = new Map((b?.units ?? []).map((u) => [u.name, u]));
    const units: HostGeneration["units"] = { restarted: [], started: [], stopped: [] };
    for (const u of h?.units ?? []) {
      const old = bu.get(u.name);
      if (!old) { units.started.push(u.name); continue; }
      const because = [
        ...(old.content !== u.content ? [`its unit file`] : []),
        ...unitDependencies(u, [...hf.keys()]).filter((p) => changed.has(p)),
      ];
      if (because.length) units.restarted.push({ unit: u.name, because });
    }
    units.stopped = (b?.units ?? []).map((u) => u.name).filter((n) => !h?.units.some((u) => u.name === n));
    const containers: HostGeneration["containers"] = { restarted: [], started: [], stopped: [] };
    for (const c of hc) {
      const old = bc.get(c.name);
      if (!old) { containers.started.push(c.name); continue; }
      const spec = (["image", "ports", "volumes", "env", "command", "restart", "healthcheck"] as const).filter((k) => JSON.stringify(old[k]) !== JSON.stringify(c[k]));
      const because = [...spec.map((k) => `its ${k}`), ...c.uploads.map((u) => u.source).filter((p) => changed.has(p))];
      if (because.length) containers.restarted.push({ container: c.name, because });
    }
    containers.stopped = [...bc.keys()].filter((n) => !hc.some((c) => c.name === n));
    const firewall = lineDiff(lines(nftRuleset(b?.firewall ?? null)), lines(nftRuleset(h?.firewall ?? null)));
    const tailscale: HostGeneration["tailscale"] = [];
    const bt = (b?.tailscale ?? {}) as Record<string, unknown>, ht = (h?.tailscale ?? {}) as Record<string, unknown>;
    for (const k of [...new Set([...Object.keys(bt), ...Object.keys(ht)])].sort())
      if (JSON.stringify(bt[k]) !== JSON.stringify(ht[k])) tailscale.push({ setting: k, before: bt[k], after: ht[k] });
    out.push({ host: name, change: !b ? "new" : !h ? "removed" : "changed", files, units, containers, firewall, tailscale });
  }
  return out;
}

/** "0.29.2" → [0, 29, 2]; undefined for what is not a version. */
function version(s: string): number[] | undefined {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(s.split(":").pop() ?? s);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}
const older = (a: number[], b: number[]) => { for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] < b[i]; return false; };

/** The changes a person must not miss: downgrades, a client losing the routes it used, a host losing reachability. */
export function planWarnings(base: Fleetish, head: Fleetish, diff: ReturnType<typeof diffNetwork>): PlanWarning[] {
  const out: PlanWarning[] = [];
  const from = base.coordinator?.host, to = head.coordinator?.host;
  if (from && to && from !== to) {
    // What the deploy will do: refuse a move it cannot carry (the provider's own test, on the same facts), else its steps.
    const was = Object.hasOwn(base.hosts, from) ? base.hosts[from] : undefined;
    const next = Object.hasOwn(head.hosts, to) ? head.hosts[to] : undefined;
    const facts = next && placementFacts(next);
    const refusal = facts && moveRefusalReason({ from, to, databaseType: facts.databaseType, postgresHost: facts.postgresHost, adopted: facts.adopted || (was ? placementFacts(was).adopted : false) });
    if (refusal) {
      out.push({ kind: "coordinator-moves", host: to, message: `the coordinator moves from ${from} to ${to}, which \`meshfleet up\` will refuse (unless ${MOVED_BY_HAND} is set): ${refusal}` });
    } else {
      const steps = moveSteps(from, to, head.coordinator!.serverUrl, facts?.databaseType === "postgres" ? facts.postgresHost : undefined);
      out.push({ kind: "coordinator-moves", host: to, message: `the coordinator moves from ${from} to ${to}: ${steps.map((x, i) => `(${i + 1}) ${x}`).join("; ")}` });
    }
  }
  for (const v of diff.versions) {
    const a = version(v.before), b = version(v.after);
    if (!a || !b || !older(b, a)) continue;
    // The headscale container follows coordinator.headscaleVersion: one warning says it.
    if (v.key !== "headscale" && /headscale/.test(v.after) && diff.versions.some((x) => x.key === "headscale")) continue;
    const why = /headscale/.test(`${v.key} ${v.after}`) ? " (headscale migrates its database forwards only: restore the backup taken before the upgrade, or keep " + v.before + ")" : "";
    out.push({ kind: "downgrade", message: `${v.key} goes back from ${v.before} to ${v.after}: a downgrade${why}` });
  }
  const routesOf = (f: Fleetish, except: string) =>
    Object.values(f.hosts).filter((x) => x.name !== except && x.tailscale.enable).flatMap((x) => x.tailscale.advertiseRoutes.map((r) => `${r} (via ${x.name})`));
  for (const [name, h] of Object.entries(head.hosts)) {
    // Own keys only, as every lookup by host name should be (the loader refuses a host named constructor).
    const was = Object.hasOwn(base.hosts, name) ? base.hosts[name] : undefined;
    if (!was) continue;
    // Only a host that stops accepting routes can lose them: the routes are listed for it alone (listing
    // them for every host that accepts routes was quadratic: 10,000 hosts, 100 million host visits).
    if (h.tailscale.enable && h.tailscale.acceptRoutes) continue;
    const lost = was.tailscale.enable && was.tailscale.acceptRoutes ? routesOf(base, name) : [];
    if (lost.length)
      out.push({ kind: "routes-lost", host: name, message: `${name} stops using the subnet routes it used: ${lost.join(", ")} (${h.tailscale.enable ? "tailscale.acceptRoutes: false" : "tailscale.enable: false"})` });
  }
  // A host whose firewall starts dropping what no rule accepts (its input policy becomes drop: the
  // firewall turned on, firewall.defaultPolicy set, a role meshfleet closes added, or a new host that
  // joins closed), and ports a host starts to drop from all sources but some.
  for (const c of diff.firewall.policies)
    if (c.after === "drop") out.push({ kind: "firewall-closes", host: c.host, message: `${c.message} (and what the tailnet policy allows)` });
  for (const p of diff.firewall.limited.added)
    out.push({ kind: "firewall-closes", host: p.host, message: `${p.host}: ${p.port} is now dropped outside the tailnet${p.detail.startsWith("only from ") ? ` except ${p.detail.slice("only ".length)}` : ` ${p.detail}`}` });
  const lostBy = new Map<string, string[]>();
  for (const r of diff.reach.lost) {
    const srcs = lostBy.get(r.dst);
    if (srcs) srcs.push(r.src);
    else lostBy.set(r.dst, [r.src]);
  }
  for (const [dst, srcs] of lostBy)
    out.push({ kind: "reachability-lost", host: dst.split(":")[0], message: `${dst} can no longer be reached from ${[...new Set(srcs)].slice(0, 8).join(", ")}${new Set(srcs).size > 8 ? ` and ${new Set(srcs).size - 8} more` : ""}` });
  for (const p of diff.publicPorts.closed)
    out.push({ kind: "reachability-lost", host: p.host, message: `${p.host}: ${p.port} is no longer open to the internet (${p.detail})` });
  out.push(...allowAllWarnings(base, head)); // core/policy/fail-closed.ts
  return out;
}

function renderWarnings(ws: PlanWarning[]): string {
  if (!ws.length) return "";
  return ["### ⚠ Warnings", "", ...ws.map((w) => `- **${w.kind}**: ${w.message}`)].join("\n");
}

function renderGenerations(hs: HostGeneration[]): string {
  if (!hs.length) return "";
  const out = ["### Hosts with a new generation", ""];
  const code = (xs: string[]) => xs.map((x) => `\`${x}\``).join(", ");
  for (const g of hs) {
    out.push(`#### \`${g.host}\`${g.change === "new" ? " (first generation)" : g.change === "removed" ? " (leaves the fleet; the agent keeps what is there)" : ""}${g.stack ? ` — stack ${g.stack}` : ""}`, "");
    if (g.files.changed.length) out.push(`- files changed: ${code(g.files.changed)}`);
    if (g.files.added.length) out.push(`- files added: ${code(g.files.added)}`);
    if (g.files.removed.length) out.push(`- files removed: ${code(g.files.removed)}`);
    for (const u of g.units.restarted) out.push(`- restarts \`${u.unit}\` (${u.because.map((b) => (b.startsWith("/") ? `\`${b}\`` : b)).join(", ")} changed)`);
    if (g.units.started.length) out.push(`- starts ${code(g.units.started)}`);
    if (g.units.stopped.length) out.push(`- stops ${code(g.units.stopped)}`);
    for (const c of g.containers.restarted) out.push(`- restarts container \`${c.container}\` (${c.because.map((b) => (b.startsWith("/") ? `\`${b}\`` : b)).join(", ")} changed)`);
    if (g.containers.started.length) out.push(`- starts container(s) ${code(g.containers.started)}`);
    if (g.containers.stopped.length) out.push(`- removes container(s) ${code(g.containers.stopped)}`);
    for (const t of g.tailscale) out.push(`- tailscale ${t.setting}: ${JSON.stringify(t.before ?? null)} → ${JSON.stringify(t.after ?? null)}`);
    if (g.firewall.added.length || g.firewall.removed.length) {
      out.push("- firewall:", "", "```diff", ...g.firewall.removed.map((l) => `- ${l}`), ...g.firewall.added.map((l) => `+ ${l}`), "```");
    }
    out.push("");
  }
  return out.join("\n").trimEnd();
}

/**
 * Read the base from git objects in memory (cli/git-tree.ts) unless this says
 * "archive": then it is extracted with `git archive` as before (the bench's
 * baseline, bench/plan-scale/command.ts, and the tests that hold the two
 * paths to the same output).
 */
export const BASE_READER_ENV = "MESHFLEET_PLAN_BASE";

/** How the note on stderr begins when the base is extracted with git archive, and why (the tests look for it). */
export const BASE_NOTE = "note: plan extracts the base";

/** How many bases each reader has read in this process: what the tests hold each reader to. */
export const baseReads = { memory: 0, archive: 0 };

/** The fleet folder as it was at `ref`; a folder that did not exist yet is an empty fleet. */
async function atRevision(ref: string, dir: string, stack: string, live?: LiveNode[], withSiblings = false): Promise<Side> {
  const abs = path.resolve(dir);
  const git = (args: string[], cwd: string) => execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  let top: string;
  try {
    top = git(["rev-parse", "--show-toplevel"], existsSync(abs) ? abs : process.cwd());
    git(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], top);
  } catch (e) {
    const msg = (e as { stderr?: string }).stderr?.trim();
    throw new MeshfleetError(`--base ${ref}: not a git revision of this repository${msg ? ` (${msg.split("\n")[0]})` : ""}; fetch it first (git fetch origin)`);
  }
  const rel = path.relative(top, abs) || ".";
  // The folder read: the fleet's own, or its parent when sibling site folders are read too.
  const folder = withSiblings && rel !== "." ? path.dirname(rel) : rel;
  const gitPath = (p: string) => p.split(path.sep).join("/");
  const entries = listTree(top, ref, [gitPath(folder), ...attributePaths(gitPath(folder))]);
  if (rel !== "." && !entries.some((e) => e.type === "tree" && e.path === gitPath(rel))) return { model: emptyModel(stack), diagnostics: [] };
  const why = process.env[BASE_READER_ENV] === "archive" ? BASE_READER_ENV : (tsHostFile(entries, gitPath(rel), withSiblings ? gitPath(folder) : undefined) ?? archiveMayRewrite(top, entries));
  if (why) {
    // Said unless asked for: plan is slower so, and a user's git attributes or settings may be why.
    if (why !== BASE_READER_ENV) console.error(`${BASE_NOTE} ${ref} with git archive: ${why}`);
    baseReads.archive++;
    return extracted(top, ref, rel, folder, stack, live);
  }
  // Mounted where an extracted folder would be (its name is never made on the disk): base diagnostics read as before.
  const at = path.join(tmpdir(), `meshfleet-plan-${randomBytes(6).toString("hex")}`);
  const unmount = mountFileSource(at, new GitTreeSource(at, entries, readBlobs(top, ref, entries), ref));
  baseReads.memory++;
  try {
    return await evaluate(path.join(at, rel), stack, live);
  } finally {
    unmount();
  }
}

/**
 * A `.ts` host file (or a link named so) in a folder the loader reads host
 * files from: node imports such a host from the disk, so the base is then
 * extracted (`extracted`) instead of read in memory.
 */
function tsHostFile(entries: GitEntry[], rel: string, siblingsOf?: string): string | undefined {
  const parent = (p: string) => path.posix.dirname(p);
  const hit = entries.find((e) => e.type === "blob" && /\.ts$/i.test(e.path) && (parent(e.path) === rel || (siblingsOf !== undefined && parent(parent(e.path)) === siblingsOf)));
  return hit && `${hit.path} is a TypeScript host file`;
}

/** The base as a folder on the disk: `git archive | tar -x` into a temporary folder (what `.ts` hosts and git attributes need). */
async function extracted(top: string, ref: string, rel: string, folder: string, stack: string, live?: LiveNode[]): Promise<Side> {
  const tmp = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-"));
  try {
    // git archive | tar -x: the base's files only, no worktree, no index.
    const tar = execFileSync("git", ["archive", "--format=tar", ref, "--", folder], { cwd: top, maxBuffer: 1 << 30 });
    execFileSync("tar", ["-x", "-C", tmp], { input: tar });
    return await evaluate(path.join(tmp, rel), stack, live);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
