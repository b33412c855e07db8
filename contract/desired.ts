/**
 * Every file a bundle puts on its host, as plain data: the bundle's files,
 * its sysctl.d file and its unit files. Pure. The agent writes exactly these
 * and `meshfleet render` writes the same list, so a golden is what lands.
 */
import { sha256Shared, type Bundle } from "./bundle.ts";
import { SYSCTL_FILE, unitPath } from "./constants.ts";

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

/** `hashes: false` leaves the sysctl and unit files' sha256 "" (meshfleet render lists the files and never shows it). */
export function desiredFiles(b: Pick<Bundle, "files" | "sysctl" | "units">, hashes = true): DesiredFile[] {
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
    sha256: hashes ? sha256Shared(content) : "", // unit and sysctl texts: never secret, mostly the same on every host
    mode: "0644",
    owner: "root",
    group: "root",
    secret: false,
  });
  if (Object.keys(b.sysctl).length > 0) out.push(own(SYSCTL_FILE, "sysctl", renderSysctl(b.sysctl)));
  for (const u of b.units) out.push(own(unitPath(u.name), "unit", u.content));
  return out;
}
