/**
 * Issue 19 ("ten times larger"), plan at 10,000 hosts x 1,000 rules: plan's
 * reachability and diff now work per class (nodes no rule tells apart), and
 * compilePolicy no longer sorts every union again. Each is held here to a
 * straightforward reference on seeded random fleets and policies, so a wrong
 * class merge fails:
 * - reachability: every (node, target) access against one worked out from
 *   the compiled rules pair by pair (addresses in sets, same user for
 *   autogroup:self), and access(s, t) equal for all pairs of the same
 *   (source class, target class);
 * - the diff: against the pairwise loop it replaced (copied below), with
 *   nodes removed, added, changed, renamed, reordered and named twice between
 *   revisions, and truncation; with class rows kept and with none kept (the
 *   path a fleet of over 64 M class pairs takes, forced by setClassRowLimit);
 *   by reachability's classes and by its plain ones (setPlainClassMode), whose
 *   own invariants are checked with reachability's;
 * - fleets with IPv6-only nodes, an IPv6 route, 10.0.0.0/8 routed over
 *   10.1.0.0/16, exit nodes with only 0.0.0.0/0, autogroup:danger-all
 *   sources, self grants with several sources (each counted, so each is
 *   really produced);
 * - ipset.union against fromRanges of all ranges (the sort it replaced).
 */
import { describe, expect, it } from "vitest";
import { diffNetwork, emptyModel, type NetworkModel } from "../../core/netdiff/index.ts";
import { setClassRowLimit, setPlainClassMode } from "../../core/netdiff/diff.ts";
import { canonicalSpec, evaluateReachability, policySchema, type Policy, type PolicyNode, type ReachabilityResult } from "../../core/policy/index.ts";
import { compilePolicy, type CompiledRule } from "../../core/policy/compile.ts";
import { ALL, THE_INTERNET, V4_BASE, contains, coversRange, fromRanges, intersect, overlapsRange, parsePrefix, toStrings, union, type IPSet } from "../../core/policy/ipset.ts";
import { Resolver } from "../../core/policy/resolve.ts";
import { prng } from "../policy/corpus/generate.ts";

const USERS = ["alice", "bob", "carol", "dave"];
const TAGS = ["tag:web", "tag:db", "tag:router", "tag:exit"];

/** A fleet of n nodes: users and tags, a few shared, v4-only or v6-only addresses, routers and exit nodes. */
function randomNodes(rnd: () => number, n: number, prefix = "n"): PolicyNode[] {
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  return Array.from({ length: n }, (_, i) => {
    const tagged = rnd() < 0.4;
    const tags = tagged ? [...new Set([pick(TAGS), ...(rnd() < 0.2 ? [pick(TAGS)] : [])])] : [];
    // Now and then two nodes share an address (the second takes an earlier node's).
    const host = rnd() < 0.05 && i > 0 ? 1 + Math.floor(rnd() * i) : i + 1;
    // A few v4 addresses in the range `*` leaves out (100.115.92.0/23), which a router may route: a `*`
    // source then holds such a node through the route only.
    const v4 = rnd() < 0.08 ? `100.115.92.${host & 255}` : `100.64.${host >> 8}.${host & 255}`;
    const v6 = `fd7a:115c:a1e0::${host.toString(16)}`;
    const x = rnd();
    const ips = x < 0.07 ? [v6] : x < 0.22 ? [v4] : [v4, v6];
    // Routes: a /24, the range `*` leaves out, an IPv6 /64, and 10.0.0.0/8 over 10.1.0.0/16 (routers overlap).
    const ROUTES = ["100.115.92.0/25", "192.168.0.0/24", "192.168.1.0/24", "192.168.3.0/24", "fd00:1::/64", "10.0.0.0/8", "10.1.0.0/16"];
    const routes = tags.includes("tag:router") || (tagged && rnd() < 0.15) ? [pick(ROUTES), ...(rnd() < 0.2 ? [pick(ROUTES)] : [])] : [];
    // An exit node approved for both families, or for 0.0.0.0/0 only.
    const exit = tags.includes("tag:exit") && rnd() < 0.7 ? (rnd() < 0.3 ? ["0.0.0.0/0"] : ["0.0.0.0/0", "::/0"]) : [];
    // Untagged nodes usually have a user; one without is possible.
    const user = tagged ? undefined : rnd() < 0.92 ? pick(USERS) : undefined;
    return { name: `${prefix}${i}`, user, tags, ips, approvedRoutes: [...new Set(routes), ...exit] };
  });
}

