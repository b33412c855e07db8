/**
 * Argument parsing shared by the commands, on node:util's strict parseArgs:
 * an unknown flag, a flag without its value, a value for a switch, or a
 * positional argument the command does not take is a UsageError, which
 * cli/main.ts prints with the command's usage and exit code 2.
 *
 * Which fleet a command acts on (resolveFleet): --hosts-dir DIR, else
 * hosts/<--stack>, else the one stack when there is only one. A stack is a
 * folder under hosts/ with a fleet.yaml; a name that is none lists them.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { parseArgs as nodeParseArgs } from "node:util";
import { MeshfleetError } from "../core/diagnostics.ts";

export interface Flag {
  name: string;
  /** Takes a value (`--stack home`, `--stack=home`); without it the flag is a switch. */
  value?: boolean;
  help: string;
  /** May be given more than once: every value lands in `lists`. */
  repeat?: boolean;
  /** One-letter alias: `-s home`. */
  short?: string;
}

/** A command line the command cannot take: cli/main.ts prints the message and the usage, exit 2. */
export class UsageError extends MeshfleetError {
  override name = "UsageError";
}

/** The exit codes every command uses. */
export const EXIT = { ok: 0, problems: 1, usage: 2 } as const;

export interface Parsed {
  opts: Record<string, string | boolean>;
  positional: string[];
  lists: Record<string, string[]>;
}

/**
 * `positionals`: the names of the positional arguments the command takes
 * (`["HOST"]`), in order; more than that is a stray argument. Left out, any
 * number is accepted (for commands that check them themselves). `hint`
 * says where such an argument belongs ("hosts go with --on").
 */
export function parseArgs(argv: string[], flags: Flag[], spec: { positionals?: string[]; hint?: string } = {}): Parsed {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const f of flags) options[f.name] = { type: f.value ? "string" : "boolean", ...(f.repeat ? { multiple: true } : {}), ...(f.short ? { short: f.short } : {}) };
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = nodeParseArgs({ args: argv, options, strict: true, allowPositionals: true }));
  } catch (e) {
    throw new UsageError(usageMessage(e as NodeJS.ErrnoException & { message: string }, flags), [], { cause: e });
  }
  const opts: Record<string, string | boolean> = {};
  const lists: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) {
      lists[k] = v.map(String);
      opts[k] = String(v[v.length - 1]);
    } else opts[k] = v;
  }
  if (spec.positionals && positionals.length > spec.positionals.length) {
    const stray = positionals.slice(spec.positionals.length);
    const takes = spec.positionals.length ? `it takes ${spec.positionals.join(" ")}` : "it takes none; flags start with --";
    throw new UsageError(`unexpected argument${stray.length > 1 ? "s" : ""} ${stray.map((s) => JSON.stringify(s)).join(" ")} (${takes})${spec.hint ? `; ${spec.hint}` : ""}`);
  }
  return { opts, positional: positionals, lists };
}

function usageMessage(e: NodeJS.ErrnoException & { message: string }, flags: Flag[]): string {
  const known = flags.map((f) => "--" + f.name).join(", ") || "none";
  switch (e.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION": {
      const m = /'(-{1,2}[^']*)'/.exec(e.message);
      const bad = m?.[1] ?? "that option";
      const near = closest(bad.replace(/^-+/, "").split("=")[0], flags.map((f) => f.name));
      return `unknown option ${bad}${near ? ` (did you mean --${near}?)` : ""}; options: ${known}`;
    }
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE": {
      const m = /--([a-z][a-z0-9-]*)/.exec(e.message);
      const f = flags.find((x) => x.name === m?.[1]);
      if (f?.value) return `--${f.name} needs a value: --${f.name} VALUE`;
      if (f) return `--${f.name} is a switch and takes no value`;
      return e.message;
    }
    default:
      return e.message;
  }
}

/** The nearest name by edit distance, when it is near enough to be a typo. */
export function closest(word: string, names: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const n of names) {
    const d = editDistance(word, n);
    if (d < bestD) { best = n; bestD = d; }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

export const fleetFlags: Flag[] = [
  { name: "stack", short: "s", value: true, help: "read hosts/<stack> (default: the only stack, when there is one)" },
  { name: "hosts-dir", value: true, help: "read this folder instead" },
  { name: "json", help: "machine-readable output" },
];

/** The stacks: folders under `<root>/hosts` holding a fleet.yaml, sorted. */
export function listStacks(root = process.cwd()): string[] {
  const base = path.join(root, "hosts");
  let names: string[];
  try {
    names = readdirSync(base, { withFileTypes: true }).filter((d) => d.isDirectory() || d.isSymbolicLink()).map((d) => d.name);
  } catch {
    return [];
  }
  return names.filter((n) => existsSync(path.join(base, n, "fleet.yaml"))).sort();
}

/** The fleet a command acts on: its folder and stack name. */
export function resolveFleet(opts: Record<string, string | boolean>, root = process.cwd()): { dir: string; stack: string } {
  if (typeof opts["hosts-dir"] === "string") {
    const dir = opts["hosts-dir"];
    return { dir, stack: typeof opts.stack === "string" ? opts.stack : path.basename(path.resolve(root, dir)) };
  }
  const stacks = listStacks(root);
  const which = stacks.length ? `stacks: ${stacks.join(", ")}` : "there are none (no folder under hosts/ holds a fleet.yaml)";
  if (typeof opts.stack === "string") {
    const stack = opts.stack;
    if (!stacks.includes(stack)) {
      const near = closest(stack, stacks);
      throw new UsageError(`no stack "${stack}": hosts/${stack}/fleet.yaml does not exist${near ? ` (did you mean ${near}?)` : ""}; ${which}`);
    }
    return { dir: path.join("hosts", stack), stack };
  }
  if (stacks.length === 1) return { dir: path.join("hosts", stacks[0]), stack: stacks[0] };
  if (!stacks.length) throw new UsageError(`which fleet? ${which}; pass --hosts-dir DIR or create hosts/<stack>/fleet.yaml`);
  throw new UsageError(`which stack? ${which}; pass --stack ${stacks[0]} (or -s ${stacks[0]})`);
}

/** @deprecated the old name of resolveFleet (same rules). */
export const fleetDir = resolveFleet;

/** The line every fleet command prints: which fleet it acted on. */
export function fleetLine(f: { dir: string; stack: string }): string {
  return `fleet: ${f.stack} (${f.dir})`;
}

export function flagHelp(flags: Flag[]): string {
  return flags
    .map((f) => {
      const name = `${f.short ? `-${f.short}, ` : ""}--${f.name}${f.value ? " VALUE" : ""}`;
      return `  ${name.padEnd(20)} ${f.help}${f.repeat ? " (repeatable)" : ""}`;
    })
    .join("\n");
}

/** The flag names in a usage text (`--stack`, ...), for completion of commands that do not export their flags. */
export function flagsInUsage(usage: string): string[] {
  return [...new Set([...usage.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => "--" + m[1]))];
}

/** package.json's version, found above this file (cli/ in the source tree, dist/cli/ in the bundle). */
export function meshfleetVersion(): string {
  for (let d = path.dirname(fileURLToPath(import.meta.url)); ; d = path.dirname(d)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(d, "package.json"), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "meshfleet" && pkg.version) return pkg.version;
    } catch {
      // not here; look in the parent
    }
    if (path.dirname(d) === d) return "unknown";
  }
}
