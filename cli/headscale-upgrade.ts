/**
 * Changing `coordinator.headscaleVersion` (issue 15 item 6), systemd runtime
 * with `meshfleet:headscaleBinaryPath`: before `meshfleet up` deploys, the
 * coordinator is upgraded with a guard, as one script run on the host as a
 * transient systemd unit (as `restore` does: a dropped SSH connection cannot
 * leave headscale stopped halfway):
 *   1. a backup: headscale-backup.service when headscale.backup is on (the
 *      snapshot `meshfleet backup` pulls), and in any case a copy of the
 *      database taken with headscale stopped: SQLite's file (exact bytes, WAL
 *      too), or Postgres's as a pg_dump (custom format);
 *   2. the new binary in place, the old one kept beside it;
 *   3. headscale started; it must answer its health check with the same
 *      number of nodes, running the new release, within --wait;
 *   4. else the rollback: the old binary and the database copy go back
 *      (the new release may have migrated the database forward; Postgres:
 *      pg_restore --clean --single-transaction of the dump), headscale
 *      starts again and must answer with the same nodes; the deploy stops.
 *
 * A downgrade is refused unless `--force`: headscale migrates its database
 * forward only, and an older release does not know a newer schema. An
 * upgrade across more than one minor release is refused with the staged
 * path (each stage its own `up`, so each gets a backup and a health check).
 *
 * A docker coordinator (runtime: docker) gets no script here: the deploy's
 * image switch is guarded by its compose unit. The step reads the release
 * its container runs and refuses an image of an older release, or one that
 * skips a minor, without --force, the same way (dockerCoordinatorStep).
 *
 * The deploy's own binary push (components/coordinator.ts) then finds the
 * same bytes in place. The version the coordinator was last seen running is
 * kept in the state folder per stack, so an `up` that changes no version
 * costs no SSH round trip here.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { isMainThread } from "node:worker_threads";
import { headscaleBinaryFile } from "../components/headscale-binary.ts";
import { MeshfleetError } from "../core/diagnostics.ts";
import { DEFAULT_HEADSCALE_VERSION } from "../core/fleet-schema.ts";
import { compareReleases, UPGRADE_PATH } from "../modules/headscale-versions.ts";
import { shq } from "../provider/quote.ts";
import { coordinatorOf } from "./commands/backup.ts";
import { guardedHead } from "./guarded-script.ts";
import { utcStamp, waitScript } from "./commands/restore.ts";
import type { HostSystem } from "../core/types.ts";
import { connectionTo, newSession, openStackFleet, REPO_ROOT, sections, stackConfigFile, stackHostsDir, tryRun, type StackAccess } from "./fleet-hosts.ts";

export const UPGRADE_STAGE = "/var/lib/meshfleet/upgrade";
/** One name for the transient unit: systemd refuses a second one while the first runs. */
export const UPGRADE_UNIT = "meshfleet-headscale-upgrade";

/**
 * The transient unit. No start timeout: the script bounds itself (its waits
 * are --wait each), and systemd's SIGTERM at a timeout would stop it between
 * the new binary and the rollback.
 */
export function upgradeUnitCommand(scriptFile: string): string {
  return `systemd-run --quiet --no-block --collect --unit=${UPGRADE_UNIT} --property=Type=oneshot --property=TimeoutStartSec=infinity /bin/sh ${shq(scriptFile)}`;
}

/** Why systemd-run failed, in words: another upgrade running is said as such. */
export function upgradeStartProblem(host: string, r: { error?: string; code: number; stderr: string }): string {
  const text = r.error ?? r.stderr;
  if (/already (exists|loaded|active)/i.test(text)) {
    return `upgrade: another headscale upgrade is running on ${host} (unit ${UPGRADE_UNIT}); this one did not start and changed nothing. Fix: wait for it (journalctl -u ${UPGRADE_UNIT} -f), then run \`meshfleet up\` again`;
  }
  return `upgrade: could not start the upgrade on ${host} (${r.error ?? `exit ${r.code}: ${r.stderr.trim().slice(0, 300)}`}); headscale was not touched`;
}
/** Exit codes of the upgrade script. */
export const UPGRADE_EXIT = { upgraded: 0, refused: 3, rolledBack: 4, rolledBackUnhealthy: 5 } as const;

const minor = (v: string) => v.split(".").slice(0, 2).join(".");

/** "headscale version v0.29.2\n…" → "0.29.2"; null when there is no version in it. */
export function versionOfBanner(out: string): string | null {
  return /\bv?(\d+\.\d+\.\d+)\b/.exec(out)?.[1] ?? null;
}

export type UpgradeAction = { kind: "none"; why: string } | { kind: "upgrade" | "downgrade"; from: string; to: string };

