/**
 * headscale's database when it is PostgreSQL (issue 15 item 3), the parts
 * that run on the coordinator:
 *
 *  - `headscale.database.postgres.local`: Debian's `postgresql` on the
 *    coordinator itself. The deploy's prerequisites install the package; a
 *    oneshot unit ordered before headscale (headscale-postgres-setup.service)
 *    creates the role and the database if they are missing and sets the
 *    role's password from the stack secret, every time it runs. The password
 *    is read by the root script from the 0600 libpq password file headscale
 *    reads too, and reaches psql (run as the postgres user, peer
 *    authentication) on its standard input: never on a command line, never
 *    in a unit's environment.
 *  - The database guard (ExecStartPre of headscale.service, both types):
 *    headscale starts on an empty database when it finds none, so a
 *    coordinator whose database.type changed would come up with no nodes and
 *    every client logged out. meshfleet does not migrate SQLite to Postgres
 *    (docs/backup.md says why and gives the steps); the guard refuses to
 *    start headscale on Postgres while a SQLite database is at sqlitePath,
 *    and on SQLite with no database while a marker says Postgres held its
 *    state, unless headscale.database.startEmpty is true.
 */
import type { Assertion } from "../core/module.ts";
import type { FileSpec, UnitSpec } from "../core/types.ts";

export const PG_SETUP_SCRIPT = "/usr/local/lib/meshfleet/headscale-postgres-setup";
export const PG_SETUP_UNIT = "headscale-postgres-setup.service";
export const DB_GUARD_SCRIPT = "/usr/local/lib/meshfleet/headscale-database-guard";
/** Written by the guard once headscale starts on Postgres: the SQLite side then knows an empty start would lose state. */
export const POSTGRES_MARKER = "/var/lib/headscale/.meshfleet-database-postgres";
/** Debian's main cluster: its port, and the hosts that reach it on this machine. */
export const LOCAL_PG_PORT = 5432;
export const LOCAL_PG_HOSTS = ["localhost", "127.0.0.1", "::1", "/var/run/postgresql", "/run/postgresql"] as const;
/** A Postgres name meshfleet writes into SQL without quoting surprises (also what headscale's config takes as is). */
export const PG_IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/** One shell word, single-quoted. */
const sq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
/** A SQL identifier and a SQL string literal (the names are checked against PG_IDENT; quoted anyway). */
const ident = (s: string) => `"${s.replaceAll('"', '""')}"`;
const lit = (s: string) => `'${s.replaceAll("'", "''")}'`;

export interface PgSetupInput {
  name: string;
  user: string;
  /** The libpq password file (`*:*:*:*:<password>`, with `\:` and `\\` escaped). */
  pgpass: string;
  /** psql as a superuser, reading SQL on stdin (default: as the postgres user over Debian's socket). */
  psql?: string;
}

export const DEFAULT_SUPERUSER_PSQL = "runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres";

/**
 * The setup script (pure). Idempotent: the role and the database are created
 * only when missing; the password and the owner are set every time (a changed
 * stack secret takes effect at the next deploy, which restarts the unit).
 */
