/**
 * Hand-written sshTests cases for core/policy/sshtests.ts, each with the
 * failure lines headscale 0.29.2's `policy check` gives for it (recorded by
 * asking it; test/policy/sshtests-live.test.ts asks it again when it is
 * built). test/policy/sshtests.test.ts holds meshfleet's evaluator to the
 * same lines, in process, and checks what headscale's answer cannot show
 * (meshfleet's order of the lines, per-line results, paths).
 *
 * One tailnet for all of them, spaced so that no two nodes' addresses merge.
 */
import type { Policy, PolicyNode } from "../../core/policy/index.ts";

const ip = (i: number) => [`100.64.0.${2 * i + 1}`, `fd7a:115c:a1e0::${(2 * i + 1).toString(16)}`];

export const SSH_USERS = ["alice", "bob", "carol", "self"];

/** carol has no node; web1, web2 and ci are tagged nodes whose headscale owner is alice. */
export const SSH_NODES: PolicyNode[] = [
  { name: "laptop", user: "alice", tags: [], ips: ip(0), approvedRoutes: [] },
  { name: "phone", user: "alice", tags: [], ips: ip(1), approvedRoutes: [] },
  { name: "bobpc", user: "bob", tags: [], ips: ip(2), approvedRoutes: [] },
  { name: "web1", user: "alice", tags: ["tag:web", "tag:db"], ips: ip(3), approvedRoutes: [] },
  { name: "web2", user: "alice", tags: ["tag:web"], ips: ip(4), approvedRoutes: [] },
  { name: "ci", user: "alice", tags: ["tag:ci"], ips: ip(5), approvedRoutes: [] },
  { name: "selfpc", user: "self", tags: [], ips: ip(6), approvedRoutes: [] },
];

const tagOwners = { "tag:web": ["alice@"], "tag:db": ["alice@"], "tag:ci": ["alice@"] };

export interface SshCase {
  name: string;
  policy: Policy;
  /** headscale's answer: valid, and its failure lines sorted (as crosscheck.ts compares them). */
  want: { valid: boolean; failures: string[] };
}

const P = (p: Partial<Policy>): Policy => ({ tagOwners, groups: { "group:admins": ["alice@"] }, ...p });

const C = (name: string, p: Partial<Policy>, valid: boolean, failures: string[] = []): SshCase => ({ name, policy: P(p), want: { valid, failures } });

const ROOT_TO_CI = { action: "accept" as const, src: ["alice@"], dst: ["tag:ci"], users: ["root"] };