/**
 * What changing the version means, or a refusal naming the file, the option,
 * what was expected, what was found and the fix.
 */
export function upgradeAction(running: string | null, wanted: string, o: { force: boolean; fleetFile: string }): UpgradeAction {
  if (running === null) return { kind: "none", why: "no headscale on the coordinator yet: the deploy installs it" };
  const c = compareReleases(wanted, running);
  if (c === 0) return { kind: "none", why: `the coordinator runs headscale ${running} already` };
  if (c < 0) {
    if (!o.force) {
      throw new MeshfleetError(
        `${o.fleetFile}: coordinator.headscaleVersion: expected ${running} or newer (the coordinator runs headscale ${running}), found ${wanted}. ` +
          `headscale migrates its database forward only: an older release may refuse the migrated database or damage it. ` +
          `Fix: set coordinator.headscaleVersion: ${running}; or, to go back anyway, restore a backup taken before the upgrade (\`meshfleet restore\`) and run \`meshfleet up --force\` (the downgrade then gets the same backup, health check and rollback)`,
      );
    }
    return { kind: "downgrade", from: running, to: wanted };
  }
  const minors = [...new Set([running, ...UPGRADE_PATH, wanted].map(minor))].filter((m) => compareReleases(m, minor(running)) > 0 && compareReleases(m, minor(wanted)) < 0);
  if (minors.length > 0 && !o.force) {
    const stages = UPGRADE_PATH.filter((v) => compareReleases(v, running) > 0 && compareReleases(v, wanted) < 0);
    throw new MeshfleetError(
      `${o.fleetFile}: coordinator.headscaleVersion: expected one minor release at a time from the ${running} the coordinator runs, found ${wanted} (skips ${minors.map((m) => `${m}.x`).join(", ")}). ` +
        `Fix: upgrade in stages, ${[running, ...stages, wanted].join(" -> ")}: set coordinator.headscaleVersion to each in turn and run \`meshfleet up\` for each (each gets a backup and a health check)`,
    );
  }
  return { kind: "upgrade", from: running, to: wanted };
}

export interface UpgradeScriptInput {
  /** The installed binary (what headscale.service runs) and the staged new one. */
  binary: string;
  staged: string;
  config: string;
  /**
   * The config rendered for the new release, staged on the host, or null. It
   * replaces `config` together with the binary when it differs (a release that
   * refuses the old release's keys, e.g. 0.29 and 0.28's oidc.expiry), and the
   * old one comes back with the rollback.
   */
  newConfig?: string | null;
  /** The SQLite database, or null (Postgres: see `postgres`). */
  db: string | null;
  /**
   * Postgres: headscale's database.postgres settings, its libpq password file,
   * and where the dump taken with headscale stopped goes (restored by the rollback).
   */
  postgres?: { host: string; port: number; name: string; user: string; sslmode: string; pgpass: string; dump: string } | null;
  /** The backup to take first (headscale.backup on: `systemctl start headscale-backup.service`), or null. */
  backup: string | null;
  /** Succeeds while headscale runs (`systemctl is-active --quiet headscale.service`). */
  isActive: string;
  from: string;
  to: string;
  stamp: string;
  waitSeconds: number;
  log: string;
  stop: string;
  start: string;
}

