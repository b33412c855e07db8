/**
 * `meshfleet lab ...`: the local lab. Subcommands live in one table so more
 * (lab up/check/report/down) can be added beside `hosts` without touching the
 * dispatch.
 */
import { defaultInstance, hostsDown, hostsStatus, hostsUp, LabError, type LabStatus } from "../../lab/hosts/index.ts";
import { e2eCommands } from "../../lab/e2e/cli.ts";

import type { CommonFlags, LabSubcommand } from "../command.ts";

export type { CommonFlags, LabSubcommand };

/** Take the flags every lab subcommand understands out of argv. */
export function commonFlags(argv: string[]): { flags: CommonFlags; rest: string[] } {
  const flags: CommonFlags = { debug: false };
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--debug") flags.debug = true;
    else if (a === "--instance" || a.startsWith("--instance=")) {
      const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[++i];
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 9) throw new LabError(`--instance: expected an integer 0..9, found ${JSON.stringify(v)}`);
      flags.instance = n;
    } else rest.push(a);
  }
  return { flags, rest };
}

const say = (line: string) => process.stdout.write(line + "\n");

function printStatus(s: LabStatus): void {
  say(`lab ${s.instance}: ${s.up ? "up" : "down"}`);
  const rows = s.hosts.map((h) => [
    h.name,
    h.role,
    h.state + (h.kind === "nspawn" && h.state === "up" ? (h.ssh ? " ssh" : " no-ssh") : ""),
    h.mgmt ?? "-",
    h.addresses.join(","),
  ]);
  const head = ["HOST", "ROLE", "STATE", "SSH ADDRESS", "ADDRESSES"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [head, ...rows]) say(r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd());
}

const hostsSubcommands: Record<string, LabSubcommand> = {
  up: {
    summary: "boot the lab's Debian hosts (idempotent)",
    usage: "meshfleet lab hosts up [--instance N] [--hosts a,b]",
    run: async (argv, flags) => {
      let hosts: string[] | undefined;
      for (let i = 0; i < argv.length; i++) {
        const a = argv[i]!;
        if (a === "--hosts") hosts = (argv[++i] ?? "").split(",").filter(Boolean);
        else if (a.startsWith("--hosts=")) hosts = a.slice(8).split(",").filter(Boolean);
        else throw new LabError(`lab hosts up: unknown argument ${JSON.stringify(a)} (usage: ${hostsSubcommands.up!.usage})`);
      }
      const r = await hostsUp({ instance: flags.instance, hosts, log: say });
      const boots = Object.entries(r.bootMs);
      if (boots.length > 0) {
        say(`booted ${boots.length} hosts: ${boots.map(([h, ms]) => `${h} ${(ms / 1000).toFixed(1)}s`).join(", ")}; total ${(r.totalMs / 1000).toFixed(1)}s`);
      }
      say(`ssh: ssh -i ${r.keyPath} -o UserKnownHostsFile=${r.knownHostsPath} -o StrictHostKeyChecking=yes root@<ssh address>`);
      printStatus(r);
      return 0;
    },
  },
  down: {
    summary: "remove everything the lab made (by its own records)",
    usage: "meshfleet lab hosts down [--instance N]",
    run: async (argv, flags) => {
      if (argv.length > 0) throw new LabError(`lab hosts down: unknown argument ${JSON.stringify(argv[0])}`);
      await hostsDown({ instance: flags.instance, log: say });
      return 0;
    },
  },
  status: {
    summary: "hosts, addresses and state",
    usage: "meshfleet lab hosts status [--instance N] [--json]",
    run: async (argv, flags) => {
      const json = argv.includes("--json");
      const other = argv.find((a) => a !== "--json");
      if (other) throw new LabError(`lab hosts status: unknown argument ${JSON.stringify(other)}`);
      const s = await hostsStatus({ instance: flags.instance });
      if (json) say(JSON.stringify(s, null, 2));
      else printStatus(s);
      return 0;
    },
  },
};

/** Plain subcommands (`lab up`), the end-to-end lab; defined in lab/e2e/cli.ts. */
export const labCommands: Record<string, LabSubcommand> = e2eCommands(say, defaultInstance);

/** Groups of subcommands: `lab <group> <sub>`; a group may also be a plain subcommand later (`lab up`). */
export const labSubcommands: Record<string, Record<string, LabSubcommand>> = {
  hosts: hostsSubcommands,
};

function usage(): string {
  const lines = ["usage: meshfleet lab <command> ...", ""];
  for (const [name, s] of Object.entries(labCommands)) lines.push(`  ${name.padEnd(16)} ${s.summary}`);
  for (const [group, subs] of Object.entries(labSubcommands)) {
    for (const [name, s] of Object.entries(subs)) lines.push(`  ${`${group} ${name}`.padEnd(16)} ${s.summary}`);
  }
  lines.push("", "flags: --instance N (0..9, default env MESHFLEET_LAB_INSTANCE or 0), --debug");
  return lines.join("\n");
}

export const command = {
  name: "lab",
  summary: "the local lab: real Debian hosts in network namespaces",
  usage: usage(),
  run: async (argv: string[]): Promise<number> => {
    let debug = argv.includes("--debug");
    try {
      const { flags, rest } = commonFlags(argv);
      debug = flags.debug;
      const [group, sub, ...args] = rest;
      if (!group || group === "help" || group === "--help" || group === "-h") {
        say(usage());
        return group ? 0 : 2;
      }
      const plain = labCommands[group];
      if (plain) return await plain.run(sub === undefined ? args : [sub, ...args], flags);
      const subs = labSubcommands[group];
      if (!subs) {
        process.stderr.write(`meshfleet lab: unknown command "${group}"\n${usage()}\n`);
        return 2;
      }
      const cmd = sub ? subs[sub] : undefined;
      if (!cmd) {
        process.stderr.write(`meshfleet lab ${group}: expected one of ${Object.keys(subs).join(", ")}, found ${sub ? `"${sub}"` : "nothing"}\n`);
        return 2;
      }
      return await cmd.run(args, flags);
    } catch (e) {
      const err = e as Error;
      process.stderr.write(`meshfleet lab: ${err.message}\n`);
      if (debug && err.stack) process.stderr.write(err.stack + "\n");
      return 1;
    }
  },
};
