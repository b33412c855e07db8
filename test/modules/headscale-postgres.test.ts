/**
 * headscale's Postgres run by the module (issue 15 item 3):
 *   - `check` refuses each bad combination of headscale.database.postgres.local
 *     and headscale.database.startEmpty with one diagnostic (file, option
 *     path, expected, found, fix): one fixture each under fixtures/postgres-bad;
 *   - the render: Debian's postgresql among the host's packages, the setup
 *     unit before headscale, headscale Requires/After it;
 *   - the setup script, run for real against PostgreSQL 15 on loopback: it
 *     creates the role and the database, again changes nothing, a new password
 *     takes effect, the password is on no command line, and headscale 0.29.2
 *     serves on that database with the password file;
 *   - the database guard, run for real: headscale does not start empty after
 *     database.type changed, unless headscale.database.startEmpty.
 */
import { execa } from "execa";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postgresSecretFiles } from "../../components/dockerService.ts";
import { evaluateFleet } from "../../core/index.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { REGISTRY } from "../../modules/index.ts";
import { databaseGuardScript, DB_GUARD_SCRIPT, DEFAULT_SUPERUSER_PSQL, PG_SETUP_SCRIPT, PG_SETUP_UNIT } from "../../modules/headscale-postgres.ts";
import { writeFleet } from "../core/fleet-fixture.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { makeCtx } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";
import { postgresMissing, startPostgres, type TestPostgres } from "./realtools/postgres.ts";

const FIXTURES = path.join(import.meta.dirname, "fixtures", "postgres-bad");
const NOISE = derivePrivateKey("test-seed-0123456789", "noise");

function ctxWith(headscale: Record<string, unknown>): ModuleContext {
  return makeCtx("vps", { vps: { address: "203.0.113.10", runtime: "systemd", options: { headscale: { enable: true, ...headscale } } } });
}
const run = (ctx: ModuleContext): Contribution => headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
const LOCAL = { database: { type: "postgres", postgres: { local: true } } };

describe("check: headscale.database.postgres.local and startEmpty, one fixture per bad input", () => {
  const want: Record<string, { path: string; expected: RegExp; found: string; fix: string }> = {
    "local-on-sqlite": {
      path: "headscale.database.postgres.local",
      expected: /^headscale\.database\.type: postgres /,
      found: "headscale.database.type: sqlite with headscale.database.postgres.local: true",
      fix: "set headscale.database.type: postgres, or remove headscale.database.postgres.local",
    },
    "local-docker": {
      path: "headscale.database.postgres.local",
      expected: /^the systemd runtime /,
      found: "headscale.database.postgres.local: true with runtime: docker",
      fix: "set runtime: systemd on the coordinator, or headscale.database.postgres.local: false and give headscale.database.postgres.host a PostgreSQL the container reaches",
    },
    "local-remote-host": {
      path: "headscale.database.postgres.host",
      expected: /^this host's PostgreSQL \(localhost, 127\.0\.0\.1, ::1, \/var\/run\/postgresql, \/run\/postgresql\)/,
      found: '"db.example.com"',
      fix: "set headscale.database.postgres.host: localhost, or headscale.database.postgres.local: false to use that server",
    },
    "local-other-port": {
      path: "headscale.database.postgres.port",
      expected: /^5432, the port of Debian's main cluster/,
      found: "5433",
      fix: "set headscale.database.postgres.port: 5432 (or remove it)",
    },
    "local-bad-name": { path: "headscale.database.postgres.name", expected: /^a lowercase PostgreSQL name/, found: '"Head-Scale"', fix: "set headscale.database.postgres.name: head_scale" },
    "local-bad-user": { path: "headscale.database.postgres.user", expected: /^a lowercase PostgreSQL name/, found: '"1st user"', fix: "set headscale.database.postgres.user: _1st_user" },
    "local-not-boolean": { path: "headscale.database.postgres.local", expected: /^a boolean$/, found: '"yes"', fix: "set headscale.database.postgres.local to a boolean — Run PostgreSQL on the coordinator itself" },
    "start-empty-not-boolean": { path: "headscale.database.startEmpty", expected: /^a boolean$/, found: '"sometimes"', fix: "set headscale.database.startEmpty to a boolean — Let headscale start on an empty database" },
  };

  it("every fixture has its expected diagnostic and every expected diagnostic its fixture", () => {
    expect(readdirSync(FIXTURES).map((f) => f.replace(/\.yaml$/, "")).sort()).toEqual(Object.keys(want).sort());
  });

  for (const [name, w] of Object.entries(want)) {
    it(`${name}: one error naming the file, the option, expected, found and the fix`, async () => {
      const { dir, cleanup } = writeFleet({ "vps.yaml": readFileSync(path.join(FIXTURES, `${name}.yaml`), "utf8") });
      try {
        const r = await evaluateFleet(REGISTRY, dir, "fx");
        expect(r.diagnostics).toHaveLength(1);
        const d = r.diagnostics[0]!;
        expect(d.severity).toBe("error");
        expect(d.file).toBe(path.join(dir, "vps.yaml"));
        expect(d.path).toBe(w.path);
        expect(d.expected).toMatch(w.expected);
        expect(d.found).toBe(w.found);
        expect(d.fix.startsWith(w.fix), d.fix).toBe(true);
      } finally {
        cleanup();
      }
    });
  }

  it("the good case passes check: Postgres on the coordinator with the defaults", async () => {
    const vps = readFileSync(path.join(FIXTURES, "local-other-port.yaml"), "utf8").replace("      port: 5433\n", "");
    const { dir, cleanup } = writeFleet({ "vps.yaml": vps });
    try {
      expect((await evaluateFleet(REGISTRY, dir, "fx")).diagnostics).toEqual([]);
    } finally {
      cleanup();
    }
  });
});