/** The guarded upgrade as one POSIX sh script (pure). Exit codes: UPGRADE_EXIT. The log ends with `@@mf:result@@` and one line. */
export function upgradeScript(i: UpgradeScriptInput): string {
  const hs = `"$bin" -c ${shq(i.config)}`;
  const pg = i.postgres ?? null;
  const pgConn = pg ? `--no-password --host=${shq(pg.host)} --port=${pg.port} --username=${shq(pg.user)} --dbname=${shq(pg.name)}` : "";
  return [
    ...guardedHead({
      about: ["meshfleet upgrade (cli/headscale-upgrade.ts): a new headscale binary with a backup, a health check and a rollback."],
      who: "upgrade",
      vars: [
        ["bin", i.binary],
        ["new", i.staged],
        ["stamp", i.stamp],
        ["from", i.from],
        ["to", i.to],
        ["db", i.db ?? ""],
        ["cfg", i.config],
        ["newcfg", i.newConfig ?? ""],
        ["pgdump", pg?.dump ?? ""],
      ],
      waitSeconds: i.waitSeconds,
      log: i.log,
      stop: i.stop,
      start: i.start,
    }),
    // Fails when nodes list fails: a failed list is not 0 nodes.
    `count() { _l=$(${hs} nodes list -o json 2>/dev/null) || return 1; printf '%s' "$_l" | grep -o '"node_key":' | wc -l; }`,
    // headscale answers its health check, its binary reports $2, and it lists $1 nodes, within wait_s.
    `answers() {`,
    `  end=$(($(date +%s) + wait_s))`,
    `  while [ "$(date +%s)" -lt "$end" ]; do`,
    `    if ! ${i.isActive}; then last="headscale is not running";`,
    `    elif ! ${hs} health >/dev/null 2>&1; then last="headscale health does not answer";`,
    `    elif ! got=$(count); then last="headscale nodes list fails";`,
    `    else`,
    `      v=$("$bin" version 2>/dev/null | head -n 1)`,
    `      case "$v" in *"v$2"*) if [ "$got" -eq "$1" ]; then say "headscale answers: healthy, $v, $got node(s)"; return 0; fi; last="headscale lists $got node(s), it had $1";; *) last="the binary reports '$v', not $2";; esac`,
    `    fi`,
    `    sleep 1`,
    `  done`,
    `  say "$last (after \${wait_s}s)"`,
    `  return 1`,
    `}`,
    `ms() { echo $(($(date +%s%N) / 1000000)); }`,
    `copy_db() { for x in "" -wal -shm; do if [ -e "$1$x" ]; then cp -p "$1$x" "$2$x" || return 1; else rm -f "$2$x"; fi; done; }`,
    `move_db() { for x in "" -wal -shm; do if [ -e "$1$x" ]; then mv -f "$1$x" "$2$x" || return 1; fi; done; }`,
    // A refusal after headscale was stopped: start it again, and say so when it does not start.
    `refuse() { if start_hs; then finish 3 "$1"; fi; finish 3 "$1; BUT headscale $from did not start again: start it (systemctl start headscale; journalctl -u headscale)"; }`,
    "",
    // The dump and its restore read the password from the file headscale reads (never a command line).
    ...(pg ? [`export PGPASSFILE=${shq(pg.pgpass)} PGSSLMODE=${shq(pg.sslmode)}`] : []),
    "",
    "# 0. Before anything changes: the staged binary runs and reports the new release; headscale answers now.",
    ...(pg ? [`for t in pg_dump pg_restore; do command -v $t >/dev/null 2>&1 || finish 3 "refused: $t is not installed on this host, so the Postgres database could not be kept for a rollback; nothing was changed (apt-get install postgresql-client on it; with headscale.backup or headscale.database.postgres.local on, meshfleet up installs it)"; done`] : []),
    `chmod 0755 "$new" || finish 3 "refused: cannot make the staged binary executable; nothing was changed"`,
    `nv=$("$new" version 2>&1 | head -n 1)`,
    `case "$nv" in *"v$to"*) ;; *) rm -f "$new"; finish 3 "refused: the staged binary reports '$nv', not $to; nothing was changed";; esac`,
    `${hs} health >/dev/null 2>&1 || finish 3 "refused: headscale $from does not answer its health check before the upgrade; nothing was changed (fix it first: journalctl -u headscale)"`,
    `had=$(count) || finish 3 "refused: headscale $from answers its health check but its nodes list fails (headscale nodes list), so the upgrade could not be checked against its nodes; nothing was changed (fix it first: journalctl -u headscale)"`,
    `say "headscale $from answers with $had node(s); upgrading to $to"`,
    "",
    "# 1. The backup.",
    `t_b=$(ms)`,
    i.backup
      ? `if ${i.backup}; then say "backup taken (${i.backup})"; else finish 3 "refused: the backup (${i.backup}) failed; nothing was changed"; fi`
      : `say "headscale.backup is off: only the copy below is taken"`,
    `stop_hs || refuse "refused: headscale did not stop; nothing was changed"`,
    `kept_db=""`,
    `if [ -n "$db" ]; then`,
    `  kept_db="$db.before-upgrade-$stamp"`,
    `  copy_db "$db" "$kept_db" || refuse "refused: could not copy $db to $kept_db; nothing else was changed"`,
    `  say "database copied (headscale stopped) to $kept_db"`,
    `fi`,
    `kept_pg=""`,
    ...(pg
      ? [
          // headscale is stopped: the dump is the database exactly as the old release left it.
          `pg_dump ${pgConn} --format=custom --file="$pgdump" || refuse "refused: could not dump the Postgres database ${pg.name} to $pgdump (pg_dump failed), so there would be nothing to roll back to; nothing else was changed"`,
          `kept_pg="$pgdump"`,
          `say "Postgres database ${pg.name} dumped (headscale stopped) to $kept_pg"`,
        ]
      : []),
    `say "backup took $(($(ms) - t_b)) ms"`,
    `t_u=$(ms)`,
    "",
    "# 2. The new binary in place; the old one kept. The config rendered for the new release, when it differs; the old one kept.",
    `kept_cfg=""`,
    `if [ -n "$newcfg" ] && [ -f "$newcfg" ] && ! cmp -s "$newcfg" "$cfg"; then`,
    `  kept_cfg="$cfg.before-upgrade-$stamp"`,
    `  cp -p "$cfg" "$kept_cfg" || refuse "refused: could not keep the config as $kept_cfg; nothing else was changed"`,
    `fi`,
    `old="$bin.before-upgrade-$stamp"`,
    `cp -p "$bin" "$old" || refuse "refused: could not keep the old binary as $old; nothing else was changed"`,
    `mv -f "$new" "$bin" || refuse "refused: could not put the new binary in place; nothing else was changed"`,
    // Written over the file (cat, not mv): its owner and mode stay the ones headscale reads it with.
    `cfg_failed=""`,
    `new_cfg() { [ -z "$kept_cfg" ] && return 0; if cat "$newcfg" > "$cfg"; then say "config rendered for $to in place ($cfg; the old one kept as $kept_cfg)"; return 0; fi; cfg_failed=1; say "could not write the config rendered for $to to $cfg (a full disk?)"; return 1; }`,
    "",
    "# 3. Start and check.",
    `if new_cfg && start_hs && answers "$had" "$to"; then say "upgrade (new binary, start, healthy) took $(($(ms) - t_u)) ms"; finish 0 "upgraded: headscale $from -> $to, $had node(s); the old binary is kept as $old\${kept_db:+ and the database as $kept_db}\${kept_pg:+ and the database as a dump in $kept_pg}\${kept_cfg:+, the config as $kept_cfg}"; fi`,
    "",
    "# 4. The rollback: the old binary and the database copy.",
    `if [ -n "$cfg_failed" ]; then say "the config for $to could not be written; rolling back to $from"; else say "headscale $to did not come up healthy after $(($(ms) - t_u)) ms; rolling back to $from"; fi`,
    `t_r=$(ms)`,
    `journalctl -u headscale.service -n 8 --no-pager -o cat 2>/dev/null | sed 's/^/upgrade:   /'`,
    // Each step checked: a rollback that cannot finish stops and says what is where.
    `left="the old binary is kept as $old\${kept_db:+, the database from before the upgrade as $kept_db}\${kept_pg:+, the Postgres database from before the upgrade as the dump $kept_pg}\${kept_cfg:+, the config as $kept_cfg}"`,
    `stop_hs || finish 5 "rollback failed: headscale $to did not come up healthy and did not stop for the rollback; nothing was put back: headscale $to is at $bin with its database $db; $left. Fix: systemctl stop headscale, then put them back by hand"`,
    // The config first: truncating it back to the old one frees space a full disk needs for the binary.
    `if [ -n "$kept_cfg" ]; then cat "$kept_cfg" > "$cfg" || finish 5 "rollback failed: could not put the config back from $kept_cfg (headscale is stopped, nothing else was put back); $left. Fix: free space, cp $kept_cfg $cfg and cp -p $old $bin, then systemctl start headscale"; fi`,
    `mv -f "$bin" "$bin.failed-upgrade-$stamp" || finish 5 "rollback failed: could not move the new binary $bin aside (headscale is stopped); $left. Fix: cp -p $old $bin, then systemctl start headscale"`,
    `cp -p "$old" "$bin" || finish 5 "rollback failed: could not copy the old binary back to $bin (a full disk?); headscale is stopped, the new binary is $bin.failed-upgrade-$stamp; $left. Fix: free space, cp -p $old $bin, then systemctl start headscale"`,
    `if [ -n "$kept_db" ]; then`,
    // The database headscale $to used moves aside by rename (no copy to fail halfway); the kept copy goes in under a temp name, then by rename.
    `  move_db "$db" "$db.failed-upgrade-$stamp" || finish 5 "rollback failed: could not move the database $db aside (headscale is stopped, the old binary is back at $bin); $left. Fix: put $kept_db (with its -wal/-shm) in place of $db, then systemctl start headscale"`,
    `  copy_db "$kept_db" "$db.rollback-$stamp" || finish 5 "rollback failed: could not copy $kept_db (a full disk?); headscale is stopped, the old binary is back at $bin, there is no database at $db: the one headscale $to used is $db.failed-upgrade-$stamp, the one from before the upgrade is $kept_db (untouched). Fix: free space, cp -p $kept_db $db (with its -wal/-shm), then systemctl start headscale"`,
    `  move_db "$db.rollback-$stamp" "$db" || finish 5 "rollback failed: could not rename $db.rollback-$stamp to $db; headscale is stopped, the old binary is back at $bin; $left. Fix: put $kept_db (with its -wal/-shm) in place of $db, then systemctl start headscale"`,
    `fi`,
    // All or nothing: a failed restore leaves the database as the new release left it, and says so.
    ...(pg
      ? [
          `if [ -n "$kept_pg" ]; then`,
          `  pg_restore ${pgConn} --clean --if-exists --no-owner --single-transaction --exit-on-error "$kept_pg" || finish 5 "rollback failed: could not restore the Postgres database ${pg.name} from $kept_pg (pg_restore failed, in one transaction: the database is as headscale $to left it); headscale is stopped, the old binary is back at $bin; $left. Fix: pg_restore --clean --if-exists --no-owner --single-transaction -d ${pg.name} $kept_pg, then systemctl start headscale"`,
          `  say "Postgres database ${pg.name} restored from $kept_pg"`,
          `fi`,
        ]
      : []),
    `start_hs || say "headscale $from did not start"`,
    `if answers "$had" "$from"; then say "rollback (old binary and database back, start, healthy) took $(($(ms) - t_r)) ms"; finish 4 "rolled back: headscale $to did not come up healthy; $from runs again on the database as it was before ($had node(s)); the failed binary is kept as $bin.failed-upgrade-$stamp"; fi`,
    `finish 5 "rolled back, but headscale $from does not answer either; the database copy is $kept_db and the old binary $old. Look at journalctl -u headscale"`,
    "",
  ].join("\n");
}

