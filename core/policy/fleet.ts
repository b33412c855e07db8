/**
 * The fleet as the policy sees it: one node per host running tailscale,
 * owned by its tags or by the user its pre-auth key is for, with the routes
 * it advertises counted as approved only when an autoApprover covers them
 * for this node (otherwise they wait for a manual `nodes approve-routes`,
 * and reachability through them is not assumed). Addresses are the stable
 * stand-ins of synthetic.ts until nodes have joined.
 */
import { EXIT_ROUTES } from "../../contract/constants.ts";
import type { Diagnostic, FleetSystem } from "../types.ts";
import { contains, fromPrefixStrings, parsePrefix } from "./ipset.ts";
import { compiledForHosts } from "./enforce.ts";
import { runPolicyTests, type PolicyTestsReport } from "./tests.ts";
import { runSshTests } from "./sshtests.ts";
import { evaluateReachability } from "./reachability.ts";
import { syntheticIps } from "./synthetic.ts";
import type { LiveNode } from "./live.ts";
import type { PolicyNode } from "./resolve.ts";
import type { Policy } from "./schema.ts";

/** A tailnet node as evaluation knows it (a host's facts). */
export interface FleetNode {
  name: string;
  tags: string[];
  /** The user its pre-auth key is for; "" when none. */
  user: string;
  /** Subnet routes it advertises. */
  routes: string[];
  exitNode: boolean;
  /** Its name in the tailnet (tailscale.hostname) when it differs from the host's; matched against live nodes. */
  nodeName?: string;
}

type AutoApprovers = { routes: Record<string, string[]>; exitNode: string[] };

/** The policy's nodes for these hosts: one definition, used by evaluation, `check`, `plan` and the lab. */
export function policyNodesOf(hosts: FleetNode[], policy: Policy, autoApprovers: AutoApprovers, live?: LiveNode[]): PolicyNode[] {
  const nodes: PolicyNode[] = [];
  // Parsed once, not once per route of each host (10,000 hosts: a million parses).
  const approverRoutes = Object.entries(autoApprovers.routes).map(([cidr, who]) => ({ p: parsePrefix(cidr), who }));
  for (const h of [...hosts].sort((a, b) => a.name.localeCompare(b.name))) {
    const tags = h.tags;
    const user = h.user || undefined;
    const owners = new Set<string>(tags.length > 0 ? tags : user ? [`${user}@`] : []);
    if (tags.length === 0 && user) {
      for (const [g, members] of Object.entries(policy.groups ?? {})) if (members.includes(`${user}@`)) owners.add(g);
    }
    const approved = (route: string) => {
      const rp = parsePrefix(route);
      if (!rp) return false;
      const isExit = rp.bits === 0;
      if (isExit) return autoApprovers.exitNode.some((o) => owners.has(o));
      return approverRoutes.some(({ p, who }) => p !== null && p.v6 === rp.v6 && p.lo <= rp.lo && rp.hi <= p.hi && who.some((o) => owners.has(o)));
    };
    const advertised = [...h.routes, ...(h.exitNode ? EXIT_ROUTES : [])];
    nodes.push({ name: h.name, user: tags.length > 0 ? undefined : user, tags, ips: [], approvedRoutes: advertised.filter(approved) });
  }
  if (live) return syntheticIps(withLiveNodes(nodes, new Map(hosts.map((h) => [h.name, h.nodeName ?? h.name])), live));
  return syntheticIps(nodes);
}

/**
 * The fleet's nodes on the coordinator's real addresses: a host that has joined
 * takes its node's addresses (matched by tailnet name: any of a node's names,
 * the newest registration first, as the deploy's route approval and key
 * renewal pick it (provider/headscale-cli.ts nodeOfHost), then the given
 * name, then list order; else a name in another case); nodes that are no
 * fleet host join as they are (their user, tags and approved routes). Hosts
 * not joined keep `ips: []` (stand-ins are chosen later, away from the real
 * addresses).
 */
