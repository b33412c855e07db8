/**
 * Progress for long lab runs: one line per step start and end with the time
 * since the run began, and a failure that names the step that failed.
 */

export class StepError extends Error {
  override name = "StepError";
  constructor(
    readonly step: string,
    message: string,
  ) {
    super(`step "${step}" failed: ${message}`);
  }
}

export interface StepRecord {
  step: string;
  host?: string;
  ok: boolean;
  ms: number;
  detail?: string;
}

export class Progress {
  readonly t0 = Date.now();
  readonly steps: StepRecord[] = [];
  constructor(private readonly out: (line: string) => void) {}

  elapsed(): string {
    return `${((Date.now() - this.t0) / 1000).toFixed(1).padStart(6)}s`;
  }

  line(step: string, what = ""): void {
    this.out(`${this.elapsed()}  ${step.padEnd(14)} ${what}`.trimEnd());
  }

  /** Run one step; a throw becomes a StepError naming it (the detail is the cause's message). */
  async step<T>(step: string, host: string | undefined, fn: () => Promise<T>, done?: (v: T) => string): Promise<T> {
    const t = Date.now();
    this.line(step, host ? `${host} ...` : "...");
    try {
      const v = await fn();
      const ms = Date.now() - t;
      const detail = done?.(v);
      this.steps.push({ step, host, ok: true, ms, detail });
      this.line(step, `${host ? `${host} ` : ""}ok (${(ms / 1000).toFixed(1)}s)${detail ? ` ${detail}` : ""}`);
      return v;
    } catch (e) {
      const ms = Date.now() - t;
      const msg = e instanceof StepError ? e.message : (e as Error).message;
      this.steps.push({ step, host, ok: false, ms, detail: msg });
      this.line(step, `${host ? `${host} ` : ""}FAILED (${(ms / 1000).toFixed(1)}s)`);
      if (e instanceof StepError) throw e;
      throw new StepError(host ? `${step} ${host}` : step, msg);
    }
  }
}
