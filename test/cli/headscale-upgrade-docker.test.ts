/**
 * `meshfleet up`'s upgrade step with a docker coordinator. The deploy switches headscale's image,
 * and its compose unit guards the switch (components/dockerService.ts dbGuardScript; proved in
 * test/components/compose-db-guard.test.ts and test/lab/docker-postgres-lab.test.ts). The step reads
 * which release the container runs (`docker exec headscale headscale version`; a recorder here, no
 * SSH) and refuses an image of an older release, or one that skips a minor, without --force, as on
 * the systemd runtime. A fleet whose coordinator is not a docker one reads nothing.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { headscaleUpgradeStep, imageRelease, mayRunDocker, type DockerHeadscaleReader } from "../../cli/headscale-upgrade.ts";

/** The fleet.yaml of the stack whose config file is `cfg`. */
const stackHosts = (cfg: string) => path.join(dir, `hosts${/Pulumi\.s(\d+)\.yaml$/.exec(cfg)![1]}`, "fleet.yaml");

const dir = mkdtempSync(path.join(tmpdir(), "mf-upgrade-docker-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** A stack whose coordinator vps runs `runtime`; `image` undefined leaves headscale.image unset (the image follows headscaleVersion). */
function stack(o: { runtime: "docker" | "systemd"; version?: string; image?: string; binary?: boolean; viaImport?: boolean; ext?: string }): string {
  const hosts = path.join(dir, `hosts${++n}`);
  mkdirSync(hosts, { recursive: true });
  writeFileSync(path.join(hosts, "fleet.yaml"), `coordinator:\n  host: vps\n  serverUrl: https://hs.example.org\n  headscaleVersion: ${o.version ?? "0.29.2"}\nusers: [alice]\npolicy:\n  acls:\n    - action: accept\n      src: [alice@]\n      dst: [\"*:*\"]\n`);
  // viaImport: the runtime comes from a shared file the host imports, not from its own file.
  if (o.viaImport) writeFileSync(path.join(hosts, "_common.yaml"), `runtime: ${o.runtime}\n`);
  const runtime = o.viaImport ? "" : `runtime: ${o.runtime}\n`;
  writeFileSync(path.join(hosts, `vps.${o.ext ?? "yaml"}`), `imports: [coordinator${o.viaImport ? ", ./_common.yaml" : ""}]\naddress: 192.0.2.10\n${runtime}derp:\n  enable: true\n  mode: embedded\n${o.image !== undefined ? `headscale:\n  image: ${o.image}\n` : ""}`);
  const cfg = path.join(dir, `Pulumi.s${n}.yaml`);
  let config = `config:\n  meshfleet:hostsDir: ${hosts}\n`;
  if (o.binary) {
    const bin = path.join(dir, `headscale-${n}`);
    writeFileSync(bin, '#!/bin/sh\necho "headscale version v0.29.2"\n', { mode: 0o755 });
    config += `  meshfleet:headscaleBinaryPath: ${bin}\n`;
  }
  writeFileSync(cfg, config);
  return cfg;
}

/** A reader that records its calls and answers with `banner`. */
function reader(banner: string | null): DockerHeadscaleReader & { calls: string[] } {
  const calls: string[] = [];
  const f = (async (_a, host, container) => {
    calls.push(`${host.name}/${container}`);
    return banner;
  }) as DockerHeadscaleReader & { calls: string[] };
  f.calls = calls;
  return f;
}

const run = (configFile: string, read: DockerHeadscaleReader, force = false, said: string[] = []) =>
  headscaleUpgradeStep({ stack: `s${n}`, configFile, force, stateDir: path.join(dir, "state"), say: (l) => void said.push(l), readDockerHeadscale: read });

describe("headscaleUpgradeStep with a docker coordinator", () => {
  it("reads the container's release: the same one is nothing to do, a newer image goes to the deploy's guarded switch", async () => {
    const same = reader("headscale version v0.29.2");
    expect(await run(stack({ runtime: "docker", image: "headscale/headscale:0.29.2", binary: true }), same)).toMatchObject({ action: "none", detail: "runtime: docker: the coordinator runs headscale 0.29.2 already" });
    expect(same.calls).toEqual(["vps/headscale"]);
    const said: string[] = [];
    const r = await run(stack({ runtime: "docker", image: "headscale/headscale:0.29.2" }), reader("headscale version v0.29.1"), false, said);
    expect(r).toMatchObject({ action: "skipped", detail: expect.stringMatching(/^runtime: docker: headscale 0\.29\.1 -> 0\.29\.2 by the image switch; the deploy's image switch takes the database backup/) });
    expect(said.join("\n")).toMatch(/vps: headscale 0\.29\.1 -> 0\.29\.2 by the deploy's image switch/);
  });

  it("refuses an image of an older release without --force, naming headscale.image in the host file; with --force it goes ahead, said as a downgrade", async () => {
    const cfg = stack({ runtime: "docker", image: "headscale/headscale:0.29.1" });
    const err = await run(cfg, reader("headscale version v0.29.2")).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toMatch(/vps\.yaml: headscale\.image: expected 0\.29\.2 or newer \(the coordinator runs headscale 0\.29\.2\), found headscale\/headscale:0\.29\.1 \(headscale 0\.29\.1\)\./);
    expect(msg).toMatch(/migrates its database forward only/);
    expect(msg).toMatch(/Fix: set headscale\.image to an image of headscale 0\.29\.2; or, to go back anyway, restore a backup/);
    const said: string[] = [];
    expect(await run(cfg, reader("headscale version v0.29.2"), true, said)).toMatchObject({ action: "skipped", detail: expect.stringMatching(/0\.29\.2 -> 0\.29\.1 by the image switch/) });
    expect(said.join("\n")).toMatch(/a DOWNGRADE, forced/);
  });

  it("with the image following coordinator.headscaleVersion, the refusal names fleet.yaml; a jump over a minor is refused with the stages", async () => {
    const down = await run(stack({ runtime: "docker", version: "0.29.1" }), reader("headscale version v0.29.2")).catch((e: Error) => e);
    expect((down as Error).message).toMatch(/fleet\.yaml: coordinator\.headscaleVersion: expected 0\.29\.2 or newer \(the coordinator runs headscale 0\.29\.2\), found 0\.29\.1\. .*Fix: set coordinator\.headscaleVersion: 0\.29\.2/);
    const jump = await run(stack({ runtime: "docker", version: "0.29.2" }), reader("headscale version v0.27.1")).catch((e: Error) => e);
    expect((jump as Error).message).toMatch(/expected one minor release at a time from the 0\.27\.1 .*Fix: upgrade in stages, 0\.27\.1 -> /);
  });

  it("an image without a release tag, or a container it cannot read, is left to the deploy, saying so", async () => {
    const untagged = reader("headscale version v0.29.2");
    expect(await run(stack({ runtime: "docker", image: "sha256:" + "a".repeat(64) }), untagged)).toMatchObject({ action: "skipped", detail: expect.stringMatching(/names no release by its tag/) });
    expect(untagged.calls).toEqual([]);
    const said: string[] = [];
    expect(await run(stack({ runtime: "docker", image: "headscale/headscale:0.29.2" }), reader(null), false, said)).toMatchObject({ action: "skipped", detail: expect.stringMatching(/could not be read/) });
    expect(said.join("\n")).toMatch(/vps: cannot read which headscale its container runs/);
  });

  it("finds the docker runtime however the fleet sets it: from an imported file, in a .yml host file", async () => {
    const imported = await run(stack({ runtime: "docker", image: "headscale/headscale:0.29.1", viaImport: true }), reader("headscale version v0.29.2")).catch((e: Error) => e);
    expect((imported as Error).message).toMatch(/headscale\.image: expected 0\.29\.2 or newer/);
    const yml = await run(stack({ runtime: "docker", version: "0.29.1", ext: "yml", binary: true }), reader("headscale version v0.29.2")).catch((e: Error) => e);
    expect((yml as Error).message).toMatch(/coordinator\.headscaleVersion: expected 0\.29\.2 or newer/);
    // A folder whose files never say docker is not evaluated for it.
    expect(mayRunDocker(path.dirname(stackHosts(stack({ runtime: "systemd" }))))).toBe(false);
    expect(mayRunDocker(path.dirname(stackHosts(stack({ runtime: "docker", viaImport: true }))))).toBe(true);
  });

  it("a systemd coordinator reads nothing from a container", async () => {
    const r = reader("headscale version v0.29.1");
    expect(await run(stack({ runtime: "systemd" }), r)).toMatchObject({ action: "skipped", detail: expect.stringMatching(/meshfleet:headscaleBinaryPath unset/) });
    expect(r.calls).toEqual([]);
  });

  it("reads the release from an image reference's tag", () => {
    expect(imageRelease("docker.io/headscale/headscale:0.29.2")).toBe("0.29.2");
    expect(imageRelease("headscale/headscale:v0.28.0@sha256:" + "0".repeat(64))).toBe("0.28.0");
    expect(imageRelease("registry.local:5000/headscale")).toBeNull();
    expect(imageRelease("headscale/headscale:stable")).toBeNull();
  });
});
