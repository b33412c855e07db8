/**
 * Port ranges, as NixOS's `allowedTCPPortRanges`/`allowedUDPPortRanges`, on
 * `firewall` and on its per-interface and per-source forms: rendered as nft
 * sets of every port in the range (bundle format 3 carries single ports; an
 * interval would need a format bump), accepted by `nft -c`, enforced by a real kernel (a port inside
 * the range answers, one just outside does not), shown by `hosts` and `plan`
 * as the ports are; a bad range is refused with file, option path,
 * expected, found and fix.
 */
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkBundle } from "../../contract/bundle.ts";
import { nftRuleset, nftScript } from "../../contract/nftables.ts";
import { evaluateFleet, formatDiagnostics, renderHost, secretRefs } from "../../core/index.ts";
import { networkModel } from "../../core/netdiff/model.ts";
import { hostFirewall } from "../../core/render.ts";
import type { Diagnostic, FleetSystem } from "../../core/types.ts";
import { hostRows, textRow } from "../../cli/commands/hosts.ts";
import { rangeRule } from "../../modules/firewall.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

async function evaluate(files: Record<string, string | null>): Promise<{ fleet?: FleetSystem; diagnostics: Diagnostic[] }> {
  const f = writeFleet(files);
  try {
    const r = await evaluateFleet(REGISTRY, f.dir, "fx");
    return { fleet: r.fleet, diagnostics: r.diagnostics.map((d) => ({ ...d, file: d.file.split(f.dir).join("<fleet>") })) };
  } finally {
    f.cleanup();
  }
}
async function fleetOf(files: Record<string, string | null>): Promise<FleetSystem> {
  const r = await evaluate(files);
  expect(formatDiagnostics(r.diagnostics.filter((d) => d.severity === "error"))).toBe("");
  return r.fleet!;
}
const ROUTER = BASE["router.yaml"]; // subnet router: defaultPolicy drop
const RANGES =
  "firewall:\n  allowedTCPPortRanges: [{ from: 8000, to: 8100 }, { from: 9000, to: 9000 }]\n  allowedUDPPortRanges: [{ from: 60000, to: 61000 }]\n" +
  "  interfaces:\n    eth1:\n      allowedTCPPorts: [445]\n      allowedTCPPortRanges: [{ from: 1714, to: 1764 }]\n" +
  "  sources:\n    10.77.0.0/24:\n      allowedUDPPortRanges: [{ from: 5000, to: 5010 }]\n";

