/**
 * The lab's docker variant end to end (issue 20; MESHFLEET_LAB_E2E=1, root,
 * tools built, the docker layer and the nginx .deb files made by setup; in CI
 * a missing prerequisite fails, never skips). Lab instance 2.
 *
 *   - `lab up --docker` from nothing: the VPS boots as a docker host, its
 *     images are built on it (Debian base from the lab root, nginx from
 *     Debian's package, headscale and derper from the built binaries), and
 *     the lab's own deploy path (`meshfleet up` through Pulumi) switches it
 *     to headscale, nginx and derper in containers; agent verify is clean and
 *     TLS to the server URL verifies from the laptop (cold time);
 *   - a second `meshfleet up` changes nothing, nor does a second
 *     `lab up --docker` (its images are kept, so the ids stay) (warm times);
 *   - `docker inspect` of each container and its image holds none of the
 *     host's secrets (Noise and DERP keys, derper's key, nginx's TLS key,
 *     the nodes' pre-auth keys, the stack's key seed), which sit on the host
 *     as 0600 files;
 *   - `lab check` runs its whole list against the variant and passes.
 */
import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labDeploy, labChecks } from "../../lab/e2e/checks.ts";
import { labVariant, TLS_DIR, VARIANT_CONTAINERS } from "../../lab/e2e/docker-variant.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths } from "../../lab/e2e/paths.ts";
import { keptSecret } from "../../lab/e2e/pulumi.ts";
import { labUp, type UpSummary } from "../../lab/e2e/up.ts";
import { sshExec } from "../../lab/hosts/index.ts";
import { dockerLayerDir, dockerLayerIsCurrent } from "../../lab/hosts/docker.ts";
import { SETUP_FIX } from "../../lab/hosts/debs.ts";
import { labTopology } from "../../lab/topology.ts";
import { AUTH_KEY_FILE } from "../../modules/tailscale.ts";
import { NEEDS_ROOT, skipUnlessCi } from "./ci-gate.ts";

const INSTANCE = 2;
const real = process.env.MESHFLEET_LAB_E2E === "1" && process.getuid?.() === 0;
const log = (l: string) => process.stderr.write(`[docker-variant] ${l}\n`);
const timings: Record<string, number> = {};

