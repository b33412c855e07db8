/**
 * What a change does to the network: base model vs head model. Reachability
 * is compared pair by pair (source node, destination node/route/exit), by
 * name, so renumbering is not a change; each gained or changed pair names the
 * head rules that allow it, each lost pair the base rules that allowed it.
 */
import type { PairAccess } from "../policy/reachability.ts";
import type { InputPolicy, NetworkModel } from "./model.ts";

export interface ReachChange {
  src: string;
  dst: string;
  kind: "node" | "route" | "internet";
  before: string;
  after: string;
  /** Rules responsible: head's for gained/changed, base's for lost. */
  why: string[];
}

/** A port as the diff lists it: `tcp/22`, `tcp/445 on eth0`, with what opens (or limits) it. */
export interface PortEntry {
  host: string;
  port: string;
  detail: string;
}

/**
 * A host whose firewall starts or stops dropping what no rule accepts
 * (traffic outside the tailnet): the whole input policy, not a port.
 */
export interface PolicyChange {
  host: string;
  /** `absent`: the host is new to the fleet (meshfleet dropped nothing there). */
  before: InputPolicy | "absent";
  after: InputPolicy;
  /** One line saying it, for a person: `nas: input policy becomes drop: ...`. */
  message: string;
  /** After: what stays open (policy drop), every other port being dropped. */
  open: PortEntry[];
  /** Before: what was open (policy drop) and what alone was reachable then. */
  wasOpen: PortEntry[];
  /** After, with policy accept: what is dropped all the same (a port limited to sources, ping off). */
  limited: PortEntry[];
}

export interface NetworkDiff {
  stack: string;
  hosts: { added: string[]; removed: string[]; roles: { host: string; added: string[]; removed: string[] }[]; tags: { host: string; before: string[]; after: string[] }[] };
  routes: { added: { host: string; route: string; approved: boolean }[]; removed: { host: string; route: string }[] };
  exitNodes: { added: string[]; removed: string[] };
  reach: { gained: ReachChange[]; lost: ReachChange[]; changed: ReachChange[]; total: { gained: number; lost: number; changed: number }; truncated: boolean };
  dns: { added: string[]; removed: string[] };
  /** Ports opened and closed on hosts whose input policy is drop before and after. */
  publicPorts: { opened: PortEntry[]; closed: PortEntry[] };
  /**
   * Hosts whose input policy starts or stops dropping (`policies`), and on
   * hosts that drop nothing else, ports limited to some sources (`limited`).
   */
  firewall: { policies: PolicyChange[]; limited: { added: PortEntry[]; removed: PortEntry[] } };
  versions: { key: string; before: string; after: string }[];
  policyChanged: boolean;
  empty: boolean;
}

export interface DiffOptions {
  /** Keep at most this many pairs per list (totals stay exact). */
  maxPairs?: number;
}

