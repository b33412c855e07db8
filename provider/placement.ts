/**
 * Moving the coordinator (issue 15 item 2): what meshfleet:headscale:Placement
 * runs when `coordinator.host` names another host. Pure: the scripts, their
 * parsing and the steps as words; provider/resources/placement.ts runs them.
 *
 * The move, before the new host's generation starts headscale:
 *   1. on the old host, headscale is stopped (its unit or its container) and
 *      its SQLite database (with any WAL file) is read, with sha256 sums;
 *   2. on the new host, the `headscale` system user is made as the
 *      generation's sysusers file makes it, a database already there is kept
 *      aside (never deleted), and the copy lands 0600 headscale:headscale in
 *      /var/lib/headscale;
 *   3. the new host's generation then starts headscale on it, with the same
 *      Noise and DERP keys (they derive from the stack's keySeed).
 * The old host's database stays where it was, stopped, for a move back: a
 * move back is the same move the other way, and the database on the host
 * it returns to is kept aside first.
 */
import { shq } from "./quote.ts";

export const STATE_DIR = "/var/lib/headscale";
/** The sysusers line the coordinator's generation installs (/etc/sysusers.d/headscale.conf). */
export const SYSUSERS_LINE = `u headscale - "Headscale coordination server" ${STATE_DIR} /usr/sbin/nologin`;
const MARK = "MESHFLEET-DATABASE";

export interface PlacementSide {
  host: string;
  runtime: "systemd" | "docker";
  /** The headscale container (docker runtime). */
  container?: string;
  /** SQLite database path (database.sqlite.path). */
  databasePath: string;
}

/** The stack setting that says the database and keys were moved by hand: the move then only records the new host. */
export const MOVED_BY_HAND = "meshfleet:coordinatorMovedByHand";
const byHand = (to: string) => `then \`pulumi config set ${MOVED_BY_HAND} true\` and \`meshfleet up\` (headscale starts on ${to} with what you put there; unset it after: \`pulumi config rm ${MOVED_BY_HAND}\`)`;

type MoveFacts = { from: string; to: string; databaseType: "sqlite" | "postgres"; postgresHost?: string; adopted: boolean };

/** Why a move cannot be done by meshfleet, with the steps to do it by hand; null when it can (plan states it as is). */
export function moveRefusalReason(o: MoveFacts): string | null {
  if (o.adopted) {
    return (
      `the coordinator was taken over with headscale.adopt, so its Noise and DERP keys are files on ${o.from} that derive from nothing meshfleet holds. ` +
      `Moving it would give the nodes a coordinator with another key. Fix: stop headscale on ${o.from}, copy its database and noise_private.key and derp_server_private.key (a snapshot from \`npx meshfleet backup --stack S --now\` holds them) into ${STATE_DIR} on ${o.to} (0600, owned by headscale), ${byHand(o.to)}; or keep coordinator.host: ${o.from}.`
    );
  }
  if (o.databaseType === "postgres" && /^(localhost|127\.|::1$|\/)/.test(o.postgresHost ?? "localhost")) {
    return (
      `headscale's Postgres database is on the coordinator itself (database.postgres.host: ${o.postgresHost ?? "localhost"}), and meshfleet moves SQLite databases only. ` +
      `Fix: \`npx meshfleet backup --stack S --now\` (a pg_dump), stop headscale on ${o.from}, make the database on ${o.to} and pg_restore the dump there, ${byHand(o.to)}; or point database.postgres.host at a server both hosts reach.`
    );
  }
  return null;
}

/** The deploy's refusal of a move (`moveRefusalReason`, as the provider's error says it); null when it can. */
export function moveRefusal(o: MoveFacts): string | null {
  const why = moveRefusalReason(o);
  return why && `coordinator ${o.from} -> ${o.to}: ${why} Nothing was changed.`;
}

/**
 * The steps of a move, as `plan`, `preview` and the deploy's log state them.
 * With `postgresHost` (a database server both hosts reach) nothing is carried:
 * the old headscale only stops.
 */
export function moveSteps(from: string, to: string, serverUrl: string, postgresHost?: string): string[] {
  const database = postgresHost
    ? [
        `headscale on ${from} is stopped (two headscales on one database would both hand out addresses)`,
        `the database stays on ${postgresHost}: nothing is copied`,
      ]
    : [
        `headscale on ${from} is stopped and its database read (it stays on ${from}, stopped, for a move back)`,
        `the database goes to ${to} (a database already there is kept aside, not deleted), 0600 headscale:headscale`,
      ];
  return [
    ...database,
    `${to}'s generation starts headscale with the same Noise and DERP keys (they derive from keySeed), so nodes need no new login`,
    `${from}'s generation no longer runs headscale`,
    `you point ${serverUrl} at ${to} (its DNS record, or the address moves), before this \`up\` when ${to}'s proxy gets its certificate by ACME (the CA checks ${to}); until then nodes keep their tunnels but reach no coordinator`,
  ];
}

/** Stop headscale on the old host, and fail (exit 4) if it is still running: a live database is never copied. */
export function stopScript(from: Pick<PlacementSide, "runtime" | "container">): string {
  const c = shq(from.container ?? "headscale");
  return from.runtime === "docker"
    ? [
        `docker stop ${c} >/dev/null 2>&1 || true`,
        `if [ "$(docker inspect -f '{{.State.Running}}' ${c} 2>/dev/null)" = true ]; then echo "headscale's container ${from.container ?? "headscale"} is still running after docker stop" >&2; exit 4; fi`,
      ].join("\n")
    : ["systemctl stop headscale.service 2>/dev/null || true", `if systemctl is-active --quiet headscale.service; then echo "headscale.service is still active after systemctl stop" >&2; exit 4; fi`].join("\n");
}

