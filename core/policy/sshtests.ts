/**
 * The policy's `sshTests` block, run the way headscale 0.29 runs it
 * (sshtest.go, and the SSH compiler in filter.go compileSSHPolicy):
 *  - src is one alias; every address it resolves to is tried on its own
 *    (a CIDR source therefore needs a node at every one of its addresses);
 *  - each dst resolves to nodes: a node is a destination when one of its
 *    addresses is in the alias's set; autogroup:self is the untagged nodes of
 *    the source user (only a user source has one);
 *  - per destination node, the SSH rules compile to principals (every address
 *    of each source node: untagged nodes with a user, and tagged nodes) and a
 *    login-user map (root only when `root` is listed; `autogroup:nonroot`
 *    admits every other name; named users admit themselves);
 *  - accept: every source address may log in as the user by an accept or a
 *    check rule; deny: none may; check: every one may by a check rule.
 * `localpart:*@domain` users match users by e-mail, which meshfleet's users
 * do not have, so they admit no login (as in headscale with such users), but
 * they still give source nodes their same-user rules, as headscale does.
 * Failures read like headscale's: `<src>/<user> -> <node>: expected ALLOWED, got DENIED`.
 */
import { parseAlias, type Alias } from "./alias.ts";
import { contains, formatAddr, parseAddr, type IPSet, union } from "./ipset.ts";
import { Resolver, type NodeInfo, type PolicyNode } from "./resolve.ts";
import type { Policy } from "./schema.ts";

export interface SshTestLine {
  user: string;
  /** The destination node's name. */
  dst: string;
  expect: "accept" | "deny" | "check";
  passed: boolean;
  /** headscale's line for a failure, "" when passed. */
  failure: string;
}

export interface SshTestResult {
  /** `sshTests[2]` */
  path: string;
  src: string;
  passed: boolean;
  errors: string[];
  lines: SshTestLine[];
}

export interface SshTestsReport {
  allPassed: boolean;
  results: SshTestResult[];
  /** headscale's rendering of the failures, one per line, in its order. */
  failures: string[];
}

interface SshRule {
  principals: Set<bigint>;
  users: Map<string, string>;
  check: boolean;
}

type SshTest = NonNullable<Policy["sshTests"]>[number];

const LOCALPART = /^localpart:\*@.+$/;

export function runSshTests(nodes: PolicyNode[], policy: Policy, opts: { users?: string[]; resolver?: Resolver } = {}): SshTestsReport {
  const resolver = opts.resolver ?? new Resolver(policy, nodes, opts.users);
  const cache = new Map<number, SshRule[] | null>();
  const compiled = (n: NodeInfo) => {
    let c = cache.get(n.index);
    // Stryker disable next-line ConditionalExpression: `true` compiles a node's rules again on every use; compileSshFor is pure, so the rules are the same
    if (c === undefined) {
      c = compileSshFor(policy, resolver, n);
      cache.set(n.index, c);
    }
    return c;
  };
  const results = (policy.sshTests ?? []).map((t, i) => runOne(t, `sshTests[${i}]`, resolver, compiled));
  const failures: string[] = [];
  for (const r of results) {
    // Stryker disable next-line ConditionalExpression: a passed result has no errors and no failed line, so going through it adds nothing
    if (r.passed) continue;
    for (const e of r.errors) failures.push(`${r.src}: ${e}`);
    for (const kind of ["accept", "deny", "check"] as const) {
      const failed = r.lines.filter((l) => l.expect === kind && !l.passed);
      const users = [...new Set(failed.map((l) => l.user))].sort(byCodeUnits);
      for (const u of users) for (const l of failed.filter((x) => x.user === u)) failures.push(l.failure);
    }
  }
  return { allPassed: results.every((r) => r.passed), results, failures };
}