/** acls and grants over users, groups, tags, autogroups, CIDRs that cut across nodes, a host, `*`, via routers. */
function randomPolicy(rnd: () => number, count: number): Policy {
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  if (rnd() < 0.05) return policySchema.parse({}); // no acls, no grants: everything allowed
  const groups = { "group:ops": ["alice@", "bob@"], "group:dev": ["carol@"], "group:all": USERS.map((u) => `${u}@`) };
  const srcs = [...USERS.map((u) => `${u}@`), ...Object.keys(groups), ...TAGS, "autogroup:member", "autogroup:tagged", "autogroup:danger-all", "*", "100.64.0.0/28", "100.64.0.16/29", "100.64.0.5", "fd7a:115c:a1e0::/124", "nas", "192.168.1.0/24"];
  const dsts = [...srcs.filter((s) => s !== "*" && s !== "autogroup:danger-all"), "*", "autogroup:self", "autogroup:internet", "192.168.0.0/23", "192.168.2.128/25", "10.1.2.0/24", "10.0.0.0/8", "fd00:1::/80"];
  const ports = ["*", "22", "80,443", "8000-8100", "53", "443"];
  const acls = Array.from({ length: count }, () => {
    const dst = Array.from({ length: 1 + Math.floor(rnd() * 2) }, () => `${pick(dsts)}:${pick(ports)}`);
    // autogroup:self takes users, groups, autogroup:member or * as sources.
    const src = dst.some((d) => d.startsWith("autogroup:self")) ? [pick(["autogroup:member", "*", "alice@", "group:ops", "bob@"])] : Array.from({ length: 1 + Math.floor(rnd() * 2) }, () => pick(srcs));
    return { action: "accept" as const, src, dst, ...(rnd() < 0.15 ? { proto: pick(["tcp", "udp"]) } : {}) };
  });
  const grants = Array.from({ length: Math.floor(rnd() * 3) }, () => ({
    src: [pick(srcs.filter((s) => !s.startsWith("autogroup:self")))],
    dst: [pick(["192.168.1.0/24", "192.168.0.0/16", "autogroup:internet", "tag:web", "10.1.0.0/16", "fd00:1::/64"])],
    ip: [pick(["tcp:443", "*", "udp:53"])],
    ...(rnd() < 0.7 ? { via: [pick(["tag:router", "tag:exit"])] } : {}),
  }));
  // Self grants with several sources (users, groups, autogroup:member), now and then.
  const selfSrcs = ["alice@", "bob@", "carol@", "group:ops", "group:dev", "autogroup:member"];
  if (rnd() < 0.4) grants.push({ src: [...new Set([pick(selfSrcs), pick(selfSrcs), pick(selfSrcs)])], dst: ["autogroup:self"], ip: [pick(["tcp:22", "*", "udp:53"])] });
  return policySchema.parse({ groups, hosts: { nas: "100.64.0.7/32" }, tagOwners: Object.fromEntries(TAGS.map((t) => [t, ["alice@"]])), acls, grants });
}

/** Access worked out pair by pair from the compiled rules: no classes, no caches. */
function referenceAccess(nodes: PolicyNode[], policy: Policy, r: ReachabilityResult) {
  const resolver = new Resolver(policy, nodes, USERS);
  const compiled = compilePolicy(policy, resolver);
  const rules: CompiledRule[] = compiled.allowAll
    ? [{ id: 0, origin: { path: "", text: "" }, category: "regular", src: ALL, dst: ALL, proto: "", protos: null, ports: [{ first: 0, last: 65535 }] }]
    : compiled.rules;
  const infos = resolver.nodes;
  const holds = (set: IPSet, i: number) => infos[i].addrs.some((a) => contains(set, a));
  const byName = new Map(infos.map((n) => [n.node.name, n]));
  return (s: number, t: number): { spec: string; rules: number[] } | null => {
    const target = r.targets[t];
    const entries: { rule: CompiledRule; part?: string }[] = [];
    const sources = rules.filter((rule) => rule.category !== "self" && holds(rule.src, s));
    if (target.kind === "node") {
      for (const rule of sources) if (rule.category === "regular" && holds(rule.dst, t)) entries.push({ rule });
      const [a, b] = [infos[s], infos[t]];
      const sameUser = !a.tagged && !b.tagged && a.node.user !== undefined && a.node.user === b.node.user;
      for (const rule of rules) if (rule.category === "self" && sameUser && rule.srcNodes!.has(s)) entries.push({ rule });
    } else {
      const router = byName.get(target.node)!;
      for (const rule of sources) {
        if (rule.category === "via" && !rule.via!.some((v) => router.node.tags.includes(v))) continue;
        if (target.kind === "route") {
          const p = parsePrefix(target.cidr!)!;
          if (!overlapsRange(rule.dst, p.lo, p.hi)) continue;
          entries.push({ rule, part: coversRange(rule.dst, p.lo, p.hi) ? undefined : toStrings(intersect(rule.dst, [[p.lo, p.hi]])).join(",") });
        } else if (rule.category === "via" ? rule.viaInternet === true : intersect(rule.dst, THE_INTERNET).length > 0) entries.push({ rule });
      }
    }
    return entries.length ? { spec: canonicalSpec(entries), rules: [...new Set(entries.map((e) => e.rule.id))] } : null;
  };
}

