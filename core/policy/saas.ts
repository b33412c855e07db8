/**
 * The fleet's policy for Tailscale's own service (the admin console's policy
 * file), and a comparison of what the mesh allows under both.
 *
 * The two dialects share the HuJSON keys meshfleet writes (groups, tagOwners,
 * hosts, acls, grants, ssh, autoApprovers, nodeAttrs, tests, sshTests,
 * randomizeClientPort); they differ in who a user is:
 *  - headscale 0.29 writes a user as its name with a trailing `@` (`alice@`)
 *    and matches it against the user's name, e-mail or OIDC subject
 *    (policy/v2/types.go `Username.resolveUser`);
 *  - Tailscale's service knows only logins: `alice@example.com`,
 *    `alice@github`, `alice@passkey`.
 * So every user token is mapped to a login, from fleet.yaml's `tailscaleSaas`
 * (`logins` per user, else `<name>@<loginDomain>`); a token already holding a
 * domain (an OIDC user's e-mail) is kept. A token that cannot be mapped, and
 * two users landing on one login, are refused: the file would mean something
 * else. Tags, groups, hosts, CIDRs and autogroups are written as they are.
 *
 * Node addresses are not carried over: nodes that log in to the service get
 * new 100.x addresses, so a `hosts` entry naming a tailnet address, or a
 * fleet with other address ranges, is warned about.
 */
import { EXIT_ROUTES } from "../../contract/constants.ts";
import { diag } from "../diagnostics.ts";
import type { Diagnostic, FleetSystem } from "../types.ts";
import { parseAlias, parseDestination } from "./alias.ts";
import { fleetPolicyNodes, fleetUsers } from "./fleet.ts";
import { contains, fromPrefixStrings, parsePrefix } from "./ipset.ts";
import { evaluateReachability } from "./reachability.ts";
import { renderPolicyHuJson } from "./render.ts";
import type { PolicyNode } from "./resolve.ts";
import type { AutoApprovers, Policy } from "./schema.ts";
import { runSshTests } from "./sshtests.ts";
import { runPolicyTests } from "./tests.ts";

/** fleet.yaml `tailscaleSaas`: how headscale users become Tailscale logins. */
export interface SaasLogins {
  /** `alice@` becomes `alice@<loginDomain>` ("" = no default). */
  loginDomain: string;
  /** headscale user name -> Tailscale login, for users whose login is elsewhere (`bob: bob@gmail.com`, `carol: carol@github`). */
  logins: Record<string, string>;
}

export interface SaasExport {
  /** The policy file's text (HuJSON with a header comment); "" when there are errors. */
  text: string;
  /** The mapped policy as data (autoApprovers merged: the service has no hosts to derive them from). */
  policy: Policy;
  /** headscale user name -> login, for every user the policy or the fleet's nodes name. */
  logins: Record<string, string>;
  diagnostics: Diagnostic[];
}

const TAILNET = fromPrefixStrings(["100.64.0.0/10", "fd7a:115c:a1e0::/48"]);
const DEFAULT_V4 = "100.64.0.0/10";
const DEFAULT_V6 = "fd7a:115c:a1e0::/48";

/** The login a headscale user token (`alice@`, `alice@example.com`) maps to, or null. */
export function loginOf(token: string, map: SaasLogins): string | null {
  const name = token.replace(/@$/, "");
  if (map.logins[name] !== undefined) return map.logins[name];
  if (name.includes("@")) return name; // already a login (an OIDC user's e-mail)
  return map.loginDomain ? `${name}@${map.loginDomain}` : null;
}

/**
 * The fleet's policy in the dialect of Tailscale's admin console.
 * `file` is fleet.yaml's path (for diagnostics), `prefixes` the fleet's ranges.
 */
