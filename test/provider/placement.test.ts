/**
 * Moving the coordinator (issue 15 item 2): meshfleet:headscale:Placement.
 * The move's scripts run for real in a shell here, on database files in a
 * temporary folder, with systemctl, docker, systemd-sysusers and chown
 * standing in as recorders (nothing on this machine is stopped or owned);
 * the handler's move is driven end to end through the same shell.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { installScript, moveRefusal, moveSteps, parseRead, readScript, stageScript, stopScript, type PlacementSide } from "../../provider/placement.ts";
import { placement } from "../../provider/resources/placement.ts";
import { generation } from "../../provider/resources/generation.ts";
import { session, type RunResult } from "../../provider/ssh.ts";
import type { GenerationOutputs, PlacementInputs, PlacementOutputs, SshConnection } from "../../provider/types.ts";
import { planWarnings } from "../../cli/commands/plan.ts";
import { diffNetwork, emptyModel } from "../../core/netdiff/index.ts";
import type { FleetSystem, HostSystem } from "../../core/types.ts";

let dir: string;
let calls: string;
let env: NodeJS.ProcessEnv;

/** A recorder on PATH: appends "name args" (and stdin for systemd-sysusers) to the calls file; `exit` is its status. */
function shim(name: string, body = "exit 0"): void {
  const p = join(dir, "bin", name);
  writeFileSync(p, `#!/bin/sh\necho "${name} $*" >> ${JSON.stringify(calls)}\n${name === "systemd-sysusers" ? `cat >> ${JSON.stringify(calls)}\n` : ""}${body}\n`);
  chmodSync(p, 0o755);
}

