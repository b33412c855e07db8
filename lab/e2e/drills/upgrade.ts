/**
 * Issue 15 item 6's drill: the coordinator's headscale upgraded by `meshfleet
 * up`, from the release before the pinned one (lab/versions.json
 * `headscale-previous`) to the pinned one (`headscale`). It needs a lab whose
 * coordinator runs the binary meshfleet installs (meshfleet:headscaleBinaryPath
 * -> /usr/local/bin/headscale) at the previous release: `meshfleet lab up
 * --headscale-previous` deploys one (`deployPreviousRelease`, before the
 * lab's first deploy: a coordinator already at the pinned release cannot go
 * back, headscale migrates its database forward only). On any other lab the
 * drill is not run and says why (`upgradeNotFit`). Through the whole CLI:
 *
 *   - `preview` announces the upgrade and changes nothing; with
 *     --expect-no-changes the upgrade is a change (exit 1);
 *   - `up` does it: a backup (the database copied aside, kept on the host),
 *     the new binary, the health check; every node keeps its IPs and routes,
 *     the laptop pings the nas through the tunnel all along (a moment without
 *     the route while nodes reconnect is bounded; once they are back every
 *     ping is answered), and the `up` after it changes nothing;
 *   - a failing upgrade (a binary that reports the next patch release and
 *     cannot serve) is rolled back: the pinned release runs again on its
 *     database, the nodes are unchanged, `up` exits 1 naming the rollback;
 *   - a downgrade to the previous release without --force is refused.
 * Afterwards the lab runs the pinned release (its fleet says so): the drill
 * runs once per `lab up --headscale-previous`.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadVersions } from "../../tools/versions.ts";
import { toolStatus } from "../../tools/status.ts";
import { sshExec } from "../../hosts/index.ts";
import { labVariant, type LabVariant } from "../docker-variant.ts";
import { PING_INTERVAL_MS, pingsBetween, startPing, waitTailnetRoute } from "../ping.ts";
import { diffLines, DrillFailure, hostOn, must, nodesOf, registration, runDrill, sleep, type DrillResult } from "./drill.ts";
import { deployedFleetDir, setStackConfig, stackConfigOf, writeFleetCopy } from "./fleet-copy.ts";
import { labCli, type LabCliRun } from "./lab-cli.ts";

const NAS = "192.168.8.10";
/** Where meshfleet installs the headscale binary of meshfleet:headscaleBinaryPath on the coordinator. */
export const INSTALLED_HEADSCALE = "/usr/local/bin/headscale";
const HS = `${INSTALLED_HEADSCALE} -c /etc/headscale/config.yaml`;
/** The fleet folder (`<lab>/hosts-upgrade`) whose coordinator runs the installed binary. */
export const UPGRADE_FLEET = "upgrade";
const PACKAGE = new RegExp(`^  package: (?:/opt/meshfleet/tools/headscale@[\\d.]+/bin/headscale|${INSTALLED_HEADSCALE.replace(/\//g, "\\/")})$`, "m");
const VERSION_LINE = /^  headscaleVersion: [\d.]+$/m;

/** The first binary of a pinned tool (lab/versions.json) as built here, or null. */
export function toolBinary(name: string): string | null {
  const t = loadVersions().tools.find((x) => x.name === name);
  return t ? toolStatus(t).binaries[0]?.path ?? null : null;
}

/** The pinned headscale release and the one before it (lab/versions.json). */
export function headscaleReleases(): { pinned: string; previous: string } {
  const v = (name: string) => loadVersions().tools.find((t) => t.name === name)?.version ?? "?";
  return { pinned: v("headscale"), previous: v("headscale-previous") };
}

/** The patch release after `version` (0.29.2 -> 0.29.3): what the failing upgrade's binary claims to be. */
export function nextPatch(version: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  if (!m) throw new Error(`not a release number: ${version}`);
  return `${m[1]}.${m[2]}.${Number(m[3]) + 1}`;
}

