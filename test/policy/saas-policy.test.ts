/**
 * core/policy/saas.ts in process: saasPolicy's mapping of every place a user
 * can stand, each refusal and warning exact, the merged approvers and the
 * file's text; compareSaas' lines, differences and counts on a fleet built
 * here (no evaluateFleet, no CLI). Fast, for Stryker (npm run mutate --
 * policy-io); saas.test.ts holds the same on the lab and home fleets.
 */
import { describe, expect, it, vi } from "vitest";
import { policySchema } from "../../core/policy/index.ts";
import { compareSaas, saasPolicy, type SaasExport } from "../../core/policy/saas.ts";
import type { FleetSystem } from "../../core/types.ts";

const FILE = "hosts/x/fleet.yaml";
const D = (path: string, severity: string, expected: string, found: string, fix: string) => ({ severity, file: FILE, path, expected, found, fix });
const noLogin = (path: string, token: string) => {
  const name = token.replace(/@$/, "");
  return D(path, "error", `a Tailscale login (an e-mail such as ${name}@example.com) for the headscale user ${name}`,
    `${JSON.stringify(token)}, and neither tailscaleSaas.loginDomain nor tailscaleSaas.logins.${name} is set`,
    `set tailscaleSaas.loginDomain: <your domain> in fleet.yaml, or tailscaleSaas.logins: {${name}: ${name}@<domain>}`);
};
const tailnetHost = (name: string, value: string) => D(`policy.hosts.${name}`, "warning", "an address that stays when nodes move to Tailscale's service",
  `${value}, a tailnet address: nodes get new 100.x addresses when they log in to the service`, "name the node by a tag instead (tag:x), or set the host's new address after the move");

