/**
 * tailscale: the client on every node (nixpkgs services.tailscale).
 * Flags are rendered as argv arrays, one flag per element (nixpkgs#399572),
 * and re-applied on every deploy with `tailscale set` (nixpkgs#276912, #509367).
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";
import { cidr, port, tag, userName, duration } from "../core/schema-types.ts";
import type { TailscaleSettings } from "../core/types.ts";

export const AUTH_KEY_FILE = "/var/lib/meshfleet/secrets/tailscale-authkey";

export const tailscaleOptions = z
  .object({
    enable: z.boolean().default(false).describe("Run tailscaled and join the mesh."),
    loginServer: z.string().default("").describe("Coordinator URL; empty means fleet.yaml's coordinator.serverUrl."),
    hostname: z.string().default("").describe("Node name in the tailnet; empty means the host's name."),
    user: z.union([userName, z.literal("")]).default("").describe("Headscale user the node logs in as (untagged nodes need one)."),
    tags: z.array(tag).default([]).describe("ACL tags the node advertises, e.g. [tag:router]; owners come from policy.tagOwners."),
    advertiseRoutes: z.array(cidr).default([]).describe("Subnets this node routes (the subnet-router module adds its routes here)."),
    advertiseExitNode: z.boolean().default(false).describe("Offer this node as an exit node."),
    acceptRoutes: z.boolean().default(false).describe("Use subnet routes other nodes advertise (off by default on Linux)."),
    acceptDns: z.boolean().default(true).describe("Use the tailnet's DNS settings."),
    ssh: z.boolean().default(false).describe("Run Tailscale SSH on this node."),
    snatSubnetRoutes: z.boolean().default(true).describe("Masquerade traffic to advertised subnets (off keeps source addresses; the LAN then needs a route back)."),
    netfilterMode: z.enum(["on", "nodivert", "off"]).default("on").describe("How tailscaled manages netfilter rules."),
    port: port.default(41641).describe("UDP port tailscaled listens on for WireGuard."),
    openFirewall: z.boolean().default(true).describe("Open the WireGuard UDP port on the public side."),
    authKey: z
      .object({
        reusable: z.boolean().default(false).describe("The pre-auth key may register several nodes."),
        ephemeral: z.boolean().default(false).describe("The node is removed when it goes offline."),
        expiration: z.union([duration, z.literal("")]).default("").describe("Key lifetime; empty means fleet.yaml's preAuthKeyExpiration."),
      })
      .strict()
      .default({ reusable: false, ephemeral: false, expiration: "" })
      .describe("The pre-auth key meshfleet makes for this node."),
    tailscaledPath: z.string().default("/usr/sbin/tailscaled").describe("Path of the tailscaled binary on the host."),
    tailscalePath: z.string().default("/usr/bin/tailscale").describe("Path of the tailscale CLI on the host."),
    environment: z.record(z.string(), z.string()).default({}).describe("Extra environment for tailscaled (e.g. TS_DEBUG_FIREWALL_MODE=nftables)."),
    extraUpFlags: z.array(z.string().regex(/^--[a-z-]+(=.*)?$/, { message: "a flag such as --operator=alice" })).default([]).describe("More `tailscale up` flags, one per element."),
  })
  .strict();

export const tailscaleModule = defineModule({
  name: "tailscale",
  description: "The Tailscale client (tailscaled) and how the node joins the mesh.",
  options: tailscaleOptions,
  config(o, ctx) {
    if (!o.enable) return {};
    const agent = ctx.self.options.agent !== false;
    const user = o.user;
    const expiration = o.authKey.expiration || ctx.fleet.preAuthKeyExpiration;
    const env = { TS_NO_LOGS_NO_SUPPORT: "true", ...o.environment };
    return {
      tailscale: {
        enable: true,
        loginServer: o.loginServer || ctx.fleet.coordinator.serverUrl,
        authKeyFile: AUTH_KEY_FILE,
        hostname: o.hostname || ctx.host,
        tags: o.tags,
        advertiseRoutes: o.advertiseRoutes,
        advertiseExitNode: o.advertiseExitNode,
        acceptRoutes: o.acceptRoutes,
        acceptDns: o.acceptDns,
        ssh: o.ssh,
        snatSubnetRoutes: o.snatSubnetRoutes,
        cli: o.tailscalePath,
      },
      files: agent
        ? [{ path: AUTH_KEY_FILE, content: "", mode: "0600", owner: "root", group: "root", secret: true, secretRef: `preauth:${ctx.host}` }]
        : [],
      units: agent
        ? [{
            name: "tailscaled.service",
            enable: true,
            content: [
              "[Unit]",
              "Description=Tailscale node agent (managed by meshfleet)",
              "Wants=network-pre.target",
              "After=network-pre.target NetworkManager.service systemd-resolved.service",
              "",
              "[Service]",
              ...Object.entries(env).sort().map(([k, v]) => `Environment=${k}=${v}`),
              `ExecStart=${o.tailscaledPath} --state=/var/lib/tailscale/tailscaled.state --socket=/run/tailscale/tailscaled.sock --port=${o.port}`,
              `ExecStopPost=${o.tailscaledPath} --cleanup`,
              "Restart=on-failure",
              "RuntimeDirectory=tailscale",
              "RuntimeDirectoryMode=0755",
              "StateDirectory=tailscale",
              "StateDirectoryMode=0700",
              "Type=notify",
              "",
              "[Install]",
              "WantedBy=multi-user.target",
              "",
            ].join("\n"),
          }]
        : [],
      inbound: o.openFirewall && agent ? [{ proto: "udp", port: o.port, from: [], owner: "tailscale", comment: "tailscale wireguard" }] : [],
      probes: agent ? [{ name: "tailscaled running", kind: "tailscale-running" }] : [],
      fleet: {
        preAuthKeys: [{ host: ctx.host, user, reusable: o.authKey.reusable, ephemeral: o.authKey.ephemeral, expiration, tags: o.tags }],
        users: user ? [user] : [],
      },
      assertions: [
        {
          assertion: o.tags.length > 0 || user !== "",
          path: "tailscale.user",
          expected: "a user, or at least one tag (a pre-auth key needs one or the other)",
          found: "neither",
          fix: "set tailscale.user to one of fleet.yaml's users, or tailscale.tags",
        },
        {
          assertion: user === "" || ctx.fleet.users.includes(user),
          path: "tailscale.user",
          expected: `one of fleet.yaml's users (${ctx.fleet.users.join(", ") || "none declared"})`,
          found: JSON.stringify(user),
          fix: `add "${user}" to users in ${ctx.fleetFile}, or pick a declared user`,
        },
      ],
    };
  },
});

/**
 * `tailscale up` argv (no auth key): every setting explicit, so a later `up`
 * never fails on "non-default flags". No --advertise-tags: headscale 0.29
 * gives a node the tags of its pre-auth key and refuses tags the client
 * requests when it registers with a key.
 */
