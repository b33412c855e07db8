/**
 * headscale.backup (issue 15 item 1, the part that runs on the coordinator):
 * a timer and a oneshot service that take a consistent snapshot of
 * headscale's database while it runs, with the config and the policy next
 * to it, and keep the newest N.
 *
 *  - SQLite: `sqlite3 DB ".backup FILE"` is SQLite's online backup API: a
 *    consistent copy while headscale writes (WAL included, the copy is one
 *    file), checked with `PRAGMA integrity_check` before it counts.
 *  - Postgres: `pg_dump --format=custom` (restore with pg_restore), with the
 *    same libpq password file headscale reads (PGPASSFILE).
 * Each snapshot is a folder `<dir>/<UTC time>/` made as `.partial-…` and
 * renamed when complete, so a half-written one is never the newest; folders
 * 0700, files 0600, owned by root. The Noise and DERP keys meshfleet writes
 * are not copied: they derive from the stack's keySeed. Keys kept from an
 * existing headscale (headscale.adopt) derive from nothing, so each snapshot
 * holds a copy of them (noise_private.key, derp_server_private.key): without
 * them a restored database serves clients that no longer trust the server.
 *
 * Restore (SQLite): stop headscale, copy `db.sqlite` over the database (owner
 * headscale, 0600), remove the `-wal`/`-shm` files beside it, start headscale.
 */
import { z } from "zod";
import { absPath } from "../core/freetext.ts";
import type { Assertion } from "../core/module.ts";
import type { FileSpec, UnitSpec } from "../core/types.ts";

export const BACKUP_SCRIPT = "/usr/local/lib/meshfleet/headscale-backup";

export const backupOptions = z
  .object({
    enable: z.boolean().default(false).describe("Snapshot headscale's database on a timer (SQLite's online backup, or pg_dump), with the config and the policy next to each snapshot."),
    onCalendar: z
      .string()
      .regex(/^[A-Za-z0-9*:/.,~ -]+$/, { message: "a systemd calendar expression such as daily, hourly or *-*-* 03:00:00" })
      .default("daily")
      .describe("When the timer runs (systemd OnCalendar); missed runs happen at the next boot."),
    keep: z.number().int().min(1).max(1000).default(14).describe("How many snapshots to keep (the newest)."),
    dir: absPath("headscale.backup.dir", "/var/backups/headscale").default("/var/backups/headscale").describe("Where snapshots go on the coordinator (0700, root)."),
  })
  .strict()
  .default({ enable: false, onCalendar: "daily", keep: 14, dir: "/var/backups/headscale" })
  .describe("Scheduled snapshots of the coordinator's state.");

export type BackupOptions = z.output<typeof backupOptions>;

/** What the script needs to know of headscale's setup. */
export interface BackupInput {
  backup: BackupOptions;
  database:
    | { type: "sqlite"; sqlitePath: string }
    | { type: "postgres"; host: string; port: number; name: string; user: string; sslmode: string; pgpass: string };
  config: string;
  policy: string;
  /** Adopted key files (headscale.adopt), copied as `name` into each snapshot. */
  keys?: { name: string; path: string }[];
}

