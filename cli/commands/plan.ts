/**
 * meshfleet plan: what a change does to the network. Evaluates the fleet at
 * a base git revision (extracted with `git archive`, so the working tree is
 * never touched) and in the working tree, and prints the difference: hosts,
 * roles, routes, exit nodes, who can reach what (and the rule responsible),
 * public ports, DNS records, versions. Markdown by default (a PR comment),
 * JSON with --json. Exit 0 when both sides evaluate, 1 otherwise.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { evaluateFleet, formatDiagnostics, hasErrors, MeshfleetError } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { diffNetwork, emptyModel, networkModel, renderDiffJson, renderDiffMarkdown, type NetworkModel } from "../../core/netdiff/index.ts";
import type { Diagnostic } from "../../core/types.ts";
import { fleetDir, fleetFlags, flagHelp, parseArgs, type Flag } from "../args.ts";
import type { Command } from "../command.ts";

const flags: Flag[] = [{ name: "base", value: true, help: "git revision to compare with (e.g. origin/main, HEAD~1)" }, ...fleetFlags];

export const command: Command = {
  name: "plan",
  summary: "show what a change does to the network (hosts, routes, reachability, ports, DNS, versions)",
  usage: `usage: meshfleet plan --base <git ref> [--stack S | --hosts-dir DIR] [--json]\n\nEvaluates the fleet at <git ref> and in the working tree and prints the\ndifference as Markdown (for a pull-request comment) or JSON.\n\n${flagHelp(flags)}`,
  async run(argv) {
    const { opts } = parseArgs(argv, flags);
    if (typeof opts.base !== "string") throw new MeshfleetError("plan needs --base <git ref>, e.g. --base origin/main");
    const { dir, stack } = fleetDir(opts);
    const head = await evaluate(dir, stack);
    const base = await atRevision(opts.base, dir, stack);
    const problems = [...base.diagnostics.map((d) => ({ ...d, file: `${opts.base}:${d.file}` })), ...head.diagnostics];
    if (hasErrors(problems)) {
      console.error(formatDiagnostics(problems.filter((d) => d.severity === "error")));
      console.error(`cannot plan: the fleet does not evaluate${hasErrors(base.diagnostics) ? ` at ${opts.base}` : ""}; run meshfleet check`);
      return 1;
    }
    const diff = diffNetwork(base.model!, head.model!);
    if (opts.json) process.stdout.write(renderDiffJson(diff));
    else process.stdout.write(renderDiffMarkdown(diff, `meshfleet plan: ${stack} (${opts.base} → working tree)`));
    return 0;
  },
};

async function evaluate(dir: string, stack: string): Promise<{ model?: NetworkModel; diagnostics: Diagnostic[] }> {
  const r = await evaluateFleet(REGISTRY, dir, stack);
  if (!r.fleet || hasErrors(r.diagnostics)) return { diagnostics: r.diagnostics };
  return { model: networkModel(r.fleet), diagnostics: r.diagnostics };
}

/** The fleet folder as it was at `ref`; a folder that did not exist yet is an empty fleet. */
async function atRevision(ref: string, dir: string, stack: string): Promise<{ model?: NetworkModel; diagnostics: Diagnostic[] }> {
  const abs = path.resolve(dir);
  const git = (args: string[], cwd: string) => execFileSync("git", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  let top: string;
  try {
    top = git(["rev-parse", "--show-toplevel"], existsSync(abs) ? abs : process.cwd());
    git(["rev-parse", "--verify", "--quiet", `${ref}^{commit}`], top);
  } catch (e) {
    const msg = (e as { stderr?: string }).stderr?.trim();
    throw new MeshfleetError(`--base ${ref}: not a git revision of this repository${msg ? ` (${msg.split("\n")[0]})` : ""}; fetch it first (git fetch origin)`);
  }
  const rel = path.relative(top, abs) || ".";
  const listed = git(["ls-tree", "-d", "--name-only", ref, "--", rel], top);
  if (!listed) return { model: emptyModel(stack), diagnostics: [] };
  const tmp = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-"));
  try {
    // git archive | tar -x: the base's files only, no worktree, no index.
    const tar = execFileSync("git", ["archive", "--format=tar", ref, "--", rel], { cwd: top, maxBuffer: 1 << 30 });
    execFileSync("tar", ["-x", "-C", tmp], { input: tar });
    return await evaluate(path.join(tmp, rel), stack);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
