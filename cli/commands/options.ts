/**
 * meshfleet options: every option of every module, generated from the
 * schemas (type, allowed values, default, example, description) and the
 * profiles (which `imports` entry sets it), so it never drifts from the
 * code. `--markdown` prints the reference kept in docs/options.md.
 */
import { z } from "zod";
import { hostSchema } from "../../core/eval.ts";
import { fleetSchema } from "../../core/fleet-schema.ts";
import { describeOf, schemaKind } from "../../core/merge.ts";
import { Prio } from "../../core/priority.ts";
import { MODULES, PROFILES, REGISTRY } from "../../modules/index.ts";
import { closest, flagHelp, parseArgs, UsageError, type Flag } from "../args.ts";
import type { Command } from "../command.ts";

export interface OptionDoc {
  path: string;
  /** `host` (the host file's own options), `fleet` (fleet.yaml), or the module's name. */
  module: string;
  type: string;
  /** The allowed values, for an enumeration. */
  values?: unknown[];
  default: unknown;
  required: boolean;
  example?: unknown;
  description: string;
  /** The profiles (`imports: [name]`) that set it, and to what (at mkDefault priority). */
  setBy: { profile: string; value: unknown }[];
}

const def = (s: unknown): any => (s as any)?._zod?.def;

/** A check's message ("a CIDR such as 192.168.8.0/24 or ..."), the most precise words for a string's shape. */
function checkMessages(s: unknown): string[] {
  return ((def(s)?.checks ?? []) as any[])
    .map((c) => { try { return c?._zod?.def?.error?.({}); } catch { return undefined; } })
    .filter((m): m is string => typeof m === "string");
}

/** The type in words, looking through defaults and optionals. */
export function typeOf(s: unknown): string {
  const d = def(s);
  if (!d) return "any";
  switch (d.type) {
    case "default": case "optional": case "nullable": case "prefault": case "readonly": case "catch":
      return typeOf(d.innerType);
    // A pipe from unknown checks its raw input first (firewall's port ranges): the type is what it becomes.
    case "pipe": return def(d.in)?.type === "unknown" ? typeOf(d.out) : typeOf(d.in);
    case "string": {
      const m = checkMessages(s)[0];
      return m ? `string: ${m}` : "string";
    }
    case "number": {
      const checks = ((d.checks ?? []) as any[]).map((c) => c._zod.def);
      const int = checks.some((c) => c.format === "safeint" || c.format === "int32");
      const lo = checks.find((c) => c.check === "greater_than")?.value;
      const hi = checks.find((c) => c.check === "less_than")?.value;
      return `${int ? "integer" : "number"}${lo !== undefined || hi !== undefined ? ` ${lo ?? ""}..${hi ?? ""}` : ""}`;
    }
    case "boolean": return "boolean";
    case "enum": return `one of ${Object.values(d.entries).map((v) => JSON.stringify(v)).join(", ")}`;
    case "literal": return (d.values as unknown[]).map((v) => JSON.stringify(v)).join(" or ");
    case "union": return [...new Set((d.options as unknown[]).map(typeOf))].join(" or ");
    case "array": return `list of (${typeOf(d.element)})`;
    case "record": return `map of name to (${typeOf(d.valueType)})`;
    case "object": return "object";
    default: return d.type;
  }
}

/** The allowed values of an enumeration (or a union of literals and enums), else undefined. */
export function valuesOf(s: unknown): unknown[] | undefined {
  const d = def(s);
  if (!d) return undefined;
  switch (d.type) {
    case "default": case "optional": case "nullable": case "prefault": case "readonly": case "catch":
      return valuesOf(d.innerType);
    case "pipe": return valuesOf(d.in);
    case "enum": return Object.values(d.entries);
    case "literal": return [...d.values];
    case "union": {
      const parts = (d.options as unknown[]).map(valuesOf);
      return parts.every(Boolean) ? parts.flat() : undefined;
    }
    default: return undefined;
  }
}

