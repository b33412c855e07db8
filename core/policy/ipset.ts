/**
 * Addresses, prefixes and address sets, the way Go's netip/netipx see them.
 *
 * Both families live in one number line so one sorted range list can hold a
 * mixed set: IPv6 addresses are 0 .. 2^128-1 and IPv4 addresses are shifted
 * above them (2^128 + a). `::/0` therefore never covers an IPv4 address, as in
 * netipx, and ranges never cross families.
 */
import { parseIpv4, parseIpv6 } from "../schema-types.ts";

export const V4_BASE = 1n << 128n;
const V4_MAX = V4_BASE + (1n << 32n) - 1n;

export interface Prefix {
  /** First address (host bits zeroed). */
  lo: bigint;
  /** Last address. */
  hi: bigint;
  bits: number;
  v6: boolean;
}

/** A sorted list of disjoint, non-adjacent inclusive ranges. */
export type IPSet = readonly (readonly [bigint, bigint])[];

export const EMPTY: IPSet = [];

/** Parses one address (no prefix). Returns the position on the shared number line. */
export function parseAddr(s: string): { n: bigint; v6: boolean } | null {
  const v4 = parseIpv4(s);
  if (v4 !== null) return { n: V4_BASE + v4, v6: false };
  const v6 = parseIpv6WithV4Tail(s);
  if (v6 !== null) return { n: v6, v6: true };
  return null;
}

function parseIpv6WithV4Tail(s: string): bigint | null {
  // Stryker disable next-line Regex: without ^ the match still starts at 0, since (.*:) takes everything before the tail
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (m) {
    const tail = parseIpv4(m[2]);
    if (tail === null) return null;
    const head = parseIpv6(`${m[1]}0:0`);
    if (head === null) return null;
    return head | tail;
  }
  return parseIpv6(s);
}

/**
 * Parses `1.2.3.4`, `1.2.3.4/24`, `fd7a::1`, `fd7a::/48` as Go's netip.ParsePrefix
 * does (a bare address is a single-host prefix; host bits are masked off when the
 * set is built, as netipx.IPSetBuilder.AddPrefix does).
 */
export function parsePrefix(s: string): Prefix | null {
  const slash = s.indexOf("/");
  // Stryker disable next-line EqualityOperator: slash 0 leaves an empty address, which parseAddr refuses either way
  const addr = parseAddr(slash < 0 ? s : s.slice(0, slash));
  if (!addr) return null;
  const width = addr.v6 ? 128 : 32;
  let bits = width;
  // Stryker disable next-line EqualityOperator: slash 0 has returned null above (empty address)
  if (slash >= 0) {
    const b = s.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(b)) return null;
    bits = Number(b);
    if (bits > width) return null;
  }
  const size = 1n << BigInt(width - bits);
  const base = addr.v6 ? 0n : V4_BASE;
  const lo = base + (((addr.n - base) / size) * size);
  return { lo, hi: lo + size - 1n, bits, v6: addr.v6 };
}

/** True when the written prefix had host bits set (`10.0.0.1/24`). */
export function hasHostBits(s: string): boolean {
  const p = parsePrefix(s);
  const a = parseAddr(s.split("/")[0]);
  // Stryker disable next-line ConditionalExpression: a parsed prefix has a parsed address, so a is null only when p is
  return p !== null && a !== null && p.lo !== a.n;
}

export function isV4(n: bigint): boolean {
  return n >= V4_BASE;
}

