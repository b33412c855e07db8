/**
 * bench/deploy's scale run, the parts that need no lab: the generated
 * clients in the lab's topology (the standard lab unchanged without them)
 * and the generated fleet, which must evaluate as a real fleet.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { LAB_AGENT_HOSTS, parseScales, scaleFleet } from "../../bench/deploy/scale-fleet.ts";
import { evaluateFleet } from "../../core/eval.ts";
import { networkPlan } from "../../lab/hosts/network.ts";
import { REGISTRY } from "../../modules/index.ts";
import { clientName, labTopology, mgmtVethName, portName } from "../../lab/topology.ts";

const LAB = join(import.meta.dirname, "..", "..", "hosts", "lab");
const labFiles = () => Object.fromEntries(readdirSync(LAB).map((f) => [f, readFileSync(join(LAB, f), "utf8")]));
const tmp = mkdtempSync(join(tmpdir(), "mf-scale-fleet-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("lab topology with generated clients", () => {
  it("leaves the standard lab as it was without them", () => {
    expect(labTopology(8, { clients: 0 })).toEqual(labTopology(8));
    expect(labTopology(8).hosts.some((h) => h.name.startsWith("client"))).toBe(false);
  });

  it("adds N laptop-like hosts on the laptop's LAN, each with its own names and addresses", () => {
    const std = labTopology(8);
    const topo = labTopology(8, { clients: 17 });
    expect(topo.hosts.slice(0, std.hosts.length)).toEqual(std.hosts);
    const added = topo.hosts.slice(std.hosts.length);
    expect(added.map((h) => h.name)).toEqual(Array.from({ length: 17 }, (_, i) => clientName(i + 1)));
    expect(added[0]).toMatchObject({ name: "client01", kind: "nspawn", role: "client", mgmt: "172.31.248.100", links: [{ to: "laptopnat", bridge: "lan0", address: "10.77.0.100/24", gateway: "10.77.0.1" }] });
    const unique = (xs: unknown[]) => new Set(xs).size === xs.length;
    expect(unique(topo.hosts.map((h) => h.name))).toBe(true);
    expect(unique(topo.hosts.map((h) => h.id))).toBe(true);
    expect(unique(topo.hosts.map((h) => h.netns))).toBe(true);
    expect(unique(topo.hosts.flatMap((h) => (h.mgmt ? [h.mgmt] : [])))).toBe(true);
    expect(unique(topo.hosts.flatMap((h) => h.links.map((l) => l.address.split("/")[0])))).toBe(true);
    // The kernel caps interface names at 15 characters.
    for (const h of topo.hosts.filter((x) => x.kind === "nspawn")) expect(mgmtVethName(topo, h).length).toBeLessThanOrEqual(15);
    for (const h of topo.hosts) for (const l of h.links) expect(portName(h, l).length).toBeLessThanOrEqual(15);
    // The whole network plans (every link finds its bridge's owner).
    const plan = networkPlan(topo, topo.hosts);
    expect(plan.filter((x) => x.makes?.kind === "link" && x.makes.name.includes("m-c")).length).toBe(17);
  });

  it("refuses a client count out of range", () => {
    expect(() => labTopology(8, { clients: -1 })).toThrow(/0\.\.99/);
    expect(() => labTopology(8, { clients: 100 })).toThrow(/0\.\.99/);
    expect(() => labTopology(8, { clients: 1.5 })).toThrow(/0\.\.99/);
  });
});

describe("the scale run's fleet", () => {
  it("parses the scales asked for and refuses fewer hosts than hosts/lab has", () => {
    expect(parseScales("4,20")).toEqual([4, 20]);
    expect(parseScales(" 3 ")).toEqual([3]);
    expect(() => parseScales("2,20")).toThrow(/from 3/);
    expect(() => parseScales("4,x")).toThrow(/"x"/);
    expect(() => parseScales("4,103")).toThrow(/103/);
  });

  it("is hosts/lab on the instance's management subnet plus N - 3 clients, and evaluates as a fleet of N agent hosts", async () => {
    const files = scaleFleet(labFiles(), 8, 20);
    expect(Object.keys(files).filter((f) => f.startsWith("client")).length).toBe(20 - LAB_AGENT_HOSTS);
    for (const text of Object.values(files)) expect(text).not.toContain("172.31.240.");
    expect(files["laptop.yaml"]).toContain("address: 172.31.248.77");
    expect(files["client17.yaml"]).toContain("address: 172.31.248.116");
    const dir = join(tmp, "scale20");
    mkdirSync(dir);
    for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text);
    const r = await evaluateFleet(REGISTRY, dir, "lab");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    const agents = Object.values(r.fleet!.hosts).filter((h) => h.tailscale.enable).map((h) => h.name);
    expect(agents.length).toBe(20);
    expect(r.fleet!.hosts["client05"]!.tailscale.enable).toBe(true);
  });

  it("at 3 agent hosts is hosts/lab alone; refuses a hosts/lab that already has a client's name", () => {
    expect(Object.keys(scaleFleet(labFiles(), 8, 3)).sort()).toEqual(Object.keys(labFiles()).sort());
    expect(() => scaleFleet({ ...labFiles(), "client01.yaml": "x" }, 8, 4)).toThrow(/client01\.yaml/);
    expect(() => scaleFleet(labFiles(), 8, 2)).toThrow(/hosts\/lab has 3/);
  });
});
