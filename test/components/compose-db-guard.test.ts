/**
 * The compose unit's database guard around an image switch (components/dockerService.ts
 * dbGuardScript), run for real with /bin/sh on a SQLite database file in a temp folder;
 * `docker image inspect` is a stub on PATH that answers the image id the test sets (the
 * lab proves it with docker and PostgreSQL: test/lab/docker-postgres-lab.test.ts).
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { COMPOSE_DB_GUARD, COMPOSE_DB_GUARD_DIR, composeHost, containerDatabaseOf, dbGuardScript, ranImageRecorder, RESTORE_WINDOW_S } from "../../components/dockerService.ts";
import type { ContainerSpec, HostSystem } from "../../core/types.ts";

const OLD = `sha256:${"a".repeat(64)}`;
const NEW = `sha256:${"b".repeat(64)}`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "mf-compose-db-guard-"));
  mkdirSync(join(dir, "bin"));
  // The stub answers the id in $IMAGE_ID for any reference.
  // The stub answers the id in $IMAGE_ID for any image, and lists the compose network $NETWORK_ID when set.
  // `container inspect` answers $RAN_ID (the image the container ran), and fails as for no such container when it is unset.
  writeFileSync(
    join(dir, "bin", "docker"),
    '#!/bin/sh\nif [ "$1 $2" = "network ls" ]; then [ -z "$NETWORK_ID" ] || echo "$NETWORK_ID"; exit 0; fi\n' +
      'if [ "$1 $2" = "container inspect" ]; then [ -n "$RAN_ID" ] || { echo "Error: No such container" >&2; exit 1; }; echo "$RAN_ID"; exit 0; fi\n' +
      '[ "$1 $2" = "image inspect" ] || exit 2\necho "$IMAGE_ID"\n',
  );
  chmodSync(join(dir, "bin", "docker"), 0o755);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const db = () => join(dir, "db.sqlite");
const journal = () => join(dir, "journal.json");
function guard(image: string, op?: "switch" | "rollback") {
  if (op) writeFileSync(journal(), JSON.stringify({ op, from: 1, to: 2, done: [] }, null, 2) + "\n");
  else rmSync(journal(), { force: true });
  const script = join(dir, "guard.sh");
  writeFileSync(script, dbGuardScript({ container: "headscale", image: "meshfleet-lab/headscale:x", database: { type: "sqlite", path: db() }, stateDir: join(dir, "state"), journal: journal() }));
  const r = spawnSync("/bin/sh", [script], { encoding: "utf8", env: { ...process.env, PATH: `${join(dir, "bin")}:/usr/bin:/bin`, IMAGE_ID: image } });
  return { code: r.status, said: r.stderr };
}

/** The compose unit's ExecStop that records the image the container ran (ranImageRecorder), as systemd runs it: `$$` is `$`, by /bin/sh. */
function stop(ran?: string) {
  const m = /^ExecStop=-\/bin\/sh -c '(.*)'$/.exec(ranImageRecorder("headscale"));
  if (!m) throw new Error(`not an ExecStop=-/bin/sh -c '...' line: ${ranImageRecorder("headscale")}`);
  const cmd = m[1].replaceAll("$$", "$").replaceAll(COMPOSE_DB_GUARD_DIR, join(dir, "state"));
  const r = spawnSync("/bin/sh", ["-c", cmd], { encoding: "utf8", env: { ...process.env, PATH: `${join(dir, "bin")}:/usr/bin:/bin`, RAN_ID: ran ?? "" } });
  return { code: r.status, said: r.stderr };
}
const record = () => readFileSync(join(dir, "state", "headscale.image"), "utf8");

