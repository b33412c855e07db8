/**
 * mergeMore (core/merge.ts): a host merged again with its modules' settings
 * merges only the top-level options the settings define, and takes every
 * other option from the first merge. It must give exactly what merging every
 * definition again gives: the same values, in the same key order, with the
 * same problems. Held to that on seeded random definitions: nested options,
 * records, lists, scalars, !mkDefault and !mkForce anywhere below the top,
 * conflicts and unknown options in the settings.
 */
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { mergeDefinitions, mergeMore, type Definition } from "../../core/merge.ts";
import { PRIORITY, Prio } from "../../core/priority.ts";
import { prng } from "../policy/corpus/generate.ts";

const schema = z.strictObject({
  address: z.string().optional(),
  roles: z.array(z.string()).optional(),
  tailscale: z.object({ enable: z.boolean().optional(), tags: z.array(z.string()).optional(), hostname: z.string().optional(), extra: z.record(z.string(), z.string()).optional() }).optional(),
  firewall: z.object({ enable: z.boolean().optional(), ports: z.array(z.number()).optional() }).optional(),
  ssh: z.object({ user: z.string().optional(), port: z.number().optional() }).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  agent: z.boolean().optional(),
});
const TOP = ["address", "roles", "tailscale", "firewall", "ssh", "labels", "agent"] as const;

/** The policy corpus's seeded generator (mulberry32), with the helpers these cases use; a failure names its seed. */
function rng(seed: number) {
  const next = prng(seed);
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick };
}

function randomValue(r: ReturnType<typeof rng>, key: (typeof TOP)[number]): unknown {
  const prio = (v: unknown) => (r.next() < 0.15 ? new Prio(r.pick([PRIORITY.mkDefault, PRIORITY.mkForce]), v) : v);
  const some = <T>(make: () => T, n = 3) => Array.from({ length: r.int(n) + 1 }, make);
  switch (key) {
    case "address": return prio(r.pick(["10.0.0.1", "10.0.0.2"]));
    case "roles": return prio(some(() => r.pick(["a", "b", "c"])));
    case "agent": return prio(r.next() < 0.5);
    case "labels": return Object.fromEntries(some(() => [r.pick(["x", "y", "z"]), prio(r.pick(["1", "2"]))]));
    case "ssh": {
      const o: Record<string, unknown> = {};
      if (r.next() < 0.6) o.user = prio(r.pick(["root", "ops"]));
      if (r.next() < 0.6) o.port = prio(r.pick([22, 2222]));
      return o;
    }
    case "firewall": {
      const o: Record<string, unknown> = {};
      if (r.next() < 0.6) o.enable = prio(r.next() < 0.5);
      if (r.next() < 0.6) o.ports = prio(some(() => r.pick([22, 80, 443])));
      return o;
    }
    case "tailscale": {
      const o: Record<string, unknown> = {};
      if (r.next() < 0.5) o.enable = prio(r.next() < 0.5);
      if (r.next() < 0.5) o.tags = prio(some(() => r.pick(["tag:a", "tag:b"])));
      if (r.next() < 0.5) o.hostname = prio(r.pick(["h1", "h2"]));
      if (r.next() < 0.3) o.extra = { [r.pick(["k", "l"])]: prio(r.pick(["v", "w"])) };
      return o;
    }
  }
}

function randomDef(r: ReturnType<typeof rng>, file: string, priority: number, keys: readonly string[], unknown = false): Definition {
  const value: Record<string, unknown> = {};
  for (const k of [...TOP].sort(() => r.next() - 0.5)) if (keys.includes(k) && r.next() < 0.45) value[k] = randomValue(r, k);
  if (unknown && r.next() < 0.1) value.tailscal = { enable: true };
  return { file, priority, value };
}

const show = (m: { value: unknown; diagnostics: unknown[] }) => ({ json: JSON.stringify(m.value), diagnostics: m.diagnostics });

describe("mergeMore: merging again only what the modules' settings set", () => {
  it("equals merging every definition again, on 3,000 seeded random hosts (values, key order, problems)", () => {
    let compared = 0;
    let touchedConflicts = 0;
    for (let seed = 1; compared < 3000; seed++) {
      const r = rng(seed);
      const defs = Array.from({ length: r.int(4) + 1 }, (_, i) => randomDef(r, `f${i}.yaml`, r.pick([PRIORITY.plain, PRIORITY.mkDefault]), TOP));
      const first = mergeDefinitions(schema, defs, "", false);
      if (first.diagnostics.length) continue; // evaluation merges again only after a first merge with nothing to say
      const few = TOP.filter(() => r.next() < 0.3);
      const more = Array.from({ length: r.int(2) + 1 }, (_, i) => randomDef(r, `module m${i}`, PRIORITY.plain, few, true));
      const want = mergeDefinitions(schema, [...defs, ...more], "", false);
      const got = mergeMore(schema, defs, first.value, more);
      expect(show(got), `seed ${seed}`).toEqual(show(want));
      if (want.diagnostics.length) touchedConflicts++;
      compared++;
    }
    // The seeds must reach the cases that matter: settings that clash with a host's own values, or name an unknown option.
    expect(touchedConflicts).toBeGreaterThan(100);
  });

  it("options the settings leave alone are the first merge's own objects; those they set are merged anew", () => {
    const defs: Definition[] = [
      { file: "host.yaml", priority: PRIORITY.plain, value: { ssh: { user: "root" }, tailscale: { tags: ["tag:a"] }, labels: { x: "1" } } },
    ];
    const first = mergeDefinitions(schema, defs, "", false);
    const more: Definition[] = [{ file: "module tailscale", priority: PRIORITY.plain, value: { tailscale: { hostname: "h1" }, agent: true } }];
    const got = mergeMore(schema, defs, first.value, more).value as Record<string, unknown>;
    const base = first.value as Record<string, unknown>;
    expect(got.ssh).toBe(base.ssh);
    expect(got.labels).toBe(base.labels);
    expect(got.tailscale).not.toBe(base.tailscale);
    expect(got).toEqual({ ssh: { user: "root" }, tailscale: { tags: ["tag:a"], hostname: "h1" }, labels: { x: "1" }, agent: true });
    expect(Object.keys(got)).toEqual(["ssh", "tailscale", "labels", "agent"]);
  });

  it("a definition that is not a plain mapping at the top takes the whole merge, with its problems", () => {
    const defs: Definition[] = [{ file: "host.yaml", priority: PRIORITY.plain, value: { ssh: { user: "root" } } }];
    const first = mergeDefinitions(schema, defs, "", false);
    const more: Definition[] = [{ file: "module x", priority: PRIORITY.plain, value: new Prio(PRIORITY.mkForce, { ssh: { user: "ops" } }) }];
    expect(show(mergeMore(schema, defs, first.value, more))).toEqual(show(mergeDefinitions(schema, [...defs, ...more], "", false)));
    expect((mergeMore(schema, defs, first.value, more).value as { ssh: unknown }).ssh).toEqual({ user: "ops" });
  });
});
