/**
 * Issue 15 item 1's drill: backup, the coordinator's database removed,
 * restore; with `database: "postgres"` (issue 15 item 3, on `lab up
 * --postgres`) the same drill on a coordinator whose headscale keeps its
 * database in a local Postgres: a pg_dump snapshot, the database dropped
 * and an empty one made in its place, the live one kept as a dump. Needs a deployed lab whose coordinator has headscale.backup on and
 * sqlite3 on the VPS (`withBackupFleet` brings the deployed lab there and
 * back; backup-lab deploys its own fleet).
 *
 *   - `meshfleet backup --now` takes a snapshot on the VPS and pulls it
 *     (hashes, integrity_check, the VPS's node count); the CLI itself then
 *     finds the same snapshot already here;
 *   - headscale's database is removed on the VPS (headscale stopped), while
 *     the laptop pings the nas through the subnet route the whole time;
 *   - `meshfleet restore` puts the snapshot back: every node is registered
 *     again with the same IPs, every route still approved, the nodes come
 *     back online and traffic flows; the pings are counted by phase: every
 *     one while the coordinator is down and once all nodes are back online
 *     must get its reply; the blip while nodes reconnect to the restored
 *     coordinator (headscale picks a route's primary router among the nodes
 *     connected to it) is reported and bounded;
 *   - a second restore whose connection is cut while the CLI waits for the
 *     outcome: the restore finishes by itself and the CLI reads the outcome
 *     over a new connection.
 */
import { execa } from "execa";
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { pullBackup } from "../../../cli/commands/backup.ts";
import { restore } from "../../../cli/commands/restore.ts";
import { openStackFleet } from "../../../cli/fleet-hosts.ts";
import { hsCli } from "../coordinator-runtime.ts";
import { labDeploy } from "../deploy-checks.ts";
import { labFleetDir } from "../docker-variant.ts";
import { e2ePaths, STACK } from "../paths.ts";
import { labPulumiEnv, REPO, runPulumi } from "../pulumi.ts";
import { PING_INTERVAL_MS, pingsBetween, startPing, waitTailnetRoute } from "../ping.ts";
import { diffLines, hostOn, must, nodesOf, registration, runDrill, sleep, type DrillResult } from "./drill.ts";

const NAS = "192.168.8.10";
/** The second restore's slow start: a runtime drop-in (gone at reboot), removed right after that restore. */
const SLOW_START_DIR = "/run/systemd/system/headscale.service.d";
const SLOW_START_FILE = "zz-meshfleet-drill-slow-start.conf";
const SLOW_START_S = 4;

export interface BackupRestoreDrillOptions {
  instance: number;
  /** headscale's CLI on the VPS, as a command prefix. @default hsCli() */
  hs?: string;
  /** tailscale's CLI on the laptop, as a command prefix. */
  ts: string;
  /** Where the coordinator keeps headscale's database. @default "sqlite" */
  database?: "sqlite" | "postgres";
  /**
   * Runs right after the first restore, before its checks: the drill's own
   * test injects a fault here (a node deleted, as a restore that loses one
   * would leave it) to show that the drill then fails.
   */
  afterRestore?: () => Promise<void>;
}