export function formatAddr(n: bigint): string {
  if (n >= V4_BASE) {
    const v = Number(n - V4_BASE);
    return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".");
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((n >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups, leftmost on ties.
  let best = -1;
  let bestLen = 1;
  // Stryker disable next-line EqualityOperator: groups[8] is undefined, not 0, so i = 8 only steps past the end
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    // Stryker disable next-line ConditionalExpression,EqualityOperator: groups[8] is undefined, so the run ends at 8 without the bound
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}

export function formatPrefix(p: Prefix): string {
  const width = p.v6 ? 128 : 32;
  return p.bits === width ? formatAddr(p.lo) : `${formatAddr(p.lo)}/${p.bits}`;
}

export function prefixToSet(p: Prefix): IPSet {
  return [[p.lo, p.hi]];
}

/** Builds a set from ranges in any order, merging overlaps and neighbours. */
export function fromRanges(ranges: Iterable<readonly [bigint, bigint]>): IPSet {
  // Stryker disable next-line EqualityOperator,ConditionalExpression: V8's sort only asks whether the result is negative, and equal starts merge in either order
  const list = [...ranges].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (const [lo, hi] of list) {
    const last = out[out.length - 1];
    // Never merge across the family boundary: ::ffff..ff and 0.0.0.0 are neighbours on the line only.
    if (last && lo <= last[1] + 1n && !(last[1] === V4_BASE - 1n && lo === V4_BASE)) {
      // Stryker disable next-line EqualityOperator: hi equal to last[1] assigns the same value
      if (hi > last[1]) last[1] = hi;
    } else out.push([lo, hi]);
  }
  return out;
}

export function fromPrefixStrings(list: Iterable<string>): IPSet {
  const ranges: [bigint, bigint][] = [];
  for (const s of list) {
    const p = parsePrefix(s);
    if (p) ranges.push([p.lo, p.hi]);
  }
  return fromRanges(ranges);
}

export function union(...sets: IPSet[]): IPSet {
  const nonEmpty = sets.filter((s) => s.length > 0);
  // Stryker disable next-line ConditionalExpression: without it, no sets reach fromRanges([]), an equal empty set
  if (nonEmpty.length === 0) return EMPTY;
  if (nonEmpty.length === 1) return nonEmpty[0];
  // Each set is sorted already: merged in pairs, halving the list (fromRanges sorts everything again,
  // which was most of compilePolicy at 10,000 hosts). Same result as fromRanges(nonEmpty.flat()).
  let list = nonEmpty;
  while (list.length > 1) {
    const next: IPSet[] = [];
    for (let i = 0; i < list.length; i += 2) next.push(i + 1 < list.length ? merge2(list[i], list[i + 1]) : list[i]);
    list = next;
  }
  return list[0];
}

/**
 * fromRanges of two sets, in one pass over both. A range that merges with none is the input's own
 * (sets are never changed in place), so only merged ranges are new.
 */
function merge2(a: IPSet, b: IPSet): IPSet {
  const out: (readonly [bigint, bigint])[] = [];
  let i = 0;
  let j = 0;
  let lastHi = 0n;
  while (i < a.length || j < b.length) {
    const r = j >= b.length || (i < a.length && a[i][0] <= b[j][0]) ? a[i++] : b[j++];
    const lo = r[0];
    // Never merge across the family boundary: ::ffff..ff and 0.0.0.0 are neighbours on the line only.
    if (out.length > 0 && (lo <= lastHi || (lo - lastHi === 1n && lastHi !== V4_BASE - 1n))) {
      if (r[1] > lastHi) {
        lastHi = r[1];
        out[out.length - 1] = [out[out.length - 1][0], lastHi];
      }
    } else {
      out.push(r);
      lastHi = r[1];
    }
  }
  return out;
}

export function subtract(a: IPSet, b: IPSet): IPSet {
  const out: [bigint, bigint][] = [];
  let j = 0;
  for (const [lo0, hi] of a) {
    let lo = lo0;
    while (j < b.length && b[j][1] < lo) j++;
    let k = j;
    while (k < b.length && b[k][0] <= hi) {
      if (b[k][0] > lo) out.push([lo, b[k][0] - 1n]);
      lo = b[k][1] + 1n;
      // Stryker disable next-line ConditionalExpression,EqualityOperator: without the break the loop ends anyway (the next b range starts above hi) and lo > hi pushes nothing
      if (lo > hi) break;
      k++;
    }
    if (lo <= hi) out.push([lo, hi]);
  }
  return out;
}

export function intersect(a: IPSet, b: IPSet): IPSet {
  const out: [bigint, bigint][] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    // Stryker disable next-line EqualityOperator: on equal bounds both branches give the same value
    const lo = a[i][0] > b[j][0] ? a[i][0] : b[j][0];
    // Stryker disable next-line EqualityOperator: on equal bounds both branches give the same value
    const hi = a[i][1] < b[j][1] ? a[i][1] : b[j][1];
    if (lo <= hi) out.push([lo, hi]);
    // Stryker disable next-line EqualityOperator: on equal ends, stepping either side first meets a range that starts past the common end, then steps the other
    if (a[i][1] < b[j][1]) i++;
    else j++;
  }
  return out;
}

export function contains(set: IPSet, n: bigint): boolean {
  let lo = 0;
  let hi = set.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (set[mid][1] < n) lo = mid + 1;
    else if (set[mid][0] > n) hi = mid - 1;
    else return true;
  }
  return false;
}

/** Some address of [lo, hi] is in the set (netipx IPSet.OverlapsPrefix). */
export function overlapsRange(set: IPSet, lo: bigint, hi: bigint): boolean {
  let a = 0;
  let b = set.length - 1;
  while (a <= b) {
    const mid = (a + b) >> 1;
    if (set[mid][1] < lo) a = mid + 1;
    else if (set[mid][0] > hi) b = mid - 1;
    else return true;
  }
  return false;
}

/**
 * Which of many sets overlap a range, without going through every set: an
 * interval index over all their ranges (sorted by start, with a tree of the
 * largest end below each node). Reachability asks it for each route a subnet
 * router advertises, against every rule's destination: going through 1,000
 * rules for each of thousands of routes was a fifth of `plan` at 10,000 hosts.
 */
export class OverlapIndex {
  private readonly los: bigint[];
  private readonly ids: number[];
  private readonly maxHi: bigint[];
  private readonly leaves: number;

