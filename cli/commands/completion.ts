/**
 * meshfleet completion bash|zsh|fish: a shell completion script. The
 * commands and their flags are written into the script (read from the
 * commands themselves); stack names and host names change with the repo, so
 * the script asks `meshfleet completion --list stacks|hosts|modules` at Tab
 * time, which reads folder and file names only (no evaluation).
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { listStacks, parseArgs, resolveFleet, UsageError, flagHelp, flagsInUsage, type Flag } from "../args.ts";
import type { Command } from "../command.ts";

type Table = Record<string, () => Promise<{ command: Command }>>;

export interface CommandInfo {
  name: string;
  summary: string;
  /** Every flag, `--name`; `-x` for a short alias. */
  flags: string[];
  /** The flags that take a value. */
  valueFlags: string[];
  /** What its positional arguments are: host names, module names, fixed words, or nothing. */
  complete: "host" | "module" | string[] | "none";
}

const SHELLS = ["bash", "zsh", "fish"] as const;
type Shell = (typeof SHELLS)[number];

const flags: Flag[] = [
  { name: "list", value: true, help: "print the names to complete, one a line: stacks, hosts (of --stack), modules" },
  { name: "stack", short: "s", value: true, help: "with --list hosts: the stack" },
  { name: "hosts-dir", value: true, help: "with --list hosts: the fleet folder" },
];

/** What the script needs to know of each command. */
export async function commandInfo(table: Table): Promise<CommandInfo[]> {
  const out: CommandInfo[] = [];
  for (const [name, load] of Object.entries(table)) {
    let c: Command;
    try {
      c = (await load()).command;
    } catch {
      continue; // a command that does not load is not offered
    }
    const own = c.flags;
    const fl = own ? own.flatMap((f) => ["--" + f.name, ...(f.short ? ["-" + f.short] : [])]) : flagsInUsage(c.usage);
    // Without a flag list, a flag followed by an upper-case word in the usage takes a value: `--on HOST`.
    const valueFlags = own
      ? own.filter((f) => f.value).flatMap((f) => ["--" + f.name, ...(f.short ? ["-" + f.short] : [])])
      : [...new Set([...c.usage.matchAll(/(?<![\w-])(--[a-z][a-z0-9-]*)[ =](?:[A-Z][A-Z_|-]*|<)/g)].map((m) => m[1]))];
    const complete = c.complete ?? "none";
    out.push({ name, summary: c.summary, flags: [...new Set([...fl, "--help"])], valueFlags, complete });
  }
  return out;
}

/** Host names of a fleet folder: its YAML files but fleet.yaml and `_`-prefixed imports. */
export function hostNames(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f) && !f.startsWith("_") && !/^fleet\.ya?ml$/.test(f))
      .map((f) => f.replace(/\.ya?ml$/, ""))
      .sort();
  } catch {
    return [];
  }
}

const q = (words: string[]) => words.join(" ");

export function bashScript(cmds: CommandInfo[]): string {
  const cases = cmds
    .map((c) => `    ${c.name}) flags="${q(c.flags)}"; vflags=" ${q(c.valueFlags)} "; pos="${typeof c.complete === "string" ? c.complete : "words:" + q(c.complete)}" ;;`)
    .join("\n");
  return `# meshfleet completion for bash: eval "$(meshfleet completion bash)", or save it
# as ~/.local/share/bash-completion/completions/meshfleet
_meshfleet_stack() {
  local i
  for ((i = 1; i < \${#COMP_WORDS[@]}; i++)); do
    case "\${COMP_WORDS[i]}" in
      --stack|-s) echo "--stack \${COMP_WORDS[i+1]}"; return ;;
      --stack=*) echo "--stack \${COMP_WORDS[i]#--stack=}"; return ;;
      --hosts-dir) echo "--hosts-dir \${COMP_WORDS[i+1]}"; return ;;
    esac
  done
}
_meshfleet() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" cmd="\${COMP_WORDS[1]}"
  local flags="" vflags=" " pos="none"
  COMPREPLY=()
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=( $(compgen -W "${q(cmds.map((c) => c.name))} --help --version" -- "$cur") )
    return
  fi
  case "$cmd" in
${cases}
    *) return ;;
  esac
  case "$prev" in
    --stack|-s) COMPREPLY=( $(compgen -W "$(meshfleet completion --list stacks 2>/dev/null)" -- "$cur") ); return ;;
    --on|--host) COMPREPLY=( $(compgen -W "$(meshfleet completion --list hosts $(_meshfleet_stack) 2>/dev/null)" -- "$cur") ); return ;;
    --hosts-dir|--out|--config-file|--state-dir) COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
  esac
  if [[ "$vflags" == *" $prev "* ]]; then return; fi
  if [[ "$cur" == -* ]]; then COMPREPLY=( $(compgen -W "$flags" -- "$cur") ); return; fi
  case "$pos" in
    host) COMPREPLY=( $(compgen -W "$(meshfleet completion --list hosts $(_meshfleet_stack) 2>/dev/null)" -- "$cur") ) ;;
    module) COMPREPLY=( $(compgen -W "$(meshfleet completion --list modules 2>/dev/null)" -- "$cur") ) ;;
    words:*) COMPREPLY=( $(compgen -W "\${pos#words:}" -- "$cur") ) ;;
  esac
}
complete -F _meshfleet meshfleet
`;
}

