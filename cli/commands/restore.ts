/**
 * `meshfleet restore --stack S DIR|FILE [--yes]`: put a snapshot of
 * headscale's database (from `meshfleet backup`, or a folder the coordinator's
 * headscale.backup timer wrote) back on the coordinator, with a guard:
 *
 *   check the snapshot here (SQLite header, integrity_check, its nodes) →
 *   upload it to a 0700 staging folder on the coordinator, hash compared →
 *   on the host, in one script: check it again, stop headscale, keep the
 *   current database aside (renamed with a timestamp, with its -wal/-shm:
 *   never deleted), copy the snapshot in (owner and mode of the database it
 *   replaces, 0600), start headscale, `headscale health` and `nodes list`
 *   must answer with the snapshot's nodes within the wait → restored;
 *   otherwise stop, set the restored copy aside as `.failed-restore-…`, put
 *   the kept database back, start headscale again.
 *
 * Why over SSH with a script, not a new agent operation: the database is
 * state, not configuration. The agent's generations, confirm and rollback
 * are about the files a bundle renders; a restore changes none of them, and
 * a bundle that carried a database would put a copy of every node's keys in
 * the agent's generation history. What must be atomic from the user's view
 * is "the snapshot is live and healthy, or the database that was live is
 * live again", and that is decided on the host by the script alone: it runs
 * as its own transient systemd unit (systemd-run --no-block), outside the
 * SSH session, so a connection that drops midway cannot stop it halfway
 * with headscale down; it logs to a file the CLI reads back, over a new
 * connection if it must.
 *
 * Postgres: the same steps with pg_dump and pg_restore (restorePostgresScript):
 * the live database is kept as a dump before anything changes, the snapshot
 * goes in with pg_restore --clean --single-transaction (all or nothing), and
 * the guard restores the kept dump.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline/promises";
import { MeshfleetError } from "../../core/diagnostics.ts";
import { shq } from "../../provider/quote.ts";
import { EXIT, flagHelp, parseArgs, UsageError, type Flag } from "../args.ts";
import type { Command } from "../command.ts";
import { guardedHead } from "../guarded-script.ts";
import { connectionTo, newSession, openStackFleet, sections, tryRun, type StackAccess } from "../fleet-hosts.ts";
import { bytes, coordinatorOf, localSqliteFacts, type Coordinator, type SqliteFacts } from "./backup.ts";

const flags: Flag[] = [
  { name: "stack", value: true, help: "the stack (required): its config is stacks/Pulumi.<stack>.yaml, its fleet meshfleet:hostsDir or hosts/<stack>" },
  { name: "config-file", value: true, help: "read the stack's config from this file instead of stacks/Pulumi.<stack>.yaml" },
  { name: "yes", help: "go ahead without asking (without it, restore says what it will do and asks at a terminal; elsewhere it refuses)" },
  { name: "wait", value: true, help: "seconds headscale has to answer after the restore before the guard puts the old database back (default 60)" },
  { name: "json", help: "machine-readable result on stdout" },
];

/** Where the snapshot is staged on the coordinator (root only). */
export const RESTORE_STAGE = "/var/lib/meshfleet/restore";

/** The script's outcomes, as its exit code and its last `@@mf:result@@` line. */
export const RESTORE_EXIT = { restored: 0, refused: 3, putBack: 4, putBackUnhealthy: 5 } as const;

interface ScriptCommon {
  /** The snapshot, already on the host. */
  snapshot: string;
  /** A UTC stamp, for the names of the kept files. */
  stamp: string;
  /** headscale's binary and config, for `headscale health` and `nodes list`. */
  headscale: string;
  config: string;
  /** Shell commands that stop and start headscale (systemctl on a host; a test runs its own). */
  stop: string;
  start: string;
  /** Seconds headscale has to answer after its start. */
  waitSeconds: number;
  /** The log file; everything the script says goes there (it runs detached from the SSH session). */
  log: string;
}

export interface RestoreScriptInput extends ScriptCommon {
  /** The live database (headscale's database.sqlite.path). */
  db: string;
}

