/**
 * What crosses the engine ↔ provider boundary, and the small pure helpers
 * every resource's check/diff uses.
 *
 * Facts measured against Pulumi 3.248.0 (issue 10):
 * - Secret inputs reach the provider wrapped as
 *   `{ "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value }`.
 * - `diff` receives the previous *outputs* as `olds`: compare only the keys of
 *   `news`, or every run is an update.
 * - An output stays secret only under the key of a secret input, or when the
 *   resource lists it in `additionalSecretOutputs`.
 */

export const SIG_KEY = "4dabf18193072939515e22adb298388d";
export const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

export function isWrappedSecret(v: unknown): v is { value: unknown } {
  return !!v && typeof v === "object" && (v as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** The value with every secret wrapper removed, at any depth. */
export function unwrapSecrets<T = any>(v: unknown): T {
  if (isWrappedSecret(v)) return unwrapSecrets(v.value);
  if (Array.isArray(v)) return v.map((x) => unwrapSecrets(x)) as T;
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unwrapSecrets(x)])) as T;
  return v as T;
}

/** Structural equality on JSON values (object key order does not matter). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => deepEqual(x, bb[i]));
  }
  const ka = Object.keys(a as object).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b as object).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/** The engine's kinds of a property change (pulumirpc.PropertyDiff.Kind). */
export type DiffKind = "add" | "add-replace" | "delete" | "delete-replace" | "update" | "update-replace";

/**
 * A provider's diff answer, with the per-property detail the Node SDK's own
 * DiffResult type has no field for (see server-hook.ts, which sends it).
 */
export interface DetailedDiffResult {
  changes: boolean;
  replaces?: string[];
  deleteBeforeReplace?: boolean;
  /** Property path (`files["/etc/x"]`, `hash`) → kind. Paths are shown by `preview --diff`. */
  detailedDiff?: Record<string, DiffKind>;
}

/** `files["/etc/x"]`: a property path the engine's display understands. */
export function keyPath(prop: string, key: string): string {
  return `${prop}[${JSON.stringify(key)}]`;
}

/**
 * Compare the keys of `news` against `olds` (previous outputs) and list what
 * differs, one path per top-level key; `replaceKeys` turn into replaces.
 */
export function topLevelDiff(
  olds: Record<string, unknown>,
  news: Record<string, unknown>,
  o: { ignore?: readonly string[]; replaceKeys?: readonly string[] } = {},
): DetailedDiffResult {
  const detailed: Record<string, DiffKind> = {};
  const replaces: string[] = [];
  for (const k of Object.keys(news)) {
    if (o.ignore?.includes(k)) continue;
    const had = olds[k] !== undefined;
    if (had && deepEqual(unwrapSecrets(olds[k]), unwrapSecrets(news[k]))) continue;
    if (!had && news[k] === undefined) continue;
    const replace = o.replaceKeys?.includes(k) ?? false;
    if (replace) replaces.push(k);
    detailed[k] = had ? (replace ? "update-replace" : "update") : replace ? "add-replace" : "add";
  }
  return { changes: Object.keys(detailed).length > 0, replaces, detailedDiff: detailed };
}

/** Per-key diff of two records (files by path, units by name). */
export function recordDiff(
  prop: string,
  olds: Record<string, unknown> | undefined,
  news: Record<string, unknown> | undefined,
  same: (a: unknown, b: unknown) => boolean = deepEqual,
): Record<string, DiffKind> {
  const out: Record<string, DiffKind> = {};
  const o = olds ?? {};
  const n = news ?? {};
  for (const k of Object.keys(n)) {
    if (!(k in o)) out[keyPath(prop, k)] = "add";
    else if (!same(o[k], n[k])) out[keyPath(prop, k)] = "update";
  }
  for (const k of Object.keys(o)) if (!(k in n)) out[keyPath(prop, k)] = "delete";
  return out;
}

/** A user-facing failure: one message, no stack, never a secret. */
export class ProviderError extends Error {}
