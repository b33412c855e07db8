/** The Postgres and OIDC drills' pure pieces, in process: the fleet edits and which drills run on which lab. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DRILLS, drillsNotOn, drillsOn, OIDC_USERS, withOidc } from "../../lab/e2e/drills/index.ts";
import { withPostgres } from "../../lab/e2e/postgres-variant.ts";

const REPO = join(import.meta.dirname, "..", "..");
const vps = readFileSync(join(REPO, "hosts", "lab", "vps.yaml"), "utf8");
const fleet = readFileSync(join(REPO, "hosts", "lab", "fleet.yaml"), "utf8");

describe("the Postgres and OIDC drills", () => {
  it("withPostgres puts hosts/lab's coordinator on a local Postgres with headscale.backup on, and says when the block it edits is gone", () => {
    const h = (parse(withPostgres(vps)) as { headscale: Record<string, unknown> }).headscale;
    expect(h.database).toEqual({ type: "postgres", postgres: { local: true } });
    expect(h.backup).toEqual({ enable: true, keep: 3 });
    expect(h.package, "the rest of the headscale block is kept").toBeDefined();
    expect(() => withPostgres("address: 1.2.3.4\n")).toThrow("vps.yaml has no `headscale:` block to put the database in Postgres in");
  });

  it("withOidc gives vps.yaml the typed oidc options and fleet.yaml the drill's rule; other files unchanged; a missing block is said", () => {
    const o = (parse(withOidc("vps.yaml", vps)) as { headscale: { oidc: Record<string, unknown> } }).headscale.oidc;
    expect(o).toMatchObject({ enable: true, clientId: "headscale", allowedDomains: ["lab.test"], allowedUsers: [OIDC_USERS.carol] });
    expect(o).not.toHaveProperty("clientSecret");
    const edited = parse(withOidc("fleet.yaml", fleet)) as { users: string[]; oidcUsers: string[]; policy: { acls: { src: string[]; dst: string[] }[] } };
    expect(edited.policy.acls[0]).toEqual({ action: "accept", src: [OIDC_USERS.carol], dst: ["tag:server:*"] });
    expect(edited.oidcUsers).toEqual([OIDC_USERS.carol]);
    expect(edited.users).toEqual((parse(fleet) as { users: string[] }).users);
    expect(withOidc("laptop.yaml", "address: x\n")).toBe("address: x\n");
    expect(() => withOidc("vps.yaml", "address: x\n")).toThrow("vps.yaml has no headscale: section to add oidc to");
    expect(() => withOidc("fleet.yaml", "users: []\n")).toThrow("fleet.yaml has no policy.acls to add the drill's rule to");
    expect(() => withOidc("fleet.yaml", "policy:\n  acls:\n")).toThrow("fleet.yaml has no users: line to put oidcUsers after");
  });

  it("drillsOn: the Postgres drills only on a Postgres lab, every other drill (OIDC among them) elsewhere; drillsNotOn names the rest", () => {
    const pg = [DRILLS.postgresBackupRestore, DRILLS.postgresGuard];
    expect(drillsOn("postgres")).toEqual(pg);
    expect(drillsOn("standard")).toContain(DRILLS.oidc);
    expect(drillsOn("standard")).toContain(DRILLS.backupRestore);
    for (const d of pg) expect(drillsOn("standard")).not.toContain(d);
    expect(drillsNotOn("standard")).toEqual(pg);
    expect([...drillsOn("postgres"), ...drillsNotOn("postgres")].sort()).toEqual(Object.values(DRILLS).sort());
  });
});