export function saasPolicy(
  fleet: Pick<FleetSystem, "policy" | "autoApprovers" | "users">,
  map: SaasLogins,
  file: string,
  prefixes: { v4: string; v6: string } = { v4: DEFAULT_V4, v6: DEFAULT_V6 },
): SaasExport {
  const src = (fleet.policy ?? {}) as Policy;
  const out: Diagnostic[] = [];
  const used = new Map<string, string>(); // name -> login
  const missing = new Set<string>();

  const user = (token: string, path: string): string => {
    const login = loginOf(token, map);
    const name = token.replace(/@$/, "");
    if (login === null) {
      if (!missing.has(name))
        out.push(
          diag(file, path, `a Tailscale login (an e-mail such as ${name}@example.com) for the headscale user ${name}`,
            `${JSON.stringify(token)}, and neither tailscaleSaas.loginDomain nor tailscaleSaas.logins.${name} is set`,
            `set tailscaleSaas.loginDomain: <your domain> in fleet.yaml, or tailscaleSaas.logins: {${name}: ${name}@<domain>}`),
        );
      missing.add(name);
      return token;
    }
    used.set(name, login);
    return login;
  };
  /** An alias: users mapped, everything else as written. */
  const alias = (s: string, path: string) => {
    const a = parseAlias(s);
    return a.ok && a.value.kind === "user" ? user(s, path) : s;
  };
  /** `alias:ports`. */
  const dest = (s: string, path: string) => {
    const d = parseDestination(s);
    if (!d.ok || d.value.alias.kind !== "user") return s;
    return `${user(d.value.alias.text, path)}:${d.value.portsText}`;
  };
  // Stryker disable next-line OptionalChaining: every call passes a list (rule fields the schema requires, or ones checked first)
  const list = (xs: string[] | undefined, path: string, f = alias) => xs?.map((x, i) => f(x, `${path}[${i}]`));

  const p: Policy = {};
  if (src.groups) p.groups = Object.fromEntries(Object.entries(src.groups).map(([g, m]) => [g, list(m, `policy.groups["${g}"]`)!]));
  if (src.tagOwners) p.tagOwners = Object.fromEntries(Object.entries(src.tagOwners).map(([t, m]) => [t, list(m, `policy.tagOwners["${t}"]`)!]));
  if (src.hosts) {
    p.hosts = { ...src.hosts };
    for (const [name, value] of Object.entries(src.hosts)) {
      const pr = parsePrefix(value);
      if (pr && contains(TAILNET, pr.lo) && contains(TAILNET, pr.hi))
        out.push(
          diag(file, `policy.hosts.${name}`, "an address that stays when nodes move to Tailscale's service", `${value}, a tailnet address: nodes get new 100.x addresses when they log in to the service`,
            `name the node by a tag instead (tag:x), or set the host's new address after the move`, "warning"),
        );
    }
  }
  if (src.acls)
    p.acls = src.acls.map((r, i) => ({ ...r, src: list(r.src, `policy.acls[${i}].src`)!, dst: list(r.dst, `policy.acls[${i}].dst`, dest)! }));
  if (src.grants)
    p.grants = src.grants.map((r, i) => ({ ...r, src: list(r.src, `policy.grants[${i}].src`)!, dst: list(r.dst, `policy.grants[${i}].dst`)! }));
  if (src.ssh)
    p.ssh = src.ssh.map((r, i) => ({ ...r, src: list(r.src, `policy.ssh[${i}].src`)!, dst: list(r.dst, `policy.ssh[${i}].dst`)! }));
  // The service has no hosts to derive approvers from: the hand-written ones and the ones the hosts imply, merged.
  const approvers = mergedApprovers(src.autoApprovers, fleet.autoApprovers);
  const aa: AutoApprovers = {
    routes: Object.fromEntries(Object.entries(approvers.routes).map(([c, o]) => [c, list(o, `policy.autoApprovers.routes["${c}"]`)!])),
    exitNode: list(approvers.exitNode, "policy.autoApprovers.exitNode")!,
  };
  if (Object.keys(aa.routes).length || aa.exitNode.length)
    p.autoApprovers = { ...(Object.keys(aa.routes).length ? { routes: aa.routes } : {}), ...(aa.exitNode.length ? { exitNode: aa.exitNode } : {}) };
  if (src.nodeAttrs) p.nodeAttrs = src.nodeAttrs.map((r, i) => ({ ...r, target: list(r.target, `policy.nodeAttrs[${i}].target`)! }));
  if (src.tests)
    p.tests = src.tests.map((t, i) => ({
      ...t,
      src: alias(t.src, `policy.tests[${i}].src`),
      ...(t.accept ? { accept: list(t.accept, `policy.tests[${i}].accept`, dest) } : {}),
      ...(t.deny ? { deny: list(t.deny, `policy.tests[${i}].deny`, dest) } : {}),
    }));
  if (src.sshTests) p.sshTests = src.sshTests.map((t, i) => ({ ...t, src: alias(t.src, `policy.sshTests[${i}].src`), dst: list(t.dst, `policy.sshTests[${i}].dst`)! }));
  if (src.randomizeClientPort !== undefined) p.randomizeClientPort = src.randomizeClientPort;

  // Every user that owns a node needs a login too, or its nodes have no owner there.
  fleet.users.forEach((u, i) => user(`${u.replace(/@$/, "")}@`, `users[${i}]`));

  // Two headscale users on one login would be one Tailscale user.
  const byLogin = new Map<string, string[]>();
  for (const [name, login] of used) byLogin.set(login.toLowerCase(), [...(byLogin.get(login.toLowerCase()) ?? []), name]);
  for (const [login, names] of byLogin)
    if (names.length > 1)
      out.push(
        diag(file, `tailscaleSaas.logins`, "one Tailscale login per headscale user", `${names.join(" and ")} all map to ${login}`, `give each of ${names.join(", ")} its own login in tailscaleSaas.logins`),
      );
  for (const [name, login] of Object.entries(map.logins)) {
    if (!/^[^@\s]+@[^@\s]+$/.test(login))
      out.push(diag(file, `tailscaleSaas.logins.${name}`, "a Tailscale login: name@domain (alice@example.com, alice@github)", JSON.stringify(login), `write ${name}'s login as it appears in the admin console's Users page`));
    if (!used.has(name))
      out.push(diag(file, `tailscaleSaas.logins.${name}`, "a headscale user of this fleet (fleet.yaml users) or one the policy names", `${JSON.stringify(name)}, which neither names`, `remove it, or add ${name} to users`, "warning"));
  }
  if (prefixes.v4 !== DEFAULT_V4 || prefixes.v6 !== DEFAULT_V6)
    out.push(
      diag(file, "prefixes", `the service's ranges (${DEFAULT_V4}, ${DEFAULT_V6})`, `v4 ${prefixes.v4}, v6 ${prefixes.v6}`,
        "nodes get addresses from the service's own ranges after the move: rules written with addresses of these ranges will not match them (an IP pool in nodeAttrs can narrow the v4 range)", "warning"),
    );

  const errors = out.some((d) => d.severity === "error");
  const text = errors ? "" : renderSaas(p);
  return { text, policy: p, logins: Object.fromEntries([...used].sort(([a], [b]) => a.localeCompare(b))), diagnostics: out };
}