export function zshScript(cmds: CommandInfo[]): string {
  const desc = cmds.map((c) => `    '${c.name}:${c.summary.replace(/'/g, "'\\''").replace(/:/g, "\\:")}'`).join("\n");
  const cases = cmds
    .map((c) => `    ${c.name}) flags=(${q(c.flags)}); vflags=(${q(c.valueFlags)}); pos="${typeof c.complete === "string" ? c.complete : "words:" + q(c.complete)}" ;;`)
    .join("\n");
  return `#compdef meshfleet
# meshfleet completion for zsh: save as _meshfleet in a folder on $fpath,
# or source <(meshfleet completion zsh)
_meshfleet_stack() {
  local i
  for ((i = 2; i <= $#words; i++)); do
    case "$words[i]" in
      --stack|-s) print -- "--stack $words[i+1]"; return ;;
      --stack=*) print -- "--stack \${words[i]#--stack=}"; return ;;
      --hosts-dir) print -- "--hosts-dir $words[i+1]"; return ;;
    esac
  done
}
_meshfleet() {
  local -a commands flags vflags
  local pos="none" cur="$words[CURRENT]" prev="$words[CURRENT-1]"
  commands=(
${desc}
  )
  if (( CURRENT == 2 )); then
    _describe 'meshfleet command' commands
    compadd -- --help --version
    return
  fi
  case "$words[2]" in
${cases}
    *) return ;;
  esac
  case "$prev" in
    --stack|-s) compadd -- \${(f)"$(meshfleet completion --list stacks 2>/dev/null)"}; return ;;
    --on|--host) compadd -- \${(f)"$(meshfleet completion --list hosts \${=$(_meshfleet_stack)} 2>/dev/null)"}; return ;;
    --hosts-dir|--out|--config-file|--state-dir) _files; return ;;
  esac
  if (( \${vflags[(Ie)$prev]} )); then return; fi
  if [[ "$cur" == -* ]]; then compadd -- $flags; return; fi
  case "$pos" in
    host) compadd -- \${(f)"$(meshfleet completion --list hosts \${=$(_meshfleet_stack)} 2>/dev/null)"} ;;
    module) compadd -- \${(f)"$(meshfleet completion --list modules 2>/dev/null)"} ;;
    words:*) compadd -- \${=pos#words:} ;;
  esac
}
if [[ "$funcstack[1]" == _meshfleet ]]; then _meshfleet "$@"; else compdef _meshfleet meshfleet; fi
`;
}