/**
 * A fleet file edit: the coordinator's headscale package is the binary
 * meshfleet installs (vps.yaml), pinned at `version` (fleet.yaml). Throws when
 * the file no longer has the line it edits.
 */
export function coordinatorBinaryEdit(version: string): (file: string, text: string) => string {
  return (f, text) => {
    if (f === "vps.yaml") {
      if (!PACKAGE.test(text)) throw new Error(`vps.yaml no longer names the headscale tool's binary (or ${INSTALLED_HEADSCALE}) as its headscale package (${PACKAGE})`);
      return text.replace(PACKAGE, `  package: ${INSTALLED_HEADSCALE}`);
    }
    if (f === "fleet.yaml") {
      if (!VERSION_LINE.test(text)) throw new Error(`fleet.yaml has no coordinator.headscaleVersion line to set to ${version}`);
      return text.replace(VERSION_LINE, `  headscaleVersion: ${version}`);
    }
    return text;
  };
}

/** The lab host that runs headscale in the lab's fleet. */
const COORDINATOR_HOST = "vps";

/** Points the lab's stack at `<lab>/hosts-upgrade` with the coordinator's headscale at `version`, installed from `binary`. */
async function upgradeFleetAt(instance: number, version: string, binary: string): Promise<string> {
  const dir = writeFleetCopy(instance, UPGRADE_FLEET, coordinatorBinaryEdit(version));
  setStackConfig(instance, { "meshfleet:hostsDir": dir, "meshfleet:headscaleBinaryPath": binary });
  return dir;
}

/**
 * `lab up --headscale-previous`, before the lab's deploy (its stack exists):
 * the deployed fleet copied with the coordinator at the previous headscale
 * release through meshfleet:headscaleBinaryPath, the stack pointed at it.
 */
export async function deployPreviousRelease(instance: number): Promise<string> {
  if (labVariant(instance) === "docker") throw new Error("--headscale-previous: the docker variant runs headscale from an image, not the binary meshfleet installs");
  const { previous } = headscaleReleases();
  const bin = toolBinary("headscale-previous");
  if (!bin) throw new Error(`--headscale-previous: headscale ${previous} (headscale-previous) is not built; run \`meshfleet tools build\``);
  // Hosts that were up already may hold a database a newer headscale migrated: the previous release must not
  // be put over it (this deploy runs without the CLI's downgrade refusal).
  const db = await sshExec(COORDINATOR_HOST, "test -s /var/lib/headscale/db.sqlite && echo present || true", { instance, timeoutMs: 60_000 });
  if (db.code !== 0) throw new Error(`--headscale-previous: cannot read whether the coordinator has a database already (ssh exit ${db.code}); nothing was deployed`);
  if (db.stdout.trim() === "present") {
    throw new Error(
      `--headscale-previous: the coordinator has a headscale database already (this lab was up): headscale migrates its database forward only, so headscale ${previous} must not be put over it; nothing was deployed. Fix: \`meshfleet lab down --instance ${instance}\`, then \`meshfleet lab up --instance ${instance} --headscale-previous\``,
    );
  }
  const dir = await upgradeFleetAt(instance, previous, bin);
  return `the coordinator at headscale ${previous} (${bin}) through meshfleet:headscaleBinaryPath; fleet ${dir}`;
}

export interface UpgradeFacts {
  variant: LabVariant;
  /** meshfleet:headscaleBinaryPath of the stack, if set. */
  binaryPath?: string;
  /** The coordinator's headscale package in the deployed fleet's vps.yaml. */
  fleetPackage: string | null;
  /** `/usr/local/bin/headscale version` on the coordinator (its first line), null when there is none. */
  running: string | null;
  previous: string;
  pinned: string;
  pinnedBinary: string | null;
  previousBinary: string | null;
}

