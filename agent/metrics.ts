/**
 * The Prometheus textfile (node_exporter textfile collector), rendered purely
 * and written atomically so the collector never reads half a file.
 */
import * as path from "node:path";
import type { Host } from "./host.ts";
import { countPeers } from "./tailscale.ts";

export interface MetricValues {
  tailscaleUp: number;
  backendRunning: number;
  peers: number;
  direct: number;
  relay: number;
  generation: number;
  drift: number;
  lastSwitchSuccess: number;
  lastSwitchTimestamp: number;
}

const DEFS: [keyof MetricValues, string, string][] = [
  ["tailscaleUp", "tailscale_up", "1 when tailscaled answers `tailscale status`."],
  ["backendRunning", "tailscale_backend_running", "1 when BackendState is Running."],
  ["peers", "tailscale_peers", "Peers in the netmap."],
  ["direct", "tailscale_peers_direct", "Active peers reached directly (CurAddr set)."],
  ["relay", "tailscale_peers_relay", "Active peers relayed through DERP (no CurAddr, Relay set, no PeerRelay)."],
  ["generation", "meshfleet_generation", "The meshfleet generation that is current on this host."],
  ["drift", "meshfleet_drift", "Drift items found by the last verify (0 = clean)."],
  ["lastSwitchSuccess", "meshfleet_last_switch_success", "1 when the last switch succeeded."],
  ["lastSwitchTimestamp", "meshfleet_last_switch_timestamp_seconds", "Unix time of the last switch attempt."],
];

export function renderMetrics(v: MetricValues): string {
  return DEFS.map(([k, name, help]) => `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${v[k]}\n`).join("");
}

export function tailscaleMetrics(host: Host): Pick<MetricValues, "tailscaleUp" | "backendRunning" | "peers" | "direct" | "relay"> {
  const r = host.tailscale(["status", "--json"], 10_000);
  let status: { BackendState?: string; Peer?: Record<string, never> } | null = null;
  try {
    status = JSON.parse(r.stdout);
  } catch {
    status = null;
  }
  if (!status) return { tailscaleUp: 0, backendRunning: 0, peers: 0, direct: 0, relay: 0 };
  const c = countPeers(status);
  return { tailscaleUp: 1, backendRunning: status.BackendState === "Running" ? 1 : 0, peers: c.peers, direct: c.direct, relay: c.relay };
}

export const METRICS_FILE = "meshfleet.prom";

export function writeMetrics(host: Host, textfileDir: string, v: MetricValues): string {
  const file = path.join(textfileDir, METRICS_FILE);
  // The collector's folder may belong to its own user (prometheus): the file is that user's then, as only it could write there.
  const dir = host.stat(textfileDir);
  const own = dir?.type === "dir" && dir.uid !== 0 ? { uid: dir.uid, gid: dir.gid } : {};
  host.writeFileAtomic(file, renderMetrics(v), 0o644, own.uid, own.gid);
  return file;
}
