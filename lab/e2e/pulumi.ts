/**
 * The lab's Pulumi settings: a local file backend and its own PULUMI_HOME
 * (lab/tools pulumiEnv; PULUMI_HOME from the environment wins, so CI can
 * hand it a fresh one and look at it afterwards), passphrase secrets, and a
 * stack config file kept in the lab's state folder so running the lab never
 * edits the repo's stacks/ (`--config-file` on every command that reads
 * config). Deploys go through `meshfleet up`'s own code (cli/commands/deploy.ts);
 * runPulumi is for the CLI-only commands (`config set`).
 */
import { spawn } from "node:child_process";
import { chmodSync, createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { pulumiEnv, toolPath } from "../tools/index.ts";
import { e2ePaths, STACK } from "./paths.ts";

export interface PulumiRun {
  code: number;
  stdout: string;
  stderr: string;
}

export const REPO = join(dirname(new URL(import.meta.url).pathname), "..", "..");
/** Where pulumi runs: the repo's own project (Pulumi.yaml, index.ts). */
export const PROJECT_DIR = REPO;

/** A secret made once per lab and kept (0600): the stack's passphrase or key seed. */
export function keptSecret(path: string, bytes = 32): string {
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const v = randomBytes(bytes).toString("base64url");
  writeFileSync(path, v + "\n", { mode: 0o600 });
  chmodSync(path, 0o600);
  return v;
}

export function labPulumiEnv(instance: number): Record<string, string> {
  const p = e2ePaths(instance);
  return pulumiEnv(p.pulumiWork, { passphrase: keptSecret(p.passphrase), home: process.env.PULUMI_HOME || undefined });
}

export interface RunPulumiOptions {
  env: Record<string, string>;
  /** Lines worth showing while it runs (resource steps, errors). */
  onLine?: (line: string) => void;
  /** Appends everything to this file. */
  logFile?: string;
  input?: string;
  timeoutMs?: number;
}

/** Run `pulumi args...` in PROJECT_DIR. Never throws for a non-zero exit. */
export function runPulumi(args: string[], opts: RunPulumiOptions): Promise<PulumiRun> {
  const bin = toolPath("pulumi");
  return new Promise((resolve) => {
    const child = spawn(bin, args, { cwd: PROJECT_DIR, env: opts.env, stdio: ["pipe", "pipe", "pipe"] });
    const log = opts.logFile ? createWriteStream(opts.logFile, { flags: "a" }) : undefined;
    log?.write(`\n$ pulumi ${args.join(" ")}\n`);
    let stdout = "";
    let stderr = "";
    let partial = "";
    const timer = opts.timeoutMs ? setTimeout(() => child.kill("SIGINT"), opts.timeoutMs) : undefined;
    child.stdout.on("data", (b: Buffer) => {
      const s = b.toString();
      stdout += s;
      log?.write(s);
      partial += s;
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) if (l.trim()) opts.onLine?.(l);
    });
    child.stderr.on("data", (b: Buffer) => {
      stderr += b.toString();
      log?.write(b);
    });
    child.on("error", (e) => {
      stderr += String(e);
    });
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      if (partial.trim()) opts.onLine?.(partial);
      log?.end();
      resolve({ code: code ?? -1, stdout, stderr });
    });
    child.stdin.end(opts.input ?? "");
  });
}

/** The last meaningful lines of a failed run (errors first), for a one-paragraph failure. */
export function failureSummary(r: PulumiRun, max = 12): string {
  const all = `${r.stdout}\n${r.stderr}`.split("\n").map((l) => l.trimEnd());
  const errs = all.filter((l) => /error|failed|Error:/i.test(l) && l.trim() !== "");
  const pick = (errs.length > 0 ? errs : all.filter(Boolean)).slice(-max);
  return pick.map((l) => l.trim()).join("\n  ");
}

export { STACK };
