/**
 * subnet-router and exit-node: forwarding sysctls (tailscale will not set
 * them; set as kernel.sysctl, so a host can override them) and best-effort
 * UDP GRO forwarding. The routes themselves are
 * tailscale's: subnet-router sets `tailscale.advertiseRoutes` (and exit-node
 * `tailscale.advertiseExitNode`) through the same priority merge as a host
 * file, so a node routes the same whichever way it was spelled, and the
 * tailscale module checks every route once, wherever it was written.
 */
import { z } from "zod";
import { defineModule, type Assertion, type ModuleContext, type OptionSetting } from "../core/module.ts";
import { mkDefault } from "../core/priority.ts";
import { cidr } from "../core/schema-types.ts";
import { ifaceName } from "../core/freetext.ts";
import type { BestEffortCommand } from "../core/types.ts";

const FORWARDING = { "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1" };

/** Forwarding on, as kernel.sysctl settings (a host can still !mkForce them). */
const forwarding = (from: string): OptionSetting[] =>
  Object.entries(FORWARDING).map(([k, v]) => ({ option: ["kernel", "sysctl", k], value: v, from }));

const groForwarding = (iface: string): BestEffortCommand => ({
  // Does not survive a reboot and fails on some NICs, so it is best effort (REFERENCE.md).
  argv: ["ethtool", "-K", iface, "rx-udp-gro-forwarding", "on", "rx-gro-list", "off"],
  why: `UDP GRO forwarding on ${iface} for subnet-router throughput`,
});

/** A router that does not join the mesh routes nothing (tailscale.enable: false overrides what the module turns on). */
const joinsMesh = (ok: boolean, module: string): Assertion => ({
  assertion: ok,
  path: "tailscale.enable",
  expected: `true with ${module} (it advertises to the tailnet)`,
  found: "false",
  fix: `remove tailscale.enable: false, or set ${module}.enable: false`,
});

/**
 * Forwarding still on after the merge: a host can `!mkForce` the sysctls
 * off, and then the node advertises what it cannot route (tailscale only
 * warns). IPv6 forwarding is needed for an exit node and for IPv6 routes.
 */
function forwardingOn(ctx: ModuleContext, what: string, v6: boolean): Assertion[] {
  const sysctl = ctx.self.config.kernel.sysctl;
  const keys = ["net.ipv4.ip_forward", ...(v6 ? ["net.ipv6.conf.all.forwarding"] : [])];
  return keys.map((k) => ({
    assertion: sysctl[k] === "1",
    path: `kernel.sysctl.${k}`,
    expected: `"1" on ${what} (the kernel must forward what the node advertises)`,
    found: sysctl[k] === undefined ? "not set" : JSON.stringify(sysctl[k]),
    fix: `remove the kernel.sysctl.${k} override`,
  }));
}

/** Without the agent nothing on the host sets forwarding or re-applies the routes: the node is configured by hand. */
const needsAgent = (ctx: ModuleContext, module: string): Assertion => ({
  assertion: ctx.self.config.agent,
  path: "agent",
  expected: `true with ${module} (the agent sets forwarding and advertises the routes)`,
  found: "false",
  fix: `remove agent: false, or remove ${module} from imports`,
});

export const subnetRouterOptions = z
  .object({
    enable: z.boolean().default(false).describe("Route the subnets below into the tailnet."),
    routes: z.array(cidr).default([]).describe("Subnets to advertise, each inside one of the host's `lan` CIDRs, e.g. [192.168.8.0/24]."),
    lanInterface: ifaceName("subnet-router.lanInterface").default("eth0").describe("The LAN interface (for UDP GRO forwarding)."),
    udpGroForwarding: z.boolean().default(true).describe("Tune UDP GRO forwarding on lanInterface (best effort)."),
  })
  .strict();

export const exitNodeOptions = z
  .object({
    enable: z.boolean().default(false).describe("Advertise this node as an exit node."),
    wanInterface: ifaceName("exit-node.wanInterface").default("eth0").describe("The interface towards the internet (for UDP GRO forwarding)."),
    udpGroForwarding: z.boolean().default(true).describe("Tune UDP GRO forwarding on wanInterface (best effort)."),
  })
  .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    "subnet-router": z.output<typeof subnetRouterOptions>;
    "exit-node": z.output<typeof exitNodeOptions>;
  }
}

export const subnetRouterModule = defineModule({
  name: "subnet-router",
  description: "Advertise home subnets to the tailnet (a subnet router).",
  options: subnetRouterOptions,
  settings(o, host) {
    // A node that advertises routes forwards, however the routes were set.
    const ts = host.config.tailscale;
    const routes = ts.enable && ts.advertiseRoutes.length > 0;
    if (!o.enable) return routes ? forwarding("tailscale.advertiseRoutes") : [];
    return [
      { option: "tailscale.enable", value: mkDefault(true) },
      { option: "tailscale.advertiseRoutes", value: o.routes, from: "subnet-router.routes" },
      ...forwarding("subnet-router.enable"),
    ];
  },
  config(o, ctx) {
    // A node that advertises routes forwards, however the routes were set.
    const routes = ctx.self.facts.tailnet?.routes.map((r) => r.cidr) ?? [];
    if (!o.enable && routes.length === 0) return {};
    return {
      forward: true,
      bestEffort: o.udpGroForwarding ? [groForwarding(o.lanInterface)] : [],
      probes: routes.length ? [{ name: "routes advertised", kind: "routes-advertised", routes }] : [],
      assertions: o.enable
        ? [
            {
              assertion: o.routes.length > 0,
              path: "subnet-router.routes",
              expected: "at least one subnet to advertise",
              found: "an empty list",
              fix: "add the home LAN, e.g. subnet-router.routes: [192.168.8.0/24], or drop the subnet-router import",
            },
            joinsMesh(ctx.self.facts.tailnet !== null, "subnet-router"),
            needsAgent(ctx, "subnet-router"),
            ...(ctx.self.config.agent ? forwardingOn(ctx, "a subnet router", routes.some((r) => r.includes(":"))) : []),
          ]
        : ctx.self.config.agent ? forwardingOn(ctx, "a node advertising routes", routes.some((r) => r.includes(":"))) : [],
    };
  },
});

export const exitNodeModule = defineModule({
  name: "exit-node",
  description: "Offer this node as an exit node for the tailnet's internet traffic.",
  options: exitNodeOptions,
  settings(o, host) {
    const ts = host.config.tailscale;
    if (!o.enable) return ts.enable && ts.advertiseExitNode ? forwarding("tailscale.advertiseExitNode") : [];
    return [
      { option: "tailscale.enable", value: mkDefault(true) },
      { option: "tailscale.advertiseExitNode", value: true, from: "exit-node.enable" },
      ...forwarding("exit-node.enable"),
    ];
  },
  config(o, ctx) {
    if (!o.enable && !ctx.self.facts.tailnet?.exitNode) return {};
    return {
      forward: true,
      bestEffort: o.udpGroForwarding ? [groForwarding(o.wanInterface)] : [],
      assertions: [
        ...(o.enable ? [joinsMesh(ctx.self.facts.tailnet !== null, "exit-node")] : []),
        ...(ctx.self.config.agent ? forwardingOn(ctx, "an exit node", true) : []),
      ],
    };
  },
});