async function on(host: string, cmd: string): Promise<string> {
  const r = await sshExec(host, cmd, { instance: INSTANCE, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${host}: ${cmd.slice(0, 160)}: exit ${r.code}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

const gate = !real
  ? process.getuid?.() !== 0
    ? NEEDS_ROOT
    : "the lab tests run with MESHFLEET_LAB_E2E=1 (.ci/run sets it)"
  : !dockerLayerIsCurrent()
    ? `the lab's docker layer is not made (${dockerLayerDir()}): ${SETUP_FIX}`
    : false;

describe.skipIf(skipUnlessCi(gate))(`lab up --docker on instance ${INSTANCE}`, () => {
  let up: UpSummary;

  beforeAll(async () => {
    await labDown({ instance: INSTANCE, log });
    const t = Date.now();
    up = await labUp({ instance: INSTANCE, log, docker: true, noBuild: true });
    timings.coldLabUp = Date.now() - t;
    timings.coldMeshfleetUp = up.deploy?.ms ?? -1;
  }, 20 * 60_000);

  afterAll(async () => {
    if (!real) return;
    console.log(`[docker-variant] timings (ms): ${JSON.stringify(timings)}`);
    await labDown({ instance: INSTANCE, log });
    const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").filter((l) => l.startsWith(labTopology(INSTANCE).prefix));
    expect(left).toEqual([]);
  }, 10 * 60_000);

  it("deploys through meshfleet up to a VPS running headscale, nginx and derper in docker, pinned by image id", async () => {
    expect(up.ok, `${up.failedStep}: ${up.error}`).toBe(true);
    expect(labVariant(INSTANCE)).toBe("docker");
    expect(up.drift?.every((d) => d.ok)).toBe(true);
    const ps = (await on("vps", "docker ps --format '{{.Names}} {{.Image}}'")).trim().split("\n").sort();
    expect(ps.map((l) => l.split(" ")[0])).toEqual([...VARIANT_CONTAINERS].sort());
    // Pinned by id: the compose file names `sha256:…` and each container runs exactly that image.
    const compose = JSON.parse(await on("vps", "cat /etc/meshfleet/compose/docker-compose.yml")) as { services: Record<string, { image: string }> };
    for (const c of VARIANT_CONTAINERS) {
      expect(compose.services[c]!.image).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect((await on("vps", `docker inspect --format '{{.Image}}' ${c}`)).trim()).toBe(compose.services[c]!.image);
    }
    // Nothing runs headscale, nginx or derper on the host itself.
    expect((await sshExec("vps", "systemctl is-active headscale nginx derper caddy", { instance: INSTANCE })).stdout).not.toMatch(/^active$/m);
    // nginx is Debian's package.
    expect((await sshExec("vps", "docker exec nginx dpkg-query -W nginx", { instance: INSTANCE })).stdout).toMatch(/^nginx\t1\.22\./);
  });

  it("a second meshfleet up changes nothing", async () => {
    const t = Date.now();
    const r = await labDeploy(INSTANCE, { verb: "up" });
    timings.warmMeshfleetUp = Date.now() - t;
    expect(r.ok, r.errors.join("\n")).toBe(true);
    const changed = Object.entries(r.changes).filter(([k, n]) => k !== "same" && n > 0);
    expect(changed).toEqual([]);
    // The whole `lab up --docker` again, hosts running: the images are kept (same ids), so its deploy changes nothing either.
    const t2 = Date.now();
    const again = await labUp({ instance: INSTANCE, log, docker: true, noBuild: true });
    timings.warmLabUp = Date.now() - t2;
    timings.warmLabUpMeshfleetUp = again.deploy?.ms ?? -1;
    expect(again.ok, `${again.failedStep}: ${again.error}`).toBe(true);
    expect(Object.entries(again.deploy!.changes).filter(([k, n]) => k !== "same" && n > 0)).toEqual([]);
  }, 10 * 60_000);

  it("docker inspect of each container and its image shows no secret; the secrets are 0600 files on the host", async () => {
    const secrets: Record<string, string> = {};
    const read = async (host: string, path: string) => (await on(host, `cat ${path}`)).trim();
    // The lab's relay is derper (its own key); headscale's embedded relay and its key are off.
    secrets["headscale Noise key"] = await read("vps", "/var/lib/headscale/noise_private.key");
    secrets["derper key"] = await read("vps", "/var/lib/derper/derper.key");
    secrets["nginx TLS key"] = await read("vps", `${TLS_DIR}/privkey.pem`);
    for (const h of ["laptop", "lxc-tailscale", "vps"]) secrets[`pre-auth key of ${h}`] = await read(h, AUTH_KEY_FILE);
    secrets["key seed"] = keptSecret(e2ePaths(INSTANCE).keySeed);
    for (const [what, v] of Object.entries(secrets)) expect(v.length, `${what} is empty, so its absence would prove nothing`).toBeGreaterThan(20);

    for (const [path, owner] of [["/var/lib/headscale/noise_private.key", "headscale"], ["/var/lib/derper/derper.key", "root"], [`${TLS_DIR}/privkey.pem`, "root"], [AUTH_KEY_FILE, "root"]] as const) {
      expect((await on("vps", `stat -c '%a %U' ${path}`)).trim()).toBe(`600 ${owner}`);
    }
    // The volumes' folders (headscale's database, derper's certificates) are root's alone.
    expect((await on("vps", "stat -c '%a %U' /var/lib/headscale /var/lib/derper")).trim().split("\n")).toEqual(["700 root", "700 root"]);
    const inspect = await on("vps", `docker inspect ${VARIANT_CONTAINERS.join(" ")} && docker image inspect $(docker inspect --format '{{.Image}}' ${VARIANT_CONTAINERS.join(" ")})`);
    expect(JSON.parse(inspect.slice(0, inspect.indexOf("\n]\n") + 2))).toHaveLength(VARIANT_CONTAINERS.length);
    const leaks: string[] = [];
    for (const [what, v] of Object.entries(secrets)) {
      // The whole value, and its body without a prefix or PEM armour.
      const parts = [v, v.replace(/^\w+:/, ""), ...v.split("\n").filter((l) => l.length > 20 && !l.startsWith("-----"))];
      if (parts.some((p) => inspect.includes(p))) leaks.push(what);
    }
    expect(leaks).toEqual([]);
    expect(inspect).not.toMatch(/privkey:[0-9a-f]{64}|hskey-auth-|BEGIN (EC |)PRIVATE KEY/);
    // The keys reach headscale through its state folder, the TLS key through a read-only mount: only paths show.
    expect(inspect).toMatch(new RegExp(`"Source":\\s*"${TLS_DIR}"`));
  });

  it("lab check runs its whole list against the variant and passes", async () => {
    const t = Date.now();
    const r = await labChecks({ instance: INSTANCE, log });
    timings.labCheck = Date.now() - t;
    const failed = r.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.reason}`);
    expect(failed).toEqual([]);
    expect(r.checks.length).toBeGreaterThanOrEqual(20);
  }, 45 * 60_000);
});
