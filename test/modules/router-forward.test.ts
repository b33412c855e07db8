/**
 * Issue 12 item 4: `firewall.trustTailnet: false` holds on a router too. What
 * the tailnet sends through a subnet router to the LAN is filtered by the git
 * policy in the router's own meshfleet table (a forward chain), not by the
 * coordinator alone; the peer sets it uses are the agent's (members by pinned
 * node key, never by the name a node reports).
 *
 * The policy: alice's devices may reach 192.168.8.0/24 on 443 only.
 *
 * Real kernel, throwaway network namespaces of this test:
 *
 *   peer (100.64.0.5 alice's laptop, 100.64.0.9 another node)
 *     ── tailscale0 ── router ── eth0 ── lan (192.168.8.10: 443 and 22 listen)
 *   other (10.99.0.2) ── eth1 ── router      (forwarding that is not the tailnet's)
 */
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nftScript, peerSetScript } from "../../contract/nftables.ts";
import type { Firewall } from "../../contract/bundle.ts";
import { evaluateFleet } from "../../core/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { hostFirewall, renderNftables } from "../../core/render.ts";
import { REGISTRY } from "../../modules/index.ts";
import { nodesByName, resolveMembers } from "../../agent/peers.ts";
import { writeFleet } from "../core/fleet-fixture.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

const FLEET = `coordinator:
  host: vps
  serverUrl: https://hs.example.com
users: [alice, bob]
admins: [alice]
policy:
  tagOwners:
    tag:router: [alice@]
  acls:
    - action: accept
      src: [alice@]
      dst: ["192.168.8.0/24:443"]
    - action: accept
      src: [alice@]
      dst: ["autogroup:member:22"]
`;
const ROUTER = `imports: [subnet-router]
address: 192.168.8.205
lan: [192.168.8.0/24]
subnet-router:
  routes: [192.168.8.0/24]
tailscale:
  tags: [tag:router]
firewall:
  trustTailnet: false
`;
const BOB = `imports: [client]
address: 10.0.0.6
tailscale:
  user: bob
`;

async function fleet(files: Record<string, string | null>): Promise<FleetSystem> {
  const { dir, cleanup } = writeFleet(files);
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    return r.fleet!;
  } finally {
    cleanup();
  }
}

let router: Firewall;
let text = "";
beforeAll(async () => {
  const f = await fleet({ "fleet.yaml": FLEET, "router.yaml": ROUTER, "bob.yaml": BOB });
  router = hostFirewall(f.hosts.router.firewall)!;
  text = renderNftables(f.hosts.router)!;
}, 60_000);

const chain = (fw: Firewall, name: string) => fw.chains.find((c) => c.name === name);
const setOf = (fw: Firewall, name: string) => fw.sets.find((s) => s.name === name)!;

