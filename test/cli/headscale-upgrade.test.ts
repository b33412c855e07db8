/**
 * Changing coordinator.headscaleVersion (issue 15 item 6): the decision
 * (upgrade, downgrade refused unless --force, one minor release at a time)
 * and the guarded upgrade script, run for real on this machine against
 * headscale on loopback (its binary, config and database under a temp
 * folder; start/stop manage that process):
 *   - 0.29.1 -> 0.29.2: the backup copy, the new binary, healthy with the
 *     same nodes; the old binary and the database copy kept;
 *   - a binary that cannot serve: the rollback puts the old binary and the
 *     database copy back, headscale answers with the same nodes;
 *   - a staged binary of the wrong release: refused, nothing changed.
 * The lab drill over SSH and systemd is lab/e2e/drills/upgrade.ts (a `lab check
 * --drills` item, run by test/lab/drills-lab.test.ts).
 * In CI nothing skips (test/lab/ci-gate.ts).
 */
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sections } from "../../cli/fleet-hosts.ts";
import { REPO_ROOT } from "../../cli/fleet-hosts.ts";
import { headscaleUpgradeStep, upgradeAction, upgradeScript, upgradeStartProblem, upgradeUnitCommand, UPGRADE_EXIT, UPGRADE_UNIT, versionOfBanner } from "../../cli/headscale-upgrade.ts";
import { headscaleBinaryFile } from "../../components/headscale-binary.ts";
import { MeshfleetError } from "../../core/diagnostics.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { toolBinary } from "../lab/harness.ts";
import { makeCtx } from "../modules/realtools/context.ts";
import * as rt from "../modules/realtools/index.ts";

const FF = "hosts/lab/fleet.yaml";

describe("upgradeAction: what a changed headscaleVersion means", () => {
  it("nothing to do without a binary on the host, or at the same release", () => {
    expect(upgradeAction(null, "0.29.2", { force: false, fleetFile: FF })).toMatchObject({ kind: "none" });
    expect(upgradeAction("0.29.2", "0.29.2", { force: false, fleetFile: FF })).toEqual({ kind: "none", why: "the coordinator runs headscale 0.29.2 already" });
  });

  it("a patch or minor upgrade goes ahead", () => {
    expect(upgradeAction("0.29.1", "0.29.2", { force: false, fleetFile: FF })).toEqual({ kind: "upgrade", from: "0.29.1", to: "0.29.2" });
    expect(upgradeAction("0.28.0", "0.29.2", { force: false, fleetFile: FF })).toEqual({ kind: "upgrade", from: "0.28.0", to: "0.29.2" });
  });

  it("a downgrade is refused, naming the file, the option, expected, found, why and the fix; --force lets it go ahead", () => {
    const e = (() => {
      try {
        upgradeAction("0.29.2", "0.29.1", { force: false, fleetFile: FF });
      } catch (x) {
        return x;
      }
    })();
    expect(e).toBeInstanceOf(MeshfleetError);
    expect(String((e as Error).message)).toBe(
      "hosts/lab/fleet.yaml: coordinator.headscaleVersion: expected 0.29.2 or newer (the coordinator runs headscale 0.29.2), found 0.29.1. " +
        "headscale migrates its database forward only: an older release may refuse the migrated database or damage it. " +
        "Fix: set coordinator.headscaleVersion: 0.29.2; or, to go back anyway, restore a backup taken before the upgrade (`meshfleet restore`) and run `meshfleet up --force` (the downgrade then gets the same backup, health check and rollback)",
    );
    expect(upgradeAction("0.29.2", "0.29.1", { force: true, fleetFile: FF })).toEqual({ kind: "downgrade", from: "0.29.2", to: "0.29.1" });
  });

  it("a jump over a minor release is refused with the staged path", () => {
    expect(() => upgradeAction("0.27.1", "0.29.2", { force: false, fleetFile: FF })).toThrow(
      "hosts/lab/fleet.yaml: coordinator.headscaleVersion: expected one minor release at a time from the 0.27.1 the coordinator runs, found 0.29.2 (skips 0.28.x). " +
        "Fix: upgrade in stages, 0.27.1 -> 0.28.0 -> 0.29.2: set coordinator.headscaleVersion to each in turn and run `meshfleet up` for each (each gets a backup and a health check)",
    );
  });

  it("versions from headscale's banner", () => {
    expect(versionOfBanner("headscale version v0.29.1\ncommit: unknown\n")).toBe("0.29.1");
    expect(versionOfBanner("garbage")).toBeNull();
  });
});

