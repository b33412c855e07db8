/**
 * The Postgres drills of issue 15 item 3 on the real lab, through the CLI
 * (MESHFLEET_LAB_E2E=1, root, tools built; in CI a missing prerequisite
 * fails, never skips). Lab instance 7.
 *
 *   - `meshfleet lab up --postgres`: hosts/lab with the coordinator keeping
 *     headscale's database in a PostgreSQL the module runs itself
 *     (headscale.database.postgres.local) and headscale.backup on; the
 *     password made and put in the stack's secret config, postgresql
 *     installed by the deploy from a local apt source
 *     (lab/e2e/postgres-variant.ts);
 *   - `meshfleet lab check --quick --drills` on it passes every item, the two
 *     Postgres drills among them (lab/e2e/drills/postgres.ts: the deploy's
 *     facts, backup --now, the database dropped, restore with the same nodes,
 *     IPs and routes and traffic flowing; the database guard on the unit and
 *     on a deploy switching database.type back to sqlite), and names the
 *     drills it did not run;
 *   - each drill fails when the feature is broken: the guard drill with the
 *     guard's script replaced by one that lets everything through; the backup
 *     drill on a restore that loses a node (the laptop deleted right after
 *     the restore).
 * `lab down` removes the lab after.
 */
import { execa } from "execa";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hsCli, tsCli, type ChecksFile } from "../../lab/e2e/checks.ts";
import { labVariant } from "../../lab/e2e/docker-variant.ts";
import { DRILLS, drillsNotOn, drillsOn, postgresBackupRestoreDrill, postgresGuardDrill } from "../../lab/e2e/drills/index.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO } from "../../lab/e2e/pulumi.ts";
import { DB_GUARD_SCRIPT } from "../../modules/headscale-postgres.ts";
import { skipUnlessCi } from "./ci-gate.ts";
import { labMissing, labOn } from "./harness.ts";

const INSTANCE = 7;
const p = e2ePaths(INSTANCE);
const on = labOn(INSTANCE);
const t0 = Date.now();

describe.skipIf(skipUnlessCi(labMissing()))(`lab up --postgres and lab check --drills on lab instance ${INSTANCE}`, () => {
  let broughtUp = false;

  const meshfleet = (...args: string[]) =>
    execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), ...args], { cwd: REPO, reject: false, env: { ...process.env, ...labPulumiEnv(INSTANCE) }, timeout: 1_500_000 });

  beforeAll(async () => {
    await labDown({ instance: INSTANCE, log: () => {} }).catch(() => undefined);
    const r = await meshfleet("lab", "up", "--instance", String(INSTANCE), "--no-build", "--postgres");
    broughtUp = true;
    console.log(String(r.stdout).split("\n").filter((l) => /^lab up:|^ {2}(ok|FAIL) /.test(l)).join("\n"));
    if (r.exitCode !== 0) throw new Error(`lab up --postgres --instance ${INSTANCE}: exit ${r.exitCode}: ${String(r.stdout).slice(-2000)}\n${String(r.stderr).slice(-2000)}`);
  }, 1_800_000);

  afterAll(async () => {
    if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
    console.log(`postgres-lab: ${((Date.now() - t0) / 1000).toFixed(1)}s for the file`);
  }, 600_000);

  it("lab check --quick --drills on the Postgres lab: every item passes, the Postgres drills with their times; the drills it did not run are named", async () => {
    expect(labVariant(INSTANCE)).toBe("postgres");
    const r = await meshfleet("lab", "check", "--instance", String(INSTANCE), "--quick", "--drills");
    console.log(String(r.stdout).split("\n").filter((l) => /PASS|FAIL|lab check/.test(l)).join("\n"));
    expect(r.exitCode, `${String(r.stdout).slice(-3000)}\n${String(r.stderr).slice(-2000)}`).toBe(0);
    expect(String(r.stdout)).toContain(`lab check --drills on a Postgres lab: the Postgres drills; not run here (they need \`meshfleet lab up\`): ${drillsNotOn("postgres").join(" | ")}`);
    expect(drillsOn("postgres")).toEqual([DRILLS.postgresBackupRestore, DRILLS.postgresGuard]);
    const checks = JSON.parse(readFileSync(p.checks, "utf8")) as ChecksFile;
    for (const name of drillsOn("postgres")) expect(checks.checks.find((x) => x.name === name), name).toMatchObject({ ok: true });
    for (const name of drillsNotOn("postgres")) expect(checks.checks.find((x) => x.name === name), name).toBeUndefined();
    expect(checks.checks.find((x) => x.name === DRILLS.postgresBackupRestore)!.timings).toMatchObject({ backupMs: expect.any(Number), restoreMs: expect.any(Number), secondRestoreMs: expect.any(Number) });
    expect(checks.checks.find((x) => x.name === DRILLS.postgresGuard)!.timings).toMatchObject({ unitGuardMs: expect.any(Number), refusedDeployMs: expect.any(Number), deployBackMs: expect.any(Number) });
  }, 1_800_000);

  it("the guard drill fails when the guard is broken (its script replaced by one that lets headscale start)", async () => {
    const saved = `${DB_GUARD_SCRIPT}.drill-saved`;
    await on("vps", `test -f ${DB_GUARD_SCRIPT} && cp -p ${DB_GUARD_SCRIPT} ${saved}`);
    const r = await postgresGuardDrill({
      instance: INSTANCE,
      hs: hsCli(),
      beforeRestart: () => on("vps", `printf '#!/bin/sh\\nexit 0\\n' > ${DB_GUARD_SCRIPT}`).then(() => undefined),
    }).finally(() => on("vps", `mv ${saved} ${DB_GUARD_SCRIPT}`));
    console.log(`fault injected (guard): ${r.ok ? "PASS" : "FAIL"} ${r.why}`);
    expect(r.ok).toBe(false);
    expect(r.why).toMatch(/^headscale started with the SQLite database \/var\/lib\/headscale\/db\.sqlite beside its Postgres one: the guard let it through/);
    expect(await on("vps", "test ! -e /var/lib/headscale/db.sqlite && systemctl is-active headscale")).toBe("active\n");
  }, 300_000);

  it("the Postgres backup drill fails on a restore that loses a node (the laptop deleted right after the restore), naming it", async () => {
    const r = await postgresBackupRestoreDrill({
      instance: INSTANCE,
      ts: tsCli(),
      afterRestore: async () => {
        const laptop = (JSON.parse((await on("vps", `${hsCli()} nodes list -o json`)) || "[]") as { id: number; given_name: string }[]).find((n) => n.given_name === "laptop");
        if (!laptop) throw new Error("no laptop node to delete");
        await on("vps", `${hsCli()} nodes delete -i ${laptop.id} --force`);
      },
    });
    console.log(`fault injected (restore): ${r.ok ? "PASS" : "FAIL"} ${r.why}`);
    expect(r.ok).toBe(false);
    expect(r.why).toMatch(/^after the restore the registrations differ: lost: laptop \S+ routes=/);
    expect(r.timings.restoreMs).toBeGreaterThan(0);
  }, 900_000);
});
