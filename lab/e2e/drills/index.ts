/**
 * The coordinator drills of issue 15, each one function taking the lab
 * instance and returning a `lab check` verdict with its phase times. The
 * vitest files run them on lab instances they set up themselves;
 * `lab check --drills` runs those that fit the deployed standard lab.
 */
import type { DrillResult } from "./drill.ts";
import { backupRestoreDrill, withBackupFleet } from "./backup-restore.ts";
import { keyExpiryDrill } from "./key-expiry.ts";
import { labDeploy } from "../deploy-checks.ts";

export { backupRestoreDrill, provideSqlite3, withBackupOn, withBackupFleet, type BackupRestoreDrillOptions } from "./backup-restore.ts";
export { keyExpiryDrill, type KeyExpiryDrillOptions } from "./key-expiry.ts";
export { DrillFailure, must, runDrill, type DrillResult } from "./drill.ts";

/** A `lab check` item runner (checks.ts's `check`): the verdict, with the drill's timings kept for the report. */
export type DrillCheck = (name: string, fn: () => Promise<DrillResult>) => Promise<boolean>;

/** The names of the drills `lab check --drills` runs, in order (the report and --help list them). */
export const DRILLS = {
  backupRestore: "drill: backup --now, headscale's database removed, restore: every node registered with the same IPs and approved routes, traffic kept flowing (issue 15 item 1)",
  keyExpiry: "drill: a node whose key expired is seen by status and fixed by up (issue 15 item 5)",
} as const;

/** What the drills prove, in a few words for `lab check --help`. */
export const DRILL_TOPICS = "backup and restore with the database removed; an expired node key fixed by up";

/**
 * `lab check --drills` on the deployed standard lab. The backup drill deploys
 * the fleet with headscale.backup on and back; the key drill's `up` is the
 * lab's deploy in this process.
 */
export async function drillChecks(instance: number, check: DrillCheck, ts: string): Promise<void> {
  await check(DRILLS.backupRestore, () => withBackupFleet(instance, () => backupRestoreDrill({ instance, ts })));
  await check(DRILLS.keyExpiry, () =>
    keyExpiryDrill({
      instance,
      ts,
      up: async () => {
        const r = await labDeploy(instance, { verb: "up" });
        return { ok: r.ok, out: r.errors.join("\n") };
      },
    }),
  );
}
