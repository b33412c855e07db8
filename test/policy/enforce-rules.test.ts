/**
 * core/policy/enforce.ts on small policies: the rules and sets a host gets
 * for its own tailscale0 input and for what it forwards to its routes. Pure
 * and fast (no fleet evaluation), so that Stryker (npm run mutate --
 * policy-enforce) can try each mutant against exact results; the lab fleet's
 * case is test/core/enforce.test.ts.
 */
import { describe, expect, it } from "vitest";
import { compiledForHosts } from "../../core/policy/enforce.ts";
import { hostEnforcement } from "../../core/policy/fleet.ts";
import { policySchema, tailnetRulesForHost, type Policy, type PolicyNode } from "../../core/policy/index.ts";

const N = (name: string, ip: number, o: Partial<PolicyNode> = {}): PolicyNode => ({ name, tags: [], ips: [`100.64.0.${ip}`, `fd7a:115c:a1e0::${ip}`], approvedRoutes: [], ...o });
const nodes: PolicyNode[] = [
  N("laptop", 1, { user: "alice" }),
  N("phone", 2, { user: "alice" }),
  N("bobpc", 3, { user: "bob" }),
  N("web", 4, { tags: ["tag:web"] }),
  N("db", 5, { tags: ["tag:db"] }),
  N("router", 6, { tags: ["tag:router"], approvedRoutes: ["192.168.8.0/24", "0.0.0.0/0", "::/0"] }),
  N("nobody", 7),
  N("kiosk", 8, { user: "alice", tags: ["tag:web"] }),
];
const base = {
  groups: { "group:admins": ["alice@"] },
  tagOwners: { "tag:web": ["alice@"], "tag:db": ["alice@"], "tag:router": ["alice@"] },
  hosts: { nas: "192.168.8.10", lan: "192.168.8.0/24" },
};
const P = (p: Partial<Policy>): Policy => policySchema.parse({ ...base, ...p });
const users = ["alice", "bob"];
const v = (...ips: number[]) => [...ips.map((i) => `fd7a:115c:a1e0::${i}`), ...ips.map((i) => `100.64.0.${i}`)];

