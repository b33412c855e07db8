/**
 * core/policy/compile.ts: a policy's acls and grants as compiled rules, each
 * field exact (category, sources, destinations, protocol, ports, origin text,
 * via, the self rule's source nodes), and what is skipped. Pure and fast, for
 * Stryker (npm run mutate -- policy-compile).
 */
import { describe, expect, it } from "vitest";
import { compilePolicy, type CompiledRule } from "../../core/policy/compile.ts";
import { toStrings } from "../../core/policy/ipset.ts";
import { Resolver } from "../../core/policy/resolve.ts";
import type { Policy, PolicyNode } from "../../core/policy/index.ts";

const N = (name: string, ip: number, o: Partial<PolicyNode> = {}): PolicyNode => ({ name, tags: [], ips: [`100.64.0.${ip}`], approvedRoutes: [], ...o });
const nodes: PolicyNode[] = [
  N("a1", 1, { user: "alice" }),
  N("b2", 2, { user: "bob" }),
  N("a3", 3, { user: "alice" }),
  N("web", 4, { tags: ["tag:web"], user: "alice" }),
  N("r5", 5, { tags: ["tag:r"], approvedRoutes: ["10.0.0.0/8", "0.0.0.0/0"] }),
];
const base: Policy = { hosts: { nas: "192.168.1.10" } };
const compile = (p: Policy) => compilePolicy({ ...base, ...p }, new Resolver({ ...base, ...p }, nodes, ["alice", "bob"]));
const view = (r: CompiledRule) => ({
  category: r.category,
  src: toStrings(r.src),
  dst: toStrings(r.dst),
  proto: r.proto,
  ports: r.ports.map((p) => (p.first === p.last ? `${p.first}` : `${p.first}-${p.last}`)).join(","),
  path: r.origin.path,
  text: r.origin.text,
  ...(r.via ? { via: r.via, viaInternet: r.viaInternet } : {}),
  ...(r.srcNodes ? { srcNodes: [...r.srcNodes] } : {}),
});
const rules = (p: Policy) => compile(p).rules.map(view);

