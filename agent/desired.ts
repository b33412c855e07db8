/**
 * What a bundle asks of a host: the file list is the contract's
 * (contract/desired.ts, shared with `meshfleet render`); here, which files
 * each unit depends on. Pure.
 */
import type { BundleUnit } from "../contract/bundle.ts";

export { SYSCTL_FILE, UNIT_DIR, unitPath } from "../contract/constants.ts";
export { desiredFiles, renderSysctl, type DesiredFile } from "../contract/desired.ts";

/**
 * The bundle files a unit must be restarted for: those named in its
 * `restartTriggers`, plus any bundle file whose path, or whose directory
 * (two levels deep or more), the unit text mentions.
 */
export function unitDependencies(unit: Pick<BundleUnit, "content"> & { restartTriggers?: string[] }, filePaths: string[]): string[] {
  const tokens = new Set(
    unit.content
      .split(/[\s="'`,;]+/)
      .filter((t) => t.startsWith("/"))
      .map((t) => t.replace(/\/+$/, "")),
  );
  const deps = new Set(unit.restartTriggers ?? []);
  for (const f of filePaths) {
    if (tokens.has(f)) deps.add(f);
    for (const t of tokens) if (t.split("/").length >= 3 && f.startsWith(t + "/")) deps.add(f);
  }
  return [...deps].sort();
}

export const normalizeSysctl = (v: string) => v.trim().split(/\s+/).join(" ");

/** Where systemd reads drop-ins for a unit an administrator (or anyone root-equivalent) adds. */
export const DROPIN_DIRS = ["/etc/systemd/system", "/run/systemd/system"];

/**
 * Drop-ins for the bundle's units that the bundle does not carry: each can
 * change what the unit runs and as whom (`User=root`, `ExecStartPre=`).
 */
export function foreignDropins(list: (hostDir: string) => string[], units: readonly { name: string }[], owned: ReadonlySet<string>): { unit: string; path: string }[] {
  const out: { unit: string; path: string }[] = [];
  for (const u of units)
    for (const base of DROPIN_DIRS) {
      const dir = `${base}/${u.name}.d`;
      for (const n of list(dir)) if (n.endsWith(".conf") && !owned.has(`${dir}/${n}`)) out.push({ unit: u.name, path: `${dir}/${n}` });
    }
  return out;
}