export function diffNetwork(base: NetworkModel, head: NetworkModel, opts: DiffOptions = {}): NetworkDiff {
  const max = opts.maxPairs ?? 5000;
  const names = (m: NetworkModel) => new Set(Object.keys(m.hosts));
  const bn = names(base);
  const hn = names(head);
  const added = [...hn].filter((h) => !bn.has(h)).sort();
  const removed = [...bn].filter((h) => !hn.has(h)).sort();
  const both = [...hn].filter((h) => bn.has(h)).sort();

  const roles: NetworkDiff["hosts"]["roles"] = [];
  const tags: NetworkDiff["hosts"]["tags"] = [];
  const routesAdded: NetworkDiff["routes"]["added"] = [];
  const routesRemoved: NetworkDiff["routes"]["removed"] = [];
  const exitAdded: string[] = [];
  const exitRemoved: string[] = [];
  const opened: PortEntry[] = [];
  const closed: PortEntry[] = [];
  const policies: PolicyChange[] = [];
  const limitedAdded: PortEntry[] = [];
  const limitedRemoved: PortEntry[] = [];
  for (const h of [...hn].sort()) {
    const b = base.hosts[h];
    const a = head.hosts[h];
    if (b) {
      const ra = a.roles.filter((r) => !b.roles.includes(r));
      const rr = b.roles.filter((r) => !a.roles.includes(r));
      if (ra.length || rr.length) roles.push({ host: h, added: ra, removed: rr });
      if (a.tags.join() !== b.tags.join()) tags.push({ host: h, before: b.tags, after: a.tags });
    }
    for (const r of a.routes) if (!b?.routes.includes(r)) routesAdded.push({ host: h, route: r, approved: a.approvedRoutes.includes(r) });
    if (a.exitNode && !b?.exitNode) exitAdded.push(h);
    if (!a.exitNode && b?.exitNode) exitRemoved.push(h);
    const before: PolicyChange["before"] = b ? b.inputPolicy : "absent";
    const entries = (r: Record<string, string>) => Object.entries(r).map(([port, detail]) => ({ host: h, port, detail }));
    if ((before === "drop") !== (a.inputPolicy === "drop")) {
      const c = { host: h, before, after: a.inputPolicy, open: a.inputPolicy === "drop" ? entries(a.publicPorts) : [], wasOpen: b && before === "drop" ? entries(b.publicPorts) : [], limited: entries(a.limited) };
      policies.push({ ...c, message: policyMessage(c) });
    } else if (before === "drop") {
      // Drop before and after: a port is opened or closed.
      for (const [p, d] of Object.entries(a.publicPorts)) if (b!.publicPorts[p] === undefined) opened.push({ host: h, port: p, detail: d });
      for (const [p, d] of Object.entries(b!.publicPorts)) if (a.publicPorts[p] === undefined) closed.push({ host: h, port: p, detail: d });
    } else {
      // Nothing dropped before or after but what the host asked for: a port limited to some sources, ping off.
      for (const [p, d] of Object.entries(a.limited)) if (b?.limited[p] !== d) limitedAdded.push({ host: h, port: p, detail: d });
      if (b) for (const [p, d] of Object.entries(b.limited)) if (a.limited[p] !== d) limitedRemoved.push({ host: h, port: p, detail: d });
    }
  }
  for (const h of [...bn].sort()) {
    const b = base.hosts[h];
    const a = head.hosts[h];
    for (const r of b.routes) if (!a?.routes.includes(r)) routesRemoved.push({ host: h, route: r });
    if (!a && b.exitNode) exitRemoved.push(h);
    if (!a) for (const [p, d] of Object.entries(b.publicPorts)) closed.push({ host: h, port: p, detail: d });
  }

  const reach = diffReach(base, head, max);
  const dnsAdded = head.dns.filter((d) => !base.dns.includes(d));
  const dnsRemoved = base.dns.filter((d) => !head.dns.includes(d));
  const versions: NetworkDiff["versions"] = [];
  for (const k of [...new Set([...Object.keys(base.versions), ...Object.keys(head.versions)])].sort()) {
    const before = base.versions[k] ?? "";
    const after = head.versions[k] ?? "";
    if (before !== after) versions.push({ key: k, before, after });
  }
  const policyChanged = base.policyHuJson !== head.policyHuJson;
  const d: NetworkDiff = {
    stack: head.stack,
    hosts: { added, removed, roles, tags },
    routes: { added: routesAdded, removed: routesRemoved },
    exitNodes: { added: exitAdded, removed: exitRemoved },
    reach,
    dns: { added: dnsAdded, removed: dnsRemoved },
    publicPorts: { opened, closed },
    firewall: { policies, limited: { added: limitedAdded, removed: limitedRemoved } },
    versions,
    policyChanged,
    empty: false,
  };
  void both;
  d.empty = !added.length && !removed.length && !roles.length && !tags.length && !routesAdded.length && !routesRemoved.length &&
    !exitAdded.length && !exitRemoved.length && !reach.total.gained && !reach.total.lost && !reach.total.changed &&
    !dnsAdded.length && !dnsRemoved.length && !opened.length && !closed.length && !versions.length && !policyChanged &&
    !policies.length && !limitedAdded.length && !limitedRemoved.length;
  return d;
}

