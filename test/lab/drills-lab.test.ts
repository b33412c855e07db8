/**
 * `meshfleet lab check --drills` on the real lab (MESHFLEET_LAB_E2E=1, root,
 * tools built; in CI a missing prerequisite fails, never skips). Lab
 * instance 3, booted fresh with hosts/lab at instance 3's addresses, its
 * coordinator at the headscale release before the pinned one (what `lab up
 * --headscale-previous` deploys, so the upgrade drill runs), and removed
 * afterwards. One boot for every drill: the upgrade and the coordinator move
 * had lab files of their own, each booting its lab.
 *
 *   - the CLI's `lab check --quick --drills` passes every item, the drills
 *     among them with their phase times, and `lab report` lists them;
 *   - the upgrade drill is not run on a lab it does not fit (this one, once
 *     upgraded), saying why;
 *   - the move drill fails when the feature is broken: a move that loses a
 *     route (lxc-tailscale's approval of 192.168.8.0/24 swapped on vps2 right
 *     after the move for a prefix it does not announce, injected through the
 *     drill's `afterMove`) fails the drill naming the node, and the drill puts
 *     the coordinator back on vps. Not an empty approval: the fleet's
 *     autoApprovers cover the route, and headscale approves it again on the
 *     router's next Hostinfo change while none is approved (a reconnect to
 *     the moved coordinator is one), which healed the fault before the drill
 *     read the nodes in one CI run. An approval it keeps is never widened;
 *   - the backup drill fails when the feature is broken: a restore that
 *     loses a node (the laptop deleted from headscale right after the
 *     restore, the fault injected through the drill's `afterRestore`) fails
 *     the drill, naming the lost node.
 */
import { execa } from "execa";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hsCli, tsCli, type ChecksFile } from "../../lab/e2e/checks.ts";
import { backupRestoreDrill, deployPreviousRelease, DRILLS, drillsNotOn, drillsOn, moveDrill, upgradeDrill, withBackupFleet } from "../../lab/e2e/drills/index.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO } from "../../lab/e2e/pulumi.ts";
import { waitTailnetRoute } from "../../lab/e2e/ping.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { skipUnlessCi } from "./ci-gate.ts";
import { labMissing, labOn, writeLabFleet } from "./harness.ts";

const INSTANCE = 3;
const p = e2ePaths(INSTANCE);
const on = labOn(INSTANCE);
/** A prefix lxc-tailscale never announces (TEST-NET-1, no network of the lab): approved, it routes nothing, and no autoApprover removes it. */
const NOT_ANNOUNCED = "192.0.2.0/24";

