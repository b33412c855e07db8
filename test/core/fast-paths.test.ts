/**
 * The shortcuts bench/eval-scale needs, held to what they stand for:
 * - render checks a bundle field by field with a memo of fields already
 *   accepted, and assembles the hash from the fields' canonical JSON: the
 *   hash must be bundleHash, and a field the contract refuses must be
 *   refused with the full check's problems however often it was seen valid;
 * - canonicalJson written out directly must equal the sorted copy's JSON;
 * - evaluation parses each distinct option value once per evaluation: hosts
 *   must still get their own copies, and a bad value must be reported as
 *   before.
 */
import { createHash } from "node:crypto";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { generateFleet } from "../../bench/eval-scale/generate.ts";
import { bundleHash, canonicalJson, checkSealed, parseBundle, sealBundle, sha256, sha256Shared, type Bundle } from "../../contract/bundle.ts";
import { evaluateFleet, formatDiagnostics, type FleetSystem, type HostSystem, type ModuleRegistry } from "../../core/index.ts";
import { defineModule } from "../../core/module.ts";
import { renderHost, renderHostBody } from "../../core/render.ts";
import { secretRefs } from "../../core/bundle.ts";
import { REGISTRY } from "../../modules/index.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "mf-fast-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function fleetOf(dir: string, registry: ModuleRegistry = REGISTRY): Promise<FleetSystem> {
  const r = await evaluateFleet(registry, dir, "t");
  expect(r.fleet, formatDiagnostics(r.diagnostics)).toBeDefined();
  return r.fleet!;
}
const secretsOf = (h: HostSystem) => Object.fromEntries(secretRefs(h).map((k) => [k, `secret-${k}`]));
const render = (h: HostSystem) => renderHost(h, secretsOf(h));

/** The reference: JSON of a copy with keys sorted at every level. */
function sortedCopyJson(v: unknown): string {
  const sorted = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sorted);
    if (x && typeof x === "object" && typeof (x as { toJSON?: unknown }).toJSON !== "function") {
      const out: Record<string, unknown> = Object.create(null);
      for (const k of Object.keys(x).sort()) out[k] = sorted((x as Record<string, unknown>)[k]);
      return out;
    }
    return x;
  };
  return JSON.stringify(sorted(v));
}

