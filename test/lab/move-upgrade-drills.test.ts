/**
 * The move and upgrade drills' verdicts from facts, in process: each one
 * passes on what a good run shows and fails, naming why, on what a broken
 * feature leaves (a node with a new id or other IPs, a lost ping at the end,
 * an upgrade without a backup, a rollback that did not happen, a downgrade
 * let through), and each drill says why it is not run on a lab it does not
 * fit. The runs on the real lab: test/lab/drills-lab.test.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { byId, movePingProblem, moveFleetFiles, moveNotFit, nodesKeptProblem, oldCoordinatorProblem } from "../../lab/e2e/drills/move.ts";
import {
  coordinatorBinaryEdit,
  downgradeProblem,
  keptDatabase,
  nextPatch,
  rollbackProblem,
  upgradeNotFit,
  upgradePingProblem,
  upgradePreviewProblem,
  upgradeUpProblem,
  type UpgradeFacts,
} from "../../lab/e2e/drills/upgrade.ts";

const REPO = join(import.meta.dirname, "..", "..");
const lab = (f: string) => readFileSync(join(REPO, "hosts", "lab", f), "utf8");
const V = { previous: "0.29.1", pinned: "0.29.2" };

describe("move drill verdicts", () => {
  it("moveFleetFiles: coordinator.host moves, the other VPS becomes a plain node on its own address, vps2 is vps's file on .30", () => {
    const to2 = moveFleetFiles(lab("fleet.yaml"), lab("vps.yaml"), "vps2");
    expect(to2["fleet.yaml"]).toMatch(/^coordinator:\n {2}host: vps2$/m);
    expect(to2["vps.yaml"]).toBe("imports: [client, ./_tools.yaml]\ndescription: The lab's VPS, a plain node while the coordinator runs on vps2\naddress: 172.31.240.10\ntailscale:\n  tags: [tag:server]\n");
    expect(to2["vps2.yaml"]).toMatch(/^address: 172\.31\.240\.30$/m);
    expect(to2["vps2.yaml"]).toMatch(/^headscale:\n {2}package: /m);
    expect(to2["vps2.yaml"]).toContain("description: A second VPS (the lab host derp)");
    const back = moveFleetFiles(lab("fleet.yaml"), lab("vps.yaml"), "vps");
    expect(back["fleet.yaml"]).toBe(lab("fleet.yaml"));
    expect(back["vps.yaml"]).toBe(lab("vps.yaml"));
    expect(back["vps2.yaml"]).toMatch(/^address: 172\.31\.240\.30\ntailscale:\n {2}tags: \[tag:server\]\n$/m);
    expect(() => moveFleetFiles(to2["fleet.yaml"], lab("vps.yaml"), "vps")).toThrow("fleet.yaml's coordinator.host is not vps");
  });

  const rows = [
    { id: 1, given_name: "vps", ip_addresses: ["100.64.0.1", "fd7a::1"] },
    { id: 2, given_name: "lxc-tailscale", ip_addresses: ["100.64.0.2"], approved_routes: ["192.168.8.0/24"] },
    { id: 3, given_name: "laptop", ip_addresses: ["100.64.0.3"] },
  ];

  it("nodesKeptProblem: null when every node has its id, IPs and routes; names a node that logged in again, lost its IP, lost a route or is gone", () => {
    const before = byId(rows);
    expect(nodesKeptProblem(before, byId([...rows, { id: 4, given_name: "vps2", ip_addresses: ["100.64.0.4"] }]), "vps2")).toBeNull();
    expect(nodesKeptProblem(before, byId([rows[0], rows[1], { ...rows[2], id: 9 }]), "vps2")).toBe("nodes not kept on vps2's headscale (same id, IPs and routes): 3 laptop 100.64.0.3 routes= -> 9 laptop 100.64.0.3 routes=");
    expect(nodesKeptProblem(before, byId([rows[0], rows[1], { ...rows[2], ip_addresses: ["100.64.0.7"] }]), "vps")).toContain("3 laptop 100.64.0.3 routes= -> 3 laptop 100.64.0.7 routes=");
    expect(nodesKeptProblem(before, byId([rows[0], { ...rows[1], approved_routes: [] }, rows[2]]), "vps")).toContain("2 lxc-tailscale 100.64.0.2 routes=192.168.8.0/24 -> 2 lxc-tailscale 100.64.0.2 routes=");
    expect(nodesKeptProblem(before, byId([rows[0], rows[1]]), "vps2")).toContain("3 laptop 100.64.0.3 routes= -> gone");
  });

  it("movePingProblem: a blip of at most 15 s, or of the deploy's time and 5 s, passes; more, too few pings, or a loss in the last 10 s fails", () => {
    expect(movePingProblem({ sent: 150, lost: [40, 41, 42] }, 150, 8_000)).toBeNull();
    expect(movePingProblem({ sent: 150, lost: Array.from({ length: 30 }, (_, i) => i + 10) }, 150, 8_000)).toBeNull();
    expect(movePingProblem({ sent: 150, lost: Array.from({ length: 31 }, (_, i) => i + 10) }, 150, 8_000)).toMatch(/more than 15\.0 s without the NAS during the move \(15 s, or the deploy's 8\.0 s and 5 s\)/);
    // A deploy of 20 s: the relay may be away for all of it, and 5 s more.
    expect(movePingProblem({ sent: 150, lost: Array.from({ length: 50 }, (_, i) => i + 10) }, 150, 20_000)).toBeNull();
    expect(movePingProblem({ sent: 150, lost: Array.from({ length: 51 }, (_, i) => i + 10) }, 150, 20_000)).toMatch(/more than 25\.0 s without the NAS/);
    expect(movePingProblem({ sent: 20, lost: [] }, 20, 8_000)).toMatch(/too few pings/);
    expect(movePingProblem({ sent: 150, lost: [145] }, 150, 8_000)).toMatch(/pings lost in the last 10 s of the window \(seq 145\): traffic did not come back/);
  });

  it("oldCoordinatorProblem: headscale still running on the old host, its database gone, or a move's copy left on the new one", () => {
    const ok = { from: "vps", active: "inactive\n", dbKept: true, to: "vps2", leftovers: ".\n..\ndb.sqlite\nnoise_private.key\n" };
    expect(oldCoordinatorProblem(ok)).toBeNull();
    expect(oldCoordinatorProblem({ ...ok, active: "active\n" })).toBe("headscale still runs on vps, the host the coordinator left");
    expect(oldCoordinatorProblem({ ...ok, dbKept: false })).toMatch(/^vps no longer has its database/);
    expect(oldCoordinatorProblem({ ...ok, leftovers: ".meshfleet-move-20261201T150000Z\n" })).toMatch(/^vps2 still holds a move's copy/);
  });

  it("moveNotFit: not run on the docker variant, without the spare host, or with the coordinator not on vps, saying why", () => {
    expect(moveNotFit({ variant: "standard", coordinatorHost: "vps", hasDerp: true })).toBeNull();
    expect(moveNotFit({ variant: "docker", coordinatorHost: "vps", hasDerp: true })).toMatch(/^not run: the docker variant's VPS is a docker host/);
    expect(moveNotFit({ variant: "standard", coordinatorHost: "vps", hasDerp: false })).toMatch(/^not run: this lab has no spare host derp/);
    expect(moveNotFit({ variant: "standard", coordinatorHost: "vps2", hasDerp: true })).toMatch(/^not run: the deployed fleet's coordinator is vps2, not vps/);
  });
});

describe("upgrade drill verdicts", () => {
  const fits: UpgradeFacts = {
    variant: "standard",
    binaryPath: "/tools/headscale-previous/headscale",
    fleetPackage: "/usr/local/bin/headscale",
    running: "headscale version v0.29.1",
    ...V,
    pinnedBinary: "/tools/headscale",
    previousBinary: "/tools/headscale-previous/headscale",
  };

  it("upgradeNotFit: runs only on a coordinator at the previous release through meshfleet:headscaleBinaryPath; otherwise says why and how to get such a lab", () => {
    expect(upgradeNotFit(fits)).toBeNull();
    const how = "; a lab for it: `meshfleet lab up --headscale-previous` (lab down first when the instance runs another lab)";
    expect(upgradeNotFit({ ...fits, binaryPath: undefined, fleetPackage: "/opt/meshfleet/tools/headscale@0.29.2/bin/headscale", running: null })).toBe(
      `not run: the stack installs no headscale binary (meshfleet:headscaleBinaryPath unset): the coordinator runs the lab's tool binary${how}`,
    );
    expect(upgradeNotFit({ ...fits, running: "headscale version v0.29.2" })).toBe(`not run: the coordinator runs headscale 0.29.2, not the previous release 0.29.1 (the drill already ran on this lab)${how}`);
    expect(upgradeNotFit({ ...fits, variant: "docker" })).toMatch(/^not run: the coordinator runs headscale from a docker image/);
    expect(upgradeNotFit({ ...fits, fleetPackage: "/opt/x/headscale" })).toMatch(/^not run: the fleet's vps\.yaml has headscale package \/opt\/x\/headscale/);
    expect(upgradeNotFit({ ...fits, previousBinary: null })).toMatch(/must be built/);
  });

  it("coordinatorBinaryEdit: hosts/lab's coordinator on the installed binary at a version (again on its own output), and says when a line is gone", () => {
    const edit = coordinatorBinaryEdit("0.29.1");
    const vps = edit("vps.yaml", lab("vps.yaml"));
    expect(vps).toMatch(/^headscale:\n {2}package: \/usr\/local\/bin\/headscale$/m);
    expect(edit("vps.yaml", vps)).toBe(vps);
    expect(edit("fleet.yaml", lab("fleet.yaml"))).toMatch(/^ {2}headscaleVersion: 0\.29\.1$/m);
    expect(edit("laptop.yaml", lab("laptop.yaml"))).toBe(lab("laptop.yaml"));
    expect(() => edit("vps.yaml", "address: 1.2.3.4\n")).toThrow(/no longer names the headscale tool's binary/);
    expect(() => edit("fleet.yaml", "users: [a]\n")).toThrow("fleet.yaml has no coordinator.headscaleVersion line to set to 0.29.1");
    expect(nextPatch("0.29.2")).toBe("0.29.3");
  });

  const preview = "headscale: headscale on vps would be upgraded 0.29.1 -> 0.29.2 (coordinator.headscaleVersion in /lab/hosts-upgrade/fleet.yaml): `meshfleet up` does it first (backup, new binary, health check, rollback if it fails)";
  const upOut = [
    "vps: headscale 0.29.1 -> 0.29.2: backup, new binary, health check, rollback if it fails",
    "vps: upgrade: headscale.backup is off: only the copy below is taken",
    "vps: upgrade: database copied (headscale stopped) to /var/lib/headscale/db.sqlite.before-upgrade-20261201T153000Z",
    "vps: upgrade: backup took 140 ms",
    "vps: upgrade: upgrade (new binary, start, healthy) took 2000 ms",
    "headscale: upgraded: headscale 0.29.1 -> 0.29.2, 3 node(s); the old binary is kept as /usr/local/bin/headscale.before-upgrade-20261201T153000Z and the database as /var/lib/headscale/db.sqlite.before-upgrade-20261201T153000Z (2.4s)",
  ].join("\n");

  it("upgradePreviewProblem: the preview must announce the upgrade and --expect-no-changes count it as a change", () => {
    const pvx = { code: 1, out: "--expect-no-changes: the headscale upgrade is a change" };
    expect(upgradePreviewProblem({ code: 0, out: preview }, pvx, V)).toBeNull();
    expect(upgradePreviewProblem({ code: 0, out: "no changes" }, pvx, V)).toMatch(/^preview does not announce the upgrade 0\.29\.1 -> 0\.29\.2/);
    expect(upgradePreviewProblem({ code: 0, out: preview }, { code: 0, out: "" }, V)).toMatch(/^preview --expect-no-changes does not count the pending upgrade as a change \(exit 0\)/);
    expect(upgradePreviewProblem({ code: 1, out: "boom" }, pvx, V)).toMatch(/^preview before the upgrade: exit 1/);
  });

  it("upgradeUpProblem: the up must upgrade with a backup kept aside and say so; an up without the backup, a failed one, or another version fails", () => {
    expect(keptDatabase(upOut)).toBe("/var/lib/headscale/db.sqlite.before-upgrade-20261201T153000Z");
    expect(upgradeUpProblem({ code: 0, out: upOut }, V)).toBeNull();
    expect(upgradeUpProblem({ code: 1, out: upOut }, V)).toMatch(/^up \(the upgrade 0\.29\.1 -> 0\.29\.2\): exit 1/);
    const noBackup = upOut.replace(/.*backup took.*\n/, "").replace(/ and the database as \S+/, "");
    expect(upgradeUpProblem({ code: 0, out: noBackup }, V)).toMatch(/^up upgraded without a backup/);
    expect(upgradeUpProblem({ code: 0, out: upOut.replaceAll("0.29.2", "0.29.3") }, V)).toMatch(/^up did not say it upgrades headscale 0\.29\.1 -> 0\.29\.2/);
    // The report gone but the kept database still named: the report's own check must catch it.
    const noReport = upOut.replace(/^headscale: upgraded: .*? the database as (\S+) .*$/m, "the database as $1");
    expect(keptDatabase(noReport)).toBe("/var/lib/headscale/db.sqlite.before-upgrade-20261201T153000Z");
    expect(upgradeUpProblem({ code: 0, out: noReport }, V)).toMatch(/^up did not report the upgrade as done/);
  });

  it("upgradePingProblem: a moment of at most 10 s without the route passes; more, or any loss once every node is back, fails", () => {
    expect(upgradePingProblem({ sent: 40, lost: [5, 6, 7] }, { sent: 60, lost: [] })).toBeNull();
    expect(upgradePingProblem({ sent: 60, lost: Array.from({ length: 21 }, (_, i) => i) }, { sent: 60, lost: [] })).toMatch(/more than 10 s without the route/);
    expect(upgradePingProblem({ sent: 40, lost: [] }, { sent: 60, lost: [99] })).toMatch(/pings lost after every node was back/);
    expect(upgradePingProblem({ sent: 3, lost: [] }, { sent: 60, lost: [] })).toMatch(/fewer than 4 pings cover the upgrade/);
  });

  it("rollbackProblem and downgradeProblem: the failing upgrade must be rolled back with exit 1, the downgrade refused saying why", () => {
    const rolled = "rolled back: headscale 0.29.3 did not come up healthy; 0.29.2 runs again on the database as it was before (3 node(s)); the failed binary is kept as x\nThe deploy did not go on";
    const f = { ...V, failing: "0.29.3" };
    expect(rollbackProblem({ code: 1, out: rolled }, f)).toBeNull();
    expect(rollbackProblem({ code: 0, out: rolled }, f)).toMatch(/exit 0, expected 1/);
    expect(rollbackProblem({ code: 1, out: "rollback failed: could not move the database" }, f)).toMatch(/^up did not report the rollback to 0\.29\.2/);
    expect(rollbackProblem({ code: 1, out: rolled.replace("The deploy did not go on", "") }, f)).toMatch(/went on with the deploy/);
    const refused = "/lab/hosts-upgrade/fleet.yaml: coordinator.headscaleVersion: expected 0.29.2 or newer (the coordinator runs headscale 0.29.2), found 0.29.1. headscale migrates its database forward only";
    expect(downgradeProblem({ code: 1, out: refused }, V)).toBeNull();
    expect(downgradeProblem({ code: 0, out: "vps: headscale 0.29.2 -> 0.29.1" }, V)).toMatch(/exit 0, expected 1/);
    expect(downgradeProblem({ code: 1, out: "some other error" }, V)).toMatch(/did not refuse the downgrade saying why/);
  });
});
