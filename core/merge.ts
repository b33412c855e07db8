/**
 * Merging option definitions by priority (nixpkgs lib/modules.nix):
 * the lowest priority number wins; at that priority lists concatenate,
 * records and objects merge key by key, and two different scalars are a
 * conflict that names both files.
 */
import type { z } from "zod";
import { diag, show, suggest } from "./diagnostics.ts";
import { Prio } from "./priority.ts";
import type { Diagnostic } from "./types.ts";

export interface Definition {
  file: string;
  priority: number;
  value: unknown;
}

export interface MergeResult {
  value: unknown;
  /** Option path (`a.b[2]`) -> the file whose definition won there. */
  sources: Map<string, string>;
  diagnostics: Diagnostic[];
}

type Kind = { kind: "object"; shape: Record<string, z.ZodType> } | { kind: "record"; value: z.ZodType } | { kind: "array" } | { kind: "leaf" };

/** Look through default/optional/nullable/pipe wrappers to the shape that merging cares about. */
export function schemaKind(schema: z.ZodType): Kind {
  let s: any = schema;
  for (;;) {
    const def = s?._zod?.def;
    if (!def) return { kind: "leaf" };
    switch (def.type) {
      case "default": case "optional": case "nullable": case "prefault": case "readonly": case "catch":
        s = def.innerType; continue;
      case "pipe": s = def.in; continue;
      case "object": return { kind: "object", shape: def.shape };
      case "record": return { kind: "record", value: def.valueType };
      case "array": return { kind: "array" };
      default: return { kind: "leaf" };
    }
  }
}

/** An option's description, looking through wrappers. */
export function describeOf(schema: z.ZodType | undefined): string | undefined {
  let s: any = schema;
  while (s) {
    if (s.description) return s.description;
    const def = s._zod?.def;
    s = def?.innerType ?? (def?.type === "pipe" ? def.in : undefined);
  }
  return undefined;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === "object" && !Array.isArray(v) && !(v instanceof Prio);

const joinPath = (base: string, key: string | number) =>
  typeof key === "number" ? `${base}[${key}]` : base ? `${base}.${key}` : key;

function unwrap(d: Definition): Definition {
  let { priority, value } = d;
  while (value instanceof Prio) {
    priority = value.priority;
    value = value.value;
  }
  return { file: d.file, priority, value };
}

/** Strip priority wrappers anywhere in a value (for values past the merge point). */
export function stripPrio(v: unknown): unknown {
  if (v instanceof Prio) return stripPrio(v.value);
  if (Array.isArray(v)) return v.map(stripPrio);
  if (isPlainObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, stripPrio(x)]));
  return v;
}

/**
 * The definitions of the option at `path` inside each definition (priority
 * wrappers on the way down give their priority to what they hold), for
 * merging that option again together with more definitions of it.
 */
export function definitionsAt(defs: readonly Definition[], path: readonly string[]): Definition[] {
  const out: Definition[] = [];
  for (const d of defs) {
    let { priority, value } = d;
    for (const key of path) {
      while (value instanceof Prio) ({ priority, value } = value);
      value = isPlainObject(value) && Object.prototype.hasOwnProperty.call(value, key) ? value[key] : undefined;
      // Stryker disable next-line ConditionalExpression: without the break the next keys find no plain object and stay undefined
      if (value === undefined) break;
    }
    if (value !== undefined) out.push({ file: d.file, priority, value });
  }
  return out;
}

/**
 * `trackSources: false` leaves `sources` empty: evaluation merges every host
 * (twice, with the modules' settings) and needs where a value came from only
 * to report a problem; it merges again with sources then.
 */
export function mergeDefinitions(schema: z.ZodType, defs: Definition[], path = "", trackSources = true): MergeResult {
  const sources = new Map<string, string>();
  const diagnostics: Diagnostic[] = [];
  const value = mergeAt(schema, defs, path, trackSources ? sources : undefined, diagnostics);
  return { value, sources, diagnostics };
}

/**
 * `mergeDefinitions(schema, [...defs, ...more], "", false)`, given `base`: the
 * merge of `defs` alone, which found nothing to report. An object merges key
 * by key, so only the top-level options `more` defines are merged again; every
 * other one is `base`'s own value (the same object), in the same key order.
 * Evaluation merges a host again with its modules' settings (`more`), which
 * set a few options (1,000 of bench/eval-scale's 10,000 hosts do).
 * Anything else (not an object schema, a definition that is not a plain
 * mapping) takes the whole merge.
 */
