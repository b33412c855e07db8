/**
 * The provider's log. The engine shows neither its stdout nor its stderr, so
 * every step goes to a file: MESHFLEET_PROVIDER_LOG, else
 * ~/.cache/meshfleet/provider.log. Callers pass no secret to it: bundles and
 * keys travel on stdin and in memory only.
 */
import { appendFileSync, mkdirSync, renameSync, statSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";

let file: string | null | undefined;

export function logFile(): string | null {
  if (file !== undefined) return file;
  const f = process.env.MESHFLEET_PROVIDER_LOG || path.join(homedir(), ".cache", "meshfleet", "provider.log");
  try {
    mkdirSync(path.dirname(f), { recursive: true });
    // One older file is kept: the log never grows past about twice this.
    if ((statSync(f, { throwIfNoEntry: false })?.size ?? 0) > 5_000_000) renameSync(f, `${f}.1`);
    file = f;
  } catch {
    file = null;
  }
  return file;
}

export function log(line: string): void {
  const f = logFile();
  if (!f) return;
  try {
    appendFileSync(f, `${new Date().toISOString()} [${process.pid}] ${line}\n`);
  } catch {
    // a log that cannot be written must not fail a deploy
  }
}