function localVersion(binary: string): string | null {
  const r = spawnSync(binary, ["version"], { encoding: "utf8", timeout: 20_000 });
  return r.status === 0 ? versionOfBanner(r.stdout) : null;
}

interface Seen {
  coordinator: string;
  version: string;
  binary: string;
  size: number;
  mtimeMs: number;
}

export interface UpgradeResult {
  action: UpgradeAction["kind"] | "skipped";
  /** With expectNoChanges: the upgrade or downgrade that would run (nothing was changed). */
  pending?: boolean;
  detail: string;
  /** The script's outcome: upgraded, rolled-back, rolled-back-unhealthy, refused. */
  outcome?: string;
  seconds: number;
}

/** The first line `headscale version` prints in the coordinator's container, or null when it cannot be read. */
export type DockerHeadscaleReader = (a: StackAccess, host: HostSystem, container: string) => Promise<string | null>;

const readDockerHeadscale: DockerHeadscaleReader = async (a, host, container) => {
  // One short attempt: on a first deploy the host may not answer yet, and preview must not wait long for it.
  const r = await tryRun(newSession(), connectionTo(a, host, { connectTimeoutSeconds: 5, dialAttempts: 1 }), `docker exec ${shq(container)} headscale version 2>/dev/null | head -n 1`, {
    what: "upgrade: which headscale the coordinator's container runs",
  });
  return r.error || r.code !== 0 || r.stdout.trim() === "" ? null : r.stdout.trim();
};