const model = (reach: ReachabilityResult): NetworkModel => ({ stack: "t", hosts: {}, dns: [], versions: {}, policyHuJson: "", reach });

/** The diff as it was before classes: every (source, target) pair of head, then base's pairs gone from head. */
function pairwiseReach(base: NetworkModel, head: NetworkModel, max: number) {
  const B = base.reach;
  const H = head.reach;
  const bSrc = new Map(B.nodes.map((n, i) => [n, i]));
  const bDst = new Map(B.targets.map((t, i) => [t.id, i]));
  const hSrc = new Map(H.nodes.map((n, i) => [n, i]));
  const hDst = new Map(H.targets.map((t, i) => [t.id, i]));
  const why = (r: ReachabilityResult, a: { rules: number[] }) => a.rules.map((id) => `${r.rules[id].path}: ${r.rules[id].text}`);
  const gained: unknown[] = [];
  const lost: unknown[] = [];
  const changed: unknown[] = [];
  const total = { gained: 0, lost: 0, changed: 0 };
  for (let s = 0; s < H.nodes.length; s++) {
    const bs = bSrc.get(H.nodes[s]) ?? -1;
    for (let t = 0; t < H.targets.length; t++) {
      if (t === s) continue;
      const target = H.targets[t];
      const bt = bDst.get(target.id) ?? -1;
      const a = H.access(s, t);
      const b = bs >= 0 && bt >= 0 ? B.access(bs, bt) : null;
      const after = a?.spec ?? "";
      const before = b?.spec ?? "";
      if (after === before) continue;
      if (!before) {
        if (total.gained++ < max) gained.push({ src: H.nodes[s], dst: target.id, kind: target.kind, before, after, why: why(H, a!) });
      } else if (!after) {
        if (total.lost++ < max) lost.push({ src: H.nodes[s], dst: target.id, kind: target.kind, before, after, why: why(B, b!) });
      } else if (total.changed++ < max) {
        changed.push({ src: H.nodes[s], dst: target.id, kind: target.kind, before, after, why: why(H, a!) });
      }
    }
  }
  for (let s = 0; s < B.nodes.length; s++) {
    const hs = hSrc.get(B.nodes[s]);
    for (let t = 0; t < B.targets.length; t++) {
      const target = B.targets[t];
      if (t === s) continue;
      if (hs !== undefined && hDst.has(target.id)) continue;
      const b = B.access(s, t);
      if (!b) continue;
      if (total.lost++ < max) lost.push({ src: B.nodes[s], dst: target.id, kind: target.kind, before: b.spec, after: "", why: why(B, b) });
    }
  }
  return { gained, lost, changed, total, truncated: total.gained > max || total.lost > max || total.changed > max };
}

/** The policy without its autogroup:self rules (acls and grants). */
const withoutSelf = (p: Policy): Policy => ({
  ...p,
  ...(p.acls ? { acls: p.acls.filter((a) => !a.dst.some((d) => d.startsWith("autogroup:self"))) } : {}),
  ...(p.grants ? { grants: p.grants.filter((g) => !g.dst.includes("autogroup:self")) } : {}),
});

/** What revise() did, over all cases (each must happen for the cases to cover it). */
const revised = { renamed: 0, reordered: 0, duplicated: 0 };

