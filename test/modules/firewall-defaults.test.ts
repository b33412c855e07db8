/**
 * The firewall's default input policy and its scoped ports (issue 13 item 1).
 * A plain client (a laptop, a NAS) keeps every port it had: its table has no
 * drop policy and drops nothing outside the tailnet that it did not ask for.
 * The roles meshfleet runs (coordinator, proxy, DERP, router, exit node)
 * default to drop. `firewall.defaultPolicy: drop` closes a client on
 * request; `firewall.interfaces.<name>` and `firewall.sources.<cidr>` open
 * ports on one interface or to one source, through the priority merge. The
 * tables are loaded into a real kernel (network namespaces) and probed.
 */
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Firewall, NftRule } from "../../contract/bundle.ts";
import { nftRuleset, nftScript } from "../../contract/nftables.ts";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import { hostFirewall } from "../../core/render.ts";
import type { Diagnostic, FleetSystem } from "../../core/types.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

async function fleetOf(files: Record<string, string | null>): Promise<{ fleet: FleetSystem; diagnostics: Diagnostic[] }> {
  const f = writeFleet(files);
  try {
    const r = await evaluateFleet(REGISTRY, f.dir);
    expect(formatDiagnostics(r.diagnostics.filter((d) => d.severity === "error"))).toBe("");
    return { fleet: r.fleet!, diagnostics: r.diagnostics };
  } finally {
    f.cleanup();
  }
}
const input = (fw: Firewall | null) => fw!.chains.find((c) => c.name === "input")!;
const text = (fw: Firewall | null) => nftRuleset(fw)!;
/** The input chain's drops that are not tailnet traffic. */
const nonTailnetDrops = (fw: Firewall | null): NftRule[] => input(fw).rules.filter((r) => r.verdict === "drop" && r.iifname !== "tailscale0");

const LAPTOP = BASE["laptop.yaml"];

describe("the default input policy by role", async () => {
  const { fleet } = await fleetOf({});
  const fw = (h: string) => hostFirewall(fleet.hosts[h].firewall);

  it("a plain client: no drop policy, no drop of traffic outside the tailnet", () => {
    expect(fleet.hosts.laptop.roles).toEqual(["client"]);
    expect(input(fw("laptop")).hook?.policy).toBe("accept");
    expect(nonTailnetDrops(fw("laptop"))).toEqual([]);
    expect(text(fw("laptop"))).toContain("type filter hook input priority filter; policy accept;");
    // Meshfleet still manages what it owns: the tailnet's rule is there.
    expect(input(fw("laptop")).rules).toContainEqual({ iifname: "tailscale0", verdict: "accept", comment: "tailnet: filtered by the coordinator policy" });
  });

  it("the coordinator and the subnet router: drop, with their ports open", () => {
    expect(input(fw("vps")).hook?.policy).toBe("drop");
    expect(input(fw("router")).hook?.policy).toBe("drop");
    expect(text(fw("router"))).toMatch(/tcp dport 22 accept/);
    expect(fleet.hosts.router.firewall.defaultPolicy).toBe("drop");
  });

  it("a node advertising routes through tailscale alone is a router: drop", async () => {
    const { fleet: f } = await fleetOf({ "laptop.yaml": "imports: [client]\naddress: 10.0.0.5\nlan: [10.0.0.0/24]\ntailscale:\n  tags: [tag:router]\n  advertiseRoutes: [10.0.0.0/24]\n" });
    expect(f.hosts.laptop.firewall.defaultPolicy).toBe("drop");
  });
});

