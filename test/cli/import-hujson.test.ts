/**
 * core/hujson.ts, the HuJSON reader `meshfleet import` reads a headscale
 * policy with: JSON plus comments and trailing commas, nothing more, and an
 * error that names the line and column. Plain JSON reads as JSON.parse reads
 * it (property test); what headscale 0.29.2's own parser accepts and refuses
 * is compared on the real binary (`headscale policy check`) where it is built.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { HuJsonError, parseHuJson } from "../../core/hujson.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import * as rt from "../modules/realtools/index.ts";

function errorOf(text: string): { line: number; col: number; reason: string } {
  try {
    parseHuJson(text);
  } catch (e) {
    if (!(e instanceof HuJsonError)) throw e;
    return { line: e.position.line, col: e.position.col, reason: e.reason };
  }
  throw new Error(`no error for ${JSON.stringify(text)}`);
}

describe("parseHuJson", () => {
  it.each([
    ["line and block comments", '// head\n{ /* a */ "a": 1, // b\n "b": [1, 2] }', { a: 1, b: [1, 2] }],
    ["trailing commas in objects and arrays", '{"a": [1, 2,], "b": {"c": true,},}', { a: [1, 2], b: { c: true } }],
    ["a comment between key and colon", '{"a" /* x */ : 1}', { a: 1 }],
    ["escapes", '"\\u00e9\\n\\t\\"\\\\\\/"', 'é\n\t"\\/'],
    ["a surrogate pair", '"\\ud83d\\ude00"', "😀"],
    ["numbers", "[0, -1, 1.5, 2e3, -0.25E-2]", [0, -1, 1.5, 2000, -0.0025]],
    ["a byte order mark", '\ufeff{"a": null}', { a: null }],
    ["a comment at the end without newline", "[1] // end", [1]],
    ["an empty object and array", '{"a": {}, "b": []}', { a: {}, b: [] }],
  ])("reads %s", (_, text, want) => {
    expect(parseHuJson(text)).toEqual(want);
  });

  it("keeps __proto__ as a plain key", () => {
    const v = parseHuJson('{"__proto__": {"x": 1}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(Object.keys(v)).toEqual(["__proto__"]);
  });

  it.each([
    ["a missing comma", '{\n  "a": 1\n  "b": 2\n}', 3, 3, `expected ',' or '}' after the value of "a", found "\\""`],
    ["an unquoted key", "{\n  groups: {}\n}", 2, 3, 'expected a key in double quotes, found "groups"'],
    ["a single-quoted string", "{\"a\": 'x'}", 1, 7, "expected a string in double quotes, found a single quote (HuJSON strings use \")"],
    ["two commas", "[1,,2]", 1, 4, "expected a value after ',', found another ','"],
    ["a leading comma", "[,1]", 1, 2, "expected a value, found \",\""],
    ["an unclosed block comment", '{"a": 1 /* x', 1, 9, "a /* comment is not closed with */"],
    ["an unclosed object", '{"a": 1,', 1, 9, "an object is not closed with }"],
    ["an unclosed string", '{"a": "x\n}', 1, 9, 'a string is not closed with " before the end of the line'],
    ["a duplicate key", '{"a": 1,\n "a": 2}', 2, 2, 'the key "a" appears twice in one object (first at line 1, column 2)'],
    ["NaN", "[NaN]", 1, 2, 'expected a value (object, array, string, number, true, false or null), found "NaN"'],
    ["a leading zero", "[01]", 1, 2, 'expected a number (no leading zeros, hex or trailing dot), found "01"'],
    ["hex", "[0x1]", 1, 2, 'expected a number (no leading zeros, hex or trailing dot), found "0x"'],
    ["a bad escape", '"\\x41"', 1, 2, "an unknown escape \\x in a string (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"],
    ["two values", "{} {}", 1, 4, 'expected the end of the file after the value, found "{"'],
    ["an empty file", "  // only a comment\n", 2, 1, "expected a JSON value, found the end of the file (an empty file)"],
    ["a lone slash", "[1 / 2]", 1, 4, "expected // or /* to start a comment, found a single /"],
    ["a raw tab in a string", '"a\tb"', 1, 3, "a raw control character U+0009 in a string (write it as an escape)"],
  ])("refuses %s at its line and column", (_, text, line, col, reason) => {
    expect(errorOf(text)).toEqual({ line, col, reason });
  });

  it("reads any JSON as JSON.parse does", () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (v, pretty) => {
        const text = JSON.stringify(v, null, pretty ? 2 : 0);
        expect(parseHuJson(text)).toStrictEqual(JSON.parse(text));
      }),
      { numRuns: 300 },
    );
  });

  it("reads JSON with comments and trailing commas added as the JSON without them", () => {
    const withExtras = (v: unknown, indent: string): string => {
      if (Array.isArray(v)) return v.length === 0 ? "[ /* empty */ ]" : `[\n${v.map((x) => `${indent}  ${withExtras(x, indent + "  ")}, // item`).join("\n")}\n${indent}]`;
      if (v && typeof v === "object") {
        const es = Object.entries(v as Record<string, unknown>);
        return es.length === 0 ? "{}" : `{\n${es.map(([k, x]) => `${indent}  /* k */ ${JSON.stringify(k)}: ${withExtras(x, indent + "  ")},`).join("\n")}\n${indent}}`;
      }
      return JSON.stringify(v);
    };
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        const plain = JSON.parse(JSON.stringify(v));
        expect(parseHuJson(`// head\n${withExtras(plain, "")}\n`)).toStrictEqual(plain);
      }),
      { numRuns: 200 },
    );
  });
});

