/**
 * The agent bundle for the provider's real tests, built into a private temp
 * folder (the same esbuild options as agent/build.mjs): rebuilding
 * dist/meshfleet-agent.mjs under a deploy that is reading it would make that
 * deploy push another file than its program hashed.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildSync } from "esbuild";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let built: string | null = null;

export function privateAgent(): string {
  if (built) return built;
  const dir = mkdtempSync(path.join(tmpdir(), "mf-test-agent-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, "meshfleet-agent.mjs");
  buildSync({
    entryPoints: [path.join(REPO, "agent", "main.ts")],
    outfile: out,
    bundle: true,
    platform: "node",
    target: "node18",
    format: "esm",
    minify: true,
    legalComments: "none",
    banner: { js: "#!/usr/bin/env node" },
    logLevel: "warning",
  });
  built = out;
  return out;
}
