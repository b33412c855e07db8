#!/usr/bin/env node
// Runs the prebuilt CLI (dist/cli, made by `node cli/build.mjs`, the
// build:cli script) when it was built from the sources as they are now;
// otherwise, or with MESHFLEET_TSX=1, the TypeScript itself through tsx.
// Loading tsx costs more than `--help` may take, so the prebuilt CLI
// answers `--help`, `--version` and `<command> --help` from its manifest.
import { readFileSync, realpathSync, statSync } from "node:fs";
import { register } from "node:module";
import { fileURLToPath } from "node:url";

const root = new URL("../", import.meta.url);

// node:crypto only when an mtime moved (a checkout, a copy): most runs only stat.
const sha256 = async (file) => (await import("node:crypto")).createHash("sha256").update(readFileSync(file)).digest("hex");

/** The manifest when every source is as it was built (same size and mtime, else same sha256); else null. */
export async function freshManifest(dir = new URL("dist/cli/", root), base = root) {
  let m;
  try {
    m = JSON.parse(readFileSync(new URL("manifest.json", dir), "utf8"));
  } catch {
    return null;
  }
  if (m?.format !== 1 || !m.inputs) return null;
  for (const [rel, want] of Object.entries(m.inputs)) {
    const file = new URL(rel, base);
    let st;
    try {
      st = statSync(file);
    } catch {
      return null;
    }
    if (st.size !== want.size) return null;
    if (st.mtimeMs !== want.mtimeMs && (await sha256(file)) !== want.sha256) return null;
  }
  return m;
}

// The lab runs through tsx: it takes minutes anyway, and through tsx there is
// one copy of each module (the bundle holds its own copies of core/ and contract/).
// The deploy verbs run the bundle, the Pulumi program included (dist/cli/program.mjs,
// built from index.ts): a no-op `up` must fit in 4 s, and tsx compiling the program
// and its imports at each run cost about a second of it.
const VIA_TSX = new Set(["lab"]);
const LAZY_HOOKS = new Set(["check", "plan", "hosts", "render", "up", "preview", "refresh", "destroy"]);

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === realpathSync(process.argv[1]);
if (isMain) {
  const m = process.env.MESHFLEET_TSX === "1" ? null : await freshManifest();
  if (m) {
    const [name, ...rest] = process.argv.slice(2).filter((a) => a !== "--debug");
    const text =
      name === "--help" || name === "-h" || name === "help" ? m.help
      : name === "--version" || name === "-V" ? `meshfleet ${m.version}\n`
      : name && m.usage[name] !== undefined && (rest.includes("--help") || rest.includes("-h")) ? m.usage[name]
      : undefined;
    if (text !== undefined) process.stdout.write(text);
    else if (VIA_TSX.has(name)) await viaTsx();
    else {
      // Completion answers from folder names and never imports TypeScript: no hooks thread for it.
      // check, plan, hosts and render import TypeScript only for a `.ts` host file, through
      // core/load.ts, which starts the hooks when it meets one (the thread costs ~100 ms of CPU).
      const hooks = () => register(new URL("cli/ts-hooks.mjs", root));
      if (LAZY_HOOKS.has(name)) {
        let started = false;
        globalThis[Symbol.for("meshfleet.registerTsHooks")] = () => {
          if (!started) hooks();
          started = true;
        };
      } else if (name !== "completion") hooks();
      await import(new URL("dist/cli/main.mjs", root).href);
    }
  } else await viaTsx();
}

async function viaTsx() {
  const { register: tsx } = await import("tsx/esm/api");
  tsx();
  await import("../cli/main.ts");
}
