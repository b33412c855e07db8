/**
 * The agent's operations: switch, rollback, confirm, guard expiry, and the
 * recovery every run starts with. Each returns an exit code; user-facing
 * failures are AgentError (one line, no stack).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseBundle, type Bundle } from "../contract/bundle.ts";
import { NFT_TABLE_REF, nftComparable, nftScriptFor } from "../contract/nftables.ts";
import { dynamicSetNames, refreshPeers, useTailscaleCli } from "./peers.ts";
import { activate, AgentError, crashPoint, journalStep, type Log } from "./activate.ts";
import { describeFailure } from "./host.ts";
import { peerSetsOf, rulesetOf } from "./legacy.ts";
import { desiredFiles } from "./desired.ts";
import { startGuard, stopGuard } from "./guard.ts";
import type { Host } from "./host.ts";
import { tryLock, type Lock } from "./lock.ts";
import { tailscaleMetrics, writeMetrics } from "./metrics.ts";
import { describePlan, makePlan, planIsEmpty } from "./plan.ts";
import { runProbes } from "./probes.ts";
import { State, STATE_DIR, type Generation, type Journal } from "./state.ts";
import { findDrift, sharingTailscaleStatus } from "./verify.ts";

export interface Ctx {
  host: Host;
  state: State;
  log: Log;
}

/** How long probes may keep retrying (ms); MESHFLEET_PROBE_DEADLINE_MS overrides for tests. */
const probeDeadline = () => Number(process.env.MESHFLEET_PROBE_DEADLINE_MS ?? 60_000);
/** After the confirm deadline, any run rolls back if the guard itself did not (e.g. a reboot). */
const GUARD_GRACE_MS = 15_000;

export function lockState(ctx: Ctx, waitMs = 120_000): Lock {
  const l = tryLock(ctx.state.dir, waitMs);
  if ("heldBy" in l) throw new AgentError(`another meshfleet agent (pid ${l.heldBy || "unknown"}) is changing this host; try again when it is done`);
  return l;
}

