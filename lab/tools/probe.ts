// Finding a tool and asking it its version: on PATH, or in the cache.
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import type { BinarySpec, ToolSpec } from "./versions.ts";

export function findOnPath(bin: string, pathVar = process.env.PATH ?? ""): string | undefined {
  for (const dir of pathVar.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/**
 * First version in a banner ("v3.248.0", "headscale version v0.29.2", "1.98.10\n  tailscale commit: ..."),
 * with any suffix kept, so that "1.98.10-ERR-BuildInfo" does not pass for 1.98.10.
 */
export function parseVersion(output: string): string | undefined {
  return /v?(\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?)/.exec(output)?.[1];
}

/**
 * The version a binary was linked with via `-ldflags -X ...Version=...`, read from the
 * Go build info embedded in it; for binaries (plugins) with no version flag.
 */
export function linkedVersion(path: string): string | undefined {
  const buf = readFileSync(path);
  const at = buf.indexOf("build\t-ldflags=");
  if (at < 0) return undefined;
  const line = buf.subarray(at, buf.indexOf(0x0a, at)).toString("latin1");
  return parseVersion(/\.Version=([^\s"]+)/.exec(line)?.[1] ?? "");
}

/** Runs the binary's version command; undefined if it does not run or prints no version. */
export function binaryVersion(path: string, spec: BinarySpec): string | undefined {
  if (spec.versionArgs === null) return linkedVersion(path);
  const r = spawnSync(path, spec.versionArgs, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "pipe"] });
  if (r.error) return undefined;
  return parseVersion(`${r.stdout}\n${r.stderr}`);
}

export type Located = { path: string; version: string | undefined };

/** Each binary of the tool found on PATH, with the version it reports. */
export function probePath(tool: ToolSpec, pathVar = process.env.PATH ?? ""): Record<string, Located | undefined> {
  const out: Record<string, Located | undefined> = {};
  for (const [bin, spec] of Object.entries(tool.binaries)) {
    const path = findOnPath(bin, pathVar);
    out[bin] = path ? { path, version: binaryVersion(path, spec) } : undefined;
  }
  return out;
}

export function allPresent(dir: string, tool: ToolSpec): boolean {
  return Object.keys(tool.binaries).every((b) => existsSync(join(dir, b)));
}
