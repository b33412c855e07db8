/**
 * The provider's entry in plain JavaScript, run by bin/pulumi-resource-meshfleet.
 *
 * The engine starts the provider once per run, so its start-up is paid on
 * every `up`, even a no-op. Two costs are avoided here:
 * - the Pulumi SDK is loaded natively (through tsx's hooks every one of its
 *   CommonJS files would be transformed: about 0.5 s of CPU);
 * - our TypeScript runs from a bundle esbuild made of provider/*.ts, kept in
 *   provider/.cache/ under the sources' sha256 (so an edit makes a new one),
 *   instead of starting tsx and its esbuild service on each launch.
 * When no bundle can be made (no esbuild, a read-only checkout), tsx runs
 * main.ts directly.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
require("@pulumi/pulumi/provider/index.js");

function tsFiles(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => !e.name.startsWith("."))
    .flatMap((e) => (e.isDirectory() ? tsFiles(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []))
    .sort();
}

function bundled() {
  if (process.env.MESHFLEET_PROVIDER_TSX === "1") return null;
  try {
    const h = createHash("sha256");
    for (const f of tsFiles(here)) h.update(`${path.relative(here, f)}\0`).update(readFileSync(f)).update("\0");
    const out = path.join(here, ".cache", `main-${h.digest("hex").slice(0, 16)}.mjs`);
    if (existsSync(out)) return out;
    const esbuild = require("esbuild");
    mkdirSync(path.dirname(out), { recursive: true });
    for (const old of readdirSync(path.dirname(out))) if (old.startsWith("main-")) rmSync(path.join(path.dirname(out), old), { force: true });
    const tmp = `${out}.${process.pid}.tmp`;
    esbuild.buildSync({
      entryPoints: [path.join(here, "main.ts")],
      outfile: tmp,
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node18",
      // The SDK and grpc stay the ones node_modules holds (loaded natively above).
      packages: "external",
      logLevel: "silent",
    });
    renameSync(tmp, out);
    return out;
  } catch {
    return null;
  }
}

const file = bundled();
if (file) await import(pathToFileURL(file).href);
else {
  const { register } = await import("tsx/esm/api");
  register();
  await import("./main.ts");
}
