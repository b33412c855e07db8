/**
 * meshfleet join <host>: the join instructions of a node without an agent
 * (a phone): its login server and pre-auth key, read from the stack's secret
 * output `joinInstructions` — printed only to the terminal that asked.
 */
import { execa } from "execa";
import { evaluateFleet, formatDiagnostics, hasErrors, MeshfleetError } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { fleetFlags, fleetLine, flagHelp, parseArgs, resolveFleet, UsageError } from "../args.ts";
import type { Command } from "../command.ts";

const flags = fleetFlags.filter((f) => f.name !== "json");

export const command: Command = {
  name: "join",
  flags,
  complete: "host",
  summary: "print the join instructions (login server, pre-auth key) of a node without an agent",
  usage: `usage: meshfleet join HOST [--stack S | --hosts-dir DIR]\n\nFor hosts with agent: false (phones, tablets). Reads the pre-auth key from\nthe Pulumi stack's secret output, so run it where \`pulumi stack output\`\nworks (same backend and passphrase as \`pulumi up\`).\n\n${flagHelp(flags)}`,
  async run(argv) {
    const { opts, positional } = parseArgs(argv, flags, { positionals: ["HOST"] });
    const host = positional[0];
    if (!host) throw new UsageError("join needs a host name, e.g. meshfleet join phone --stack home");
    const { dir, stack } = resolveFleet(opts);
    console.error(fleetLine({ dir, stack }));
    const r = await evaluateFleet(REGISTRY, dir, stack);
    if (!r.fleet || hasErrors(r.diagnostics)) {
      console.error(formatDiagnostics(r.diagnostics));
      return 1;
    }
    const h = r.fleet.hosts[host];
    if (!h) throw new MeshfleetError(`no host "${host}" in ${dir} (hosts: ${Object.keys(r.fleet.hosts).join(", ")})`);
    if (h.agent) throw new MeshfleetError(`${host} runs the meshfleet agent: \`pulumi up\` joins it; join instructions are for hosts with agent: false`);
    const out = await execa("pulumi", ["stack", "output", "joinInstructions", "--show-secrets", "--json", "--stack", stack], { reject: false });
    if (out.exitCode === undefined)
      throw new MeshfleetError(`cannot run pulumi (${(out as { code?: string }).code ?? "not found"}): install the Pulumi CLI, or \`meshfleet tools build\` and put its pulumi on PATH`);
    if (out.exitCode !== 0)
      throw new MeshfleetError(`pulumi stack output failed (exit ${out.exitCode}): ${out.stderr.split("\n")[0] || out.stdout.split("\n")[0]}; run \`pulumi up\` for stack ${stack} first`);
    const all = JSON.parse(out.stdout || "{}") as Record<string, string>;
    if (!all[host]) throw new MeshfleetError(`stack ${stack} has no join instructions for ${host} yet; run \`pulumi up\``);
    console.log(all[host]);
    return 0;
  },
};