describe("firewall.defaultPolicy set by the host", () => {
  it("drop on a client closes it: policy drop, the ports it needs open", async () => {
    const { fleet } = await fleetOf({ "laptop.yaml": LAPTOP + "firewall:\n  defaultPolicy: drop\n" });
    const fw = hostFirewall(fleet.hosts.laptop.firewall);
    expect(input(fw).hook?.policy).toBe("drop");
    expect(text(fw)).toContain('tcp dport 22 accept comment "ssh: sshd (deploy path)"');
    expect(text(fw)).toContain("ct state invalid drop");
  });

  it("accept on a router wins over the role's default (mkDefault); !mkForce too", async () => {
    const plain = await fleetOf({ "router.yaml": BASE["router.yaml"] + "firewall:\n  defaultPolicy: accept\n" });
    expect(input(hostFirewall(plain.fleet.hosts.router.firewall)).hook?.policy).toBe("accept");
    const forced = await fleetOf({ "router.yaml": BASE["router.yaml"] + "firewall:\n  defaultPolicy: !mkForce accept\n" });
    expect(input(hostFirewall(forced.fleet.hosts.router.firewall)).hook?.policy).toBe("accept");
  });

  it("on an accept host, what the host asked to drop is dropped all the same: sshFrom, allowPing false", async () => {
    const { fleet } = await fleetOf({ "laptop.yaml": LAPTOP + "firewall:\n  sshFrom: [192.168.8.0/24]\n  allowPing: false\n" });
    const rules = input(hostFirewall(fleet.hosts.laptop.firewall)).rules.map((r) => text({ family: "inet", table: "meshfleet", sets: [], chains: [{ name: "x", hook: null, rules: [r] }] }).split("\n")[2].trim());
    expect(rules).toEqual([
      "ct state established,related accept",
      'iifname "lo" accept',
      'iifname "tailscale0" accept comment "tailnet: filtered by the coordinator policy"',
      'ip saddr { 192.168.8.0/24 } tcp dport 22 accept comment "ssh: sshd (deploy path)"',
      'tcp dport 22 drop comment "ssh: from other sources"',
      'icmp type echo-request drop comment "firewall.allowPing false"',
      'icmpv6 type echo-request drop comment "firewall.allowPing false"',
    ]);
  });
});

describe("ports per interface and per source", () => {
  const SCOPED = "firewall:\n  defaultPolicy: drop\n  interfaces:\n    eth0:\n      allowedTCPPorts: [445, 139]\n      allowedUDPPorts: [137]\n  sources:\n    192.168.8.0/24:\n      allowedTCPPorts: [631]\n    fd00:8::/64:\n      allowedTCPPorts: [631]\n";

  it("renders one accept rule per interface, protocol and source family", async () => {
    const { fleet } = await fleetOf({ "laptop.yaml": LAPTOP + SCOPED });
    const lines = text(hostFirewall(fleet.hosts.laptop.firewall)).split("\n").map((l) => l.trim()).filter((l) => /firewall\.(interfaces|sources)/.test(l));
    expect(lines).toEqual([
      'iifname "eth0" tcp dport { 139, 445 } accept comment "firewall.interfaces.eth0.allowedTCPPorts"',
      'iifname "eth0" udp dport 137 accept comment "firewall.interfaces.eth0.allowedUDPPorts"',
      'ip saddr { 192.168.8.0/24 } tcp dport 631 accept comment "firewall.sources.192.168.8.0/24.allowedTCPPorts"',
      'ip6 saddr { fd00:8::/64 } tcp dport 631 accept comment "firewall.sources.fd00:8::/64.allowedTCPPorts"',
    ]);
  });

  it("go through the priority merge: an import's list concatenates, the host's !mkForce replaces it", async () => {
    const shared = "firewall:\n  defaultPolicy: drop\n  interfaces:\n    eth0:\n      allowedTCPPorts: [445]\n";
    const merged = await fleetOf({ "_nas.yaml": shared, "laptop.yaml": LAPTOP.replace("imports: [client]", "imports: [client, ./_nas.yaml]") + "firewall:\n  interfaces:\n    eth0:\n      allowedTCPPorts: [139]\n" });
    expect(merged.fleet.hosts.laptop.firewall.scoped).toEqual([{ proto: "tcp", ports: [139, 445], iifname: "eth0", comment: "firewall.interfaces.eth0.allowedTCPPorts" }]);
    const forced = await fleetOf({ "_nas.yaml": shared, "laptop.yaml": LAPTOP.replace("imports: [client]", "imports: [client, ./_nas.yaml]") + "firewall:\n  interfaces:\n    eth0:\n      allowedTCPPorts: !mkForce [139]\n" });
    expect(forced.fleet.hosts.laptop.firewall.scoped).toEqual([{ proto: "tcp", ports: [139], iifname: "eth0", comment: "firewall.interfaces.eth0.allowedTCPPorts" }]);
  });

  it("on an accept host they are open anyway: a warning says so and names the fix", async () => {
    const { fleet } = await fleetOf({ "laptop.yaml": LAPTOP + "firewall:\n  interfaces:\n    eth0:\n      allowedTCPPorts: [445]\n" });
    const w = fleet.hosts.laptop.warnings.find((d) => d.path === "firewall.interfaces");
    expect(w?.fix).toBe("set firewall.defaultPolicy: drop on laptop to open only the listed ports, or remove firewall.interfaces");
    expect(text(hostFirewall(fleet.hosts.laptop.firewall))).not.toMatch(/445/);
  });

  it("a bad interface name or source is refused with its option path", async () => {
    const f = writeFleet({ "laptop.yaml": LAPTOP + "firewall:\n  interfaces:\n    'eth 0':\n      allowedTCPPorts: [445]\n  sources:\n    10.0.0.0/33:\n      allowedTCPPorts: [1]\n" });
    try {
      const r = await evaluateFleet(REGISTRY, f.dir);
      const errs = formatDiagnostics(r.diagnostics.filter((d) => d.severity === "error"));
      expect(errs).toMatch(/firewall\.interfaces/);
      expect(errs).toMatch(/firewall\.sources/);
    } finally {
      f.cleanup();
    }
  });
});

