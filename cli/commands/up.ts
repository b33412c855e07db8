/**
 * `meshfleet up | preview | refresh | destroy`: Pulumi's verbs on the
 * fleet's stack, run inline through the Automation API (cli/commands/deploy.ts).
 * Progress is one line per resource, led by the host it belongs to; the run
 * ends with a summary per host. Nothing changes without --yes, or a "yes"
 * typed at a terminal.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline/promises";
import { MeshfleetError } from "../../core/diagnostics.ts";
import { flagHelp, parseArgs, type Flag } from "../args.ts";
import type { Command } from "../command.ts";
import { backendProblem } from "../state-backend.ts";
import { defaultStateDir, projectStackFile, REPO_ROOT, runDeploy, summaryLines, type DeployResult, type Verb } from "./deploy.ts";

const common: Flag[] = [
  { name: "stack", value: true, help: "the stack to operate on (required): its config is stacks/Pulumi.<stack>.yaml, its fleet hosts/<stack>" },
  { name: "on", value: true, repeat: true, help: "only these hosts: HOST, @role (@subnet-router) or @tag (@router, @tag:router); repeatable, or comma-separated" },
  { name: "diff", help: "show which properties change per resource (files and units per host; never values)" },
  { name: "json", help: "print the result as JSON on stdout (progress goes to stderr)" },
  { name: "config-file", value: true, help: "read the stack's config from this file instead of stacks/Pulumi.<stack>.yaml" },
  { name: "secrets-provider", value: true, help: "for a new stack: passphrase (default), awskms://..., gcpkms://..., azurekeyvault://..., hashivault://..." },
  { name: "backend", value: true, help: "the state backend for this run (as PULUMI_BACKEND_URL): postgres://user:password@host:port/db, s3://..., file://...; its password is never printed" },
  { name: "lock-wait", value: true, help: "seconds to wait while another run holds the stack's lock (default 600; 0 fails at once, naming who holds it)" },
  { name: "verbose", help: "also print unchanged resources and the program's info lines" },
];
const yes: Flag = { name: "yes", help: "go ahead without asking (needed when stdin is not a terminal)" };
const expectNoChanges: Flag = { name: "expect-no-changes", help: "fail if anything would change (a drift check)" };
const refreshFlag: Flag = { name: "refresh", help: "refresh the state from the hosts first" };
const previewOnly: Flag = { name: "preview-only", help: "only show what would happen; change nothing" };
const rebootCheck: Flag = {
  name: "reboot-check",
  help: "after its switch, reboot each selected host (--on, else every agent host) and fail unless it comes back with the generation active, firewall loaded, tailscale up, routes advertised, no drift (180s each)",
};

const force: Flag = {
  name: "force",
  help: "let a lower coordinator.headscaleVersion than the coordinator runs go ahead (a downgrade: headscale migrates its database forward only), or skip a minor release; with the same backup, health check and rollback",
};

const FLAGS: Record<Verb, Flag[]> = {
  up: [...common, yes, expectNoChanges, refreshFlag, rebootCheck, force],
  preview: [...common, expectNoChanges, refreshFlag, force],
  refresh: [...common, yes, expectNoChanges, previewOnly],
  destroy: [...common, yes, previewOnly],
};

const SUMMARY: Record<Verb, string> = {
  up: "deploy the stack's fleet (Pulumi up, inline)",
  preview: "show what `up` would change, per host",
  refresh: "read every host's real state into the stack (shows drift)",
  destroy: "remove everything the stack deployed",
};

const WHAT: Record<Verb, string> = {
  up: "Deploys the fleet in hosts/<stack> with the program index.ts default-exports.",
  preview: "Shows, per host, what `meshfleet up` would create, update or delete; with\n--diff, which files and units change (names only, never contents).",
  refresh: "Asks every deployed resource for its real state (each host's agent reports\nits files, units and firewall) and records it; drift shows as updates.\nThe next `meshfleet up` puts it back.",
  destroy: "Removes what the stack deployed (the agent rolls each host back to nothing).",
};

function usage(verb: Verb): string {
  const state = defaultStateDir();
  return `usage: meshfleet ${verb} --stack S [options]

${WHAT[verb]}

How it runs: index.ts's default export runs inside this process as an inline
Pulumi program (Automation API) with the pinned Pulumi CLI from the tools
cache; no Pulumi Node.js language host is needed, and meshfleet's own
provider (provider/, declared in Pulumi.yaml) does the work on the hosts.
\`pulumi ${verb}\` at the repo root runs the same program where a Pulumi
release with its Node.js host is installed.

Options:
${flagHelp(FLAGS[verb])}
  --debug              show the cause of an error

--on: hosts by name, @role or @tag. For up and preview, meshfleet first
previews the whole program to learn its resources, then targets (Pulumi
--target) the selected hosts' resources, those of the coordinator they join
through (a subnet router comes with its coordinator), and the fleet-wide
ones (headscale users, the mesh itself). Other hosts are left exactly as
they are, even when the change would concern them too: run a full \`up\`
afterwards. For refresh the selected hosts' resources in the state are
targeted; for destroy, also everything that depends on them.

State: a local file backend in ${state}/state
(MESHFLEET_STATE_DIR or XDG_STATE_HOME move it), Pulumi's home in
${state}/home unless PULUMI_HOME is set. PULUMI_BACKEND_URL selects any
other backend (postgres://..., s3://..., https://api.pulumi.com, file://...),
and --backend does the same for one run. Several people or CI on one stack:
docs/team.md (one Postgres, one secrets key, the lock).

Secrets: the stack's secrets (meshfleet:keySeed, derived keys, pre-auth keys)
are encrypted by its secrets provider. With the default, passphrase, set
PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE; choose another
with --secrets-provider when the stack is first created. Pulumi writes the
passphrase's salt into the stack's config file (encryptionsalt).

Confirmation: ${verb === "preview" ? "preview changes nothing." : `without --yes, a terminal shows the preview and asks; anything else refuses.`}
Exit code: 0 done, 1 failed (the host and resource are named), 2 bad usage.
The CLI's own output is appended to ${join(state, "logs")}/<stack>-${verb}.log.`;
}

function say(json: boolean): (line: string) => void {
  return (line) => (json ? process.stderr : process.stdout).write(line + "\n");
}

async function askYes(plan: DeployResult, verb: Verb, out: (l: string) => void): Promise<boolean> {
  for (const l of summaryLines({ ...plan, verb: "preview" })) out(l);
  const changes = Object.entries(plan.changes).filter(([k, n]) => k !== "same" && n > 0);
  if (changes.length === 0 && verb !== "destroy") {
    out("nothing to change");
    return true;
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const a = (await rl.question(`Do you want to perform this ${verb}? [y/N] `)).trim().toLowerCase();
    return a === "y" || a === "yes";
  } finally {
    rl.close();
  }
}

async function askLine(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const a = (await rl.question(question)).trim().toLowerCase();
    return a === "y" || a === "yes";
  } finally {
    rl.close();
  }
}

/** After `up --reboot-check`: each rebooted host and how long its Generation took (switch, reboot, checks). */
export function rebootCheckLines(r: DeployResult): string[] {
  const gens = r.resources.filter((x) => x.type === "meshfleet:host:Generation" && x.diff?.some((d) => d.key === "rebootCheck"));
  if (gens.length === 0) return [`  --reboot-check: no host was rebooted${r.ok ? " (no agent host selected)" : ""}`];
  return gens.map((g) =>
    g.failed || !g.done
      ? `  --reboot-check: ${g.host ?? g.name}: did not come back whole (see the error above)`
      : `  --reboot-check: ${g.host ?? g.name}: came back with its generation active, firewall, tailscale and routes, no drift (switch + reboot + checks ${((g.ms ?? 0) / 1000).toFixed(1)}s)`,
  );
}

