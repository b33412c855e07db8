/**
 * What activating a generation would change, computed from the live host
 * (reads only). `diff` prints it; activation executes it. Comparing with the
 * live host, not only with the previous generation, is what makes a resumed
 * or repeated activation idempotent after a crash.
 */
import { sha256 as shaOf, type Bundle, type TailscaleConfig } from "../contract/bundle.ts";
import { NFT_TABLE_REF, nftComparable } from "../contract/nftables.ts";
import type { Host } from "./host.ts";
import { isLegacy, rulesetOf } from "./legacy.ts";
import { dynamicSetNames } from "./peers.ts";
import { desiredFiles, foreignDropins, normalizeSysctl, unitDependencies, unitPath, type DesiredFile } from "./desired.ts";
import type { State } from "./state.ts";
import { tailscaleAction, type TailscaleAction } from "./tailscale.ts";

export interface FileAction {
  path: string;
  kind: DesiredFile["kind"];
  op: "write" | "remove" | "restore";
  reasons: string[];
  secret: boolean;
  desired?: DesiredFile;
  /** Back up what is there first: the path is new to meshfleet and already exists. */
  takeOver: boolean;
}

export interface Plan {
  files: FileAction[];
  sysctl: { key: string; from: string | null; to: string }[];
  sysctlRestore: { key: string; to: string }[];
  nft: { op: "none" | "replace" | "remove"; why: string };
  units: { write: string[]; remove: string[]; restart: string[]; enable: string[]; reload: boolean };
  tailscale: TailscaleAction;
}

export interface PlanInput {
  target: Bundle;
  /** Generations whose state may be live now: the current one, and in recovery the interrupted one. */
  others: { bundle: Bundle; nftLive: string | null }[];
  /** Settings `tailscale up/set` may last have applied. */
  appliedTailscale: TailscaleConfig | null;
  /** Reapply the nft table even if it looks unchanged (recovery). */
  forceNft?: boolean;
  /** `switch --repair`: also enable and restart units of the bundle the host has stopped or disabled. */
  repair?: boolean;
}

export function ownerIds(host: Host, f: { owner: string; group: string }): { uid: number | null; gid: number | null } {
  return { uid: host.lookupUser(f.owner), gid: host.lookupGroup(f.group) };
}

export function tailscaleBackendState(host: Host): string {
  const r = host.tailscale(["status", "--json"], 15_000);
  // `status` exits 1 when logged out but still prints the JSON.
  try {
    return String((JSON.parse(r.stdout) as { BackendState?: string }).BackendState ?? "");
  } catch {
    return "";
  }
}