export function withLiveNodes(nodes: PolicyNode[], tailnetName: Map<string, string>, live: LiveNode[]): PolicyNode[] {
  const used = new Set<LiveNode>();
  // A person's device that logged in through OpenID Connect is never a fleet host, whatever name it
  // reports: it joins below as a node of its own.
  // Indexed by each name and by each name in lower case: a scan per host was quadratic on a large tailnet.
  const byName = new Map<string, LiveNode[]>();
  const byLower = new Map<string, LiveNode[]>();
  const index = (m: Map<string, LiveNode[]>, k: string, l: LiveNode) => {
    const xs = m.get(k);
    if (!xs) m.set(k, [l]);
    else if (xs[xs.length - 1] !== l) xs.push(l);
  };
  for (const l of live) {
    if (l.oidc) continue;
    for (const n of l.names) {
      index(byName, n, l);
      index(byLower, n.toLowerCase(), l);
    }
  }
  const find = (want: string) => {
    // After a reinstall headscale holds the old registration and the new one (its given name suffixed):
    // the newest is the host's.
    let best: LiveNode | undefined;
    for (const l of byName.get(want) ?? []) {
      if (used.has(l)) continue;
      if (!best || (l.id ?? -1) > (best.id ?? -1) || ((l.id ?? -1) === (best.id ?? -1) && l.names[0] === want && best.names[0] !== want)) best = l;
    }
    if (best) return best;
    // A name in another case: the newest too, else the first in the list.
    for (const l of byLower.get(want.toLowerCase()) ?? []) if (!used.has(l) && (!best || (l.id ?? -1) > (best.id ?? -1))) best = l;
    return best;
  };
  const out: PolicyNode[] = nodes.map((n) => {
    const l = find(tailnetName.get(n.name) ?? n.name);
    if (!l) return { ...n, ips: [] };
    used.add(l);
    return { ...n, ips: [...l.ips] };
  });
  const names = new Set(out.map((n) => n.name));
  for (const l of live) {
    if (used.has(l)) continue;
    let name = l.name;
    for (let k = 2; names.has(name); k++) name = `${l.name}#${k}`;
    names.add(name);
    out.push({ name, user: l.tags.length > 0 ? undefined : l.user, tags: [...l.tags], ips: [...l.ips], approvedRoutes: [...l.approvedRoutes] });
  }
  return out;
}

/** The same nodes on adjacent addresses in name order (headscale's sequential allocation from 100.64.0.1). */
export function adjacentLayout(nodes: PolicyNode[]): PolicyNode[] {
  return nodes.map((n, i) => {
    const k = i + 1;
    const v4 = 100 * 2 ** 24 + 64 * 2 ** 16 + k;
    return { ...n, ips: [[v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255].join("."), `fd7a:115c:a1e0::${(k >>> 16) ? `${(k >>> 16).toString(16)}:` : ""}${(k & 0xffff).toString(16)}`] };
  });
}

/** The evaluated fleet's nodes (hosts running tailscale; the user is the one of its pre-auth key). */
export function fleetPolicyNodes(fleet: FleetSystem, live?: LiveNode[]): PolicyNode[] {
  // Each host's first key, by name: a find per host was quadratic (10,000 hosts: 50 million comparisons).
  const keyOf = new Map<string, FleetSystem["preAuthKeys"][number]>();
  for (const k of fleet.preAuthKeys) if (!keyOf.has(k.host)) keyOf.set(k.host, k);
  const hosts: FleetNode[] = Object.values(fleet.hosts)
    .filter((h) => h.tailscale.enable)
    .map((h) => {
      const key = keyOf.get(h.name);
      const tags = h.tailscale.tags.length > 0 ? h.tailscale.tags : (key?.tags ?? []);
      return { name: h.name, tags, user: key?.user ?? "", routes: h.tailscale.advertiseRoutes, exitNode: h.tailscale.advertiseExitNode, nodeName: h.tailscale.hostname || h.name };
    });
  return policyNodesOf(hosts, (fleet.policy ?? {}) as Policy, fleet.autoApprovers, byPolicyName(fleet, live));
}

/**
 * The user names the policy may use: fleet.yaml's users (meshfleet creates them) and its oidcUsers,
 * people who log in through OpenID Connect, named by e-mail (their first login creates them).
 */
