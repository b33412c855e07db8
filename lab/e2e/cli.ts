/** `meshfleet lab up|check|report|down`: the end-to-end lab's commands for cli/commands/lab.ts's table. */
import type { LabSubcommand } from "../../cli/command.ts";
import { labChecks } from "./checks.ts";
import { deployPreviousRelease, DRILL_TOPICS, DRILLS } from "./drills/index.ts";
import { labDown } from "./down.ts";
import { e2ePaths } from "./paths.ts";
import { writeReport } from "./report.ts";
import { labUp } from "./up.ts";

const s = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

export function e2eCommands(say: (line: string) => void, defaultInstance: () => number): Record<string, LabSubcommand> {
  const unknown = (cmd: string, argv: string[], allowed: string[]) => {
    const bad = argv.find((a) => !allowed.includes(a));
    if (bad) throw new Error(`lab ${cmd}: unknown argument ${JSON.stringify(bad)}`);
  };
  return {
    up: {
      summary: "build tools, boot the hosts and deploy hosts/lab through meshfleet up (then agent verify on every host); --docker: the VPS runs headscale, nginx and derper in docker, from images built on it; --postgres: the coordinator keeps headscale's database in a local Postgres (headscale.backup on), for the Postgres drills of lab check --drills; --headscale-previous: the coordinator runs the headscale release before the pinned one through meshfleet:headscaleBinaryPath, for the upgrade drill of lab check --drills",
      usage: "meshfleet lab up [--instance N] [--no-build] [--docker | --postgres] [--headscale-previous]",
      run: async (argv, flags) => {
        unknown("up", argv, ["--no-build", "--docker", "--postgres", "--headscale-previous"]);
        if (argv.includes("--headscale-previous") && (argv.includes("--docker") || argv.includes("--postgres"))) throw new Error("lab up: --headscale-previous is for the standard lab (the docker variant runs headscale from an image, the upgrade drill runs on SQLite)");
        const instance = flags.instance ?? defaultInstance();
        const r = await labUp({ instance, log: say, noBuild: argv.includes("--no-build"), docker: argv.includes("--docker"), postgres: argv.includes("--postgres"), ...(argv.includes("--headscale-previous") ? { beforeDeploy: async () => void say(`  headscale-previous: ${await deployPreviousRelease(instance)}`) } : {}) });
        say("");
        say(`lab up: ${r.ok ? "deployed" : "FAILED"} in ${s(r.totalMs)} (instance ${instance})`);
        for (const st of r.steps) say(`  ${st.ok ? "ok  " : "FAIL"} ${`${st.step}${st.host ? ` ${st.host}` : ""}`.padEnd(28)} ${s(st.ms).padStart(7)}${st.ok && st.detail ? `  ${st.detail}` : ""}`);
        if (r.pulumi?.outputs && typeof r.pulumi.outputs.summary === "string") say(r.pulumi.outputs.summary);
        if (!r.ok) {
          process.stderr.write(`meshfleet lab up: ${r.error}\n`);
          return 1;
        }
        say(`next: meshfleet lab check; state: ${e2ePaths(instance).dir}`);
        return 0;
      },
    },
    check: {
      summary: `prove the deployed mesh works (routes, policy, relay, outage, idempotence); --quick skips the slow items; --drills also runs the coordinator drills of issue 15 after them (${Object.keys(DRILLS).length}: ${DRILL_TOPICS})`,
      usage: "meshfleet lab check [--instance N] [--quick] [--drills]",
      run: async (argv, flags) => {
        unknown("check", argv, ["--quick", "--drills"]);
        const instance = flags.instance ?? defaultInstance();
        const r = await labChecks({ instance, log: say, quick: argv.includes("--quick"), drills: argv.includes("--drills") });
        const failed = r.checks.filter((c) => !c.ok);
        say("");
        say(`lab check: ${r.checks.length - failed.length}/${r.checks.length} passed in ${s(r.totalMs)}`);
        for (const c of failed) process.stderr.write(`meshfleet lab check: ${c.name}: ${c.reason}\n`);
        return failed.length === 0 ? 0 : 1;
      },
    },
    report: {
      summary: "write the lab's HTML report (topology, tunnels, policy matrix, checks)",
      usage: "meshfleet lab report [--instance N]",
      run: async (argv, flags) => {
        unknown("report", argv, []);
        const instance = flags.instance ?? defaultInstance();
        const path = await writeReport(instance);
        say(`report: ${path}`);
        return 0;
      },
    },
    down: {
      summary: "stop the hosts and remove what the lab made (--purge also forgets the stack's state)",
      usage: "meshfleet lab down [--instance N] [--purge]",
      run: async (argv, flags) => {
        unknown("down", argv, ["--purge"]);
        const instance = flags.instance ?? defaultInstance();
        await labDown({ instance, log: say, purge: argv.includes("--purge") });
        return 0;
      },
    },
  };
}
