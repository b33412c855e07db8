/**
 * Who can reach what: every (source node, destination) pair with the
 * protocols/ports allowed and the rules that allow them. Destinations are
 * nodes, approved subnet routes (per router) and the internet through each
 * exit node.
 *
 * Semantics follow headscale 0.29 per-node filters (compiled.go
 * filterRulesForNode): global rules, plus autogroup:self (a user's untagged
 * devices reach each other) and via grants (only on routers with a via tag,
 * only for routes overlapping the grant's destinations). A node is a source
 * of a rule when one of its addresses is in the rule's sources, and a
 * destination when one of its addresses is in the rule's destinations; a
 * route is reachable when the rule's destinations overlap it (a narrower
 * destination is reported as such).
 *
 * Fast for big fleets: nodes with the same rule membership form a class and
 * each (source class, destination class) is computed once.
 */
import { formatPorts, type PortRange } from "./alias.ts";
import { compilePolicy, type Compiled, type CompiledRule, type RuleOrigin } from "./compile.ts";
import { ALL, THE_INTERNET, coversRange, fromPrefixStrings, intersect, OverlapIndex, overlapsRange, parsePrefix, spansOf, toStrings, type IPSet } from "./ipset.ts";
import { Resolver, type NodeInfo, type PolicyNode } from "./resolve.ts";
import type { Policy } from "./schema.ts";

export interface ReachTarget {
  /** `nas`, `192.168.8.0/24 via router`, `internet via exit1`. */
  id: string;
  kind: "node" | "route" | "internet";
  /** The node itself, or the router / exit node. */
  node: string;
  cidr?: string;
}

export interface PairAccess {
  /** Canonical text of what is allowed: `tcp:22,443 udp:53`, `any:*`, `tcp:80 to 192.168.8.10`. */
  spec: string;
  /** Ids of the rules that allow it (see `rules`). */
  rules: number[];
}

export interface ReachPair {
  src: string;
  dst: string;
  kind: ReachTarget["kind"];
  spec: string;
  why: string[];
}

export interface ReachabilityResult {
  allowAll: boolean;
  nodes: string[];
  targets: ReachTarget[];
  rules: RuleOrigin[];
  compiled: Compiled;
  /** Access from node `src` (index into nodes) to `targets[dst]`, or null. */
  access(src: number, dst: number): PairAccess | null;
  /**
   * Classes of sources (per node) and of targets: access(s, t) depends only on
   * (classes.src[s], classes.dst[t]), so any source and target of the same
   * classes stand for every such pair (plan's diff compares classes, not pairs).
   */
  classes: { src: Int32Array; dst: Int32Array };
  /**
   * Coarser classes, without the user: plain.access(s, t) depends only on (plain.src[s], plain.dst[t]),
   * and access(s, t) equals it except for a node target of the source's own user when self rules
   * apply to the source (self[s] = 1, user[s] === user[t]). A fleet where every node is its own user
   * has a class per node in `classes`, but few plain ones.
   */
  plain?: { src: Int32Array; dst: Int32Array; user: Int32Array; self: Uint8Array; access(src: number, dst: number): PairAccess | null };
  /** Every allowed pair, nodes to themselves left out. */
  pairs(): Generator<ReachPair>;
  /** May `src` reach `dst` (node name or target id) on port/proto? And why. */
  explain(src: string, dst: string, port?: number, proto?: "tcp" | "udp"): { allowed: boolean; why: string };
}

const ALLOW_ALL_ORIGIN: RuleOrigin = { path: "(no acls, no grants)", text: "headscale allows everything" };