/** Start headscale on the old host again (a move that failed before the new host got the database). */
export function restartScript(from: Pick<PlacementSide, "runtime" | "container">): string {
  return from.runtime === "docker" ? `docker start ${shq(from.container ?? "headscale")} >/dev/null` : "systemctl start headscale.service";
}

/**
 * On the old host: the database must be there (checked before anything
 * stops), then headscale stopped, then its database files printed as base64
 * between markers, each with its sha256. With WAL, the -wal and -shm files
 * go with it; without, a hot rollback journal (-journal) does.
 */
export function readScript(from: PlacementSide): string {
  const db = shq(from.databasePath);
  return [
    "set -eu",
    `test -f ${db} || { echo ${shq(`no database at ${from.databasePath}`)} >&2; exit 3; }`,
    stopScript(from),
    `for f in ${db} ${db}-wal ${db}-shm ${db}-journal; do`,
    `  [ -f "$f" ] || continue`,
    `  echo "${MARK} $(basename "$f") $(sha256sum "$f" | cut -d' ' -f1)"`,
    `  base64 -w0 "$f"; echo`,
    "done",
  ].join("\n");
}

export interface DatabaseFile {
  name: string;
  sha256: string;
  base64: string;
}

/** The files readScript printed; throws when the output is not whole. */
export function parseRead(stdout: string): DatabaseFile[] {
  const lines = stdout.split("\n");
  const out: DatabaseFile[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = new RegExp(`^${MARK} (\\S+) ([0-9a-f]{64})$`).exec(lines[i]!);
    if (!m) continue;
    const body = lines[i + 1] ?? "";
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new Error(`the copy of ${m[1]} is not whole`);
    out.push({ name: m[1]!, sha256: m[2]!, base64: body });
    i++;
  }
  if (!out.some((f) => !/-(wal|shm)$/.test(f.name))) throw new Error("no database file in the old coordinator's answer");
  return out;
}

/** Where the copy waits on the new host, beside the database (same filesystem: put in place by rename), root 0700. */
export function stageDir(to: Pick<PlacementSide, "databasePath">, stamp: string): string {
  const dir = to.databasePath.slice(0, to.databasePath.lastIndexOf("/")) || "";
  return `${dir}/.meshfleet-move-${stamp}`;
}

/** One file of the copy into the stage on the new host (its bytes on stdin), checked against its sum. */
export function stageScript(to: Pick<PlacementSide, "databasePath">, f: Pick<DatabaseFile, "name" | "sha256">, stamp: string): string {
  if (!/^[A-Za-z0-9._-]+$/.test(f.name)) throw new Error(`unexpected database file name ${JSON.stringify(f.name)}`);
  const dir = stageDir(to, stamp);
  return [
    "set -eu",
    "umask 077",
    `mkdir -p ${shq(dir)}`,
    `cat > ${shq(`${dir}/${f.name}`)}`,
    `echo ${shq(`${f.sha256}  ${dir}/${f.name}`)} | sha256sum -c --quiet - || { echo ${shq(`${f.name} arrived damaged`)} >&2; exit 5; }`,
  ].join("\n");
}

/**
 * On the new host, once every file is staged: the headscale user (as the
 * generation's sysusers file makes it), any database there kept aside, the
 * copy put in place 0600 headscale:headscale.
 */
export function installScript(to: PlacementSide, stamp: string): string {
  const path = to.databasePath;
  const dir = path.slice(0, path.lastIndexOf("/")) || "/";
  const base = path.slice(path.lastIndexOf("/") + 1);
  const aside = `${dir}/before-move-${stamp}`;
  const stage = shq(stageDir(to, stamp));
  return [
    "set -eu",
    "umask 077",
    `printf '%s\\n' ${shq(SYSUSERS_LINE)} | systemd-sysusers - >/dev/null`,
    `mkdir -p ${shq(dir)}`,
    // What is there (the database of an earlier stay, on a move back) is kept aside, never deleted.
    `if ls ${shq(dir)}/${shq(base)}* >/dev/null 2>&1; then mkdir -p ${shq(aside)}; mv ${shq(dir)}/${shq(base)}* ${shq(aside)}/; echo ${shq(`kept aside: ${aside}`)}; fi`,
    `chown headscale:headscale ${stage}/*; chmod 0600 ${stage}/*`,
    `mv ${stage}/* ${shq(dir)}/; rmdir ${stage}`,
    // Copies staged by attempts that failed before this one (root-only database copies) go.
    `rm -rf ${shq(dir)}/.meshfleet-move-*`,
    // headscale's StateDirectory= is 0750 headscale; make it so now, as the unit would (that folder only).
    ...(dir === STATE_DIR ? [`chown headscale:headscale ${shq(dir)}; chmod 0750 ${shq(dir)}`] : []),
    // A move back to a host whose generation still runs headscale (the deploy that moved it away
    // failed before that host's switch): start it on the database it was just given. The database is
    // in place by then: a restart that fails is said, not a failed move (the deploy's checks follow).
    to.runtime === "systemd"
      ? "if systemctl cat headscale.service >/dev/null 2>&1; then if systemctl restart headscale.service; then echo restarted; else echo 'headscale.service did not restart here (journalctl -u headscale)'; fi; fi"
      : `if docker inspect ${shq(to.container ?? "headscale")} >/dev/null 2>&1; then if docker restart ${shq(to.container ?? "headscale")} >/dev/null; then echo restarted; else echo 'headscale did not restart here (docker logs headscale)'; fi; fi`,
  ].join("\n");
}