function renderSaas(p: Policy): string {
  const body = renderPolicyHuJson(p).split("\n").filter((l) => !l.startsWith("//")).join("\n");
  return [
    "// Tailscale policy file, generated by meshfleet from hosts/<stack>/fleet.yaml (policy, users, tailscaleSaas).",
    "// Paste it into the admin console (Access controls, JSON editor); the console runs its tests on save.",
    "// Users are Tailscale logins; the autoApprovers include the ones meshfleet derives from the hosts' routes.",
    body.trimStart(),
  ].join("\n");
}

function mergedApprovers(hand: Policy["autoApprovers"], generated: AutoApprovers): AutoApprovers {
  const routes = new Map<string, Set<string>>();
  for (const r of [hand?.routes ?? {}, generated.routes]) for (const [c, o] of Object.entries(r)) routes.set(c, new Set([...(routes.get(c) ?? []), ...o]));
  return {
    routes: Object.fromEntries([...routes].sort(([a], [b]) => a.localeCompare(b)).map(([c, o]) => [c, [...o].sort()])),
    exitNode: [...new Set([...(hand?.exitNode ?? []), ...generated.exitNode])].sort(),
  };
}

/** One line of the comparison: a test or an allowed pair, with each side's verdict. */
export interface SaasComparisonLine {
  what: "test" | "sshTest" | "reach";
  line: string;
  headscale: string;
  saas: string;
}

export interface SaasComparison {
  /** Every test line with both verdicts, then the pairs whose access differs. */
  lines: SaasComparisonLine[];
  differences: SaasComparisonLine[];
  /** Test lines that pass under both. */
  testsPassingBoth: number;
  testLines: number;
  pairs: number;
}

/**
 * What the mesh allows under the headscale policy and under the SaaS file,
 * on the same nodes (the SaaS side's users are the logins, its routes
 * approved by its own autoApprovers), evaluated by the same evaluator: every
 * `tests`/`sshTests` line, and every (source, destination) pair's access.
 */