const portList = (xs: PortEntry[]) => xs.map((p) => p.port).join(", ");

/** What a change of input policy does, in one line (`meshfleet plan` and its warnings). */
function policyMessage(c: Omit<PolicyChange, "message">): string {
  if (c.after === "drop") {
    const was = c.before === "absent" ? "the host was not in the fleet, and meshfleet dropped nothing there"
      : c.before === "off" ? "meshfleet's firewall was off (no inet meshfleet table)"
      : "accepted";
    return `${c.host}: input policy becomes drop: everything not listed below is now dropped outside the tailnet (was: ${was}); open: ${portList(c.open) || "nothing"}`;
  }
  const was = `was: drop, except ${portList(c.wasOpen) || "nothing"}`;
  const still = c.limited.length ? `; still dropped: ${c.limited.map((p) => `${p.port} ${p.detail}`).join(", ")}` : "";
  if (c.after === "off") return `${c.host}: meshfleet's firewall goes (firewall.enable false, or no agent): its inbound traffic is no longer dropped by meshfleet (${was})`;
  return `${c.host}: input policy becomes accept: inbound traffic outside the tailnet is no longer dropped (${was})${still}`;
}

/** Kinds of a pair's change, as stored in a class row: 0 none. */
const GAINED = 1;
const LOST = 2;
const CHANGED = 3;

/**
 * Reachability's diff, pair by pair in effect but computed per class.
 * Reachability says which source and target classes its access() reads
 * (ReachabilityResult.classes), so a head node and its base counterpart
 * form a joint source class, a head target and its base counterpart a joint
 * target class, and every pair of a (joint source, joint target) block
 * changes alike: one comparison per block gives the totals (block sizes,
 * less the node-to-itself pairs). The listed pairs are then the first
 * `max` of each kind in (source, target) order, read from the block kinds,
 * each with its own access (what comparing every pair gave; a plan at
 * 10,000 hosts compares about 100 million pairs, but a few thousand blocks).
 * When every node is its own user and self rules apply (Tailscale's default
 * policy), reachability's classes hold the user, so each pair is a block;
 * its plain classes (without the user) are used instead when cheaper, the
 * pairs of a source with self rules and a node of its user compared one by
 * one (pickPlain).
 */
