/** Table-driven evaluator cases, validation messages (snapshotted), rendering and host rules. */
import { describe, expect, it } from "vitest";
import {
  evaluateReachability, generateAutoApprovers, policySchema, renderPolicyHuJson, runPolicyTests, tailnetRulesForHost, validatePolicy,
  type Policy, type PolicyNode, type PolicyContext,
} from "../../core/policy/index.ts";
import { prng } from "./corpus/generate.ts";

const N = (name: string, ip: number, o: Partial<PolicyNode> = {}): PolicyNode => ({ name, tags: [], ips: [`100.64.0.${ip}`, `fd7a:115c:a1e0::${ip}`], approvedRoutes: [], ...o });
const nodes: PolicyNode[] = [
  N("laptop", 1, { user: "alice" }),
  N("phone", 2, { user: "alice" }),
  N("bobpc", 3, { user: "bob" }),
  N("web", 4, { tags: ["tag:web"] }),
  N("db", 5, { tags: ["tag:db"] }),
  N("router", 6, { tags: ["tag:router"], approvedRoutes: ["192.168.8.0/24", "0.0.0.0/0", "::/0"] }),
];
const base = {
  groups: { "group:admins": ["alice@"] },
  tagOwners: { "tag:web": ["alice@"], "tag:db": ["alice@"], "tag:router": ["alice@"] },
  hosts: { nas: "192.168.8.10", lan: "192.168.8.0/24" },
};
const P = (p: Partial<Policy>): Policy => policySchema.parse({ ...base, ...p });