/**
 * Head's nodes from base's: some removed, some added, some with another user, tags or routes;
 * now and then some renamed (same addresses, another name), the order shuffled, or a name given
 * to two nodes (a new one taking a kept one's name).
 */
function revise(rnd: () => number, nodes: PolicyNode[]): PolicyNode[] {
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  let kept = nodes.filter(() => rnd() > 0.12).map((n) => {
    const x = rnd();
    if (x < 0.06) return { ...n, user: n.tags.length ? n.user : pick(USERS) };
    if (x < 0.1) return { ...n, tags: [pick(TAGS)], user: undefined };
    if (x < 0.13) return { ...n, approvedRoutes: [] };
    if (x < 0.16) return (revised.renamed++, { ...n, name: `${n.name}-renamed` });
    return n;
  });
  if (rnd() < 0.5) {
    revised.reordered++;
    kept = kept.map((n) => ({ n, k: rnd() })).sort((a, b) => a.k - b.k).map((x) => x.n);
  }
  const added = randomNodes(rnd, Math.floor(rnd() * 5), "new").map((n, i) => ({ ...n, ips: [`100.64.3.${i + 1}`] }));
  if (added.length && kept.length && rnd() < 0.4) {
    revised.duplicated++;
    added[0] = { ...added[0], name: pick(kept).name };
  }
  return [...kept, ...added];
}

/**
 * The widened cases an evaluated fleet holds (counted over all cases), read from what evaluation
 * made of them: targets, and compiled rules that some pair's access names.
 */
function widened(nodes: PolicyNode[], r: ReachabilityResult) {
  const cidrs = r.targets.filter((t) => t.kind === "route").map((t) => t.cidr);
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const used = new Set<number>();
  for (let s = 0; s < r.nodes.length; s++) for (let t = 0; t < r.targets.length; t++) for (const id of r.access(s, t)?.rules ?? []) used.add(id);
  const usedText = [...used].map((id) => r.rules[id]);
  return {
    v6only: nodes.filter((n) => n.ips.length && n.ips.every((ip) => ip.includes(":"))).length,
    v6route: cidrs.filter((c) => c === "fd00:1::/64").length,
    overlapping: cidrs.includes("10.0.0.0/8") && cidrs.includes("10.1.0.0/16") ? 1 : 0,
    exitV4only: r.targets.filter((t) => t.kind === "internet" && !byName.get(t.node)!.approvedRoutes.includes("::/0")).length,
    dangerAll: usedText.filter((o) => o.text.startsWith("autogroup:danger-all") || o.text.includes(", autogroup:danger-all")).length,
    selfGrantSeveral: usedText.filter((o) => o.path.startsWith("grants") && /^[^>]*, .* -> autogroup:self /.test(o.text)).length,
  };
}
const addUp = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};

describe("reachability per class matches pair by pair", () => {
  it("every access equals the reference's, and pairs of the same classes are alike (seeded)", () => {
    let selfPairs = 0;
    let oddPairs = 0;
    let classes = 0;
    const wide: Record<string, number> = {};
    for (let seed = 1; seed <= 30; seed++) {
      const rnd = prng(seed);
      const nodes = randomNodes(rnd, 20 + Math.floor(rnd() * 30));
      const policy = randomPolicy(rnd, 3 + Math.floor(rnd() * 12));
      const r = evaluateReachability(nodes, policy, { users: USERS });
      addUp(wide, widened(nodes, r));
      const ref = referenceAccess(nodes, policy, r);
      const repS = new Map<number, number>();
      const repT = new Map<number, number>();
      r.nodes.forEach((_, s) => repS.has(r.classes.src[s]) || repS.set(r.classes.src[s], s));
      r.targets.forEach((_, t) => repT.has(r.classes.dst[t]) || repT.set(r.classes.dst[t], t));
      const repP = new Map<number, number>();
      const repPT = new Map<number, number>();
      r.nodes.forEach((_, s) => repP.has(r.plain!.src[s]) || repP.set(r.plain!.src[s], s));
      r.targets.forEach((_, t) => repPT.has(r.plain!.dst[t]) || repPT.set(r.plain!.dst[t], t));
      classes += repS.size;
      for (let s = 0; s < r.nodes.length; s++) {
        for (let t = 0; t < r.targets.length; t++) {
          const got = r.access(s, t);
          const want = ref(s, t);
          expect(got && { spec: got.spec, rules: got.rules }, `seed ${seed}: ${r.nodes[s]} -> ${r.targets[t].id}`).toEqual(want);
          expect(r.access(repS.get(r.classes.src[s])!, repT.get(r.classes.dst[t])!), `seed ${seed}: class of ${r.nodes[s]} -> ${r.targets[t].id}`).toBe(got);
          if (got && t < r.nodes.length && got.rules.some((id) => r.rules[id].text.includes("autogroup:self"))) selfPairs++;
          // Plain classes: access is the plain one but for a source with self rules to a node of its user.
          const p = r.plain!;
          const odd = t < r.nodes.length && p.self[s] === 1 && p.user[s] === p.user[t];
          if (!odd) expect(p.access(s, t), `seed ${seed}: plain ${r.nodes[s]} -> ${r.targets[t].id}`).toBe(got);
          expect(p.access(repP.get(p.src[s])!, repPT.get(p.dst[t])!), `seed ${seed}: plain class of ${r.nodes[s]} -> ${r.targets[t].id}`).toBe(p.access(s, t));
          if (odd && p.access(s, t) !== got) oddPairs++;
        }
      }
    }
    // The cases are not trivial: autogroup:self pairs, and classes that group nodes without being one per node.
    expect(selfPairs).toBeGreaterThan(100);
    expect(oddPairs).toBeGreaterThan(100);
    expect(classes).toBeGreaterThan(60);
    expect(classes).toBeLessThan(30 * 35);
    for (const [k, v] of Object.entries(wide)) expect(v, `widened case ${k} produced`).toBeGreaterThan(0);
  });
});