export function policyUserNames(f: { users: string[]; oidcUsers?: string[] }): string[] {
  const users = f.users.map((u) => u.replace(/@$/, ""));
  for (const e of f.oidcUsers ?? []) if (!users.includes(e)) users.push(e);
  return users;
}

/** Live nodes of the fleet's OIDC people owned by their e-mail, the token the policy names them by (headscale matches it). */
function byPolicyName(fleet: Pick<FleetSystem, "oidcUsers">, live?: LiveNode[]): LiveNode[] | undefined {
  const oidc = new Set(fleet.oidcUsers ?? []);
  if (!live || oidc.size === 0) return live;
  return live.map((l) => (l.email !== undefined && oidc.has(l.email) ? { ...l, user: l.email } : l));
}

/**
 * The OIDC people (fleet.yaml oidcUsers) the policy lets reach a host that enforces the policy itself
 * (firewall.trustTailnet: false), or what it routes: such a host admits only the fleet's own nodes'
 * addresses, on its input chain and on what it forwards, so it drops theirs. Worked out as the
 * coordinator's lockout check is, on the enforcing hosts (with their routes) and a device of each
 * person; one entry per host, with the first rule that lets one of them in.
 */
export function oidcReachingEnforced(policy: Policy, enforced: FleetNode[], oidcUsers: string[], users: string[]): { host: string; people: string[]; why: string }[] {
  if (!enforced.length || !oidcUsers.length) return [];
  const device = (e: string) => `\u0000device of ${e}`;
  const nodes = syntheticIps([
    ...enforced.map((h): PolicyNode => ({
      name: h.name, user: h.tags.length ? undefined : h.user || undefined, tags: h.tags, ips: [], approvedRoutes: [...h.routes, ...(h.exitNode ? EXIT_ROUTES : [])],
    })),
    ...oidcUsers.map((e): PolicyNode => ({ name: device(e), user: e, tags: [], ips: [], approvedRoutes: [] })),
  ]);
  const reach = evaluateReachability(nodes, policy, { users });
  const index = new Map(reach.nodes.map((n, i) => [n, i]));
  // Each host's targets: itself, each route through it, the internet through it.
  const targetsOf = new Map<string, number[]>();
  reach.targets.forEach((t, i) => targetsOf.set(t.node, [...(targetsOf.get(t.node) ?? []), i]));
  const out: { host: string; people: string[]; why: string }[] = [];
  for (const h of enforced) {
    const people: string[] = [];
    let why = "";
    for (const e of oidcUsers) {
      const t = (targetsOf.get(h.name) ?? []).find((x) => reach.access(index.get(device(e))!, x) !== null);
      if (t === undefined) continue;
      people.push(e);
      if (!why) why = `${reach.targets[t].id}: ${reach.explain(device(e), reach.targets[t].id).why}`;
    }
    if (people.length) out.push({ host: h.name, people, why });
  }
  return out;
}

/** The users the policy is evaluated with: the fleet's (policyUserNames), and with live nodes the users owning them. */
export function fleetUsers(fleet: FleetSystem, live?: LiveNode[]): string[] {
  const users = policyUserNames(fleet);
  for (const l of byPolicyName(fleet, live) ?? []) if (l.user !== undefined && l.tags.length === 0 && !users.includes(l.user)) users.push(l.user);
  return users;
}

/**
 * Host-side enforcement for one host: its tailnet rules, each set as the
 * literal CIDRs it holds (LANs, `hosts:` entries) and the fleet hosts whose
 * live tailnet addresses the agent adds. Members come from the policy
 * model's own nodes; the stand-in addresses never leave it.
 */
