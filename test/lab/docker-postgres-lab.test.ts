/**
 * The docker variant on PostgreSQL (issues 20 item 3 and 15 item 6;
 * MESHFLEET_LAB_E2E=1, root, tools built, the docker layer and the postgresql
 * .deb files made by setup; in CI a missing prerequisite fails, never skips).
 * Lab instance 2.
 *
 * `lab up --docker` with the VPS's headscale container on
 * `headscale.database.type: postgres`. The PostgreSQL is Debian's, on the VPS
 * host itself (the lab's cached .debs, through a local apt source as the
 * Postgres lab does), run by hand as a user would run their own server: it
 * listens beyond loopback, pg_hba lets the compose network in by password,
 * and the fleet opens 5432 to that network only (firewall.sources). headscale
 * reaches it at the compose network's gateway. The password goes only into
 * the stack's secret config (meshfleet:headscalePostgresPassword); meshfleet
 * writes it to a 0600 root file the container mounts read-only as PGPASSFILE.
 *
 *   - headscale in docker runs on that PostgreSQL: every lab node registers,
 *     the nodes table holds them;
 *   - `docker inspect` of every container and image holds neither the
 *     password nor the host's other secrets;
 *   - an image upgrade whose health check fails, after it changed the
 *     database (it deletes a node), is rolled back by the agent, and the
 *     compose unit's guard puts the database back from the pg_dump it took
 *     before the switch: the same nodes with the same addresses.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labDeploy } from "../../lab/e2e/checks.ts";
import { TLS_DIR, VARIANT_CONTAINERS, variantFleetDir } from "../../lab/e2e/docker-variant.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { keptSecret, labPulumiEnv, runPulumi } from "../../lab/e2e/pulumi.ts";
import { labUp, type UpSummary } from "../../lab/e2e/up.ts";
import { dockerLayerDir, dockerLayerIsCurrent } from "../../lab/hosts/docker.ts";
import { ensureDebs, POSTGRES_DEBS, SETUP_FIX } from "../../lab/hosts/debs.ts";
import { labTopology } from "../../lab/topology.ts";
import { COMPOSE_DB_GUARD_DIR } from "../../components/dockerService.ts";
import { DOCKER_HOST_DIR } from "../../modules/headscale.ts";
import { AUTH_KEY_FILE } from "../../modules/tailscale.ts";
import { NEEDS_ROOT, skipUnlessCi } from "./ci-gate.ts";
import { labOn } from "./harness.ts";

const INSTANCE = 2;
const p = e2ePaths(INSTANCE);
const real = process.env.MESHFLEET_LAB_E2E === "1" && process.getuid?.() === 0;
const log = (l: string) => process.stderr.write(`[docker-postgres] ${l}\n`);
const on = labOn(INSTANCE);
const APT = "/srv/meshfleet-lab-apt";
/** The compose network (headscale.dockerSubnet's default) and its gateway, where the host's PostgreSQL is reached. */
const SUBNET = "172.16.238.0/24";
const GATEWAY = "172.16.238.1";
// A colon and a backslash (escaped in the password file), a quote (doubled for SQL here).
const PASSWORD = `pg:${randomBytes(12).toString("base64url")}\\'x`;
const timings: Record<string, number> = {};

const psql = (sql: string, db = "postgres") => on("vps", `runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d ${db}`, { input: sql });
type Row = { id: number; name: string; ip_addresses: string[] };
const nodes = async () => ((JSON.parse((await on("vps", "docker exec headscale headscale nodes list -o json")) || "null") ?? []) as Row[]).map((n) => ({ id: n.id, name: n.name, ips: n.ip_addresses })).sort((a, b) => a.id - b.id);

const gate = !real
  ? process.getuid?.() !== 0
    ? NEEDS_ROOT
    : "the lab tests run with MESHFLEET_LAB_E2E=1 (.ci/run sets it)"
  : !dockerLayerIsCurrent()
    ? `the lab's docker layer is not made (${dockerLayerDir()}): ${SETUP_FIX}`
    : false;

