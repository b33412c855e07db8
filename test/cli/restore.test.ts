/**
 * The restore's guard and the backup's pull, for real, on this machine: a
 * real headscale 0.29.2 on loopback (config rendered by the headscale module,
 * paths moved under a temp root), users and nodes registered, a snapshot
 * taken by the module's own backup script while it serves, pulled through
 * `pullScript` + `writeSnapshot` (the same code `meshfleet backup` runs, with
 * sh here instead of ssh), the database deleted, and `restoreScript` run with
 * stop/start commands that manage that headscale:
 *   - the same users and node IPs come back, the database it replaced is
 *     kept aside, the restored file is 0600;
 *   - a corrupt snapshot is refused before anything changes (the live
 *     database keeps its bytes, headscale keeps serving);
 *   - a SQLite file that passes integrity_check but headscale does not come
 *     up with (the wrong nodes) makes the guard put the live database back.
 * The same for Postgres (restorePostgresScript): a real PostgreSQL 15 on
 * loopback (run as nobody), the snapshot a pg_dump by the backup script, the
 * database emptied, restored: the same users and node IPs, the live database
 * kept as a dump first; a corrupt dump refused with nothing changed; a dump
 * headscale does not come up with put back from the kept dump.
 * In CI nothing skips (test/lab/ci-gate.ts).
 */
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sections } from "../../cli/fleet-hosts.ts";
import { localSqliteFacts, pullScript, writeSnapshot } from "../../cli/commands/backup.ts";
import { readLocalSnapshot, restoreOutcome, restorePostgresScript, restoreScript, RESTORE_EXIT } from "../../cli/commands/restore.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { BACKUP_SCRIPT } from "../../modules/headscale-backup.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { makeCtx } from "../modules/realtools/context.ts";
import * as rt from "../modules/realtools/index.ts";

const NOISE = derivePrivateKey("test-seed-0123456789", "noise");
const skip = skipUnlessCi(rt.missing("headscale") || (!existsSync("/usr/bin/sqlite3") && "sqlite3 is missing (apt-get install sqlite3)"));

const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

