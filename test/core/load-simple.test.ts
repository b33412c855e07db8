/**
 * The loader's own reader for the usual host file (parseSimpleYaml) against
 * the YAML library: whenever it gives a value, the full parser gives the same
 * value and no diagnostic; files of the usual shape are read by it (else it
 * would save nothing); anything outside its shape is left to the full parser.
 */
import { readdirSync, readFileSync, mkdtempSync, rmSync, mkdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { diag, show } from "../../core/diagnostics.ts";
import { parseSimpleYaml, parseYaml } from "../../core/load.ts";
import { generateFleet } from "../../bench/eval-scale/generate.ts";

/** The leaves that are not text, with their option paths. */
function leaves(v: unknown, p: string, out: [string, unknown][] = []): [string, unknown][] {
  if (Array.isArray(v)) v.forEach((x, i) => leaves(x, `${p}[${i}]`, out));
  else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) leaves(x, p ? `${p}.${k}` : k, out);
  else if (typeof v !== "string") out.push([p, v]);
  return out;
}

/** The full parser's value, its diagnostics, and that it recorded no scalar as typed differently (the simple reader records none). */
function agrees(text: string, simple: unknown) {
  const full = parseYaml(text, "t.yaml", true);
  expect(full.diagnostics, text).toEqual([]);
  expect(simple, text).toStrictEqual(full.value);
  for (const [p, x] of leaves(full.value, "")) expect(diag("t.yaml", p, "e", show(x), "f").found, `${text} at ${p}`).toBe(show(x));
}

function same(text: string) {
  const simple = parseSimpleYaml(text);
  if (simple === undefined) return false;
  agrees(text, simple);
  expect(parseYaml(text, "t.yaml")).toStrictEqual({ value: simple, diagnostics: [] });
  return true;
}

const WORDS = ["client", "alice", "tag:router", "tag:t1", "10.1.0.0/24", "192.0.2.7", "https://hs.example.com", "alice@", "fe80::1", "a:b", "x_y", "/etc/x", "1.2.3", "180d", "1h30m", "v1.2", "0", "7", "8443", "123456789012345", "1234567890123456", "08", "0x1F", "0o17", "1e3", "1.5", "1.", "10e", "true", "false", "null", "True", "NULL", "FALSE", "a+b", "a.b.", "Infinity", "NaN", "yes", "no", "on", "off", "y", "~", ".inf", "a#b"];
const KEYS = ["imports", "address", "tailscale", "user", "tags", "acceptRoutes", "subnet-router", "routes", "lan", "derp", "derpPort", "k_1", "true", "Null", "FALSE", "on", "yes", "y", "No"];

/** A simple-shaped file: nested maps of words, flow lists and block lists. */
const node: fc.Memo<string[]> = fc.memo((d) =>
  fc.oneof(
    { depthSize: "small" },
    fc.constantFrom(...WORDS).map((w) => [` ${w}`]),
    fc.array(fc.constantFrom(...WORDS), { maxLength: 4 }).map((ws) => [` [${ws.join(", ")}]`]),
    fc.array(fc.constantFrom(...WORDS), { minLength: 1, maxLength: 3 }).map((ws) => ["", ...ws.map((w) => `  - ${w}`)]),
    d > 1 ? mapping(d - 1).map((ls) => ["", ...ls.map((l) => `  ${l}`)]) : fc.constant<string[]>([" x"]),
  ),
);
const mapping = (d: number) =>
  fc.uniqueArray(fc.tuple(fc.constantFrom(...KEYS), node(d)), { minLength: 1, maxLength: 5, selector: (t) => t[0] }).map((pairs) =>
    pairs.flatMap(([k, v]) => [`${k}:${v[0]}`, ...v.slice(1)]),
  );

const MUTATIONS = ["", " ", "  ", "\t", "\r", "# c", " # c", ":", ": ", "- ", "-", "[", "]", ",", "&a ", "*a", "!mkForce ", "'", '"', "{", "}", "---", "<<: ", "?", "|", ">", "\n", "\n\n", "key: x\n"];

describe("parseSimpleYaml", () => {
  it("reads the bench's host files and fleet files of the usual shape, as the YAML library does", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "mf-simple-"));
    try {
      mkdirSync(path.join(dir, "f"));
      generateFleet(path.join(dir, "f"), 30);
      let read = 0;
      for (const f of readdirSync(path.join(dir, "f"))) if (f !== "fleet.yaml" && same(readFileSync(path.join(dir, "f", f), "utf8"))) read++;
      expect(read).toBe(30);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("gives the full parser's value on generated files of its shape, and reads most of them", () => {
    let read = 0;
    let runs = 0;
    fc.assert(
      fc.property(mapping(3), fc.boolean(), (lines, comments) => {
        runs++;
        const text = (comments ? ["# a host", ...lines, "", "  # trailing"] : lines).join("\n") + "\n";
        if (same(text)) read++;
      }),
      { numRuns: 400 },
    );
    expect(read).toBeGreaterThan(runs / 10);
  });

  it("gives the full parser's value, or leaves the file to it, when files of its shape are changed anywhere", () => {
    fc.assert(
      fc.property(mapping(3), fc.nat(), fc.constantFrom(...MUTATIONS), fc.boolean(), (lines, at, m, replace) => {
        const text = lines.join("\n") + "\n";
        const i = at % (text.length + 1);
        const changed = text.slice(0, i) + m + text.slice(replace ? i + 1 : i);
        const simple = parseSimpleYaml(changed);
        if (simple === undefined) return;
        agrees(changed, simple);
      }),
      { numRuns: 3000 },
    );
  });

  it("leaves anything else to the full parser, which reports it", () => {
    for (const text of ["a: 1\na: 2\n", "a:\n", "a: &x 1\nb: *x\n", "a: !mkForce x\n", "a: 'x'\n", "a: x # c\n", "a:\n- x\n", "  a: x\n", "a: 08\n", "a: True\n", "a: {b: c}\n", "---\na: x\n", "a: [x\n", "a:\tx\n", "a: x\r\n", "", "# only\n", "true: x\n", "a: [" + "x,".repeat(1000) + "x]\n"])
      expect(parseSimpleYaml(text), JSON.stringify(text)).toBeUndefined();
    expect(parseYaml("a: 1\na: 2\n", "t.yaml").diagnostics.map((d) => d.found)).toEqual(["a second one at line 2:1 (the first is at line 1:1)"]);
  });
});
