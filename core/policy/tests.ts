/**
 * The policy's `tests` block, run the way headscale 0.29 runs it (test.go):
 *  - src is one alias; it must resolve, without error, to at least one address;
 *  - each accept/deny entry is `alias:port` (one port, one host);
 *  - it is allowed when EVERY prefix of the source reaches the destination
 *    under the GLOBAL filter (autogroup:self and via grants are not in it):
 *    some rule's sources overlap that prefix, its protocols meet the test's
 *    (tcp/udp/icmp/icmpv6 when the test names none; a rule with no protocol
 *    matches all), and one of its destinations overlaps the test destination
 *    with a port range containing the port;
 *  - no acls and no grants allow everything.
 * Failures read like headscale's: `<src> -> <dst>: expected ALLOWED, got DENIED`.
 */
import { parseAlias, parseDestination, parseProto, protoNumbers, type PortRange } from "./alias.ts";
import { compilePolicy, type Compiled, type CompiledRule } from "./compile.ts";
import { formatPrefix, overlapsRange, toPrefixes, type Prefix } from "./ipset.ts";
import { Resolver, type PolicyNode } from "./resolve.ts";
import type { Policy } from "./schema.ts";

export interface TestLine {
  dst: string;
  expect: "ALLOWED" | "DENIED";
  got: "ALLOWED" | "DENIED" | "ERROR";
  passed: boolean;
  /** The rule that allowed it, or why nothing did. */
  reason: string;
}

export interface PolicyTestResult {
  /** `tests[3]` */
  path: string;
  src: string;
  proto: string;
  passed: boolean;
  errors: string[];
  lines: TestLine[];
}

export interface PolicyTestsReport {
  allPassed: boolean;
  results: PolicyTestResult[];
  /** headscale's rendering of the failures, one per line. */
  failures: string[];
}

const DEFAULT_PROTOS = [6, 17, 1, 58];

export function runPolicyTests(nodes: PolicyNode[], policy: Policy, opts: { users?: string[]; compiled?: Compiled } = {}): PolicyTestsReport {
  const compiled = opts.compiled ?? compilePolicy(policy, new Resolver(policy, nodes, opts.users));
  const results = (policy.tests ?? []).map((t, i) => runOne(compiled, t, `tests[${i}]`));
  const failures: string[] = [];
  for (const r of results) {
    // Stryker disable next-line ConditionalExpression: a passed result has no errors and only passed lines, so it adds no failure line either way; `true` (every result skipped) fails the failure-line tests, checked by hand
    if (r.passed) continue;
    const suffix = r.proto ? ` (${r.proto})` : "";
    for (const e of r.errors) failures.push(`${r.src}${suffix}: ${e}`);
    for (const l of r.lines) {
      if (l.got === "ERROR" || l.passed) continue;
      failures.push(`${r.src} -> ${l.dst}${suffix}: expected ${l.expect}, got ${l.got}`);
    }
  }
  return { allPassed: results.every((r) => r.passed), results, failures };
}

function runOne(c: Compiled, t: { src: string; proto?: string; accept?: string[]; deny?: string[] }, path: string): PolicyTestResult {
  const proto = parseProto(t.proto);
  // Stryker disable next-line StringLiteral: a proto that fails to parse is a non-empty string, so the "" is never used
  const res: PolicyTestResult = { path, src: t.src, proto: proto.ok ? proto.value : (t.proto ?? ""), passed: true, errors: [], lines: [] };
  const alias = parseAlias(t.src);
  if (!alias.ok) return failWith(res, `failed to resolve source ${JSON.stringify(t.src)}: invalid alias: ${alias.error}`);
  const r = c.resolver.resolve(alias.value);
  if (r.error) return failWith(res, `failed to resolve source ${JSON.stringify(t.src)}: resolving: ${r.error}`);
  if (!r.set || r.set.length === 0) return failWith(res, `source ${JSON.stringify(t.src)} resolved to no IP addresses`);
  const srcPrefixes = toPrefixes(r.set);
  const requested = proto.ok ? (protoNumbers(proto.value) ?? DEFAULT_PROTOS) : DEFAULT_PROTOS;

  const check = (dst: string, expect: "ALLOWED" | "DENIED") => {
    const d = parseDestination(dst);
    let got: TestLine["got"];
    let reason: string;
    if (!d.ok) {
      got = "ERROR";
      reason = `error testing ${JSON.stringify(dst)}: invalid destination ${JSON.stringify(dst)}: ${d.error}`;
    } else {
      const dr = c.resolver.resolve(d.value.alias);
      if (dr.error) {
        got = "ERROR";
        reason = `error testing ${JSON.stringify(dst)}: resolving destination: ${dr.error}`;
      } else if (!dr.set || dr.set.length === 0) {
        got = "ERROR";
        reason = `error testing ${JSON.stringify(dst)}: destination resolved to no IP addresses: ${JSON.stringify(dst)}`;
      } else {
        const outcome = reaches(c, srcPrefixes, toPrefixes(dr.set), d.value.ports, requested);
        got = outcome.allowed ? "ALLOWED" : "DENIED";
        reason = outcome.reason;
      }
    }
    const passed = got === expect;
    if (!passed) res.passed = false;
    if (got === "ERROR") res.errors.push(reason);
    res.lines.push({ dst, expect, got, passed, reason });
  };
  for (const dst of t.accept ?? []) check(dst, "ALLOWED");
  for (const dst of t.deny ?? []) check(dst, "DENIED");
  return res;
}

