/**
 * core/policy/synthetic.ts: stand-in addresses for nodes that have not
 * joined. Each name's address is pinned: they must stay the same across
 * commits (a diff would otherwise see nodes move), so a change of the hash
 * or the layout shows here. The names below were picked because their hash
 * lands on an address that must be skipped.
 */
import { describe, expect, it } from "vitest";
import { syntheticIps } from "../../core/policy/synthetic.ts";
import type { PolicyNode } from "../../core/policy/index.ts";

const node = (name: string, ips: string[] = []): PolicyNode => ({ name, tags: [], ips, approvedRoutes: [] });
const ipsOf = (...names: string[]) => syntheticIps(names.map((n) => node(n))).map((n) => n.ips);

describe("syntheticIps", () => {
  it("a name's address is fixed: IPv4 in 100.64.0.0/10, IPv6 with the same offset", () => {
    expect(ipsOf("web")).toEqual([["100.89.188.145", "fd7a:115c:a1e0::19:bc91"]]);
    expect(ipsOf("web")).toEqual(ipsOf("web"));
  });

  it("skips .0 and .255, MagicDNS's 100.100.100.0/24 and ChromeOS's 100.115.92.0/23", () => {
    expect(ipsOf("h2")).toEqual([["100.123.52.1", "fd7a:115c:a1e0::3b:3401"]]); // lands on 100.123.51.255
    expect(ipsOf("h191")).toEqual([["100.114.52.1", "fd7a:115c:a1e0::32:3401"]]); // lands on 100.114.52.0
    expect(ipsOf("h2704")).toEqual([["100.100.101.1", "fd7a:115c:a1e0::24:6501"]]); // lands in 100.100.100.0/24
    expect(ipsOf("h11106")).toEqual([["100.115.94.1", "fd7a:115c:a1e0::33:5e01"]]); // lands in 100.115.93.0/24
    expect(ipsOf("h13146")).toEqual([["100.115.94.1", "fd7a:115c:a1e0::33:5e01"]]); // lands in 100.115.92.0/24
    // Only those: x.100 and x.92/93 under another second octet are taken as they are.
    expect(ipsOf("h382")).toEqual([["100.107.100.10", "fd7a:115c:a1e0::2b:640a"]]);
    expect(ipsOf("h70")).toEqual([["100.102.93.48", "fd7a:115c:a1e0::26:5d30"]]);
  });

  it("an address taken (by a joined node or one placed before) goes to the next free one", () => {
    expect(ipsOf("web", "web")).toEqual([
      ["100.89.188.145", "fd7a:115c:a1e0::19:bc91"],
      ["100.89.188.146", "fd7a:115c:a1e0::19:bc92"],
    ]);
    const joined = node("joined", ["100.89.188.145", "fd7a:115c:a1e0::1"]);
    const out = syntheticIps([node("web"), joined]);
    expect(out[0].ips).toEqual(["100.89.188.146", "fd7a:115c:a1e0::19:bc92"]);
    // A node with addresses is handed back as it is.
    expect(out[1]).toBe(joined);
    // Addresses outside 100.x take nothing.
    expect(syntheticIps([node("web"), node("other", ["10.89.188.145", "fd7a:115c:a1e0::19:bc91"])])[0].ips).toEqual(["100.89.188.145", "fd7a:115c:a1e0::19:bc91"]);
    expect(syntheticIps([node("web"), node("other", ["x100.89.188.145", "100.89.188.145x"])])[0].ips).toEqual(["100.89.188.145", "fd7a:115c:a1e0::19:bc91"]);
  });

  it("keeps the node's other fields", () => {
    const n: PolicyNode = { name: "db", user: "alice", tags: ["tag:db"], ips: [], approvedRoutes: ["10.0.0.0/8"] };
    const [out] = syntheticIps([n]);
    expect({ ...out, ips: [] }).toEqual(n);
    expect(out.ips).toHaveLength(2);
  });
});
