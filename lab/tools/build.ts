// Building what is missing: runs the recipe plans, reports progress, verifies the
// result, and moves it into the cache only once it reports the pinned version.
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, copyFileSync, existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describeFailure, goMissing, goTooOld, ToolsError } from "./errors.ts";
import { buildDir, logFile, stampFile, toolBinDir, toolHome, toolsDir } from "./paths.ts";
import { binaryVersion } from "./probe.ts";
import { goDirective, plan, wrapperGoMod, type GoStep, type Plan, type PlanContext } from "./recipes.ts";
import { type Stamp, toolStatus, type ToolStatus } from "./status.ts";
import { loadVersions, repoRoot, type ToolSpec } from "./versions.ts";

export type Progress = {
  tool: string;
  version: string;
  /** check, prepare, download, compile, verify, done, cached, path */
  step: string;
  /** Since this tool's build started. */
  elapsedMs: number;
  detail?: string;
};

export type BuildOptions = {
  onProgress?: (p: Progress) => void;
  /** Rebuild even what is cached or on PATH. */
  force?: boolean;
  /** Only these tools (names from lab/versions.json). */
  only?: string[];
  /** Seconds between progress reports while one step runs. */
  heartbeatSeconds?: number;
};

export type BuildOutcome = { name: string; version: string; action: "cached" | "path" | "built"; seconds: number; binDir: string | null };

type GoInfo = { version: string; modCache: string; goproxy: string };

function goInfo(minimum: string): GoInfo {
  const r = spawnSync("go", ["env", "-json", "GOVERSION", "GOMODCACHE", "GOPROXY"], { encoding: "utf8" });
  if (r.error) throw new ToolsError(goMissing(), { cause: r.error });
  if (r.status !== 0) throw new ToolsError(`\`go env\` failed: ${r.stderr.trim().split("\n").at(-1)}`);
  const env = JSON.parse(r.stdout) as Record<string, string>;
  const version = env.GOVERSION.replace(/^go/, "");
  const [maj, min] = version.split(".").map(Number);
  const [wantMaj, wantMin] = minimum.split(".").map(Number);
  if (maj < wantMaj || (maj === wantMaj && min < wantMin)) throw new ToolsError(goTooOld(version, minimum));
  return { version, modCache: env.GOMODCACHE, goproxy: env.GOPROXY || "https://proxy.golang.org,direct" };
}

type Reporter = (step: string, detail?: string) => void;

