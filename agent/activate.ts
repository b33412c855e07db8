/**
 * Activation: carry out a plan in a fixed order (files, sysctl, nftables,
 * units, tailscale, current), writing each finished step to the journal so
 * that the next agent run can tell how far an interrupted one got.
 */
import * as path from "node:path";
import type { Host } from "./host.ts";
import { describeFailure, UnsafePathError } from "./host.ts";
import { NFT_TABLE_REF, nftScriptFor } from "../contract/nftables.ts";
import { SYSCTL_FILE } from "./desired.ts";
import { awaitContainers, ComposeError } from "./compose.ts";
import { peerSetsOf, rulesetOf } from "./legacy.ts";
import { refreshPeers } from "./peers.ts";
import { makePlan, ownerIds, type FileAction, type Plan, type PlanInput } from "./plan.ts";
import { STATE_DIR, type Generation, type Journal, type State } from "./state.ts";

export class AgentError extends Error {}

export type Log = (line: string) => void;

export const STEPS = ["stage", "files", "sysctl", "nftables", "units", "tailscale", "current", "probes"] as const;

/**
 * Test hook: MESHFLEET_TEST_CRASH_AT=<step> makes the agent exit abruptly
 * right after that step's effects and before the journal records it: the
 * worst moment for a crash.
 */
export function crashPoint(step: string): void {
  if (process.env.MESHFLEET_TEST_CRASH_AT === step) {
    process.stderr.write(`test hook: exiting abruptly after step ${step}\n`);
    process.exit(86);
  }
}

export function journalStep(state: State, j: Journal, step: string): void {
  crashPoint(step);
  j.done.push(step);
  state.writeJournal(j);
}

function applyFile(host: Host, state: State, a: FileAction): void {
  try {
    applyFileUnchecked(host, state, a);
  } catch (e) {
    // An unsafe folder fails the step like any other: the switch rolls back.
    if (e instanceof UnsafePathError) throw new AgentError(`files: ${e.message}`);
    throw e;
  }
}

function applyFileUnchecked(host: Host, state: State, a: FileAction): void {
  if (a.op === "remove") {
    if (a.takeOver) state.backupFile(a.path);
    host.removeFile(a.path);
  }
  else if (a.op === "restore") state.restoreFile(a.path);
  else if (
    // Stryker disable next-line ConditionalExpression: makePlan gives every write its desired file
    a.desired
  ) {
    if (a.takeOver) state.backupFile(a.path);
    const { uid, gid } = ownerIds(host, a.desired);
    host.writeFileAtomic(a.path, a.desired.content, parseInt(a.desired.mode, 8), uid ?? undefined, gid ?? undefined);
  }
}

export interface ActivateOptions {
  host: Host;
  state: State;
  log: Log;
  journal: Journal;
  target: Generation;
  plan: PlanInput;
}

