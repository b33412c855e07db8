/**
 * core/policy/fleet.ts in process: the fleet's hosts as policy nodes (owners,
 * which advertised routes count as approved, live nodes matched by name),
 * the adjacent layout, the users, host enforcement's sets, and runFleetTests'
 * diagnostics, each exact. Pure and fast, for Stryker (npm run mutate --
 * policy-fleet); fleet-policy.test.ts runs the same through evaluateFleet.
 */
import { describe, expect, it } from "vitest";
import { adjacentLayout, fleetPolicyNodes, fleetUsers, hostEnforcement, policyNodesOf, runFleetTests, withLiveNodes, type FleetNode } from "../../core/policy/fleet.ts";
import { policySchema, type PolicyNode } from "../../core/policy/index.ts";
import type { LiveNode } from "../../core/policy/live.ts";
import type { FleetSystem } from "../../core/types.ts";

const brief = (ns: PolicyNode[]) => ns.map((n) => ({ name: n.name, user: n.user, tags: n.tags, approvedRoutes: n.approvedRoutes }));

describe("policyNodesOf", () => {
  // A user literally named "undefined" sits in group:ops: a node without a user must not pass for it.
  const policy = policySchema.parse({ groups: { "group:ops": ["alice@", "undefined@"], "group:dev": ["carol@"] } });
  const approvers = {
    routes: {
      "192.168.1.0/24": ["tag:router", "group:ops"], "192.168.2.0/24": ["group:ops"], "192.168.3.0/24": ["alice@"],
      "10.0.0.0/16": ["tag:router"], "fd00::/48": ["tag:router"], "0.0.0.0/0": ["tag:exit"], "192.168.1.0/25": ["group:dev"],
    },
    exitNode: ["group:ops", "tag:nobody"],
  };
  const hosts: FleetNode[] = [
    { name: "r1", tags: ["tag:router"], user: "alice", routes: ["192.168.1.0/24", "192.168.2.0/24", "10.0.0.0/8", "10.0.1.0/24", "fd00::/64", "::ffff:c0a8:180/121", "bogus"], exitNode: true },
    { name: "b", tags: [], user: "bob", routes: ["192.168.1.0/24"], exitNode: false },
    { name: "a-laptop", tags: [], user: "alice", routes: ["192.168.1.128/25", "192.168.3.0/24"], exitNode: true },
    { name: "c", tags: [], user: "", routes: ["192.168.1.0/24", "192.168.2.0/24"], exitNode: true },
    { name: "x1", tags: ["tag:exit"], user: "", routes: [], exitNode: true },
  ];

  it("in name order; a tagged node has no user; routes count as approved when an approver covers them for an owner", () => {
    expect(brief(policyNodesOf(hosts, policy, approvers))).toEqual([
      // alice's own node: through group:ops and alice@, and the exit routes through group:ops.
      { name: "a-laptop", user: "alice", tags: [], approvedRoutes: ["192.168.1.128/25", "192.168.3.0/24", "0.0.0.0/0", "::/0"] },
      { name: "b", user: "bob", tags: [], approvedRoutes: [] },
      // No user, no tags: no owner at all.
      { name: "c", user: undefined, tags: [], approvedRoutes: [] },
      // tag:router: the exact /24, a /24 inside the /16, an IPv6 /64 inside the /48; not a /8 wider than
      // the /16, not the IPv4-mapped IPv6 route of 192.168.1.128/25 (another family), not a route that is no
      // prefix, not group:ops' routes, not the exit routes (tag:router is no exit approver).
      { name: "r1", user: undefined, tags: ["tag:router"], approvedRoutes: ["192.168.1.0/24", "10.0.1.0/24", "fd00::/64"] },
      // 0.0.0.0/0 among the route approvers does not approve an exit node.
      { name: "x1", user: undefined, tags: ["tag:exit"], approvedRoutes: [] },
    ]);
  });

  it("matches live nodes by the host's tailnet name", () => {
    const live: LiveNode[] = [{ name: "laptop", names: ["laptop"], user: "alice", tags: [], ips: ["100.64.0.7", "fd7a:115c:a1e0::7"], approvedRoutes: [] }];
    const ns = policyNodesOf([{ ...hosts[2], nodeName: "laptop" }, hosts[1]], policy, approvers, live);
    expect(ns.map((n) => [n.name, n.ips[0]])).toEqual([["a-laptop", "100.64.0.7"], ["b", expect.stringMatching(/^100\./)]]);
    expect(ns).toHaveLength(2);
  });
});

