/**
 * `meshfleet <command>`: a table of commands, each in cli/commands/<name>.ts.
 * User-facing errors print one line each without a stack trace; --debug
 * shows the cause.
 */
import { MeshfleetError } from "../core/diagnostics.ts";

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

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
  status: () => import("./commands/status.ts"),
  doctor: () => import("./commands/doctor.ts"),
  rollback: () => import("./commands/rollback.ts"),
  generations: () => import("./commands/generations.ts"),
  pin: () => import("./commands/pin.ts"),
  tools: () => import("./commands/tools.ts"),
  lab: () => import("./commands/lab.ts"),
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
    console.log(await help());
    return name ? 0 : 2;
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
  return command.run(rest);
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
