/**
 * The lab's record of everything it made. Each thing is recorded the moment it
 * exists, so a crash half-way leaves a record `down` can finish from; `down`
 * removes exactly what is recorded here, never anything found by a broad name.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { stateFile } from "./paths.ts";

export type Made =
  /** A network namespace (/run/netns/<name>); removing it removes the veths inside. */
  | { kind: "netns"; name: string }
  /** A link in the root namespace (the mgmt bridge and veths). */
  | { kind: "link"; name: string }
  /** An nftables table in the root namespace. */
  | { kind: "nft"; family: "inet" | "ip"; name: string }
  /** An overlay mount (the host's root). */
  | { kind: "mount"; host: string; path: string }
  /** A systemd-nspawn process; `startTime` (field 22 of /proc/<pid>/stat) guards against pid reuse. */
  | { kind: "process"; host: string; pid: number; startTime: string }
  /**
   * The container's init (nspawn's child, PID 1 of the host's pid namespace).
   * Recorded apart because it outlives a killed nspawn; killing it ends every
   * process of the host.
   */
  | { kind: "container"; host: string; pid: number; startTime: string };

export interface LabState {
  format: 1;
  instance: number;
  /** Hosts asked for (with the routers their paths need). */
  hosts: string[];
  /** The network (namespaces, bridges, links, NATs, mgmt) was fully made. */
  networkReady: boolean;
  made: Made[];
  /** Boot time per host, ms from nspawn start to sshd answering. */
  bootMs: Record<string, number>;
  /** Generated clients in this lab's topology (`labTopology`'s `clients`; bench/deploy's scale run). Absent: none. */
  clients?: number;
}

export function emptyState(instance: number): LabState {
  return { format: 1, instance, hosts: [], networkReady: false, made: [], bootMs: {} };
}

export function readState(instance: number): LabState | undefined {
  try {
    const s = JSON.parse(readFileSync(stateFile(instance), "utf8")) as LabState;
    return s.format === 1 ? s : undefined;
  } catch {
    return undefined;
  }
}

/** Write atomically (temp file + rename) so a crash never leaves half a record. */
export function writeState(state: LabState): void {
  const path = stateFile(state.instance);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(`${path}.tmp`, JSON.stringify(state, null, 2) + "\n");
  renameSync(`${path}.tmp`, path);
}

export function sameMade(a: Made, b: Made): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Record `m` (once) and persist. */
export function record(state: LabState, m: Made): void {
  if (!state.made.some((x) => sameMade(x, m))) state.made.push(m);
  writeState(state);
}

export function forget(state: LabState, m: Made): void {
  state.made = state.made.filter((x) => !sameMade(x, m));
  writeState(state);
}
