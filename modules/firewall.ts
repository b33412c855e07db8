/**
 * firewall: one nftables table, `inet meshfleet`, that never touches other
 * tables (docker's and tailscale's keep theirs). Inbound is default-drop
 * with only the ports the host's modules asked for.
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";
import { cidr, port } from "../core/schema-types.ts";
import type { InboundRule } from "../core/types.ts";

export { NFT_TABLE } from "../contract/constants.ts";

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
    const firewall = { enable: o.enable, trustedInterfaces: o.trustedInterfaces, trustTailnet: o.trustTailnet, allowPing: o.allowPing };
    if (!o.enable) return { firewall };
    const extra: InboundRule[] = [
      ...o.allowedTCPPorts.map((p): InboundRule => ({ proto: "tcp", port: p, from: [], owner: "firewall", comment: "firewall.allowedTCPPorts" })),
      ...o.allowedUDPPorts.map((p): InboundRule => ({ proto: "udp", port: p, from: [], owner: "firewall", comment: "firewall.allowedUDPPorts" })),
    ];
    return { inbound: extra, firewall };
  },
});

declare module "../core/module.ts" {
  interface ModuleOptions {
    firewall: z.output<typeof firewallModule.options>;
  }
}

/** The nft text lives with the bundle contract (contract/nftables.ts); this is the host's table as `meshfleet render` shows it. */
export { renderNftables } from "../core/render.ts";
