/**
 * The whole meshfleet CLI against a lab instance's stack, as a user runs it:
 * `meshfleet <verb> --stack lab --config-file <instance's> [--yes]` in its own
 * process. The move and upgrade drills use it because what they prove lives
 * in the CLI command (the headscale upgrade step runs before the deploy, in
 * `up` and `preview`, not in runDeploy); the lab tests use it too.
 */
import { execa } from "execa";
import { join } from "node:path";
import { e2ePaths, STACK } from "../paths.ts";
import { labPulumiEnv, REPO } from "../pulumi.ts";

export interface LabCliRun {
  code: number | undefined;
  /** stdout, then stderr. */
  out: string;
  ms: number;
}

export type LabCli = (verb: "up" | "preview", ...extra: string[]) => Promise<LabCliRun>;

/**
 * `meshfleet <verb> --stack lab --config-file <instance's>` as a whole CLI process (`up` with
 * --yes), its state dir given (`stateDir()` is read at each call: tests make it in beforeAll).
 */
export function labCli(instance: number, stateDir: () => string): LabCli {
  return async (verb, ...extra) => {
    const t0 = Date.now();
    const r = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), verb, "--stack", STACK, "--config-file", e2ePaths(instance).stackConfig, ...(verb === "up" ? ["--yes"] : []), ...extra], {
      cwd: REPO,
      reject: false,
      env: { ...process.env, ...labPulumiEnv(instance), MESHFLEET_STATE_DIR: stateDir() },
      timeout: verb === "up" ? 900_000 : 600_000,
    });
    return { code: r.exitCode, out: `${r.stdout}\n${r.stderr}`, ms: Date.now() - t0 };
  };
}
