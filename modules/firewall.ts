/**
 * firewall: one nftables table, `inet meshfleet`, that never touches other
 * tables (docker's and tailscale's keep theirs). The ports in
 * allowedTCPPorts/allowedUDPPorts are the host's and its modules'
 * definitions of them, merged by priority (NixOS
 * `networking.firewall.allowedTCPPorts`); `interfaces.<name>` and
 * `sources.<cidr>` open ports on one interface or to some sources only.
 *
 * Whether what no rule accepts is dropped (`defaultPolicy`) depends on the
 * host: the roles meshfleet runs (coordinator, reverse proxy, DERP relay,
 * subnet router, exit node) default to drop; a plain client (a laptop, a NAS,
 * a desktop) defaults to accept, because with nftables a drop in any base
 * chain drops the packet whatever other tables accept: a drop policy here
 * would silently close the SMB, media server and printer the host served on
 * its LAN before it joined the fleet (issue 13 item 1).
 */
import { z } from "zod";
import { defineModule, type HostConfig, type OptionSetting } from "../core/module.ts";
import { mkDefault } from "../core/priority.ts";
import { cidr, port } from "../core/schema-types.ts";
import type { ScopedRule } from "../core/types.ts";

export { NFT_TABLE } from "../contract/constants.ts";

const ifname = z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, { message: "an interface name" });

/** A port range, as NixOS writes it: `{ from: 60000, to: 61000 }`, both ends open. */
const portRange = z
  .unknown()
  .superRefine((v, ctx) => {
    // "8000-8100" is how nft and iptables write it; the option is NixOS's shape.
    const m = typeof v === "string" ? /^\s*(\d+)\s*[-:]\s*(\d+)\s*$/.exec(v) : null;
    if (typeof v !== "string" && typeof v !== "number") return;
    const p = { expected: "a range { from: PORT, to: PORT }", found: JSON.stringify(v), fix: m ? `write it as { from: ${m[1]}, to: ${m[2]} }` : "write it as { from: PORT, to: PORT } (a single port belongs in the allowed*Ports list)" };
    ctx.addIssue({ code: "custom", message: `${p.expected} (found ${p.found}; ${p.fix})`, input: v, params: { ...p } });
  })
  .pipe(z.object({ from: port, to: port }).strict())
  .superRefine((r, ctx) => {
    if (r.from <= r.to) return;
    const p = { expected: "a range with from <= to (both ends are open)", found: `from ${r.from}, to ${r.to}`, fix: `write it as { from: ${r.to}, to: ${r.from} }` };
    ctx.addIssue({ code: "custom", message: `${p.expected} (found ${p.found}; ${p.fix})`, input: r, params: { ...p } });
  });
type PortRange = z.output<typeof portRange>;

/** Ports one range option may open: the bundle spells a range out port by port (bundle format 3), 49152-65535 fits. */
export const MAX_RANGE_PORTS = 16384;

const rangesOption = (proto: "TCP" | "UDP", where: string) =>
  z
    .array(portRange)
    .superRefine((rs, ctx) => {
      const n = rangeRule(rs).ranges.reduce((sum, x) => sum + Number(x.split("-")[1]) - Number(x.split("-")[0]) + 1, 0);
      if (n <= MAX_RANGE_PORTS) return;
      const p = { expected: `ranges covering at most ${MAX_RANGE_PORTS} ports in one option (each port is a set element in the bundle)`, found: `${n} ports`, fix: "open fewer ports, or accept the whole interface with firewall.trustedInterfaces" };
      ctx.addIssue({ code: "custom", message: `${p.expected} (found ${p.found}; ${p.fix})`, input: rs, params: { ...p } });
    })
    .default([])
    .describe(`${proto} port ranges open ${where}, each \`{ from, to }\` with both ends open (NixOS \`allowed${proto}PortRanges\`), e.g. \`[{ from: ${proto === "TCP" ? "1714, to: 1764" : "60000, to: 61000"} }]\`.`);

/** The ports one interface or one source gets (NixOS `networking.firewall.interfaces.<name>`). */
const scopedPorts = z
  .object({
    allowedTCPPorts: z.array(port).default([]).describe("TCP ports open here."),
    allowedUDPPorts: z.array(port).default([]).describe("UDP ports open here."),
    allowedTCPPortRanges: rangesOption("TCP", "here"),
    allowedUDPPortRanges: rangesOption("UDP", "here"),
  })
  .strict();

/** Ports and "lo-hi" ranges of a list of ranges (a one-port range is a port); sorted, without repeats. */
export function rangeRule(ranges: PortRange[]): { ports: number[]; ranges: string[] } {
  const ports = [...new Set(ranges.filter((r) => r.from === r.to).map((r) => r.from))].sort((a, b) => a - b);
  const spans = [...new Set(ranges.filter((r) => r.from < r.to).map((r) => `${r.from}-${r.to}`))].sort((a, b) => Number(a.split("-")[0]) - Number(b.split("-")[0]) || a.localeCompare(b));
  return { ports, ranges: spans };
}

