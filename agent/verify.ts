/**
 * Drift: the live host against the current generation — owned files
 * (content, mode, owner), sysctls, our nft table, units, tailscale settings.
 */
import { sha256 } from "../contract/bundle.ts";
import { NFT_TABLE_REF, nftComparable } from "../contract/nftables.ts";
import type { Host } from "./host.ts";
import { rulesetOf } from "./legacy.ts";
import { dynamicSetNames } from "./peers.ts";
import { desiredFiles, foreignDropins, normalizeSysctl } from "./desired.ts";
import { ownerIds } from "./plan.ts";
import type { Generation } from "./state.ts";
import { prefsDrift, tagsDrift } from "./tailscale.ts";
import { composeDrift } from "./compose.ts";

export interface Drift {
  kind: "file" | "sysctl" | "nftables" | "unit" | "tailscale" | "container";
  subject: string;
  detail: string;
}

export function findDrift(host: Host, g: Generation): Drift[] {
  const out: Drift[] = [];
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  for (const f of desiredFiles(g.bundle)) {
    const st = host.stat(f.path);
    if (!st) {
      out.push({ kind: "file", subject: f.path, detail: "missing" });
      continue;
    }
    if (st.type !== "file") {
      out.push({ kind: "file", subject: f.path, detail: `is a ${st.type === "symlink" ? "symlink" : st.type === "dir" ? "folder" : "special file"}, expected a regular file` });
      continue;
    }
    const live = host.readFile(f.path);
    if (live === null || sha256(live) !== f.sha256) out.push({ kind: "file", subject: f.path, detail: f.secret ? "content changed (secret)" : "content changed" });
    if (st.mode !== parseInt(f.mode, 8)) out.push({ kind: "file", subject: f.path, detail: `mode is ${st.mode.toString(8).padStart(4, "0")}, expected ${f.mode}` });
    if (root) {
      const ids = ownerIds(host, f);
      if (ids.uid !== st.uid || ids.gid !== st.gid) out.push({ kind: "file", subject: f.path, detail: `owner is ${st.uid}:${st.gid}, expected ${f.owner}:${f.group}` });
    }
  }
  for (const [key, value] of Object.entries(g.bundle.sysctl)) {
    const live = host.readSysctl(key);
    if (live === null || normalizeSysctl(live) !== normalizeSysctl(value)) out.push({ kind: "sysctl", subject: key, detail: `is ${live ?? "(unreadable)"}, expected ${value}` });
  }
  const nft = host.nftList();
  const subject = `table ${NFT_TABLE_REF}`;
  const dynamic = dynamicSetNames(g.bundle);
  if (rulesetOf(g.bundle) === null) {
    if (nft !== null) out.push({ kind: "nftables", subject, detail: "present, but the firewall is off in this generation" });
  } else if (nft === null) out.push({ kind: "nftables", subject, detail: "missing" });
  else if (g.nftLive !== null && nftComparable(nft, dynamic) !== nftComparable(g.nftLive, dynamic)) out.push({ kind: "nftables", subject, detail: "differs from the ruleset this generation applied" });
  const owned = new Set(desiredFiles(g.bundle).map((f) => f.path));
  for (const d of foreignDropins((dir) => host.listDir(dir), g.bundle.units, owned))
    out.push({ kind: "unit", subject: d.unit, detail: `drop-in ${d.path} is not in the bundle (it can change what the unit runs, and as whom)` });
  for (const u of g.bundle.units) {
    if (!u.enable) continue;
    const enabled = host.systemctl(["is-enabled", u.name]).stdout.trim();
    if (enabled !== "enabled") out.push({ kind: "unit", subject: u.name, detail: `is ${enabled || "unknown"}, expected enabled` });
    const active = host.systemctl(["is-active", u.name]).stdout.trim();
    if (active !== "active") out.push({ kind: "unit", subject: u.name, detail: `is ${active || "unknown"}, expected active` });
  }
  out.push(...composeDrift(host, g.bundle));
  if (g.bundle.tailscale) {
    const r = host.tailscale(["debug", "prefs"], 10_000);
    let prefs: Record<string, unknown> | null = null;
    try {
      prefs = JSON.parse(r.stdout);
    } catch {
      prefs = null;
    }
    if (!prefs) out.push({ kind: "tailscale", subject: "prefs", detail: "`tailscale debug prefs` did not answer" });
    else for (const d of prefsDrift(g.bundle.tailscale, prefs)) out.push({ kind: "tailscale", subject: "prefs", detail: d });
    let status: { Self?: { Tags?: string[] | null } } | null = null;
    try {
      status = JSON.parse(host.tailscale(["status", "--json"], 10_000).stdout);
    } catch {
      status = null;
    }
    if (status) for (const d of tagsDrift(g.bundle.tailscale, status)) out.push({ kind: "tailscale", subject: "node", detail: d });
  }
  return out;
}