function diffReach(base: NetworkModel, head: NetworkModel, max: number): NetworkDiff["reach"] {
  const B = base.reach;
  const H = head.reach;
  const bSrc = new Map(B.nodes.map((n, i) => [n, i]));
  const bDst = new Map(B.targets.map((t, i) => [t.id, i]));
  const hSrc = new Map(H.nodes.map((n, i) => [n, i]));
  const hDst = new Map(H.targets.map((t, i) => [t.id, i]));
  // One text per distinct access, shared by every pair that has it.
  const whyCache = new Map<object, string[]>();
  const why = (r: typeof B, a: { rules: number[] }) => {
    let w = whyCache.get(a);
    if (!w) {
      w = a.rules.map((id) => `${r.rules[id].path}: ${r.rules[id].text}`);
      whyCache.set(a, w);
    }
    return w;
  };
  const gained: ReachChange[] = [];
  const lost: ReachChange[] = [];
  const changed: ReachChange[] = [];
  const total = { gained: 0, lost: 0, changed: 0 };

  // Head sources and targets, with their base counterparts (-1: none in base).
  const bs = Int32Array.from(H.nodes, (n) => bSrc.get(n) ?? -1);
  const bt = Int32Array.from(H.targets, (t) => bDst.get(t.id) ?? -1);
  const kindOfPair = (a: PairAccess | null, b: PairAccess | null) => {
    if (a === b) return 0;
    const after = a?.spec ?? "";
    const before = b?.spec ?? "";
    return after === before ? 0 : !before ? GAINED : !after ? LOST : CHANGED;
  };
  const kindOf = (s: number, t: number) => kindOfPair(H.access(s, t), bs[s] >= 0 && bt[t] >= 0 ? B.access(bs[s], bt[t]) : null);
  const plain = pickPlain(H, B, bs, bt);
  // Blocks of the joint classes: reachability's classes, or its plain ones (without the user) with
  // the pairs where a revision's access is not its plain one (a source with self rules to a node of
  // its user) compared one by one: `odd(s)` lists them for a source, in target order.
  const js = plain
    ? joint(H.nodes.length, (s) => H.plain!.src[s], (s) => (bs[s] >= 0 ? B.plain!.src[bs[s]] : -1))
    : joint(H.nodes.length, (s) => H.classes.src[s], (s) => (bs[s] >= 0 ? B.classes.src[bs[s]] : -1));
  const jt = plain
    ? joint(H.targets.length, (t) => H.plain!.dst[t], (t) => (bt[t] >= 0 ? B.plain!.dst[bt[t]] : -1))
    : joint(H.targets.length, (t) => H.classes.dst[t], (t) => (bt[t] >= 0 ? B.classes.dst[bt[t]] : -1));
  const rows = plain
    ? classRows(js, jt, (s, t) => kindOfPair(H.plain!.access(s, t), bs[s] >= 0 && bt[t] >= 0 ? B.plain!.access(bs[s], bt[t]) : null))
    : classRows(js, jt, kindOf);
  const odd = plain ? plain.odd : () => NONE;
  // One pass over the sources, in order; a source class's row is worked out at its first source
  // (and kept when the rows fit). Totals: block sizes, less each node's pair with itself (targets
  // start with the nodes, in node order), each odd pair counted by its own kind instead of its
  // block's. Listed: the first `max` pairs of each kind in (source, target) order, which needs no
  // totals: a kind's list is full at `max`.
  const counts = [0, 0, 0, 0];
  const lists = [[], gained, lost, changed];
  let open = max > 0 ? (1 << GAINED) | (1 << LOST) | (1 << CHANGED) : 0;
  for (let s = 0; s < H.nodes.length; s++) {
    const c = js.of[s];
    let row: Int8Array | null = null;
    if (js.rep[c] === s) {
      row = rows.row(c);
      for (let d = 0; d < row.length; d++) counts[row[d]] += js.size[c] * jt.size[d];
      counts[row[jt.of[s]]]--;
    } else counts[rows.kind(c, jt.of[s])]--;
    const ts = odd(s);
    const ks = new Int8Array(ts.length);
    let mask = rows.mask(c);
    for (let i = 0; i < ts.length; i++) {
      ks[i] = kindOf(s, ts[i]);
      counts[row ? row[jt.of[ts[i]]] : rows.kind(c, jt.of[ts[i]])]--;
      counts[ks[i]]++;
      mask |= (1 << ks[i]) & ~1;
    }
    if ((mask & open) === 0) continue;
    row ??= rows.row(c);
    let i = 0;
    for (let t = 0; t < H.targets.length; t++) {
      let k = row[jt.of[t]];
      if (i < ts.length && ts[i] === t) k = ks[i++];
      if (t === s || ((1 << k) & open) === 0) continue;
      const target = H.targets[t];
      const a = H.access(s, t);
      const b = bs[s] >= 0 && bt[t] >= 0 ? B.access(bs[s], bt[t]) : null;
      const [after, before] = [a?.spec ?? "", b?.spec ?? ""];
      lists[k].push({ src: H.nodes[s], dst: target.id, kind: target.kind, before, after, why: k === LOST ? why(B, b!) : why(H, a!) });
      if (lists[k].length >= max) {
        open &= ~(1 << k);
        if ((mask & open) === 0) break;
      }
    }
  }
  total.gained = counts[GAINED];
  total.lost = counts[LOST];
  total.changed = counts[CHANGED];

  // Pairs whose source or destination is gone from head: lost when base allowed them.
  const goneTarget = Uint8Array.from(B.targets, (t) => (hDst.has(t.id) ? 0 : 1));
  const keptSource = Uint8Array.from(B.nodes, (n) => (hSrc.has(n) ? 1 : 0));
  if (B.nodes.some((_, s) => !keptSource[s]) || goneTarget.includes(1)) {
    const bjs = joint(B.nodes.length, (s) => B.classes.src[s], () => 0);
    // Target classes apart for targets gone from head, so a kept source's row counts only those.
    const bjt = joint(B.targets.length, (t) => B.classes.dst[t], (t) => goneTarget[t]);
    const brows = classRows(bjs, bjt, (s, t) => (B.access(s, t) ? LOST : 0));
    // Per base source class: how many of its pairs are lost over all targets and over the gone ones,
    // from its row at its first source (one pass over the sources, as above).
    const lostAll = new Float64Array(bjs.size.length);
    const lostGone = new Float64Array(bjs.size.length);
    let n = 0;
    for (let s = 0; s < B.nodes.length; s++) {
      const c = bjs.of[s];
      let row: Int8Array | null = null;
      if (bjs.rep[c] === s) {
        row = brows.row(c);
        for (let d = 0; d < bjt.size.length; d++) {
          if (row[d] === 0) continue;
          lostAll[c] += bjt.size[d];
          if (goneTarget[bjt.rep[d]]) lostGone[c] += bjt.size[d];
        }
      }
      const self = (!keptSource[s] || goneTarget[s]) && (row ? row[bjt.of[s]] : brows.kind(c, bjt.of[s])) !== 0 ? 1 : 0;
      const rowLost = (keptSource[s] ? lostGone[c] : lostAll[c]) - self;
      n += rowLost;
      if (rowLost === 0 || lost.length >= max) continue;
      row ??= brows.row(c);
      for (let t = 0; t < B.targets.length && lost.length < max; t++) {
        if (t === s || row[bjt.of[t]] === 0 || (keptSource[s] && !goneTarget[t])) continue;
        const target = B.targets[t];
        const b = B.access(s, t)!;
        lost.push({ src: B.nodes[s], dst: target.id, kind: target.kind, before: b.spec, after: "", why: why(B, b) });
      }
    }
    total.lost += n;
  }
  return { gained, lost, changed, total, truncated: total.gained > max || total.lost > max || total.changed > max };
}