/** An example value: the schema's own (`.meta({ examples })`), else one its type or check message names. */
export function exampleOf(s: unknown, dflt?: unknown): unknown {
  const meta = z.globalRegistry.get(s as z.ZodType) as { examples?: unknown[] } | undefined;
  if (meta?.examples?.length) return meta.examples[0];
  const d = def(s);
  if (!d) return undefined;
  switch (d.type) {
    case "default": case "optional": case "nullable": case "prefault": case "readonly": case "catch":
      return exampleOf(d.innerType, dflt);
    case "pipe": return exampleOf(d.in, dflt);
    case "string": {
      const m = /such as ([^\s,]+)/.exec(checkMessages(s).join(" "));
      return m ? m[1] : typeof dflt === "string" && dflt ? dflt : undefined;
    }
    case "number": {
      const lo = ((d.checks ?? []) as any[]).map((c) => c._zod.def).find((c) => c.check === "greater_than")?.value;
      return typeof dflt === "number" ? dflt : lo;
    }
    case "boolean": return typeof dflt === "boolean" ? !dflt : true;
    case "enum": {
      const vs = Object.values(d.entries);
      return vs.find((v) => v !== dflt) ?? vs[0];
    }
    case "literal": return d.values[0];
    case "union": {
      for (const o of d.options as unknown[]) {
        const e = exampleOf(o, dflt);
        if (e !== undefined && e !== "" && e !== dflt) return e;
      }
      return undefined;
    }
    case "array": {
      const e = exampleOf(d.element);
      return e === undefined ? undefined : [e];
    }
    default: return undefined;
  }
}

/** Every option path a profile sets, with the value. */
export function profileSettings(profiles: Record<string, { definitions: unknown }> = PROFILES): Map<string, { profile: string; value: unknown }[]> {
  const out = new Map<string, { profile: string; value: unknown }[]>();
  const walk = (profile: string, v: unknown, p: string) => {
    const value = v instanceof Prio ? v.value : v;
    if (value && typeof value === "object" && !Array.isArray(value) && !(value instanceof Prio)) {
      for (const [k, sub] of Object.entries(value)) walk(profile, sub, p ? `${p}.${k}` : k);
    } else if (value instanceof Prio) walk(profile, value, p);
    else {
      const list = out.get(p) ?? [];
      list.push({ profile, value });
      out.set(p, list);
    }
  };
  for (const [name, prof] of Object.entries(profiles)) walk(name, prof.definitions, "");
  return out;
}

const MODULE_NAMES: string[] = MODULES.map((m) => m.name);

function moduleOf(p: string, fleet: boolean): string {
  if (fleet) return "fleet";
  const top = p.split(".")[0];
  return MODULE_NAMES.includes(top) ? top : "host";
}

export function optionDocs(schema: z.ZodType, prefix = "", fleet = false, setBy = profileSettings()): OptionDoc[] {
  const kind = schemaKind(schema);
  if (kind.kind !== "object") return [];
  const out: OptionDoc[] = [];
  for (const [k, s] of Object.entries(kind.shape)) {
    const p = prefix ? `${prefix}.${k}` : k;
    const sub = schemaKind(s);
    const d = def(s);
    const hasDefault = d?.type === "default" || d?.type === "prefault";
    const raw = d?.type === "default" ? d.defaultValue : undefined;
    const dflt = typeof raw === "function" ? raw() : raw;
    if (sub.kind === "object" && !(dflt !== undefined && Object.keys(sub.shape).length === 0)) {
      const nested = optionDocs(s, p, fleet, setBy);
      if (nested.length) { out.push(...nested); continue; }
    }
    const optional = d?.type === "optional";
    out.push({
      path: p,
      module: moduleOf(p, fleet),
      type: typeOf(s),
      ...(valuesOf(s) ? { values: valuesOf(s) } : {}),
      default: dflt,
      required: !hasDefault && !optional,
      example: exampleOf(s, dflt),
      description: describeOf(s) ?? "",
      setBy: fleet ? [] : setBy.get(p) ?? [],
    });
  }
  return out;
}

/** Every option: the host file's (by module), then fleet.yaml's. */
export function allOptionDocs(): OptionDoc[] {
  return [...optionDocs(hostSchema(REGISTRY)), ...optionDocs(fleetSchema, "", true)];
}

/** The names `meshfleet options NAME` takes. */
export function optionGroups(docs = allOptionDocs()): string[] {
  return [...new Set(docs.map((d) => d.module))];
}

const show = (v: unknown) => (v === undefined ? "" : JSON.stringify(v));

export function formatText(docs: OptionDoc[]): string {
  return docs
    .map((d) => {
      const lines = [`${d.path}`, `    ${d.description}`, `    type: ${d.type}`];
      if (d.required) lines.push("    required");
      else if (d.default !== undefined) lines.push(`    default: ${show(d.default)}`);
      if (d.example !== undefined && JSON.stringify(d.example) !== JSON.stringify(d.default)) lines.push(`    example: ${show(d.example)}`);
      if (d.setBy.length) lines.push(`    set by: ${d.setBy.map((s) => `${s.profile} (${show(s.value)})`).join(", ")}`);
      return lines.join("\n");
    })
    .join("\n\n");
}

