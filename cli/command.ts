/** What every `meshfleet <command>` file exports (cli/main.ts dispatches; the commands never import it). */
import type { Flag } from "./args.ts";

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /**
   * Exit 0 on success or no change, 1 when problems were found; a command
   * line it cannot take throws UsageError (cli/args.ts), which is exit 2.
   */
  run(argv: string[]): Promise<number>;
  /** The flags it takes (completion reads them; else they are read from `usage`). */
  flags?: Flag[];
  /** Completes its positional arguments from: a host name, a module name, or fixed words. */
  complete?: "host" | "module" | string[];
}

/** The flags every `meshfleet lab` subcommand understands. */
export interface CommonFlags {
  instance?: number;
  debug: boolean;
}

/** One `meshfleet lab <name>` subcommand (cli/commands/lab.ts lists them, lab/e2e/cli.ts makes some). */
export interface LabSubcommand {
  summary: string;
  usage: string;
  run: (argv: string[], flags: CommonFlags) => Promise<number>;
}
