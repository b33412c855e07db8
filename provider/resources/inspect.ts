/**
 * Reading a host's agent: its status and what `verify` finds, from one agent
 * process (`status --json --verify`), and that output parsed. Shared by the
 * Generation resource (refresh, the confirm's fallback) and the reboot check.
 * The confirm of a switch prints the same document after STATUS_MARK
 * (`confirm HASH --status`), so a switch costs the host two agent processes.
 */
import { shq } from "../quote.ts";
import type { AgentSpec, DriftItem } from "../types.ts";
import { ProviderError } from "../wire.ts";

export const agentCmd = (a: AgentSpec, args: string[]) => [shq(a.node), shq(a.remotePath), ...args.map(shq)].join(" ");

/** Between status and verify in the two-process form (still parsed: the reboot check's older tests and hosts). */
const VERIFY_MARK = "@@meshfleet-verify@@";
/** What `confirm --status` prints before the status document (agent/main.ts). */
export const STATUS_MARK = "@@meshfleet-status@@";

/** status and verify in one agent process (verify's exit code on drift does not apply: status exits 0). */
export function inspectScript(a: AgentSpec): string {
  return agentCmd(a, ["status", "--json", "--verify"]);
}

/** The confirm of a switch, with the status document after it from the same process. */
export function confirmScript(a: AgentSpec, hash: string): string {
  return agentCmd(a, ["confirm", hash, "--status"]);
}

/** The status document `confirm --status` printed after its mark, or null when it printed none. */
export function statusAfterMark(stdout: string): string | null {
  const i = stdout.indexOf(`${STATUS_MARK}\n`);
  return i < 0 ? null : stdout.slice(i + STATUS_MARK.length + 1);
}

export interface AgentStatus {
  host: string | null;
  generation: number;
  hash: string | null;
  pendingConfirm: { generation: number; previous: number; secondsLeft: number } | null;
  lastSwitch: { success: boolean; generation: number; error?: string } | null;
}

/**
 * `status --json --verify` (one document, verify embedded), or the older
 * two-process form: status, VERIFY_MARK, verify. statusText is the status
 * without the verify report.
 */
export function parseInspect(host: string, stdout: string): { status: AgentStatus; statusText: string; drift: DriftItem[] } {
  const twoPart = stdout.includes(VERIFY_MARK);
  const [statusPart, verifyPart = ""] = twoPart ? stdout.split(VERIFY_MARK) : [stdout];
  let doc: AgentStatus & { verify?: unknown };
  try {
    doc = JSON.parse(statusPart.replace(/^note: .*$/gm, ""));
  } catch {
    throw new ProviderError(`host ${host}: the agent's \`status --json\` did not print JSON: ${JSON.stringify(statusPart.trim().slice(0, 200))}`);
  }
  let v: unknown = doc?.verify;
  let verifyText = v === undefined ? "(none)" : JSON.stringify(v);
  if (twoPart) {
    verifyText = verifyPart.trim();
    try {
      v = JSON.parse(verifyPart.replace(/^note: .*$/gm, ""));
    } catch {
      v = undefined;
    }
  }
  const { verify: _v, ...status } = doc;
  const list = (v as { drift?: unknown } | undefined)?.drift;
  const drift: DriftItem[] =
    v === undefined || v === null
      ? [{ kind: "agent", subject: "verify", detail: `verify did not answer in JSON: ${verifyText.slice(0, 120)}` }]
      : Array.isArray(list)
        ? list.map((d: DriftItem) => ({ kind: String(d.kind), subject: String(d.subject), detail: String(d.detail) }))
        : [];
  return { status, statusText: twoPart ? statusPart.trim() : JSON.stringify(status, null, 2), drift };
}
