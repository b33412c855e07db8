/**
 * nginx on the docker runtime gets its certificate the way a host does
 * (issue 13 item 8): certbot (Debian's package) runs on the docker host in
 * webroot mode; the nginx container serves the webroot and reads the
 * certificate links and certbot's files through bind mounts; certbot's deploy
 * hook reloads nginx inside the container (docker exec). The links exist
 * before the container starts: a placeholder unit ordered before the compose
 * unit, and pulled in by it.
 *
 * The rendered units and mounts are checked as data; the script runs for real
 * with fakes of docker and systemctl that record their calls (openssl real),
 * and the docker-rendered config passes `nginx -t` on the placeholder the
 * script made.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { COMPOSE_UNIT } from "../../agent/compose.ts";
import {
  ACME_WEBROOT,
  CERT_UNIT,
  CERTBOT_SCRIPT,
  NGINX_CONTAINER,
  PLACEHOLDER_UNIT,
  RENEW_TIMER,
  RENEW_UNIT,
  TLS_DIR,
  reverseProxyModule,
} from "../../modules/reverse-proxy.ts";
import { seed004 } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

function run(ctx: ModuleContext): Contribution {
  return reverseProxyModule.config(reverseProxyModule.options.parse(ctx.self.config["reverse-proxy"]), ctx);
}
const DOMAIN = "headscale.example.com";
const PEBBLE = { acmeDirectory: "https://203.0.113.1:14000/dir", acmeCaRoot: "/etc/meshfleet/acme-ca.pem" };
const docker = (proxy: Record<string, unknown> = {}) => run(seed004({ kind: "nginx", ...proxy }, undefined, "docker"));
const unit = (c: Contribution, name: string) => c.units!.find((u) => u.name === name)!;
const script = (c: Contribution) => c.files!.find((f) => f.path === CERTBOT_SCRIPT)!.content;

describe("nginx on the docker runtime: certbot on the docker host", () => {
  it("the container reads the links and certbot's files, and serves the webroot, through bind mounts", () => {
    const c = docker();
    const container = c.containers!.find((x) => x.name === NGINX_CONTAINER)!;
    expect(container).toBeDefined();
    expect(container.volumes).toEqual([
      { name: "/etc/letsencrypt", containerPath: "/etc/letsencrypt" },
      { name: TLS_DIR, containerPath: TLS_DIR },
      { name: ACME_WEBROOT, containerPath: ACME_WEBROOT },
    ]);
    const conf = c.files!.find((f) => f.path.endsWith("meshfleet-headscale.conf"))!.content;
    expect(conf).toContain(`ssl_certificate ${TLS_DIR}/${DOMAIN}/fullchain.pem;`);
    expect(conf).toContain(`ssl_certificate_key ${TLS_DIR}/${DOMAIN}/privkey.pem;`);
    expect(conf).toContain(`root ${ACME_WEBROOT};`);
    // certbot and openssl on the host; nginx is the image's.
    expect(c.packages).toEqual(["certbot", "openssl"]);
  });

  it("units: the placeholder before the compose unit (and wanted by it), the certificate after it, renewal on a timer", () => {
    const c = docker(PEBBLE);
    expect(c.units!.map((u) => u.name)).toEqual([PLACEHOLDER_UNIT, CERT_UNIT, RENEW_UNIT, RENEW_TIMER]);
    const ph = unit(c, PLACEHOLDER_UNIT).content;
    expect(ph).toMatch(new RegExp(`^Before=${COMPOSE_UNIT}$`, "m"));
    expect(ph).toMatch(new RegExp(`^WantedBy=${COMPOSE_UNIT}$`, "m"));
    expect(ph).toContain(`ExecStart=${CERTBOT_SCRIPT} placeholder`);
    expect(unit(c, PLACEHOLDER_UNIT).enable).toBe(true);
    for (const name of [CERT_UNIT, RENEW_UNIT]) {
      const text = unit(c, name).content;
      expect(text).toMatch(new RegExp(`^Wants=network-online.target ${COMPOSE_UNIT}$`, "m"));
      expect(text).toMatch(new RegExp(`^After=network-online.target ${COMPOSE_UNIT}$`, "m"));
      expect(text).not.toContain("nginx.service");
      expect(text).toContain(`Environment=REQUESTS_CA_BUNDLE=${PEBBLE.acmeCaRoot}`);
      expect(text).toContain(`ExecStart=${CERTBOT_SCRIPT} issue`);
    }
    // A host keeps its own: the placeholder is nginx.service's ExecStartPre there.
    const host = run(seed004({ kind: "nginx" }));
    expect(host.units!.map((u) => u.name)).toEqual(["nginx.service", CERT_UNIT, RENEW_UNIT, RENEW_TIMER]);
    expect(unit(host, CERT_UNIT).content).toMatch(/^After=network-online.target nginx.service$/m);
  });

  it("the script reloads nginx inside the container, and never through systemd's nginx.service", () => {
    const text = script(docker());
    expect(text).toContain(`docker exec ${NGINX_CONTAINER} nginx -s reload`);
    expect(text).not.toContain("nginx.service");
    expect(script(run(seed004({ kind: "nginx" })))).not.toContain("docker");
  });

  const skip = rt.missing("openssl");
  it.skipIf(skip)("the script for real: placeholder, then issue reloads (or starts the containers) before certbot asks, and deploy reloads in the container", () => {
    const t = rt.tempDir("certbot-docker");
    try {
      const live = join(t.dir, "letsencrypt/live", DOMAIN);
      const tls = join(t.dir, "tls", DOMAIN);
      const bin = join(t.dir, "bin");
      const log = join(t.dir, "calls.log");
      mkdirSync(bin, { recursive: true });
      // Fakes that record their calls: docker says whether the container runs ($RUNNING), certbot issues nothing.
      writeFileSync(join(bin, "docker"), `#!/bin/sh\necho "docker $*" >> '${log}'\nif [ "$1" = inspect ]; then echo "\${RUNNING:-false}"; fi\n`, { mode: 0o755 });
      for (const name of ["certbot", "systemctl"]) writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> '${log}'\n`, { mode: 0o755 });
      const path = join(t.dir, "certbot-nginx");
      writeFileSync(
        path,
        script(docker())
          .replace('live="/etc/letsencrypt/live/$domain"', `live='${live}'`)
          .replace('renewal="/etc/letsencrypt/renewal/$domain.conf"', `renewal='${join(t.dir, "renewal.conf")}'`)
          .replace(`tls='${TLS_DIR}/${DOMAIN}'`, `tls='${tls}'`)
          .replace(`webroot='${ACME_WEBROOT}'`, `webroot='${join(t.dir, "webroot")}'`),
        { mode: 0o755 },
      );
      const sh = (arg: string, running: boolean) => {
        rmSync(log, { force: true });
        const r = spawnSync(path, [arg], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, RUNNING: String(running) } });
        expect(r.status, r.stderr).toBe(0);
        return { calls: readFileSync(log, { encoding: "utf8", flag: "a+" }).trim().split("\n").filter(Boolean), stdout: r.stdout };
      };
      // Before the container: links to a self-signed placeholder, no docker or systemctl call.
      expect(sh("placeholder", false).calls).toEqual([]);
      expect(readlinkSync(join(tls, "fullchain.pem"))).toBe(join(tls, "placeholder/fullchain.pem"));
      // First issue, container not running yet: the compose unit is started before certbot asks.
      let r = sh("issue", false);
      expect(r.calls[0]).toBe(`docker inspect -f {{.State.Running}} ${NGINX_CONTAINER}`);
      expect(r.calls[1]).toBe(`systemctl start ${COMPOSE_UNIT}`);
      expect(r.calls[2]).toMatch(/^certbot certonly .*--webroot --webroot-path \S+webroot --cert-name headscale\.example\.com /);
      // Running: reloaded inside the container (it reads the config's challenge location), then certbot.
      r = sh("issue", true);
      expect(r.calls.slice(0, 3)).toEqual([`docker inspect -f {{.State.Running}} ${NGINX_CONTAINER}`, `docker exec ${NGINX_CONTAINER} nginx -s reload`, expect.stringMatching(/^certbot certonly /)]);
      // certbot's deploy hook: links to the new files, then a reload in the container.
      mkdirSync(live, { recursive: true });
      const made = spawnSync(rt.toolPath("openssl")!, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "90", "-subj", `/CN=${DOMAIN}`, "-keyout", join(live, "privkey.pem"), "-out", join(live, "fullchain.pem")], { encoding: "utf8" });
      expect(made.status, made.stderr).toBe(0);
      r = sh("deploy", true);
      expect(readlinkSync(join(tls, "fullchain.pem"))).toBe(join(live, "fullchain.pem"));
      expect(r.calls).toEqual([`docker inspect -f {{.State.Running}} ${NGINX_CONTAINER}`, `docker exec ${NGINX_CONTAINER} nginx -s reload`]);
      expect(r.stdout).toMatch(/^nginx: serving serial=[0-9A-F]+$/m);
      // A stopped container is not reloaded (it reads the links when it starts).
      expect(sh("deploy", false).calls).toEqual([`docker inspect -f {{.State.Running}} ${NGINX_CONTAINER}`]);
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(rt.missing("nginx", "openssl"))("nginx -t accepts the docker-rendered config on the placeholder the script makes", async () => {
    const t = rt.tempDir("nginx-docker-certbot");
    chmodSync(t.dir, 0o755);
    try {
      const tls = join(t.dir, "tls", DOMAIN);
      const path = join(t.dir, "certbot-nginx");
      // This machine's nginx is Debian 12's 1.22: render for it (the image's 1.28 form is covered by forLocalNginx elsewhere).
      const c = docker({ nginxVersion: "1.22" });
      writeFileSync(path, script(c).replace(`tls='${TLS_DIR}/${DOMAIN}'`, `tls='${tls}'`).replace(`webroot='${ACME_WEBROOT}'`, `webroot='${join(t.dir, "webroot")}'`), { mode: 0o755 });
      const made = spawnSync(path, ["placeholder"], { encoding: "utf8" });
      expect(made.status, made.stderr).toBe(0);
      const conf = c.files!.find((f) => f.path.endsWith("meshfleet-headscale.conf"))!.content.replaceAll(`${TLS_DIR}/${DOMAIN}`, tls).replaceAll(ACME_WEBROOT, join(t.dir, "webroot"));
      const r = await rt.nginxTest(conf, t.dir);
      expect(r.ok, r.output).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});
