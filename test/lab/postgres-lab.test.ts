/**
 * The Postgres drill of issue 15 item 3 on the real lab (MESHFLEET_LAB_E2E=1,
 * root, tools built; in CI a missing prerequisite fails, never skips). Lab
 * instance 7, hosts/lab with the coordinator keeping headscale's database in
 * a PostgreSQL the module runs itself (headscale.database.postgres.local) and
 * headscale.backup on. `lab up` deploys it and `lab down` removes it after.
 *
 * Before the deploy, the way a user would: the password goes into the stack's
 * secret config (meshfleet:headscalePostgresPassword), and the VPS gets a
 * local `file:` apt source holding Debian's postgresql and what it needs (the
 * lab has no mirror; setup fetches the set once, lab/hosts/debs.ts). The
 * deploy's own prerequisites step installs postgresql from it.
 *
 * The drill, through the CLI's own functions over the deploy's SSH:
 *   - the deploy: postgresql installed by the deploy, the setup unit made the
 *     role and the database, headscale runs on it with every node registered,
 *     the password on no command line and in no unit's environment;
 *   - `meshfleet backup --now`: a pg_dump snapshot on the VPS, pulled here;
 *   - the database is lost: headscale stopped, the database dropped and an
 *     empty one made in its place, while the laptop pings the nas through
 *     the subnet route;
 *   - `meshfleet restore`: every node registered again with the same IPs,
 *     every route still approved, the nodes back online, traffic flows;
 *   - the database guard: a SQLite file beside the Postgres coordinator keeps
 *     headscale from starting; database.type changed back to sqlite makes
 *     the deploy fail on the coordinator, whose agent rolls back, so headscale
 *     stays on Postgres with every node.
 * Times: the deploy, the backup, the restore; pings by phase.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pullBackup } from "../../cli/commands/backup.ts";
import { restore } from "../../cli/commands/restore.ts";
import { runDeploy } from "../../cli/commands/deploy.ts";
import { openStackFleet, type StackAccess } from "../../cli/fleet-hosts.ts";
import { ensureDebs, POSTGRES_DEBS } from "../../lab/hosts/debs.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, runPulumi } from "../../lab/e2e/pulumi.ts";
import { pingsBetween, startPing, waitTailnetRoute } from "../../lab/e2e/ping.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { PG_SETUP_UNIT } from "../../modules/headscale-postgres.ts";
import { skipUnlessCi } from "./ci-gate.ts";
import { labMissing, labOn, registration, writeLabFleet, type HeadscaleNodeRow } from "./harness.ts";

const INSTANCE = 7;
const p = e2ePaths(INSTANCE);
const HS = "/opt/meshfleet/tools/headscale@0.29.2/bin/headscale -c /etc/headscale/config.yaml";
const TS = "/opt/meshfleet/tools/tailscale@1.98.10/bin/tailscale --socket=/run/tailscale/tailscaled.sock";
const NAS = "192.168.8.10";
const APT = "/srv/meshfleet-lab-apt";
// Characters a password file and SQL must both carry: a colon, a backslash, a quote.
const PASSWORD = `pg:${randomBytes(9).toString("base64url")}\\'x`;

const on = labOn(INSTANCE);
const nodes = async () => (JSON.parse((await on("vps", `${HS} nodes list -o json`)) || "null") ?? []) as HeadscaleNodeRow[];
const psql = (sql: string, db = "postgres") => on("vps", `runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d ${db}`, { input: sql });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skipUnlessCi(labMissing()))(`Postgres run by the module: deploy, backup and restore drill on lab instance ${INSTANCE}`, () => {
  let a: StackAccess;
  let broughtUp = false;
  let deployMs = 0;
  let upStepMs = 0;
  const out = mkdtempSync(join(tmpdir(), "mf-postgres-lab-"));

  beforeAll(async () => {
    writeLabFleet(INSTANCE, {
      edit: (f, text) => {
        if (f !== "vps.yaml") return text;
        expect(text).toMatch(/^headscale:\n/m);
        return text.replace(/^headscale:\n/m, "headscale:\n  database:\n    type: postgres\n    postgres:\n      local: true\n  backup:\n    enable: true\n    keep: 3\n");
      },
    });
    const { dir, files } = await ensureDebs(POSTGRES_DEBS, { allowFetch: false });
    const packages = execFileSync("dpkg-scanpackages", ["--multiversion", "."], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const t0 = Date.now();
    const r = await labUp({
      instance: INSTANCE,
      log: (l) => process.stderr.write(`[lab${INSTANCE}] ${l}\n`),
      noBuild: true,
      beforeDeploy: async () => {
        // The password through the stack's secret config, on stdin.
        const set = await runPulumi(["config", "set", "--secret", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:headscalePostgresPassword"], { env: labPulumiEnv(INSTANCE), input: PASSWORD });
        if (set.code !== 0) throw new Error(`pulumi config set --secret meshfleet:headscalePostgresPassword: ${set.stderr}`);
        // A local apt source with postgresql; none installed yet, so the deploy must install it.
        await on("vps", `! dpkg-query -W -f='\${Status}' postgresql 2>/dev/null | grep -q 'install ok installed' && mkdir -p ${APT}`);
        for (const f of files) await on("vps", `base64 -d > ${APT}/${f.split("/").pop()}`, { input: readFileSync(f).toString("base64"), timeoutMs: 120_000 });
        await on("vps", `cat > ${APT}/Packages && echo 'deb [trusted=yes] file:${APT} ./' > /etc/apt/sources.list.d/meshfleet-lab.list`, { input: packages });
        // The lab root still lists Debian's mirror, with the same versions: without a pin apt may pick the mirror it cannot reach.
        await on("vps", `printf 'Package: *\\nPin: origin ""\\nPin-Priority: 990\\n' > /etc/apt/preferences.d/meshfleet-lab`);
      },
    });
    deployMs = Date.now() - t0;
    broughtUp = true;
    if (!r.ok) throw new Error(`lab up --instance ${INSTANCE}: ${r.error}`);
    upStepMs = r.steps.find((s) => s.step === "meshfleet up")?.ms ?? 0;
    a = await openStackFleet({ stack: STACK, configFile: p.stackConfig });
  }, 1_800_000);

  afterAll(async () => {
    rmSync(out, { recursive: true, force: true });
    if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
  }, 600_000);

  it("the deploy installs postgresql, the setup unit makes the role and the database, headscale runs on it; the password is on no command line", async () => {
    expect((await on("vps", "dpkg-query -W -f='${Status} ${Version}' postgresql")).trim()).toMatch(/^install ok installed \d+/);
    expect((await on("vps", `systemctl is-active postgresql ${PG_SETUP_UNIT} headscale`)).trim().split("\n")).toEqual(["active", "active", "active"]);
    expect((await on("vps", "grep -A1 '^database:' /etc/headscale/config.yaml")).trim()).toBe("database:\n  type: postgres");
    expect(await on("vps", "stat -c '%a %U' /etc/headscale/pgpass")).toBe("600 headscale\n");
    expect(await psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'headscale'")).toBe("headscale\n");
    const ns = await nodes();
    expect(ns.length, "nodes registered on Postgres").toBeGreaterThanOrEqual(3);
    expect(await psql("SELECT count(*) FROM nodes", "headscale")).toBe(`${ns.length}\n`);
    expect(registration(ns).join("\n")).toMatch(/^lxc-tailscale .* routes=.*192\.168\.8\.0\/24/m);
    // The password: in the 0600 file only; not in any unit's environment, not on a command line, not in the journal.
    const secretPart = PASSWORD.slice(3, 15);
    const env = await on("vps", `systemctl show -p Environment headscale ${PG_SETUP_UNIT} postgresql`);
    expect(env).not.toContain(secretPart);
    expect(await on("vps", "ps -eo args")).not.toContain(secretPart);
    expect(await on("vps", "journalctl --no-pager -o cat | grep -c -F -- \"$(cat)\" || true", { input: secretPart })).toBe("0\n");
    console.log(`postgres drill on lab ${INSTANCE}: lab up with Postgres ${(deployMs / 1000).toFixed(1)}s (its meshfleet up ${(upStepMs / 1000).toFixed(1)}s), ${ns.length} nodes`);
  });

  it("backup --now, the database lost, restore: the same nodes, IPs and approved routes; the mesh kept working and works after", async () => {
    const before = await nodes();
    expect((await on("laptop", `ip route get ${NAS}`)).includes("tailscale0")).toBe(true);

    // 1. backup --now: a pg_dump snapshot on the VPS, pulled here.
    const said: string[] = [];
    const b = await pullBackup(a, { out, now: true, say: (l) => said.push(l) });
    expect(b, said.join("\n")).toMatchObject({ host: "vps", alreadyHere: false, took: true });
    expect(b.files.map((f) => f.name)).toContain("db.pgdump");
    expect(readFileSync(join(b.path, "db.pgdump")).subarray(0, 5).toString("latin1")).toBe("PGDMP");
    for (const f of b.files) expect(statSync(join(b.path, f.name)).mode & 0o777, f.name).toBe(0o600);

    // 2. The database is lost: dropped with headscale stopped, an empty one in its place (the restore keeps the live
    // database as a dump first, so one must exist). headscale stays stopped: tunnels already up must keep working.
    const t0 = Date.now();
    const ping = startPing(INSTANCE, "laptop", NAS, 150);
    await sleep(2000);
    await on("vps", "systemctl stop headscale");
    await psql("DROP DATABASE headscale");
    await psql("CREATE DATABASE headscale OWNER headscale");
    expect(await psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", "headscale")).toBe("0\n");
    const tDown = Date.now();
    await sleep(20_000);
    // A new connection through the tunnel while the coordinator knows no node.
    await on("laptop", `nc -z -w 3 ${NAS} 22`);

    // 3. restore, through the CLI's function (the guarded script, run as a transient unit on the VPS).
    const tr = Date.now();
    const r = await restore(a, { snapshot: b.path, yes: true, waitSeconds: 90, interactive: false, say: (l) => said.push(l) });
    const restoreMs = Date.now() - tr;
    expect(r, said.join("\n")).toMatchObject({ host: "vps", outcome: "restored" });
    expect(r.kept).toMatch(/before-restore\.pgdump$/);

    // 4. Every node registered again with the same IPs and approved routes; they come back online; traffic flows.
    expect(registration(await nodes())).toEqual(registration(before));
    let after = await nodes();
    for (let i = 0; i < 45 && !after.every((n) => n.online); i++) {
      await sleep(2000);
      after = await nodes();
    }
    await waitTailnetRoute(INSTANCE, "laptop", NAS);
    const tOnline = Date.now();
    expect(after.filter((n) => !n.online).map((n) => n.given_name), "nodes offline 90 s after the restore").toEqual([]);
    expect((JSON.parse(await on("laptop", `${TS} status --json`)) as { BackendState: string }).BackendState).toBe("Running");
    await on("laptop", `nc -z -w 3 ${NAS} 22`);
    await sleep(8000);
    const tEnd = Date.now();
    const pl = await ping;

    const down = pingsBetween(pl, t0, tr);
    const back = pingsBetween(pl, tr, tOnline);
    const online = pingsBetween(pl, tOnline, tEnd);
    const phase = (x: { sent: number; lost: number[] }) => `${x.sent - x.lost.length}/${x.sent}${x.lost.length ? ` (lost seq ${x.lost.join(",")})` : ""}`;
    const report =
      `postgres drill on lab ${INSTANCE}: backup --now + pull ${b.seconds}s (${b.bytes} bytes); restore ${(restoreMs / 1000).toFixed(1)}s; ` +
      `coordinator without its database ${((tr + restoreMs - tDown) / 1000).toFixed(1)}s (dropped until restored), then ${((tOnline - tr - restoreMs) / 1000).toFixed(1)}s until all online and routed; laptop -> nas pings: database lost ${phase(down)}, restore until all online and routed ${phase(back)}, after ${phase(online)}`;
    console.log(report);
    expect(down.sent, report).toBeGreaterThanOrEqual(25);
    expect(down.lost, `pings through the tunnel while the coordinator had lost its database: ${report}`).toEqual([]);
    expect(online.sent, report).toBeGreaterThanOrEqual(10);
    expect(online.lost, `pings after every node was back online: ${report}`).toEqual([]);
  }, 900_000);

  it("the database guard on the real unit: a SQLite database beside a Postgres coordinator keeps headscale from starting, with the steps in its journal", async () => {
    const db = "/var/lib/headscale/db.sqlite";
    await on("vps", `test ! -e ${db} && cp /dev/null ${db}`);
    try {
      const r = await on("vps", "systemctl restart headscale && echo started || echo refused", { timeoutMs: 60_000 });
      expect(r.trim()).toBe("refused");
      const journal = await on("vps", "journalctl -u headscale --no-pager -o cat -n 40");
      expect(journal).toContain(`headscale-database-guard: headscale.database.type is postgres, but the SQLite database ${db} is on this host`);
      expect(journal).toContain("or set headscale.database.startEmpty: true to start empty on purpose");
    } finally {
      await on("vps", `rm -f ${db} && systemctl reset-failed headscale; systemctl start headscale`, { timeoutMs: 60_000 });
    }
    let ok = false;
    for (let i = 0; i < 30 && !ok; i++) {
      ok = await on("vps", `${HS} health >/dev/null 2>&1 && echo ok || true`).then((x) => x.trim() === "ok");
      if (!ok) await sleep(1000);
    }
    expect(ok, "headscale healthy again once the SQLite file is gone").toBe(true);
    expect((await nodes()).length).toBeGreaterThanOrEqual(3);
  }, 180_000);

  it("database.type changed back to sqlite: the deploy is refused on the coordinator, which keeps headscale on Postgres with every node", async () => {
    const before = registration(await nodes());
    const status = async () => {
      const x = JSON.parse(await on("vps", "node /usr/local/lib/meshfleet/meshfleet-agent.mjs status --json")) as { generation: number; hash: string };
      return { generation: x.generation, hash: x.hash };
    };
    const gen = await status();
    // SQLite, no backup (the lab has no sqlite3 package to install): headscale would start on a new, empty db.sqlite.
    writeLabFleet(INSTANCE, { edit: (f, text) => (f === "vps.yaml" ? text.replace(/^headscale:\n/m, "headscale:\n  database:\n    type: sqlite\n") : text) });
    const t0 = Date.now();
    const r = await runDeploy({ verb: "up", stack: STACK, configFile: p.stackConfig, env: labPulumiEnv(INSTANCE) });
    const ms = Date.now() - t0;
    expect(r.ok, "the deploy must fail").toBe(false);
    expect(r.errors.join("\n")).toMatch(/vps: [\s\S]*failed and was rolled back to generation \d+: units: `systemctl restart headscale\.service` exited with code 1/);
    console.log(`postgres drill on lab ${INSTANCE}: up with database.type back to sqlite refused in ${(ms / 1000).toFixed(1)}s: ${r.errors.join(" | ").slice(0, 400)}`);
    expect(await status()).toEqual(gen);
    expect((await on("vps", "grep -A1 '^database:' /etc/headscale/config.yaml")).trim()).toBe("database:\n  type: postgres");
    expect(await on("vps", "test ! -e /var/lib/headscale/db.sqlite && echo none")).toBe("none\n");
    expect(await on("vps", "journalctl -u headscale --no-pager -o cat -n 60")).toContain("headscale-database-guard: headscale.database.type is sqlite, but headscale kept its state in Postgres on this host");
    let now = await nodes().catch(() => [] as HeadscaleNodeRow[]);
    for (let i = 0; i < 30 && registration(now).join() !== before.join(); i++) {
      await sleep(1000);
      now = await nodes().catch(() => [] as HeadscaleNodeRow[]);
    }
    expect(registration(now)).toEqual(before);
  }, 900_000);
});