export function tailscaleUpArgs(s: Omit<TailscaleSettings, "upArgs" | "setArgs" | "cli">, netfilterMode = "on", extra: string[] = []): string[] {
  return [
    `--login-server=${s.loginServer}`,
    `--hostname=${s.hostname}`,
    ...commonArgs(s, netfilterMode),
    ...extra,
  ];
}

/** `tailscale set` argv: what `set` can change without re-login (no tags, no login server). */
export function tailscaleSetArgs(s: Omit<TailscaleSettings, "upArgs" | "setArgs" | "cli">, netfilterMode = "on"): string[] {
  return [`--hostname=${s.hostname}`, ...commonArgs(s, netfilterMode)];
}

function commonArgs(s: Omit<TailscaleSettings, "upArgs" | "setArgs" | "cli">, netfilterMode: string): string[] {
  return [
    `--advertise-routes=${s.advertiseRoutes.join(",")}`,
    `--advertise-exit-node=${s.advertiseExitNode}`,
    `--accept-routes=${s.acceptRoutes}`,
    `--accept-dns=${s.acceptDns}`,
    `--ssh=${s.ssh}`,
    `--snat-subnet-routes=${s.snatSubnetRoutes}`,
    `--netfilter-mode=${netfilterMode}`,
  ];
}
