/**
 * The `policy:` key of hosts/<stack>/fleet.yaml as typed data. Keys are the
 * ones headscale 0.29 reads from its HuJSON (hscontrol/policy/v2/types.go,
 * `Policy`), so the YAML and the rendered file read alike. The schema checks
 * shape only; names, ports and references are checked by validatePolicy so
 * that every problem is reported with its path, together.
 */
import { z } from "zod";

const str = z.string();
const list = z.array(str);

const acl = z
  .object({
    action: z.literal("accept").describe("Only `accept` exists: anything not accepted is denied."),
    src: list.describe("Sources: users (`alice@`), `group:x`, `tag:x`, hosts, CIDRs, `autogroup:member|tagged`, `*`."),
    dst: list.describe("Destinations with ports: `tag:web:80,443`, `host:22`, `192.168.8.0/24:*`, `autogroup:self:*`."),
    proto: str.optional().describe("IP protocol name or number (`tcp`, `udp`, `icmp`, `6`); all when omitted."),
  })
  .strict();

const grant = z
  .object({
    src: list.describe("Sources, as in acls."),
    dst: list.describe("Destinations without ports (ports go in `ip`)."),
    ip: list.optional().describe("`*`, `tcp:443`, `udp:53`, `22`, `tcp:8000-8100`."),
    app: z.record(str, z.array(z.unknown())).optional().describe("Application capabilities, passed through to headscale."),
    via: list.optional().describe("Route the traffic through routers with these tags."),
  })
  .strict();

const ssh = z
  .object({
    action: z.enum(["accept", "check"]),
    src: list,
    dst: list.describe("Tags, `autogroup:self|member|tagged`, or the source user itself (never `*` or a host)."),
    users: list.describe("Login users: `root`, `autogroup:nonroot`, a name, `localpart:*@domain`."),
    checkPeriod: str.optional(),
    acceptEnv: list.optional(),
  })
  .strict();

const policyTest = z
  .object({
    src: str.describe("One source alias."),
    proto: str.optional().describe("tcp, udp or sctp; the client default (tcp/udp/icmp) when omitted."),
    accept: list.optional().describe("`host:port` pairs that must be reachable."),
    deny: list.optional().describe("`host:port` pairs that must not be reachable."),
  })
  .strict();

const sshTest = z
  .object({
    src: str,
    dst: list,
    accept: list.optional(),
    deny: list.optional(),
    check: list.optional(),
  })
  .strict();

export const policySchema = z
  .object({
    groups: z.record(str, list).optional().describe("group:x -> members written `alice@`."),
    tagOwners: z.record(str, list).optional().describe("tag:x -> who may assign it (users, groups, tags)."),
    hosts: z.record(str, str).optional().describe("Names for addresses or CIDRs, usable in src/dst."),
    acls: z.array(acl).optional().describe("Allow rules. No acls and no grants allows everything."),
    grants: z.array(grant).optional().describe("Grant rules. `grants: []` with no acls denies everything."),
    ssh: z.array(ssh).optional().describe("Tailscale SSH rules."),
    autoApprovers: z
      .object({
        routes: z.record(str, list).optional().describe("CIDR -> owners whose nodes' advertisements are approved."),
        exitNode: list.optional().describe("Owners whose exit-node advertisements are approved."),
      })
      .strict()
      .optional()
      .describe("Hand-written approvers; meshfleet adds the ones the hosts imply."),
    nodeAttrs: z
      .array(z.object({ target: list, attr: list.optional(), ipPool: list.optional() }).strict())
      .optional(),
    tests: z.array(policyTest).optional().describe("Assertions checked by `meshfleet check` and by headscale on load."),
    sshTests: z.array(sshTest).optional(),
    randomizeClientPort: z.boolean().optional(),
  })
  .strict();

export type Policy = z.infer<typeof policySchema>;
export type AclRule = z.infer<typeof acl>;
export type GrantRule = z.infer<typeof grant>;
export type SshRule = z.infer<typeof ssh>;
export type PolicyTest = z.infer<typeof policyTest>;

/** route CIDR (or the exit node) -> owners (`tag:router`, `alice@`, `group:x`). */
export interface AutoApprovers {
  routes: Record<string, string[]>;
  exitNode: string[];
}