export function makePlan(host: Host, state: State, input: PlanInput): Plan {
  const { target, others } = input;
  const want = desiredFiles(target);
  const wantPaths = new Set(want.map((f) => f.path));
  const ownedBefore = new Map<string, DesiredFile>();
  for (const o of others) for (const f of desiredFiles(o.bundle)) ownedBefore.set(f.path, f);
  // Stryker disable next-line ArrayDeclaration: with no generation before, the set is only asked about the bundle's own paths, never a made-up one
  const fromPaths = new Set(others.length ? desiredFiles(others[0].bundle).map((f) => f.path) : []);
  // Stryker disable next-line ConditionalExpression: process.getuid exists wherever the agent runs (Linux)
  const root = typeof process.getuid === "function" && process.getuid() === 0;

  const files: FileAction[] = [];
  for (const f of want) {
    const reasons: string[] = [];
    const st = host.stat(f.path);
    if (!st) reasons.push("new");
    else if (st.type !== "file") reasons.push(`a ${st.type === "symlink" ? "symlink" : st.type === "dir" ? "folder" : "special file"} where a file should be`);
    else {
      const live = host.readFile(f.path);
      if (live === null || shaOf(live) !== f.sha256) reasons.push(f.secret ? "content changed (secret)" : "content changed");
      if (st.mode !== parseInt(f.mode, 8)) reasons.push(`mode ${st.mode.toString(8).padStart(4, "0")} -> ${f.mode}`);
      if (root) {
        const ids = ownerIds(host, f);
        if (ids.uid !== st.uid || ids.gid !== st.gid) reasons.push(`owner ${st.uid}:${st.gid} -> ${f.owner}:${f.group}`);
      }
    }
    // Only what `from` (others[0]) owned is ours for sure; anything else already there is backed up first.
    const takeOver = !fromPaths.has(f.path) && !!st && !state.hasBackup(f.path);
    if (reasons.length) files.push({ path: f.path, kind: f.kind, op: "write", reasons, secret: f.secret, desired: f, takeOver });
  }
  for (const [p, f] of ownedBefore) {
    if (wantPaths.has(p)) continue;
    if (state.hasBackup(p)) files.push({ path: p, kind: f.kind, op: "restore", reasons: ["no longer managed; pre-existing file restored"], secret: f.secret, takeOver: false });
    else if (host.stat(p)) files.push({ path: p, kind: f.kind, op: "remove", reasons: ["no longer managed"], secret: f.secret, takeOver: false });
  }

  const sysctl: Plan["sysctl"] = [];
  for (const [key, value] of Object.entries(target.sysctl).sort()) {
    const live = host.readSysctl(key);
    if (live === null || normalizeSysctl(live) !== normalizeSysctl(value)) sysctl.push({ key, from: live, to: value });
  }
  const backups = state.sysctlBackups();
  const sysctlRestore: Plan["sysctlRestore"] = [];
  const dropped = new Set(others.flatMap((o) => Object.keys(o.bundle.sysctl)).filter((k) => !(k in target.sysctl)));
  for (const key of [...dropped].sort()) {
    if (!(key in backups)) continue;
    const live = host.readSysctl(key);
    if (live === null || normalizeSysctl(live) !== normalizeSysctl(backups[key])) sysctlRestore.push({ key, to: backups[key] });
  }

  const liveNft = host.nftList();
  const prev = others[0];
  const wantNft = rulesetOf(target);
  let nft: Plan["nft"] = { op: "none", why: "unchanged" };
  if (wantNft === null) {
    if (liveNft !== null) nft = { op: "remove", why: "firewall is off in this generation" };
  } else if (liveNft === null) nft = { op: "replace", why: `table ${NFT_TABLE_REF} is missing` };
  else if (!prev || rulesetOf(prev.bundle) !== wantNft) nft = { op: "replace", why: isLegacy(prev?.bundle ?? target) ? "ruleset changed (from a generation an older agent wrote)" : "ruleset changed" };
  else if (prev.nftLive !== null && nftComparable(prev.nftLive, dynamicSetNames(prev.bundle)) !== nftComparable(liveNft, dynamicSetNames(prev.bundle))) nft = { op: "replace", why: "live table drifted" };
  else if (input.forceNft) nft = { op: "replace", why: "reapplied: an interrupted run may have changed it" };

  // Drop-ins the bundle does not carry (a `User=root` added beside a unit): removed, backed up first.
  const dropinUnits = new Set<string>();
  for (const d of foreignDropins((dir) => host.listDir(dir), target.units, wantPaths)) {
    files.push({ path: d.path, kind: "file", op: "remove", reasons: [`drop-in for ${d.unit} not in the bundle`], secret: false, takeOver: !state.hasBackup(d.path) });
    dropinUnits.add(d.unit);
  }

  const writtenUnits = files.filter((a) => a.kind === "unit" && a.op === "write").map((a) => a.path.slice(unitPath("").length));
  const targetUnits = new Set(target.units.map((u) => u.name));
  const removedUnits = [...new Set(others.flatMap((o) => o.bundle.units.map((u) => u.name)))].filter((n) => !targetUnits.has(n)).sort();
  // Unit files count too: a trigger may name another unit's file (restartTriggers: "files whose change restarts the unit").
  const changedFiles = new Set(files.map((a) => a.path));
  const filePaths = target.files.map((f) => f.path);
  const restart: string[] = [];
  const enable: string[] = [];
  for (const u of target.units) {
    if (!u.enable) continue;
    const deps = unitDependencies(u, filePaths);
    const stopped = input.repair === true && (host.systemctl(["is-active", u.name]).stdout.trim() !== "active" || host.systemctl(["is-enabled", u.name]).stdout.trim() !== "enabled");
    if (writtenUnits.includes(u.name) || deps.some((d) => changedFiles.has(d)) || stopped || dropinUnits.has(u.name)) {
      restart.push(u.name);
      enable.push(u.name);
    }
  }
  const units: Plan["units"] = {
    write: writtenUnits,
    remove: removedUnits,
    restart,
    enable,
    reload: writtenUnits.length > 0 || removedUnits.length > 0 || dropinUnits.size > 0,
  };

  const tailscale = target.tailscale
    ? tailscaleAction(tailscaleBackendState(host), input.appliedTailscale, target.tailscale)
    : // Stryker disable next-line StringLiteral: with nothing wanted, tailscaleAction never reads the backend state
      tailscaleAction("", null, null);

  return { files, sysctl, sysctlRestore, nft, units, tailscale };
}