function sh(script: string, stdin?: string | Buffer): RunResult {
  const r = spawnSync("sh", ["-c", script], { input: stdin, env, encoding: "utf8", maxBuffer: 64 << 20 });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

const side = (host: string, sub: string, o: Partial<PlacementSide> = {}): PlacementSide => ({ host, runtime: "systemd", databasePath: join(dir, sub, "db.sqlite"), ...o });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "mf-placement-"));
  calls = join(dir, "calls");
  writeFileSync(calls, "");
  mkdirSync(join(dir, "bin"));
  for (const n of ["docker", "systemd-sysusers", "chown"]) shim(n);
  // No headscale unit on the host unless a test says so, and nothing left active after a stop.
  shim("systemctl", 'case "$1" in cat|is-active) exit 1;; esac; exit 0');
  env = { ...process.env, PATH: `${join(dir, "bin")}:${process.env.PATH}` };
});
afterEach(() => {
  vi.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

describe("the move's scripts, run in a shell", () => {
  it("stops headscale on the old host, carries the database and its WAL byte for byte, keeps what was there aside, 0600", () => {
    mkdirSync(join(dir, "old"));
    mkdirSync(join(dir, "new"));
    const db = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256));
    writeFileSync(join(dir, "old", "db.sqlite"), db);
    writeFileSync(join(dir, "old", "db.sqlite-wal"), "wal frames");
    writeFileSync(join(dir, "new", "db.sqlite"), "an older stay's database");

    const read = sh(readScript(side("vps", "old")));
    expect(read.code, read.stderr).toBe(0);
    const files = parseRead(read.stdout);
    expect(files.map((f) => f.name)).toEqual(["db.sqlite", "db.sqlite-wal"]);
    expect(readFileSync(calls, "utf8")).toContain("systemctl stop headscale.service");
    // Kept on the old host, as it was.
    expect(readFileSync(join(dir, "old", "db.sqlite")).equals(db)).toBe(true);

    const to = side("vps2", "new");
    for (const f of files) {
      const r = sh(stageScript(to, f, "20261201T120000Z"), Buffer.from(f.base64, "base64"));
      expect(r.code, r.stderr).toBe(0);
    }
    const put = sh(installScript(to, "20261201T120000Z"));
    expect(put.code, put.stderr).toBe(0);
    expect(readFileSync(join(dir, "new", "db.sqlite")).equals(db)).toBe(true);
    expect(readFileSync(join(dir, "new", "db.sqlite-wal"), "utf8")).toBe("wal frames");
    expect(statSync(join(dir, "new", "db.sqlite")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, "new", "before-move-20261201T120000Z", "db.sqlite"), "utf8")).toBe("an older stay's database");
    expect(readdirSync(join(dir, "new")).filter((n) => n.startsWith(".meshfleet-move-"))).toEqual([]);
    const log = readFileSync(calls, "utf8");
    expect(log).toContain('u headscale - "Headscale coordination server" /var/lib/headscale /usr/sbin/nologin');
    expect(log).toMatch(/chown headscale:headscale .*db\.sqlite/);
    // No headscale unit on the new host yet (the shim's `systemctl cat` fails): its generation starts it.
    expect(put.stdout).not.toContain("restarted");
  });

  it("starts headscale on a host whose generation still has it (a move back after a failed deploy)", () => {
    shim("systemctl", 'case "$1" in cat) exit 0;; esac; exit 0');
    mkdirSync(join(dir, "new"));
    const to = side("vps", "new");
    writeFileSync(join(dir, "f"), "x");
    const sum = spawnSync("sha256sum", [join(dir, "f")], { encoding: "utf8" }).stdout.split(" ")[0]!;
    expect(sh(stageScript(to, { name: "db.sqlite", sha256: sum }, "s"), "x").code).toBe(0);
    const put = sh(installScript(to, "s"));
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toContain("restarted");
    expect(readFileSync(calls, "utf8")).toContain("systemctl restart headscale.service");
  });

  it("refuses a copy that arrived damaged, and leaves the database there untouched", () => {
    mkdirSync(join(dir, "new"));
    writeFileSync(join(dir, "new", "db.sqlite"), "live");
    const to = side("vps2", "new");
    const r = sh(stageScript(to, { name: "db.sqlite", sha256: "0".repeat(64) }, "s"), "other bytes");
    expect(r.code).toBe(5);
    expect(r.stderr).toContain("db.sqlite arrived damaged");
    expect(readFileSync(join(dir, "new", "db.sqlite"), "utf8")).toBe("live");
  });

  it("fails naming the path when there is no database, before stopping anything", () => {
    const r = sh(readScript(side("vps", "nowhere", { runtime: "docker", container: "hs" })));
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`no database at ${join(dir, "nowhere", "db.sqlite")}`);
    expect(readFileSync(calls, "utf8")).toBe("");
  });

  it("stops the container on the docker runtime and carries a hot rollback journal; refuses a headscale that did not stop", () => {
    mkdirSync(join(dir, "old"));
    writeFileSync(join(dir, "old", "db.sqlite"), "pages");
    writeFileSync(join(dir, "old", "db.sqlite-journal"), "rollback journal");
    shim("docker", 'case "$1" in inspect) echo false;; esac; exit 0');
    const r = sh(readScript(side("vps", "old", { runtime: "docker", container: "hs" })));
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(calls, "utf8")).toContain("docker stop hs");
    expect(parseRead(r.stdout).map((f) => f.name)).toEqual(["db.sqlite", "db.sqlite-journal"]);
    // Still running after the stop: exit 4, and nothing is read.
    shim("docker", 'case "$1" in inspect) echo true;; esac; exit 0');
    const live = sh(readScript(side("vps", "old", { runtime: "docker", container: "hs" })));
    expect(live.code).toBe(4);
    expect(live.stdout).not.toContain("MESHFLEET-DATABASE");
    shim("systemctl", 'case "$1" in is-active) exit 0;; esac; exit 0');
    const unit = sh(stopScript({ runtime: "systemd" }));
    expect(unit.code).toBe(4);
    expect(unit.stderr).toContain("headscale.service is still active");
  });

  it("parseRead refuses an answer without the database or with a cut body", () => {
    expect(() => parseRead("")).toThrow(/no database file/);
    expect(() => parseRead(`MESHFLEET-DATABASE db.sqlite ${"a".repeat(64)}\nnot base64 !`)).toThrow(/not whole/);
    expect(() => stageScript(side("x", "y"), { name: "../etc/passwd", sha256: "a".repeat(64) }, "s")).toThrow(/unexpected database file name/);
  });
});

