/**
 * The fleet folder a drill deploys: a copy of the one the lab's stack deploys
 * now (hosts/lab, an instance's copy, or an earlier drill's), with files
 * edited or added, and the stack's config pointed at it.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse, parseDocument } from "yaml";
import { labFleetDir } from "../docker-variant.ts";
import { e2ePaths } from "../paths.ts";

/** The instance's stack config (`config:` of its Pulumi.lab.yaml), {} when there is none. */
export function stackConfigOf(instance: number): Record<string, unknown> {
  const f = e2ePaths(instance).stackConfig;
  if (!existsSync(f)) return {};
  return ((parse(readFileSync(f, "utf8")) as { config?: Record<string, unknown> } | null)?.config ?? {}) as Record<string, unknown>;
}

/** The fleet folder the lab stack deploys now. */
export function deployedFleetDir(instance: number): string {
  const dir = stackConfigOf(instance)["meshfleet:hostsDir"];
  return typeof dir === "string" ? dir : labFleetDir(instance);
}

/**
 * Writes `<lab>/hosts-<name>`: every file of the deployed fleet passed through
 * `edit`, plus `add`. The files are read before the folder is replaced, so the
 * deployed fleet may be that folder itself (a drill run again). Returns it.
 */
export function writeFleetCopy(instance: number, name: string, edit: (file: string, text: string) => string, add: Record<string, string> = {}): string {
  const from = deployedFleetDir(instance);
  const files = readdirSync(from).filter((f) => f.endsWith(".yaml")).map((f) => [f, readFileSync(join(from, f), "utf8")] as const);
  const dir = join(e2ePaths(instance).dir, `hosts-${name}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [f, text] of files) writeFileSync(join(dir, f), edit(f, text));
  for (const [f, text] of Object.entries(add)) writeFileSync(join(dir, f), text);
  return dir;
}

/**
 * Plain values (no secrets) set in the lab's stack config file, the rest of it
 * (salt, the key seed's ciphertext) as it was: written directly, as the lab's
 * fleet copies do, not by a `pulumi config set` each (seconds apiece under load).
 */
export function setStackConfig(instance: number, values: Record<string, string>): void {
  const f = e2ePaths(instance).stackConfig;
  if (!existsSync(f)) throw new Error(`${f} does not exist: the lab's stack is not set up (meshfleet lab up)`);
  const doc = parseDocument(readFileSync(f, "utf8"));
  for (const [k, v] of Object.entries(values)) doc.setIn(["config", k], k === "meshfleet:hostsDir" ? resolve(v) : v);
  writeFileSync(f, String(doc));
}
