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
import { tailnetRulesForHost } from "./enforce.ts";
import { runPolicyTests } from "./tests.ts";
import { syntheticIps } from "./synthetic.ts";
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
}

type AutoApprovers = { routes: Record<string, string[]>; exitNode: string[] };

/** The policy's nodes for these hosts: one definition, used by evaluation, `check`, `plan` and the lab. */
export function policyNodesOf(hosts: FleetNode[], policy: Policy, autoApprovers: AutoApprovers): PolicyNode[] {
  const nodes: PolicyNode[] = [];
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
      return Object.entries(autoApprovers.routes).some(([cidr, who]) => {
        const p = parsePrefix(cidr);
        return p !== null && p.v6 === rp.v6 && p.lo <= rp.lo && rp.hi <= p.hi && who.some((o) => owners.has(o));
      });
    };
    const advertised = [...h.routes, ...(h.exitNode ? EXIT_ROUTES : [])];
    nodes.push({ name: h.name, user: tags.length > 0 ? undefined : user, tags, ips: [], approvedRoutes: advertised.filter(approved) });
  }
  return syntheticIps(nodes);
}

/** The evaluated fleet's nodes (hosts running tailscale; the user is the one of its pre-auth key). */
export function fleetPolicyNodes(fleet: FleetSystem): PolicyNode[] {
  const hosts: FleetNode[] = Object.values(fleet.hosts)
    .filter((h) => h.tailscale.enable)
    .map((h) => {
      const key = fleet.preAuthKeys.find((k) => k.host === h.name);
      const tags = h.tailscale.tags.length > 0 ? h.tailscale.tags : (key?.tags ?? []);
      return { name: h.name, tags, user: key?.user ?? "", routes: h.tailscale.advertiseRoutes, exitNode: h.tailscale.advertiseExitNode };
    });
  return policyNodesOf(hosts, (fleet.policy ?? {}) as Policy, fleet.autoApprovers);
}

/**
 * Host-side enforcement for one host: its tailnet rules, each set as the
 * literal CIDRs it holds (LANs, `hosts:` entries) and the fleet hosts whose
 * live tailnet addresses the agent adds. Members come from the policy
 * model's own nodes; the stand-in addresses never leave it.
 */
export function hostEnforcement(host: string, nodes: PolicyNode[], policy: Policy, opts: { users?: string[] } = {}) {
  const r = tailnetRulesForHost(host, nodes, policy, { ...opts, members: true });
  const sets: Record<string, string[]> = {};
  // Addresses inside the tailnet's ranges stand for nodes; the rest (LANs, `hosts:` entries) are literal.
  for (const [name, cidrs] of Object.entries(r.sets)) sets[name] = cidrs.filter((c) => !insideTailnet(c));
  return { tailnet: r.tailnet, sets, setMembers: r.setMembers ?? {} };
}

const TAILNET_RANGES = fromPrefixStrings(["100.64.0.0/10", "fd7a:115c:a1e0::/48"]);
function insideTailnet(c: string): boolean {
  const p = parsePrefix(c);
  return !!p && contains(TAILNET_RANGES, p.lo) && contains(TAILNET_RANGES, p.hi);
}

/** The policy's `tests` on the fleet (what `meshfleet check` runs). */
export function runFleetTests(fleet: FleetSystem): { results: { line: string; pass: boolean; reason: string }[]; diagnostics: Diagnostic[] } {
  const policy = (fleet.policy ?? {}) as Policy;
  const report = runPolicyTests(fleetPolicyNodes(fleet), policy, { users: fleet.users.map((u) => u.replace(/@$/, "")) });
  const file = `${fleet.dir.replace(/\/$/, "")}/fleet.yaml`;
  const results: { line: string; pass: boolean; reason: string }[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const r of report.results) {
    const suffix = r.proto ? ` (${r.proto})` : "";
    if (r.lines.length === 0) {
      results.push({ line: `${r.src}${suffix}`, pass: false, reason: r.errors.join("; ") });
      diagnostics.push({ severity: "error", file, path: `policy.${r.path}.src`, expected: "a source that resolves to nodes", found: r.errors.join("; "), fix: "name a user, group, tag or host of this fleet" });
    }
    r.lines.forEach((l, i) => {
      const line = `${r.src} -> ${l.dst}${suffix}: expected ${l.expect}`;
      results.push({ line, pass: l.passed, reason: l.reason });
      if (!l.passed) {
        const idx = l.expect === "ALLOWED" ? i : i - (r.lines.filter((x) => x.expect === "ALLOWED").length);
        diagnostics.push({
          severity: "error", file, path: `policy.${r.path}.${l.expect === "ALLOWED" ? "accept" : "deny"}[${idx}]`,
          expected: l.expect, found: `${l.got}: ${l.reason}`,
          fix: l.expect === "ALLOWED" ? `add an acl allowing ${r.src} to ${l.dst}, or move it to deny` : `narrow the rule that allows it, or move it to accept`,
        });
      }
    });
  }
  return { results, diagnostics };
}
