/**
 * core/policy/tests.ts: the policy `tests` block run as headscale 0.29 runs it,
 * each result exact (allowed or not, the reason, headscale's failure lines).
 * Pure and fast, for Stryker (npm run mutate -- policy-tests).
 */
import { describe, expect, it } from "vitest";
import { policySchema, runPolicyTests, type PolicyNode } from "../../core/policy/index.ts";

const N = (name: string, ip: number, o: Partial<PolicyNode> = {}): PolicyNode => ({ name, tags: [], ips: [`100.64.0.${ip}`], approvedRoutes: [], ...o });
const nodes: PolicyNode[] = [
  N("a1", 1, { user: "alice" }),
  N("b2", 2, { user: "bob" }),
  N("a3", 3, { user: "alice" }),
  N("w4", 4, { tags: ["tag:web"] }),
  N("w6", 6, { tags: ["tag:web"] }),
  N("r7", 7, { tags: ["tag:r"], approvedRoutes: ["192.168.8.0/24"] }),
];
const run = (p: object) => runPolicyTests(nodes, policySchema.parse(p), { users: ["alice", "bob"] });
const one = (p: object) => {
  const r = run(p).results[0];
  return r.lines.map((l) => [l.dst, l.got, l.reason]);
};

describe("runPolicyTests", () => {
  it("no acls and no grants: everything allowed, and why", () => {
    expect(one({ tests: [{ src: "bob@", accept: ["tag:web:22"] }] })).toEqual([["tag:web:22", "ALLOWED", "no acls and no grants: everything is allowed"]]);
  });

  it("a test without proto meets rules of tcp, udp, icmp or ipv6-icmp; a tcp test does not meet a udp rule", () => {
    const acls = [{ action: "accept", src: ["bob@"], dst: ["tag:web:53"], proto: "udp" }];
    expect(one({ acls, tests: [{ src: "bob@", accept: ["tag:web:53"] }] }).map((l) => l[1])).toEqual(["ALLOWED"]);
    expect(one({ acls, tests: [{ src: "bob@", proto: "tcp", deny: ["tag:web:53"] }] })).toEqual([["tag:web:53", "DENIED", "no rule matched: acls[0] reach the destination but only over other protocols"]]);
    // A protocol outside the default set (gre) is not met by a test without proto.
    expect(one({ acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:*"], proto: "gre" }], tests: [{ src: "bob@", deny: ["tag:web:1"] }] })[0][1]).toBe("DENIED");
  });

  it("a source of several prefixes must be let through whole; the rules used are listed once each, joined with '; '", () => {
    const acls = [{ action: "accept", src: ["100.64.0.1"], dst: ["tag:web:22"] }, { action: "accept", src: ["100.64.0.3"], dst: ["tag:web:22"] }];
    expect(one({ acls, tests: [{ src: "alice@", accept: ["tag:web:22"] }] })).toEqual([["tag:web:22", "ALLOWED", "acls[0]: 100.64.0.1 -> tag:web:22; acls[1]: 100.64.0.3 -> tag:web:22"]]);
    expect(one({ acls: [acls[0]], tests: [{ src: "alice@", deny: ["tag:web:22"] }] })).toEqual([["tag:web:22", "DENIED", "no rule matched: no rule has this source (for part of the source: 100.64.0.3)"]]);
  });

  it("denials say why: no rule from the source, rules that miss the destination, other ports; a one-prefix source says nothing of parts", () => {
    const acls = [{ action: "accept", src: ["bob@"], dst: ["tag:r:22"] }, { action: "accept", src: ["bob@"], dst: ["100.64.0.1:22"] }, { action: "accept", src: ["bob@"], dst: ["tag:web:80"] }];
    expect(one({ acls, tests: [{ src: "100.64.0.3", deny: ["tag:web:22"] }] })[0][2]).toBe("no rule matched: no rule has this source");
    expect(one({ acls: acls.slice(0, 2), tests: [{ src: "bob@", deny: ["tag:web:22"] }] })[0][2]).toBe("no rule matched: rules from this source (acls[0], acls[1]) do not reach the destination");
    expect(one({ acls, tests: [{ src: "bob@", deny: ["tag:web:22"] }] })[0][2]).toBe("no rule matched: acls[2] reach the destination on other ports");
  });

  it("a destination of several prefixes is reached when any is; a rule's ports are met by any of its ranges", () => {
    const acls = [{ action: "accept", src: ["bob@"], dst: ["100.64.0.6:22,80"] }];
    expect(one({ acls, tests: [{ src: "bob@", accept: ["tag:web:22"] }] })).toEqual([["tag:web:22", "ALLOWED", "acls[0]: bob@ -> 100.64.0.6:22,80"]]);
    expect(one({ acls, tests: [{ src: "bob@", deny: ["tag:web:81"] }] })[0][2]).toBe("no rule matched: acls[0] reach the destination on other ports");
    // The denial's reasons also look at any destination prefix.
    expect(one({ acls: [{ action: "accept", src: ["bob@"], dst: ["100.64.0.6:22"], proto: "tcp" }], tests: [{ src: "bob@", proto: "udp", deny: ["tag:web:22"] }] })[0][2]).toBe("no rule matched: acls[0] reach the destination but only over other protocols");
  });

  it("a test of several ports is allowed when one is; a rule of the test's protocol on other ports says so", () => {
    const acls = [{ action: "accept", src: ["bob@"], dst: ["tag:web:22"], proto: "tcp" }];
    expect(one({ acls, tests: [{ src: "bob@", proto: "tcp", accept: ["tag:web:22,80"] }] })[0][1]).toBe("ALLOWED");
    expect(one({ acls, tests: [{ src: "bob@", proto: "tcp", deny: ["tag:web:80"] }] })[0][2]).toBe("no rule matched: acls[0] reach the destination on other ports");
  });

  it("only the global filter counts: via grants and autogroup:self are per node", () => {
    const p = {
      tagOwners: { "tag:r": ["alice@"] },
      grants: [{ src: ["bob@"], dst: ["192.168.8.0/24"], ip: ["*"], via: ["tag:r"] }],
      acls: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self:*"] }],
      tests: [{ src: "bob@", deny: ["192.168.8.1:22"] }, { src: "100.64.0.1", deny: ["100.64.0.3:22"] }],
    };
    expect(run(p).results.map((r) => r.lines.map((l) => [l.got, l.reason]))).toEqual([
      [["DENIED", "no rule matched: no rule has this source"]],
      [["DENIED", "no rule matched: no rule has this source"]],
    ]);
  });

  it("errors: an unparsable source, a destination without a port, one that does not resolve; each its own failure line", () => {
    const r = run({ acls: [], tests: [{ src: "tag:1", accept: ["tag:web:22"] }, { src: "bob@", proto: "tpc", accept: ["nas", "carol@:22"], deny: ["tag:web:22"] }] });
    expect(r.results.map((x) => [x.path, x.proto, x.passed, x.errors])).toEqual([
      ["tests[0]", "", false, [`failed to resolve source "tag:1": invalid alias: tag names must start with a letter after 'tag:', found "tag:1"`]],
      ["tests[1]", "tpc", false, [
        `error testing "nas": invalid destination "nas": "nas" has no port: write it as alias:port, e.g. tag:web:443 or host:*`,
        `error testing "carol@:22": resolving destination: user not found: token "carol@"`,
      ]],
    ]);
    expect(r.results[1].lines.map((l) => [l.dst, l.got, l.passed])).toEqual([["nas", "ERROR", false], ["carol@:22", "ERROR", false], ["tag:web:22", "DENIED", true]]);
    expect(r.failures).toEqual([
      `tag:1: failed to resolve source "tag:1": invalid alias: tag names must start with a letter after 'tag:', found "tag:1"`,
      `bob@ (tpc): error testing "nas": invalid destination "nas": "nas" has no port: write it as alias:port, e.g. tag:web:443 or host:*`,
      `bob@ (tpc): error testing "carol@:22": resolving destination: user not found: token "carol@"`,
    ]);
  });

  it("failure lines name the proto; all passed only when every test passed", () => {
    const r = run({ acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:22"] }], tests: [{ src: "bob@", accept: ["tag:web:22"] }, { src: "bob@", proto: "tcp", accept: ["tag:web:23"], deny: ["tag:web:22"] }] });
    expect([r.allPassed, r.results.map((x) => x.passed)]).toEqual([false, [true, false]]);
    expect(r.failures).toEqual(["bob@ -> tag:web:23 (tcp): expected ALLOWED, got DENIED", "bob@ -> tag:web:22 (tcp): expected DENIED, got ALLOWED"]);
  });
});
