/**
 * core/policy/reachability.ts: explain's answers for names it does not know
 * and without a port, and canonicalSpec's order and merging. Pure and fast,
 * for Stryker (npm run mutate -- policy-reach); policy.test.ts holds the
 * evaluator's table and its brute-force property.
 */
import { describe, expect, it, vi } from "vitest";
import { canonicalSpec, mergeRanges } from "../../core/policy/reachability.ts";
import { evaluateReachability, policySchema, type PolicyNode } from "../../core/policy/index.ts";
import { compilePolicy, type CompiledRule } from "../../core/policy/compile.ts";
import { ALL, THE_INTERNET, contains, coversRange, intersect, overlapsRange, parsePrefix, toStrings, type IPSet } from "../../core/policy/ipset.ts";
import { Resolver } from "../../core/policy/resolve.ts";
import { prng } from "./corpus/generate.ts";

const N = (name: string, ip: number, o: Partial<PolicyNode> = {}): PolicyNode => ({ name, tags: [], ips: [`100.64.0.${ip}`], approvedRoutes: [], ...o });
const nodes = [N("b2", 2, { user: "bob" }), N("w4", 4, { tags: ["tag:web"] })];

describe("explain", () => {
  const r = evaluateReachability(nodes, policySchema.parse({ acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:22"] }, { action: "accept", src: ["bob@"], dst: ["tag:web:80"], proto: "udp" }] }), { users: ["bob"] });
  it("names what it does not know", () => {
    expect(r.explain("nope", "w4", 22, "tcp")).toEqual({ allowed: false, why: "unknown node nope" });
    expect(r.explain("b2", "nope", 22, "tcp")).toEqual({ allowed: false, why: "unknown destination nope" });
  });
  it("without a port: allowed, every rule that gives access; a port with no proto is tcp", () => {
    expect(r.explain("b2", "w4")).toEqual({ allowed: true, why: "acls[0]: bob@ -> tag:web:22; acls[1]: bob@ -> tag:web:80 (udp)" });
    expect(r.explain("b2", "w4", 80)).toEqual({ allowed: false, why: "no rule matched on tcp:80 (allowed: any:22 udp:80)" });
  });
});

describe("canonicalSpec", () => {
  const e = (proto: string, ports: [number, number][], part?: string) => ({ rule: { proto, ports: ports.map(([first, last]) => ({ first, last })) } as CompiledRule, part });
  it("any first, then by protocol and part; ports open to any are not repeated for one protocol", () => {
    expect(canonicalSpec([
      e("udp", [[53, 53]]), e("", [[22, 22]]), e("tcp", [[22, 22], [443, 443]]), e("tcp", [[80, 80]], "192.168.8.10"), e("icmp", [[0, 65535]]), e("", [[22, 22]], "192.168.8.10"),
    ])).toBe("any:22 any:22 to 192.168.8.10 icmp:* tcp:443 tcp:80 to 192.168.8.10 udp:53");
    expect(canonicalSpec([e("tcp", [[22, 22]]), e("", [[1, 100]])])).toBe("any:1-100");
    expect(canonicalSpec([e("udp", [[1, 1]]), e("tcp", [[1, 1]])])).toBe("tcp:1 udp:1");
  });
  it("orders parts of any by their text", () => {
    expect(canonicalSpec([e("", [[22, 22]], "192.168.8.20"), e("", [[22, 22]], "192.168.8.10"), e("", [[1, 1]])])).toBe("any:1 any:22 to 192.168.8.10 any:22 to 192.168.8.20");
    expect(canonicalSpec([e("", [[22, 22]], "192.168.8.30"), e("", [[22, 22]], "192.168.8.20"), e("", [[22, 22]], "192.168.8.10")])).toBe("any:22 to 192.168.8.10 any:22 to 192.168.8.20 any:22 to 192.168.8.30");
  });
  it("merges the ports of several rules of one protocol", () => {
    expect(canonicalSpec([e("tcp", [[80, 80]]), e("tcp", [[22, 22]]), e("tcp", [[81, 90]])])).toBe("tcp:22,80-90");
  });
  it("drops a protocol's ports only where one range open to any protocol holds them, for the same part", () => {
    expect(canonicalSpec([e("", [[22, 22], [80, 80]]), e("tcp", [[80, 80]])])).toBe("any:22,80");
    expect(canonicalSpec([e("", [[50, 60]]), e("tcp", [[10, 20], [55, 70]])])).toBe("any:50-60 tcp:10-20,55-70");
    expect(canonicalSpec([e("", [[1, 100]]), e("tcp", [[80, 80]], "192.168.8.10")])).toBe("any:1-100 tcp:80 to 192.168.8.10");
  });
  it("any first, with or without a part, even before a protocol that sorts before it (ah)", () => {
    expect(canonicalSpec([e("ah", [[0, 65535]]), e("", [[22, 22]], "192.168.8.10"), e("", [[443, 443]])])).toBe("any:443 any:22 to 192.168.8.10 ah:*");
    expect(canonicalSpec([e("", [[22, 22]], "192.168.8.10"), e("ah", [[0, 65535]])])).toBe("any:22 to 192.168.8.10 ah:*");
    expect(canonicalSpec([e("ah", [[0, 65535]]), e("", [[22, 22]], "192.168.8.10")])).toBe("any:22 to 192.168.8.10 ah:*");
  });
});

describe("mergeRanges", () => {
  const m = (xs: [number, number][]) => mergeRanges(xs.map(([first, last]) => ({ first, last }))).map((r) => [r.first, r.last]);
  it("sorts, and joins ranges that overlap, touch or hold one another; leaves its input alone", () => {
    const input = [{ first: 80, last: 80 }, { first: 22, last: 22 }];
    expect(mergeRanges(input)).toEqual([{ first: 22, last: 22 }, { first: 80, last: 80 }]);
    expect(input).toEqual([{ first: 80, last: 80 }, { first: 22, last: 22 }]);
    expect(m([[1, 5], [6, 8]])).toEqual([[1, 8]]);
    expect(m([[5, 8], [1, 5]])).toEqual([[1, 8]]);
    expect(m([[1, 10], [2, 3]])).toEqual([[1, 10]]);
    expect(m([[1, 5], [7, 8], [3, 6]])).toEqual([[1, 8]]);
    expect(m([[9, 9], [1, 2], [5, 5]])).toEqual([[1, 2], [5, 5], [9, 9]]);
  });
});

/** A tailnet with self rules of two users, a user without any, tagged nodes, a router with a subnet and an exit route. */
const fleet: PolicyNode[] = [
  N("a1", 1, { user: "alice" }), N("a2", 2, { user: "alice" }), N("b3", 3, { user: "bob" }), N("b4", 4, { user: "bob" }),
  N("c5", 5, { user: "carol" }), N("w6", 6, { tags: ["tag:web"] }), N("w7", 7, { tags: ["tag:web"] }),
  // "bogus" is no prefix: left out of the targets.
  N("r8", 8, { tags: ["tag:router"], approvedRoutes: ["192.168.8.0/24", "0.0.0.0/0", "::/0", "bogus"] }),
];
const fleetPolicy = policySchema.parse({
  hosts: { nas: "192.168.8.10", printer: "192.168.8.20" },
  acls: [
    { action: "accept", src: ["alice@"], dst: ["autogroup:self:22"] },
    { action: "accept", src: ["bob@"], dst: ["autogroup:self:80"] },
    { action: "accept", src: ["autogroup:member"], dst: ["tag:web:443"] },
    { action: "accept", src: ["carol@"], dst: ["autogroup:internet:*"] },
    { action: "accept", src: ["alice@"], dst: ["alice@:443"] },
  ],
  grants: [{ src: ["alice@"], dst: ["192.168.8.0/24"], ip: ["udp:53"], via: ["tag:router", "tag:other"] }, { src: ["bob@"], dst: ["nas", "printer"], ip: ["tcp:445"] }],
});
const USERS = { users: ["alice", "bob", "carol"] };

describe("evaluateReachability over a tailnet", () => {
  const r = evaluateReachability(fleet, fleetPolicy, USERS);

  it("lists nodes, then routes and exit nodes as targets", () => {
    expect(r.allowAll).toBe(false);
    expect(r.nodes).toEqual(["a1", "a2", "b3", "b4", "c5", "w6", "w7", "r8"]);
    expect(r.targets).toEqual([
      ...r.nodes.map((n) => ({ id: n, kind: "node", node: n })),
      { id: "192.168.8.0/24 via r8", kind: "route", node: "r8", cidr: "192.168.8.0/24" },
      { id: "internet via r8", kind: "internet", node: "r8" },
    ]);
  });

  it("gives every allowed pair with its access and the rules behind it; self rules only within their own user", () => {
    const lines = [...r.pairs()].map((p) => `${p.src} -> ${p.dst} (${p.kind}) ${p.spec} | ${p.why.join(" | ")}`);
    const member = "acls[2]: autogroup:member -> tag:web:443";
    const via = "grants[0]: alice@ -> 192.168.8.0/24 [udp:53] via tag:router, tag:other";
    const nas = "grants[1]: bob@ -> nas, printer [tcp:445]";
    expect(lines).toEqual([
      "a1 -> a2 (node) any:22,443 | acls[4]: alice@ -> alice@:443 | acls[0]: alice@ -> autogroup:self:22",
      `a1 -> w6 (node) any:443 | ${member}`,
      `a1 -> w7 (node) any:443 | ${member}`,
      `a1 -> 192.168.8.0/24 via r8 (route) udp:53 | ${via}`,
      "a2 -> a1 (node) any:22,443 | acls[4]: alice@ -> alice@:443 | acls[0]: alice@ -> autogroup:self:22",
      `a2 -> w6 (node) any:443 | ${member}`,
      `a2 -> w7 (node) any:443 | ${member}`,
      `a2 -> 192.168.8.0/24 via r8 (route) udp:53 | ${via}`,
      "b3 -> b4 (node) any:80 | acls[1]: bob@ -> autogroup:self:80",
      `b3 -> w6 (node) any:443 | ${member}`,
      `b3 -> w7 (node) any:443 | ${member}`,
      `b3 -> 192.168.8.0/24 via r8 (route) tcp:445 to 192.168.8.10,192.168.8.20 | ${nas}`,
      "b4 -> b3 (node) any:80 | acls[1]: bob@ -> autogroup:self:80",
      `b4 -> w6 (node) any:443 | ${member}`,
      `b4 -> w7 (node) any:443 | ${member}`,
      `b4 -> 192.168.8.0/24 via r8 (route) tcp:445 to 192.168.8.10,192.168.8.20 | ${nas}`,
      `c5 -> w6 (node) any:443 | ${member}`,
      `c5 -> w7 (node) any:443 | ${member}`,
      "c5 -> internet via r8 (internet) any:* | acls[3]: carol@ -> autogroup:internet:*",
    ]);
  });

  it("numbers classes in node order: sources by rules and, with self rules, user; node targets by rules and user", () => {
    expect([...r.classes.src]).toEqual([0, 0, 1, 1, 2, 3, 3, 3]);
    expect([...r.classes.dst]).toEqual([0, 0, 1, 1, 2, 3, 3, 4, 5, 6]);
    expect(r.plain).toBeDefined();
    const p = r.plain!;
    expect([...p.src]).toEqual([0, 0, 1, 1, 2, 3, 3, 3]);
    // Node targets by rules only (a1 and a2 are in acls[4]'s destinations); a route or exit target after them, each on its own.
    expect([...p.dst]).toEqual([0, 0, 1, 1, 1, 2, 2, 1, 3, 4]);
    expect([...p.user]).toEqual([0, 0, 1, 1, 2, -1, -1, -1]);
    expect([...p.self]).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
  });

  it("holds the class contracts: access follows the classes, plain access differs only within a user under self rules", () => {
    checkClasses(r);
  });

  it("without self rules: no user in the classes, and plain users left at -1", () => {
    const q = evaluateReachability(fleet, policySchema.parse({ acls: [{ action: "accept", src: ["alice@", "bob@"], dst: ["tag:web:443", "alice@:22"] }] }), USERS);
    expect([...q.classes.src]).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect([...q.classes.dst]).toEqual([0, 0, 1, 1, 1, 2, 2, 1, 3, 4]);
    expect([...q.plain!.user]).toEqual([-1, -1, -1, -1, -1, -1, -1, -1]);
    expect([...q.plain!.self]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    checkClasses(q);
  });

  it("a self rule whose only source has no user applies to no node: no user in the classes; a node without user or tag is in no user", () => {
    const q = evaluateReachability([...fleet, N("u9", 9)], policySchema.parse({ acls: [{ action: "accept", src: ["autogroup:member"], dst: ["tag:web:443"] }, { action: "accept", src: ["100.64.0.9"], dst: ["autogroup:self:22"] }] }), USERS);
    expect([...q.classes.dst]).toEqual([0, 0, 0, 0, 0, 1, 1, 0, 0, 2, 3]);
    expect([...q.plain!.user]).toEqual([0, 0, 1, 1, 2, -1, -1, -1, -1]);
    checkClasses(q);
  });

  it("self rules do not split plain source classes: only their users' classes do", () => {
    const q = evaluateReachability(fleet, policySchema.parse({ acls: [{ action: "accept", src: ["autogroup:member"], dst: ["tag:web:443"] }, { action: "accept", src: ["bob@"], dst: ["autogroup:self:22"] }] }), USERS);
    expect([...q.plain!.src]).toEqual([0, 0, 0, 0, 0, 1, 1, 1]);
    expect([...q.plain!.self]).toEqual([0, 0, 1, 1, 0, 0, 0, 0]);
    expect([...q.classes.src]).toEqual([0, 0, 1, 1, 0, 2, 2, 2]);
    checkClasses(q);
  });

  it("explain: a udp port meets a udp rule only; a port in a rule's second range; every rule allowing it, joined", () => {
    const q = evaluateReachability(fleet, policySchema.parse({
      acls: [
        { action: "accept", src: ["bob@"], dst: ["tag:web:53"], proto: "udp" },
        { action: "accept", src: ["bob@"], dst: ["tag:web:22,8000-8100"] },
        { action: "accept", src: ["autogroup:member"], dst: ["tag:web:8000-9000"] },
      ],
    }), USERS);
    expect(q.explain("b3", "w6", 53, "udp")).toEqual({ allowed: true, why: "acls[0]: bob@ -> tag:web:53 (udp)" });
    expect(q.explain("b3", "w6", 53, "tcp")).toEqual({ allowed: false, why: "no rule matched on tcp:53 (allowed: any:22,8000-9000 udp:53)" });
    expect(q.explain("b3", "w6", 8050, "tcp")).toEqual({ allowed: true, why: "acls[1]: bob@ -> tag:web:22,8000-8100; acls[2]: autogroup:member -> tag:web:8000-9000" });
    expect(q.explain("b3", "w6", 8500)).toEqual({ allowed: true, why: "acls[2]: autogroup:member -> tag:web:8000-9000" });
    expect(q.explain("w6", "b3", 22)).toEqual({ allowed: false, why: "no rule matched" });
  });

  it("no acls and no grants: everything allowed, each node to every other target, none to itself", () => {
    const q = evaluateReachability(fleet.slice(4), policySchema.parse({}), USERS);
    expect(q.allowAll).toBe(true);
    expect(q.rules).toEqual([{ path: "(no acls, no grants)", text: "headscale allows everything" }]);
    const lines = [...q.pairs()].map((p) => `${p.src} -> ${p.dst} ${p.spec} | ${p.why.join(" | ")}`);
    expect(lines).toHaveLength(4 * 6 - 4);
    expect(lines[0]).toBe("c5 -> w6 any:* | (no acls, no grants): headscale allows everything");
    expect(lines.some((l) => l.startsWith("w6 -> w6 "))).toBe(false);
    expect(q.explain("w6", "internet via r8", 443, "tcp")).toEqual({ allowed: true, why: "(no acls, no grants): headscale allows everything" });
  });
});

describe("rule lists that differ only in how their ids are written", () => {
  it("keep apart the nodes in sets 1 and 2 and the node in set 12, and the access of rules 1, 2 and of rule 12", () => {
    // Each rule's source is a set of its own: a1 is in the sets of rules 1 and 2, b3 in the set of rule 12.
    const src = (k: number) => (k === 1 ? "100.64.0.1" : k === 2 ? "100.64.0.1/32" : k === 12 ? "100.64.0.3" : `10.0.${k}.0/24`);
    const acls = Array.from({ length: 13 }, (_, k) => ({ action: "accept" as const, src: [src(k)], dst: [`tag:web:${1000 + k}`] }));
    const r = evaluateReachability(fleet, policySchema.parse({ acls }), USERS);
    expect(r.access(0, 5)).toEqual({ spec: "any:1001-1002", rules: [1, 2] });
    expect(r.access(2, 5)).toEqual({ spec: "any:1012", rules: [12] });
  });

  it("keep apart one rule's parts of two routes", () => {
    const nodes = [N("a1", 1, { user: "alice" }), N("r8", 8, { tags: ["tag:router"], approvedRoutes: ["192.168.8.0/24", "192.168.9.0/24"] })];
    const r = evaluateReachability(nodes, policySchema.parse({ hosts: { nas: "192.168.8.10", nas2: "192.168.9.10" }, grants: [{ src: ["alice@"], dst: ["nas", "nas2"], ip: ["tcp:445"] }] }), USERS);
    expect([...r.pairs()].map((p) => `${p.dst} ${p.spec}`)).toEqual(["192.168.8.0/24 via r8 tcp:445 to 192.168.8.10", "192.168.9.0/24 via r8 tcp:445 to 192.168.9.10"]);
  });
});

describe("via grants", () => {
  const at = (grants: object[], src: string, dst: string) => evaluateReachability(fleet, policySchema.parse({ grants }), USERS).explain(src, dst);
  const g = (dst: string[], via: string[]) => ({ src: ["alice@"], dst, ip: ["*"], via });

  it("reach a route through a router with one of their tags, never a node", () => {
    expect(at([g(["192.168.8.0/24"], ["tag:router"])], "a1", "192.168.8.0/24 via r8").allowed).toBe(true);
    expect(at([g(["192.168.8.0/24"], ["tag:nope"])], "a1", "192.168.8.0/24 via r8")).toEqual({ allowed: false, why: "no rule matched" });
    expect(at([g(["tag:web", "autogroup:member"], ["tag:router"])], "a1", "w6")).toEqual({ allowed: false, why: "no rule matched" });
  });

  it("reach an exit node only when they name autogroup:internet, not for a public range or a route", () => {
    expect(at([g(["autogroup:internet"], ["tag:router"])], "a1", "internet via r8")).toEqual({ allowed: true, why: "grants[0]: alice@ -> autogroup:internet [*] via tag:router" });
    expect(at([g(["autogroup:internet"], ["tag:web"])], "a1", "internet via r8").allowed).toBe(false);
    expect(at([g(["8.8.8.0/24"], ["tag:router"])], "a1", "internet via r8").allowed).toBe(false);
    expect(at([g(["192.168.8.0/24"], ["tag:router"])], "a1", "internet via r8").allowed).toBe(false);
    // An acl to a public range does reach the exit node.
    const acl = evaluateReachability(fleet, policySchema.parse({ acls: [{ action: "accept", src: ["alice@"], dst: ["8.8.8.0/24:53"] }] }), USERS);
    expect(acl.explain("a1", "internet via r8")).toEqual({ allowed: true, why: "acls[0]: alice@ -> 8.8.8.0/24:53" });
  });
});

describe("more than 32 rules (a second word of rule bits)", () => {
  it("keeps the rules past the 32nd apart", () => {
    const acls = Array.from({ length: 40 }, (_, k) => ({ action: "accept" as const, src: [k % 2 ? "bob@" : "alice@"], dst: [`tag:web:${1000 + k}`] }));
    const r = evaluateReachability(fleet, policySchema.parse({ acls }), USERS);
    expect(r.explain("a1", "w6", 1038)).toEqual({ allowed: true, why: "acls[38]: alice@ -> tag:web:1038" });
    expect(r.explain("b3", "w6", 1039)).toEqual({ allowed: true, why: "acls[39]: bob@ -> tag:web:1039" });
    expect(r.access(2, 5)!.spec).toBe(`any:${Array.from({ length: 20 }, (_, k) => 1001 + 2 * k).join(",")}`);
    checkClasses(r);
  });
});

describe("evaluateReachability on seeded random tailnets", () => {
  it("gives every pair the access worked out pair by pair from the compiled rules, and holds the class contracts", () => {
    const rnd = prng(16);
    const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
    const users = ["alice", "bob", "carol", "dave"];
    const tags = ["tag:web", "tag:db", "tag:router", "tag:exit"];
    for (let c = 0; c < 12; c++) {
      const nodes: PolicyNode[] = Array.from({ length: 8 + Math.floor(rnd() * 10) }, (_, i) => {
        const tagged = rnd() < 0.35;
        const t = tagged ? [pick(tags)] : [];
        const routes = t[0] === "tag:router" ? [pick(["192.168.1.0/24", "192.168.0.0/23", "10.0.0.0/8"])] : [];
        const exit = t[0] === "tag:exit" || (t[0] === "tag:router" && rnd() < 0.3) ? ["0.0.0.0/0", "::/0"] : [];
        return N(`n${i}`, i + 1, { tags: t, user: tagged ? undefined : pick(users), approvedRoutes: [...routes, ...exit] });
      });
      const aliases = ["alice@", "bob@", "carol@", "dave@", "group:ops", ...tags, "autogroup:member", "autogroup:tagged", "*", "100.64.0.0/29", "100.64.0.9"];
      const dsts = [...aliases, "autogroup:internet", "192.168.1.0/25", "192.168.0.0/16", "10.1.2.3", "8.8.8.0/24"];
      const acls = Array.from({ length: 2 + Math.floor(rnd() * 12) }, () => {
        const self = rnd() < 0.2;
        return {
          action: "accept" as const,
          src: self ? [pick(["alice@", "bob@", "group:ops", "autogroup:member"])] : [pick(aliases), pick(aliases)],
          dst: [`${self ? "autogroup:self" : pick(dsts)}:${pick(["*", "22", "80,443", "53", "1000-2000"])}`],
          ...(rnd() < 0.2 ? { proto: pick(["tcp", "udp"]) } : {}),
        };
      });
      const grants = Array.from({ length: Math.floor(rnd() * 3) }, () => ({
        src: [pick(aliases)], dst: [pick(["192.168.1.0/24", "10.0.0.0/8", "autogroup:internet", "8.8.8.0/24", "tag:web"])], ip: [pick(["tcp:443", "*"])],
        ...(rnd() < 0.7 ? { via: [pick(["tag:router", "tag:exit", "tag:web"])] } : {}),
      }));
      const policy = policySchema.parse({ groups: { "group:ops": ["alice@", "bob@"] }, tagOwners: Object.fromEntries(tags.map((t) => [t, ["alice@"]])), acls, grants });
      const opts = { users };
      const r = evaluateReachability(nodes, policy, opts);
      const ref = referenceAccess(nodes, policy, r, users);
      for (let s = 0; s < r.nodes.length; s++) {
        for (let t = 0; t < r.targets.length; t++) expect(r.access(s, t), `case ${c}: ${r.nodes[s]} -> ${r.targets[t].id}`).toEqual(ref(s, t));
      }
      checkClasses(r);
    }
  });
});

/** Access from the compiled rules, pair by pair: no classes, no caches. */
function referenceAccess(nodes: PolicyNode[], policy: ReturnType<typeof policySchema.parse>, r: ReturnType<typeof evaluateReachability>, users: string[]) {
  const resolver = new Resolver(policy, nodes, users);
  const compiled = compilePolicy(policy, resolver);
  const rules: CompiledRule[] = compiled.allowAll
    ? [{ id: 0, origin: { path: "", text: "" }, category: "regular", src: ALL, dst: ALL, proto: "", protos: null, ports: [{ first: 0, last: 65535 }] }]
    : compiled.rules;
  const infos = resolver.nodes;
  const has = (set: IPSet, i: number) => infos[i].addrs.some((a) => contains(set, a));
  return (s: number, t: number) => {
    const target = r.targets[t];
    const entries: { rule: CompiledRule; part?: string }[] = [];
    for (const rule of rules) {
      if (rule.category === "self") {
        const [a, b] = [infos[s], infos[t]];
        if (target.kind === "node" && !a.tagged && !b.tagged && a.node.user !== undefined && a.node.user === b.node.user && rule.srcNodes!.has(s)) entries.push({ rule });
        continue;
      }
      if (!has(rule.src, s)) continue;
      if (target.kind === "node") {
        if (rule.category === "regular" && has(rule.dst, t)) entries.push({ rule });
        continue;
      }
      const router = infos.find((n) => n.node.name === target.node)!;
      if (rule.category === "via" && !rule.via!.some((v) => router.node.tags.includes(v))) continue;
      if (target.kind === "route") {
        const p = parsePrefix(target.cidr!)!;
        if (overlapsRange(rule.dst, p.lo, p.hi)) entries.push({ rule, part: coversRange(rule.dst, p.lo, p.hi) ? undefined : toStrings(intersect(rule.dst, [[p.lo, p.hi]])).join(",") });
      } else if (rule.category === "via" ? rule.viaInternet === true : intersect(rule.dst, THE_INTERNET).length > 0) entries.push({ rule });
    }
    // Entries in rule order, as the evaluator lists them: plain rules, then self rules.
    entries.sort((x, y) => (x.rule.category === "self" ? 1 : 0) - (y.rule.category === "self" ? 1 : 0) || x.rule.id - y.rule.id);
    return entries.length ? { spec: canonicalSpec(entries), rules: [...new Set(entries.map((e) => e.rule.id))] } : null;
  };
}

/** access() by the classes, and plain.access() by the plain classes, as ReachabilityResult documents them. */
function checkClasses(r: ReturnType<typeof evaluateReachability>) {
  const S = r.nodes.length;
  const T = r.targets.length;
  const firstOf = (cls: Int32Array) => new Map([...cls].map((c, i) => [c, i] as const).reverse());
  const srcRep = firstOf(r.classes.src);
  const dstRep = firstOf(r.classes.dst);
  const p = r.plain!;
  const pSrcRep = firstOf(p.src);
  const pDstRep = firstOf(p.dst);
  for (let s = 0; s < S; s++) {
    for (let t = 0; t < T; t++) {
      const a = r.access(s, t);
      expect(a, `${s} ${t}`).toEqual(r.access(srcRep.get(r.classes.src[s])!, dstRep.get(r.classes.dst[t])!));
      const pa = p.access(s, t);
      expect(pa, `plain ${s} ${t}`).toEqual(p.access(pSrcRep.get(p.src[s])!, pDstRep.get(p.dst[t])!));
      const own = t < S && p.self[s] === 1 && p.user[s] === p.user[t];
      if (!own) expect(pa, `plain = access ${s} ${t}`).toEqual(a);
    }
  }
}

describe("module constants, loaded afresh (so that a mutant of them is what the test sees)", () => {
  it("the allow-all rule's origin", async () => {
    vi.resetModules();
    const m = await import("../../core/policy/reachability.ts");
    const q = m.evaluateReachability(fleet.slice(5, 7), policySchema.parse({}), USERS);
    expect(q.rules).toEqual([{ path: "(no acls, no grants)", text: "headscale allows everything" }]);
    expect(q.explain("w6", "w7")).toEqual({ allowed: true, why: "(no acls, no grants): headscale allows everything" });
  });
});