const HEADSCALE = rt.toolPath("headscale");

describe.skipIf(skipUnlessCi(!HEADSCALE && "headscale 0.29.2 is not built: run `meshfleet tools build`"))("against headscale 0.29.2's own HuJSON reader (policy check)", () => {
  // Each text is a whole policy; both readers must give the same answer, and the same line and column
  // where hujson itself reports one.
  const cases: [string, string, "ok" | "syntax"][] = [
    ["comments and trailing commas", '// p\n{\n  "groups": {"group:a": ["alice@",],}, /* x */\n  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"],},],\n}\n', "ok"],
    ["a missing comma", '{\n  "groups": {"group:a": ["alice@"]}\n  "acls": []\n}\n', "syntax"],
    ["an unquoted key", "{ groups: {} }\n", "syntax"],
    ["a duplicate key", '{"acls": [], "acls": []}\n', "syntax"],
    ["a single-quoted string", "{\"groups\": {'group:a': []}}\n", "syntax"],
    ["two commas", '{"acls": [,]}\n', "syntax"],
    ["a block comment left open", '{"acls": [] /* \n', "syntax"],
  ];

  it.each(cases)("%s: both say %s", async (_, text, want) => {
    const dir = mkdtempSync(join(tmpdir(), "mf-hujson-"));
    try {
      const cfg = rt.layoutHeadscale(dir, { config: MINIMAL_CONFIG, policy: "{}\n", noiseKey: NOISE });
      const f = join(dir, "p.hujson");
      writeFileSync(f, text);
      const r = spawnSync(HEADSCALE!, ["policy", "check", "-c", cfg, "-f", f, "--bypass-grpc-and-access-database-directly", "--force"], { encoding: "utf8", timeout: 60_000 });
      const out = r.stdout + r.stderr;
      const theirs = r.status === 0 ? "ok" : /parsing HuJSON|jsontext: duplicate/.test(out) ? "syntax" : `other: ${out}`;
      let ours: string = "ok";
      let where: string | undefined;
      try {
        parseHuJson(text);
      } catch (e) {
        ours = "syntax";
        where = `line ${(e as HuJsonError).position.line}, column ${(e as HuJsonError).position.col}`;
      }
      expect({ ours, theirs }).toEqual({ ours: want, theirs: want });
      const at = /hujson: (line \d+, column \d+)/.exec(out)?.[1];
      if (at) expect(where).toBe(at);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

const NOISE = "privkey:" + "1".repeat(64);
const MINIMAL_CONFIG = `server_url: http://127.0.0.1:18080
listen_addr: 127.0.0.1:18080
noise:
  private_key_path: /var/lib/headscale/noise_private.key
prefixes:
  v4: 100.64.0.0/10
database:
  type: sqlite
  sqlite:
    path: /var/lib/headscale/db.sqlite
derp:
  urls: []
  server:
    enabled: false
dns:
  magic_dns: false
  override_local_dns: false
policy:
  mode: file
  path: /etc/headscale/policy.hujson
unix_socket: /var/run/headscale/headscale.sock
disable_check_updates: true
`;