export function hostEnforcement(
  host: string, nodes: PolicyNode[], policy: Policy, opts: { users?: string[]; routes?: string[]; exitNode?: boolean } = {},
  compiled: ReturnType<typeof compiledForHosts> = compiledForHosts(nodes, policy, opts.users),
) {
  // What the host routes, as git says (approved or not): an exit node routes everything.
  const routes = [...(opts.routes ?? []), ...(opts.exitNode ? EXIT_ROUTES : [])];
  const r = compiled.rulesFor(host, { members: true, routes });
  const sets: Record<string, string[]> = {};
  // Addresses inside the tailnet's ranges stand for nodes; the rest (LANs, `hosts:` entries) are literal.
  for (const [name, cidrs] of Object.entries(r.sets)) {
    // A set's list is shared by the hosts compiledForHosts answers: filtered once, a copy for each host.
    let literal = literalOf.get(cidrs);
    if (!literal) literalOf.set(cidrs, (literal = cidrs.filter((c) => !insideTailnet(c))));
    sets[name] = [...literal];
  }
  return { tailnet: r.tailnet, sets, setMembers: r.setMembers ?? {}, ...(r.routed ? { routed: r.routed } : {}) };
}

/** A set's addresses outside the tailnet's ranges, by the set's list (hostEnforcement). */
const literalOf = new WeakMap<string[], string[]>();
const TAILNET_RANGES = fromPrefixStrings(["100.64.0.0/10", "fd7a:115c:a1e0::/48"]);
function insideTailnet(c: string): boolean {
  const p = parsePrefix(c);
  return !!p && contains(TAILNET_RANGES, p.lo) && contains(TAILNET_RANGES, p.hi);
}

export interface FleetTestsOptions {
  /** The coordinator's nodes (`headscale nodes list --output json`): evaluate on their real addresses. */
  live?: LiveNode[];
  /** Where they came from, for messages. */
  liveFile?: string;
}

/**
 * The policy's `tests` and `sshTests` on the fleet (what `meshfleet check` runs).
 * Without live nodes the addresses are stand-ins; a `tests` line whose verdict
 * changes when the same nodes sit on adjacent addresses (headscale merges a
 * source's adjacent addresses into one prefix, and a prefix passes when any
 * rule overlaps it) gets a warning, since the live verdict then depends on the
 * addresses headscale hands out.
 */