describe("withLiveNodes", () => {
  const L = (name: string, names: string[], o: Partial<LiveNode> = {}): LiveNode => ({ name, names, tags: [], ips: [`100.64.1.${names.length}${name.length}`], approvedRoutes: [], ...o });
  const node = (name: string): PolicyNode => ({ name, tags: [], ips: [], approvedRoutes: [] });

  it("takes a node's given name first, then any of its names, then a name in another case; each live node once", () => {
    // x comes first: only the case-insensitive step would take it for "a".
    const live = [
      L("x", ["x", "A"], { ips: ["100.64.1.3"] }),
      L("b", ["b", "a"], { ips: ["100.64.1.1"] }),
      L("a", ["a"], { ips: ["100.64.1.2"] }),
      L("Q", ["Q", "q-old"], { ips: ["100.64.1.4"] }),
    ];
    const out = withLiveNodes([node("a"), node("second-a"), node("q"), node("z")], new Map([["second-a", "a"]]), live);
    expect(out.map((n) => [n.name, n.ips])).toEqual([
      ["a", ["100.64.1.2"]],
      // "a" again: the node named a is taken, so the one that also has the name a.
      ["second-a", ["100.64.1.1"]],
      ["q", ["100.64.1.4"]],
      ["z", []],
      // Live nodes no host took join as they are.
      ["x", ["100.64.1.3"]],
    ]);
  });

  it("a live node no host took keeps its user (none when tagged), tags and routes, under a name of its own", () => {
    const live = [
      L("web", ["web"], { user: "alice", tags: ["tag:web"], ips: ["100.64.2.1"], approvedRoutes: ["10.0.0.0/24"] }),
      L("web", ["web-2"], { user: "bob", ips: ["100.64.2.2"] }),
      L("web", ["web-3"], { ips: ["100.64.2.3"] }),
    ];
    const out = withLiveNodes([node("db"), node("web#2")], new Map(), live);
    expect(out).toEqual([
      { name: "db", tags: [], ips: [], approvedRoutes: [] },
      { name: "web#2", tags: [], ips: [], approvedRoutes: [] },
      { name: "web", user: undefined, tags: ["tag:web"], ips: ["100.64.2.1"], approvedRoutes: ["10.0.0.0/24"] },
      { name: "web#3", user: "bob", tags: [], ips: ["100.64.2.2"], approvedRoutes: [] },
      { name: "web#4", user: undefined, tags: [], ips: ["100.64.2.3"], approvedRoutes: [] },
    ]);
    // Copies: the live node's lists are not shared.
    expect(out[2].tags).not.toBe(live[0].tags);
    expect(out[2].ips).not.toBe(live[0].ips);
    expect(out[2].approvedRoutes).not.toBe(live[0].approvedRoutes);
  });
});

describe("adjacentLayout", () => {
  it("puts the nodes on 100.64.0.1 and fd7a:115c:a1e0::1 upward, in their order, past 2^16 too", () => {
    const ns = Array.from({ length: 65_537 }, (_, i) => ({ name: `n${i}`, tags: [], ips: ["1.2.3.4"], approvedRoutes: [] }));
    const out = adjacentLayout(ns);
    expect(out.slice(0, 2).map((n) => n.ips)).toEqual([["100.64.0.1", "fd7a:115c:a1e0::1"], ["100.64.0.2", "fd7a:115c:a1e0::2"]]);
    expect(out[255].ips).toEqual(["100.64.1.0", "fd7a:115c:a1e0::100"]);
    expect(out[65_534].ips).toEqual(["100.64.255.255", "fd7a:115c:a1e0::ffff"]);
    expect(out[65_536].ips).toEqual(["100.65.0.1", "fd7a:115c:a1e0::1:1"]);
    expect(out[0].name).toBe("n0");
  });
});