describe("saasPolicy", () => {
  // A user of its own in every place a user can stand, so each is reported at its own path.
  const policy = policySchema.parse({
    groups: { "group:g": ["g1@", "known@"] },
    tagOwners: { "tag:t": ["t1@"] },
    hosts: { nas: "100.64.0.9", lan: "192.168.1.0/24", wide: "100.0.0.0/9", six: "fd7a:115c:a1e0::9" },
    acls: [{ action: "accept", src: ["a1@", "tag:t", "oidc@corp.example"], dst: ["a2@:22", "tag:t:*"] }],
    grants: [{ src: ["gr1@"], dst: ["gr2@"], ip: ["*"] }],
    ssh: [{ action: "accept", src: ["s1@"], dst: ["s2@"], users: ["root"] }],
    autoApprovers: { routes: { "192.168.9.0/24": ["tag:t"], "10.0.0.0/8": ["r1@", "tag:t"] }, exitNode: ["e1@"] },
    nodeAttrs: [{ target: ["n1@"], attr: ["funnel"] }],
    tests: [{ src: "ts1@", accept: ["ta1@:22"], deny: ["td1@:22"] }, { src: "tag:t" }],
    sshTests: [{ src: "ss1@", dst: ["sd1@"], accept: ["root"] }],
    randomizeClientPort: false,
  });
  const fleet = { policy, autoApprovers: { routes: { "192.168.1.0/24": ["tag:t"], "10.0.0.0/8": ["tag:z", "tag:t", "tag:a"] }, exitNode: ["tag:x", "tag:b", "e1@"] }, users: ["u1@", "known", "mail@corp.example"] };

  it("refuses every user it cannot map, once each, at the place it stands; warns of tailnet addresses in hosts; writes no file", () => {
    const e = saasPolicy(fleet, { loginDomain: "", logins: { known: "known@corp.example" } }, FILE);
    expect(e.diagnostics).toEqual([
      noLogin('policy.groups["group:g"][0]', "g1@"),
      noLogin('policy.tagOwners["tag:t"][0]', "t1@"),
      tailnetHost("nas", "100.64.0.9"),
      tailnetHost("six", "fd7a:115c:a1e0::9"),
      noLogin("policy.acls[0].src[0]", "a1@"),
      noLogin("policy.acls[0].dst[0]", "a2@"),
      noLogin("policy.grants[0].src[0]", "gr1@"),
      noLogin("policy.grants[0].dst[0]", "gr2@"),
      noLogin("policy.ssh[0].src[0]", "s1@"),
      noLogin("policy.ssh[0].dst[0]", "s2@"),
      noLogin('policy.autoApprovers.routes["10.0.0.0/8"][0]', "r1@"),
      noLogin("policy.autoApprovers.exitNode[0]", "e1@"),
      noLogin("policy.nodeAttrs[0].target[0]", "n1@"),
      noLogin("policy.tests[0].src", "ts1@"),
      noLogin("policy.tests[0].accept[0]", "ta1@"),
      noLogin("policy.tests[0].deny[0]", "td1@"),
      noLogin("policy.sshTests[0].src", "ss1@"),
      noLogin("policy.sshTests[0].dst[0]", "sd1@"),
      noLogin("users[0]", "u1@"),
    ]);
    expect(e.text).toBe("");
    // An e-mail (an OIDC user) is a login already, as a token and as a fleet user.
    expect(e.logins).toEqual({ known: "known@corp.example", "mail@corp.example": "mail@corp.example", "oidc@corp.example": "oidc@corp.example" });
  });

  it("maps them all with a login domain (per-user logins first), merges the approvers, and writes the console's file", () => {
    const e = saasPolicy(fleet, { loginDomain: "example.com", logins: { known: "known@corp.example" } }, FILE, { v4: "100.64.0.0/10", v6: "fd7a:115c:a1e0::/48" });
    expect(e.diagnostics).toEqual([tailnetHost("nas", "100.64.0.9"), tailnetHost("six", "fd7a:115c:a1e0::9")]);
    const x = (n: string) => `${n}@example.com`;
    expect(e.policy).toEqual({
      groups: { "group:g": [x("g1"), "known@corp.example"] },
      tagOwners: { "tag:t": [x("t1")] },
      hosts: { nas: "100.64.0.9", lan: "192.168.1.0/24", wide: "100.0.0.0/9", six: "fd7a:115c:a1e0::9" },
      acls: [{ action: "accept", src: [x("a1"), "tag:t", "oidc@corp.example"], dst: [`${x("a2")}:22`, "tag:t:*"] }],
      grants: [{ src: [x("gr1")], dst: [x("gr2")], ip: ["*"] }],
      ssh: [{ action: "accept", src: [x("s1")], dst: [x("s2")], users: ["root"] }],
      // The hand-written approvers and the fleet's, merged, sorted, each owner once.
      autoApprovers: { routes: { "10.0.0.0/8": [x("r1"), "tag:a", "tag:t", "tag:z"], "192.168.1.0/24": ["tag:t"], "192.168.9.0/24": ["tag:t"] }, exitNode: [x("e1"), "tag:b", "tag:x"] },
      nodeAttrs: [{ target: [x("n1")], attr: ["funnel"] }],
      tests: [{ src: x("ts1"), accept: [`${x("ta1")}:22`], deny: [`${x("td1")}:22`] }, { src: "tag:t" }],
      sshTests: [{ src: x("ss1"), dst: [x("sd1")], accept: ["root"] }],
      randomizeClientPort: false,
    });
    expect(Object.keys(e.logins)).toEqual([...Object.keys(e.logins)].sort((a, b) => a.localeCompare(b)));
    expect(e.logins.u1).toBe(x("u1"));
    const lines = e.text.split("\n");
    expect(lines.slice(0, 4)).toEqual([
      "// Tailscale policy file, generated by meshfleet from hosts/<stack>/fleet.yaml (policy, users, tailscaleSaas).",
      "// Paste it into the admin console (Access controls, JSON editor); the console runs its tests on save.",
      "// Users are Tailscale logins; the autoApprovers include the ones meshfleet derives from the hosts' routes.",
      "{",
    ]);
    expect(lines.filter((l) => l.startsWith("//"))).toHaveLength(3);
    expect(JSON.parse(lines.slice(3).join("\n"))).toEqual(e.policy);
  });

  it("writes no autoApprovers when there are none; keeps randomizeClientPort only when set", () => {
    const e = saasPolicy({ policy: policySchema.parse({ acls: [] }), autoApprovers: { routes: {}, exitNode: [] }, users: [] }, { loginDomain: "x.org", logins: {} }, FILE);
    expect(e.policy).toEqual({ acls: [] });
    const r = saasPolicy({ policy: policySchema.parse({ randomizeClientPort: true }), autoApprovers: { routes: {}, exitNode: ["tag:x"] }, users: [] }, { loginDomain: "x.org", logins: {} }, FILE);
    expect(r.policy).toEqual({ autoApprovers: { exitNode: ["tag:x"] }, randomizeClientPort: true });
    const s = saasPolicy({ policy: undefined, autoApprovers: { routes: { "10.0.0.0/8": ["tag:r"] }, exitNode: [] }, users: [] }, { loginDomain: "x.org", logins: {} }, FILE);
    expect(s.policy).toEqual({ autoApprovers: { routes: { "10.0.0.0/8": ["tag:r"] } } });
  });

  it("refuses logins that are no name@domain and two users on one login; warns of a login no user needs and of other ranges", () => {
    const e = saasPolicy({ policy: {}, autoApprovers: { routes: {}, exitNode: [] }, users: ["a", "a2", "b", "c", "d"] }, {
      loginDomain: "x.org", logins: { a: "A@x.org", a2: "a@x.org", b: "b", c: "c@d@e", d: "d@e@", zz: "zz@x.org" },
    }, FILE, { v4: "100.64.0.0/10", v6: "fd7a:115c:a1e0::/64" });
    const bad = (n: string, v: string) => D(`tailscaleSaas.logins.${n}`, "error", "a Tailscale login: name@domain (alice@example.com, alice@github)", JSON.stringify(v), `write ${n}'s login as it appears in the admin console's Users page`);
    expect(e.diagnostics).toEqual([
      D("tailscaleSaas.logins", "error", "one Tailscale login per headscale user", "a and a2 all map to a@x.org", "give each of a, a2 its own login in tailscaleSaas.logins"),
      bad("b", "b"), bad("c", "c@d@e"), bad("d", "d@e@"),
      D("tailscaleSaas.logins.zz", "warning", "a headscale user of this fleet (fleet.yaml users) or one the policy names", '"zz", which neither names', "remove it, or add zz to users"),
      D("prefixes", "warning", "the service's ranges (100.64.0.0/10, fd7a:115c:a1e0::/48)", "v4 100.64.0.0/10, v6 fd7a:115c:a1e0::/64",
        "nodes get addresses from the service's own ranges after the move: rules written with addresses of these ranges will not match them (an IP pool in nodeAttrs can narrow the v4 range)"),
    ]);
    expect(saasPolicy({ policy: {}, autoApprovers: { routes: {}, exitNode: [] }, users: [] }, { loginDomain: "x.org", logins: {} }, FILE, { v4: "10.0.0.0/8", v6: "fd7a:115c:a1e0::/48" }).diagnostics.map((d) => d.found)).toEqual(["v4 10.0.0.0/8, v6 fd7a:115c:a1e0::/48"]);
  });
});

