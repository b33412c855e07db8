/**
 * Issue 15 item 3's drills on `lab up --postgres` (lab/e2e/postgres-variant.ts):
 * the coordinator keeps headscale's database in a Postgres the module runs
 * itself (headscale.database.postgres.local), with headscale.backup on.
 *
 *   - the deploy: postgresql installed by the deploy, the setup unit made the
 *     role and the database, headscale runs on it with every node
 *     registered, the password on no command line, in no unit's environment
 *     and not in the journal (checked first, in the backup drill's item);
 *   - backup and restore: backup-restore.ts with `database: "postgres"`;
 *   - the database guard: a SQLite file beside the Postgres coordinator keeps
 *     headscale from starting (the guard's words in its journal); and
 *     database.type changed back to sqlite makes the deploy fail on the
 *     coordinator, whose agent rolls back, so headscale stays on Postgres
 *     with every node; the lab's fleet is then deployed back as it was.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AGENT_HOST_PATH } from "../../../core/types.ts";
import { PG_SETUP_UNIT } from "../../../modules/headscale-postgres.ts";
import { hsCli } from "../coordinator-runtime.ts";
import { labDeploy } from "../deploy-checks.ts";
import { e2ePaths, STACK } from "../paths.ts";
import { PG_PASSWORD_KEY } from "../postgres-variant.ts";
import { labPulumiEnv, runPulumi } from "../pulumi.ts";
import { backupRestoreDrill } from "./backup-restore.ts";
import { diffLines, hostOn, must, nodesOf, registration, runDrill, sleep, type DrillResult } from "./drill.ts";
import { deployedFleetDir, setStackConfig, writeFleetCopy } from "./fleet-copy.ts";

const DB = "/var/lib/headscale/db.sqlite";

export interface PostgresDrillOptions {
  instance: number;
  /** headscale's CLI on the VPS, as a command prefix. @default hsCli() */
  hs?: string;
  /** tailscale's CLI on the laptop, as a command prefix. */
  ts: string;
  /** The backup drill's fault hook (backup-restore.ts `afterRestore`). */
  afterRestore?: () => Promise<void>;
}

/** The deploy's facts on Postgres, then the backup drill on Postgres. */
export function postgresBackupRestoreDrill(o: PostgresDrillOptions): Promise<DrillResult> {
  return runDrill(async (t) => {
    const facts = await postgresDeployFacts(o.instance, o.hs ?? hsCli());
    const r = await backupRestoreDrill({ instance: o.instance, hs: o.hs, ts: o.ts, database: "postgres", afterRestore: o.afterRestore });
    Object.assign(t, r.timings);
    must(r.ok, r.why);
    return `${facts}; ${r.why}`;
  });
}

