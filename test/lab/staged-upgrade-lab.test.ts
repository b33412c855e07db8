/**
 * Issue 18 item 3 on the real lab: an upgrade across a minor release, the
 * stage headscale's known-good path takes (0.28.0 -> 0.29.2), through
 * `meshfleet up` with its backup and health check (MESHFLEET_LAB_E2E=1, root,
 * headscale 0.28.0 built as the tool headscale-0.28; in CI a missing
 * prerequisite fails, never skips). Lab instance 3 (drills-lab's:
 * the files run one at a time, and each boots it fresh and removes it), with
 * the coordinator running the binary meshfleet installs.
 *
 *   - `lab up` deploys hosts/lab at 0.28.0: the config and policy rendered for
 *     0.28 (no `tests` in the policy file, the 0.28 keys), headscale 0.28.0
 *     serving the three nodes;
 *   - a jump past the next minor is refused with the staged path (0.27.1 ->
 *     0.29.2 is checked in test/cli/headscale-upgrade.test.ts; here: the
 *     fleet pins 0.29.2 while the host runs 0.28.0, one stage, allowed);
 *   - `meshfleet up` with 0.29.2: backup, the new binary, the health check,
 *     headscale migrates the 0.28 database; every node keeps its IPs and
 *     approved routes, the laptop reaches the nas, and the next `up` is clean.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labDown } from "../../lab/e2e/down.ts";
import { waitTailnetRoute } from "../../lab/e2e/ping.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { skipUnlessCi } from "./ci-gate.ts";
import { headscaleNodes, labCli, labMissing, labOn, registration, toolBinary, writeCoordinatorFleet } from "./harness.ts";

const INSTANCE = 3;
const NAS = "192.168.8.10";
const NEW = toolBinary("headscale");
const OLD = toolBinary("headscale-0.28");
const writeFleet = (version: string, binaryPath: string) => writeCoordinatorFleet(INSTANCE, version, binaryPath);
const on = labOn(INSTANCE);
const nodes = () => headscaleNodes(INSTANCE);
const running = async () => (await on("vps", "/usr/local/bin/headscale version | head -n 1")).trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skipUnlessCi(labMissing() || ((!NEW || !OLD) && "headscale 0.29.2 and 0.28.0 (headscale-0.28) must be built: run `meshfleet tools build`")))(
  `a staged upgrade across a minor release on lab instance ${INSTANCE}: headscale 0.28.0 -> 0.29.2`,
  () => {
    let work = "";
    let broughtUp = false;
    const times: Record<string, number> = {};
    const cli = labCli(INSTANCE, () => join(work, "state"));
    const up = (...extra: string[]) => cli("up", ...extra);

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "mf-staged-lab-"));
      await labDown({ instance: INSTANCE, log: () => {} }).catch(() => undefined);
      writeFleet("0.28.0", OLD!);
      const t0 = Date.now();
      const r = await labUp({ instance: INSTANCE, log: () => {}, noBuild: true });
      broughtUp = true;
      if (!r.ok) throw new Error(`lab up --instance ${INSTANCE} at headscale 0.28.0: ${r.error}`);
      times.labUpAt028Ms = Date.now() - t0;
    }, 1_800_000);

    afterAll(async () => {
      console.log(`staged upgrade on lab ${INSTANCE}: ${JSON.stringify(times)}`);
      if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
      if (work) rmSync(work, { recursive: true, force: true });
    }, 600_000);

    it("the lab runs headscale 0.28.0 with the policy rendered for it (no tests in the file), every node registered", async () => {
      expect(await running()).toBe("headscale version v0.28.0");
      const policy = await on("vps", "cat /etc/headscale/policy.hujson");
      expect(policy).not.toMatch(/"tests"\s*:/);
      expect(policy).toMatch(/"acls"\s*:/);
      // The config carries the key 0.28 reads (0.29 reads node.ephemeral.inactivity_timeout instead).
      expect(await on("vps", "cat /etc/headscale/config.yaml")).toMatch(/^ephemeral_node_inactivity_timeout:/m);
      const ns = await nodes();
      expect(ns.map((n) => n.given_name).sort()).toEqual(["laptop", "lxc-tailscale", "vps"]);
      expect(ns.find((n) => n.given_name === "lxc-tailscale")!.approved_routes).toContain("192.168.8.0/24");
    });

    it("`meshfleet up` at 0.29.2 upgrades across the minor release with a backup and the health check; nodes, IPs and routes kept", async () => {
      const before = await nodes();
      writeFleet("0.29.2", NEW!);
      const r = await up();
      expect(r.code, r.out.slice(-3000)).toBe(0);
      expect(r.out).toMatch(/vps: headscale 0\.28\.0 -> 0\.29\.2: backup, new binary, health check, rollback if it fails/);
      // The config rendered for 0.29.2 went in with the binary (the old one kept), before the deploy re-rendered anything.
      expect(r.out).toMatch(/headscale: upgraded: headscale 0\.28\.0 -> 0\.29\.2, \d+ node\(s\); .*, the config as \/etc\/headscale\/config\.yaml\.before-upgrade-\S+/);
      expect(await on("vps", "cat /etc/headscale/config.yaml.before-upgrade-*")).toMatch(/^ephemeral_node_inactivity_timeout:/m);
      times.upgradeUpMs = r.ms;
      expect(await running()).toBe("headscale version v0.29.2");
      // The copy of the 0.28 database taken before the swap is kept beside it.
      expect((await on("vps", "ls /var/lib/headscale")).split("\n").filter((f) => f.startsWith("db.sqlite.before-upgrade-") && !/-(wal|shm)$/.test(f))).toHaveLength(1);
      expect(registration(await nodes())).toEqual(registration(before));
      // The 0.29 policy file carries the tests again (rendered for the new release by the same up).
      expect(await on("vps", "cat /etc/headscale/policy.hujson")).toMatch(/"tests"\s*:/);
      let back = await nodes();
      for (let i = 0; i < 30 && !back.every((n) => n.online); i++) {
        await sleep(1000);
        back = await nodes();
      }
      expect(back.filter((n) => !n.online).map((n) => n.given_name)).toEqual([]);
      await waitTailnetRoute(INSTANCE, "laptop", NAS);
      await on("laptop", `nc -z -w 5 ${NAS} 22`);
      const again = await up("--expect-no-changes");
      expect(again.code, again.out.slice(-2000)).toBe(0);
    }, 900_000);
  },
);