describe("the compose unit's database guard (SQLite, real sh)", () => {
  it("a rollback to a generation from before the guard: the next guarded generation's stop records the image that really ran, so its start sees the switch and copies the database", () => {
    writeFileSync(db(), "v1");
    guard(NEW, "switch");
    expect(record()).toBe(`${NEW}\n`);
    // The agent rolls back to a generation without the guard: its unit starts OLD and no guard runs, so the
    // record still names NEW. Had the next switch to NEW relied on the record alone, it would copy nothing:
    writeFileSync(db(), "v2, written under the old image");
    expect(guard(NEW, "switch")).toMatchObject({ code: 0, said: "" });
    expect(existsSync(join(dir, "state", "headscale.snapshot.sqlite"))).toBe(false);
    // The next guarded generation's unit stops the container OLD ran in, and records OLD first.
    writeFileSync(join(dir, "state", "headscale.image"), `${NEW}\n`);
    expect(stop(OLD)).toMatchObject({ code: 0 });
    expect(record()).toBe(`${OLD}\n`);
    const sw = guard(NEW, "switch");
    expect(sw.code, sw.said).toBe(0);
    expect(sw.said).toMatch(/image sha256:a+ -> sha256:b+: .*db\.sqlite copied to .*headscale\.snapshot\.sqlite/);
    expect(readFileSync(join(dir, "state", "headscale.snapshot.sqlite"), "utf8")).toBe("v2, written under the old image");
  });

  it("the stop's record: the image the container ran, over the guard's; nothing when there is no container; the same image changes nothing", () => {
    writeFileSync(db(), "v1");
    guard(OLD, "switch");
    expect(stop()).toMatchObject({ code: 1 }); // no container: nothing written, and ExecStop=- does not hold the stop
    expect(record()).toBe(`${OLD}\n`);
    expect(stop(OLD)).toMatchObject({ code: 0 });
    expect(guard(OLD, "switch")).toMatchObject({ code: 0, said: "" });
    // A stop before any guard ran (a host deployed before it, now getting a guarded generation): the folder is made, 0700.
    rmSync(join(dir, "state"), { recursive: true });
    expect(stop(OLD)).toMatchObject({ code: 0 });
    expect(record()).toBe(`${OLD}\n`);
    expect(statSync(join(dir, "state")).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, "state", "headscale.image")).mode & 0o777).toBe(0o600);
    expect(guard(OLD, "switch")).toMatchObject({ code: 0, said: "" });
  });

  it("a first start records the image; a switch copies the database; the agent's rollback puts that copy back and keeps the new image's", () => {
    const first = guard(OLD, "switch");
    expect(first.code, first.said).toBe(0);
    expect(first.said).toMatch(/no database at .*db\.sqlite yet: nothing to keep/);
    expect(readFileSync(join(dir, "state", "headscale.image"), "utf8")).toBe(`${OLD}\n`);
    writeFileSync(db(), "before the switch");
    writeFileSync(`${db()}-wal`, "wal before");
    expect(guard(OLD, "switch")).toMatchObject({ code: 0, said: "" });

    const sw = guard(NEW, "switch");
    expect(sw.code, sw.said).toBe(0);
    expect(sw.said).toMatch(/image sha256:a+ -> sha256:b+: .*db\.sqlite copied to .*headscale\.snapshot\.sqlite \(headscale stopped\)/);
    expect(readFileSync(join(dir, "state", "headscale.snapshot.sqlite"), "utf8")).toBe("before the switch");
    expect(readFileSync(join(dir, "state", "headscale.snapshot.sqlite-wal"), "utf8")).toBe("wal before");

    // The new release migrates the database, fails, and the agent rolls back.
    writeFileSync(db(), "migrated by the new release");
    rmSync(`${db()}-wal`);
    writeFileSync(`${db()}-shm`, "shm of the new release");
    const rb = guard(OLD, "rollback");
    expect(rb.code, rb.said).toBe(0);
    expect(rb.said).toMatch(/rollback from image sha256:b+ to sha256:a+: .*put back from the snapshot/);
    expect(readFileSync(db(), "utf8")).toBe("before the switch");
    expect(readFileSync(`${db()}-wal`, "utf8")).toBe("wal before");
    expect(existsSync(`${db()}-shm`)).toBe(false);
    const stamp = /failed-switch-(\d{8}T\d{6}Z)/.exec(rb.said)![1];
    expect(readFileSync(`${db()}.failed-switch-${stamp}`, "utf8")).toBe("migrated by the new release");
    expect(readFileSync(`${db()}.failed-switch-${stamp}-shm`, "utf8")).toBe("shm of the new release");
    expect(readFileSync(join(dir, "state", "headscale.image"), "utf8")).toBe(`${OLD}\n`);
    // The same image again: nothing to do.
    expect(guard(OLD)).toMatchObject({ code: 0, said: "" });
  });

  it("no record of the image headscale ran (a host deployed before the guard): the database is copied into a file of its own, which no later switch overwrites and no rollback restores", () => {
    writeFileSync(db(), "made under an image meshfleet never recorded");
    writeFileSync(`${db()}-wal`, "its wal");
    const sw = guard(NEW, "switch");
    expect(sw.code, sw.said).toBe(0);
    expect(sw.said).toMatch(/no record of the image headscale ran before this start .*so it may be an image switch: .*db\.sqlite copied to .*headscale\.no-record-\d{8}T\d{6}Z\.sqlite \(headscale stopped; restored by hand only/);
    const kept = /(headscale\.no-record-\d{8}T\d{6}Z\.sqlite)/.exec(sw.said)![1];
    expect(readFileSync(join(dir, "state", kept), "utf8")).toBe("made under an image meshfleet never recorded");
    expect(readFileSync(join(dir, "state", `${kept}-wal`), "utf8")).toBe("its wal");
    expect(existsSync(join(dir, "state", "headscale.snapshot.from"))).toBe(false);
    expect(readFileSync(join(dir, "state", "headscale.image"), "utf8")).toBe(`${NEW}\n`);
    // The new image migrates the database and fails; the agent goes back: the database is kept as it is (copied as a switch's).
    writeFileSync(db(), "migrated by the new release");
    const rb = guard(OLD, "rollback");
    expect(rb.code, rb.said).toBe(0);
    expect(rb.said).not.toMatch(/put back/);
    expect(readFileSync(db(), "utf8")).toBe("migrated by the new release");
    // The no-record copy is still there, for a restore by hand.
    expect(readFileSync(join(dir, "state", kept), "utf8")).toBe("made under an image meshfleet never recorded");
  });

  it("no record and the same image after all: a copy too (the guard cannot tell), then nothing to do", () => {
    writeFileSync(db(), "v1");
    expect(guard(OLD).said).toMatch(/no record .* copied/);
    writeFileSync(db(), "v2");
    expect(guard(OLD)).toMatchObject({ code: 0, said: "" });
    expect(guard(OLD, "rollback")).toMatchObject({ code: 0, said: "" });
    expect(readFileSync(db(), "utf8")).toBe("v2");
  });

  it("no record and the copy fails: the unit stops (exit 1) with how to record an unchanged image; the agent's rollback then gets through", () => {
    mkdirSync(db());
    const r = guard(NEW, "switch");
    expect(r.code).toBe(1);
    expect(r.said).toMatch(/could not copy .*db\.sqlite .*no record of the image headscale ran before.*echo sha256:b+ > '.*headscale\.image'; systemctl restart meshfleet-compose\.service/);
    expect(existsSync(join(dir, "state", "headscale.image"))).toBe(false);
    // The agent rolls the switch back: with no record and the copy failing again, headscale would stay stopped.
    const rb = guard(OLD, "rollback");
    expect(rb.code, rb.said).toBe(0);
    expect(rb.said).toMatch(/rollback to image sha256:a+ with no record of the image headscale ran: the database is kept as it is/);
    expect(readFileSync(join(dir, "state", "headscale.image"), "utf8")).toBe(`${OLD}\n`);
    // Doing what the message said lets the start through without a copy.
    writeFileSync(join(dir, "state", "headscale.image"), `${NEW}\n`);
    expect(guard(NEW, "switch")).toMatchObject({ code: 0, said: "" });
  });

  it("going back to the old image by a new switch (not the agent's rollback) takes a new copy and restores nothing", () => {
    writeFileSync(db(), "v1");
    guard(OLD, "switch");
    guard(NEW, "switch");
    writeFileSync(db(), "v2, written under the new image");
    const back = guard(OLD, "switch");
    expect(back.code, back.said).toBe(0);
    expect(back.said).toMatch(/image sha256:b+ -> sha256:a+: .* copied/);
    expect(readFileSync(db(), "utf8")).toBe("v2, written under the new image");
    // A rollback now goes to the image the last copy left (NEW), not to one before.
    writeFileSync(db(), "v3");
    const rb = guard(NEW, "rollback");
    expect(rb.said).toMatch(/put back/);
    expect(readFileSync(db(), "utf8")).toBe("v2, written under the new image");
  });

  it("a rollback to an image the last copy did not leave restores nothing", () => {
    writeFileSync(db(), "v1");
    guard(OLD, "switch");
    guard(NEW, "switch");
    writeFileSync(db(), "v2");
    const third = `sha256:${"c".repeat(64)}`;
    const r = guard(third, "rollback");
    expect(r.code, r.said).toBe(0);
    expect(r.said).not.toMatch(/put back/);
    expect(readFileSync(db(), "utf8")).toBe("v2");
  });

  it("a rollback long after the switch (meshfleet rollback days later) keeps the database as it is, with what registered since", () => {
    writeFileSync(db(), "v1");
    guard(OLD, "switch");
    guard(NEW, "switch");
    writeFileSync(db(), "a week of registrations under the new image");
    // The snapshot's record is older than the window.
    const old = new Date(Date.now() - (RESTORE_WINDOW_S + 60) * 1000);
    utimesSync(join(dir, "state", "headscale.snapshot.to"), old, old);
    const rb = guard(OLD, "rollback");
    expect(rb.code, rb.said).toBe(0);
    expect(rb.said).toMatch(/s after that switch: the database is kept as it is/);
    expect(readFileSync(db(), "utf8")).toBe("a week of registrations under the new image");
    expect(readFileSync(join(dir, "state", "headscale.image"), "utf8")).toBe(`${OLD}\n`);
    // The copy from before the switch stays, for a restore by hand.
    expect(readFileSync(join(dir, "state", "headscale.snapshot.sqlite"), "utf8")).toBe("v1");
  });

  it("Postgres names with shell characters stay text: the script quotes them (a `$` in a database name ran as an expansion)", () => {
    const script = dbGuardScript({
      container: "headscale",
      image: "x",
      database: { type: "postgres", host: "db`touch /tmp/x`", port: 5432, name: "hs$prod", user: "o'brien", sslmode: "disable", pgpass: "/etc/headscale/pgpass" },
      stateDir: join(dir, "state"),
      journal: journal(),
    });
    expect(spawnSync("/bin/sh", ["-n", "-c", script]).status).toBe(0);
    // Every place the values appear is inside single quotes (shq) or a "$pgname"/"$pghost" expansion.
    for (const raw of ["hs$prod", "db`touch /tmp/x`"]) {
      for (const line of script.split("\n").filter((l) => l.includes(raw))) expect(line, line).toMatch(/^pgname=|--host=|--dbname=/);
    }
    // pg_dump fails (a stub): the message names the database as text.
    writeFileSync(join(dir, "bin", "pg_dump"), "#!/bin/sh\nexit 1\n");
    chmodSync(join(dir, "bin", "pg_dump"), 0o755);
    mkdirSync(join(dir, "state"), { recursive: true });
    writeFileSync(join(dir, "state", "headscale.image"), `${OLD}\n`);
    const f = join(dir, "pg.sh");
    writeFileSync(f, script);
    const r = spawnSync("/bin/sh", [f], { encoding: "utf8", env: { ...process.env, PATH: `${join(dir, "bin")}:/usr/bin:/bin`, IMAGE_ID: NEW } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("pg_dump of hs$prod on db`touch /tmp/x`:5432 failed");
  });

  describe("Postgres with no record", () => {
    const script = () =>
      dbGuardScript({
        container: "headscale",
        image: "x",
        database: { type: "postgres", host: "172.16.238.1", port: 5432, name: "hs", user: "hs", sslmode: "disable", pgpass: "/etc/headscale/pgpass" },
        stateDir: join(dir, "state"),
        journal: journal(),
      });
    const pgDump = (body: string) => {
      writeFileSync(join(dir, "bin", "pg_dump"), `#!/bin/sh\n${body}\n`);
      chmodSync(join(dir, "bin", "pg_dump"), 0o755);
    };
    // The stub writes what it was asked to dump into --file=.
    const dumps = 'for a; do case "$a" in --file=*) f="${a#--file=}";; esac; done\necho "dump of $* with PGCONNECT_TIMEOUT=$PGCONNECT_TIMEOUT" > "$f"';
    const run = (id: string, network: string) => {
      const f = join(dir, "pg.sh");
      writeFileSync(f, script());
      return spawnSync("/bin/sh", [f], { encoding: "utf8", env: { ...process.env, PATH: `${join(dir, "bin")}:/usr/bin:/bin`, IMAGE_ID: id, NETWORK_ID: network } });
    };

    it("a start with the compose network there (a host deployed before the guard): pg_dump into a file of its own", () => {
      pgDump(dumps);
      const r = run(NEW, "net1");
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/no record of the image headscale ran before this start .*Postgres database hs dumped to .*headscale\.no-record-\d{8}T\d{6}Z\.pgdump/);
      const kept = /(headscale\.no-record-\d{8}T\d{6}Z\.pgdump)/.exec(r.stderr)![1];
      expect(readFileSync(join(dir, "state", kept), "utf8")).toContain("--dbname=hs --format=custom");
      expect(readFileSync(join(dir, "state", kept), "utf8")).toContain("PGCONNECT_TIMEOUT=15");
    });

    it("a first start (no compose network yet: the server at its gateway is not reachable from here): nothing to keep, no dump tried", () => {
      pgDump('echo "pg_dump must not run" >&2; exit 1');
      const r = run(OLD, "");
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/a first start \(no compose network yet\): nothing to keep/);
      expect(r.stderr).not.toContain("must not run");
      expect(readFileSync(join(dir, "state", "headscale.image"), "utf8")).toBe(`${OLD}\n`);
      // Recorded: a later switch whose dump fails stops the unit, as before.
      const sw = run(NEW, "net1");
      expect(sw.status).toBe(1);
      expect(sw.stderr).toMatch(/pg_dump of hs on 172\.16\.238\.1:5432 failed, so the database could not be kept; headscale's image was not switched/);
    });

    it("the network there and the dump failing (a version mismatch, bad auth): the unit stops, as for a switch", () => {
      pgDump('echo "pg_dump: error: aborting because of server version mismatch" >&2; exit 1');
      const r = run(NEW, "net1");
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/pg_dump of hs on 172\.16\.238\.1:5432 failed.*no record of the image headscale ran before/);
      expect(existsSync(join(dir, "state", "headscale.image"))).toBe(false);
    });
  });

  it("a copy that cannot be made stops the unit (exit 1) and records nothing, so the switch fails before the new image runs", () => {
    writeFileSync(db(), "v1");
    guard(OLD, "switch");
    // cp cannot copy a folder without -r (a mode would not stop root).
    rmSync(db());
    mkdirSync(db());
    const r = guard(NEW, "switch");
    expect(r.code).toBe(1);
    expect(r.said).toMatch(/could not copy .*db\.sqlite/);
    expect(readFileSync(join(dir, "state", "headscale.image"), "utf8")).toBe(`${OLD}\n`);
    expect(existsSync(join(dir, "state", "headscale.snapshot.from"))).toBe(false);
  });
});