export function pgSetupScript(i: PgSetupInput): string {
  const psql = i.psql ?? DEFAULT_SUPERUSER_PSQL;
  // The fifth field of the password file: the first four fields (with their \-escapes) removed, the escapes undone,
  // and ' doubled for a SQL literal. sed reads the file itself, so the password is on no command line.
  const field = "\\([^:\\\\]\\|\\\\.\\)*:";
  const sed = `1{s/^${field}${field}${field}${field}//;s/\\\\\\(.\\)/\\1/g;s/'/''/g;p;}`;
  return [
    "#!/bin/sh",
    "# Rendered by meshfleet (modules/headscale-postgres.ts): headscale's role and database in the local",
    "# PostgreSQL, created when missing, the role's password set from the stack secret. Edits are overwritten.",
    "set -eu",
    "umask 077",
    `pgpass=${sq(i.pgpass)}`,
    `[ -s "$pgpass" ] || { echo "headscale-postgres-setup: $pgpass is missing or empty: the deploy writes it from the stack secret meshfleet:headscalePostgresPassword (pulumi config set --secret meshfleet:headscalePostgresPassword <password>)" >&2; exit 1; }`,
    `pw=$(sed -n ${sq(sed)} "$pgpass")`,
    `[ -n "$pw" ] || { echo "headscale-postgres-setup: $pgpass holds no password (expected one line *:*:*:*:<password>)" >&2; exit 1; }`,
    // postgresql.service on Debian is done once its clusters were started; the socket may still lag behind.
    `i=0; until echo 'SELECT 1' | ${psql} >/dev/null 2>&1; do i=$((i+1)); if [ "$i" -ge 60 ]; then echo "headscale-postgres-setup: PostgreSQL does not answer (${psql.replaceAll('"', "'")}) after 60 s: systemctl status postgresql; journalctl -u postgresql@*" >&2; exit 1; fi; sleep 1; done`,
    // printf is the shell's own: the password goes to psql's standard input only.
    "{",
    `  printf '%s\\n' "SET log_statement = 'none';" "SET log_min_error_statement = 'panic';"`,
    `  printf '%s\\n' ${sq(`SELECT 'CREATE ROLE ${ident(i.user)} LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${lit(i.user)})\\gexec`)}`,
    `  printf 'ALTER ROLE %s WITH LOGIN PASSWORD '"'"'%s'"'"';\\n' ${sq(ident(i.user))} "$pw"`,
    `  printf '%s\\n' ${sq(`SELECT 'CREATE DATABASE ${ident(i.name)} OWNER ${ident(i.user)}' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = ${lit(i.name)})\\gexec`)}`,
    `  printf '%s\\n' ${sq(`ALTER DATABASE ${ident(i.name)} OWNER TO ${ident(i.user)};`)}`,
    `} | ${psql}`,
    `echo "headscale-postgres-setup: role ${i.user} and database ${i.name} ready"`,
    "",
  ].join("\n");
}

