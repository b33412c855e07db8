/**
 * doctor on a host whose reverse proxy gets its certificate from certbot
 * (nginx, tls auto, no certificate files of its own, systemd runtime): the
 * host needs certbot and openssl (the placeholder). Doctor's own script line
 * runs here under sh with a PATH that holds stand-in binaries, so `command -v`
 * is the real one; a Caddy host gets neither the line nor a finding.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { certbotToolFindings, doctorScript } from "../../cli/commands/doctor.ts";
import { sections, type StackAccess } from "../../cli/fleet-hosts.ts";
import { evaluateFleet, type FleetSystem } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import * as rt from "../modules/realtools/index.ts";

async function fleetWithProxy(proxy: string): Promise<FleetSystem> {
  const { dir, cleanup } = writeFleet({ ...BASE, "vps.yaml": `${BASE["vps.yaml"]}reverse-proxy:\n${proxy}` });
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    return r.fleet!;
  } finally {
    cleanup();
  }
}

/** The certbot-tools section of doctor's script for the VPS, run with only `bins` on PATH. */
function certbotSection(f: FleetSystem, bins: string[], dir: string): Record<string, string> {
  const script = doctorScript(f.hosts.vps!, { fleet: { ...f, derpRegions: [] }, config: {} } as unknown as StackAccess).split("\n");
  const at = script.indexOf("echo; echo @@mf:certbot-tools@@");
  if (at < 0) return {};
  const bin = join(dir, bins.join("-") || "none");
  mkdirSync(bin, { recursive: true });
  for (const b of bins) writeFileSync(join(bin, b), "#!/bin/sh\n", { mode: 0o755 });
  const r = spawnSync("/bin/sh", ["-c", script.slice(at, at + 2).join("\n")], { encoding: "utf8", env: { PATH: bin } });
  expect(r.status, r.stderr).toBe(0);
  return sections(r.stdout);
}

describe("doctor: certbot and openssl on a host that runs the certbot cycle", () => {
  it("missing ones fail with the apt-get line that installs them; both present is ok; Caddy or your own files: no check", async () => {
    const t = rt.tempDir("doctor-certbot");
    try {
      const nginx = await fleetWithProxy("  kind: nginx\n");
      const vps = nginx.hosts.vps!;
      expect(vps.packages).toContain("certbot");
      let fs = certbotToolFindings(vps, certbotSection(nginx, ["openssl"], t.dir));
      expect(fs).toMatchObject([{ host: "vps", check: "certbot tools", level: "fail", what: "certbot not found on the host", fixCommand: { on: "vps", command: "apt-get install -y certbot" } }]);
      fs = certbotToolFindings(vps, certbotSection(nginx, [], t.dir));
      expect(fs).toMatchObject([{ level: "fail", what: "certbot and openssl not found on the host", fixCommand: { command: "apt-get install -y certbot openssl" } }]);
      fs = certbotToolFindings(vps, certbotSection(nginx, ["certbot", "openssl"], t.dir));
      expect(fs).toEqual([{ host: "vps", check: "certbot tools", level: "ok", what: "certbot and openssl installed" }]);
      // No section read (as when the script did not run): not ok.
      expect(certbotToolFindings(vps, {})[0]!.level).toBe("fail");
      for (const other of ["  kind: caddy\n", "  kind: nginx\n  certificate: /etc/ssl/hs/fullchain.pem\n  certificateKey: /etc/ssl/hs/privkey.pem\n"]) {
        const f = await fleetWithProxy(other);
        expect(certbotSection(f, [], t.dir), other).toEqual({});
        expect(certbotToolFindings(f.hosts.vps!, {}), other).toEqual([]);
      }
    } finally {
      t.cleanup();
    }
  });
});
