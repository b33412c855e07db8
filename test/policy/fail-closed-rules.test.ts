/**
 * core/policy/fail-closed.ts called directly: each diagnostic whole, for
 * each way of writing a policy that decides its reach by omission, and the
 * allow-all test and warning. Pure and fast, beside fail-closed.test.ts
 * (which goes through a fleet's evaluation and the CLI), so that Stryker
 * (npm run mutate -- policy-enforce) can try each mutant against it.
 */
import { describe, expect, it } from "vitest";
import { allowAllWarnings, allowsEverything, EXPLICIT_ALLOW_ALL, failClosedDiagnostics } from "../../core/policy/fail-closed.ts";
import type { Policy } from "../../core/policy/index.ts";

const FIX = (base = "policy") => `write the rules you mean; to allow every node everything, say so: ${base}.${EXPLICIT_ALLOW_ALL}`;
const NO_RULES = "neither acls nor grants: headscale reads that as allow-all, every node reaches every node and every advertised route";
const NO_POLICY = "no policy: headscale then allows every node to reach every node and every advertised route";
const empty = (which: string) => `${which} and no rule: headscale has read an empty list as allow-all (before 0.29, headscale#1602, #3211) and as deny-all (0.29), so the reach depends on the server's version`;

describe("failClosedDiagnostics", () => {
  it("the fix names allow-all as it must be written", () => {
    expect(EXPLICIT_ALLOW_ALL).toBe('acls: [{action: accept, src: ["*"], dst: ["*:*"]}]');
  });

  it("no acls and no grants: 'no policy' when nothing (or {}) was written, else 'neither acls nor grants'", () => {
    const d = (raw: unknown, found: string) => [{ severity: "error", file: "f.yaml", path: "policy", expected: "policy.acls or policy.grants with at least one rule (a policy fails closed)", found, fix: FIX() }];
    expect(failClosedDiagnostics({}, undefined, "f.yaml")).toEqual(d(undefined, NO_POLICY));
    expect(failClosedDiagnostics({}, null, "f.yaml")).toEqual(d(null, NO_POLICY));
    expect(failClosedDiagnostics({}, {}, "f.yaml")).toEqual(d({}, NO_POLICY));
    expect(failClosedDiagnostics({}, { tagOwners: {} }, "f.yaml")).toEqual(d({ tagOwners: {} }, NO_RULES));
    expect(failClosedDiagnostics({}, "x", "f.yaml")).toEqual(d("x", NO_RULES));
    expect(failClosedDiagnostics({}, 0, "f.yaml")).toEqual(d(0, NO_RULES));
  });

  it("empty lists: at acls when acls is written, else at grants, naming the lists written", () => {
    const d = (path: string, which: string, base = "policy") => [{ severity: "error", file: "f.yaml", path, expected: "at least one rule (a policy fails closed)", found: empty(which), fix: FIX(base) }];
    expect(failClosedDiagnostics({ acls: [] }, {}, "f.yaml")).toEqual(d("policy.acls", "acls: []"));
    expect(failClosedDiagnostics({ grants: [] }, {}, "f.yaml")).toEqual(d("policy.grants", "grants: []"));
    expect(failClosedDiagnostics({ acls: [], grants: [] }, {}, "f.yaml")).toEqual(d("policy.acls", "acls: [] and grants: []"));
    expect(failClosedDiagnostics({ grants: [] }, {}, "f.yaml", "tailnet.policy")).toEqual(d("tailnet.policy.grants", "grants: []", "tailnet.policy"));
    expect(failClosedDiagnostics({}, undefined, "f.yaml", "tailnet.policy")[0]).toMatchObject({ path: "tailnet.policy", expected: "tailnet.policy.acls or tailnet.policy.grants with at least one rule (a policy fails closed)", fix: FIX("tailnet.policy") });
  });

  it("one rule in either list is enough, the other list empty or missing", () => {
    const acl = { action: "accept" as const, src: ["alice@"], dst: ["*:22"] };
    const grant = { src: ["alice@"], dst: ["*"], ip: ["tcp:22"] };
    for (const p of [{ acls: [acl] }, { grants: [grant] }, { acls: [], grants: [grant] }, { acls: [acl], grants: [] }] as Policy[]) expect([p, failClosedDiagnostics(p, p, "f.yaml")]).toEqual([p, []]);
  });
});

describe("allowsEverything and the plan's warning", () => {
  const wide: Policy = { acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }] };
  const narrow: Policy = { acls: [{ action: "accept", src: ["alice@"], dst: ["*:*"] }] };

  it("allowsEverything: the rule must say * to *:* (acl, any proto) or * to * on * (grant)", () => {
    expect(allowsEverything(undefined)).toBe(false);
    expect(allowsEverything({})).toBe(true);
    expect(allowsEverything({ acls: [] })).toBe(false);
    expect(allowsEverything({ acls: [narrow.acls![0], wide.acls![0]] })).toBe(true);
    expect(allowsEverything({ acls: [{ action: "accept", src: ["*"], dst: ["tag:x:*"] }] })).toBe(false);
    expect(allowsEverything({ acls: [{ action: "accept", src: ["alice@", "*"], dst: ["tag:x:22", "*:*"] }] })).toBe(true);
    expect(allowsEverything({ grants: [{ src: ["*"], dst: ["*"] }] })).toBe(false);
    expect(allowsEverything({ grants: [{ src: ["*"], dst: ["tag:x"], ip: ["*"] }] })).toBe(false);
    expect(allowsEverything({ grants: [{ src: ["alice@"], dst: ["*"], ip: ["*"] }] })).toBe(false);
    expect(allowsEverything({ acls: [], grants: [{ src: ["*"], dst: ["*"], ip: ["*"] }] })).toBe(true);
    expect(allowsEverything({ grants: [], acls: [wide.acls![0]] })).toBe(true);
  });

  it("warns once when the head allows everything and the base did not", () => {
    const message = 'the policy now lets every node reach every node and every advertised route on every port (an accept from "*" to "*:*"): every LAN behind a subnet router is open to every device of the tailnet';
    expect(allowAllWarnings({ policy: narrow }, { policy: wide })).toEqual([{ kind: "allow-all", message }]);
    expect(allowAllWarnings({}, { policy: wide })).toEqual([{ kind: "allow-all", message }]);
    expect(allowAllWarnings({ policy: wide }, { policy: narrow })).toEqual([]);
    expect(allowAllWarnings({ policy: wide }, { policy: wide })).toEqual([]);
    expect(allowAllWarnings({ policy: narrow }, { policy: narrow })).toEqual([]);
  });
});
