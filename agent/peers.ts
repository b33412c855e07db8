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

interface StatusPeer { PublicKey?: string; HostName?: string; DNSName?: string; TailscaleIPs?: string[] }

/** A tailnet node as `tailscale status --json` shows it. */
export interface SeenNode {
  /** The node key (`nodekey:...`): WireGuard only carries traffic from whoever holds its private half. */
  key: string;
  addresses: string[];
}

/**
 * Fleet host name -> the nodes the coordinator lists under that name. The
 * name is the first label of the node's DNSName, which the coordinator
 * assigns and keeps unique; never the HostName a node reports about itself
 * (any node can call itself "laptop").
 */
export function nodesByName(statusJson: string): Map<string, SeenNode[]> {
  const out = new Map<string, SeenNode[]>();
  let st: { Self?: StatusPeer; Peer?: Record<string, StatusPeer> };
  try {
    st = JSON.parse(statusJson);
  } catch {
    return out;
  }
  const all: [string, StatusPeer | undefined][] = [["", st.Self], ...Object.entries(st.Peer ?? {})];
  for (const [mapKey, p] of all) {
    const name = p?.DNSName?.split(".")[0];
    const key = p?.PublicKey ?? mapKey;
    if (!p || !name || !key) continue;
    out.set(name, [...(out.get(name) ?? []), { key, addresses: p.TailscaleIPs ?? [] }]);
  }
  return out;
}

/** Fleet host name -> its tailnet addresses (by coordinator-assigned name only; see nodesByName). */
export function addressesByHost(statusJson: string): Map<string, string[]> {
  return new Map([...nodesByName(statusJson)].map(([n, nodes]) => [n, nodes.flatMap((x) => x.addresses)]));
}

/** Member host -> the node key it was first seen with, and its addresses then. */
export type PeerPins = Record<string, SeenNode & { pinnedAt: string }>;
const PINS = path.join(STATE_DIR, "peer-pins.json");

export function readPins(host: Host): PeerPins {
  try {
    return JSON.parse(host.readFile(PINS) ?? "{}") as PeerPins;
  } catch {
    return {};
  }
}

/**
 * Which addresses each member may use: those of the node whose key was
 * pinned for it. A member is pinned the first time the coordinator lists
 * exactly one node under its name (at a deploy's switch, or a later timer
 * run if it was offline then), or again on `peers --repin`. After that,
 * another node under the same name (re-registered, or a coordinator that
 * hands the name to someone else) is not admitted until a person re-pins.
 */
export function resolveMembers(members: readonly string[], seen: Map<string, SeenNode[]>, pins: PeerPins, repin: boolean): { addrs: Map<string, string[]>; pins: PeerPins; refused: string[] } {
  const addrs = new Map<string, string[]>();
  const next: PeerPins = { ...pins };
  const refused: string[] = [];
  const byKey = new Map([...seen.values()].flat().map((n) => [n.key, n]));
  for (const m of [...new Set(members)].sort()) {
    const under = seen.get(m) ?? [];
    const pin = next[m];
    if ((!pin || repin) && under.length === 1) next[m] = { ...under[0], pinnedAt: new Date().toISOString() };
    else if (!pin && under.length > 1) refused.push(`${m}: ${under.length} nodes under that name; none admitted`);
    const p = next[m];
    if (!p) continue;
    const node = byKey.get(p.key);
    if (node) addrs.set(m, node.addresses);
    if (under.some((n) => n.key !== p.key)) refused.push(`${m}: a node with another key (${under.find((n) => n.key !== p.key)!.key.slice(0, 16)}...) is listed under this name; not admitted (\`meshfleet-agent peers --repin\` if it is really ${m})`);
  }
  return { addrs, pins: next, refused };
}

/** Names of the sets whose elements follow tailscale status (left out of drift checks). */
export const dynamicSetNames = (bundle: Bundle): string[] => peerSetsOf(bundle).map((s) => s.name);

/** Refresh the peer sets; returns a one-line summary. Never throws: the rules stay closed without it. */
export function refreshPeers(host: Host, bundle: Bundle, o: { repin?: boolean; offline?: boolean } = {}): string {
  const sets = peerSetsOf(bundle);
  if (!sets.length || rulesetOf(bundle) === null) return "peers: the policy is not enforced on this host";
  const known = [...new Set(sets.flatMap((s) => s.members))];
  let addrs: Map<string, string[]>;
  let refused: string[] = [];
  const pins = readPins(host);
  if (o.offline) {
    // At boot, before tailscale runs: the addresses the pinned nodes had.
    addrs = new Map(known.filter((m) => pins[m]).map((m) => [m, pins[m].addresses]));
  } else {
    const st = host.tailscale(["status", "--json"], 10_000);
    const r = resolveMembers(known, nodesByName(st.stdout), pins, o.repin === true);
    addrs = r.addrs;
    refused = r.refused;
    if (JSON.stringify(r.pins) !== JSON.stringify(pins)) host.writeFileAtomic(PINS, JSON.stringify(r.pins, null, 2) + "\n", 0o600);
  }
  const rel = path.join(STATE_DIR, "nft-peers.nft");
  host.writeFileAtomic(rel, peerSetScript(sets, addrs), 0o600);
  const r = host.nftApply(host.p(rel));
  if (r.code !== 0) return `peers: ${describeFailure(["nft", "-f", rel], r)} (table ${NFT_TABLE_REF})`;
  const live = known.filter((m) => addrs.has(m));
  return `peers: ${sets.length} set(s) refreshed; ${live.length}/${known.length} allowed hosts online (${live.join(", ") || "none"})${refused.length ? `; refused: ${refused.join("; ")}` : ""}`;
}

/** Run the tailscale CLI the bundle names (an absolute path), else `tailscale` from PATH. */
export function useTailscaleCli(bundle: Bundle | null | undefined): void {
  const cli = bundle?.tailscale?.cli;
  if (cli && cli.startsWith("/")) process.env.MESHFLEET_TAILSCALE_CLI = cli;
}