export function pgSetupUnit(pgpass: string): UnitSpec {
  const content = [
    "[Unit]",
    "Description=headscale's PostgreSQL role and database (meshfleet)",
    "Requires=postgresql.service",
    "After=postgresql.service",
    "Before=headscale.service",
    "",
    "[Service]",
    "Type=oneshot",
    "RemainAfterExit=yes",
    `ExecStart=${PG_SETUP_SCRIPT}`,
    "PrivateTmp=yes",
    "NoNewPrivileges=yes",
    "UMask=0077",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  // A new password (the secret file) runs it again; headscale, which Requires= it, restarts with it.
  return { name: PG_SETUP_UNIT, content, enable: true, restartTriggers: [pgpass] };
}

export function pgSetupFiles(i: PgSetupInput): FileSpec[] {
  return [{ path: PG_SETUP_SCRIPT, content: pgSetupScript(i), mode: "0700", owner: "root", group: "root" }];
}

/** The lines headscale.service gains with a local Postgres. */
export const PG_LOCAL_UNIT_LINES = [`Requires=${PG_SETUP_UNIT}`, `After=${PG_SETUP_UNIT}`];

export interface GuardInput {
  type: "sqlite" | "postgres";
  sqlitePath: string;
  startEmpty: boolean;
  marker?: string;
}

/** The database guard (pure): exit 1 with the steps when headscale would start empty after a change of database type. */
export function databaseGuardScript(i: GuardInput): string {
  const marker = i.marker ?? POSTGRES_MARKER;
  const head = [
    "#!/bin/sh",
    "# Rendered by meshfleet (modules/headscale-postgres.ts): headscale must not start on an empty database",
    "# after headscale.database.type changed. Edits are overwritten.",
    "set -eu",
    `db=${sq(i.sqlitePath)}`,
    `marker=${sq(marker)}`,
  ];
  const body =
    i.type === "postgres"
      ? [
          i.startEmpty
            ? `[ ! -e "$db" ] || echo "headscale-database-guard: headscale.database.startEmpty is true: starting on Postgres; the SQLite database $db is left as it is" >&2`
            : `if [ -e "$db" ]; then echo "headscale-database-guard: headscale.database.type is postgres, but the SQLite database $db is on this host: headscale would start on an empty Postgres database and every node would have to log in again. meshfleet does not migrate it (docs/backup.md, 'SQLite to Postgres'). Fix: set headscale.database.type: sqlite again; or move its data over by hand as docs/backup.md shows, then mv $db $db.before-postgres; or set headscale.database.startEmpty: true to start empty on purpose" >&2; exit 1; fi`,
          `touch "$marker"`,
        ]
      : [
          i.startEmpty
            ? `rm -f "$marker"`
            : `if [ -e "$marker" ] && [ ! -e "$db" ]; then echo "headscale-database-guard: headscale.database.type is sqlite, but headscale kept its state in Postgres on this host ($marker) and there is no SQLite database at $db: headscale would start empty and every node would have to log in again. Fix: set headscale.database.type: postgres again; or put a SQLite database there first (meshfleet restore <snapshot with db.sqlite>); or set headscale.database.startEmpty: true to start empty on purpose" >&2; exit 1; fi`,
          ...(i.startEmpty ? [] : [`if [ -e "$db" ]; then rm -f "$marker"; fi`]),
        ];
  return [...head, ...body, ""].join("\n");
}

export function databaseGuardFiles(i: GuardInput): FileSpec[] {
  return [{ path: DB_GUARD_SCRIPT, content: databaseGuardScript(i), mode: "0700", owner: "root", group: "root" }];
}

/** `+`: the guard runs as root outside headscale's sandbox (it writes the marker and reads sqlitePath wherever it is). */
export const GUARD_UNIT_LINE = `ExecStartPre=+${DB_GUARD_SCRIPT}`;

export interface PgCheckInput {
  type: "sqlite" | "postgres";
  postgres: { local: boolean; host: string; port: number; name: string; user: string };
  docker: boolean;
}

/** headscale.database.postgres.local's combinations `check` refuses, one assertion each. */
export function postgresAssertions(d: PgCheckInput): Assertion[] {
  const pg = d.postgres;
  if (!pg.local) return [];
  const a: Assertion[] = [];
  a.push({
    assertion: d.type === "postgres",
    path: "headscale.database.postgres.local",
    expected: "headscale.database.type: postgres (the local PostgreSQL is for headscale's database)",
    found: `headscale.database.type: ${d.type} with headscale.database.postgres.local: true`,
    fix: "set headscale.database.type: postgres, or remove headscale.database.postgres.local",
  });
  if (d.type !== "postgres") return a;
  a.push({
    assertion: !d.docker,
    path: "headscale.database.postgres.local",
    expected: "the systemd runtime (on the docker runtime headscale's container does not reach the host's PostgreSQL on its loopback)",
    found: "headscale.database.postgres.local: true with runtime: docker",
    fix: "set runtime: systemd on the coordinator, or headscale.database.postgres.local: false and give headscale.database.postgres.host a PostgreSQL the container reaches",
  });
  a.push({
    assertion: (LOCAL_PG_HOSTS as readonly string[]).includes(pg.host),
    path: "headscale.database.postgres.host",
    expected: `this host's PostgreSQL (${LOCAL_PG_HOSTS.join(", ")}) when headscale.database.postgres.local is true`,
    found: JSON.stringify(pg.host.slice(0, 80)),
    fix: "set headscale.database.postgres.host: localhost, or headscale.database.postgres.local: false to use that server",
  });
  a.push({
    assertion: pg.port === LOCAL_PG_PORT,
    path: "headscale.database.postgres.port",
    expected: `${LOCAL_PG_PORT}, the port of Debian's main cluster, when headscale.database.postgres.local is true`,
    found: String(pg.port),
    fix: `set headscale.database.postgres.port: ${LOCAL_PG_PORT} (or remove it)`,
  });
  for (const k of ["name", "user"] as const)
    a.push({
      assertion: PG_IDENT.test(pg[k]),
      path: `headscale.database.postgres.${k}`,
      expected: "a lowercase PostgreSQL name (a-z, 0-9, _; not starting with a digit; at most 63 characters) when meshfleet creates it",
      found: JSON.stringify(pg[k].slice(0, 80)),
      fix: `set headscale.database.postgres.${k}: ${pg[k].toLowerCase().replace(/[^a-z0-9_]/g, "_").replace(/^(?=[0-9])/, "_").slice(0, 63) || "headscale"}`,
    });
  return a;
}