/** False when no file of the fleet folder mentions docker or imports from outside it: its coordinator cannot be on the docker runtime. */
export function mayRunDocker(dir: string): boolean {
  if (!existsSync(dir)) return false;
  const walk = (d: string): boolean => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (walk(p)) return true;
      } else if (/\.(ya?ml|ts)$/.test(e.name)) {
        const t = readFileSync(p, "utf8");
        if (t.includes("docker") || t.includes("../")) return true;
      }
    }
    return false;
  };
  return walk(dir);
}

/** The release an image reference names by its tag (`headscale/headscale:0.29.2`, `…:v0.29.2@sha256:…`), or null. */
export function imageRelease(image: string): string | null {
  return /:v?(\d+\.\d+\.\d+)(?:@sha256:[0-9a-f]+)?$/.exec(image)?.[1] ?? null;
}

/**
 * A docker coordinator (runtime: docker): the deploy switches headscale's
 * image, and its compose unit copies the database (SQLite file or pg_dump)
 * before the new image starts and puts it back when the agent rolls the
 * switch back (components/dockerService.ts dbGuardScript). What is left here
 * is the refusal: the release in the container is read, and an image of an
 * older release (or one that skips a minor) is refused without --force, as
 * on the systemd runtime. Null when the coordinator is not a docker one (read
 * from its host file first, so an `up` of a systemd fleet evaluates nothing
 * here).
 */