describe("firewall port ranges", () => {
  const spelled = (lo: number, hi: number) => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
  it("render as nft sets of every port in the range: every interface, one interface, one source; a one-port range is a port", async () => {
    const fleet = await fleetOf({ "router.yaml": ROUTER + RANGES });
    const text = nftRuleset(hostFirewall(fleet.hosts.router.firewall))!;
    expect(text).toContain(`tcp dport { ${[...spelled(8000, 8100), 9000].join(", ")} } accept comment "firewall.allowedTCPPortRanges"`);
    expect(text).toContain(`udp dport { ${spelled(60000, 61000).join(", ")} } accept comment "firewall.allowedUDPPortRanges"`);
    expect(text).toContain('iifname "eth1" tcp dport 445 accept comment "firewall.interfaces.eth1.allowedTCPPorts"');
    expect(text).toContain(`iifname "eth1" tcp dport { ${spelled(1714, 1764).join(", ")} } accept comment "firewall.interfaces.eth1.allowedTCPPortRanges"`);
    expect(text).toContain(`ip saddr { 10.77.0.0/24 } udp dport { ${spelled(5000, 5010).join(", ")} } accept comment "firewall.sources.10.77.0.0/24.allowedUDPPortRanges"`);
    // The bundle carries them and passes the contract (format 3, unchanged); the agent loads this very text.
    const bundle = renderHost(fleet.hosts.router, Object.fromEntries(secretRefs(fleet.hosts.router).map((r) => [r, `(secret ${r})`])));
    expect(checkBundle(bundle)).toEqual([]);
    expect(nftScript(bundle.firewall)).toContain(`udp dport { ${spelled(60000, 61000).join(", ")} } accept`);
  });

  it("rangeRule: sorted, without repeats; one-port ranges as ports", () => {
    expect(rangeRule([{ from: 9000, to: 9100 }, { from: 80, to: 80 }, { from: 1714, to: 1764 }, { from: 9000, to: 9100 }, { from: 22, to: 22 }])).toEqual({ ports: [22, 80], ranges: ["1714-1764", "9000-9100"] });
  });

  it("hosts shows the ranges open everywhere beside the ports; plan's model lists every range like a port", async () => {
    const fleet = await fleetOf({ "router.yaml": ROUTER + RANGES });
    const row = hostRows(fleet).find((r) => r.host === "router")!;
    expect(row.ports).toEqual(expect.arrayContaining([{ port: "8000-8100", proto: "tcp", from: "any" }, { port: 9000, proto: "tcp", from: "any" }, { port: "60000-61000", proto: "udp", from: "any" }]));
    expect(textRow(row).ports).toContain("8000-8100/tcp");
    expect(textRow(row).ports).toContain("60000-61000/udp");
    const model = networkModel(fleet).hosts.router.publicPorts;
    expect(model["tcp/8000-8100"]).toBe("(firewall.allowedTCPPortRanges)");
    expect(model["tcp/1714-1764 on eth1"]).toBe("(firewall.interfaces.eth1.allowedTCPPortRanges)");
    expect(model["udp/5000-5010 from 10.77.0.0/24"]).toBe("(firewall.sources.10.77.0.0/24.allowedUDPPortRanges)");
  });

  it("on a plain client (defaultPolicy accept) they change nothing, and a warning says so", async () => {
    const r = await evaluate({ "laptop.yaml": BASE["laptop.yaml"] + "firewall:\n  allowedUDPPortRanges: [{ from: 60000, to: 61000 }]\n" });
    const w = r.diagnostics.filter((d) => d.path === "firewall.allowedUDPPortRanges");
    expect(w).toHaveLength(1);
    expect(w[0].severity).toBe("warning");
    expect(w[0].found).toMatch(/60000-61000 is open anyway/);
    expect(nftRuleset(hostFirewall(r.fleet!.hosts.laptop.firewall))).not.toContain("60000");
  });

  it.each([
    ["from above to", "firewall:\n  allowedTCPPortRanges: [{ from: 9100, to: 9000 }]\n", "firewall.allowedTCPPortRanges[0]", /^a range with from <= to/, /^from 9100, to 9000$/, /^write it as \{ from: 9000, to: 9100 \}$/],
    ["a port above 65535", "firewall:\n  interfaces:\n    eth0:\n      allowedUDPPortRanges: [{ from: 60000, to: 70000 }]\n", "firewall.interfaces.eth0.allowedUDPPortRanges[0].to", /^at most 65535$/, /^70000$/, /to at most 65535$/],
    ["a range written as nft writes it", 'firewall:\n  sources:\n    10.0.0.0/8:\n      allowedTCPPortRanges: ["8000-8100"]\n', "firewall.sources.10.0.0.0/8.allowedTCPPortRanges[0]", /^a range \{ from: PORT, to: PORT \}$/, /^"8000-8100"$/, /^write it as \{ from: 8000, to: 8100 \}$/],
    ["a bare port", "firewall:\n  allowedUDPPortRanges: [53]\n", "firewall.allowedUDPPortRanges[0]", /^a range/, /^53$/, /allowed\*Ports list/],
    ["more ports than a bundle should spell out", "firewall:\n  allowedUDPPortRanges: [{ from: 1024, to: 65535 }]\n", "firewall.allowedUDPPortRanges", /^ranges covering at most 16384 ports/, /^64512 ports$/, /trustedInterfaces/],
    ["an unknown key", "firewall:\n  allowedTCPPortRanges: [{ from: 1, to: 2, step: 1 }]\n", "firewall.allowedTCPPortRanges[0]", /known options/, /step/, /remove them/],
  ])("refused: %s", async (_n, extra, path, expected, found, fix) => {
    const r = await evaluate({ "router.yaml": ROUTER + extra });
    const errs = r.diagnostics.filter((d) => d.severity === "error");
    expect(errs.map((d) => d.path)).toEqual([path]);
    expect(errs[0].file).toBe("<fleet>/router.yaml");
    expect(errs[0].expected).toMatch(expected);
    expect(errs[0].found).toMatch(found);
    expect(errs[0].fix).toMatch(fix);
  });
});

