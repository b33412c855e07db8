/**
 * A fleet host's node in headscale's list: the newest registration of its
 * name, never a person's device that logged in through OpenID Connect and
 * reports the same name (provider/headscale-cli.ts `nodeOfHost`). Route
 * approval, key renewal, `status`, `doctor` and `plan --nodes` all read it;
 * before, each matched by name alone and took the highest id, so the
 * person's device (registered later) stood in for the host.
 */
import { describe, expect, it } from "vitest";
import { expiringKeys } from "../../cli/commands/status.ts";
import { withLiveNodes } from "../../core/policy/fleet.ts";
import { parseNodesList } from "../../core/policy/live.ts";
import { checkRouteApproval, findNode, nodeOfHost, preAuthKeyRenewal, type HeadscaleNode } from "../../provider/headscale-cli.ts";

const NOW = 1_800_000_000;
const DAY = 86400;
// The subnet router joined with meshfleet's tagged key (id 4); carol's laptop, logged in through
// OpenID Connect, later reported the same hostname (id 9) and announces nothing.
const router: HeadscaleNode = {
  id: 4, name: "lxc-router", given_name: "lxc-router", tags: ["tag:router"], user: { id: 2, name: "tagged-devices" }, register_method: 1,
  available_routes: ["192.168.1.0/24"], approved_routes: ["192.168.1.0/24"], ip_addresses: ["100.64.0.4"], expiry: { seconds: 0 },
} as HeadscaleNode;
const laptop: HeadscaleNode = {
  id: 9, name: "lxc-router", given_name: "lxc-router-x7k2", user: { id: 5, name: "carol", provider: "oidc", email: "carol@example.com" }, register_method: 3,
  available_routes: [], approved_routes: [], ip_addresses: ["100.64.0.9"], expiry: { seconds: NOW + 3 * DAY },
} as HeadscaleNode;

describe("nodeOfHost", () => {
  it("skips a device an OpenID Connect login registered, by its owner's provider or by how it registered", () => {
    expect(nodeOfHost([router, laptop], "lxc-router")).toBe(router);
    expect(nodeOfHost([router, { ...laptop, user: { name: "carol" } }], "lxc-router")).toBe(router); // register_method 3 alone
    expect(nodeOfHost([router, { ...laptop, register_method: undefined }], "lxc-router")).toBe(router); // provider "oidc" alone
    expect(nodeOfHost([laptop], "lxc-router")).toBeUndefined();
    // A tagged node is a server's however it logged in (a web login may register tagged nodes; an adopted fleet host).
    const adopted = { ...laptop, tags: ["tag:router"], user: { id: 2, name: "tagged-devices" } };
    expect(nodeOfHost([router, adopted], "lxc-router")).toBe(adopted);
    expect(findNode(JSON.stringify([laptop, router]), "lxc-router")).toEqual(router);
  });

  it("still takes the newest registration of a fleet host (a reinstall leaves several), by given name or reported name", () => {
    const again = { ...router, id: 11, approved_routes: [] };
    expect(nodeOfHost([router, again, laptop], "lxc-router")).toBe(again);
    expect(nodeOfHost([{ ...router, given_name: "renamed" }], "lxc-router")?.id).toBe(4);
    expect(nodeOfHost([router], "other")).toBeUndefined();
  });
});

