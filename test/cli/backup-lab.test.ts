/**
 * The restore drill of issue 15 item 1 on the real lab (MESHFLEET_LAB_E2E=1,
 * root, tools built; in CI a missing prerequisite fails, never skips). Lab
 * instance 7, with a copy of hosts/lab whose SSH addresses are instance 7's
 * and whose coordinator has headscale.backup on; a lab already deployed there
 * is brought to that fleet with `up`, else `lab up` deploys it (and `lab down`
 * removes it afterwards).
 *
 * The drill (lab/e2e/drills/backup-restore.ts, also a `lab check --drills`
 * item), all through the CLI's own functions over the deploy's SSH:
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
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDeploy } from "../../cli/commands/deploy.ts";
import { collectStatus } from "../../cli/commands/status.ts";
import { newSession, openStackFleet } from "../../cli/fleet-hosts.ts";
import { backupRestoreDrill, provideSqlite3, withBackupOn } from "../../lab/e2e/drills/index.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv } from "../../lab/e2e/pulumi.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { labMissing, writeLabFleet } from "../lab/harness.ts";

const INSTANCE = 7;
const p = e2ePaths(INSTANCE);
const HS = "/opt/meshfleet/tools/headscale@0.29.2/bin/headscale";
const TS = "/opt/meshfleet/tools/tailscale@1.98.10/bin/tailscale --socket=/run/tailscale/tailscaled.sock";

/** hosts/lab with instance INSTANCE's SSH addresses and headscale.backup on the VPS. */
const writeInstanceFleet = () => writeLabFleet(INSTANCE, { edit: (f, text) => (f === "vps.yaml" ? withBackupOn(text) : text) });

describe.skipIf(skipUnlessCi(labMissing()))(`backup and restore drill on lab instance ${INSTANCE}`, () => {
  let broughtUp = false;
  const open = () => openStackFleet({ stack: STACK, configFile: p.stackConfig });

  // sqlite3 for the backup script and the restore's checks (see the header), before the deploy:
  // its prerequisites check finds it on PATH instead of asking apt-get for it.
  const sqlite3 = () => provideSqlite3(INSTANCE);

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
      // Before the check: a lab up that fails half-way (a host that did not boot) still leaves hosts to remove.
      broughtUp = true;
      if (!r.ok) throw new Error(`lab up --instance ${INSTANCE}: ${r.error}`);
    }
  }, 1_800_000);

  afterAll(async () => {
    if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
  }, 600_000);

  it("backup --now, the database removed, restore: the same nodes, IPs and approved routes; the mesh kept working and works after", async () => {
    // The drill itself is lab check's item (lab check --drills): the same function, on this instance's fleet.
    const r = await backupRestoreDrill({ instance: INSTANCE, hs: `${HS} -c /etc/headscale/config.yaml`, ts: TS });
    console.log(`drill on lab ${INSTANCE}: ${r.ok ? "PASS" : "FAIL"} ${r.why}; timings ${JSON.stringify(r.timings)}`);
    expect(r.ok, r.why).toBe(true);
  }, 900_000);
});