describe("compilePolicy", () => {
  it("allow-all only without acls and grants", () => {
    expect(compile({}).allowAll).toBe(true);
    expect(compile({ acls: [] }).allowAll).toBe(false);
    expect(compile({ grants: [] }).allowAll).toBe(false);
  });

  it("grants: one rule per ip spec, origin text with via; bad destinations and specs left out", () => {
    expect(rules({ grants: [{ src: ["bob@", "alice@"], dst: ["tag:web", "tag:1x", "nas"], ip: ["tcp:22", "nope:1", "udp:53,5353"] }] })).toEqual([
      { category: "regular", src: ["100.64.0.1", "100.64.0.2/31"], dst: ["100.64.0.4", "192.168.1.10"], proto: "tcp", ports: "22", path: "grants[0]", text: "bob@, alice@ -> tag:web, tag:1x, nas [tcp:22, nope:1, udp:53,5353]" },
      { category: "regular", src: ["100.64.0.1", "100.64.0.2/31"], dst: ["100.64.0.4", "192.168.1.10"], proto: "udp", ports: "53,5353", path: "grants[0]", text: "bob@, alice@ -> tag:web, tag:1x, nas [tcp:22, nope:1, udp:53,5353]" },
    ]);
    expect(rules({ grants: [{ src: ["bob@"], dst: ["tag:web"] }] })).toEqual([]);
  });

  it("acls: one rule per destination, text with the proto when set; a bad proto or destination skips it", () => {
    expect(rules({
      acls: [
        { action: "accept", src: ["bob@"], dst: ["tag:web:22", "nope-x:1:2:x", "nas:80-81"], proto: "tcp" },
        { action: "accept", src: ["bob@"], dst: ["tag:web:443"] },
        { action: "accept", src: ["bob@"], dst: ["tag:web:1"], proto: "nope" },
      ],
    })).toEqual([
      { category: "regular", src: ["100.64.0.2"], dst: ["100.64.0.4"], proto: "tcp", ports: "22", path: "acls[0]", text: "bob@ -> tag:web:22 (tcp)" },
      { category: "regular", src: ["100.64.0.2"], dst: ["192.168.1.10"], proto: "tcp", ports: "80-81", path: "acls[0]", text: "bob@ -> nas:80-81 (tcp)" },
      { category: "regular", src: ["100.64.0.2"], dst: ["100.64.0.4"], proto: "", ports: "443", path: "acls[1]", text: "bob@ -> tag:web:443" },
    ]);
  });

  it("an acl's autogroup:self goes after its other destinations, unless all are autogroups", () => {
    const cats = (dst: string[]) => rules({ acls: [{ action: "accept", src: ["autogroup:member"], dst }] }).map((r) => `${r.category} ${r.text.split(" -> ")[1]}`);
    expect(cats(["autogroup:self:22", "tag:web:80"])).toEqual(["regular tag:web:80", "self autogroup:self:22"]);
    expect(cats(["autogroup:self:22", "autogroup:tagged:80"])).toEqual(["self autogroup:self:22", "regular autogroup:tagged:80"]);
    expect(cats(["autogroup:tagged:80", "autogroup:self:22"])).toEqual(["regular autogroup:tagged:80", "self autogroup:self:22"]);
    expect(cats(["tag:web:80", "autogroup:tagged:81"])).toEqual(["regular tag:web:80", "regular autogroup:tagged:81"]);
  });

  it("skipped: self among the sources, no sources or destinations, sources that resolve to nothing or fail", () => {
    const p = (src: string[], dst = ["tag:web"]): Policy => ({ grants: [{ src, dst, ip: ["*"] }] });
    expect(rules(p(["autogroup:self"]))).toEqual([]);
    expect(rules(p(["bob@", "autogroup:self"]))).toEqual([]);
    expect(rules(p([]))).toEqual([]);
    expect(rules(p(["bob@"], []))).toEqual([]);
    expect(rules(p(["nope"]))).toEqual([]);
    expect(rules(p(["carol@"]))).toEqual([]);
    expect(rules(p(["tag:none"]))).toEqual([]);
    // One source resolving is enough.
    expect(rules(p(["nope", "bob@"])).map((r) => r.src)).toEqual([["100.64.0.2"]]);
    expect(rules(p(["tag:1x", "bob@"])).map((r) => r.src)).toEqual([["100.64.0.2"]]);
  });

  it("sources: * adds the approved subnet routes; autogroup:danger-all is everything", () => {
    const src = (s: string[]) => rules({ grants: [{ src: s, dst: ["tag:web"], ip: ["*"] }] })[0].src;
    expect(src(["*"])).toContain("10.0.0.0/8");
    expect(src(["*"])).not.toContain("0.0.0.0/0");
    expect(src(["bob@"])).toEqual(["100.64.0.2"]);
    expect(src(["autogroup:danger-all"])).toEqual(["::/0", "0.0.0.0/0"]);
    expect(src(["bob@", "autogroup:danger-all"])).toEqual(["::/0", "0.0.0.0/0"]);
  });

  it("destinations: * is everything; those that resolve to nothing or fail make no rule", () => {
    const dst = (d: string[]) => rules({ grants: [{ src: ["bob@"], dst: d, ip: ["*"] }] }).map((r) => r.dst);
    expect(dst(["*"])).toEqual([["::/0", "0.0.0.0/0"]]);
    expect(dst(["tag:none"])).toEqual([]);
    expect(dst(["nope"])).toEqual([]);
    expect(dst(["nope", "tag:web"])).toEqual([["100.64.0.4"]]);
  });

  it("via grants: the routed destinations without the internet, flagged when it is there; an empty via is a regular grant", () => {
    expect(rules({ grants: [{ src: ["bob@"], dst: ["nas", "autogroup:internet"], ip: ["tcp:443"], via: ["tag:r", "tag:x"] }] })).toEqual([
      { category: "via", src: ["100.64.0.2"], dst: ["192.168.1.10"], proto: "tcp", ports: "443", path: "grants[0]", text: "bob@ -> nas, autogroup:internet [tcp:443] via tag:r, tag:x", via: ["tag:r", "tag:x"], viaInternet: true },
    ]);
    expect(rules({ grants: [{ src: ["bob@"], dst: ["nas"], ip: ["*"], via: ["tag:r"] }] })[0]).toMatchObject({ category: "via", dst: ["192.168.1.10"], viaInternet: false });
    expect(rules({ grants: [{ src: ["bob@"], dst: ["autogroup:member", "nas"], ip: ["*"], via: ["tag:r"] }] })[0].dst).toEqual(["100.64.0.1", "100.64.0.2/31", "192.168.1.10"]);
    expect(rules({ grants: [{ src: ["bob@"], dst: ["nas"], ip: ["*"], via: [] }] })[0]).toMatchObject({ category: "regular", text: "bob@ -> nas [*] via " });
  });

  it("autogroup:self: the untagged source nodes with a user, beside a regular rule for the other destinations", () => {
    expect(rules({ grants: [{ src: ["alice@", "tag:web", "r5"], dst: ["autogroup:self", "tag:web"], ip: ["tcp:22"] }], hosts: { r5: "100.64.0.5" } })).toEqual([
      { category: "regular", src: ["100.64.0.1", "100.64.0.3", "100.64.0.4/31"], dst: ["100.64.0.4"], proto: "tcp", ports: "22", path: "grants[0]", text: "alice@, tag:web, r5 -> autogroup:self, tag:web [tcp:22]" },
      { category: "self", src: ["100.64.0.1", "100.64.0.3", "100.64.0.4/31"], dst: [], proto: "tcp", ports: "22", path: "grants[0]", text: "alice@, tag:web, r5 -> autogroup:self, tag:web [tcp:22]", srcNodes: [0, 2] },
    ]);
    expect(rules({ grants: [{ src: ["bob@", "alice@"], dst: ["autogroup:self"], ip: ["*"] }] }).map((r) => [r.category, r.srcNodes])).toEqual([["self", [0, 1, 2]]]);
  });
});

