/**
 * core/policy/resolve.ts: each alias kind against a few nodes, with the
 * exact address set (as ranges and as text), the nodes matched and the error
 * text headscale 0.29 gives. Pure and fast, for Stryker (npm run mutate --
 * policy-compile); the evaluator's property test covers resolution as a whole.
 */
import { describe, expect, it } from "vitest";
import { parseAlias, type Alias } from "../../core/policy/alias.ts";
import { ALL, THE_INTERNET, TAILNET_WILDCARD, V4_BASE, parseAddr, toStrings } from "../../core/policy/ipset.ts";
import { Resolver } from "../../core/policy/resolve.ts";
import { policySchema, type PolicyNode } from "../../core/policy/index.ts";

const N = (name: string, ips: string[], o: Partial<PolicyNode> = {}): PolicyNode => ({ name, tags: [], ips, approvedRoutes: [], ...o });
const nodes: PolicyNode[] = [
  N("b2", ["100.64.0.2", "fd7a:115c:a1e0::2"], { user: "bob" }),
  N("a1", ["100.64.0.1", "fd7a:115c:a1e0::1"], { user: "alice" }),
  N("a3", ["100.64.0.3"], { user: "alice" }),
  N("t5", ["100.64.0.5"], { user: "alice", tags: ["tag:t"] }),
  N("t6", ["100.64.0.6", "not-an-ip"], { tags: ["tag:t", "tag:u"], approvedRoutes: ["10.0.0.0/8", "0.0.0.0/0", "::/0"] }),
  N("r7", ["100.64.0.7"], { tags: ["tag:r"], approvedRoutes: ["192.168.1.0/24", "::/0"] }),
];
const policy = policySchema.parse({ groups: { "group:g": ["alice@", "bob@", "carol@"], "group:one": ["bob@"] }, hosts: { nas: "192.168.1.10", lan: "192.168.1.0/24" } });
const alias = (s: string): Alias => {
  const a = parseAlias(s);
  if (!a.ok) throw new Error(a.error);
  return a.value;
};
const r = new Resolver(policy, nodes, ["alice", "bob"]);
const text = (s: string) => {
  const x = r.resolve(alias(s));
  return { set: x.set && toStrings(x.set), nodes: x.nodes, error: x.error };
};

describe("Resolver: nodes", () => {
  it("addresses parsed (bad ones dropped), tagged, subnet routes without the exit routes, exit node", () => {
    expect(r.nodes.map((n) => [n.node.name, n.index, n.addrs.length, n.tagged, n.subnetRoutes, n.exitNode])).toEqual([
      ["b2", 0, 2, false, [], false],
      ["a1", 1, 2, false, [], false],
      ["a3", 2, 1, false, [], false],
      ["t5", 3, 1, true, [], false],
      ["t6", 4, 1, true, ["10.0.0.0/8"], true],
      ["r7", 5, 1, true, ["192.168.1.0/24"], true],
    ]);
    expect(toStrings(r.nodes[0].set)).toEqual(["fd7a:115c:a1e0::2", "100.64.0.2"]);
  });
});

