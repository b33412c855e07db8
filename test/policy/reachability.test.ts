/**
 * core/policy/reachability.ts: explain's answers for names it does not know
 * and without a port, and canonicalSpec's order and merging. Pure and fast,
 * for Stryker (npm run mutate -- policy-reach); policy.test.ts holds the
 * evaluator's table and its brute-force property.
 */
import { describe, expect, it } from "vitest";
import { canonicalSpec } from "../../core/policy/reachability.ts";
import { evaluateReachability, policySchema, type PolicyNode } from "../../core/policy/index.ts";
import type { CompiledRule } from "../../core/policy/compile.ts";

const N = (name: string, ip: number, o: Partial<PolicyNode> = {}): PolicyNode => ({ name, tags: [], ips: [`100.64.0.${ip}`], approvedRoutes: [], ...o });
const nodes = [N("b2", 2, { user: "bob" }), N("w4", 4, { tags: ["tag:web"] })];

describe("explain", () => {
  const r = evaluateReachability(nodes, policySchema.parse({ acls: [{ action: "accept", src: ["bob@"], dst: ["tag:web:22"] }, { action: "accept", src: ["bob@"], dst: ["tag:web:80"], proto: "udp" }] }), { users: ["bob"] });
  it("names what it does not know", () => {
    expect(r.explain("nope", "w4", 22, "tcp")).toEqual({ allowed: false, why: "unknown node nope" });
    expect(r.explain("b2", "nope", 22, "tcp")).toEqual({ allowed: false, why: "unknown destination nope" });
  });
  it("without a port: allowed, every rule that gives access; a port with no proto is tcp", () => {
    expect(r.explain("b2", "w4")).toEqual({ allowed: true, why: "acls[0]: bob@ -> tag:web:22; acls[1]: bob@ -> tag:web:80 (udp)" });
    expect(r.explain("b2", "w4", 80)).toEqual({ allowed: false, why: "no rule matched on tcp:80 (allowed: any:22 udp:80)" });
  });
});

describe("canonicalSpec", () => {
  const e = (proto: string, ports: [number, number][], part?: string) => ({ rule: { proto, ports: ports.map(([first, last]) => ({ first, last })) } as CompiledRule, part });
  it("any first, then by protocol and part; ports open to any are not repeated for one protocol", () => {
    expect(canonicalSpec([
      e("udp", [[53, 53]]), e("", [[22, 22]]), e("tcp", [[22, 22], [443, 443]]), e("tcp", [[80, 80]], "192.168.8.10"), e("icmp", [[0, 65535]]), e("", [[22, 22]], "192.168.8.10"),
    ])).toBe("any:22 any:22 to 192.168.8.10 icmp:* tcp:443 tcp:80 to 192.168.8.10 udp:53");
    expect(canonicalSpec([e("tcp", [[22, 22]]), e("", [[1, 100]])])).toBe("any:1-100");
    expect(canonicalSpec([e("udp", [[1, 1]]), e("tcp", [[1, 1]])])).toBe("tcp:1 udp:1");
  });
});