async function dockerCoordinatorStep(
  o: { force: boolean; say: (l: string) => void; readDockerHeadscale?: DockerHeadscaleReader },
  a: StackAccess,
  h: HostSystem,
  fleetFile: string,
  secs: () => number,
): Promise<UpgradeResult> {
  const container = h.containers.find((c) => c.name === "headscale");
  const guard = "the deploy's image switch takes the database backup (the compose unit's guard) and the agent's rollback restores it";
  if (!container) return { action: "skipped", detail: `runtime: docker: no headscale container on ${h.name}`, seconds: secs() };
  const wanted = imageRelease(container.image);
  if (!wanted) {
    return { action: "skipped", detail: `runtime: docker: the image ${container.image} names no release by its tag, so an older release cannot be told apart here; ${guard}`, seconds: secs() };
  }
  const banner = await (o.readDockerHeadscale ?? readDockerHeadscale)(a, h, container.name);
  const running = banner ? versionOfBanner(banner) : null;
  if (!running) {
    o.say(`${h.name}: cannot read which headscale its container runs (not running yet, or no SSH); the deploy goes on and its own checks decide`);
    return { action: "skipped", detail: `runtime: docker: the release in headscale's container could not be read; ${guard}`, seconds: secs() };
  }
  // The image follows coordinator.headscaleVersion unless the host file sets headscale.image.
  const derived = container.image === `docker.io/headscale/headscale:${a.fleet.coordinator.headscaleVersion}`;
  try {
    const act = upgradeAction(running, wanted, { force: o.force, fleetFile });
    if (act.kind === "none") return { action: "none", detail: `runtime: docker: ${act.why}`, seconds: secs() };
    o.say(`${h.name}: headscale ${act.from} -> ${act.to}${act.kind === "downgrade" ? " (a DOWNGRADE, forced)" : ""} by the deploy's image switch: ${guard}`);
    return { action: "skipped", detail: `runtime: docker: headscale ${act.from} -> ${act.to} by the image switch; ${guard}`, seconds: secs() };
  } catch (e) {
    if (derived || !(e instanceof MeshfleetError)) throw e;
    // headscale.image set by hand: the option to change is that one, in the host file.
    throw new MeshfleetError(
      e.message
        .replace(`${fleetFile}: coordinator.headscaleVersion:`, `${h.file}: headscale.image:`)
        .replace(`found ${wanted}.`, `found ${container.image} (headscale ${wanted}).`)
        .replace(`set coordinator.headscaleVersion: ${running}`, `set headscale.image to an image of headscale ${running}`),
    );
  }
}

/**
 * The step before `meshfleet up`: nothing unless the stack installs its own
 * headscale binary (meshfleet:headscaleBinaryPath). Throws MeshfleetError on
 * a refusal or a rollback (the deploy must not go on).
 */
