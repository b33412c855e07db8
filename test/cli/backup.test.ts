/**
 * `meshfleet backup` and `meshfleet restore` without a host: argument
 * handling (exit 2 with the fix), what each refuses before anything is sent
 * (a fleet with backups off, a Postgres coordinator, docker, a non-terminal
 * without --yes), the reading of the rendered backup script and of what the
 * host sends, and the restore script's refusals run for real with sh and
 * sqlite3 (stop/start commands that would leave a mark if called). The
 * restore against a real headscale is test/cli/restore.test.ts.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { UsageError } from "../../cli/args.ts";
import { backupDirOf, bytes, command as backupCommand, coordinatorOf, defaultOutDir, pullBackup, stampTime, writeSnapshot } from "../../cli/commands/backup.ts";
import { command as restoreCommand, readLocalSnapshot, restore, restoreOutcome, restorePlan, restoreScript, RESTORE_EXIT, waitScript } from "../../cli/commands/restore.ts";
import { openStackFleet } from "../../cli/fleet-hosts.ts";
import { backupScript } from "../../modules/headscale-backup.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import * as rt from "../modules/realtools/index.ts";

let cleanups: (() => void)[] = [];
afterEach(() => {
  cleanups.forEach((c) => c());
  cleanups = [];
});

/** A fleet (BASE with `vps` extra lines) and a stack config file pointing at it. */
async function stackWith(vpsExtra: string) {
  const f = writeFleet({ "vps.yaml": BASE["vps.yaml"] + vpsExtra });
  cleanups.push(f.cleanup);
  const configFile = path.join(path.dirname(f.dir), "Pulumi.fx.yaml");
  writeFileSync(configFile, stringify({ config: { "meshfleet:hostsDir": f.dir } }));
  return openStackFleet({ stack: "fx", configFile });
}

const noSqlite = !existsSync("/usr/bin/sqlite3") && "sqlite3 is missing (apt-get install sqlite3)";

