/** The shape every resource handler of the provider has, and helpers they share. */
import type { DetailedDiffResult } from "../wire.ts";

export interface CheckFailure {
  property: string;
  reason: string;
}

/**
 * One resource type. Inputs and outputs arrive with secrets unwrapped;
 * `diff` gets the previous outputs as `olds`.
 */
export interface ResourceHandler<I, O> {
  check?(news: I): CheckFailure[];
  diff(olds: O, news: I): DetailedDiffResult;
  create(inputs: I): Promise<{ id: string; outs: O }>;
  update?(id: string, olds: O, news: I): Promise<O>;
  /** The live state; null when the resource is gone (refresh drops it, the next up creates it). */
  read(id: string, props: O): Promise<O | null>;
  delete(id: string, props: O): Promise<void>;
}

/** A handler whose diff asks the host (the pre-auth key asks headscale whether it needs renewing). */
export interface AsyncDiffHandler<I, O> extends Omit<ResourceHandler<I, O>, "diff"> {
  diff(olds: O, news: I): Promise<DetailedDiffResult>;
}

/** The engine's placeholder for a value not known during preview. */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

export function isUnknown(v: unknown): boolean {
  return v === UNKNOWN;
}

/** Poll until `probe` returns a value or the time is up (then the last value, or null). */
export async function poll<T>(timeoutMs: number, intervalMs: number, probe: () => Promise<T | null>): Promise<T | null> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() + intervalMs > end) return null;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