describe("a subnet router with trustTailnet: false: a forward chain from the git policy", () => {
  it("tailnet -> 192.168.8.0/24 jumps to the routed chain; the MSS clamp stays first", () => {
    const fwd = chain(router, "forward")!;
    expect(fwd.hook).toEqual({ type: "filter", hook: "forward", priority: "filter", policy: "accept" });
    expect(fwd.rules).toEqual([
      { tcpMss: "rt-mtu", comment: "clamp TCP MSS to the route MTU" },
      { iifname: "tailscale0", daddr: { family: "ip", cidrs: ["192.168.8.0/24"] }, verdict: { jump: "routed" }, comment: "tailnet to the routed prefixes" },
    ]);
  });

  it("the routed chain: established/related, alice's set to 192.168.8.0/24:443, then drop", () => {
    const rules = chain(router, "routed")!.rules;
    expect(rules).toHaveLength(3);
    expect(rules[0]).toEqual({ ctState: ["established", "related"], verdict: "accept" });
    const allow = rules[1];
    expect(allow).toMatchObject({ daddr: { family: "ip", cidrs: ["192.168.8.0/24"] }, l4: { proto: "tcp+udp", dports: [443] }, verdict: "accept", comment: "acls[0] src=alice@" });
    // The source is a peer set the agent fills: alice's hosts, never bob's, with no literal tailnet address.
    const set = setOf(router, (allow.saddr as { set: string }).set);
    expect(set).toMatchObject({ type: "ipv4_addr", elements: [], members: ["laptop", "vps"] });
    expect(rules[2]).toEqual({ counter: true, verdict: "drop", comment: "routed: not allowed by the fleet policy" });
    // No IPv6 rule: the route and the rule's destination are IPv4 only.
    expect(rules.some((r) => r.daddr?.family === "ip6")).toBe(false);
    expect(text).toContain('ip saddr @peers_1_v4 ip daddr { 192.168.8.0/24 } meta l4proto { tcp, udp } th dport 443 accept comment "acls[0] src=alice@"');
    expect(text).toContain('iifname "tailscale0" ip daddr { 192.168.8.0/24 } jump routed comment "tailnet to the routed prefixes"');
    expect(text).not.toMatch(/100\.\d+\.\d+\.\d+/);
  });

  it("a rule whose destination is only partly routed opens only the routed part; other rules add nothing", async () => {
    const f = await fleet({
      "fleet.yaml": FLEET.replace('dst: ["192.168.8.0/24:443"]', 'dst: ["192.168.0.0/16:443", "10.1.0.0/16:80"]\n    - action: accept\n      src: [bob@]\n      dst: ["tag:router:9100"]'),
      "router.yaml": ROUTER,
      "bob.yaml": BOB,
    });
    const r = f.hosts.router.firewall.routed!;
    expect(r.prefixes).toEqual(["192.168.8.0/24"]);
    expect(r.rules.map((x) => [x.comment, x.to, x.ports])).toEqual([["acls[0] src=alice@", ["192.168.8.0/24"], [443]]]);
  });

  it("a via grant opens the route on the routers it names only", async () => {
    const grants = (via: string) =>
      FLEET.replace(/  acls:[\s\S]*$/, `  grants:\n    - src: [alice@]\n      dst: ["192.168.8.0/24"]\n      ip: ["tcp:443"]\n      via: [${via}]\n    - src: [alice@]\n      dst: ["autogroup:member"]\n      ip: ["tcp:22"]\n`);
    const named = await fleet({ "fleet.yaml": grants("tag:router"), "router.yaml": ROUTER, "bob.yaml": BOB });
    expect(named.hosts.router.firewall.routed!.rules.map((r) => [r.comment, r.proto, r.ports, r.to])).toEqual([["grants[0] src=alice@", "tcp", [443], ["192.168.8.0/24"]]]);
    const other = await fleet({ "fleet.yaml": grants("tag:router2").replace("tag:router: [alice@]", "tag:router: [alice@]\n    tag:router2: [alice@]"), "router.yaml": ROUTER, "bob.yaml": BOB });
    expect(other.hosts.router.firewall.routed).toEqual({ prefixes: ["192.168.8.0/24"], rules: [] });
    expect(chain(hostFirewall(other.hosts.router.firewall)!, "routed")!.rules.map((r) => r.verdict)).toEqual(["accept", "drop"]);
  });

  it("a router that trusts the tailnet renders no routed chain (the clamp alone)", async () => {
    const f = await fleet({ "fleet.yaml": FLEET, "router.yaml": ROUTER.replace("trustTailnet: false", "trustTailnet: true"), "bob.yaml": BOB });
    const fw = hostFirewall(f.hosts.router.firewall)!;
    expect(chain(fw, "routed")).toBeUndefined();
    expect(chain(fw, "forward")!.rules).toEqual([{ tcpMss: "rt-mtu", comment: "clamp TCP MSS to the route MTU" }]);
  });

  it("without the clamp the forward chain still filters the routed prefixes", async () => {
    const g = await fleet({ "fleet.yaml": FLEET, "router.yaml": ROUTER.replace("  routes: [192.168.8.0/24]", "  routes: [192.168.8.0/24]\n  clampMss: false"), "bob.yaml": BOB });
    const fw = hostFirewall(g.hosts.router.firewall)!;
    expect(chain(fw, "forward")!.rules.map((r) => r.verdict)).toEqual([{ jump: "routed" }]);
  });

  it("an exit node with trustTailnet: false filters everything it forwards from the tailnet by the policy", async () => {
    const f = await fleet({
      "fleet.yaml": FLEET.replace('dst: ["192.168.8.0/24:443"]', 'dst: ["autogroup:internet:*"]'),
      "router.yaml": ROUTER.replace("imports: [subnet-router]", "imports: [subnet-router, exit-node]\nexit-node:\n  enable: true"),
      "bob.yaml": BOB,
    });
    const fw = hostFirewall(f.hosts.router.firewall)!;
    const fwd = chain(fw, "forward")!.rules.filter((r) => r.verdict);
    expect(fwd.map((r) => r.daddr)).toEqual([{ family: "ip", cidrs: ["0.0.0.0/0"] }, { family: "ip6", cidrs: ["::/0"] }]);
    const allow = chain(fw, "routed")!.rules.filter((r) => r.comment === "acls[0] src=alice@");
    // The internet only: private ranges (the router's own LAN among them) stay closed to the exit traffic.
    expect(allow.map((r) => r.daddr!.family)).toEqual(["ip", "ip6"]);
    const v4 = (allow[0].daddr as { cidrs: string[] }).cidrs;
    expect(v4).toContain("8.0.0.0/7");
    expect(v4.some((c) => c.startsWith("192.168.") || c.startsWith("10."))).toBe(false);
  });
});

