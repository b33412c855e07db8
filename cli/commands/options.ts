/** meshfleet options: every option of every module, generated from the schemas. */
import { hostSchema } from "../../core/eval.ts";
import { fleetSchema } from "../../core/fleet-schema.ts";
import { describeOf, schemaKind } from "../../core/merge.ts";
import { PROFILES, REGISTRY } from "../../modules/index.ts";
import { parseArgs } from "../args.ts";
import type { Command } from "../command.ts";
import type { z } from "zod";

interface OptionDoc { path: string; default: unknown; description: string }

export function optionDocs(schema: z.ZodType, prefix = ""): OptionDoc[] {
  const kind = schemaKind(schema);
  if (kind.kind !== "object") return [];
  const out: OptionDoc[] = [];
  for (const [k, s] of Object.entries(kind.shape)) {
    const p = prefix ? `${prefix}.${k}` : k;
    const sub = schemaKind(s);
    const def = (s as any)?._zod?.def?.type === "default" ? (s as any)._zod.def.defaultValue : undefined;
    if (sub.kind === "object" && !(def !== undefined && Object.keys(sub.shape).length === 0)) {
      const nested = optionDocs(s, p);
      if (nested.length) { out.push(...nested); continue; }
    }
    out.push({ path: p, default: typeof def === "function" ? def() : def, description: describeOf(s) ?? "" });
  }
  return out;
}

export const command: Command = {
  name: "options",
  summary: "list every option (host files and fleet.yaml) with its default and description",
  usage: "usage: meshfleet options [MODULE | fleet] [--json]\n\nGenerated from the option declarations, so it never drifts from the code.",
  async run(argv) {
    const { opts, positional } = parseArgs(argv, [{ name: "json", help: "" }]);
    const which = positional[0];
    let docs = which === "fleet" ? optionDocs(fleetSchema) : optionDocs(hostSchema(REGISTRY));
    if (which && which !== "fleet") docs = docs.filter((d) => d.path === which || d.path.startsWith(which + "."));
    if (opts.json) { console.log(JSON.stringify({ options: docs, profiles: PROFILES }, null, 2)); return 0; }
    for (const d of docs) console.log(`${d.path}${d.default !== undefined ? ` (default ${JSON.stringify(d.default)})` : " (required)"}\n    ${d.description}`);
    if (!which) {
      console.log("\nprofiles (imports):");
      for (const [n, p] of Object.entries(PROFILES)) console.log(`  ${n.padEnd(14)} ${p.description}`);
    }
    return 0;
  },
};