describe("the render with headscale.database.postgres.local", () => {
  it("Debian's postgresql in the packages, the setup unit before headscale, headscale Requires/After it; none of it without local", () => {
    const c = run(ctxWith(LOCAL));
    expect(c.packages).toEqual(["postgresql"]);
    const setup = c.units!.find((u) => u.name === PG_SETUP_UNIT)!;
    expect(setup).toMatchObject({ enable: true, restartTriggers: ["/etc/headscale/pgpass"] });
    expect(setup.content).toMatch(/^Requires=postgresql\.service$/m);
    expect(setup.content).toMatch(/^After=postgresql\.service$/m);
    expect(setup.content).toMatch(/^Before=headscale\.service$/m);
    expect(setup.content).toMatch(/^Type=oneshot$/m);
    expect(setup.content).toMatch(new RegExp(`^ExecStart=${PG_SETUP_SCRIPT}$`, "m"));
    expect(setup.content).not.toMatch(/Environment/);
    const hs = c.units!.find((u) => u.name === "headscale.service")!.content;
    expect(hs).toMatch(new RegExp(`^Requires=${PG_SETUP_UNIT}\\nAfter=${PG_SETUP_UNIT}$`, "m"));
    expect(hs).toMatch(new RegExp(`^ExecStartPre=\\+${DB_GUARD_SCRIPT}$`, "m"));
    expect(c.files!.find((f) => f.path === PG_SETUP_SCRIPT)).toMatchObject({ mode: "0700", owner: "root", group: "root" });
    // With the backup on, its client comes along (postgresql depends on it anyway).
    expect(run(ctxWith({ ...LOCAL, backup: { enable: true } })).packages).toEqual(["postgresql-client", "postgresql"]);

    const external = run(ctxWith({ database: { type: "postgres" } }));
    expect(external.packages).toBeUndefined();
    expect(external.units!.map((u) => u.name)).toEqual(["headscale.service"]);
    expect(external.units![0]!.content).not.toMatch(/postgres-setup/);
    expect(external.files!.some((f) => f.path === PG_SETUP_SCRIPT)).toBe(false);
  });
});