// ---------------------------------------------------------------------------
// The real nft and the real kernel: a NAS on a LAN (eth0) and another network (eth1).

const tag = `mfd${process.pid % 100000}`;
const NS = { nas: `${tag}-nas`, lan: `${tag}-lan`, other: `${tag}-oth` };
const ip = (...args: string[]) => execa("ip", args);
const inNs = (ns: string, cmd: string[], input?: string) => execa("ip", ["netns", "exec", ns, ...cmd], { input, all: true, reject: false });
/** The NAS's services: SSH's port (22), SMB (445) and a media server (8096), answering "ok". */
const SERVER = "const n=require('net');let up=0;for(const p of [22,445,8096])n.createServer(k=>k.end('ok')).listen(p,'0.0.0.0',()=>{if(++up===3)console.log('listening')});";
/** Prints "open" when the server answers, "closed" when the attempt times out or fails. */
const CLIENT = "const n=require('net');const k=n.connect({host:process.argv[1],port:+process.argv[2]});let got='';k.on('data',d=>got+=d);k.on('end',()=>{console.log(got==='ok'?'open':'closed');process.exit(0)});k.on('error',()=>{console.log('closed');process.exit(0)});setTimeout(()=>{console.log('closed');process.exit(0)},1500)";
const reach = async (ns: string, host: string, port: number) => (await inNs(ns, ["node", "-e", CLIENT, host, String(port)])).stdout.trim();
/** From the LAN (eth0) and from the other network (eth1), to both services. */
const probe = async () => ({
  lan445: await reach(NS.lan, "192.168.50.1", 445),
  lan8096: await reach(NS.lan, "192.168.50.1", 8096),
  other445: await reach(NS.other, "10.77.0.1", 445),
  other8096: await reach(NS.other, "10.77.0.1", 8096),
});

