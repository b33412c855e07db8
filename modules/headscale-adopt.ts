/**
 * headscale.adopt (issue 14 item 6): a coordinator taken over from an
 * existing headscale keeps that headscale's state instead of starting empty.
 *
 *  - The Noise private key stays where it is and config.yaml names it: the
 *    deploy writes no `noise-key` file (otherwise the stack's keySeed-derived
 *    key would replace it, and every client would see a new control key).
 *  - The embedded DERP relay's key likewise, when the old server had one.
 *  - The database is the one `headscale.database` names (import sets
 *    sqlitePath or the postgres settings to the existing ones).
 *
 * These files are never read or copied by meshfleet: not by import, not by
 * the deploy, not into git. `meshfleet import` writes this section; check
 * refuses a fleet in which the deploy would write over one of them, or in
 * which headscale would look for them somewhere else.
 */
import { z } from "zod";
import { absPath } from "../core/freetext.ts";
import type { Assertion } from "../core/module.ts";

export const adoptOptions = z
  .object({
    enable: z
      .boolean()
      .default(false)
      .describe("Keep an existing headscale's Noise key, DERP key and database where they are (written by `meshfleet import`): the deploy never writes them, and the keySeed-derived keys are not used for them."),
    noisePrivateKeyPath: absPath("headscale.adopt.noisePrivateKeyPath", "/var/lib/headscale/noise_private.key")
      .default("/var/lib/headscale/noise_private.key")
      .describe("The existing Noise private key file (headscale's noise.private_key_path); left as it is."),
    derpPrivateKeyPath: absPath("headscale.adopt.derpPrivateKeyPath", "/var/lib/headscale/derp_server_private.key", true)
      .default("")
      .describe("The existing embedded-DERP private key file (derp.server.private_key_path), left as it is; \"\": the old server had no embedded relay, so meshfleet's derived key is written if derp.mode is embedded."),
  })
  .strict()
  .default({ enable: false, noisePrivateKeyPath: "/var/lib/headscale/noise_private.key", derpPrivateKeyPath: "" })
  .describe("Take over an existing headscale's keys and database instead of starting empty.");

export type AdoptOptions = z.output<typeof adoptOptions>;

/** The key paths config.yaml names: the adopted ones, else meshfleet's own. */
export function keyPathsOf(a: AdoptOptions, own: { noise: string; derp: string }): { noise: string; derp: string } {
  if (!a.enable) return own;
  return { noise: a.noisePrivateKeyPath, derp: a.derpPrivateKeyPath !== "" ? a.derpPrivateKeyPath : own.derp };
}

/** Whether the deploy writes the `noise-key` / `derp-key` secret files. */
export function writesKeys(a: AdoptOptions): { noise: boolean; derp: boolean } {
  return { noise: !a.enable, derp: !a.enable || a.derpPrivateKeyPath === "" };
}

export interface AdoptCheckInput {
  adopt: AdoptOptions;
  docker: boolean;
  /** Every file this module writes on the host (path), secrets included. */
  written: string[];
  /** headscale.database */
  database: { type: "sqlite" | "postgres"; sqlitePath: string };
  /** headscale.extraSettings */
  extraSettings: Record<string, unknown>;
  /** The folders the unit may write (ReadWritePaths). */
  writable: string[];
}

const under = (p: string, dir: string) => p === dir || p.startsWith(dir.endsWith("/") ? dir : `${dir}/`);

function setIn(o: Record<string, unknown>, dotted: string): boolean {
  let cur: unknown = o;
  for (const k of dotted.split(".")) {
    if (typeof cur !== "object" || cur === null || Array.isArray(cur) || !(k in cur)) return false;
    cur = (cur as Record<string, unknown>)[k];
  }
  return true;
}

/** Why an adopting coordinator would lose, overwrite or not find the existing state; nothing when adopt is off. */
export function adoptAssertions(i: AdoptCheckInput): Assertion[] {
  const a = i.adopt;
  if (!a.enable) return [];
  const out: Assertion[] = [];
  out.push({
    assertion: !i.docker,
    path: "headscale.adopt.enable",
    expected: "the systemd runtime (headscale reads the existing files where they are)",
    found: "runtime: docker, whose headscale keeps /var/lib/headscale in the headscale-data volume: the existing key and database would not be there and headscale would start empty",
    fix: "set runtime: systemd in this host file (or copy the state into the volume by hand and set headscale.adopt.enable: false)",
  });
  const keys: [string, string][] = [["headscale.adopt.noisePrivateKeyPath", a.noisePrivateKeyPath]];
  if (a.derpPrivateKeyPath !== "") keys.push(["headscale.adopt.derpPrivateKeyPath", a.derpPrivateKeyPath]);
  if (i.database.type === "sqlite") keys.push(["headscale.database.sqlitePath", i.database.sqlitePath]);
  for (const [path, p] of keys) {
    const hit = i.written.filter((w) => w === p || (path.endsWith("sqlitePath") && (w === `${p}-wal` || w === `${p}-shm`)));
    out.push({
      assertion: hit.length === 0,
      path,
      expected: "an existing file the deploy leaves alone",
      found: `${p}, which the deploy writes over (${hit.join(", ")})`,
      fix: `move the existing file (with headscale stopped) and set ${path} to where it now is`,
    });
  }
  out.push({
    assertion: a.derpPrivateKeyPath === "" || a.derpPrivateKeyPath !== a.noisePrivateKeyPath,
    path: "headscale.adopt.derpPrivateKeyPath",
    expected: "a DERP key file other than the Noise key (headscale refuses the same key for both)",
    found: a.derpPrivateKeyPath,
    fix: 'set headscale.adopt.derpPrivateKeyPath: "" (meshfleet then writes a DERP key of its own)',
  });
  for (const k of ["noise.private_key_path", "derp.server.private_key_path", "database.sqlite.path", "database.type"]) {
    out.push({
      assertion: !setIn(i.extraSettings, k),
      path: `headscale.extraSettings.${k}`,
      expected: "the adopted paths set through headscale.adopt and headscale.database only",
      found: `${k} in extraSettings, which would point headscale elsewhere than the adopted state`,
      fix: `remove ${k} from headscale.extraSettings`,
    });
  }
  if (!i.docker && i.database.type === "sqlite") {
    const dir = i.database.sqlitePath.slice(0, i.database.sqlitePath.lastIndexOf("/")) || "/";
    out.push({
      assertion: i.writable.some((w) => under(dir, w)),
      path: "headscale.database.sqlitePath",
      expected: `a database inside a folder headscale's unit may write (${i.writable.join(", ")}): SQLite writes its -wal and -shm files beside it`,
      found: i.database.sqlitePath,
      fix: `stop headscale, move the database (and its -wal/-shm files) into /var/lib/headscale, chown headscale, and set headscale.database.sqlitePath to the new path`,
    });
  }
  for (const [path, p] of keys.slice(0, a.derpPrivateKeyPath !== "" ? 2 : 1)) {
    out.push({
      assertion: !under(p, "/root") && !under(p, "/home") && !under(p, "/run/user"),
      path,
      expected: "a key file headscale's unit can read (ProtectHome=yes hides /root, /home and /run/user)",
      found: p,
      fix: `move the key (with headscale stopped) to /var/lib/headscale, chown headscale, chmod 0600, and set ${path} to it`,
    });
  }
  return out;
}
