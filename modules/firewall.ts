/**
 * firewall: one nftables table, `inet meshfleet`, that never touches other
 * tables (docker's and tailscale's keep theirs). Inbound is default-drop
 * with only the ports the host's modules asked for.
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";
import { cidr, port } from "../core/schema-types.ts";
import type { HostSystem, InboundRule } from "../core/types.ts";

export const NFT_TABLE = "meshfleet";

export const firewallModule = defineModule({
  name: "firewall",
  description: "The host's inbound firewall (an nftables table of its own).",
  options: z
    .object({
      enable: z.boolean().default(true).describe("Manage the `inet meshfleet` nftables table."),
      allowedTCPPorts: z.array(port).default([]).describe("More TCP ports open on the public side."),
      allowedUDPPorts: z.array(port).default([]).describe("More UDP ports open on the public side."),
      trustedInterfaces: z.array(z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, { message: "an interface name" })).default([]).describe("Interfaces whose traffic is accepted (e.g. a management link)."),
      trustTailnet: z.boolean().default(true).describe("Accept everything arriving on tailscale0 (the coordinator's policy filters it); false enforces the fleet's policy on this host too."),
      allowPing: z.boolean().default(true).describe("Accept ICMP echo."),
      sshFrom: z.array(cidr).default([]).describe("Limit SSH to these sources (empty: anywhere)."),
    })
    .strict(),
  config(o) {
    if (!o.enable) return {};
    const extra: InboundRule[] = [
      ...o.allowedTCPPorts.map((p): InboundRule => ({ proto: "tcp", port: p, from: [], owner: "firewall", comment: "firewall.allowedTCPPorts" })),
      ...o.allowedUDPPorts.map((p): InboundRule => ({ proto: "udp", port: p, from: [], owner: "firewall", comment: "firewall.allowedUDPPorts" })),
    ];
    return { inbound: extra };
  },
});

const q = (s: string) => JSON.stringify(s);

/** The whole `table inet meshfleet { ... }` text for a host, or null when the firewall is off. */
export function renderNftables(host: HostSystem): string | null {
  const fw = host.firewall;
  if (!fw.enable) return null;
  const opts = fw;
  const lines: string[] = [`table inet ${NFT_TABLE} {`];
  for (const [name, elems] of Object.entries(fw.sets).sort(([a], [b]) => a.localeCompare(b))) {
    // nft sets hold one family; each policy set becomes a v4 and a v6 set.
    for (const [fam, type] of [["v4", "ipv4_addr"], ["v6", "ipv6_addr"]] as const) {
      const mine = elems.filter((e) => e.includes(":") === (fam === "v6"));
      lines.push(`  set ${name}_${fam} {`, `    type ${type}`, "    flags interval");
      if (mine.length) lines.push(`    elements = { ${mine.join(", ")} }`);
      lines.push("  }");
    }
  }
  lines.push(
    "  chain input {",
    "    type filter hook input priority filter; policy drop;",
    "    ct state established,related accept",
    "    ct state invalid drop",
    '    iifname "lo" accept',
  );
  for (const i of opts.trustedInterfaces) lines.push(`    iifname ${q(i)} accept comment "trusted interface"`);
  if (opts.allowPing) lines.push("    icmp type echo-request accept", "    icmpv6 type echo-request accept");
  // IPv6 neighbour discovery and router adverts must always pass, or v6 breaks.
  lines.push("    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, packet-too-big } accept");
  if (fw.tailnet.length || !opts.trustTailnet) lines.push('    iifname "tailscale0" jump tailnet');
  else lines.push('    iifname "tailscale0" accept comment "tailnet: filtered by the coordinator policy"');
  const sorted = [...fw.inbound].sort((a, b) => a.proto.localeCompare(b.proto) || a.port - b.port);
  for (const r of sorted) {
    const from = r.from.length ? `${r.from[0].includes(":") ? "ip6" : "ip"} saddr { ${r.from.join(", ")} } ` : "";
    lines.push(`    ${from}${r.proto} dport ${r.port} accept comment ${q(`${r.owner}: ${r.comment}`)}`);
  }
  lines.push("  }");
  if (fw.tailnet.length || !opts.trustTailnet) {
    lines.push("  chain tailnet {");
    for (const r of fw.tailnet) {
      const ports = r.ports === "any" ? "" : ` dport { ${r.ports.join(", ")} }`;
      const proto = r.proto === "any" ? (ports ? " meta l4proto { tcp, udp } th" : "") : ` ${r.proto}`;
      for (const [fam, match] of [["v4", "ip"], ["v6", "ip6"]] as const)
        lines.push(`    ${match} saddr @${r.fromSet}_${fam}${proto}${ports} accept comment ${q(r.comment)}`);
    }
    lines.push('    counter drop comment "tailnet: not allowed by the fleet policy"', "  }");
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}
