/**
 * Issue 17, routes, exit nodes and relays: each mistake gives one diagnostic
 * (file, option path, expected, found, fix) and no fleet; the same host
 * without the mistake still evaluates.
 */
import { describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";

const vps = BASE["vps.yaml"];
const laptop = BASE["laptop.yaml"];
const router = BASE["router.yaml"];
const exitNode = (extra = "") => `imports: [exit-node]\naddress: 10.0.0.5\ntailscale:\n  user: alice\n${extra}`;
const relay = (hostname: string) =>
  `imports: [derp-relay]\naddress: 203.0.113.20\nderp:\n  hostname: ${hostname}\n  derpPort: 8443\n  certMode: manual\ntailscale:\n  user: alice\n`;
const vpsNamed = vps.replace("derp:\n", "derp:\n  hostname: derp.example.com\n");

async function evaluate(files: Record<string, string>) {
  const { dir, cleanup } = writeFleet(files);
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    return { ...r, diagnostics: r.diagnostics.map((d) => ({ ...d, file: d.file.split(dir).join("<fleet>"), fix: d.fix.split(dir).join("<fleet>") })) };
  } finally {
    cleanup();
  }
}

const BAD: Record<string, { files: Record<string, string>; want: { file: string; path: string; expected: string; found: string; fix: string } }> = {
  "a route set through tailscale.advertiseRoutes outside every LAN of the host": {
    files: { "laptop.yaml": laptop + "  advertiseRoutes: [10.9.0.0/24]\n" },
    want: { file: "<fleet>/laptop.yaml", path: "tailscale.advertiseRoutes[0]", expected: "a subnet inside the host's LAN (no lan declared)", found: '"10.9.0.0/24"', fix: "add the LAN to `lan` in laptop.yaml, or advertise a subnet the host is attached to" },
  },
  "an exit node with IPv4 forwarding forced off": {
    files: { "laptop.yaml": exitNode('kernel:\n  sysctl:\n    net.ipv4.ip_forward: !mkForce "0"\n') },
    want: { file: "<fleet>/laptop.yaml", path: "kernel.sysctl.net.ipv4.ip_forward", expected: '"1" on an exit node (the kernel must forward what the node advertises)', found: '"0"', fix: "remove the kernel.sysctl.net.ipv4.ip_forward override" },
  },
  "an exit node with IPv6 forwarding forced off": {
    files: { "laptop.yaml": exitNode('kernel:\n  sysctl:\n    net.ipv6.conf.all.forwarding: !mkForce "0"\n') },
    want: { file: "<fleet>/laptop.yaml", path: "kernel.sysctl.net.ipv6.conf.all.forwarding", expected: '"1" on an exit node (the kernel must forward what the node advertises)', found: '"0"', fix: "remove the kernel.sysctl.net.ipv6.conf.all.forwarding override" },
  },
  "a subnet router with forwarding forced off": {
    files: { "router.yaml": router + 'kernel:\n  sysctl:\n    net.ipv4.ip_forward: !mkForce "0"\n' },
    want: { file: "<fleet>/router.yaml", path: "kernel.sysctl.net.ipv4.ip_forward", expected: '"1" on a subnet router (the kernel must forward what the node advertises)', found: '"0"', fix: "remove the kernel.sysctl.net.ipv4.ip_forward override" },
  },
  "a subnet router with agent: false": {
    files: { "router.yaml": router + "agent: false\n" },
    want: { file: "<fleet>/router.yaml", path: "agent", expected: "true with subnet-router (the agent sets forwarding and advertises the routes)", found: "false", fix: "remove agent: false, or remove subnet-router from imports" },
  },
  "two DERP relays with one hostname (spelt differently)": {
    files: { "vps.yaml": vpsNamed, "relay.yaml": relay("DERP.example.com.") },
    want: { file: "<fleet>/vps.yaml", path: "derp.hostname", expected: "a name no other DERP relay of the fleet uses", found: '"derp.example.com", also the relay on host relay', fix: "set derp.hostname on vps to a name of its own that points at 203.0.113.10" },
  },
  "an exit node with tailscale disabled": {
    files: { "laptop.yaml": exitNode().replace("tailscale:\n", "tailscale:\n  enable: false\n") },
    want: { file: "<fleet>/laptop.yaml", path: "tailscale.enable", expected: "true with exit-node (it advertises to the tailnet)", found: "false", fix: "remove tailscale.enable: false, or set exit-node.enable: false" },
  },
  "a DERP region id below 900 while a public DERP map is merged": {
    files: { "vps.yaml": vps.replace("derp:\n", "derp:\n  regionId: 1\n"), "fleet.yaml": BASE["fleet.yaml"] + "derp:\n  publicUrls: [https://controlplane.tailscale.com/derpmap/default]\n" },
    want: { file: "<fleet>/vps.yaml", path: "derp.regionId", expected: "a region id in 900-999 while fleet.yaml derp.publicUrls merges a public DERP map (its regions use the ids below 900)", found: "1", fix: "set derp.regionId to an id in 900-999 other than the fleet's (e.g. 999), or 0 for the fleet's region" },
  },
};

describe("issue 17: routes, exit nodes and relays", () => {
  for (const [name, { files, want }] of Object.entries(BAD)) {
    it(name, async () => {
      const r = await evaluate(files);
      expect(r.fleet, "nothing renders").toBeUndefined();
      expect(r.diagnostics).toEqual([{ severity: "error", ...want }]);
    });
  }

  const GOOD: Record<string, Record<string, string>> = {
    "a route through tailscale.advertiseRoutes inside the host's LAN": { "laptop.yaml": laptop.replace("address: 10.0.0.5\n", "address: 10.0.0.5\nlan: [10.9.0.0/16]\n") + "  advertiseRoutes: [10.9.0.0/24]\n" },
    "an exit node with forwarding as the module sets it": { "laptop.yaml": exitNode() },
    "two DERP relays with names of their own": { "vps.yaml": vpsNamed, "relay.yaml": relay("derp2.example.com") },
    "a DERP region id below 900 with no public DERP map": { "vps.yaml": vps.replace("derp:\n", "derp:\n  regionId: 1\n") },
    "a public DERP map with the fleet's own region id": { "fleet.yaml": BASE["fleet.yaml"] + "derp:\n  publicUrls: [https://controlplane.tailscale.com/derpmap/default]\n" },
  };
  for (const [name, files] of Object.entries(GOOD)) {
    it(`passes: ${name}`, async () => {
      const r = await evaluate(files);
      expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
      expect(r.fleet).toBeDefined();
    });
  }

  it("the advertised routes and the exit node forward", async () => {
    const r = await evaluate({ "laptop.yaml": exitNode() });
    expect(r.fleet!.hosts.laptop.sysctl).toMatchObject({ "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1" });
    expect(r.fleet!.hosts.router.sysctl).toMatchObject({ "net.ipv4.ip_forward": "1" });
  });
});
