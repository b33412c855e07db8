/**
 * core/merge.ts at its edges, beside the table of merge.test.ts: the schema
 * kinds it looks through, where each value came from, the exact conflict and
 * unknown-option diagnostics, and how zod's issues become diagnostics
 * (expected, found, fix, file) for each issue code. Written against the
 * mutants Stryker left alive (npm run mutate -- merge).
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { definitionsAt, describeOf, mergeDefinitions, schemaKind, sourceOf, stripPrio, zodDiagnostics, type Definition } from "../../core/merge.ts";
import { mkDefault, mkForce, mkOverride, Prio, PRIORITY } from "../../core/priority.ts";

const d = (file: string, value: unknown, priority: number = PRIORITY.plain): Definition => ({ file, value, priority });
const schema = z.object({
  name: z.string().default("x"),
  flag: z.boolean().default(false),
  list: z.array(z.string()).default([]),
  rec: z.record(z.string(), z.number()).default({}),
  nested: z.object({ a: z.number().default(1), b: z.number().default(2) }).prefault({}),
});

describe("schemaKind and describeOf look through wrappers", () => {
  it("to the object, record, array or leaf underneath", () => {
    const obj = z.object({ a: z.string() });
    const k = schemaKind(obj.optional().nullable().default({ a: "x" }).readonly());
    expect(k.kind).toBe("object");
    expect(Object.keys((k as { shape: object }).shape)).toEqual(["a"]);
    expect(schemaKind(obj.catch({ a: "" })).kind).toBe("object");
    expect(schemaKind(obj.prefault({ a: "" })).kind).toBe("object");
    expect(schemaKind(obj.transform((x) => x)).kind).toBe("object");
    const num = z.number();
    const rec = schemaKind(z.record(z.string(), num).nullable());
    expect(rec).toEqual({ kind: "record", value: num });
    expect(schemaKind(z.array(z.string()).optional())).toEqual({ kind: "array" });
    expect(schemaKind(z.string().default("x"))).toEqual({ kind: "leaf" });
    expect(schemaKind(z.union([obj, z.string()]))).toEqual({ kind: "leaf" });
    expect(schemaKind(undefined as never)).toEqual({ kind: "leaf" });
    expect(schemaKind({} as never)).toEqual({ kind: "leaf" });
  });

  it("to the first description", () => {
    expect(describeOf(z.string().describe("outer").optional())).toBe("outer");
    expect(describeOf(z.string().describe("inner").optional().default("x"))).toBe("inner");
    expect(describeOf(z.string().describe("piped").transform((s) => s.length))).toBe("piped");
    expect(describeOf(z.string().optional())).toBeUndefined();
    expect(describeOf(undefined)).toBeUndefined();
    // Not a zod schema at all (an option path off the schema): no description, no error.
    expect(describeOf({} as never)).toBeUndefined();
  });
});

describe("stripPrio", () => {
  it("removes priority wrappers at any depth, nested ones too", () => {
    expect(stripPrio(mkForce(mkDefault(1)))).toBe(1);
    expect(stripPrio({ a: [mkForce("x"), { b: mkDefault(2) }], c: null })).toEqual({ a: ["x", { b: 2 }], c: null });
    expect(stripPrio([1, mkForce([2])])).toEqual([1, [2]]);
    expect(stripPrio("s")).toBe("s");
  });
});

describe("definitionsAt", () => {
  it("each definition's value at a path, with the priority of the wrappers on the way down", () => {
    const defs = [
      d("a", { x: { y: 1 } }),
      d("b", { x: mkForce({ y: 2 }) }),
      d("c", mkDefault({ x: { y: 3 } })),
      d("none", { z: 1 }),
      d("undef", { x: { y: undefined } }),
      d("scalar", { x: 5 }),
      d("proto", { x: Object.create({ y: 9 }) }),
    ];
    expect(definitionsAt(defs, ["x", "y"])).toEqual([
      { file: "a", priority: PRIORITY.plain, value: 1 },
      { file: "b", priority: PRIORITY.mkForce, value: 2 },
      { file: "c", priority: PRIORITY.mkDefault, value: 3 },
    ]);
    // A wrapper at the end stays for the merge to read.
    const [leaf] = definitionsAt([d("a", { x: mkForce(7) })], ["x"]);
    expect(leaf.priority).toBe(PRIORITY.plain);
    expect(leaf.value).toEqual(mkForce(7));
    expect(definitionsAt([d("a", 1), d("b", undefined)], [])).toEqual([{ file: "a", priority: PRIORITY.plain, value: 1 }]);
    expect(definitionsAt([d("a", { toString: 1 }), d("b", {})], ["toString"])).toEqual([{ file: "a", priority: PRIORITY.plain, value: 1 }]);
    expect(definitionsAt([], ["x"])).toEqual([]);
  });
});

describe("mergeDefinitions", () => {
  it("nothing defined: undefined, no source", () => {
    const r = mergeDefinitions(schema, [d("a", undefined), d("b", mkForce(undefined))]);
    expect(r).toEqual({ value: undefined, sources: new Map(), diagnostics: [] });
  });

  it("a value wrapped in a priority takes that priority, even nested wrappers (the innermost wins)", () => {
    const r = mergeDefinitions(schema, [d("a", { name: mkOverride(10, mkOverride(200, "lo")) }), d("b", { name: mkOverride(150, "hi") })]);
    expect(r.value).toEqual({ name: "hi" });
    expect(r.diagnostics).toEqual([]);
    const r2 = mergeDefinitions(z.string(), [d("a", mkForce("forced"), PRIORITY.mkDefault), d("b", "plain")]);
    expect(r2.value).toBe("forced");
  });

  it("keys whose every definition is undefined are left out", () => {
    const r = mergeDefinitions(schema, [d("a", { name: undefined, flag: true })]);
    expect(r.value).toEqual({ flag: true });
    expect(Object.keys(r.value as object)).toEqual(["flag"]);
  });

  it("records each path's file: the object, each leaf, each list item; none when not tracking", () => {
    const defs = [d("p.yaml", { name: mkDefault("a"), list: ["x"], rec: { k: 1 } }), d("h.yaml", { name: "b", list: ["y", "z"], nested: { a: 3 } })];
    const r = mergeDefinitions(schema, defs, "host");
    expect(Object.fromEntries(r.sources)).toEqual({
      host: "p.yaml",
      "host.name": "h.yaml",
      "host.list": "p.yaml",
      "host.list[0]": "p.yaml",
      "host.list[1]": "h.yaml",
      "host.list[2]": "h.yaml",
      "host.rec": "p.yaml",
      "host.rec.k": "p.yaml",
      "host.nested": "h.yaml",
      "host.nested.a": "h.yaml",
    });
    const quiet = mergeDefinitions(schema, defs, "host", false);
    expect(quiet.sources.size).toBe(0);
    expect(quiet.value).toEqual(r.value);
  });

  it("lists: items lose their wrappers; a list and a non-list at one priority are a conflict, not a concatenation", () => {
    expect(mergeDefinitions(schema, [d("a", { list: [mkForce("x"), "y"] })]).value).toEqual({ list: ["x", "y"] });
    const r = mergeDefinitions(schema, [d("a.yaml", { list: ["x"] }), d("b.yaml", { list: "y" })]);
    expect(r.value).toEqual({ list: ["x"] });
    expect(r.diagnostics.map((x) => [x.file, x.path, x.expected, x.found])).toEqual([["b.yaml", "list", 'one value at priority 100 (as set in a.yaml: ["x"])', '"y" here']]);
    // A lower-priority non-list does not stop the winners concatenating.
    expect(mergeDefinitions(schema, [d("a", { list: ["x"] }), d("b", { list: ["y"] }), d("c", { list: mkDefault("z") })]).value).toEqual({ list: ["x", "y"] });
  });

  it("an object and a non-object at one priority are a conflict; the first one's value stays", () => {
    const r = mergeDefinitions(schema, [d("a.yaml", { nested: { a: 1 } }), d("b.yaml", { nested: 5 })]);
    expect(r.value).toEqual({ nested: { a: 1 } });
    expect(r.diagnostics).toEqual([
      {
        severity: "error",
        file: "b.yaml",
        path: "nested",
        expected: 'one value at priority 100 (as set in a.yaml: {"a":1})',
        found: "5 here",
        fix: "make the two files agree, or give one of them priority with !mkForce (or drop to !mkDefault)",
      },
    ]);
  });

  it("every winner that disagrees with the first is named; values equal after unwrapping agree", () => {
    const r = mergeDefinitions(z.string(), [d("a", "x"), d("b", "y"), d("c", "x"), d("d", "z"), d("e", "w", PRIORITY.mkDefault)], "opt");
    expect(r.value).toBe("x");
    expect(r.diagnostics.map((x) => [x.file, x.found])).toEqual([
      ["b", '"y" here'],
      ["d", '"z" here'],
    ]);
    expect(mergeDefinitions(z.array(z.string()), [d("a", ["x"]), d("b", mkDefault(["y"]))]).diagnostics).toEqual([]);
    expect(mergeDefinitions(z.any(), [d("a", { k: mkForce(1) }), d("b", { k: 1 })]).diagnostics).toEqual([]);
    expect(mergeDefinitions(z.number(), [d("a", 1, 5), d("b", 2, 5)]).diagnostics[0].expected).toBe("one value at priority 5 (as set in a: 1)");
    // Lists concatenate only where the schema has a list: elsewhere two lists are two values.
    const leaf = mergeDefinitions(z.any(), [d("a", [1]), d("b", [2])], "opt");
    expect(leaf.value).toEqual([1]);
    expect(leaf.diagnostics.map((x) => [x.file, x.found])).toEqual([["b", "[2] here"]]);
  });

  it("an unknown option: one diagnostic per file that sets it, with a near name or a way out", () => {
    const r = mergeDefinitions(schema, [d("a.yaml", { nmae: "x", zzzzzz: 1 }), d("b.yaml", { nmae: "y" })], "host");
    expect(r.value).toEqual({});
    expect(r.diagnostics.map((x) => [x.file, x.path, x.expected, x.found, x.fix])).toEqual([
      ["a.yaml", "host.nmae", "one of the options name, flag, list, rec, nested", 'unknown option "nmae"', 'did you mean "name"? Rename it.'],
      ["b.yaml", "host.nmae", "one of the options name, flag, list, rec, nested", 'unknown option "nmae"', 'did you mean "name"? Rename it.'],
      ["a.yaml", "host.zzzzzz", "one of the options name, flag, list, rec, nested", 'unknown option "zzzzzz"', 'remove "zzzzzz" or move it under the module it belongs to'],
    ]);
  });

  it("records take any key; keys at the top level have no leading dot, list items are indexed", () => {
    const r = mergeDefinitions(z.record(z.string(), z.array(z.number())), [d("a", { x: [1] }), d("b", { x: [2], y: [3] })]);
    expect(r.value).toEqual({ x: [1, 2], y: [3] });
    expect([...r.sources.keys()].sort()).toEqual(["", "x", "x[0]", "x[1]", "y", "y[0]"]);
  });
});

describe("sourceOf", () => {
  const sources = new Map([
    ["", "root.yaml"],
    ["a", "a.yaml"],
    ["a.b[2]", "item.yaml"],
  ]);
  it("the path's own file, else the closest enclosing path's, else the fallback", () => {
    expect(sourceOf(sources, "a.b[2]", "f")).toBe("item.yaml");
    expect(sourceOf(sources, "a.b[2].c", "f")).toBe("item.yaml");
    expect(sourceOf(sources, "a.b[3]", "f")).toBe("a.yaml");
    expect(sourceOf(sources, "a.b", "f")).toBe("a.yaml");
    expect(sourceOf(sources, "x.y", "f")).toBe("root.yaml");
    expect(sourceOf(new Map([["a", "a.yaml"]]), "x[1].y", "f")).toBe("f");
    expect(sourceOf(new Map(), "", "f")).toBe("f");
    // A path without a separator goes straight to the top, not to a shorter name.
    expect(sourceOf(new Map([["ab", "ab.yaml"]]), "abc", "f")).toBe("f");
  });
});

describe("zodDiagnostics", () => {
  const diags = (s: z.ZodType, value: unknown, sources = new Map<string, string>(), prefix = "") => {
    // As the loader parses (core/eval.ts): with the input in each issue.
    const r = s.safeParse(value, { reportInput: true });
    expect(r.success).toBe(false);
    return zodDiagnostics(s, r.error!, sources, "fallback.yaml", prefix).map(({ file, path, expected, found, fix }) => ({ file, path, expected, found, fix }));
  };

  it("a missing required option: expected names the type, the fix names the option and its description", () => {
    const s = z.object({ port: z.number().describe("the port to listen on"), host: z.string() });
    expect(diags(s, { host: "h" }, new Map(), "svc")).toEqual([
      { file: "fallback.yaml", path: "svc.port", expected: "a value (number) — this option is required", found: "nothing", fix: "set svc.port (the port to listen on)" },
    ]);
    expect(diags(s, { port: 1 })[0]).toEqual({ file: "fallback.yaml", path: "host", expected: "a value (string) — this option is required", found: "nothing", fix: "set host" });
  });

  it("a wrong type: a/an by the type's first letter, the value found, the file that set it", () => {
    const s = z.object({ n: z.number(), o: z.object({ x: z.string() }), arr: z.array(z.string()) });
    const sources = new Map([["n", "n.yaml"], ["o", "o.yaml"]]);
    expect(diags(s, { n: "7", o: 3, arr: "x" }, sources)).toEqual([
      { file: "n.yaml", path: "n", expected: "a number", found: '"7"', fix: "set n to a number" },
      { file: "o.yaml", path: "o", expected: "an object", found: "3", fix: "set o to an object" },
      { file: "fallback.yaml", path: "arr", expected: "an array", found: '"x"', fix: "set arr to an array" },
    ]);
  });

  it("enums, bounds on lists, strings and numbers", () => {
    const s = z.object({
      mode: z.enum(["on", "off"]).describe("the mode"),
      l: z.array(z.number()).min(2).max(3),
      s: z.string().min(2).max(4),
      n: z.number().min(1).max(9),
    });
    expect(diags(s, { mode: "auto", l: [1], s: "x", n: 0 })).toEqual([
      { file: "fallback.yaml", path: "mode", expected: 'one of "on", "off"', found: '"auto"', fix: 'set mode to one of "on", "off" — the mode' },
      { file: "fallback.yaml", path: "l", expected: "at least 2 item(s)", found: "[1]", fix: "set l to at least 2 item(s)" },
      { file: "fallback.yaml", path: "s", expected: "at least 2 character(s)", found: '"x"', fix: "set s to at least 2 character(s)" },
      { file: "fallback.yaml", path: "n", expected: "at least 1", found: "0", fix: "set n to at least 1" },
    ]);
    expect(diags(s, { mode: "on", l: [1, 2, 3, 4], s: "xxxxx", n: 10 }).map((x) => x.expected)).toEqual(["at most 3 item(s)", "at most 4 character(s)", "at most 9"]);
  });

  it("formats: zod's own message becomes 'a <format>', a message of ours stays", () => {
    const s = z.object({ mail: z.email(), code: z.string().regex(/^[a-z]+$/, "lowercase letters") });
    expect(diags(s, { mail: "nope", code: "ABC" })).toEqual([
      { file: "fallback.yaml", path: "mail", expected: "a email", found: '"nope"', fix: "set mail to a email" },
      { file: "fallback.yaml", path: "code", expected: "lowercase letters", found: '"ABC"', fix: "set code to lowercase letters" },
    ]);
  });

  it("without a prefix the path starts at the schema; without reportInput nothing is found", () => {
    const s = z.object({ n: z.enum(["a"]) });
    const r = s.safeParse({ n: "x" });
    expect(zodDiagnostics(s, r.error!, new Map(), "f.yaml").map((x) => [x.path, x.expected, x.found])).toEqual([["n", 'one of "a"', "nothing"]]);
  });

  it("a check that fails on a missing value still says what to set it to", () => {
    const s = z.object({ v: z.any().refine(() => false, "a valid thing") });
    expect(diags(s, {})).toEqual([{ file: "fallback.yaml", path: "v", expected: "a valid thing", found: "nothing", fix: "set v to a valid thing" }]);
  });

  it("unknown keys, custom checks with and without their own expected/found/fix, other codes", () => {
    const strict = z.strictObject({ a: z.number() });
    expect(diags(strict, { a: 1, b: 2, c: 3 })).toEqual([{ file: "fallback.yaml", path: "", expected: "only known options", found: 'unknown option(s) "b", "c"', fix: "remove them or fix their spelling" }]);
    const own = z.object({
      v: z.string().check((ctx) => {
        ctx.issues.push({ code: "custom", input: ctx.value, message: "m", params: { expected: "a short name", found: "a long one", fix: "shorten it" } });
      }),
    });
    expect(diags(own, { v: "x" })).toEqual([{ file: "fallback.yaml", path: "v", expected: "a short name", found: "a long one", fix: "shorten it" }]);
    const plain = z.object({ v: z.string().refine(() => false, "a valid thing") });
    expect(diags(plain, { v: "x" })).toEqual([{ file: "fallback.yaml", path: "v", expected: "a valid thing", found: '"x"', fix: "set v to a valid thing" }]);
    const union = z.object({ u: z.union([z.number(), z.boolean()]) });
    const [u] = diags(union, { u: "s" });
    expect(u.path).toBe("u");
    expect(u.found).toBe('"s"');
    expect(u.expected).toBe(union.safeParse({ u: "s" }, { reportInput: true }).error!.issues[0].message);
  });

  it("option descriptions are found through records, lists (wrapped too) and leaves", () => {
    const s = z.object({
      peers: z.record(z.string(), z.object({ port: z.number().describe("peer port") })),
      routes: z.array(z.object({ via: z.string().describe("gateway") })).default([]),
      tags: z.array(z.string().describe("a tag")).optional().default([]),
      name: z.string().describe("the name"),
    });
    const got = diags(s, { peers: { a: { port: "x" } }, routes: [{ via: 1 }], tags: [2], name: { deep: 1 } });
    expect(got.map((x) => [x.path, x.fix])).toEqual([
      ["peers.a.port", "set peers.a.port to a number — peer port"],
      ["routes[0].via", "set routes[0].via to a string — gateway"],
      ["tags[0]", "set tags[0] to a string — a tag"],
      ["name", "set name to a string — the name"],
    ]);
  });

  it("a path into a leaf keeps the leaf's description; unknown keys are reported where they are", () => {
    const s = z.object({ any: z.any().describe("free form").pipe(z.object({ x: z.number() })) });
    expect(diags(s, { any: { x: "1" } }).map((x) => [x.path, x.fix])).toEqual([["any.x", "set any.x to a number — free form"]]);
    const t = z.object({ o: z.strictObject({ a: z.number() }).describe("the o") });
    expect(diags(t, { o: { a: 1, b: 2 } }).map((x) => [x.path, x.fix])).toEqual([["o", "remove them or fix their spelling"]]);
  });
});
