/**
 * subnet-router and exit-node: forwarding sysctls (tailscale will not set
 * them; set as kernel.sysctl, so a host can override them), MSS clamping of
 * forwarded TCP in the host's nft table, and UDP GRO forwarding per
 * interface through a unit that tolerates NICs without it. The routes themselves are
 * tailscale's: subnet-router sets `tailscale.advertiseRoutes` (and exit-node
 * `tailscale.advertiseExitNode`) through the same priority merge as a host
 * file, so a node routes the same whichever way it was spelled, and the
 * tailscale module checks every route once, wherever it was written.
 */
import { z } from "zod";
import { defineModule, type Assertion, type ModuleContext, type OptionSetting, type Warning } from "../core/module.ts";
import { mkDefault } from "../core/priority.ts";
import { addressIn, cidr, parseCidr } from "../core/schema-types.ts";
import { ifaceName } from "../core/freetext.ts";
import type { UnitSpec } from "../core/types.ts";

const FORWARDING = { "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1" };

/** Forwarding on, as kernel.sysctl settings (a host can still !mkForce them). */
const forwarding = (from: string): OptionSetting[] =>
  Object.entries(FORWARDING).map(([k, v]) => ({ option: ["kernel", "sysctl", k], value: v, from }));

/** Where Debian's ethtool package puts ethtool (the unit is skipped when it is not there). */
export const ETHTOOL = "/usr/sbin/ethtool";

/** systemd-escape for a unit-name part: what is not [A-Za-z0-9:_.] becomes \xNN (a leading "." too). */
export function systemdEscape(s: string): string {
  return [...Buffer.from(s, "utf8")]
    .map((b, i) => {
      const c = String.fromCharCode(b);
      return /[A-Za-z0-9:_]/.test(c) || (c === "." && i > 0) ? c : `\\x${b.toString(16).padStart(2, "0")}`;
    })
    .join("");
}

/** The unit that turns UDP GRO forwarding on for one interface. */
export const groUnitName = (iface: string): string => `meshfleet-udp-gro-${systemdEscape(iface)}.service`;

/**
 * UDP GRO forwarding on one interface (tailscale's Linux throughput advice),
 * as a unit so that it comes back after a reboot and whenever the NIC
 * appears. Not every driver has the feature (hassio-addons#370): the `-`
 * prefix keeps a refusal from failing the unit, and a host without ethtool
 * skips it. `meshfleet doctor` reads `ethtool -k` to say whether it took.
 */
export function groUnit(iface: string): UnitSpec {
  const dev = `sys-subsystem-net-devices-${systemdEscape(iface)}.device`;
  return {
    name: groUnitName(iface),
    enable: true,
    content: [
      "[Unit]",
      `Description=meshfleet: UDP GRO forwarding on ${iface} (best effort: some drivers lack it)`,
      // Ordering only: no Requires/BindsTo, so a host without the device unit (a container without udev) does not wait for it.
      `After=${dev}`,
      `ConditionFileIsExecutable=${ETHTOOL}`,
      "",
      "[Service]",
      "Type=oneshot",
      "RemainAfterExit=yes",
      // systemd expands % specifiers and $ variables in ExecStart=: doubled, they stay literal.
      `ExecStart=-${ETHTOOL} -K ${iface.replace(/[%$]/g, "$&$&")} rx-udp-gro-forwarding on rx-gro-list off`,
      "",
      "[Install]",
      `WantedBy=${dev} multi-user.target`,
      "",
    ].join("\n"),
  };
}

/**
 * A Proxmox node that routes a subnet holding its own containers: tailscale
 * marks a forwarded packet in ts-forward and masquerades it in
 * ts-postrouting; bridged into the container it crosses the same chains
 * again, is masqueraded a second time and dropped (tailscale#12407). Found
 * from the fleet: a host whose address is another host's lxc.proxmoxHost,
 * and that host's address inside one of the routes.
 */
/** The fleet's LXC containers, listed once per fleet (every router's routes are checked against them: no hosts x routers scan). */
const containersOf = (() => {
  const seen = new WeakMap<ModuleContext["hosts"], ModuleContext["hosts"][string][]>();
  return (hosts: ModuleContext["hosts"]) => {
    let list = seen.get(hosts);
    if (!list) seen.set(hosts, (list = Object.values(hosts).filter((h) => h.config.lxc.enable)));
    return list;
  };
})();

