/**
 * Issue 13 item 8: the reverse proxy's certificate cycle.
 *   - nginx + certbot (webroot): the port-80 server answers
 *     /.well-known/acme-challenge/ from the webroot and redirects the rest
 *     (a real nginx serving the rendered file on loopback); the first
 *     certificate comes through a self-signed placeholder made on the host
 *     (the rendered script, run here with openssl), and certbot's deploy
 *     hook points nginx at the new certificate;
 *   - Caddy: its own ACME client, pointed at the configured directory and
 *     trusting the configured root (`caddy validate`);
 *   - HTTP/2: `http2 on;` only for nginx >= 1.25.1; this machine's nginx
 *     (Debian 12's 1.22) accepts the form rendered for it and rejects the new
 *     directive, so the version gate is not cosmetic;
 *   - bad values of the new options: file, option path, expected, found, fix.
 * The lab test (test/lab/acme-lab.test.ts) runs the cycle against pebble.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/index.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { REGISTRY } from "../../modules/index.ts";
import {
  ACME_WEBROOT,
  CERT_UNIT,
  CERTBOT_SCRIPT,
  LETSENCRYPT_DIRECTORY,
  RENEW_TIMER,
  RENEW_UNIT,
  TLS_DIR,
  nginxVersionOf,
  reverseProxyModule,
} from "../../modules/reverse-proxy.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { makeCtx, seed004 } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

function run(ctx: ModuleContext): Contribution {
  return reverseProxyModule.config(reverseProxyModule.options.parse(ctx.self.config["reverse-proxy"]), ctx);
}
const conf = (c: Contribution) => c.files!.find((f) => f.path.endsWith(".conf") || f.path.endsWith("Caddyfile"))!.content;
const PEBBLE = { acmeDirectory: "https://203.0.113.1:14000/dir", acmeCaRoot: "/etc/meshfleet/acme-ca.pem" };

/** The port-80 server block of a rendered nginx file. */
function plainServer(text: string): string {
  const at = text.indexOf("server {");
  return text.slice(at, text.indexOf("\n}\n", at) + 3);
}