/** Why the upgrade drill does not fit this lab ("not run: ..." with how to get one it fits), or null. */
export function upgradeNotFit(f: UpgradeFacts): string | null {
  const why = (() => {
    if (f.variant === "docker") return "the coordinator runs headscale from a docker image (its image switch has the compose unit's database guard), not the binary meshfleet installs";
    if (!f.binaryPath) return "the stack installs no headscale binary (meshfleet:headscaleBinaryPath unset): the coordinator runs the lab's tool binary";
    if (f.fleetPackage !== INSTALLED_HEADSCALE) return `the fleet's vps.yaml has headscale package ${f.fleetPackage ?? "(none)"}, not ${INSTALLED_HEADSCALE}`;
    if (!f.pinnedBinary || !f.previousBinary) return `headscale ${f.pinned} and ${f.previous} (headscale-previous) must be built (\`meshfleet tools build\`)`;
    const v = f.running ? /v?(\d+\.\d+\.\d+)/.exec(f.running)?.[1] ?? f.running : null;
    if (v !== f.previous) return `the coordinator runs headscale ${v ?? "(nothing at " + INSTALLED_HEADSCALE + ")"}, not the previous release ${f.previous}${v === f.pinned ? " (the drill already ran on this lab)" : ""}`;
    return null;
  })();
  return why && `not run: ${why}; a lab for it: \`meshfleet lab up --headscale-previous\` (lab down first when the instance runs another lab)`;
}