/**
 * The roles whose hosts default to `defaultPolicy: drop`: what meshfleet
 * itself runs there, so it knows every port the host must answer on.
 * A host advertising routes or an exit node through tailscale directly is a
 * router too.
 */
export function closedRoles(c: Partial<HostConfig>): string[] {
  const on = (m: { enable?: boolean } | undefined) => m?.enable === true;
  const ts = c.tailscale;
  return [
    ...(on(c.headscale) ? ["coordinator (headscale.enable)"] : []),
    ...(on(c["reverse-proxy"]) ? ["reverse proxy (reverse-proxy.enable)"] : []),
    ...(on(c.derp) ? ["DERP relay (derp.enable)"] : []),
    ...(on(c["subnet-router"]) || (ts?.enable && ts.advertiseRoutes.length > 0) ? ["subnet router"] : []),
    ...(on(c["exit-node"]) || (ts?.enable && ts.advertiseExitNode) ? ["exit node"] : []),
  ];
}

export const firewallModule = defineModule({
  name: "firewall",
  description: "The host's inbound firewall (an nftables table of its own).",
  options: z
    .object({
      enable: z.boolean().default(true).describe("Manage the `inet meshfleet` nftables table."),
      defaultPolicy: z
        .enum(["drop", "accept"])
        .default("accept")
        .describe(
          "What happens to inbound traffic no rule accepts, outside the tailnet (tailscale0 follows trustTailnet). " +
            "drop: everything but the open ports (allowedTCPPorts, allowedUDPPorts, interfaces, sources) is dropped. " +
            "accept: traffic outside the tailnet is left alone; only what this host asks for is dropped (SSH from other sources than sshFrom, ping when allowPing is false). " +
            "Default: drop on hosts that run a role meshfleet owns (headscale, reverse-proxy, derp, subnet-router or exit-node enabled, or tailscale advertising routes or an exit node; set at mkDefault), accept on every other host (a plain client). " +
            "Why: with nftables a drop in any base chain drops the packet whatever other tables accept, so a drop policy on a laptop, NAS or desktop that joins the fleet would silently close what it served on its LAN (SMB, a media server, a printer); meshfleet closes only hosts whose every service it knows. `meshfleet plan` states every host whose policy becomes drop.",
        ),
      allowedTCPPorts: z
        .array(port)
        .default([])
        .describe("TCP ports open on every interface (with defaultPolicy: drop). Modules add their services' ports to this list through the same priority merge (sshd, headscale, the proxy, DERP), so `!mkForce [22, 443]` replaces everything they open."),
      allowedUDPPorts: z
        .array(port)
        .default([])
        .describe("UDP ports open on every interface (with defaultPolicy: drop); modules add theirs (tailscale, STUN) through the same merge, and `!mkForce [...]` replaces them."),
      allowedTCPPortRanges: rangesOption("TCP", "on every interface (with defaultPolicy: drop)"),
      allowedUDPPortRanges: rangesOption("UDP", "on every interface (with defaultPolicy: drop)"),
      interfaces: z
        .record(ifname, scopedPorts)
        .default({})
        .describe(
          "Ports open on one interface only, by interface name: `interfaces: {eth0: {allowedTCPPorts: [445], allowedUDPPorts: [137, 138]}}` (NixOS `networking.firewall.interfaces.<name>`). " +
            "Merged by priority like every option: lists concatenate, `!mkForce` replaces. With defaultPolicy: accept these ports are open anyway (a warning says so).",
        ),
      sources: z
        .record(cidr, scopedPorts)
        .default({})
        .describe(
          "Ports open to one source network only, by CIDR: `sources: {192.168.8.0/24: {allowedTCPPorts: [445]}}`. " +
            "Merged by priority like every option. With defaultPolicy: accept these ports are open anyway (a warning says so).",
        ),
      trustedInterfaces: z.array(ifname).default([]).describe("Interfaces whose traffic is accepted (e.g. a management link)."),
      trustTailnet: z.boolean().default(true).describe("Accept everything arriving on tailscale0 (the coordinator's policy filters it); false enforces the fleet's policy (git's) on this host too, and on a subnet router or exit node on what it forwards from the tailnet to its routes."),
      allowPing: z.boolean().default(true).describe("Accept ICMP echo; false drops it (outside the tailnet) whatever defaultPolicy says."),
      sshFrom: z.array(cidr).default([]).describe("Limit SSH to these sources (empty: anywhere); SSH from other sources is dropped (outside the tailnet) whatever defaultPolicy says."),
    })
    .strict(),
  settings(o, host): OptionSetting[] {
    // The roles meshfleet owns close by default, at mkDefault: a host file's plain value wins.
    if (!o.enable || closedRoles(host.config).length === 0) return [];
    return [{ option: "firewall.defaultPolicy", value: mkDefault("drop") }];
  },
  // The port lists become rules in evaluation (core/eval.ts openPorts): there the modules' inbound
  // rules are definitions of the same lists, merged by priority with the host's.
  config(o, ctx) {
    const scoped: ScopedRule[] = [];
    const add = (at: string, sel: Pick<ScopedRule, "iifname" | "from">, p: z.output<typeof scopedPorts>) => {
      for (const [proto, list, key] of [["tcp", p.allowedTCPPorts, "allowedTCPPorts"], ["udp", p.allowedUDPPorts, "allowedUDPPorts"]] as const) {
        const ports = [...new Set(list)].sort((a, b) => a - b);
        if (ports.length) scoped.push({ proto, ports, ...sel, comment: `${at}.${key}` });
      }
      addRanges(at, sel, p);
    };
    // Ranges: one rule per option, its one-port ranges as ports and the rest as nft intervals.
    const addRanges = (at: string, sel: Pick<ScopedRule, "iifname" | "from">, p: Pick<z.output<typeof scopedPorts>, "allowedTCPPortRanges" | "allowedUDPPortRanges">) => {
      for (const [proto, list, key] of [["tcp", p.allowedTCPPortRanges, "allowedTCPPortRanges"], ["udp", p.allowedUDPPortRanges, "allowedUDPPortRanges"]] as const) {
        const r = rangeRule(list);
        if (r.ports.length + r.ranges.length) scoped.push({ proto, ports: r.ports, ...(r.ranges.length ? { ranges: r.ranges } : {}), ...sel, comment: `${at}.${key}` });
      }
    };
    addRanges("firewall", {}, o);
    for (const name of Object.keys(o.interfaces).sort()) add(`firewall.interfaces.${name}`, { iifname: name }, o.interfaces[name]);
    for (const src of Object.keys(o.sources).sort()) add(`firewall.sources.${src}`, { from: [src] }, o.sources[src]);
    const noOp = o.enable && o.defaultPolicy === "accept";
    return {
      firewall: { enable: o.enable, defaultPolicy: o.defaultPolicy, scoped, trustedInterfaces: o.trustedInterfaces, trustTailnet: o.trustTailnet, allowPing: o.allowPing },
      warnings: [
        ...(["interfaces", "sources"] as const).map((k) => ({
          when: noOp && ctx.self.config.agent && scoped.some((r) => r.comment.startsWith(`firewall.${k}.`)),
          path: `firewall.${k}`,
          expected: "ports opened on a host whose firewall drops the rest (firewall.defaultPolicy: drop)",
          found: `firewall.defaultPolicy: accept (this host's default: it runs no role meshfleet closes), so these ports are open anyway, as is every other port outside the tailnet`,
          fix: `set firewall.defaultPolicy: drop on ${ctx.host} to open only the listed ports, or remove firewall.${k}`,
        })),
        ...(["allowedTCPPortRanges", "allowedUDPPortRanges"] as const).map((k) => ({
          when: noOp && ctx.self.config.agent && o[k].length > 0,
          path: `firewall.${k}`,
          expected: "ports opened on a host whose firewall drops the rest (firewall.defaultPolicy: drop)",
          found: `firewall.defaultPolicy: accept (this host's default: it runs no role meshfleet closes), so ${o[k].map((r) => `${r.from}-${r.to}`).join(", ")} ${o[k].length === 1 ? "is" : "are"} open anyway, as is every other port outside the tailnet`,
          fix: `set firewall.defaultPolicy: drop on ${ctx.host} to open only the listed ports, or remove firewall.${k}`,
        })),
        ...(["allowedTCPPorts", "allowedUDPPorts"] as const).map((k) => ({
          when: noOp && ctx.self.config.agent && o[k].length > 0,
          path: `firewall.${k}`,
          expected: "ports opened on a host whose firewall drops the rest (firewall.defaultPolicy: drop)",
          found: `firewall.defaultPolicy: accept (this host's default: it runs no role meshfleet closes), so ${o[k].join(", ")} ${o[k].length === 1 ? "is" : "are"} open anyway, as is every other port outside the tailnet`,
          fix: `set firewall.defaultPolicy: drop on ${ctx.host} to open only the listed ports, or remove firewall.${k}`,
        })),
      ],
    };
  },
});

declare module "../core/module.ts" {
  interface ModuleOptions {
    firewall: z.output<typeof firewallModule.options>;
  }
}

/** The nft text lives with the bundle contract (contract/nftables.ts); this is the host's table as `meshfleet render` shows it. */
export { renderNftables } from "../core/render.ts";