export const SSH_CASES: SshCase[] = [
  // No ssh block, and an empty one: nothing may log in anywhere.
  C("no-ssh-rules", { sshTests: [{ src: "alice@", dst: ["tag:ci"], accept: ["root"], deny: ["deploy"] }] }, false, [
    "alice@/root -> ci: expected ALLOWED, got DENIED",
  ]),
  C("empty-ssh-rules", { ssh: [], sshTests: [{ src: "alice@", dst: ["tag:ci"], accept: ["root"], deny: ["deploy"] }] }, false, [
    "alice@/root -> ci: expected ALLOWED, got DENIED",
  ]),
  // Sources that give no address to try.
  C("source-user-without-nodes", { ssh: [ROOT_TO_CI], sshTests: [{ src: "carol@", dst: ["tag:ci"], accept: ["root"] }] }, false, [
    "carol@: source \"carol@\" resolved to no IP addresses",
  ]),
  C("source-unknown-user", { ssh: [ROOT_TO_CI], sshTests: [{ src: "dave@", dst: ["tag:ci"], accept: ["root"] }] }, false, [
    "dave@: failed to resolve source \"dave@\": resolving: user not found: token \"dave@\"",
  ]),
  C("source-unknown-host", { ssh: [ROOT_TO_CI], sshTests: [{ src: "nas", dst: ["tag:ci"], accept: ["root"] }] }, false, [
    "nas: failed to resolve source \"nas\": resolving: error resolving host: \"nas\"",
  ]),
  C("source-padded", { ssh: [ROOT_TO_CI], sshTests: [{ src: " bob@ ", dst: ["tag:ci"], accept: ["root"] }, { src: " 100.64.0.5 ", dst: ["tag:ci"], accept: ["root"] }] }, false, [
    "100.64.0.5/32/root -> ci: expected ALLOWED, got DENIED",
    "bob@/root -> ci: expected ALLOWED, got DENIED",
  ]),
  C("no-assertions", { ssh: [ROOT_TO_CI], sshTests: [{ src: "alice@", dst: ["tag:ci"] }] }, false, [
    "alice@: no accept, deny, or check assertions specified",
  ]),
  // Destinations.
  C("destination-unknown-host", { ssh: [ROOT_TO_CI], sshTests: [{ src: "alice@", dst: ["nas"], accept: ["root"] }] }, false, [
    "alice@: failed to resolve destinations: resolving destination \"nas\": error resolving host: \"nas\"",
  ]),
  C("destination-no-nodes", { ssh: [ROOT_TO_CI], sshTests: [{ src: "alice@", dst: ["carol@", "100.64.0.99", "tag:ci"], accept: ["root"] }] }, false, [
    "alice@: dst alias \"100.64.0.99/32\" resolved to no nodes",
    "alice@: dst alias \"carol@\" resolved to no nodes",
  ]),
  C("destination-twice", { ssh: [ROOT_TO_CI], sshTests: [{ src: "bob@", dst: ["tag:web", "tag:db", "tag:web"], accept: ["root"] }] }, false, [
    "bob@/root -> web1: expected ALLOWED, got DENIED",
    "bob@/root -> web2: expected ALLOWED, got DENIED",
  ]),
  C("destination-by-address", {
    ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:ci"], users: ["root"] }],
    sshTests: [{ src: "alice@", dst: ["100.64.0.11", "fd7a:115c:a1e0::b"], accept: ["root"] }, { src: "alice@", dst: ["100.64.0.7"], deny: ["root"] }],
  }, true),
  // Login users.
  C("logins", {
    ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:web"], users: ["autogroup:nonroot"] }, { action: "accept", src: ["alice@"], dst: ["tag:ci"], users: ["root", "deploy"] }],
    sshTests: [
      { src: "alice@", dst: ["tag:web"], accept: ["deploy", "ubuntu"], deny: ["root"] },
      { src: "alice@", dst: ["tag:ci"], accept: ["root", "deploy"], deny: ["ubuntu"] },
      { src: "alice@", dst: ["tag:ci"], accept: ["ubuntu", "autogroup:nonroot"] },
    ],
  }, false, [
    "alice@/autogroup:nonroot -> ci: expected ALLOWED, got DENIED",
    "alice@/ubuntu -> ci: expected ALLOWED, got DENIED",
  ]),
  C("login-empty", { ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:web"], users: ["autogroup:nonroot"] }], sshTests: [{ src: "alice@", dst: ["tag:web"], accept: [""] }] }, false, [
    "alice@/\"\" -> web1: expected ALLOWED, got DENIED",
    "alice@/\"\" -> web2: expected ALLOWED, got DENIED",
  ]),
  C("failure-order", {
    ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:web"], users: ["mid"] }],
    sshTests: [{ src: "alice@", dst: ["tag:web"], accept: ["zed", "abe"], deny: ["mid"], check: ["mid", "abe"] }],
  }, false, [
    "alice@/abe -> web1: expected ALLOWED via check, got DENIED",
    "alice@/abe -> web1: expected ALLOWED, got DENIED",
    "alice@/abe -> web2: expected ALLOWED via check, got DENIED",
    "alice@/abe -> web2: expected ALLOWED, got DENIED",
    "alice@/mid -> web1: expected ALLOWED via check, got ALLOWED via accept",
    "alice@/mid -> web1: expected DENIED, got ALLOWED",
    "alice@/mid -> web2: expected ALLOWED via check, got ALLOWED via accept",
    "alice@/mid -> web2: expected DENIED, got ALLOWED",
    "alice@/zed -> web1: expected ALLOWED, got DENIED",
    "alice@/zed -> web2: expected ALLOWED, got DENIED",
  ]),
  // accept and check.
  C("check-and-accept", {
    ssh: [{ action: "check", src: ["alice@"], dst: ["tag:web"], users: ["deploy"] }, { action: "accept", src: ["alice@"], dst: ["tag:ci"], users: ["deploy"] }],
    sshTests: [
      { src: "alice@", dst: ["tag:web", "tag:ci"], check: ["deploy"] },
      { src: "alice@", dst: ["tag:web", "tag:ci"], accept: ["deploy"] },
      { src: "bob@", dst: ["tag:web"], check: ["deploy"] },
      { src: "alice@", dst: ["tag:web"], deny: ["deploy"] },
      { src: "alice@", dst: ["tag:ci"], deny: ["ubuntu"] },
    ],
  }, false, [
    "alice@/deploy -> ci: expected ALLOWED via check, got ALLOWED via accept",
    "alice@/deploy -> web1: expected DENIED, got ALLOWED",
    "alice@/deploy -> web2: expected DENIED, got ALLOWED",
    "bob@/deploy -> web1: expected ALLOWED via check, got DENIED",
    "bob@/deploy -> web2: expected ALLOWED via check, got DENIED",
  ]),
  // autogroup:self.
  C("self", {
    ssh: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self"], users: ["root"] }],
    sshTests: [
      { src: "alice@", dst: ["autogroup:self"], accept: ["root"] },
      { src: "alice@", dst: ["bob@", "tag:web"], deny: ["root"] },
      { src: "group:admins", dst: ["autogroup:self"], accept: ["root"] },
      { src: "tag:web", dst: ["alice@"], deny: ["root"] },
      { src: "self@", dst: ["autogroup:self"], accept: ["root"] },
    ],
  }, false, [
    "group:admins: dst alias \"autogroup:self\" resolved to no nodes",
  ]),
  C("autogroup-member-destination", {
    ssh: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self"], users: ["root"] }, { action: "accept", src: ["alice@"], dst: ["autogroup:member"], users: ["deploy"] }],
    sshTests: [{ src: "alice@", dst: ["autogroup:member"], accept: ["root", "deploy"] }],
  }, false, [
    "alice@/root -> bobpc: expected ALLOWED, got DENIED",
    "alice@/root -> selfpc: expected ALLOWED, got DENIED",
  ]),
  // A source of several addresses: the laptop may log in, the rest of the range may not.
  C("source-range-partly-allowed", {
    ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:ci"], users: ["root"] }],
    sshTests: [{ src: "100.64.0.0/29", dst: ["tag:ci"], deny: ["root"], check: ["root"] }, { src: "100.64.0.0/29", dst: ["tag:ci"], check: ["root"] }],
  }, false, [
    "100.64.0.0/29/root -> ci: expected ALLOWED via check, got DENIED",
    "100.64.0.0/29/root -> ci: expected ALLOWED via check, got DENIED",
    "100.64.0.0/29/root -> ci: expected DENIED, got ALLOWED",
  ]),
  C("self-owner-without-sources", {
    ssh: [{ action: "accept", src: ["bob@"], dst: ["autogroup:self"], users: ["root"] }],
    sshTests: [{ src: "bob@", dst: ["bob@"], accept: ["root"] }, { src: "alice@", dst: ["alice@", "bob@"], deny: ["root"] }],
  }, true),
  C("self-and-a-tag", {
    ssh: [{ action: "accept", src: ["alice@", "bob@"], dst: ["autogroup:self", "tag:ci"], users: ["root"] }],
    sshTests: [{ src: "alice@", dst: ["alice@", "tag:ci"], accept: ["root"] }, { src: "bob@", dst: ["alice@"], deny: ["root"] }, { src: "bob@", dst: ["tag:ci", "bob@"], accept: ["root"] }],
  }, true),
  C("user-named-self", {
    ssh: [{ action: "accept", src: ["self@"], dst: ["self@"], users: ["root"] }, { action: "accept", src: ["alice@"], dst: ["autogroup:member"], users: ["deploy"] }],
    sshTests: [{ src: "self@", dst: ["self@"], accept: ["root"] }, { src: "bob@", dst: ["self@"], deny: ["root"] }, { src: "alice@", dst: ["bob@", "self@"], accept: ["deploy"] }],
  }, true),
  // Tagged sources, and a source given by one of a node's addresses.
  C("tagged-sources", {
    ssh: [{ action: "accept", src: ["tag:web"], dst: ["tag:ci"], users: ["root"] }],
    sshTests: [
      { src: "tag:web", dst: ["tag:ci"], accept: ["root"] },
      { src: "tag:db", dst: ["tag:ci"], accept: ["root"] },
      { src: "alice@", dst: ["tag:ci"], deny: ["root"] },
    ],
  }, true),
  // localpart: no login, but a source outside the destinations keeps its own user's rules.
  C("localpart", {
    ssh: [{ action: "accept", src: ["alice@", "tag:ci"], dst: ["tag:web"], users: ["localpart:*@example.com", "root"] }],
    sshTests: [
      { src: "alice@", dst: ["tag:web"], accept: ["root"], deny: ["localpart:*@example.com", "deploy"] },
      { src: "alice@", dst: ["alice@"], accept: ["root"] },
      { src: "tag:ci", dst: ["tag:ci"], accept: ["root"] },
      { src: "bob@", dst: ["bob@"], deny: ["root"] },
    ],
  }, true),
  C("localpart-self", {
    ssh: [{ action: "accept", src: ["alice@"], dst: ["autogroup:self"], users: ["localpart:*@example.com", "root"] }],
    sshTests: [{ src: "alice@", dst: ["alice@"], accept: ["root"] }, { src: "alice@", dst: ["tag:web"], deny: ["root"] }],
  }, true),
  C("no-localpart", {
    ssh: [{ action: "accept", src: ["alice@", "tag:ci"], dst: ["tag:web"], users: ["root", "xlocalpart:*@example.com"] }],
    sshTests: [{ src: "alice@", dst: ["alice@"], deny: ["root"] }, { src: "tag:ci", dst: ["tag:ci"], deny: ["root"] }, { src: "alice@", dst: ["tag:web"], accept: ["xlocalpart:*@example.com"] }],
  }, true),
  C("localpart-one-letter-domain", {
    ssh: [{ action: "accept", src: ["alice@"], dst: ["tag:web"], users: ["localpart:*@example.com", "localpart:*@e"] }],
    sshTests: [{ src: "alice@", dst: ["tag:web"], deny: ["localpart:*@example.com", "localpart:*@e"] }],
  }, true),
];
