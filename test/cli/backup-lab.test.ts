/**
 * The restore drill of issue 15 item 1 on the real lab (MESHFLEET_LAB_E2E=1,
 * root, tools built; in CI a missing prerequisite fails, never skips). Lab
 * instance 7, with a copy of hosts/lab whose SSH addresses are instance 7's
 * and whose coordinator has headscale.backup on; a lab already deployed there
 * is brought to that fleet with `up`, else `lab up` deploys it (and `lab down`
 * removes it afterwards).
 *
 * The drill, all through the CLI's own functions over the deploy's SSH:
 *   - `meshfleet backup --now` takes a snapshot on the VPS and pulls it
 *     (hashes, integrity_check, the VPS's node count);
 *   - headscale's database is removed on the VPS (headscale stopped), while
 *     the laptop pings the nas through the subnet route the whole time;
 *   - `meshfleet restore` puts the snapshot back: every node is registered
 *     again with the same IPs, every route still approved, the nodes come
 *     back online, and traffic flows; the pings are counted by phase: every
 *     one while the coordinator is down and once all nodes are back online
 *     must get its reply; the blip while nodes reconnect to the restored
 *     coordinator (headscale picks a route's primary router among the nodes
 *     connected to it) is reported and bounded;
 *   - a second restore whose connection is cut while the CLI waits for the
 *     outcome: the restore finishes by itself and the CLI reads the outcome
 *     over a new connection.
 * The lab's Debian has no sqlite3 and the lab has no mirror for the deploy's
 * apt-get (fleet-lab proves that install from a local source), so this
 * machine's sqlite3 (the same Debian release) is copied to the VPS first; the
 * deploy's prerequisites check finds it on PATH.
 */
import { execa } from "execa";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pullBackup } from "../../cli/commands/backup.ts";
import { runDeploy } from "../../cli/commands/deploy.ts";
import { restore } from "../../cli/commands/restore.ts";
import { collectStatus } from "../../cli/commands/status.ts";
import { newSession, openStackFleet, type StackAccess } from "../../cli/fleet-hosts.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO } from "../../lab/e2e/pulumi.ts";
import { PING_INTERVAL_MS, pingsBetween, startPing, waitTailnetRoute } from "../../lab/e2e/ping.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { labMissing, labOn, writeLabFleet } from "../lab/harness.ts";

const INSTANCE = 7;
const p = e2ePaths(INSTANCE);
const HOSTS = join(p.dir, `hosts-lab${INSTANCE}`);
const HS = "/opt/meshfleet/tools/headscale@0.29.2/bin/headscale";
const TS = "/opt/meshfleet/tools/tailscale@1.98.10/bin/tailscale --socket=/run/tailscale/tailscaled.sock";
const NAS = "192.168.8.10";

/** hosts/lab with instance INSTANCE's SSH addresses and headscale.backup on the VPS. */
function writeInstanceFleet(): void {
  writeLabFleet(INSTANCE, {
    edit: (f, text) => {
      if (f !== "vps.yaml") return text;
      expect(text).toMatch(/^headscale:\n/m);
      return text.replace(/^headscale:\n/m, "headscale:\n  backup:\n    enable: true\n    keep: 3\n");
    },
  });
}

const on = labOn(INSTANCE);

