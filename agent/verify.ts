/**
 * Drift: the live host against the current generation — owned files
 * (content, mode, owner), sysctls, our nft table, units, tailscale settings.
 */
import { sha256 } from "../contract/bundle.ts";
import { NFT_TABLE_REF, nftComparable } from "../contract/nftables.ts";
import type { Host, RunResult } from "./host.ts";
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
  const names = g.bundle.units.filter((u) => u.enable).map((u) => u.name);
  const enabled = unitAnswers(host, "is-enabled", names);
  const active = unitAnswers(host, "is-active", names);
  names.forEach((name, i) => {
    if (enabled[i] !== "enabled") out.push({ kind: "unit", subject: name, detail: `is ${enabled[i] || "unknown"}, expected enabled` });
    if (active[i] !== "active") out.push({ kind: "unit", subject: name, detail: `is ${active[i] || "unknown"}, expected active` });
  });
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

/**
 * `systemctl is-enabled|is-active` of every unit in one call (one line per
 * unit, in order): each systemctl start costs the host a process and systemd
 * a D-Bus call. systemd 252's is-enabled stops at a unit it cannot find, so
 * an answer without one line per unit is asked again unit by unit.
 */
export function unitAnswers(host: Host, verb: "is-enabled" | "is-active", names: string[]): string[] {
  if (names.length === 0) return [];
  const one = (name: string) => host.systemctl([verb, name]).stdout.trim();
  if (names.length === 1) return [one(names[0])];
  const lines = host.systemctl([verb, ...names]).stdout.replace(/\n$/, "").split("\n").map((l) => l.trim());
  return lines.length === names.length ? lines : names.map(one);
}

/**
 * The host with `tailscale status --json` asked at most once: verify's tag
 * check and the metrics it refreshes read the same answer (each call also
 * has tailscaled marshal the whole netmap).
 */
export function sharingTailscaleStatus(host: Host): Host {
  let status: RunResult | undefined;
  return {
    ...host,
    tailscale: (args, timeoutMs) => (args.length === 2 && args[0] === "status" && args[1] === "--json" ? (status ??= host.tailscale(args, timeoutMs)) : host.tailscale(args, timeoutMs)),
  };
}
