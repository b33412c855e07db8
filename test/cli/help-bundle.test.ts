/**
 * The prebuilt CLI (issue 13, item 10): bin/meshfleet.mjs runs dist/cli only
 * when it was built from the sources as they are (size and mtime, else
 * sha256), and the built CLI answers as the TypeScript does, including for
 * a `.ts` host file, which it compiles on first use (cli/ts-hooks.mjs).
 */
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { generateFleet } from "../../bench/eval-scale/generate.ts";
import { MIN_HOSTS } from "../../cli/parallel-eval.ts";
// @ts-expect-error plain JS, no types
import { freshManifest } from "../../bin/meshfleet.mjs";

const REPO = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(tmpdir(), "mf-bundle-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const url = (p: string) => pathToFileURL(p.endsWith("/") ? p : p + "/");

describe("freshManifest", () => {
  const base = path.join(tmp, "src");
  const out = path.join(tmp, "out");
  mkdirSync(base, { recursive: true });
  mkdirSync(out, { recursive: true });
  const file = path.join(base, "a.ts");
  const manifest = () => {
    const st = statSync(file);
    const sha = execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0];
    writeFileSync(path.join(out, "manifest.json"), JSON.stringify({ format: 1, version: "0", help: "h", usage: {}, inputs: { "a.ts": { size: st.size, mtimeMs: st.mtimeMs, sha256: sha } } }));
  };

  it("is fresh while the sources are as built, stale on any change", async () => {
    writeFileSync(file, "export const a = 1;\n");
    manifest();
    expect(await freshManifest(url(out), url(base))).not.toBeNull();
    utimesSync(file, new Date(), new Date(Date.now() + 5000)); // touched (a checkout): same content
    expect(await freshManifest(url(out), url(base))).not.toBeNull();
    writeFileSync(file, "export const a = 2;\n"); // same size, new content
    expect(await freshManifest(url(out), url(base))).toBeNull();
    rmSync(file);
    expect(await freshManifest(url(out), url(base))).toBeNull();
    expect(await freshManifest(url(path.join(tmp, "none")), url(base))).toBeNull();
  });
});

describe("the built CLI", () => {
  // Inside the repo: the chunks import packages from node_modules, found by walking up.
  const out = path.join(REPO, "dist", `cli-test-${process.pid}`);
  afterAll(() => rmSync(out, { recursive: true, force: true }));
  const hooks = pathToFileURL(path.join(REPO, "cli", "ts-hooks.mjs")).href;
  /** node running the build's main.mjs with the hooks pointed at the build (as bin/meshfleet.mjs runs dist/cli). */
  const builtArgv = (args: string[]) => ["--import", "data:text/javascript," + encodeURIComponent(`import{register}from"node:module";register(${JSON.stringify(hooks)},{data:{dist:${JSON.stringify(pathToFileURL(out).href)}}})`), path.join(out, "main.mjs"), ...args];
  const built = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, builtArgv(args), {
      cwd: REPO,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, ...env },
    });
  const builtAsync = (args: string[], env: Record<string, string>) =>
    promisify(execFile)(process.execPath, builtArgv(args), {
      cwd: REPO,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, ...env },
    });
  let isBuilt = false;
  const build = () => {
    if (!isBuilt) execFileSync(process.execPath, [path.join(REPO, "cli", "build.mjs"), "--outdir", out], { cwd: REPO, encoding: "utf8", timeout: 240_000 });
    isBuilt = true;
  };

  it("answers as the TypeScript does, and reads a .ts host file", { timeout: 300_000 }, () => {
    build();
    const m = JSON.parse(readFileSync(path.join(out, "manifest.json"), "utf8"));
    expect(Object.keys(m.inputs)).toEqual(expect.arrayContaining(["cli/main.ts", "cli/args.ts", "core/eval.ts", "package.json"]));
    expect(Object.keys(m.inputs).some((p) => p.startsWith("node_modules/"))).toBe(false);

    const tsx = spawnSync(process.execPath, [path.join(REPO, "bin", "meshfleet.mjs"), "--help"], { cwd: REPO, encoding: "utf8", env: { ...process.env, MESHFLEET_TSX: "1" } });
    expect(m.help).toBe(tsx.stdout);
    expect(built(["--help"]).stdout).toBe(tsx.stdout);
    expect(m.usage.check).toMatch(/^usage: meshfleet check/);

    const fleet = path.join(tmp, "fleet");
    cpSync(path.join(REPO, "hosts", "home"), fleet, { recursive: true });
    rmSync(path.join(fleet, "laptop.yaml"));
    // It imports mkForce from the source tree: the built CLI must see the same Prio class (else the value is an object, not true).
    const priority = path.relative(fleet, path.join(REPO, "core", "priority.ts")).split(path.sep).join("/");
    writeFileSync(
      path.join(fleet, "laptop.ts"),
      `import { mkForce } from "${priority}";\nconst user: string = "alice";\nexport default { imports: ["client"], address: "192.168.8.50", tailscale: { user, acceptRoutes: mkForce(true) } };\n`,
    );
    const r = built(["hosts", "--hosts-dir", fleet, "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const laptop = JSON.parse(r.stdout).hosts.find((h: { host: string }) => h.host === "laptop");
    expect(laptop).toMatchObject({ roles: ["client"], address: "192.168.8.50" });
    const ok = built(["check", "--hosts-dir", fleet]);
    expect(ok.status, ok.stderr).toBe(0);
    const bad = built(["check", "home"]);
    expect(bad.status).toBe(2);
  });

  it("renders a large fleet on two threads with its own build's worker, the files the same as on one", { timeout: 300_000 }, async () => {
    build();
    const fleet = path.join(tmp, "large");
    mkdirSync(fleet);
    generateFleet(fleet, MIN_HOSTS);
    const [one, two] = [path.join(tmp, "render-1"), path.join(tmp, "render-2")];
    // Not spawnSync: a render of this size blocks the test's thread for longer than vitest's calls to it may wait.
    await builtAsync(["render", "--hosts-dir", fleet, "--out", one], { MESHFLEET_THREADS: "1" });
    // The worker's steps show only when the bundle started its own worker (a worker that cannot
    // start sends the render down the serial path, which would show none).
    const threads = await builtAsync(["render", "--hosts-dir", fleet, "--out", two], { MESHFLEET_THREADS: "2", MESHFLEET_SHARD_TIMES: "1" });
    expect(threads.stderr).toMatch(/\[worker\] hosts sent/);
    const files = (dir: string) => (readdirSync(dir, { recursive: true }) as string[]).filter((f) => statSync(path.join(dir, f)).isFile()).sort();
    const list = files(one);
    expect(list.length).toBeGreaterThan(MIN_HOSTS * 10);
    expect(files(two)).toEqual(list);
    for (const f of list) expect(readFileSync(path.join(two, f), "utf8"), f).toBe(readFileSync(path.join(one, f), "utf8"));
  });
});
