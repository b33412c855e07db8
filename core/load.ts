/**
 * Reading a fleet from git: hosts/<stack>/fleet.yaml and one file per host
 * (`<host>.yaml`, or `<host>.ts` exporting the same shape). YAML priority
 * tags (!mkDefault, !mkForce) become Prio wrappers; parse errors become
 * diagnostics with the line and column.
 */
// Synchronous reads: a fleet is a few small files, and 1,000 awaited reads
// cost more in scheduling than in I/O.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { isMap, isScalar, isSeq, isAlias, LineCounter, parse as parseYamlValue, parseDocument, type Node as YamlNode } from "yaml";
import { diag } from "./diagnostics.ts";
import { Prio, YAML_PRIORITY_TAGS } from "./priority.ts";
import type { Diagnostic } from "./types.ts";

export interface SourceFile {
  /** Path as shown in diagnostics (relative to the working directory when inside it). */
  file: string;
  /** The parsed value, with Prio wrappers where priority tags were used. */
  value: unknown;
}

export interface LoadedFleet {
  dir: string;
  fleet?: SourceFile;
  hosts: { name: string; source: SourceFile }[];
  diagnostics: Diagnostic[];
}

export function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith("..") ? rel : p;
}

/** Parse one YAML text; returns the value or diagnostics (one per YAML error). */
export function parseYaml(text: string, file: string): { value?: unknown; diagnostics: Diagnostic[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  const at = (pos: [number, number] | undefined) => {
    const p = lineCounter.linePos(pos?.[0] ?? 0);
    return [p.line, p.col];
  };
  const diagnostics: Diagnostic[] = doc.errors.map((e) => {
    const [line, col] = at(e.pos);
    return diag(file, `line ${line}:${col}`, "valid YAML", e.message.split("\n")[0], e.code === "DUPLICATE_KEY" ? "remove the duplicated key" : "fix the YAML syntax at that line");
  });
  for (const w of doc.warnings) {
    if (w.code === "TAG_RESOLVE_FAILED" && /!mk(Default|Force)/.test(w.message)) continue;
    const [line, col] = at(w.pos);
    diagnostics.push(diag(file, `line ${line}:${col}`, "a known YAML tag (!mkDefault, !mkForce)", w.message.split("\n")[0], "remove the tag or use !mkDefault / !mkForce"));
  }
  if (diagnostics.length) return { diagnostics };
  const unknownTags: Diagnostic[] = [];
  const value = toValue(doc.contents as YamlNode | null, file, unknownTags);
  return { value: value ?? {}, diagnostics: unknownTags };
}

function toValue(node: YamlNode | null, file: string, out: Diagnostic[]): unknown {
  if (node === null || node === undefined) return null;
  let v: unknown;
  if (isAlias(node)) return null;
  if (isMap(node)) {
    const o: Record<string, unknown> = {};
    for (const pair of node.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      o[k] = toValue(pair.value as YamlNode | null, file, out);
    }
    v = o;
  } else if (isSeq(node)) {
    v = node.items.map((n) => toValue(n as YamlNode | null, file, out));
  } else if (isScalar(node)) {
    v = node.value;
    // A custom tag makes yaml read the scalar as a string; a plain scalar
    // under !mkForce keeps its own type (`!mkForce 1` is the number 1).
    if (node.tag && node.tag in YAML_PRIORITY_TAGS && node.type === "PLAIN") v = parseYamlValue(String(node.source ?? v));
  }
  const tag = (node as { tag?: string }).tag;
  if (tag && tag in YAML_PRIORITY_TAGS) return new Prio(YAML_PRIORITY_TAGS[tag], v);
  return v;
}

const HOST_FILE = /^([a-z0-9][a-z0-9-]*)\.(ya?ml|ts)$/;

export async function loadFleetDir(dir: string): Promise<LoadedFleet> {
  const diagnostics: Diagnostic[] = [];
  const shown = displayPath(dir);
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch (e) {
    return { dir, hosts: [], diagnostics: [diag(shown, "", "a folder holding fleet.yaml and one file per host", `no such folder (${(e as NodeJS.ErrnoException).code})`, "pass --stack NAME for hosts/NAME, or --hosts-dir DIR")] };
  }
  let fleet: SourceFile | undefined;
  const fleetName = entries.find((e) => e === "fleet.yaml" || e === "fleet.yml");
  if (!fleetName) {
    diagnostics.push(diag(path.join(shown, "fleet.yaml"), "", "the mesh-wide settings file fleet.yaml", "no such file", "create fleet.yaml with at least coordinator.host and coordinator.serverUrl"));
  } else {
    const file = displayPath(path.join(dir, fleetName));
    const r = parseYaml(readFileSync(path.join(dir, fleetName), "utf8"), file);
    diagnostics.push(...r.diagnostics);
    if (r.value !== undefined) fleet = { file, value: r.value };
  }
  const hosts: LoadedFleet["hosts"] = [];
  const seen = new Map<string, string>();
  for (const entry of entries) {
    if (entry === fleetName || entry.startsWith("_") || entry.startsWith(".")) continue;
    const full = path.join(dir, entry);
    const file = displayPath(full);
    if (!/\.(ya?ml|ts)$/.test(entry)) continue;
    const m = HOST_FILE.exec(entry);
    if (!m) {
      diagnostics.push(diag(file, "", "a host file named <host>.yaml with a DNS-label name (lowercase letters, digits, '-')", JSON.stringify(entry), "rename the file, e.g. lxc-tailscale.yaml (prefix it with _ to keep it out of the fleet)"));
      continue;
    }
    const name = m[1];
    if (seen.has(name)) {
      diagnostics.push(diag(file, "", `one file for host "${name}"`, `a second one (first: ${seen.get(name)})`, `remove or rename one of them`));
      continue;
    }
    seen.set(name, file);
    if (m[2] === "ts") {
      try {
        const mod = await import(pathToFileURL(full).href);
        const value = typeof mod.default === "function" ? await mod.default() : mod.default;
        if (!value || typeof value !== "object") {
          diagnostics.push(diag(file, "", "a default export: the host's options object (or a function returning it)", show(value), "export default { imports: [...], address: ..., ... }"));
          continue;
        }
        hosts.push({ name, source: { file, value } });
      } catch (e) {
        diagnostics.push(diag(file, "", "a TypeScript module that loads", (e as Error).message.split("\n")[0], "fix the error in the host module"));
      }
      continue;
    }
    const r = parseYaml(readFileSync(full, "utf8"), file);
    diagnostics.push(...r.diagnostics);
    if (r.value !== undefined) hosts.push({ name, source: { file, value: r.value } });
  }
  return { dir, fleet, hosts, diagnostics };
}

function show(v: unknown) {
  return v === undefined ? "nothing" : JSON.stringify(v) ?? String(v);
}
