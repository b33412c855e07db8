/**
 * A policy that fails closed. headscale 0.29 reads a policy with neither
 * `acls` nor `grants` as allow-all (hscontrol/policy/v2/filter.go:
 * `pol.ACLs == nil && pol.Grants == nil` → FilterAllowAll), while
 * Tailscale's own service denies everything; and an empty rule list has
 * meant both over headscale's versions (`grants: []` allowed all before
 * 0.29 fixed it to deny all, headscale#1602, #3211). A typo that drops the
 * rules once opened a whole tailnet (headscale#2044). So meshfleet refuses a
 * policy whose reach is decided by omission: allow-all has to be written
 * out, as `acls: [{action: accept, src: ["*"], dst: ["*:*"]}]`.
 */
import type { Diagnostic } from "../types.ts";
import type { Policy } from "./schema.ts";

/** The rule that says allow-all in so many words. */
export const EXPLICIT_ALLOW_ALL = 'acls: [{action: accept, src: ["*"], dst: ["*:*"]}]';

/**
 * Errors for a policy whose reachability is set by omission: no `acls` and
 * no `grants` (allow-all), or only empty lists (allow-all or deny-all
 * depending on the headscale version). `raw` is the policy as written (to
 * tell `policy:` missing from `policy: {}`).
 */
export function failClosedDiagnostics(policy: Policy, raw: unknown, file: string, basePath = "policy"): Diagnostic[] {
  const acls = policy.acls;
  const grants = policy.grants;
  const fix = `write the rules you mean; to allow every node everything, say so: ${basePath}.${EXPLICIT_ALLOW_ALL}`;
  if (acls === undefined && grants === undefined) {
    const written = raw !== undefined && raw !== null && !(typeof raw === "object" && Object.keys(raw as object).length === 0);
    return [{
      severity: "error",
      file,
      path: basePath,
      expected: `${basePath}.acls or ${basePath}.grants with at least one rule (a policy fails closed)`,
      found: written ? "neither acls nor grants: headscale reads that as allow-all, every node reaches every node and every advertised route" : "no policy: headscale then allows every node to reach every node and every advertised route",
      fix,
    }];
  }
  if ((acls?.length ?? 0) === 0 && (grants?.length ?? 0) === 0) {
    const which = [acls !== undefined ? "acls: []" : "", grants !== undefined ? "grants: []" : ""].filter(Boolean).join(" and ");
    return [{
      severity: "error",
      file,
      path: acls !== undefined ? `${basePath}.acls` : `${basePath}.grants`,
      expected: "at least one rule (a policy fails closed)",
      found: `${which} and no rule: headscale has read an empty list as allow-all (before 0.29, headscale#1602, #3211) and as deny-all (0.29), so the reach depends on the server's version`,
      fix,
    }];
  }
  return [];
}

/** Whether the policy lets every source reach every destination on every port (an acl `* -> *:*`, or a grant `* -> *` on `*`). */
export function allowsEverything(policy: Policy | undefined): boolean {
  if (!policy) return false;
  if (policy.acls === undefined && policy.grants === undefined) return true;
  const acl = (policy.acls ?? []).some((r) => !r.proto && r.src.includes("*") && r.dst.includes("*:*"));
  const grant = (policy.grants ?? []).some((g) => g.src.includes("*") && g.dst.includes("*") && (g.ip ?? []).includes("*"));
  return acl || grant;
}

/**
 * `meshfleet plan`'s warning when a change widens the tailnet's reach to
 * everything: the base policy did not let every node reach every node on
 * every port, the new one does.
 */
export function allowAllWarnings(base: object, head: object): { kind: "allow-all"; message: string }[] {
  const policy = (f: object) => (f as { policy?: Policy }).policy;
  if (!allowsEverything(policy(head)) || allowsEverything(policy(base))) return [];
  return [{
    kind: "allow-all",
    message: "the policy now lets every node reach every node and every advertised route on every port (an accept from \"*\" to \"*:*\"): every LAN behind a subnet router is open to every device of the tailnet",
  }];
}