describe.skipIf(skipUnlessCi(labMissing()))(`lab check --drills on lab instance ${INSTANCE}`, () => {
  let broughtUp = false;

  beforeAll(async () => {
    await labDown({ instance: INSTANCE, log: () => {} }).catch(() => undefined);
    writeLabFleet(INSTANCE);
    const r = await labUp({ instance: INSTANCE, log: () => {}, noBuild: true, beforeDeploy: async () => void (await deployPreviousRelease(INSTANCE)) });
    broughtUp = true;
    if (!r.ok) throw new Error(`lab up --instance ${INSTANCE}: ${r.error}`);
  }, 1_800_000);

  afterAll(async () => {
    if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
  }, 600_000);

  const meshfleet = (...args: string[]) =>
    execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), ...args], { cwd: REPO, reject: false, env: { ...process.env, ...labPulumiEnv(INSTANCE) }, timeout: 2_400_000 });

  it("lab check --quick --drills: every item passes, the drills with their times, and lab report lists them", async () => {
    const r = await meshfleet("lab", "check", "--instance", String(INSTANCE), "--quick", "--drills");
    console.log(String(r.stdout).split("\n").filter((l) => /PASS|FAIL|lab check:/.test(l)).join("\n"));
    expect(r.exitCode, `${String(r.stdout).slice(-3000)}\n${String(r.stderr).slice(-2000)}`).toBe(0);
    // The Postgres drills are not run on this SQLite lab, and it says so (never a silent pass).
    expect(String(r.stdout)).toContain(`lab check --drills: not run here: the Postgres drills need \`meshfleet lab up --postgres\` (this lab keeps headscale's database in SQLite): ${drillsNotOn("standard").join(" | ")}`);
    const checks = JSON.parse(readFileSync(p.checks, "utf8")) as ChecksFile;
    for (const name of drillsOn("standard")) {
      const c = checks.checks.find((x) => x.name === name);
      expect(c, name).toMatchObject({ ok: true });
      expect(Object.keys(c!.timings ?? {}).length, `${name}: its timings`).toBeGreaterThan(0);
    }
    expect(checks.checks.find((x) => x.name === DRILLS.backupRestore)!.timings).toMatchObject({ backupMs: expect.any(Number), restoreMs: expect.any(Number), coordinatorDownMs: expect.any(Number) });
    const rep = await meshfleet("lab", "report", "--instance", String(INSTANCE));
    expect(rep.exitCode, String(rep.stderr)).toBe(0);
    const html = readFileSync(p.report, "utf8");
    for (const name of drillsOn("standard")) expect(html).toMatch(new RegExp(`<tr class="pass"><td>PASS</td><td>${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/'/g, "&#39;")}</td>`));
    expect(html).toMatch(/restoreMs \d+\.\d+s/);
    expect(checks.checks.find((x) => x.name === DRILLS.upgrade)!.timings).toMatchObject({ backupMs: expect.any(Number), upgradeMs: expect.any(Number), upgradeUpMs: expect.any(Number), rollbackMs: expect.any(Number) });
    expect(checks.checks.find((x) => x.name === DRILLS.move)!.timings).toMatchObject({ upToVps2Ms: expect.any(Number), onlineToVps2Ms: expect.any(Number), upBackMs: expect.any(Number), onlineBackMs: expect.any(Number), pingLossToVps2Ms: expect.any(Number), pingLossBackMs: expect.any(Number) });
    expect(String(r.stdout)).not.toMatch(/lab check --drills: drill: (headscale upgraded|the coordinator moved).*: not run/);
  }, 2_700_000);

  it("the upgrade drill is not run on a lab whose coordinator already runs the pinned release, saying why", async () => {
    const r = await upgradeDrill({ instance: INSTANCE });
    expect(r.ok).toBe(false);
    expect(r.why).toMatch(/^not run: the coordinator runs headscale \S+, not the previous release \S+ \(the drill already ran on this lab\); a lab for it: `meshfleet lab up --headscale-previous`/);
  }, 120_000);

  it("the move drill fails on a move that loses a route (lxc-tailscale's approval swapped on vps2 right after the move for a prefix it does not announce), naming it, and puts the coordinator back", async () => {
    let router: { id: number | string; approved_routes?: string[] } | undefined;
    const r = await moveDrill({
      instance: INSTANCE,
      afterMove: async (to, lab) => {
        if (to !== "vps2") return;
        router = (await headscaleNodesAny(lab)).find((n) => n.given_name === "lxc-tailscale");
        if (!router) throw new Error("no lxc-tailscale node on vps2");
        await on(lab, `${hsCli()} nodes approve-routes -i ${router.id} -r '${NOT_ANNOUNCED}'`);
      },
    });
    console.log(`fault injected: ${r.ok ? "PASS" : "FAIL"} ${r.why}`);
    expect(r.ok).toBe(false);
    expect(r.why).toMatch(/^nodes not kept on vps2's headscale \(same id, IPs and routes\): \S+ lxc-tailscale \S+ routes=192\.168\.8\.0\/24 -> \S+ lxc-tailscale \S+ routes=192\.0\.2\.0\/24; the coordinator was put back on vps$/);
    expect(r.timings.upToVps2Ms).toBeGreaterThan(0);
    // The lab as it was for the next test: the route approved again on vps, the laptop routed to the NAS.
    await on("vps", `${hsCli()} nodes approve-routes -i ${router!.id} -r '${(router!.approved_routes ?? []).join(",")}'`);
    await waitTailnetRoute(INSTANCE, "laptop", "192.168.8.10", 90_000);
  }, 900_000);

  it("the backup drill fails on a restore that loses a node (the laptop deleted right after the restore), naming it", async () => {
    const r = await withBackupFleet(INSTANCE, () =>
      backupRestoreDrill({
        instance: INSTANCE,
        ts: tsCli(),
        afterRestore: async () => {
          const laptop = (await headscaleNodesAny()).find((n) => n.given_name === "laptop");
          if (!laptop) throw new Error("no laptop node to delete");
          await on("vps", `${hsCli()} nodes delete -i ${laptop.id} --force`);
        },
      }),
    );
    console.log(`fault injected: ${r.ok ? "PASS" : "FAIL"} ${r.why}`);
    expect(r.ok).toBe(false);
    expect(r.why).toMatch(/^after the restore the registrations differ: lost: laptop \S+ routes=/);
    expect(r.timings.restoreMs).toBeGreaterThan(0);
  }, 900_000);
});

/** headscale's nodes on `host` through the tool binary (whichever headscale the host runs: the CLI only talks to it). */
async function headscaleNodesAny(host = "vps"): Promise<{ id: number | string; given_name: string; approved_routes?: string[] }[]> {
  return JSON.parse((await on(host, `${hsCli()} nodes list -o json`)) || "[]") as { id: number | string; given_name: string; approved_routes?: string[] }[];
}
