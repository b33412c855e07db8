/**
 * `meshfleet up`'s upgrade step with a docker coordinator: the step leaves it to the deploy, whose
 * image switch is guarded by the compose unit (components/dockerService.ts dbGuardScript; proved in
 * test/components/compose-db-guard.test.ts and test/lab/docker-postgres-lab.test.ts). Before, the
 * step refused a docker coordinator whenever the stack set meshfleet:headscaleBinaryPath.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { headscaleUpgradeStep } from "../../cli/headscale-upgrade.ts";

const dir = mkdtempSync(path.join(tmpdir(), "mf-upgrade-docker-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function stack(runtime: "docker" | "systemd"): string {
  const hosts = path.join(dir, runtime);
  mkdirSync(hosts, { recursive: true });
  writeFileSync(path.join(hosts, "fleet.yaml"), "coordinator:\n  host: vps\n  serverUrl: https://hs.example.org\n  headscaleVersion: 0.29.2\nusers: [alice]\npolicy:\n  acls:\n    - action: accept\n      src: [alice@]\n      dst: [\"*:*\"]\n");
  writeFileSync(path.join(hosts, "vps.yaml"), `imports: [coordinator]\naddress: 192.0.2.10\nruntime: ${runtime}\nderp:\n  enable: true\n  mode: embedded\n${runtime === "docker" ? "headscale:\n  image: headscale/headscale:0.29.2\n" : ""}`);
  const bin = path.join(dir, `headscale-${runtime}`);
  writeFileSync(bin, '#!/bin/sh\necho "headscale version v0.29.2"\n', { mode: 0o755 });
  const cfg = path.join(dir, `Pulumi.${runtime}.yaml`);
  writeFileSync(cfg, `config:\n  meshfleet:hostsDir: ${hosts}\n  meshfleet:headscaleBinaryPath: ${bin}\n`);
  return cfg;
}

describe("headscaleUpgradeStep with a docker coordinator", () => {
  it("skips before any SSH, saying the deploy's image switch takes the backup", async () => {
    const r = await headscaleUpgradeStep({ stack: "docker", configFile: stack("docker"), force: false, stateDir: path.join(dir, "state"), say: () => {} });
    expect(r).toMatchObject({ action: "skipped", detail: expect.stringMatching(/^runtime: docker: the deploy's image switch takes the database backup/) });
  });
});
