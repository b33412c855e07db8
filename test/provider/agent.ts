/**
 * The agent bundle for the provider's real tests, built into a private temp
 * folder by agent/build.mjs --out (the one set of build options): rebuilding
 * dist/meshfleet-agent.mjs under a deploy that is reading it would make that
 * deploy push another file than its program hashed.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { scratchDir } from "../scratch.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let built: string | null = null;

export function privateAgent(): string {
  if (built) return built;
  const dir = scratchDir("mf-test-agent-");
  const out = path.join(dir, "meshfleet-agent.mjs");
  const r = spawnSync(process.execPath, [path.join(REPO, "agent", "build.mjs"), "--out", out], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`agent/build.mjs --out: ${r.stderr || r.stdout}`);
  built = out;
  return out;
}
