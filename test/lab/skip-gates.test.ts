/**
 * Every place in test/ that can skip a test goes through the CI gate
 * (test/lab/ci-gate.ts, or realtools' `missing`, which uses it): outside CI a
 * missing prerequisite skips and says why, with CI set it fails naming what is
 * missing. A bare `it.skipIf(!existsSync(...))` would pass CI silently on a
 * machine without the tool, so this test refuses it.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { skipUnlessCi, strict } from "./ci-gate.ts";
import { missing } from "../modules/realtools/index.ts";

const TEST_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    if (n === "node_modules" || n === "__snapshots__" || n === "__goldens__" || n === "fixtures") return [];
    return statSync(p).isDirectory() ? files(p) : /\.(ts|mts|mjs)$/.test(n) ? [p] : [];
  });
}

/** The argument text of a `skipIf(` call, up to its matching parenthesis. */
function argOf(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "(") depth++;
    else if (text[i] === ")" && --depth === 0) return text.slice(open + 1, i);
  }
  return text.slice(open + 1);
}

/** Gated: the condition is the gate itself, or a const the file assigns from it. */
function gated(arg: string, text: string): boolean {
  const a = arg.trim();
  if (/^(skipUnlessCi|rt\.missing|missing)\(/.test(a)) return true;
  const name = /^[A-Za-z_$][\w$]*$/.test(a) ? a : null;
  return !!name && new RegExp(`const ${name} = (skipUnlessCi|rt\\.missing|missing)\\(`).test(text);
}

describe("skip gates in test/", () => {
  const all = files(TEST_DIR).filter((f) => f !== fileURLToPath(import.meta.url));

  it("every skipIf goes through the CI gate", () => {
    const bad: string[] = [];
    let count = 0;
    for (const f of all) {
      const text = readFileSync(f, "utf8");
      for (const m of text.matchAll(/\.skipIf\(/g)) {
        const line = text.slice(text.lastIndexOf("\n", m.index) + 1).trimStart();
        if (line.startsWith("*") || line.startsWith("/*") || line.startsWith("//")) continue; // a comment about skipIf
        count++;
        const arg = argOf(text, m.index! + ".skipIf".length);
        if (!gated(arg, text)) bad.push(`${path.relative(TEST_DIR, f)}:${text.slice(0, m.index).split("\n").length}: skipIf(${arg.trim().slice(0, 60)})`);
      }
    }
    expect(count).toBeGreaterThan(30);
    expect(bad).toEqual([]);
  });

  it("no unconditional skip, todo, runIf or run-time skip outside the gate", () => {
    const bad: string[] = [];
    for (const f of all) {
      if (f.endsWith(path.join("lab", "ci-gate.ts"))) continue;
      const lines = readFileSync(f, "utf8").split("\n");
      lines.forEach((l, i) => {
        // runIf(cond) is skipIf(!cond) with no place for the gate: a test that needs something uses skipIf(skipUnlessCi(...)).
        if (/\b(it|test|describe)\.runIf\(/.test(l) && !/^\s*(\*|\/\/)/.test(l)) bad.push(`${path.relative(TEST_DIR, f)}:${i + 1}: ${l.trim()} (use skipIf(skipUnlessCi(...)))`);
        if (/\b(it|test|describe)\.(skip|todo)\b(?!If)/.test(l) && !/strict\(\)/.test(l)) bad.push(`${path.relative(TEST_DIR, f)}:${i + 1}: ${l.trim()}`);
        if (/\bctx\.skip\(|\bcontext\.skip\(/.test(l)) bad.push(`${path.relative(TEST_DIR, f)}:${i + 1}: ${l.trim()} (use skipOrFail)`);
        // A bare return when a tool, a file or root is missing passes the rest of the test silently, in CI too.
        if (/^\s*if \(.*\b(existsSync|isRoot|getuid|command -v)\b.*\) *\{? *return *;/.test(l) && !/skipUnlessCi\(/.test(l)) bad.push(`${path.relative(TEST_DIR, f)}:${i + 1}: ${l.trim()} (use if (skipUnlessCi(...)) return;)`);
      });
    }
    expect(bad).toEqual([]);
  });

  it("the gate fails in CI and skips outside it, naming what is missing", () => {
    const saved = { CI: process.env.CI, REQ: process.env.MESHFLEET_REQUIRE_TOOLS, TOOLS: process.env.MESHFLEET_TOOLS_DIR };
    try {
      process.env.CI = "true";
      expect(strict()).toBe(true);
      expect(() => skipUnlessCi("nginx is not installed")).toThrow("CI: cannot skip: nginx is not installed");
      expect(skipUnlessCi(false)).toBe(false);
      delete process.env.CI;
      delete process.env.MESHFLEET_REQUIRE_TOOLS;
      expect(strict()).toBe(false);
      expect(skipUnlessCi("nginx is not installed")).toBe(true);
      // realtools' gate uses the same rule: an empty tools folder has no headscale.
      process.env.MESHFLEET_TOOLS_DIR = mkdtempSync(path.join(tmpdir(), "mf-no-tools-"));
      expect(missing("headscale")).toMatch(/^skipped: headscale is not installed/);
      process.env.CI = "1";
      expect(() => missing("headscale")).toThrow(/CI: cannot skip: headscale is not installed/);
    } finally {
      if (saved.CI === undefined) delete process.env.CI; else process.env.CI = saved.CI;
      if (process.env.MESHFLEET_TOOLS_DIR !== saved.TOOLS) rmSync(process.env.MESHFLEET_TOOLS_DIR!, { recursive: true, force: true });
      if (saved.TOOLS === undefined) delete process.env.MESHFLEET_TOOLS_DIR; else process.env.MESHFLEET_TOOLS_DIR = saved.TOOLS;
      if (saved.REQ === undefined) delete process.env.MESHFLEET_REQUIRE_TOOLS; else process.env.MESHFLEET_REQUIRE_TOOLS = saved.REQ;
    }
  });
});