function proxmoxNodeRoutesOwnContainers(ctx: ModuleContext, routes: { cidr: string; option: string }[]): Assertion[] {
  if (!ctx.self.config.tailscale.snatSubnetRoutes) return [];
  const containers = containersOf(ctx.hosts);
  if (!containers.length) return [];
  const me = new Set([ctx.self.address, ctx.host]);
  const out: Assertion[] = [];
  for (const r of routes) {
    const c = parseCidr(r.cidr);
    if (!c) continue;
    const inside = containers.filter((h) => {
      const l = h.config.lxc;
      return h.name !== ctx.host && me.has(l.proxmoxHost.replace(/^[^@]*@/, "").replace(/:\d+$/, "")) && addressIn(h.address, c);
    });
    if (!inside.length) continue;
    const names = inside.map((h) => `${h.name} (${h.address}, CT ${h.config.lxc.ctid})`).join(", ");
    out.push({
      assertion: false,
      path: r.option,
      expected: "a subnet router that is not the Proxmox node of containers inside the route it advertises (tailscale#12407: traffic to them is masqueraded twice and dropped)",
      found: `${r.cidr}, which holds this Proxmox node's own container${inside.length > 1 ? "s" : ""} ${names}, with tailscale.snatSubnetRoutes on`,
      fix: `run the subnet router inside a container on the node instead (imports: [subnet-router, proxmox-lxc], as hosts/home/lxc-tailscale.yaml), or set tailscale.snatSubnetRoutes: false on ${ctx.host} and route the tailnet (100.64.0.0/10) to ${ctx.self.address} on the LAN's gateway`,
    });
  }
  return out;
}

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

/** clampMss with the firewall off: the clamp lives in the meshfleet table, which is then not loaded. */
const clampNeedsFirewall = (ctx: ModuleContext, module: string, clampMss: boolean): Warning => ({
  when: clampMss && !ctx.self.config.firewall.enable,
  path: `${module}.clampMss`,
  expected: "firewall.enable: true (the MSS clamp is a chain of the host's meshfleet nft table)",
  found: "firewall.enable: false, so TCP through this router is not clamped",
  fix: `remove firewall.enable: false, or set ${module}.clampMss: false and clamp MSS yourself`,
});

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
    udpGroForwarding: z.boolean().default(true).describe("Turn UDP GRO forwarding on for lanInterface at every boot (a unit that tolerates NICs without it; `doctor` says whether it took)."),
    clampMss: z.boolean().default(true).describe("Clamp the MSS of forwarded TCP SYNs to the route's MTU in the host's nft table (needs firewall.enable), so TCP through the router does not stall when path MTU discovery fails."),
  })
  .strict();

export const exitNodeOptions = z
  .object({
    enable: z.boolean().default(false).describe("Advertise this node as an exit node."),
    wanInterface: ifaceName("exit-node.wanInterface").default("eth0").describe("The interface towards the internet (for UDP GRO forwarding)."),
    udpGroForwarding: z.boolean().default(true).describe("Turn UDP GRO forwarding on for wanInterface at every boot (a unit that tolerates NICs without it; `doctor` says whether it took)."),
    clampMss: z.boolean().default(true).describe("Clamp the MSS of forwarded TCP SYNs to the route's MTU in the host's nft table (needs firewall.enable)."),
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
      ...(o.clampMss ? { firewall: { mssClamp: true } } : {}),
      units: o.udpGroForwarding ? [groUnit(o.lanInterface)] : [],
      warnings: [clampNeedsFirewall(ctx, "subnet-router", o.clampMss)],
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
            ...proxmoxNodeRoutesOwnContainers(ctx, ctx.self.facts.tailnet?.routes ?? []),
          ]
        : [
            ...(ctx.self.config.agent ? forwardingOn(ctx, "a node advertising routes", routes.some((r) => r.includes(":"))) : []),
            ...proxmoxNodeRoutesOwnContainers(ctx, ctx.self.facts.tailnet?.routes ?? []),
          ],
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
    // A subnet router on the same host may already own the unit for this interface.
    const sr = ctx.self.config["subnet-router"];
    const srGro = (sr.enable || (ctx.self.facts.tailnet?.routes.length ?? 0) > 0) && sr.udpGroForwarding ? sr.lanInterface : null;
    return {
      forward: true,
      ...(o.clampMss ? { firewall: { mssClamp: true } } : {}),
      units: o.udpGroForwarding && srGro !== o.wanInterface ? [groUnit(o.wanInterface)] : [],
      warnings: [clampNeedsFirewall(ctx, "exit-node", o.clampMss)],
      assertions: [
        ...(o.enable ? [joinsMesh(ctx.self.facts.tailnet !== null, "exit-node")] : []),
        ...(ctx.self.config.agent ? forwardingOn(ctx, "an exit node", true) : []),
      ],
    };
  },
});