/** The variant's VPS file with headscale on the host's PostgreSQL, 5432 open to the compose network only. */
function onPostgres(text: string): string {
  expect(text).toMatch(/^headscale:\n/m);
  expect(text).not.toMatch(/^firewall:/m);
  return (
    text.replace(/^headscale:\n/m, `headscale:\n  database:\n    type: postgres\n    postgres:\n      host: ${GATEWAY}\n      port: 5432\n`) +
    `firewall:\n  sources:\n    ${SUBNET}:\n      allowedTCPPorts: [5432]\n`
  );
}

describe.skipIf(skipUnlessCi(gate))(`lab up --docker on PostgreSQL, instance ${INSTANCE}`, () => {
  let up: UpSummary;
  const vpsFile = () => join(variantFleetDir(INSTANCE), "vps.yaml");

  beforeAll(async () => {
    await labDown({ instance: INSTANCE, log });
    const { dir, files } = await ensureDebs(POSTGRES_DEBS, { allowFetch: false });
    const packages = execFileSync("dpkg-scanpackages", ["--multiversion", "."], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const t = Date.now();
    up = await labUp({
      instance: INSTANCE,
      log,
      docker: true,
      noBuild: true,
      beforeDeploy: async () => {
        const set = await runPulumi(["config", "set", "--secret", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:headscalePostgresPassword"], { env: labPulumiEnv(INSTANCE), input: PASSWORD });
        if (set.code !== 0) throw new Error(`pulumi config set --secret meshfleet:headscalePostgresPassword: ${set.stderr}`);
        // The user's own PostgreSQL on the docker host: Debian's, from a local apt source (the lab has no mirror).
        await on("vps", `mkdir -p ${APT}`);
        for (const f of files) await on("vps", `base64 -d > ${APT}/${f.split("/").pop()}`, { input: readFileSync(f).toString("base64"), timeoutMs: 120_000 });
        await on("vps", `cat > ${APT}/Packages && echo 'deb [trusted=yes] file:${APT} ./' > /etc/apt/sources.list.d/meshfleet-lab.list`, { input: packages });
        await on("vps", `printf 'Package: *\\nPin: origin ""\\nPin-Priority: 990\\n' > /etc/apt/preferences.d/meshfleet-lab`);
        // The docker host's systemd (cgroup v1 bound in from the machine) refuses a forking service's
        // PID file ("New main PID does not belong to service"), which pg_ctlcluster's unit relies on:
        // here postgres runs in the foreground and tells systemd when it is ready.
        await on("vps", "mkdir -p /etc/systemd/system/postgresql@.service.d && cat > /etc/systemd/system/postgresql@.service.d/lab-docker-host.conf && systemctl daemon-reload", {
          input: [
            "[Service]",
            "Type=notify",
            "User=postgres",
            "Group=postgres",
            "PIDFile=",
            "RuntimeDirectory=postgresql",
            "RuntimeDirectoryPreserve=yes",
            "ExecStart=",
            "ExecStart=/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main -c config_file=/etc/postgresql/15/main/postgresql.conf",
            "ExecStop=",
            "ExecReload=",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "",
          ].join("\n"),
        });
        await on("vps", "apt-get update -o Dir::Etc::sourcelist=sources.list.d/meshfleet-lab.list -o Dir::Etc::sourceparts=- >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql postgresql-client >/dev/null", { timeoutMs: 600_000 });
        const v = (await on("vps", "ls /etc/postgresql")).trim().split("\n")[0];
        await on("vps", `echo "listen_addresses = '*'" > /etc/postgresql/${v}/main/conf.d/meshfleet-lab.conf && printf 'host headscale headscale ${SUBNET} scram-sha-256\\nhost headscale headscale samehost scram-sha-256\\n' >> /etc/postgresql/${v}/main/pg_hba.conf && systemctl restart postgresql`, { timeoutMs: 120_000 });
        await psql(`CREATE ROLE headscale LOGIN PASSWORD '${PASSWORD.replace(/'/g, "''")}';\nCREATE DATABASE headscale OWNER headscale;\n`);
        writeFileSync(vpsFile(), onPostgres(readFileSync(vpsFile(), "utf8")));
      },
    });
    timings.labUp = Date.now() - t;
    if (!up.ok) {
      // The compose unit's own words (the db guard's among them), which the agent's error does not carry.
      let journal: string;
      try {
        journal = await on("vps", "journalctl -u meshfleet-compose.service --no-pager -o cat | tail -n 40");
      } catch (e) {
        journal = `(not read: ${(e as Error).message})`;
      }
      throw new Error(`lab up --docker --instance ${INSTANCE}: ${up.failedStep}: ${up.error}\nmeshfleet-compose.service's journal:\n${journal}`);
    }
  }, 30 * 60_000);

  afterAll(async () => {
    if (!real) return;
    console.log(`[docker-postgres] timings (ms): ${JSON.stringify(timings)}`);
    await labDown({ instance: INSTANCE, log });
    const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").filter((l) => l.startsWith(labTopology(INSTANCE).prefix));
    expect(left).toEqual([]);
  }, 10 * 60_000);

  it("headscale in docker runs on the host's PostgreSQL: every lab node registers, the nodes table holds them", async () => {
    expect(up.ok, `${up.failedStep}: ${up.error}`).toBe(true);
    expect(await on("vps", `grep -A1 '^database:' ${DOCKER_HOST_DIR}/config.yaml`)).toBe("database:\n  type: postgres\n");
    expect(await on("vps", "docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' headscale")).toMatch(/^PGPASSFILE=\/etc\/headscale\/pgpass$/m);
    // The host's file the container mounts read-only at that path.
    expect(await on("vps", "docker inspect --format '{{range .Mounts}}{{println .Source .Destination .RW}}{{end}}' headscale")).toContain(`${DOCKER_HOST_DIR}/pgpass /etc/headscale/pgpass false\n`);
    expect(await on("vps", `stat -c '%a %U' ${DOCKER_HOST_DIR}/pgpass`)).toBe("600 root\n");
    const ns = await nodes();
    expect(ns.map((n) => n.name).sort()).toEqual(["laptop", "lxc-tailscale", "vps"]);
    expect(await psql("SELECT count(*) FROM nodes", "headscale")).toBe(`${ns.length}\n`);
    // The SQLite file is not what headscale uses.
    expect((await on("vps", "ls /var/lib/headscale")).split("\n")).not.toContain("db.sqlite");
  });

  it("docker inspect of every container and image holds neither the Postgres password nor the host's other secrets", async () => {
    const secrets: Record<string, string> = { "Postgres password": PASSWORD, "Postgres password file line": (await on("vps", `cat ${DOCKER_HOST_DIR}/pgpass`)).trim() };
    expect(secrets["Postgres password file line"]).toContain(PASSWORD.slice(3, 15));
    const read = async (host: string, path: string) => (await on(host, `cat ${path}`)).trim();
    secrets["headscale Noise key"] = await read("vps", "/var/lib/headscale/noise_private.key");
    secrets["derper key"] = await read("vps", "/var/lib/derper/derper.key");
    secrets["nginx TLS key"] = await read("vps", `${TLS_DIR}/privkey.pem`);
    for (const h of ["laptop", "lxc-tailscale", "vps"]) secrets[`pre-auth key of ${h}`] = await read(h, AUTH_KEY_FILE);
    secrets["key seed"] = keptSecret(p.keySeed);
    for (const [what, v] of Object.entries(secrets)) expect(v.length, `${what} is empty, so its absence would prove nothing`).toBeGreaterThan(20);
    const names = VARIANT_CONTAINERS.join(" ");
    const inspect = await on("vps", `docker inspect ${names} && docker image inspect $(docker inspect --format '{{.Image}}' ${names})`);
    const leaks: string[] = [];
    for (const [what, v] of Object.entries(secrets)) {
      const parts = [v, v.replace(/^\w+:/, ""), PASSWORD.slice(3, 15), ...v.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----"))];
      if (parts.some((x) => inspect.includes(x))) leaks.push(what);
    }
    expect(leaks).toEqual([]);
    // Not on a command line either (the container's processes show in the host's ps).
    expect(await on("vps", "ps -eo args")).not.toContain(PASSWORD.slice(3, 15));
  });

  it("an image upgrade that changes the database and fails its health check: the agent rolls back and the database is the one from before", async () => {
    const before = await nodes();
    expect(before.length).toBe(3);
    const old = (await on("vps", "docker inspect --format '{{.Image}}' headscale")).trim();
    // A release that deletes a node once it serves, then fails its health check: built on the lab's Debian base around the real binary.
    const wrapper = [
      "#!/bin/sh",
      "real=/usr/local/bin/headscale-real",
      "case \"$1\" in",
      "serve)",
      "  \"$real\" \"$@\" & pid=$!",
      "  for i in $(seq 60); do \"$real\" nodes list >/dev/null 2>&1 && break; sleep 1; done",
      "  id=$(\"$real\" nodes list -o json | grep -o '\"id\": *[0-9]*' | head -n 1 | grep -o '[0-9]*$')",
      "  \"$real\" nodes delete -i \"$id\" --force >/dev/null 2>&1 && echo \"$id\" > /var/lib/headscale/drill-deleted-node",
      "  wait $pid;;",
      "health) echo 'this release fails its health check' >&2; exit 1;;",
      "*) exec \"$real\" \"$@\";;",
      "esac",
      "",
    ].join("\n");
    const dockerfile = [
      "FROM meshfleet-lab/debian:bookworm",
      "COPY --from=meshfleet-lab/headscale:drill-real /usr/local/bin/headscale /usr/local/bin/headscale-real",
      "COPY headscale /usr/local/bin/headscale",
      "RUN chmod 755 /usr/local/bin/headscale && mkdir -p /etc/headscale /var/lib/headscale /run/headscale && chmod 700 /var/lib/headscale",
      'ENTRYPOINT ["/usr/local/bin/headscale"]',
      "",
    ].join("\n");
    await on("vps", `docker tag ${old} meshfleet-lab/headscale:drill-real`);
    const ctx = "/root/drill-image";
    await on("vps", `rm -rf ${ctx} && mkdir -p ${ctx} && cat > ${ctx}/headscale`, { input: wrapper });
    await on("vps", `cat > ${ctx}/Dockerfile`, { input: dockerfile });
    const bad = (await on("vps", `DOCKER_BUILDKIT=0 docker build -q ${ctx}`, { timeoutMs: 300_000 })).trim().split("\n").pop()!;
    expect(bad).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(bad).not.toBe(old);

    const good = readFileSync(vpsFile(), "utf8");
    expect(good).toContain(`  image: ${old}\n`);
    writeFileSync(vpsFile(), good.replace(`  image: ${old}\n`, `  image: ${bad}\n`));
    const since = (await on("vps", "date '+%Y-%m-%d %H:%M:%S'")).trim();
    try {
      const t = Date.now();
      const r = await labDeploy(INSTANCE, { verb: "up" });
      timings.failedUpgradeUp = Date.now() - t;
      expect(r.ok, "the upgrade whose health check fails must fail the deploy").toBe(false);
    } finally {
      writeFileSync(vpsFile(), good);
    }
    const journal = await on("vps", `journalctl -u meshfleet-compose.service --since '${since}' --no-pager -o cat`);
    log(journal.split("\n").filter((l) => l.includes("db guard")).join("\n"));
    // The guard dumped the database before the switch, and restored it when the agent rolled back.
    expect(journal).toMatch(new RegExp(`image ${old} -> ${bad}: Postgres database headscale dumped`));
    expect(journal).toMatch(new RegExp(`rollback from image ${bad} to ${old}: Postgres database headscale restored`));
    // The failed release did change the database: it deleted a node.
    const deleted = (await on("vps", "cat /var/lib/headscale/drill-deleted-node")).trim();
    expect(before.map((n) => String(n.id))).toContain(deleted);
    // Back: the old image, the same nodes with the same addresses, in PostgreSQL.
    expect((await on("vps", "docker inspect --format '{{.Image}}' headscale")).trim()).toBe(old);
    expect(await nodes()).toEqual(before);
    expect(await psql("SELECT count(*) FROM nodes", "headscale")).toBe(`${before.length}\n`);
    expect(await on("vps", `stat -c '%a %U' ${COMPOSE_DB_GUARD_DIR} ${COMPOSE_DB_GUARD_DIR}/headscale.snapshot.pgdump`)).toBe("700 root\n600 root\n");
    // The fleet as it was deploys cleanly again.
    const again = await labDeploy(INSTANCE, { verb: "up" });
    expect(again.ok, again.errors.join("\n")).toBe(true);
    expect(await nodes()).toEqual(before);
  }, 20 * 60_000);
});
