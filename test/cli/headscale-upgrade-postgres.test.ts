/**
 * The guarded headscale upgrade (issue 15 item 6) on Postgres (item 3): run
 * for real on this machine against PostgreSQL 15 and headscale 0.29.1 and
 * 0.29.2 on loopback (binary, config and password file under a temp folder):
 *   - 0.29.1 -> 0.29.2: headscale stopped, its database kept as a pg_dump,
 *     the new binary healthy with the same nodes;
 *   - a new release that wrecks the database and cannot serve: the rollback
 *     puts the old binary back and restores the dump (pg_restore, one
 *     transaction), and headscale answers with the same nodes. Without the
 *     restore the old release would find no nodes table: the check fails.
 *   - pg_dump that cannot log in: refused, headscale started again, nothing
 *     else changed.
 * The SQLite cases are test/cli/headscale-upgrade.test.ts.
 */
import { execFile, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postgresSecretFiles } from "../../components/dockerService.ts";
import { sections } from "../../cli/fleet-hosts.ts";
import { upgradeScript, UPGRADE_EXIT } from "../../cli/headscale-upgrade.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { toolBinary } from "../lab/harness.ts";
import { makeCtx } from "../modules/realtools/context.ts";
import * as rt from "../modules/realtools/index.ts";
import { postgresMissing, startPostgres, type TestPostgres } from "../modules/realtools/postgres.ts";

const NOISE = derivePrivateKey("test-seed-0123456789", "noise");
const PASSWORD = `up:gr'ade\\${process.pid}`;
const prevBin = toolBinary("headscale-previous");
const skip = skipUnlessCi(postgresMissing() || rt.missing("headscale") || (!prevBin && "headscale 0.29.1 (headscale-previous) is not built: run `meshfleet tools build --only headscale-previous`"));

