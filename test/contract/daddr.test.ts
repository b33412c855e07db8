/**
 * The nft rule's destination match (`daddr`, bundle format 3): a router's
 * forward chain matches tailnet traffic to the prefixes it routes. Checked
 * like `saddr` (the set exists, families agree) plus one rule: saddr and
 * daddr of one rule are of one family (nft refuses `ip saddr ... ip6 daddr`).
 */
import { describe, expect, it } from "vitest";
import { checkBundle, sealBundle, type Firewall, type NftRule } from "../../contract/bundle.ts";
import { nftRuleText } from "../../contract/nftables.ts";
import { emptyBundle } from "../../agent/state.ts";

const FW = (): Firewall => ({
  family: "inet",
  table: "meshfleet",
  sets: [
    { name: "peers_0_v4", type: "ipv4_addr", elements: [], members: ["laptop"] },
    { name: "peers_0_v6", type: "ipv6_addr", elements: [], members: ["laptop"] },
    { name: "lan_v4", type: "ipv4_addr", elements: ["192.168.8.0/24"], members: [] },
  ],
  chains: [
    {
      name: "forward",
      hook: { type: "filter", hook: "forward", priority: "filter", policy: "accept" },
      rules: [
        { tcpMss: "rt-mtu" },
        { iifname: "tailscale0", daddr: { family: "ip", cidrs: ["192.168.8.0/24"] }, verdict: { jump: "routed" } },
        { iifname: "tailscale0", daddr: { family: "ip6", cidrs: ["fd00:8::/64"] }, verdict: { jump: "routed" } },
      ],
    },
    {
      name: "routed",
      hook: null,
      rules: [
        { ctState: ["established", "related"], verdict: "accept" },
        { saddr: { family: "ip", set: "peers_0_v4" }, daddr: { family: "ip", cidrs: ["192.168.8.0/24", "10.1.2.3"] }, l4: { proto: "tcp", dports: [443] }, verdict: "accept", comment: "acls[0] src=alice@" },
        { saddr: { family: "ip", set: "peers_0_v4" }, daddr: { family: "ip", set: "lan_v4" }, verdict: "accept" },
        { counter: true, verdict: "drop" },
      ],
    },
  ],
});

function problemsAfter(edit: (fw: Firewall) => void): string[] {
  const fw = FW();
  edit(fw);
  const { hash: _h, ...empty } = emptyBundle("router");
  return checkBundle(sealBundle({ ...empty, firewall: fw }));
}
const rule = (fw: Firewall, c: number, r: number) => fw.chains[c].rules[r] as NftRule & Record<string, unknown>;

describe("daddr", () => {
  it("renders after saddr, as cidrs or a set", () => {
    const fw = FW();
    expect(fw.chains.flatMap((c) => c.rules).map(nftRuleText)).toEqual([
      "tcp flags syn tcp option maxseg size set rt mtu",
      'iifname "tailscale0" ip daddr { 192.168.8.0/24 } jump routed',
      'iifname "tailscale0" ip6 daddr { fd00:8::/64 } jump routed',
      "ct state established,related accept",
      'ip saddr @peers_0_v4 ip daddr { 192.168.8.0/24, 10.1.2.3 } tcp dport 443 accept comment "acls[0] src=alice@"',
      "ip saddr @peers_0_v4 ip daddr @lan_v4 accept",
      "counter drop",
    ]);
  });

  it("a valid table passes", () => {
    expect(problemsAfter(() => undefined)).toEqual([]);
  });

  it("the set exists and is of the rule's family; cidrs are of the rule's family", () => {
    expect(problemsAfter((fw) => (rule(fw, 1, 2).daddr = { family: "ip", set: "nope" }))).toEqual(["firewall.chains[1].rules[2]: uses set nope, which the table does not have"]);
    expect(problemsAfter((fw) => (rule(fw, 1, 2).daddr = { family: "ip", set: "peers_0_v6" }))).toEqual(["firewall.chains[1].rules[2]: matches ip daddr against ipv6_addr set peers_0_v6"]);
    expect(problemsAfter((fw) => (rule(fw, 0, 1).daddr = { family: "ip", cidrs: ["192.168.8.0/24", "fd00::/8"] }))).toEqual(["firewall.chains[0].rules[1]: fd00::/8 is not an ip address"]);
    expect(problemsAfter((fw) => (rule(fw, 0, 2).daddr = { family: "ip6", cidrs: ["10.0.0.0/8"] }))).toEqual(["firewall.chains[0].rules[2]: 10.0.0.0/8 is not an ip6 address"]);
  });

  it("saddr and daddr of one rule are of one family", () => {
    expect(problemsAfter((fw) => (rule(fw, 1, 1).daddr = { family: "ip6", cidrs: ["fd00:8::/64"] }))).toEqual(["firewall.chains[1].rules[1]: matches ip saddr and ip6 daddr"]);
  });

  it("the schema refuses an empty cidr list, an unknown field and a bad address", () => {
    expect(problemsAfter((fw) => (rule(fw, 0, 1).daddr = { family: "ip", cidrs: [] }))[0]).toMatch(/^firewall\.chains\[0\]\.rules\[1\]\.daddr/);
    expect(problemsAfter((fw) => (rule(fw, 0, 1).daddr = { family: "ip", cidrs: ["192.168.8.0/24"], port: 1 } as never))[0]).toMatch(/^firewall\.chains\[0\]\.rules\[1\]\.daddr/);
    expect(problemsAfter((fw) => (rule(fw, 0, 1).daddr = { family: "ip", cidrs: ["192.168.8.0/33"] }))[0]).toMatch(/^firewall\.chains\[0\]\.rules\[1\]\.daddr/);
  });
});