describe("compareSaas", () => {
  const host = (name: string, o: { tags?: string[]; routes?: string[]; exit?: boolean } = {}) =>
    ({ name, tailscale: { enable: true, tags: o.tags ?? [], advertiseRoutes: o.routes ?? [], advertiseExitNode: o.exit ?? false, hostname: "" } });
  const policy = policySchema.parse({
    groups: { "group:ops": ["alice@"] },
    tagOwners: { "tag:web": ["alice@"], "tag:r": ["alice@"] },
    acls: [
      { action: "accept", src: ["group:ops"], dst: ["tag:web:22", "192.168.1.0/24:*"] }, { action: "accept", src: ["bob@"], dst: ["tag:web:80"], proto: "tcp" },
      { action: "accept", src: ["group:ops"], dst: ["10.0.0.0/8:443", "fd00::/16:443", "::ffff:a00:0/104:443"] },
    ],
    ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:web"], users: ["root"] }],
    // r2's routes: 10.1.0.0/16 and fd00:1::/64 are approved; 10.0.0.0/8 is wider than its approver, and
    // ::ffff:a00:0/105 is 10.0.0.0/9 written IPv4-mapped: an IPv6 route, so not approved by it.
    autoApprovers: { routes: { "192.168.1.0/24": ["group:ops"], "10.0.0.0/9": ["tag:r", "tag:other"], "fd00::/16": ["tag:r"] }, exitNode: ["alice@"] },
    tests: [{ src: "alice@", accept: ["tag:web:22"], deny: ["tag:web:80"] }, { src: "dave@", accept: ["tag:web:22"] }, { src: "bob@", proto: "tcp", accept: ["tag:web:80"] }, { src: "carol@", accept: ["tag:web:22"] }],
    sshTests: [{ src: "alice@", dst: ["tag:web"], accept: ["root"], deny: ["deploy"] }, { src: "bob@", dst: ["tag:nope"], accept: ["root"] }],
  });
  const fleet = {
    // carol has no node.
    dir: "/f/", users: ["alice", "bob", "carol"], policy,
    // As evaluation gives them: the hand-written approvers merged with the ones the hosts imply.
    autoApprovers: { routes: { "192.168.1.0/24": ["group:ops"], "192.168.2.0/24": ["tag:r"], "10.0.0.0/9": ["tag:r", "tag:other"], "fd00::/16": ["tag:r"] }, exitNode: ["alice@"] },
    hosts: Object.fromEntries([
      host("laptop", { routes: ["192.168.1.0/24"], exit: true }), host("bobpc"), host("web", { tags: ["tag:web"] }), host("r", { tags: ["tag:r"], routes: ["192.168.2.0/24", "bad"] }),
      host("r2", { tags: ["tag:r"], routes: ["10.0.0.0/8", "10.1.0.0/16", "fd00:1::/64", "::ffff:a00:0/105"], exit: true }),
    ].map((h) => [h.name, h])),
    preAuthKeys: [{ host: "laptop", user: "alice", tags: [] }, { host: "bobpc", user: "bob", tags: [] }],
  } as unknown as FleetSystem;
  const exp = saasPolicy(fleet, { loginDomain: "example.com", logins: {} }, "f.yaml");
  const dave = {
    what: "test", line: "tests[1]: dave@",
    headscale: 'failed to resolve source "dave@": resolving: user not found: token "dave@"',
    saas: 'failed to resolve source "dave@example.com": resolving: user not found: token "dave@example.com"',
  };
  const carol = { what: "test", line: "tests[3]: carol@", headscale: 'source "carol@" resolved to no IP addresses', saas: 'source "carol@example.com" resolved to no IP addresses' };

  it("gives every tests and sshTests line both verdicts; the same mesh has the same pairs", () => {
    expect(exp.diagnostics).toEqual([]);
    const c = compareSaas(fleet, exp);
    expect(c.lines).toEqual([
      { what: "test", line: "tests[0]: alice@ -> tag:web:22 expected ALLOWED", headscale: "ALLOWED", saas: "ALLOWED" },
      { what: "test", line: "tests[0]: alice@ -> tag:web:80 expected DENIED", headscale: "DENIED", saas: "DENIED" },
      dave,
      { what: "test", line: "tests[2]: bob@ -> tag:web:80 (tcp) expected ALLOWED", headscale: "ALLOWED", saas: "ALLOWED" },
      carol,
      { what: "sshTest", line: "sshTests[0]: alice@ -> root@web expected accept", headscale: "as expected", saas: "as expected" },
      { what: "sshTest", line: "sshTests[0]: alice@ -> deploy@web expected deny", headscale: "as expected", saas: "as expected" },
      { what: "sshTest", line: "sshTests[1]: bob@", headscale: 'dst alias "tag:nope" resolved to no nodes', saas: 'dst alias "tag:nope" resolved to no nodes' },
    ]);
    expect(c.differences).toEqual([dave, carol]);
    expect({ passing: c.testsPassingBoth, testLines: c.testLines, pairs: c.pairs }).toEqual({ passing: 5, testLines: 7, pairs: 5 });
  });

  it("names each line and pair a SaaS file that means something else changes", () => {
    // bob's acl left out, the first test without its deny, the first sshTest dropped, and no route approved any more.
    const other: SaasExport = {
      ...exp,
      policy: {
        ...exp.policy, acls: exp.policy.acls!.slice(0, 1), tests: [{ ...exp.policy.tests![0], deny: [] }, ...exp.policy.tests!.slice(1)],
        sshTests: exp.policy.sshTests!.slice(1), autoApprovers: { exitNode: ["alice@example.com"] },
      },
    };
    const d = compareSaas(fleet, other);
    expect(d.differences).toEqual([
      { what: "test", line: "tests[0]: alice@ -> tag:web:80 expected DENIED", headscale: "DENIED", saas: "missing" },
      dave,
      { what: "test", line: "tests[2]: bob@ -> tag:web:80 (tcp) expected ALLOWED", headscale: "ALLOWED", saas: "DENIED" },
      carol,
      { what: "sshTest", line: "sshTests[0]: alice@ -> root@web expected accept", headscale: "as expected", saas: "missing" },
      { what: "sshTest", line: "sshTests[0]: alice@ -> deploy@web expected deny", headscale: "as expected", saas: "missing" },
      { what: "sshTest", line: "sshTests[0]: alice@", headscale: "ok", saas: 'dst alias "tag:nope" resolved to no nodes' },
      { what: "sshTest", line: "sshTests[1]: bob@", headscale: 'dst alias "tag:nope" resolved to no nodes', saas: "ok" },
      { what: "reach", line: "bobpc -> web", headscale: "tcp:80", saas: "denied" },
      { what: "reach", line: "laptop -> 10.1.0.0/16 via r2", headscale: "any:443", saas: "denied" },
      { what: "reach", line: "laptop -> 192.168.1.0/24 via laptop", headscale: "any:*", saas: "denied" },
      { what: "reach", line: "laptop -> fd00:1::/64 via r2", headscale: "any:443", saas: "denied" },
    ]);
    expect({ passing: d.testsPassingBoth, testLines: d.testLines, pairs: d.pairs }).toEqual({ passing: 1, testLines: 7, pairs: 5 });
  });
});

describe("module constants, loaded afresh (so that a mutant of them is what the test sees)", () => {
  it("the tailnet's ranges: no warning for the service's own, one for a tailnet address in hosts", async () => {
    vi.resetModules();
    const m = await import("../../core/policy/saas.ts");
    const f = { policy: policySchema.parse({ hosts: { a: "100.64.0.9", b: "fd7a:115c:a1e0::9", c: "10.0.0.1" } }), autoApprovers: { routes: {}, exitNode: [] }, users: [] };
    const map = { loginDomain: "x.org", logins: {} };
    expect(m.saasPolicy(f, map, FILE).diagnostics).toEqual([tailnetHost("a", "100.64.0.9"), tailnetHost("b", "fd7a:115c:a1e0::9")]);
    expect(m.saasPolicy(f, map, FILE, { v4: "100.64.0.0/10", v6: "fd7a:115c:a1e0::/48" }).diagnostics).toHaveLength(2);
  });
});