/** A SQLite file with headscale's users and nodes tables (enough for the checks made before anything is sent). */
function headscaleLike(dir: string): string {
  const f = path.join(dir, "db.sqlite");
  const r = spawnSync("sqlite3", [f, "CREATE TABLE users(id); CREATE TABLE nodes(id); INSERT INTO users VALUES (1); INSERT INTO nodes VALUES (1), (2);"], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return f;
}

const usage = async (cmd: typeof backupCommand, argv: string[]) => {
  try {
    await cmd.run(argv);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error("no UsageError");
};

describe("backup and restore: command lines (exit 2 with the fix)", () => {
  it.each([
    ["backup", [], "which stack? Add --stack S"],
    ["backup", ["--stack", "lab", "somewhere"], 'unexpected argument "somewhere" (it takes none; flags start with --); the folder goes with --out'],
    ["backup", ["--stack", "lab", "--outt", "x"], "unknown option --outt (did you mean --out?); options: --stack, --config-file, --out, --now, --json"],
    ["backup", ["--stack", "lab", "--now=yes"], "--now is a switch and takes no value"],
    ["restore", ["snap"], "which stack? Add --stack S"],
    ["restore", ["--stack", "lab"], "which snapshot? Pass a snapshot folder or its db.sqlite (`meshfleet backup --stack S` prints where it put the newest)"],
    ["restore", ["--stack", "lab", "a", "b"], 'unexpected argument "b" (it takes SNAPSHOT)'],
    ["restore", ["--stack", "lab", "a", "--wait", "3"], '--wait: expected whole seconds from 5 to 3600, found "3"'],
    ["restore", ["--stack", "lab", "a", "--wait", "1m"], '--wait: expected whole seconds from 5 to 3600, found "1m"'],
  ] as const)("meshfleet %s %j", async (name, argv, msg) => {
    expect(await usage(name === "backup" ? backupCommand : restoreCommand, [...argv])).toBe(msg);
  });

  it("usage texts name every flag and the exit codes", () => {
    for (const c of [backupCommand, restoreCommand]) {
      for (const f of c.flags!) expect(c.usage).toContain(`--${f.name}`);
      expect(c.usage).toMatch(/Exit 0 .*, 1 .*, 2 a command line it cannot take\./s);
    }
  });

  it.skipIf(skipUnlessCi(noSqlite))("restore at no terminal without --yes: says what it would do, refuses (exit 2) with the fix, sends nothing", async () => {
    const a = await stackWith("");
    const t = rt.tempDir("mf-restore-refuse");
    cleanups.push(t.cleanup);
    const snap = headscaleLike(t.dir);
    const said: string[] = [];
    // The host's address is a documentation address with no pin: any SSH attempt would fail differently.
    await expect(restore(a, { snapshot: snap, yes: false, waitSeconds: 60, interactive: false, say: (l) => said.push(l) })).rejects.toThrow(
      new UsageError(`refusing to restore without --yes when not asked at a terminal; nothing was changed. Run \`meshfleet restore --stack fx --config-file ${a.configFile} ${snap} --yes\``),
    );
    expect(said[0]).toBe("restore on vps (203.0.113.10), the coordinator:");
    expect(said.join("\n")).toContain("keep the live database as /var/lib/headscale/db.sqlite.before-restore-");
    expect(said[1]).toMatch(/^ {2}snapshot {2}.*db\.sqlite: \d+ KiB, 1 user\(s\), 2 node\(s\), integrity ok$/);
    expect(said.join("\n")).toContain("(not read: nothing is sent to the host before the restore is confirmed)");
  });

  it.skipIf(skipUnlessCi(noSqlite))("the CLI itself exits 2 when restore is not confirmed and stdin is not a terminal", () => {
    const t = rt.tempDir("mf-restore-exit2");
    cleanups.push(t.cleanup);
    const snap = headscaleLike(t.dir);
    const repo = path.resolve(import.meta.dirname, "../..");
    const r = spawnSync(process.execPath, [path.join(repo, "bin", "meshfleet.mjs"), "restore", "--stack", "lab", snap], { cwd: repo, encoding: "utf8", input: "", env: { ...process.env, MESHFLEET_TSX: "1" }, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain("meshfleet restore: refusing to restore without --yes when not asked at a terminal; nothing was changed.");
    expect(r.stdout).toContain("restore on vps (172.31.240.10), the coordinator:");
  }, 120_000);
});

describe("what backup and restore refuse before anything is sent", () => {
  it("backup with headscale.backup off names the setting and the commands", async () => {
    const a = await stackWith("");
    await expect(pullBackup(a, { out: "/nonexistent", now: false, say: () => {} })).rejects.toThrow(
      `backup: ${a.fleet.hosts.vps!.file}: headscale.backup is off on the coordinator vps, so it keeps no snapshots to pull. Fix: set headscale.backup.enable: true there and run \`meshfleet up --stack fx --config-file ${a.configFile}\`, then \`meshfleet backup --stack fx --config-file ${a.configFile} --now\``,
    );
  });

  it("the coordinator as rendered: backup dir, SQLite path, binary", async () => {
    const a = await stackWith("headscale:\n  backup:\n    enable: true\n    dir: /srv/hs-backups\n  database:\n    sqlitePath: /srv/hs/db.sqlite\n");
    const c = coordinatorOf(a, "backup");
    expect({ host: c.host.name, backupDir: c.backupDir, database: c.database, binary: c.binary, config: c.config }).toEqual({
      host: "vps",
      backupDir: "/srv/hs-backups",
      database: { type: "sqlite", path: "/srv/hs/db.sqlite" },
      binary: "/usr/local/bin/headscale",
      config: "/etc/headscale/config.yaml",
    });
  });

  it.skipIf(skipUnlessCi(noSqlite))("a snapshot of the other kind of database is refused before anything is sent; the Postgres plan", async () => {
    const a = await stackWith("headscale:\n  database:\n    type: postgres\n    postgres:\n      host: db.internal\n      ssl: true\n");
    const c = coordinatorOf(a, "restore");
    expect(c.database).toEqual({ type: "postgres", host: "db.internal", port: 5432, name: "headscale", user: "headscale", sslmode: "require", pgpass: "/etc/headscale/pgpass" });
    const t = rt.tempDir("mf-restore-kind");
    cleanups.push(t.cleanup);
    const snap = headscaleLike(t.dir);
    await expect(restore(a, { snapshot: snap, yes: true, waitSeconds: 60, interactive: false, say: () => {} })).rejects.toThrow(
      `restore: ${snap} is a SQLite database, but the coordinator vps keeps headscale's database in Postgres (${c.file}: headscale.database.type: postgres); pick a snapshot of this fleet's coordinator`,
    );
    const lines = restorePlan(c, { file: "/s/20261130T181051Z/db.pgdump", kind: "postgres", bytes: 9000, sha256: "", facts: null }, null, "20261130T190000Z", 30);
    expect(lines).toMatchSnapshot();
  });

  it("docker coordinators are refused with the fix", async () => {
    const f = writeFleet({ "vps.yaml": "imports: [coordinator, client]\naddress: 203.0.113.10\nruntime: docker\nderp:\n  enable: true\n  mode: embedded\ntailscale:\n  user: alice\n" });
    cleanups.push(f.cleanup);
    const configFile = path.join(path.dirname(f.dir), "Pulumi.fx.yaml");
    writeFileSync(configFile, stringify({ config: { "meshfleet:hostsDir": f.dir } }));
    const a = await openStackFleet({ stack: "fx", configFile });
    expect(() => coordinatorOf(a, "backup")).toThrow(/^backup: .*vps\.yaml: runtime: docker keeps headscale's database in the headscale-data volume, which meshfleet backup does not reach\. Fix: set runtime: systemd on vps/);
  });

  it("local snapshots: a folder with a database, the file itself, anything else refused", () => {
    const t = rt.tempDir("mf-snap");
    cleanups.push(t.cleanup);
    expect(() => readLocalSnapshot(path.join(t.dir, "nope"))).toThrow(/no such file or folder\. Fix: pass a snapshot folder/);
    mkdirSync(path.join(t.dir, "empty"));
    expect(() => readLocalSnapshot(path.join(t.dir, "empty"))).toThrow(/expected a snapshot folder holding db\.sqlite or db\.pgdump, found neither/);
    writeFileSync(path.join(t.dir, "notes.txt"), "hello there");
    expect(() => readLocalSnapshot(path.join(t.dir, "notes.txt"))).toThrow(/expected a SQLite database \(db\.sqlite\) or a pg_dump custom-format file \(db\.pgdump\), found neither \(it starts with "hello th"\)/);
    mkdirSync(path.join(t.dir, "pg"));
    writeFileSync(path.join(t.dir, "pg", "db.pgdump"), "PGDMP\u0001\u000e\u0000rest");
    expect(readLocalSnapshot(path.join(t.dir, "pg"))).toMatchObject({ kind: "postgres", facts: null, bytes: 12 });
  });
});

describe("reading what the coordinator renders and sends", () => {
  it("backupDirOf reads the rendered script's folder", () => {
    const s = (dir: string) => backupScript({ backup: { enable: true, onCalendar: "daily", keep: 3, dir }, database: { type: "sqlite", sqlitePath: "/var/lib/headscale/db.sqlite" }, config: "/etc/headscale/config.yaml", policy: "/etc/headscale/policy.hujson" });
    expect(backupDirOf(s("/var/backups/headscale"))).toBe("/var/backups/headscale");
    expect(backupDirOf(s("/srv/it's"))).toBe("/srv/it's");
    expect(backupDirOf("#!/bin/sh\necho hi\n")).toBeNull();
  });

  it("stamps, sizes and the default folder", () => {
    expect(stampTime("20261130T181051.272753298Z")?.toISOString()).toBe("2026-11-30T18:10:51.272Z");
    expect(stampTime("20261130T181051Z")?.toISOString()).toBe("2026-11-30T18:10:51.000Z");
    expect(stampTime("latest")).toBeNull();
    expect([0, 1023, 1536, 10 * 1024 * 1024, 3 * 1024 ** 3].map(bytes)).toEqual(["0 B", "1023 B", "1.5 KiB", "10 MiB", "3 GiB"]);
    expect(defaultOutDir("home", { XDG_DATA_HOME: "/d" })).toBe("/d/meshfleet/backups/home");
    expect(defaultOutDir("home", { XDG_DATA_HOME: "relative" })).toMatch(/\/\.local\/share\/meshfleet\/backups\/home$/);
  });

  it("what the host sends is refused unless it names a snapshot, lists it and holds a database", () => {
    const t = rt.tempDir("mf-pull");
    cleanups.push(t.cleanup);
    const out = path.join(t.dir, "out");
    expect(() => writeSnapshot(out, { name: "../../etc", files: "" })).toThrow('backup: the coordinator named its newest snapshot "../../etc", not a UTC time; nothing was written');
    expect(() => writeSnapshot(out, { name: "20261130T181051Z", files: "12 abc ../x" })).toThrow(/cannot read the coordinator's file list \("12 abc \.\.\/x"\)/);
    const sha = "0".repeat(64);
    expect(() => writeSnapshot(out, { name: "20261130T181051Z", files: `0 ${sha} config.yaml` })).toThrow("backup: snapshot 20261130T181051Z holds no database (config.yaml); nothing was written");
    expect(existsSync(out)).toBe(false);
  });
});

describe("the restore script's refusals, run with sh (nothing stopped, nothing moved)", () => {
  function setup() {
    const t = rt.tempDir("mf-restore-sh");
    cleanups.push(t.cleanup);
    const db = path.join(t.dir, "lib", "db.sqlite");
    mkdirSync(path.dirname(db));
    writeFileSync(db, "live database bytes");
    const mark = path.join(t.dir, "touched");
    const run = (snapshot: string, env?: NodeJS.ProcessEnv) => {
      const log = path.join(t.dir, "restore.log");
      const file = path.join(t.dir, "restore.sh");
      writeFileSync(file, restoreScript({ db, snapshot, stamp: "20261130T190000Z", headscale: "/nonexistent/headscale", config: "/nonexistent/config.yaml", stop: `echo stop >> ${mark}`, start: `echo start >> ${mark}`, waitSeconds: 5, log }));
      const r = spawnSync("/bin/sh", [file], { encoding: "utf8", env: env ?? process.env, timeout: 30_000 });
      const text = existsSync(log) ? readFileSync(log, "utf8") : "";
      return { code: r.status, outcome: restoreOutcome(text), touched: existsSync(mark), live: readFileSync(db, "utf8") };
    };
    return { t, db, run };
  }

  it("without sqlite3 on the host", () => {
    const { t, run } = setup();
    const snap = path.join(t.dir, "snap.sqlite");
    writeFileSync(snap, "x");
    expect(run(snap, { PATH: "/nonexistent" })).toEqual({
      code: RESTORE_EXIT.refused,
      outcome: "refused: sqlite3 is not installed on this host, so the snapshot cannot be checked; nothing was changed (apt-get install sqlite3 on it; with headscale.backup on, meshfleet up installs it)",
      touched: false,
      live: "live database bytes",
    });
  });

  it.skipIf(skipUnlessCi(noSqlite))("a missing snapshot, a file that is not SQLite, a SQLite database that is not headscale's", () => {
    const { t, run } = setup();
    expect(run(path.join(t.dir, "gone.sqlite"))).toMatchObject({ code: RESTORE_EXIT.refused, outcome: `refused: the snapshot ${t.dir}/gone.sqlite is missing; nothing was changed`, touched: false });
    const text = path.join(t.dir, "text.sqlite");
    writeFileSync(text, "not a database at all, just some text that is long enough ".repeat(20));
    expect(run(text)).toMatchObject({ code: RESTORE_EXIT.refused, outcome: expect.stringMatching(/^refused: the snapshot fails integrity_check \(.*\); nothing was changed$/), touched: false, live: "live database bytes" });
    const other = path.join(t.dir, "other.sqlite");
    expect(spawnSync("sqlite3", [other, "CREATE TABLE users(id); INSERT INTO users VALUES (1);"]).status).toBe(0);
    expect(run(other)).toMatchObject({ code: RESTORE_EXIT.refused, outcome: expect.stringMatching(/^refused: the snapshot has no nodes table, so it is not headscale's database \(.*no such table: nodes.*\); nothing was changed$/), touched: false, live: "live database bytes" });
  });

  it("the script's order: check, stop, keep aside, put in, start, check; the guard puts back", () => {
    const s = restoreScript({ db: "/var/lib/headscale/db.sqlite", snapshot: "/var/lib/meshfleet/restore/x/db.sqlite", stamp: "S", headscale: "headscale", config: "/etc/headscale/config.yaml", stop: "STOP", start: "START", waitSeconds: 60, log: "/l" });
    const at = (needle: string) => {
      const i = s.indexOf(needle);
      expect(i, needle).toBeGreaterThan(-1);
      return i;
    };
    const order = ["PRAGMA integrity_check", "SELECT count(*) FROM nodes", "\nstop_hs ||", `move_db "$kept"`, "if put && start_hs && answers \"$want\"", "\nstop_hs\n", `move_db "$failed"`, `mv -f "$kept$x" "$db$x"`, "\nstart_hs\n"].map(at);
    expect(order).toEqual([...order].sort((x, y) => x - y));
    expect(s).not.toMatch(/rm -f "\$db"|rm -rf/);
    expect(() => restoreScript({ db: "/d", snapshot: "/tmp/a b?.sqlite", stamp: "S", headscale: "h", config: "c", stop: "", start: "", waitSeconds: 5, log: "/l" })).toThrow(/must be absolute and plain/);
  });

  it("waiting for the outcome: returns the log once it has one (and removes the staged copy), gives up when the unit is gone without one", () => {
    const t = rt.tempDir("mf-restore-wait");
    cleanups.push(t.cleanup);
    const log = path.join(t.dir, "restore.log");
    const staged = path.join(t.dir, "db.sqlite");
    writeFileSync(staged, "x");
    writeFileSync(log, "restore: working\n");
    const unit = "meshfleet-restore-test-that-does-not-exist";
    let t0 = Date.now();
    let r = spawnSync("sh", ["-c", waitScript(log, unit, 60, staged)], { encoding: "utf8", timeout: 30_000 });
    expect(r.stdout).toBe("restore: working\n");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4000); // about 5 s for a unit that is not running
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(existsSync(staged)).toBe(true);
    writeFileSync(log, "restore: working\n@@mf:result@@\nrestored: 3 node(s)\n");
    t0 = Date.now();
    r = spawnSync("sh", ["-c", waitScript(log, unit, 60, staged)], { encoding: "utf8", timeout: 30_000 });
    expect(restoreOutcome(r.stdout)).toBe("restored: 3 node(s)");
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(existsSync(staged)).toBe(false);
  }, 40_000);

  it("the plan it shows before asking", async () => {
    const a = await stackWith("");
    const lines = restorePlan(coordinatorOf(a, "restore"), { file: "/s/20261130T181051Z/db.sqlite", kind: "sqlite", bytes: 2048, sha256: "", facts: { integrity: "ok", users: 2, nodes: 3 } }, { active: "active", nodes: "3", size: "4096" }, "20261130T190000Z", 60);
    expect(lines).toMatchSnapshot();
  });
});