describe("compilePolicy: users named like keywords, and the edges of sources and destinations", () => {
  // headscale users may be named self, danger-all or internet: `self@` is a user, never autogroup:self.
  const more: PolicyNode[] = [
    ...nodes,
    N("s6", 6, { user: "self" }),
    N("d7", 7, { user: "danger-all" }),
    N("i8", 8, { user: "internet" }),
    N("nu9", 9), // untagged, no user
    N("dual", 10, { user: "bob", ips: ["100.64.0.10", "fd7a:115c:a1e0::a"] }),
  ];
  const users = ["alice", "bob", "self", "danger-all", "internet"];
  const rules2 = (p: Policy) => compilePolicy({ ...base, ...p }, new Resolver({ ...base, ...p }, more, users)).rules.map(view);

  it("self@ as a source is a user, not the autogroup:self that headscale refuses in sources", () => {
    expect(rules2({ grants: [{ src: ["self@"], dst: ["tag:web"], ip: ["tcp:22"] }] }).map((r) => [r.category, r.src])).toEqual([["regular", ["100.64.0.6"]]]);
  });

  it("self@ as a destination is a regular rule to that user's nodes, with no per-node self rule", () => {
    expect(rules2({ grants: [{ src: ["bob@"], dst: ["self@"], ip: ["tcp:22"] }] }).map((r) => [r.category, r.dst])).toEqual([["regular", ["100.64.0.6"]]]);
  });

  it("an acl's self@ destination keeps its place: only autogroup:self moves last, and only it", () => {
    const cats = (dst: string[]) => rules2({ acls: [{ action: "accept", src: ["bob@"], dst }] }).map((r) => `${r.category} ${r.text.split(" -> ")[1]}`);
    expect(cats(["self@:22", "tag:web:80"])).toEqual(["regular self@:22", "regular tag:web:80"]);
    // Other autogroups keep their order among the non-self destinations (headscale aclToGrants).
    expect(cats(["autogroup:tagged:80", "autogroup:self:22", "tag:web:80"])).toEqual(["regular autogroup:tagged:80", "regular tag:web:80", "self autogroup:self:22"]);
  });

  it("danger-all@ as a source is that user's node, not everything", () => {
    expect(rules2({ grants: [{ src: ["danger-all@"], dst: ["tag:web"], ip: ["*"] }] })[0].src).toEqual(["100.64.0.7"]);
  });

  it("* among other sources still adds the approved subnet routes", () => {
    const src = rules2({ grants: [{ src: ["bob@", "*"], dst: ["tag:web"], ip: ["*"] }] })[0].src;
    expect(src).toContain("10.0.0.0/8");
  });

  it("via grants: internet@ is a routed user destination, not autogroup:internet; other autogroups do not set the internet flag", () => {
    expect(rules2({ grants: [{ src: ["bob@"], dst: ["internet@"], ip: ["*"], via: ["tag:r"] }] }).map((r) => [r.dst, r.viaInternet])).toEqual([[["100.64.0.8"], false]]);
    expect(rules2({ grants: [{ src: ["bob@"], dst: ["autogroup:tagged"], ip: ["*"], via: ["tag:r"] }] }).map((r) => r.viaInternet)).toEqual([false]);
    expect(rules2({ grants: [{ src: ["bob@"], dst: ["autogroup:internet"], ip: ["*"], via: ["tag:r"] }] }).map((r) => [r.dst, r.viaInternet])).toEqual([[[], true]]);
  });

  it("an acl's origin text lists its sources as written, comma-separated", () => {
    expect(rules2({ acls: [{ action: "accept", src: ["bob@", "self@"], dst: ["tag:web:22"] }] }).map((r) => r.text)).toEqual(["bob@, self@ -> tag:web:22"]);
  });

  it("a via grant with no destinations makes no rule", () => {
    expect(rules2({ grants: [{ src: ["bob@"], dst: [], ip: ["*"], via: ["tag:r"] }] })).toEqual([]);
    // Every destination unparsable is the same as none.
    expect(rules2({ grants: [{ src: ["bob@"], dst: ["tag:1x"], ip: ["*"], via: ["tag:r"] }] })).toEqual([]);
  });

  it("autogroup:self sources: untagged nodes with a user only, counted when any of their addresses is a source", () => {
    // filterSourcesToSameUser: nu9 has no user, web and r5 are tagged.
    expect(rules2({ grants: [{ src: ["*"], dst: ["autogroup:self"], ip: ["*"] }] }).map((r) => r.srcNodes)).toEqual([[0, 1, 2, 5, 6, 7, 9]]);
    // dual's IPv4 address alone is named: the node counts.
    expect(rules2({ grants: [{ src: ["100.64.0.10/32"], dst: ["autogroup:self"], ip: ["*"] }] }).map((r) => r.srcNodes)).toEqual([[9]]);
  });

  it("self rules of different sources in one policy each keep their own source nodes (the per-sources cache is keyed by the sources, not their count)", () => {
    const self = (p: Policy) => rules(p).filter((r) => r.category === "self").map((r) => `${r.path} ${r.ports} ${(r.srcNodes ?? []).join(",")}`);
    expect(
      self({
        acls: [
          { action: "accept", src: ["alice@"], dst: ["autogroup:self:22"] },
          { action: "accept", src: ["bob@"], dst: ["autogroup:self:80"] },
          { action: "accept", src: ["alice@", "bob@"], dst: ["autogroup:self:443"] },
          { action: "accept", src: ["bob@", "alice@"], dst: ["autogroup:self:8080"] },
          { action: "accept", src: ["tag:web"], dst: ["autogroup:self:9"] },
        ],
      }),
    ).toEqual(["acls[0] 22 0,2", "acls[1] 80 1", "acls[2] 443 0,1,2", "acls[3] 8080 0,1,2", "acls[4] 9 "]);
  });
});