export function evaluateReachability(nodes: PolicyNode[], policy: Policy, opts: { users?: string[] } = {}): ReachabilityResult {
  const resolver = new Resolver(policy, nodes, opts.users);
  const compiled = compilePolicy(policy, resolver);
  const rules: CompiledRule[] = compiled.allowAll
    ? [{ id: 0, origin: ALLOW_ALL_ORIGIN, category: "regular", src: ALL, dst: ALL, proto: "", protos: null, ports: [{ first: 0, last: 65535 }] }]
    : compiled.rules;
  const infos = resolver.nodes;
  const N = infos.length;

  const targets: ReachTarget[] = infos.map((n) => ({ id: n.node.name, kind: "node", node: n.node.name }));
  // Stryker disable next-line ArrayDeclaration: a string in the list is filed under the key undefined in extraTarget, which no target's index reads
  const routeTargets: { t: number; node: NodeInfo; set: IPSet; lo: bigint; hi: bigint }[] = [];
  for (const n of infos) {
    for (const r of n.subnetRoutes) {
      const p = parsePrefix(r);
      if (!p) continue;
      routeTargets.push({ t: targets.length, node: n, set: [[p.lo, p.hi]], lo: p.lo, hi: p.hi });
      targets.push({ id: `${r} via ${n.node.name}`, kind: "route", node: n.node.name, cidr: r });
    }
  }
  // Stryker disable next-line ArrayDeclaration: a string in the list is filed under the key undefined in extraTarget, which no target's index reads
  const internetTargets: { t: number; node: NodeInfo }[] = [];
  for (const n of infos) {
    if (!n.exitNode) continue;
    internetTargets.push({ t: targets.length, node: n });
    targets.push({ id: `internet via ${n.node.name}`, kind: "internet", node: n.node.name });
  }

  // Rule membership, as bit rows. Rules name a few address sets (each source part, each destination),
  // so nodes held by the same sets are alike: each node's list of the sets holding it is its
  // signature, and rows are made per signature, not per node (10,000 nodes have a few dozen).
  const plain = rules.filter((r) => r.category !== "self");
  // Stryker disable next-line ArithmeticOperator: `* 32` only gives each row more words, all of them zero
  const W = Math.max(1, Math.ceil(plain.length / 32));
  // Stryker disable next-line ConditionalExpression,EqualityOperator: V8's sort reads a comparator's result only as below zero or not, so the second test's 1 or 0 sort alike; `<=` in the first only reorders one address held by two nodes, which nodesIn collects into a set either way; `>=` there (descending) is killed
  const sorted = infos.flatMap((n) => n.addrs.map((a) => ({ a, i: n.index }))).sort((x, y) => (x.a < y.a ? -1 : x.a > y.a ? 1 : 0));
  const setIds = new Map<IPSet, number>();
  const setMembers: number[][] = [];
  const idOf = (set: IPSet): number => {
    let id = setIds.get(set);
    // Stryker disable next-line ConditionalExpression: `true` files a set again under a new id each time a rule names it; every node in it gets each id, so nodes alike still share a signature
    if (id === undefined) {
      setIds.set(set, (id = setMembers.length));
      setMembers.push(nodesIn(set, sorted));
    }
    return id;
  };
  // A node is in a rule's sources when it is in one of their parts.
  const ruleSrc = plain.map((r) => (r.srcParts ?? [r.src]).map(idOf));
  const ruleDst = plain.map((r) => (r.category === "regular" ? [idOf(r.dst)] : []));
  const holding: number[][] = Array.from({ length: N }, () => []);
  setMembers.forEach((m, id) => {
    for (const i of m) holding[i].push(id);
  });
  const sigIds = new Map<string, number>();
  const sigOf = new Int32Array(N);
  const sigsIn: number[][] = setMembers.map(() => []);
  holding.forEach((ids, i) => {
    const key = ids.join(",");
    let g = sigIds.get(key);
    if (g === undefined) {
      sigIds.set(key, (g = sigIds.size));
      for (const id of ids) sigsIn[id].push(g);
    }
    sigOf[i] = g;
  });
  const srcRows = Array.from({ length: sigIds.size }, () => new Uint32Array(W));
  const dstRows = Array.from({ length: sigIds.size }, () => new Uint32Array(W));
  plain.forEach((r, k) => {
    const word = k >>> 5;
    const bit = 1 << (k & 31);
    for (const id of ruleSrc[k]) for (const g of sigsIn[id]) srcRows[g][word] |= bit;
    for (const id of ruleDst[k]) for (const g of sigsIn[id]) dstRows[g][word] |= bit;
  });

  // Nodes with the same rows form a class, numbered in node order.
  const classOf = (rows: Uint32Array[]) => {
    const ids = new Map<string, number>();
    const cls = new Int32Array(N);
    const reps: Uint32Array[] = [];
    const bySig = new Int32Array(rows.length).fill(-1);
    // Stryker disable next-line EqualityOperator: one more turn reads sigOf[N] (undefined), whose bySig entry is not below 0, and writes cls[N], outside the typed array
    for (let i = 0; i < N; i++) {
      const g = sigOf[i];
      // Stryker disable next-line ConditionalExpression,EqualityOperator: looking a signature's class up again by its rows finds the id it already has
      if (bySig[g] < 0) {
        const key = rows[g].join(",");
        let id = ids.get(key);
        if (id === undefined) {
          id = reps.length;
          ids.set(key, id);
          reps.push(rows[g]);
        }
        bySig[g] = id;
      }
      cls[i] = bySig[g];
    }
    return { cls, reps };
  };
  const S = classOf(srcRows);
  const D = classOf(dstRows);

  const specCache = new Map<string, PairAccess | null>();
  const build = (entries: { rule: CompiledRule; part?: string }[]): PairAccess | null => {
    if (entries.length === 0) return null;
    const key = entries.map((e) => `${e.rule.id}${e.part ? `@${e.part}` : ""}`).join(" ");
    const hit = specCache.get(key);
    // Stryker disable next-line ConditionalExpression: `false` builds the same access again instead of taking it from the cache
    if (hit !== undefined) return hit;
    const acc = { spec: canonicalSpec(entries), rules: [...new Set(entries.map((e) => e.rule.id))] };
    specCache.set(key, acc);
    return acc;
  };

  // Stryker disable next-line ArrayDeclaration: an empty array grows as it is written; unwritten slots read undefined either way
  const classMatrix: (PairAccess | null | undefined)[] = new Array(S.reps.length * D.reps.length);
  const classAccess = (cs: number, cd: number): PairAccess | null => {
    // Stryker disable next-line ArithmeticOperator: cs * n - cd is as unique a key as cs * n + cd for 0 <= cd < n; `cs / n` is killed
    const k = cs * D.reps.length + cd;
    const hit = classMatrix[k];
    // Stryker disable next-line ConditionalExpression: `false` works out the same class pair again instead of taking it from the matrix
    if (hit !== undefined) return hit;
    const a = S.reps[cs];
    const b = D.reps[cd];
    const entries: { rule: CompiledRule }[] = [];
    // Stryker disable next-line EqualityOperator: a[W] & b[W] is undefined & undefined, 0: no rule
    for (let w = 0; w < W; w++) {
      let x = a[w] & b[w];
      while (x !== 0) {
        const low = x & -x;
        entries.push({ rule: plain[(w << 5) + (31 - Math.clz32(low))] });
        x ^= low;
      }
    }
    const acc = build(entries);
    classMatrix[k] = acc;
    return acc;
  };

  const byId = new Map(rules.map((r) => [r.id, r]));
  // autogroup:self: a user's untagged devices, pairwise. Same-user pairs are the only ones it can
  // touch, and such a pair's access depends only on (source class, destination class, the self rules
  // that apply to the source): worked out once per such triple when first asked, never stored per pair
  // (10,000 nodes of 20 users are 1.25 million pairs).
  const selfRules = rules.filter((r) => r.category === "self");
  const userOf = new Int32Array(N).fill(-1);
  /** The self rules that apply to a source node (index into `applicable`), -1 for none. */
  const aidOf = new Int32Array(N).fill(-1);
  const applicable: CompiledRule[][] = [];
  if (selfRules.length > 0) {
    const byUser = new Map<string, number[]>();
    for (const n of infos) {
      if (n.tagged || n.node.user === undefined) continue;
      const l = byUser.get(n.node.user) ?? [];
      l.push(n.index);
      byUser.set(n.node.user, l);
    }
    // Self rules share their source sets (compilePolicy makes one per distinct sources): which of
    // them hold a node says which rules apply to it.
    const sourceSets = [...new Set(selfRules.map((r) => r.srcNodes!))];
    let u = 0;
    const applicableIds = new Map<string, number>();
    for (const group of byUser.values()) {
      for (const s of group) {
        userOf[s] = u;
        let ak = "";
        for (let k = 0; k < sourceSets.length; k++) if (sourceSets[k].has(s)) ak += `${k},`;
        if (ak === "") continue;
        let aid = applicableIds.get(ak);
        if (aid === undefined) {
          applicableIds.set(ak, (aid = applicable.length));
          applicable.push(selfRules.filter((r) => r.srcNodes!.has(s)));
        }
        aidOf[s] = aid;
      }
      u++;
    }
  }
  const byTriple = new Map<number, PairAccess | null>();
  const selfAccess = (cs: number, cd: number, aid: number): PairAccess | null => {
    const triple = (cs * D.reps.length + cd) * applicable.length + aid;
    let acc = byTriple.get(triple);
    // Stryker disable next-line ConditionalExpression: `true` works out the same triple again instead of taking it from the map
    if (acc === undefined) {
      const base = plainEntries(classAccess(cs, cd));
      acc = build([...base, ...applicable[aid].map((rule) => ({ rule }))]);
      byTriple.set(triple, acc);
    }
    return acc;
  };
  function plainEntries(a: PairAccess | null): { rule: CompiledRule }[] {
    return a ? a.rules.map((id) => ({ rule: byId.get(id)! })) : [];
  }

  // Routes and exit nodes: the rules that reach one (whatever the source) are found once per target,
  // then each source class keeps those it is a source of.
  const extraTarget = new Map<number, { node: NodeInfo; route?: (typeof routeTargets)[number] }>();
  for (const r of routeTargets) extraTarget.set(r.t, { node: r.node, route: r });
  for (const r of internetTargets) extraTarget.set(r.t, { node: r.node });
  const extraRules = new Map<number, { idx: number; rule: CompiledRule; part?: string }[]>();
  // Made on the first route: the rules whose destinations overlap one, found by an index (not every rule per route).
  let byDst: OverlapIndex | undefined;
  // Per rule, whether it reaches the internet (for exit nodes): the same for every exit node.
  let toInternet: boolean[] | undefined;
  const rulesReaching = (t: number) => {
    let list = extraRules.get(t);
    // Stryker disable next-line ConditionalExpression: `false` lists the same rules for the target again
    if (list) return list;
    list = [];
    const { node: router, route } = extraTarget.get(t)!;
    const through = (rule: CompiledRule) => rule.category !== "via" || rule.via!.some((v) => router.node.tags.includes(v));
    if (route) {
      // Indexed by each destination's spans (spansOf): a rule's destination may hold thousands of node
      // addresses; the spans find the candidates, overlapsRange the ones that overlap.
      byDst ??= new OverlapIndex(plain.map((rule) => spansOf(rule.dst)));
      for (const idx of byDst.overlapping(route.lo, route.hi)) {
        const rule = plain[idx];
        if (!overlapsRange(rule.dst, route.lo, route.hi) || !through(rule)) continue;
        const part = coversRange(rule.dst, route.lo, route.hi) ? undefined : toStrings(intersect(rule.dst, route.set)).join(",");
        list.push({ idx, rule, part });
      }
    } else {
      toInternet ??= plain.map((rule) => (rule.category === "via" ? rule.viaInternet === true : intersect(rule.dst, THE_INTERNET).length > 0));
      for (let idx = 0; idx < plain.length; idx++) if (toInternet[idx] && through(plain[idx])) list.push({ idx, rule: plain[idx] });
    }
    extraRules.set(t, list);
    return list;
  };
  const extraCache = new Map<number, PairAccess | null>();
  const extraAccess = (cs: number, t: number): PairAccess | null => {
    const k = cs * targets.length + t;
    // Stryker disable next-line ConditionalExpression: `false` works out the same access again instead of taking it from the cache
    if (extraCache.has(k)) return extraCache.get(k)!;
    const row = S.reps[cs];
    const entries: { rule: CompiledRule; part?: string }[] = [];
    for (const { idx, rule, part } of rulesReaching(t)) if ((row[idx >>> 5] & (1 << (idx & 31))) !== 0) entries.push({ rule, part });
    const acc = build(entries);
    extraCache.set(k, acc);
    return acc;
  };

  const access = (s: number, t: number): PairAccess | null => {
    if (t < N) {
      const aid = aidOf[s];
      if (aid >= 0 && userOf[s] === userOf[t]) return selfAccess(S.cls[s], D.cls[t], aid);
      return classAccess(S.cls[s], D.cls[t]);
    }
    return extraAccess(S.cls[s], t);
  };

  // The classes access() reads: a source by its class and, when self rules apply to it, its user and
  // those rules; a node target by its class and its user (when any source has self rules); a route or
  // exit target by itself.
  const anySelf = applicable.length > 0;
  const numbering = () => {
    const ids = new Map<string, number>();
    return (key: string) => {
      let id = ids.get(key);
      if (id === undefined) ids.set(key, (id = ids.size));
      return id;
    };
  };
  const srcId = numbering();
  const srcClasses = Int32Array.from({ length: N }, (_, s) => srcId(aidOf[s] < 0 ? `${S.cls[s]}` : `${S.cls[s]} ${userOf[s]} ${aidOf[s]}`));
  const dstId = numbering();
  // Stryker disable next-line EqualityOperator: with `t > N` target N is keyed by D.cls[N] (undefined), a key no node target has: the same numbering; `t < N` is killed
  const dstClasses = Int32Array.from({ length: targets.length }, (_, t) => dstId(t >= N ? `t${t}` : anySelf ? `${D.cls[t]} ${userOf[t]}` : `${D.cls[t]}`));

  const origins = rules.map((r) => r.origin);
  const why = (a: PairAccess) => a.rules.map((id) => `${origins[id].path}: ${origins[id].text}`);

  return {
    allowAll: compiled.allowAll,
    nodes: infos.map((n) => n.node.name),
    targets,
    rules: origins,
    compiled,
    access,
    classes: { src: srcClasses, dst: dstClasses },
    plain: {
      src: S.cls,
      dst: Int32Array.from({ length: targets.length }, (_, t) => (t < N ? D.cls[t] : D.reps.length + t - N)),
      user: userOf,
      self: Uint8Array.from(aidOf, (a) => (a >= 0 ? 1 : 0)),
      access: (s, t) => (t < N ? classAccess(S.cls[s], D.cls[t]) : extraAccess(S.cls[s], t)),
    },
    *pairs() {
      for (let s = 0; s < N; s++) {
        for (let t = 0; t < targets.length; t++) {
          if (t === s) continue;
          const a = access(s, t);
          if (a) yield { src: infos[s].node.name, dst: targets[t].id, kind: targets[t].kind, spec: a.spec, why: why(a) };
        }
      }
    },
    explain(src, dst, port, proto) {
      const s = infos.findIndex((n) => n.node.name === src);
      const t = targets.findIndex((x) => x.id === dst);
      if (s < 0) return { allowed: false, why: `unknown node ${src}` };
      if (t < 0) return { allowed: false, why: `unknown destination ${dst}` };
      const a = access(s, t);
      if (!a) return { allowed: false, why: "no rule matched" };
      if (port === undefined) return { allowed: true, why: why(a).join("; ") };
      const allowing = a.rules.filter((id) => {
        const r = byId.get(id)!;
        const protoOk = !r.protos || r.protos.includes(proto === "udp" ? 17 : 6);
        return protoOk && r.ports.some((p) => p.first <= port && port <= p.last);
      });
      if (allowing.length === 0) return { allowed: false, why: `no rule matched on ${proto ?? "tcp"}:${port} (allowed: ${a.spec})` };
      return { allowed: true, why: allowing.map((id) => `${origins[id].path}: ${origins[id].text}`).join("; ") };
    },
  };
}