export function backupRestoreDrill(o: BackupRestoreDrillOptions): Promise<DrillResult> {
  const { instance } = o;
  const hs = o.hs ?? hsCli();
  const on = hostOn(instance);
  const nodes = () => nodesOf(instance, hs);
  const p = e2ePaths(instance);
  const pg = o.database === "postgres";
  const psql = (sql: string, db = "postgres") => on("vps", `runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d ${db}`, { input: sql });
  return runDrill(async (t) => {
    const out = mkdtempSync(join(tmpdir(), "mf-backup-drill-"));
    let ping: Promise<unknown> | undefined;
    let slowStart = false;
    const removeSlowStart = async () => {
      await on("vps", `rm -f ${SLOW_START_DIR}/${SLOW_START_FILE} && systemctl daemon-reload`);
      slowStart = false;
    };
    try {
      // A drop-in left by a run that was killed (its finally never ran) goes first.
      await removeSlowStart();
      const a = await openStackFleet({ stack: STACK, configFile: p.stackConfig });
      const before = await nodes();
      must(before.length >= 3, `nodes registered before the drill: ${before.length}, expected 3 or more`);
      must(/^lxc-tailscale .* routes=.*192\.168\.8\.0\/24/m.test(registration(before).join("\n")), `lxc-tailscale's route 192.168.8.0/24 is not approved before the drill: ${registration(before).join(" | ")}`);
      must((await on("laptop", `ip route get ${NAS}`)).includes("tailscale0"), `the laptop does not route ${NAS} through tailscale0 before the drill`);

      // 1. backup --now: a snapshot on the VPS, pulled here.
      const said: string[] = [];
      const b = await pullBackup(a, { out, now: true, say: (l) => said.push(l) });
      t.backupMs = Math.round(b.seconds * 1000);
      if (pg) {
        must(b.host === "vps" && b.took && !b.alreadyHere, `backup --now: host ${b.host}, took ${b.took}, already here ${b.alreadyHere}`);
        must(b.files.some((f) => f.name === "db.pgdump"), `the snapshot holds ${b.files.map((f) => f.name).join(", ")}, no db.pgdump`);
        const head = readFileSync(join(b.path, "db.pgdump")).subarray(0, 5).toString("latin1");
        must(head === "PGDMP", `db.pgdump starts with ${JSON.stringify(head)}, not pg_dump's custom format`);
      } else {
        must(b.host === "vps" && b.integrity === "ok" && b.took && !b.alreadyHere, `backup --now: host ${b.host}, integrity ${b.integrity}, took ${b.took}, already here ${b.alreadyHere}`);
        must(b.nodes === before.length, `the snapshot holds ${b.nodes} node(s), headscale had ${before.length}`);
      }
      must(b.ageSeconds !== null && b.ageSeconds < 120, `the snapshot --now pulled is ${b.ageSeconds} s old`);
      must((statSync(b.path).mode & 0o777) === 0o700, `${b.path} is mode ${(statSync(b.path).mode & 0o777).toString(8)}, expected 700`);
      for (const f of b.files) must((statSync(join(b.path, f.name)).mode & 0o777) === 0o600, `${f.name} is not mode 600`);
      const dirMode = await on("vps", "stat -c '%a %U' /var/backups/headscale");
      must(dirMode === "700 root\n", `/var/backups/headscale on the VPS: ${dirMode.trim()}, expected 700 root`);

      // The CLI itself: the same snapshot again is "already here", exit 0.
      const cli = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "backup", "--stack", STACK, "--config-file", p.stackConfig, "--out", out, "--json"], { cwd: REPO, reject: false });
      must(cli.exitCode === 0, `meshfleet backup --json: exit ${cli.exitCode}: ${String(cli.stderr).slice(-400)}`);
      const again = JSON.parse(String(cli.stdout)) as { snapshot?: string; alreadyHere?: boolean };
      must(again.snapshot === b.snapshot && again.alreadyHere === true, `meshfleet backup --json again: ${String(cli.stdout).slice(0, 300)}`);

      // 2. The coordinator loses its database; the laptop pings the nas through the tunnel all along.
      const t0 = Date.now();
      const pinging = startPing(instance, "laptop", NAS, 120);
      ping = pinging;
      await sleep(2000);
      if (pg) {
        // Dropped with headscale stopped, an empty one in its place (the restore keeps the live database as a dump first).
        await on("vps", "systemctl stop headscale");
        await psql("DROP DATABASE headscale");
        await psql("CREATE DATABASE headscale OWNER headscale");
        const tables = await psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", "headscale");
        must(tables === "0\n", `the new headscale database holds ${tables.trim()} tables, expected none`);
      } else {
        await on("vps", "systemctl stop headscale && rm -f /var/lib/headscale/db.sqlite /var/lib/headscale/db.sqlite-wal /var/lib/headscale/db.sqlite-shm && ! test -e /var/lib/headscale/db.sqlite");
      }
      const tDown = Date.now();
      await sleep(20_000);
      // A new connection through the tunnel while the coordinator is down.
      await on("laptop", `nc -z -w 3 ${NAS} 22`);

      // 3. restore, through the CLI's function (the guarded script, run as a transient unit on the VPS).
      const tr = Date.now();
      const r = await restore(a, { snapshot: b.path, yes: true, waitSeconds: pg ? 90 : 60, interactive: false, say: (l) => said.push(l) });
      t.restoreMs = Date.now() - tr;
      t.coordinatorDownMs = Date.now() - tDown;
      must(r.host === "vps" && r.outcome === "restored", `restore: ${r.host} ${r.outcome}: ${said.slice(-5).join(" | ")}`);
      if (pg) {
        must(/before-restore\.pgdump$/.test(r.kept ?? ""), `restore kept ${r.kept}, expected the live (empty) database as a before-restore.pgdump`);
        must((await on("vps", "test ! -e /var/lib/headscale/db.sqlite && echo none")) === "none\n", "a SQLite database appeared beside the Postgres coordinator");
      } else {
        must(r.kept === null, `restore kept ${r.kept}, but there was no database to keep`);
        const dbMode = await on("vps", "stat -c '%a %U' /var/lib/headscale/db.sqlite");
        must(dbMode === "600 headscale\n", `the restored database: ${dbMode.trim()}, expected 600 headscale`);
      }
      if (o.afterRestore) await o.afterRestore();

      // 4. Every node registered again with the same IPs and approved routes; they come back online.
      const restored = registration(await nodes());
      must(restored.join("\n") === registration(before).join("\n"), `after the restore the registrations differ: ${diffLines(registration(before), restored)}`);
      let after = await nodes();
      for (let i = 0; i < 45 && !after.every((n) => n.online); i++) {
        await sleep(2000);
        after = await nodes();
      }
      const offline = after.filter((n) => !n.online).map((n) => n.given_name);
      must(offline.length === 0, `nodes offline 90 s after the restore: ${offline.join(", ")}`);
      await waitTailnetRoute(instance, "laptop", NAS);
      const tOnline = Date.now();
      t.untilOnlineMs = tOnline - tr;
      const ts = JSON.parse(await on("laptop", `${o.ts} status --json`)) as { BackendState: string };
      must(ts.BackendState === "Running", `the laptop's tailscale: ${ts.BackendState}`);
      await on("laptop", `nc -z -w 3 ${NAS} 22`);
      // Pings with every node online, counted below before the second restore.
      await sleep(8000);

      // 5. The connection drops while the CLI waits for a restore's outcome: the restore goes on by itself
      // (a transient unit, not part of the SSH session), and the CLI reads its outcome over a new connection.
      // The cut must land while the restore runs. A restore can finish in under 1.5 s (the landing CI of stop 11
      // saw it), so headscale's start is held for SLOW_START_S by a runtime drop-in for this restore only: the
      // cut after 1.5 s then always finds the restore unfinished, as a slow coordinator would leave it.
      const said2: string[] = [];
      // Removed on every way out, even when writing it fails halfway.
      slowStart = true;
      await on("vps", `mkdir -p ${SLOW_START_DIR} && printf '[Service]\\nExecStartPre=/bin/sleep ${SLOW_START_S}\\n' > ${SLOW_START_DIR}/${SLOW_START_FILE} && systemctl daemon-reload`);
      const dropIns = await on("vps", "systemctl show -p DropInPaths headscale.service");
      must(dropIns.includes(SLOW_START_FILE), `headscale.service does not have the drill's drop-in after daemon-reload: ${dropIns.trim()}`);
      const tr2 = Date.now();
      const r2 = await restore(a, { snapshot: b.path, yes: true, waitSeconds: pg ? 90 : 60, interactive: false, say: (l) => said2.push(l), firstWaitTimeoutMs: 1500 });
      t.secondRestoreMs = Date.now() - tr2;
      await removeSlowStart();
      must(r2.outcome === "restored" && (pg ? /before-restore\.pgdump$/ : /^\/var\/lib\/headscale\/db\.sqlite\.before-restore-/).test(r2.kept ?? ""), `second restore: ${r2.outcome}, kept ${r2.kept}: ${said2.slice(-5).join(" | ")}`);
      must(/lost the connection while waiting .*Reading its outcome over a new connection/.test(said2.join("\n")), `the second restore did not say it read its outcome over a new connection: ${said2.join(" | ")}`);
      must((await on("vps", `test -f ${r2.kept} && echo kept`)) === "kept\n", `${r2.kept} is not on the VPS`);
      const restored2 = registration(await nodes());
      must(restored2.join("\n") === registration(before).join("\n"), `after the second restore the registrations differ: ${diffLines(registration(before), restored2)}`);

      const pl = await pinging;
      const tEnd = Date.now();
      // The pings by phase. Headscale computes a subnet route's primary router from the nodes connected to it,
      // so while the nodes reconnect after a restart the laptop may briefly have no route to the nas: that blip
      // is counted and bounded, never hidden. Before the restore (the coordinator down, its database gone)
      // and once every node is back online, every ping must get its reply.
      const down = pingsBetween(pl, t0, tr);
      const back = pingsBetween(pl, tr, tOnline);
      const online = pingsBetween(pl, tOnline, Math.min(tr2, tEnd));
      const second = pingsBetween(pl, tr2, tEnd);
      const phase = (x: { sent: number; lost: number[] }) => `${x.sent - x.lost.length}/${x.sent}${x.lost.length ? ` (lost seq ${x.lost.join(",")})` : ""}`;
      const report =
        `backup --now + pull ${b.seconds}s (${b.bytes} bytes${b.nodes !== null ? `, ${b.nodes} nodes` : ""}); restore ${(t.restoreMs / 1000).toFixed(1)}s; ` +
        `coordinator without its database ${(t.coordinatorDownMs / 1000).toFixed(1)}s; laptop -> nas pings: coordinator down ${phase(down)}, ` +
        `restore until all online and routed ${phase(back)}, after ${phase(online)}, second restore ${phase(second)}`;
      must(pl.sent > 100, `${report}; only ${pl.sent} pings sent: ${pl.text.slice(-300)}`);
      // The 22 s of waits before the restore give about 44 pings; 30 leaves room for a slow start of the ping itself.
      must(down.sent >= 30, `${report}; fewer than 30 pings while the coordinator was down`);
      must(down.lost.length === 0, `pings lost through the tunnel while the coordinator was down: ${report}`);
      must(online.sent >= 10, `${report}; fewer than 10 pings after every node was back online`);
      must(online.lost.length === 0, `pings lost after every node was back online: ${report}`);
      for (const [what, x] of [["the restore", back], ["the second restore", second]] as const) {
        must(x.lost.length * PING_INTERVAL_MS <= 20_000, `more than 20 s without the route during ${what}: ${report}`);
      }
      return `${before.length} nodes with the same IPs and approved routes after each restore; ${report}`;
    } finally {
      // A drop-in left behind would hold every later start of headscale on the lab's VPS: said, never hidden.
      if (slowStart) await removeSlowStart().catch((e: Error) => console.error(`backup drill: could not remove ${SLOW_START_DIR}/${SLOW_START_FILE} on vps: ${e.message}`));
      // A failed step leaves the ping running on the laptop: let it end (it stops by itself) before the lab moves on.
      await ping?.catch(() => undefined);
      rmSync(out, { recursive: true, force: true });
    }
  });
}