export interface RestorePostgresInput extends ScriptCommon {
  /** headscale's database.postgres settings and its libpq password file. */
  postgres: { host: string; port: number; name: string; user: string; sslmode: string; pgpass: string };
  /** Where the dump of the live database is kept (never deleted). */
  kept: string;
}

/** What both scripts start with: settings, logging, the outcome, stop/start, and the check that headscale answers. */
function prelude(i: ScriptCommon, what: string): string[] {
  // The snapshot's path goes into a SQLite URI (file:…?immutable=1), where % ? # would mean something else.
  if (!/^\/[A-Za-z0-9_./+@:-]+$/.test(i.snapshot)) throw new MeshfleetError(`restore: the staged snapshot's path ${JSON.stringify(i.snapshot)} must be absolute and plain (letters, digits, _ . / + @ : -)`);
  const hs = `${shq(i.headscale)} -c ${shq(i.config)}`;
  return [
    ...guardedHead({
      about: [`meshfleet restore (cli/commands/restore.ts): put a snapshot of headscale's ${what} in`, "place with a guard; the database it replaces is kept, never deleted."],
      who: "restore",
      vars: [
        ["snap", i.snapshot],
        ["stamp", i.stamp],
      ],
      waitSeconds: i.waitSeconds,
      log: i.log,
      stop: i.stop,
      start: i.start,
    }),
    // headscale answers its health check and lists exactly $1 nodes (or any number when $1 is empty).
    // A deadline in seconds, not a count of tries: one \`headscale health\` against a server that is not up takes 5 s.
    `answers() {`,
    `  end=$(($(date +%s) + wait_s))`,
    `  while [ "$(date +%s)" -lt "$end" ]; do`,
    `    if ${hs} health >/dev/null 2>&1; then`,
    `      got=$(${hs} nodes list -o json 2>/dev/null | grep -o '"node_key":' | wc -l)`,
    `      if [ -z "$1" ] || [ "$got" -eq "$1" ]; then say "headscale answers: healthy, $got node(s)"; return 0; fi`,
    `      last="headscale lists $got node(s), the snapshot has $1"`,
    `    else last="headscale health does not answer"; fi`,
    `    sleep 1`,
    `  done`,
    `  say "$last (after \${wait_s}s)"`,
    `  return 1`,
    `}`,
  ];
}

/**
 * The restore with its guard, as one POSIX sh script (pure: input in, text
 * out). Exit 0 restored; 3 refused before anything changed; 4 the snapshot
 * failed and the database that was live is back and healthy; 5 the same but
 * headscale does not answer with it either. The last lines of the log are
 * `@@mf:result@@` and one line of outcome.
 */