const md = (s: string) => s.replace(/\|/g, "\\|");

/** docs/options.md: a section per module, an entry per option. */
export function formatMarkdown(docs: OptionDoc[] = allOptionDocs()): string {
  const out = [
    "# meshfleet options",
    "",
    "Generated by `meshfleet options --markdown` from the option declarations and the",
    "profiles; do not edit by hand (test/cli/help-options.test.ts fails when it is stale).",
    "",
    "A host file (`hosts/<stack>/<host>.yaml`) sets the host options and the module",
    "options; `fleet.yaml` sets the fleet options. A profile in a host's `imports`",
    "sets its options at mkDefault priority, so a plain value in the host file wins.",
    "",
    "## Profiles",
    "",
    "| profile | what it is | sets |",
    "| --- | --- | --- |",
    ...Object.entries(PROFILES).map(([n, p]) => {
      const sets = [...profileSettings({ [n]: p }).entries()].map(([k, v]) => `\`${k}: ${show(v[0].value)}\``).join(", ");
      return `| \`${n}\` | ${md(p.description)} | ${sets} |`;
    }),
  ];
  for (const group of optionGroups(docs)) {
    const title = group === "host" ? "Host options" : group === "fleet" ? "Fleet options (fleet.yaml)" : `Module \`${group}\``;
    out.push("", `## ${title}`);
    for (const d of docs.filter((x) => x.module === group)) {
      out.push("", `### \`${d.path}\``, "", d.description || "(no description)", "");
      out.push(`- type: ${md(d.type)}`);
      if (d.values) out.push(`- values: ${d.values.map((v) => `\`${show(v)}\``).join(", ")}`);
      out.push(d.required ? "- required" : `- default: ${d.default === undefined ? "(none)" : `\`${md(show(d.default))}\``}`);
      if (d.example !== undefined) out.push(`- example: \`${md(show(d.example))}\``);
      if (d.setBy.length) out.push(`- set by: ${d.setBy.map((s) => `\`${s.profile}\` (\`${show(s.value)}\`)`).join(", ")}`);
    }
  }
  return out.join("\n") + "\n";
}

const flags: Flag[] = [
  { name: "json", help: "machine-readable output" },
  { name: "markdown", help: "the Markdown reference of every option (what docs/options.md holds)" },
];

export const command: Command = {
  name: "options",
  summary: "list the options of the host files and fleet.yaml: type, values, default, example, profile",
  flags,
  complete: "module",
  usage: `usage: meshfleet options [MODULE | host | fleet | OPTION.PATH] [--json | --markdown]

Every option with its type, allowed values, default, an example, and the
profiles that set it; MODULE narrows it to one module (e.g. tailscale),
host to the host file's own options, fleet to fleet.yaml's. Generated from
the option declarations, so it never drifts from the code.

${flagHelp(flags)}`,
  async run(argv) {
    const { opts, positional } = parseArgs(argv, flags, { positionals: ["MODULE"] });
    if (opts.json && opts.markdown) throw new UsageError("choose one of --json and --markdown");
    const which = positional[0];
    let docs = allOptionDocs();
    if (opts.markdown) {
      if (which) throw new UsageError("--markdown prints every option; leave out MODULE");
      process.stdout.write(formatMarkdown(docs));
      return 0;
    }
    if (which) {
      const groups = optionGroups(docs);
      docs = groups.includes(which) ? docs.filter((d) => d.module === which) : docs.filter((d) => d.path === which || d.path.startsWith(which + "."));
      if (!docs.length) {
        const near = closest(which, groups);
        throw new UsageError(`no module or option "${which}"${near ? ` (did you mean ${near}?)` : ""}; modules: ${groups.join(", ")}`);
      }
    }
    if (opts.json) {
      console.log(JSON.stringify({ options: docs, ...(which ? {} : { profiles: PROFILES }) }, (_k, v) => (v instanceof Prio ? v.value : v), 2));
      return 0;
    }
    console.log(formatText(docs));
    if (!which) {
      console.log("\nprofiles (imports):");
      for (const [n, p] of Object.entries(PROFILES)) console.log(`  ${n.padEnd(14)} ${p.description}`);
    }
    return 0;
  },
};
