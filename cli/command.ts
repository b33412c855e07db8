/** What every `meshfleet <command>` file exports (cli/main.ts dispatches; the commands never import it). */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
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