describe("what meshfleet refuses to move", () => {
  it("an adopted coordinator and a Postgres database on the coordinator itself, each with the steps; not SQLite or a shared server", () => {
    expect(moveRefusal({ from: "vps", to: "vps2", databaseType: "sqlite", adopted: true })).toMatch(/headscale\.adopt.*noise_private\.key.*meshfleet:coordinatorMovedByHand true.*Nothing was changed/s);
    expect(moveRefusal({ from: "vps", to: "vps2", databaseType: "postgres", postgresHost: "localhost", adopted: false })).toMatch(/on the coordinator itself.*pg_dump.*meshfleet:coordinatorMovedByHand true.*Nothing was changed/s);
    expect(moveRefusal({ from: "vps", to: "vps2", databaseType: "postgres", postgresHost: "/run/postgresql", adopted: false })).not.toBeNull();
    expect(moveRefusal({ from: "vps", to: "vps2", databaseType: "postgres", postgresHost: "db.internal", adopted: false })).toBeNull();
    expect(moveRefusal({ from: "vps", to: "vps2", databaseType: "sqlite", adopted: false })).toBeNull();
  });
});

const conn = (name: string, host: string): SshConnection => ({ name, host, port: 22, user: "root", hostKeys: ["ssh-ed25519 AAAA"] });
const inputs = (host: string, o: Partial<PlacementInputs> = {}): PlacementInputs => ({
  host,
  connection: conn(host, `10.0.0.${host === "vps" ? 1 : 2}`),
  runtime: "systemd",
  databaseType: "sqlite",
  databasePath: join(dir, host, "db.sqlite"),
  adopted: false,
  serverUrl: "https://hs.example.com",
  ...o,
});

describe("the Placement resource", () => {
  it("a new host is an update that moves the database there; the same host changes nothing on any host", async () => {
    mkdirSync(join(dir, "vps"));
    mkdirSync(join(dir, "vps2"));
    writeFileSync(join(dir, "vps", "db.sqlite"), "nodes and keys");
    const ran: string[] = [];
    vi.spyOn(session, "run").mockImplementation(async (c, script, o) => {
      ran.push(`${c.name}: ${o.what}`);
      return sh(script, o.stdin);
    });
    const olds: PlacementOutputs = inputs("vps");
    const d = await placement.diff(olds, inputs("vps2"));
    expect(d.changes).toBe(true);
    expect(d.replaces ?? []).toEqual([]);
    expect(d.detailedDiff).toMatchObject({ host: "update", connection: "update" });
    const out = await placement.update!("vps", olds, inputs("vps2"));
    expect(out).toMatchObject({ host: "vps2", movedFrom: "vps" });
    expect(readFileSync(join(dir, "vps2", "db.sqlite"), "utf8")).toBe("nodes and keys");
    expect(ran).toEqual(["vps: stop headscale and read its database (move to vps2)", "vps2: database copy db.sqlite to vps2", "vps2: database in place on vps2"]);

    ran.length = 0;
    const same = await placement.update!("vps2", out, inputs("vps2", { connection: conn("vps2", "10.0.0.9") }));
    expect(same).toMatchObject({ host: "vps2", movedFrom: "vps" });
    expect(ran).toEqual([]);
  });

  it("an adopted coordinator's move is refused in the diff, so a preview says so before anything runs", async () => {
    const run = vi.spyOn(session, "run");
    await expect(placement.diff(inputs("vps", { adopted: true }), inputs("vps2", { adopted: true }))).rejects.toThrow(/headscale\.adopt/);
    expect(run).not.toHaveBeenCalled();
  });

  it("a Postgres server both hosts reach: nothing is copied, but the old headscale stops (two on one database would both hand out addresses)", async () => {
    const ran: string[] = [];
    vi.spyOn(session, "run").mockImplementation(async (c, script, o) => (ran.push(`${c.name}: ${o.what}`), sh(script, o.stdin)));
    const out = await placement.update!("vps", inputs("vps", { databaseType: "postgres", postgresHost: "db.internal" }), inputs("vps2", { databaseType: "postgres", postgresHost: "db.internal" }));
    expect(out.movedFrom).toBe("vps");
    expect(ran).toEqual(["vps: stop headscale (the coordinator moves to vps2)"]);
    expect(readFileSync(calls, "utf8")).toContain("systemctl stop headscale.service");
  });

  it("moved by hand (the stack setting): an adopted coordinator's move only records the new host, once the database is there", async () => {
    const ran: string[] = [];
    vi.spyOn(session, "run").mockImplementation(async (c, script, o) => (ran.push(`${c.name}: ${o.what}`), sh(script, o.stdin)));
    const olds = inputs("vps", { adopted: true });
    const news = inputs("vps2", { adopted: true, movedByHand: true });
    expect((await placement.diff(olds, news)).changes).toBe(true);
    // The setting left on from an earlier move, no database put there: refused, or headscale would start empty.
    await expect(placement.update!("vps", olds, news)).rejects.toThrow(/meshfleet:coordinatorMovedByHand is set, but there is no database at .*vps2\/db\.sqlite on vps2; headscale there would start empty/);
    mkdirSync(join(dir, "vps2"));
    writeFileSync(join(dir, "vps2", "db.sqlite"), "put here by hand");
    expect(await placement.update!("vps", olds, news)).toMatchObject({ host: "vps2", movedFrom: "vps" });
    expect(ran.every((r) => r.startsWith("vps2: is headscale's database on vps2"))).toBe(true);
    expect(readFileSync(join(dir, "vps2", "db.sqlite"), "utf8")).toBe("put here by hand");
    // The setting left on afterwards is no change by itself.
    expect((await placement.diff({ ...news, movedFrom: "vps" }, { ...news, movedByHand: false })).changes).toBe(false);
  });

  it("a copy that fails after the stop starts the old headscale again and says so; the database never shows in the error", async () => {
    mkdirSync(join(dir, "vps"));
    writeFileSync(join(dir, "vps", "db.sqlite"), "secret-looking database bytes");
    vi.spyOn(session, "run").mockImplementation(async (c, script, o) => {
      if (o.what.startsWith("database copy")) return { code: 1, stdout: "", stderr: "No space left on device" };
      return sh(script, o.stdin);
    });
    const err = await placement.update!("vps", inputs("vps"), inputs("vps2")).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(/receiving db\.sqlite failed \(exit 1\): No space left on device\nheadscale on vps was started again, on its own database: nothing moved\./);
    expect(readFileSync(calls, "utf8")).toMatch(/systemctl stop headscale\.service[\s\S]*systemctl start headscale\.service/);
    expect(existsSync(join(dir, "vps2", "db.sqlite"))).toBe(false);

    vi.spyOn(session, "run").mockImplementation(async (_c, script, o) => (o.what.startsWith("stop headscale and read") ? { code: 137, stdout: "MESHFLEET-DATABASE db.sqlite " + "a".repeat(64) + "\nc2VjcmV0", stderr: "" } : sh(script, o.stdin)));
    const killed = await placement.update!("vps", inputs("vps"), inputs("vps2")).then(() => null, (e: Error) => e);
    expect(killed?.message).toContain("exit 137): (no output)");
    expect(killed?.message).not.toContain("c2VjcmV0");
  });
});

