/**
 * Issue 19 ("ten times larger"): the shortcuts that keep evaluation linear
 * at 10,000 hosts, held to what the plain loops they replaced gave.
 * - Routes across routers: a sweep over the routes sorted by start instead of
 *   every pair; the diagnostics must be the pairwise loop's, in its order.
 * - plan's warnings list the routes a host used only for a host that stops
 *   accepting them (listing them for every host was quadratic).
 * - render without a hash (`meshfleet render`) keys its memo of accepted file
 *   and unit lists without their texts: a list seen valid with other texts is
 *   valid, and one whose item is not valid is still refused every time.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { generateFleet } from "../../bench/eval-scale/generate.ts";
import { evaluateFleet, type HostSystem } from "../../core/index.ts";
import { renderHost, renderHostBody } from "../../core/render.ts";
import { secretRefs } from "../../core/bundle.ts";
import { cidrsOverlap, parseCidr } from "../../core/schema-types.ts";
import { REGISTRY } from "../../modules/index.ts";
import { planWarnings } from "../../cli/commands/plan.ts";
import { diffNetwork, networkModel } from "../../core/netdiff/index.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "mf-scale-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The pairwise check as it was: each route against every earlier one, in the order written. */
function pairwise(routers: [string, string[]][]): string[] {
  const seen: { host: string; route: string }[] = [];
  const out: string[] = [];
  for (const [host, routes] of routers)
    routes.forEach((route, i) => {
      for (const s of seen)
        if (s.host !== host && s.route !== route && cidrsOverlap(parseCidr(route)!, parseCidr(s.route)!))
          out.push(`${host}.yaml subnet-router.routes[${i}]: ${route}, which overlaps ${s.route} from ${s.host}`);
      seen.push({ host, route });
    });
  return out;
}

describe("routes across routers", () => {
  // Nested chains, equal routes (high availability, allowed), the same network written with host bits,
  // v6, disjoint neighbours, and routes that only overlap on another router.
  const routers: [string, string[]][] = [
    ["r00", ["10.0.0.0/8"]],
    ["r01", ["10.1.0.0/16", "10.200.0.0/16"]],
    ["r02", ["10.1.2.0/24", "172.16.0.0/12"]],
    ["r03", ["10.1.2.0/24"]],
    ["r04", ["10.1.2.128/25", "192.168.0.0/24"]],
    ["r05", ["192.168.1.0/24", "fd00:1::/32"]],
    ["r06", ["192.168.0.0/23", "fd00:1:2::/48"]],
    ["r07", ["fd00:1:2::/48", "fd00:2::/32"]],
    ["r08", ["172.16.4.0/22", "fd00::/16"]],
    ["r09", ["11.0.0.0/8"]],
    ["r10", ["10.255.255.0/24", "9.255.0.0/16"]],
  ];

  it("reports exactly the pairs the pairwise loop did, in its order", async () => {
    const dir = path.join(root, "routes");
    mkdirSync(dir);
    generateFleet(dir, 5);
    for (const [name, routes] of routers)
      writeFileSync(path.join(dir, `${name}.yaml`), `imports: [subnet-router]\naddress: 192.0.2.1\nlan: [0.0.0.0/0, ::/0]\nsubnet-router:\n  routes: [${routes.join(", ")}]\ntailscale:\n  tags: [tag:router]\n`);
    const r = await evaluateFleet(REGISTRY, dir, "t");
    const got = r.diagnostics
      .filter((d) => d.expected.startsWith("a route that does not overlap"))
      .map((d) => `${path.basename(d.file)} ${d.path}: ${d.found.replace(/ \(.*\)$/, "")}`);
    const want = pairwise(routers);
    expect(want.length).toBeGreaterThan(10); // the case is not trivial
    expect(got).toEqual(want);
  });

  it("finds no overlap among many disjoint routes (a 1,000-router fleet's shape)", async () => {
    const dir = path.join(root, "many");
    mkdirSync(dir);
    generateFleet(dir, 2000, 10);
    const r = await evaluateFleet(REGISTRY, dir, "t");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(Object.values(r.fleet!.hosts).filter((h) => h.tailscale.advertiseRoutes.length).length).toBe(199);
  });
});

describe("render without a hash: file and unit lists memoised without their texts", () => {
  const secretsOf = (h: HostSystem) => Object.fromEntries(secretRefs(h).map((k) => [k, `secret-${k}`]));
  const body = (h: HostSystem) => renderHostBody(h, secretsOf(h));

  it("other texts in a list seen valid: accepted, and the body carries this host's texts", async () => {
    const r = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
    const h = Object.values(r.fleet!.hosts).find((x) => x.files.some((f) => !f.secretRef) && x.units.length > 0)!;
    body(h);
    const file = h.files.find((f) => !f.secretRef)!;
    const other: HostSystem = {
      ...h,
      files: h.files.map((f) => (f === file ? { ...f, content: "other text\n" } : f)),
      units: h.units.map((u, i) => (i === 0 ? { ...u, content: u.content + "\n# other\n" } : u)),
    };
    const b = body(other);
    expect(b.files.find((f) => f.path === file.path)!.content).toBe("other text\n");
    expect(b.units.find((u) => u.name === h.units[0].name)!.content).toMatch(/# other\n$/);
    // The sealed render of the same host agrees (its own full check and hash).
    expect(renderHost(other, secretsOf(other)).files).toEqual(b.files);
  });

  it("an item whose content is not text, or that lacks it, is refused however often the list was seen valid", async () => {
    const r = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
    const h = Object.values(r.fleet!.hosts).find((x) => x.units.length > 0)!;
    body(h);
    body(h);
    const notText: HostSystem = { ...h, units: h.units.map((u, i) => (i === 0 ? { ...u, content: 42 as unknown as string } : u)) };
    const missing: HostSystem = { ...h, units: h.units.map((u, i) => { if (i !== 0) return u; const { content: _, ...rest } = u; return rest as typeof u; }) };
    for (const bad of [notText, missing, notText]) expect(() => body(bad)).toThrow(/breaks the bundle contract/);
    expect(() => body(h)).not.toThrow();
  });
});

describe("plan's routes-lost warning", () => {
  it("names each host that stops accepting routes, with every route it used, and no other host", async () => {
    const dirs = ["base", "head"].map((n) => path.join(root, `plan-${n}`));
    for (const d of dirs) {
      mkdirSync(d);
      generateFleet(d, 30, 5);
    }
    // h3 turns acceptRoutes off, h7 turns tailscale off; h10 (a router) and the rest keep accepting.
    writeFileSync(path.join(dirs[1], "h3.yaml"), "imports: [client]\naddress: 198.51.100.3\ntailscale:\n  user: alice\n  acceptRoutes: false\n");
    writeFileSync(path.join(dirs[1], "h7.yaml"), "imports: [client]\naddress: 198.51.100.7\ntailscale:\n  enable: false\n");
    const [base, head] = await Promise.all(dirs.map(async (d) => (await evaluateFleet(REGISTRY, d, "t")).fleet!));
    const lost = planWarnings(base, head, diffNetwork(networkModel(base), networkModel(head))).filter((w) => w.kind === "routes-lost");
    expect(lost).toEqual([
      { kind: "routes-lost", host: "h3", message: "h3 stops using the subnet routes it used: 10.10.0.0/24 (via h10), 10.20.0.0/24 (via h20) (tailscale.acceptRoutes: false)" },
      { kind: "routes-lost", host: "h7", message: "h7 stops using the subnet routes it used: 10.10.0.0/24 (via h10), 10.20.0.0/24 (via h20) (tailscale.enable: false)" },
    ]);
  });
});