export function mergeMore(schema: z.ZodType, defs: Definition[], base: unknown, more: Definition[]): MergeResult {
  const all = [...defs, ...more];
  const kind = kindOf(schema);
  if (kind.kind !== "object" || !isPlainObject(base) || !all.every((d) => isPlainObject(d.value))) return mergeDefinitions(schema, all, "", false);
  const touched = new Set(more.flatMap((d) => Object.keys(d.value as object)));
  const diagnostics: Diagnostic[] = [];
  const value: Record<string, unknown> = {};
  // mergeAt's order: every key of every definition, first seen first.
  for (const key of new Set(all.flatMap((d) => Object.keys(d.value as object)))) {
    if (!touched.has(key)) {
      if (Object.prototype.hasOwnProperty.call(base, key)) value[key] = base[key];
      continue;
    }
    const holders = all.filter((d) => key in (d.value as object));
    const merged = mergeAt(schema, holders.map((d) => ({ file: d.file, priority: d.priority, value: { [key]: (d.value as Record<string, unknown>)[key] } })), "", undefined, diagnostics) as Record<string, unknown> | undefined;
    if (merged && merged[key] !== undefined) value[key] = merged[key];
  }
  return { value, sources: new Map(), diagnostics };
}

/** schemaKind per schema: a host's merge asks it for every option of every host. */
const kinds = new WeakMap<object, Kind>();
function kindOf(schema: z.ZodType): Kind {
  // Stryker disable next-line all: a cache only; mergeAt never passes a non-object schema (an unknown key returns before), and schemaKind answers the same either way
  if (!schema || (typeof schema !== "object" && typeof schema !== "function")) return schemaKind(schema);
  let k = kinds.get(schema);
  // Stryker disable next-line ConditionalExpression: recomputing instead of using the cache gives the same kind
  if (!k) kinds.set(schema, (k = schemaKind(schema)));
  return k;
}

function mergeAt(schema: z.ZodType, rawDefs: Definition[], path: string, sources: Map<string, string> | undefined, out: Diagnostic[]): unknown {
  const defs: Definition[] = [];
  let top = Infinity;
  // Indexed loops: V8's baseline tier (cli/short-run.ts) allocates for every step of a for...of.
  for (let i = 0; i < rawDefs.length; i++) {
    const raw = rawDefs[i];
    const d = raw.value instanceof Prio ? unwrap(raw) : raw;
    if (d.value === undefined) continue;
    defs.push(d);
    // Stryker disable next-line EqualityOperator: an equal priority sets top to the same value
    if (d.priority < top) top = d.priority;
  }
  if (defs.length === 0) return undefined;
  const kind = kindOf(schema);
  // Stryker disable next-line ConditionalExpression: a fast path; filtering one definition at the top priority gives the same list
  const winners = defs.length === 1 ? defs : defs.filter((d) => d.priority === top);

  if ((kind.kind === "object" || kind.kind === "record") && defs.every((d) => isPlainObject(d.value))) {
    // Objects merge key by key; priority is decided per leaf, not per object.
    const keys = defs.length === 1 ? Object.keys(defs[0].value as object) : [...new Set(defs.flatMap((d) => Object.keys(d.value as object)))];
    const result: Record<string, unknown> = {};
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k];
      const sub = kind.kind === "object" ? kind.shape[key] : kind.value;
      const keyPath = joinPath(path, key);
      const holders = defs.length === 1 ? defs : defs.filter((d) => key in (d.value as object));
      if (!sub) {
        const known = Object.keys((kind as { shape: object }).shape);
        const near = suggest(key, known);
        for (const h of holders)
          out.push(diag(h.file, keyPath, `one of the options ${known.join(", ")}`, `unknown option "${key}"`,
            near ? `did you mean "${near}"? Rename it.` : `remove "${key}" or move it under the module it belongs to`));
        continue;
      }
      const merged = mergeAt(sub, holders.map((h) => ({ file: h.file, priority: h.priority, value: (h.value as Record<string, unknown>)[key] })), keyPath, sources, out);
      if (merged !== undefined) result[key] = merged;
    }
    sources?.set(path, winners[0].file);
    return result;
  }

  if (kind.kind === "array" && winners.every((d) => Array.isArray(d.value))) {
    const result: unknown[] = [];
    for (const w of winners)
      for (const item of w.value as unknown[]) {
        sources?.set(joinPath(path, result.length), w.file);
        result.push(stripPrio(item));
      }
    sources?.set(path, winners[0].file);
    return result;
  }

  // A scalar (or a type mismatch zod will report): the winners must agree.
  const first = winners[0];
  // Stryker disable next-line MethodExpression: comparing the first winner with itself finds no conflict
  for (const other of winners.slice(1)) {
    if (JSON.stringify(stripPrio(other.value)) !== JSON.stringify(stripPrio(first.value))) {
      out.push(diag(other.file, path, `one value at priority ${top} (as set in ${first.file}: ${show(stripPrio(first.value))})`,
        `${show(stripPrio(other.value))} here`,
        `make the two files agree, or give one of them priority with !mkForce (or drop to !mkDefault)`));
    }
  }
  sources?.set(path, first.file);
  return stripPrio(first.value);
}

