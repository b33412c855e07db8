// How each pinned tool is built from Go modules: pure plans, run by build.ts.
//
// Recipes, because the module proxy serves these projects differently:
//  - install: `go install pkg@version` (headscale, tailscale). The module cache's
//    download dir is put in front of GOPROXY as a file proxy, because `go install`
//    asks the proxy for the module's version list (to look for deprecations) and a
//    proxy may refuse the list while serving the version itself.
//  - wrapper: the pulumi CLI's go.mod replaces the sdk by a relative path, which
//    `go install` rejects; a scratch module that copies its requirements (minus
//    that replace) and requires pkg/v3 builds the same package.
//    A tool with a `source` folder (a main package of meshfleet's own, such as
//    lab/tools/oidc-provider) is built the same way, its files copied into the
//    scratch module.
//  - unavailable: a pinned module the proxy does not serve at all. No upstream
//    source is committed here, so such a tool is used from the cache or PATH and
//    otherwise reported, never built. None is pinned today: Pulumi runs inline
//    (no Node.js language host) with meshfleet's own provider (no command provider).
import { join } from "node:path";
import type { ToolSpec } from "./versions.ts";

export type GoStep = {
  kind: "go";
  /** Short name shown in progress: download, compile (go build fetches what it lacks as it goes). */
  step: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
};
/** Writes the scratch module (go.mod/go.sum) for a wrapper build from the upstream go.mod. */
export type WrapperStep = { kind: "wrapper"; step: "prepare"; dir: string };
export type Step = GoStep | WrapperStep;

export type Plan = { tool: ToolSpec; recipe: "install" | "wrapper" | "unavailable"; steps: Step[] };

export type PlanContext = {
  repoRoot: string;
  /** Scratch directory for this tool's build. */
  work: string;
  /** Where the binaries are written; renamed into place by the caller. */
  outBin: string;
  /** GOMODCACHE as `go env` reports it. */
  modCache: string;
  /** GOPROXY as `go env` reports it. */
  goproxy: string;
};

const ldflagsByTool: Record<string, (t: ToolSpec) => string> = {
  // What upstream's build_dist.sh stamps; without it `go install` binaries call
  // themselves "x.y.z-ERR-BuildInfo" (no VCS info in a module build).
  tailscale: (t) => `-X tailscale.com/version.longStamp=${t.version} -X tailscale.com/version.shortStamp=${t.version}`,
  // The Automation API asks the CLI its version (`refresh` fails on an empty one).
  pulumi: (t) => `-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v${t.version}`,
  // pebble prints "dev" unless its main.version is stamped (as its release build does).
  pebble: (t) => `-X main.version=${t.version}`,
  // lab/tools/oidc-provider prints the zitadel/oidc version it was built against.
  "oidc-provider": (t) => `-X main.version=${t.version}`,
};

export function ldflags(t: ToolSpec): string | undefined {
  return ldflagsByTool[t.name]?.(t);
}

export function baseEnv(ctx: PlanContext): Record<string, string> {
  return { CGO_ENABLED: "0", GOFLAGS: "-mod=mod", GOPROXY: ctx.goproxy };
}

export function plan(t: ToolSpec, ctx: PlanContext): Plan {
  const env = baseEnv(ctx);
  const flags = ldflags(t);
  // -trimpath keeps this machine's paths out of the binaries, but it also drops
  // -ldflags from the embedded build info, which is the only place a tool with no
  // version flag (a plugin) can be asked its version.
  const trim = Object.values(t.binaries).every((b) => b.versionArgs !== null) ? ["-trimpath"] : [];
  const linkArgs = [...trim, ...(flags ? ["-ldflags", flags] : [])];
  if (t.unavailable) return { tool: t, recipe: "unavailable", steps: [] };
  if (t.goSum || t.source || t.name === "pulumi") {
    const dir = join(ctx.work, "wrapper");
    return {
      tool: t,
      recipe: "wrapper",
      steps: [
        { kind: "wrapper", step: "prepare", dir },
        ...Object.entries(t.binaries).map(
          ([bin, b]): GoStep => ({
            kind: "go",
            step: "compile",
            args: ["build", ...linkArgs, "-o", join(ctx.outBin, bin), b.package],
            cwd: dir,
            env,
          }),
        ),
      ],
    };
  }
  const fileProxy = `file://${join(ctx.modCache, "cache", "download")}`;
  const installEnv = { ...env, GOFLAGS: "" };
  return {
    tool: t,
    recipe: "install",
    steps: [
      { kind: "go", step: "download", args: ["mod", "download", "-json", `${t.module}@${t.moduleVersion}`], cwd: ctx.work, env: installEnv },
      {
        kind: "go",
        step: "compile",
        args: ["install", ...linkArgs, ...Object.values(t.binaries).map((b) => `${b.package}@${t.moduleVersion}`)],
        cwd: ctx.work,
        env: { ...installEnv, GOBIN: ctx.outBin, GOPROXY: `${fileProxy},${ctx.goproxy}` },
      },
    ],
  };
}

/** The go.mod line `go 1.x.y` of a module, or undefined. */
export function goDirective(goMod: string): string | undefined {
  return /^go\s+(\S+)/m.exec(goMod)?.[1];
}

/**
 * The scratch module that builds a command of `t.module`: the upstream go.mod's
 * requirements and non-local replaces (so every dependency is the version upstream
 * released with), plus a requirement on the module itself.
 */
export function wrapperGoMod(t: ToolSpec, upstreamGoMod: string): string {
  const lines = upstreamGoMod.split("\n");
  const out: string[] = [];
  let inReplaceBlock = false;
  for (const line of lines) {
    const trimmed = line.trim();
    if (/^module\s/.test(trimmed)) {
      out.push(`module meshfleet.tools/${t.name}`);
      continue;
    }
    if (/^replace\s*\($/.test(trimmed)) inReplaceBlock = true;
    else if (inReplaceBlock && trimmed === ")") inReplaceBlock = false;
    // A replace by a path (=> ../x or => ./x) points into upstream's repo; the
    // released module of that path is used instead.
    if ((inReplaceBlock || /^replace\s/.test(trimmed)) && /=>\s*\.{1,2}\//.test(trimmed)) continue;
    out.push(line);
  }
  out.push("", `require ${t.module} ${t.moduleVersion}`, "");
  return out.join("\n");
}
