/**
 * `meshfleet render --policy-for tailscale-saas --out FILE`: the fleet's
 * policy as the policy file Tailscale's admin console takes, and what the
 * mesh allows under it compared with what it allows under headscale
 * (core/policy/saas.ts). Writes nothing when a user cannot be mapped, and
 * exits 1 when the two differ.
 */
import { writeFile, lstat } from "node:fs/promises";
import { formatDiagnostics, hasErrors, loadFleetDir, MeshfleetError } from "../core/index.ts";
import { inPolicyFile } from "../core/load.ts";
import { fleetSchema } from "../core/fleet-schema.ts";
import { stripPrio } from "../core/merge.ts";
import { compareSaas, saasPolicy, type SaasComparison } from "../core/policy/saas.ts";
import type { FleetSystem } from "../core/types.ts";
import { UsageError } from "./args.ts";

export const POLICY_TARGETS = ["tailscale-saas"] as const;

export async function renderPolicyFor(target: string, fleet: FleetSystem, out: string, json: boolean): Promise<number> {
  if (!(POLICY_TARGETS as readonly string[]).includes(target))
    throw new UsageError(`--policy-for ${JSON.stringify(target)}: the targets are ${POLICY_TARGETS.join(", ")}`);
  const file = `${fleet.dir.replace(/\/$/, "")}/fleet.yaml`;
  // The mapping and the ranges as fleet.yaml has them (the evaluated fleet keeps neither).
  const loaded = await loadFleetDir(fleet.dir);
  const cfg = fleetSchema.parse(stripPrio(loaded.fleet?.value ?? {}));
  const exp = saasPolicy(fleet, cfg.tailscaleSaas, file, cfg.prefixes);
  const problems = inPolicyFile(exp.diagnostics, fleet.dir, loaded.fleet?.policyFile);
  if (problems.length) console.error(formatDiagnostics(problems));
  if (hasErrors(problems)) {
    console.error(`nothing written: the policy cannot be written for Tailscale's service until the error(s) above are fixed.`);
    return 1;
  }
  const st = await lstat(out).catch(() => null);
  if (st && !st.isFile()) throw new MeshfleetError(`render --out ${out}: with --policy-for, --out is the policy file to write, and ${out} is a folder or a link; nothing was written`);
  await writeFile(out, exp.text, { mode: 0o644 });
  const cmp = compareSaas(fleet, exp);
  if (json) console.log(JSON.stringify({ target, out, logins: exp.logins, ...cmp }, null, 2));
  else console.log(describeComparison(out, exp.logins, cmp));
  return cmp.differences.length ? 1 : 0;
}

export function describeComparison(out: string, logins: Record<string, string>, c: SaasComparison): string {
  const lines = [`wrote ${out} (Tailscale's policy file; users as logins: ${Object.entries(logins).map(([u, l]) => `${u}@ -> ${l}`).join(", ") || "none"})`];
  if (!c.differences.length)
    lines.push(`same under both: ${c.testsPassingBoth} of ${c.testLines} test lines pass under headscale and under the service's file, and the ${c.pairs} allowed (source, destination) pairs have the same access`);
  else {
    lines.push(`the two policies differ in ${c.differences.length} place(s) (headscale | Tailscale's service):`);
    for (const d of c.differences) lines.push(`  ${d.what} ${d.line}: ${d.headscale} | ${d.saas}`);
  }
  return lines.join("\n");
}
