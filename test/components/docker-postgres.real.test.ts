/**
 * The Postgres password path against the real headscale 0.29.2: the config
 * the module renders for a docker coordinator (paths moved into a temp
 * folder), no password in it or in the environment except PGPASSFILE, and
 * the password file meshfleet writes. A stand-in Postgres server on loopback
 * speaks the protocol's start (StartupMessage, then asks for a cleartext
 * password) and records the password the client sends. headscale's driver
 * must send the one in the file; without PGPASSFILE it sends none.
 */
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postgresSecretFiles } from "../../components/dockerService.ts";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import * as rt from "../modules/realtools/index.ts";
import { REPO } from "./fixtures.ts";

const HEADSCALE = rt.toolPath("headscale");
const PASSWORD = "pg:pass\\word-7f3a9c";

/** A Postgres server that only takes the first message and a password, then refuses. */
function fakePostgres(): Promise<{ server: Server; port: number; got: { user?: string; database?: string; password?: string }[] }> {
  const got: { user?: string; database?: string; password?: string }[] = [];
  const server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    let started = false;
    const seen: { user?: string; database?: string; password?: string } = {};
    got.push(seen);
    sock.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!started) {
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          if (code === 80877103) { sock.write("N"); buf = buf.subarray(len); continue; } // SSLRequest: no
          const parts = buf.subarray(8, len).toString("utf8").split("\0");
          for (let i = 0; i + 1 < parts.length; i += 2) if (parts[i] === "user") seen.user = parts[i + 1]; else if (parts[i] === "database") seen.database = parts[i + 1];
          buf = buf.subarray(len);
          started = true;
          const r = Buffer.alloc(9); r.write("R"); r.writeInt32BE(8, 1); r.writeInt32BE(3, 5); sock.write(r); // AuthenticationCleartextPassword
          continue;
        }
        if (buf.length < 5) return;
        const len = buf.readInt32BE(1);
        if (buf.length < len + 1) return;
        if (buf[0] === 0x70) seen.password = buf.subarray(5, len + 1).toString("utf8").replace(/\0$/, "");
        buf = buf.subarray(len + 1);
        const msg = Buffer.from("SFATAL\0C28P01\0Mpassword authentication failed (stand-in server)\0\0");
        const e = Buffer.alloc(5); e.write("E"); e.writeInt32BE(msg.length + 4, 1);
        sock.end(Buffer.concat([e, msg]));
        return;
      }
    });
    sock.on("error", () => undefined);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as AddressInfo).port, got })));
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    const t = setTimeout(() => p.kill("SIGKILL"), ms);
    p.on("close", () => { clearTimeout(t); resolve(out); });
  });
}

describe.skipIf(skipUnlessCi(!HEADSCALE && "headscale 0.29.2 is not built: run `meshfleet tools build`"))("headscale 0.29.2 reads the Postgres password from the file PGPASSFILE names", () => {
  let root: string;
  let pg: Awaited<ReturnType<typeof fakePostgres>>;
  let config: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    pg = await fakePostgres();
    root = mkdtempSync(join(tmpdir(), "meshfleet-pg-real-"));
    const dir = join(root, "home");
    cpSync(join(REPO, "hosts", "home"), dir, { recursive: true });
    const vps = join(dir, "vps.yaml");
    writeFileSync(vps, `${readFileSync(vps, "utf8")}headscale:\n  database:\n    type: postgres\n    postgres:\n      host: 127.0.0.1\n      port: ${pg.port}\n      name: hsdb\n      user: hsuser\n`);
    const r = await evaluateFleet(REGISTRY, dir, "home");
    if (!r.fleet) throw new Error(formatDiagnostics(r.diagnostics));
    const h = r.fleet.hosts.vps;
    const spec = h.containers.find((c) => c.name === "headscale")!;
    // The container's paths, moved under the temp folder.
    const moved = (s: string) => s.replaceAll("/etc/headscale", join(root, "etc")).replaceAll("/var/lib/headscale", join(root, "lib")).replaceAll("/var/run/headscale", join(root, "run"));
    for (const d of ["etc", "lib", "run"]) mkdirSync(join(root, d));
    const cfg = h.files.find((f) => f.path.endsWith("/config.yaml"))!.content;
    config = join(root, "etc", "config.yaml");
    writeFileSync(config, moved(cfg));
    writeFileSync(join(root, "etc", "policy.hujson"), h.files.find((f) => f.path.endsWith("/policy.hujson"))!.content);
    for (const f of h.files.filter((x) => x.path.endsWith("derp.yaml"))) writeFileSync(join(root, "etc", "derp.yaml"), f.content);
    writeFileSync(join(root, "etc", "pgpass"), postgresSecretFiles(PASSWORD)["headscale-postgres-pgpass"], { mode: 0o600 });
    env = Object.fromEntries(Object.entries(spec.env).map(([k, v]) => [k, moved(v)]));
  });
  afterAll(() => {
    pg?.server.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("sends the password from the file, with nothing but the file's path in its environment", async () => {
    expect(Object.keys(env)).toEqual(["PGPASSFILE"]);
    expect(readFileSync(config, "utf8")).not.toMatch(/pass:/);
    const out = await run(HEADSCALE!, ["-c", config, "configtest"], { PATH: process.env.PATH ?? "", HOME: root, ...env }, 20_000);
    const tried = pg.got.filter((g) => g.user !== undefined);
    expect(tried.length, out.slice(-2000)).toBeGreaterThan(0);
    expect(tried[0]).toEqual({ user: "hsuser", database: "hsdb", password: PASSWORD });
  }, 30_000);

  it("sends no password without PGPASSFILE (what the container had before)", async () => {
    pg.got.length = 0;
    const out = await run(HEADSCALE!, ["-c", config, "configtest"], { PATH: process.env.PATH ?? "", HOME: root }, 20_000);
    const tried = pg.got.filter((g) => g.user !== undefined);
    expect(tried.length, out.slice(-2000)).toBeGreaterThan(0);
    expect(tried.every((g) => g.password === undefined || g.password === ""), JSON.stringify(tried)).toBe(true);
  }, 30_000);
});
