/**
 * What a bundle asks of a host, as plain data: every file the agent owns
 * (the bundle's files, its sysctl.d file, its unit files) and which files
 * each unit depends on. Pure.
 */
import { sha256, type Bundle } from "../core/bundle.ts";
import type { UnitSpec } from "../core/types.ts";

export const SYSCTL_FILE = "/etc/sysctl.d/90-meshfleet.conf";
export const UNIT_DIR = "/etc/systemd/system";

export interface DesiredFile {
  path: string;
  kind: "file" | "sysctl" | "unit";
  content: string;
  sha256: string;
  mode: string;
  owner: string;
  group: string;
  secret: boolean;
}

export function renderSysctl(sysctl: Record<string, string>): string {
  const keys = Object.keys(sysctl).sort();
  return ["# Written by the meshfleet agent; changes here are reverted on the next switch.", ...keys.map((k) => `${k} = ${sysctl[k]}`), ""].join("\n");
}

export const unitPath = (name: string) => `${UNIT_DIR}/${name}`;

export function desiredFiles(b: Bundle): DesiredFile[] {
  const out: DesiredFile[] = b.files.map((f) => ({
    path: f.path,
    kind: "file" as const,
    content: f.content,
    sha256: f.sha256,
    mode: f.mode,
    owner: f.owner,
    group: f.group,
    secret: f.secret,
  }));
  const own = (path: string, kind: DesiredFile["kind"], content: string): DesiredFile => ({
    path,
    kind,
    content,
    sha256: sha256(content),
    mode: "0644",
    owner: "root",
    group: "root",
    secret: false,
  });
  if (Object.keys(b.sysctl).length > 0) out.push(own(SYSCTL_FILE, "sysctl", renderSysctl(b.sysctl)));
  for (const u of b.units) out.push(own(unitPath(u.name), "unit", u.content));
  return out;
}

/**
 * The bundle files a unit must be restarted for: those named in an optional
 * `restartTriggers` list (additive to UnitSpec), plus any bundle file whose
 * path, or whose directory (two levels deep or more), the unit text mentions.
 */
export function unitDependencies(unit: UnitSpec & { restartTriggers?: string[] }, filePaths: string[]): string[] {
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