export function readBundle(file: string): Bundle {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new AgentError(`cannot read bundle ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new AgentError(`bundle ${file} refused: not valid JSON (${(e as Error).message})`);
  }
  const r = parseBundle(parsed);
  if (!r.ok) throw new AgentError(`bundle ${file} refused: ${r.problems.join("; ")}; nothing was changed`);
  return r.bundle;
}

/** Users and groups the bundle's own sysusers.d files declare (`u name ...`, `g name ...`). */
export function declaredAccounts(b: Bundle): { users: Set<string>; groups: Set<string> } {
  const users = new Set<string>();
  const groups = new Set<string>();
  for (const f of b.files) {
    if (!f.path.startsWith("/etc/sysusers.d/")) continue;
    for (const line of f.content.split("\n")) {
      const [kind, name] = line.trim().split(/\s+/);
      if (kind === "u") { users.add(name); groups.add(name); }
      else if (kind === "g") groups.add(name);
    }
  }
  return { users, groups };
}

function hostProblems(host: Host, b: Bundle): string[] {
  const out: string[] = [];
  const declared = declaredAccounts(b);
  for (const f of desiredFiles(b)) {
    if (!/^0?[0-7]{3,4}$/.test(f.mode)) out.push(`file ${f.path}: mode ${JSON.stringify(f.mode)} is not octal`);
    if (host.lookupUser(f.owner) === null && !declared.users.has(f.owner)) out.push(`file ${f.path}: owner ${f.owner} does not exist on this host (nor in the bundle's sysusers.d)`);
    if (host.lookupGroup(f.group) === null && !declared.groups.has(f.group)) out.push(`file ${f.path}: group ${f.group} does not exist on this host (nor in the bundle's sysusers.d)`);
  }
  return out;
}

export function loadCurrent(ctx: Ctx, hostName?: string): Generation {
  return ctx.state.load(ctx.state.currentNumber(), hostName);
}

export function refreshMetrics(ctx: Ctx, drift?: number): string | null {
  const g = loadCurrent(ctx);
  const m = g.bundle.metrics;
  if (!m?.enable || !m.textfileDir) return null;
  const last = ctx.state.lastSwitch();
  // One `tailscale status --json` for the drift's tag check and the peer counts.
  const host = sharingTailscaleStatus(ctx.host);
  const d = drift ?? findDrift(host, g).length;
  return writeMetrics(ctx.host, m.textfileDir, {
    ...tailscaleMetrics(host),
    generation: g.n,
    drift: d,
    lastSwitchSuccess: last?.success ? 1 : 0,
    lastSwitchTimestamp: last ? Math.floor(last.timestamp / 1000) : 0,
  });
}

/** Activate `target` in place of `from`: the rollback path shared by rollback, guard expiry, failed probes and recovery. */
function rollbackTo(ctx: Ctx, from: Generation, target: Generation, why: string, recovering = false, repair = false): void {
  const j: Journal = { op: "rollback", from: from.n, to: target.n, startedAt: new Date().toISOString(), done: [] };
  ctx.state.writeJournal(j);
  ctx.log(`rolling back to generation ${target.n} (${why})`);
  activate({
    ...ctx,
    journal: j,
    target,
    plan: { target: target.bundle, others: [from, target], appliedTailscale: from.bundle.tailscale, forceNft: recovering, repair },
  });
  ctx.state.clearJournal();
}

/**
 * Finish what an interrupted run left: a switch is rolled back to where it
 * started, a rollback is carried through; an expired, unconfirmed generation
 * is rolled back when its guard did not do it.
 */
export function recover(ctx: Ctx): void {
  const { state } = ctx;
  state.removeStaging();
  const j = state.journal();
  if (j) {
    const exists = (n: number) => n === 0 || state.generationNumbers().includes(n);
    if (j.op === "switch" && !exists(j.to)) {
      ctx.log(`recovery: the switch to generation ${j.to} stopped before it was staged; nothing to undo`);
      state.clearJournal();
    } else {
      const a = state.load(j.op === "switch" ? j.to : j.from);
      const b = state.load(j.op === "switch" ? j.from : j.to, a.bundle.host);
      ctx.log(`recovery: ${j.op} ${j.from} -> ${j.to} was interrupted after [${j.done.join(", ") || "nothing"}]`);
      rollbackTo(ctx, a, b, `finishing an interrupted ${j.op}`, true);
      if (j.op === "switch") {
        state.setMeta(j.to, { status: "failed", error: "interrupted; rolled back by recovery" });
        state.writeLastSwitch({ success: false, timestamp: Date.now(), generation: j.to, error: "interrupted; rolled back" });
      }
      ctx.log(`recovery: generation ${b.n} is current`);
    }
  }
  const p = state.pending();
  if (p && Date.now() > p.deadline + GUARD_GRACE_MS) expirePending(ctx, p.generation, "the confirm deadline passed and the guard did not act");
}

export function withRecovery<T>(ctx: Ctx, mutate: boolean, body: () => T): T {
  if (mutate) {
    const l = lockState(ctx);
    try {
      recover(ctx);
      return body();
    } finally {
      l.release();
    }
  }
  // Read-only commands recover only when nobody else is mid-switch.
  const l = tryLock(ctx.state.dir, 0);
  if ("heldBy" in l) {
    ctx.log(`note: agent pid ${l.heldBy || "unknown"} is changing this host right now`);
    return body();
  }
  try {
    recover(ctx);
  } finally {
    l.release();
  }
  return body();
}

export interface SwitchOptions {
  confirmTimeoutS?: number;
  /**
   * Accepted for older deploys; a switch to the current bundle always
   * re-applies it where the host drifted (a flushed table, an edited file).
   */
  repair?: boolean;
  /** Generations kept after a successful switch (older ones are deleted). */
  keep?: number;
}

/** Generations kept by default, like NixOS's configurationLimit; `switch --keep N` changes it. */
export const KEEP_GENERATIONS = 10;

export async function doSwitch(ctx: Ctx, bundleFile: string, o: SwitchOptions): Promise<number> {
  try {
    return await switchTo(ctx, bundleFile, o);
  } finally {
    removeIncoming(ctx, bundleFile);
  }
}

/** The deploy's copy of the bundle (secrets in clear) goes once the switch has read it; a bundle given from elsewhere stays. */
function removeIncoming(ctx: Ctx, bundleFile: string): void {
  const incoming = ctx.state.file("incoming") + "/";
  const abs = fs.existsSync(bundleFile) ? fs.realpathSync(bundleFile) : bundleFile;
  let dir = incoming;
  try {
    dir = fs.realpathSync(incoming) + "/";
  } catch {
    return;
  }
  if (abs.startsWith(dir)) fs.rmSync(abs, { force: true });
}

async function switchTo(ctx: Ctx, bundleFile: string, o: SwitchOptions): Promise<number> {
  const bundle = readBundle(bundleFile);
  useTailscaleCli(bundle);
  const problems = hostProblems(ctx.host, bundle);
  if (problems.length) throw new AgentError(`bundle ${bundleFile} refused: ${problems.join("; ")}; nothing was changed`);
  const lock = lockState(ctx);
  try {
    recover(ctx);
    const { state, log } = ctx;
    const cur = loadCurrent(ctx, bundle.host);
    if (cur.n !== 0 && cur.bundle.host !== bundle.host)
      throw new AgentError(`bundle ${bundleFile} refused: it is for host ${bundle.host}, but this host runs ${cur.bundle.host}'s generation ${cur.n}; nothing was changed`);
    if (cur.n !== 0 && cur.bundle.hash === bundle.hash) {
      if (findDrift(ctx.host, cur).length > 0) {
        rollbackTo(ctx, cur, cur, "repairing drift from the current generation", true, true);
        safeMetrics(ctx);
        log(`generation ${cur.n} re-applied: drift repaired`);
        return 0;
      }
      log(`generation ${cur.n} is already current; nothing to do`);
      return 0;
    }
    const n = Math.max(0, ...state.generationNumbers()) + 1;
    const j: Journal = { op: "switch", from: cur.n, to: n, startedAt: new Date().toISOString(), done: [] };
    state.writeJournal(j);
    log(`switching ${bundle.host} from generation ${cur.n} to ${n} (bundle ${bundle.hash.slice(0, 12)})`);
    const target = state.stage(n, bundle);
    if (o.confirmTimeoutS !== undefined) {
      // Armed before activation: a rule that cuts this SSH session mid-switch must not leave the host unguarded.
      const old = state.pending();
      if (old) stopGuard(ctx.host, old.guard);
      const guard = startGuard(ctx.host, n, o.confirmTimeoutS);
      state.writePending({ generation: n, previous: cur.n, deadline: Date.now() + o.confirmTimeoutS * 1000, guard });
      log(`lockout guard armed: ${guard.kind === "systemd" ? guard.unit : `pid ${guard.pid}`} rolls back to generation ${cur.n} in ${o.confirmTimeoutS}s unless confirmed`);
    }
    journalStep(state, j, "stage");
    let failure: string | null = null;
    try {
      activate({ ...ctx, journal: j, target, plan: { target: bundle, others: [cur], appliedTailscale: cur.bundle.tailscale } });
      log("health probes");
      const failed = await runProbes(ctx.host, bundle.probes, probeDeadline(), log);
      crashPoint("probes");
      if (failed.length) failure = `health probes failed: ${failed.join("; ")}`;
    } catch (e) {
      if (!(e instanceof AgentError)) throw e;
      failure = e.message;
    }
    if (failure) {
      log(`switch failed: ${failure}`);
      rollbackTo(ctx, state.load(n), cur, "the switch failed");
      const p = state.pending();
      if (p && p.generation === n) {
        stopGuard(ctx.host, p.guard);
        state.clearPending();
      }
      state.setMeta(n, { status: "failed", error: failure });
      state.writeLastSwitch({ success: false, timestamp: Date.now(), generation: n, error: failure });
      safeMetrics(ctx);
      throw new AgentError(`switch to generation ${n} failed and was rolled back to generation ${cur.n}: ${failure}`);
    }
    state.setMeta(n, { status: "active" });
    state.writeLastSwitch({ success: true, timestamp: Date.now(), generation: n });
    collectGarbage(ctx, o.keep ?? KEEP_GENERATIONS);
    if (o.confirmTimeoutS !== undefined) {
      state.clearJournal();
      safeMetrics(ctx);
      const left = Math.max(0, Math.round(((state.pending()?.deadline ?? Date.now()) - Date.now()) / 1000));
      log(`generation ${n} is active; awaiting confirm within ${left}s (run \`confirm\` over a NEW ssh connection), else it rolls back to generation ${cur.n}`);
      return 0;
    }
    const old = state.pending();
    if (old) {
      stopGuard(ctx.host, old.guard);
      state.clearPending();
    }
    state.clearJournal();
    safeMetrics(ctx);
    log(`generation ${n} is active`);
    return 0;
  } finally {
    lock.release();
  }
}

function safeMetrics(ctx: Ctx): void {
  try {
    refreshMetrics(ctx);
  } catch (e) {
    ctx.log(`warning: metrics not written: ${(e as Error).message}`);
  }
}

export function doConfirm(ctx: Ctx, hash?: string): number {
  return withRecovery(ctx, true, () => {
    const p = ctx.state.pending();
    const cur = ctx.state.currentNumber();
    // With a hash, confirm that generation only: a host its guard already rolled back says so.
    const curHash = cur ? loadCurrent(ctx).bundle.hash : "";
    if (hash !== undefined && curHash !== hash) {
      const last = ctx.state.lastSwitch();
      throw new AgentError(
        `generation ${hash.slice(0, 12)} is not current (generation ${cur}${curHash ? ` ${curHash.slice(0, 12)}` : ""} is)${last && !last.success ? `: ${last.error ?? "the last switch failed"}` : ""}`,
      );
    }
    if (!p) {
      // The guard rolled the last switch back: that is a failed deploy, never "nothing to confirm".
      const last = ctx.state.lastSwitch();
      if (hash === undefined && last && !last.success && last.generation !== cur)
        throw new AgentError(`generation ${last.generation} was not kept: ${last.error ?? "the last switch failed"}; generation ${cur} is current`);
      ctx.log(`nothing awaits confirmation; generation ${cur}${curHash ? ` (bundle ${curHash.slice(0, 12)})` : ""} is current`);
      return 0;
    }
    if (Date.now() > p.deadline) throw new AgentError(`too late: the confirm deadline for generation ${p.generation} has passed; it is being rolled back to ${p.previous}`);
    stopGuard(ctx.host, p.guard);
    ctx.state.clearPending();
    ctx.log(`generation ${p.generation}${curHash ? ` (bundle ${curHash.slice(0, 12)})` : ""} confirmed`);
    return 0;
  });
}

/** Roll back an unconfirmed generation; a no-op when it was confirmed meanwhile. */
export function expirePending(ctx: Ctx, n: number, why: string): number {
  const p = ctx.state.pending();
  if (!p || p.generation !== n) {
    ctx.log(`generation ${n} was confirmed or superseded; guard has nothing to do`);
    return 0;
  }
  const cur = ctx.state.currentNumber();
  if (cur === n) {
    const from = ctx.state.load(n);
    rollbackTo(ctx, from, ctx.state.load(p.previous, from.bundle.host), why);
    ctx.state.setMeta(n, { status: "failed", error: "not confirmed in time" });
    ctx.state.writeLastSwitch({ success: false, timestamp: Date.now(), generation: n, error: `not confirmed in time; rolled back to ${p.previous}` });
  }
  ctx.state.clearPending();
  safeMetrics(ctx);
  return 0;
}

export function doGuardExpire(ctx: Ctx, n: number): number {
  const l = lockState(ctx);
  try {
    recover(ctx);
    return expirePending(ctx, n, `generation ${n} was not confirmed in time`);
  } finally {
    l.release();
  }
}

export function doRollback(ctx: Ctx, to: number | undefined, confirmTimeoutS?: number): number {
  return withRecovery(ctx, true, () => {
    const { state } = ctx;
    const curN = state.currentNumber();
    const p = state.pending();
    let target = to;
    if (target === undefined) {
      if (p && p.generation === curN) target = p.previous;
      else {
        const older = state.generationNumbers().filter((n) => n < curN && state.load(n).meta.status !== "failed");
        if (!older.length) throw new AgentError(`no generation before ${curN} to roll back to (use \`rollback 0\` to release everything)`);
        target = older[older.length - 1];
      }
    }
    if (target !== 0 && !state.generationNumbers().includes(target)) throw new AgentError(`generation ${target} does not exist (see \`generations\`)`);
    if (target === curN) {
      ctx.log(`generation ${curN} is already current; nothing to do`);
      return 0;
    }
    if (target !== 0 && state.load(target).meta.secretsPruned)
      throw new AgentError(`generation ${target} no longer holds its secrets (pruned after newer switches); deploy it again from git instead, or roll back to a newer one (see \`generations\`)`);
    const from = loadCurrent(ctx);
    if (p) {
      stopGuard(ctx.host, p.guard);
      state.clearPending();
    }
    if (confirmTimeoutS !== undefined) {
      // Guarded like a switch (the deploy's uninstall): unless `confirm` comes over a new connection, generation curN comes back.
      const guard = startGuard(ctx.host, target, confirmTimeoutS);
      state.writePending({ generation: target, previous: curN, deadline: Date.now() + confirmTimeoutS * 1000, guard });
    }
    rollbackTo(ctx, from, state.load(target, from.bundle.host), "requested");
    safeMetrics(ctx);
    ctx.log(`generation ${target} is current${confirmTimeoutS !== undefined ? `; awaiting confirm within ${confirmTimeoutS}s, else generation ${curN} comes back` : ""}`);
    return 0;
  });
}

export function doDiff(ctx: Ctx, bundleFile: string): number {
  const bundle = readBundle(bundleFile);
  return withRecovery(ctx, false, () => {
    const cur = loadCurrent(ctx, bundle.host);
    const plan = makePlan(ctx.host, ctx.state, { target: bundle, others: [cur], appliedTailscale: cur.bundle.tailscale });
    if (cur.n !== 0 && cur.bundle.hash === bundle.hash && planIsEmpty(plan)) {
      ctx.log(`generation ${cur.n} is already current; nothing to do`);
      return 0;
    }
    const lines = describePlan(ctx.host, plan);
    ctx.log(`a switch from generation ${cur.n} would change:`);
    for (const l of lines.length ? lines : ["(nothing on the host; only the generation record)"]) ctx.log(`  ${l}`);
    return 0;
  });
}

export function doGc(ctx: Ctx, keep: number): number {
  return withRecovery(ctx, true, () => collectGarbage(ctx, keep));
}

/**
 * Keep the newest `keep` generations (and the current one, and the one a
 * pending confirm falls back to); delete the rest. Of those kept, only the
 * current one and the ones a rollback goes to next keep their secrets: the
 * others' secret contents are dropped, so old keys do not linger on disk.
 */
export function collectGarbage(ctx: Ctx, keep: number): number {
  const { state } = ctx;
  const cur = state.currentNumber();
  const p = state.pending();
  const all = state.generationNumbers();
  const kept = new Set(all.slice(-Math.max(1, keep)));
  kept.add(cur);
  if (p) kept.add(p.previous);
  const removed = all.filter((n) => !kept.has(n));
  for (const n of removed) state.removeGeneration(n);
  const rollbackTarget = all.filter((n) => n < cur && kept.has(n) && state.load(n).meta.status !== "failed").pop();
  const withSecrets = new Set([cur, p?.previous, p?.generation, rollbackTarget]);
  const pruned = [...kept].filter((n) => n > 0 && !withSecrets.has(n) && state.pruneSecrets(n));
  const keptList = [...kept].filter((n) => n > 0).sort((a, b) => a - b).join(", ");
  ctx.log(removed.length ? `removed generations ${removed.join(", ")}; kept ${keptList}` : "no generation to remove");
  if (pruned.length) ctx.log(`secrets pruned from generations ${pruned.sort((a, b) => a - b).join(", ")}`);
  return 0;
}

/**
 * At boot, before the network is up (meshfleet-firewall.service): the kernel
 * starts without table inet meshfleet, so load the current generation's
 * table, its peer sets filled with the pinned addresses. Idempotent; `boot`
 * and any switch of the same bundle do it again if it is missing or drifted.
 */
export function doBootFirewall(ctx: Ctx): number {
  // A switch that restarts this unit holds the lock and loads its own table: `current` is still the old one then.
  const l = tryLock(ctx.state.dir, 0);
  if ("heldBy" in l) {
    ctx.log(`agent pid ${l.heldBy || "unknown"} is changing this host; it loads the table itself`);
    return 0;
  }
  try {
    return loadCurrentTable(ctx);
  } finally {
    l.release();
  }
}

function loadCurrentTable(ctx: Ctx): number {
  const g = loadCurrent(ctx);
  const ruleset = g.n ? rulesetOf(g.bundle) : null;
  if (ruleset === null) {
    ctx.log(g.n ? `generation ${g.n} has no firewall; nothing to load` : "no generation is active; nothing to load");
    return 0;
  }
  const live = ctx.host.nftList();
  const dyn = dynamicSetNames(g.bundle);
  if (live !== null && g.nftLive !== null && nftComparable(live, dyn) === nftComparable(g.nftLive, dyn)) {
    ctx.log(`table ${NFT_TABLE_REF} of generation ${g.n} is already loaded`);
    return 0;
  }
  const rel = path.join(STATE_DIR, "nft-boot.nft");
  ctx.host.writeFileAtomic(rel, nftScriptFor(ruleset), 0o600);
  const r = ctx.host.nftApply(ctx.host.p(rel));
  if (r.code !== 0) throw new AgentError(`table ${NFT_TABLE_REF} of generation ${g.n} not loaded: ${describeFailure(["nft", "-f", rel], r)}`);
  ctx.log(`table ${NFT_TABLE_REF} of generation ${g.n} loaded (${live === null ? "it was missing" : "it had drifted"})`);
  if (peerSetsOf(g.bundle).length) ctx.log(refreshPeers(ctx.host, g.bundle, { offline: true }));
  return 0;
}

/** `peers`: refresh the policy's peer sets of the current generation from tailscale status. */
export function doPeers(ctx: Ctx, repin = false): number {
  return withRecovery(ctx, false, () => {
    const g = loadCurrent(ctx);
    if (g.n === 0) {
      ctx.log("no generation is active; nothing to refresh");
      return 0;
    }
    const line = refreshPeers(ctx.host, g.bundle, { repin });
    ctx.log(line);
    return line.includes("exited with") || line.includes("timed out") ? 1 : 0;
  });
}
