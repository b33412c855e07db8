/**
 * The nft text of the contract's typed firewall: every rule shape the schema
 * allows renders to text the real nft accepts (`nft -c` in a throwaway
 * network namespace, as root), and the agent's peer-set script loads into
 * the table it belongs to.
 */
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseBundle, sealBundle, type Firewall, type NftRule } from "../../contract/bundle.ts";
import { nftRuleText, nftRuleset, nftScript, peerSetScript } from "../../contract/nftables.ts";
import { emptyBundle } from "../../agent/state.ts";
import { NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

const rules: NftRule[] = [
  { ctState: ["established", "related"], verdict: "accept" },
  { ctState: ["invalid"], verdict: "drop" },
  { iifname: "lo", verdict: "accept" },
  { iifname: "mgmt0", verdict: "accept", comment: "trusted interface" },
  { icmp: { family: "ip", types: ["echo-request"] }, verdict: "accept" },
  { icmp: { family: "ip6", types: ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert", "packet-too-big"] }, verdict: "accept" },
  { iifname: "tailscale0", verdict: { jump: "tailnet" } },
  { l4: { proto: "tcp", dports: [22] }, verdict: "accept", comment: "ssh: sshd" },
  { saddr: { family: "ip", cidrs: ["192.168.8.0/24", "10.0.0.1"] }, l4: { proto: "udp", dports: [3478] }, verdict: "accept", comment: "derp: stun" },
  { saddr: { family: "ip6", cidrs: ["fd00::/8"] }, l4: { proto: "tcp", dports: [443] }, verdict: "accept" },
];
const tailnet: NftRule[] = [
  { saddr: { family: "ip", set: "peers_admins_v4" }, verdict: "accept", comment: "admins: everything" },
  { saddr: { family: "ip6", set: "peers_admins_v6" }, verdict: "accept" },
  { saddr: { family: "ip", set: "peers_web_v4" }, l4: { proto: "tcp+udp", dports: [80, 443] }, verdict: "accept" },
  { saddr: { family: "ip", set: "peers_web_v4" }, l4: { proto: "tcp" }, verdict: "accept" },
  { saddr: { family: "ip6", set: "peers_web_v6" }, l4: { proto: "udp", dports: [53] }, verdict: "accept" },
  { counter: true, verdict: "drop", comment: "tailnet: not allowed by the fleet policy" },
];
const FW: Firewall = {
  family: "inet",
  table: "meshfleet",
  sets: [
    { name: "peers_admins_v4", type: "ipv4_addr", elements: ["192.168.50.0/24"], members: ["laptop"] },
    { name: "peers_admins_v6", type: "ipv6_addr", elements: [], members: ["laptop"] },
    { name: "peers_web_v4", type: "ipv4_addr", elements: [], members: ["vps", "laptop"] },
    { name: "peers_web_v6", type: "ipv6_addr", elements: ["fd7a:115c:a1e0::/48"], members: [] },
  ],
  chains: [
    { name: "input", hook: { type: "filter", hook: "input", priority: "filter", policy: "drop" }, rules },
    { name: "tailnet", hook: null, rules: tailnet },
  ],
};

describe("nft text", () => {
  it("renders each rule shape", () => {
    expect(rules.map(nftRuleText)).toEqual([
      "ct state established,related accept",
      "ct state invalid drop",
      'iifname "lo" accept',
      'iifname "mgmt0" accept comment "trusted interface"',
      "icmp type echo-request accept",
      "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, packet-too-big } accept",
      'iifname "tailscale0" jump tailnet',
      'tcp dport 22 accept comment "ssh: sshd"',
      'ip saddr { 192.168.8.0/24, 10.0.0.1 } udp dport 3478 accept comment "derp: stun"',
      "ip6 saddr { fd00::/8 } tcp dport 443 accept",
    ]);
    expect(tailnet.map(nftRuleText)).toEqual([
      'ip saddr @peers_admins_v4 accept comment "admins: everything"',
      "ip6 saddr @peers_admins_v6 accept",
      "ip saddr @peers_web_v4 meta l4proto { tcp, udp } th dport { 80, 443 } accept",
      "ip saddr @peers_web_v4 meta l4proto tcp accept",
      "ip6 saddr @peers_web_v6 udp dport 53 accept",
      'counter drop comment "tailnet: not allowed by the fleet policy"',
    ]);
  });

  it("nftRuleset is the table the agent's script loads", () => {
    expect(nftScript(FW)).toBe(`table inet meshfleet {}\ndelete table inet meshfleet\n${nftRuleset(FW)}\n`);
    expect(nftScript(null)).toBe("table inet meshfleet {}\ndelete table inet meshfleet\n\n");
  });

  it("this firewall is one the contract accepts", () => {
    const { hash: _h, ...empty } = emptyBundle("router");
    expect(parseBundle(sealBundle({ ...empty, firewall: FW })).ok).toBe(true);
  });

  it("the peer-set script fills each set with its elements and its members' live addresses of its family", () => {
    const addrs = new Map([
      ["laptop", ["100.64.0.3", "fd7a:115c:a1e0::3"]],
      ["vps", ["100.64.0.1", "fd7a:115c:a1e0::1"]],
    ]);
    expect(peerSetScript(FW.sets, addrs)).toBe(
      [
        "flush set inet meshfleet peers_admins_v4",
        "add element inet meshfleet peers_admins_v4 { 192.168.50.0/24, 100.64.0.3 }",
        "flush set inet meshfleet peers_admins_v6",
        "add element inet meshfleet peers_admins_v6 { fd7a:115c:a1e0::3 }",
        "flush set inet meshfleet peers_web_v4",
        "add element inet meshfleet peers_web_v4 { 100.64.0.1, 100.64.0.3 }",
        "flush set inet meshfleet peers_web_v6",
        "add element inet meshfleet peers_web_v6 { fd7a:115c:a1e0::/48 }",
        "",
      ].join("\n"),
    );
  });
});

const isRoot = process.getuid?.() === 0;
describe.skipIf(skipUnlessCi(!isRoot && NEEDS_ROOT))("the real nft (as root, in a throwaway network namespace)", () => {
  const ns = `mf-contract-${process.pid}`;
  const nft = (input: string, args = ["-f", "-"]) => execa("ip", ["netns", "exec", ns, "nft", ...args], { input, all: true, reject: false });
  beforeAll(async () => {
    await execa("ip", ["netns", "add", ns]);
  });
  afterAll(async () => {
    await execa("ip", ["netns", "del", ns], { reject: false });
  });

  it("loads the agent's script for every rule shape, replaces it, and takes the peer sets", async () => {
    const first = await nft(nftScript(FW));
    expect(first.all).toBe("");
    expect(first.exitCode).toBe(0);
    // Again: the script replaces the table it made (create-if-missing, delete, load).
    expect((await nft(nftScript(FW))).exitCode).toBe(0);
    const peers = await nft(peerSetScript(FW.sets, new Map([["laptop", ["100.64.0.3", "fd7a:115c:a1e0::3"]]])));
    expect(peers.all).toBe("");
    const listed = (await nft("", ["-s", "list", "table", "inet", "meshfleet"])).stdout;
    expect(listed).toContain("100.64.0.3");
    expect(listed).toContain('comment "derp: stun"');
    // Firewall off: the script only deletes the table.
    expect((await nft(nftScript(null))).exitCode).toBe(0);
    expect((await nft("", ["list", "tables"])).stdout).not.toContain("meshfleet");
  });

});
