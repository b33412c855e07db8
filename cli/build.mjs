// Builds the prebuilt CLI that bin/meshfleet.mjs runs when it is fresh:
// dist/cli/main.mjs and its chunks (esbuild, code-split so a command loads
// only its own code; packages stay in node_modules), and
// dist/cli/manifest.json: the source files it was built from (size, mtime,
// sha256: bin/ checks them on every run and falls back to tsx on any
// difference) and the help texts, taken from the built CLI itself, so
// `meshfleet --help` and `meshfleet <command> --help` load no command.
//
//   node cli/build.mjs [--outdir DIR]      (npm run build:cli)
import { build } from "esbuild";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const at = process.argv.indexOf("--outdir");
const outdir = resolve(at > 0 ? process.argv[at + 1] : join(root, "dist", "cli"));
const t0 = Date.now();

// Source files read their own location (REPO_ROOT = import.meta.url + "..");
// in a chunk under dist/cli that would point elsewhere, so each file's
// import.meta.url becomes its source file's URL, relative to the chunk.
const keepFileUrls = {
  name: "keep-file-urls",
  setup(b) {
    b.onLoad({ filter: /\.[cm]?ts$/ }, (args) => {
      const text = readFileSync(args.path, "utf8");
      if (!text.includes("import.meta.url")) return undefined;
      const rel = relative(outdir, args.path).split("\\").join("/");
      return { contents: text.replaceAll("import.meta.url", `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: "ts" };
    });
  },
};

// core/, modules/ and contract/ files are entry points too (dist/cli/core/priority.mjs, ...):
// a `.ts` host file compiled at run time that imports one (mkDefault from
// core/priority.ts) is pointed at that file by cli/ts-hooks.mjs, so it shares
// the bundle's instance (the same Prio class, the same MeshfleetError).
// None of these files reads import.meta.url, which keepFileUrls rewrites
// for the chunks at the top of outdir only.
const shared = ["core", "modules", "contract"]
  .flatMap((d) => readdirSync(join(root, d), { recursive: true }).map((p) => `${d}/${String(p).split("\\").join("/")}`))
  .filter((p) => p.endsWith(".ts") && !p.endsWith(".d.ts"));

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
const result = await build({
  // program: index.ts, the Pulumi program the deploy verbs run inline (cli/commands/deploy.ts loadProgram).
  entryPoints: { main: join(root, "cli", "main.ts"), program: join(root, "index.ts"), "parallel-eval-worker": join(root, "cli", "parallel-eval-worker.ts"), "parallel-eval": join(root, "cli", "parallel-eval.ts"), "short-run": join(root, "cli", "short-run.ts"), ...Object.fromEntries(shared.map((p) => [p.replace(/\.ts$/, ""), join(root, p)])) },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  packages: "external",
  outExtension: { ".js": ".mjs" },
  chunkNames: "chunk-[hash]",
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
  plugins: [keepFileUrls],
  // The bundle's code knows it is the bundle (cli/parallel-eval.ts starts the bundle's worker, not the TypeScript's).
  define: { MESHFLEET_PREBUILT: "true" },
});

const sha = (p) => createHash("sha256").update(readFileSync(p)).digest("hex");
const inputs = {};
for (const p of [...Object.keys(result.metafile.inputs), "package.json", "cli/ts-hooks.mjs", "cli/build.mjs"]) {
  const abs = resolve(root, p);
  const rel = relative(root, abs).split("\\").join("/");
  if (rel.startsWith("..") || rel.startsWith("node_modules/")) continue;
  const st = statSync(abs);
  inputs[rel] = { size: st.size, mtimeMs: st.mtimeMs, sha256: sha(abs) };
}

// The help texts, from the built CLI: the same code answers them either way.
const run = promisify(execFile);
const main = join(outdir, "main.mjs");
const hooks = pathToFileURL(join(root, "cli", "ts-hooks.mjs")).href;
const cli = (args) =>
  run(process.execPath, ["--import", "data:text/javascript," + encodeURIComponent(`import{register}from"node:module";register(${JSON.stringify(hooks)},{data:{dist:${JSON.stringify(pathToFileURL(outdir).href)}}})`), main, ...args], {
    cwd: root,
    maxBuffer: 1 << 24,
    env: { ...process.env, NO_COLOR: "1" },
  });
const help = (await cli(["--help"])).stdout;
const names = [...help.matchAll(/^ {2}([a-z][a-z-]*) /gm)].map((m) => m[1]);
// main's --help leaves out a command that fails to load: in a build, that is an error.
const table = [...readFileSync(join(root, "cli", "main.ts"), "utf8").matchAll(/^ {2}([a-z][a-z-]*): \(\) => import\(/gm)].map((m) => m[1]);
const missing = table.filter((n) => !names.includes(n));
if (missing.length) {
  console.error(`cli/build.mjs: the built CLI cannot load ${missing.join(", ")} (run it with --debug to see why)`);
  process.exit(1);
}
const usage = {};
const queue = [...names];
await Promise.all(
  [0, 1, 2].map(async () => {
    for (let n = queue.shift(); n; n = queue.shift()) usage[n] = (await cli([n, "--help"])).stdout;
  }),
);
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
writeFileSync(join(outdir, "manifest.json"), JSON.stringify({ format: 1, version, help, usage: Object.fromEntries(names.map((n) => [n, usage[n]])), inputs }, null, 1) + "\n");
const files = Object.keys(result.metafile.outputs).length;
console.log(`${relative(root, outdir) || "."}: ${files} files from ${Object.keys(inputs).length} sources, ${names.length} commands' help (${Date.now() - t0} ms)`);
