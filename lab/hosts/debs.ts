/**
 * Debian packages a lab test installs on a host with dpkg (the hosts have no
 * mirror), fetched once by setup into the lab's cache folder and reused by
 * every run: tests send no traffic beyond loopback and the lab.
 *
 * A set is what `apt-get install --no-install-recommends <packages>` would
 * add to the cached lab root (simulated against the root's dpkg status), as
 * .deb files. A stamp records the packages asked for, the lab root it was
 * resolved against (its madeAt) and the files; a remade root or a changed
 * list fetches the set again, anything else does nothing.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LabError, run } from "./exec.ts";
import { labCacheDir, rootfsDir } from "./paths.ts";
import { readMarker, withLock } from "./rootfs.ts";

export interface DebSet {
  /** Folder name under the lab cache. */
  name: string;
  /** What a test asks for; their dependencies missing from the lab root come along. */
  packages: readonly string[];
}

/** test/lab/acme-lab.test.ts: Debian's nginx and certbot for the VPS. */
export const ACME_DEBS: DebSet = { name: "debs-bookworm-acme", packages: ["nginx", "certbot"] };

/** test/cli/fleet-lab.test.ts: sqlite3 (the backup's), installed by the deploy's prerequisites from a local apt source. */
export const PREREQ_DEBS: DebSet = { name: "debs-bookworm-prereq", packages: ["sqlite3"] };

/** test/lab/postgres-lab.test.ts: Debian's PostgreSQL for headscale.database.postgres.local, installed by the deploy's prerequisites from a local apt source. */
export const POSTGRES_DEBS: DebSet = { name: "debs-bookworm-postgres", packages: ["postgresql", "postgresql-client"] };

/** Every set setup fetches. */
export const DEB_SETS: readonly DebSet[] = [ACME_DEBS, PREREQ_DEBS, POSTGRES_DEBS];

const STAMP = ".meshfleet-debs.json";

export interface DebStamp {
  format: 1;
  packages: string[];
  /** The lab root's madeAt: the set is resolved against that root's dpkg status. */
  base: string;
  /** The .deb files fetched. */
  files?: string[];
  madeAt?: string;
  fetchMs?: number;
}

export function debsDir(set: DebSet): string {
  return join(labCacheDir(), set.name);
}

export function wantedDebStamp(set: DebSet, base = readMarker(rootfsDir())?.madeAt ?? ""): DebStamp {
  return { format: 1, packages: [...set.packages].sort(), base };
}

/** The cached .deb files of `set`, or undefined when the cache is missing, stale or incomplete. */
export function cachedDebs(set: DebSet, dir = debsDir(set)): string[] | undefined {
  let s: DebStamp;
  try {
    s = JSON.parse(readFileSync(join(dir, STAMP), "utf8")) as DebStamp;
  } catch {
    return undefined;
  }
  const w = wantedDebStamp(set);
  if (s.format !== w.format || s.base !== w.base || !w.base || JSON.stringify(s.packages) !== JSON.stringify(w.packages)) return undefined;
  const files = s.files ?? [];
  if (files.length === 0 || !files.every((f) => existsSync(join(dir, f)))) return undefined;
  return files.map((f) => join(dir, f));
}

/** Package names apt-get's simulation (`apt-get -s install`) would install, in its order. */
export function simulatedInstalls(aptSimulation: string): string[] {
  return [...aptSimulation.matchAll(/^Inst (\S+)/gm)].map((m) => m[1]!);
}

/** CI set, or MESHFLEET_REQUIRE_TOOLS: a missing cache is an error there, never a fetch during a test. */
export function strictEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI !== undefined && env.CI !== "" && env.CI !== "false" && env.CI !== "0";
  return ci || !!env.MESHFLEET_REQUIRE_TOOLS;
}

export const SETUP_FIX = "run `bash scripts/setup.sh` as root (it fetches the lab's cached pieces once)";

/**
 * Fetch `set` into the lab cache unless it is already there. With
 * `allowFetch` false (the default in CI) a missing set is an error naming
 * setup; setup passes true.
 */
export async function ensureDebs(
  set: DebSet,
  opts: { log?: (msg: string) => void; allowFetch?: boolean } = {},
): Promise<{ dir: string; files: string[]; made: boolean; fetchMs?: number }> {
  const dir = debsDir(set);
  const have = cachedDebs(set, dir);
  if (have) return { dir, files: have, made: false };
  if (!(opts.allowFetch ?? !strictEnv())) throw new LabError(`lab debs ${set.name}: ${set.packages.join(", ")} are not cached in ${dir}; ${SETUP_FIX}`);
  const status = join(rootfsDir(), "var/lib/dpkg/status");
  if (!readMarker(rootfsDir()) || !existsSync(status)) throw new LabError(`lab debs ${set.name}: the lab root ${rootfsDir()} is not made yet; make it first (${SETUP_FIX})`);
  return withLock(`${dir}.lock`, `lab debs ${set.name}`, async () => {
    const again = cachedDebs(set, dir);
    if (again) return { dir, files: again, made: false };
    const t0 = Date.now();
    const sim = await run(["apt-get", "-s", "-o", `Dir::State::status=${status}`, "install", "--no-install-recommends", ...set.packages]);
    const pkgs = simulatedInstalls(sim.stdout);
    if (pkgs.length === 0) throw new LabError(`lab debs ${set.name}: apt-get -s install ${set.packages.join(" ")} against ${status}: expected packages to install, found none`);
    opts.log?.(`apt-get download ${pkgs.length} packages (${set.packages.join(", ")} and what the lab root lacks)`);
    const partial = `${dir}.partial`;
    rmSync(partial, { recursive: true, force: true });
    mkdirSync(partial, { recursive: true });
    // apt-get download writes into the current folder.
    await run(["sh", "-c", 'cd "$1" && shift && exec apt-get download "$@"', "sh", partial, ...pkgs], { timeoutMs: 10 * 60_000 });
    const files = readdirSync(partial).filter((f) => f.endsWith(".deb")).sort();
    if (files.length !== pkgs.length) throw new LabError(`lab debs ${set.name}: expected ${pkgs.length} .deb files in ${partial}, found ${files.length}`);
    const fetchMs = Date.now() - t0;
    const stamp: DebStamp = { ...wantedDebStamp(set), files, madeAt: new Date().toISOString(), fetchMs };
    writeFileSync(join(partial, STAMP), JSON.stringify(stamp, null, 2) + "\n");
    rmSync(dir, { recursive: true, force: true });
    renameSync(partial, dir);
    return { dir, files: files.map((f) => join(dir, f)), made: true, fetchMs };
  });
}
