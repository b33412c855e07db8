/**
 * The reverse proxy in front of Headscale: Caddy (automatic TLS) or nginx
 * (seed 004's setup, plus what the Tailscale control protocol needs).
 *
 * Tailscale clients upgrade the control connection with a POST carrying
 * `Upgrade: tailscale-control-protocol`; the proxy must pass Upgrade and
 * Connection through on HTTP/1.1 and must not buffer, and nothing may block
 * POST. Cloudflare-style proxies fail exactly there (juanfont/headscale#1468).
 */
import { z } from "zod";
import { defineModule, type Assertion, type Contribution, type ModuleContext } from "../core/module.ts";
import type { ContainerSpec, FileSpec, HealthProbe, InboundRule, UnitSpec } from "../core/types.ts";
import { port } from "../core/schema-types.ts";
import { absPath, acmeEmail as acmeEmailSchema, checkedString, proxyDomain, type TextProblem } from "../core/freetext.ts";
import { loopbackOf } from "./derp.ts";
import { COMPOSE_UNIT } from "../agent/compose.ts";

/** Let's Encrypt's production directory: where certificates come from unless reverse-proxy.acmeDirectory says otherwise. */
export const LETSENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory";
/**
 * certbot --webroot writes its http-01 answers here; nginx's workers (www-data) serve
 * /.well-known/acme-challenge/ from it, so it is outside the agent's 0700 /var/lib/meshfleet.
 */
export const ACME_WEBROOT = "/var/www/meshfleet-acme";
/** nginx's certificate and key: links to certbot's live files, or to a self-signed placeholder until the first one is issued (writable by nginx's ExecStartPre under ProtectSystem=full). */
export const TLS_DIR = "/var/lib/meshfleet-tls";
/** The script behind nginx's certificate cycle (placeholder, issue, deploy). */
export const CERTBOT_SCRIPT = "/usr/local/lib/meshfleet/certbot-nginx";
export const CERT_UNIT = "meshfleet-certificate.service";
/** Docker runtime: makes the certificate links before the nginx container starts. */
export const PLACEHOLDER_UNIT = "meshfleet-certificate-placeholder.service";
/** The nginx container's name (container_name in the compose file). */
export const NGINX_CONTAINER = "nginx";
export const RENEW_UNIT = "meshfleet-certificate-renew.service";
export const RENEW_TIMER = "meshfleet-certificate-renew.timer";
/** The nginx a host has when reverse-proxy.nginxVersion is "": Debian 12's (1.22), the oldest supported VPS. */
export const HOST_NGINX_VERSION = "1.22";