export function fishScript(cmds: CommandInfo[]): string {
  const esc = (s: string) => s.replace(/\\/g, "\\\\").replace(/'/g, "\\'");
  const lines = [
    "# meshfleet completion for fish: meshfleet completion fish > ~/.config/fish/completions/meshfleet.fish",
    "complete -c meshfleet -f",
    "complete -c meshfleet -n __fish_use_subcommand -l help -d 'show the commands'",
    "complete -c meshfleet -n __fish_use_subcommand -l version -d 'print the version'",
    "function __meshfleet_stack",
    "    set -l w (commandline -opc)",
    "    for i in (seq (count $w))",
    "        switch $w[$i]",
    "            case --stack -s",
    "                set -l j (math $i + 1)",
    "                echo --stack; echo $w[$j]; return",
    "            case '--stack=*'",
    "                echo --stack; string replace -- --stack= '' $w[$i]; return",
    "        end",
    "    end",
    "end",
  ];
  for (const c of cmds) {
    const when = `'__fish_seen_subcommand_from ${c.name}'`;
    lines.push(`complete -c meshfleet -n __fish_use_subcommand -a ${c.name} -d '${esc(c.summary)}'`);
    for (const f of c.flags.filter((x) => x.startsWith("--"))) {
      const name = f.slice(2);
      const takes = c.valueFlags.includes(f);
      let arg = "";
      if (name === "stack") arg = " -r -a '(meshfleet completion --list stacks 2>/dev/null)'";
      else if (name === "on" || name === "host") arg = " -r -a '(meshfleet completion --list hosts (__meshfleet_stack) 2>/dev/null)'";
      else if (["hosts-dir", "out", "config-file", "state-dir"].includes(name)) arg = " -r -F";
      else if (takes) arg = " -r";
      const short = name === "stack" && c.flags.includes("-s") ? " -s s" : "";
      lines.push(`complete -c meshfleet -n ${when} -l ${name}${short}${arg}`);
    }
    if (c.complete === "host") lines.push(`complete -c meshfleet -n ${when} -a '(meshfleet completion --list hosts (__meshfleet_stack) 2>/dev/null)'`);
    else if (c.complete === "module") lines.push(`complete -c meshfleet -n ${when} -a '(meshfleet completion --list modules 2>/dev/null)'`);
    else if (Array.isArray(c.complete)) lines.push(`complete -c meshfleet -n ${when} -a '${c.complete.join(" ")}'`);
  }
  return lines.join("\n") + "\n";
}

/** The completion command; it needs the command table cli/main.ts dispatches on. */
export function completionCommand(table: Table): Command {
  return {
    name: "completion",
    summary: "print a shell completion script (bash, zsh or fish): commands, flags, stacks, hosts",
    flags,
    complete: [...SHELLS],
    usage: `usage: meshfleet completion bash|zsh|fish
       meshfleet completion --list stacks|hosts|modules [--stack S | --hosts-dir DIR]

bash:  eval "$(meshfleet completion bash)"   (e.g. in ~/.bashrc)
zsh:   source <(meshfleet completion zsh)    (e.g. in ~/.zshrc)
fish:  meshfleet completion fish > ~/.config/fish/completions/meshfleet.fish

Stack and host names are read when you press Tab (meshfleet completion --list),
so the script stays right as the fleet changes.

${flagHelp(flags)}`,
    async run(argv) {
      const { opts, positional } = parseArgs(argv, flags, { positionals: ["SHELL"] });
      if (typeof opts.list === "string") {
        if (positional.length) throw new UsageError("--list takes no shell name");
        const names = await listNames(opts.list, opts);
        if (names.length) console.log(names.join("\n"));
        return 0;
      }
      const shell = positional[0] as Shell | undefined;
      if (!shell) throw new UsageError("which shell? meshfleet completion bash|zsh|fish");
      if (!SHELLS.includes(shell)) throw new UsageError(`no completion for "${shell}"; shells: ${SHELLS.join(", ")}`);
      const cmds = await commandInfo(table);
      process.stdout.write(shell === "bash" ? bashScript(cmds) : shell === "zsh" ? zshScript(cmds) : fishScript(cmds));
      return 0;
    },
  };
}

async function listNames(what: string, opts: Record<string, string | boolean>): Promise<string[]> {
  switch (what) {
    case "stacks":
      return listStacks();
    case "hosts": {
      let dir: string;
      try {
        dir = resolveFleet(opts).dir;
      } catch {
        return []; // no stack chosen and several exist: nothing to offer yet
      }
      return hostNames(path.resolve(dir));
    }
    case "modules": {
      const { optionGroups } = await import("./options.ts");
      return optionGroups();
    }
    default:
      throw new UsageError(`--list ${what}: expected stacks, hosts or modules`);
  }
}