/**
 * sqlite3 for the backup script and the restore's checks. The lab's Debian
 * has no sqlite3 and the lab has no mirror for the deploy's apt-get, so this
 * machine's (the same Debian release) is copied to the VPS; the deploy's
 * prerequisites check then finds it on PATH.
 */
export async function provideSqlite3(instance: number): Promise<string> {
  const local = execFileSync("sh", ["-c", "command -v sqlite3"], { encoding: "utf8" }).trim();
  return hostOn(instance)("vps", "base64 -d > /usr/local/bin/sqlite3 && chmod 0755 /usr/local/bin/sqlite3 && sqlite3 -version", { input: readFileSync(local).toString("base64") });
}

/** A fleet folder's vps.yaml with headscale.backup on (3 kept); throws when the file no longer has the line it edits. */
export function withBackupOn(vpsYaml: string): string {
  if (!/^headscale:\n/m.test(vpsYaml)) throw new Error("vps.yaml has no `headscale:` block to turn headscale.backup on in");
  return vpsYaml.replace(/^headscale:\n/m, "headscale:\n  backup:\n    enable: true\n    keep: 3\n");
}

/**
 * For `lab check --drills`: deploy the lab's fleet with headscale.backup on
 * (sqlite3 put on the VPS first), run `fn`, then deploy the fleet back as it
 * was (the stack config byte for byte). A failed deploy back fails the item.
 */