describe.skipIf(skip)("the guarded upgrade on Postgres, against PostgreSQL 15 and headscale 0.29.1 / 0.29.2 on loopback", () => {
  let pg: TestPostgres;
  let t: { dir: string; cleanup: () => void };
  let cfg = "";
  let bin = "";
  let pgpass = "";
  let start = "";
  let stop = "";
  let isActive = "";
  let before: string[] = [];
  const sh = (script: string, timeout = 60_000) => spawnSync("sh", ["-c", script], { encoding: "utf8", timeout });
  const hs = (...args: string[]) => {
    const r = spawnSync(bin, ["-c", cfg, ...args, "-o", "json"], { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`headscale ${args.join(" ")}: ${r.stderr}${r.stdout}`);
    return JSON.parse(r.stdout);
  };
  const nodes = () => ((hs("nodes", "list") ?? []) as { given_name: string; ip_addresses: string[] }[]).map((n) => `${n.given_name} ${n.ip_addresses.join(",")}`).sort();
  const pgOf = (stamp: string, pass = pgpass) => ({ host: "127.0.0.1", port: pg.port, name: "headscale", user: "headscale", sslmode: "disable", pgpass: pass, dump: path.join(t.dir, `before-upgrade-${stamp}.pgdump`) });
  const run = async (staged: string, from: string, to: string, stamp: string, pass = pgpass) => {
    const log = path.join(t.dir, `upgrade-${stamp}.log`);
    const file = path.join(t.dir, `upgrade-${stamp}.sh`);
    writeFileSync(file, upgradeScript({ binary: bin, staged, config: cfg, db: null, postgres: pgOf(stamp, pass), backup: null, isActive, from, to, stamp, waitSeconds: 15, log, stop, start }), { mode: 0o700 });
    const t0 = Date.now();
    const code = await promisify(execFile)("sh", [file], { timeout: 180_000 }).then(() => 0, (e: { code?: number }) => e.code ?? -1);
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    return { code, log: text, outcome: sections(text).result?.split("\n")[0], ms: Date.now() - t0, dump: pgOf(stamp).dump };
  };

  beforeAll(async () => {
    pg = await startPostgres("mf-pg-upgrade-");
    pg.sql(`CREATE ROLE headscale LOGIN PASSWORD '${PASSWORD.replaceAll("'", "''")}'`);
    pg.sql("CREATE DATABASE headscale OWNER headscale");
    t = rt.tempDir("mf-upgrade-pg");
    pgpass = path.join(t.dir, "pgpass");
    writeFileSync(pgpass, postgresSecretFiles(PASSWORD)["headscale-postgres-pgpass"]!, { mode: 0o600 });
    const ctx: ModuleContext = makeCtx("vps", { vps: { address: "203.0.113.10", runtime: "systemd", options: { headscale: { enable: true, database: { type: "postgres", postgres: { host: "127.0.0.1", port: pg.port } } } } } });
    const c: Contribution = headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
    ({ cfg } = await rt.loopbackHeadscale(t.dir, c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content, NOISE));
    // The "installed" binary: 0.29.1, as the coordinator runs before the upgrade.
    bin = path.join(t.dir, "headscale");
    copyFileSync(prevBin!, bin);
    sh(`chmod 0755 ${bin}`);
    const pid = path.join(t.dir, "hs.pid");
    // headscale reads the password file from PGPASSFILE, as the unit's Environment= gives it.
    start = `PGPASSFILE=${pgpass} ${bin} serve -c ${cfg} >>${path.join(t.dir, "hs.log")} 2>&1 & echo $! > ${pid}`;
    stop = `if [ -f ${pid} ]; then kill "$(cat ${pid})" 2>/dev/null; while kill -0 "$(cat ${pid})" 2>/dev/null; do sleep 0.1; done; rm -f ${pid}; fi`;
    isActive = `[ -f ${pid} ] && kill -0 "$(cat ${pid})" 2>/dev/null`;
    expect(sh(start).status).toBe(0);
    const ok = sh(`i=0; while [ $i -lt 150 ]; do ${bin} -c ${cfg} health >/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.2; done; exit 1`);
    expect(ok.status, readFileSync(path.join(t.dir, "hs.log"), "utf8").slice(-2000)).toBe(0);
    hs("users", "create", "alice");
    for (const name of ["laptop", "nas", "phone"]) {
      const id = `hskey-authreq-${name}${"x".repeat(24 - name.length)}`;
      hs("debug", "create-node", "--name", name, "--user", "alice", "--key", id);
      hs("auth", "register", "--user", "alice", "--auth-id", id);
    }
    before = nodes();
    expect(before).toHaveLength(3);
  }, 180_000);

  afterAll(() => {
    if (stop) sh(stop);
    pg?.stop();
    t?.cleanup();
  });

  it("0.29.1 -> 0.29.2: the database dumped with headscale stopped, new binary, healthy with the same nodes", async () => {
    const staged = path.join(t.dir, ".staged-1");
    copyFileSync(rt.toolPath("headscale")!, staged);
    const r = await run(staged, "0.29.1", "0.29.2", "P1");
    expect(r.code, r.log).toBe(UPGRADE_EXIT.upgraded);
    expect(r.outcome).toBe(`upgraded: headscale 0.29.1 -> 0.29.2, 3 node(s); the old binary is kept as ${bin}.before-upgrade-P1 and the database as a dump in ${r.dump}`);
    expect(readFileSync(r.dump).subarray(0, 5).toString("latin1")).toBe("PGDMP");
    expect(statSync(r.dump).mode & 0o777).toBe(0o600);
    expect(r.log).toMatch(/upgrade: Postgres database headscale dumped \(headscale stopped\) to /);
    expect(nodes()).toEqual(before);
    console.log(`upgrade 0.29.1 -> 0.29.2 on Postgres, loopback: ${r.ms} ms in all; ${r.log.split("\n").filter((l) => / took /.test(l)).join("; ")}`);
  }, 120_000);

  it("a new release that drops the nodes table and cannot serve: the old binary back and the dump restored; the same nodes answer", async () => {
    const staged = path.join(t.dir, ".staged-2");
    // What a bad forward migration could leave: the nodes table gone. Then it fails to start.
    writeFileSync(
      staged,
      `#!/bin/sh\ncase "$1" in version) echo "headscale version v0.29.3";; *) PGPASSFILE=${pgpass} psql -X -q -h 127.0.0.1 -p ${pg.port} -U headscale -d headscale -c 'DROP TABLE IF EXISTS nodes CASCADE' >/dev/null 2>&1; echo "cannot start" >&2; exit 1;; esac\n`,
      { mode: 0o755 },
    );
    const r = await run(staged, "0.29.2", "0.29.3", "P2");
    expect(r.code, r.log).toBe(UPGRADE_EXIT.rolledBack);
    expect(r.outcome).toBe(`rolled back: headscale 0.29.3 did not come up healthy; 0.29.2 runs again on the database as it was before (3 node(s)); the failed binary is kept as ${bin}.failed-upgrade-P2`);
    // The new release did drop the table; the restore brought it back.
    expect(readFileSync(path.join(t.dir, "hs.log"), "utf8") + r.log).toMatch(/upgrade: Postgres database headscale restored from /);
    expect(nodes()).toEqual(before);
    console.log(`rollback on Postgres, loopback: ${r.ms} ms in all; ${r.log.split("\n").filter((l) => / took | after \d+ ms/.test(l)).join("; ")}`);
  }, 180_000);

  it("pg_dump cannot log in: refused before the new binary, headscale started again, nothing else changed", async () => {
    const wrong = path.join(t.dir, "pgpass.wrong");
    writeFileSync(wrong, "*:*:*:*:not-the-password\n", { mode: 0o600 });
    const staged = path.join(t.dir, ".staged-3");
    copyFileSync(rt.toolPath("headscale")!, staged);
    const binBefore = readFileSync(bin);
    // The installed binary is 0.29.2 now: "upgrade" to a 0.29.2 staged binary, so the staged check passes.
    const r = await run(staged, "0.29.2", "0.29.2", "P3", wrong);
    expect(r.code, r.log).toBe(UPGRADE_EXIT.refused);
    expect(r.outcome).toBe(`refused: could not dump the Postgres database headscale to ${r.dump} (pg_dump failed), so there would be nothing to roll back to; nothing else was changed`);
    expect(readFileSync(bin).equals(binBefore)).toBe(true);
    expect(sh(isActive).status).toBe(0);
    expect(nodes()).toEqual(before);
  }, 120_000);
});
