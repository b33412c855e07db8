/**
 * Host key pins: a host's own `ssh.hostKey`, else its entries in the stack's
 * known_hosts file, read with `ssh-keygen -F` so hashed entries match too.
 * No Pulumi here: the deploy's components and the CLI's live reads (status,
 * doctor, rollback) both use it.
 */
import { spawnSync } from "node:child_process";
import { homedir } from "node:os";
import path from "node:path";
import { knownHostsName } from "./ssh.ts";

const pinCache = new Map<string, string[]>();

/** `type base64` keys for `name` in a known_hosts file, via `ssh-keygen -F` (hashed entries match too). */
/** A path from the fleet or the stack's config as the workstation reads it: `~/` expanded, made absolute. */
export function localPath(p: string): string {
  return path.resolve(p === "~" || p.startsWith("~/") ? path.join(homedir(), p.slice(1)) : p);
}

export function knownHostsKeys(file: string, address: string, port: number): string[] {
  const names = port === 22 ? [address, `[${address}]:22`] : [knownHostsName(address, port)];
  const out: string[] = [];
  for (const name of names) {
    const ck = `${file}\0${name}`;
    let keys = pinCache.get(ck);
    if (!keys) {
      const r = spawnSync("ssh-keygen", ["-F", name, "-f", file], { encoding: "utf8", timeout: 10_000 });
      keys = (r.status === 0 ? r.stdout : "")
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith("#") && !l.startsWith("@"))
        .map((l) => l.split(/\s+/).slice(1, 3).join(" "))
        .filter((k) => / /.test(k));
      pinCache.set(ck, keys);
    }
    for (const k of keys) if (!out.includes(k)) out.push(k);
  }
  return out;
}

/** The pins for one target: the fleet's own key, else the known_hosts file's entries. */
export function pinsFor(fleetKey: string | undefined, address: string, port: number, knownHostsPath?: string): string[] {
  if (fleetKey?.trim()) return [fleetKey.trim().split(/\s+/).slice(0, 2).join(" ")];
  return knownHostsPath ? knownHostsKeys(knownHostsPath, address, port) : [];
}
