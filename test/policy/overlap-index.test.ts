/**
 * OverlapIndex (core/policy/ipset.ts): reachability finds the rules whose
 * destinations overlap a route through it instead of asking every rule. It
 * must give exactly the sets overlapsRange says overlap, ascending, once
 * each: held to that on seeded random sets (small and wide ranges, IPv4 and
 * IPv6, touching and nested ranges, empty sets) and on their edges.
 */
import { describe, expect, it } from "vitest";
import { ALL, EMPTY, fromRanges, OverlapIndex, overlapsRange, spansOf, type IPSet } from "../../core/policy/ipset.ts";
import { prng } from "./corpus/generate.ts";

const rng = prng;

const brute = (sets: readonly IPSet[], lo: bigint, hi: bigint) => sets.flatMap((s, i) => (overlapsRange(s, lo, hi) ? [i] : []));

describe("OverlapIndex: the sets that overlap a range", () => {
  it("equals asking every set (overlapsRange) on 400 seeded random cases", () => {
    let nonEmpty = 0;
    for (let seed = 1; seed <= 400; seed++) {
      const r = rng(seed);
      const space = seed % 2 ? 1n << 32n : 1n << 128n; // IPv4-sized or IPv6-sized numbers
      const at = () => BigInt(Math.floor(r() * 4096)) * (space / 4096n);
      const width = () => (r() < 0.7 ? BigInt(Math.floor(r() * 300)) : BigInt(Math.floor(r() * 4096)) * (space / 4096n));
      const sets: IPSet[] = Array.from({ length: 1 + Math.floor(r() * 60) }, () =>
        r() < 0.05 ? EMPTY : fromRanges(Array.from({ length: 1 + Math.floor(r() * 4) }, () => { const lo = at(); return [lo, lo + width()] as const; })),
      );
      if (r() < 0.1) sets.push(ALL);
      const index = new OverlapIndex(sets);
      for (let q = 0; q < 20; q++) {
        const lo = at();
        const hi = lo + width();
        const want = brute(sets, lo, hi);
        expect(index.overlapping(lo, hi), `seed ${seed} query ${q}`).toEqual(want);
        if (want.length) nonEmpty++;
      }
    }
    expect(nonEmpty).toBeGreaterThan(2000); // most queries find something: the comparison is not of empty lists
  });

  it("edges: a range ending where a query starts, one starting where it ends, a single address, nested ranges, no sets", () => {
    const sets: IPSet[] = [fromRanges([[10n, 20n]]), fromRanges([[21n, 30n]]), fromRanges([[0n, 100n]]), fromRanges([[15n, 15n]]), EMPTY];
    const index = new OverlapIndex(sets);
    expect(index.overlapping(20n, 21n)).toEqual([0, 1, 2]);
    expect(index.overlapping(31n, 40n)).toEqual([2]);
    expect(index.overlapping(15n, 15n)).toEqual([0, 2, 3]);
    expect(index.overlapping(101n, 200n)).toEqual([]);
    expect(new OverlapIndex([]).overlapping(0n, 1n)).toEqual([]);
    // A set with two ranges that both overlap is given once.
    expect(new OverlapIndex([fromRanges([[1n, 2n], [4n, 5n]])]).overlapping(0n, 9n)).toEqual([0]);
  });
});

describe("spansOf: a set's span in each family", () => {
  it("holds the set, at most one range per family, on 300 seeded random sets of both families", () => {
    const V4 = 1n << 128n;
    for (let seed = 1; seed <= 300; seed++) {
      const r = rng(seed);
      const addr = () => (r() < 0.5 ? V4 + BigInt(Math.floor(r() * 2 ** 32)) : BigInt(Math.floor(r() * 2 ** 40)) << 80n);
      const set = fromRanges(Array.from({ length: Math.floor(r() * 6) }, () => { const a = addr(); return [a, a + BigInt(Math.floor(r() * 1000))] as const; }));
      const spans = spansOf(set);
      const v6 = set.filter(([lo]) => lo < V4);
      const v4 = set.filter(([lo]) => lo >= V4);
      expect(spans.length, `seed ${seed}`).toBe((v6.length ? 1 : 0) + (v4.length ? 1 : 0));
      for (const [lo, hi] of set) expect(spans.some(([a, b]) => a <= lo && hi <= b), `seed ${seed}`).toBe(true);
      // Each span is tight: it starts and ends at the family's first and last address.
      if (v6.length) expect(spans[0]).toEqual([v6[0][0], v6[v6.length - 1][1]]);
      if (v4.length) expect(spans[spans.length - 1]).toEqual([v4[0][0], v4[v4.length - 1][1]]);
    }
    expect(spansOf(EMPTY)).toEqual([]);
  });
});
