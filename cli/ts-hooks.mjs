// Module hooks for the prebuilt CLI (dist/cli): what it still imports as
// TypeScript at run time (a `.ts` host file) is compiled with esbuild on
// first use. tsx would do the same, but loading it costs more than the whole
// `--help` budget, on every run. A core/, modules/ or contract/ file such a
// host imports is the built one (dist/cli/core/priority.mjs for
// core/priority.ts): one instance of each module, as under tsx.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";

const ROOT = new URL("../", import.meta.url).href;
let DIST = new URL("dist/cli/", ROOT);
let esbuild;

/** `register(hooks, { data: { dist } })`: the folder of the built CLI, when not dist/cli. */
export function initialize(data) {
  if (data?.dist) DIST = new URL(data.dist.endsWith("/") ? data.dist : data.dist + "/");
}

export async function resolve(specifier, context, next) {
  let r;
  try {
    r = await next(specifier, context);
  } catch (e) {
    // `./x.js` written for a `./x.ts` file, as TypeScript allows.
    if (e?.code !== "ERR_MODULE_NOT_FOUND" || !/^\.{1,2}\/.*\.js$/.test(specifier) || !/\.[cm]?ts$/.test(context.parentURL ?? "")) throw e;
    r = await next(specifier.replace(/\.js$/, ".ts"), context);
  }
  if (r.url.startsWith(ROOT) && /^(core|modules|contract)\/.*\.ts$/.test(r.url.slice(ROOT.length))) {
    const twin = new URL(r.url.slice(ROOT.length).replace(/\.ts$/, ".mjs"), DIST);
    if (existsSync(twin)) return { url: twin.href, format: "module", shortCircuit: true };
  }
  return r;
}

export async function load(url, context, next) {
  if (!/^file:.*\.[cm]?ts$/.test(url)) return next(url, context);
  esbuild ??= await import("esbuild");
  const source = await readFile(new URL(url), "utf8");
  const out = await esbuild.transform(source, {
    loader: "ts",
    format: url.endsWith(".cts") ? "cjs" : "esm",
    target: "node20",
    sourcefile: new URL(url).pathname,
    sourcemap: "inline",
  });
  return { format: url.endsWith(".cts") ? "commonjs" : "module", source: out.code, shortCircuit: true };
}
