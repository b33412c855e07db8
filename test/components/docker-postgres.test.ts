/**
 * Headscale in docker with Postgres (issue 17): the password reaches headscale
 * as a libpq password file uploaded into the container as a secret and named
 * by PGPASSFILE; the container's environment (what `docker inspect` shows)
 * holds the file's path only. headscale 0.29 builds its DSN without a
 * password when its config has none (hscontrol/db/db.go), and its driver,
 * pgx, then reads the password file PGPASSFILE names (pgconn ParseConfig).
 * The home fleet through Mesh on the mock engine, its VPS switched to
 * Postgres.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMPOSE_FILE } from "../../agent/compose.ts";
import { Mesh, validateMesh } from "../../components/index.ts";
import { postgresSecretFiles, validatePostgresPassword } from "../../components/dockerService.ts";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { installMocks, settle, valueOf, type Recorder } from "./harness.ts";
import { fakeAgentFile, fakeHeadscale, KEY_SEED, knownHostsFile, REPO, SSH_KEY } from "./fixtures.ts";

// A password with the characters a password file must escape (':' and '\').
const PASSWORD = "pg:pass\\word-7f3a9c";
const SECRET_MARK = "1b47061264138c4ac30d75fd1eb44270"; // Pulumi's secret signature in serialized inputs

let root: string;
let fleet: FleetSystem;
let rec: Recorder;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "meshfleet-pg-"));
  const dir = join(root, "home");
  cpSync(join(REPO, "hosts", "home"), dir, { recursive: true });
  const vps = join(dir, "vps.yaml");
  writeFileSync(vps, `${readFileSync(vps, "utf8")}headscale:\n  database:\n    type: postgres\n    postgres:\n      host: db.internal\n      ssl: require\n`);
  const r = await evaluateFleet(REGISTRY, dir, "home");
  if (!r.fleet) throw new Error(formatDiagnostics(r.diagnostics));
  fleet = r.fleet;
  rec = await installMocks(fakeHeadscale(fleet).respond);
  const mesh = new Mesh("home", {
    fleet,
    keySeed: pulumi.secret(KEY_SEED),
    ssh: { privateKey: pulumi.secret(SSH_KEY), knownHostsPath: knownHostsFile(fleet) },
    agent: { agentPath: fakeAgentFile() },
    headscalePostgresPassword: pulumi.secret(PASSWORD),
  });
  await valueOf(mesh.summary);
  await settle();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("headscale on docker with Postgres", () => {
  it("evaluates: no refusal, the container names the password file, the config has no password", () => {
    const vps = fleet.hosts.vps;
    const spec = vps.containers.find((c) => c.name === "headscale")!;
    expect(spec.env).toEqual({ PGPASSFILE: "/etc/headscale/pgpass" });
    expect(spec.uploads.find((u) => u.containerPath === "/etc/headscale/pgpass")).toEqual({ containerPath: "/etc/headscale/pgpass", source: "/opt/meshfleet/headscale/pgpass", secret: true });
    expect(spec.uploads.some((u) => u.containerPath.endsWith("postgres.env"))).toBe(false);
    const file = vps.files.find((f) => f.path === "/opt/meshfleet/headscale/pgpass")!;
    expect(file).toMatchObject({ mode: "0600", owner: "root", secretRef: "headscale-postgres-pgpass", content: "" });
    const config = vps.files.find((f) => f.path === "/opt/meshfleet/headscale/config.yaml")!.content;
    expect(config).toMatch(/type: postgres/);
    expect(config).toMatch(/host: db\.internal/);
    expect(config).not.toMatch(/pass:/);
  });

  it("gives the container the path in its environment and the password only in the generation's 0600 file", () => {
    const g = rec.byName("home-vps-agent-generation");
    const bundle = JSON.parse(g.inputs.bundle);
    const compose = JSON.parse(bundle.files.find((f: { path: string }) => f.path === COMPOSE_FILE).content);
    const hs = compose.services.headscale;
    expect(hs.environment).toEqual({ PGPASSFILE: "/etc/headscale/pgpass" });
    expect(hs.volumes).toContain("/opt/meshfleet/headscale/pgpass:/etc/headscale/pgpass:ro");
    expect(JSON.stringify(compose)).not.toContain("pg:pass");
    const file = bundle.files.find((f: { path: string }) => f.path === "/opt/meshfleet/headscale/pgpass");
    expect(file).toMatchObject({ mode: "0600", owner: "root", content: "*:*:*:*:pg\\:pass\\\\word-7f3a9c\n" });
    // The bundle travels as a secret.
    expect(JSON.stringify(g.raw.bundle)).toContain(SECRET_MARK);
  });

  it("is refused before anything is created when no password is given, with the config key to set", () => {
    const ssh = { knownHostsPath: knownHostsFile(fleet) };
    const f = fleet.hosts.vps.file;
    expect(validateMesh({ fleet, ssh })).toEqual([
      `${f}: headscale.database.type: postgres needs the database password. Fix: pulumi config set --secret meshfleet:headscalePostgresPassword <password>`,
      `${f}: containers[headscale].uploads[4]: /opt/meshfleet/headscale/pgpass needs secret "headscale-postgres-pgpass", which the deploy does not provide`,
      `${f}: files: host vps needs secret "headscale-postgres-pgpass", which the deploy does not provide`,
    ]);
    expect(validateMesh({ fleet, ssh, headscalePostgresPassword: "x" })).toEqual([]);
  });
});

describe("the Postgres password's file", () => {
  it("libpq's password file, escaped, for both runtimes", () => {
    expect(postgresSecretFiles("a:b\\c")).toEqual({
      "headscale-postgres-pgpass": "*:*:*:*:a\\:b\\\\c\n",
    });
  });

  it("systemd: the unit names the password file through PGPASSFILE and reads no EnvironmentFile", () => {
    const f = writeFleet({ "vps.yaml": BASE["vps.yaml"] + "headscale:\n  database:\n    type: postgres\n" });
    return evaluateFleet(REGISTRY, f.dir).then((r) => {
      f.cleanup();
      const vps = r.fleet!.hosts.vps;
      const unit = vps.units.find((u) => u.name === "headscale.service")!.content;
      expect(unit).toContain("Environment=PGPASSFILE=/etc/headscale/pgpass");
      expect(unit).not.toContain("EnvironmentFile");
      expect(vps.files.find((x) => x.path === "/etc/headscale/pgpass")).toMatchObject({ mode: "0600", owner: "headscale", secretRef: "headscale-postgres-pgpass" });
    });
  });

  it("refuses an empty password or one with a line break, without showing it", () => {
    expect(validatePostgresPassword("")).toEqual(["meshfleet:headscalePostgresPassword: expected the Postgres password, found an empty value. Fix: pulumi config set --secret meshfleet:headscalePostgresPassword"]);
    const two = validatePostgresPassword("hunter2\nExecStart=/bin/sh");
    expect(two).toEqual(["meshfleet:headscalePostgresPassword: expected a password on one line, found a line break or NUL in it (not shown). Fix: set a password without line breaks"]);
    expect(two.join("")).not.toContain("hunter2");
  });
});