function runGo(step: GoStep, t: ToolSpec, log: string, goproxy: string, report: Reporter, heartbeatMs: number): Promise<string> {
  const command = `go ${step.args.join(" ")}`;
  appendFileSync(log, `\n$ (cd ${step.cwd} && ${Object.entries(step.env).map(([k, v]) => `${k}=${v}`).join(" ")} ${command})\n`);
  return new Promise((resolveRun, reject) => {
    const child = spawn("go", step.args, { cwd: step.cwd, env: { ...process.env, ...step.env }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    let downloads = 0;
    let lastDownload = "";
    let lastDownloadAt = 0;
    const onData = (chunk: Buffer) => {
      const text = chunk.toString();
      appendFileSync(log, text);
      output = (output + text).slice(-200_000);
      const found = [...text.matchAll(/^go: downloading (\S+ \S+)/gm)];
      if (found.length) {
        downloads += found.length;
        lastDownload = found.at(-1)![1];
        lastDownloadAt = Date.now();
      }
    };
    // go prints only what it downloads; quiet after downloads means it is compiling.
    const detail = () =>
      Date.now() - lastDownloadAt < heartbeatMs
        ? `downloading ${lastDownload}, ${downloads} modules so far`
        : step.step === "compile"
          ? `compiling${downloads ? `, ${downloads} modules downloaded` : ""}`
          : undefined;
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    report(step.step, detail());
    const timer = setInterval(() => report(step.step, detail()), heartbeatMs);
    child.on("error", (err) => {
      clearInterval(timer);
      reject(new ToolsError(goMissing(), { cause: err }));
    });
    child.on("close", (code, signal) => {
      clearInterval(timer);
      if (code === 0) return resolveRun(output);
      reject(
        new ToolsError(describeFailure({ tool: t.name, version: t.version, command, exitCode: code, signal, output, goproxy, log }), {
          cause: output,
        }),
      );
    });
  });
}

async function prepareWrapper(dir: string, t: ToolSpec, ctx: PlanContext, log: string, go: GoInfo, report: Reporter, hb: number) {
  mkdirSync(dir, { recursive: true });
  const pinned = (t.goSum ?? []).join("\n");
  writeFileSync(join(dir, "go.mod"), `module meshfleet.tools/${t.name}\n\ngo ${loadVersions().goMinimum}\n\nrequire ${t.module} ${t.moduleVersion}\n`);
  writeFileSync(join(dir, "go.sum"), pinned ? `${pinned}\n` : "");
  const out = await runGo(
    { kind: "go", step: "download", args: ["mod", "download", "-json", t.module], cwd: dir, env: { CGO_ENABLED: "0", GOFLAGS: "-mod=mod", GOPROXY: ctx.goproxy } },
    t,
    log,
    go.goproxy,
    report,
    hb,
  );
  const info = JSON.parse(out.slice(out.indexOf("{"))) as { Dir?: string; Error?: string };
  if (!info.Dir) throw new ToolsError(`building ${t.name} ${t.version}: could not download ${t.module}@${t.moduleVersion}: ${info.Error ?? "no Dir"}`);
  const upstream = readFileSync(join(info.Dir, "go.mod"), "utf8");
  writeFileSync(join(dir, "go.mod"), wrapperGoMod(t, upstream));
  const upstreamSum = existsSync(join(info.Dir, "go.sum")) ? readFileSync(join(info.Dir, "go.sum"), "utf8") : "";
  writeFileSync(join(dir, "go.sum"), `${upstreamSum.trimEnd()}\n${pinned}\n`);
  if (t.source) {
    const src = join(repoRoot, t.source);
    for (const f of readdirSync(src).filter((x) => x.endsWith(".go"))) copyFileSync(join(src, f), join(dir, f));
  }
  appendFileSync(log, `wrapper module for go ${goDirective(upstream) ?? "?"} written to ${dir}\n`);
}

async function buildOne(t: ToolSpec, go: GoInfo, root: string, opts: BuildOptions): Promise<BuildOutcome> {
  const started = Date.now();
  const report: Reporter = (step, detail) =>
    opts.onProgress?.({ tool: t.name, version: t.version, step, elapsedMs: Date.now() - started, detail });
  const hb = (opts.heartbeatSeconds ?? 10) * 1000;
  const work = buildDir(root, t);
  const staging = `${toolHome(root, t)}.partial-${process.pid}`;
  const log = logFile(root, t);
  rmSync(work, { recursive: true, force: true });
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  mkdirSync(join(staging, "bin"), { recursive: true });
  writeFileSync(log, `building ${t.name} ${t.version} with go ${go.version}\n`);
  const ctx: PlanContext = { repoRoot, work, outBin: join(staging, "bin"), modCache: go.modCache, goproxy: go.goproxy };
  const p: Plan = plan(t, ctx);
  if (p.recipe === "unavailable") {
    rmSync(work, { recursive: true, force: true });
    rmSync(staging, { recursive: true, force: true });
    throw new ToolsError(`${t.name} ${t.version} cannot be built here: ${t.unavailable}`);
  }
  try {
    for (const step of p.steps) {
      if (step.kind === "wrapper") {
        report("prepare", `wrapper module for ${t.module}@${t.moduleVersion}`);
        await prepareWrapper(step.dir, t, ctx, log, go, report, hb);
      } else {
        await runGo(step, t, log, go.goproxy, report, hb);
      }
    }
    report("verify");
    for (const [bin, spec] of Object.entries(t.binaries)) {
      const found = binaryVersion(join(staging, "bin", bin), spec);
      if (found !== t.version) {
        throw new ToolsError(`building ${t.name} ${t.version}: the built ${bin} reports version ${found ?? "(none)"}, expected ${t.version} (log: ${log})`);
      }
    }
  } catch (e) {
    rmSync(staging, { recursive: true, force: true });
    throw e;
  }
  const seconds = Math.round((Date.now() - started) / 100) / 10;
  const stamp: Stamp = { name: t.name, version: t.version, binaries: Object.keys(t.binaries), recipe: p.recipe, go: go.version, seconds, builtAt: new Date().toISOString() };
  writeFileSync(join(staging, "meshfleet-tool.json"), `${JSON.stringify(stamp, null, 2)}\n`);
  rmSync(toolHome(root, t), { recursive: true, force: true });
  renameSync(staging, toolHome(root, t));
  rmSync(work, { recursive: true, force: true });
  report("done", `${seconds}s`);
  return { name: t.name, version: t.version, action: "built", seconds, binDir: toolBinDir(root, t) };
}

/** Stamps a cache entry that holds the pinned version but was built by other means. */
function adopt(t: ToolSpec, s: ToolStatus, root: string, go: string) {
  const stamp: Stamp = { name: t.name, version: t.version, binaries: s.binaries.map((b) => b.name), recipe: "adopted", go, seconds: 0, builtAt: new Date().toISOString() };
  mkdirSync(dirname(stampFile(root, t)), { recursive: true });
  writeFileSync(stampFile(root, t), `${JSON.stringify(stamp, null, 2)}\n`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * One build at a time per tools dir: a second `meshfleet tools build` (another shell,
 * a test run) waits for the first and then finds its result cached.
 */
async function withLock<T>(root: string, onWait: (pid: number) => void, fn: () => Promise<T>): Promise<T> {
  const lock = join(root, ".build", "lock");
  mkdirSync(dirname(lock), { recursive: true });
  for (let waited = 0; ; waited++) {
    try {
      closeSync(openSync(lock, "wx"));
      writeFileSync(lock, String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const holder = Number(readFileSync(lock, "utf8")) || 0;
      if (holder && !alive(holder)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (waited % 15 === 0) onWait(holder);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Builds every pinned tool that is neither cached nor on PATH at its version; one at a time (Go builds use every core). */
export async function buildTools(opts: BuildOptions = {}): Promise<BuildOutcome[]> {
  const versions = loadVersions();
  const root = toolsDir();
  const unknown = (opts.only ?? []).filter((n) => !versions.tools.some((t) => t.name === n));
  if (unknown.length) {
    throw new ToolsError(`unknown tool ${unknown.join(", ")}: lab/versions.json has ${versions.tools.map((t) => t.name).join(", ")}`);
  }
  const tools = versions.tools.filter((t) => !opts.only?.length || opts.only.includes(t.name));
  const outcomes: BuildOutcome[] = [];
  const cannot: string[] = [];
  let go: GoInfo | undefined;
  for (const t of tools) {
    const s = toolStatus(t, root);
    if (t.unavailable && s.state === "missing") {
      // Build the rest first; report every tool that cannot be built at the end.
      cannot.push(`${t.name} ${t.version} cannot be built here: ${t.unavailable}`);
      continue;
    }
    if (!opts.force && s.state !== "missing") {
      if (s.unstamped) adopt(t, s, root, "unknown");
      opts.onProgress?.({ tool: t.name, version: t.version, step: s.state, elapsedMs: 0, detail: s.binDir ?? s.binaries[0]?.path ?? undefined });
      outcomes.push({ name: t.name, version: t.version, action: s.state, seconds: 0, binDir: s.binDir ?? (s.binaries[0]?.path ? dirname(s.binaries[0].path) : null) });
      continue;
    }
    go ??= goInfo(versions.goMinimum);
    const info = go;
    const onWait = (pid: number) =>
      opts.onProgress?.({ tool: t.name, version: t.version, step: "waiting", elapsedMs: 0, detail: `another build (pid ${pid}) holds ${join(root, ".build", "lock")}` });
    outcomes.push(
      await withLock(root, onWait, async () => {
        // The build we waited for may have built this one.
        const again = toolStatus(t, root);
        if (!opts.force && again.state !== "missing") return { name: t.name, version: t.version, action: again.state, seconds: 0, binDir: again.binDir };
        return buildOne(t, info, root, opts);
      }),
    );
  }
  if (cannot.length) throw new ToolsError(cannot.join("\n"));
  return outcomes;
}
