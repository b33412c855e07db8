/**
 * Diagnostics: one line a person can act on per problem, and the one
 * user-facing error class, printed without a stack trace (sst VisibleError).
 */
import type { Diagnostic } from "./types.ts";

export function diag(file: string, path: string, expected: string, found: string, fix: string, severity: Diagnostic["severity"] = "error"): Diagnostic {
  return { severity, file, path, expected, found, fix };
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

/** Render a value briefly for "found ...". */
export function show(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "string") return JSON.stringify(v);
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 80 ? s.slice(0, 77) + "..." : s;
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
