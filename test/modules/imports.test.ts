/**
 * Imports run one way (issue 11): core/ never imports modules/ (the caller
 * passes the registry), and no two source files import each other, directly
 * or through others. Type-only imports count too: they are erased at run
 * time, but a cycle of types is still two files that cannot be read apart.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(__dirname, "../..");
const DIRS = ["core", "modules", "cli", "contract", "agent", "components", "provider", "lab/e2e"];

function tsFiles(dir: string): string[] {
  const full = path.join(ROOT, dir);
  let entries: string[];
  try {
    entries = readdirSync(full);
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const p = path.join(full, e);
    if (statSync(p).isDirectory()) return e === "node_modules" ? [] : tsFiles(path.join(dir, e));
    return e.endsWith(".ts") && !e.endsWith(".d.ts") ? [path.join(dir, e)] : [];
  });
}

/** Relative imports of a file: `import ... from`, `export ... from`, `import "..."`, `import("...")`, types included. */
export function importsOf(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+"(\.{1,2}\/[^"]+)"/gms)) out.push(m[1]);
  for (const m of text.matchAll(/^\s*import\s+"(\.{1,2}\/[^"]+)"/gm)) out.push(m[1]);
  for (const m of text.matchAll(/\bimport\(\s*"(\.{1,2}\/[^"]+)"\s*\)/g)) out.push(m[1]);
  return out.map((s) => path.normalize(path.join(path.dirname(file), s)));
}

/** Every cycle a depth-first walk meets, as `a -> b -> a`. */
export function findCycles(graph: Map<string, string[]>): string[] {
  const cycles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (f: string) => {
    state.set(f, "open");
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === "open") cycles.push([...stack.slice(stack.indexOf(t)), t].join(" -> "));
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, "done");
  };
  for (const f of graph.keys()) if (!state.has(f)) visit(f);
  return cycles;
}

describe("imports run one way", () => {
  const files = [...DIRS.flatMap(tsFiles), "index.ts"];

  it("core/ imports nothing from modules/ (evaluation takes the registry as an argument)", () => {
    const offenders = tsFiles("core").flatMap((f) => {
      const text = readFileSync(path.join(ROOT, f), "utf8");
      return [...text.matchAll(/from\s+"([^"]*modules\/[^"]*)"|import\(\s*"([^"]*modules\/[^"]*)"\s*\)/g)].map((m) => `${f} -> ${m[1] ?? m[2]}`);
    });
    expect(offenders).toEqual([]);
  });

  it("modules read each other through the typed config tree, never through casts", () => {
    const casts = tsFiles("modules").flatMap((f) => {
      const text = readFileSync(path.join(ROOT, f), "utf8");
      return [...text.matchAll(/Record<string, any>|\bas any\b|\.options\??\.\w|\.options\??\.?\[/g)].map((m) => `${f}: ${m[0]}`);
    });
    expect(casts).toEqual([]);
    // Every module in the registry has an entry in the typed tree (checked by the compiler in modules/index.ts).
    expect(readFileSync(path.join(ROOT, "modules/index.ts"), "utf8")).toContain("_everyModuleTyped");
  });

  it("no import cycles between source files", () => {
    const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => files.includes(t))]));
    expect(findCycles(graph)).toEqual([]);
  });

  it("the detector finds cycles, direct and through others", () => {
    expect(findCycles(new Map([["a", ["b"]], ["b", ["a"]]]))).toEqual(["a -> b -> a"]);
    expect(findCycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]]]))).toEqual(["a -> b -> c -> a"]);
    expect(findCycles(new Map([["a", ["b"]], ["b", []], ["c", ["a", "b"]]]))).toEqual([]);
    // The shapes issue 11 names: a command file taking its type from cli/main.ts, which loads it.
    expect(importsOf("cli/main.ts")).toContain(path.normalize("cli/commands/check.ts"));
    expect(importsOf("cli/commands/check.ts")).toContain(path.normalize("cli/command.ts"));
    expect(importsOf("cli/commands/check.ts")).not.toContain(path.normalize("cli/main.ts"));
  });
});
