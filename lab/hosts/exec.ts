/**
 * Running programs for the lab, with failures that say which command, why
 * (exit code, signal or timeout) and its stderr.
 */
import { execa } from "execa";

export class LabError extends Error {
  override name = "LabError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
  /** Return a failed result instead of throwing. */
  allowFail?: boolean;
}

export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new LabError("run: empty command");
  const r = await execa(file, args, {
    input: opts.input,
    timeout: opts.timeoutMs,
    env: opts.env,
    reject: false,
    stripFinalNewline: false,
  });
  const result: RunResult = {
    code: typeof r.exitCode === "number" ? r.exitCode : -1,
    stdout: String(r.stdout ?? ""),
    stderr: String(r.stderr ?? ""),
  };
  if (!opts.allowFail && result.code !== 0) {
    const why = r.timedOut
      ? `timed out after ${opts.timeoutMs} ms`
      : r.signal
        ? `killed by ${r.signal}`
        : r.failed && r.exitCode === undefined
          ? String(r.shortMessage ?? "could not start")
          : `exit code ${result.code}`;
    const err = result.stderr.trim().split("\n").slice(-5).join("\n  ");
    throw new LabError(`command failed (${why}): ${argv.join(" ")}${err ? `\n  ${err}` : ""}`);
  }
  return result;
}

/** Run argv inside network namespace `ns` (a name under /run/netns). */
export function netnsExec(ns: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(["ip", "netns", "exec", ns, ...argv], opts);
}