describe("the agent fills the routed rule's set by pinned node key, never by a reported name", () => {
  const status = (peers: { dns: string; host: string; key: string; ip: string }[]) =>
    JSON.stringify({ Self: { PublicKey: "nodekey:r", DNSName: "router.ts.net.", HostName: "router", TailscaleIPs: ["100.64.0.1"] }, Peer: Object.fromEntries(peers.map((p) => [p.key, { PublicKey: p.key, DNSName: `${p.dns}.ts.net.`, HostName: p.host, TailscaleIPs: [p.ip] }])) });

  it("a second node calling itself laptop gets nothing; one the coordinator names laptop with another key is refused", () => {
    const set = chain(router, "routed")!.rules[1].saddr as { set: string };
    const members = setOf(router, set.set).members;
    const laptop = { dns: "laptop", host: "laptop", key: "nodekey:aaaa000000000000", ip: "100.64.0.5" };
    const first = resolveMembers(members, nodesByName(status([laptop, { dns: "laptop-1", host: "laptop", key: "nodekey:bbbb000000000000", ip: "100.64.0.9" }])), {}, false);
    expect(first.addrs.get("laptop")).toEqual(["100.64.0.5"]);
    const script = peerSetScript(router.sets, first.addrs);
    expect(script).toContain(`add element inet meshfleet ${set.set} { 100.64.0.5 }`);
    expect(script).not.toContain("100.64.0.9");
    // A bad coordinator hands the name to the other key: the pin keeps it out.
    const second = resolveMembers(members, nodesByName(status([{ dns: "laptop", host: "laptop", key: "nodekey:bbbb000000000000", ip: "100.64.0.9" }])), first.pins, false);
    expect(second.addrs.has("laptop")).toBe(false);
    expect(second.refused.join("\n")).toMatch(/laptop: a node with another key/);
    expect(peerSetScript(router.sets, second.addrs)).not.toContain("100.64.0.9");
  });
});

// ---------------------------------------------------------------------------
// The real nft and the real kernel

const tag = `mff${process.pid % 100000}`;
const NS = { peer: `${tag}-peer`, router: `${tag}-rtr`, lan: `${tag}-lan`, other: `${tag}-oth` };
const ip = (...args: string[]) => execa("ip", args);
const inNs = (ns: string, cmd: string[], input?: string) => execa("ip", ["netns", "exec", ns, ...cmd], { input, all: true, reject: false });

/** Listens on 443 and 22 at 192.168.8.10, answers "ok" to whoever connects. */
const SERVER = "const n=require('net');let up=0;for(const p of [443,22])n.createServer(k=>k.end('ok')).listen(p,'192.168.8.10',()=>{if(++up===2)console.log('listening')});";
/** Connect from a source address; prints "open" when the server answers, "closed" when the attempt times out or fails. */
const CLIENT = "const n=require('net');const k=n.connect({host:'192.168.8.10',port:+process.argv[1],localAddress:process.argv[2]});let got='';k.on('data',d=>got+=d);k.on('end',()=>{console.log(got==='ok'?'open':'closed');process.exit(0)});k.on('error',()=>{console.log('closed');process.exit(0)});setTimeout(()=>{console.log('closed');process.exit(0)},1500)";

async function reach(ns: string, from: string, port: number): Promise<string> {
  const r = await inNs(ns, ["node", "-e", CLIENT, String(port), from]);
  return r.stdout.trim();
}