const host = (name: string, o: { tags?: string[]; hostname?: string; enable?: boolean } = {}) =>
  ({ name, tailscale: { enable: o.enable ?? true, tags: o.tags ?? [], advertiseRoutes: [], advertiseExitNode: false, hostname: o.hostname ?? "" } });
/** The parts of an evaluated fleet that the policy reads. */
const fleet = (policy: object, users = ["alice@", "bob"]) => ({
  dir: "/fleets/home/", users, policy: policySchema.parse(policy),
  autoApprovers: { routes: {}, exitNode: [] },
  hosts: Object.fromEntries([
    host("laptop"), host("phone", { hostname: "phone-1" }), host("bobpc"), host("web1", { tags: ["tag:web"] }), host("web2"), host("off", { enable: false }),
  ].map((h) => [h.name, h])),
  // bobpc's first key is bob's; web2 has its tag from its key, web1 from its host (its key's tag is not used).
  preAuthKeys: [
    { host: "laptop", user: "alice", tags: [] }, { host: "phone", user: "alice", tags: [] }, { host: "bobpc", user: "bob", tags: [] },
    { host: "bobpc", user: "alice", tags: [] }, { host: "web2", user: "", tags: ["tag:web"] }, { host: "web1", user: "alice", tags: ["tag:db"] },
  ],
}) as unknown as FleetSystem;

describe("fleetPolicyNodes and fleetUsers", () => {
  it("nodes for the hosts that run tailscale, users from their first pre-auth key, tags from the host or else its key", () => {
    const f = fleet({});
    expect(fleetPolicyNodes(f).map((n) => [n.name, n.user, n.tags])).toEqual([
      ["bobpc", "bob", []], ["laptop", "alice", []], ["phone", "alice", []], ["web1", undefined, ["tag:web"]], ["web2", undefined, ["tag:web"]],
    ]);
    // A host without a key has no user.
    const noKey = { ...f, preAuthKeys: [] } as FleetSystem;
    expect(fleetPolicyNodes(noKey).map((n) => [n.name, n.user, n.tags])).toEqual([
      ["bobpc", undefined, []], ["laptop", undefined, []], ["phone", undefined, []], ["web1", undefined, ["tag:web"]], ["web2", undefined, []],
    ]);
  });

  it("matches live nodes by tailscale.hostname, else the host's name", () => {
    const live: LiveNode[] = [
      { name: "phone-1", names: ["phone-1"], user: "alice", tags: [], ips: ["100.64.0.3"], approvedRoutes: [] },
      { name: "laptop", names: ["laptop"], user: "alice", tags: [], ips: ["100.64.0.2"], approvedRoutes: [] },
      { name: "phone", names: ["phone"], user: "carol", tags: [], ips: ["100.64.0.9"], approvedRoutes: [] },
    ];
    expect(fleetPolicyNodes(fleet({}), live).map((n) => [n.name, n.ips[0]])).toEqual([
      ["bobpc", expect.stringMatching(/^100\./)], ["laptop", "100.64.0.2"], ["phone", "100.64.0.3"], ["web1", expect.stringMatching(/^100\./)], ["web2", expect.stringMatching(/^100\./)], ["phone#2", "100.64.0.9"],
    ]);
  });

  it("users without their trailing @, and the users of untagged live nodes", () => {
    expect(fleetUsers(fleet({}, ["alice@", "bob", "x@corp@"]))).toEqual(["alice", "bob", "x@corp"]);
    const live: LiveNode[] = [
      { name: "x", names: ["x"], user: "carol", tags: [], ips: [], approvedRoutes: [] },
      { name: "y", names: ["y"], user: "dave", tags: ["tag:web"], ips: [], approvedRoutes: [] },
      { name: "z", names: ["z"], tags: [], ips: [], approvedRoutes: [] },
      { name: "w", names: ["w"], user: "bob", tags: [], ips: [], approvedRoutes: [] },
      { name: "v", names: ["v"], user: "carol", tags: [], ips: [], approvedRoutes: [] },
    ];
    expect(fleetUsers(fleet({}), live)).toEqual(["alice", "bob", "carol"]);
  });
});