export function restoreScript(i: RestoreScriptInput): string {
  return [
    ...prelude(i, "SQLite database"),
    `db=${shq(i.db)}`,
    `kept="$db.before-restore-$stamp"`,
    `failed="$db.failed-restore-$stamp"`,
    // Move the live database and its WAL files (which may hold committed data) to $1.
    `move_db() { for x in "" -wal -shm; do if [ -e "$db$x" ]; then mv -f "$db$x" "$1$x" || return 1; fi; done; }`,
    "",
    "# 1. Check the snapshot before anything changes.",
    `command -v sqlite3 >/dev/null 2>&1 || finish 3 "refused: sqlite3 is not installed on this host, so the snapshot cannot be checked; nothing was changed (apt-get install sqlite3 on it; with headscale.backup on, meshfleet up installs it)"`,
    `[ -f "$snap" ] || finish 3 "refused: the snapshot $snap is missing; nothing was changed"`,
    // immutable=1: a snapshot in WAL mode opened read-only would leave -wal/-shm files beside it.
    `ro="file:$snap?mode=ro&immutable=1"`,
    `ic=$(sqlite3 "$ro" 'PRAGMA integrity_check' 2>&1 | head -n 3 | tr '\\n' ' ')`,
    `[ "$ic" = "ok " ] || finish 3 "refused: the snapshot fails integrity_check ($ic); nothing was changed"`,
    `want=$(sqlite3 "$ro" 'SELECT count(*) FROM nodes' 2>&1) || finish 3 "refused: the snapshot has no nodes table, so it is not headscale's database ($want); nothing was changed"`,
    `case "$want" in ''|*[!0-9]*) finish 3 "refused: cannot count the snapshot's nodes ($want); nothing was changed";; esac`,
    `dir=$(dirname "$db")`,
    `[ -d "$dir" ] || finish 3 "refused: $dir (the database's folder) does not exist; nothing was changed"`,
    // The owner of the database it replaces; with none (it was removed), the owner of its folder (StateDirectory=headscale).
    `if [ -e "$db" ]; then owner=$(stat -c %u:%g "$db"); else owner=$(stat -c %u:%g "$dir"); fi`,
    `say "snapshot $snap: integrity ok, $want node(s); database $db, owner $owner"`,
    "",
    "# 2. Stop headscale and keep the live database aside.",
    `stop_hs || { start_hs; finish 3 "refused: headscale did not stop; nothing was changed"; }`,
    `had=0`,
    `if [ -e "$db" ] || [ -e "$db-wal" ]; then had=1; move_db "$kept" || { start_hs; finish 3 "refused: could not move $db aside; nothing else was changed"; }; say "kept the live database as $kept"; else say "there was no database at $db"; fi`,
    "",
    "# 3. The snapshot in place: a copy in the same folder, then a rename (atomic).",
    `put() { cp "$snap" "$db.restore-$stamp" && chown "$owner" "$db.restore-$stamp" && chmod 0600 "$db.restore-$stamp" && mv -f "$db.restore-$stamp" "$db"; }`,
    `if put && start_hs && answers "$want"; then`,
    `  say "restored: headscale runs on the snapshot"`,
    `  finish 0 "restored: $want node(s); the database that was live is kept as $kept"`,
    `fi`,
    "",
    "# 4. The guard: the snapshot did not come up; the database that was live goes back.",
    `say "the snapshot did not come up; putting the database that was live back"`,
    `stop_hs`,
    `rm -f "$db.restore-$stamp"`,
    `move_db "$failed"`,
    `if [ "$had" = 1 ]; then`,
    `  for x in "" -wal -shm; do if [ -e "$kept$x" ]; then mv -f "$kept$x" "$db$x"; fi; done`,
    `fi`,
    `start_hs`,
    `if answers ""; then finish 4 "put back: the snapshot did not come up (set aside as $failed); headscale runs on the database that was live"; fi`,
    `finish 5 "put back, but headscale does not answer on the database that was live either; the snapshot is set aside as $failed. Look at journalctl -u headscale"`,
    "",
  ].join("\n");
}

/**
 * The same for Postgres: the live database is kept as a pg_dump (custom
 * format) before anything changes, the snapshot goes in with `pg_restore
 * --clean --if-exists --single-transaction` (all or nothing: a failing
 * restore leaves the live database as it was), and the guard restores the
 * kept dump the same way. Exit codes and the outcome line as restoreScript.
 */