/** Indices of nodes with an address in the set; `sorted` is every node address in order. */
function nodesIn(set: IPSet, sorted: { a: bigint; i: number }[]): number[] {
  const out = new Set<number>();
  for (const [lo, hi] of set) {
    let a = 0;
    let b = sorted.length;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (sorted[mid].a < lo) a = mid + 1;
      else b = mid;
    }
    for (let k = a; k < sorted.length && sorted[k].a <= hi; k++) out.add(sorted[k].i);
  }
  return [...out];
}

/** `any:*`, `tcp:22,443 udp:53`, `tcp:80 to 192.168.8.10`: ports merged per protocol. */
export function canonicalSpec(entries: { rule: CompiledRule; part?: string }[]): string {
  const groups = new Map<string, PortRange[]>();
  for (const { rule, part } of entries) {
    const key = `${rule.proto || "any"}${part ? `|${part}` : ""}`;
    const list = groups.get(key);
    if (list) list.push(...rule.ports);
    else groups.set(key, [...rule.ports]);
  }
  const merged = new Map([...groups].map(([k, v]) => [k, mergeRanges(v)]));
  // Ports open to every protocol need not be repeated for one protocol.
  for (const [k, v] of merged) {
    const [proto, part] = k.split("|");
    if (proto === "any") continue;
    const any = merged.get(`any${part ? `|${part}` : ""}`);
    if (!any) continue;
    const rest = v.filter((p) => !any.some((a) => a.first <= p.first && p.last <= a.last));
    if (rest.length === 0) merged.delete(k);
    else merged.set(k, rest);
  }
  return [...merged]
    .sort(([a], [b]) => (a === b ? 0 : a.startsWith("any") && !b.startsWith("any") ? -1 : !a.startsWith("any") && b.startsWith("any") ? 1 : a < b ? -1 : 1))
    .map(([k, v]) => {
      const [proto, part] = k.split("|");
      return `${proto}:${formatPorts(v)}${part ? ` to ${part}` : ""}`;
    })
    .join(" ");
}

export function mergeRanges(ranges: PortRange[]): PortRange[] {
  const s = [...ranges].sort((a, b) => a.first - b.first);
  const out: PortRange[] = [];
  for (const r of s) {
    const last = out[out.length - 1];
    if (last && r.first <= last.last + 1) last.last = Math.max(last.last, r.last);
    else out.push({ ...r });
  }
  return out;
}

export { fromPrefixStrings };