interface NodeRow {
  given_name: string;
  ip_addresses: string[];
  approved_routes?: string[];
  online?: boolean;
}
const nodes = async () => JSON.parse((await on("vps", `${HS} -c /etc/headscale/config.yaml nodes list -o json`)) || "null") as NodeRow[] | null;
const registration = (ns: NodeRow[] | null) => (ns ?? []).map((n) => `${n.given_name} ${[...n.ip_addresses].sort().join(",")} routes=${[...(n.approved_routes ?? [])].sort().join(",")}`).sort();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skipUnlessCi(labMissing()))(`backup and restore drill on lab instance ${INSTANCE}`, () => {
  let a: StackAccess;
  let broughtUp = false;
  const open = () => openStackFleet({ stack: STACK, configFile: p.stackConfig });
  const out = mkdtempSync(join(tmpdir(), "mf-backup-lab-"));

  // sqlite3 for the backup script and the restore's checks (see the header), before the deploy:
  // its prerequisites check finds it on PATH instead of asking apt-get for it.
  const sqlite3 = () => on("vps", "base64 -d > /usr/local/bin/sqlite3 && chmod 0755 /usr/local/bin/sqlite3 && sqlite3 -version", { input: readFileSync("/usr/bin/sqlite3").toString("base64") });

  beforeAll(async () => {
    writeInstanceFleet();
    let deployed = false;
    try {
      const s = newSession();
      const { status } = await collectStatus(await open(), s);
      s.close();
      deployed = status.hosts.every((h) => h.reachable && (h.generation?.n ?? 0) > 0);
    } catch {
      deployed = false;
    }
    if (deployed) {
      // A lab deployed before, maybe without headscale.backup: bring it to this fleet.
      await sqlite3();
      const up = await runDeploy({ verb: "up", stack: STACK, configFile: p.stackConfig, env: labPulumiEnv(INSTANCE), on: ["vps"] });
      if (!up.ok) throw new Error(`up --on vps: ${up.errors.join("; ")}`);
    } else {
      const r = await labUp({ instance: INSTANCE, log: () => {}, noBuild: true, beforeDeploy: async () => void (await sqlite3()) });
      if (!r.ok) throw new Error(`lab up --instance ${INSTANCE}: ${r.error}`);
      broughtUp = true;
    }
    a = await open();
  }, 1_800_000);

  afterAll(async () => {
    rmSync(out, { recursive: true, force: true });
    if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
  }, 600_000);

  it("backup --now, the database removed, restore: the same nodes, IPs and approved routes; the mesh kept working and works after", async () => {
    const before = await nodes();
    expect(before?.length, "nodes registered before the drill").toBeGreaterThanOrEqual(3);
    expect(registration(before).join("\n")).toMatch(/^lxc-tailscale .* routes=.*192\.168\.8\.0\/24/m);
    expect((await on("laptop", `ip route get ${NAS}`)).includes("tailscale0")).toBe(true);

    // 1. backup --now: a snapshot on the VPS, pulled here.
    const said: string[] = [];
    const b = await pullBackup(a, { out, now: true, say: (l) => said.push(l) });
    expect(b).toMatchObject({ host: "vps", integrity: "ok", nodes: before!.length, alreadyHere: false, took: true });
    expect(b.ageSeconds).toBeLessThan(120);
    expect(statSync(b.path).mode & 0o777).toBe(0o700);
    for (const f of b.files) expect(statSync(join(b.path, f.name)).mode & 0o777, f.name).toBe(0o600);
    expect(await on("vps", "stat -c '%a %U' /var/backups/headscale")).toBe("700 root\n");

    // The CLI itself: the same snapshot again is "already here", exit 0.
    const cli = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "backup", "--stack", STACK, "--config-file", p.stackConfig, "--out", out, "--json"], { cwd: REPO, reject: false });
    expect(cli.exitCode, String(cli.stderr)).toBe(0);
    expect(JSON.parse(String(cli.stdout))).toMatchObject({ snapshot: b.snapshot, alreadyHere: true });

    // 2. The coordinator loses its database; the laptop pings the nas through the tunnel all along.
    const t0 = Date.now();
    const ping = startPing(INSTANCE, "laptop", NAS, 120);
    await sleep(2000);
    await on("vps", "systemctl stop headscale && rm -f /var/lib/headscale/db.sqlite /var/lib/headscale/db.sqlite-wal /var/lib/headscale/db.sqlite-shm && ! test -e /var/lib/headscale/db.sqlite");
    const tDown = Date.now();
    await sleep(20_000);
    // A new connection through the tunnel while the coordinator is down.
    await on("laptop", `nc -z -w 3 ${NAS} 22`);

    // 3. restore, through the CLI's function (the guarded script, run as a transient unit on the VPS).
    const tr = Date.now();
    const r = await restore(a, { snapshot: b.path, yes: true, waitSeconds: 60, interactive: false, say: (l) => said.push(l) });
    const restoreMs = Date.now() - tr;
    const downMs = Date.now() - tDown;
    expect(r, said.join("\n")).toMatchObject({ host: "vps", outcome: "restored" });
    expect(r.kept).toBeNull(); // there was no database to keep
    expect(await on("vps", "stat -c '%a %U' /var/lib/headscale/db.sqlite")).toBe("600 headscale\n");

    // 4. Every node registered again with the same IPs and approved routes; they come back online.
    expect(registration(await nodes())).toEqual(registration(before));
    let after = await nodes();
    for (let i = 0; i < 45 && !(after ?? []).every((n) => n.online); i++) {
      await sleep(2000);
      after = await nodes();
    }
    await waitTailnetRoute(INSTANCE, "laptop", NAS);
    const tOnline = Date.now();
    expect((after ?? []).filter((n) => !n.online).map((n) => n.given_name), "nodes offline 90 s after the restore").toEqual([]);
    const ts = JSON.parse(await on("laptop", `${TS} status --json`)) as { BackendState: string };
    expect(ts.BackendState).toBe("Running");
    await on("laptop", `nc -z -w 3 ${NAS} 22`);
    // Pings with every node online, counted below before the second restore.
    await sleep(8000);

    // 5. The connection drops while the CLI waits for a restore's outcome: the restore goes on by itself
    // (a transient unit, not part of the SSH session), and the CLI reads its outcome over a new connection.
    const said2: string[] = [];
    const tr2 = Date.now();
    const r2 = await restore(a, { snapshot: b.path, yes: true, waitSeconds: 60, interactive: false, say: (l) => said2.push(l), firstWaitTimeoutMs: 1500 });
    expect(r2, said2.join("\n")).toMatchObject({ outcome: "restored", kept: expect.stringMatching(/^\/var\/lib\/headscale\/db\.sqlite\.before-restore-/) });
    expect(said2.join("\n")).toMatch(/lost the connection while waiting .*Reading its outcome over a new connection/);
    expect(await on("vps", `test -f ${r2.kept} && echo kept`)).toBe("kept\n");
    expect(registration(await nodes())).toEqual(registration(before));

    const pl = await ping;
    const tEnd = Date.now();
    // The pings by phase. Headscale computes a subnet route's primary router from the nodes connected to it,
    // so while the nodes reconnect after a restart the laptop may briefly have no route to the nas: that blip
    // is counted and bounded, never hidden. Before the restore (the coordinator down, its database gone)
    // and once every node is back online, every ping must get its reply.
    const down = pingsBetween(pl, t0, tr);
    const back = pingsBetween(pl, tr, tOnline);
    const online = pingsBetween(pl, tOnline, Math.min(tr2, tEnd));
    const again = pingsBetween(pl, tr2, tEnd);
    const phase = (x: { sent: number; lost: number[] }) => `${x.sent - x.lost.length}/${x.sent}${x.lost.length ? ` (lost seq ${x.lost.join(",")})` : ""}`;
    const report =
      `drill on lab ${INSTANCE}: backup --now + pull ${b.seconds}s (${b.bytes} bytes, ${b.nodes} nodes); restore ${(restoreMs / 1000).toFixed(1)}s; ` +
      `coordinator without its database ${(downMs / 1000).toFixed(1)}s; laptop -> nas pings: coordinator down ${phase(down)}, ` +
      `restore until all online and routed ${phase(back)}, after ${phase(online)}, second restore ${phase(again)}`;
    console.log(report);
    expect(pl.sent, `${report}\n${pl.text.slice(-600)}`).toBeGreaterThan(100);
    // The 22 s of waits before the restore give about 44 pings; 30 leaves room for a slow start of the ping itself.
    expect(down.sent, report).toBeGreaterThanOrEqual(30);
    expect(down.lost, `pings through the tunnel while the coordinator was down: ${report}`).toEqual([]);
    expect(online.sent, report).toBeGreaterThanOrEqual(10);
    expect(online.lost, `pings after every node was back online: ${report}`).toEqual([]);
    for (const [what, x] of [["the restore", back], ["the second restore", again]] as const) {
      expect(x.lost.length * PING_INTERVAL_MS, `seconds without the route during ${what}: ${report}`).toBeLessThanOrEqual(20_000);
    }
  }, 900_000);
});