describe("headscaleUpgradeStep before any SSH: the stack's binary must be the fleet's release", () => {
  const t = rt.tempDir("mf-upgrade-step");
  afterAll(() => t.cleanup());
  const stack = (version: string, binary: string | null) => {
    const hosts = path.join(t.dir, "hosts");
    mkdirSync(hosts, { recursive: true });
    writeFileSync(path.join(hosts, "fleet.yaml"), `coordinator:\n  host: vps\n  serverUrl: https://hs.example.org\n  headscaleVersion: ${version}\n`);
    const cfg = path.join(t.dir, "Pulumi.t.yaml");
    writeFileSync(cfg, `config:\n  meshfleet:hostsDir: ${hosts}\n${binary ? `  meshfleet:headscaleBinaryPath: ${binary}\n` : ""}`);
    return cfg;
  };
  const fake = (v: string) => {
    const f = path.join(t.dir, `headscale-${v}`);
    writeFileSync(f, `#!/bin/sh\necho "headscale version v${v}"\n`, { mode: 0o755 });
    return f;
  };
  const step = (configFile: string) => headscaleUpgradeStep({ stack: "t", configFile, force: false, stateDir: path.join(t.dir, "state"), say: () => {} });

  it("no meshfleet:headscaleBinaryPath: nothing to do here (the image or package is the host's)", async () => {
    expect(await step(stack("0.29.2", null))).toMatchObject({ action: "skipped" });
  });

  it("a binary of another release: refused naming the config file, the option, expected, found and the fix", async () => {
    const cfg = stack("0.29.2", fake("0.29.1"));
    await expect(step(cfg)).rejects.toThrow(
      `${cfg}: meshfleet:headscaleBinaryPath: expected a headscale 0.29.2 binary (${path.join(t.dir, "hosts", "fleet.yaml")}: coordinator.headscaleVersion), found one that reports 0.29.1 (${path.join(t.dir, "headscale-0.29.1")}). ` +
        "Fix: point meshfleet:headscaleBinaryPath at headscale 0.29.2 (`meshfleet tools build` builds the pinned ones), or set coordinator.headscaleVersion to 0.29.1",
    );
  });

  it("the version last seen on the coordinator, with the same binary: no SSH at all", async () => {
    const bin = fake("0.29.2");
    const cfg = stack("0.29.2", bin);
    const st = statSync(bin);
    mkdirSync(path.join(t.dir, "state"), { recursive: true });
    writeFileSync(path.join(t.dir, "state", "headscale-version.t.json"), JSON.stringify({ coordinator: "vps", version: "0.29.2", binary: bin, size: st.size, mtimeMs: st.mtimeMs }));
    expect(await step(cfg)).toMatchObject({ action: "none", detail: "the coordinator ran headscale 0.29.2 at the last up" });
  });

  it("a relative meshfleet:headscaleBinaryPath is the file the deploy pushes (from the folder the deploy runs in), not one beside the stack file", async () => {
    // The folder the deploy runs in (runDeploy's root), with the binary at bin/headscale; the stack file is elsewhere.
    const root = path.join(t.dir, "deploy-root");
    mkdirSync(path.join(root, "bin"), { recursive: true });
    const bin = path.join(root, "bin", "headscale");
    copyFileSync(fake("0.29.2"), bin);
    const cfg = stack("0.29.2", "bin/headscale");
    // Beside the stack file the same relative path names nothing.
    expect(existsSync(path.resolve(path.dirname(cfg), "bin/headscale"))).toBe(false);
    // The deploy's reading (components/coordinator.ts) in that folder.
    expect(headscaleBinaryFile("bin/headscale", root)).toBe(bin);
    const st = statSync(bin);
    writeFileSync(path.join(t.dir, "state", "headscale-version.t.json"), JSON.stringify({ coordinator: "vps", version: "0.29.2", binary: bin, size: st.size, mtimeMs: st.mtimeMs }));
    expect(await headscaleUpgradeStep({ stack: "t", configFile: cfg, force: false, stateDir: path.join(t.dir, "state"), say: () => {}, root })).toMatchObject({
      action: "none",
      detail: "the coordinator ran headscale 0.29.2 at the last up",
    });
  });

  it("meshfleet:headscaleBinaryPath set but no file there: refused (never skipped, or the deploy would push it unguarded)", async () => {
    const cfg = stack("0.29.2", "no-such-dir/headscale");
    await expect(step(cfg)).rejects.toThrow(
      `${cfg}: meshfleet:headscaleBinaryPath: expected a headscale 0.29.2 binary, found no file at ${path.join(REPO_ROOT, "no-such-dir/headscale")} ("no-such-dir/headscale": a relative path is read from the folder the deploy runs in, ${REPO_ROOT}; ~ is not expanded). ` +
        "Fix: build it (`meshfleet tools build`) and set meshfleet:headscaleBinaryPath to its absolute path, or unset meshfleet:headscaleBinaryPath when the host brings its own headscale",
    );
  });
});