describe("hostEnforcement", () => {
  const policy = policySchema.parse({
    tagOwners: { "tag:router": ["alice@"] }, hosts: { lan: "192.168.1.0/24" },
    acls: [{ action: "accept", src: ["alice@", "10.9.0.0/16", "100.0.0.0/9"], dst: ["tag:router:22", "lan:*", "10.1.0.0/16:443"] }],
  });
  const nodes: PolicyNode[] = [
    { name: "laptop", user: "alice", tags: [], ips: ["100.64.0.1", "fd7a:115c:a1e0::1"], approvedRoutes: [] },
    { name: "r1", tags: ["tag:router"], ips: ["100.64.0.2", "fd7a:115c:a1e0::2"], approvedRoutes: [] },
  ];
  it("sets hold the literal CIDRs, not the tailnet addresses of their nodes (those are the members); routes and the exit node are routed", () => {
    expect(hostEnforcement("r1", nodes, policy, { users: ["alice"], routes: ["10.1.0.0/16"], exitNode: true })).toEqual({
      tailnet: [{ proto: "any", ports: [22], fromSet: "peers_0", comment: "acls[0] src=alice@,10.9.0.0/16,100.0.0.0/9" }],
      // 100.0.0.0/9 reaches into the tailnet's range without lying inside it: literal.
      sets: { peers_0: ["10.9.0.0/16", "100.0.0.0/9"] },
      // r1 is a member too: 100.0.0.0/9 holds its address.
      setMembers: { peers_0: ["laptop", "r1"] },
      routed: {
        prefixes: ["::/0", "0.0.0.0/0"],
        rules: [
          { proto: "any", ports: [22], fromSet: "peers_0", to: ["fd7a:115c:a1e0::2", "100.64.0.2"], comment: "acls[0] src=alice@,10.9.0.0/16,100.0.0.0/9" },
          { proto: "any", ports: "any", fromSet: "peers_0", to: ["192.168.1.0/24"], comment: "acls[0] src=alice@,10.9.0.0/16,100.0.0.0/9" },
          { proto: "any", ports: [443], fromSet: "peers_0", to: ["10.1.0.0/16"], comment: "acls[0] src=alice@,10.9.0.0/16,100.0.0.0/9" },
        ],
      },
    });
    expect(hostEnforcement("r1", nodes, policy, { users: ["alice"], routes: ["10.1.0.0/16"] }).routed).toEqual({
      prefixes: ["10.1.0.0/16"],
      rules: [{ proto: "any", ports: [443], fromSet: "peers_0", to: ["10.1.0.0/16"], comment: "acls[0] src=alice@,10.9.0.0/16,100.0.0.0/9" }],
    });
    expect(hostEnforcement("r1", nodes, policy, { users: ["alice"] })).not.toHaveProperty("routed");
  });
});