export function compareSaas(fleet: FleetSystem, exp: SaasExport): SaasComparison {
  const hsPolicy = (fleet.policy ?? {}) as Policy;
  const hsUsers = fleetUsers(fleet);
  const hsNodes = fleetPolicyNodes(fleet);
  const login = (u: string) => exp.logins[u] ?? u;
  const saasUsers = hsUsers.map(login);
  const advertised = new Map(
    // Stryker disable next-line ArrayDeclaration: a string that is no prefix is never approved (approvedUnder)
    Object.values(fleet.hosts).map((h) => [h.name, [...h.tailscale.advertiseRoutes, ...(h.tailscale.advertiseExitNode ? EXIT_ROUTES : [])]]),
  );
  const saasNodes: PolicyNode[] = hsNodes.map((n) => {
    // Stryker disable next-line ConditionalExpression: login(undefined) looks up logins[undefined], which is undefined
    const user = n.user !== undefined ? login(n.user) : undefined;
    // Stryker disable next-line ArrayDeclaration: every node is a fleet host, so `advertised` has it
    return { ...n, user, approvedRoutes: approvedUnder(advertised.get(n.name) ?? [], n.tags, user, exp.policy) };
  });

  const lines: SaasComparisonLine[] = [];
  const hsT = runPolicyTests(hsNodes, hsPolicy, { users: hsUsers });
  const saT = runPolicyTests(saasNodes, exp.policy, { users: saasUsers });
  let testLines = 0;
  let passing = 0;
  hsT.results.forEach((r, k) => {
    const s = saT.results[k];
    const suffix = r.proto ? ` (${r.proto})` : "";
    if (r.lines.length === 0 || s.lines.length === 0) {
      testLines++;
      lines.push({ what: "test", line: `${r.path}: ${r.src}${suffix}`, headscale: r.errors.join("; ") || "ok", saas: s.errors.join("; ") || "ok" });
      return;
    }
    r.lines.forEach((l, i) => {
      const o = s.lines[i];
      testLines++;
      if (l.passed && o?.passed) passing++;
      lines.push({ what: "test", line: `${r.path}: ${r.src} -> ${l.dst}${suffix} expected ${l.expect}`, headscale: l.got, saas: o?.got ?? "missing" });
    });
  });
  const hsS = runSshTests(hsNodes, hsPolicy, { users: hsUsers });
  const saS = runSshTests(saasNodes, exp.policy, { users: saasUsers });
  hsS.results.forEach((r, k) => {
    const s = saS.results[k];
    r.lines.forEach((l, i) => {
      const o = s?.lines[i];
      testLines++;
      if (l.passed && o?.passed) passing++;
      lines.push({ what: "sshTest", line: `${r.path}: ${r.src} -> ${l.user}@${l.dst} expected ${l.expect}`, headscale: l.passed ? "as expected" : l.failure, saas: o ? (o.passed ? "as expected" : o.failure) : "missing" });
    });
    if (r.errors.length || s?.errors.length)
      lines.push({ what: "sshTest", line: `${r.path}: ${r.src}`, headscale: r.errors.join("; ") || "ok", saas: s?.errors.join("; ") || "ok" });
  });
  // Who reaches what: the same pairs with the same access, whatever the rules' text.
  const reach = (nodes: PolicyNode[], policy: Policy, users: string[]) => {
    const m = new Map<string, string>();
    for (const pr of evaluateReachability(nodes, policy, { users }).pairs()) m.set(`${pr.src} -> ${pr.dst}`, pr.spec);
    return m;
  };
  const a = reach(hsNodes, hsPolicy, hsUsers);
  const b = reach(saasNodes, exp.policy, saasUsers);
  for (const key of [...new Set([...a.keys(), ...b.keys()])].sort())
    if (a.get(key) !== b.get(key)) lines.push({ what: "reach", line: key, headscale: a.get(key) ?? "denied", saas: b.get(key) ?? "denied" });
  const differences = lines.filter((l) => l.headscale !== l.saas);
  return { lines, differences, testsPassingBoth: passing, testLines, pairs: a.size };
}

/** The routes of `advertised` an autoApprover of `policy` covers for this node (its tags, else its login and its groups). */
function approvedUnder(advertised: string[], tags: string[], login: string | undefined, policy: Policy): string[] {
  const owners = new Set<string>(tags.length ? tags : login ? [login] : []);
  if (!tags.length && login) for (const [g, m] of Object.entries(policy.groups ?? {})) if (m.includes(login)) owners.add(g);
  const aa = policy.autoApprovers ?? {};
  return advertised.filter((route) => {
    const rp = parsePrefix(route);
    if (!rp) return false;
    if (rp.bits === 0) return (aa.exitNode ?? []).some((o) => owners.has(o));
    return Object.entries(aa.routes ?? {}).some(([c, who]) => {
      const p = parsePrefix(c);
      return p !== null && p.v6 === rp.v6 && p.lo <= rp.lo && rp.hi <= p.hi && who.some((o) => owners.has(o));
    });
  });
}
