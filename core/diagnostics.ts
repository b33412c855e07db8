/**
 * Diagnostics: one line a person can act on per problem, and the one
 * user-facing error class, printed without a stack trace (sst VisibleError).
 */
import type { Diagnostic } from "./types.ts";

export function diag(file: string, path: string, expected: string, found: string, fix: string, severity: Diagnostic["severity"] = "error"): Diagnostic {
  const typed = typedScalars.get(file)?.get(path);
  found = asTyped(file, path, found);
  // YAML read `1.90` as a number where text was wanted: quoting it keeps it as typed.
  if (typed && !typed.cut && expected === "a string" && found === typed.source && path) fix = `quote the value so it stays text: ${path.endsWith("]") ? "-" : `${path.replace(/^.*\./, "")}:`} "${typed.source}"`;
  return {
    severity,
    file: oneLine(file, 240),
    path: oneLine(path, 160),
    expected: oneLine(expected, 600),
    found: oneLine(found, 400),
    fix: oneLine(fixThatFixes(fix, path), 600),
  };
}

/**
 * The value as the user typed it. YAML turns `0.30` into 0.3 and `0x1F`
 * into 31; the loader records such scalars (file + option path -> source
 * text), and a "found" that is the parsed value's rendering is replaced by
 * the source text, so the message quotes what is in the file.
 */
const typedScalars = new Map<string, Map<string, TypedScalar>>();

/** A scalar as parsed (its "found" rendering) and as typed (cut to ECHO_MAX characters when `cut`). */
export interface TypedScalar {
  parsed: string;
  source: string;
  cut?: boolean;
}

/** Record the scalars of `file` whose source text differs from their parsed rendering (replaces earlier records). */
export function recordTypedScalars(file: string, scalars: Map<string, TypedScalar>): void {
  if (scalars.size) typedScalars.set(file, scalars);
  else typedScalars.delete(file);
}

function asTyped(file: string, path: string, found: string): string {
  const t = typedScalars.get(file)?.get(path);
  return t && t.source && found === t.parsed ? t.source : found;
}

/** Control characters (newline, NUL, ESC...) escaped, so a diagnostic stays one line and cannot drive the terminal; long text cut. */
export function oneLine(s: string, max: number): string {
  const esc = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
  return esc.length > max ? `${esc.slice(0, max - 1)}…` : esc;
}

/**
 * A fix must be a setting that fixes: never "set  to ..." (no option path),
 * which zod-derived fixes produce for a whole-file problem.
 */
function fixThatFixes(fix: string, path: string): string {
  if (!path && /^set\s+to /.test(fix)) return `write the file as ${fix.replace(/^set\s+to /, "").replace(/ — .*$/, "")}`;
  return fix;
}

export function formatDiagnostic(d: Diagnostic): string {
  const where = d.path ? `${d.file}: ${d.path}` : d.file;
  return `${d.severity}: ${where}: expected ${d.expected}, found ${d.found}. Fix: ${d.fix}`;
}

/** Errors first, then warnings; each group in file/path order. */
export function formatDiagnostics(diags: Diagnostic[]): string {
  return sortDiagnostics(diags).map(formatDiagnostic).join("\n");
}

export function sortDiagnostics(diags: Diagnostic[]): Diagnostic[] {
  const rank = (d: Diagnostic) => (d.severity === "error" ? 0 : 1);
  return [...diags].sort((a, b) => rank(a) - rank(b) || a.file.localeCompare(b.file) || a.path.localeCompare(b.path));
}

export const hasErrors = (diags: Diagnostic[]) => diags.some((d) => d.severity === "error");

/** Shown to a person as its message alone; `cause` is kept for --debug. */
export class MeshfleetError extends Error {
  constructor(message: string, readonly diagnostics: Diagnostic[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MeshfleetError";
  }
}

/** The most of a value a diagnostic quotes: a huge or binary value is never echoed whole. */
export const ECHO_MAX = 80;

/** Render a value briefly for "found ...": at most ECHO_MAX characters, control characters escaped. */
export function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "string") return quote(v);
  if (typeof v === "bigint" || typeof v === "symbol" || typeof v === "function") return String(v);
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    s = undefined; // circular (a self-referencing alias) or otherwise unprintable
  }
  if (s === undefined) s = Array.isArray(v) ? "a list" : typeof v === "object" && v ? "a mapping" : String(v);
  return cut(s);
}

/** A string quoted for a diagnostic: JSON-escaped, cut to ECHO_MAX characters with the full length said. */
export function quote(s: string): string {
  if (s.length <= ECHO_MAX) return JSON.stringify(s);
  return `${JSON.stringify(s.slice(0, ECHO_MAX - 3)).slice(0, -1)}..." (${s.length} characters)`;
}

function cut(s: string): string {
  return s.length > ECHO_MAX ? `${s.slice(0, ECHO_MAX - 3)}... (${s.length} characters)` : s;
}

/** The closest of `candidates` to `word`, if close enough to suggest. */
export function suggest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) { bestD = d; best = c; }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}
