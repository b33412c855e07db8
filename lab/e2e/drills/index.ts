/**
 * The coordinator drills of issue 15, each one function taking the lab
 * instance and returning a `lab check` verdict with its phase times. The
 * vitest files run them on lab instances they set up themselves;
 * `lab check --drills` runs those that fit the deployed standard lab.
 */
import type { DrillResult } from "./drill.ts";
import { backupRestoreDrill, withBackupFleet } from "./backup-restore.ts";
import { keyExpiryDrill } from "./key-expiry.ts";
import { moveDrill, moveNotFitHere } from "./move.ts";
import { upgradeDrill, upgradeNotFitHere } from "./upgrade.ts";
import { labDeploy } from "../deploy-checks.ts";
import { labVariant, type LabVariant } from "../docker-variant.ts";
import { oidcDrill } from "./oidc.ts";
import { postgresBackupRestoreDrill, postgresGuardDrill } from "./postgres.ts";

export { backupRestoreDrill, provideSqlite3, withBackupOn, withBackupFleet, type BackupRestoreDrillOptions } from "./backup-restore.ts";
export { keyExpiryDrill, type KeyExpiryDrillOptions } from "./key-expiry.ts";
export { moveDrill, moveNotFitHere, type MoveDrillOptions } from "./move.ts";
export { deployPreviousRelease, upgradeDrill, upgradeNotFitHere, type UpgradeDrillOptions } from "./upgrade.ts";
export { DrillFailure, must, runDrill, type DrillResult } from "./drill.ts";
export { postgresBackupRestoreDrill, postgresGuardDrill, type PostgresDrillOptions, type PostgresGuardDrillOptions } from "./postgres.ts";
export { oidcDrill, withOidc, OIDC_NODE, OIDC_USERS, type OidcDrillOptions } from "./oidc.ts";

/** A `lab check` item runner (checks.ts's `check`): the verdict, with the drill's timings kept for the report. */
export type DrillCheck = (name: string, fn: () => Promise<DrillResult>) => Promise<boolean>;

/** The names of the drills `lab check --drills` runs, in order (the report and --help list them). */
export const DRILLS = {
  backupRestore: "drill: backup --now, headscale's database removed, restore: every node registered with the same IPs and approved routes, traffic kept flowing (issue 15 item 1)",
  oidc: "drill: a node logs in through a real OpenID Provider and is registered under its OIDC user; users outside allowedUsers or allowedDomains refused; the fleet put back (issue 15 item 4)",
  keyExpiry: "drill: a node whose key expired is seen by status and fixed by up (issue 15 item 5)",
  upgrade: "drill: headscale upgraded by up from the previous release to the pinned one: backup, health check, nodes and routes kept, traffic kept flowing; a failing upgrade rolled back; a downgrade refused (issue 15 item 6)",
  move: "drill: the coordinator moved to a second VPS and back by up: every node keeps its id, IPs and routes, pings bounded, the old host keeps its database (issue 15 item 2)",
  postgresBackupRestore: "drill, Postgres lab: the deploy installs postgresql and runs headscale on it; backup --now, the database dropped, restore: every node registered with the same IPs and approved routes, traffic kept flowing (issue 15 item 3)",
  postgresGuard: "drill, Postgres lab: the database guard refuses a SQLite file beside Postgres and a deploy switching database.type back to sqlite (rolled back, every node kept) (issue 15 item 3)",
} as const;

/** What the drills prove, in a few words for `lab check --help`. */
export const DRILL_TOPICS = "backup and restore with the database removed; an expired node key fixed by up; a node logged in through an OpenID Provider; on a `lab up --postgres` lab, backup and restore on Postgres and its database guard; the coordinator moved to a second VPS and back; on a `lab up --headscale-previous` lab, headscale upgraded by up from the previous release (a failing upgrade rolled back, a downgrade refused)";

/**
 * `lab check --drills` on the deployed lab. On the standard lab: the backup
 * drill deploys the fleet with headscale.backup on and back, the OIDC drill
 * with headscale.oidc and back; the key drill's `up` is the lab's deploy in
 * this process; the Postgres drills are named as not run (they need `lab up
 * --postgres`). On a `lab up --postgres` lab: the Postgres drills only, the
 * others named as not run.
 */
export async function drillChecks(instance: number, check: DrillCheck, ts: string, log: (line: string) => void = () => {}): Promise<void> {
  const variant = labVariant(instance);
  if (variant === "postgres") {
    // The drills on SQLite (they remove db.sqlite) and those deploying other fleets run on the standard lab.
    log(`lab check --drills on a Postgres lab: the Postgres drills; not run here (they need \`meshfleet lab up\`): ${drillsNotOn(variant).join(" | ")}`);
    await check(DRILLS.postgresBackupRestore, () => postgresBackupRestoreDrill({ instance, ts }));
    await check(DRILLS.postgresGuard, () => postgresGuardDrill({ instance }));
    return;
  }
  log(`lab check --drills: not run here: the Postgres drills need \`meshfleet lab up --postgres\` (this lab keeps headscale's database in SQLite): ${drillsNotOn(variant).join(" | ")}`);
  // First: the upgrade leaves the coordinator on the pinned release, which the drills after it then run on.
  const upgradeNot = await upgradeNotFitHere(instance);
  if (upgradeNot) log(`lab check --drills: ${DRILLS.upgrade}: ${upgradeNot}`);
  else await check(DRILLS.upgrade, () => upgradeDrill({ instance }));
  await check(DRILLS.backupRestore, () => withBackupFleet(instance, () => backupRestoreDrill({ instance, ts })));
  await check(DRILLS.oidc, () => oidcDrill({ instance, log }));
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
  // Last: it leaves the fleet with vps2 (the lab host derp) as a plain node.
  const moveNot = moveNotFitHere(instance);
  if (moveNot) log(`lab check --drills: ${DRILLS.move}: ${moveNot}`);
  else await check(DRILLS.move, () => moveDrill({ instance }));
}

/** The drills `lab check --drills` runs on a lab of this variant: the Postgres ones on `lab up --postgres`, the others elsewhere. */
export function drillsOn(variant: LabVariant): string[] {
  const pg: string[] = [DRILLS.postgresBackupRestore, DRILLS.postgresGuard];
  return Object.values(DRILLS).filter((d) => pg.includes(d) === (variant === "postgres"));
}

/** The drills `lab check --drills` does not run on a lab of this variant, named in its output. */
export function drillsNotOn(variant: LabVariant): string[] {
  const on = drillsOn(variant);
  return Object.values(DRILLS).filter((d) => !on.includes(d));
}
