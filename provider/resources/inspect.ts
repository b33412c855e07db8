/**
 * Reading a host's agent over one SSH call: `status --json` and
 * `verify --json` side by side, and their output parsed. Shared by the
 * Generation resource (refresh, confirm) and the reboot check.
 */
import { shq } from "../quote.ts";
import type { AgentSpec, DriftItem } from "../types.ts";
import { ProviderError } from "../wire.ts";

export const agentCmd = (a: AgentSpec, args: string[]) => [shq(a.node), shq(a.remotePath), ...args.map(shq)].join(" ");

const VERIFY_MARK = "@@meshfleet-verify@@";

/**
 * status --json, then verify --json (exit 1 on drift is an answer, not a
 * failure). Both only read, so they run side by side; the output keeps
 * that order.
 */
export function inspectScript(a: AgentSpec): string {
  return [
    `d=$(mktemp -d) || exit 1`,
    `${agentCmd(a, ["status", "--json"])} > "$d/status" &`,
    `${agentCmd(a, ["verify", "--json"])} > "$d/verify" || true`,
    `wait`,
    `cat "$d/status"`,
    `echo ${VERIFY_MARK}`,
    `cat "$d/verify"`,
    `rm -rf "$d"`,
  ].join("\n");
}

export interface AgentStatus {
  host: string | null;
  generation: number;
  hash: string | null;
  pendingConfirm: { generation: number; previous: number; secondsLeft: number } | null;
  lastSwitch: { success: boolean; generation: number; error?: string } | null;
}

export function parseInspect(host: string, stdout: string): { status: AgentStatus; statusText: string; drift: DriftItem[] } {
  const [statusText, verifyText = ""] = stdout.split(VERIFY_MARK);
  let status: AgentStatus;
  try {
    status = JSON.parse(statusText.replace(/^note: .*$/gm, ""));
  } catch {
    throw new ProviderError(`host ${host}: the agent's \`status --json\` did not print JSON: ${JSON.stringify(statusText.trim().slice(0, 200))}`);
  }
  let drift: DriftItem[] = [];
  try {
    const v = JSON.parse(verifyText.replace(/^note: .*$/gm, ""));
    drift = Array.isArray(v?.drift) ? v.drift.map((d: DriftItem) => ({ kind: String(d.kind), subject: String(d.subject), detail: String(d.detail) })) : [];
  } catch {
    drift = [{ kind: "agent", subject: "verify", detail: `verify did not answer in JSON: ${verifyText.trim().slice(0, 120)}` }];
  }
  return { status, statusText: statusText.trim(), drift };
}
