/**
 * The bundle: everything the agent needs to activate one host's generation,
 * as one JSON document with a stable encoding. Built here (pure), read by the
 * agent (agent/), shipped by HostAgent (components/).
 */
import { createHash } from "node:crypto";
import type { BestEffortCommand, HealthProbe, HostSystem, MetricsSettings, TailscaleSettings, UnitSpec } from "./types.ts";

export const BUNDLE_FORMAT = 1;

export interface BundleFile {
  path: string;
  /** Octal string, e.g. "0644". */
  mode: string;
  owner: string;
  group: string;
  /** sha256 hex of `content` (utf8). */
  sha256: string;
  content: string;
  secret: boolean;
}

export interface Bundle {
  format: typeof BUNDLE_FORMAT;
  host: string;
  /** sha256 over the canonical JSON of every other field; names the generation. */
  hash: string;
  files: BundleFile[];
  sysctl: Record<string, string>;
  /** The whole `table inet meshfleet { ... }` text, or null when the firewall is off. */
  nftables: string | null;
  units: UnitSpec[];
  tailscale: TailscaleSettings | null;
  probes: HealthProbe[];
  metrics: MetricsSettings;
  bestEffort: BestEffortCommand[];
  /**
   * Host-side policy enforcement: per nft set (`<name>_v4`/`_v6`), the fleet
   * hosts whose live tailnet addresses belong in it and the CIDRs always in
   * it. Absent when the host trusts the coordinator's filtering.
   */
  peerSets?: Record<string, { members: string[]; cidrs: string[] }>;
}

export const sha256 = (s: string): string => createHash("sha256").update(s, "utf8").digest("hex");

/** JSON with keys sorted at every level: the same bundle always hashes the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]));
    }
    return v;
  });
}

export function bundleHash(b: Omit<Bundle, "hash">): string {
  const { hash: _ignored, ...rest } = b as Bundle;
  return sha256(canonicalJson(rest));
}

/** Names of the secrets a host's files need (see FileSpec.secretRef). */
export function secretRefs(host: HostSystem): string[] {
  return [...new Set(host.files.flatMap((f) => (f.secretRef ? [f.secretRef] : [])))].sort();
}

/**
 * Build a host's bundle; `nftables` comes from modules/firewall's renderer and
 * `secrets` fills files with a secretRef (a missing one is an error, never "").
 */
export function makeBundle(host: HostSystem, nftables: string | null, secrets: Record<string, string> = {}): Bundle {
  const files: BundleFile[] = [...host.files]
    .sort((a, b) => a.path.localeCompare(b.path))
    .map((f) => {
      let content = f.content;
      if (f.secretRef) {
        const v = secrets[f.secretRef];
        if (v === undefined) throw new Error(`host ${host.name}: file ${f.path} needs secret "${f.secretRef}", which was not given`);
        content = v;
      }
      return {
        path: f.path,
        mode: f.secretRef || f.secret ? "0600" : f.mode,
        owner: f.owner,
        group: f.group,
        sha256: sha256(content),
        content,
        secret: !!(f.secret || f.secretRef),
      };
    });
  const body: Omit<Bundle, "hash"> = {
    format: BUNDLE_FORMAT,
    host: host.name,
    files,
    sysctl: host.sysctl,
    nftables,
    units: [...host.units].sort((a, b) => a.name.localeCompare(b.name)),
    tailscale: host.tailscale.enable ? host.tailscale : null,
    probes: host.probes,
    metrics: host.metrics,
    bestEffort: host.bestEffort,
  };
  if (host.firewall.enable && host.firewall.tailnet.length)
    body.peerSets = Object.fromEntries(
      Object.keys(host.firewall.sets).sort().map((k) => [k, { members: host.firewall.setMembers[k] ?? [], cidrs: host.firewall.sets[k] }]),
    );
  return { ...body, hash: bundleHash(body) };
}

/** Problems with a bundle, checked before anything is touched. Empty = valid. */
export function checkBundle(b: unknown): string[] {
  const problems: string[] = [];
  if (!b || typeof b !== "object") return ["bundle is not a JSON object"];
  const x = b as Partial<Bundle>;
  if (x.format !== BUNDLE_FORMAT) problems.push(`bundle format ${String(x.format)} is not supported (this agent reads format ${BUNDLE_FORMAT})`);
  if (typeof x.host !== "string" || !x.host) problems.push("bundle has no host name");
  if (!Array.isArray(x.files)) problems.push("bundle has no files list");
  else
    for (const f of x.files) {
      if (!f.path?.startsWith("/")) problems.push(`file path ${JSON.stringify(f.path)} is not absolute`);
      else if (sha256(f.content ?? "") !== f.sha256) problems.push(`file ${f.path}: sha256 does not match its content`);
    }
  if (problems.length === 0 && bundleHash(x as Bundle) !== x.hash) problems.push("bundle hash does not match its content");
  return problems;
}
