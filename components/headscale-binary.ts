/**
 * meshfleet:headscaleBinaryPath as the deploy reads it, in one place: the
 * Coordinator (components/coordinator.ts) pushes this file, and `meshfleet up`'s
 * guarded upgrade (cli/headscale-upgrade.ts) checks and installs the same one
 * before it. No Pulumi import here: the CLI loads this before the SDK.
 */
import path from "node:path";

/** The local file: `path.resolve` from the folder the program runs in (runDeploy moves to the repo root first); no `~`. */
export function headscaleBinaryFile(setting: string, workDir: string = process.cwd()): string {
  return path.resolve(workDir, setting);
}