const NONE: number[] = [];

/** How diffReach picks its classes: by cost (tests force either). */
let plainMode: "auto" | "always" | "never" = "auto";

/** For tests only: use reachability's plain classes always, never, or when cheaper; returns the mode it replaces. */
export function setPlainClassMode(m: "auto" | "always" | "never"): "auto" | "always" | "never" {
  const was = plainMode;
  plainMode = m;
  return was;
}

/**
 * When both revisions give plain classes and comparing by them costs less: per source, the head
 * targets whose access is not the plain one in head or in base (its self rules and a node of its
 * user), sorted, itself left out; null to compare by reachability's classes.
 */
function pickPlain(H: NetworkModel["reach"], B: NetworkModel["reach"], bs: Int32Array, bt: Int32Array): { odd: (s: number) => number[] } | null {
  if (plainMode === "never" || !H.plain || !B.plain) return null;
  const [hp, bp] = [H.plain, B.plain];
  const N = H.nodes.length;
  // Head node targets by head user, and by the base user of their base counterpart.
  const byUser = (n: number, user: (t: number) => number) => {
    const m = new Map<number, number[]>();
    for (let t = 0; t < n; t++) {
      const u = user(t);
      if (u < 0) continue;
      const l = m.get(u);
      if (l) l.push(t);
      else m.set(u, [t]);
    }
    return m;
  };
  const hUsers = byUser(N, (t) => hp.user[t]);
  const bUsers = byUser(N, (t) => (bt[t] >= 0 && bt[t] < B.nodes.length ? bp.user[bt[t]] : -1));
  const hOdd = (s: number) => (hp.self[s] ? hUsers.get(hp.user[s]) ?? NONE : NONE);
  const bOdd = (s: number) => (bs[s] >= 0 && bp.self[bs[s]] ? bUsers.get(bp.user[bs[s]]) ?? NONE : NONE);
  if (plainMode === "auto") {
    // Cost of reachability's classes: one comparison per block; of the plain ones: per block, plus
    // the odd pairs (a few times a block each).
    const blocks = (src: (s: number) => number, dst: (t: number) => number) => new Set(Array.from({ length: N }, (_, s) => src(s))).size * new Set(Array.from({ length: H.targets.length }, (_, t) => dst(t))).size;
    let odd = 0;
    for (let s = 0; s < N; s++) odd += hOdd(s).length + bOdd(s).length;
    const fine = blocks((s) => H.classes.src[s] * 2 ** 20 + (bs[s] >= 0 ? B.classes.src[bs[s]] : -1), (t) => H.classes.dst[t] * 2 ** 20 + (bt[t] >= 0 ? B.classes.dst[bt[t]] : -1));
    const coarse = blocks((s) => hp.src[s] * 2 ** 20 + (bs[s] >= 0 ? bp.src[bs[s]] : -1), (t) => hp.dst[t] * 2 ** 20 + (bt[t] >= 0 ? bp.dst[bt[t]] : -1));
    if (coarse + 4 * odd >= fine) return null;
  }
  return {
    odd(s: number): number[] {
      const a = hOdd(s);
      const b = bOdd(s);
      if (a.length === 0 && b.length === 0) return NONE;
      if (b.length === 0) return a.filter((t) => t !== s);
      if (a.length === 0) return b.filter((t) => t !== s);
      return [...new Set([...a, ...b])].filter((t) => t !== s).sort((x, y) => x - y);
    },
  };
}