describe("the coordinator's bootstrap generation on another host", () => {
  it("is pushed again there (replaced), while on the same host it stays pushed once", () => {
    const olds = { host: "vps", once: true, hash: "h1" } as unknown as GenerationOutputs;
    const moved = generation.diff(olds, { ...olds, host: "vps2", hash: "h2" } as never);
    expect(moved.replaces).toEqual(["host"]);
    expect(generation.diff(olds, { ...olds, hash: "h2" } as never).changes).toBe(false);
  });
});

describe("plan", () => {
  it("states a coordinator move and its steps", () => {
    const f = (host: string) => ({ hosts: {}, coordinator: { host, serverUrl: "https://hs.example.com", headscaleVersion: "0.29.2", baseDomain: "x", runtime: "systemd" } }) as unknown as FleetSystem;
    const ws = planWarnings(f("vps"), f("vps2"), diffNetwork(emptyModel("lab"), emptyModel("lab")));
    const w = ws.find((x) => x.kind === "coordinator-moves");
    expect(w?.message).toContain("the coordinator moves from vps to vps2");
    for (const s of moveSteps("vps", "vps2", "https://hs.example.com")) expect(w?.message).toContain(s);
    expect(planWarnings(f("vps"), f("vps"), diffNetwork(emptyModel("lab"), emptyModel("lab"))).some((x) => x.kind === "coordinator-moves")).toBe(false);
    expect(existsSync(dir)).toBe(true);
  });

  it("says when up will refuse the move (an adopted coordinator's keys, a Postgres on the coordinator), with the way by hand", () => {
    const config = (db: string, noise = "/var/lib/headscale/noise_private.key") => `database:\n${db}noise:\n  private_key_path: ${noise}\n`;
    const coordinator = (name: string, text: string, keyFile = true) =>
      ({ name, runtime: "systemd", containers: [], files: [{ path: "/etc/headscale/config.yaml", content: text }, ...(keyFile ? [{ path: "/var/lib/headscale/noise_private.key", content: "" }] : [])] }) as unknown as HostSystem;
    const f = (host: string, h: HostSystem) => ({ hosts: { [host]: h }, coordinator: { host, serverUrl: "https://hs.example.com", headscaleVersion: "0.29.2", baseDomain: "x", runtime: "systemd" } }) as unknown as FleetSystem;
    const sqlite = config("  type: sqlite\n  sqlite:\n    path: /var/lib/headscale/db.sqlite\n");
    const move = (from: HostSystem, to: HostSystem) => planWarnings(f("vps", from), f("vps2", to), diffNetwork(emptyModel("lab"), emptyModel("lab"))).find((x) => x.kind === "coordinator-moves")?.message;
    // meshfleet's own keys and SQLite: the steps.
    expect(move(coordinator("vps", sqlite), coordinator("vps2", sqlite))).toContain("(1) headscale on vps is stopped");
    // Adopted on the old host (its Noise key a file meshfleet did not write): refused, said with the fix.
    const adopted = move(coordinator("vps", config("  type: sqlite\n  sqlite:\n    path: /var/lib/headscale/db.sqlite\n", "/etc/old/noise.key"), false), coordinator("vps2", sqlite));
    expect(adopted).toMatch(/^the coordinator moves from vps to vps2, which `meshfleet up` will refuse \(unless meshfleet:coordinatorMovedByHand is set\): the coordinator was taken over with headscale.adopt/);
    expect(adopted).not.toContain("Nothing was changed");
    // Postgres on the coordinator itself.
    const pg = config("  type: postgres\n  postgres:\n    host: localhost\n");
    expect(move(coordinator("vps", pg), coordinator("vps2", pg))).toMatch(/will refuse .*Postgres database is on the coordinator itself/);
    // Postgres on a server both reach: the steps, and nothing carried.
    const remote = config("  type: postgres\n  postgres:\n    host: db.internal\n");
    const shared = move(coordinator("vps", remote), coordinator("vps2", remote));
    expect(shared).toContain("(1) headscale on vps is stopped (two headscales on one database would both hand out addresses); (2) the database stays on db.internal: nothing is copied; (3) vps2's generation starts headscale");
    expect(shared).not.toContain("the database goes to");
  });
});

