/**
 * Host-side policy enforcement: keep the `peers_*` nft sets of table inet
 * meshfleet filled with the live tailnet addresses of the fleet hosts the
 * policy lets in (from `tailscale status`), plus their fixed CIDRs. The sets'
 * contents change as peers come and go; their rules do not, so drift checks
 * compare the table with set elements left out.
 */
import * as path from "node:path";
import type { Bundle } from "../contract/bundle.ts";
import { NFT_TABLE_REF, peerSetScript } from "../contract/nftables.ts";
import type { Host } from "./host.ts";
import { describeFailure } from "./host.ts";
import { peerSetsOf, rulesetOf } from "./legacy.ts";
import { STATE_DIR } from "./state.ts";

export { nftComparable, peerSetScript } from "../contract/nftables.ts";

interface StatusPeer { HostName?: string; DNSName?: string; TailscaleIPs?: string[] }

/** Fleet host name -> its tailnet addresses, from `tailscale status --json`. */
export function addressesByHost(statusJson: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let st: { Self?: StatusPeer; Peer?: Record<string, StatusPeer> };
  try {
    st = JSON.parse(statusJson);
  } catch {
    return out;
  }
  for (const p of [st.Self, ...Object.values(st.Peer ?? {})]) {
    if (!p) continue;
    // The node's given name (first DNS label) is what meshfleet set with --hostname.
    const names = new Set([p.DNSName?.split(".")[0], p.HostName].filter((x): x is string => !!x));
    for (const n of names) out.set(n, [...(out.get(n) ?? []), ...(p.TailscaleIPs ?? [])]);
  }
  return out;
}

/** Names of the sets whose elements follow tailscale status (left out of drift checks). */
export const dynamicSetNames = (bundle: Bundle): string[] => peerSetsOf(bundle).map((s) => s.name);

/** Refresh the peer sets; returns a one-line summary. Never throws: the rules stay closed without it. */
export function refreshPeers(host: Host, bundle: Bundle): string {
  const sets = peerSetsOf(bundle);
  if (!sets.length || rulesetOf(bundle) === null) return "peers: the policy is not enforced on this host";
  const st = host.tailscale(["status", "--json"], 10_000);
  const addrs = addressesByHost(st.stdout);
  const rel = path.join(STATE_DIR, "nft-peers.nft");
  host.writeFileAtomic(rel, peerSetScript(sets, addrs), 0o600);
  const r = host.nftApply(host.p(rel));
  if (r.code !== 0) return `peers: ${describeFailure(["nft", "-f", rel], r)} (table ${NFT_TABLE_REF})`;
  const known = [...new Set(sets.flatMap((s) => s.members))];
  const live = known.filter((m) => addrs.has(m));
  return `peers: ${sets.length} set(s) refreshed; ${live.length}/${known.length} allowed hosts online (${live.join(", ") || "none"})`;
}

/** Run the tailscale CLI the bundle names (an absolute path), else `tailscale` from PATH. */
export function useTailscaleCli(bundle: Bundle | null | undefined): void {
  const cli = bundle?.tailscale?.cli;
  if (cli && cli.startsWith("/")) process.env.MESHFLEET_TAILSCALE_CLI = cli;
}
