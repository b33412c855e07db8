/**
 * `meshfleet generations --stack S --on HOST [--json]`: the generations the
 * host's agent keeps (number, created, bundle hash, state; `*` is current),
 * read over SSH with the deploy's pins. `meshfleet rollback --to N` takes a
 * number from this list.
 */
import { MeshfleetError } from "../../core/diagnostics.ts";
import type { HostSystem } from "../../core/types.ts";
import type { SshSession } from "../../provider/ssh.ts";
import { flagHelp, parseArgs } from "../args.ts";
import type { Command } from "../command.ts";
import { agentCommand, connectionTo, jsonOr, newSession, openStackFleet, stackFlags, table, tryRun, type StackAccess } from "../fleet-hosts.ts";

export interface GenerationRow {
  generation: number;
  current: boolean;
  status: string;
  createdAt: string;
  hash: string;
  error?: string;
}

/** The one host `--on` must name (rollback and generations act on one host). */
export function oneHost(a: StackAccess, cmd: string): HostSystem {
  if (a.selected.length !== 1) {
    throw new MeshfleetError(`meshfleet ${cmd}: --on must name exactly one host, found ${a.selected.length === Object.keys(a.fleet.hosts).length ? "none (add --on HOST)" : a.selected.map((h) => h.name).join(", ")}; hosts: ${Object.keys(a.fleet.hosts).join(", ")}`);
  }
  const h = a.selected[0]!;
  if (!h.agent) throw new MeshfleetError(`meshfleet ${cmd}: host ${h.name} has no agent (agent: false in ${h.file}), so it keeps no generations`);
  return h;
}

export async function readGenerations(a: StackAccess, h: HostSystem, session: SshSession): Promise<GenerationRow[]> {
  const r = await tryRun(session, connectionTo(a, h), agentCommand(h, ["generations", "--json"]), { what: "agent generations" });
  if (r.error) throw new MeshfleetError(r.error);
  const rows = jsonOr<GenerationRow[]>(r.stdout);
  if (r.code !== 0 || !Array.isArray(rows)) {
    throw new MeshfleetError(`host ${h.name}: \`meshfleet-agent generations --json\` failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 300)}${r.code === 127 || /No such file/.test(r.stderr) ? `. Is the agent installed? \`meshfleet up ${a.stackArgs} --on ${h.name}\` installs it` : ""}`);
  }
  return rows;
}

export function generationLines(host: string, rows: GenerationRow[]): string[] {
  if (rows.length === 0) return [`${host}: no generations yet (nothing deployed)`];
  return table(
    ["", "GEN", "CREATED", "HASH", "STATE"],
    rows.map((r) => [r.current ? "*" : "", String(r.generation), r.createdAt, r.hash.slice(0, 12), `${r.status}${r.error ? ` (${r.error})` : ""}`]),
  );
}

export const command: Command = {
  name: "generations",
  summary: "list a host's generations (the agent's history; * is current)",
  usage: `usage: meshfleet generations --stack S --on HOST [--config-file FILE] [--json]

Lists the generations HOST's agent keeps: number, when it was made, the
bundle hash and its state (active, superseded, rolled-back, failed). Roll
back to one with \`meshfleet rollback --stack S --on HOST --to N\`.

${flagHelp(stackFlags)}`,
  async run(argv) {
    const { opts, lists } = parseArgs(argv, stackFlags, { positionals: [], hint: "the host goes with --on" });
    if (typeof opts.stack !== "string") throw new MeshfleetError("meshfleet generations: which stack? Add --stack S");
    const a = await openStackFleet({ stack: opts.stack, configFile: typeof opts["config-file"] === "string" ? opts["config-file"] : undefined, on: lists.on });
    const h = oneHost(a, "generations");
    const session = newSession();
    try {
      const rows = await readGenerations(a, h, session);
      if (opts.json) process.stdout.write(JSON.stringify({ host: h.name, generations: rows }, null, 2) + "\n");
      else for (const l of generationLines(h.name, rows)) process.stdout.write(l + "\n");
      return 0;
    } finally {
      session.close();
    }
  },
};