describe.skipIf(skip)("restore with its guard, against a real headscale 0.29.2", () => {
  let t: { dir: string; cleanup: () => void };
  let cfg = "";
  let db = "";
  let start = "";
  let stop = "";
  let hsBin = "";
  let backups = "";
  let exe = "";
  const sh = (script: string, timeout = 60_000) => spawnSync("sh", ["-c", script], { encoding: "utf8", timeout });
  const hs = (...args: string[]) => {
    const r = spawnSync(hsBin, ["-c", cfg, ...args, "-o", "json"], { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`headscale ${args.join(" ")}: ${r.stderr}${r.stdout}`);
    return JSON.parse(r.stdout);
  };
  const state = () => ({
    users: ((hs("users", "list") ?? []) as { name: string }[]).map((u) => u.name).sort(),
    nodes: ((hs("nodes", "list") ?? []) as { given_name: string; ip_addresses: string[] }[]).map((n) => `${n.given_name} ${n.ip_addresses.join(",")}`).sort(),
  });
  const waitHealthy = () => {
    const r = sh(`i=0; while [ $i -lt 150 ]; do ${hsBin} -c ${cfg} health >/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.2; done; exit 1`);
    expect(r.status, readFileSync(path.join(t.dir, "hs.log"), "utf8").slice(-2000)).toBe(0);
  };
  const restore = async (snapshot: string, stamp: string, waitSeconds = 20) => {
    const log = path.join(t.dir, `restore-${stamp}.log`);
    const script = restoreScript({ db, snapshot, stamp, headscale: hsBin, config: cfg, stop, start, waitSeconds, log });
    const file = path.join(t.dir, `restore-${stamp}.sh`);
    writeFileSync(file, script, { mode: 0o700 });
    const t0 = Date.now();
    // Not spawnSync: the guard's path takes tens of seconds, and a blocked worker loses vitest's RPC.
    const code = await promisify(execFile)("sh", [file], { timeout: 180_000 }).then(() => 0, (e: { code?: number }) => e.code ?? -1);
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    return { code, log: text, outcome: restoreOutcome(text), ms: Date.now() - t0 };
  };

  let before: { users: string[]; nodes: string[] };
  let snapshotDir = "";

  beforeAll(async () => {
    hsBin = rt.toolPath("headscale")!;
    t = rt.tempDir("mf-restore");
    const ctx: ModuleContext = makeCtx("vps", { vps: { address: "203.0.113.10", runtime: "systemd", options: { headscale: { enable: true, backup: { enable: true, keep: 3 } } } } });
    const c: Contribution = headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
    ({ cfg } = await rt.loopbackHeadscale(t.dir, c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content, NOISE));
    db = path.join(t.dir, "lib", "db.sqlite");
    backups = path.join(t.dir, "backups");
    exe = path.join(t.dir, "headscale-backup");
    const script = c.files!.find((f) => f.path === BACKUP_SCRIPT)!.content;
    writeFileSync(exe, rt.relocateHeadscale(script, t.dir).replace("dir='/var/backups/headscale'", `dir='${backups}'`), { mode: 0o700 });
    // headscale as this test's own "service": started in the background with its pid in a file, stopped by that pid.
    const pid = path.join(t.dir, "hs.pid");
    start = `${hsBin} serve -c ${cfg} >>${path.join(t.dir, "hs.log")} 2>&1 & echo $! > ${pid}`;
    stop = `if [ -f ${pid} ]; then kill "$(cat ${pid})" 2>/dev/null; while kill -0 "$(cat ${pid})" 2>/dev/null; do sleep 0.1; done; rm -f ${pid}; fi`;
    expect(sh(start).status).toBe(0);
    waitHealthy();
    hs("users", "create", "alice");
    hs("users", "create", "bob");
    for (const [name, user] of [["laptop", "alice"], ["nas", "bob"], ["phone", "alice"]]) {
      const id = `hskey-authreq-${name}${"x".repeat(24 - name.length)}`;
      hs("debug", "create-node", "--name", name, "--user", user, "--key", id);
      hs("auth", "register", "--user", user, "--auth-id", id);
    }
    before = state();
    expect(before.users).toEqual(["alice", "bob"]);
    expect(before.nodes).toHaveLength(3);
  }, 120_000);

  afterAll(() => {
    if (stop) sh(stop);
    t?.cleanup();
  });

  it("pulls the newest snapshot as `meshfleet backup` does: hashes checked, 0700/0600, integrity ok, counts", () => {
    for (let i = 0; i < 2; i++) expect(sh(`sh ${exe}`).status).toBe(0);
    const r = sh(pullScript(backups));
    expect(r.status, r.stderr).toBe(0);
    const sent = sections(r.stdout);
    const out = path.join(t.dir, "pulled");
    const w = writeSnapshot(out, sent);
    snapshotDir = w.dir;
    expect(path.basename(w.dir)).toBe(readdirSync(backups).sort().at(-1));
    expect(w.alreadyHere).toBe(false);
    expect(readdirSync(w.dir).sort()).toEqual(["config.yaml", "db.sqlite", "policy.hujson"]);
    expect(statSync(out).mode & 0o777).toBe(0o700);
    expect(statSync(w.dir).mode & 0o777).toBe(0o700);
    for (const f of w.files) {
      expect(statSync(path.join(w.dir, f.name)).mode & 0o777, f.name).toBe(0o600);
      expect(sha(path.join(w.dir, f.name))).toBe(sha(path.join(backups, path.basename(w.dir), f.name)));
    }
    expect(localSqliteFacts(path.join(w.dir, "db.sqlite"))).toEqual({ integrity: "ok", users: 2, nodes: 3 });
    // Pulled again: the same snapshot is not written twice.
    expect(writeSnapshot(out, sections(sh(pullScript(backups)).stdout)).alreadyHere).toBe(true);
    // A file that does not arrive whole is refused, and nothing is written.
    const bad = { ...sent, "file-1": sent["file-1"]!.slice(8) };
    expect(() => writeSnapshot(path.join(t.dir, "pulled-bad"), bad)).toThrow(/arrived with .* bytes and sha256 .*; nothing was written/);
    expect(existsSync(path.join(t.dir, "pulled-bad"))).toBe(false);
  }, 60_000);

  it("the database deleted, the restore brings back the same users and node IPs; the database it replaced is kept", async () => {
    expect(snapshotDir).not.toBe("");
    // The coordinator loses its database: headscale comes back on an empty one.
    sh(stop);
    for (const f of [db, `${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
    sh(start);
    waitHealthy();
    expect(state()).toEqual({ users: [], nodes: [] });
    const snap = readLocalSnapshot(snapshotDir);
    expect(snap).toMatchObject({ kind: "sqlite", facts: { integrity: "ok", users: 2, nodes: 3 } });

    const r = await restore(snap.file, "20261130T180000Z");
    expect(r.code, r.log).toBe(RESTORE_EXIT.restored);
    expect(r.outcome).toMatch(/^restored: 3 node\(s\); the database that was live is kept as .*db\.sqlite\.before-restore-20261130T180000Z$/);
    console.log(`restore (sqlite, 3 nodes, headscale stop/start and health): ${r.ms} ms`);
    expect(state()).toEqual(before);
    expect(statSync(db).mode & 0o777).toBe(0o600);
    // The empty database that was live is kept, never deleted.
    const kept = `${db}.before-restore-20261130T180000Z`;
    expect(existsSync(kept)).toBe(true);
    expect(localSqliteFacts(kept)).toMatchObject({ integrity: "ok", nodes: 0 });
  }, 120_000);

  it("a corrupt snapshot is refused before anything changes; the live database keeps its bytes and headscale keeps serving", async () => {
    const bad = path.join(t.dir, "corrupt.sqlite");
    copyFileSync(path.join(snapshotDir, "db.sqlite"), bad);
    const bytes = readFileSync(bad);
    // Garbage over every page after the first (the header stays valid, so it still looks like SQLite).
    for (let i = 4096; i < bytes.length; i += 512) bytes.fill(0xa5, i, i + 64);
    writeFileSync(bad, bytes);
    // Refused here already (meshfleet restore checks before it sends anything) ...
    expect(() => readLocalSnapshot(bad)).toThrow(/fails SQLite's integrity_check .*nothing was sent/);
    // ... and on the host, by the script itself.
    sh(`${hsBin} -c ${cfg} health`); // headscale is up
    const liveBefore = sha(db);
    const r = await restore(bad, "20261130T181000Z");
    expect(r.code, r.log).toBe(RESTORE_EXIT.refused);
    expect(r.outcome).toMatch(/^refused: the snapshot fails integrity_check .*; nothing was changed$/);
    expect(sha(db)).toBe(liveBefore);
    expect(existsSync(`${db}.before-restore-20261130T181000Z`)).toBe(false);
    expect(state()).toEqual(before);
  }, 120_000);

  it("a snapshot headscale does not come up with: the guard puts the live database back", async () => {
    // Passes integrity_check and has a nodes table with one row, but it is not headscale's schema.
    const odd = path.join(t.dir, "odd.sqlite");
    rmSync(odd, { force: true });
    expect(sh(`sqlite3 ${odd} "CREATE TABLE nodes(id INTEGER PRIMARY KEY, junk TEXT); INSERT INTO nodes(junk) VALUES ('x');"`).status).toBe(0);
    const liveBefore = sha(db);
    const r = await restore(odd, "20261130T182000Z", 8);
    expect(r.code, r.log).toBe(RESTORE_EXIT.putBack);
    expect(r.log).toContain("restore: headscale health does not answer (after 8s)");
    expect(r.outcome).toMatch(/^put back: the snapshot did not come up \(set aside as .*db\.sqlite\.failed-restore-20261130T182000Z\); headscale runs on the database that was live$/);
    expect(state()).toEqual(before);
    expect(existsSync(`${db}.failed-restore-20261130T182000Z`)).toBe(true);
    expect(existsSync(`${db}.before-restore-20261130T182000Z`)).toBe(false);
    // The same database came back (headscale may have written to it since, so compare what it holds).
    expect(localSqliteFacts(db)).toMatchObject({ integrity: "ok", users: 2, nodes: 3 });
    void liveBefore;
  }, 120_000);

  it("with no database at all (removed while headscale was stopped), the restore puts the snapshot in", async () => {
    sh(stop);
    for (const f of [db, `${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
    const r = await restore(path.join(snapshotDir, "db.sqlite"), "20261130T183000Z");
    expect(r.code, r.log).toBe(RESTORE_EXIT.restored);
    expect(r.log).toContain("there was no database at");
    expect(state()).toEqual(before);
  }, 120_000);
});

const PG = "/usr/lib/postgresql/15/bin";
const pgSkip = skipUnlessCi(!existsSync(`${PG}/postgres`) || !existsSync("/usr/bin/pg_restore") ? "PostgreSQL 15 is not installed (apt-get install postgresql-15 postgresql-client)" : "") || skip;

describe.skipIf(pgSkip)("restore with its guard, Postgres, against a real headscale 0.29.2 and PostgreSQL 15", () => {
  let t: { dir: string; cleanup: () => void };
  let pgRoot = "";
  let pgPort = 0;
  let cfg = "";
  let hsBin = "";
  let start = "";
  let stop = "";
  let pgpass = "";
  let snapshot = "";
  let before: { users: string[]; nodes: string[] };
  const asNobody = (cmd: string, args: string[]) =>
    spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", cmd, ...args], { encoding: "utf8", timeout: 60_000, env: { ...process.env, HOME: pgRoot } });
  const psql = (sql: string, db = "postgres") => {
    const r = asNobody("/usr/bin/psql", ["-X", "-v", "ON_ERROR_STOP=1", "-h", pgRoot, "-p", String(pgPort), "-U", "postgres", "-d", db, "-c", sql]);
    expect(r.status, r.stderr).toBe(0);
  };
  const sh = (script: string) => spawnSync("sh", ["-c", script], { encoding: "utf8", timeout: 60_000 });
  const hs = (...args: string[]) => {
    const r = spawnSync(hsBin, ["-c", cfg, ...args, "-o", "json"], { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`headscale ${args.join(" ")}: ${r.stderr}${r.stdout}`);
    return JSON.parse(r.stdout);
  };
  const state = () => ({
    users: ((hs("users", "list") ?? []) as { name: string }[]).map((u) => u.name).sort(),
    nodes: ((hs("nodes", "list") ?? []) as { given_name: string; ip_addresses: string[] }[]).map((n) => `${n.given_name} ${n.ip_addresses.join(",")}`).sort(),
  });
  const waitHealthy = () => {
    const r = sh(`i=0; while [ $i -lt 150 ]; do ${hsBin} -c ${cfg} health >/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.2; done; exit 1`);
    expect(r.status, readFileSync(path.join(t.dir, "hs.log"), "utf8").slice(-2000)).toBe(0);
  };
  const restore = async (snap: string, stamp: string, waitSeconds = 20) => {
    const log = path.join(t.dir, `restore-${stamp}.log`);
    const kept = path.join(t.dir, `before-restore-${stamp}.pgdump`);
    const script = restorePostgresScript({
      snapshot: snap, stamp, headscale: hsBin, config: cfg, stop, start, waitSeconds, log, kept,
      postgres: { host: "127.0.0.1", port: pgPort, name: "headscale", user: "headscale", sslmode: "disable", pgpass },
    });
    const file = path.join(t.dir, `restore-${stamp}.sh`);
    writeFileSync(file, script, { mode: 0o700 });
    const t0 = Date.now();
    const code = await promisify(execFile)("sh", [file], { timeout: 180_000 }).then(() => 0, (e: { code?: number }) => e.code ?? -1);
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    return { code, log: text, outcome: restoreOutcome(text), kept, ms: Date.now() - t0 };
  };

  beforeAll(async () => {
    hsBin = rt.toolPath("headscale")!;
    // PostgreSQL will not run as root: its folder belongs to nobody.
    pgRoot = mkdtempSync(path.join(tmpdir(), "mf-pg-restore-"));
    chmodSync(pgRoot, 0o755);
    chownSync(pgRoot, 65534, 65534);
    pgPort = await rt.freePort();
    const data = path.join(pgRoot, "data");
    const init = asNobody(`${PG}/initdb`, ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"]);
    expect(init.status, init.stderr).toBe(0);
    const up = asNobody(`${PG}/pg_ctl`, ["-D", data, "-l", path.join(pgRoot, "log"), "-w", "-o", `-p ${pgPort} -k ${pgRoot} -c listen_addresses=127.0.0.1`, "start"]);
    expect(up.status, up.stderr).toBe(0);
    psql("CREATE ROLE headscale LOGIN PASSWORD 'pw-restore'");
    psql("CREATE DATABASE headscale OWNER headscale");

    t = rt.tempDir("mf-restore-pg");
    const ctx: ModuleContext = makeCtx("vps", { vps: { address: "203.0.113.10", runtime: "systemd", options: { headscale: { enable: true, backup: { enable: true, keep: 3 }, database: { type: "postgres", postgres: { host: "127.0.0.1", port: pgPort } } } } } });
    const c: Contribution = headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
    ({ cfg } = await rt.loopbackHeadscale(t.dir, c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content, NOISE));
    pgpass = path.join(t.dir, "etc", "pgpass");
    writeFileSync(pgpass, "*:*:*:headscale:pw-restore\n", { mode: 0o600 });
    const backups = path.join(t.dir, "backups");
    const exe = path.join(t.dir, "headscale-backup");
    writeFileSync(exe, rt.relocateHeadscale(c.files!.find((f) => f.path === BACKUP_SCRIPT)!.content, t.dir).replace("dir='/var/backups/headscale'", `dir='${backups}'`), { mode: 0o700 });
    const pid = path.join(t.dir, "hs.pid");
    // headscale reads the password file from PGPASSFILE, as the unit's Environment= gives it.
    start = `PGPASSFILE=${pgpass} ${hsBin} serve -c ${cfg} >>${path.join(t.dir, "hs.log")} 2>&1 & echo $! > ${pid}`;
    stop = `if [ -f ${pid} ]; then kill "$(cat ${pid})" 2>/dev/null; while kill -0 "$(cat ${pid})" 2>/dev/null; do sleep 0.1; done; rm -f ${pid}; fi`;
    expect(sh(start).status).toBe(0);
    waitHealthy();
    hs("users", "create", "alice");
    hs("users", "create", "bob");
    for (const [name, user] of [["laptop", "alice"], ["nas", "bob"]]) {
      const id = `hskey-authreq-${name}${"x".repeat(24 - name.length)}`;
      hs("debug", "create-node", "--name", name, "--user", user, "--key", id);
      hs("auth", "register", "--user", user, "--auth-id", id);
    }
    before = state();
    expect(before.nodes).toHaveLength(2);
    const snap = sh(`sh ${exe}`);
    expect(snap.status, snap.stderr).toBe(0);
    snapshot = path.join(backups, readdirSync(backups).sort().at(-1)!, "db.pgdump");
    expect(readLocalSnapshot(path.dirname(snapshot))).toMatchObject({ kind: "postgres" });
  }, 180_000);

  afterAll(() => {
    if (stop) sh(stop);
    if (pgRoot) {
      asNobody(`${PG}/pg_ctl`, ["-D", path.join(pgRoot, "data"), "-m", "immediate", "-w", "stop"]);
      rmSync(pgRoot, { recursive: true, force: true });
    }
    t?.cleanup();
  });

  it("the database emptied, the restore brings back the same users and node IPs; the live one is kept as a dump", async () => {
    sh(stop);
    psql("DROP DATABASE headscale");
    psql("CREATE DATABASE headscale OWNER headscale");
    sh(start);
    waitHealthy();
    expect(state()).toEqual({ users: [], nodes: [] });
    const r = await restore(snapshot, "20261130T184000Z");
    expect(r.code, r.log).toBe(RESTORE_EXIT.restored);
    expect(r.outcome).toBe(`restored: 2 node(s); the database that was live is kept as ${r.kept}`);
    console.log(`restore (postgres, 2 nodes, pg_dump of the live database, pg_restore, health): ${r.ms} ms`);
    expect(state()).toEqual(before);
    expect(statSync(r.kept).mode & 0o777).toBe(0o600);
    expect(readFileSync(r.kept).subarray(0, 5).toString("latin1")).toBe("PGDMP");
  }, 120_000);

  it("a corrupt dump is refused before anything changes", async () => {
    const bad = path.join(t.dir, "corrupt.pgdump");
    const bytes = readFileSync(snapshot);
    writeFileSync(bad, Buffer.concat([bytes.subarray(0, 5), Buffer.alloc(200, 0xa5)]));
    const r = await restore(bad, "20261130T185000Z");
    expect(r.code, r.log).toBe(RESTORE_EXIT.refused);
    expect(r.outcome).toMatch(/^refused: the snapshot is not a readable pg_dump archive \(.+\); nothing was changed$/);
    expect(existsSync(r.kept)).toBe(false);
    expect(state()).toEqual(before);
  }, 120_000);

  it("a dump headscale does not come up with: the guard restores the kept dump", async () => {
    // A database with a nodes table (one row) that is not headscale's schema, dumped as pg_dump would.
    psql("CREATE DATABASE oddone OWNER headscale");
    psql("CREATE TABLE nodes(id serial PRIMARY KEY, junk text); INSERT INTO nodes(junk) VALUES ('x'); ALTER TABLE nodes OWNER TO headscale;", "oddone");
    const odd = path.join(t.dir, "odd.pgdump");
    const d = spawnSync("pg_dump", ["--no-password", "--host=127.0.0.1", `--port=${pgPort}`, "--username=headscale", "--dbname=oddone", "--format=custom", `--file=${odd}`], { encoding: "utf8", env: { ...process.env, PGPASSFILE: pgpass } });
    expect(d.status, d.stderr).toBe(0);
    const r = await restore(odd, "20261130T186000Z", 8);
    expect(r.code, r.log).toBe(RESTORE_EXIT.putBack);
    // The whole guard ran: the snapshot went in, headscale did not answer, the kept dump went back.
    expect(r.log).toContain("restore: headscale health does not answer (after 8s)\nrestore: the snapshot did not come up; putting the database that was live back\nrestore: headscale answers: healthy, 2 node(s)");
    expect(r.outcome).toBe(`put back: the snapshot did not come up; headscale runs on the database that was live (also kept as ${r.kept})`);
    expect(state()).toEqual(before);
  }, 180_000);
});
