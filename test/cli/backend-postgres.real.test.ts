/**
 * Shared state in PostgreSQL for real (issue 19): Pulumi 3.248's DIY
 * postgres:// backend on a throwaway Debian PostgreSQL cluster on loopback
 * (initdb and pg_ctl as the postgres user in a temp folder, a free port,
 * password login over TCP; stopped by its postmaster's pid and removed).
 *
 * What is deployed: each run is a process of its own running runDeploy (the
 * engine behind `meshfleet up | refresh`) with the backend URL, a tiny inline
 * program of one meshfleet:host:Generation, meshfleet's own provider from a
 * Pulumi.yaml like the repo's, and the real agent on a temp root behind a
 * throwaway sshd on 127.0.0.1 (test/provider/sshd.ts). Nothing lighter goes
 * through the real provider: the real program (index.ts) needs a coordinator
 * host with headscale on it.
 *
 * Proved: two ups started at once — one deploys, the other waits for the
 * lock, naming its holder and since when, then changes nothing; with
 * --lock-wait 0 it fails at once with that message; a third up is a no-op
 * and the state is whole (one checkpoint, no lock, no pending operation).
 * An up killed with SIGKILL mid-create (its process group) leaves a lock and
 * a pending create: the next up fails naming the dead holder and
 * `meshfleet refresh`; refresh clears both; the next up deploys and the one
 * after is a no-op. The stored checkpoints hold no secret in clear, and the
 * URL's password is in no message, result or log. The CLI's --backend flag
 * redacts the password in Pulumi's own connection error.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../cli/commands/deploy.ts";
import { toolPath, toolsStatus } from "../../lab/tools/index.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";
import { privateAgent } from "../provider/agent.ts";
import { sshdUnavailable, startSshd, type Sshd } from "../provider/sshd.ts";
import type { RunnerSpec } from "./fixtures/backend-postgres-runner.ts";

/** A PostgreSQL server binary: on PATH, else Debian's versioned folder. */
function pgBin(name: string): string | null {
  const onPath = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).stdout.trim();
  if (onPath) return onPath;
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return null;
  for (const v of readdirSync(base).sort((a, b) => Number(b) - Number(a))) if (existsSync(join(base, v, "bin", name))) return join(base, v, "bin", name);
  return null;
}
const INITDB = pgBin("initdb");
const PG_CTL = pgBin("pg_ctl");
const PSQL = pgBin("psql");
const pulumiBuilt = toolsStatus().find((t) => t.name === "pulumi")?.state !== "missing";
const pgUser = spawnSync("id", ["-u", "postgres"]).status === 0 ? "postgres" : "nobody";
const why = !isRoot()
  ? NEEDS_ROOT
  : (sshdUnavailable() ??
    (!INITDB || !PG_CTL || !PSQL
      ? "PostgreSQL is not installed (initdb, pg_ctl, psql): apt-get install postgresql postgresql-client (scripts/setup.sh installs them)"
      : !pulumiBuilt
        ? "the pulumi CLI is not built: run `meshfleet tools build`"
        : ""));

const PW = `pgPw${Math.random().toString(16).slice(2, 12)}H7`;
const SECRET = `token-${Math.random().toString(16).slice(2, 14)}-never-in-state`;
const DB = "meshfleet_state";
const RUNNER = join(REPO_ROOT, "test", "cli", "fixtures", "backend-postgres-runner.ts");
const TSX = join(REPO_ROOT, "node_modules", "tsx", "dist", "loader.mjs");

interface Pg {
  dir: string;
  port: number;
  pid: number;
  url: string;
}

async function freePort(): Promise<number> {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
    s.on("error", reject);
  });
}