describe("the transient unit", () => {
  it("one fixed name (a second upgrade is refused by systemd) and no start timeout (systemd's SIGTERM would cut the rollback)", () => {
    const c = upgradeUnitCommand("/var/lib/meshfleet/upgrade/S/upgrade.sh");
    expect(c).toBe("systemd-run --quiet --no-block --collect --unit=meshfleet-headscale-upgrade --property=Type=oneshot --property=TimeoutStartSec=infinity /bin/sh /var/lib/meshfleet/upgrade/S/upgrade.sh");
    expect(UPGRADE_UNIT).toBe("meshfleet-headscale-upgrade");
  });

  it("systemd-run refusing the name: the CLI says another upgrade runs", () => {
    expect(upgradeStartProblem("vps", { code: 1, stderr: "Failed to start transient service unit: Unit meshfleet-headscale-upgrade.service was already loaded or has a fragment file.\n" })).toBe(
      "upgrade: another headscale upgrade is running on vps (unit meshfleet-headscale-upgrade); this one did not start and changed nothing. Fix: wait for it (journalctl -u meshfleet-headscale-upgrade -f), then run `meshfleet up` again",
    );
    expect(upgradeStartProblem("vps", { code: 1, stderr: "Failed to start transient service unit: Unit meshfleet-headscale-upgrade.service already exists.\n" })).toMatch(/^upgrade: another headscale upgrade is running on vps/);
    expect(upgradeStartProblem("vps", { code: 127, stderr: "systemd-run: not found\n" })).toBe("upgrade: could not start the upgrade on vps (exit 127: systemd-run: not found); headscale was not touched");
  });
});

/**
 * The script's failure paths, with a stand-in headscale (a shell script: its
 * health, nodes list and version are what each case needs) so that a failing
 * step can be had on purpose; the real 0.29.1/0.29.2 runs are below.
 */
