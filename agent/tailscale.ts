/**
 * Tailscale client decisions, pure: which of `up` / `set` / nothing a change
 * needs, drift between declared settings and `tailscale debug prefs`, and
 * peer counts from `tailscale status --json`.
 */
import { canonicalJson, type TailscaleConfig } from "../contract/bundle.ts";
import { advertisedRoutes, tailscaleSetFlags, tailscaleUpFlags } from "../contract/tailscale.ts";

export interface TailscaleAction {
  op: "none" | "up" | "set";
  argv: string[];
  why: string;
}

/** `tailscale up` gives up after this; without it `up` retries forever against a dead coordinator. */
export const UP_TIMEOUT = "60s";

const LOGGED_OUT = new Set(["NeedsLogin", "NoState"]);
const sortedTags = (s: TailscaleConfig | null) => [...(s?.tags ?? [])].sort().join(",");

/**
 * `backendState` is BackendState from `tailscale status --json` ("" when
 * tailscaled did not answer); `applied` is what the previous generation set.
 */
export function tailscaleAction(backendState: string, applied: TailscaleConfig | null, want: TailscaleConfig | null): TailscaleAction {
  if (!want) return { op: "none", argv: [], why: "tailscale is not managed by this generation" };
  const authArgs = ["--auth-key", `file:${want.authKeyFile}`];
  const up = tailscaleUpFlags(want);
  if (backendState === "" || LOGGED_OUT.has(backendState))
    return { op: "up", argv: ["up", ...authArgs, ...up, "--timeout", UP_TIMEOUT], why: `not logged in (BackendState ${backendState || "unknown"})` };
  if (applied && applied.loginServer !== want.loginServer)
    return { op: "up", argv: ["up", "--force-reauth", ...authArgs, ...up, "--timeout", UP_TIMEOUT], why: "login server changed" };
  if (!applied) return { op: "up", argv: ["up", ...up, "--timeout", UP_TIMEOUT], why: "logged in but not yet configured by meshfleet" };
  // `tailscale set` has no --advertise-tags: only a full `up` can change them.
  // Headscale 0.29 takes a node's tags from its pre-auth key (it refuses tags a
  // client requests with --advertise-tags), so new tags mean logging in again
  // with the new key.
  if (sortedTags(applied) !== sortedTags(want))
    return { op: "up", argv: ["up", "--force-reauth", ...authArgs, ...up, "--timeout", UP_TIMEOUT], why: "tags changed (re-login with the new key)" };
  const set = tailscaleSetFlags(want);
  if (canonicalJson(tailscaleSetFlags(applied)) !== canonicalJson(set) || canonicalJson(tailscaleUpFlags(applied)) !== canonicalJson(up))
    return { op: "set", argv: ["set", ...set], why: "settings changed" };
  return { op: "none", argv: [], why: "unchanged" };
}

/** Drift between declared settings and `tailscale debug prefs` (ipn.Prefs JSON). */
export function prefsDrift(want: TailscaleConfig, prefs: Record<string, unknown>): string[] {
  const out: string[] = [];
  const cmp = (what: string, expected: unknown, found: unknown) => {
    if (canonicalJson(expected) !== canonicalJson(found)) out.push(`${what}: expected ${canonicalJson(expected)}, found ${canonicalJson(found)}`);
  };
  const strip = (u: unknown) => String(u ?? "").replace(/\/+$/, "");
  cmp("login server", strip(want.loginServer), strip(prefs.ControlURL));
  cmp("hostname", want.hostname, prefs.Hostname ?? "");
  cmp("advertised routes", advertisedRoutes(want), [...((prefs.AdvertiseRoutes as string[] | null) ?? [])].sort());
  cmp("accept routes", want.acceptRoutes, !!prefs.RouteAll);
  cmp("accept dns", want.acceptDns, !!prefs.CorpDNS);
  cmp("ssh", want.ssh, !!prefs.RunSSH);
  cmp("snat subnet routes", want.snatSubnetRoutes, !prefs.NoSNAT);
  return out;
}

/**
 * Tags are not prefs under headscale 0.29: the node gets its pre-auth key's
 * tags, so they are compared with what the coordinator says the node has
 * (`tailscale status --json`, Self.Tags).
 */
export function tagsDrift(want: TailscaleConfig, status: { Self?: { Tags?: string[] | null } | null }): string[] {
  const found = [...(status.Self?.Tags ?? [])].sort();
  const expected = [...want.tags].sort();
  return canonicalJson(found) === canonicalJson(expected) ? [] : [`tags: expected ${canonicalJson(expected)}, found ${canonicalJson(found)}`];
}

export interface PeerCounts {
  peers: number;
  direct: number;
  relay: number;
}

/** By the CLI's own rule: an Active peer with CurAddr is direct; CurAddr empty with Relay and no PeerRelay is relayed via DERP. */
export function countPeers(status: { Peer?: Record<string, { Active?: boolean; CurAddr?: string; Relay?: string; PeerRelay?: string }> | null }): PeerCounts {
  const peers = Object.values(status.Peer ?? {});
  let direct = 0;
  let relay = 0;
  for (const p of peers) {
    if (!p.Active) continue;
    if (p.CurAddr) direct++;
    else if (p.Relay && !p.PeerRelay) relay++;
  }
  return { peers: peers.length, direct, relay };
}
