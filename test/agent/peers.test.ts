/**
 * Host-side enforcement in the agent: the peer sets filled from tailscale
 * status, applied to a real nft table in a throwaway network namespace.
 */
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";
import { nftRuleset, peerSets } from "../../contract/nftables.ts";
import { renderHost } from "../../core/render.ts";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { addressesByHost, nftComparable, peerSetScript } from "../../agent/peers.ts";

const STATUS = JSON.stringify({
  BackendState: "Running",
  Self: { HostName: "lxc-tailscale", DNSName: "lxc-tailscale.lab.meshfleet.internal.", TailscaleIPs: ["100.64.0.2", "fd7a:115c:a1e0::2"] },
  Peer: {
    "nodekey:a": { HostName: "laptop", DNSName: "laptop.lab.meshfleet.internal.", TailscaleIPs: ["100.64.0.3", "fd7a:115c:a1e0::3"] },
    "nodekey:b": { HostName: "vps", DNSName: "vps.lab.meshfleet.internal.", TailscaleIPs: ["100.64.0.1", "fd7a:115c:a1e0::1"] },
    "nodekey:c": { HostName: "intruder", DNSName: "intruder.lab.meshfleet.internal.", TailscaleIPs: ["100.64.0.9"] },
  },
});

describe("peer sets", () => {
  it("maps fleet hosts to their live addresses", () => {
    const m = addressesByHost(STATUS);
    expect(m.get("laptop")).toEqual(["100.64.0.3", "fd7a:115c:a1e0::3"]);
    expect(addressesByHost("not json").size).toBe(0);
  });

  it("writes only the allowed hosts' addresses, per family", () => {
    const script = peerSetScript(
      [
        { name: "peers_0_v4", type: "ipv4_addr", elements: ["192.168.50.0/24"], members: ["laptop"] },
        { name: "peers_0_v6", type: "ipv6_addr", elements: [], members: ["laptop"] },
      ],
      addressesByHost(STATUS),
    );
    expect(script).toBe(
      "flush set inet meshfleet peers_0_v4\nadd element inet meshfleet peers_0_v4 { 192.168.50.0/24, 100.64.0.3 }\n" +
        "flush set inet meshfleet peers_0_v6\nadd element inet meshfleet peers_0_v6 { fd7a:115c:a1e0::3 }\n",
    );
    expect(script).not.toContain("100.64.0.9");
  });

  it("drift checks ignore set elements but not rules", () => {
    const a = "table inet meshfleet {\n\tset peers_0_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 100.64.0.3 }\n\t}\n\tchain input {\n\t}\n}\n";
    const b = a.replace("\n\t\telements = { 100.64.0.3 }", "");
    expect(nftComparable(a, ["peers_0_v4"])).toBe(nftComparable(b, ["peers_0_v4"]));
    expect(nftComparable(a, ["peers_0_v4"])).not.toBe(nftComparable(b.replace("chain input", "chain output"), ["peers_0_v4"]));
    // Only the bundle's own sets follow tailscale status: another set's elements are compared.
    expect(nftComparable(a, ["peers_1_v4"])).not.toBe(nftComparable(b, ["peers_1_v4"]));
  });

  it.skipIf(skipUnlessCi(process.getuid?.() !== 0 && NEEDS_ROOT))("a real nft table takes the lab router's rules and refreshed sets", async () => {
    const r = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
    const host = r.fleet!.hosts["lxc-tailscale"];
    const bundle = renderHost(host, { "preauth:lxc-tailscale": "test-key", "noise-public-key": "test-noise-public-key" });
    const sets = peerSets(bundle.firewall);
    expect(sets.length).toBeGreaterThan(0);
    const names = sets.map((s) => s.name);
    const ns = `mf-peers-${process.pid}`;
    await execa("ip", ["netns", "add", ns]);
    try {
      const nft = (input: string, args = ["-f", "-"]) => execa("ip", ["netns", "exec", ns, "nft", ...args], { input, all: true });
      await nft(nftRuleset(bundle.firewall)!);
      const before = (await execa("ip", ["netns", "exec", ns, "nft", "-s", "list", "table", "inet", "meshfleet"])).stdout;
      await nft(peerSetScript(sets, addressesByHost(STATUS)));
      const after = (await execa("ip", ["netns", "exec", ns, "nft", "-s", "list", "table", "inet", "meshfleet"])).stdout;
      expect(after).toContain("100.64.0.3"); // laptop: allowed on 80/443
      expect(after).toContain("100.64.0.1"); // vps: tagged, allowed
      expect(after).not.toContain("100.64.0.9"); // not in the fleet
      expect(nftComparable(after, names)).toBe(nftComparable(before, names));
      expect(nftComparable(after, [])).not.toBe(nftComparable(before, []));
    } finally {
      await execa("ip", ["netns", "del", ns], { reject: false });
    }
  });
});

describe("node tags", () => {
  it("are checked against the coordinator's view (Self.Tags), not prefs", async () => {
    const { tagsDrift } = await import("../../agent/tailscale.ts");
    const want = { tags: ["tag:router"] } as never;
    expect(tagsDrift(want, { Self: { Tags: ["tag:router"] } })).toEqual([]);
    expect(tagsDrift(want, { Self: { Tags: null } })).toEqual(['tags: expected ["tag:router"], found []']);
  });
});