export function planIsEmpty(p: Plan): boolean {
  return (
    p.files.length === 0 &&
    p.sysctl.length === 0 &&
    p.sysctlRestore.length === 0 &&
    p.nft.op === "none" &&
    p.units.write.length + p.units.remove.length + p.units.restart.length === 0 &&
    p.tailscale.op === "none"
  );
}

/** Human lines for `diff`; secret contents never appear. */
export function describePlan(host: Host, p: Plan): string[] {
  const out: string[] = [];
  for (const f of p.files) {
    out.push(`${f.kind}: ${f.op} ${f.path} (${f.reasons.join(", ")})`);
    // Stryker disable next-line ConditionalExpression,LogicalOperator: defence in depth: only writes carry desired, and a secret's reason is "content changed (secret)", never "content changed"
    if (f.op === "write" && !f.secret && f.desired && f.reasons.includes("content changed")) {
      const old = host.readFile(f.path) ?? "";
      for (const l of lineDiff(old, f.desired.content)) out.push(`    ${l}`);
    }
  }
  for (const s of p.sysctl) out.push(`sysctl: ${s.key} ${s.from ?? "(unset)"} -> ${s.to}`);
  for (const s of p.sysctlRestore) out.push(`sysctl: ${s.key} restored to ${s.to}`);
  if (p.nft.op !== "none") out.push(`nftables: ${p.nft.op} table ${NFT_TABLE_REF} (${p.nft.why})`);
  for (const u of p.units.remove) out.push(`unit: stop, disable and remove ${u}`);
  for (const u of p.units.write) out.push(`unit: write ${u}`);
  if (p.units.reload) out.push("unit: systemctl daemon-reload");
  for (const u of p.units.restart) out.push(`unit: enable and restart ${u}`);
  if (p.tailscale.op !== "none") out.push(`tailscale: ${["tailscale", ...p.tailscale.argv].join(" ")} (${p.tailscale.why})`);
  return out;
}

/** A small line diff (LCS); big files are summarised rather than diffed. */
export function lineDiff(a: string, b: string, context = 1): string[] {
  const x = a.split("\n");
  const y = b.split("\n");
  if (x.length * y.length > 4_000_000) return [`(${x.length} -> ${y.length} lines)`];
  const n = x.length;
  const m = y.length;
  const L: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const ops: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    // Stryker disable next-line ConditionalExpression,LogicalOperator,EqualityOperator: past either end x[i] or y[j] is undefined, never equal to a line
    if (i < n && j < m && x[i] === y[j]) (ops.push(`  ${x[i]}`), i++, j++);
    else if (i < n && (j >= m || L[i + 1][j] >= L[i][j + 1])) (ops.push(`- ${x[i]}`), i++);
    else (ops.push(`+ ${y[j]}`), j++);
  }
  // Stryker disable next-line ConditionalExpression: a changed line is inside its own context window, so the window test keeps it anyway
  const keep = ops.map((o, k) => o[0] !== " " || ops.slice(Math.max(0, k - context), k + context + 1).some((q) => q[0] !== " "));
  const out: string[] = [];
  ops.forEach((o, k) => {
    if (keep[k]) out.push(o);
    else if (keep[k - 1]) out.push("  ...");
  });
  return out;
}
