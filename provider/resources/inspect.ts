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
 * `status --json --verify`: one document, verify embedded. A verify that is
 * missing or null (the agent could not run it and said why on stderr) is a
 * drift item. statusText is the status without the verify report.
 */
export function parseInspect(host: string, stdout: string): { status: AgentStatus; statusText: string; drift: DriftItem[] } {
  let doc: AgentStatus & { verify?: unknown };
  try {
    doc = JSON.parse(stdout.replace(/^note: .*$/gm, ""));
  } catch {
    throw new ProviderError(`host ${host}: the agent's \`status --json\` did not print JSON: ${JSON.stringify(stdout.trim().slice(0, 200))}`);
  }
  const v: unknown = doc?.verify;
  const { verify: _v, ...status } = doc;
  const list = (v as { drift?: unknown } | undefined)?.drift;
  const drift: DriftItem[] =
    v === undefined || v === null
      ? [{ kind: "agent", subject: "verify", detail: v === null ? "verify failed on the host (the agent said why on stderr; run `meshfleet-agent verify` there)" : "verify did not answer in JSON: (none)" }]
      : Array.isArray(list)
        ? list.map((d: DriftItem) => ({ kind: String(d.kind), subject: String(d.subject), detail: String(d.detail) }))
        : [];
  return { status, statusText: JSON.stringify(status, null, 2), drift };
}