describe("render: field-by-field check and hash", () => {
  it("every host of the home fleet and of a generated one: hash is bundleHash, the agent accepts the bundle", async () => {
    const dir = path.join(root, "gen");
    mkdirSync(dir);
    generateFleet(dir, 30);
    for (const d of ["hosts/home", "hosts/lab", dir]) {
      const f = await fleetOf(d);
      for (const h of Object.values(f.hosts)) {
        const b = render(h);
        expect(b.hash, `${d} ${h.name}`).toBe(bundleHash(b));
        expect(checkSealed(b)).toEqual([]);
        const r = parseBundle(JSON.parse(JSON.stringify(b)));
        expect(r.ok ? [] : r.problems, `${d} ${h.name}`).toEqual([]);
        // Rendered again (every field now in the memo): the same bundle.
        expect(render(h)).toEqual(b);
      }
    }
  });

  it("a field the contract refuses is refused with the full check's problems, even after the valid one was memoised", async () => {
    const f = await fleetOf("hosts/lab");
    const h = Object.values(f.hosts).find((x) => x.units.length > 0)!;
    render(h); // the host's valid units are in the memo now
    const bad: HostSystem = { ...h, units: [...h.units, { ...h.units[0], name: "not a unit" }] };
    const expected = (() => {
      const b = { ...render(h) } as Partial<Bundle>;
      delete b.hash;
      const body = { ...b, units: [...b.units!, { ...b.units![0], name: "not a unit" }].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0)) };
      return checkSealed(sealBundle(body as Omit<Bundle, "hash">));
    })();
    expect(expected.length).toBeGreaterThan(0);
    for (let i = 0; i < 2; i++) {
      let err: unknown;
      try {
        render(bad);
      } catch (e) {
        err = e;
      }
      expect((err as Error)?.message, "render must refuse it every time").toContain("breaks the bundle contract");
      for (const p of expected) expect((err as Error).message).toContain(p);
    }
    // And a cross-field rule (two units at one path) still holds on the short path.
    const twice: HostSystem = { ...h, units: [...h.units, h.units[0]] };
    expect(() => render(twice)).toThrow(/is also written by/);
  });

  it("the tailscale field, checked once per fleet apart from its node name: a bad node name is refused after the rest was accepted", async () => {
    const f = await fleetOf("hosts/lab");
    const h = Object.values(f.hosts).find((x) => x.tailscale.enable)!;
    render(h); // the rest of its tailscale settings are in the memo now
    for (const hostname of ["not a label", "-x", "a".repeat(64)]) {
      const bad: HostSystem = { ...h, tailscale: { ...h.tailscale, hostname } };
      expect(() => render(bad), hostname).toThrow(/breaks the bundle contract: tailscale\.hostname: expected a host name/);
    }
    // A good name on the same settings passes, and so does the whole field checked from scratch.
    const other: HostSystem = { ...h, tailscale: { ...h.tailscale, hostname: "another-node" } };
    const b = render(other);
    expect(b.tailscale?.hostname).toBe("another-node");
    expect(checkSealed(b)).toEqual([]);
  });

  it("renderHostBody (what meshfleet render writes) is renderHost's bundle without the hash, and refuses what renderHost refuses", async () => {
    const f = await fleetOf("hosts/home");
    for (const h of Object.values(f.hosts)) {
      const { hash, ...rest } = render(h);
      expect(hash).toMatch(/^[0-9a-f]{64}$/);
      expect(renderHostBody(h, secretsOf(h))).toEqual(rest);
    }
    const h = Object.values(f.hosts).find((x) => x.units.length > 0)!;
    const bad: HostSystem = { ...h, units: [...h.units, { ...h.units[0], name: "not a unit" }] };
    expect(() => renderHostBody(bad, secretsOf(bad))).toThrow(/breaks the bundle contract/);
  });

  it("secret contents are hashed without the shared memo, shared texts with it, both plain sha256", () => {
    expect(sha256Shared("unit text\n")).toBe(sha256("unit text\n"));
    expect(sha256Shared("unit text\n")).toBe(sha256("unit text\n"));
    expect(sha256("é")).toBe(createHash("sha256").update(Buffer.from("é", "utf8")).digest("hex"));
    expect(sha256("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });
});

describe("canonicalJson", () => {
  it("equals the sorted copy's JSON, index-like keys and own __proto__ keys included", () => {
    const values: unknown[] = [
      null, 0, -0, 1.5, NaN, "x\u2028\"", true, [], {}, [undefined, () => 1, 2],
      { b: 1, a: { d: [3, { z: 1, y: undefined }], c: null } },
      { "10": "a", "2": "b", b: 1, "01": 2, "4294967295": 3, "4294967294": 4, "": 5 },
      JSON.parse('{"__proto__": {"x": 1}, "a": [{"b": 1, "__proto__": 2}]}'),
      Object.assign(Object.create(null), { b: 2, a: 1 }),
      { when: new Date(0), n: new Number(3), m: new Map([[1, 2]]) },
    ];
    for (const v of values) expect(canonicalJson(v)).toBe(sortedCopyJson(v));
  });
});

describe("evaluation: option values parsed once per evaluation", () => {
  it("hosts share the options they have in common, read-only: a module that writes to them fails, naming it, and no other host sees the write", async () => {
    const seen: unknown[] = [];
    const probe = defineModule({
      name: "probe-options",
      description: "Keeps each host's options object and writes to it.",
      options: z.object({ list: z.array(z.string()).default(["a"]).describe("A list.") }).strict(),
      config: (o) => {
        seen.push(o);
        o.list.push("written by one host");
        return {};
      },
    });
    const registry: ModuleRegistry = { ...REGISTRY, modules: [...REGISTRY.modules, probe] };
    const r = await evaluateFleet(registry, "hosts/lab", "t");
    expect(r.fleet).toBeUndefined();
    const errors = r.diagnostics.filter((d) => d.severity === "error");
    expect(errors.length).toBe(seen.length);
    for (const d of errors) expect(d).toMatchObject({ path: "probe-options", expected: "module probe-options to evaluate", fix: expect.stringMatching(/a module must not throw/) });
    expect(seen.length).toBeGreaterThan(1);
    // One parsed value for every host (parsed once), unchanged by the writes.
    expect(new Set(seen).size).toBe(1);
    for (const o of seen) expect(o).toEqual({ list: ["a"] });
  });

  it("a bad value is reported as before, also when the same value parsed fine elsewhere first", async () => {
    const dir = path.join(root, "bad");
    cpSync("hosts/lab", dir, { recursive: true });
    const hosts = readdirSync(dir).filter((f) => f.endsWith(".yaml") && f !== "fleet.yaml").sort();
    const last = path.join(dir, hosts[hosts.length - 1]);
    writeFileSync(last, readFileSync(last, "utf8") + "ssh:\n  port: 70000\n");
    const r = await evaluateFleet(REGISTRY, dir, "lab");
    expect(r.fleet).toBeUndefined();
    expect(r.diagnostics.find((d) => d.severity === "error")).toMatchObject({ path: "ssh.port", expected: "at most 65535" });
  });
});