describe("the database guard, run for real", () => {
  let t: { dir: string; cleanup: () => void };
  beforeAll(() => {
    t = rt.tempDir("mf-db-guard");
  });
  afterAll(() => t.cleanup());
  const guard = (type: "sqlite" | "postgres", startEmpty: boolean, state: { db: boolean; marker: boolean }) => {
    const dir = path.join(t.dir, `${type}-${startEmpty}-${state.db}-${state.marker}`);
    mkdirSync(dir, { recursive: true });
    const db = path.join(dir, "db.sqlite");
    const marker = path.join(dir, ".meshfleet-database-postgres");
    if (state.db) writeFileSync(db, "SQLite format 3\0");
    if (state.marker) writeFileSync(marker, "");
    const file = path.join(dir, "guard");
    writeFileSync(file, databaseGuardScript({ type, sqlitePath: db, startEmpty, marker }), { mode: 0o700 });
    const r = spawnSync("sh", [file], { encoding: "utf8" });
    return { code: r.status, err: r.stderr, db, marker: existsSync(marker) };
  };

  it("Postgres while a SQLite database is there: refused with the steps; the database and no marker left as they were", () => {
    const r = guard("postgres", false, { db: true, marker: false });
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      `headscale-database-guard: headscale.database.type is postgres, but the SQLite database ${r.db} is on this host: headscale would start on an empty Postgres database and every node would have to log in again. ` +
        `meshfleet does not migrate it (docs/backup.md, 'SQLite to Postgres'). Fix: set headscale.database.type: sqlite again; or move its data over by hand as docs/backup.md shows, then mv ${r.db} ${r.db}.before-postgres; or set headscale.database.startEmpty: true to start empty on purpose\n`,
    );
    expect(existsSync(r.db)).toBe(true);
    expect(r.marker).toBe(false);
  });

  it("Postgres with no SQLite database, or with startEmpty: starts, and marks that Postgres holds the state", () => {
    expect(guard("postgres", false, { db: false, marker: false })).toMatchObject({ code: 0, err: "", marker: true });
    expect(guard("postgres", true, { db: true, marker: false })).toMatchObject({ code: 0, marker: true, err: expect.stringMatching(/startEmpty is true/) });
  });

  it("SQLite with no database where Postgres held the state: refused with the steps; with startEmpty it starts", () => {
    const r = guard("sqlite", false, { db: false, marker: true });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^headscale-database-guard: headscale\.database\.type is sqlite, but headscale kept its state in Postgres on this host .* Fix: set headscale\.database\.type: postgres again; or put a SQLite database there first \(meshfleet restore <snapshot with db\.sqlite>\); or set headscale\.database\.startEmpty: true to start empty on purpose\n$/);
    expect(r.marker).toBe(true);
    expect(guard("sqlite", true, { db: false, marker: true })).toMatchObject({ code: 0, marker: false });
  });

  it("SQLite on a fresh host, or with its database back: starts (the marker goes once SQLite has a database)", () => {
    expect(guard("sqlite", false, { db: false, marker: false })).toMatchObject({ code: 0, err: "", marker: false });
    expect(guard("sqlite", false, { db: true, marker: true })).toMatchObject({ code: 0, err: "", marker: false });
  });
});

const PASSWORD = `it's:a\\pa%ss"w0rd:`;
const PASSWORD2 = `second'one\\:${Date.now()}`;