interface Joint {
  /** Joint class of each item. */
  of: Int32Array;
  /** Items per class, and the first item of each. */
  size: number[];
  rep: number[];
}

/** Numbers the distinct (x, y) of items 0..n-1, in order of first use. */
function joint(n: number, x: (i: number) => number, y: (i: number) => number): Joint {
  const ids = new Map<string, number>();
  const of = new Int32Array(n);
  const size: number[] = [];
  const rep: number[] = [];
  for (let i = 0; i < n; i++) {
    const key = `${x(i)} ${y(i)}`;
    let id = ids.get(key);
    if (id === undefined) {
      ids.set(key, (id = size.length));
      size.push(0);
      rep.push(i);
    }
    of[i] = id;
    size[id]++;
  }
  return { of, size, rep };
}

/** Rows are kept while source classes x target classes (bytes) stay under this; tests lower it. */
let rowLimit = 64 << 20;

/** For tests only: the class-row limit (0 keeps no row), returning the one it replaces. */
export function setClassRowLimit(n: number): number {
  const was = rowLimit;
  rowLimit = n;
  return was;
}

/**
 * The kind of change of every (source class, target class) block, from one
 * pair of each (the classes' first items), a row per source class when first
 * asked. Rows are kept while they fit in 64 MB (source classes x target
 * classes bytes), else worked out again when asked: callers ask for a row
 * once per source class where they can, and for one block by kind().
 */
function classRows(src: Joint, dst: Joint, kindOf: (s: number, t: number) => number) {
  const keep = src.size.length * dst.size.length <= rowLimit;
  const kept = new Map<number, Int8Array>();
  const masks = new Int32Array(src.size.length).fill(-1);
  const row = (c: number): Int8Array => {
    const hit = kept.get(c);
    if (hit) return hit;
    const r = new Int8Array(dst.size.length);
    let mask = 0;
    for (let d = 0; d < r.length; d++) {
      r[d] = kindOf(src.rep[c], dst.rep[d]);
      mask |= 1 << r[d];
    }
    masks[c] = mask & ~1;
    if (keep) kept.set(c, r);
    return r;
  };
  return {
    row,
    /** The kind of one block: from its row when kept, else from its pair of first items (no row worked out). */
    kind(c: number, d: number): number {
      const hit = kept.get(c);
      return hit ? hit[d] : kindOf(src.rep[c], dst.rep[d]);
    },
    /** Which kinds the row holds, as bits 1 << kind. */
    mask(c: number): number {
      if (masks[c] < 0) row(c);
      return masks[c];
    },
  };
}
