/**
 * `meshfleet <command>`: a table of commands, each in cli/commands/<name>.ts.
 * User-facing errors print one line each without a stack trace; --debug
 * shows the cause.
 */
import { MeshfleetError } from "../core/diagnostics.ts";
import { meshfleetVersion, UsageError } from "./args.ts";

import type { Command } from "./command.ts";

export type { Command };

const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  check: () => import("./commands/check.ts"),
  render: () => import("./commands/render.ts"),
  hosts: () => import("./commands/hosts.ts"),
  options: () => import("./commands/options.ts"),
  plan: () => import("./commands/plan.ts"),
  join: () => import("./commands/join.ts"),
  up: () => import("./commands/up.ts").then((m) => ({ command: m.up })),
  preview: () => import("./commands/up.ts").then((m) => ({ command: m.preview })),
  refresh: () => import("./commands/up.ts").then((m) => ({ command: m.refresh })),
  destroy: () => import("./commands/up.ts").then((m) => ({ command: m.destroy })),
  pin: () => import("./commands/pin.ts"),
  tools: () => import("./commands/tools.ts"),
  lab: () => import("./commands/lab.ts"),
  status: () => import("./commands/status.ts"),
  doctor: () => import("./commands/doctor.ts"),
  rollback: () => import("./commands/rollback.ts"),
  generations: () => import("./commands/generations.ts"),
  import: () => import("./commands/import.ts"),
  backup: () => import("./commands/backup.ts"),
  restore: () => import("./commands/restore.ts"),
  completion: () => import("./commands/completion.ts").then((m) => ({ command: m.completionCommand(COMMANDS) })),
};

async function help(): Promise<string> {
  const lines = ["usage: meshfleet <command> [options]", "", "commands:"];
  for (const [name, load] of Object.entries(COMMANDS)) {
    try {
      lines.push(`  ${name.padEnd(8)} ${(await load()).command.summary}`);
    } catch {
      /* a command that is not built yet is left out of the list */
    }
  }
  lines.push("", "Run `meshfleet <command> --help` for a command's options.");
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    if (name) console.log(await help());
    else console.error(await help()); // no command: a usage error (exit 2), so stderr
    return name ? 0 : 2;
  }
  if (name === "--version" || name === "-V") {
    console.log(`meshfleet ${meshfleetVersion()}`);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`meshfleet: unknown command "${name}"; commands: ${Object.keys(COMMANDS).join(", ")}`);
    return 2;
  }
  const { command } = await load();
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`meshfleet ${name}: ${e.message}\n\n${command.usage}`);
    return 2;
  }
}

// `meshfleet options | head` closes stdout early; that is not an error.
process.stdout.on("error", (e: NodeJS.ErrnoException) => { if (e.code === "EPIPE") process.exit(0); throw e; });

const debug = process.argv.includes("--debug");
main(process.argv.slice(2).filter((a) => a !== "--debug")).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    if (e instanceof MeshfleetError || (e as Error)?.name?.endsWith("Error") && !debug) {
      console.error(`meshfleet: ${(e as Error).message}`);
      if (debug && (e as Error).cause) console.error((e as Error).cause);
    } else console.error(e);
    if (debug) console.error((e as Error)?.stack);
    process.exitCode = 1;
  },
);