describe("plan's diff per class matches the pairwise diff", () => {
  const wide: Record<string, number> = { selfDropped: 0 };
  const cases = Array.from({ length: 40 }, (_, k) => {
    const rnd = prng(1000 + k);
    const nodes = randomNodes(rnd, 15 + Math.floor(rnd() * 30));
    const basePolicy = randomPolicy(rnd, 3 + Math.floor(rnd() * 10));
    // Head: another revision of the rules (some kept, some new), on revised nodes half of the time.
    const fresh = randomPolicy(rnd, 2 + Math.floor(rnd() * 4));
    // Now and then head drops every autogroup:self rule (a pair's base access is a self one, head's the plain one).
    const x = rnd();
    const headPolicy = x < 0.2 ? basePolicy : x < 0.35 ? withoutSelf(basePolicy) : { ...basePolicy, acls: [...(basePolicy.acls ?? []).filter(() => rnd() < 0.7), ...(fresh.acls ?? [])] };
    if (x >= 0.2 && x < 0.35 && JSON.stringify(basePolicy).includes("autogroup:self")) wide.selfDropped++;
    const headNodes = rnd() < 0.5 ? revise(rnd, nodes) : nodes;
    const base = model(evaluateReachability(nodes, basePolicy, { users: USERS }));
    const head = model(evaluateReachability(headNodes, headPolicy, { users: USERS }));
    addUp(wide, widened(nodes, base.reach));
    addUp(wide, widened(headNodes, head.reach));
    return { k, base, head };
  });

  // Each comparison runs with class rows kept (these fleets are far under the 64 M limit) and with
  // none kept (limit 0: the path of fleets over the limit, rows worked out again when asked), by
  // reachability's classes and by its plain ones (without the user, same-user pairs one by one).
  const withRowLimit = <T>(limit: number | undefined, mode: "always" | "never", f: () => T): T => {
    const was = setClassRowLimit(limit ?? 64 << 20);
    const wasMode = setPlainClassMode(mode);
    try {
      return f();
    } finally {
      setClassRowLimit(was);
      setPlainClassMode(wasMode);
    }
  };
  const LIMITS = [
    { name: "rows kept", limit: undefined, mode: "never" as const },
    { name: "no row kept", limit: 0, mode: "never" as const },
    { name: "plain classes, rows kept", limit: undefined, mode: "always" as const },
    { name: "plain classes, no row kept", limit: 0, mode: "always" as const },
  ];

  it("the fleets hold every widened case and revision kind", () => {
    for (const [k, v] of Object.entries({ ...wide, ...revised })) expect(v, `widened case ${k} produced`).toBeGreaterThan(0);
    // Names gone from head with their nodes' addresses kept (renamed), and a name held twice.
    expect(cases.some(({ head }) => new Set(head.reach.nodes).size < head.reach.nodes.length)).toBe(true);
  });

  for (const { name, limit, mode } of LIMITS) {
    it(`gives the same totals and the same listed pairs, in order, with and without truncation (seeded; ${name})`, () => {
      const seen = { gained: 0, lost: 0, changed: 0, truncated: 0 };
      for (const { k, base, head } of cases) {
        for (const max of [0, 1, 7, 5000]) {
          const want = pairwiseReach(base, head, max);
          expect(withRowLimit(limit, mode, () => diffNetwork(base, head, { maxPairs: max }).reach), `case ${k}, maxPairs ${max}`).toEqual(want);
          if (max === 7 && want.truncated) seen.truncated++;
          if (max === 5000) for (const x of ["gained", "lost", "changed"] as const) seen[x] += want.total[x];
        }
      }
      expect(seen.gained).toBeGreaterThan(500);
      expect(seen.lost).toBeGreaterThan(500);
      expect(seen.changed).toBeGreaterThan(100);
      expect(seen.truncated).toBeGreaterThan(10);
    });

    it(`against and from an empty fleet (everything gained, everything lost; ${name})`, () => {
      for (const { k, base } of cases.slice(0, 8)) {
        const empty = model(emptyModel("t").reach);
        withRowLimit(limit, mode, () => {
          expect(diffNetwork(empty, base, { maxPairs: 50 }).reach, `case ${k}`).toEqual(pairwiseReach(empty, base, 50));
          expect(diffNetwork(base, empty, { maxPairs: 50 }).reach, `case ${k}`).toEqual(pairwiseReach(base, empty, 50));
        });
      }
    });
  }

  it("fails when two target classes are merged that should not be (the comparison can tell)", () => {
    // Head's classes made coarser: each node target takes the class of the first node target.
    // The diff then reads one target for all, and must disagree with the pairwise diff somewhere.
    let differ = 0;
    const wasMode = setPlainClassMode("never");
    for (const { base, head } of cases) {
      const dst = Int32Array.from(head.reach.classes.dst, (c, t) => (t < head.reach.nodes.length ? head.reach.classes.dst[0] : c));
      const wrong = model({ ...head.reach, classes: { src: head.reach.classes.src, dst } });
      let got = "";
      try {
        got = JSON.stringify(diffNetwork(base, wrong, { maxPairs: 5000 }).reach);
      } catch {
        got = "threw"; // a listed pair the block called a change that is none
      }
      if (got !== JSON.stringify(pairwiseReach(base, head, 5000))) differ++;
    }
    setPlainClassMode(wasMode);
    expect(differ).toBeGreaterThanOrEqual(15);
  });
});