// --- a real kernel: the router's table in a namespace, a client in another ---
const tag = `mfr${process.pid % 100000}`;
const NS = { host: `${tag}-h`, peer: `${tag}-p` };
const ip = (...args: string[]) => execa("ip", args);
const inNs = (ns: string, argv: string[], input?: string) => execa("ip", ["netns", "exec", ns, ...argv], { reject: false, all: true, ...(input !== undefined ? { input } : {}) });
const SERVER = `const net = require("net"); const dgram = require("dgram");
for (const p of [7999, 8000, 8050, 8100, 8101]) net.createServer((s) => s.end("ok")).listen(p, "0.0.0.0");
for (const p of [60000, 61001]) { const u = dgram.createSocket("udp4"); u.on("message", (m, r) => u.send("ok", r.port, r.address)); u.bind(p, "0.0.0.0"); }
setTimeout(() => console.log("ready"), 200);`;
const tcp = async (port: number) =>
  (await inNs(NS.peer, ["node", "-e", `const s=require("net").connect(${port},"10.99.0.1");s.setTimeout(700,()=>{console.log("closed");process.exit()});s.on("data",()=>{console.log("open");process.exit()});s.on("error",()=>{console.log("closed");process.exit()})`])).stdout.trim();
const udp = async (port: number) =>
  (await inNs(NS.peer, ["node", "-e", `const u=require("dgram").createSocket("udp4");u.on("message",()=>{console.log("open");process.exit()});u.send("x",${port},"10.99.0.1");setTimeout(()=>{console.log("closed");process.exit()},700)`])).stdout.trim();

describe.skipIf(skipUnlessCi(!isRoot() && NEEDS_ROOT))("port ranges on a real kernel (nft -c, then traffic)", () => {
  let server: ReturnType<typeof execa> | undefined;
  beforeAll(async () => {
    for (const ns of Object.values(NS)) await ip("netns", "add", ns);
    await ip("link", "add", `${tag}x`, "netns", NS.host, "type", "veth", "peer", "name", `${tag}y`, "netns", NS.peer);
    await ip("-n", NS.host, "link", "set", `${tag}x`, "name", "eth0", "up");
    await ip("-n", NS.peer, "link", "set", `${tag}y`, "name", "eth0", "up");
    await ip("-n", NS.host, "addr", "add", "10.99.0.1/24", "dev", "eth0");
    await ip("-n", NS.peer, "addr", "add", "10.99.0.2/24", "dev", "eth0");
    for (const ns of Object.values(NS)) await ip("-n", ns, "link", "set", "lo", "up");
    server = execa("ip", ["netns", "exec", NS.host, "node", "-e", SERVER], { reject: false });
    await new Promise<void>((resolve) => server!.stdout!.once("data", () => resolve()));
  }, 60_000);
  afterAll(async () => {
    server?.kill();
    await server?.catch(() => undefined);
    for (const ns of Object.values(NS)) await ip("netns", "del", ns).catch(() => undefined);
  });

  it("8000-8100/tcp and 60000-61000/udp open, both ends included; the ports next to them dropped", async () => {
    const fleet = await fleetOf({ "router.yaml": ROUTER + "firewall:\n  allowedTCPPortRanges: [{ from: 8000, to: 8100 }]\n  allowedUDPPortRanges: [{ from: 60000, to: 61000 }]\n" });
    const script = nftScript(hostFirewall(fleet.hosts.router.firewall));
    const check = await inNs(NS.host, ["nft", "-c", "-f", "-"], script);
    expect(check.all).toBe("");
    expect((await inNs(NS.host, ["nft", "-f", "-"], script)).all).toBe("");
    // 49152-65535 (16384 ports, the cap) loads too.
    const wide = nftScript(hostFirewall((await fleetOf({ "router.yaml": ROUTER + "firewall:\n  allowedUDPPortRanges: [{ from: 49152, to: 65535 }]\n" })).hosts.router.firewall));
    expect((await inNs(NS.host, ["nft", "-c", "-f", "-"], wide)).all).toBe("");
    expect({ 7999: await tcp(7999), 8000: await tcp(8000), 8050: await tcp(8050), 8100: await tcp(8100), 8101: await tcp(8101) }).toEqual({ 7999: "closed", 8000: "open", 8050: "open", 8100: "open", 8101: "closed" });
    expect({ 60000: await udp(60000), 61001: await udp(61001) }).toEqual({ 60000: "open", 61001: "closed" });
  }, 60_000);
});