function stacksHint(): string {
  const dir = join(REPO_ROOT, "stacks");
  const names = existsSync(dir) ? readdirSync(dir).map((f) => /^Pulumi\.(.+)\.ya?ml$/.exec(f)?.[1]).filter(Boolean) : [];
  return names.length > 0 ? ` (stacks/ has: ${names.join(", ")})` : "";
}

/** --backend URL as the CLI's PULUMI_BACKEND_URL, checked first (the message never shows its password). */
function backendEnv(v: unknown): Record<string, string> | undefined {
  if (typeof v !== "string") return undefined;
  const problem = backendProblem(v);
  if (problem) throw new MeshfleetError(problem);
  return { PULUMI_BACKEND_URL: v };
}

function lockWait(v: unknown): number | undefined {
  if (typeof v !== "string") return undefined;
  if (!/^\d+$/.test(v)) throw new MeshfleetError(`--lock-wait: expected whole seconds (0 fails at once), found ${JSON.stringify(v.slice(0, 20))}`);
  return Number(v);
}

function verbCommand(verb: Verb): Command {
  return {
    name: verb,
    summary: SUMMARY[verb],
    usage: usage(verb),
    async run(argv) {
      const { opts, lists } = parseArgs(argv, FLAGS[verb], { positionals: [], hint: "hosts go with --on" });
      if (typeof opts.stack !== "string") throw new MeshfleetError(`meshfleet ${verb}: which stack? Add --stack S${stacksHint()}`);
      const stack = opts.stack;
      const json = !!opts.json;
      const out = say(json);
      const changes = verb !== "preview" && !opts["preview-only"];
      let confirm: ((plan: DeployResult) => Promise<boolean>) | undefined;
      if (changes && !opts.yes) {
        if (!process.stdin.isTTY || json) {
          throw new MeshfleetError(
            `meshfleet ${verb}: refusing to ${verb} stack ${stack} without --yes when not asked at a terminal; nothing was changed. ` +
              `See the plan with \`meshfleet ${verb === "up" ? "preview" : `${verb} --preview-only`} --stack ${stack}\`, then run \`meshfleet ${verb} --stack ${stack} --yes\``,
          );
        }
        confirm = (plan) => askYes(plan, verb, out);
      }
      const configFile = typeof opts["config-file"] === "string" ? opts["config-file"] : undefined;
      if (!configFile && !existsSync(projectStackFile(stack))) {
        out(`note: ${projectStackFile(stack).slice(REPO_ROOT.length + 1)} does not exist; Pulumi creates it for a new stack`);
      }
      if (verb === "up" || verb === "preview") {
        // A changed coordinator.headscaleVersion: `up` does backup, new binary, health check, rollback first
        // (cli/headscale-upgrade.ts); a preview (and --expect-no-changes) only reads which headscale runs and
        // announces it. A refusal `up` would make (a downgrade, a skipped minor release) fails either the same way.
        const { headscaleUpgradeStep } = await import("../headscale-upgrade.ts");
        const readOnly = verb === "preview" || !!opts["preview-only"];
        const expectNone = !!opts["expect-no-changes"];
        const u = await headscaleUpgradeStep({ stack, configFile, force: !!opts.force, stateDir: defaultStateDir(), say: out, confirm: readOnly || opts.yes || expectNone ? undefined : askLine, expectNoChanges: readOnly || expectNone });
        if (u.pending) {
          if (readOnly) out(`headscale: ${u.detail.replace(/; nothing was changed$/, "")}: \`meshfleet up\` does it first (backup, new binary, health check, rollback if it fails)`);
          if (expectNone) {
            // A pending upgrade is a change: fail before the deploy and without touching the host.
            out(`--expect-no-changes: ${readOnly ? `the headscale ${u.action} is a change` : u.detail}`);
            return 1;
          }
        }
        if (u.outcome) out(`headscale: ${u.detail} (${u.seconds}s)`);
      }
      const r = await runDeploy({
        verb,
        stack,
        configFile,
        secretsProvider: typeof opts["secrets-provider"] === "string" ? opts["secrets-provider"] : undefined,
        env: backendEnv(opts.backend),
        lockWaitSeconds: lockWait(opts["lock-wait"]),
        on: lists.on,
        diff: !!opts.diff,
        expectNoChanges: !!opts["expect-no-changes"],
        refresh: !!opts.refresh,
        previewOnly: !!opts["preview-only"],
        rebootCheck: !!opts["reboot-check"],
        verbose: !!opts.verbose,
        say: out,
        confirm,
        logFile: join(defaultStateDir(), "logs", `${stack}-${verb}.log`),
      });
      if (json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
      else {
        for (const l of summaryLines(r)) out(l);
        if (opts["reboot-check"]) for (const l of rebootCheckLines(r)) out(l);
      }
      return r.ok ? 0 : 1;
    },
  };
}

export const up = verbCommand("up");
export const preview = verbCommand("preview");
export const refresh = verbCommand("refresh");
export const destroy = verbCommand("destroy");
