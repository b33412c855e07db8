/**
 * core/policy/sshtests.ts: the policy's `sshTests` run as headscale 0.29 runs
 * them. The cases of sshtests-cases.ts carry headscale 0.29.2's own failure
 * lines (sshtests-live.test.ts asks it again); the rest pins what its answer
 * cannot show (meshfleet's order of the lines, each line's result) and inputs
 * headscale refuses before its tests run (meshfleet's check refuses them too),
 * where the evaluator still has to answer without throwing.
 * Pure and fast, for Stryker (npm run mutate -- policy-ssh).
 */
import { describe, expect, it, vi } from "vitest";
import { runSshTests, type Policy, type PolicyNode } from "../../core/policy/index.ts";
import { SSH_CASES, SSH_NODES, SSH_USERS } from "./sshtests-cases.ts";

const run = (policy: Partial<Policy>, nodes: PolicyNode[] = SSH_NODES) => runSshTests(nodes, { tagOwners: { "tag:web": ["alice@"], "tag:db": ["alice@"], "tag:ci": ["alice@"] }, ...policy } as Policy, { users: SSH_USERS });
const caseNamed = (name: string) => SSH_CASES.find((c) => c.name === name)!.policy;

describe("runSshTests agrees with headscale 0.29.2", () => {
  it.each(SSH_CASES.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const r = runSshTests(SSH_NODES, c.policy, { users: SSH_USERS });
    expect({ valid: r.allPassed, failures: [...r.failures].sort() }).toEqual(c.want);
  });
});

describe("runSshTests, beyond headscale's sorted lines", () => {
  it("lists failures per test: errors, then accept, deny, check, each by login user in code-unit order, then by destination", () => {
    expect(runSshTests(SSH_NODES, caseNamed("failure-order"), { users: SSH_USERS }).failures).toEqual([
      "alice@/abe -> web1: expected ALLOWED, got DENIED",
      "alice@/abe -> web2: expected ALLOWED, got DENIED",
      "alice@/zed -> web1: expected ALLOWED, got DENIED",
      "alice@/zed -> web2: expected ALLOWED, got DENIED",
      "alice@/mid -> web1: expected DENIED, got ALLOWED",
      "alice@/mid -> web2: expected DENIED, got ALLOWED",
      "alice@/abe -> web1: expected ALLOWED via check, got DENIED",
      "alice@/abe -> web2: expected ALLOWED via check, got DENIED",
      "alice@/mid -> web1: expected ALLOWED via check, got ALLOWED via accept",
      "alice@/mid -> web2: expected ALLOWED via check, got ALLOWED via accept",
    ]);
    // Upper case sorts before lower case (code units, not locale).
    const r = run({ ssh: [], sshTests: [{ src: "alice@", dst: ["tag:ci"], accept: ["b", "B", "a"] }] });
    expect(r.failures).toEqual(["alice@/B -> ci: expected ALLOWED, got DENIED", "alice@/a -> ci: expected ALLOWED, got DENIED", "alice@/b -> ci: expected ALLOWED, got DENIED"]);
  });

  it("gives each test its path, label and lines; a passing line has no failure text; one failing test fails the report", () => {
    const r = run({
      ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:web"], users: ["root"] }],
      sshTests: [{ src: " alice@ ", dst: ["tag:web"], accept: ["root"] }, { src: "100.64.0.1", dst: ["tag:db"], deny: ["root"], accept: ["deploy"] }],
    });
    expect(r.allPassed).toBe(false);
    expect(r.results).toEqual([
      {
        path: "sshTests[0]", src: "alice@", passed: true, errors: [],
        lines: [
          { user: "root", dst: "web1", expect: "accept", passed: true, failure: "" },
          { user: "root", dst: "web2", expect: "accept", passed: true, failure: "" },
        ],
      },
      {
        path: "sshTests[1]", src: "100.64.0.1/32", passed: false, errors: [],
        lines: [
          { user: "deploy", dst: "web1", expect: "accept", passed: false, failure: "100.64.0.1/32/deploy -> web1: expected ALLOWED, got DENIED" },
          { user: "root", dst: "web1", expect: "deny", passed: false, failure: "100.64.0.1/32/root -> web1: expected DENIED, got ALLOWED" },
        ],
      },
    ]);
    expect(r.failures).toEqual(["100.64.0.1/32/deploy -> web1: expected ALLOWED, got DENIED", "100.64.0.1/32/root -> web1: expected DENIED, got ALLOWED"]);
    expect(run({ ssh: [], sshTests: [{ src: "alice@", dst: ["tag:ci"], deny: ["root"] }] }).allPassed).toBe(true);
  });

  it("a test with only deny, or only check, is not a test without assertions", () => {
    const ssh = [{ action: "check" as const, src: ["alice@"], dst: ["tag:ci"], users: ["root"] }];
    expect(run({ ssh, sshTests: [{ src: "alice@", dst: ["tag:ci"], deny: ["deploy"] }] })).toMatchObject({ allPassed: true, failures: [] });
    expect(run({ ssh, sshTests: [{ src: "alice@", dst: ["tag:ci"], check: ["root"] }] })).toMatchObject({ allPassed: true, failures: [] });
    expect(run({ ssh, sshTests: [{ src: "alice@", dst: ["tag:ci"], accept: [], deny: [], check: [] }] }).failures).toEqual(["alice@: no accept, deny, or check assertions specified"]);
  });

  it("a check test fails with DENIED where no rule lets the login in, and ALLOWED via accept where only an accept rule does", () => {
    const r = run({
      ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:ci"], users: ["deploy"] }],
      sshTests: [{ src: "alice@", dst: ["tag:ci"], check: ["deploy", "ubuntu"] }, { src: "alice@", dst: ["tag:ci"], accept: ["deploy"], check: ["deploy"] }],
    });
    expect(r.failures).toEqual([
      "alice@/deploy -> ci: expected ALLOWED via check, got ALLOWED via accept",
      "alice@/ubuntu -> ci: expected ALLOWED via check, got DENIED",
      "alice@/deploy -> ci: expected ALLOWED via check, got ALLOWED via accept",
    ]);
  });
});

