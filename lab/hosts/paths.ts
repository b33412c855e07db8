/**
 * Where the lab keeps its things: all outside the repo, under one cache folder
 * (env MESHFLEET_LAB_CACHE, default ~/.cache/meshfleet/lab).
 */
import { homedir } from "node:os";
import { join } from "node:path";

export function labCacheDir(): string {
  return process.env.MESHFLEET_LAB_CACHE || join(homedir(), ".cache", "meshfleet", "lab");
}

/** The Go-built tools (headscale, tailscaled, derper), bound read-only into every host. */
export function toolsDir(): string {
  return process.env.MESHFLEET_TOOLS_DIR || join(homedir(), ".cache", "meshfleet", "tools");
}

/** Where the tools appear inside a host. */
export const HOST_TOOLS_DIR = "/opt/meshfleet/tools";

export function rootfsDir(): string {
  return join(labCacheDir(), "rootfs-bookworm");
}

/** Everything one running lab instance made: state file, keys, overlays, logs. */
export function runDir(instance: number): string {
  return join(labCacheDir(), "run", `lab${instance}`);
}

export function stateFile(instance: number): string {
  return join(runDir(instance), "state.json");
}

export function hostDir(instance: number, host: string): string {
  return join(runDir(instance), "hosts", host);
}

/** The lab's SSH private key (ed25519, made per lab). */
export function sshKeyPath(instance: number): string {
  return join(runDir(instance), "ssh", "id_ed25519");
}

/** known_hosts holding every host's key; connections check against it. */
export function knownHostsPath(instance: number): string {
  return join(runDir(instance), "ssh", "known_hosts");
}