export function runFleetTests(fleet: FleetSystem, opts: FleetTestsOptions = {}): { results: { line: string; pass: boolean; reason: string }[]; diagnostics: Diagnostic[] } {
  const policy = (fleet.policy ?? {}) as Policy;
  const users = fleetUsers(fleet, opts.live);
  const nodes = fleetPolicyNodes(fleet, opts.live);
  const report = runPolicyTests(nodes, policy, { users });
  const file = `${fleet.dir.replace(/\/$/, "")}/fleet.yaml`;
  const results: { line: string; pass: boolean; reason: string }[] = [];
  const diagnostics: Diagnostic[] = [];
  // Stryker disable next-line ObjectLiteral: without the fleet's users the resolver takes the nodes' own; that changes only which names fail to resolve, and such a line is an ERROR on both layouts, never compared
  const other = opts.live || (policy.tests ?? []).length === 0 ? null : runPolicyTests(adjacentLayout(nodes), policy, { users });
  const where = opts.live ? ` (on the coordinator's addresses from ${opts.liveFile ?? "the nodes list"})` : "";
  for (const [k, r] of report.results.entries()) {
    const suffix = r.proto ? ` (${r.proto})` : "";
    if (r.lines.length === 0) {
      results.push({ line: `${r.src}${suffix}`, pass: false, reason: r.errors.join("; ") });
      diagnostics.push({ severity: "error", file, path: `policy.${r.path}.src`, expected: "a source that resolves to nodes", found: r.errors.join("; ") + where, fix: "name a user, group, tag or host of this fleet" });
    }
    r.lines.forEach((l, i) => {
      const line = `${r.src} -> ${l.dst}${suffix}: expected ${l.expect}`;
      results.push({ line, pass: l.passed, reason: l.reason });
      const idx = l.expect === "ALLOWED" ? i : i - r.lines.filter((x) => x.expect === "ALLOWED").length;
      const path = `policy.${r.path}.${l.expect === "ALLOWED" ? "accept" : "deny"}[${idx}]`;
      if (!l.passed) {
        diagnostics.push({
          severity: "error", file, path,
          expected: l.expect, found: `${l.got}: ${l.reason}${where}`,
          fix: l.expect === "ALLOWED" ? `add an acl allowing ${r.src} to ${l.dst}, or move it to deny` : `narrow the rule that allows it, or move it to accept`,
        });
      }
      // Stryker disable next-line OptionalChaining: `other` ran the same tests, so results[k] exists whenever `other` does
      const alt = other?.results[k]?.lines[i];
      if (alt && alt.got !== l.got && alt.got !== "ERROR" && l.got !== "ERROR") {
        diagnostics.push(layoutWarning(file, path, r.src, l.dst, l.got, alt.got));
      }
    });
  }
  const ssh = runSshTests(nodes, policy, { users });
  // Stryker disable next-line OptionalChaining: called with an sshTests line's destination, always one of these nodes' names
  const tagOf = (name: string) => nodes.find((n) => n.name === name)?.tags[0] ?? "autogroup:member";
  for (const r of ssh.results) {
    const t = policy.sshTests![Number(/\[(\d+)\]/.exec(r.path)![1])];
    for (const e of r.errors) {
      results.push({ line: `ssh ${r.src}`, pass: false, reason: e });
      const path = /^dst alias/.test(e) || /destinations/.test(e) ? `policy.${r.path}.dst` : /assertions/.test(e) ? `policy.${r.path}` : `policy.${r.path}.src`;
      diagnostics.push({ severity: "error", file, path, expected: path.endsWith(".dst") ? "destinations that resolve to nodes" : path.endsWith(".src") ? "a source that resolves to nodes" : "accept, deny or check", found: e + where, fix: path.endsWith("]") ? "add accept: [root] or deny: [root]" : "name a user, group, tag or host of this fleet" });
    }
    for (const l of r.lines) {
      const verb = l.expect === "deny" ? "may not log in" : l.expect === "check" ? "logs in after a check" : "may log in";
      results.push({ line: `ssh ${r.src} -> ${l.user}@${l.dst}: ${verb}`, pass: l.passed, reason: l.failure });
      if (l.passed) continue;
      const idx = (t[l.expect] ?? []).indexOf(l.user);
      // Stryker disable next-line Regex: `.*` matches from the start anyway, so the anchor changes nothing
      const got = l.failure.replace(/^.*: expected [^,]*, got /, "");
      diagnostics.push({
        severity: "error", file, path: `policy.${r.path}.${l.expect}[${idx}]`,
        expected: l.expect === "accept" ? `${r.src} may SSH to ${l.dst} as ${l.user}` : l.expect === "deny" ? `${r.src} may not SSH to ${l.dst} as ${l.user}` : `${r.src} may SSH to ${l.dst} as ${l.user} through a check rule`,
        found: `${got} (${l.failure})${where}`,
        fix: l.expect === "accept" ? `add an ssh rule {action: accept, src: [${r.src}], dst: [${tagOf(l.dst)}], users: [${l.user}]}, or move ${l.user} to deny`
          : l.expect === "deny" ? `narrow the ssh rule that lets ${r.src} in as ${l.user}, or move ${l.user} to accept`
          : got === "ALLOWED via accept" ? `make the ssh rule for ${r.src} action: check, or move ${l.user} to accept`
          : `add an ssh rule {action: check, src: [${r.src}], dst: [${tagOf(l.dst)}], users: [${l.user}]}`,
      });
    }
  }
  return { results, diagnostics };
}

function layoutWarning(file: string, path: string, src: string, dst: string, got: string, alt: string): Diagnostic {
  return {
    severity: "warning", file, path,
    expected: `a verdict that does not depend on the nodes' addresses`,
    found: `${src} -> ${dst} is ${got} on meshfleet's stand-in addresses but ${alt} when the nodes sit on adjacent addresses (headscale merges a source's adjacent addresses into one prefix, and a prefix passes when any rule overlaps it)`,
    fix: `check against the coordinator's addresses: headscale nodes list --output json > nodes.json, then meshfleet check --nodes nodes.json`,
  };
}

export type { PolicyTestsReport };