export function restorePostgresScript(i: RestorePostgresInput): string {
  const pg = i.postgres;
  const conn = `--no-password --host=${shq(pg.host)} --port=${pg.port} --username=${shq(pg.user)} --dbname=${shq(pg.name)}`;
  const pgRestore = (file: string) => `pg_restore ${conn} --clean --if-exists --no-owner --single-transaction --exit-on-error ${file}`;
  return [
    ...prelude(i, "Postgres database"),
    `export PGPASSFILE=${shq(pg.pgpass)} PGSSLMODE=${shq(pg.sslmode)}`,
    `kept=${shq(i.kept)}`,
    // The nodes in a dump: the rows of its COPY into the nodes table (ended by a line "\.").
    `count_nodes() { pg_restore --data-only --table=nodes --file=- "$1" 2>/dev/null | awk '/^COPY /{c=1;next} /^\\\\\\.$/{c=0;next} c{n++} END{print n+0}'; }`,
    "",
    "# 1. Check the snapshot before anything changes.",
    `for t in pg_restore pg_dump; do command -v $t >/dev/null 2>&1 || finish 3 "refused: $t is not installed on this host; nothing was changed (apt-get install postgresql-client on it; with headscale.backup on, meshfleet up installs it)"; done`,
    `[ -f "$snap" ] || finish 3 "refused: the snapshot $snap is missing; nothing was changed"`,
    `toc=$(pg_restore --list "$snap" 2>&1) || finish 3 "refused: the snapshot is not a readable pg_dump archive ($(echo "$toc" | head -n 1)); nothing was changed"`,
    `echo "$toc" | grep -q ' TABLE DATA [^ ]* nodes ' || finish 3 "refused: the snapshot holds no data of a nodes table, so it is not headscale's database; nothing was changed"`,
    `want=$(count_nodes "$snap")`,
    `say "snapshot $snap: a pg_dump archive with $want node(s); database ${pg.name} on ${pg.host}:${pg.port}"`,
    "",
    "# 2. Stop headscale and keep the live database as a dump.",
    `stop_hs || { start_hs; finish 3 "refused: headscale did not stop; nothing was changed"; }`,
    `pg_dump ${conn} --format=custom --file="$kept" || { start_hs; finish 3 "refused: could not dump the live database to $kept, so it is not restored over; nothing else was changed"; }`,
    `say "kept the live database as $kept"`,
    "",
    "# 3. The snapshot in, in one transaction.",
    `why="the snapshot did not come up"`,
    `if ${pgRestore(`"$snap"`)}; then`,
    `  if start_hs && answers "$want"; then`,
    `    say "restored: headscale runs on the snapshot"`,
    `    finish 0 "restored: $want node(s); the database that was live is kept as $kept"`,
    `  fi`,
    `  say "the snapshot did not come up; putting the database that was live back"`,
    `  stop_hs`,
    `  ${pgRestore(`"$kept"`)} || finish 5 "the snapshot did not come up, and the kept dump could not be restored: restore $kept by hand (pg_restore --clean --if-exists --no-owner --single-transaction)"`,
    `else`,
    `  why="pg_restore of the snapshot failed, in one transaction, so the live database is as it was"`,
    `  say "$why"`,
    `fi`,
    "",
    "# 4. The database that was live runs again.",
    `start_hs`,
    `if answers ""; then finish 4 "put back: $why; headscale runs on the database that was live (also kept as $kept)"; fi`,
    `finish 5 "put back, but headscale does not answer on the database that was live either (it is kept as $kept). Look at journalctl -u headscale"`,
    "",
  ].join("\n");
}

/** The outcome line a script's log ends with. */
export function restoreOutcome(log: string): string | undefined {
  return sections(log).result?.split("\n")[0];
}

/** A snapshot on this machine: a folder (from `meshfleet backup` or the timer) or the database file itself. */
export interface LocalSnapshot {
  file: string;
  kind: "sqlite" | "postgres";
  bytes: number;
  sha256: string;
  facts: SqliteFacts | null;
}

