/**
 * What of a bundle a deploy may show: per file its path, mode, owner and the
 * sha256 of its content (a digest, never the content), per unit and for the
 * firewall and tailscale settings a digest. `preview --diff` reads these to
 * say which files and units change on which host. Pure.
 */
import { createHash } from "node:crypto";
import type { GenerationSummary } from "./types.ts";

const sha = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

/** JSON with keys sorted at every level. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, (x as Record<string, unknown>)[k]])) : x,
  );
}

interface BundleLike {
  hash: string;
  files: { path: string; mode: string; owner: string; group: string; sha256: string; secret?: boolean }[];
  units?: { name: string }[];
  sysctl?: Record<string, string>;
  tailscale?: unknown;
  firewall?: unknown;
  nftables?: unknown;
  peerSets?: unknown;
}

/** "input drop, forward accept": each base chain's hook and policy, in hook order ("" without a typed firewall). */
export function firewallPolicy(fw: unknown): string {
  const chains = (fw as { chains?: { hook?: { hook: string; policy: string } | null }[] } | null)?.chains;
  if (!Array.isArray(chains)) return "";
  const order = ["input", "forward", "output"];
  return chains
    .flatMap((c) => (c.hook ? [c.hook] : []))
    .sort((a, b) => order.indexOf(a.hook) - order.indexOf(b.hook))
    .map((h) => `${h.hook} ${h.policy}`)
    .join(", ");
}

export function bundleSummary(b: BundleLike): GenerationSummary {
  const fw = b.firewall ?? b.nftables ?? null;
  return {
    hash: b.hash,
    files: Object.fromEntries(
      [...b.files].sort((x, y) => x.path.localeCompare(y.path)).map((f) => [f.path, { mode: f.mode, owner: f.owner, group: f.group, sha256: f.sha256, secret: !!f.secret }]),
    ),
    units: Object.fromEntries((b.units ?? []).map((u) => [u.name, sha(canonical(u))])),
    sysctl: { ...(b.sysctl ?? {}) },
    firewall: fw === null ? "" : sha(canonical({ fw, peerSets: b.peerSets ?? null })),
    firewallPolicy: firewallPolicy(fw),
    tailscale: b.tailscale ? sha(canonical(b.tailscale)) : "",
  };
}
