/**
 * The address maths at its edges (core/policy/ipset.ts): each function's
 * boundaries, exact results and the constants headscale builds, beside the
 * random-case properties of ipset.test.ts. Written against the mutants
 * Stryker left alive (npm run mutate): each assertion pins a boundary a
 * plausible slip (< for <=, a dropped bound, a wrong family) would move.
 */
import { describe, expect, it } from "vitest";
import {
  ALL,
  CGNAT,
  contains,
  coversRange,
  EMPTY,
  formatAddr,
  formatPrefix,
  fromPrefixStrings,
  fromRanges,
  hasHostBits,
  intersect,
  isEmpty,
  isV4,
  overlaps,
  overlapsRange,
  parseAddr,
  parsePrefix,
  prefixToSet,
  subtract,
  TAILNET_WILDCARD,
  THE_INTERNET,
  toPrefixes,
  toStrings,
  union,
  V4_BASE,
  type IPSet,
} from "../../core/policy/ipset.ts";

const v4 = (s: string) => parseAddr(s)!.n;
const V4_END = V4_BASE + (1n << 32n) - 1n;
const V6_END = V4_BASE - 1n;

describe("parseAddr", () => {
  it("places IPv4 above the IPv6 line and says which family", () => {
    expect(parseAddr("1.2.3.4")).toEqual({ n: V4_BASE + 0x01020304n, v6: false });
    expect(parseAddr("0.0.0.0")).toEqual({ n: V4_BASE, v6: false });
    expect(parseAddr("::1")).toEqual({ n: 1n, v6: true });
    expect(parseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")).toEqual({ n: V6_END, v6: true });
    for (const bad of ["", "nope", "1.2.3", "1.2.3.4/24", "1:2:3", "::g"]) expect(parseAddr(bad)).toBeNull();
  });

  it("reads an IPv6 address ending in dotted IPv4 (the last 32 bits)", () => {
    expect(parseAddr("::ffff:1.2.3.4")).toEqual({ n: 0xffff_0102_0304n, v6: true });
    expect(parseAddr("::ffff:10.20.30.40")).toEqual({ n: 0xffff_0a14_1e28n, v6: true });
    expect(parseAddr("::1.2.3.4")).toEqual({ n: 0x0102_0304n, v6: true });
    expect(parseAddr("64:ff9b::192.0.2.33")).toEqual({ n: (0x64n << 112n) | (0xff9bn << 96n) | 0xc000_0221n, v6: true });
    expect(parseAddr("1:2:3:4:5:6:1.2.3.4")).toEqual({ n: (1n << 112n) | (2n << 96n) | (3n << 80n) | (4n << 64n) | (5n << 48n) | (6n << 32n) | 0x0102_0304n, v6: true });
    // Too many groups before the tail, a bad tail, junk after it.
    for (const bad of ["1:2:3:4:5:6:7:1.2.3.4", "::ffff:1.2.3.256", "::ffff:1.2.3.4x", "::ffff:01.2.3.4", "x::1.2.3.4", "1.2.3.4:"]) expect(parseAddr(bad)).toBeNull();
  });
});

describe("parsePrefix", () => {
  it("masks host bits and gives the first and last address", () => {
    expect(parsePrefix("10.0.0.7/24")).toEqual({ lo: v4("10.0.0.0"), hi: v4("10.0.0.255"), bits: 24, v6: false });
    expect(parsePrefix("10.0.0.7")).toEqual({ lo: v4("10.0.0.7"), hi: v4("10.0.0.7"), bits: 32, v6: false });
    expect(parsePrefix("0.0.0.0/0")).toEqual({ lo: V4_BASE, hi: V4_END, bits: 0, v6: false });
    expect(parsePrefix("255.255.255.255/1")).toEqual({ lo: v4("128.0.0.0"), hi: V4_END, bits: 1, v6: false });
    expect(parsePrefix("fd7a::5/64")).toEqual({ lo: 0xfd7an << 112n, hi: (0xfd7an << 112n) + (1n << 64n) - 1n, bits: 64, v6: true });
    expect(parsePrefix("::/0")).toEqual({ lo: 0n, hi: V6_END, bits: 0, v6: true });
    expect(parsePrefix("::1")).toEqual({ lo: 1n, hi: 1n, bits: 128, v6: true });
    expect(parsePrefix("::ffff:1.2.3.4/120")).toEqual({ lo: 0xffff_0102_0300n, hi: 0xffff_0102_03ffn, bits: 120, v6: true });
  });

  it("takes a prefix length only as Go's netip does: decimal, no leading zero, at most the family's width", () => {
    expect(parsePrefix("1.2.3.4/32")?.bits).toBe(32);
    expect(parsePrefix("::/128")?.bits).toBe(128);
    expect(parsePrefix("::/100")?.bits).toBe(100);
    expect(parsePrefix("10.0.0.0/8")?.bits).toBe(8);
    for (const bad of ["1.2.3.4/33", "::/129", "10.0.0.0/08", "10.0.0.0/", "10.0.0.0/+8", "10.0.0.0/8 ", "10.0.0.0/x", "::/1280", "/24", "10.0.0.0/8/8", "bad/8"]) expect(parsePrefix(bad)).toBeNull();
  });

  it("hasHostBits: only a parsed prefix with bits below its length set", () => {
    expect(hasHostBits("10.0.0.1/24")).toBe(true);
    expect(hasHostBits("fd7a::1/64")).toBe(true);
    expect(hasHostBits("10.0.0.0/24")).toBe(false);
    expect(hasHostBits("10.0.0.1")).toBe(false);
    expect(hasHostBits("10.0.0.1/33")).toBe(false);
    expect(hasHostBits("nope/24")).toBe(false);
  });
});

describe("printing", () => {
  it("isV4 splits the line at V4_BASE", () => {
    expect(isV4(V4_BASE)).toBe(true);
    expect(isV4(V6_END)).toBe(false);
    expect(isV4(V4_END)).toBe(true);
  });

  it("IPv4 dotted, octet by octet", () => {
    expect(formatAddr(v4("255.254.253.252"))).toBe("255.254.253.252");
    expect(formatAddr(V4_BASE)).toBe("0.0.0.0");
    expect(formatAddr(V4_BASE + 0x80402010n)).toBe("128.64.32.16");
  });

  it("IPv6 as RFC 5952: the longest run of two or more zero groups compressed, the leftmost on a tie", () => {
    const f = (s: string) => formatAddr(parseAddr(s)!.n);
    expect(f("1:0:0:1:0:0:0:1")).toBe("1:0:0:1::1");
    expect(f("1:0:0:1:0:0:1:1")).toBe("1::1:0:0:1:1");
    expect(f("1:0:1:1:1:1:1:1")).toBe("1:0:1:1:1:1:1:1");
    expect(f("0:0:1:0:0:0:0:0")).toBe("0:0:1::");
    expect(f("0:0:0:0:0:0:0:0")).toBe("::");
    expect(f("0:0:0:0:0:0:0:1")).toBe("::1");
    expect(f("1:0:0:0:0:0:0:0")).toBe("1::");
    expect(f("1:2:3:4:5:6:7:8")).toBe("1:2:3:4:5:6:7:8");
    expect(f("ABCD:EF01:0:0:0:0:0:0")).toBe("abcd:ef01::");
    expect(f("1:0:0:2:0:0:0:0")).toBe("1:0:0:2::");
  });

  it("a prefix prints without its length only when it is a single address", () => {
    expect(formatPrefix(parsePrefix("10.1.2.3")!)).toBe("10.1.2.3");
    expect(formatPrefix(parsePrefix("10.1.2.0/24")!)).toBe("10.1.2.0/24");
    expect(formatPrefix(parsePrefix("fd7a::1")!)).toBe("fd7a::1");
    expect(formatPrefix(parsePrefix("fd7a::/32")!)).toBe("fd7a::/32");
    expect(formatPrefix(parsePrefix("::/0")!)).toBe("::/0");
  });
});

describe("building sets", () => {
  it("fromRanges sorts, merges overlaps and neighbours, keeps a range that covers later ones", () => {
    expect(fromRanges([])).toEqual([]);
    expect(fromRanges([[5n, 10n], [1n, 3n]])).toEqual([[1n, 3n], [5n, 10n]]);
    expect(fromRanges([[4n, 6n], [1n, 3n]])).toEqual([[1n, 6n]]);
    expect(fromRanges([[1n, 10n], [2n, 3n]])).toEqual([[1n, 10n]]);
    expect(fromRanges([[2n, 3n], [1n, 10n]])).toEqual([[1n, 10n]]);
    expect(fromRanges([[1n, 5n], [3n, 8n], [20n, 20n], [9n, 9n], [21n, 30n]])).toEqual([[1n, 9n], [20n, 30n]]);
    expect(fromRanges([[7n, 9n], [7n, 8n], [1n, 2n]])).toEqual([[1n, 2n], [7n, 9n]]);
  });

  it("never merges the last IPv6 address with 0.0.0.0, though they are neighbours on the line", () => {
    expect(fromRanges([[V6_END - 5n, V6_END], [V4_BASE, V4_BASE + 5n]])).toEqual([[V6_END - 5n, V6_END], [V4_BASE, V4_BASE + 5n]]);
    expect(fromRanges([[V6_END - 5n, V6_END - 1n], [V6_END, V6_END]])).toEqual([[V6_END - 5n, V6_END]]);
    // Overlaps right at either side of the boundary still merge.
    expect(fromRanges([[V6_END - 5n, V6_END], [V6_END - 1n, V6_END]])).toEqual([[V6_END - 5n, V6_END]]);
    expect(fromRanges([[V4_BASE, V4_BASE + 5n], [V4_BASE, V4_BASE + 3n]])).toEqual([[V4_BASE, V4_BASE + 5n]]);
    expect(fromRanges([[V4_BASE + 3n, V4_BASE + 9n], [V4_BASE, V4_BASE + 5n]])).toEqual([[V4_BASE, V4_BASE + 9n]]);
    expect(toStrings(fromPrefixStrings(["::/0", "0.0.0.0/0"]))).toEqual(["::/0", "0.0.0.0/0"]);
  });

  it("fromPrefixStrings skips what does not parse; prefixToSet is one range", () => {
    expect(fromPrefixStrings(["10.0.0.0/24", "bad", "10.0.1.0/24"])).toEqual([[v4("10.0.0.0"), v4("10.0.1.255")]]);
    expect(fromPrefixStrings([])).toEqual([]);
    expect(prefixToSet(parsePrefix("10.0.0.0/30")!)).toEqual([[v4("10.0.0.0"), v4("10.0.0.3")]]);
  });

  it("union: nothing is EMPTY, a single non-empty set is returned as it is, more are merged", () => {
    const a = fromPrefixStrings(["10.0.0.0/24"]);
    const b = fromPrefixStrings(["10.0.1.0/24"]);
    expect(union()).toEqual([]);
    expect(union(EMPTY, EMPTY)).toEqual([]);
    expect(union(EMPTY, a, EMPTY)).toBe(a);
    expect(union(a, b)).toEqual([[v4("10.0.0.0"), v4("10.0.1.255")]]);
    expect(EMPTY).toEqual([]);
    expect(isEmpty(EMPTY)).toBe(true);
    expect(isEmpty(a)).toBe(false);
  });
});

describe("set operations, exact results", () => {
  const S: IPSet = [[10n, 20n], [30n, 40n]];
  it("subtract cuts holes, ends and whole ranges", () => {
    expect(subtract(S, [[15n, 35n]])).toEqual([[10n, 14n], [36n, 40n]]);
    expect(subtract(S, [[10n, 10n]])).toEqual([[11n, 20n], [30n, 40n]]);
    expect(subtract(S, [[20n, 30n]])).toEqual([[10n, 19n], [31n, 40n]]);
    expect(subtract(S, [[12n, 12n], [14n, 14n]])).toEqual([[10n, 11n], [13n, 13n], [15n, 20n], [30n, 40n]]);
    expect(subtract(S, [[0n, 100n]])).toEqual([]);
    expect(subtract(S, [[10n, 20n]])).toEqual([[30n, 40n]]);
    expect(subtract(S, [[0n, 5n], [21n, 29n], [41n, 50n]])).toEqual(S);
    expect(subtract(S, [])).toEqual(S);
    expect(subtract([], S)).toEqual([]);
    expect(subtract([[10n, 40n]], [[12n, 13n], [20n, 25n], [40n, 40n]])).toEqual([[10n, 11n], [14n, 19n], [26n, 39n]]);
  });

  it("intersect keeps only common addresses, single addresses too", () => {
    expect(intersect(S, [[20n, 30n]])).toEqual([[20n, 20n], [30n, 30n]]);
    expect(intersect(S, [[0n, 100n]])).toEqual(S);
    expect(intersect(S, [[21n, 29n]])).toEqual([]);
    expect(intersect([[0n, 100n]], S)).toEqual(S);
    expect(intersect(S, [[15n, 16n], [18n, 32n], [39n, 45n]])).toEqual([[15n, 16n], [18n, 20n], [30n, 32n], [39n, 40n]]);
    expect(intersect(S, [])).toEqual([]);
  });

  it("contains, overlapsRange and coversRange at every edge", () => {
    const many: IPSet = [[10n, 20n], [30n, 40n], [50n, 60n], [70n, 80n], [90n, 100n]];
    for (const [n, want] of [[9n, false], [10n, true], [20n, true], [21n, false], [29n, false], [30n, true], [60n, true], [65n, false], [100n, true], [101n, false], [0n, false]] as const)
      expect([n, contains(many, n)]).toEqual([n, want]);
    expect(contains([], 1n)).toBe(false);
    expect(contains([[5n, 5n]], 5n)).toBe(true);
    for (const [lo, hi, want] of [
      [21n, 29n, false],
      [20n, 25n, true],
      [25n, 30n, true],
      [0n, 9n, false],
      [101n, 200n, false],
      [0n, 200n, true],
      [100n, 100n, true],
      [10n, 10n, true],
      [61n, 69n, false],
      [95n, 96n, true],
    ] as const)
      expect([lo, hi, overlapsRange(many, lo, hi)]).toEqual([lo, hi, want]);
    expect(overlapsRange([], 0n, 100n)).toBe(false);
    for (const [lo, hi, want] of [
      [10n, 20n, true],
      [12n, 15n, true],
      [9n, 20n, false],
      [10n, 21n, false],
      [15n, 35n, false],
      [40n, 40n, true],
      [30n, 40n, true],
    ] as const)
      expect([lo, hi, coversRange(S, lo, hi)]).toEqual([lo, hi, want]);
  });

  it("overlaps is a non-empty intersection", () => {
    expect(overlaps(S, [[20n, 20n]])).toBe(true);
    expect(overlaps(S, [[21n, 29n]])).toBe(false);
    expect(overlaps(S, [])).toBe(false);
  });
});

describe("prefixes of a set", () => {
  it("the largest aligned blocks, each family on its own", () => {
    expect(toStrings(ALL)).toEqual(["::/0", "0.0.0.0/0"]);
    expect(toStrings(fromPrefixStrings(["10.0.0.1", "10.0.0.2", "10.0.0.3"]))).toEqual(["10.0.0.1", "10.0.0.2/31"]);
    expect(toStrings(fromRanges([[v4("10.0.0.0"), v4("10.0.0.2")]]))).toEqual(["10.0.0.0/31", "10.0.0.2"]);
    expect(toStrings(fromRanges([[V6_END - 1n, V6_END]]))).toEqual(["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"]);
    expect(toStrings(fromRanges([[1n, 3n], [V4_BASE + 1n, V4_BASE + 1n]]))).toEqual(["::1", "::2/127", "0.0.0.1"]);
    expect(toPrefixes(fromPrefixStrings(["::/1"]))).toEqual([{ lo: 0n, hi: (1n << 127n) - 1n, bits: 1, v6: true }]);
    expect(toPrefixes(fromPrefixStrings(["128.0.0.0/1"]))).toEqual([{ lo: v4("128.0.0.0"), hi: V4_END, bits: 1, v6: false }]);
    expect(toPrefixes([])).toEqual([]);
  });
});

describe("the constants headscale builds", () => {
  it("ALL is both families whole; CGNAT is 100.64.0.0/10", () => {
    expect(ALL).toEqual([[0n, V6_END], [V4_BASE, V4_END]]);
    expect(contains(ALL, V4_END + 1n)).toBe(false);
    expect(toStrings(CGNAT)).toEqual(["100.64.0.0/10"]);
  });

  it("TAILNET_WILDCARD is the tailnet ranges without the ChromeOS VM range", () => {
    expect(toStrings(TAILNET_WILDCARD)).toEqual(["fd7a:115c:a1e0::/48", "100.64.0.0/11", "100.96.0.0/12", "100.112.0.0/15", "100.114.0.0/16", "100.115.0.0/18", "100.115.64.0/20", "100.115.80.0/21", "100.115.88.0/22", "100.115.94.0/23", "100.115.96.0/19", "100.115.128.0/17", "100.116.0.0/14", "100.120.0.0/13"]);
  });

  it("THE_INTERNET is 2000::/3 and IPv4 without private, CGNAT, tailnet and link-local space (util.TheInternet)", () => {
    expect(toStrings(THE_INTERNET)).toEqual([
      "2000::/3", "0.0.0.0/5", "8.0.0.0/7", "11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/3", "96.0.0.0/6", "100.0.0.0/10",
      "100.128.0.0/9", "101.0.0.0/8", "102.0.0.0/7", "104.0.0.0/5", "112.0.0.0/4", "128.0.0.0/3", "160.0.0.0/5", "168.0.0.0/8", "169.0.0.0/9",
      "169.128.0.0/10", "169.192.0.0/11", "169.224.0.0/12", "169.240.0.0/13", "169.248.0.0/14", "169.252.0.0/15", "169.255.0.0/16", "170.0.0.0/7",
      "172.0.0.0/12", "172.32.0.0/11", "172.64.0.0/10", "172.128.0.0/9", "173.0.0.0/8", "174.0.0.0/7", "176.0.0.0/4", "192.0.0.0/9", "192.128.0.0/11",
      "192.160.0.0/13", "192.169.0.0/16", "192.170.0.0/15", "192.172.0.0/14", "192.176.0.0/12", "192.192.0.0/10", "193.0.0.0/8", "194.0.0.0/7",
      "196.0.0.0/6", "200.0.0.0/5", "208.0.0.0/4", "224.0.0.0/3",
    ]);
  });
});
