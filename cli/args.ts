/** Small, strict argv parsing shared by the commands: unknown flags are errors. */
import path from "node:path";
import { MeshfleetError } from "../core/diagnostics.ts";

export interface Flag { name: string; value?: boolean; help: string; /** May be given more than once: every value lands in `lists`. */ repeat?: boolean }

export function parseArgs(argv: string[], flags: Flag[]): { opts: Record<string, string | boolean>; positional: string[]; lists: Record<string, string[]> } {
  const opts: Record<string, string | boolean> = {};
  const lists: Record<string, string[]> = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith("--")) { positional.push(a); continue; }
    const [key, inline] = a.slice(2).split(/=(.*)/s, 2);
    const f = flags.find((x) => x.name === key);
    if (!f) throw new MeshfleetError(`unknown option --${key}; options: ${flags.map((x) => "--" + x.name).join(", ")}`);
    if (f.value) {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new MeshfleetError(`--${key} needs a value`);
      opts[key] = v;
      if (f.repeat) (lists[key] ??= []).push(v);
    } else opts[key] = true;
  }
  return { opts, positional, lists };
}

export const fleetFlags: Flag[] = [
  { name: "stack", value: true, help: "read hosts/<stack> (default: lab)" },
  { name: "hosts-dir", value: true, help: "read this folder instead" },
  { name: "json", help: "machine-readable output" },
];

export function fleetDir(opts: Record<string, string | boolean>): { dir: string; stack: string } {
  if (opts["hosts-dir"]) {
    const dir = String(opts["hosts-dir"]);
    return { dir, stack: typeof opts.stack === "string" ? opts.stack : path.basename(path.resolve(dir)) };
  }
  const stack = typeof opts.stack === "string" ? opts.stack : "lab";
  return { dir: path.join("hosts", stack), stack };
}

export function flagHelp(flags: Flag[]): string {
  return flags.map((f) => `  --${(f.name + (f.value ? " VALUE" : "")).padEnd(18)} ${f.help}`).join("\n");
}
