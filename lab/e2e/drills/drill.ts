/**
 * What every coordinator drill of issue 15 shares: its result (the shape of a
 * `lab check` item's verdict, with the phase times the note asks for) and
 * the step that ends it. A drill is one function taking the lab instance; the
 * vitest files and `lab check --drills` both call it, so the item in the lab
 * report and the test are the same code.
 */
import { sshExec } from "../../hosts/index.ts";

export interface DrillResult {
  ok: boolean;
  /** What passed, or the first step that failed and what it found. */
  why: string;
  /** Phase times in ms (backup, restore, down, ...), also on a failure: as far as the drill got. */
  timings: Record<string, number>;
}

/** A drill step that did not hold; `runDrill` turns it into `ok: false`. */
export class DrillFailure extends Error {}

/** End the drill with `why` unless `cond` holds. */
export function must(cond: unknown, why: string): asserts cond {
  if (!cond) throw new DrillFailure(why);
}

/**
 * Run a drill body: its last line is the pass reason; any throw (a failed
 * `must`, a host command that failed, a CLI error) is the failure reason.
 */
export async function runDrill(body: (timings: Record<string, number>) => Promise<string>): Promise<DrillResult> {
  const timings: Record<string, number> = {};
  try {
    return { ok: true, why: await body(timings), timings };
  } catch (e) {
    return { ok: false, why: (e as Error).message, timings };
  }
}

/** `on(host, cmd)` for one instance: stdout, or a throw naming host, command, exit and output. */
export function hostOn(instance: number): (host: string, cmd: string, o?: { input?: string; timeoutMs?: number }) => Promise<string> {
  return async (host, cmd, o = {}) => {
    const r = await sshExec(host, cmd, { instance, timeoutMs: o.timeoutMs ?? 30_000, input: o.input });
    if (r.code !== 0) throw new Error(`${host}: ${cmd.slice(0, 200)}: exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 400)}`);
    return r.stdout;
  };
}

export interface NodeRow {
  id: number | string;
  given_name: string;
  ip_addresses: string[];
  approved_routes?: string[];
  online?: boolean;
}

/** headscale's nodes through `hs` (a command prefix on the VPS). */
export async function nodesOf(instance: number, hs: string): Promise<NodeRow[]> {
  return (JSON.parse((await hostOn(instance)("vps", `${hs} nodes list -o json`)) || "null") ?? []) as NodeRow[];
}

/** Each node's name, IPs and approved routes, sorted: what a restore or a new login must keep. */
export function registration(ns: NodeRow[]): string[] {
  return ns.map((n) => `${n.given_name} ${[...n.ip_addresses].sort().join(",")} routes=${[...(n.approved_routes ?? [])].sort().join(",")}`).sort();
}

/** The lines of `want` missing from `got` and the other way round, for a failure reason. */
export function diffLines(want: string[], got: string[]): string {
  const lost = want.filter((l) => !got.includes(l));
  const extra = got.filter((l) => !want.includes(l));
  return [lost.length ? `lost: ${lost.join(" | ")}` : "", extra.length ? `new: ${extra.join(" | ")}` : ""].filter(Boolean).join("; ");
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
