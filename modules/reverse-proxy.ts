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
import { absPath, acmeEmail as acmeEmailSchema, proxyDomain } from "../core/freetext.ts";
import { loopbackOf } from "./derp.ts";

export const reverseProxyOptions = z
  .object({
    enable: z.boolean().default(false).describe("Run a reverse proxy in front of Headscale on this host."),
    kind: z.enum(["caddy", "nginx"]).default("caddy").describe("`caddy` (certificates by itself) or `nginx` (certificates from files)."),
    tls: z
      .enum(["auto", "internal", "off"])
      .default("auto")
      .describe("`auto`: Caddy's ACME / nginx's certificate files; `internal`: Caddy's own CA (the lab); `off`: plain HTTP."),
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
    acmeEmail: acmeEmailSchema.default("").describe("Contact address for the ACME account (Caddy, tls: auto)."),
    certificate: absPath("reverse-proxy.certificate", "/etc/ssl/hs/fullchain.pem", true)
      .default("")
      .describe("nginx: certificate chain file; \"\" means /etc/letsencrypt/live/<domain>/fullchain.pem (certbot's layout)."),
    certificateKey: absPath("reverse-proxy.certificateKey", "/etc/ssl/hs/privkey.pem", true)
      .default("")
      .describe("nginx: private key file; \"\" means /etc/letsencrypt/live/<domain>/privkey.pem."),
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
      .describe("Container image (docker runtime); \"\" pins the official caddy or nginx image."),
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
}

export function siteOf(o: ReverseProxyOptions, ctx: ModuleContext): ProxySite {
  const u = new URL(ctx.fleet.coordinator.serverUrl);
  const domain = o.domain !== "" ? o.domain : u.hostname;
  const httpsPort = o.httpsPort !== 0 ? o.httpsPort : u.port ? Number(u.port) : 443;
  return {
    domain,
    upstream: o.upstream !== "" ? o.upstream : upstreamOf(ctx),
    httpPort: o.httpPort,
    httpsPort,
    tls: o.tls,
    acmeEmail: o.acmeEmail,
    certificate: o.certificate !== "" ? o.certificate : `/etc/letsencrypt/live/${domain}/fullchain.pem`,
    certificateKey: o.certificateKey !== "" ? o.certificateKey : `/etc/letsencrypt/live/${domain}/privkey.pem`,
    rateLimit: { enable: o.rateLimit.enable ?? o.kind === "nginx", perMinute: o.rateLimit.perMinute, burst: o.rateLimit.burst },
    hstsMaxAge: o.hstsMaxAge,
    dockerDns: ctx.self.runtime === "docker" && o.upstream === "",
  };
}

function upstreamOf(ctx: ModuleContext): string {
  const coord = ctx.hosts[ctx.fleet.coordinator.host];
  const listen = coord?.config.headscale.listenAddr ?? "127.0.0.1:8080";
  if (ctx.self.runtime === "docker") return `headscale:${listen.slice(listen.lastIndexOf(":") + 1)}`;
  return loopbackOf(listen);
}

/** The Caddyfile. Caddy's reverse_proxy passes any Upgrade (not only websocket) and streams. */
export function renderCaddyfile(s: ProxySite): string {
  const lines: string[] = [
    "# Rendered by meshfleet (modules/reverse-proxy.ts); edits are overwritten.",
    "# No rate limit on /register/, /auth/, /oidc/: Caddy's stock build has none (reverse-proxy.kind: nginx has one).",
  ];
  const global: string[] = [];
  if (s.acmeEmail !== "" && s.tls === "auto") global.push(`\temail ${s.acmeEmail}`);
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
    "    location / {",
    `        return 301 https://$host${s.httpsPort === 443 ? "" : `:${s.httpsPort}`}$request_uri;`,
    "    }",
    "}",
    "",
    "server {",
    // `http2` on the listen line: Debian bookworm's nginx 1.22 predates the `http2 on;` directive.
    `    listen ${s.httpsPort} ssl http2;`,
    `    listen [::]:${s.httpsPort} ssl http2;`,
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

function nginxUnit(): UnitSpec {
  const content = [
    "[Unit]",
    "Description=nginx reverse proxy for Headscale (meshfleet)",
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    "Type=forking",
    "PIDFile=/run/nginx.pid",
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
    assertion: !(o.kind === "caddy" && o.tls === "auto" && /^\d+\.\d+\.\d+\.\d+$/.test(s.domain)),
    path: "reverse-proxy.domain",
    expected: "a DNS name for ACME certificates (tls: auto)",
    found: s.domain,
    fix: "use a DNS name in coordinator.serverUrl, or reverse-proxy.tls: internal",
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
      return { files, inbound, containers: [container], probes, assertions };
    }
    return {
      files,
      inbound,
      units: [o.kind === "caddy" ? caddyUnit() : nginxUnit()],
      packages: [o.kind],
      probes,
      assertions,
    };
  },
});

/** Host directories an nginx container needs for its certificate and key (a name starting with / is a bind mount). */
function certificateMounts(s: { tls: string; certificate: string; certificateKey: string }): ContainerSpec["volumes"] {
  if (s.tls === "off") return [];
  const dirs = new Set(
    [s.certificate, s.certificateKey].map((f) => (f.startsWith("/etc/letsencrypt/") ? "/etc/letsencrypt" : f.slice(0, f.lastIndexOf("/")) || "/")),
  );
  return [...dirs].sort().map((d) => ({ name: d, containerPath: d }));
}
