// Bundles the agent into one ESM file for the hosts' own Node 18 (Debian
// bookworm), with no node_modules there: it imports node:* and the bundle
// contract (contract/), whose zod/mini schema is bundled in (about 40 KB).
import { build } from "esbuild";
import { chmodSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// `--out FILE` builds elsewhere (the provider's tests build a private copy this way).
const at = process.argv.indexOf("--out");
const final = at > 0 ? resolve(process.argv[at + 1]) : join(root, "dist", "meshfleet-agent.mjs");
// Built beside it and renamed into place: a deploy reading dist/ meanwhile gets the old file or the new one, never half.
const outfile = `${final}.${process.pid}.tmp`;
const LIMIT = 400 * 1024;

await build({
  entryPoints: [join(root, "agent", "main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  target: "node18",
  format: "esm",
  minify: true,
  legalComments: "none",
  banner: { js: "#!/usr/bin/env node" },
  logLevel: "warning",
});

const size = statSync(outfile).size;
const shown = relative(root, final).startsWith("..") ? final : relative(root, final);
console.log(`${shown}: ${size} bytes`);
if (size > LIMIT) {
  rmSync(outfile, { force: true });
  console.error(`agent bundle is ${size} bytes, over the ${LIMIT}-byte budget`);
  process.exit(1);
}
chmodSync(outfile, 0o755);
renameSync(outfile, final);