describe("ipset.union merges sorted sets", () => {
  it("equals fromRanges of all the ranges, across the family boundary too (seeded)", () => {
    const rnd = prng(7);
    // Small numbers near 0, near the v4 base (::ffff..ff and 0.0.0.0 are neighbours on the line only) and above.
    const points = [0n, 1n, 2n, 5n, 9n, V4_BASE - 3n, V4_BASE - 1n, V4_BASE, V4_BASE + 1n, V4_BASE + 4n, V4_BASE + 10n];
    const randomSet = (): IPSet => {
      const ranges: [bigint, bigint][] = [];
      for (let i = 0; i < Math.floor(rnd() * 5); i++) {
        const a = points[Math.floor(rnd() * points.length)];
        const len = BigInt(Math.floor(rnd() * 4));
        // Ranges stay inside one family, as parsed prefixes do.
        const hi = a < V4_BASE && a + len >= V4_BASE ? V4_BASE - 1n : a + len;
        ranges.push([a, hi]);
      }
      return fromRanges(ranges);
    };
    let merged = 0;
    for (let k = 0; k < 2000; k++) {
      const sets = Array.from({ length: 1 + Math.floor(rnd() * 4) }, randomSet);
      const got = union(...sets);
      expect(got, JSON.stringify(sets, (_, v) => (typeof v === "bigint" ? String(v) : v))).toEqual(fromRanges(sets.flat()));
      if (sets.filter((s) => s.length).length > 1 && got.length < sets.reduce((n, s) => n + s.length, 0)) merged++;
    }
    expect(merged).toBeGreaterThan(200);
    // The inputs are left as they were (merged ranges are new).
    const a: IPSet = [[1n, 2n]];
    const b: IPSet = [[3n, 4n]];
    expect(union(a, b)).toEqual([[1n, 4n]]);
    expect(a).toEqual([[1n, 2n]]);
  });
});