function byCodeUnits(a: string, b: string): number {
  // Stryker disable next-line ConditionalExpression,EqualityOperator: V8's sort reads only whether the result is below zero, and the users sorted are distinct (a Set), so `<=` and the second test change no order; `>=` in the first (descending) is killed
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Alias.String() in headscale: a prefix prints as netip.Prefix (a bare address gains /32 or /128). */
function label(a: Alias, raw: string): string {
  if (a.kind !== "prefix") return raw.trim();
  const [addr, bits] = raw.trim().split("/");
  const parsed = parseAddr(addr)!;
  return `${formatAddr(parsed.n)}/${bits ?? (parsed.v6 ? 128 : 32)}`;
}

function runOne(t: SshTest, path: string, resolver: Resolver, compiled: (n: NodeInfo) => SshRule[] | null): SshTestResult {
  const parsed = t.src.trim() === "" ? null : parseAlias(t.src);
  const src = parsed?.ok ? label(parsed.value, t.src) : t.src.trim();
  const res: SshTestResult = { path, src, passed: true, errors: [], lines: [] };
  const fail = (e: string) => {
    res.passed = false;
    res.errors.push(e);
    return res;
  };
  if (!parsed) return fail(`source ${JSON.stringify(src)} resolved to no IP addresses`);
  if (!parsed.ok) return fail(`failed to resolve source ${JSON.stringify(src)}: invalid alias: ${parsed.error}`);
  const r = resolver.resolve(parsed.value);
  if (r.error) return fail(`failed to resolve source ${JSON.stringify(src)}: resolving: ${r.error}`);
  if (!r.set || r.set.length === 0) return fail(`source ${JSON.stringify(src)} resolved to no IP addresses`);
  const srcAddrs = addresses(r.set);
  if (srcAddrs === null) return fail(`source ${JSON.stringify(src)} covers more addresses than meshfleet evaluates one by one (2^16); name nodes or a narrower CIDR`);
  // Only a user source has a user (for autogroup:self); groups and tags have none.
  const srcUser = parsed.value.kind === "user" && resolver.users.has(parsed.value.name) ? parsed.value.name : undefined;

  if ((t.accept ?? []).length === 0 && (t.deny ?? []).length === 0 && (t.check ?? []).length === 0) {
    return fail("no accept, deny, or check assertions specified");
  }

  const dstNodes: NodeInfo[] = [];
  const seen = new Set<number>();
  const empty: string[] = [];
  for (const raw of t.dst) {
    const text = raw.trim();
    const a = parseAlias(text);
    if (!a.ok) return fail(`failed to resolve destinations: resolving destination ${JSON.stringify(text)}: ${a.error}`);
    const dl = label(a.value, text);
    let matched = false;
    const take = (n: NodeInfo) => {
      matched = true;
      if (!seen.has(n.index)) {
        seen.add(n.index);
        dstNodes.push(n);
      }
    };
    if (a.value.kind === "autogroup" && a.value.name === "self") {
      if (srcUser !== undefined) for (const n of resolver.nodes) if (!n.tagged && n.node.user === srcUser) take(n);
    } else {
      const d = resolver.resolve(a.value);
      if (d.error) return fail(`failed to resolve destinations: resolving destination ${JSON.stringify(dl)}: ${d.error}`);
      // Stryker disable next-line ConditionalExpression,LogicalOperator,EqualityOperator: the set is null only with an error (returned above), and an empty set holds no node's address
      if (d.set && d.set.length > 0) for (const n of resolver.nodes) if (n.addrs.some((x) => contains(d.set!, x))) take(n);
    }
    if (!matched) empty.push(dl);
  }
  for (const d of empty) fail(`dst alias ${JSON.stringify(d)} resolved to no nodes`);
  // Stryker disable next-line ConditionalExpression: with no destination the assertions below loop over nothing and add no line
  if (dstNodes.length === 0) return res;

  const acceptOk = new Set<string>();
  const assert = (user: string, kind: "accept" | "deny" | "check") => {
    for (const dst of dstNodes) {
      const rules = compiled(dst);
      const name = dst.node.name;
      let failed = false;
      for (const addr of srcAddrs) {
        const [a, c] = reach(rules, addr, user);
        const bad = kind === "accept" ? !a : kind === "deny" ? a : !c;
        if (!bad) continue;
        failed = true;
        // A failed check is "ALLOWED via accept" when some rule admits the login at the address where it failed.
        if (kind === "check" && a) acceptOk.add(`${user}\u0000${name}`);
        break;
      }
      const shown = user === "" ? '""' : user;
      let failure = "";
      if (failed) {
        if (kind === "accept") failure = `${src}/${shown} -> ${name}: expected ALLOWED, got DENIED`;
        else if (kind === "deny") failure = `${src}/${shown} -> ${name}: expected DENIED, got ALLOWED`;
        else failure = `${src}/${shown} -> ${name}: expected ALLOWED via check, got ${acceptOk.has(`${user}\u0000${name}`) ? "ALLOWED via accept" : "DENIED"}`;
        res.passed = false;
      }
      res.lines.push({ user, dst: name, expect: kind, passed: !failed, failure });
    }
  };
  for (const u of t.accept ?? []) assert(u, "accept");
  for (const u of t.deny ?? []) assert(u, "deny");
  for (const u of t.check ?? []) assert(u, "check");
  return res;
}

/** Every address of a set, one by one (headscale iterates them); null past 65,536. */
function addresses(set: IPSet): bigint[] | null {
  const out: bigint[] = [];
  for (const [lo, hi] of set) {
    // Stryker disable next-line EqualityOperator,ArithmeticOperator: differ only for a source of several ranges holding 65,536 addresses or more; a CIDR is one range, `*` and the autogroups are past the limit in their first range, and users, groups and tags hold node addresses, so that many nodes
    if (hi - lo + BigInt(out.length) >= 65536n) return null;
    for (let a = lo; a <= hi; a++) out.push(a);
  }
  return out;
}

/** reachability(): [some rule admits the login, some check rule admits it]. */
function reach(rules: SshRule[] | null, addr: bigint, user: string): [boolean, boolean] {
  // Stryker disable next-line ArrayDeclaration: `[]` destructures to undefined, as falsy as false
  if (!rules) return [false, false];
  let a = false;
  let c = false;
  for (const r of rules) {
    if (!r.principals.has(addr) || !userMapAllows(r.users, user)) continue;
    a = true;
    if (r.check) c = true;
    // Stryker disable next-line ConditionalExpression,LogicalOperator: check rules come first (compileSshFor), so the first rule that admits the login has set c if any rule would; stopping there or never gives the same flags
    if (a && c) break;
  }
  return [a, c];
}

function userMapAllows(m: Map<string, string>, user: string): boolean {
  if (user === "") return false;
  const v = m.get(user);
  // compileSshFor always sets "root" (to "" unless root is listed), so root never reaches the "*" below.
  if (v !== undefined) return v !== "";
  const any = m.get("*");
  // Stryker disable next-line ConditionalExpression,StringLiteral: "*" is set to "=" (autogroup:nonroot) or to "*" (a login user named *), never to ""
  return any !== undefined && any !== "";
}

/** The SSH rules headscale sends node `n` (compileSSHPolicy); null when the policy has no ssh rules. */
export function compileSshFor(policy: Policy, resolver: Resolver, n: NodeInfo): SshRule[] | null {
  const ssh = policy.ssh ?? [];
  // Stryker disable next-line ConditionalExpression: no rules compile to [], and reach() answers [false, false] for [] as for null
  if (ssh.length === 0) return null;
  const rules: SshRule[] = [];
  for (const rule of ssh) {
    const srcSets = rule.src.map((s) => parseAlias(s)).flatMap((a) => (a.ok ? [resolver.resolve(a.value).set] : [])).filter((s): s is IPSet => s !== null);
    const srcIPs = union(...srcSets);
    // Stryker disable next-line ConditionalExpression: no node has an address in an empty set, so no principal is found and nothing is pushed
    if (srcIPs.length === 0) continue;
    const users = new Map<string, string>();
    if (rule.users.includes("autogroup:nonroot")) users.set("*", "=");
    users.set("root", rule.users.includes("root") ? "root" : "");
    for (const u of rule.users) if (u !== "root" && u !== "autogroup:nonroot" && !LOCALPART.test(u)) users.set(u, u);
    const hasLocalpart = rule.users.some((u) => LOCALPART.test(u));
    const check = rule.action === "check";

    // groupSourcesByUser: nodes with an address in the sources, by owner.
    const byUser = new Map<string, Set<bigint>>();
    const tagged = new Set<bigint>();
    for (const m of resolver.nodes) {
      if (!m.addrs.some((x) => contains(srcIPs, x))) continue;
      if (m.tagged) {
        m.addrs.forEach((x) => tagged.add(x));
        continue;
      }
      if (m.node.user === undefined) continue;
      const s = byUser.get(m.node.user) ?? new Set<bigint>();
      m.addrs.forEach((x) => s.add(x));
      byUser.set(m.node.user, s);
    }
    const push = (principals: Set<bigint>) => rules.push({ principals, users, check });

    const dsts = rule.dst.map((d) => parseAlias(d)).flatMap((a) => (a.ok ? [a.value] : []));
    const selfDst = dsts.some((d) => d.kind === "autogroup" && d.name === "self");
    const others = dsts.filter((d) => !(d.kind === "autogroup" && d.name === "self"));
    if (selfDst && !n.tagged && n.node.user !== undefined) {
      const mine = byUser.get(n.node.user);
      if (mine && mine.size > 0) push(mine);
    }
    if (others.length > 0) {
      const destSet = union(...others.map((d) => resolver.resolve(d).set ?? []));
      if (n.addrs.some((x) => contains(destSet, x))) {
        const all = new Set<bigint>([...[...byUser.values()].flatMap((s) => [...s]), ...tagged]);
        // Stryker disable next-line ConditionalExpression,EqualityOperator: a rule with no principal admits no address
        if (all.size > 0) push(all);
      } else if (hasLocalpart && n.addrs.some((x) => contains(srcIPs, x))) {
        // Self-access: a source node outside the destinations gets its own user's rules.
        if (n.tagged) push(new Set(n.addrs));
        else if (n.node.user !== undefined) {
          const mine = byUser.get(n.node.user);
          // Stryker disable next-line ConditionalExpression,LogicalOperator,EqualityOperator: n is a source node with a user here, so byUser holds a non-empty set for that user
          if (mine && mine.size > 0) push(mine);
        }
      }
    }
  }
  // Check rules before accept rules (first match wins in the client); verdicts do not depend on it.
  // Stryker disable next-line MethodExpression: reach() only stops once both flags are set, so the order (and a rule listed twice) changes no verdict
  return [...rules.filter((r) => r.check), ...rules.filter((r) => !r.check)];
}