describe("the readers of nodeOfHost", () => {
  const want = { host: "lxc-router", hostname: "lxc-router", routes: ["192.168.1.0/24"], exitNode: false };

  it("route approval reads the router's node, not the laptop of the same name", () => {
    expect(checkRouteApproval(JSON.stringify([router, laptop]), want)).toEqual([]);
    expect(checkRouteApproval(JSON.stringify([laptop]), want)).toEqual([
      'host lxc-router: no node named "lxc-router" is registered with headscale (node 9 of that name is carol@example.com\'s device, logged in through OpenID Connect: not this host), so its routes (192.168.1.0/24) cannot be approved; check that the agent ran `tailscale up` on lxc-router (meshfleet-agent status)',
    ]);
  });

  it("key renewal: the laptop's node does not count as the host having joined", () => {
    const k = { host: "lxc-router", hostname: "lxc-router", keyId: 7, expiration: "90d", reusable: false };
    const r = preAuthKeyRenewal(k, [laptop], [{ id: 7, expiresAt: NOW + 60 * DAY, used: true }], NOW);
    expect(r).toEqual({ renew: true, why: "the one-use pre-auth key of lxc-router (id 7) was used, but no node named lxc-router is registered" });
    expect(preAuthKeyRenewal(k, [router, laptop], [], NOW).renew).toBe(false);
  });

  it("status does not list the laptop's expiring key as the host's", () => {
    const hosts = [{ name: "lxc-router", hostname: "lxc-router", tailscale: true }];
    expect(expiringKeys(hosts, [], [router, laptop], [], NOW * 1000)).toEqual([]);
  });

  it("plan --nodes: the laptop keeps its own addresses and joins as a node of its own; after a reinstall the newest registration is the host's", () => {
    const { nodes: live, diagnostics } = parseNodesList(JSON.stringify([laptop, router]), "nodes.json");
    expect(diagnostics).toEqual([]);
    expect(live.map((l) => l.oidc ?? false)).toEqual([true, false]);
    const out = withLiveNodes([{ name: "lxc-router", tags: ["tag:router"], ips: [], approvedRoutes: ["192.168.1.0/24"] }], new Map([["lxc-router", "lxc-router"]]), live);
    expect(out.map((n) => [n.name, n.ips])).toEqual([
      ["lxc-router", ["100.64.0.4"]],
      ["lxc-router-x7k2", ["100.64.0.9"]],
    ]);
    // A reinstall: the old registration keeps the given name, the new one (higher id) is suffixed. plan --nodes
    // takes the node route approval takes (the newest), and the old one joins as a node of its own.
    const reinstalled = { ...router, id: 12, given_name: "lxc-router-q3m1", ip_addresses: ["100.64.0.12"] };
    const both = parseNodesList(JSON.stringify([router, reinstalled]), "nodes.json").nodes;
    expect(both.map((l) => l.id)).toEqual([4, 12]);
    expect(nodeOfHost([router, reinstalled], "lxc-router")).toBe(reinstalled);
    const after = withLiveNodes([{ name: "lxc-router", tags: ["tag:router"], ips: [], approvedRoutes: [] }], new Map([["lxc-router", "lxc-router"]]), both);
    expect(after.map((n) => [n.name, n.ips])).toEqual([
      ["lxc-router", ["100.64.0.12"]],
      ["lxc-router#2", ["100.64.0.4"]],
    ]);
    // Named in another case only: the newest as well.
    const upper = parseNodesList(JSON.stringify([{ ...router, name: "LXC-Router", given_name: "LXC-Router" }, { ...reinstalled, name: "LXC-Router", given_name: "LXC-Router-q3m1" }]), "nodes.json").nodes;
    expect(withLiveNodes([{ name: "lxc-router", tags: ["tag:router"], ips: [], approvedRoutes: [] }], new Map([["lxc-router", "lxc-router"]]), upper)[0].ips).toEqual(["100.64.0.12"]);
    // The router not joined yet, the laptop holding the very name: the host still has no address of its own.
    const only = parseNodesList(JSON.stringify([{ ...laptop, given_name: "lxc-router" }]), "nodes.json").nodes;
    const alone = withLiveNodes([{ name: "lxc-router", tags: ["tag:router"], ips: [], approvedRoutes: [] }], new Map([["lxc-router", "lxc-router"]]), only);
    expect(alone.map((n) => [n.name, n.ips])).toEqual([
      ["lxc-router", []],
      ["lxc-router#2", ["100.64.0.9"]],
    ]);
  });
});
