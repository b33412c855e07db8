/**
 * fleet.yaml: the mesh-wide settings (coordinator, users, DNS, DERP, policy).
 * Every field has its default and description here; docs come from these.
 */
import { z } from "zod";
import { cidr, duration, hostName, ipv4, url, userName } from "./schema-types.ts";

export const fleetSchema = z
  .object({
    coordinator: z
      .object({
        host: hostName.describe("The host (a file in this folder) that runs Headscale."),
        serverUrl: url.describe("The URL clients use to reach Headscale (through the reverse proxy), e.g. https://headscale.example.com."),
        headscaleVersion: z.string().regex(/^\d+\.\d+\.\d+$/).default("0.29.2").describe("Headscale release to deploy."),
      })
      .strict()
      .describe("Where the coordinator runs and how clients reach it."),
    tailscaleVersion: z.string().regex(/^\d+\.\d+\.\d+$/).default("1.98.10").describe("Tailscale client release the nodes run."),
    users: z.array(userName).default([]).describe("Headscale users to create (nodes log in as one of them unless tagged)."),
    admins: z.array(userName).default([]).describe("Users who must keep SSH to the coordinator (checked against the policy)."),
    prefixes: z
      .object({
        v4: cidr.default("100.64.0.0/10").describe("IPv4 range node addresses come from."),
        v6: cidr.default("fd7a:115c:a1e0::/48").describe("IPv6 range node addresses come from."),
        allocation: z.enum(["sequential", "random"]).default("sequential").describe("How addresses are handed out."),
      })
      .strict()
      .default({ v4: "100.64.0.0/10", v6: "fd7a:115c:a1e0::/48", allocation: "sequential" })
      .describe("Tailnet address ranges."),
    dns: z
      .object({
        magicDns: z.boolean().default(true).describe("Give nodes names under baseDomain."),
        baseDomain: z.string().default("tailnet.internal").describe("MagicDNS domain; must differ from the server URL's host and not contain it."),
        overrideLocalDns: z.boolean().default(true).describe("Make nodes use the nameservers below."),
        nameservers: z
          .object({
            global: z.array(z.string()).default(["1.1.1.1", "9.9.9.9"]).describe("Resolvers for everything."),
            split: z.record(z.string(), z.array(z.string())).default({}).describe("Per-domain resolvers, e.g. home.arpa: [192.168.8.1]."),
          })
          .strict()
          .default({ global: ["1.1.1.1", "9.9.9.9"], split: {} }),
        extraRecords: z
          .array(z.object({ name: z.string(), type: z.enum(["A", "AAAA"]).default("A"), value: z.string() }).strict())
          .default([])
          .describe("Extra DNS records served to nodes."),
      })
      .strict()
      .default({ magicDns: true, baseDomain: "tailnet.internal", overrideLocalDns: true, nameservers: { global: ["1.1.1.1", "9.9.9.9"], split: {} }, extraRecords: [] })
      .describe("MagicDNS and resolvers pushed to nodes."),
    derp: z
      .object({
        regionId: z.number().int().min(900).max(999).default(900).describe("The self-hosted DERP region id (900-999 are free for custom regions)."),
        regionCode: z.string().default("home").describe("Short region code shown by `tailscale netcheck`."),
        regionName: z.string().default("meshfleet").describe("Region name."),
        publicUrls: z.array(url).default([]).describe("DERP map URLs to merge (fetched by Headscale at start; keep [] offline)."),
      })
      .strict()
      .default({ regionId: 900, regionCode: "home", regionName: "meshfleet", publicUrls: [] })
      .describe("The self-hosted DERP region; its nodes are the hosts with the derp module enabled."),
    preAuthKeyExpiration: duration.default("90d").describe("Lifetime of the pre-auth keys meshfleet makes."),
    policy: z.any().default({}).describe("The tailnet policy (groups, tagOwners, hosts, acls, grants, ssh, autoApprovers, nodeAttrs, tests)."),
  })
  .strict();

export type FleetConfig = z.infer<typeof fleetSchema>;

export { ipv4 };
