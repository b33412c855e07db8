/**
 * The lab's cached .deb sets and the docker layer's CI rule (no root, no
 * network): a set counts as cached only with its stamp matching the packages
 * and the lab root, and every file present; a cached set is reused without
 * running apt; a missing set or layer is an error naming setup where fetching
 * is not allowed (CI), never a download during a test.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ACME_DEBS, cachedDebs, DEB_SETS, debsDir, ensureDebs, simulatedInstalls, strictEnv, wantedDebStamp, type DebSet } from "../../lab/hosts/debs.ts";
import { ensureDockerLayer } from "../../lab/hosts/docker.ts";
import { rootfsDir } from "../../lab/hosts/paths.ts";

const SIM = `NOTE: This is only a simulation!
Reading package lists...
Inst libnginx-mod-http-geoip2 (1.22.1-9+deb12u11 Debian:12.12/stable [amd64])
Inst nginx-common (1.22.1-9+deb12u11 Debian:12.12/stable [all])
Inst certbot (2.1.0-4 Debian:12.12/stable [all])
Conf nginx-common (1.22.1-9+deb12u11 Debian:12.12/stable [all])
Conf certbot (2.1.0-4 Debian:12.12/stable [all])
`;

let cache = "";
const saved = { ...process.env };

function makeRoot(madeAt: string) {
  mkdirSync(rootfsDir(), { recursive: true });
  writeFileSync(path.join(rootfsDir(), ".meshfleet-rootfs.json"), JSON.stringify({ format: 1, madeAt }));
}
function makeSet(set: DebSet, files: string[], stamp = { ...wantedDebStamp(set), files }) {
  const dir = debsDir(set);
  mkdirSync(dir, { recursive: true });
  for (const f of files) writeFileSync(path.join(dir, f), "deb");
  writeFileSync(path.join(dir, ".meshfleet-debs.json"), JSON.stringify(stamp));
  return dir;
}

beforeEach(() => {
  cache = mkdtempSync(path.join(tmpdir(), "meshfleet-labcache-"));
  process.env.MESHFLEET_LAB_CACHE = cache;
  delete process.env.CI;
  delete process.env.MESHFLEET_REQUIRE_TOOLS;
});
afterEach(() => {
  for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  Object.assign(process.env, saved);
  rmSync(cache, { recursive: true, force: true });
});

describe("lab .deb cache", () => {
  it("keeps the acme lab's package list and lives under the lab cache", () => {
    expect(ACME_DEBS.packages).toEqual(["nginx", "certbot"]);
    expect(DEB_SETS).toContain(ACME_DEBS);
    expect(debsDir(ACME_DEBS)).toBe(path.join(cache, "debs-bookworm-acme"));
  });

  it("reads apt-get's simulation: the Inst lines, in order, not the Conf lines", () => {
    expect(simulatedInstalls(SIM)).toEqual(["libnginx-mod-http-geoip2", "nginx-common", "certbot"]);
    expect(simulatedInstalls("0 upgraded, 0 newly installed\n")).toEqual([]);
  });

  it("a set is cached only with a matching stamp, the same lab root and every file", () => {
    makeRoot("2026-11-30T14:44:46.570Z");
    expect(cachedDebs(ACME_DEBS)).toBeUndefined();
    const dir = makeSet(ACME_DEBS, ["a.deb", "b.deb"]);
    expect(cachedDebs(ACME_DEBS)).toEqual([path.join(dir, "a.deb"), path.join(dir, "b.deb")]);
    // Another package list under the same folder.
    expect(cachedDebs({ ...ACME_DEBS, packages: ["nginx"] })).toBeUndefined();
    // A file gone.
    rmSync(path.join(dir, "b.deb"));
    expect(cachedDebs(ACME_DEBS)).toBeUndefined();
    writeFileSync(path.join(dir, "b.deb"), "deb");
    expect(cachedDebs(ACME_DEBS)).toHaveLength(2);
    // The lab root remade: its dependencies may differ.
    makeRoot("2026-12-01T00:00:00.000Z");
    expect(cachedDebs(ACME_DEBS)).toBeUndefined();
  });

  it("a stamp without files, or without a lab root, is not a cache", () => {
    makeSet(ACME_DEBS, [], { ...wantedDebStamp(ACME_DEBS, "x"), files: [] });
    expect(cachedDebs(ACME_DEBS)).toBeUndefined();
    makeSet(ACME_DEBS, ["a.deb"], { ...wantedDebStamp(ACME_DEBS, ""), files: ["a.deb"] });
    expect(cachedDebs(ACME_DEBS)).toBeUndefined();
  });

  it("a cached set is reused without running apt", async () => {
    makeRoot("r1");
    makeSet(ACME_DEBS, ["a.deb"]);
    // Nothing can be run: any apt-get call would fail.
    process.env.PATH = path.join(cache, "empty");
    const r = await ensureDebs(ACME_DEBS, { allowFetch: true });
    expect(r).toEqual({ dir: debsDir(ACME_DEBS), files: [path.join(debsDir(ACME_DEBS), "a.deb")], made: false });
  });

  it("in CI a missing set is an error naming setup, not a fetch", async () => {
    makeRoot("r1");
    process.env.CI = "1";
    expect(strictEnv()).toBe(true);
    await expect(ensureDebs(ACME_DEBS)).rejects.toThrow(/nginx, certbot are not cached in .*debs-bookworm-acme; run `bash scripts\/setup\.sh` as root/);
    delete process.env.CI;
    expect(strictEnv()).toBe(false);
    await expect(ensureDebs(ACME_DEBS, { allowFetch: false })).rejects.toThrow(/bash scripts\/setup\.sh/);
    expect(strictEnv({ CI: "false" })).toBe(false);
    expect(strictEnv({ MESHFLEET_REQUIRE_TOOLS: "1" })).toBe(true);
  });

  it("fetching needs the lab root first", async () => {
    await expect(ensureDebs(ACME_DEBS, { allowFetch: true })).rejects.toThrow(/lab root .* is not made yet/);
  });
});

describe("lab docker layer in CI", () => {
  it("a missing layer is an error naming setup, before anything is mounted or installed", async () => {
    makeRoot("r1");
    process.env.CI = "true";
    await expect(ensureDockerLayer()).rejects.toThrow(/lab docker layer: .*layer-bookworm-docker is missing or stale .*bash scripts\/setup\.sh/);
    await expect(ensureDockerLayer(() => {}, { allowFetch: false })).rejects.toThrow(/bash scripts\/setup\.sh/);
  });
});
