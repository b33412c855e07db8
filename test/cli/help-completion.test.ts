/**
 * `meshfleet completion bash|zsh|fish` (issue 13, item 4): the script knows
 * the commands and their flags, and asks the CLI for stack, host and module
 * names at Tab time. The bash script is run in bash, against the real CLI.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { UsageError } from "../../cli/args.ts";
import { bashScript, commandInfo, completionCommand, fishScript, hostNames, zshScript } from "../../cli/commands/completion.ts";
import type { Command } from "../../cli/command.ts";

const REPO = path.resolve(import.meta.dirname, "../..");
const TABLE: Record<string, () => Promise<{ command: Command }>> = {
  check: () => import("../../cli/commands/check.ts"),
  hosts: () => import("../../cli/commands/hosts.ts"),
  options: () => import("../../cli/commands/options.ts"),
  join: () => import("../../cli/commands/join.ts"),
  status: () => import("../../cli/commands/status.ts"),
};
TABLE.completion = async () => ({ command: completionCommand(TABLE) });

/** What bash offers for the words typed so far (the last one is being completed). */
function complete(script: string, words: string[]): string[] {
  const bash = `${script}
meshfleet() { node ${JSON.stringify(path.join(REPO, "bin", "meshfleet.mjs"))} "$@"; }
COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(" ")}); COMP_CWORD=${words.length - 1}
_meshfleet; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync("bash", ["--norc", "-c", bash], { cwd: REPO, encoding: "utf8", env: { ...process.env, MESHFLEET_TSX: "1" }, timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").filter(Boolean).sort();
}

describe("meshfleet completion", async () => {
  const cmds = await commandInfo(TABLE);
  const bash = bashScript(cmds);

  it("reads each command's flags, and which take a value, from the command", () => {
    const check = cmds.find((c) => c.name === "check")!;
    expect(check.flags).toEqual(["--stack", "-s", "--hosts-dir", "--json", "--nodes", "--help"]);
    expect(check.valueFlags).toEqual(["--stack", "-s", "--hosts-dir", "--nodes"]);
    // status declares no flag list: they are read from its usage text.
    const status = cmds.find((c) => c.name === "status")!;
    expect(status.flags).toEqual(expect.arrayContaining(["--stack", "--on", "--json"]));
    expect(status.valueFlags).toEqual(expect.arrayContaining(["--stack", "--on"]));
    expect(status.valueFlags).not.toContain("--json");
  });

  it("bash: commands, then a command's flags", () => {
    expect(complete(bash, ["meshfleet", "h"])).toEqual(["hosts"]);
    expect(complete(bash, ["meshfleet", "check", "--"])).toEqual(["--help", "--hosts-dir", "--json", "--nodes", "--stack"]);
    expect(complete(bash, ["meshfleet", "completion", ""])).toEqual(["bash", "fish", "zsh"]);
  });

  it("bash: stack names, and the host names of the stack on the line", () => {
    expect(complete(bash, ["meshfleet", "check", "--stack", ""])).toEqual(["core", "home", "home-site", "lab", "office"]);
    expect(complete(bash, ["meshfleet", "join", "-s", "home", "p"])).toEqual(["phone"]);
    expect(complete(bash, ["meshfleet", "status", "--stack", "home", "--on", "l"])).toEqual(["laptop", "lxc-tailscale"]);
  });

  it("host names come from the fleet folder's files (not fleet.yaml, not _imports)", () => {
    expect(hostNames(path.join(REPO, "hosts", "home"))).toEqual(["exit", "laptop", "lxc-tailscale", "phone", "vps"]);
    expect(hostNames(path.join(REPO, "hosts", "lab"))).not.toContain("_tools");
  });

  it("zsh and fish: the same commands, flags and lookups", () => {
    const zsh = zshScript(cmds);
    expect(zsh.startsWith("#compdef meshfleet\n")).toBe(true);
    expect(zsh).toContain("    join) flags=(--stack -s --hosts-dir --help); vflags=(--stack -s --hosts-dir); pos=\"host\" ;;");
    expect(zsh).toContain("meshfleet completion --list stacks");
    const fish = fishScript(cmds);
    expect(fish).toContain("complete -c meshfleet -n __fish_use_subcommand -a check -d 'validate and evaluate a fleet");
    expect(fish).toContain("complete -c meshfleet -n '__fish_seen_subcommand_from check' -l stack -s s -r -a '(meshfleet completion --list stacks 2>/dev/null)'");
    expect(fish).toContain("complete -c meshfleet -n '__fish_seen_subcommand_from join' -a '(meshfleet completion --list hosts (__meshfleet_stack) 2>/dev/null)'");
  });

  it("an unknown shell is a usage error naming the shells", async () => {
    const { command } = await TABLE.completion();
    await expect(command.run(["tcsh"])).rejects.toThrow(new UsageError('no completion for "tcsh"; shells: bash, zsh, fish'));
    await expect(command.run([])).rejects.toBeInstanceOf(UsageError);
  });
});
