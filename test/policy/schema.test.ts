/**
 * core/policy/schema.ts: a policy of the wrong shape is refused as meshfleet
 * check refuses it (policyHooks.prepare: the schema's issues through
 * zodDiagnostics), each with its path, what was expected and found, and a
 * fix that quotes the option's own description. Pure and fast, for Stryker
 * (npm run mutate -- policy-fleet).
 */
import { beforeEach, describe, expect, it, vi } from "vitest";
import { zodDiagnostics } from "../../core/merge.ts";

// The schema is built when its module loads: each test loads it afresh, so that a mutant of it
// (Stryker switches them on while the tests run) is what the test sees.
let policySchema: typeof import("../../core/policy/schema.ts").policySchema;
beforeEach(async () => {
  vi.resetModules();
  ({ policySchema } = await import("../../core/policy/schema.ts"));
});

/** [path, expected, found, the description the fix ends with]. */
function refused(raw: unknown): [string, string, string, string][] {
  const parsed = policySchema.safeParse(raw, { reportInput: true });
  expect(parsed.success).toBe(false);
  return zodDiagnostics(policySchema, parsed.error!, new Map(), "hosts/home/fleet.yaml", "policy").map((d) => {
    expect(d.file).toBe("hosts/home/fleet.yaml");
    const fix = `set ${d.path} to ${d.expected} — `;
    expect(d.fix.startsWith(fix), d.fix).toBe(true);
    return [d.path, d.expected, d.found, d.fix.slice(fix.length)];
  });
}

describe("policySchema", () => {
  it("names each top-level option of the wrong type, with its description", () => {
    expect(refused({ groups: 1, tagOwners: 1, hosts: 1, acls: 1, grants: 1, ssh: 1, autoApprovers: 1, tests: 1 })).toEqual([
      ["policy.groups", "a record", "1", "group:x -> members written `alice@`."],
      ["policy.tagOwners", "a record", "1", "tag:x -> who may assign it (users, groups, tags)."],
      ["policy.hosts", "a record", "1", "Names for addresses or CIDRs, usable in src/dst."],
      ["policy.acls", "an array", "1", "Allow rules. No acls and no grants allows everything."],
      ["policy.grants", "an array", "1", "Grant rules. `grants: []` with no acls denies everything."],
      ["policy.ssh", "an array", "1", "Tailscale SSH rules."],
      ["policy.autoApprovers", "an object", "1", "Hand-written approvers; meshfleet adds the ones the hosts imply."],
      ["policy.tests", "an array", "1", "Assertions checked by `meshfleet check` and by headscale on load."],
    ]);
  });

  it("names each field of a rule, test or approver of the wrong type, with its description", () => {
    expect(refused({
      acls: [{ action: "deny", src: 1, dst: 1, proto: 1 }],
      grants: [{ src: 1, dst: 1, ip: 1, app: 1, via: 1 }],
      ssh: [{ action: "accept", src: [], dst: 1, users: 1 }],
      autoApprovers: { routes: 1, exitNode: 1 },
      tests: [{ src: 1, proto: 1, accept: 1, deny: 1 }],
    })).toEqual([
      ["policy.acls[0].action", "one of \"accept\"", "\"deny\"", "Only `accept` exists: anything not accepted is denied."],
      ["policy.acls[0].src", "an array", "1", "Sources: users (`alice@`), `group:x`, `tag:x`, hosts, CIDRs, `autogroup:member|tagged`, `*`."],
      ["policy.acls[0].dst", "an array", "1", "Destinations with ports: `tag:web:80,443`, `host:22`, `192.168.8.0/24:*`, `autogroup:self:*`."],
      ["policy.acls[0].proto", "a string", "1", "IP protocol name or number (`tcp`, `udp`, `icmp`, `6`); all when omitted."],
      ["policy.grants[0].src", "an array", "1", "Sources, as in acls."],
      ["policy.grants[0].dst", "an array", "1", "Destinations without ports (ports go in `ip`)."],
      ["policy.grants[0].ip", "an array", "1", "`*`, `tcp:443`, `udp:53`, `22`, `tcp:8000-8100`."],
      ["policy.grants[0].app", "a record", "1", "Application capabilities, passed through to headscale."],
      ["policy.grants[0].via", "an array", "1", "Route the traffic through routers with these tags."],
      ["policy.ssh[0].dst", "an array", "1", "Tags, `autogroup:self|member|tagged`, or the source user itself (never `*` or a host)."],
      ["policy.ssh[0].users", "an array", "1", "Login users: `root`, `autogroup:nonroot`, a name, `localpart:*@domain`."],
      ["policy.autoApprovers.routes", "a record", "1", "CIDR -> owners whose nodes' advertisements are approved."],
      ["policy.autoApprovers.exitNode", "an array", "1", "Owners whose exit-node advertisements are approved."],
      ["policy.tests[0].src", "a string", "1", "One source alias."],
      ["policy.tests[0].proto", "a string", "1", "tcp, udp or sctp; the client default (tcp/udp/icmp) when omitted."],
      ["policy.tests[0].accept", "an array", "1", "`host:port` pairs that must be reachable."],
      ["policy.tests[0].deny", "an array", "1", "`host:port` pairs that must not be reachable."],
    ]);
  });

  it("refuses keys it does not know, at any depth", () => {
    const parsed = policySchema.safeParse({ acl: [], acls: [{ action: "accept", src: [], dst: [], port: 22 }] });
    expect(parsed.success).toBe(false);
    expect(zodDiagnostics(policySchema, parsed.error!, new Map(), "hosts/home/fleet.yaml", "policy").map((d) => [d.path, d.found])).toEqual([
      ["policy.acls[0]", 'unknown option(s) "port"'],
      ["policy", 'unknown option(s) "acl"'],
    ]);
  });
});
