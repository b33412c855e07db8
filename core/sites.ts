/**
 * Sites as stacks: one fleet spread over sibling folders, one Pulumi stack
 * each. The core folder (its fleet.yaml has `coordinator` and `sites`) holds
 * the coordinator and the mesh-wide settings; each site folder's fleet.yaml
 * holds only `core: { stack, dir }`. Whichever folder is evaluated, the whole
 * fleet is: the core's fleet.yaml, and the hosts of the core and of every
 * site. The policy, the auto-approvers, the users and the pre-auth key
 * requests therefore cover every site, and `plan` from any stack shows what a
 * core change does to every site's hosts. What a stack deploys is only its
 * own folder's hosts (`SiteLayout.local`); the rest is read (docs/sites.md).
 *
 * Pure apart from reading the folders (through the loader, with its limits).
 */
import path from "node:path";
import { diag, quote } from "./diagnostics.ts";
import { displayPath, loadFleetDir, type LoadedFleet } from "./load.ts";
import { Prio } from "./priority.ts";
import type { Diagnostic, SiteLayout } from "./types.ts";

const unprio = (v: unknown): unknown => (v instanceof Prio ? unprio(v.value) : v);
const field = (v: unknown, k: string): unknown => {
  const o = unprio(v);
  return o && typeof o === "object" && !Array.isArray(o) ? unprio((o as Record<string, unknown>)[k]) : undefined;
};

/** A site fleet.yaml's core: { stack, dir }, when the file is a site's (it has `core`). */
function siteCoreOf(l: LoadedFleet): { stack: string; dir: string } | undefined {
  const c = field(l.fleet?.value, "core");
  if (!c) return undefined;
  return { stack: String(field(c, "stack")), dir: String(field(c, "dir")) };
}

/** The core fleet.yaml's sites (empty for a fleet without sites). */
function sitesOf(l: LoadedFleet): string[] {
  const s = field(l.fleet?.value, "sites");
  return Array.isArray(s) ? s.map((x) => String(unprio(x))) : [];
}

const fleetFileOf = (l: LoadedFleet) => l.fleet?.file ?? displayPath(path.join(l.dir, "fleet.yaml"));
const sameDir = (a: string, b: string) => path.resolve(a) === path.resolve(b);

/**
 * Why a site stops when its core stack cannot be read, and the fix: said by
 * the site's program when reading the core's outputs fails (components/site.ts
 * readCore), and by `meshfleet up` in place of the engine's bare
 * `unknown stack "core"` when the StackReference itself fails (the engine
 * fails the read before the program sees an error).
 */
export function unreadableCoreMessage(coreStack: string, why: string): string {
  return `the core stack ${coreStack} could not be read (${why}). Fix: deploy the core first (\`meshfleet up --stack ${coreStack}\`), or set meshfleet:coreStack to its name on this backend (org/project/stack on a shared one)`;
}

export interface LoadedSites {
  /** The whole fleet as one folder would hold it: the core's fleet.yaml, every site's hosts and imports. */
  loaded: LoadedFleet;
  /** Which folder holds which hosts, and which this stack deploys; undefined for a fleet without sites. */
  layout?: SiteLayout;
}

/**
 * Load the fleet `dir` belongs to. A folder that is neither a site nor a
 * core with sites loads as it always did. Every problem is a diagnostic:
 * a site naming a core that does not exist or does not list it, a core
 * listing a site folder that is missing or names another core, a host
 * name used in two folders, a coordinator outside the core.
 */