export function readLocalSnapshot(arg: string): LocalSnapshot {
  if (!existsSync(arg)) throw new MeshfleetError(`restore: ${arg}: no such file or folder. Fix: pass a snapshot folder (\`meshfleet backup --stack S\` prints where it put one) or its db.sqlite`);
  let file = arg;
  if (statSync(arg).isDirectory()) {
    const found = ["db.sqlite", "db.pgdump"].map((n) => path.join(arg, n)).filter((f) => existsSync(f));
    if (found.length !== 1) throw new MeshfleetError(`restore: ${arg}: expected a snapshot folder holding db.sqlite or db.pgdump, found ${found.length ? "both" : "neither"}`);
    file = found[0]!;
  }
  const data = readFileSync(file);
  const sqlite = data.subarray(0, 16).toString("latin1") === "SQLite format 3\u0000";
  const pg = data.subarray(0, 5).toString("latin1") === "PGDMP";
  if (!sqlite && !pg) throw new MeshfleetError(`restore: ${file}: expected a SQLite database (db.sqlite) or a pg_dump custom-format file (db.pgdump), found neither (it starts with ${JSON.stringify(data.subarray(0, 8).toString("latin1"))})`);
  const facts = sqlite ? localSqliteFacts(file) : null;
  if (facts && facts.integrity !== "ok" && facts.integrity !== "not checked") {
    throw new MeshfleetError(`restore: ${file}: the snapshot fails SQLite's integrity_check (${facts.integrity}); nothing was sent. Fix: pick another snapshot (\`meshfleet backup --stack S\` pulls the newest)`);
  }
  if (facts && facts.nodes === null && facts.integrity === "ok") throw new MeshfleetError(`restore: ${file}: a SQLite database without headscale's nodes table, so not headscale's database; nothing was sent`);
  return { file, kind: sqlite ? "sqlite" : "postgres", bytes: data.length, sha256: createHash("sha256").update(data).digest("hex"), facts };
}

export interface RestoreResult {
  host: string;
  snapshot: string;
  outcome: "restored" | "refused" | "put-back" | "put-back-unhealthy" | "unknown";
  detail: string;
  kept: string | null;
  seconds: number;
}

/** What the restore will do, in words, before it asks. */
export function restorePlan(c: Coordinator, snap: LocalSnapshot, live: { active: string; nodes: string; size: string } | null, stamp: string, waitSeconds: number): string[] {
  const d = c.database;
  const where = d.type === "sqlite" ? d.path : `Postgres database ${d.name} on ${d.host}:${d.port}`;
  const s = snap.facts;
  const size = live && d.type === "sqlite" ? `${live.size === "missing" ? "missing" : bytes(Number(live.size))}; ` : "";
  return [
    `restore on ${c.host.name} (${c.host.address}), the coordinator:`,
    `  snapshot  ${snap.file}: ${bytes(snap.bytes)}${s ? `, ${s.users ?? "?"} user(s), ${s.nodes ?? "?"} node(s), integrity ${s.integrity}` : ""}`,
    live
      ? `  live      ${where}: ${size}headscale ${live.active}${live.nodes !== "" ? `, ${live.nodes} node(s)` : ""}`
      : `  live      ${where} (not read: nothing is sent to the host before the restore is confirmed)`,
    `  1. upload the snapshot to ${RESTORE_STAGE}/${stamp}/ (0700) and compare its sha256`,
    `  2. stop headscale.service (tunnels already up keep flowing; new logins and changes wait)`,
    ...(d.type === "sqlite"
      ? [
          `  3. keep the live database as ${d.path}.before-restore-${stamp} (renamed with its -wal/-shm, never deleted)`,
          `  4. put the snapshot in its place (owner as before, mode 0600), start headscale`,
        ]
      : [
          `  3. keep the live database as a dump, ${RESTORE_STAGE}/${stamp}/before-restore.pgdump (pg_dump; never deleted)`,
          `  4. pg_restore --clean --if-exists --single-transaction of the snapshot (all or nothing), start headscale`,
        ]),
    `  5. headscale health and nodes list must answer with the snapshot's nodes within ${waitSeconds}s;`,
    `     otherwise the kept database goes back and headscale starts again`,
  ];
}