describe("the guarded upgrade script when its own steps fail", () => {
  const t = rt.tempDir("mf-upgrade-fail");
  afterAll(() => t.cleanup());
  let n = 0;
  const sh = (script: string) => spawnSync("sh", ["-c", script], { encoding: "utf8", timeout: 60_000 });
  /** A headscale that serves while $dir/up exists; `list: false` makes nodes list fail, `health: false` its health check. */
  const fakeHs = (file: string, dir: string, v: string, o: { list?: boolean; health?: boolean } = {}) =>
    writeFileSync(
      file,
      `#!/bin/sh\n[ "$1" = version ] && { echo "headscale version v${v}"; exit 0; }\nshift 2\ncase "$1" in\n  health) ${o.health === false ? "exit 1" : `[ -f '${dir}/up' ]`};;\n  nodes) ${o.list === false ? "exit 1" : `[ -f '${dir}/up' ] || exit 1; printf '[{"node_key":"a"},{"node_key":"b"}]'`};;\nesac\n`,
      { mode: 0o755 },
    );
  const setup = (o: { installed?: { list?: boolean }; staged?: { list?: boolean; health?: boolean }; stop?: (dir: string) => string; start?: (dir: string) => string } = {}) => {
    const dir = path.join(t.dir, `c${++n}`);
    mkdirSync(dir);
    const bin = path.join(dir, "headscale");
    const staged = path.join(dir, ".staged");
    const db = path.join(dir, "db.sqlite");
    fakeHs(bin, dir, "0.29.1", o.installed);
    fakeHs(staged, dir, "0.29.2", o.staged);
    writeFileSync(db, "the database before the upgrade");
    writeFileSync(path.join(dir, "up"), "");
    const log = path.join(dir, "upgrade.log");
    const run = () => {
      const file = path.join(dir, "upgrade.sh");
      writeFileSync(
        file,
        upgradeScript({
          binary: bin,
          staged,
          config: path.join(dir, "config.yaml"),
          db,
          backup: null,
          isActive: `[ -f '${dir}/up' ]`,
          from: "0.29.1",
          to: "0.29.2",
          stamp: "S",
          waitSeconds: 2,
          log,
          stop: o.stop?.(dir) ?? `rm -f '${dir}/up'`,
          start: o.start?.(dir) ?? `touch '${dir}/up'`,
        }),
      );
      const r = sh(`sh '${file}'`);
      const text = existsSync(log) ? readFileSync(log, "utf8") : "";
      return { code: r.status, log: text, outcome: sections(text).result?.split("\n")[0] };
    };
    return { dir, bin, staged, db, run };
  };

  it("nodes list fails before the upgrade: refused, nothing changed (a failed list is not 0 nodes)", () => {
    const c = setup({ installed: { list: false } });
    const before = sha(c.bin);
    const r = c.run();
    expect(r.code, r.log).toBe(UPGRADE_EXIT.refused);
    expect(r.outcome).toBe(
      "refused: headscale 0.29.1 answers its health check but its nodes list fails (headscale nodes list), so the upgrade could not be checked against its nodes; nothing was changed (fix it first: journalctl -u headscale)",
    );
    expect(sha(c.bin)).toBe(before);
    expect(existsSync(`${c.db}.before-upgrade-S`)).toBe(false);
    expect(existsSync(path.join(c.dir, "up"))).toBe(true);
  });

  it("nodes list fails after the upgrade: not healthy (not 0 nodes), rolled back", () => {
    const c = setup({ staged: { list: false } });
    const r = c.run();
    expect(r.code, r.log).toBe(UPGRADE_EXIT.rolledBack);
    expect(r.log).toContain("upgrade: headscale nodes list fails (after 2s)");
    expect(readFileSync(c.db, "utf8")).toBe("the database before the upgrade");
  });

  it("the rollback cannot stop headscale: it stops there and says what is where; the database headscale has open is not overwritten", () => {
    // The first stop (before the upgrade) works, the rollback's fails.
    const c = setup({ staged: { health: false }, stop: (d) => `if [ -f '${d}/stopped' ]; then false; else touch '${d}/stopped'; rm -f '${d}/up'; fi` });
    const newSha = sha(c.staged);
    const r = c.run();
    expect(r.code, r.log).toBe(UPGRADE_EXIT.rolledBackUnhealthy);
    expect(r.outcome).toBe(
      `rollback failed: headscale 0.29.2 did not come up healthy and did not stop for the rollback; nothing was put back: headscale 0.29.2 is at ${c.bin} with its database ${c.db}; ` +
        `the old binary is kept as ${c.bin}.before-upgrade-S, the database from before the upgrade as ${c.db}.before-upgrade-S. Fix: systemctl stop headscale, then put them back by hand`,
    );
    expect(sha(c.bin)).toBe(newSha);
    expect(existsSync(`${c.db}.failed-upgrade-S`)).toBe(false);
  });

  it("the rollback cannot copy the kept database in (a full disk): the database it used is moved aside whole, the kept one untouched, no half-written one in place", () => {
    const c = setup({ staged: { health: false } });
    // The copy's temp name cannot be written (a dangling link: cp refuses), as a full disk would fail it.
    symlinkSync(path.join(c.dir, "no-such-dir", "x"), `${c.db}.rollback-S`);
    const r = c.run();
    expect(r.code, r.log).toBe(UPGRADE_EXIT.rolledBackUnhealthy);
    expect(r.outcome).toMatch(/^rollback failed: could not copy .*before-upgrade-S \(a full disk\?\); headscale is stopped, the old binary is back at .*, there is no database at /);
    expect(existsSync(c.db)).toBe(false);
    expect(readFileSync(`${c.db}.failed-upgrade-S`, "utf8")).toBe("the database before the upgrade");
    expect(readFileSync(`${c.db}.before-upgrade-S`, "utf8")).toBe("the database before the upgrade");
  });

  it("a refusal after headscale was stopped reports a failed restart", () => {
    const c = setup({ start: (d) => `[ ! -f '${d}/start-fails' ] && touch '${d}/up'` });
    writeFileSync(path.join(c.dir, "start-fails"), "");
    // The database copy cannot be written: refused after the stop, and headscale does not start again.
    symlinkSync(path.join(c.dir, "no-such-dir", "x"), `${c.db}.before-upgrade-S`);
    const r = c.run();
    expect(r.code, r.log).toBe(UPGRADE_EXIT.refused);
    expect(r.outcome).toBe(
      `refused: could not copy ${c.db} to ${c.db}.before-upgrade-S; nothing else was changed; BUT headscale 0.29.1 did not start again: start it (systemctl start headscale; journalctl -u headscale)`,
    );
  });
});