async function startPg(): Promise<Pg> {
  const dir = mkdtempSync(join(tmpdir(), "mf-pg-"));
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, "pwfile"), `${PW}\n`);
  execFileSync("chown", ["-R", pgUser, dir]);
  const as = (bin: string, args: string[]) => execFileSync("runuser", ["-u", pgUser, "--", bin, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  // Password (scram) over TCP, so the URL's password is what lets Pulumi in; the socket (the test's own psql) trusts.
  as(INITDB!, ["-D", join(dir, "data"), "-U", "meshfleet", `--pwfile=${join(dir, "pwfile")}`, "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"]);
  rmSync(join(dir, "pwfile"));
  const port = await freePort();
  as(PG_CTL!, ["-D", join(dir, "data"), "-l", join(dir, "log"), "-w", "-o", `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`, "start"]);
  const pid = Number(readFileSync(join(dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
  execFileSync(PSQL!, ["-h", dir, "-p", String(port), "-U", "meshfleet", "-d", "postgres", "-qc", `CREATE DATABASE ${DB}`]);
  return { dir, port, pid, url: `postgres://meshfleet:${PW}@127.0.0.1:${port}/${DB}?sslmode=disable` };
}

async function stopPg(pg: Pg): Promise<void> {
  // SIGINT: the postmaster's fast shutdown; then wait for that pid to be gone.
  try {
    process.kill(pg.pid, "SIGINT");
  } catch {
    /* gone already */
  }
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(pg.pid, 0);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  rmSync(pg.dir, { recursive: true, force: true });
}

/** A stored blob's bytes as text: pulumi 3.248 keeps each one as JSON, {"data": "<base64>"}. */
const BLOB = "convert_from(decode(data->>'data', 'base64'), 'UTF8')";

function sql(pg: Pg, query: string): string {
  return execFileSync(PSQL!, ["-h", pg.dir, "-p", String(pg.port), "-U", "meshfleet", "-d", DB, "-Atc", query], { encoding: "utf8" });
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  result?: { ok: boolean; changes: Record<string, number>; errors: string[]; warnings: string[]; backend: string };
}

interface Started {
  pid: number;
  /** Resolves when a line matching `re` has been printed. */
  saw: (re: RegExp) => Promise<void>;
  done: Promise<Run>;
  out: () => string;
}

describe.skipIf(skipUnlessCi(why))(`shared state in PostgreSQL (pulumi's DIY postgres:// backend)${why ? ` (skipped: ${why})` : ""}`, () => {
  let pg: Pg;
  let sshd: Sshd;
  let root: string;
  let agentPath: string;
  const outputs: string[] = [];
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    agentPath = privateAgent();
    [pg, sshd] = await Promise.all([startPg(), startSshd()]);
    root = mkdtempSync(join(tmpdir(), "mf-pgroot-"));
    mkdirSync(join(root, "stacks"));
    mkdirSync(join(root, "own"));
    writeFileSync(
      join(root, "Pulumi.yaml"),
      `name: meshfleet\nruntime: nodejs\nstackConfigDir: stacks\nplugins:\n  providers:\n    - name: meshfleet\n      path: ${join(REPO_ROOT, "provider", "bin")}\n`,
    );
  }, 120_000);

  afterAll(async () => {
    await sshd?.stop();
    if (pg) await stopPg(pg);
    if (root) rmSync(root, { recursive: true, force: true });
    console.log(`backend-postgres timings (ms): ${JSON.stringify(timings)}`);
  });

  type Opts = { content?: string; lockWaitSeconds?: number; holdMs?: number };
  function start(verb: RunnerSpec["verb"], stack: string, o: Opts = {}): Started {
    const configFile = join(root, "own", `Pulumi.${stack}.yaml`);
    if (!existsSync(configFile)) writeFileSync(configFile, "config: {}\n");
    const spec: RunnerSpec = {
      verb,
      stack,
      root,
      configFile,
      env: { MESHFLEET_STATE_DIR: join(root, "state"), PULUMI_HOME: join(root, "home"), PULUMI_BACKEND_URL: pg.url, PULUMI_CONFIG_PASSPHRASE: "pg-test-passphrase" },
      lockWaitSeconds: o.lockWaitSeconds,
      sshd: { port: sshd.port, dir: sshd.dir, hostKey: sshd.hostKey, clientKeyPath: sshd.clientKeyPath },
      agentPath,
      content: o.content ?? "v=1\n",
      secret: SECRET,
      holdMs: o.holdMs,
    };
    // Its own process group (detached), so that a kill takes the pulumi CLI and the provider with it.
    const child = spawn(process.execPath, ["--import", TSX, RUNNER], { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, MF_PG_SPEC: JSON.stringify(spec) } });
    let out = "";
    const waiters: { re: RegExp; resolve: () => void }[] = [];
    const onData = (d: Buffer) => {
      out += d.toString();
      for (const w of [...waiters]) if (w.re.test(out)) (waiters.splice(waiters.indexOf(w), 1), w.resolve());
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    const done = new Promise<Run>((resolve) =>
      child.on("close", (code, signal) => {
        outputs.push(out);
        const m = /^@@RESULT (.*)$/m.exec(out);
        resolve({ code, signal, out, result: m ? JSON.parse(m[1]!) : undefined });
      }),
    );
    return {
      pid: child.pid!,
      out: () => out,
      done,
      saw: (re) =>
        new Promise<void>((resolve, reject) => {
          if (re.test(out)) return resolve();
          waiters.push({ re, resolve });
          void done.then(() => reject(new Error(`ended without printing ${re}:\n${out}`)));
        }),
    };
  }
  const run = async (verb: RunnerSpec["verb"], stack: string, o: Opts = {}) => {
    const t0 = Date.now();
    const r = await start(verb, stack, o).done;
    timings[`${verb}-${stack}-${Object.keys(timings).length}`] = Date.now() - t0;
    return r;
  };
  const live = (p: string) => (existsSync(join(sshd.root, p)) ? readFileSync(join(sshd.root, p), "utf8") : null);
  const checkpoint = (stack: string) => JSON.parse(sql(pg, `SELECT ${BLOB} FROM pulumi_state WHERE key = '${DB}/.pulumi/stacks/meshfleet/${stack}.json'`)) as {
    checkpoint: { latest?: { resources?: { type: string }[]; pending_operations?: { type: string; resource: { urn: string } }[] } };
  };
  const locks = (stack: string) => sql(pg, `SELECT key FROM pulumi_state WHERE key LIKE '${DB}/.pulumi/locks/organization/meshfleet/${stack}/%'`).trim();

  it("two ups started at once: one deploys, the other waits for the lock (naming who holds it and since when) and changes nothing; a third is a no-op", async () => {
    const a = start("up", "pgtest");
    const b = start("up", "pgtest");
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.result?.errors, ra.out).toEqual([]);
    expect(rb.result?.errors, rb.out).toEqual([]);
    const [first, second] = (ra.result!.changes.create ?? 0) > 0 ? [ra, rb] : [rb, ra];
    expect(first.result!.changes).toMatchObject({ create: 2 });
    expect(second.result!.changes).toEqual({ same: 2 });
    // The one that came second waited, and said for whom.
    expect(second.out).toMatch(new RegExp(`waiting for the lock: stack pgtest is locked by \\S+@${hostname()} \\(pid \\d+\\) since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+(Z|[+-]\\d\\d:\\d\\d) \\(\\d+ s ago\\)`));
    expect(live("/etc/app/app.conf")).toBe("v=1\n");

    const third = await run("up", "pgtest");
    expect(third.result?.changes, third.out).toEqual({ same: 2 });
    expect(third.out).not.toContain("waiting for the lock");
    // Whole: one checkpoint with the stack and the generation, nothing pending, no lock left.
    const cp = checkpoint("pgtest").checkpoint.latest!;
    expect(cp.resources!.map((r) => r.type)).toEqual(["pulumi:pulumi:Stack", "pulumi:providers:meshfleet", "meshfleet:host:Generation"]);
    expect(cp.pending_operations ?? []).toEqual([]);
    expect(locks("pgtest")).toBe("");
  }, 300_000);

  it("with --lock-wait 0, an up while another holds the lock fails at once, naming the holder and since when", async () => {
    // A long deploy (its program keeps running 15 s after registering): the lock stays held while b starts.
    const a = start("up", "pgtest", { content: "v=2\n", holdMs: 15_000 });
    await a.saw(/meshfleet:host:Generation testhost {2}update\.\.\./);
    const t0 = Date.now();
    const b = await run("up", "pgtest", { content: "v=2\n", lockWaitSeconds: 0 });
    const ra = await a.done;
    expect(ra.result?.changes, ra.out).toMatchObject({ update: 1 });
    expect(b.code).toBe(1);
    expect(b.result!.errors.join("\n")).toMatch(
      new RegExp(`^stack pgtest is locked by another run: \\S+@${hostname()} \\(pid \\d+\\) since \\S+ \\(\\d+ s ago\\); nothing was changed\\. Fix: wait for it to finish and run again \\(--lock-wait SECONDS waits for it\\)\\. If that run is dead .*\`pulumi cancel --yes --stack pgtest\``),
    );
    console.log(`locked-out up failed in ${Date.now() - t0} ms`);
    expect(live("/etc/app/app.conf")).toBe("v=2\n");
    expect(locks("pgtest")).toBe("");
  }, 300_000);

  it("an up killed mid-create leaves a lock and a pending create; up names them and the fix, refresh clears them, the next up deploys, the one after is a no-op", async () => {
    const k = start("up", "pgkill", { content: "v=k\n" });
    await k.saw(/meshfleet:host:Generation testhost {2}create\.\.\./);
    await new Promise((r) => setTimeout(r, 300));
    process.kill(-k.pid, "SIGKILL");
    const killed = await k.done;
    expect(killed.signal).toBe("SIGKILL");
    expect(locks("pgkill")).not.toBe("");
    const pending = checkpoint("pgkill").checkpoint.latest!.pending_operations ?? [];
    expect(pending.map((p) => [p.type, p.resource.urn.split("::").pop()])).toEqual([["creating", "testhost"]]);

    const blocked = await run("up", "pgkill", { content: "v=k\n" });
    expect(blocked.code).toBe(1);
    expect(blocked.result!.errors.join("\n")).toMatch(
      /^stack pgkill is locked by \S+ \(pid \d+\) since \S+ \(\d+ s ago\), and that process no longer runs on this machine \(killed or crashed mid-run\); it left meshfleet:host:Generation testhost \(interrupted while creating\) half done\. Fix: `meshfleet refresh --stack pgkill` clears its lock/,
    );

    const refresh = await run("refresh", "pgkill");
    expect(refresh.result?.errors, refresh.out).toEqual([]);
    expect(refresh.out).toMatch(/cleared the lock left by \S+ \(pid \d+\) since \S+/);
    expect(refresh.out).toMatch(/it left meshfleet:host:Generation testhost \(interrupted while creating\) half done: refresh reads each back and clears the pending operation/);
    expect(checkpoint("pgkill").checkpoint.latest!.pending_operations ?? []).toEqual([]);
    expect(locks("pgkill")).toBe("");

    const up = await run("up", "pgkill", { content: "v=k\n" });
    expect(up.result?.errors, up.out).toEqual([]);
    expect(live("/etc/app/app.conf")).toBe("v=k\n");
    const again = await run("up", "pgkill", { content: "v=k\n" });
    expect(again.result?.changes, again.out).toEqual({ same: 2 });
  }, 400_000);

  it("a dead run's lock cleared by hand (pulumi cancel, the fix for a holder on another machine): the next up names the pending create and the fix, and makes it again", async () => {
    const k = start("up", "pgcancel", { content: "v=c\n" });
    await k.saw(/meshfleet:host:Generation testhost {2}create\.\.\./);
    await new Promise((r) => setTimeout(r, 300));
    process.kill(-k.pid, "SIGKILL");
    await k.done;
    const c = spawnSync(toolPath("pulumi"), ["cancel", "--yes", "--stack", "pgcancel", "--non-interactive"], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, PULUMI_BACKEND_URL: pg.url, PULUMI_HOME: join(root, "home"), PULUMI_CONFIG_PASSPHRASE: "pg-test-passphrase" },
    });
    expect(c.status, c.stderr).toBe(0);
    expect(locks("pgcancel")).toBe("");
    const up = await run("up", "pgcancel", { content: "v=c\n" });
    expect(up.result?.errors, up.out).toEqual([]);
    const said = /warning: a run that did not finish left meshfleet:host:Generation testhost \(interrupted while creating\) half done; its real state is unknown, and this run does it again\. Fix: `meshfleet refresh --stack pgcancel` reads every resource back and clears the pending operation/;
    expect(up.out).toMatch(said);
    // Pulumi's own advice (an interactive `pulumi refresh`) is not what meshfleet shows.
    expect(up.out).not.toContain("run interactively");
    expect(up.result!.changes).toMatchObject({ create: 1 });
    expect(live("/etc/app/app.conf")).toBe("v=c\n");
    // Pulumi keeps the pending create after that up; the refresh the message names clears it, and the warning goes.
    expect((checkpoint("pgcancel").checkpoint.latest!.pending_operations ?? []).length).toBe(1);
    const refresh = await run("refresh", "pgcancel");
    expect(refresh.result?.errors, refresh.out).toEqual([]);
    expect(checkpoint("pgcancel").checkpoint.latest!.pending_operations ?? []).toEqual([]);
    const again = await run("up", "pgcancel", { content: "v=c\n" });
    expect(again.result?.changes, again.out).toEqual({ same: 2 });
    expect(again.out).not.toMatch(said);
  }, 300_000);

  it("the checkpoints in Postgres hold no secret in clear, and the URL's password is in no message, result or log", () => {
    const rows = sql(pg, `SELECT key || ' ' || ${BLOB} FROM pulumi_state`);
    expect(rows).toContain("meshfleet:host:Generation");
    expect(rows).toContain("ciphertext");
    expect(rows).not.toContain(SECRET);
    expect(rows).not.toContain(sshd.clientKeyText.split("\n")[1]);
    const logs = readdirSync(join(root, "logs")).map((f) => readFileSync(join(root, "logs", f), "utf8")).join("\n");
    expect(logs.length).toBeGreaterThan(0);
    for (const text of [...outputs, logs]) expect(text).not.toContain(PW);
    expect(outputs.join("\n")).toContain(`"backend":"postgres://meshfleet:***@127.0.0.1:${pg.port}/${DB}?sslmode=disable"`);
  });

  it("meshfleet up --backend: Pulumi's own connection error comes back with the password redacted", () => {
    const wrong = `wrongPw${Math.random().toString(16).slice(2, 10)}`;
    const r = spawnSync(process.execPath, [join(REPO_ROOT, "bin", "meshfleet.mjs"), "preview", "--stack", "pgflag", "--config-file", join(root, "own", "Pulumi.pgflag.yaml"), "--backend", `postgres://meshfleet:${wrong}@127.0.0.1:${pg.port}/${DB}?sslmode=disable`, "--debug"], {
      encoding: "utf8",
      env: { ...process.env, MESHFLEET_STATE_DIR: join(root, "state"), PULUMI_HOME: join(root, "home"), PULUMI_CONFIG_PASSPHRASE: "pg-test-passphrase", PULUMI_BACKEND_URL: "" },
      timeout: 120_000,
    });
    const text = `${r.stdout}\n${r.stderr}`;
    expect(r.status, text).toBe(1);
    expect(text).toMatch(/password authentication failed for user "meshfleet"/);
    expect(text).toContain("postgres://meshfleet:***@127.0.0.1");
    expect(text).not.toContain(wrong);
  }, 180_000);
});