  constructor(sets: readonly IPSet[]) {
    const all: [bigint, bigint, number][] = [];
    sets.forEach((set, id) => {
      for (const [lo, hi] of set) all.push([lo, hi, id]);
    });
    all.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    this.los = all.map((r) => r[0]);
    this.ids = all.map((r) => r[2]);
    let leaves = 1;
    while (leaves < all.length) leaves <<= 1;
    this.leaves = leaves;
    // Addresses are never negative: -1 is below every range, so an empty leaf is never visited.
    const maxHi = new Array<bigint>(2 * leaves).fill(-1n);
    all.forEach((r, i) => (maxHi[leaves + i] = r[1]));
    for (let i = leaves - 1; i >= 1; i--) maxHi[i] = maxHi[2 * i] > maxHi[2 * i + 1] ? maxHi[2 * i] : maxHi[2 * i + 1];
    this.maxHi = maxHi;
  }

  /** The ids (indexes into the sets given) of every set with an address in [lo, hi], ascending. */
  overlapping(lo: bigint, hi: bigint): number[] {
    // Ranges starting at or before hi: a prefix of the sorted ranges; of those, the ones ending at or after lo.
    let a = 0;
    let b = this.los.length;
    while (a < b) {
      const mid = (a + b) >> 1;
      if (this.los[mid] <= hi) a = mid + 1;
      else b = mid;
    }
    const upto = a;
    const found: number[] = [];
    const visit = (node: number, from: number, to: number) => {
      if (from >= upto || this.maxHi[node] < lo) return;
      if (node >= this.leaves) {
        found.push(this.ids[node - this.leaves]);
        return;
      }
      const mid = (from + to) >> 1;
      visit(2 * node, from, mid);
      visit(2 * node + 1, mid, to);
    };
    visit(1, 0, this.leaves);
    found.sort((x, y) => x - y);
    return found.filter((id, i) => i === 0 || found[i - 1] !== id);
  }
}

/**
 * A set's span in each family (its first IPv6 address to its last, the same
 * for IPv4): at most two ranges that hold the set. A node's addresses sit in
 * both families, so one span of a rule's destination would reach from its
 * first IPv6 address to its last IPv4 one, and overlap every route.
 */
export function spansOf(set: IPSet): IPSet {
  const out: (readonly [bigint, bigint])[] = [];
  let i = 0;
  while (i < set.length && set[i][0] < V4_BASE) i++;
  // Ranges [0, i) start in IPv6 (the last may run on into IPv4), [i, end) in IPv4.
  if (i > 0) out.push([set[0][0], set[i - 1][1]]);
  if (i < set.length) out.push([set[i][0], set[set.length - 1][1]]);
  return out;
}

export function overlaps(a: IPSet, b: IPSet): boolean {
  return intersect(a, b).length > 0;
}

/** Every address of [lo, hi] is in the set. */
export function coversRange(set: IPSet, lo: bigint, hi: bigint): boolean {
  for (const [a, b] of set) if (a <= lo && hi <= b) return true;
  return false;
}

export function isEmpty(set: IPSet): boolean {
  return set.length === 0;
}

/** The minimal list of prefixes covering the set (netipx IPSet.Prefixes). */
export function toPrefixes(set: IPSet): Prefix[] {
  const out: Prefix[] = [];
  for (const [lo0, hi] of set) {
    let lo = lo0;
    const v6 = lo < V4_BASE;
    const base = v6 ? 0n : V4_BASE;
    const width = v6 ? 128 : 32;
    while (lo <= hi) {
      // Stryker disable next-line ArithmeticOperator: base is 0 or 2^128, so lo + base and lo - base agree modulo any block size up to 2^33
      const off = lo - base;
      // Largest aligned block starting at lo that fits in [lo, hi].
      let size = 1n;
      let bits = width;
      // Stryker disable next-line EqualityOperator: at bits 0 the block is the whole family and the next size overshoots hi, so the loop breaks anyway
      while (bits > 0) {
        const next = size << 1n;
        if (off % next !== 0n || lo + next - 1n > hi) break;
        size = next;
        bits--;
      }
      out.push({ lo, hi: lo + size - 1n, bits, v6 });
      lo += size;
    }
  }
  return out;
}

/** Prefix strings, single hosts without /32 or /128 (what headscale writes in filter rules). */
export function toStrings(set: IPSet): string[] {
  return toPrefixes(set).map(formatPrefix);
}

/** The whole IPv4 and IPv6 space (`*` in a filter rule's destination). */
export const ALL: IPSet = fromRanges([[0n, V4_BASE - 1n], [V4_BASE, V4_MAX]]);

/** `*` as a source: the tailnet ranges minus the ChromeOS VM range (tsaddr). */
export const TAILNET_WILDCARD: IPSet = subtract(
  fromPrefixStrings(["100.64.0.0/10", "fd7a:115c:a1e0::/48"]),
  fromPrefixStrings(["100.115.92.0/23"]),
);

/** autogroup:internet: public space, as headscale's util.TheInternet builds it. */
export const THE_INTERNET: IPSet = subtract(
  fromPrefixStrings(["2000::/3", "0.0.0.0/0"]),
  fromPrefixStrings([
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
    // Stryker disable next-line StringLiteral: outside 2000::/3, subtracting them changes nothing (kept to match headscale's list)
    "fc00::/7", "fd7a:115c:a1e0::/48", "fe80::/10",
  ]),
);

export const CGNAT = fromPrefixStrings(["100.64.0.0/10"]);