describe("runSshTests on what headscale refuses before its tests run (so does meshfleet's check)", () => {
  const ssh = [{ action: "accept" as const, src: ["alice@"], dst: ["tag:ci"], users: ["root"] }];
  const failures = (t: NonNullable<Policy["sshTests"]>[number], p: Partial<Policy> = { ssh }, nodes?: PolicyNode[]) => run({ ...p, sshTests: [t] }, nodes).failures;

  it("an empty or blank source resolves to no address; a malformed one is named with the parser's reason", () => {
    expect(failures({ src: "", dst: ["tag:ci"], accept: ["root"] })).toEqual([': source "" resolved to no IP addresses']);
    expect(failures({ src: "  ", dst: ["tag:ci"], accept: ["root"] })).toEqual([': source "" resolved to no IP addresses']);
    // headscale takes `tag:1x` as a tag no node has ("resolved to no IP addresses"); meshfleet's check refuses the name first.
    expect(failures({ src: "tag:1x", dst: ["tag:ci"], accept: ["root"] })).toEqual([`tag:1x: failed to resolve source "tag:1x": invalid alias: tag names must start with a letter after 'tag:', found "tag:1x"`]);
  });

  it("a malformed destination is named trimmed, and stops the test", () => {
    expect(failures({ src: "alice@", dst: [" tag:9x ", "tag:ci"], accept: ["root"] })).toEqual([`alice@: failed to resolve destinations: resolving destination "tag:9x": tag names must start with a letter after 'tag:', found "tag:9x"`]);
  });

  it("a source of more than 2^16 addresses is refused; 2^16 are tried one by one", () => {
    expect(failures({ src: "10.0.0.0/15", dst: ["tag:ci"], deny: ["root"] })).toEqual([
      `10.0.0.0/15: source "10.0.0.0/15" covers more addresses than meshfleet evaluates one by one (2^16); name nodes or a narrower CIDR`,
    ]);
    expect(failures({ src: "10.0.0.0/16", dst: ["tag:ci"], accept: ["root"] })).toEqual(["10.0.0.0/16/root -> ci: expected ALLOWED, got DENIED"]);
  });

  it("sources and destinations of an ssh rule that do not parse or resolve are left out, the rest of the rule holds", () => {
    const p = { hosts: {}, ssh: [{ action: "accept" as const, src: ["tag:1x", "nas", "autogroup:self", "alice@"], dst: ["tag:9x", "nas", "tag:ci"], users: ["root"] }] };
    expect(failures({ src: "alice@", dst: ["tag:ci"], accept: ["root"] }, p)).toEqual([]);
    expect(failures({ src: "bob@", dst: ["tag:ci"], deny: ["root"] }, p)).toEqual([]);
  });

  it("only autogroup:self is self: a user named self is an ordinary destination, and so are other autogroups", () => {
    const p = { ssh: [{ action: "accept" as const, src: ["bob@"], dst: ["self@", "autogroup:tagged"], users: ["root"] }] };
    expect(failures({ src: "bob@", dst: ["self@", "tag:ci"], accept: ["root"] }, p)).toEqual([]);
    expect(failures({ src: "bob@", dst: ["bob@"], deny: ["root"] }, p)).toEqual([]);
    expect(failures({ src: "self@", dst: ["autogroup:self"], deny: ["root"] }, p)).toEqual([]);
  });

  it("localpart's self-access needs destinations besides autogroup:self: a tagged source of a self-only rule gets nothing", () => {
    // (With other destinations a tagged source keeps its own rules: the "localpart" case, headscale's answer.)
    const p = (users: string[]) => ({ ssh: [{ action: "accept" as const, src: ["alice@", "tag:ci"], dst: ["autogroup:self"], users }] });
    expect(failures({ src: "tag:ci", dst: ["tag:ci"], deny: ["root"] }, p(["localpart:*@example.com", "root"]))).toEqual([]);
    expect(failures({ src: "tag:ci", dst: ["tag:ci"], deny: ["root"] }, p(["root"]))).toEqual([]);
    expect(failures({ src: "alice@", dst: ["alice@"], accept: ["root"] }, p(["localpart:*@example.com", "root"]))).toEqual([]);
  });

  it("without ssh rules a check fails too; only a user source has an autogroup:self, even beside a user named like an autogroup", () => {
    expect(run({ sshTests: [{ src: "alice@", dst: ["tag:ci"], check: ["root"] }] }).failures).toEqual(["alice@/root -> ci: expected ALLOWED via check, got DENIED"]);
    const nodes = [...SSH_NODES, { name: "mpc", user: "member", tags: [], ips: ["100.64.0.95", "fd7a:115c:a1e0::95"], approvedRoutes: [] }];
    const r = runSshTests(nodes, { ssh, sshTests: [{ src: "autogroup:member", dst: ["autogroup:self"], accept: ["root"] }] } as Policy, { users: [...SSH_USERS, "member"] });
    expect(r.failures).toEqual(['autogroup:member: dst alias "autogroup:self" resolved to no nodes']);
  });

  it("a tagged source is never one of its owner's own devices (autogroup:self)", () => {
    const p = { ssh: [{ action: "accept" as const, src: ["alice@", "tag:web"], dst: ["autogroup:self"], users: ["root"] }] };
    expect(failures({ src: "tag:web", dst: ["alice@"], deny: ["root"] }, p)).toEqual([]);
    expect(failures({ src: "alice@", dst: ["alice@"], accept: ["root"] }, p)).toEqual([]);
  });

  it("a node is a source or destination when any one of its addresses is in the alias, even one it shares", () => {
    // shared holds web2's IPv4 address and an IPv6 address of its own.
    const nodes = [...SSH_NODES, { name: "shared", user: "bob", tags: ["tag:x"], ips: ["100.64.0.9", "fd7a:115c:a1e0::99"], approvedRoutes: [] }];
    const p = { tagOwners: { "tag:x": ["alice@"], "tag:web": ["alice@"], "tag:ci": ["alice@"] } };
    expect(failures({ src: "fd7a:115c:a1e0::99", dst: ["tag:ci"], accept: ["root"] }, { ...p, ssh: [{ action: "accept", src: ["tag:web"], dst: ["tag:ci"], users: ["root"] }] }, nodes)).toEqual([]);
    expect(failures({ src: "alice@", dst: ["fd7a:115c:a1e0::99"], accept: ["root"] }, { ...p, ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:web"], users: ["root"] }] }, nodes)).toEqual([]);
  });

  it("an untagged node without a user is no principal, and no one's autogroup:self", () => {
    const nodes = [...SSH_NODES, { name: "orphan", tags: [], ips: ["100.64.0.97", "fd7a:115c:a1e0::97"], approvedRoutes: [] }];
    const p = { ssh: [{ action: "accept" as const, src: ["autogroup:member"], dst: ["autogroup:self", "tag:ci"], users: ["root"] }] };
    expect(failures({ src: "100.64.0.97", dst: ["tag:ci", "100.64.0.97"], deny: ["root"] }, p, nodes)).toEqual([]);
    // A source that is not a user has no autogroup:self, not even the user-less nodes.
    expect(failures({ src: "100.64.0.1", dst: ["autogroup:self"], deny: ["root"] }, p, nodes)).toEqual(['100.64.0.1/32: dst alias "autogroup:self" resolved to no nodes']);
  });
});

describe("module constants, loaded afresh (so that a mutant of them is what the test sees)", () => {
  it("localpart users: exactly localpart:*@<domain>", async () => {
    vi.resetModules();
    const m = await import("../../core/policy/sshtests.ts");
    for (const name of ["localpart", "no-localpart", "localpart-one-letter-domain"]) {
      const c = SSH_CASES.find((x) => x.name === name)!;
      const r = m.runSshTests(SSH_NODES, c.policy, { users: SSH_USERS });
      expect({ valid: r.allPassed, failures: [...r.failures].sort() }, name).toEqual(c.want);
    }
  });
});