const NOISE = derivePrivateKey("test-seed-0123456789", "noise");
const prevBin = toolBinary("headscale-previous");
const skip = skipUnlessCi(rt.missing("headscale") || (!prevBin && "headscale 0.29.1 (headscale-previous) is not built: run `meshfleet tools build --only headscale-previous`"));
const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

/** `bin` serving `cfg` in the background on loopback, as the upgrade script's start/stop/isActive commands; started and healthy. */
function serveOnLoopback(dir: string, bin: string, cfg: string): { start: string; stop: string; isActive: string } {
  const pid = path.join(dir, "hs.pid");
  const s = {
    start: `${bin} serve -c ${cfg} >>${path.join(dir, "hs.log")} 2>&1 & echo $! > ${pid}`,
    stop: `if [ -f ${pid} ]; then kill "$(cat ${pid})" 2>/dev/null; while kill -0 "$(cat ${pid})" 2>/dev/null; do sleep 0.1; done; rm -f ${pid}; fi`,
    isActive: `[ -f ${pid} ] && kill -0 "$(cat ${pid})" 2>/dev/null`,
  };
  expect(spawnSync("sh", ["-c", s.start]).status).toBe(0);
  const ok = spawnSync("sh", ["-c", `i=0; while [ $i -lt 150 ]; do ${bin} -c ${cfg} health >/dev/null 2>&1 && exit 0; i=$((i+1)); sleep 0.2; done; exit 1`], { encoding: "utf8", timeout: 60_000 });
  expect(ok.status, readFileSync(path.join(dir, "hs.log"), "utf8").slice(-2000)).toBe(0);
  return s;
}