/** reverse-proxy.acmeDirectory: an https URL that a Caddyfile, a unit and a shell script can all hold as one word. */
export function acmeDirectoryProblem(v: string): TextProblem | undefined {
  const expected = "the https:// URL of an ACME directory, such as " + LETSENCRYPT_DIRECTORY;
  const fix = "set reverse-proxy.acmeDirectory to the CA's directory URL (Let's Encrypt's staging: https://acme-staging-v02.api.letsencrypt.org/directory)";
  if (!/^https:\/\//.test(v)) return { expected, found: JSON.stringify(v) + (v.startsWith("http://") ? ", plain http" : ", not an https URL"), fix };
  if (!/^https:\/\/[A-Za-z0-9.:[\]-]+(\/[A-Za-z0-9._~\/%+=-]*)?$/.test(v)) return { expected, found: `${JSON.stringify(v)}, which has characters a Caddyfile, unit or shell reads as syntax (spaces, quotes, ; { } $ ? # or a line break)`, fix };
  return undefined;
}

/** reverse-proxy.nginxVersion: "" or major.minor[.patch]. */
export function nginxVersionProblem(v: string): TextProblem | undefined {
  if (v === "" || /^\d+\.\d+(\.\d+)?$/.test(v)) return undefined;
  return { expected: "\"\" or nginx's version as major.minor or major.minor.patch, such as 1.22 or 1.26.3", found: JSON.stringify(v), fix: "set reverse-proxy.nginxVersion to what `nginx -v` prints on the host, e.g. 1.26.3" };
}

export const reverseProxyOptions = z
  .object({
    enable: z.boolean().default(false).describe("Run a reverse proxy in front of Headscale on this host."),
    kind: z.enum(["caddy", "nginx"]).default("caddy").describe("`caddy` (certificates by itself) or `nginx` (certificates from certbot, which meshfleet runs on a host, or from files: see certificate)."),
    tls: z
      .enum(["auto", "internal", "off"])
      .default("auto")
      .describe("`auto`: Caddy's ACME / nginx's certificate from certbot, which meshfleet runs on the host (also on the docker runtime), or from files (see certificate); `internal`: Caddy's own CA; `off`: plain HTTP."),
    domain: proxyDomain.default("").describe("Site name; \"\" takes the host of fleet.yaml coordinator.serverUrl."),
    upstream: z
      .string()
      .default("")
      .describe("host:port of Headscale; \"\" takes the coordinator's headscale.listenAddr (or the headscale container on the docker runtime)."),
    httpPort: port.default(80).describe("Plain HTTP port (redirects to HTTPS, answers /generate_204)."),
    httpsPort: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .default(0)
      .describe("HTTPS port; 0 takes the server URL's port (443 when it has none)."),
    acmeEmail: acmeEmailSchema.default("").describe("Contact address for the ACME account (Caddy, and certbot for nginx; tls: auto)."),
    acmeDirectory: checkedString(acmeDirectoryProblem)
      .default(LETSENCRYPT_DIRECTORY)
      .describe("The ACME directory certificates come from (tls: auto): Caddy's `acme_ca`, certbot's `--server`. Default: Let's Encrypt's production directory; a test CA (pebble) or a staging directory for trials."),
    acmeCaRoot: absPath("reverse-proxy.acmeCaRoot", "/etc/meshfleet/acme-ca.pem", true)
      .default("")
      .describe("A PEM file on the host with the CA root that the ACME directory's own HTTPS certificate chains to, when the system store lacks it (a test CA such as pebble's): Caddy's `acme_ca_root`, certbot's REQUESTS_CA_BUNDLE. \"\" trusts the system store."),
    nginxVersion: checkedString(nginxVersionProblem)
      .default("")
      .describe("The nginx version the config is written for: from 1.25.1 on HTTP/2 is `http2 on;`, before it `listen ... ssl http2` (1.25.1 and later still accept that, with a deprecation warning; older ones reject `http2 on;`). \"\" means the pinned image's version on the docker runtime, and 1.22 on a host (Debian 12's; Ubuntu 24.04 has 1.24, Debian 13 has 1.26: set 1.26 there for the new form)."),
    certificate: absPath("reverse-proxy.certificate", "/etc/ssl/hs/fullchain.pem", true)
      .default("")
      .describe("nginx: certificate chain file. \"\" (with certificateKey \"\") means meshfleet runs the whole cycle with certbot (Debian's package, webroot mode): a self-signed placeholder until the first certificate, the first one at deploy, renewal twice a day and a reload of nginx on each new one. A path means the file is yours to keep current (meshfleet still answers /.well-known/acme-challenge/ from " + ACME_WEBROOT + "). On the docker runtime certbot runs on the docker host the same way: the nginx container serves its webroot and reads the certificate through bind mounts (" + ACME_WEBROOT + ", /etc/letsencrypt, " + TLS_DIR + "), and certbot's deploy hook reloads nginx inside the container (docker exec)."),
    certificateKey: absPath("reverse-proxy.certificateKey", "/etc/ssl/hs/privkey.pem", true)
      .default("")
      .describe("nginx: private key file; \"\" with certificate \"\": certbot's (see certificate)."),
    rateLimit: z
      .object({
        enable: z
          .boolean()
          .optional()
          .describe("Limit interactive registration/login paths per client address. Unset: on with nginx, off with Caddy, whose stock build (Debian's, Docker's) has no rate limiter; true with Caddy is refused."),
        perMinute: z.number().int().min(1).default(30).describe("Sustained requests per minute per address."),
        burst: z.number().int().min(0).default(20).describe("Requests allowed above the rate before 429s."),
      })
      .strict()
      .default({ perMinute: 30, burst: 20 })
      .describe("Rate limits for /register/, /auth/ and /oidc/ (never for /ts2021 or /key: every node uses them)."),
    image: z
      .string()
      .default("")
      .describe("Container image (docker runtime): repo:tag, repo@sha256:<digest>, or the id (sha256:…) of an image built on the host (then set nginxVersion); \"\" pins the official caddy or nginx image."),
    hstsMaxAge: z
      .number()
      .int()
      .min(0)
      .max(63072000)
      .default(31536000)
      .describe("Strict-Transport-Security max-age (seconds) on the HTTPS site, so a browser never falls back to plain HTTP for the login pages; 0 sends no header."),
  })
  .strict();

export type ReverseProxyOptions = z.output<typeof reverseProxyOptions>;

declare module "../core/module.ts" {
  interface ModuleOptions {
    "reverse-proxy": ReverseProxyOptions;
  }
}

export const CADDYFILE = "/etc/caddy/Caddyfile";
export const NGINX_CONF = "/etc/nginx/conf.d/meshfleet-headscale.conf";
export const DOCKER_HOST_DIR = "/opt/meshfleet/reverse-proxy";
const DEFAULT_IMAGE = { caddy: "docker.io/library/caddy:2.10.2", nginx: "docker.io/library/nginx:1.28.0" };

export interface ProxySite {
  domain: string;
  upstream: string;
  httpPort: number;
  httpsPort: number;
  tls: "auto" | "internal" | "off";
  acmeEmail: string;
  certificate: string;
  certificateKey: string;
  rateLimit: { enable: boolean; perMinute: number; burst: number };
  /** Strict-Transport-Security max-age in seconds; 0: no header. */
  hstsMaxAge: number;
  /** The upstream is a container name, resolved by docker's embedded DNS. */
  dockerDns: boolean;
  acmeDirectory: string;
  acmeCaRoot: string;
  /** nginx gets its certificate from certbot, run by meshfleet (see certificate's description). */
  certbot: boolean;
  /** nginx runs in a container (the docker runtime): certbot on the host reloads it with `docker exec`. */
  inContainer: boolean;
  /** nginx: `http2 on;` (>= 1.25.1) rather than `listen ... ssl http2`. */
  http2Directive: boolean;
}

/** The nginx version the config targets: the option, else the image tag's (docker), else Debian 12's. */
export function nginxVersionOf(o: Pick<ReverseProxyOptions, "nginxVersion" | "image">, runtime: string): string {
  if (o.nginxVersion !== "") return o.nginxVersion;
  if (runtime !== "docker") return HOST_NGINX_VERSION;
  const tag = /:(\d+\.\d+(?:\.\d+)?)(?:[-@]|$)/.exec(o.image !== "" ? o.image : DEFAULT_IMAGE.nginx)?.[1];
  return tag ?? HOST_NGINX_VERSION;
}

/** a >= b for dotted versions (missing parts count as 0). */
export function versionAtLeast(a: string, b: string): boolean {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

export function siteOf(o: ReverseProxyOptions, ctx: ModuleContext): ProxySite {
  const u = new URL(ctx.fleet.coordinator.serverUrl);
  const domain = o.domain !== "" ? o.domain : u.hostname;
  const httpsPort = o.httpsPort !== 0 ? o.httpsPort : u.port ? Number(u.port) : 443;
  // certbot runs on the host in both runtimes: on docker, the nginx container reads the host's files through bind mounts.
  const certbot = o.kind === "nginx" && o.tls === "auto" && o.certificate === "" && o.certificateKey === "";
  const tlsDir = `${TLS_DIR}/${domain}`;
  return {
    domain,
    upstream: o.upstream !== "" ? o.upstream : upstreamOf(ctx),
    httpPort: o.httpPort,
    httpsPort,
    tls: o.tls,
    acmeEmail: o.acmeEmail,
    certificate: o.certificate !== "" ? o.certificate : certbot ? `${tlsDir}/fullchain.pem` : `/etc/letsencrypt/live/${domain}/fullchain.pem`,
    certificateKey: o.certificateKey !== "" ? o.certificateKey : certbot ? `${tlsDir}/privkey.pem` : `/etc/letsencrypt/live/${domain}/privkey.pem`,
    rateLimit: { enable: o.rateLimit.enable ?? o.kind === "nginx", perMinute: o.rateLimit.perMinute, burst: o.rateLimit.burst },
    hstsMaxAge: o.hstsMaxAge,
    dockerDns: ctx.self.runtime === "docker" && o.upstream === "",
    acmeDirectory: o.acmeDirectory,
    acmeCaRoot: o.acmeCaRoot,
    certbot,
    inContainer: ctx.self.runtime === "docker",
    http2Directive: versionAtLeast(nginxVersionOf(o, ctx.self.runtime), "1.25.1"),
  };
}

function upstreamOf(ctx: ModuleContext): string {
  const coord = ctx.hosts[ctx.fleet.coordinator.host];
  const listen = coord?.config.headscale.listenAddr ?? "127.0.0.1:8080";
  if (ctx.self.runtime === "docker") return `headscale:${listen.slice(listen.lastIndexOf(":") + 1)}`;
  return loopbackOf(listen);
}

const isIpv4 = (d: string) => /^\d+\.\d+\.\d+\.\d+$/.test(d);

/**
 * A certificate for an IP address (RFC 8738) from the named ACME directory.
 * Caddy (certmagic) never asks a public CA for an IP by itself: without an
 * issuer on the site it takes its internal CA, even with a global acme_ca
 * (checked with Debian's Caddy 2.6.2). An explicit `issuer acme` on the site
 * makes it order an `ip` identifier. tls-alpn-01 is off: for an IP the
 * validator's SNI is the reverse-DNS name (RFC 8738 section 6), which
 * certmagic's challenge lookup does not match; http-01 to port 80 works.
 */
function ipAcmeIssuer(s: ProxySite): string[] {
  return [
    "\ttls {",
    "\t\tissuer acme {",
    `\t\t\tdir ${s.acmeDirectory}`,
    ...(s.acmeCaRoot !== "" ? [`\t\t\ttrusted_roots ${s.acmeCaRoot}`] : []),
    ...(s.acmeEmail !== "" ? [`\t\t\temail ${s.acmeEmail}`] : []),
    "\t\t\tdisable_tlsalpn_challenge",
    "\t\t}",
    "\t}",
  ];
}

/** The Caddyfile. Caddy's reverse_proxy passes any Upgrade (not only websocket) and streams. */
export function renderCaddyfile(s: ProxySite): string {
  const lines: string[] = [
    "# Rendered by meshfleet (modules/reverse-proxy.ts); edits are overwritten.",
    "# No rate limit on /register/, /auth/, /oidc/: Caddy's stock build has none (reverse-proxy.kind: nginx has one).",
  ];
  const global: string[] = [];
  if (s.acmeEmail !== "" && s.tls === "auto") global.push(`\temail ${s.acmeEmail}`);
  // Caddy's own ACME client: Let's Encrypt (with ZeroSSL as fallback) unless a directory is named.
  // An IP address gets its certificate from a site-level issuer instead (below).
  const ipIssuer = s.tls === "auto" && isIpv4(s.domain);
  if (s.tls === "auto" && !ipIssuer && s.acmeDirectory !== LETSENCRYPT_DIRECTORY) global.push(`\tacme_ca ${s.acmeDirectory}`);
  if (s.tls === "auto" && !ipIssuer && s.acmeCaRoot !== "") global.push(`\tacme_ca_root ${s.acmeCaRoot}`);
  if (s.httpPort !== 80) global.push(`\thttp_port ${s.httpPort}`);
  if (s.httpsPort !== 443) global.push(`\thttps_port ${s.httpsPort}`);
  if (global.length > 0) lines.push("{", ...global, "}", "");
  const proxy = [
    `\treverse_proxy ${s.upstream} {`,
    // Headscale trusts these only from trusted_proxies; set them so a client cannot inject its own.
    "\t\theader_up X-Real-IP {remote_host}",
    "\t\theader_up True-Client-IP {remote_host}",
    "\t}",
  ];
  if (s.tls === "off") {
    lines.push(`http://${s.domain}:${s.httpPort} {`, ...proxy, "}", "");
    return lines.join("\n");
  }
  lines.push(
    `http://${s.domain}:${s.httpPort} {`,
    "\t# Tailscale's captive-portal check.",
    "\thandle /generate_204 {",
    "\t\trespond 204",
    "\t}",
    "\thandle {",
    `\t\tredir https://{host}${s.httpsPort === 443 ? "" : `:${s.httpsPort}`}{uri} permanent`,
    "\t}",
    "}",
    "",
    `https://${s.domain}:${s.httpsPort} {`,
    ...(s.tls === "internal" ? ["\ttls internal"] : []),
    ...(ipIssuer ? ipAcmeIssuer(s) : []),
    ...(s.hstsMaxAge > 0 ? [`\theader Strict-Transport-Security "max-age=${s.hstsMaxAge}"`] : []),
    ...proxy,
    "}",
    "",
  );
  return lines.join("\n");
}

/**
 * nginx: a conf.d file, which Debian's nginx.conf includes inside `http {}`,
 * so the `map` and `limit_req_zone` may live here.
 */
export function renderNginxConf(s: ProxySite): string {
  const up = [
    // With docker, resolve the container per request: a name in `upstream {}` is resolved once at
    // start, so nginx would refuse to start before the headscale container exists.
    s.dockerDns ? "        proxy_pass http://$meshfleet_headscale;" : "        proxy_pass http://headscale_upstream;",
    "        proxy_http_version 1.1;",
    "        proxy_set_header Upgrade $http_upgrade;",
    "        proxy_set_header Connection $connection_upgrade;",
    "        proxy_set_header Host $host;",
    "        proxy_set_header X-Real-IP $remote_addr;",
    "        proxy_set_header True-Client-IP $remote_addr;",
    "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
    "        proxy_set_header X-Forwarded-Proto $scheme;",
    // The control and DERP connections are long-lived streams.
    "        proxy_buffering off;",
    "        proxy_request_buffering off;",
    "        proxy_read_timeout 1h;",
    "        proxy_send_timeout 1h;",
  ];
  const locations = (limited: boolean) => {
    const out: string[] = [];
    if (s.rateLimit.enable && limited) {
      // Interactive login pages only; /ts2021, /key, /machine and /derp carry every node's traffic.
      out.push(
        "    location ~ ^/(register|auth|oidc)/ {",
        `        limit_req zone=meshfleet_headscale_register burst=${s.rateLimit.burst} nodelay;`,
        "        limit_req_status 429;",
        ...up,
        "    }",
        "",
      );
    }
    out.push("    location / {", ...up, "    }");
    return out;
  };
  const L: string[] = [
    "# Rendered by meshfleet (modules/reverse-proxy.ts); edits are overwritten.",
    "# Included inside http {} by nginx.conf (conf.d/*.conf).",
    "",
    "map $http_upgrade $connection_upgrade {",
    "    default upgrade;",
    "    ''      close;",
    "}",
    "",
  ];
  if (s.dockerDns) {
    L.push("resolver 127.0.0.11 valid=10s;", "", `map $host $meshfleet_headscale {`, `    default ${s.upstream};`, "}", "");
  } else {
    L.push("upstream headscale_upstream {", `    server ${s.upstream};`, "    keepalive 16;", "}", "");
  }
  if (s.rateLimit.enable) {
    L.push(`limit_req_zone $binary_remote_addr zone=meshfleet_headscale_register:10m rate=${s.rateLimit.perMinute}r/m;`, "");
  }
  if (s.tls === "off") {
    L.push("server {", `    listen ${s.httpPort};`, `    listen [::]:${s.httpPort};`, `    server_name ${s.domain};`, "", ...locations(true), "}", "");
    return L.join("\n");
  }
  L.push(
    "server {",
    `    listen ${s.httpPort};`,
    `    listen [::]:${s.httpPort};`,
    `    server_name ${s.domain};`,
    "",
    "    # Tailscale's captive-portal check.",
    "    location = /generate_204 {",
    "        return 204;",
    "    }",
    ...(s.tls === "auto"
      ? [
          `    # ACME http-01 challenges (certbot --webroot --webroot-path ${ACME_WEBROOT}): answered here, never redirected.`,
          "    location ^~ /.well-known/acme-challenge/ {",
          `        root ${ACME_WEBROOT};`,
          "        default_type text/plain;",
          "        try_files $uri =404;",
          "    }",
        ]
      : []),
    "    location / {",
    `        return 301 https://$host${s.httpsPort === 443 ? "" : `:${s.httpsPort}`}$request_uri;`,
    "    }",
    "}",
    "",
    "server {",
    // `http2 on;` from nginx 1.25.1 (where `listen ... http2` is deprecated); Debian 12's 1.22 knows only the listen form.
    ...(s.http2Directive
      ? [`    listen ${s.httpsPort} ssl;`, `    listen [::]:${s.httpsPort} ssl;`, "    http2 on;"]
      : [`    listen ${s.httpsPort} ssl http2;`, `    listen [::]:${s.httpsPort} ssl http2;`]),
    `    server_name ${s.domain};`,
    "",
    `    ssl_certificate ${s.certificate};`,
    `    ssl_certificate_key ${s.certificateKey};`,
    "    ssl_protocols TLSv1.2 TLSv1.3;",
    ...(s.hstsMaxAge > 0 ? [`    add_header Strict-Transport-Security "max-age=${s.hstsMaxAge}" always;`] : []),
    "",
    ...locations(true),
    "}",
    "",
  );
  return L.join("\n");
}

const HARDENING = [
  "NoNewPrivileges=yes",
  "ProtectSystem=full",
  "ProtectHome=yes",
  "PrivateTmp=yes",
  "PrivateDevices=yes",
  "ProtectKernelTunables=yes",
  "ProtectKernelModules=yes",
  "ProtectControlGroups=yes",
];

function caddyUnit(): UnitSpec {
  // Debian's caddy.service, with the config path pinned and hardening added.
  const content = [
    "[Unit]",
    "Description=Caddy reverse proxy for Headscale (meshfleet)",
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=notify",
    "User=caddy",
    "Group=caddy",
    `ExecStart=/usr/bin/caddy run --environ --config ${CADDYFILE} --adapter caddyfile`,
    `ExecReload=/usr/bin/caddy reload --config ${CADDYFILE} --adapter caddyfile --force`,
    "TimeoutStopSec=5s",
    "LimitNOFILE=1048576",
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "Restart=on-failure",
    ...HARDENING,
    "ReadWritePaths=/var/lib/caddy",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  return { name: "caddy.service", content, enable: true };
}

/** A value in single quotes for sh (the options it carries are checked to hold no quote; this keeps it so). */
const shq = (v: string) => `'${v.replaceAll("'", "'\\''")}'`;

/**
 * nginx's certificate cycle with certbot (Debian's package) in webroot mode.
 *
 * The first certificate: nginx cannot start with a TLS server whose
 * certificate file does not exist, and certbot's http-01 answer needs nginx's
 * port-80 server running. So nginx reads its certificate and key through
 * links in ${TLS_DIR}/<domain>/; before nginx starts (ExecStartPre) `placeholder`
 * points them at certbot's live files when there are some, else at a
 * self-signed certificate it makes (openssl, 7 days, on the host: no key
 * travels in a bundle). nginx starts, meshfleet-certificate.service runs
 * `issue` (certbot certonly --webroot --keep-until-expiring), and certbot's
 * deploy hook (`deploy`) points the links at the new certificate and reloads
 * nginx. Chosen over a port-80-only first start because the config nginx runs
 * is then always the one rendered, whole: no second config to switch to, and
 * the HTTPS port answers (with the placeholder) from the first second.
 *
 * Renewal: the timer runs `issue` twice a day, and Debian's own certbot.timer
 * (`certbot renew`) renews the same lineage with the same webroot and hook,
 * which certbot stores in /etc/letsencrypt/renewal/<domain>.conf. Each new
 * certificate reloads nginx; certbot's live/ links move to the new files, so
 * the reload reads the new certificate through ours.
 */
export function renderCertbotScript(s: ProxySite): string {
  const email = s.acmeEmail !== "" ? `--email ${shq(s.acmeEmail)}` : "--register-unsafely-without-email";
  // On the docker runtime nginx is the container NGINX_CONTAINER, started by the compose unit: reloaded inside it.
  const running = s.inContainer ? `[ "$(docker inspect -f '{{.State.Running}}' ${NGINX_CONTAINER} 2>/dev/null)" = true ]` : "systemctl is-active --quiet nginx.service";
  const reload = s.inContainer ? `docker exec ${NGINX_CONTAINER} nginx -s reload` : "systemctl reload nginx.service";
  const reloadOrStart = s.inContainer ? `if ${running}; then ${reload}; else systemctl start ${COMPOSE_UNIT}; fi` : "systemctl reload-or-restart nginx.service";
  return [
    "#!/bin/sh",
    "# Rendered by meshfleet (modules/reverse-proxy.ts); edits are overwritten.",
    `# nginx's certificate for ${s.domain}, from ${s.acmeDirectory} with certbot --webroot:`,
    "#   placeholder  before nginx starts: link certbot's certificate if there is one, else a self-signed placeholder",
    "#   issue        get the first certificate, renew a due one (certonly --keep-until-expiring) or replace one from another directory, then deploy",
    "#   deploy       certbot's deploy hook: link the new certificate and reload nginx",
    "set -eu",
    `domain=${shq(s.domain)}`,
    `server=${shq(s.acmeDirectory)}`,
    `webroot=${shq(ACME_WEBROOT)}`,
    `tls=${shq(`${TLS_DIR}/${s.domain}`)}`,
    'live="/etc/letsencrypt/live/$domain"',
    'renewal="/etc/letsencrypt/renewal/$domain.conf"',
    "",
    "# Both links move at once for nginx's next read: each is replaced by rename.",
    "point() {",
    '  for f in fullchain.pem privkey.pem; do',
    '    ln -sfn "$1/$f" "$tls/.$f.new"',
    '    mv -T "$tls/.$f.new" "$tls/$f"',
    "  done",
    "}",
    "",
    'case "${1:-}" in',
    "placeholder)",
    '  mkdir -p "$tls" "$webroot"',
    '  if [ -e "$live/fullchain.pem" ] && [ -e "$live/privkey.pem" ]; then',
    '    point "$live"',
    '  elif [ ! -e "$tls/fullchain.pem" ] || [ ! -e "$tls/privkey.pem" ]; then',
    '    mkdir -p -m 0700 "$tls/placeholder"',
    '    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \\',
    '      -subj "/CN=$domain" -addext "subjectAltName=DNS:$domain" \\',
    '      -keyout "$tls/placeholder/privkey.pem" -out "$tls/placeholder/fullchain.pem"',
    '    point "$tls/placeholder"',
    "  fi",
    "  ;;",
    "deploy)",
    '  point "$live"',
    `  if ${running}; then ${reload}; fi`,
    `  echo "nginx: serving $(openssl x509 -noout -serial -in "$live/fullchain.pem")"`,
    "  ;;",
    "issue)",
    "  # certbot keeps a certificate that is not due even when --server changed: a new directory (staging to production,",
    "  # or back) forces a new one, and certbot replaces a valid certificate with a staging one only with --break-my-certs.",
    "  force=",
    '  was=$(sed -n \'s/^server *= *//p\' "$renewal" 2>/dev/null || true)',
    '  if [ -n "$was" ] && [ "$was" != "$server" ]; then',
    "    force=--force-renewal",
    '    case "$server" in *staging*) force="$force --break-my-certs" ;; esac',
    "  fi",
    "  # nginx must serve this config's challenge location: one started before it (by the package, or an older generation)",
    "  # has not read it yet, and units restart in name order. Links first, or a reload that names them fails.",
    "  # Only when certbot will ask the CA: no certificate yet, a new directory, or one due (certbot's default: 30 days left).",
    '  "$0" placeholder',
    '  if [ -n "$force" ] || [ ! -e "$live/fullchain.pem" ] || ! openssl x509 -noout -checkend 2592000 -in "$live/fullchain.pem" >/dev/null; then',
    `    ${reloadOrStart}`,
    "  fi",
    `  certbot certonly --non-interactive --agree-tos ${email} --server "$server" \\`,
    '    --webroot --webroot-path "$webroot" --cert-name "$domain" --domains "$domain" \\',
    `    --keep-until-expiring $force --deploy-hook ${shq(`${CERTBOT_SCRIPT} deploy`)}`,
    "  # A certificate certbot kept (not due) runs no hook: nginx may still read the placeholder.",
    '  if [ "$(readlink "$tls/fullchain.pem")" != "$live/fullchain.pem" ]; then "$0" deploy; fi',
    "  ;;",
    "*)",
    '  echo "usage: $0 placeholder|issue|deploy" >&2',
    "  exit 2",
    "  ;;",
    "esac",
    "",
  ].join("\n");
}

/** The units of the cycle: the first certificate at start (and each boot), and renewal twice a day. */
export function certificateUnits(s: ProxySite): UnitSpec[] {
  const env = s.acmeCaRoot !== "" ? [`Environment=REQUESTS_CA_BUNDLE=${s.acmeCaRoot}`] : [];
  // What serves the http-01 answers: nginx's unit, or the compose unit that runs its container.
  const nginx = s.inContainer ? COMPOSE_UNIT : "nginx.service";
  const service = (description: string, extra: string[]) =>
    [
      "[Unit]",
      `Description=${description}`,
      `Wants=network-online.target ${nginx}`,
      `After=network-online.target ${nginx}`,
      "",
      "[Service]",
      "Type=oneshot",
      ...extra,
      ...env,
      `ExecStart=${CERTBOT_SCRIPT} issue`,
      "",
    ].join("\n");
  // The container cannot start nginx without the certificate files it names (the host unit's ExecStartPre
  // does this on a host): the placeholder runs before the compose unit, pulled in by it whoever starts it.
  const placeholder: UnitSpec[] = s.inContainer
    ? [
        {
          name: PLACEHOLDER_UNIT,
          content: [
            "[Unit]",
            `Description=nginx's certificate links for ${s.domain} before its container starts (meshfleet)`,
            `Before=${COMPOSE_UNIT}`,
            "",
            "[Service]",
            "Type=oneshot",
            "RemainAfterExit=yes",
            `ExecStart=${CERTBOT_SCRIPT} placeholder`,
            "",
            "[Install]",
            `WantedBy=${COMPOSE_UNIT}`,
            "",
          ].join("\n"),
          enable: true,
          restartTriggers: [CERTBOT_SCRIPT],
        },
      ]
    : [];
  return [
    ...placeholder,
    {
      name: CERT_UNIT,
      // Stays active after the first certificate, so a deploy waits for it and verify sees it; each boot runs it again.
      content: `${service(`nginx's certificate for ${s.domain} from ${s.acmeDirectory} (certbot, meshfleet)`, ["RemainAfterExit=yes", "TimeoutStartSec=5min"])}\n[Install]\nWantedBy=multi-user.target\n`,
      enable: true,
      restartTriggers: [CERTBOT_SCRIPT],
    },
    { name: RENEW_UNIT, content: service(`Renew nginx's certificate for ${s.domain} (certbot, meshfleet)`, ["TimeoutStartSec=5min"]), enable: false },
    {
      name: RENEW_TIMER,
      // Debian's certbot.timer's schedule.
      content: [
        "[Unit]",
        `Description=Renew nginx's certificate for ${s.domain} twice a day (meshfleet)`,
        "",
        "[Timer]",
        "OnCalendar=*-*-* 00,12:00:00",
        "RandomizedDelaySec=43200",
        "Persistent=true",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
      ].join("\n"),
      enable: true,
    },
  ];
}

function nginxUnit(certbot = false): UnitSpec {
  const content = [
    "[Unit]",
    "Description=nginx reverse proxy for Headscale (meshfleet)",
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=forking",
    "PIDFile=/run/nginx.pid",
    // The certificate links exist before nginx reads them (renderCertbotScript).
    ...(certbot ? [`ExecStartPre=${CERTBOT_SCRIPT} placeholder`] : []),
    "ExecStartPre=/usr/sbin/nginx -t -q -g 'daemon on; master_process on;'",
    "ExecStart=/usr/sbin/nginx -g 'daemon on; master_process on;'",
    "ExecReload=/usr/sbin/nginx -g 'daemon on; master_process on;' -s reload",
    "ExecStop=-/sbin/start-stop-daemon --quiet --stop --retry QUIT/5 --pidfile /run/nginx.pid",
    "TimeoutStopSec=5",
    "KillMode=mixed",
    "Restart=on-failure",
    ...HARDENING,
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  return { name: "nginx.service", content, enable: true };
}

/** The nginx container's command: nginx in the foreground, and a reload every 6 hours for renewed certificates. */
export const NGINX_RELOADING = ["/bin/sh", "-c", "while :; do sleep 6h & wait $!; nginx -s reload; done & exec nginx -g 'daemon off;'"];

export function reverseProxyAssertions(o: ReverseProxyOptions, ctx: ModuleContext, s: ProxySite): Assertion[] {
  const a: Assertion[] = [];
  const scheme = new URL(ctx.fleet.coordinator.serverUrl).protocol;
  a.push({
    assertion: !(o.kind === "nginx" && o.tls === "internal"),
    path: "reverse-proxy.tls",
    expected: '"auto" (certificate files) or "off" with kind nginx; "internal" is Caddy\'s own CA',
    found: '"internal"',
    fix: "set reverse-proxy.kind: caddy, or reverse-proxy.tls: auto with reverse-proxy.certificate/certificateKey",
  });
  a.push({
    assertion: (o.tls === "off") === (scheme === "http:"),
    path: "reverse-proxy.tls",
    expected: o.tls === "off" ? "an http:// serverUrl when tls is off" : "an https:// serverUrl when the proxy terminates TLS",
    found: `tls: ${o.tls} with serverUrl ${ctx.fleet.coordinator.serverUrl}`,
    fix: o.tls === "off" ? "set reverse-proxy.tls: auto (or internal), or make coordinator.serverUrl http://" : "make coordinator.serverUrl https://, or set reverse-proxy.tls: off",
  });
  a.push({
    // Let's Encrypt issues IP certificates only on a short-lived profile, which Caddy 2.6 cannot ask for.
    assertion: !(o.kind === "caddy" && o.tls === "auto" && isIpv4(s.domain) && o.acmeDirectory === LETSENCRYPT_DIRECTORY),
    path: "reverse-proxy.domain",
    expected: "a DNS name for certificates from Let's Encrypt (tls: auto)",
    found: s.domain,
    fix: "use a DNS name in coordinator.serverUrl, or reverse-proxy.tls: internal, or reverse-proxy.acmeDirectory of a CA that issues IP certificates (RFC 8738)",
  });
  a.push({
    assertion: !(o.kind === "caddy" && (s.domain === "_" || s.domain.startsWith(".") || s.domain.startsWith("*"))),
    path: "reverse-proxy.domain",
    expected: "one host name for Caddy's site address (\"_\", \".name\" and wildcards are nginx server_name forms)",
    found: JSON.stringify(s.domain),
    fix: "set reverse-proxy.domain to the coordinator's public DNS name, or reverse-proxy.kind: nginx",
  });
  a.push({
    assertion: s.httpPort !== s.httpsPort,
    path: "reverse-proxy.httpPort",
    expected: `a port other than the HTTPS port ${s.httpsPort}`,
    found: String(s.httpPort),
    fix: "set reverse-proxy.httpPort: 80",
  });
  return a;
}

export const reverseProxyModule = defineModule({
  name: "reverse-proxy",
  description: "Caddy or nginx in front of Headscale: TLS, the control-protocol upgrade, and rate limits on login paths.",
  options: reverseProxyOptions,
  facts(o) {
    return { services: { proxy: o.enable ? o.kind : null } };
  },
  config(o, ctx): Contribution {
    if (!o.enable) return {};
    const s = siteOf(o, ctx);
    const assertions = reverseProxyAssertions(o, ctx, s);
    assertions.push({
      assertion: !(o.kind === "caddy" && o.rateLimit.enable === true),
      path: "reverse-proxy.rateLimit.enable",
      expected: "unset or false with kind caddy (Caddy as Debian and Docker ship it has no rate limiter)",
      found: "true",
      fix: "set reverse-proxy.kind: nginx (its limit_req limits /register/, /auth/ and /oidc/), or remove reverse-proxy.rateLimit.enable",
    });
    const docker = ctx.self.runtime === "docker";
    const configPath = o.kind === "caddy" ? CADDYFILE : NGINX_CONF;
    const hostPath = docker ? `${DOCKER_HOST_DIR}/${configPath.split("/").pop()}` : configPath;
    const files: FileSpec[] = [
      {
        path: hostPath,
        content: o.kind === "caddy" ? renderCaddyfile(s) : renderNginxConf(s),
        mode: "0644",
        owner: "root",
        group: "root",
      },
    ];
    const inbound: InboundRule[] = [
      { proto: "tcp", port: s.httpPort, from: [], owner: "reverse-proxy", comment: `${o.kind} HTTP (redirect, captive-portal check)` },
    ];
    if (s.tls !== "off") inbound.push({ proto: "tcp", port: s.httpsPort, from: [], owner: "reverse-proxy", comment: `${o.kind} HTTPS to Headscale` });
    const probes: HealthProbe[] = [
      {
        name: "reverse-proxy-health",
        kind: "http",
        url: `${s.tls === "off" ? "http" : "https"}://${s.domain}:${s.tls === "off" ? s.httpPort : s.httpsPort}/health`,
        expectStatus: 200,
        ...(s.tls === "internal" ? { insecure: true } : {}),
      },
    ];
    if (docker) {
      const container: ContainerSpec = {
        name: o.kind,
        image: o.image !== "" ? o.image : DEFAULT_IMAGE[o.kind],
        ports: inbound.map((r) => ({ internal: r.port, external: r.port, protocol: "tcp" as const })),
        // nginx reads certificates from the host (certbot's /etc/letsencrypt keeps
        // live/ as symlinks into archive/, so the whole tree is mounted, read-only).
        volumes: o.kind === "caddy" ? [{ name: "caddy-data", containerPath: "/data" }] : certificateMounts(s),
        env: {},
        // nginx reads its certificate once: reload every 6 hours so a renewed one (certbot on the host) is served.
        command: o.kind === "caddy" ? ["caddy", "run", "--config", CADDYFILE, "--adapter", "caddyfile"] : NGINX_RELOADING,
        uploads: [{ containerPath: configPath, source: hostPath, secret: false }],
        restart: "unless-stopped",
        healthcheck:
          o.kind === "caddy"
            ? { test: ["CMD", "caddy", "validate", "--config", CADDYFILE, "--adapter", "caddyfile"], interval: "60s", timeout: "10s", retries: 3 }
            : { test: ["CMD", "nginx", "-t", "-q"], interval: "60s", timeout: "10s", retries: 3 },
      };
      if (!s.certbot) return { files, inbound, containers: [container], probes, assertions };
      // certbot on the docker host: the container serves its webroot and reads the links and certbot's files (bind mounts).
      files.push({ path: CERTBOT_SCRIPT, content: renderCertbotScript(s), mode: "0755", owner: "root", group: "root" });
      return { files, inbound, containers: [container], units: certificateUnits(s), packages: ["certbot", "openssl"], probes, assertions };
    }
    if (s.certbot) files.push({ path: CERTBOT_SCRIPT, content: renderCertbotScript(s), mode: "0755", owner: "root", group: "root" });
    return {
      files,
      inbound,
      units: o.kind === "caddy" ? [caddyUnit()] : [nginxUnit(s.certbot), ...(s.certbot ? certificateUnits(s) : [])],
      packages: s.certbot ? ["nginx", "certbot", "openssl"] : [o.kind],
      probes,
      assertions,
    };
  },
});

/** Host directories an nginx container needs for its certificate and key (a name starting with / is a bind mount). */
function certificateMounts(s: { tls: string; certificate: string; certificateKey: string; certbot: boolean }): ContainerSpec["volumes"] {
  if (s.tls === "off") return [];
  // The links in TLS_DIR/<domain> point into /etc/letsencrypt/live (or at the placeholder beside them): both trees are mounted.
  if (s.certbot) return [ACME_WEBROOT, "/etc/letsencrypt", TLS_DIR].sort().map((d) => ({ name: d, containerPath: d }));
  const dirs = new Set(
    [s.certificate, s.certificateKey].map((f) => (f.startsWith("/etc/letsencrypt/") ? "/etc/letsencrypt" : f.slice(0, f.lastIndexOf("/")) || "/")),
  );
  // certbot --webroot on the host writes its http-01 answers where the container's nginx serves them.
  if (s.tls === "auto") dirs.add(ACME_WEBROOT);
  return [...dirs].sort().map((d) => ({ name: d, containerPath: d }));
}