export async function withBackupFleet(instance: number, fn: () => Promise<DrillResult>): Promise<DrillResult> {
  const p = e2ePaths(instance);
  const cfgBefore = readFileSync(p.stackConfig, "utf8");
  const current = ((parse(cfgBefore) as { config?: Record<string, unknown> } | null)?.config?.["meshfleet:hostsDir"] as string | undefined) ?? labFleetDir(instance);
  const edited = join(p.dir, "hosts-drill-backup");
  rmSync(edited, { recursive: true, force: true });
  cpSync(current, edited, { recursive: true });
  let result: DrillResult;
  try {
    result = await setUpAndRun();
  } catch (e) {
    result = { ok: false, why: (e as Error).message, timings: {} };
  }
  writeFileSync(p.stackConfig, cfgBefore);
  const back = await labDeploy(instance, { verb: "up", on: ["vps"] });
  rmSync(edited, { recursive: true, force: true });
  if (!back.ok) return { ...result, ok: false, why: `${result.why}; deploying the fleet back (headscale.backup as before) failed: ${back.errors.join("; ")}` };
  return result;

  async function setUpAndRun(): Promise<DrillResult> {
    const vps = join(edited, "vps.yaml");
    if (!existsSync(vps)) return { ok: false, why: `${current} has no vps.yaml`, timings: {} };
    writeFileSync(vps, withBackupOn(readFileSync(vps, "utf8")));
    await provideSqlite3(instance);
    const set = await runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:hostsDir", edited], { env: labPulumiEnv(instance) });
    if (set.code !== 0) return { ok: false, why: `pulumi config set meshfleet:hostsDir: ${set.stderr.trim()}`, timings: {} };
    const t0 = Date.now();
    const up = await labDeploy(instance, { verb: "up", on: ["vps"] });
    if (!up.ok) return { ok: false, why: `up --on vps with headscale.backup on: ${up.errors.join("; ")}`, timings: {} };
    const upMs = Date.now() - t0;
    const r = await fn();
    return { ...r, timings: { backupOnUpMs: upMs, ...r.timings } };
  }
}
