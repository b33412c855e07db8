// What is there: each pinned tool, cached, on PATH, or missing.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { allPresent, binaryVersion, probePath } from "./probe.ts";
import { stampFile, toolBinDir, toolsDir } from "./paths.ts";
import { loadVersions, type ToolSpec } from "./versions.ts";

export type BinaryStatus = { name: string; path: string | null; version: string | null };
export type ToolStatus = {
  name: string;
  version: string;
  /** cached: in the tools dir; path: found on PATH at the pinned version; missing: must be built. */
  state: "cached" | "path" | "missing";
  binDir: string | null;
  binaries: BinaryStatus[];
  /** Why a found binary was not used, or that a cache entry lacks its stamp. */
  note?: string;
  /** In the cache at the pinned version but built outside `meshfleet tools build` (no stamp yet). */
  unstamped?: boolean;
};

export type Stamp = { name: string; version: string; binaries: string[]; recipe: string; go: string; seconds: number; builtAt: string };

export function readStamp(root: string, t: ToolSpec): Stamp | undefined {
  const f = stampFile(root, t);
  if (!existsSync(f)) return undefined;
  try {
    const s = JSON.parse(readFileSync(f, "utf8")) as Stamp;
    return s.version === t.version ? s : undefined;
  } catch {
    return undefined;
  }
}

export function toolStatus(t: ToolSpec, root = toolsDir(), pathVar = process.env.PATH ?? ""): ToolStatus {
  const bin = toolBinDir(root, t);
  const names = Object.keys(t.binaries);
  const base = { name: t.name, version: t.version };
  let cacheNote: string | undefined;
  if (allPresent(bin, t)) {
    if (readStamp(root, t)) {
      return { ...base, state: "cached", binDir: bin, binaries: names.map((n) => ({ name: n, path: join(bin, n), version: t.version })) };
    }
    // Built by hand or by an older run into the right place: trust it only if it says so.
    const found = names.map((n) => ({ name: n, path: join(bin, n), version: binaryVersion(join(bin, n), t.binaries[n]) ?? null }));
    if (found.every((b) => b.version === t.version)) return { ...base, state: "cached", binDir: bin, binaries: found, unstamped: true };
    const off = found.filter((b) => b.version !== t.version);
    cacheNote = `${bin} holds ${off.map((b) => `${b.name} ${b.version ?? "(no version)"}`).join(", ")}`;
  }
  const onPath = probePath(t, pathVar);
  const binaries = names.map((n) => ({ name: n, path: onPath[n]?.path ?? null, version: onPath[n]?.version ?? null }));
  if (binaries.every((b) => b.path && b.version === t.version)) return { ...base, state: "path", binDir: null, binaries };
  const wrong = binaries.filter((b) => b.path && b.version !== t.version);
  const notes = [
    cacheNote,
    wrong.length ? `on PATH at another version: ${wrong.map((b) => `${b.path} (${b.version ?? "version unknown"})`).join(", ")}` : undefined,
  ].filter(Boolean);
  const note = notes.length ? notes.join("; ") : undefined;
  return { ...base, state: "missing", binDir: null, binaries: names.map((n) => ({ name: n, path: null, version: null })), note };
}

export function toolsStatus(root = toolsDir(), pathVar = process.env.PATH ?? ""): ToolStatus[] {
  return loadVersions().tools.map((t) => toolStatus(t, root, pathVar));
}
