/**
 * The pinned toolchain: the plans and error lines (pure), then the real cache: each
 * built binary run and asked its version, a warm `buildTools` timed, a real Pulumi
 * deployment through the Automation API with an inline program and only the built
 * CLI (local file backend, an empty PULUMI_HOME, no plugin anywhere), and the
 * failure lines for a missing Go and an unreachable proxy (a closed loopback port).
 *
 * The tests that need built tools skip, saying so, when they are not built; with
 * CI or MESHFLEET_REQUIRE_TOOLS set they fail instead.
 */
import { execSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { LocalWorkspace, PulumiCommand } from "@pulumi/pulumi/automation/index.js";
import { skipUnlessCi, strict } from "./ci-gate.ts";
import { buildTools, pulumiEnv, toolPath, toolsDir, toolsStatus, ToolsError, type Progress } from "../../lab/tools/index.ts";
import { describeFailure, lastErrorLine } from "../../lab/tools/errors.ts";
import { parseVersion } from "../../lab/tools/probe.ts";
import { plan, wrapperGoMod } from "../../lab/tools/recipes.ts";
import { loadVersions, parseVersions, repoRoot, type ToolSpec } from "../../lab/tools/versions.ts";

const versions = loadVersions();
const tool = (name: string) => versions.tools.find((t) => t.name === name) as ToolSpec;
const pkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8")) as { dependencies: Record<string, string> };

const allBuilt = toolsStatus().every((t) => t.state !== "missing");
// Outside CI a missing build skips (saying so); in CI the tests run and fail on what is missing.
const needsTools = allBuilt || strict() ? it : it.skip;
if (!allBuilt && !strict()) {
  console.warn(`test/lab/tools: skipping the built-tools tests: not all tools are in ${toolsDir()}; run \`meshfleet tools build\` (CI fails instead)`);
}

const temps: string[] = [];
const tempDir = (p: string) => {
  const d = mkdtempSync(join(tmpdir(), p));
  temps.push(d);
  return d;
};
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe("lab/versions.json", () => {
  it("pins the pulumi CLI at the SDK's version, and no Pulumi plugin at all", () => {
    expect(tool("pulumi").version).toBe(pkg.dependencies["@pulumi/pulumi"]);
    expect(versions.tools.map((t) => t.name).filter((n) => n.startsWith("pulumi-"))).toEqual([]);
    expect(pkg.dependencies["@pulumi/command"]).toBeUndefined();
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

  it("builds pulumi in a wrapper module, stamped with its version (the Automation API asks it); a tool marked unavailable is never built", () => {
    const p = plan(tool("pulumi"), ctx);
    expect(p.recipe).toBe("wrapper");
    const compile = p.steps.at(-1);
    expect(compile?.kind === "go" && compile.args.join(" ")).toContain("-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v3.248.0");
    const refused = { ...tool("headscale"), name: "refused", unavailable: "the module proxy answers 403" };
    expect(plan(refused, ctx)).toMatchObject({ recipe: "unavailable", steps: [] });
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
    "the built pulumi CLI runs an inline program (components, a secret, outputs) with no plugin and an empty PULUMI_HOME",
    async () => {
      const work = tempDir("mf-tools-pulumi-");
      const env = pulumiEnv(join(work, "pulumi"), { passphrase: "test-only" });
      expect(env.PATH.split(":")[0]).toBe(join(toolsDir(), "pulumi@3.248.0", "bin"));
      expect(readdirSync(env.PULUMI_HOME)).toEqual([]);
      const cmd = await PulumiCommand.get({ root: join(toolsDir(), "pulumi@3.248.0") });
      const program = async () => {
        class Box extends pulumi.ComponentResource {
          constructor(name: string) {
            super("toolcheck:index:Box", name);
            this.registerOutputs({});
          }
        }
        new Box("hello");
        return { out: "hello-from-meshfleet", hidden: pulumi.secret("s3cret-value") };
      };
      const stack = await LocalWorkspace.createOrSelectStack({ stackName: "dev", projectName: "toolcheck", program }, { pulumiCommand: cmd, envVars: env });
      try {
        const up = await stack.up();
        expect(up.outputs.out).toEqual({ value: "hello-from-meshfleet", secret: false });
        expect(up.outputs.hidden?.secret).toBe(true);
        expect(up.summary.resourceChanges).toMatchObject({ create: 2 });
        const again = await stack.up();
        expect(again.summary.resourceChanges).toEqual({ same: 2 });
        // The state on disk holds the secret encrypted, never in clear (exportStack would decrypt it).
        const stateDir = env.PULUMI_BACKEND_URL.replace(/^file:\/\//, "");
        const onDisk = execSync(`find ${JSON.stringify(stateDir)} -type f -exec cat {} +`, { encoding: "utf8" });
        expect(onDisk).toContain("toolcheck");
        expect(onDisk).not.toContain("s3cret-value");
        await stack.destroy();
      } finally {
        await stack.workspace.removeStack("dev").catch(() => undefined);
        rmSync(stack.workspace.workDir, { recursive: true, force: true });
      }
      // Nothing was installed into PULUMI_HOME: no plugin was needed.
      expect(existsSync(join(env.PULUMI_HOME, "plugins")) ? readdirSync(join(env.PULUMI_HOME, "plugins")) : []).toEqual([]);
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
  it.skipIf(skipUnlessCi(!hasGo && "Go is not installed (apt-get install golang-go, or go.dev)"))(
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