async function ask(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

/** UTC stamp for names: 20261130T181500Z. */
export function utcStamp(d = new Date()): string {
  return d.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * On the host: wait until the restore's log ends with its outcome (or its
 * unit is gone without one, or `limit` seconds pass), print the log, and
 * remove the staged snapshot once there is an outcome.
 */
export function waitScript(log: string, unit: string, limit: number, staged: string): string {
  return [
    `log=${shq(log)}`,
    `i=0`,
    `while ! grep -qx '@@mf:result@@' "$log" 2>/dev/null; do`,
    // A oneshot is "activating" while it runs; with --collect it is unloaded ("inactive") once done.
    `  case "$(systemctl show -p ActiveState --value ${shq(unit)} 2>/dev/null)" in activating|active|deactivating) ;; *) [ "$i" -ge 5 ] && break ;; esac`,
    `  [ "$i" -ge ${limit} ] && break`,
    `  sleep 1; i=$((i + 1))`,
    `done`,
    `cat "$log" 2>/dev/null`,
    `if grep -qx '@@mf:result@@' "$log" 2>/dev/null; then rm -f ${shq(staged)}; fi`,
  ].join("\n");
}

export async function restore(
  a: StackAccess,
  o: {
    snapshot: string;
    yes: boolean;
    waitSeconds: number;
    interactive: boolean;
    say: (l: string) => void;
    confirm?: (q: string) => Promise<boolean>;
    /** Cut the first wait for the outcome after this many ms, as a dropped connection would (the lab drill's test of it). */
    firstWaitTimeoutMs?: number;
  },
): Promise<RestoreResult> {
  const t0 = Date.now();
  const c = coordinatorOf(a, "restore");
  const d = c.database;
  const snap = readLocalSnapshot(o.snapshot);
  if (snap.kind !== d.type) {
    throw new MeshfleetError(
      `restore: ${snap.file} is ${snap.kind === "sqlite" ? "a SQLite database" : "a pg_dump file"}, but the coordinator ${c.host.name} keeps headscale's database in ${d.type === "sqlite" ? "SQLite" : "Postgres"} (${c.file}: headscale.database.type: ${d.type}); pick a snapshot of this fleet's coordinator`,
    );
  }
  const stamp = utcStamp();
  const stage = `${RESTORE_STAGE}/${stamp}`;
  const staged = `${stage}/${d.type === "sqlite" ? "db.sqlite" : "db.pgdump"}`;
  const keptDump = `${stage}/before-restore.pgdump`;
  if (!o.yes && !o.interactive) {
    for (const l of restorePlan(c, snap, null, stamp, o.waitSeconds)) o.say(l);
    throw new UsageError(`refusing to restore without --yes when not asked at a terminal; nothing was changed. Run \`meshfleet restore ${a.stackArgs} ${o.snapshot} --yes\``);
  }
  const conn = connectionTo(a, c.host, { connectTimeoutSeconds: 10, dialAttempts: 3 });
  const session = newSession();
  try {
    // Read-only look at the host first: what is live, and can it check a snapshot?
    const look = await tryRun(
      session,
      conn,
      [
        `echo @@mf:active@@; systemctl is-active headscale.service 2>/dev/null || true`,
        `echo @@mf:nodes@@; ${shq(c.binary)} -c ${shq(c.config)} nodes list -o json 2>/dev/null | grep -o '"node_key":' | wc -l`,
        `echo @@mf:size@@; ${d.type === "sqlite" ? `if [ -e ${shq(d.path)} ]; then stat -c %s ${shq(d.path)}; else echo missing; fi` : "echo n/a"}`,
        `echo @@mf:tools@@; for t in ${d.type === "sqlite" ? "sqlite3" : "pg_dump pg_restore"} systemd-run; do command -v $t >/dev/null 2>&1 || echo "missing $t"; done`,
      ].join("\n"),
      { what: "restore: look at the coordinator" },
    );
    if (look.error || look.code !== 0) throw new MeshfleetError(`restore: cannot read the coordinator ${c.host.name}: ${look.error ?? (look.stderr || look.stdout).trim().slice(0, 300)}; nothing was changed`);
    const s = sections(look.stdout);
    const live = { active: s.active || "unknown", nodes: s.active === "active" ? (s.nodes ?? "") : "", size: s.size ?? "missing" };
    if (s.tools) {
      const pkg = d.type === "sqlite" ? "sqlite3" : "postgresql-client";
      throw new MeshfleetError(`restore: the coordinator ${c.host.name} lacks ${s.tools.replaceAll("missing ", "").split("\n").join(", ")}; nothing was changed. Fix: apt-get install ${pkg} on ${c.host.name} (with headscale.backup on, meshfleet up installs it; docs/deploy.md lists what the coordinator needs)`);
    }
    for (const l of restorePlan(c, snap, live, stamp, o.waitSeconds)) o.say(l);
    if (!o.yes) {
      const yes = await (o.confirm ?? ask)(`restore ${path.basename(path.dirname(snap.file))} on ${c.host.name}? [y/N] `);
      if (!yes) throw new MeshfleetError("restore: not confirmed; nothing was changed");
    }

    const common = {
      snapshot: staged,
      stamp,
      headscale: c.binary,
      config: c.config,
      stop: "systemctl stop headscale.service",
      start: "systemctl start headscale.service",
      waitSeconds: o.waitSeconds,
      log: `${stage}/restore.log`,
    };
    const script = d.type === "sqlite" ? restoreScript({ ...common, db: d.path }) : restorePostgresScript({ ...common, postgres: d, kept: keptDump });
    // session.run, not tryRun: the snapshot goes as bytes on stdin (tryRun takes text).
    const up = await session.run(
      conn,
      [
        "set -eu",
        "umask 077",
        `mkdir -p ${shq(RESTORE_STAGE)} && chmod 0700 ${shq(RESTORE_STAGE)}`,
        `mkdir ${shq(stage)}`,
        `cat > ${shq(staged)}`,
        `printf '%s' ${shq(script)} > ${shq(`${stage}/restore.sh`)}`,
        `sha256sum < ${shq(staged)} | cut -d' ' -f1`,
      ].join("\n"),
      { what: "restore: upload the snapshot", stdin: readFileSync(snap.file), timeoutMs: 600_000, quiet: true },
    ).catch((e: Error) => ({ code: 255, stdout: "", stderr: e.message }));
    if (up.code !== 0) throw new MeshfleetError(`restore: the upload to ${c.host.name} failed (exit ${up.code}): ${(up.stderr || up.stdout).trim().slice(0, 300)}; nothing was changed`);
    if (up.stdout.trim() !== snap.sha256) throw new MeshfleetError(`restore: the snapshot arrived on ${c.host.name} with sha256 ${up.stdout.trim().slice(0, 16)}…, not ${snap.sha256.slice(0, 16)}…; nothing was changed. Try again`);
    o.say(`${c.host.name}: snapshot uploaded (${bytes(snap.bytes)}, sha256 matches); restoring`);

    // A transient unit of its own, started with --no-block: the script never belongs to this SSH session,
    // so a connection that drops cannot stop it halfway (with headscale down). The outcome is read from its
    // log, waiting over the run's connection and, if that one drops, over new ones.
    const unit = `meshfleet-restore-${stamp}`;
    const limit = o.waitSeconds * 2 + 180;
    const started = await tryRun(
      session,
      conn,
      `systemd-run --quiet --no-block --collect --unit=${unit} --property=Type=oneshot --property=TimeoutStartSec=${limit} /bin/sh ${shq(`${stage}/restore.sh`)}`,
      { what: "restore: start the guarded restore" },
    );
    if (started.error || started.code !== 0) throw new MeshfleetError(`restore: could not start the restore on ${c.host.name} (${started.error ?? `systemd-run exit ${started.code}: ${started.stderr.trim().slice(0, 300)}`}); headscale was not touched. The snapshot is staged in ${stage}`);
    o.say(`${c.host.name}: restoring as ${unit}`);
    let log = "";
    for (let attempt = 0; attempt < 4 && !restoreOutcome(log); attempt++) {
      if (attempt > 0) o.say(`${c.host.name}: lost the connection while waiting (${log ? "no outcome yet" : "no answer"}); the restore goes on by itself as ${unit}. Reading its outcome over a new connection`);
      const waited = await tryRun(session, conn, waitScript(`${stage}/restore.log`, unit, limit, staged), {
        what: "restore: wait for the outcome",
        fresh: attempt > 0,
        timeoutMs: attempt === 0 && o.firstWaitTimeoutMs ? o.firstWaitTimeoutMs : (limit + 60) * 1000,
      });
      log = waited.stdout;
    }
    const outcome = restoreOutcome(log) ?? "";
    for (const l of log.split("\n").filter((l) => l.startsWith("restore: "))) o.say(`${c.host.name}: ${l}`);
    const kind: RestoreResult["outcome"] = outcome.startsWith("restored")
      ? "restored"
      : outcome.startsWith("refused")
        ? "refused"
        : outcome.startsWith("put back:")
          ? "put-back"
          : outcome.startsWith("put back,")
            ? "put-back-unhealthy"
            : "unknown";
    return {
      host: c.host.name,
      snapshot: snap.file,
      outcome: kind,
      detail: outcome || `no outcome in the restore's log ${stage}/restore.log on ${c.host.name}; read it there (journalctl -u ${unit})`,
      kept: kind !== "restored" ? null : d.type === "postgres" ? keptDump : live.size !== "missing" ? `${d.path}.before-restore-${stamp}` : null,
      seconds: Math.round((Date.now() - t0) / 100) / 10,
    };
  } finally {
    session.close();
  }
}

export const command: Command = {
  name: "restore",
  summary: "put a snapshot of headscale's database back on the coordinator (guarded: the old one is kept and comes back on failure)",
  usage: `usage: meshfleet restore --stack S SNAPSHOT [--yes] [--wait SECONDS] [--json]

Puts SNAPSHOT (a folder from \`meshfleet backup\` or the coordinator's
headscale.backup timer, or its db.sqlite or db.pgdump) back as headscale's
database on the fleet's coordinator. The snapshot is checked here and again
on the host (SQLite integrity_check, headscale's nodes table), uploaded over
SSH with the deploy's pinned host keys, and put in place by one script on
the host:
headscale is stopped, the live database is kept aside as
<database>.before-restore-<time> (never deleted), the snapshot goes in with
the old owner and mode 0600, headscale starts, and \`headscale health\` and
\`headscale nodes list\` must answer with the snapshot's nodes. If they do
not, the kept database goes back and headscale starts again (the guard).
The script runs as a transient systemd unit, so a dropped SSH connection
does not leave it halfway. Tunnels already up keep flowing while headscale
is down; the config and policy come from git (\`meshfleet up\`), not from
the snapshot. Postgres: SNAPSHOT is a db.pgdump; the live database is kept
as a pg_dump first, and pg_restore --clean --single-transaction puts the
snapshot in (all or nothing).

Without --yes it shows what it will do and asks at a terminal; elsewhere it
refuses (exit 2). Exit 0 restored, 1 not restored (refused on the host, or
put back), 2 a command line it cannot take.

${flagHelp(flags)}`,
  flags,
  async run(argv) {
    const { opts, positional } = parseArgs(argv, flags, { positionals: ["SNAPSHOT"] });
    if (typeof opts.stack !== "string") throw new UsageError("which stack? Add --stack S");
    if (positional.length !== 1) throw new UsageError("which snapshot? Pass a snapshot folder or its db.sqlite (`meshfleet backup --stack S` prints where it put the newest)");
    const waitSeconds = opts.wait === undefined ? 60 : Number(opts.wait);
    if (typeof opts.wait === "string" && (!/^\d+$/.test(opts.wait) || waitSeconds < 5 || waitSeconds > 3600)) throw new UsageError(`--wait: expected whole seconds from 5 to 3600, found ${JSON.stringify(opts.wait)}`);
    const json = !!opts.json;
    const say = (l: string) => (json ? process.stderr : process.stdout).write(l + "\n");
    const a = await openStackFleet({ stack: opts.stack, configFile: typeof opts["config-file"] === "string" ? opts["config-file"] : undefined });
    const r = await restore(a, { snapshot: positional[0]!, yes: !!opts.yes, waitSeconds, interactive: !!process.stdin.isTTY && !json, say });
    if (json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
    else say(`${r.host}: ${r.detail} (${r.seconds}s)`);
    return r.outcome === "restored" ? EXIT.ok : EXIT.problems;
  },
};
