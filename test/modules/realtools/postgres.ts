/**
 * A throwaway PostgreSQL 15 cluster on loopback for tests (Debian's server
 * binaries): initdb and pg_ctl as nobody in a temp folder (PostgreSQL will
 * not run as root), a free port, trust on its own socket folder for the
 * superuser and password login (scram) over TCP for everyone else. Stopped
 * by `stop()` (pg_ctl, immediate) and removed.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "./index.ts";

export const PG_BIN = "/usr/lib/postgresql/15/bin";

/** Why a real PostgreSQL cannot run here, or "". */
export function postgresMissing(): string {
  if (!existsSync(`${PG_BIN}/postgres`) || !existsSync("/usr/bin/psql") || !existsSync("/usr/bin/pg_restore")) return "PostgreSQL 15 is not installed (apt-get install postgresql-15 postgresql-client)";
  if (spawnSync("id", ["-u"], { encoding: "utf8" }).stdout.trim() !== "0") return "a throwaway PostgreSQL runs as nobody: the test needs root";
  return "";
}

export interface TestPostgres {
  root: string;
  port: number;
  /** psql as the superuser, reading SQL on stdin: the argv as one shell command line. */
  superuserPsql: string;
  /** Runs SQL as the superuser; throws on failure. Returns stdout (unaligned, tuples only). */
  sql(sql: string, db?: string): string;
  stop(): void;
}

export async function startPostgres(prefix: string): Promise<TestPostgres> {
  const root = mkdtempSync(path.join(tmpdir(), prefix));
  chmodSync(root, 0o755);
  chownSync(root, 65534, 65534);
  const port = await freePort();
  const asNobody = (cmd: string, args: string[], input?: string) =>
    spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--", cmd, ...args], { encoding: "utf8", timeout: 60_000, input, env: { ...process.env, HOME: root } });
  const data = path.join(root, "data");
  const init = asNobody(`${PG_BIN}/initdb`, ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"]);
  if (init.status !== 0) throw new Error(`initdb: ${init.stderr}`);
  const up = asNobody(`${PG_BIN}/pg_ctl`, ["-D", data, "-l", path.join(root, "log"), "-w", "-o", `-p ${port} -k ${root} -c listen_addresses=127.0.0.1`, "start"]);
  if (up.status !== 0) throw new Error(`pg_ctl start: ${up.stderr}`);
  const psqlArgs = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", root, "-p", String(port), "-U", "postgres"];
  return {
    root,
    port,
    superuserPsql: `setpriv --reuid=65534 --regid=65534 --clear-groups -- env HOME=${root} /usr/bin/psql ${psqlArgs.join(" ")} -d postgres`,
    sql(sql, db = "postgres") {
      const r = asNobody("/usr/bin/psql", [...psqlArgs, "-At", "-d", db], sql);
      if (r.status !== 0) throw new Error(`psql: ${sql.slice(0, 200)}: ${r.stderr}`);
      return r.stdout;
    },
    stop() {
      asNobody(`${PG_BIN}/pg_ctl`, ["-D", data, "-m", "immediate", "-w", "stop"]);
      rmSync(root, { recursive: true, force: true });
    },
  };
}