describe("nginx with certbot (webroot)", () => {
  it("the port-80 server answers ACME challenges before its redirect; the TLS server reads meshfleet's links", () => {
    const c = run(seed004({ kind: "nginx", acmeEmail: "ops@example.com" }));
    const text = conf(c);
    const plain = plainServer(text);
    expect(plain).toContain(`location ^~ /.well-known/acme-challenge/ {\n        root ${ACME_WEBROOT};`);
    // ^~ wins over every regex location, and it comes before the catch-all redirect.
    expect(plain.indexOf("acme-challenge")).toBeLessThan(plain.indexOf("return 301"));
    expect(text).toContain(`ssl_certificate ${TLS_DIR}/headscale.example.com/fullchain.pem;`);
    expect(text).toContain(`ssl_certificate_key ${TLS_DIR}/headscale.example.com/privkey.pem;`);
    expect(c.packages).toEqual(["nginx", "certbot", "openssl"]);
  });

  it("units: nginx makes its placeholder first; the first certificate at deploy and boot; renewal on a timer", () => {
    const c = run(seed004({ kind: "nginx", ...PEBBLE }));
    const units = Object.fromEntries(c.units!.map((u) => [u.name, u]));
    expect(Object.keys(units).sort()).toEqual([CERT_UNIT, RENEW_UNIT, RENEW_TIMER, "nginx.service"].sort());
    const nginx = units["nginx.service"].content;
    expect(nginx.indexOf(`ExecStartPre=${CERTBOT_SCRIPT} placeholder`)).toBeLessThan(nginx.indexOf("ExecStartPre=/usr/sbin/nginx -t"));
    const first = units[CERT_UNIT];
    expect(first.enable).toBe(true);
    expect(first.content).toContain("After=network-online.target nginx.service");
    expect(first.content).toContain("RemainAfterExit=yes");
    expect(first.content).toContain(`ExecStart=${CERTBOT_SCRIPT} issue`);
    expect(first.content).toContain(`Environment=REQUESTS_CA_BUNDLE=${PEBBLE.acmeCaRoot}`);
    expect(first.restartTriggers).toEqual([CERTBOT_SCRIPT]);
    expect(units[RENEW_UNIT].enable).toBe(false);
    expect(units[RENEW_UNIT].content).toContain(`ExecStart=${CERTBOT_SCRIPT} issue`);
    expect(units[RENEW_TIMER]).toMatchObject({ enable: true });
    expect(units[RENEW_TIMER].content).toContain("OnCalendar=*-*-* 00,12:00:00");
    const script = c.files!.find((f) => f.path === CERTBOT_SCRIPT)!;
    expect(script.mode).toBe("0755");
    expect(script.content).toContain("certbot certonly --non-interactive --agree-tos --register-unsafely-without-email --server \"$server\"");
    expect(script.content).toContain("server='https://203.0.113.1:14000/dir'");
    expect(script.content).toContain("--webroot --webroot-path \"$webroot\"");
    expect(script.content).toContain("--deploy-hook '/usr/local/lib/meshfleet/certbot-nginx deploy'");
    // Found in the lab: an nginx started before this config (the package's, or an older generation's) answers the
    // challenge with 404, and units restart in name order; so issue reloads nginx before it asks for a certificate.
    const issue = script.content.slice(script.content.indexOf("issue)"));
    expect(issue.indexOf("systemctl reload-or-restart nginx.service")).toBeGreaterThan(issue.indexOf('"$0" placeholder'));
    expect(issue.indexOf("systemctl reload-or-restart nginx.service")).toBeLessThan(issue.indexOf("certbot certonly"));
    // Let's Encrypt by default, and no CA bundle: the system store.
    const le = run(seed004({ kind: "nginx" }));
    expect(le.files!.find((f) => f.path === CERTBOT_SCRIPT)!.content).toContain(`server='${LETSENCRYPT_DIRECTORY}'`);
    expect(le.units!.find((u) => u.name === CERT_UNIT)!.content).not.toContain("REQUESTS_CA_BUNDLE");
  });

  it("certificate files of your own and tls off run no certbot", () => {
    const own = run(seed004({ kind: "nginx", certificate: "/etc/ssl/hs/fullchain.pem", certificateKey: "/etc/ssl/hs/privkey.pem" }));
    expect(own.units!.map((u) => u.name)).toEqual(["nginx.service"]);
    expect(own.units![0].content).not.toContain("placeholder");
    expect(own.files!.map((f) => f.path)).not.toContain(CERTBOT_SCRIPT);
    // ... but certbot --webroot run by hand still has its location.
    expect(plainServer(conf(own))).toContain("acme-challenge");
    const off = run(makeCtx("vps", { vps: { address: "203.0.113.10", options: { "reverse-proxy": { enable: true, kind: "nginx", tls: "off" } } } }, { coordinator: { host: "vps", serverUrl: "http://headscale.example.com" } }));
    expect(conf(off)).not.toContain("acme-challenge");
    expect(off.files!.map((f) => f.path)).not.toContain(CERTBOT_SCRIPT);
    // The docker runtime with files of its own: no certbot either (test/modules/reverse-proxy-docker-certbot.test.ts has the rest).
    const docker = run(seed004({ kind: "nginx", certificate: "/etc/ssl/hs/fullchain.pem", certificateKey: "/etc/ssl/hs/privkey.pem" }, undefined, "docker"));
    expect(docker.units ?? []).toEqual([]);
    expect(conf(docker)).toContain("ssl_certificate /etc/ssl/hs/fullchain.pem;");
  });

  const skipNginx = rt.missing("nginx", "openssl");
  it.skipIf(skipNginx)("a real nginx serves a challenge file from the webroot and redirects everything else", async () => {
    const t = rt.tempDir("nginx-acme");
    chmodSync(t.dir, 0o755); // the workers (nobody) read the webroot
    try {
      const [http, https] = [await rt.freePort(), await rt.freePort()];
      const { cert, key } = await rt.selfSignedCert(t.dir, "headscale.example.com");
      const text = conf(run(seed004({ kind: "nginx", httpPort: http, httpsPort: https })))
        .replaceAll(ACME_WEBROOT, join(t.dir, "webroot"))
        .replaceAll(`${TLS_DIR}/headscale.example.com/fullchain.pem`, cert)
        .replaceAll(`${TLS_DIR}/headscale.example.com/privkey.pem`, key)
        .replaceAll("listen [::]:", "listen [::1]:")
        .replaceAll(`listen ${http};`, `listen 127.0.0.1:${http};`)
        .replaceAll(`listen ${https} ssl`, `listen 127.0.0.1:${https} ssl`);
      mkdirSync(join(t.dir, "webroot/.well-known/acme-challenge"), { recursive: true, mode: 0o755 });
      writeFileSync(join(t.dir, "webroot/.well-known/acme-challenge/tok-123"), "tok-123.thumbprint", { mode: 0o644 });
      const test = await rt.nginxTest(text, t.dir);
      expect(test.ok, test.output).toBe(true);
      const nginx = spawn(rt.toolPath("nginx")!, ["-p", t.dir, "-c", join(t.dir, "nginx.conf"), "-e", join(t.dir, "error.log"), "-g", "daemon off;"], { stdio: "ignore" });
      try {
        const get = async (p: string) => {
          for (let i = 0; ; i++) {
            try {
              return await fetch(`http://127.0.0.1:${http}${p}`, { redirect: "manual" });
            } catch (e) {
              if (i > 50) throw e;
              await new Promise((r) => setTimeout(r, 100));
            }
          }
        };
        const ok = await get("/.well-known/acme-challenge/tok-123");
        expect(ok.status, existsSync(join(t.dir, "error.log")) ? readFileSync(join(t.dir, "error.log"), "utf8") : "").toBe(200);
        expect(await ok.text()).toBe("tok-123.thumbprint");
        expect(ok.headers.get("content-type")).toBe("text/plain");
        expect((await get("/.well-known/acme-challenge/missing")).status).toBe(404);
        const other = await get("/register/abc");
        expect(other.status).toBe(301);
        // fetch sends its own Host (127.0.0.1:port); nginx redirects to that host.
        expect(other.headers.get("location")).toBe(`https://127.0.0.1:${https}/register/abc`);
      } finally {
        nginx.kill("SIGTERM");
      }
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(rt.missing("openssl"))("the script: a self-signed placeholder before the first certificate, certbot's files once there are some", async () => {
    const t = rt.tempDir("certbot-script");
    try {
      const c = run(seed004({ kind: "nginx" }));
      const live = join(t.dir, "letsencrypt/live/headscale.example.com");
      const tls = join(t.dir, "tls/headscale.example.com");
      const script = join(t.dir, "certbot-nginx");
      writeFileSync(
        script,
        c.files!.find((f) => f.path === CERTBOT_SCRIPT)!.content
          .replace('live="/etc/letsencrypt/live/$domain"', `live='${live}'`)
          .replace(`tls='${TLS_DIR}/headscale.example.com'`, `tls='${tls}'`)
          .replace(`webroot='${ACME_WEBROOT}'`, `webroot='${join(t.dir, "webroot")}'`),
        { mode: 0o755 },
      );
      const sh = (arg: string) => spawnSync(script, [arg], { encoding: "utf8", env: { ...process.env, PATH: `${process.env.PATH}` } });
      let r = sh("placeholder");
      expect(r.status, r.stderr).toBe(0);
      expect(readlinkSync(join(tls, "fullchain.pem"))).toBe(join(tls, "placeholder/fullchain.pem"));
      expect(readlinkSync(join(tls, "privkey.pem"))).toBe(join(tls, "placeholder/privkey.pem"));
      const subject = spawnSync("openssl", ["x509", "-noout", "-subject", "-ext", "subjectAltName", "-in", join(tls, "fullchain.pem")], { encoding: "utf8" });
      expect(subject.stdout).toContain("DNS:headscale.example.com");
      // A second start keeps the placeholder it made (no new key each restart).
      const first = readFileSync(join(tls, "fullchain.pem"), "utf8");
      expect(sh("placeholder").status).toBe(0);
      expect(readFileSync(join(tls, "fullchain.pem"), "utf8")).toBe(first);
      // certbot's files appear: the next start, and the deploy hook, point at them.
      mkdirSync(live, { recursive: true });
      const issued = await rt.selfSignedCert(live, "headscale.example.com");
      writeFileSync(join(live, "fullchain.pem"), readFileSync(issued.cert));
      writeFileSync(join(live, "privkey.pem"), readFileSync(issued.key));
      r = sh("deploy");
      expect(r.status, r.stderr).toBe(0);
      expect(readlinkSync(join(tls, "fullchain.pem"))).toBe(join(live, "fullchain.pem"));
      expect(readlinkSync(join(tls, "privkey.pem"))).toBe(join(live, "privkey.pem"));
      expect(r.stdout).toMatch(/^nginx: serving serial=[0-9A-F]+$/m);
      expect(sh("placeholder").status).toBe(0);
      expect(readlinkSync(join(tls, "fullchain.pem"))).toBe(join(live, "fullchain.pem"));
      expect(sh("bogus").status).toBe(2);
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(rt.missing("openssl"))("issue: a changed directory forces a new certificate (--break-my-certs for a staging one); nginx is reloaded only when certbot will ask", () => {
    const t = rt.tempDir("certbot-issue");
    try {
      const live = join(t.dir, "letsencrypt/live/headscale.example.com");
      const renewal = join(t.dir, "letsencrypt/renewal/headscale.example.com.conf");
      const tls = join(t.dir, "tls/headscale.example.com");
      const bin = join(t.dir, "bin");
      const log = join(t.dir, "calls.log");
      mkdirSync(bin, { recursive: true });
      mkdirSync(live, { recursive: true });
      mkdirSync(join(t.dir, "letsencrypt/renewal"), { recursive: true });
      // Fakes: certbot and systemctl record their arguments (certbot keeps the certificate: it runs no hook).
      for (const name of ["certbot", "systemctl"]) writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> '${log}'\n[ "$1" != is-active ]\n`, { mode: 0o755 });
      const cert = (days: number) => {
        const r = spawnSync(rt.toolPath("openssl")!, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", String(days),
          "-subj", "/CN=headscale.example.com", "-keyout", join(live, "privkey.pem"), "-out", join(live, "fullchain.pem")], { encoding: "utf8" });
        expect(r.status, r.stderr).toBe(0);
      };
      const issue = (acmeDirectory: string, was: string | null) => {
        rmSync(log, { force: true });
        if (was === null) rmSync(renewal, { force: true });
        else writeFileSync(renewal, `# renew_before_expiry = 30 days\nversion = 2.1.0\n[renewalparams]\naccount = 0123\nserver = ${was}\nauthenticator = webroot\n`);
        const script = join(t.dir, "certbot-nginx");
        writeFileSync(
          script,
          run(seed004({ kind: "nginx", acmeDirectory })).files!.find((f) => f.path === CERTBOT_SCRIPT)!.content
            .replace('live="/etc/letsencrypt/live/$domain"', `live='${live}'`)
            .replace('renewal="/etc/letsencrypt/renewal/$domain.conf"', `renewal='${renewal}'`)
            .replace(`tls='${TLS_DIR}/headscale.example.com'`, `tls='${tls}'`)
            .replace(`webroot='${ACME_WEBROOT}'`, `webroot='${join(t.dir, "webroot")}'`),
          { mode: 0o755 },
        );
        const r = spawnSync(script, ["issue"], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
        expect(r.status, r.stderr).toBe(0);
        const calls = readFileSync(log, "utf8").trim().split("\n");
        const certbot = calls.find((l) => l.startsWith("certbot "))!;
        return { certbot, reloaded: calls.includes("systemctl reload-or-restart nginx.service") };
      };
      const STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory";
      // A certificate with 90 days left, from the same directory: certbot keeps it, nginx is left alone.
      cert(90);
      let r = issue(LETSENCRYPT_DIRECTORY, LETSENCRYPT_DIRECTORY);
      expect(r.certbot).toContain(`--server ${LETSENCRYPT_DIRECTORY} `);
      expect(r.certbot).toContain("--keep-until-expiring --deploy-hook");
      expect(r.certbot).not.toContain("--force-renewal");
      expect(r.reloaded).toBe(false);
      // Staging to production: a new certificate now, not in 60 days.
      r = issue(LETSENCRYPT_DIRECTORY, STAGING);
      expect(r.certbot).toContain("--keep-until-expiring --force-renewal --deploy-hook");
      expect(r.certbot).not.toContain("--break-my-certs");
      expect(r.reloaded).toBe(true);
      // Production to staging: certbot refuses to replace a valid certificate without --break-my-certs.
      r = issue(STAGING, LETSENCRYPT_DIRECTORY);
      expect(r.certbot).toContain("--force-renewal --break-my-certs --deploy-hook");
      expect(r.reloaded).toBe(true);
      // Due (one day left): certbot will renew, so nginx reads the challenge location first.
      cert(1);
      r = issue(LETSENCRYPT_DIRECTORY, LETSENCRYPT_DIRECTORY);
      expect(r.certbot).not.toContain("--force-renewal");
      expect(r.reloaded).toBe(true);
      // No lineage yet: the first certificate.
      rmSync(live, { recursive: true });
      r = issue(LETSENCRYPT_DIRECTORY, null);
      expect(r.certbot).not.toContain("--force-renewal");
      expect(r.reloaded).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});

describe("Caddy's own ACME client", () => {
  it("names the directory and the root to trust; Let's Encrypt's default adds nothing", () => {
    const text = conf(run(seed004({ kind: "caddy", acmeEmail: "ops@example.com", ...PEBBLE })));
    expect(text).toContain("{\n\temail ops@example.com\n\tacme_ca https://203.0.113.1:14000/dir\n\tacme_ca_root /etc/meshfleet/acme-ca.pem\n}");
    expect(conf(run(seed004({ kind: "caddy" })))).not.toContain("acme_ca");
    // Caddy's internal CA asks no ACME directory.
    expect(conf(run(seed004({ kind: "caddy", tls: "internal", ...PEBBLE })))).not.toContain("acme_ca");
  });

  it.skipIf(rt.missing("caddy", "openssl"))("caddy validate accepts it (the root file is read)", async () => {
    const t = rt.tempDir("caddy-acme");
    try {
      const { cert } = await rt.selfSignedCert(t.dir, "pebble");
      const r = await rt.caddyValidate(conf(run(seed004({ kind: "caddy", acmeDirectory: PEBBLE.acmeDirectory, acmeCaRoot: cert }))));
      expect(r.ok, r.output).toBe(true);
      const bad = await rt.caddyValidate(conf(run(seed004({ kind: "caddy", acmeDirectory: PEBBLE.acmeDirectory, acmeCaRoot: join(t.dir, "missing.pem") }))));
      expect(bad.ok).toBe(false);
    } finally {
      t.cleanup();
    }
  });
});

describe("HTTP/2 follows the nginx version", () => {
  it("listen ... http2 up to 1.25.0, http2 on; from 1.25.1; \"\" is 1.22 on a host and the image's tag on docker", () => {
    const listenForm = (v?: string, runtime: "systemd" | "docker" = "systemd", image?: string) =>
      conf(run(seed004({ kind: "nginx", ...(v ? { nginxVersion: v } : {}), ...(image ? { image } : {}) }, undefined, runtime)));
    expect(listenForm()).toContain("    listen 443 ssl http2;\n    listen [::]:443 ssl http2;\n");
    expect(listenForm()).not.toContain("http2 on;");
    expect(listenForm("1.25.0")).toContain("listen 443 ssl http2;");
    for (const v of ["1.25.1", "1.26", "1.28.0"]) {
      const text = listenForm(v);
      expect(text, v).toContain("    listen 443 ssl;\n    listen [::]:443 ssl;\n    http2 on;\n");
      expect(text, v).not.toMatch(/ssl http2/);
    }
    expect(listenForm(undefined, "docker")).toContain("http2 on;"); // docker.io/library/nginx:1.28.0
    expect(listenForm(undefined, "docker", "registry.example.com/nginx:1.24.0-alpine")).toContain("ssl http2;");
    expect(nginxVersionOf({ nginxVersion: "", image: "" }, "systemd")).toBe("1.22");
    expect(nginxVersionOf({ nginxVersion: "", image: "example/nginx@sha256:abc" }, "docker")).toBe("1.22");
  });

  it.skipIf(rt.missing("nginx", "openssl"))("this machine's nginx (1.22) accepts the default form and rejects http2 on;", async () => {
    const v = spawnSync(rt.toolPath("nginx")!, ["-v"], { encoding: "utf8" }).stderr;
    const version = /nginx\/(\d+\.\d+\.\d+)/.exec(v)![1];
    const t = rt.tempDir("nginx-h2");
    try {
      const { cert, key } = await rt.selfSignedCert(t.dir, "headscale.example.com");
      const withVersion = (nginxVersion: string) => conf(run(seed004({ kind: "nginx", certificate: cert, certificateKey: key, nginxVersion })));
      const own = await rt.nginxTest(withVersion(version), t.dir);
      expect(own.ok, own.output).toBe(true);
      expect(own.output).not.toContain("deprecated");
      const newer = await rt.nginxTest(withVersion("1.26"), t.dir);
      if (!(await rt.localNginxAtLeast("1.25.1"))) {
        expect(newer.ok).toBe(false);
        expect(newer.output).toContain('unknown directive "http2"');
      } else expect(newer.ok, newer.output).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});

describe("bad values of the new options", () => {
  async function errors(extra: string) {
    const { dir, cleanup } = writeFleet({ "vps.yaml": BASE["vps.yaml"] + extra });
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      return r.diagnostics.filter((d) => d.severity === "error").map((d) => ({ ...d, file: d.file.split(dir).join("<fleet>") }));
    } finally {
      cleanup();
    }
  }
  it.each([
    ["acmeDirectory over plain http", "reverse-proxy:\n  acmeDirectory: http://203.0.113.1:14000/dir\n", "reverse-proxy.acmeDirectory", /^the https:\/\/ URL of an ACME directory/, /plain http$/, /^set reverse-proxy\.acmeDirectory to the CA's directory URL/],
    ["acmeDirectory with a second Caddy option", 'reverse-proxy:\n  acmeDirectory: "https://ca.example/dir\\n\\tdebug"\n', "reverse-proxy.acmeDirectory", /^the https:\/\/ URL/, /reads as syntax/, /directory URL/],
    ["acmeCaRoot relative", "reverse-proxy:\n  acmeCaRoot: pebble.pem\n", "reverse-proxy.acmeCaRoot", /^an absolute path/, /a relative path$/, /full path/],
    ["nginxVersion as a word", "reverse-proxy:\n  kind: nginx\n  nginxVersion: latest\n", "reverse-proxy.nginxVersion", /major\.minor/, /^"latest"$/, /nginx -v/],
  ])("%s", async (_n, extra, path, expected, found, fix) => {
    const errs = await errors(extra);
    expect(errs).toHaveLength(1);
    const d = errs[0];
    expect(d.file).toBe("<fleet>/vps.yaml");
    expect(d.path).toBe(path);
    expect(d.expected).toMatch(expected);
    expect(d.found).toMatch(found);
    expect(d.fix).toMatch(fix);
  });

  it("good values pass", async () => {
    expect(await errors("reverse-proxy:\n  kind: nginx\n  acmeDirectory: https://acme-staging-v02.api.letsencrypt.org/directory\n  acmeCaRoot: /etc/meshfleet/acme-ca.pem\n  nginxVersion: 1.26.3\n")).toEqual([]);
  });
});
