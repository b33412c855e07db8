// The real peers' toolchain: headscale, tailscale, derper and the pulumi CLI,
// pinned in lab/versions.json and built from Go modules into a shared cache.
import { mkdirSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { ToolsError } from "./errors.ts";
import { toolsDir } from "./paths.ts";
import { toolStatus } from "./status.ts";
import { loadVersions } from "./versions.ts";

export { toolsDir } from "./paths.ts";
export { toolsStatus, type ToolStatus, type BinaryStatus } from "./status.ts";
export { buildTools, type BuildOptions, type BuildOutcome, type Progress } from "./build.ts";
export { ToolsError } from "./errors.ts";
export { loadVersions, type ToolSpec } from "./versions.ts";

const resolved = new Map<string, { path: string; version: string }>();

/**
 * Absolute path of a pinned binary (headscale, tailscale, tailscaled, derper, pulumi):
 * the cached build, else one on PATH
 * that reports the pinned version. Throws a one-line ToolsError naming the fix otherwise.
 */
export function toolPath(binary: string): string {
  return toolBinary(binary).path;
}

/**
 * toolPath and the binary's version: the pinned one, which the cache's stamp
 * vouches for (or which the binary reported, unstamped or on PATH). Callers
 * need not run `<binary> version` again.
 */
export function toolBinary(binary: string): { path: string; version: string } {
  const hit = resolved.get(binary);
  if (hit) return hit;
  const tool = loadVersions().tools.find((t) => binary in t.binaries);
  if (!tool) {
    const all = loadVersions().tools.flatMap((t) => Object.keys(t.binaries));
    throw new ToolsError(`unknown tool binary ${binary}: lab/versions.json pins ${all.join(", ")}`);
  }
  const s = toolStatus(tool);
  const b = s.binaries.find((x) => x.name === binary);
  if (s.state === "missing" || !b?.path) {
    throw new ToolsError(`${binary} ${tool.version} is not built${s.note ? ` (${s.note})` : ""}: run \`meshfleet tools build\``);
  }
  const found = { path: b.path, version: b.version ?? tool.version };
  resolved.set(binary, found);
  return found;
}

export type PulumiEnvOptions = {
  /** Encrypts the stack's secrets; default: $PULUMI_CONFIG_PASSPHRASE. */
  passphrase?: string;
  /** Base environment; default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** PULUMI_HOME; default: `workDir/home`. */
  home?: string;
};

/**
 * The environment Pulumi runs with: a file backend under `workDir/state`, its own
 * PULUMI_HOME under `workDir/home` (nothing written to ~/.pulumi), no update check, no
 * plugin downloads, and the pinned pulumi CLI first on PATH. No plugin comes from PATH:
 * the program runs inline and meshfleet's provider is declared in Pulumi.yaml.
 * Creates both directories.
 */
export function pulumiEnv(workDir: string, opts: PulumiEnvOptions = {}): Record<string, string> {
  const base = opts.env ?? process.env;
  const passphrase = opts.passphrase ?? base.PULUMI_CONFIG_PASSPHRASE;
  if (passphrase === undefined || passphrase === "") {
    throw new ToolsError("pulumiEnv: no passphrase for the stack's secrets: pass { passphrase } or set PULUMI_CONFIG_PASSPHRASE");
  }
  const dir = resolve(workDir);
  const state = join(dir, "state");
  const home = opts.home ? resolve(opts.home) : join(dir, "home");
  mkdirSync(state, { recursive: true });
  mkdirSync(home, { recursive: true });
  const bins = [dirname(toolPath("pulumi"))];
  // The provider's shim runs `node`; the one running this process is the one the repo was tested with.
  const path = [...new Set([...bins, dirname(process.execPath)]), base.PATH ?? ""].filter(Boolean).join(delimiter);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  return {
    ...env,
    PATH: path,
    PULUMI_HOME: home,
    PULUMI_BACKEND_URL: `file://${state}`,
    PULUMI_CONFIG_PASSPHRASE: passphrase,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
  };
}

/** Bin directories of every cached tool, for callers that put them all on PATH. */
export function toolBinDirs(): string[] {
  const root = toolsDir();
  return loadVersions().tools.map((t) => join(root, `${t.name}@${t.version}`, "bin"));
}
