/**
 * meshfleet join <host>: the join instructions of a node without an agent
 * (a phone): its login server and pre-auth key, read from the stack's secret
 * output `joinInstructions` — printed only to the terminal that asked.
 */
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation/index.js";
import { evaluateFleet, formatDiagnostics, hasErrors, MeshfleetError } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { fleetFlags, fleetLine, flagHelp, parseArgs, resolveFleet, UsageError } from "../args.ts";
import type { Command } from "../command.ts";
import { checkPassphrase, cliError, deployEnv, pulumiCommand, REPO_ROOT } from "./deploy.ts";

const flags = fleetFlags.filter((f) => f.name !== "json");

export const command: Command = {
  name: "join",
  flags,
  complete: "host",
  summary: "print the join instructions (login server, pre-auth key) of a node without an agent",
  usage: `usage: meshfleet join HOST [--stack S | --hosts-dir DIR]\n\nFor hosts with agent: false (phones, tablets). Reads the pre-auth key from\nthe stack's secret output through the same pinned Pulumi CLI, backend and\npassphrase as \`meshfleet up\` (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE\nor _FILE), and prints it only to this terminal.\n\n${flagHelp(flags)}`,
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
    if (h.agent) throw new MeshfleetError(`${host} runs the meshfleet agent: \`meshfleet up\` joins it; join instructions are for hosts with agent: false`);
    const all = await joinOutputs(stack);
    if (!all) throw new MeshfleetError(`stack ${stack} has no deployment yet; run \`meshfleet up --stack ${stack}\` first`);
    if (!all[host]) throw new MeshfleetError(`stack ${stack} has no join instructions for ${host} yet; run \`meshfleet up --stack ${stack}\``);
    console.log(all[host]);
    return 0;
  },
};

/**
 * The stack's `joinInstructions` output, decrypted, read through the pinned
 * CLI as `meshfleet up` writes it; undefined when the stack has never been
 * deployed. The stack is selected, never created.
 */
export async function joinOutputs(stackName: string, o: { root?: string; env?: Record<string, string> } = {}): Promise<Record<string, string> | undefined> {
  const env = deployEnv(o.env);
  checkPassphrase(stackName, env);
  let stack: Stack;
  try {
    const ws = await LocalWorkspace.create({ workDir: o.root ?? REPO_ROOT, pulumiCommand: await pulumiCommand(), envVars: env });
    stack = await Stack.select(stackName, ws);
  } catch (e) {
    throw new MeshfleetError(`stack ${stackName}: ${cliError(e)}; run \`meshfleet up --stack ${stackName}\` first`, [], { cause: e });
  }
  const outputs = await stack.outputs().catch((e: unknown) => {
    throw new MeshfleetError(`stack ${stackName}: cannot read its outputs: ${cliError(e)}`, [], { cause: e });
  });
  const v = outputs.joinInstructions?.value;
  return v && typeof v === "object" ? (v as Record<string, string>) : undefined;
}