describe("runFleetTests", () => {
  const F = "/fleets/home/fleet.yaml";
  const E = (path: string, expected: string, found: string, fix: string) => ({ severity: "error", file: F, path, expected, found, fix });

  it("reports every failing tests and sshTests line at its own path, with what it got and the fix", () => {
    const r = runFleetTests(fleet({
      tagOwners: { "tag:web": ["alice@"] },
      acls: [{ action: "accept", src: ["alice@"], dst: ["tag:web:22"] }, { action: "accept", src: ["bob@"], dst: ["tag:web:80"], proto: "udp" }],
      ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:web"], users: ["root"] }, { action: "check", src: ["bob@"], dst: ["tag:web"], users: ["deploy"] }],
      tests: [
        { src: "alice@", accept: ["tag:web:22", "tag:web:80"], deny: ["tag:web:443", "tag:web:22"] },
        { src: "carol@", accept: ["tag:web:22"] },
        { src: "bob@", proto: "udp", accept: ["tag:web:80"] },
      ],
      sshTests: [
        { src: "alice@", dst: ["tag:web"], accept: ["root", "deploy"], deny: ["root"], check: ["root"] },
        { src: "bob@", dst: ["tag:web"], check: ["deploy", "ubuntu"] },
        { src: "carol@", dst: ["tag:web"], accept: ["root"] },
        { src: "alice@", dst: ["tag:nope"], accept: ["root"] },
        { src: "alice@", dst: ["bob@"], accept: [] },
        { src: "alice@", dst: ["100.64.9.9"], accept: ["root"] },
      ],
    }));
    const otherPorts = "no rule matched: acls[0] reach the destination on other ports (for part of the source: fd7a:115c:a1e0::1d:cc2d)";
    const carol = 'failed to resolve source "carol@": resolving: user not found: token "carol@"';
    expect(r.results).toEqual([
      { line: "alice@ -> tag:web:22: expected ALLOWED", pass: true, reason: "acls[0]: alice@ -> tag:web:22" },
      { line: "alice@ -> tag:web:80: expected ALLOWED", pass: false, reason: otherPorts },
      { line: "alice@ -> tag:web:443: expected DENIED", pass: true, reason: otherPorts },
      { line: "alice@ -> tag:web:22: expected DENIED", pass: false, reason: "acls[0]: alice@ -> tag:web:22" },
      { line: "carol@", pass: false, reason: carol },
      { line: "bob@ -> tag:web:80 (udp): expected ALLOWED", pass: true, reason: "acls[1]: bob@ -> tag:web:80 (udp)" },
      { line: "ssh alice@ -> root@web1: may log in", pass: true, reason: "" },
      { line: "ssh alice@ -> root@web2: may log in", pass: true, reason: "" },
      { line: "ssh alice@ -> deploy@web1: may log in", pass: false, reason: "alice@/deploy -> web1: expected ALLOWED, got DENIED" },
      { line: "ssh alice@ -> deploy@web2: may log in", pass: false, reason: "alice@/deploy -> web2: expected ALLOWED, got DENIED" },
      { line: "ssh alice@ -> root@web1: may not log in", pass: false, reason: "alice@/root -> web1: expected DENIED, got ALLOWED" },
      { line: "ssh alice@ -> root@web2: may not log in", pass: false, reason: "alice@/root -> web2: expected DENIED, got ALLOWED" },
      { line: "ssh alice@ -> root@web1: logs in after a check", pass: false, reason: "alice@/root -> web1: expected ALLOWED via check, got ALLOWED via accept" },
      { line: "ssh alice@ -> root@web2: logs in after a check", pass: false, reason: "alice@/root -> web2: expected ALLOWED via check, got ALLOWED via accept" },
      { line: "ssh bob@ -> deploy@web1: logs in after a check", pass: true, reason: "" },
      { line: "ssh bob@ -> deploy@web2: logs in after a check", pass: true, reason: "" },
      { line: "ssh bob@ -> ubuntu@web1: logs in after a check", pass: false, reason: "bob@/ubuntu -> web1: expected ALLOWED via check, got DENIED" },
      { line: "ssh bob@ -> ubuntu@web2: logs in after a check", pass: false, reason: "bob@/ubuntu -> web2: expected ALLOWED via check, got DENIED" },
      { line: "ssh carol@", pass: false, reason: carol },
      { line: "ssh alice@", pass: false, reason: 'dst alias "tag:nope" resolved to no nodes' },
      { line: "ssh alice@", pass: false, reason: "no accept, deny, or check assertions specified" },
      { line: "ssh alice@", pass: false, reason: 'dst alias "100.64.9.9/32" resolved to no nodes' },
    ]);
    const sources = "name a user, group, tag or host of this fleet";
    expect(r.diagnostics).toEqual([
      E("policy.tests[0].accept[1]", "ALLOWED", `DENIED: ${otherPorts}`, "add an acl allowing alice@ to tag:web:80, or move it to deny"),
      E("policy.tests[0].deny[1]", "DENIED", "ALLOWED: acls[0]: alice@ -> tag:web:22", "narrow the rule that allows it, or move it to accept"),
      E("policy.tests[1].src", "a source that resolves to nodes", carol, sources),
      E("policy.sshTests[0].accept[1]", "alice@ may SSH to web1 as deploy", "DENIED (alice@/deploy -> web1: expected ALLOWED, got DENIED)", "add an ssh rule {action: accept, src: [alice@], dst: [tag:web], users: [deploy]}, or move deploy to deny"),
      E("policy.sshTests[0].accept[1]", "alice@ may SSH to web2 as deploy", "DENIED (alice@/deploy -> web2: expected ALLOWED, got DENIED)", "add an ssh rule {action: accept, src: [alice@], dst: [tag:web], users: [deploy]}, or move deploy to deny"),
      E("policy.sshTests[0].deny[0]", "alice@ may not SSH to web1 as root", "ALLOWED (alice@/root -> web1: expected DENIED, got ALLOWED)", "narrow the ssh rule that lets alice@ in as root, or move root to accept"),
      E("policy.sshTests[0].deny[0]", "alice@ may not SSH to web2 as root", "ALLOWED (alice@/root -> web2: expected DENIED, got ALLOWED)", "narrow the ssh rule that lets alice@ in as root, or move root to accept"),
      E("policy.sshTests[0].check[0]", "alice@ may SSH to web1 as root through a check rule", "ALLOWED via accept (alice@/root -> web1: expected ALLOWED via check, got ALLOWED via accept)", "make the ssh rule for alice@ action: check, or move root to accept"),
      E("policy.sshTests[0].check[0]", "alice@ may SSH to web2 as root through a check rule", "ALLOWED via accept (alice@/root -> web2: expected ALLOWED via check, got ALLOWED via accept)", "make the ssh rule for alice@ action: check, or move root to accept"),
      E("policy.sshTests[1].check[1]", "bob@ may SSH to web1 as ubuntu through a check rule", "DENIED (bob@/ubuntu -> web1: expected ALLOWED via check, got DENIED)", "add an ssh rule {action: check, src: [bob@], dst: [tag:web], users: [ubuntu]}"),
      E("policy.sshTests[1].check[1]", "bob@ may SSH to web2 as ubuntu through a check rule", "DENIED (bob@/ubuntu -> web2: expected ALLOWED via check, got DENIED)", "add an ssh rule {action: check, src: [bob@], dst: [tag:web], users: [ubuntu]}"),
      E("policy.sshTests[2].src", "a source that resolves to nodes", carol, sources),
      E("policy.sshTests[3].dst", "destinations that resolve to nodes", 'dst alias "tag:nope" resolved to no nodes', sources),
      E("policy.sshTests[4]", "accept, deny or check", "no accept, deny, or check assertions specified", "add accept: [root] or deny: [root]"),
      E("policy.sshTests[5].dst", "destinations that resolve to nodes", 'dst alias "100.64.9.9/32" resolved to no nodes', sources),
    ]);
  });

  const layoutPolicy = {
    tagOwners: { "tag:web": ["alice@"] },
    // alice's two nodes are 100.64.0.2 and .3 on the adjacent layout (bobpc, laptop, phone, ...): this rule names one of them.
    acls: [{ action: "accept", src: ["100.64.0.2", "fd7a:115c:a1e0::2"], dst: ["tag:web:443"] }, { action: "accept", src: ["alice@"], dst: ["tag:web:22"] }],
    ssh: [{ action: "accept", src: ["alice@"], dst: ["autogroup:member"], users: ["root"] }],
    tests: [{ src: "alice@", accept: ["tag:web:443", "tag:web:22"] }, { src: "alice@", accept: ["tag:nope:22"] }],
    sshTests: [
      ...Array.from({ length: 10 }, () => ({ src: "alice@", dst: ["bob@"], accept: ["root"] })),
      { src: "alice@", dst: ["bob@"], accept: ["root", "deploy"] },
      { src: "alice@", dst: ["tag:1x"], accept: ["root"] },
    ],
  };
  const denied443 = (where: string) => `DENIED: no rule matched: acls[1] reach the destination on other ports (for part of the source: ${where})`;
  const nope = 'ERROR: error testing "tag:nope:22": destination resolved to no IP addresses: "tag:nope:22"';

  it("warns where the verdict changes on adjacent addresses; an untagged destination's fix names autogroup:member; sshTests past the tenth", () => {
    const r = runFleetTests(fleet(layoutPolicy));
    expect(r.diagnostics).toEqual([
      E("policy.tests[0].accept[0]", "ALLOWED", denied443("fd7a:115c:a1e0::1d:cc2d"), "add an acl allowing alice@ to tag:web:443, or move it to deny"),
      {
        severity: "warning", file: F, path: "policy.tests[0].accept[0]",
        expected: "a verdict that does not depend on the nodes' addresses",
        found: "alice@ -> tag:web:443 is DENIED on meshfleet's stand-in addresses but ALLOWED when the nodes sit on adjacent addresses (headscale merges a source's adjacent addresses into one prefix, and a prefix passes when any rule overlaps it)",
        fix: "check against the coordinator's addresses: headscale nodes list --output json > nodes.json, then meshfleet check --nodes nodes.json",
      },
      // An ERROR line is an ERROR on either layout: no warning.
      E("policy.tests[1].accept[0]", "ALLOWED", nope, "add an acl allowing alice@ to tag:nope:22, or move it to deny"),
      E("policy.sshTests[10].accept[1]", "alice@ may SSH to bobpc as deploy", "DENIED (alice@/deploy -> bobpc: expected ALLOWED, got DENIED)", "add an ssh rule {action: accept, src: [alice@], dst: [autogroup:member], users: [deploy]}, or move deploy to deny"),
      E("policy.sshTests[11].dst", "destinations that resolve to nodes", `failed to resolve destinations: resolving destination "tag:1x": tag names must start with a letter after 'tag:', found "tag:1x"`, "name a user, group, tag or host of this fleet"),
    ]);
  });

  it("on live nodes: no layout warning, and every finding says which addresses it was worked out on", () => {
    const live: LiveNode[] = [{ name: "laptop", names: ["laptop"], user: "alice", tags: [], ips: ["100.64.0.2", "fd7a:115c:a1e0::2"], approvedRoutes: [] }];
    const from = " (on the coordinator's addresses from nodes.json)";
    expect(runFleetTests(fleet(layoutPolicy), { live, liveFile: "nodes.json" }).diagnostics).toEqual([
      E("policy.tests[0].accept[0]", "ALLOWED", denied443("fd7a:115c:a1e0::36:11af") + from, "add an acl allowing alice@ to tag:web:443, or move it to deny"),
      E("policy.tests[1].accept[0]", "ALLOWED", nope + from, "add an acl allowing alice@ to tag:nope:22, or move it to deny"),
      E("policy.sshTests[10].accept[1]", "alice@ may SSH to bobpc as deploy", `DENIED (alice@/deploy -> bobpc: expected ALLOWED, got DENIED)${from}`, "add an ssh rule {action: accept, src: [alice@], dst: [autogroup:member], users: [deploy]}, or move deploy to deny"),
      E("policy.sshTests[11].dst", "destinations that resolve to nodes", `failed to resolve destinations: resolving destination "tag:1x": tag names must start with a letter after 'tag:', found "tag:1x"${from}`, "name a user, group, tag or host of this fleet"),
    ]);
    expect(runFleetTests(fleet(layoutPolicy), { live }).diagnostics[0].found).toBe(denied443("fd7a:115c:a1e0::36:11af") + " (on the coordinator's addresses from the nodes list)");
  });
});