/** The file that defined `path`, or the closest enclosing path that has one. */
export function sourceOf(sources: Map<string, string>, path: string, fallback: string): string {
  let p = path;
  for (;;) {
    const f = sources.get(p);
    if (f) return f;
    if (!p) return fallback;
    const cut = Math.max(p.lastIndexOf("."), p.lastIndexOf("["));
    // Stryker disable next-line EqualityOperator: at cut 0, p.slice(0, 0) is "" as well
    p = cut < 0 ? "" : p.slice(0, cut);
  }
}

/** zod issues as diagnostics, each attributed to the file that defined the value. */
export function zodDiagnostics(schema: z.ZodType, error: z.ZodError, sources: Map<string, string>, fallbackFile: string, prefix = ""): Diagnostic[] {
  return error.issues.map((issue: any) => {
    let path = prefix;
    for (const k of issue.path) path = joinPath(path, k as string | number);
    const file = sourceOf(sources, path, fallbackFile);
    const optionDoc = describeOf(optionAt(schema, issue.path));
    const found = "input" in issue ? show(issue.input) : "nothing";
    let expected: string;
    switch (issue.code) {
      case "invalid_type":
        expected = issue.input === undefined ? `a value (${issue.expected}) — this option is required` : `${/^[aeiou]/.test(issue.expected) ? "an" : "a"} ${issue.expected}`;
        break;
      case "invalid_value":
        expected = `one of ${issue.values.map((v: unknown) => JSON.stringify(v)).join(", ")}`;
        break;
      case "too_small":
        expected = issue.origin === "array" ? `at least ${issue.minimum} item(s)` : issue.origin === "string" ? `at least ${issue.minimum} character(s)` : `at least ${issue.minimum}`;
        break;
      case "too_big":
        expected = issue.origin === "array" ? `at most ${issue.maximum} item(s)` : issue.origin === "string" ? `at most ${issue.maximum} character(s)` : `at most ${issue.maximum}`;
        break;
      case "invalid_format":
        // Stryker disable next-line OptionalChaining: zod gives every invalid_format issue a message
        expected = issue.message?.startsWith("Invalid") ? `a ${issue.format}` : issue.message;
        break;
      case "unrecognized_keys":
        return diag(file, path, "only known options", `unknown option(s) ${issue.keys.map((k: string) => `"${k}"`).join(", ")}`, "remove them or fix their spelling");
      case "custom": // a check with its own expected/found/fix (core/freetext.ts)
        if (typeof issue.params?.expected === "string") return diag(file, path, issue.params.expected, issue.params.found, issue.params.fix);
        expected = issue.message;
        break;
      default:
        expected = issue.message;
    }
    const fix = issue.input === undefined && issue.code === "invalid_type"
      ? `set ${path}${optionDoc ? ` (${optionDoc})` : ""}`
      : `set ${path} to ${expected}${optionDoc ? ` — ${optionDoc}` : ""}`;
    return diag(file, path, expected, found, fix);
  });
}

function optionAt(schema: z.ZodType, path: PropertyKey[]): z.ZodType | undefined {
  let s: z.ZodType | undefined = schema;
  for (const k of path) {
    // Stryker disable next-line ConditionalExpression: without it, schemaKind(undefined) is a leaf and the loop returns s, undefined as well
    if (!s) return undefined;
    const kind = schemaKind(s);
    if (kind.kind === "object") s = kind.shape[k as string];
    else if (kind.kind === "record") s = kind.value;
    else if (kind.kind === "array") {
      let a: any = s;
      // Stryker disable next-line OptionalChaining: schemaKind found an array under these wrappers, so each step has a zod def
      while (a?._zod?.def && a._zod.def.type !== "array") a = a._zod.def.innerType ?? a._zod.def.in;
      // Stryker disable next-line OptionalChaining: the loop stopped at the array's def
      s = a?._zod?.def?.element;
    } else return s;
  }
  return s;
}