describe("tailnetRulesForHost: the host's own input", () => {
  it("one set per distinct source, shared by the rules that name it, numbered in order", () => {
    const policy = P({
      acls: [
        { action: "accept", src: ["tag:web"], dst: ["tag:db:5432"] },
        { action: "accept", src: ["bob@"], dst: ["tag:db:22"] },
        { action: "accept", src: ["tag:web"], dst: ["tag:db:6432"], proto: "udp" },
      ],
    });
    expect(tailnetRulesForHost("db", nodes, policy, { users })).toEqual({
      tailnet: [
        { proto: "any", ports: [5432], fromSet: "peers_0", comment: "acls[0] src=tag:web" },
        { proto: "any", ports: [22], fromSet: "peers_1", comment: "acls[1] src=bob@" },
        { proto: "udp", ports: [6432], fromSet: "peers_0", comment: "acls[2] src=tag:web" },
      ],
      sets: { peers_0: v(4, 8), peers_1: v(3) },
    });
  });

  it("ports: ranges expanded, repeats merged, sorted; every port is 'any'; port 0 is left out", () => {
    const rules = (dst: string) => tailnetRulesForHost("db", nodes, P({ acls: [{ action: "accept", src: ["bob@"], dst: [dst] }] }), { users }).tailnet;
    expect(rules("tag:db:8002,22,8000-8002,22")[0].ports).toEqual([22, 8000, 8001, 8002]);
    expect(rules("tag:db:*")[0].ports).toBe("any");
    expect(rules("tag:db:0-65535")[0].ports).toBe("any");
    expect(rules("tag:db:1-65535")[0].ports).toBe("any");
    expect(rules("tag:db:2-65535")[0].ports).toHaveLength(65534);
    expect(rules("tag:db:1-65534")[0].ports).toHaveLength(65534);
    expect(rules("tag:db:0-2")[0].ports).toEqual([1, 2]);
    expect(rules("tag:db:65535")[0].ports).toEqual([65535]);
    expect(rules("tag:db:22,0-65535")[0].ports).toBe("any");
  });

  it("tcp and udp kept with their name, any protocol as 'any', other protocols left to tailscaled", () => {
    const policy = P({
      acls: [
        { action: "accept", src: ["bob@"], dst: ["tag:db:1"], proto: "tcp" },
        { action: "accept", src: ["bob@"], dst: ["tag:db:2"], proto: "udp" },
        { action: "accept", src: ["bob@"], dst: ["tag:db:*"], proto: "icmp" },
        { action: "accept", src: ["bob@"], dst: ["tag:db:3"], proto: "sctp" },
        { action: "accept", src: ["bob@"], dst: ["tag:db:4"] },
      ],
    });
    expect(tailnetRulesForHost("db", nodes, policy, { users }).tailnet.map((r) => [r.proto, r.ports, r.comment])).toEqual([
      ["tcp", [1], "acls[0] src=bob@"],
      ["udp", [2], "acls[1] src=bob@"],
      ["any", [4], "acls[4] src=bob@"],
    ]);
  });

  it("only rules whose destinations hold one of this host's addresses; grants named by their path", () => {
    const policy = P({
      grants: [
        { src: ["bob@"], dst: ["tag:web"], ip: ["tcp:80"] },
        { src: ["group:admins", "bob@"], dst: ["fd7a:115c:a1e0::5/128"], ip: ["tcp:22"] },
        { src: ["bob@"], dst: ["100.64.0.5"], ip: ["udp:53"] },
      ],
    });
    expect(tailnetRulesForHost("db", nodes, policy, { users })).toEqual({
      tailnet: [
        { proto: "tcp", ports: [22], fromSet: "peers_0", comment: "grants[1] src=group:admins,bob@" },
        { proto: "udp", ports: [53], fromSet: "peers_1", comment: "grants[2] src=bob@" },
      ],
      // Sets hold CIDRs: .1, .2 and .3 are .1 and .2/31.
      sets: { peers_0: ["fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2/127", "100.64.0.1", "100.64.0.2/31"], peers_1: v(3) },
    });
  });

  it("autogroup:self: a user's own devices, on an untagged host with a user only", () => {
    const policy = P({ acls: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self:22"] }] });
    expect(tailnetRulesForHost("laptop", nodes, policy, { users })).toEqual({
      tailnet: [{ proto: "any", ports: [22], fromSet: "peers_0", comment: "acls[0] src=autogroup:member" }],
      sets: { peers_0: v(1, 2) },
    });
    expect(tailnetRulesForHost("bobpc", nodes, policy, { users }).sets).toEqual({ peers_0: v(3) });
    // Tagged (even with a user), or without a user: no self rule, so closed.
    for (const host of ["web", "nobody", "kiosk"]) {
      expect([host, tailnetRulesForHost(host, nodes, policy, { users }).tailnet]).toEqual([host, [{ proto: "any", ports: "any", fromSet: "peers_0", comment: "policy allows no peer to reach this host" }]]);
    }
    // Sources that hold none of the user's devices: nothing from them.
    const tagged = P({ acls: [{ action: "accept", src: ["tag:web"], dst: ["autogroup:self:22"] }, { action: "accept", src: ["bob@"], dst: ["laptop:80"] }], hosts: { ...base.hosts, laptop: "100.64.0.1" } });
    expect(tailnetRulesForHost("laptop", nodes, tagged, { users }).tailnet).toEqual([{ proto: "any", ports: [80], fromSet: "peers_0", comment: "acls[1] src=bob@" }]);
  });

  it("a via grant does not open the router itself, nor any other host", () => {
    const policy = P({ grants: [{ src: ["bob@"], dst: ["lan"], ip: ["*"], via: ["tag:router"] }, { src: ["bob@"], dst: ["tag:router"], ip: ["tcp:22"] }] });
    expect(tailnetRulesForHost("router", nodes, policy, { users }).tailnet).toEqual([{ proto: "tcp", ports: [22], fromSet: "peers_0", comment: "grants[1] src=bob@" }]);
    expect(tailnetRulesForHost("laptop", nodes, policy, { users }).tailnet).toEqual([{ proto: "any", ports: "any", fromSet: "peers_0", comment: "policy allows no peer to reach this host" }]);
  });

  it("comments name rules past the tenth", () => {
    const acls = Array.from({ length: 12 }, (_, i) => ({ action: "accept" as const, src: ["bob@"], dst: [`tag:db:${100 + i}`] }));
    expect(tailnetRulesForHost("db", nodes, P({ acls }), { users }).tailnet.map((r) => r.comment).slice(9)).toEqual(["acls[9] src=bob@", "acls[10] src=bob@", "acls[11] src=bob@"]);
  });

  it("members: per set, the nodes whose addresses it holds, sorted; only when asked", () => {
    const policy = P({ acls: [{ action: "accept", src: ["group:admins", "tag:web"], dst: ["tag:db:22"] }, { action: "accept", src: ["100.64.0.3/32"], dst: ["tag:db:80"] }] });
    const r = tailnetRulesForHost("db", nodes, policy, { users, members: true });
    expect(r.setMembers).toEqual({ peers_0: ["kiosk", "laptop", "phone", "web"], peers_1: ["bobpc"] });
    // Sorted by name, not in the nodes' order.
    const later = P({ acls: [{ action: "accept", src: ["bob@", "alice@"], dst: ["tag:db:22"] }] });
    expect(tailnetRulesForHost("db", nodes, later, { users, members: true }).setMembers).toEqual({ peers_0: ["bobpc", "laptop", "phone"] });
    expect(r.sets).toEqual({ peers_0: v(1, 2, 4, 8), peers_1: ["100.64.0.3"] });
    expect(Object.keys(tailnetRulesForHost("db", nodes, policy, { users }))).toEqual(["tailnet", "sets"]);
    expect(tailnetRulesForHost("web", nodes, policy, { users, members: true })).toEqual({
      tailnet: [{ proto: "any", ports: "any", fromSet: "peers_0", comment: "policy allows no peer to reach this host" }],
      sets: { peers_0: [] },
      setMembers: { peers_0: [] },
    });
  });

  it("a host that is not one of the policy's nodes is an error naming them", () => {
    expect(() => tailnetRulesForHost("ghost", nodes.slice(0, 2), P({ grants: [] }))).toThrow(
      "tailnetRulesForHost: ghost is not one of the policy's nodes (laptop, phone); enforce only on hosts that join the mesh",
    );
  });
});

describe("tailnetRulesForHost: what a router forwards to its routes", () => {
  const routes = ["192.168.8.0/24"];

  it("rules whose destinations overlap the routes, to the overlap only, with their sets", () => {
    const policy = P({
      acls: [
        { action: "accept", src: ["bob@"], dst: ["nas:445"] },
        { action: "accept", src: ["group:admins"], dst: ["192.168.0.0/16:22,80"], proto: "tcp" },
        { action: "accept", src: ["bob@"], dst: ["10.0.0.0/8:*"] },
        { action: "accept", src: ["bob@"], dst: ["lan:*"], proto: "icmp" },
        { action: "accept", src: ["bob@"], dst: ["tag:router:22"] },
        { action: "accept", src: ["bob@"], dst: ["lan:100,22,8"], proto: "udp" },
        { action: "accept", src: ["bob@"], dst: ["lan:1-65535"], proto: "tcp" },
        { action: "accept", src: ["bob@"], dst: ["lan:22,0-65535"], proto: "tcp" },
        { action: "accept", src: ["bob@"], dst: ["lan:2-65535"], proto: "tcp" },
      ],
    });
    const r = tailnetRulesForHost("router", nodes, policy, { users, routes });
    expect(r.routed).toEqual({
      prefixes: ["192.168.8.0/24"],
      rules: [
        { proto: "any", ports: [445], fromSet: "peers_0", to: ["192.168.8.10"], comment: "acls[0] src=bob@" },
        { proto: "tcp", ports: [22, 80], fromSet: "peers_1", to: ["192.168.8.0/24"], comment: "acls[1] src=group:admins" },
        { proto: "udp", ports: [8, 22, 100], fromSet: "peers_0", to: ["192.168.8.0/24"], comment: "acls[5] src=bob@" },
        { proto: "tcp", ports: "any", fromSet: "peers_0", to: ["192.168.8.0/24"], comment: "acls[6] src=bob@" },
        { proto: "tcp", ports: "any", fromSet: "peers_0", to: ["192.168.8.0/24"], comment: "acls[7] src=bob@" },
        { proto: "tcp", ports: Array.from({ length: 65534 }, (_, i) => i + 2), fromSet: "peers_0", to: ["192.168.8.0/24"], comment: "acls[8] src=bob@" },
      ],
    });
    // The input rules come first and name the sets the routed rules share.
    expect(r.tailnet).toEqual([{ proto: "any", ports: [22], fromSet: "peers_0", comment: "acls[4] src=bob@" }]);
    expect(r.sets).toEqual({ peers_0: v(3), peers_1: v(1, 2) });
  });

  it("a via grant: on the routers it names only; autogroup:internet through an exit node", () => {
    const policy = P({
      grants: [
        { src: ["bob@"], dst: ["lan"], ip: ["tcp:443"], via: ["tag:router"] },
        { src: ["bob@"], dst: ["lan"], ip: ["tcp:8443"], via: ["tag:web"] },
        { src: ["group:admins"], dst: ["autogroup:internet"], ip: ["*"], via: ["tag:router"] },
        { src: ["bob@"], dst: ["autogroup:self"], ip: ["*"] },
        { src: ["bob@"], dst: ["lan"], ip: ["tcp:25"], via: ["tag:router", "tag:web"] },
      ],
    });
    const r = tailnetRulesForHost("router", nodes, policy, { users, routes: ["192.168.8.0/24", "0.0.0.0/0"] });
    expect(r.routed!.prefixes).toEqual(["0.0.0.0/0"]);
    expect(r.routed!.rules.map((x) => [x.proto, x.ports, x.fromSet, x.comment])).toEqual([
      ["tcp", [443], "peers_1", "grants[0] src=bob@"],
      ["any", "any", "peers_2", "grants[2] src=group:admins"],
      ["tcp", [25], "peers_1", "grants[4] src=bob@"],
    ]);
    expect(r.routed!.rules[0].to).toEqual(["192.168.8.0/24"]);
    // The internet: public space only, no private or tailnet ranges.
    const internet = r.routed!.rules[1].to;
    expect(internet).not.toContain("0.0.0.0/0");
    expect(internet).toContain("8.0.0.0/7");
    expect(internet.some((p) => p.startsWith("192.168.") || p.startsWith("10.") || p.startsWith("100.64."))).toBe(false);
    // Without the internet among its routes the exit grant routes nothing here.
    const lanOnly = tailnetRulesForHost("router", nodes, policy, { users, routes });
    expect(lanOnly.routed!.rules.map((x) => x.comment)).toEqual(["grants[0] src=bob@", "grants[4] src=bob@"]);
  });

  it("a routed range from port 0 or 1 that stops short of 65535 keeps its ports", () => {
    const policy = P({ acls: [{ action: "accept", src: ["bob@"], dst: ["lan:1-3"] }, { action: "accept", src: ["bob@"], dst: ["lan:0-2"] }] });
    expect(tailnetRulesForHost("router", nodes, policy, { users, routes }).routed!.rules.map((x) => x.ports)).toEqual([[1, 2, 3], [1, 2]]);
  });

  it("no routes, no routed part; routes no rule reaches give an empty list", () => {
    const policy = P({ acls: [{ action: "accept", src: ["bob@"], dst: ["nas:445"] }] });
    expect(tailnetRulesForHost("router", nodes, policy, { users }).routed).toBeUndefined();
    expect(tailnetRulesForHost("router", nodes, policy, { users, routes: [] }).routed).toBeUndefined();
    expect(tailnetRulesForHost("router", nodes, policy, { users, routes: ["10.9.0.0/16"] }).routed).toEqual({ prefixes: ["10.9.0.0/16"], rules: [] });
  });
});

describe("compiledForHosts: the policy compiled once for every enforcing host", () => {
  // Rules that give hosts overlapping sets (tag:web for db and router), a self rule (built per host) and routed rules.
  const policy = P({
    acls: [
      { action: "accept", src: ["tag:web"], dst: ["tag:db:5432", "tag:router:22"] },
      { action: "accept", src: ["group:admins"], dst: ["*:22"] },
      { action: "accept", src: ["bob@"], dst: ["lan:445", "tag:db:6432"] },
      { action: "accept", src: ["tag:web", "bob@"], dst: ["nas:80"] },
    ],
    grants: [{ src: ["alice@"], dst: ["autogroup:self"], ip: ["*"] }],
  });
  const asks: [string, { members?: boolean; routes?: string[] }][] = [
    ["db", { members: true }],
    ["router", { members: true, routes: ["192.168.8.0/24"] }],
    ["laptop", { members: true }],
    ["phone", {}],
    ["db", { members: true, routes: ["192.168.8.0/24"] }],
    ["router", { members: true, routes: ["0.0.0.0/0", "::/0"] }],
  ];

  it("asked host after host, each result is the one compiling the policy for that host alone gives", () => {
    const once = compiledForHosts(nodes, policy, users);
    for (const [host, opts] of asks) expect(once.rulesFor(host, opts), host).toEqual(tailnetRulesForHost(host, nodes, policy, { users, ...opts }));
    // And in the other order: nothing one host's answer left behind changes the next.
    const again = compiledForHosts(nodes, policy, users);
    for (const [host, opts] of [...asks].reverse()) expect(again.rulesFor(host, opts), host).toEqual(tailnetRulesForHost(host, nodes, policy, { users, ...opts }));
  });

  it("each host's members are its own lists: changing one host's does not change the next's", () => {
    const once = compiledForHosts(nodes, policy, users);
    const db = once.rulesFor("db", { members: true });
    const name = Object.keys(db.setMembers!).find((k) => db.setMembers![k].includes("web"))!;
    db.setMembers![name].push("intruder");
    const router = once.rulesFor("router", { members: true });
    expect(Object.values(router.setMembers!).flat()).not.toContain("intruder");
  });

  it("hostEnforcement: the same per host from one compiled policy, each host's sets its own lists", () => {
    const once = compiledForHosts(nodes, policy, users);
    for (const [host, opts] of asks) {
      const shared = hostEnforcement(host, nodes, policy, { users, routes: opts.routes }, once);
      expect(shared, host).toEqual(hostEnforcement(host, nodes, policy, { users, routes: opts.routes }));
    }
    const a = hostEnforcement("router", nodes, policy, { users, routes: ["192.168.8.0/24"] }, once);
    for (const list of Object.values(a.sets)) list.push("203.0.113.99/32");
    const b = hostEnforcement("router", nodes, policy, { users, routes: ["192.168.8.0/24"] }, once);
    expect(Object.values(b.sets).flat()).not.toContain("203.0.113.99/32");
  });
});