describe("Resolver: aliases", () => {
  it("users: their untagged nodes, merged into ranges; an unknown user resolves to nothing, with headscale's error", () => {
    expect(text("alice@")).toEqual({ set: ["fd7a:115c:a1e0::1", "100.64.0.1", "100.64.0.3"], nodes: [1, 2], error: undefined });
    expect(text("carol@")).toEqual({ set: [], nodes: [], error: 'user not found: token "carol@"' });
    // Known (from the list given) but with no node: no error.
    expect(new Resolver(policy, nodes, ["alice", "bob", "dave"]).resolve(alias("dave@"))).toEqual({ set: [], nodes: [], error: undefined });
    // Without a list, the users are the nodes' users.
    expect(new Resolver(policy, nodes).resolve(alias("bob@")).error).toBeUndefined();
    expect(new Resolver(policy, nodes).resolve(alias("dave@")).error).toBe('user not found: token "dave@"');
  });

  it("groups: their users' untagged nodes in order; unknown members named, joined with '; '", () => {
    expect(text("group:g")).toEqual({ set: ["fd7a:115c:a1e0::1", "fd7a:115c:a1e0::2", "100.64.0.1", "100.64.0.2/31"], nodes: [0, 1, 2], error: 'user not found: token "carol@"' });
    expect(text("group:one")).toEqual({ set: ["fd7a:115c:a1e0::2", "100.64.0.2"], nodes: [0], error: undefined });
    expect(text("group:none")).toEqual({ set: [], nodes: [], error: undefined });
    const two = new Resolver(policySchema.parse({ groups: { "group:x": ["x@", "y"] } }), nodes, ["alice"]);
    expect(two.resolve(alias("group:x")).error).toBe('user not found: token "x@"; user not found: token "y"');
  });

  it("tags: every node carrying it, users or not; an unknown tag is empty", () => {
    expect(text("tag:t")).toEqual({ set: ["100.64.0.5", "100.64.0.6"], nodes: [3, 4], error: undefined });
    expect(text("tag:u")).toEqual({ set: ["100.64.0.6"], nodes: [4], error: undefined });
    expect(text("tag:none")).toEqual({ set: [], nodes: [], error: undefined });
  });

  it("hosts: the literal prefix; an unknown host is an error", () => {
    expect(text("nas")).toEqual({ set: ["192.168.1.10"], nodes: undefined, error: undefined });
    expect(text("lan")).toEqual({ set: ["192.168.1.0/24"], nodes: undefined, error: undefined });
    expect(text("nope")).toEqual({ set: null, nodes: undefined, error: 'error resolving host: "nope"' });
    expect(new Resolver(policySchema.parse({}), nodes).resolve(alias("nas")).error).toBe('error resolving host: "nas"');
  });

  it("autogroups, *, prefixes", () => {
    expect(text("autogroup:member").nodes).toEqual([0, 1, 2]);
    expect(text("autogroup:tagged").nodes).toEqual([3, 4, 5]);
    expect(r.resolve(alias("autogroup:internet")).set).toBe(THE_INTERNET);
    expect(r.resolve(alias("autogroup:danger-all")).set).toBe(ALL);
    expect(r.resolve(alias("autogroup:self"))).toEqual({ set: null, error: "autogroup:self requires per-node resolution and cannot be resolved in this context" });
    expect(r.resolve(alias("*")).set).toBe(TAILNET_WILDCARD);
    expect(text("10.1.2.0/24")).toEqual({ set: ["10.1.2.0/24"], nodes: undefined, error: undefined });
  });

  it("the same alias twice: the same result object (cached)", () => {
    expect(r.resolve(alias("alice@"))).toBe(r.resolve(alias("alice@")));
  });

  it("ranges: adjacent addresses merged, a repeated address once, never across the v6/v4 boundary", () => {
    const max6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    const edge = new Resolver(policy, [N("x", [max6, "0.0.0.0"], { tags: ["tag:x"] }), N("y", ["0.0.0.1", "0.0.0.0"], { tags: ["tag:x"] }), N("z", ["0.0.0.3"], { tags: ["tag:x"] })]);
    expect(edge.resolve(alias("tag:x")).set).toEqual([[V4_BASE - 1n, V4_BASE - 1n], [V4_BASE, V4_BASE + 1n], [V4_BASE + 3n, V4_BASE + 3n]]);
    expect(parseAddr(max6)!.n).toBe(V4_BASE - 1n);
  });
});

describe("Resolver: edges", () => {
  it("users known without a list: the nodes' user names, and nothing for the nodes without one", () => {
    expect([...new Resolver(policy, nodes).users]).toEqual(["bob", "alice"]);
  });

  it("a group in a policy with no groups at all resolves to nothing", () => {
    expect(new Resolver({ hosts: {} }, nodes, ["alice"]).resolve(alias("group:x"))).toEqual({ set: [], nodes: [], error: undefined });
  });

  it("a group member that is an e-mail user keeps its inner @ (only a trailing @ is dropped)", () => {
    const mail = [N("m1", ["100.64.0.9"], { user: "alice@example.com" }), ...nodes];
    const rm = new Resolver(policySchema.parse({ groups: { "group:m": ["alice@example.com", "bob@"] } }), mail, ["alice@example.com", "bob"]);
    expect(rm.resolve(alias("group:m"))).toMatchObject({ nodes: [0, 1], error: undefined });
    expect(rm.resolve(alias("alice@example.com")).nodes).toEqual([0]);
  });

  it("an autogroup this version does not know resolves to nothing, with an error naming it", () => {
    // parseAlias refuses it; a hand-built alias reaches the resolver's last branch.
    expect(r.resolve({ kind: "autogroup", text: "autogroup:nope", name: "nope" as never })).toEqual({ set: null, error: 'unknown autogroup: "autogroup:nope"' });
  });
});
