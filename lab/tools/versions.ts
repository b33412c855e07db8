// The pinned tool versions, read from lab/versions.json (the one place they live).
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const versionsFile = join(repoRoot, "lab/versions.json");

const binarySchema = z.object({
  /** Go package path that builds this binary. */
  package: z.string().min(1),
  /** Arguments that make the binary print its version; null when it has no such flag. */
  versionArgs: z.array(z.string()).nullable(),
});

const toolSchema = z.object({
  version: z.string().regex(/^\d+\.\d+\.\d+$/, "a plain semver like 1.2.3"),
  module: z.string().min(1),
  moduleVersion: z.string().regex(/^v\d+\.\d+\.\d+/),
  /**
   * Why this tool cannot be built here (the module proxy does not serve it);
   * it is then only used from the tools cache or PATH, never built.
   */
  unavailable: z.string().optional(),
  /** go.sum lines to trust for `module` when the checksum database has no entry for it. */
  goSum: z.array(z.string()).optional(),
  /**
   * A folder of this repo holding a small main package of meshfleet's own, built
   * in a wrapper module against `module` (for a test tool whose upstream command
   * cannot be used as it is; the upstream packages it imports stay upstream's).
   */
  source: z.string().regex(/^lab\/tools\/[a-z0-9-]+$/, "a folder under lab/tools").optional(),
  binaries: z.record(z.string(), binarySchema),
});

const versionsSchema = z.object({
  go: z.object({ minimum: z.string().regex(/^\d+\.\d+$/) }),
  tools: z.record(z.string(), toolSchema),
});

export type BinarySpec = z.infer<typeof binarySchema>;
export type ToolSpec = z.infer<typeof toolSchema> & { name: string };
export type Versions = { goMinimum: string; tools: ToolSpec[] };

/** Parses versions.json text; every problem names the file and the option path. */
export function parseVersions(text: string, file = "lab/versions.json"): Versions {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const r = versionsSchema.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `${file}: ${i.path.join(".") || "(root)"}: ${i.message}`);
    throw new Error(lines.join("\n"));
  }
  return {
    goMinimum: r.data.go.minimum,
    tools: Object.entries(r.data.tools).map(([name, t]) => ({ name, ...t })),
  };
}

let cached: Versions | undefined;
export function loadVersions(): Versions {
  cached ??= parseVersions(readFileSync(versionsFile, "utf8"));
  return cached;
}