function failWith(res: PolicyTestResult, error: string): PolicyTestResult {
  res.passed = false;
  res.errors.push(error);
  return res;
}

/** Every source prefix must be let through by some global rule (test.go evalReachability). */
export function reaches(c: Compiled, srcPrefixes: Prefix[], dstPrefixes: Prefix[], ports: PortRange[], requested: number[]): { allowed: boolean; reason: string } {
  if (c.allowAll) return { allowed: true, reason: "no acls and no grants: everything is allowed" };
  const global = c.rules.filter((r) => r.category === "regular");
  const used: CompiledRule[] = [];
  for (const sp of srcPrefixes) {
    const rule = global.find((r) => ruleAllows(r, sp, dstPrefixes, ports, requested));
    if (!rule) {
      return { allowed: false, reason: explainDenial(global, sp, dstPrefixes, ports, requested, srcPrefixes.length > 1) };
    }
    if (!used.includes(rule)) used.push(rule);
  }
  return { allowed: true, reason: used.map((r) => `${r.origin.path}: ${r.origin.text}`).join("; ") };
}

export function ruleAllows(r: CompiledRule, sp: Prefix, dstPrefixes: Prefix[], ports: PortRange[], requested: number[]): boolean {
  if (!overlapsRange(r.src, sp.lo, sp.hi)) return false;
  // Stryker disable next-line MethodExpression: protoNumbers gives a rule one protocol or none (null), so some and every agree
  if (r.protos && !r.protos.some((p) => requested.includes(p))) return false;
  if (!dstPrefixes.some((dp) => overlapsRange(r.dst, dp.lo, dp.hi))) return false;
  // headscale: no ports means any port.
  // Stryker disable next-line ConditionalExpression,BooleanLiteral: parsePorts never returns an empty list, so `false` changes nothing here; `true` (ports ignored) fails the port tests, checked by hand
  if (ports.length === 0) return true;
  return ports.some((p) => r.ports.some((a) => p.first >= a.first && p.last <= a.last));
}

function explainDenial(rules: CompiledRule[], sp: Prefix, dst: Prefix[], ports: PortRange[], requested: number[], partial: boolean): string {
  const fromSrc = rules.filter((r) => overlapsRange(r.src, sp.lo, sp.hi));
  const toDst = fromSrc.filter((r) => dst.some((dp) => overlapsRange(r.dst, dp.lo, dp.hi)));
  // Stryker disable next-line MethodExpression: protoNumbers gives a rule one protocol or none (null), so some and every agree
  const protoOk = toDst.filter((r) => !r.protos || r.protos.some((p) => requested.includes(p)));
  const who = partial ? ` (for part of the source: ${formatPrefix(sp)})` : "";
  if (fromSrc.length === 0) return `no rule matched: no rule has this source${who}`;
  if (toDst.length === 0) return `no rule matched: rules from this source (${paths(fromSrc)}) do not reach the destination${who}`;
  if (protoOk.length === 0) return `no rule matched: ${paths(toDst)} reach the destination but only over other protocols${who}`;
  return `no rule matched: ${paths(protoOk)} reach the destination on other ports${who}`;
}

function paths(rules: CompiledRule[]): string {
  return [...new Set(rules.map((r) => r.origin.path))].join(", ");
}