export interface Releases {
  previous: string;
  pinned: string;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const tail = (out: string, n = 1500) => out.slice(-n);

/** `preview`, then `preview --expect-no-changes`, before the upgrade: what is wrong, or null. */
export function upgradePreviewProblem(pv: Pick<LabCliRun, "code" | "out">, pvx: Pick<LabCliRun, "code" | "out">, v: Releases): string | null {
  if (pv.code !== 0) return `preview before the upgrade: exit ${pv.code}: ${tail(pv.out)}`;
  const said = new RegExp(`headscale: headscale on vps would be upgraded ${esc(v.previous)} -> ${esc(v.pinned)} \\(coordinator\\.headscaleVersion in .*fleet\\.yaml\\): \`meshfleet up\` does it first \\(backup, new binary, health check, rollback if it fails\\)`);
  if (!said.test(pv.out)) return `preview does not announce the upgrade ${v.previous} -> ${v.pinned}: ${tail(pv.out)}`;
  if (pvx.code !== 1 || !/--expect-no-changes: the headscale upgrade is a change/.test(pvx.out)) return `preview --expect-no-changes does not count the pending upgrade as a change (exit ${pvx.code}): ${tail(pvx.out)}`;
  return null;
}

/** The database copy the upgrade kept, from `up`'s report of it, or null. */
export function keptDatabase(out: string): string | null {
  return /the database as (\/var\/lib\/headscale\/db\.sqlite\.before-upgrade-[^\s,;]+)/.exec(out)?.[1] ?? null;
}

/** The upgrading `up`: what is wrong with what it said, or null. */
export function upgradeUpProblem(r: Pick<LabCliRun, "code" | "out">, v: Releases): string | null {
  if (r.code !== 0) return `up (the upgrade ${v.previous} -> ${v.pinned}): exit ${r.code}: ${tail(r.out, 3000)}`;
  if (!new RegExp(`vps: headscale ${esc(v.previous)} -> ${esc(v.pinned)}: backup, new binary, health check, rollback if it fails`).test(r.out)) return `up did not say it upgrades headscale ${v.previous} -> ${v.pinned}: ${tail(r.out)}`;
  if (!/backup took \d+ ms/.test(r.out) || !keptDatabase(r.out)) return `up upgraded without a backup (no "backup took" and no database kept aside): ${tail(r.out)}`;
  if (!new RegExp(`headscale: upgraded: headscale ${esc(v.previous)} -> ${esc(v.pinned)}, \\d+ node\\(s\\); the old binary is kept as \\S+`).test(r.out)) return `up did not report the upgrade as done: ${tail(r.out)}`;
  return null;
}

/** The pings from the upgrade's start until every node is back, and after: what is wrong, or null. */
export function upgradePingProblem(during: { sent: number; lost: number[] }, after: { sent: number; lost: number[] }): string | null {
  const said = `pings during the up and until every node is back ${during.sent - during.lost.length}/${during.sent}${during.lost.length ? ` (lost seq ${during.lost.join(",")})` : ""}, after it ${after.sent - after.lost.length}/${after.sent}`;
  // At least the 2 s the upgrade itself takes (a fast `up` took 7.4 s: 18 pings).
  if (during.sent < 4) return `${said}: fewer than 4 pings cover the upgrade`;
  if (during.lost.length * PING_INTERVAL_MS > 10_000) return `${said}: more than 10 s without the route during the upgrade`;
  if (after.sent < 10) return `${said}: fewer than 10 pings after every node was back`;
  if (after.lost.length > 0) return `${said}: pings lost after every node was back`;
  return null;
}

/** The `up` of a binary that cannot serve: what is wrong with its rollback, or null. */
export function rollbackProblem(r: Pick<LabCliRun, "code" | "out">, v: Releases & { failing: string }): string | null {
  if (r.code !== 1) return `up with a headscale ${v.failing} that cannot serve: exit ${r.code}, expected 1: ${tail(r.out, 3000)}`;
  if (!new RegExp(`rolled back: headscale ${esc(v.failing)} did not come up healthy; ${esc(v.pinned)} runs again on the database as it was before \\(\\d+ node\\(s\\)\\)`).test(r.out)) return `up did not report the rollback to ${v.pinned}: ${tail(r.out)}`;
  if (!/The deploy did not go on/.test(r.out)) return `up went on with the deploy after a failed upgrade: ${tail(r.out)}`;
  return null;
}

/** The `up` that asks for the previous release again (no --force): what is wrong with its refusal, or null. */
export function downgradeProblem(r: Pick<LabCliRun, "code" | "out">, v: Releases): string | null {
  if (r.code !== 1) return `up with a downgrade to ${v.previous} (no --force): exit ${r.code}, expected 1: ${tail(r.out, 3000)}`;
  const said = `fleet.yaml: coordinator.headscaleVersion: expected ${v.pinned} or newer (the coordinator runs headscale ${v.pinned}), found ${v.previous}. headscale migrates its database forward only`;
  if (!r.out.includes(said)) return `up did not refuse the downgrade saying why ("${said}"): ${tail(r.out)}`;
  return null;
}

/** The facts `upgradeNotFit` decides on, read from the lab deployed on `instance` now. */
export async function upgradeFacts(instance: number): Promise<UpgradeFacts> {
  const cfg = stackConfigOf(instance);
  let vpsYaml = "";
  try {
    vpsYaml = readFileSync(join(deployedFleetDir(instance), "vps.yaml"), "utf8");
  } catch {
    // no vps.yaml: fleetPackage null says it
  }
  const variant = labVariant(instance);
  const r = variant === "docker" ? null : await sshExec("vps", `if [ -x ${INSTALLED_HEADSCALE} ]; then ${INSTALLED_HEADSCALE} version | head -n 1; fi`, { instance, timeoutMs: 30_000 });
  return {
    variant,
    binaryPath: typeof cfg["meshfleet:headscaleBinaryPath"] === "string" ? cfg["meshfleet:headscaleBinaryPath"] : undefined,
    fleetPackage: /^headscale:\n(?: {2}.*\n)*? {2}package: (\S+)$/m.exec(vpsYaml)?.[1] ?? null,
    running: r && r.code === 0 ? r.stdout.trim() || null : null,
    ...headscaleReleases(),
    pinnedBinary: toolBinary("headscale"),
    previousBinary: toolBinary("headscale-previous"),
  };
}

/** `upgradeNotFit` for the lab deployed on `instance` now. */
export async function upgradeNotFitHere(instance: number): Promise<string | null> {
  return upgradeNotFit(await upgradeFacts(instance));
}

export interface UpgradeDrillOptions {
  instance: number;
  /**
   * Runs right after the upgrading `up`, before its checks: the drill's own
   * test injects a fault here (a node deleted, as an upgrade that loses one
   * would leave it) to show that the drill then fails.
   */
  afterUpgrade?: () => Promise<void>;
}

export function upgradeDrill(o: UpgradeDrillOptions): Promise<DrillResult> {
  const { instance } = o;
  const on = hostOn(instance);
  const nodes = () => nodesOf(instance, HS);
  const running = async () => (await on("vps", `if [ -x ${INSTALLED_HEADSCALE} ]; then ${INSTALLED_HEADSCALE} version | head -n 1; fi`)).trim() || null;
  const version = (banner: string | null) => (banner ? /v?(\d+\.\d+\.\d+)/.exec(banner)?.[1] ?? banner : null);
  const took = (out: string, what: string) => Number(new RegExp(`${what} took (\\d+) ms`).exec(out)?.[1] ?? NaN);
  return runDrill(async (t) => {
    const v = headscaleReleases();
    const facts = await upgradeFacts(instance);
    const notFit = upgradeNotFit(facts);
    must(!notFit, notFit!);
    const work = mkdtempSync(join(tmpdir(), "mf-upgrade-drill-"));
    const cli = labCli(instance, () => join(work, "state"));
    let ping: Promise<unknown> | undefined;
    let cleanupProblem: string | null = null;
    try {
      const before = await nodes();
      must(before.length >= 3, `nodes registered before the drill: ${before.length}, expected 3 or more`);

      // 1. The fleet asks for the pinned release: preview announces the upgrade and changes nothing.
      await upgradeFleetAt(instance, v.pinned, facts.pinnedBinary!);
      const pv = await cli("preview");
      const pvx = await cli("preview", "--expect-no-changes");
      const pvProblem = upgradePreviewProblem(pv, pvx, v);
      must(!pvProblem, pvProblem!);
      must(version(await running()) === v.previous, `preview changed the coordinator's headscale: it runs ${await running()}`);

      // 2. up: backup, new binary, health check; the laptop pings the nas all along.
      const tPing = Date.now();
      const pinging = startPing(instance, "laptop", NAS, 90);
      ping = pinging;
      const r = await cli("up");
      t.upgradeUpMs = r.ms;
      t.backupMs = took(r.out, "backup");
      t.upgradeMs = took(r.out, "upgrade \\(new binary, start, healthy\\)");
      if (o.afterUpgrade) await o.afterUpgrade();
      const upProblem = upgradeUpProblem(r, v);
      must(!upProblem, upProblem!);
      const now = await running();
      must(version(now) === v.pinned, `after the upgrade the coordinator runs ${now}, expected headscale ${v.pinned}`);
      const kept = keptDatabase(r.out)!;
      must((await on("vps", `test -s ${kept} && echo kept`)) === "kept\n", `the database the upgrade kept aside (${kept}) is not on the VPS`);
      const afterUp = registration(await nodes());
      must(afterUp.join("\n") === registration(before).join("\n"), `after the upgrade the registrations differ: ${diffLines(registration(before), afterUp)}`);
      // `up` waits for headscale's health and node count, not for the nodes to be back: wait for those, then count.
      const tUp = Date.now();
      let back = await nodes();
      for (let i = 0; i < 30 && !back.every((n) => n.online); i++) {
        await sleep(1000);
        back = await nodes();
      }
      must(back.every((n) => n.online), `nodes offline 30 s after the upgrade: ${back.filter((n) => !n.online).map((n) => n.given_name).join(", ")}`);
      await waitTailnetRoute(instance, "laptop", NAS);
      const tBack = Date.now();
      t.untilOnlineMs = tBack - tUp;
      // The next up has nothing to upgrade and nothing to change; it runs while the pings go on (each must be answered).
      const again = await cli("up", "--expect-no-changes");
      t.noopUpMs = again.ms;
      must(again.code === 0, `the up after the upgrade is not a no-op (exit ${again.code}): ${tail(again.out)}`);
      const pl = await pinging;
      const during = pingsBetween(pl, tPing, tBack);
      const after = pingsBetween(pl, tBack, Date.now());
      t.pingGapMs = during.lost.length * PING_INTERVAL_MS;
      const pingProblem = upgradePingProblem(during, after);
      must(!pingProblem, `${pingProblem}\n${pl.text.slice(-400)}`);
      const pings = `${during.sent - during.lost.length}/${during.sent} pings answered during the upgrade, ${after.sent - after.lost.length}/${after.sent} after`;

      // 3. A failing upgrade: a binary that claims the next patch release and cannot serve. Rolled back.
      const failing = nextPatch(v.pinned);
      const fake = join(work, `headscale-${failing}`);
      writeFileSync(fake, `#!/bin/sh\ncase "$1" in version) echo "headscale version v${failing}";; *) echo "headscale: cannot start (a test binary)" >&2; exit 1;; esac\n`);
      chmodSync(fake, 0o755);
      await upgradeFleetAt(instance, failing, fake);
      const f = await cli("up");
      t.failedUpMs = f.ms;
      t.rollbackMs = took(f.out, "rollback \\(old binary and database back, start, healthy\\)");
      const rb = rollbackProblem(f, { ...v, failing });
      must(!rb, rb!);
      must(version(await running()) === v.pinned, `after the rollback the coordinator runs ${await running()}, expected headscale ${v.pinned}`);
      const afterRollback = registration(await nodes());
      must(afterRollback.join("\n") === registration(before).join("\n"), `after the rollback the registrations differ: ${diffLines(registration(before), afterRollback)}`);
      must((await on("vps", "systemctl is-active headscale || true")).trim() === "active", "headscale is not active after the rollback");

      // 4. Back to the previous release without --force: refused, nothing changes.
      await upgradeFleetAt(instance, v.previous, facts.previousBinary!);
      const d = await cli("up");
      t.downgradeRefusedMs = d.ms;
      const dg = downgradeProblem(d, v);
      must(!dg, dg!);
      must(version(await running()) === v.pinned, `the refused downgrade changed the coordinator: it runs ${await running()}`);
      return `headscale ${v.previous} -> ${v.pinned} by up (backup ${t.backupMs} ms, kept as ${kept}; new binary and health check ${t.upgradeMs} ms; up ${(r.ms / 1000).toFixed(1)}s): ${before.length} nodes with the same IPs and routes, ${pings}; the up after it changes nothing; a ${failing} that cannot serve rolled back (${t.rollbackMs} ms), nodes unchanged; a downgrade without --force refused`;
    } finally {
      await ping?.catch(() => undefined);
      // The fleet says what the coordinator runs now. The previous release only when the coordinator was read
      // running it: anything else (the pinned one, a version that cannot be read, a failed rollback's binary)
      // leaves the pinned one, so no later deploy puts the older binary over a database the newer one migrated.
      const now = version(await running().catch(() => null));
      const previousStill = now === v.previous;
      try {
        await upgradeFleetAt(instance, previousStill ? v.previous : v.pinned, (previousStill ? facts.previousBinary : facts.pinnedBinary)!);
      } catch (e) {
        cleanupProblem = `the fleet could not be set back to headscale ${previousStill ? v.previous : v.pinned} (${(e as Error).message}): the stack's fleet may name another release than the coordinator runs; \`meshfleet lab down\`, then \`meshfleet lab up\``;
      }
      rmSync(work, { recursive: true, force: true });
      // Said, not swallowed: the drill fails with it (over whatever it was going to return).
      if (cleanupProblem) throw new DrillFailure(cleanupProblem);
    }
  });
}
