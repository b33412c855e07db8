/**
 * Node key expiry (fleet.yaml `nodeExpiry`, issue 15 item 5), checked where
 * the coordinator is evaluated: it sees every host's tailnet facts.
 *
 * headscale 0.29 (hscontrol/state/state.go, both registration paths) gives a
 * node `now + node.expiry` only when the node is not tagged; a tagged node
 * keeps no expiry and never expires (config-example.yaml: "Tagged nodes are
 * exempt and never expire"). There is no per-tag switch: the exemption is
 * every tag. So `exemptTags` is a statement meshfleet checks against that
 * rule: every tag a host carries must be in it (else the fleet would say a
 * tagged node expires, and it would not), and each must be a tag of the
 * policy. An untagged host that routes for others (subnet routes, exit node)
 * would take its routes down when its key expires: that is a warning.
 *
 * headscale logs and ignores a node.expiry it cannot parse ("defaulting to
 * no expiry"), and configtest passes: the schema's pattern is the only check.
 *
 * The exemption holds for nodes that register tagged (meshfleet's tagged
 * pre-auth keys) or re-authenticate with --advertise-tags (state.go clears
 * the expiry on Personal -> Tagged). A node tagged afterwards by the admin
 * (`headscale nodes tag`, SetNodeTags) keeps the expiry it had as a user's
 * node, and IsExpired does not look at tags: it still expires, unless
 * `headscale nodes expire -i ID --disable` clears it (seen with 0.29.2 in
 * test/modules/headscale-expiry.test.ts).
 */
import type { Assertion, ModuleContext, Warning } from "../core/module.ts";

export function nodeExpiryChecks(ctx: ModuleContext): { assertions: Assertion[]; warnings: Warning[] } {
  const ne = ctx.fleet.nodeExpiry ?? { after: "0", exemptTags: [] };
  const ff = ctx.fleetFile;
  const assertions: Assertion[] = [];
  const warnings: Warning[] = [];
  if (ne.after === "0") {
    warnings.push({
      when: ne.exemptTags.length > 0,
      file: ff,
      path: "nodeExpiry.exemptTags",
      expected: "exempt tags only with an expiry (nodeExpiry.after)",
      found: `${ne.exemptTags.join(", ")} with nodeExpiry.after: "0" (no key expires)`,
      fix: "set nodeExpiry.after (e.g. 180d), or remove nodeExpiry.exemptTags",
    });
    return { assertions, warnings };
  }
  const owners = ((ctx.fleet.policy ?? {}) as { tagOwners?: Record<string, unknown> }).tagOwners ?? {};
  ne.exemptTags.forEach((t, i) =>
    assertions.push({
      assertion: /^tag:[A-Za-z][A-Za-z0-9-]*$/.test(t) && t in owners,
      file: ff,
      path: `nodeExpiry.exemptTags[${i}]`,
      expected: "a tag of policy.tagOwners (tag:server)",
      found: /^tag:/.test(t) ? `${JSON.stringify(t)}, which policy.tagOwners does not define` : JSON.stringify(t),
      fix: /^tag:/.test(t) ? `add ${t} to policy.tagOwners, or remove it here` : `write it as a tag: tag:${t.replace(/^[^A-Za-z]+/, "") || "server"}`,
    }),
  );
  for (const h of Object.values(ctx.hosts).sort((a, b) => a.name.localeCompare(b.name))) {
    const t = h.facts.tailnet;
    if (!t) continue;
    for (const tag of t.tags)
      assertions.push({
        assertion: ne.exemptTags.includes(tag),
        file: h.file,
        path: "tailscale.tags",
        expected: `tags listed in nodeExpiry.exemptTags: headscale 0.29 never expires a tagged node, whatever node.expiry says`,
        found: `${tag} on ${h.name}, not in nodeExpiry.exemptTags (${ne.exemptTags.join(", ") || "empty"})`,
        fix: `add ${tag} to nodeExpiry.exemptTags in ${ff} (that is what headscale does), or take ${tag} off ${h.name}`,
      });
    const serves = t.routes.length > 0 || t.exitNode;
    warnings.push({
      when: t.tags.length === 0 && serves,
      file: h.file,
      path: "tailscale.tags",
      expected: "a tag on a host that routes for others (tagged nodes never expire)",
      found: `${h.name} joins as user ${t.user || "(none)"} and ${t.exitNode ? "is an exit node" : "advertises routes"}: its key expires ${ne.after} after it logs in, and it then drops every tunnel and its routes until someone logs it in again`,
      fix: `give it a tag (tailscale.tags: [${ne.exemptTags[0] ?? "tag:router"}]) that nodeExpiry.exemptTags lists`,
    });
  }
  return { assertions, warnings };
}
