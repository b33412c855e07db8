/**
 * The pinned toolchain: the plans and error lines (pure), then the real cache: each
 * built binary run and asked its version, a warm `buildTools` timed, a real Pulumi
 * deployment (local file backend, the built language host and command provider found
 * on PATH through pulumiEnv), and the failure lines for a missing Go and an
 * unreachable proxy (a closed loopback port).
 *
 * The tests that need built tools skip, saying so, when they are not built and
 * MESHFLEET_REQUIRE_TOOLS is unset; with it set they fail instead.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { buildTools, pulumiEnv, toolPath, toolsDir, toolsStatus, ToolsError, type Progress } from "../../lab/tools/index.ts";
import { describeFailure, lastErrorLine } from "../../lab/tools/errors.ts";
import { linkedVersion, parseVersion } from "../../lab/tools/probe.ts";
import { plan, wrapperGoMod } from "../../lab/tools/recipes.ts";
import { loadVersions, parseVersions, repoRoot, type ToolSpec } from "../../lab/tools/versions.ts";

const versions = loadVersions();
const tool = (name: string) => versions.tools.find((t) => t.name === name) as ToolSpec;
const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { dependencies: Record<string, string> };

const allBuilt = toolsStatus().every((t) => t.state !== "missing");
const required = !!process.env.MESHFLEET_REQUIRE_TOOLS;
const needsTools = allBuilt || required ? it : it.skip;
if (!allBuilt && !required) {
  console.warn(`test/lab/tools: skipping the built-tools tests: not all tools are in ${toolsDir()}; run \`meshfleet tools build\` (or set MESHFLEET_REQUIRE_TOOLS=1 to fail instead)`);
}

const temps: string[] = [];
const tempDir = (p: string) => {
  const d = mkdtempSync(join(tmpdir(), p));
  temps.push(d);
  return d;
};
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("lab/versions.json", () => {
  it("pins pulumi and the command provider at the versions the npm packages use", () => {
    expect(tool("pulumi").version).toBe(pkg.dependencies["@pulumi/pulumi"]);
    expect(tool("pulumi-language-nodejs").version).toBe(pkg.dependencies["@pulumi/pulumi"]);
    expect(tool("pulumi-resource-command").version).toBe(pkg.dependencies["@pulumi/command"]);
    expect(Object.keys(tool("tailscale").binaries).sort()).toEqual(["derper", "tailscale", "tailscaled"]);
  });

  it("names the file and option path of a bad entry", () => {
    const bad = JSON.stringify({ go: { minimum: "1.25" }, tools: { x: { version: "one", module: "m", moduleVersion: "v1.0.0", binaries: {} } } });
    expect(() => parseVersions(bad, "v.json")).toThrow(/^v\.json: tools\.x\.version: a plain semver/);
  });
});

describe("recipes", () => {
  const ctx = { repoRoot: "/r", work: "/w", outBin: "/o/bin", modCache: "/m", goproxy: "https://proxy.example" };

  it("installs headscale with the module cache as a file proxy ahead of GOPROXY", () => {
    const p = plan(tool("headscale"), ctx);
    expect(p.recipe).toBe("install");
    const compile = p.steps.at(-1);
    expect(compile).toMatchObject({ kind: "go", args: ["install", "-trimpath", "github.com/juanfont/headscale/cmd/headscale@v0.29.2"] });
    expect(compile?.kind === "go" && compile.env).toMatchObject({ CGO_ENABLED: "0", GOBIN: "/o/bin", GOPROXY: "file:///m/cache/download,https://proxy.example" });
  });

  it("stamps tailscale's version like build_dist.sh and builds all three commands", () => {
    const compile = plan(tool("tailscale"), ctx).steps.at(-1);
    expect(compile?.kind === "go" && compile.args.join(" ")).toContain("-X tailscale.com/version.shortStamp=1.98.10");
    expect(compile?.kind === "go" && compile.args.filter((a) => a.startsWith("tailscale.com/cmd/"))).toHaveLength(3);
  });

  it("builds pulumi in a wrapper module; the two modules the proxy refuses are never built, and say why", () => {
    expect(plan(tool("pulumi"), ctx).recipe).toBe("wrapper");
    for (const name of ["pulumi-language-nodejs", "pulumi-resource-command"]) {
      const p = plan(tool(name), ctx);
      expect(p).toMatchObject({ recipe: "unavailable", steps: [] });
      expect(tool(name).unavailable).toMatch(/module proxy answers 403/);
    }
  });

  it("wrapper go.mod keeps upstream's requirements and remote replaces, drops path replaces", () => {
    const upstream = [
      "module github.com/pulumi/pulumi/pkg/v3",
      "",
      "go 1.25.11",
      "",
      "replace github.com/pulumi/pulumi/sdk/v3 => ../sdk",
      "",
      "replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e",
      "",
      "replace (",
      "\tgithub.com/a/b => ./b",
      "\tgithub.com/c/d => github.com/e/d v1.0.0",
      ")",
      "",
      "require github.com/pulumi/pulumi/sdk/v3 v3.248.0",
    ].join("\n");
    const out = wrapperGoMod(tool("pulumi"), upstream);
    expect(out).toMatch(/^module meshfleet\.tools\/pulumi$/m);
    expect(out).not.toContain("=> ../sdk");
    expect(out).not.toContain("=> ./b");
    expect(out).toContain("github.com/atotto/clipboard => github.com/tgummerer/clipboard");
    expect(out).toContain("github.com/c/d => github.com/e/d v1.0.0");
    expect(out).toMatch(/^require github\.com\/pulumi\/pulumi\/pkg\/v3 v3\.248\.0$/m);
  });
});

describe("error lines", () => {
  const base = { tool: "pulumi", version: "3.248.0", command: "go build", exitCode: 1, signal: null, goproxy: "https://p", log: "/l.log" };

  it("tells an unreachable proxy from a refused version from a compile error", () => {
    expect(describeFailure({ ...base, output: "go: downloading x v1\ngo: x@v1: Get \"https://p/x/@v/v1.mod\": dial tcp 127.0.0.1:9: connect: connection refused\n" })).toMatch(
      /^building pulumi 3\.248\.0: the Go module proxy is unreachable \(GOPROXY=https:\/\/p\): .*connection refused; check the network/,
    );
    expect(describeFailure({ ...base, output: "go: x@v1: reading https://p/x/@v/v1.info: 403 Forbidden\n\tserver response: not available\n" })).toMatch(
      /the Go module proxy refused https:\/\/p\/x\/@v\/v1\.info \(403 Forbidden\)/,
    );
    const compile = describeFailure({ ...base, output: "# pkg\n./main.go:3:2: undefined: foo\n" });
    expect(compile).toBe("building pulumi 3.248.0 failed: `go build` exited 1: ./main.go:3:2: undefined: foo (full log: /l.log)");
    expect(compile).not.toContain("\n");
  });

  it("picks the go error over download chatter", () => {
    expect(lastErrorLine("go: downloading a v1\ngo: build failed: boom\ngo: downloading b v2\n")).toBe("go: build failed: boom");
  });

  it("reads versions with their suffix, so an unstamped tailscale does not pass", () => {
    expect(parseVersion("headscale version v0.29.2\ncommit: x")).toBe("0.29.2");
    expect(parseVersion("v3.248.0\n")).toBe("3.248.0");
    expect(parseVersion("1.98.10-ERR-BuildInfo\n  long version: ...")).toBe("1.98.10-ERR-BuildInfo");
  });
});

describe("the built tools", () => {
  needsTools("status lists each tool with its version and a path to every binary", () => {
    const status = toolsStatus();
    expect(status.map((s) => s.name)).toEqual(versions.tools.map((t) => t.name));
    for (const s of status) {
      expect(s.state, `${s.name}: ${s.note ?? ""}`).not.toBe("missing");
      expect(s.version).toBe(tool(s.name).version);
      for (const b of s.binaries) expect(b.path, `${s.name}/${b.name}`).toMatch(new RegExp(`/${b.name}$`));
    }
  });

  needsTools("each binary, run, reports the pinned version", () => {
    const run = (bin: string, args: string[]) => {
      const r = spawnSync(toolPath(bin), args, { encoding: "utf8", timeout: 20_000 });
      expect(r.error, bin).toBeUndefined();
      return `${r.stdout}${r.stderr}`;
    };
    expect(run("headscale", ["version"])).toMatch(/^headscale version v0\.29\.2$/m);
    expect(run("tailscale", ["version"]).split("\n")[0]).toBe("1.98.10");
    expect(run("tailscaled", ["--version"]).split("\n")[0]).toBe("1.98.10");
    expect(run("derper", ["--version"]).split("\n")[0]).toBe("1.98.10");
    expect(run("pulumi", ["version"]).trim()).toBe("v3.248.0");
    expect(run("pulumi-language-nodejs", ["-version"]).trim()).toBe("v3.248.0");
    // The provider has no version flag: its version is the one linked into it.
    expect(linkedVersion(toolPath("pulumi-resource-command"))).toBe("1.2.1");
  });

  needsTools("a second run with everything cached builds nothing and takes under 2 s", async () => {
    const steps: Progress[] = [];
    const t0 = performance.now();
    const outcomes = await buildTools({ onProgress: (p) => steps.push(p) });
    const ms = performance.now() - t0;
    expect(outcomes.map((o) => o.action).filter((a) => a === "built")).toEqual([]);
    expect(steps.map((s) => s.tool)).toEqual(versions.tools.map((t) => t.name));
    expect(ms).toBeLessThan(2000);
  });

  needsTools(
    "pulumi deploys a command resource with the built language host and provider, nothing downloaded",
    () => {
      const work = tempDir("mf-tools-pulumi-");
      const proj = join(work, "proj");
      const env = pulumiEnv(join(work, "pulumi"), { passphrase: "test-only" });
      spawnSync("mkdir", ["-p", proj]);
      symlinkSync(join(repoRoot, "node_modules"), join(proj, "node_modules"));
      writeFileSync(join(proj, "Pulumi.yaml"), "name: toolcheck\nruntime: nodejs\n");
      writeFileSync(join(proj, "package.json"), JSON.stringify({ name: "toolcheck", main: "index.js", type: "commonjs" }));
      writeFileSync(
        join(proj, "index.js"),
        [
          'const command = require("@pulumi/command");',
          'const hello = new command.local.Command("hello", { create: "echo hello-from-$NAME", environment: { NAME: "meshfleet" } });',
          "exports.out = hello.stdout;",
        ].join("\n"),
      );
      const pulumi = (args: string[]) => {
        const r = spawnSync(toolPath("pulumi"), [...args, "--non-interactive"], { cwd: proj, env, encoding: "utf8", timeout: 180_000 });
        expect(r.status, `pulumi ${args.join(" ")}\n${r.stdout}\n${r.stderr}`).toBe(0);
        return r.stdout;
      };
      expect(env.PATH.split(":")[0]).toBe(join(toolsDir(), "pulumi@3.248.0", "bin"));
      pulumi(["stack", "init", "dev"]);
      pulumi(["up", "--yes", "--skip-preview"]);
      expect(pulumi(["stack", "output", "out"]).trim()).toBe("hello-from-meshfleet");
      // Nothing was installed into the isolated PULUMI_HOME: the plugins came from PATH.
      expect(pulumi(["plugin", "ls"])).not.toMatch(/command\s+resource/);
      pulumi(["destroy", "--yes", "--skip-preview"]);
    },
    240_000,
  );
});

describe("failures give one line that says what to do", () => {
  const withEnv = async (env: Record<string, string>, fn: () => Promise<unknown>) => {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      return await fn();
    } finally {
      for (const k of Object.keys(env)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  };

  it("without Go on PATH", async () => {
    const dir = tempDir("mf-tools-nogo-");
    const err = await withEnv({ PATH: "/nonexistent", MESHFLEET_TOOLS_DIR: dir }, () => buildTools({ only: ["headscale"] }).catch((e) => e));
    expect(err).toBeInstanceOf(ToolsError);
    expect((err as Error).message).toMatch(/^Go toolchain not found on PATH: .*rerun `meshfleet tools build`$/);
  });

  const hasGo = spawnSync("go", ["version"]).status === 0;
  (hasGo ? it : it.skip)(
    "with the module proxy unreachable (a closed loopback port, an empty module cache)",
    async () => {
      const dir = tempDir("mf-tools-noproxy-");
      const steps: Progress[] = [];
      const err = await withEnv(
        { MESHFLEET_TOOLS_DIR: join(dir, "tools"), GOMODCACHE: join(dir, "mod"), GOPROXY: "http://127.0.0.1:9", GOSUMDB: "off", GOTOOLCHAIN: "local" },
        () => buildTools({ only: ["headscale"], onProgress: (p) => steps.push(p) }).catch((e) => e),
      );
      expect(err).toBeInstanceOf(ToolsError);
      expect((err as Error).message).toMatch(/^building headscale 0\.29\.2: the Go module proxy is unreachable \(GOPROXY=http:\/\/127\.0\.0\.1:9\): .*127\.0\.0\.1:9/);
      expect((err as Error).message).not.toContain("\n");
      expect(steps[0]).toMatchObject({ tool: "headscale", step: "download" });
      // A failed build leaves no half-built tool behind.
      expect(toolsStatus(join(dir, "tools"), "").find((s) => s.name === "headscale")?.state).toBe("missing");
      spawnSync("chmod", ["-R", "u+w", join(dir, "mod")]);
    },
    60_000,
  );
});