describe.skipIf(skipUnlessCi(!isRoot() && NEEDS_ROOT))("on a real kernel: the router's table in a network namespace", () => {
  let server: ReturnType<typeof execa> | undefined;
  beforeAll(async () => {
    for (const ns of Object.values(NS)) await ip("netns", "add", ns);
    const link = async (n1: string, i1: string, a1: string, n2: string, i2: string, a2: string) => {
      await ip("link", "add", `${tag}x`, "netns", n1, "type", "veth", "peer", "name", `${tag}y`, "netns", n2);
      await ip("-n", n1, "link", "set", `${tag}x`, "name", i1, "up");
      await ip("-n", n2, "link", "set", `${tag}y`, "name", i2, "up");
      await ip("-n", n1, "addr", "add", a1, "dev", i1);
      await ip("-n", n2, "addr", "add", a2, "dev", i2);
    };
    // The router's side of the tailnet link is named tailscale0, as tailscaled's TUN is.
    await link(NS.peer, "ts", "100.64.0.5/10", NS.router, "tailscale0", "100.64.0.1/10");
    await ip("-n", NS.peer, "addr", "add", "100.64.0.9/10", "dev", "ts");
    await link(NS.router, "eth0", "192.168.8.1/24", NS.lan, "eth0", "192.168.8.10/24");
    await link(NS.other, "eth0", "10.99.0.2/24", NS.router, "eth1", "10.99.0.1/24");
    for (const ns of Object.values(NS)) await ip("-n", ns, "link", "set", "lo", "up");
    await ip("-n", NS.peer, "route", "add", "192.168.8.0/24", "via", "100.64.0.1");
    await ip("-n", NS.other, "route", "add", "default", "via", "10.99.0.1");
    await ip("-n", NS.lan, "route", "add", "default", "via", "192.168.8.1");
    await inNs(NS.router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    server = execa("ip", ["netns", "exec", NS.lan, "node", "-e", SERVER], { reject: false });
    await new Promise<void>((resolve) => server!.stdout!.once("data", () => resolve()));
  }, 60_000);
  afterAll(async () => {
    server?.kill();
    await server?.catch(() => undefined);
    for (const ns of Object.values(NS)) await ip("netns", "del", ns).catch(() => undefined);
  });

  it("nft -c accepts the router's table (and refuses a daddr of the wrong family)", async () => {
    const ok = await inNs(NS.router, ["nft", "-c", "-f", "-"], nftScript(router));
    expect(ok.all).toBe("");
    // The check can fail: an IPv6 prefix in an ip daddr set is refused by the same nft.
    const bad = await inNs(NS.router, ["nft", "-c", "-f", "-"], nftScript(router).replace("ip daddr { 192.168.8.0/24 } jump", "ip daddr { fd00:8::/64 } jump"));
    expect(bad.exitCode).not.toBe(0);
  });

  it("alice's laptop reaches LAN:443, not LAN:22; another node reaches neither; other forwarding is left alone", async () => {
    // Without the table everything passes: the drops below are the table's.
    const before = [await reach(NS.peer, "100.64.0.5", 443), await reach(NS.peer, "100.64.0.5", 22), await reach(NS.peer, "100.64.0.9", 443), await reach(NS.other, "10.99.0.2", 22)];
    expect(before).toEqual(["open", "open", "open", "open"]);

    const loaded = await inNs(NS.router, ["nft", "-f", "-"], nftScript(router));
    expect(loaded.all).toBe("");
    // The agent's set refresh: laptop's pinned node, and the node that merely calls itself laptop left out.
    const seen = nodesByName(JSON.stringify({ Peer: { a: { PublicKey: "nodekey:aaaa", DNSName: "laptop.ts.net.", HostName: "laptop", TailscaleIPs: ["100.64.0.5"] }, b: { PublicKey: "nodekey:bbbb", DNSName: "laptop-1.ts.net.", HostName: "laptop", TailscaleIPs: ["100.64.0.9"] } } }));
    const members = [...new Set(router.sets.flatMap((s) => s.members))];
    const filled = await inNs(NS.router, ["nft", "-f", "-"], peerSetScript(router.sets, resolveMembers(members, seen, {}, false).addrs));
    expect(filled.all).toBe("");

    const after = {
      laptop443: await reach(NS.peer, "100.64.0.5", 443),
      laptop22: await reach(NS.peer, "100.64.0.5", 22),
      other443: await reach(NS.peer, "100.64.0.9", 443),
      nonTailnet22: await reach(NS.other, "10.99.0.2", 22),
    };
    expect(after).toEqual({ laptop443: "open", laptop22: "closed", other443: "closed", nonTailnet22: "open" });
    const counter = await inNs(NS.router, ["nft", "list", "chain", "inet", "meshfleet", "routed"]);
    const dropped = Number(/counter packets (\d+) .* drop comment "routed/.exec(counter.stdout)?.[1]);
    expect(dropped).toBeGreaterThan(0);
    console.log(`routed: laptop->LAN:443 ${after.laptop443}, laptop->LAN:22 ${after.laptop22}, non-member->LAN:443 ${after.other443}, non-tailnet->LAN:22 ${after.nonTailnet22}; ${dropped} packets dropped by the routed chain`);
  }, 60_000);
});