describe("containerDatabaseOf and composeHost", () => {
  const spec = (env: Record<string, string>, extra: ContainerSpec["uploads"] = []): ContainerSpec => ({
    name: "headscale",
    image: OLD,
    ports: [],
    volumes: [{ name: "headscale-data", containerPath: "/var/lib/headscale" }],
    env,
    command: ["serve"],
    uploads: [{ source: "/etc/headscale/config.yaml", containerPath: "/etc/headscale/config.yaml", secret: false }, ...extra],
    restart: "unless-stopped",
  });
  const host = (config: string, s: ContainerSpec): HostSystem =>
    ({
      name: "vps",
      file: "hosts/x/vps.yaml",
      runtime: "docker",
      files: [
        { path: "/etc/headscale/config.yaml", content: config, mode: "0644", owner: "root", group: "root" },
        { path: "/etc/headscale/pgpass", content: "", secretRef: "headscale-postgres-pgpass", mode: "0600", owner: "root", group: "root" },
      ],
      units: [],
      probes: [],
      packages: [],
      containers: [s],
    }) as unknown as HostSystem;

  it("reads SQLite and Postgres from the config the container mounts; Postgres adds postgresql-client and the guard runs before up", () => {
    expect(containerDatabaseOf(host("database:\n  type: sqlite\n  sqlite:\n    path: /var/lib/headscale/db.sqlite\n", spec({})))).toEqual({ container: "headscale", database: { type: "sqlite", path: "/var/lib/headscale/db.sqlite" } });
    const pg = host("database:\n  type: postgres\n  postgres:\n    host: 172.16.238.1\n    port: 5432\n    name: hs\n    user: hs\n    ssl: false\n", spec({ PGPASSFILE: "/etc/headscale/pgpass" }, [{ source: "/etc/headscale/pgpass", containerPath: "/etc/headscale/pgpass", secret: true }]));
    expect(containerDatabaseOf(pg)).toEqual({ container: "headscale", database: { type: "postgres", host: "172.16.238.1", port: 5432, name: "hs", user: "hs", sslmode: "disable", pgpass: "/etc/headscale/pgpass" } });
    const out = composeHost(pg);
    expect(out.packages).toEqual(["postgresql-client"]);
    const guardFile = out.files.find((f) => f.path === COMPOSE_DB_GUARD)!;
    expect(guardFile).toMatchObject({ mode: "0700", owner: "root" });
    expect(guardFile.content).toContain("pg_dump --no-password --host=172.16.238.1 --port=5432 --username=hs --dbname=hs --format=custom");
    expect(guardFile.content).toContain(`docker image inspect --format '{{.Id}}' ${OLD}`);
    const unit = out.units.find((u) => u.name === "meshfleet-compose.service")!.content;
    const lines = unit.split("\n");
    expect(lines.indexOf(`ExecStartPre=/bin/sh ${COMPOSE_DB_GUARD}`)).toBeGreaterThan(-1);
    expect(lines.indexOf(`ExecStartPre=/bin/sh ${COMPOSE_DB_GUARD}`)).toBeLessThan(lines.findIndex((l) => l.includes("network prune")));
    // The image the container ran is recorded before the containers are removed.
    const recorder = lines.indexOf(ranImageRecorder("headscale"));
    expect(recorder).toBeGreaterThan(-1);
    expect(recorder).toBeLessThan(lines.findIndex((l) => l.startsWith("ExecStop=") && l.includes("docker rm -f")));
  });

  it("no headscale container: no guard", () => {
    const h = host("database:\n  type: sqlite\n", { ...spec({}), name: "nginx" });
    expect(containerDatabaseOf(h)).toBeNull();
    expect(composeHost(h).files.some((f) => f.path === COMPOSE_DB_GUARD)).toBe(false);
    expect(composeHost(h).units.find((u) => u.name === "meshfleet-compose.service")!.content).not.toContain("container inspect");
  });
});