export async function headscaleUpgradeStep(o: {
  stack: string;
  configFile?: string;
  force: boolean;
  stateDir: string;
  say: (l: string) => void;
  waitSeconds?: number;
  /** Cut the first wait for the outcome after this many ms (a test of a dropped connection). */
  firstWaitTimeoutMs?: number;
  /** Asked before the coordinator is touched (without --yes, at a terminal); unset: go ahead. */
  confirm?: (question: string) => Promise<boolean>;
  /** --expect-no-changes: read which headscale runs, change nothing; a pending upgrade comes back as pending. */
  expectNoChanges?: boolean;
  /** The folder the deploy runs its program in (runDeploy's root; default the repo). */
  root?: string;
  /** A docker coordinator: how the release in its container is read (default: `docker exec` over SSH). */
  readDockerHeadscale?: DockerHeadscaleReader;
}): Promise<UpgradeResult> {
  const t0 = Date.now();
  const secs = () => Math.round((Date.now() - t0) / 100) / 10;
  const cfgFile = stackConfigFile(o.stack, o.configFile);
  const cfg = existsSync(cfgFile) ? (((parseYaml(readFileSync(cfgFile, "utf8")) as { config?: Record<string, unknown> } | null)?.config) ?? {}) : {};
  const binPath = cfg["meshfleet:headscaleBinaryPath"];
  const fleetFile = path.join(stackHostsDir(o.stack, o.configFile), "fleet.yaml");
  const fleetRaw = existsSync(fleetFile) ? ((parseYaml(readFileSync(fleetFile, "utf8")) as { coordinator?: { headscaleVersion?: unknown; host?: unknown } } | null) ?? {}) : {};
  // Whether the coordinator runs on docker is known only from the evaluated fleet (runtime may come from an
  // imported file); a fleet folder whose files never say "docker" (and import nothing from outside it) is
  // not evaluated here for it.
  let opened: StackAccess | undefined;
  if (mayRunDocker(stackHostsDir(o.stack, o.configFile))) {
    opened = await openStackFleet({ stack: o.stack, configFile: o.configFile });
    const h = opened.fleet.hosts[opened.fleet.coordinator.host];
    if (h?.runtime === "docker") return dockerCoordinatorStep(o, opened, h, fleetFile, secs);
  }
  if (typeof binPath !== "string") return { action: "skipped", detail: "the stack installs no headscale binary (meshfleet:headscaleBinaryPath unset)", seconds: secs() };
  const wanted = typeof fleetRaw.coordinator?.headscaleVersion === "string" ? fleetRaw.coordinator.headscaleVersion : DEFAULT_HEADSCALE_VERSION;
  // Exactly the file the deploy pushes: runDeploy runs the program in root (a worker thread cannot chdir: then in the working folder).
  const workDir = isMainThread ? (o.root ?? REPO_ROOT) : process.cwd();
  const local = headscaleBinaryFile(binPath, workDir);
  if (!existsSync(local) || !statSync(local).isFile()) {
    throw new MeshfleetError(
      `${cfgFile}: meshfleet:headscaleBinaryPath: expected a headscale ${wanted} binary, found no file at ${local} (${JSON.stringify(binPath)}: a relative path is read from the folder the deploy runs in, ${workDir}; ~ is not expanded). ` +
        `Fix: build it (\`meshfleet tools build\`) and set meshfleet:headscaleBinaryPath to its absolute path, or unset meshfleet:headscaleBinaryPath when the host brings its own headscale`,
    );
  }
  const st = statSync(local);
  const seenFile = path.join(o.stateDir, `headscale-version.${o.stack}.json`);
  const seen = existsSync(seenFile) ? (JSON.parse(readFileSync(seenFile, "utf8")) as Seen) : null;
  const coordName = String(fleetRaw.coordinator?.host ?? "");
  if (seen && seen.version === wanted && seen.binary === local && seen.size === st.size && seen.mtimeMs === st.mtimeMs && seen.coordinator === coordName) {
    return { action: "none", detail: `the coordinator ran headscale ${wanted} at the last up`, seconds: secs() };
  }
  const lv = localVersion(local);
  if (lv !== wanted) {
    throw new MeshfleetError(
      `${cfgFile}: meshfleet:headscaleBinaryPath: expected a headscale ${wanted} binary (${fleetFile}: coordinator.headscaleVersion), found ${lv ? `one that reports ${lv}` : "one that does not report a version"} (${binPath}). ` +
        `Fix: point meshfleet:headscaleBinaryPath at headscale ${wanted} (\`meshfleet tools build\` builds the pinned ones), or set coordinator.headscaleVersion to ${lv ?? "the binary's release"}`,
    );
  }

  const a: StackAccess = opened ?? (await openStackFleet({ stack: o.stack, configFile: o.configFile }));
  const c = coordinatorOf(a, "upgrade");
  const conn = connectionTo(a, c.host, { connectTimeoutSeconds: 10, dialAttempts: 3 });
  const session = newSession();
  const remember = (version: string) => {
    mkdirSync(o.stateDir, { recursive: true });
    writeFileSync(seenFile, JSON.stringify({ coordinator: c.host.name, version, binary: local, size: st.size, mtimeMs: st.mtimeMs } satisfies Seen) + "\n");
  };
  try {
    const look = await tryRun(session, conn, `echo @@mf:version@@; if [ -x ${shq(c.binary)} ]; then ${shq(c.binary)} version 2>&1 | head -n 1; fi; echo @@mf:active@@; systemctl is-active headscale.service 2>/dev/null || true`, {
      what: "upgrade: which headscale the coordinator runs",
    });
    if (look.error || look.code !== 0) {
      o.say(`${c.host.name}: cannot read which headscale runs (${look.error ?? `exit ${look.code}`}); the deploy goes on and its own checks decide`);
      return { action: "skipped", detail: "the coordinator could not be read", seconds: secs() };
    }
    const s = sections(look.stdout);
    const running = s.version ? versionOfBanner(s.version) : null;
    const act = upgradeAction(running, wanted, { force: o.force, fleetFile });
    if (act.kind === "none") {
      if (running) remember(running);
      return { action: "none", detail: act.why, seconds: secs() };
    }
    // Before the read-only answer: a preview fails on the refusal `up` would make.
    if (s.active !== "active") {
      throw new MeshfleetError(`${c.host.name}: headscale ${act.from} is not running (${s.active || "unknown"}), so an upgrade to ${act.to} cannot be checked against it; nothing was changed. Fix: start it (systemctl start headscale; journalctl -u headscale), then run \`meshfleet up\` again`);
    }
    if (o.expectNoChanges) {
      return { action: act.kind, pending: true, detail: `headscale on ${c.host.name} would be ${act.kind}d ${act.from} -> ${act.to} (coordinator.headscaleVersion in ${fleetFile}); nothing was changed`, seconds: secs() };
    }
    o.say(`${c.host.name}: headscale ${act.from} -> ${act.to}${act.kind === "downgrade" ? " (a DOWNGRADE, forced)" : ""}: backup, new binary, health check, rollback if it fails`);
    if (o.confirm && !(await o.confirm(`${act.kind} headscale on ${c.host.name} now, before the deploy? [y/N] `))) throw new MeshfleetError(`up: the headscale ${act.kind} was not confirmed; nothing was changed`);
    const stamp = utcStamp();
    const stage = `${UPGRADE_STAGE}/${stamp}`;
    const staged = `${path.dirname(c.binary)}/.headscale-upgrade-${stamp}`;
    // The config the deploy renders for the new release goes in with the binary (the script swaps it only when it differs).
    // The whole file as the fleet renders it (what the deploy then writes too); never a secret's (config.yaml holds paths only).
    const hsConfig = a.fleet.hosts[c.host.name]?.files.find((f) => f.path === c.config);
    const newConfig = hsConfig && !hsConfig.secret && !hsConfig.secretRef ? hsConfig.content : null;
    const script = upgradeScript({
      binary: c.binary,
      staged,
      config: c.config,
      newConfig: newConfig === null ? null : `${stage}/config.yaml`,
      db: c.database.type === "sqlite" ? c.database.path : null,
      postgres: c.database.type === "postgres" ? { ...c.database, dump: `${stage}/before-upgrade.pgdump` } : null,
      backup: c.backupDir !== null ? "systemctl start headscale-backup.service" : null,
      isActive: "systemctl is-active --quiet headscale.service",
      from: act.from,
      to: act.to,
      stamp,
      waitSeconds: o.waitSeconds ?? 60,
      log: `${stage}/upgrade.log`,
      stop: "systemctl stop headscale.service",
      start: "systemctl start headscale.service",
    });
    const bytes = readFileSync(local);
    const up = await session
      .run(conn, ["set -eu", "umask 077", `mkdir -p ${shq(UPGRADE_STAGE)} && chmod 0700 ${shq(UPGRADE_STAGE)}`, `mkdir ${shq(stage)}`, `cat > ${shq(staged)}`, `printf '%s' ${shq(script)} > ${shq(`${stage}/upgrade.sh`)}`, ...(newConfig === null ? [] : [`printf '%s' ${shq(newConfig)} > ${shq(`${stage}/config.yaml`)}`]), `sha256sum < ${shq(staged)} | cut -d' ' -f1`].join("\n"), {
        what: "upgrade: upload the new binary",
        stdin: bytes,
        timeoutMs: 600_000,
        quiet: true,
      })
      .catch((e: Error) => ({ code: 255, stdout: "", stderr: e.message }));
    const sha = (await import("node:crypto")).createHash("sha256").update(bytes).digest("hex");
    if (up.code !== 0 || up.stdout.trim() !== sha) throw new MeshfleetError(`upgrade: the upload of headscale ${act.to} to ${c.host.name} failed (${up.code !== 0 ? `exit ${up.code}: ${(up.stderr || up.stdout).trim().slice(0, 300)}` : "sha256 differs"}); nothing was changed`);
    const unit = UPGRADE_UNIT;
    // How long the CLI waits for the outcome (the unit itself has no start timeout).
    const limit = (o.waitSeconds ?? 60) * 2 + 300;
    const started = await tryRun(session, conn, upgradeUnitCommand(`${stage}/upgrade.sh`), { what: "upgrade: start the guarded upgrade" });
    if (started.error || started.code !== 0) {
      await tryRun(session, conn, `rm -f ${shq(staged)}`, { what: "upgrade: remove the staged binary" });
      throw new MeshfleetError(upgradeStartProblem(c.host.name, started));
    }
    let log = "";
    const outcomeOf = (l: string) => sections(l).result?.split("\n")[0];
    for (let attempt = 0; attempt < 4 && !outcomeOf(log); attempt++) {
      if (attempt > 0) o.say(`${c.host.name}: lost the connection while waiting; the upgrade goes on by itself as ${unit}. Reading its outcome over a new connection`);
      const waited = await tryRun(session, conn, waitScript(`${stage}/upgrade.log`, unit, limit, staged), {
        what: "upgrade: wait for the outcome",
        fresh: attempt > 0,
        timeoutMs: attempt === 0 && o.firstWaitTimeoutMs ? o.firstWaitTimeoutMs : (limit + 60) * 1000,
      });
      log = waited.stdout;
    }
    for (const l of log.split("\n").filter((l) => l.startsWith("upgrade: "))) o.say(`${c.host.name}: ${l}`);
    const outcome = outcomeOf(log) ?? `no outcome in ${stage}/upgrade.log on ${c.host.name} (journalctl -u ${unit})`;
    if (outcome.startsWith("upgraded")) {
      remember(act.to);
      return { action: act.kind, detail: outcome, outcome: "upgraded", seconds: secs() };
    }
    const kind = outcome.startsWith("rolled back:") ? "rolled-back" : outcome.startsWith("rolled back,") ? "rolled-back-unhealthy" : outcome.startsWith("refused") ? "refused" : "unknown";
    throw new MeshfleetError(`${c.host.name}: headscale ${act.from} -> ${act.to}: ${outcome}. The deploy did not go on${kind === "rolled-back" ? `; fix the cause (the log above), or set coordinator.headscaleVersion: ${act.from} in ${fleetFile}` : ""}`);
  } finally {
    session.close();
  }
}