export async function loadSites(dir: string): Promise<LoadedSites> {
  const here = await loadFleetDir(dir);
  const asSite = siteCoreOf(here);
  if (!asSite && sitesOf(here).length === 0) return { loaded: here };

  const diagnostics: Diagnostic[] = [];
  let core: LoadedFleet;
  let coreStack: string | undefined;
  if (asSite) {
    const siteFile = fleetFileOf(here);
    const coreDir = path.join(dir, asSite.dir);
    core = await loadFleetDir(coreDir);
    coreStack = asSite.stack;
    const siteName = path.basename(path.resolve(dir));
    if (!core.fleet) {
      // Whatever the loader found wrong with the core folder is said by this site's file first.
      return {
        loaded: { ...here, fleet: undefined, diagnostics: [...here.diagnostics, diag(siteFile, "core.dir", "the folder of this site's core stack, beside this one, holding the core's fleet.yaml (coordinator, sites)", `${quote(asSite.dir)} (${displayPath(coreDir)}): ${core.diagnostics[0]?.found ?? "no usable fleet.yaml"}`, `set core.dir to the core's folder (e.g. ../core), or create ${displayPath(path.join(coreDir, "fleet.yaml"))} with coordinator and sites: [${siteName}]`)] },
      };
    }
    if (siteCoreOf(core)) {
      return {
        loaded: { ...here, fleet: undefined, diagnostics: [...here.diagnostics, diag(siteFile, "core.dir", "the folder of the core (its fleet.yaml has coordinator and sites)", `${quote(asSite.dir)}, which is itself a site (its fleet.yaml has core:)`, "point core.dir at the folder whose fleet.yaml has coordinator.host")] },
      };
    }
    if (!sitesOf(core).includes(siteName))
      diagnostics.push(diag(siteFile, "core.dir", `a core that lists this site (${siteName}) in its sites`, `${fleetFileOf(core)} lists ${sitesOf(core).length ? sitesOf(core).join(", ") : "no sites"}`, `add ${siteName} to sites in ${fleetFileOf(core)}, or point core.dir at this site's core`));
  } else core = here;

  const coreFile = fleetFileOf(core);
  const parts: { name: string; loaded: LoadedFleet }[] = [];
  const names = sitesOf(core);
  for (const [i, name] of names.entries()) {
    const siteDir = path.join(path.dirname(path.resolve(core.dir)), name);
    const shownDir = displayPath(siteDir);
    const l = sameDir(siteDir, dir) ? here : await loadFleetDir(siteDir);
    if (!l.fleet) {
      const noFolder = l.hosts.length === 0 && l.diagnostics.some((d) => d.found === "no such folder" || d.found === "no such file");
      diagnostics.push(
        diag(coreFile, `sites[${i}]`, "the name of a site folder beside this one, holding a fleet.yaml with core: { stack, dir }", `${quote(name)}: ${noFolder ? `no ${shownDir}/fleet.yaml` : `${shownDir}/fleet.yaml does not load`}`, noFolder ? `create ${shownDir}/fleet.yaml with core: { stack: <core stack>, dir: ../${path.basename(path.resolve(core.dir))} }, or remove ${name} from sites` : `fix ${shownDir}/fleet.yaml (meshfleet check --hosts-dir ${shownDir})`),
      );
      if (l !== here) diagnostics.push(...l.diagnostics);
      continue;
    }
    const c = siteCoreOf(l);
    if (!c) {
      diagnostics.push(diag(fleetFileOf(l), "", `a site's fleet file (core: { stack, dir }), since ${coreFile} lists ${name} in sites`, "a fleet file of its own (coordinator, ...)", `replace it with core: { stack: <core stack>, dir: ../${path.basename(path.resolve(core.dir))} }, or remove ${name} from sites in ${coreFile}`));
      continue;
    }
    if (!sameDir(path.join(l.dir, c.dir), core.dir)) {
      diagnostics.push(diag(fleetFileOf(l), "core.dir", `the core that lists this site (${displayPath(core.dir)})`, quote(c.dir), `set core.dir: ../${path.basename(path.resolve(core.dir))}, or remove ${name} from sites in ${coreFile}`));
      continue;
    }
    if (coreStack === undefined) coreStack = c.stack;
    else if (c.stack !== coreStack)
      diagnostics.push(diag(fleetFileOf(l), "core.stack", `the core's stack name the other sites use (${coreStack})`, quote(c.stack), `set core.stack: ${coreStack}`));
    parts.push({ name, loaded: l });
  }

  // One host name, one folder: the name is the node's identity in headscale and the key of every map.
  const owner = new Map<string, { site: string | null; file: string }>();
  const hosts: LoadedFleet["hosts"] = [];
  const layout: SiteLayout = { site: asSite ? path.basename(path.resolve(dir)) : null, core: { dir: core.dir, stack: coreStack ?? "", hosts: [] }, sites: {}, local: [] };
  for (const part of [{ name: null as string | null, loaded: core }, ...parts]) {
    const own: string[] = [];
    for (const h of part.loaded.hosts) {
      const prev = owner.get(h.name);
      if (prev) {
        diagnostics.push(diag(h.source.file, "", `a host name no other folder of the fleet uses (a host belongs to one site)`, `${quote(h.name)}, also ${prev.file} (${prev.site ?? "the core"})`, `remove one of the two files, or rename one (the file name is the host's name)`));
        continue;
      }
      owner.set(h.name, { site: part.name, file: h.source.file });
      own.push(h.name);
      hosts.push(h);
    }
    if (part.name === null) layout.core.hosts = own;
    else layout.sites[part.name] = { dir: part.loaded.dir, hosts: own };
  }
  layout.local = layout.site === null ? layout.core.hosts : (layout.sites[layout.site]?.hosts ?? []);

  const coordHost = field(field(core.fleet?.value, "coordinator"), "host");
  const coordOwner = typeof coordHost === "string" ? owner.get(coordHost) : undefined;
  if (coordOwner && coordOwner.site !== null)
    diagnostics.push(diag(coreFile, "coordinator.host", "a host of the core's own folder (the core stack deploys the coordinator; sites only read its URL and their keys)", `${quote(String(coordHost))}, a host of site ${coordOwner.site} (${coordOwner.file})`, `move ${coordOwner.file} into ${displayPath(core.dir)}`));
  if (asSite && coreStack === "") diagnostics.push(diag(fleetFileOf(here), "core.stack", "the core's Pulumi stack name", '""', "set core.stack to the stack that deploys the core, e.g. core"));

  const seen = new Set<Diagnostic>();
  const all = [...core.diagnostics, ...parts.flatMap((p) => (p.loaded === core ? [] : p.loaded.diagnostics)), ...(asSite && !parts.some((p) => p.loaded === here) ? here.diagnostics : []), ...diagnostics].filter((d) => !seen.has(d) && (seen.add(d), true));
  return {
    loaded: { dir: core.dir, fleet: core.fleet, hosts, imports: Object.assign({}, core.imports, ...parts.map((p) => p.loaded.imports ?? {})), diagnostics: all },
    layout,
  };
}