/** Run every activation step for `target`; throws AgentError on the first failing step. */
export function activate(o: ActivateOptions): Plan {
  const { host, state, log, journal: j, target } = o;
  const plan = makePlan(host, state, o.plan);
  const step = (name: string) => journalStep(state, j, name);

  // files: sysusers.d first, so the users other files belong to exist
  // before they are written (headscale's keys are 0600 headscale:headscale).
  const own = plan.files.filter((a) => a.kind === "file");
  const isSysusers = (a: FileAction) => a.path.startsWith("/etc/sysusers.d/") && a.op !== "remove";
  const ordered = [...own.filter(isSysusers), ...own.filter((a) => !isSysusers(a))];
  let usersMade = false;
  for (const a of ordered) {
    if (!isSysusers(a) && !usersMade && own.some(isSysusers)) {
      // Under a test root, create the accounts in that root, never the machine's.
      const root = host.p("/");
      const argv = ["systemd-sysusers", ...(root !== "/" ? ["--root", root] : [])];
      const r = host.run(argv, { timeoutMs: 30_000 });
      if (r.code !== 0) throw new AgentError(`files: ${describeFailure(argv, r)}`);
      usersMade = true;
    }
    // Stryker disable next-line ConditionalExpression,LogicalOperator,StringLiteral: only writes carry desired (makePlan), so the op checks never decide
    if (a.desired && a.op !== "remove" && a.op !== "restore") {
      const { uid, gid } = ownerIds(host, a.desired);
      if (uid === null || gid === null)
        throw new AgentError(`files: ${a.path} belongs to ${a.desired.owner}:${a.desired.group}, which does not exist on this host (declare it in /etc/sysusers.d)`);
    }
    applyFile(host, state, a);
    log(`  file ${a.op} ${a.path} (${a.reasons.join(", ")})`);
  }
  if (own.length === 0) log("  files unchanged");
  step("files");

  // sysctl: our own sysctl.d file for boot, and the running kernel through /proc/sys
  for (const a of plan.files.filter((x) => x.kind === "sysctl")) applyFile(host, state, a);
  const backups = state.sysctlBackups();
  let backupsChanged = false;
  const ownedKeys = new Set(Object.keys(o.plan.others[0]?.bundle.sysctl ?? {}));
  for (const s of plan.sysctl) {
    if (!ownedKeys.has(s.key) && !(s.key in backups) && s.from !== null) {
      backups[s.key] = s.from;
      backupsChanged = true;
    }
  }
  if (backupsChanged) state.writeSysctlBackups(backups);
  for (const s of plan.sysctl) {
    try {
      host.writeSysctl(s.key, s.to);
    } catch (e) {
      throw new AgentError(`sysctl ${s.key} = ${s.to} (from ${SYSCTL_FILE}): ${(e as Error).message}`);
    }
    log(`  sysctl ${s.key} = ${s.to}`);
  }
  for (const s of plan.sysctlRestore) {
    host.writeSysctl(s.key, s.to);
    log(`  sysctl ${s.key} restored to ${s.to}`);
  }
  if (plan.sysctl.length + plan.sysctlRestore.length === 0) log("  sysctl unchanged");
  step("sysctl");

  // nftables: one transaction that creates-if-missing, deletes and recreates only our table
  if (plan.nft.op !== "none") {
    const text = nftScriptFor(rulesetOf(target.bundle));
    const rel = path.join(STATE_DIR, "nft-apply.nft");
    host.writeFileAtomic(rel, text, 0o600);
    const r = host.nftApply(host.p(rel));
    if (r.code !== 0) throw new AgentError(`nftables: ${describeFailure(["nft", "-f", rel], r)}`);
    log(`  nftables: ${plan.nft.op} table ${NFT_TABLE_REF} (${plan.nft.why})`);
  } else log("  nftables unchanged");
  state.recordNftLive(target.n, host.nftList());
  step("nftables");

  // units
  const sc = (args: string[], soft = false) => {
    const r = host.systemctl(args);
    if (r.code !== 0 && !soft) throw new AgentError(`units: ${describeFailure(["systemctl", ...args], r)}`);
    return r;
  };
  for (const u of plan.units.remove) {
    sc(["stop", u], true);
    sc(["disable", u], true);
    log(`  unit ${u} stopped and disabled`);
  }
  for (const a of plan.files.filter((x) => x.kind === "unit")) applyFile(host, state, a);
  if (plan.units.reload) sc(["daemon-reload"]);
  for (const u of plan.units.enable) sc(["enable", u]);
  for (const u of plan.units.restart) {
    sc(["restart", u]);
    log(`  unit ${u} restarted (${plan.units.write.includes(u) ? "unit file changed" : "its files changed"})`);
  }
  if (plan.units.write.length + plan.units.remove.length + plan.units.restart.length === 0) log("  units unchanged");
  // Containers (docker runtime): each running and passing its own health check, or the switch rolls back.
  try {
    const p = state.pending();
    awaitContainers(host, target.bundle, log, undefined, p?.generation === target.n ? p.deadline : undefined);
  } catch (e) {
    throw e instanceof ComposeError ? new AgentError(e.message) : e;
  }
  step("units");

  // tailscale
  if (plan.tailscale.op !== "none") {
    const r = host.tailscale(plan.tailscale.argv, 90_000);
    if (r.code !== 0) throw new AgentError(`tailscale: ${describeFailure(["tailscale", ...plan.tailscale.argv], r)}`);
    log(`  tailscale ${plan.tailscale.op} (${plan.tailscale.why})`);
  } else log(`  tailscale unchanged`);
  step("tailscale");

  state.setCurrent(target.n);
  step("current");

  // The new table's peer sets start empty; fill them before the probes run.
  if (peerSetsOf(target.bundle).length) log(`  ${refreshPeers(host, target.bundle)}`);

  for (const c of target.bundle.bestEffort) {
    const r = host.run(c.argv, { timeoutMs: 30_000 });
    if (r.code !== 0) log(`  warning: best-effort ${describeFailure(c.argv, r)} (${c.why})`);
  }
  return plan;
}


