/**
 * The fleet as the policy sees it: one node per host running tailscale,
 * owned by its tags or by the user its pre-auth key is for, with the routes
 * it advertises counted as approved only when an autoApprover covers them
 * for this node (otherwise they wait for a manual `nodes approve-routes`,
 * and reachability through them is not assumed). Addresses are the stable
 * stand-ins of synthetic.ts until nodes have joined.
 */
import type { Diagnostic, FleetSystem } from "../types.ts";
import { parsePrefix } from "./ipset.ts";
import { runPolicyTests } from "./tests.ts";
import { syntheticIps } from "./synthetic.ts";
import type { PolicyNode } from "./resolve.ts";
import type { Policy } from "./schema.ts";

export function fleetPolicyNodes(fleet: FleetSystem): PolicyNode[] {
  const policy = (fleet.policy ?? {}) as Policy;
  const nodes: PolicyNode[] = [];
  for (const h of Object.values(fleet.hosts).sort((a, b) => a.name.localeCompare(b.name))) {
    if (!h.tailscale.enable) continue;
    const key = fleet.preAuthKeys.find((k) => k.host === h.name);
    const tags = h.tailscale.tags.length > 0 ? h.tailscale.tags : (key?.tags ?? []);
    const user = key?.user || undefined;
    const owners = new Set<string>(tags.length > 0 ? tags : user ? [`${user}@`] : []);
    if (tags.length === 0 && user) {
      for (const [g, members] of Object.entries(policy.groups ?? {})) if (members.includes(`${user}@`)) owners.add(g);
    }
    const approved = (route: string) => {
      const rp = parsePrefix(route);
      if (!rp) return false;
      const isExit = rp.bits === 0;
      if (isExit) return fleet.autoApprovers.exitNode.some((o) => owners.has(o));
      return Object.entries(fleet.autoApprovers.routes).some(([cidr, who]) => {
        const p = parsePrefix(cidr);
        return p !== null && p.v6 === rp.v6 && p.lo <= rp.lo && rp.hi <= p.hi && who.some((o) => owners.has(o));
      });
    };
    const advertised = [...h.tailscale.advertiseRoutes, ...(h.tailscale.advertiseExitNode ? ["0.0.0.0/0", "::/0"] : [])];
    nodes.push({ name: h.name, user: tags.length > 0 ? undefined : user, tags, ips: [], approvedRoutes: advertised.filter(approved) });
  }
  return syntheticIps(nodes);
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