// [policy, src, dst, port, proto, allowed]
const table: [string, Partial<Policy>, string, string, number, "tcp" | "udp", boolean][] = [
  ["no acls and no grants allow all", {}, "bobpc", "db", 5432, "tcp", true],
  ["grants: [] denies all", { grants: [] }, "laptop", "web", 80, "tcp", false],
  ["user to tag on a port", { acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:80"] }] }, "bobpc", "web", 80, "tcp", true],
  ["…not another port", { acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:80"] }] }, "bobpc", "web", 81, "tcp", false],
  ["…proto udp only", { acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:53"], proto: "udp" }] }, "bobpc", "web", 53, "tcp", false],
  ["group", { acls: [{ action: "accept", src: ["group:admins"], dst: ["tag:db:*"] }] }, "phone", "db", 5432, "tcp", true],
  ["users do not match tagged nodes", { acls: [{ action: "accept", src: ["alice@"], dst: ["*:*"] }] }, "web", "db", 22, "tcp", false],
  ["autogroup:member excludes tagged", { acls: [{ action: "accept", src: ["autogroup:member"], dst: ["tag:db:22"] }] }, "web", "db", 22, "tcp", false],
  ["autogroup:tagged", { acls: [{ action: "accept", src: ["autogroup:tagged"], dst: ["tag:db:22"] }] }, "web", "db", 22, "tcp", true],
  ["autogroup:self within a user", { acls: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self:*"] }] }, "laptop", "phone", 22, "tcp", true],
  ["autogroup:self not across users", { acls: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self:*"] }] }, "bobpc", "phone", 22, "tcp", false],
  ["port range", { grants: [{ src: ["*"], dst: ["tag:web"], ip: ["tcp:8000-8100"] }] }, "bobpc", "web", 8050, "tcp", true],
  ["grant ip without proto is any proto", { grants: [{ src: ["*"], dst: ["tag:web"], ip: ["53"] }] }, "bobpc", "web", 53, "udp", true],
  ["subnet route via host alias", { acls: [{ action: "accept", src: ["bob@"], dst: ["nas:445"] }] }, "bobpc", "192.168.8.0/24 via router", 445, "tcp", true],
  ["exit node needs internet", { acls: [{ action: "accept", src: ["bob@"], dst: ["autogroup:internet:*"] }] }, "bobpc", "internet via router", 443, "tcp", true],
  ["no internet without a rule", { acls: [{ action: "accept", src: ["bob@"], dst: ["lan:*"] }] }, "bobpc", "internet via router", 443, "tcp", false],
  ["via grant only through via-tagged routers", { grants: [{ src: ["bob@"], dst: ["lan"], ip: ["*"], via: ["tag:web"] }] }, "bobpc", "192.168.8.0/24 via router", 22, "tcp", false],
  ["via grant through the router", { grants: [{ src: ["bob@"], dst: ["lan"], ip: ["*"], via: ["tag:router"] }] }, "bobpc", "192.168.8.0/24 via router", 22, "tcp", true],
  ["CIDR source", { acls: [{ action: "accept", src: ["100.64.0.0/30"], dst: ["tag:db:22"] }] }, "laptop", "db", 22, "tcp", true],
  ["CIDR source excludes others", { acls: [{ action: "accept", src: ["100.64.0.0/30"], dst: ["tag:db:22"] }] }, "web", "db", 22, "tcp", false],
];

describe("evaluateReachability", () => {
  it.each(table)("%s", (_name, p, src, dst, port, proto, allowed) => {
    const r = evaluateReachability(nodes, P(p), { users: ["alice", "bob"] });
    const e = r.explain(src, dst, port, proto);
    expect(e.allowed, e.why).toBe(allowed);
    expect(e.why.length).toBeGreaterThan(0);
  });

  it("says which rule allowed a pair", () => {
    const r = evaluateReachability(nodes, P({ acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:22"] }, { action: "accept", src: ["group:admins"], dst: ["tag:web:*"] }] }));
    expect(r.explain("bobpc", "web", 22, "tcp").why).toBe("acls[0]: bob@ -> tag:web:22");
    expect(r.explain("laptop", "web", 22, "tcp").why).toBe("acls[1]: group:admins -> tag:web:*");
    expect(r.explain("bobpc", "web", 80, "tcp")).toEqual({ allowed: false, why: "no rule matched on tcp:80 (allowed: any:22)" });
    const pairs = [...r.pairs()].map((p) => `${p.src}->${p.dst} ${p.spec}`);
    expect(pairs).toEqual(["laptop->web any:*", "phone->web any:*", "bobpc->web any:22"]);
  });

  it("reports a narrower destination inside a route", () => {
    const r = evaluateReachability(nodes, P({ acls: [{ action: "accept", src: ["bob@"], dst: ["nas:445"] }] }));
    expect(r.access(2, r.targets.findIndex((t) => t.kind === "route"))!.spec).toBe("any:445 to 192.168.8.10");
  });

  it("matches a brute-force evaluation on random policies (property)", () => {
    const rnd = prng(99);
    const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
    const aliases = ["alice@", "bob@", "group:admins", "tag:web", "tag:db", "tag:router", "*", "autogroup:member", "autogroup:tagged", "100.64.0.0/30", "100.64.0.5"];
    for (let k = 0; k < 40; k++) {
      const acls = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => ({ action: "accept" as const, src: [pick(aliases)], dst: [`${pick(aliases)}:${pick(["22", "80", "*"])}`] }));
      const policy = P({ acls });
      const r = evaluateReachability(nodes, policy, { users: ["alice", "bob"] });
      for (const s of nodes) {
        for (const d of nodes) {
          if (s === d) continue;
          for (const port of [22, 80, 443]) {
            // Brute force through the tests runner (independent path: per-prefix overlap).
            const t = runPolicyTests(nodes, { ...policy, tests: [{ src: s.ips[0], accept: [`${d.ips[0]}:${port}`] }] }, { users: ["alice", "bob"] });
            expect(r.explain(s.name, d.name, port, "tcp").allowed, `${JSON.stringify(acls)} ${s.name}->${d.name}:${port}`).toBe(t.allPassed);
          }
        }
      }
    }
  });
});

describe("runPolicyTests", () => {
  it("reports failures as headscale does, with the reason", () => {
    const policy = P({
      acls: [{ action: "accept", src: ["group:admins"], dst: ["tag:web:22"] }],
      tests: [{ src: "alice@", accept: ["tag:web:22", "tag:web:80"], deny: ["tag:db:22"] }, { src: "carol@", accept: ["tag:web:22"] }, { src: "bob@", deny: ["tag:nope:22"] }],
    });
    const r = runPolicyTests(nodes, policy, { users: ["alice", "bob"] });
    expect(r.failures).toMatchSnapshot();
    expect(r.results[0].lines.map((l) => l.reason)).toMatchSnapshot();
  });
});

const ctx: PolicyContext = {
  file: "hosts/home/fleet.yaml", basePath: "policy", users: ["alice", "bob"],
  hostTags: { vps: ["tag:server"], router: ["tag:router"], exit: ["tag:exit"] },
  hostNames: ["vps", "router", "exit", "laptop"], advertisedRoutes: { router: ["192.168.8.0/24"] }, exitNodes: ["exit"],
  coordinatorHost: "vps", adminUsers: ["alice"],
};

/** The one lockout diagnostic a policy gets when it no longer lets the admin reach the coordinator. */
const LOCKOUT = (path = "policy.acls", found = "no rule matched"): [string, string, string] => [path, "admin alice@ allowed tcp:22 to the coordinator vps", found];
const WANT: Record<string, [string, string, string][]> = {
  "unknown group": [["policy.acls[0].src[0]", "a group defined in policy.groups", "unknown group \"group:nope\""], LOCKOUT()],
  "unknown tag": [["policy.acls[0].dst[0]", "a tag defined in policy.tagOwners", "unknown tag \"tag:nope\""], LOCKOUT()],
  "unknown host": [["policy.acls[0].dst[0]", "a host defined in policy.hosts (or a user written with @, a group:, tag: or CIDR)", "unknown host \"nas\""], LOCKOUT()],
  "unknown user": [["policy.groups[\"group:admins\"][1]", "a user from fleet.yaml users (alice@, bob@)", "unknown user \"mallory@\""]],
  "port out of range": [["policy.acls[0].dst[0]", "alias:ports, e.g. tag:web:443, host:22, 192.168.8.0/24:*", "\"tag:server:70000\""], LOCKOUT()],
  "port range backwards": [["policy.acls[0].dst[0]", "alias:ports, e.g. tag:web:443, host:22, 192.168.8.0/24:*", "\"tag:server:90-80\""], LOCKOUT()],
  "destination without port": [["policy.acls[0].dst[0]", "alias:ports, e.g. tag:web:443, host:22, 192.168.8.0/24:*", "\"tag:server\""], LOCKOUT()],
  "bad proto": [["policy.acls[0].proto", "a protocol name (tcp, udp, icmp, …) or number 1-255, or nothing for all", "\"tpc\""], LOCKOUT()],
  "icmp with ports": [["policy.acls[0].dst[0]", "ports \"*\" with proto icmp (only tcp, udp and sctp have ports)", "\"tag:server:22\""], LOCKOUT("policy.acls", "no rule matched on tcp:22 (allowed: icmp:22)")],
  "tag used by a host, owned by nobody": [["policy.tagOwners[\"tag:server\"]", "at least one owner (host vps uses tag:server)", "[]"]],
  "tag used by a host, not in tagOwners": [["policy.tagOwners", "an entry for tag:server (host vps uses it)", "none"]],
  "route approved for a tag no host has": [["policy.autoApprovers.routes[\"192.168.8.0/24\"][0]", "a tag some host carries", "tag:gone (no host has it)"]],
  "bad route CIDR": [["policy.autoApprovers.routes[\"192.168.8.0/33\"]", "a CIDR", "\"192.168.8.0/33\""]],
  "admin cut off from the coordinator": [LOCKOUT()],
  "deny-all cuts everyone off": [LOCKOUT("policy.grants")],
  "self with a tag source": [["policy.acls[0].src[0]", "users, groups, autogroup:member or * as sources of autogroup:self", "\"tag:server\""], LOCKOUT()],
  "grant without ip": [["policy.grants[0]", "ip or app", "neither"], LOCKOUT("policy.grants")],
  "grant to 0.0.0.0/0": [["policy.grants[0].dst[0]", "\"*\" or autogroup:internet for all addresses", "\"0.0.0.0/0\""]],
  "ssh to a host alias": [["policy.ssh[0].dst[0]", "tags, autogroup:member/tagged/self or the source user", "host \"nas\""]],
  "ssh from tag to user": [["policy.ssh[0].dst[0]", "tags or autogroup:tagged as destinations of tagged sources", "\"alice@\""]],
  "ssh users empty": [["policy.ssh[0].users", "at least one login user (root, autogroup:nonroot, a name)", "[]"]],
  "test with two ports": [["policy.tests[0].accept[0]", "one port (tests check one connection)", "\"tag:server:22,80\""]],
  "test to a CIDR": [["policy.tests[0].accept[0]", "one host, not a CIDR", "\"192.168.8.0/24:22\""]],
  "test with no assertions": [["policy.tests[0]", "accept or deny (at least one)", "neither"]],
  "test proto icmp": [["policy.tests[0].proto", "tcp, udp, sctp or nothing", "\"icmp\""]],
  "group member without @": [["policy.groups[\"group:admins\"][0]", "a user written with @ (alice@)", "\"alice\""]],
  "nested group": [["policy.groups[\"group:all\"][0]", "users (groups cannot contain groups)", "\"group:admins\""]],
  "autogroup:internet as source": [["policy.acls[0].src[0]", "one of autogroup:member, autogroup:tagged, autogroup:danger-all here", "\"autogroup:internet\""]],
  "host with a bad address": [["policy.hosts[\"nas\"]", "an IP address or CIDR", "\"192.168.8.300\""]],
};

describe("validatePolicy", () => {
  const good = policySchema.parse({
    groups: { "group:admins": ["alice@"] },
    tagOwners: { "tag:server": ["group:admins"], "tag:router": ["group:admins"], "tag:exit": ["group:admins"] },
    acls: [{ action: "accept", src: ["group:admins"], dst: ["*:*"] }],
  });
  it("accepts a sound policy", () => {
    expect(validatePolicy(good, ctx)).toEqual([]);
  });

  const bad: [string, unknown][] = [
    ["unknown group", { acls: [{ action: "accept", src: ["group:nope"], dst: ["*:*"] }] }],
    ["unknown tag", { acls: [{ action: "accept", src: ["group:admins"], dst: ["tag:nope:22"] }] }],
    ["unknown host", { acls: [{ action: "accept", src: ["group:admins"], dst: ["nas:22"] }] }],
    ["unknown user", { groups: { "group:admins": ["alice@", "mallory@"] } }],
    ["port out of range", { acls: [{ action: "accept", src: ["group:admins"], dst: ["tag:server:70000"] }] }],
    ["port range backwards", { acls: [{ action: "accept", src: ["group:admins"], dst: ["tag:server:90-80"] }] }],
    ["destination without port", { acls: [{ action: "accept", src: ["group:admins"], dst: ["tag:server"] }] }],
    ["bad proto", { acls: [{ action: "accept", src: ["group:admins"], dst: ["*:*"], proto: "tpc" }] }],
    ["icmp with ports", { acls: [{ action: "accept", src: ["group:admins"], dst: ["tag:server:22"], proto: "icmp" }] }],
    ["tag used by a host, owned by nobody", { tagOwners: { "tag:server": [], "tag:router": ["group:admins"], "tag:exit": ["group:admins"] } }],
    ["tag used by a host, not in tagOwners", { tagOwners: { "tag:router": ["group:admins"], "tag:exit": ["group:admins"] } }],
    ["route approved for a tag no host has", { tagOwners: { ...good.tagOwners, "tag:gone": ["group:admins"] }, autoApprovers: { routes: { "192.168.8.0/24": ["tag:gone"] } } }],
    ["bad route CIDR", { autoApprovers: { routes: { "192.168.8.0/33": ["tag:router"] } } }],
    ["admin cut off from the coordinator", { acls: [{ action: "accept", src: ["tag:server"], dst: ["tag:server:*"] }] }],
    ["deny-all cuts everyone off", { acls: undefined, grants: [] }],
    ["self with a tag source", { acls: [{ action: "accept", src: ["tag:server"], dst: ["autogroup:self:*"] }] }],
    ["grant without ip", { acls: undefined, grants: [{ src: ["group:admins"], dst: ["*"] }] }],
    ["grant to 0.0.0.0/0", { acls: undefined, grants: [{ src: ["group:admins"], dst: ["0.0.0.0/0"], ip: ["*"] }] }],
    ["ssh to a host alias", { hosts: { nas: "192.168.8.10" }, ssh: [{ action: "accept", src: ["group:admins"], dst: ["nas"], users: ["root"] }] }],
    ["ssh from tag to user", { ssh: [{ action: "accept", src: ["tag:server"], dst: ["alice@"], users: ["root"] }] }],
    ["ssh users empty", { ssh: [{ action: "accept", src: ["group:admins"], dst: ["tag:server"], users: [] }] }],
    ["test with two ports", { tests: [{ src: "alice@", accept: ["tag:server:22,80"] }] }],
    ["test to a CIDR", { tests: [{ src: "alice@", accept: ["192.168.8.0/24:22"] }] }],
    ["test with no assertions", { tests: [{ src: "alice@" }] }],
    ["test proto icmp", { tests: [{ src: "alice@", proto: "icmp", accept: ["tag:server:22"] }] }],
    ["group member without @", { groups: { "group:admins": ["alice"] } }],
    ["nested group", { groups: { "group:admins": ["alice@"], "group:all": ["group:admins"] } }],
    ["autogroup:internet as source", { acls: [{ action: "accept", src: ["autogroup:internet"], dst: ["*:*"] }, ...good.acls!] }],
    ["host with a bad address", { hosts: { nas: "192.168.8.300" } }],
  ];
  it.each(bad)("%s", (name, patch) => {
    const p = policySchema.parse({ ...good, ...(patch as object) });
    const d = validatePolicy(p, ctx);
    // The exact diagnostics: each one's option path, what was expected and what was found, in this file, as errors.
    expect(d.map((x) => [x.path, x.expected, x.found])).toEqual(WANT[name]);
    // An approver for a tag nobody has approves nothing: a warning; everything else stops the deploy.
    for (const x of d) expect([x.file, x.severity, x.fix.length > 0]).toEqual([ctx.file, name === "route approved for a tag no host has" ? "warning" : "error", true]);
    expect(d).toMatchSnapshot();
  });
});

describe("rendering and approvers", () => {
  it("renders headscale's keys only, keeping allow-all and deny-all apart", () => {
    expect(renderPolicyHuJson(P({}))).not.toMatch(/"acls"|"grants"/);
    expect(renderPolicyHuJson(P({ grants: [] }))).toContain(`"grants": []`);
    const text = renderPolicyHuJson(P({ acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:80"] }] }), { routes: { "192.168.8.0/24": ["tag:router"] }, exitNode: ["tag:exit"] });
    expect(text).toMatchSnapshot();
    expect(text.startsWith("// Generated by meshfleet")).toBe(true);
  });

  it("generates autoApprovers from advertising hosts, merged with hand-written ones", () => {
    expect(generateAutoApprovers([
      { name: "router", tags: ["tag:router"], routes: ["192.168.8.0/24", "192.168.20.0/24"], exitNode: false },
      { name: "exit", tags: ["tag:exit"], routes: [], exitNode: true },
      { name: "desk", tags: [], user: "bob", routes: ["10.0.0.0/24"], exitNode: false },
      { name: "phone", tags: [], routes: ["10.9.0.0/24"], exitNode: false },
    ], { routes: { "192.168.8.0/24": ["group:admins"] } })).toEqual({
      routes: { "10.0.0.0/24": ["bob@"], "192.168.20.0/24": ["tag:router"], "192.168.8.0/24": ["group:admins", "tag:router"] },
      exitNode: ["tag:exit"],
    });
  });
});

describe("tailnetRulesForHost", () => {
  it("gives the host its allowed peers as sets and ports", () => {
    const policy = P({ acls: [{ action: "accept", src: ["group:admins"], dst: ["tag:db:5432,22"] }, { action: "accept", src: ["tag:web"], dst: ["tag:db:5432"], proto: "tcp" }, { action: "accept", src: ["*"], dst: ["tag:db:*"], proto: "icmp" }] });
    expect(tailnetRulesForHost("db", nodes, policy)).toEqual({
      tailnet: [
        { proto: "any", ports: [22, 5432], fromSet: "peers_0", comment: "acls[0] src=group:admins" },
        { proto: "tcp", ports: [5432], fromSet: "peers_1", comment: "acls[1] src=tag:web" },
      ],
      sets: { peers_0: ["fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2", "100.64.0.1", "100.64.0.2"], peers_1: ["fd7a:115c:a1e0::4", "100.64.0.4"] },
    });
  });
  it("closes a host nobody may reach, and enforces nothing under allow-all", () => {
    expect(tailnetRulesForHost("web", nodes, P({ grants: [] })).tailnet).toEqual([{ proto: "any", ports: "any", fromSet: "peers_0", comment: "policy allows no peer to reach this host" }]);
    expect(tailnetRulesForHost("web", nodes, P({}))).toEqual({ tailnet: [], sets: {} });
  });
});
