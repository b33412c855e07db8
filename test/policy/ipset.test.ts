/** Property tests for the address maths, against a brute-force model on small ranges. */
import { describe, expect, it } from "vitest";
import { contains, formatAddr, fromRanges, intersect, parseAddr, parsePrefix, subtract, toPrefixes, toStrings, union, V4_BASE, THE_INTERNET, TAILNET_WILDCARD } from "../../core/policy/ipset.ts";
import { prng } from "./corpus/generate.ts";

const rnd = prng(1234);
const int = (n: number) => Math.floor(rnd() * n);
// Sets inside 10.0.0.0/24 so membership can be checked address by address.
const base = V4_BASE + (10n << 24n);
function randomSet(): { set: ReturnType<typeof fromRanges>; members: Set<number> } {
  const members = new Set<number>();
  const ranges: [bigint, bigint][] = [];
  for (let i = int(5); i >= 0; i--) {
    const a = int(256);
    const b = Math.min(255, a + int(40));
    ranges.push([base + BigInt(a), base + BigInt(b)]);
    for (let x = a; x <= b; x++) members.add(x);
  }
  return { set: fromRanges(ranges), members };
}
const has = (set: ReturnType<typeof fromRanges>, x: number) => contains(set, base + BigInt(x));

describe("IP sets", () => {
  it("union, intersect and subtract agree with set algebra (200 random cases)", () => {
    for (let k = 0; k < 200; k++) {
      const a = randomSet();
      const b = randomSet();
      const u = union(a.set, b.set);
      const i = intersect(a.set, b.set);
      const d = subtract(a.set, b.set);
      // One comparison per case (not one per address): the loop stays fast under mutation testing.
      const got: string[] = [];
      const want: string[] = [];
      for (let x = 0; x < 256; x++) {
        got.push(`${x}:${has(u, x)}${has(i, x)}${has(d, x)}`);
        want.push(`${x}:${a.members.has(x) || b.members.has(x)}${a.members.has(x) && b.members.has(x)}${a.members.has(x) && !b.members.has(x)}`);
      }
      expect(got).toEqual(want);
      // Canonical: each range non-empty, sorted, disjoint, not adjacent.
      for (const set of [u, i, d]) {
        expect(set.every(([lo, hi]) => lo <= hi)).toBe(true);
        for (let j = 1; j < set.length; j++) expect(set[j][0] > set[j - 1][1] + 1n).toBe(true);
      }
    }
  });

  it("toPrefixes covers exactly the set with aligned blocks (200 random cases)", () => {
    for (let k = 0; k < 200; k++) {
      const a = randomSet();
      const prefixes = toPrefixes(a.set);
      const back = fromRanges(prefixes.map((p) => [p.lo, p.hi] as const));
      expect(back).toEqual(a.set);
      for (const p of prefixes) {
        const size = p.hi - p.lo + 1n;
        expect(size).toBe(1n << BigInt(32 - p.bits));
        expect((p.lo - V4_BASE) % size).toBe(0n);
      }
      // Round trip through text, as headscale writes filter rules.
      const reparsed = fromRanges(toStrings(a.set).map((s) => { const p = parsePrefix(s)!; return [p.lo, p.hi] as const; }));
      expect(reparsed).toEqual(a.set);
    }
  });

  it("parses and prints addresses both ways", () => {
    for (let k = 0; k < 200; k++) {
      const v4 = `${int(256)}.${int(256)}.${int(256)}.${int(256)}`;
      expect(formatAddr(parseAddr(v4)!.n)).toBe(v4);
      const groups = Array.from({ length: 8 }, () => (rnd() < 0.4 ? 0 : int(65536)));
      const n = groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
      expect(parseAddr(formatAddr(n))!.n).toBe(n);
    }
    expect(formatAddr(parseAddr("fd7a:115c:a1e0::1")!.n)).toBe("fd7a:115c:a1e0::1");
    expect(parseAddr("::ffff:1.2.3.4")!.v6).toBe(true);
    expect(parseAddr("01.2.3.4")).toBeNull();
  });

  it("keeps the families apart", () => {
    const all6 = fromRanges([[parsePrefix("::/0")!.lo, parsePrefix("::/0")!.hi]]);
    expect(contains(all6, parseAddr("1.2.3.4")!.n)).toBe(false);
    expect(parsePrefix("10.0.0.7/24")!.lo).toBe(parseAddr("10.0.0.0")!.n);
  });

  it("builds the headscale constants", () => {
    expect(toStrings(TAILNET_WILDCARD)).toEqual(["fd7a:115c:a1e0::/48", "100.64.0.0/11", "100.96.0.0/12", "100.112.0.0/15", "100.114.0.0/16", "100.115.0.0/18", "100.115.64.0/20", "100.115.80.0/21", "100.115.88.0/22", "100.115.94.0/23", "100.115.96.0/19", "100.115.128.0/17", "100.116.0.0/14", "100.120.0.0/13"]);
    expect(contains(TAILNET_WILDCARD, parseAddr("100.115.92.5")!.n)).toBe(false);
    expect(contains(TAILNET_WILDCARD, parseAddr("100.64.0.1")!.n)).toBe(true);
    expect(contains(THE_INTERNET, parseAddr("8.8.8.8")!.n)).toBe(true);
    for (const priv of ["10.1.1.1", "192.168.8.1", "172.16.0.1", "100.64.0.1", "169.254.1.1", "fd7a:115c:a1e0::1"]) {
      expect(contains(THE_INTERNET, parseAddr(priv)!.n)).toBe(false);
    }
  });
});
