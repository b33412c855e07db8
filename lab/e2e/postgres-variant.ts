/**
 * The lab's Postgres variant: `meshfleet lab up --postgres`.
 *
 * The same fleet as hosts/lab, except that the coordinator keeps headscale's
 * database in a PostgreSQL the module runs itself
 * (headscale.database.postgres.local) and has headscale.backup on. The
 * variant's fleet is written beside the lab's state (hosts/lab copied, at
 * this instance's addresses, vps.yaml edited) and the lab stack's hostsDir
 * points at it; the variant marker (docker-variant.ts) tells `lab check
 * --drills` to run the Postgres drills on it.
 *
 * Before the deploy, the way a user would do it:
 *   - the database password goes into the stack's secret config
 *     (meshfleet:headscalePostgresPassword) on stdin, made once per stack
 *     and kept there (a second `lab up --postgres` keeps the role's password);
 *   - the VPS gets a local `file:` apt source holding Debian's postgresql and
 *     what it needs (the lab has no mirror; setup fetches the set once,
 *     lab/hosts/debs.ts), pinned above the lab root's unreachable mirror. The
 *     deploy's own prerequisites step installs postgresql from it.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sshExec } from "../hosts/index.ts";
import { ensureDebs, POSTGRES_DEBS } from "../hosts/debs.ts";
import { labTopology } from "../topology.ts";
import { COORDINATOR, FLEET_DIR } from "./fleet.ts";
import { postgresFleetDir, setLabVariant } from "./docker-variant.ts";
import { e2ePaths } from "./paths.ts";
import { runPulumi, STACK } from "./pulumi.ts";

/** The stack secret the coordinator's Postgres password is read from. */
export const PG_PASSWORD_KEY = "meshfleet:headscalePostgresPassword";
/** The local apt source on the VPS. */
export const PG_APT_DIR = "/srv/meshfleet-lab-apt";

/** hosts/lab's vps.yaml with headscale's database in a local Postgres and headscale.backup on. Pure; throws when the block it edits is gone. */
export function withPostgres(vpsYaml: string): string {
  if (!/^headscale:\n/m.test(vpsYaml)) throw new Error("vps.yaml has no `headscale:` block to put the database in Postgres in");
  return vpsYaml.replace(/^headscale:\n/m, "headscale:\n  database:\n    type: postgres\n    postgres:\n      local: true\n  backup:\n    enable: true\n    keep: 3\n");
}

export { postgresFleetDir };

/** Write the variant's fleet: hosts/lab at this instance's addresses, vps.yaml on Postgres, and record it as this instance's variant. */
export function writePostgresFleet(instance: number): { fleetDir: string; stackHostsDir: string; detail: string } {
  const dir = postgresFleetDir(instance);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const net = labTopology(instance).mgmtSubnet.replace(/\.0\/24$/, ".");
  for (const f of readdirSync(FLEET_DIR)) {
    const text = readFileSync(join(FLEET_DIR, f), "utf8").replaceAll("172.31.240.", net);
    writeFileSync(join(dir, f), f === `${COORDINATOR}.yaml` ? withPostgres(text) : text);
  }
  setLabVariant(instance, "postgres");
  return { fleetDir: dir, stackHostsDir: dir, detail: `headscale's database in a local Postgres, headscale.backup on; fleet ${dir}` };
}

/**
 * `lab up --postgres`'s step after the stack: the password in the stack's
 * secret config (unless it is set already) and the VPS's local apt source.
 */
export async function preparePostgres(instance: number, env: Record<string, string>): Promise<string> {
  const p = e2ePaths(instance);
  const has = await runPulumi(["config", "get", "--config-file", p.stackConfig, "--stack", STACK, PG_PASSWORD_KEY], { env });
  let said = "password kept in the stack's secret config";
  if (has.code !== 0) {
    // Characters a password file and SQL must both carry: a colon, a backslash, a quote.
    const password = `pg:${randomBytes(12).toString("base64url")}\\'x`;
    const set = await runPulumi(["config", "set", "--secret", "--config-file", p.stackConfig, "--stack", STACK, PG_PASSWORD_KEY], { env, input: password });
    if (set.code !== 0) throw new Error(`pulumi config set --secret ${PG_PASSWORD_KEY}: ${set.stderr.trim().split("\n").slice(-2).join(" | ")}`);
    said = `password made and set as the stack secret ${PG_PASSWORD_KEY}`;
  }
  const { dir, files } = await ensureDebs(POSTGRES_DEBS, { allowFetch: false });
  const packages = execFileSync("dpkg-scanpackages", ["--multiversion", "."], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  const on = async (cmd: string, input?: string) => {
    const r = await sshExec(COORDINATOR, cmd, { instance, input, timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`${COORDINATOR}: ${cmd.slice(0, 120)}: exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
    return r.stdout;
  };
  await on(`mkdir -p ${PG_APT_DIR}`);
  for (const f of files) await on(`base64 -d > ${PG_APT_DIR}/${f.split("/").pop()}`, readFileSync(f).toString("base64"));
  await on(`cat > ${PG_APT_DIR}/Packages && echo 'deb [trusted=yes] file:${PG_APT_DIR} ./' > /etc/apt/sources.list.d/meshfleet-lab.list`, packages);
  // The lab root still lists Debian's mirror, with the same versions: without a pin apt may pick the mirror it cannot reach.
  await on(`printf 'Package: *\\nPin: origin ""\\nPin-Priority: 990\\n' > /etc/apt/preferences.d/meshfleet-lab`);
  return `${said}; ${files.length} .deb files as a local apt source on ${COORDINATOR}`;
}