describe.skipIf(skipUnlessCi(postgresMissing() || rt.missing("headscale")))("the setup script against PostgreSQL 15 on loopback, and headscale 0.29.2 on its database", () => {
  let pg: TestPostgres;
  let t: { dir: string; cleanup: () => void };
  let script = "";
  let pgpass = "";
  beforeAll(async () => {
    pg = await startPostgres("mf-pg-setup-");
    t = rt.tempDir("mf-pg-setup");
    pgpass = path.join(t.dir, "pgpass");
    writeFileSync(pgpass, postgresSecretFiles(PASSWORD)["headscale-postgres-pgpass"]!, { mode: 0o600 });
    const c = run(ctxWith(LOCAL));
    const rendered = c.files!.find((f) => f.path === PG_SETUP_SCRIPT)!.content;
    expect(rendered).toContain(DEFAULT_SUPERUSER_PSQL);
    // The same script, with this cluster's superuser and password file in place of Debian's.
    script = path.join(t.dir, "setup");
    writeFileSync(script, rendered.replaceAll(DEFAULT_SUPERUSER_PSQL, pg.superuserPsql).replaceAll("'/etc/headscale/pgpass'", `'${pgpass}'`), { mode: 0o700 });
  }, 120_000);
  afterAll(() => {
    pg?.stop();
    t?.cleanup();
  });
  const setup = () => spawnSync("sh", [script], { encoding: "utf8", timeout: 120_000 });
  /** Log in as headscale over TCP with a password file, as headscale does. */
  const login = (file: string) =>
    spawnSync("psql", ["-X", "-At", "-h", "127.0.0.1", "-p", String(pg.port), "-U", "headscale", "-d", "headscale", "-c", "SELECT current_user"], { encoding: "utf8", env: { ...process.env, PGPASSFILE: file, PGCONNECT_TIMEOUT: "5" } });

  it("creates the role and the database; a second run changes nothing; the password logs in", () => {
    const r1 = setup();
    expect(r1.status, r1.stderr).toBe(0);
    expect(r1.stdout).toBe("headscale-postgres-setup: role headscale and database headscale ready\n");
    expect(pg.sql("SELECT datname || ' ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'headscale'")).toBe("headscale headscale\n");
    const r2 = setup();
    expect(r2.status, r2.stderr).toBe(0);
    expect(pg.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'headscale'")).toBe("1\n");
    expect(login(pgpass).stdout).toBe("headscale\n");
    // The password went to psql on stdin only: not in the server's log, not in the script.
    expect(readFileSync(path.join(pg.root, "log"), "utf8")).not.toContain("pa%ss");
    expect(readFileSync(script, "utf8")).not.toContain("pa%ss");
  });

  it("headscale 0.29.2 serves on that database with the password file (PGPASSFILE, as the unit gives it)", async () => {
    const ctx = ctxWith({ database: { type: "postgres", postgres: { host: "127.0.0.1", port: pg.port } } });
    const c = run(ctx);
    const { cfg } = await rt.loopbackHeadscale(t.dir, c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content, NOISE);
    const hs = execa(rt.toolPath("headscale")!, ["serve", "-c", cfg], { reject: false, all: true, env: { PGPASSFILE: pgpass } });
    try {
      let ok = false;
      for (let i = 0; i < 150 && !ok && hs.exitCode === null; i++) {
        ok = spawnSync(rt.toolPath("headscale")!, ["-c", cfg, "health"]).status === 0;
        if (!ok) await new Promise((r) => setTimeout(r, 200));
      }
      expect(ok, "headscale health on Postgres").toBe(true);
      const u = spawnSync(rt.toolPath("headscale")!, ["-c", cfg, "users", "create", "alice", "-o", "json"], { encoding: "utf8" });
      expect(u.status, u.stderr).toBe(0);
      expect(pg.sql("SELECT name FROM users", "headscale")).toBe("alice\n");
    } finally {
      hs.kill("SIGTERM");
      await hs;
    }
  }, 120_000);

  it("a new password in the file: the next run sets it, the old one no longer logs in", () => {
    const old = path.join(t.dir, "pgpass.old");
    writeFileSync(old, readFileSync(pgpass), { mode: 0o600 });
    writeFileSync(pgpass, postgresSecretFiles(PASSWORD2)["headscale-postgres-pgpass"]!, { mode: 0o600 });
    const r = setup();
    expect(r.status, r.stderr).toBe(0);
    expect(login(pgpass).stdout).toBe("headscale\n");
    const o = login(old);
    expect(o.status).not.toBe(0);
    expect(o.stderr).toMatch(/password authentication failed for user "headscale"/);
    // The database and its data stay.
    expect(pg.sql("SELECT name FROM users", "headscale")).toBe("alice\n");
  });

  it("no password file: fails and says which secret fills it", () => {
    writeFileSync(pgpass, "", { mode: 0o600 });
    const r = setup();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/pgpass is missing or empty: the deploy writes it from the stack secret meshfleet:headscalePostgresPassword/);
  });
});
