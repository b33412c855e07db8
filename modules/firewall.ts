/**
 * firewall: one nftables table, `inet meshfleet`, that never touches other
 * tables (docker's and tailscale's keep theirs). Inbound is default-drop
 * with only the ports in allowedTCPPorts/allowedUDPPorts: the host's and
 * its modules' definitions of them, merged by priority (NixOS
 * `networking.firewall.allowedTCPPorts`).
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";
import { cidr, port } from "../core/schema-types.ts";

export { NFT_TABLE } from "../contract/constants.ts";

export const firewallModule = defineModule({
  name: "firewall",
  description: "The host's inbound firewall (an nftables table of its own).",
  options: z
    .object({
      enable: z.boolean().default(true).describe("Manage the `inet meshfleet` nftables table."),
      allowedTCPPorts: z
        .array(port)
        .default([])
        .describe("TCP ports open on the public side. Modules add their services' ports to this list through the same priority merge (sshd, headscale, the proxy, DERP), so `!mkForce [22, 443]` replaces everything they open."),
      allowedUDPPorts: z
        .array(port)
        .default([])
        .describe("UDP ports open on the public side; modules add theirs (tailscale, STUN) through the same merge, and `!mkForce [...]` replaces them."),
      trustedInterfaces: z.array(z.string().regex(/^[A-Za-z0-9_.:@-]{1,15}$/, { message: "an interface name" })).default([]).describe("Interfaces whose traffic is accepted (e.g. a management link)."),
      trustTailnet: z.boolean().default(true).describe("Accept everything arriving on tailscale0 (the coordinator's policy filters it); false enforces the fleet's policy (git's) on this host too, and on a subnet router or exit node on what it forwards from the tailnet to its routes."),
      allowPing: z.boolean().default(true).describe("Accept ICMP echo."),
      sshFrom: z.array(cidr).default([]).describe("Limit SSH to these sources (empty: anywhere)."),
    })
    .strict(),
  // The port lists become rules in evaluation (core/eval.ts openPorts): there the modules' inbound
  // rules are definitions of the same lists, merged by priority with the host's.
  config(o) {
    return { firewall: { enable: o.enable, trustedInterfaces: o.trustedInterfaces, trustTailnet: o.trustTailnet, allowPing: o.allowPing } };
  },
});

declare module "../core/module.ts" {
  interface ModuleOptions {
    firewall: z.output<typeof firewallModule.options>;
  }
}

/** The nft text lives with the bundle contract (contract/nftables.ts); this is the host's table as `meshfleet render` shows it. */
export { renderNftables } from "../core/render.ts";
