/**
 * subnet-router and exit-node: forwarding sysctls (tailscale will not set
 * them), best-effort UDP GRO forwarding, and the routes the node advertises,
 * checked against the host's LAN before anything is deployed.
 */
import { z } from "zod";
import { defineModule, type Assertion } from "../core/module.ts";
import { cidr, cidrContains, isNetworkAddress, parseCidr } from "../core/schema-types.ts";
import type { BestEffortCommand } from "../core/types.ts";

const FORWARDING = { "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1" };

const groForwarding = (iface: string): BestEffortCommand => ({
  // Does not survive a reboot and fails on some NICs, so it is best effort (REFERENCE.md).
  argv: ["ethtool", "-K", iface, "rx-udp-gro-forwarding", "on", "rx-gro-list", "off"],
  why: `UDP GRO forwarding on ${iface} for subnet-router throughput`,
});

export const subnetRouterModule = defineModule({
  name: "subnet-router",
  description: "Advertise home subnets to the tailnet (a subnet router).",
  options: z
    .object({
      enable: z.boolean().default(false).describe("Route the subnets below into the tailnet."),
      routes: z.array(cidr).default([]).describe("Subnets to advertise, each inside one of the host's `lan` CIDRs, e.g. [192.168.8.0/24]."),
      lanInterface: z.string().default("eth0").describe("The LAN interface (for UDP GRO forwarding)."),
      udpGroForwarding: z.boolean().default(true).describe("Tune UDP GRO forwarding on lanInterface (best effort)."),
    })
    .strict(),
  config(o, ctx) {
    if (!o.enable) return {};
    const lan = ctx.self.lan.map((c) => parseCidr(c)).filter((c) => c !== null);
    const assertions: Assertion[] = [{
      assertion: o.routes.length > 0,
      path: "subnet-router.routes",
      expected: "at least one subnet to advertise",
      found: "an empty list",
      fix: "add the home LAN, e.g. subnet-router.routes: [192.168.8.0/24], or drop the subnet-router import",
    }];
    o.routes.forEach((r, i) => {
      const c = parseCidr(r)!;
      assertions.push({
        assertion: isNetworkAddress(c),
        path: `subnet-router.routes[${i}]`,
        expected: "a network address (host bits zero)",
        found: JSON.stringify(r),
        fix: `write the network, e.g. ${networkOf(r)}`,
      });
      assertions.push({
        assertion: lan.some((l) => cidrContains(l, c)),
        path: `subnet-router.routes[${i}]`,
        expected: `a subnet inside the host's LAN (${ctx.self.lan.join(", ") || "no lan declared"})`,
        found: JSON.stringify(r),
        fix: `add the LAN to \`lan\` in ${ctx.file}, or advertise a subnet the host is attached to`,
      });
      o.routes.forEach((other, j) => {
        if (j <= i) return;
        const d = parseCidr(other)!;
        assertions.push({
          assertion: !(cidrContains(c, d) || cidrContains(d, c)),
          path: `subnet-router.routes[${j}]`,
          expected: "routes that do not overlap each other",
          found: `${other}, which overlaps routes[${i}] ${r}`,
          fix: "keep only the wider route or split them so they do not overlap",
        });
      });
    });
    return {
      sysctl: FORWARDING,
      forward: true,
      tailscale: { advertiseRoutes: o.routes },
      bestEffort: o.udpGroForwarding ? [groForwarding(o.lanInterface)] : [],
      probes: [{ name: "routes advertised", kind: "routes-advertised", routes: o.routes }],
      assertions,
    };
  },
});

export const exitNodeModule = defineModule({
  name: "exit-node",
  description: "Offer this node as an exit node for the tailnet's internet traffic.",
  options: z
    .object({
      enable: z.boolean().default(false).describe("Advertise this node as an exit node."),
      wanInterface: z.string().default("eth0").describe("The interface towards the internet (for UDP GRO forwarding)."),
      udpGroForwarding: z.boolean().default(true).describe("Tune UDP GRO forwarding on wanInterface (best effort)."),
    })
    .strict(),
  config(o) {
    if (!o.enable) return {};
    return {
      sysctl: FORWARDING,
      forward: true,
      tailscale: { advertiseExitNode: true },
      bestEffort: o.udpGroForwarding ? [groForwarding(o.wanInterface)] : [],
    };
  },
});

function networkOf(r: string): string {
  const c = parseCidr(r);
  if (!c) return r;
  const width = c.v6 ? 128 : 32;
  const mask = ((1n << BigInt(width)) - 1n) ^ ((1n << BigInt(width - c.bits)) - 1n);
  const a = c.addr & mask;
  if (c.v6) return r;
  return `${[24n, 16n, 8n, 0n].map((s) => (a >> s) & 255n).join(".")}/${c.bits}`;
}
