// Where built tools live: <toolsDir>/<name>@<version>/bin, outside the repo so that
// every checkout and worktree shares one build.
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import type { ToolSpec } from "./versions.ts";

export function toolsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MESHFLEET_TOOLS_DIR) return resolve(env.MESHFLEET_TOOLS_DIR);
  const cache = env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), ".cache");
  return join(cache, "meshfleet", "tools");
}

export const toolKey = (t: ToolSpec) => `${t.name}@${t.version}`;
export const toolHome = (root: string, t: ToolSpec) => join(root, toolKey(t));
export const toolBinDir = (root: string, t: ToolSpec) => join(toolHome(root, t), "bin");
/** Written last by a successful build; its presence is what makes a warm run cheap. */
export const stampFile = (root: string, t: ToolSpec) => join(toolHome(root, t), "meshfleet-tool.json");
/** Scratch modules and logs; safe to delete at any time. */
export const buildDir = (root: string, t: ToolSpec) => join(root, ".build", toolKey(t));
export const logFile = (root: string, t: ToolSpec) => join(root, ".build", `${toolKey(t)}.log`);