describe("placementFacts on the docker runtime (the home fleet's VPS)", () => {
  it("reads the config headscale's container gets, and its Noise key is meshfleet's (not adopted)", async () => {
    const { placementFacts } = await import("../../components/placement-facts.ts");
    const { evaluateStack } = await import("../components/fixtures.ts");
    const { fleet } = await evaluateStack("home");
    const vps = fleet.hosts[fleet.coordinator.host]!;
    expect(vps.runtime).toBe("docker");
    expect(placementFacts(vps)).toEqual({ databaseType: "sqlite", databasePath: "/var/lib/headscale/db.sqlite", adopted: false });
  });
});

describe("placementFacts: what the Coordinator reads from the rendered config", () => {
  it("the database, and whether the Noise key is a file meshfleet writes", async () => {
    const { placementFacts } = await import("../../components/placement-facts.ts");
    const host = (config: string, files: string[] = []) =>
      ({ files: [{ path: "/etc/headscale/config.yaml", content: config }, ...files.map((path) => ({ path, content: "" }))] }) as never;
    expect(placementFacts(host("database:\n  type: sqlite\n  sqlite:\n    path: /srv/hs/db.sqlite\nnoise:\n  private_key_path: /var/lib/headscale/noise_private.key\n", ["/var/lib/headscale/noise_private.key"]))).toEqual({
      databaseType: "sqlite",
      databasePath: "/srv/hs/db.sqlite",
      adopted: false,
    });
    expect(placementFacts(host("database:\n  type: postgres\n  postgres:\n    host: db.internal\nnoise:\n  private_key_path: /etc/old/noise.key\n", ["/var/lib/headscale/noise_private.key"]))).toEqual({
      databaseType: "postgres",
      databasePath: "/var/lib/headscale/db.sqlite",
      postgresHost: "db.internal",
      adopted: true,
    });
  });
});
