/** Priorities and merging, table-driven (after nixpkgs lib/tests/modules.sh). */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { mergeDefinitions, type Definition } from "../../core/merge.ts";
import { mkDefault, mkForce, PRIORITY } from "../../core/priority.ts";
import { parseYaml } from "../../core/load.ts";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { writeFleet } from "./fleet-fixture.ts";

const schema = z.object({
  name: z.string().default("x"),
  flag: z.boolean().default(false),
  list: z.array(z.string()).default([]),
  rec: z.record(z.string(), z.number()).default({}),
  nested: z.object({ a: z.number().default(1), b: z.number().default(2) }).prefault({}),
});

const d = (file: string, value: unknown, priority: number = PRIORITY.plain): Definition => ({ file, value, priority });

describe("merge by priority", () => {
  const cases: { name: string; defs: Definition[]; want?: unknown; error?: RegExp }[] = [
    { name: "plain beats mkDefault", defs: [d("p", { name: mkDefault("a") }), d("h", { name: "b" })], want: { name: "b" } },
    { name: "mkForce beats plain", defs: [d("p", { name: mkForce("a") }), d("h", { name: "b" })], want: { name: "a" } },
    { name: "profile-level mkDefault (def priority 1000) loses to plain", defs: [d("p", { flag: true }, PRIORITY.mkDefault), d("h", { flag: false })], want: { flag: false } },
    { name: "equal scalars at one priority agree", defs: [d("a", { name: "x" }), d("b", { name: "x" })], want: { name: "x" } },
    { name: "different scalars at one priority conflict", defs: [d("a.yaml", { name: "x" }), d("b.yaml", { name: "y" })], error: /b\.yaml.*name.*as set in a\.yaml/ },
    { name: "lists concatenate at one priority", defs: [d("a", { list: ["1"] }), d("b", { list: ["2", "3"] })], want: { list: ["1", "2", "3"] } },
    { name: "a higher-priority list replaces a lower one", defs: [d("a", { list: mkDefault(["1"]) }), d("b", { list: ["2"] })], want: { list: ["2"] } },
    { name: "mkForce on a list wins alone", defs: [d("a", { list: ["1"] }), d("b", { list: mkForce(["2"]) })], want: { list: ["2"] } },
    { name: "records merge by key", defs: [d("a", { rec: { x: 1 } }), d("b", { rec: { y: 2 } })], want: { rec: { x: 1, y: 2 } } },
    { name: "records conflict per key", defs: [d("a", { rec: { x: 1 } }), d("b", { rec: { x: 2 } })], error: /rec\.x/ },
    { name: "objects merge per field", defs: [d("a", { nested: { a: 5 } }), d("b", { nested: { b: 6 } })], want: { nested: { a: 5, b: 6 } } },
    { name: "mkForce on an object applies to its leaves", defs: [d("a", { nested: mkForce({ a: 9 }) }), d("b", { nested: { a: 5 } })], want: { nested: { a: 9 } } },
    { name: "unknown option", defs: [d("h.yaml", { nmae: "x" })], error: /h\.yaml: nmae.*did you mean "name"/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const r = mergeDefinitions(schema, c.defs);
      const msgs = r.diagnostics.map((x) => `${x.file}: ${x.path}: ${x.expected} / ${x.found} / ${x.fix}`).join("\n");
      if (c.error) expect(msgs).toMatch(c.error);
      else {
        expect(msgs).toBe("");
        expect(r.value).toMatchObject(c.want as object);
      }
    });
  }

  it("records which file defined each option", () => {
    const r = mergeDefinitions(schema, [d("p.yaml", { name: mkDefault("a"), list: ["x"] }), d("h.yaml", { name: "b" })]);
    expect(r.sources.get("name")).toBe("h.yaml");
    expect(r.sources.get("list[0]")).toBe("p.yaml");
  });
});

describe("YAML priority tags", () => {
  it("!mkDefault and !mkForce wrap scalars, lists and maps", () => {
    const r = parseYaml("a: !mkForce 1\nb: !mkDefault [1, 2]\nc: !mkForce {x: 1}\n", "t.yaml");
    expect(r.diagnostics).toEqual([]);
    const v = r.value as Record<string, { priority: number; value: unknown }>;
    expect([v.a.priority, v.a.value]).toEqual([PRIORITY.mkForce, 1]);
    expect([v.b.priority, v.b.value]).toEqual([PRIORITY.mkDefault, [1, 2]]);
    expect([v.c.priority, v.c.value]).toEqual([PRIORITY.mkForce, { x: 1 }]);
  });
});

describe("fleet-level priorities", () => {
  it("a host overrides a profile default, and !mkForce beats a plain value from an imported file", async () => {
    const { dir, cleanup } = writeFleet({
      "_common.yaml": "tailscale:\n  acceptDns: false\n  acceptRoutes: !mkForce false\n",
      "laptop.yaml": "imports: [client, ./_common.yaml]\naddress: 10.0.0.5\ntailscale:\n  user: alice\n  acceptRoutes: true\n  enable: true\n",
    });
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      expect(r.diagnostics.filter((x) => x.severity === "error")).toEqual([]);
      const t = r.fleet!.hosts.laptop.tailscale;
      expect(t.acceptRoutes).toBe(false);
      expect(t.acceptDns).toBe(false);
      expect(t.upArgs).toContain("--accept-routes=false");
    } finally {
      cleanup();
    }
  });

  it("a host may be written in TypeScript", async () => {
    const { dir, cleanup } = writeFleet({
      "laptop.yaml": null,
      "laptop.ts": `export default { imports: ["client"], address: "10.0.0.5", tailscale: { user: "alice", hostname: "lap-ts" } };\n`,
    });
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      expect(r.diagnostics.filter((x) => x.severity === "error")).toEqual([]);
      expect(r.fleet!.hosts.laptop.tailscale.hostname).toBe("lap-ts");
      expect(r.fleet!.hosts.laptop.file).toMatch(/laptop\.ts$/);
    } finally {
      cleanup();
    }
  });
});