describe.skipIf(skipUnlessCi(!isRoot() && NEEDS_ROOT))("on a real kernel: a NAS joins the fleet as a client", () => {
  let server: ReturnType<typeof execa> | undefined;
  const nasYaml = (extra = "") => `imports: [client]\naddress: 192.168.50.1\ntailscale:\n  user: alice\n${extra}`;
  const tableOf = async (extra = "") => nftScript(hostFirewall((await fleetOf({ "nas.yaml": nasYaml(extra) })).fleet.hosts.nas.firewall));
  beforeAll(async () => {
    for (const ns of Object.values(NS)) await ip("netns", "add", ns);
    const link = async (n1: string, i1: string, a1: string, n2: string, i2: string, a2: string) => {
      await ip("link", "add", `${tag}x`, "netns", n1, "type", "veth", "peer", "name", `${tag}y`, "netns", n2);
      await ip("-n", n1, "link", "set", `${tag}x`, "name", i1, "up");
      await ip("-n", n2, "link", "set", `${tag}y`, "name", i2, "up");
      await ip("-n", n1, "addr", "add", a1, "dev", i1);
      await ip("-n", n2, "addr", "add", a2, "dev", i2);
    };
    await link(NS.nas, "eth0", "192.168.50.1/24", NS.lan, "eth0", "192.168.50.2/24");
    await link(NS.nas, "eth1", "10.77.0.1/24", NS.other, "eth0", "10.77.0.2/24");
    for (const ns of Object.values(NS)) await ip("-n", ns, "link", "set", "lo", "up");
    server = execa("ip", ["netns", "exec", NS.nas, "node", "-e", SERVER], { reject: false });
    await new Promise<void>((resolve) => server!.stdout!.once("data", () => resolve()));
  }, 60_000);
  afterAll(async () => {
    server?.kill();
    await server?.catch(() => undefined);
    for (const ns of Object.values(NS)) await ip("netns", "del", ns).catch(() => undefined);
  });

  const load = async (script: string) => {
    const check = await inNs(NS.nas, ["nft", "-c", "-f", "-"], script);
    expect(check.all).toBe("");
    const loaded = await inNs(NS.nas, ["nft", "-f", "-"], script);
    expect(loaded.all).toBe("");
  };

  it("the client default (nft -c accepts it) keeps every service reachable, as before it joined", async () => {
    expect(await probe()).toEqual({ lan445: "open", lan8096: "open", other445: "open", other8096: "open" });
    await load(await tableOf());
    const listed = await inNs(NS.nas, ["nft", "list", "chain", "inet", "meshfleet", "input"]);
    expect(listed.stdout).toContain("policy accept;");
    expect(await probe()).toEqual({ lan445: "open", lan8096: "open", other445: "open", other8096: "open" });
  });

  it("defaultPolicy drop with SMB open on eth0 only (nft -c accepts it): the rest is dropped", async () => {
    await load(await tableOf("firewall:\n  defaultPolicy: drop\n  interfaces:\n    eth0:\n      allowedTCPPorts: [445]\n"));
    expect(await probe()).toEqual({ lan445: "open", lan8096: "closed", other445: "closed", other8096: "closed" });
  });

  it("a client enforcing the policy on tailscale0, SSH from the LAN only, no ping (nft -c accepts it): the other link keeps its services", async () => {
    const script = await tableOf("firewall:\n  trustTailnet: false\n  sshFrom: [192.168.50.0/24]\n  allowPing: false\n");
    expect(script).toContain('iifname "tailscale0" jump tailnet');
    await load(script);
    expect(await probe()).toEqual({ lan445: "open", lan8096: "open", other445: "open", other8096: "open" });
    // What the host asked for is dropped all the same: SSH from the other network.
    expect([await reach(NS.lan, "192.168.50.1", 22), await reach(NS.other, "10.77.0.1", 22)]).toEqual(["open", "closed"]);
  });

  it("a source network's port (nft -c accepts it): open from that network only", async () => {
    await load(await tableOf("firewall:\n  defaultPolicy: drop\n  sources:\n    10.77.0.0/24:\n      allowedTCPPorts: [8096]\n"));
    expect(await probe()).toEqual({ lan445: "closed", lan8096: "closed", other445: "closed", other8096: "open" });
  });
});