describe.skipIf(skip)("the guarded upgrade script, against real headscale 0.29.1 and 0.29.2 on loopback", () => {
  let t: { dir: string; cleanup: () => void };
  let cfg = "";
  let db = "";
  let bin = "";
  let start = "";
  let stop = "";
  let isActive = "";
  const sh = (script: string, timeout = 60_000) => spawnSync("sh", ["-c", script], { encoding: "utf8", timeout });
  const hs = (...args: string[]) => {
    const r = spawnSync(bin, ["-c", cfg, ...args, "-o", "json"], { encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) throw new Error(`headscale ${args.join(" ")}: ${r.stderr}${r.stdout}`);
    return JSON.parse(r.stdout);
  };
  const nodes = () => ((hs("nodes", "list") ?? []) as { given_name: string; ip_addresses: string[] }[]).map((n) => `${n.given_name} ${n.ip_addresses.join(",")}`).sort();
  const run = async (staged: string, from: string, to: string, stamp: string) => {
    const log = path.join(t.dir, `upgrade-${stamp}.log`);
    const file = path.join(t.dir, `upgrade-${stamp}.sh`);
    writeFileSync(file, upgradeScript({ binary: bin, staged, config: cfg, db, backup: null, isActive, from, to, stamp, waitSeconds: 15, log, stop, start }), { mode: 0o700 });
    const t0 = Date.now();
    const code = await promisify(execFile)("sh", [file], { timeout: 180_000 }).then(() => 0, (e: { code?: number }) => e.code ?? -1);
    const text = existsSync(log) ? readFileSync(log, "utf8") : "";
    return { code, log: text, outcome: sections(text).result?.split("\n")[0], ms: Date.now() - t0 };
  };
  let before: string[] = [];

  beforeAll(async () => {
    t = rt.tempDir("mf-upgrade");
    const ctx: ModuleContext = makeCtx("vps", { vps: { address: "203.0.113.10", runtime: "systemd", options: { headscale: { enable: true } } } });
    const c: Contribution = headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
    ({ cfg } = await rt.loopbackHeadscale(t.dir, c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content, NOISE));
    db = path.join(t.dir, "lib", "db.sqlite");
    // The "installed" binary: 0.29.1, as the coordinator runs before the upgrade.
    bin = path.join(t.dir, "headscale");
    copyFileSync(prevBin!, bin);
    sh(`chmod 0755 ${bin}`);
    ({ start, stop, isActive } = serveOnLoopback(t.dir, bin, cfg));
    hs("users", "create", "alice");
    for (const name of ["laptop", "nas", "phone"]) {
      const id = `hskey-authreq-${name}${"x".repeat(24 - name.length)}`;
      hs("debug", "create-node", "--name", name, "--user", "alice", "--key", id);
      hs("auth", "register", "--user", "alice", "--auth-id", id);
    }
    before = nodes();
    expect(before).toHaveLength(3);
  }, 120_000);

  afterAll(() => {
    if (stop) sh(stop);
    t?.cleanup();
  });

  it("0.29.1 -> 0.29.2: database copied with headscale stopped, new binary, healthy with the same nodes; old binary and copy kept", async () => {
    const staged = path.join(t.dir, ".staged-1");
    copyFileSync(rt.toolPath("headscale")!, staged);
    const oldSha = sha(bin);
    const r = await run(staged, "0.29.1", "0.29.2", "S1");
    expect(r.code, r.log).toBe(UPGRADE_EXIT.upgraded);
    expect(r.outcome).toBe(`upgraded: headscale 0.29.1 -> 0.29.2, 3 node(s); the old binary is kept as ${bin}.before-upgrade-S1 and the database as ${db}.before-upgrade-S1`);
    expect(sha(bin)).toBe(sha(rt.toolPath("headscale")!));
    expect(sha(`${bin}.before-upgrade-S1`)).toBe(oldSha);
    expect(existsSync(`${db}.before-upgrade-S1`)).toBe(true);
    expect(nodes()).toEqual(before);
    console.log(`upgrade 0.29.1 -> 0.29.2 on loopback: ${r.ms} ms in all; ${r.log.split("\n").filter((l) => / took /.test(l)).join("; ")}`);
  }, 120_000);

  it("a binary that cannot serve: rolled back to the old binary and the database copy; the same nodes answer", async () => {
    const staged = path.join(t.dir, ".staged-2");
    writeFileSync(staged, '#!/bin/sh\ncase "$1" in version) echo "headscale version v0.29.3";; *) echo "cannot start" >&2; exit 1;; esac\n', { mode: 0o755 });
    const oldSha = sha(bin);
    const r = await run(staged, "0.29.2", "0.29.3", "S2");
    expect(r.code, r.log).toBe(UPGRADE_EXIT.rolledBack);
    expect(r.outcome).toBe(`rolled back: headscale 0.29.3 did not come up healthy; 0.29.2 runs again on the database as it was before (3 node(s)); the failed binary is kept as ${bin}.failed-upgrade-S2`);
    expect(r.log).toMatch(/upgrade: headscale (is not running|health does not answer) \(after 15s\)/);
    expect(sha(bin)).toBe(oldSha);
    expect(nodes()).toEqual(before);
    // headscale ran on the copy: the same data (its bytes may move as headscale writes on start).
    expect(existsSync(`${db}.before-upgrade-S2`)).toBe(true);
    console.log(`rollback on loopback: ${r.ms} ms in all; ${r.log.split("\n").filter((l) => / took | after \d+ ms/.test(l)).join("; ")}`);
  }, 180_000);

  it("a staged binary of another release is refused before anything changes", async () => {
    const staged = path.join(t.dir, ".staged-3");
    copyFileSync(prevBin!, staged);
    const oldSha = sha(bin);
    const r = await run(staged, "0.29.2", "0.29.5", "S3");
    expect(r.code, r.log).toBe(UPGRADE_EXIT.refused);
    expect(r.outcome).toBe("refused: the staged binary reports 'headscale version v0.29.1', not 0.29.5; nothing was changed");
    expect(sha(bin)).toBe(oldSha);
    expect(existsSync(staged)).toBe(false);
    expect(nodes()).toEqual(before);
  }, 60_000);
});

const v028Bin = toolBinary("headscale-0.28");

describe.skipIf(skipUnlessCi(rt.missing("headscale") || (!v028Bin && "headscale 0.28.0 (headscale-0.28) is not built: run `meshfleet tools build --only headscale-0.28`")))(
  "the guarded upgrade across a minor release brings the config rendered for the new one (real headscale 0.28.0 -> 0.29.2 on loopback)",
  () => {
    let t: { dir: string; cleanup: () => void };
    let cfg = "";
    let bin = "";
    let db = "";
    let start = "";
    let stop = "";
    let isActive = "";
    let rendered = "";
    const sh = (script: string, timeout = 60_000) => spawnSync("sh", ["-c", script], { encoding: "utf8", timeout });
    const run = async (staged: string, stamp: string, newConfig: string | null) => {
      const log = path.join(t.dir, `upgrade-${stamp}.log`);
      const file = path.join(t.dir, `upgrade-${stamp}.sh`);
      writeFileSync(file, upgradeScript({ binary: bin, staged, config: cfg, newConfig, db, backup: null, isActive, from: "0.28.0", to: "0.29.2", stamp, waitSeconds: 10, log, stop, start }), { mode: 0o700 });
      const code = await promisify(execFile)("sh", [file], { timeout: 180_000 }).then(() => 0, (e: { code?: number }) => e.code ?? -1);
      const text = existsSync(log) ? readFileSync(log, "utf8") : "";
      return { code, log: text, outcome: sections(text).result?.split("\n")[0] };
    };

    beforeAll(async () => {
      t = rt.tempDir("mf-upgrade-028");
      const ctx: ModuleContext = makeCtx("vps", { vps: { address: "203.0.113.10", runtime: "systemd", options: { headscale: { enable: true } } } });
      const c: Contribution = headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
      rendered = c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content;
      ({ cfg } = await rt.loopbackHeadscale(t.dir, rendered, NOISE));
      rendered = readFileSync(cfg, "utf8");
      // On the host before the upgrade: a key 0.28 reads and 0.29 refuses at start (REFERENCE: legacy keys are fatal).
      writeFileSync(cfg, `${rendered}\nrandomize_client_port: false\n`);
      db = path.join(t.dir, "lib", "db.sqlite");
      bin = path.join(t.dir, "headscale");
      copyFileSync(v028Bin!, bin);
      sh(`chmod 0755 ${bin}`);
      ({ start, stop, isActive } = serveOnLoopback(t.dir, bin, cfg));
    }, 120_000);

    afterAll(() => {
      if (stop) sh(stop);
      t?.cleanup();
    });

    it("without the new config 0.29.2 refuses the old one and the upgrade rolls back; with it, the upgrade goes through and the old config is kept", async () => {
      const staged1 = path.join(t.dir, ".staged-1");
      copyFileSync(rt.toolPath("headscale")!, staged1);
      const r1 = await run(staged1, "C1", null);
      expect(r1.code, r1.log).toBe(UPGRADE_EXIT.rolledBack);
      expect(readFileSync(cfg, "utf8")).toContain("randomize_client_port: false");

      // A new config that 0.29.2 refuses too: swapped in, refused, and the old one back byte for byte with the rollback.
      const pre = readFileSync(cfg, "utf8");
      const staged1b = path.join(t.dir, ".staged-1b");
      copyFileSync(rt.toolPath("headscale")!, staged1b);
      const bad = path.join(t.dir, "config-refused.yaml");
      writeFileSync(bad, `${rendered}\nrandomize_client_port: true\n`);
      const r1b = await run(staged1b, "C1b", bad);
      expect(r1b.code, r1b.log).toBe(UPGRADE_EXIT.rolledBack);
      expect(r1b.log).toContain(`config rendered for 0.29.2 in place (${cfg}; the old one kept as ${cfg}.before-upgrade-C1b)`);
      expect(readFileSync(cfg, "utf8")).toBe(pre);
      expect(readFileSync(`${cfg}.before-upgrade-C1b`, "utf8")).toBe(pre);

      const staged2 = path.join(t.dir, ".staged-2");
      copyFileSync(rt.toolPath("headscale")!, staged2);
      const next = path.join(t.dir, "config-0.29.yaml");
      writeFileSync(next, rendered);
      const r2 = await run(staged2, "C2", next);
      expect(r2.code, r2.log).toBe(UPGRADE_EXIT.upgraded);
      expect(r2.outcome).toBe(`upgraded: headscale 0.28.0 -> 0.29.2, 0 node(s); the old binary is kept as ${bin}.before-upgrade-C2 and the database as ${db}.before-upgrade-C2, the config as ${cfg}.before-upgrade-C2`);
      expect(r2.log).toContain(`config rendered for 0.29.2 in place (${cfg}; the old one kept as ${cfg}.before-upgrade-C2)`);
      expect(readFileSync(cfg, "utf8")).toBe(rendered);
      expect(readFileSync(`${cfg}.before-upgrade-C2`, "utf8")).toContain("randomize_client_port: false");
      expect(sha(bin)).toBe(sha(rt.toolPath("headscale")!));
    }, 300_000);
  },
);