/** postgresql installed, its units active, headscale on it with every node, the password in the 0600 file only. */
async function postgresDeployFacts(instance: number, hs: string): Promise<string> {
  const on = hostOn(instance);
  const psql = (sql: string, db = "postgres") => on("vps", `runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d ${db}`, { input: sql });
  const pkg = (await on("vps", "dpkg-query -W -f='${Status} ${Version}' postgresql")).trim();
  must(/^install ok installed \d+/.test(pkg), `postgresql on the VPS: ${pkg}`);
  const active = (await on("vps", `systemctl is-active postgresql ${PG_SETUP_UNIT} headscale || true`)).trim().split("\n");
  must(active.join(",") === "active,active,active", `postgresql, ${PG_SETUP_UNIT}, headscale: ${active.join(", ")}`);
  const dbCfg = (await on("vps", "grep -A1 '^database:' /etc/headscale/config.yaml")).trim();
  must(dbCfg === "database:\n  type: postgres", `headscale's config: ${dbCfg}`);
  const pgpass = (await on("vps", "stat -c '%a %U' /etc/headscale/pgpass")).trim();
  must(pgpass === "600 headscale", `/etc/headscale/pgpass: ${pgpass}, expected 600 headscale`);
  const owner = (await psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'headscale'")).trim();
  must(owner === "headscale", `the headscale database's owner: ${owner || "no such database"}`);
  const ns = await nodesOf(instance, hs);
  must(ns.length >= 3, `nodes registered on Postgres: ${ns.length}, expected 3 or more`);
  const rows = (await psql("SELECT count(*) FROM nodes", "headscale")).trim();
  must(rows === String(ns.length), `the nodes table holds ${rows} rows, headscale lists ${ns.length}`);
  // The password: read from the stack (decrypted, kept in memory), looked for on the VPS without printing it.
  const p = e2ePaths(instance);
  const got = await runPulumi(["config", "get", "--config-file", p.stackConfig, "--stack", STACK, PG_PASSWORD_KEY], { env: labPulumiEnv(instance) });
  must(got.code === 0 && got.stdout.trim().length > 8, `${PG_PASSWORD_KEY} is not in the stack's secret config`);
  const secretPart = got.stdout.trim().slice(3, 15);
  const seen = await on("vps", `p="$(cat)"; n=0; systemctl show -p Environment headscale ${PG_SETUP_UNIT} postgresql | grep -qF -- "$p" && n=$((n+1)); ps -eo args | grep -v grep | grep -qF -- "$p" && n=$((n+1)); journalctl --no-pager -o cat | grep -qF -- "$p" && n=$((n+1)); echo $n`, { input: secretPart });
  must(seen.trim() === "0", "the Postgres password is in a unit's environment, on a command line or in the journal");
  return `postgresql ${pkg.split(" ").pop()} installed by the deploy, headscale on it with ${ns.length} nodes, the password in the 0600 pgpass only`;
}

export interface PostgresGuardDrillOptions {
  instance: number;
  /** headscale's CLI on the VPS, as a command prefix. @default hsCli() */
  hs?: string;
  /**
   * Runs after the SQLite file is put beside the Postgres database, before
   * headscale is restarted: the drill's own test breaks the guard here (its
   * script replaced by one that lets everything through) to show the drill
   * then fails.
   */
  beforeRestart?: () => Promise<void>;
}

/** The database guard on the real unit and on a deploy that switches database.type back to sqlite. */
export function postgresGuardDrill(o: PostgresGuardDrillOptions): Promise<DrillResult> {
  const { instance } = o;
  const hs = o.hs ?? hsCli();
  const on = hostOn(instance);
  const healthy = async () => {
    for (let i = 0; i < 30; i++) {
      if ((await on("vps", `${hs} health >/dev/null 2>&1 && echo ok || true`)).trim() === "ok") return true;
      await sleep(1000);
    }
    return false;
  };
  return runDrill(async (t) => {
    const before = registration(await nodesOf(instance, hs));
    must(before.length >= 3, `nodes registered before the drill: ${before.length}, expected 3 or more`);

    // 1. A SQLite database beside the Postgres coordinator: headscale must not start.
    const t1 = Date.now();
    await on("vps", `test ! -e ${DB} && cp /dev/null ${DB}`);
    let refused = "";
    let journal = "";
    try {
      if (o.beforeRestart) await o.beforeRestart();
      refused = (await on("vps", "systemctl restart headscale && echo started || echo refused", { timeoutMs: 60_000 })).trim();
      journal = await on("vps", "journalctl -u headscale --no-pager -o cat -n 40");
    } finally {
      await on("vps", `rm -f ${DB} && systemctl reset-failed headscale; systemctl start headscale`, { timeoutMs: 60_000 });
    }
    must(refused === "refused", `headscale ${refused} with the SQLite database ${DB} beside its Postgres one: the guard let it through`);
    must(journal.includes(`headscale-database-guard: headscale.database.type is postgres, but the SQLite database ${DB} is on this host`), `the guard's reason is not in headscale's journal: ${journal.split("\n").slice(-5).join(" | ")}`);
    must(journal.includes("or set headscale.database.startEmpty: true to start empty on purpose"), "the guard's journal lines do not give the fixes");
    must(await healthy(), "headscale is not healthy 30 s after the SQLite file was removed");
    t.unitGuardMs = Date.now() - t1;

    // 2. database.type back to sqlite: the deploy fails on the coordinator, whose agent rolls back; then the fleet as it was.
    const p = e2ePaths(instance);
    const cfgBefore = readFileSync(p.stackConfig, "utf8");
    const current = deployedFleetDir(instance);
    let edited = "";
    const status = async () => {
      const x = JSON.parse(await on("vps", `node ${AGENT_HOST_PATH} status --json`)) as { generation: number; hash: string };
      return `${x.generation} ${x.hash}`;
    };
    let why = "";
    let failed: unknown;
    try {
      const pgBlock = /^ {2}database:\n {4}type: postgres\n(?: {4}.*\n| {6}.*\n)*/m;
      must(pgBlock.test(readFileSync(join(current, "vps.yaml"), "utf8")), `${current}/vps.yaml has no headscale.database block on Postgres to switch back`);
      // SQLite, and headscale.backup off (on SQLite it needs sqlite3, which the lab has no package for): headscale
      // would start on a new, empty db.sqlite.
      edited = writeFleetCopy(instance, "drill-sqlite", (f, text) => (f === "vps.yaml" ? text.replace(pgBlock, "  database:\n    type: sqlite\n").replace(/^ {2}backup:\n(?: {4}.*\n)*/m, "") : text));
      setStackConfig(instance, { "meshfleet:hostsDir": edited });
      const gen = await status();
      const t2 = Date.now();
      const r = await labDeploy(instance, { verb: "up", on: ["vps"] });
      t.refusedDeployMs = Date.now() - t2;
      must(!r.ok, "the deploy with headscale.database.type back to sqlite succeeded: the coordinator would have started empty");
      const errs = r.errors.join("\n");
      must(/vps: [\s\S]*failed and was rolled back to generation \d+: units: `systemctl restart headscale\.service` exited with code 1/.test(errs), `the deploy failed, but not by the coordinator's rollback: ${errs.slice(0, 600)}`);
      must((await status()) === gen, `the VPS is not back on its generation ${gen}`);
      const dbCfg = (await on("vps", "grep -A1 '^database:' /etc/headscale/config.yaml")).trim();
      must(dbCfg === "database:\n  type: postgres", `after the rollback headscale's config says ${dbCfg}`);
      must((await on("vps", `test ! -e ${DB} && echo none`)) === "none\n", `${DB} was made by the refused deploy`);
      must((await on("vps", "journalctl -u headscale --no-pager -o cat -n 60")).includes("headscale-database-guard: headscale.database.type is sqlite, but headscale kept its state in Postgres on this host"), "the guard's reason for the sqlite switch is not in headscale's journal");
      let now: string[] = [];
      for (let i = 0; i < 30; i++) {
        now = registration(await nodesOf(instance, hs).catch(() => []));
        if (now.join("\n") === before.join("\n")) break;
        await sleep(1000);
      }
      must(now.join("\n") === before.join("\n"), `after the rolled-back deploy the registrations differ: ${diffLines(before, now)}`);
      why = `a SQLite file beside Postgres: headscale refused to start, the guard's reason in its journal (${(t.unitGuardMs / 1000).toFixed(1)}s); database.type back to sqlite: the deploy failed on vps and rolled back in ${(t.refusedDeployMs / 1000).toFixed(1)}s, headscale stayed on Postgres with the same ${before.length} nodes`;
    } catch (e) {
      failed = e;
    }
    // The fleet as it was (the stack config byte for byte), also after a failed step.
    writeFileSync(p.stackConfig, cfgBefore);
    if (edited) rmSync(edited, { recursive: true, force: true });
    const t3 = Date.now();
    const back = await labDeploy(instance, { verb: "up", on: ["vps"] });
    t.deployBackMs = Date.now() - t3;
    const backWhy = back.ok ? "" : `; deploying the fleet back (Postgres, as before) failed: ${back.errors.join("; ")}`;
    if (failed) throw new Error(`${(failed as Error).message}${backWhy}`);
    must(back.ok, backWhy.slice(2));
    return `${why}; deployed back in ${(t.deployBackMs / 1000).toFixed(1)}s`;
  });
}