/** One shell word, single-quoted. */
const sq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function backupScript(i: BackupInput): string {
  const db = i.database;
  const snapshot =
    db.type === "sqlite"
      ? [
          `sqlite3 -bail ${sq(db.sqlitePath)} ".backup '$tmp/db.sqlite'"`,
          `test "$(sqlite3 "$tmp/db.sqlite" 'PRAGMA integrity_check')" = ok || { echo "headscale-backup: the copy of ${db.sqlitePath} fails integrity_check" >&2; exit 1; }`,
        ]
      : [
          `PGPASSFILE=${sq(db.pgpass)} PGSSLMODE=${sq(db.sslmode)} pg_dump --no-password --host=${sq(db.host)} --port=${db.port} --username=${sq(db.user)} --dbname=${sq(db.name)} --format=custom --file="$tmp/db.pgdump"`,
        ];
  return [
    "#!/bin/sh",
    "# Rendered by meshfleet (modules/headscale-backup.ts): one snapshot of headscale's state, the newest",
    `# ${i.backup.keep} kept. Edits are overwritten.`,
    "set -eu",
    "umask 077",
    `dir=${sq(i.backup.dir)}`,
    `keep=${i.backup.keep}`,
    // Nanoseconds: two runs in one second must not share a folder; the names sort by time.
    `stamp=$(date -u +%Y%m%dT%H%M%S.%NZ)`,
    `tmp="$dir/.partial-$stamp"`,
    `mkdir -p "$dir"`,
    `chmod 0700 "$dir"`,
    `rm -rf "$dir"/.partial-*`,
    `mkdir "$tmp"`,
    ...snapshot,
    `cp ${sq(i.config)} "$tmp/config.yaml"`,
    `cp ${sq(i.policy)} "$tmp/policy.hujson"`,
    ...(i.keys ?? []).map((k) => `cp ${sq(k.path)} "$tmp/${k.name}"`),
    `chown -R 0:0 "$tmp"`,
    `chmod 0600 "$tmp"/*`,
    `mv "$tmp" "$dir/$stamp"`,
    `ls -1d "$dir"/2*Z | sort -r | tail -n +$((keep + 1)) | while read -r old; do rm -rf -- "$old"; done`,
    `echo "headscale-backup: $dir/$stamp"`,
    "",
  ].join("\n");
}

export function backupUnits(i: BackupInput): UnitSpec[] {
  const service = [
    "[Unit]",
    "Description=Snapshot of headscale's database, config and policy (meshfleet)",
    "After=headscale.service",
    "",
    "[Service]",
    "Type=oneshot",
    `ExecStart=${BACKUP_SCRIPT}`,
    "Nice=10",
    "IOSchedulingClass=idle",
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "ProtectHome=yes",
    "UMask=0077",
    "",
  ].join("\n");
  const timer = [
    "[Unit]",
    "Description=Scheduled snapshots of headscale's state (meshfleet)",
    "",
    "[Timer]",
    `OnCalendar=${i.backup.onCalendar}`,
    "Persistent=true",
    "RandomizedDelaySec=10m",
    "",
    "[Install]",
    "WantedBy=timers.target",
    "",
  ].join("\n");
  // The service runs only from its timer (not at each deploy).
  return [
    { name: "headscale-backup.service", content: service, enable: false, restartTriggers: [] },
    { name: "headscale-backup.timer", content: timer, enable: true },
  ];
}

export function backupFiles(i: BackupInput): FileSpec[] {
  return [{ path: BACKUP_SCRIPT, content: backupScript(i), mode: "0700", owner: "root", group: "root" }];
}

export function backupPackages(i: BackupInput): string[] {
  return [i.database.type === "sqlite" ? "sqlite3" : "postgresql-client"];
}

export function backupAssertions(b: BackupOptions, docker: boolean): Assertion[] {
  return [
    {
      assertion: !(b.enable && docker),
      path: "headscale.backup.enable",
      expected: "the systemd runtime (the docker runtime keeps the database in the headscale-data volume, which the timer does not reach yet)",
      found: "headscale.backup.enable: true with runtime: docker",
      fix: "set runtime: systemd on the coordinator, or headscale.backup.enable: false and back up the headscale-data volume yourself",
    },
  ];
}

/** The script's input from headscale's options and the paths it reads. */
export function backupInputOf(
  o: { backup: BackupOptions; database: { type: "sqlite" | "postgres"; sqlitePath: string; postgres: { host: string; port: number; name: string; user: string; ssl: boolean | string } } },
  paths: { config: string; policy: string; pgpass: string },
  adopted: { noise?: string; derp?: string } = {},
): BackupInput {
  const pg = o.database.postgres;
  const keys = [
    ...(adopted.noise ? [{ name: "noise_private.key", path: adopted.noise }] : []),
    ...(adopted.derp ? [{ name: "derp_server_private.key", path: adopted.derp }] : []),
  ];
  return {
    ...(keys.length ? { keys } : {}),
    backup: o.backup,
    database: o.database.type === "sqlite"
      ? { type: "sqlite", sqlitePath: o.database.sqlitePath }
      : { type: "postgres", host: pg.host, port: pg.port, name: pg.name, user: pg.user, sslmode: pg.ssl === true ? "require" : pg.ssl === false ? "disable" : pg.ssl, pgpass: paths.pgpass },
    config: paths.config,
    policy: paths.policy,
  };
}
