/**
 * The Headscale coordinator (0.29.x, 0.28.x): its config.yaml, the policy file, the
 * DERP map file, the key files (as secret references) and a hardened unit or
 * a container. Keys and checks follow hscontrol/types/config.go of 0.29.2; where
 * 0.28 reads other keys, coordinator.headscaleVersion picks them (headscale-versions.ts).
 */
import { parse as parseYaml, stringify } from "yaml";
import { z } from "zod";
import { absPath, sslmodeText } from "../core/freetext.ts";
import { defineModule, type Assertion, type Contribution, type ModuleContext } from "../core/module.ts";
import type { ContainerSpec, DerpRegion, FileSpec, HealthProbe, InboundRule, UnitSpec } from "../core/types.ts";
import { duration, parseCidr, port } from "../core/schema-types.ts";
import { policyForRelease, renderedRelease, versionAssertions } from "./headscale-versions.ts";
import { nodeExpiryChecks } from "./headscale-expiry.ts";
import { adoptAssertions, adoptOptions, keyPathsOf, writesKeys } from "./headscale-adopt.ts";
import { databaseGuardFiles, GUARD_UNIT_LINE, PG_LOCAL_UNIT_LINES, pgSetupFiles, pgSetupUnit, postgresAssertions } from "./headscale-postgres.ts";
import { backupAssertions, backupFiles, backupInputOf, backupOptions, backupPackages, backupUnits } from "./headscale-backup.ts";
import { DEFAULT_DOCKER_SUBNET, dockerSubnetAssertions, trustedProxiesOf } from "./docker-network.ts";
import { derpMapFile, derpRegionsOf, derperRegionsOf, loopbackOf, regionIdOf, type DerpOptions } from "./derp.ts";

const listenAddr = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/, { message: "host:port, e.g. 127.0.0.1:8080 (an empty host means every address)" });

export const headscaleOptions = z
  .object({
    enable: z.boolean().default(false).describe("Run the Headscale coordinator on this host (it must be fleet.yaml coordinator.host)."),
    package: absPath("headscale.package", "/usr/local/bin/headscale").default("/usr/local/bin/headscale").describe("Path of the headscale binary (systemd runtime)."),
    image: z
      .string()
      .default("")
      .describe("Container image (docker runtime): repo:tag, repo@sha256:<digest>, or the id (sha256:…) of an image built on the host; \"\" pins docker.io/headscale/headscale to fleet.yaml coordinator.headscaleVersion."),
    listenAddr: listenAddr.default("127.0.0.1:8080").describe("HTTP listener; loopback behind the reverse proxy."),
    metricsListenAddr: z
      .union([listenAddr, z.literal("")])
      .default("127.0.0.1:9090")
      .describe("/metrics and /debug listener; \"\" disables it. Keep it private."),
    grpcListenAddr: listenAddr.default("127.0.0.1:50443").describe("gRPC listener (remote CLI); the local CLI uses the unix socket."),
    openFirewall: z.boolean().default(false).describe("Open listenAddr's port publicly (only without a reverse proxy)."),
    trustedProxies: z
      .array(z.string())
      .default(["127.0.0.1/32", "::1/128"])
      .describe("CIDRs whose X-Forwarded-For/X-Real-IP Headscale believes (the local reverse proxy). On the docker runtime headscale.dockerSubnet is added: the proxy's container reaches headscale from there."),
    dockerSubnet: z
      .string()
      .default(DEFAULT_DOCKER_SUBNET)
      .describe("Docker runtime: the IPv4 subnet of the host's compose network (headscale, the reverse proxy), fixed so headscale can trust the proxy's container (trusted_proxies). It must not overlap the tailnet's prefix or any LAN or advertised route of the fleet."),
    database: z
      .object({
        type: z.enum(["sqlite", "postgres"]).default("sqlite").describe("SQLite (recommended upstream) or PostgreSQL."),
        sqlitePath: absPath("headscale.database.sqlitePath", "/var/lib/headscale/db.sqlite").default("/var/lib/headscale/db.sqlite").describe("SQLite database file."),
        writeAheadLog: z.boolean().default(true).describe("SQLite WAL mode."),
        startEmpty: z
          .boolean()
          .default(false)
          .describe(
            "Let headscale start on an empty database after database.type changed. Off, headscale does not start on Postgres while a SQLite database is at sqlitePath, nor on SQLite with no database where Postgres held its state: it would come up with no nodes and every client would have to log in again. meshfleet does not migrate SQLite to Postgres (headscale has no supported path; docs/backup.md gives the steps by hand).",
          ),
        postgres: z
          .object({
            host: z.string().default("localhost").describe("PostgreSQL host (or a unix socket directory)."),
            port: port.default(5432).describe("PostgreSQL port."),
            name: z.string().default("headscale").describe("Database name."),
            user: z.string().default("headscale").describe("Database user."),
            ssl: z.union([z.boolean(), sslmodeText]).default(false).describe("false, true (require) or a libpq sslmode."),
            maxOpenConns: z.number().int().min(1).default(10).describe("Connection pool size."),
            local: z
              .boolean()
              .default(false)
              .describe(
                "Run PostgreSQL on the coordinator itself (Debian's postgresql package, installed by the deploy): a oneshot unit before headscale (headscale-postgres-setup.service) creates the role `user` and the database `name` when missing and sets the role's password from the stack secret, read from the 0600 password file by root and given to psql on its standard input. host must then be this host (localhost) and port 5432. Off: headscale uses a PostgreSQL you run.",
              ),
          })
          .strict()
          .default({ host: "localhost", port: 5432, name: "headscale", user: "headscale", ssl: false, maxOpenConns: 10, local: false })
          .describe("PostgreSQL settings; the password comes from the stack secret meshfleet:headscalePostgresPassword (a 0600 libpq password file named by PGPASSFILE, on both runtimes: no quoting of the password anywhere)."),
      })
      .strict()
      .default({
        type: "sqlite",
        sqlitePath: "/var/lib/headscale/db.sqlite",
        writeAheadLog: true,
        startEmpty: false,
        postgres: { host: "localhost", port: 5432, name: "headscale", user: "headscale", ssl: false, maxOpenConns: 10, local: false },
      })
      .describe("Where Headscale keeps its state."),
    ephemeralInactivityTimeout: duration
      .default("30m")
      .describe("How long an inactive ephemeral node lives (Headscale requires more than 65s)."),
    derpAutoUpdate: z.boolean().default(true).describe("Re-read the DERP map sources periodically."),
    derpUpdateFrequency: duration.default("3h").describe("How often to re-read them."),
    logLevel: z.enum(["panic", "fatal", "error", "warn", "info", "debug", "trace"]).default("info").describe("Log level."),
    logFormat: z.enum(["text", "json"]).default("text").describe("Log format."),
    oidc: z
      .object({
        enable: z.boolean().default(false).describe("Let users log in through an OpenID Connect provider; the client secret comes from the stack secret meshfleet:headscaleOidcClientSecret into a 0600 file (client_secret_path), never from git."),
        issuer: z.string().default("").describe("The provider's issuer URL (https://...), as in its /.well-known/openid-configuration."),
        clientId: z.string().regex(/^[^\s]*$/, "no spaces or line breaks").default("").describe("The client id the provider gave headscale."),
        scope: z.array(z.string().regex(/^[\x21-\x7e]+$/, "one scope token")).default(["openid", "profile", "email"]).describe("Scopes asked for; must include openid."),
        allowedDomains: z.array(z.string()).default([]).describe("Only users whose e-mail is in one of these domains may log in (empty: any)."),
        allowedGroups: z.array(z.string()).default([]).describe("Only members of these provider groups may log in (needs the groups claim; empty: any)."),
        allowedUsers: z.array(z.string()).default([]).describe("Only these e-mail addresses may log in (empty: any)."),
        emailVerifiedRequired: z.boolean().default(true).describe("Take only verified e-mail addresses from the provider."),
        pkce: z.boolean().default(true).describe("Use PKCE (S256) in the login flow."),
        useExpiryFromToken: z.boolean().default(false).describe("Expire OIDC nodes with the provider's token instead of the fleet's node expiry (frequent re-logins)."),
        onlyStartIfAvailable: z.boolean().default(true).describe("Headscale waits for the provider at start instead of starting without OIDC."),
        extraParams: z.record(z.string(), z.string()).default({}).describe("Extra parameters for the provider's authorization endpoint (e.g. domain_hint)."),
      })
      .strict()
      .default({
        enable: false, issuer: "", clientId: "", scope: ["openid", "profile", "email"], allowedDomains: [], allowedGroups: [], allowedUsers: [],
        emailVerifiedRequired: true, pkce: true, useExpiryFromToken: false, onlyStartIfAvailable: true, extraParams: {},
      })
      .describe("OpenID Connect login (headscale's oidc section)."),
    backup: backupOptions,
    adopt: adoptOptions,
    extraSettings: z
      .record(z.string(), z.any())
      .default({})
      .describe("Extra config.yaml keys, deep-merged over the rendered ones (an escape hatch; legacy keys are rejected)."),
  })
  .strict();

export type HeadscaleOptions = z.output<typeof headscaleOptions>;

declare module "../core/module.ts" {
  interface ModuleOptions {
    headscale: HeadscaleOptions;
  }
}

/** Paths Headscale reads, as seen by the headscale process (host or container). */
export const HS = {
  configDir: "/etc/headscale",
  config: "/etc/headscale/config.yaml",
  policy: "/etc/headscale/policy.hujson",
  derpMap: "/etc/headscale/derp.yaml",
  stateDir: "/var/lib/headscale",
  noiseKey: "/var/lib/headscale/noise_private.key",
  derpKey: "/var/lib/headscale/derp_server_private.key",
  runDir: "/var/run/headscale",
  socket: "/var/run/headscale/headscale.sock",
  /** The Postgres password as a libpq password file (PGPASSFILE), never in a unit's or a container's environment. */
  pgpass: "/etc/headscale/pgpass",
  /** The OIDC client secret (oidc.client_secret_path), from the stack secret meshfleet:headscaleOidcClientSecret. */
  oidcSecret: "/var/lib/headscale/oidc_client_secret",
} as const;

/** headscale's database as a rendered config.yaml names it; `pgpass` is where its password file is on the host. */
export type HeadscaleDatabase =
  | { type: "sqlite"; path: string }
  | { type: "postgres"; host: string; port: number; name: string; user: string; sslmode: string; pgpass: string };

/**
 * The database section of a rendered config.yaml (what backup, restore, the
 * docker runtime's image-switch guard and a coordinator move need), with
 * headscale's own defaults for what it leaves out; the Postgres sslmode as
 * the backup script reads it (modules/headscale-backup.ts backupInputOf).
 */
export function headscaleDatabaseOf(configYaml: string, pgpass: string): HeadscaleDatabase {
  type Cfg = { database?: { type?: string; sqlite?: { path?: string }; postgres?: { host?: string; port?: number; name?: string; user?: string; ssl?: boolean | string } } };
  const d = ((parseYaml(configYaml) ?? {}) as Cfg).database ?? {};
  if (d.type !== "postgres") return { type: "sqlite", path: d.sqlite?.path ?? `${HS.stateDir}/db.sqlite` };
  const pg = d.postgres ?? {};
  return {
    type: "postgres",
    host: pg.host ?? "localhost",
    port: pg.port ?? 5432,
    name: pg.name ?? "headscale",
    user: pg.user ?? "headscale",
    sslmode: pg.ssl === true ? "require" : pg.ssl === false || pg.ssl === undefined ? "disable" : pg.ssl,
    pgpass,
  };
}

/** The secret the OIDC client secret file is filled from (stack secret meshfleet:headscaleOidcClientSecret). */
export const OIDC_SECRET_REF = "headscale-oidc-client-secret";

/** Where the docker runtime keeps the files on the host before uploading them. */
export const DOCKER_HOST_DIR = "/opt/meshfleet/headscale";

/** Keys Headscale 0.29 refuses to start with (config.go deprecator fatals); 0.28's list is in headscale-versions.ts. */
export const LEGACY_KEYS = renderedRelease("0.29.0").legacyKeys;

export interface HeadscaleRenderInput {
  serverUrl: string;
  opts: HeadscaleOptions;
  fleet: ModuleContext["fleet"];
  /** Embedded DERP relay settings, or null. */
  embedded: { regionId: number; regionCode: string; regionName: string; stunPort: number; ipv4?: string } | null;
  /** Regions of the DERP map file (`derp.paths`); none means no file. */
  fileRegions: DerpRegion[];
  /** Listeners bind inside a container (0.0.0.0) when the docker runtime publishes them. */
  inContainer: boolean;
}

function bindAll(listen: string): string {
  const p = listen.slice(listen.lastIndexOf(":") + 1);
  return `0.0.0.0:${p}`;
}

/** config.yaml as an object, keys in a fixed order (YAML output follows insertion order). */
export function headscaleConfigObject(i: HeadscaleRenderInput): Record<string, unknown> {
  const { opts, fleet } = i;
  const addr = (a: string) => (i.inContainer && a !== "" ? bindAll(a) : a);
  const db =
    opts.database.type === "sqlite"
      ? { type: "sqlite", sqlite: { path: opts.database.sqlitePath, write_ahead_log: opts.database.writeAheadLog } }
      : {
          type: "postgres",
          postgres: {
            host: opts.database.postgres.host,
            port: opts.database.postgres.port,
            name: opts.database.postgres.name,
            user: opts.database.postgres.user,
            ssl: opts.database.postgres.ssl,
            max_open_conns: opts.database.postgres.maxOpenConns,
          },
        };
  const split: Record<string, string[]> = {};
  const keys = keyPathsOf(opts.adopt, { noise: HS.noiseKey, derp: HS.derpKey });
  for (const k of Object.keys(fleet.dns.nameservers.split).sort()) split[k] = fleet.dns.nameservers.split[k];
  // 0.28 has no trusted_proxies and no node section; its ephemeral key is top-level.
  const v028 = renderedRelease(fleet.coordinator.headscaleVersion).keys === "0.28";
  const cfg: Record<string, unknown> = {
    server_url: i.serverUrl,
    listen_addr: addr(opts.listenAddr),
    metrics_listen_addr: addr(opts.metricsListenAddr),
    grpc_listen_addr: addr(opts.grpcListenAddr),
    grpc_allow_insecure: false,
    ...(v028 ? {} : { trusted_proxies: trustedProxiesOf(opts.trustedProxies, i.inContainer ? opts.dockerSubnet : null) }),
    noise: { private_key_path: keys.noise },
    prefixes: { v4: fleet.prefixes.v4, v6: fleet.prefixes.v6, allocation: fleet.prefixes.allocation },
    derp: {
      server: i.embedded
        ? {
            enabled: true,
            region_id: i.embedded.regionId,
            region_code: i.embedded.regionCode,
            region_name: i.embedded.regionName,
            verify_clients: true,
            stun_listen_addr: `0.0.0.0:${i.embedded.stunPort}`,
            private_key_path: keys.derp,
            automatically_add_embedded_derp_region: true,
            ...(i.embedded.ipv4 ? { ipv4: i.embedded.ipv4 } : {}),
          }
        : { enabled: false },
      // Fetched at start, and a failed fetch is fatal: keep [] for offline fleets.
      urls: fleet.derp.publicUrls,
      paths: i.fileRegions.length > 0 ? [HS.derpMap] : [],
      auto_update_enabled: opts.derpAutoUpdate,
      update_frequency: opts.derpUpdateFrequency,
    },
    // Otherwise every CLI call asks GitHub for a newer release.
    disable_check_updates: true,
    // node.expiry only when set: headscale's default is "0" (never), and tagged nodes never expire either way.
    ...(v028
      ? { ephemeral_node_inactivity_timeout: opts.ephemeralInactivityTimeout }
      : { node: { ...(fleet.nodeExpiry && fleet.nodeExpiry.after !== "0" ? { expiry: fleet.nodeExpiry.after } : {}), ephemeral: { inactivity_timeout: opts.ephemeralInactivityTimeout } } }),
    database: db,
    // TLS ends at the reverse proxy.
    tls_cert_path: "",
    tls_key_path: "",
    log: { level: opts.logLevel, format: opts.logFormat },
    policy: { mode: "file", path: HS.policy },
    dns: {
      magic_dns: fleet.dns.magicDns,
      base_domain: fleet.dns.baseDomain,
      override_local_dns: fleet.dns.overrideLocalDns,
      nameservers: { global: fleet.dns.nameservers.global, split },
      search_domains: [],
      extra_records: fleet.dns.extraRecords.map((r) => ({ name: r.name, type: r.type, value: r.value })),
    },
    unix_socket: HS.socket,
    // Upstream's default "0o770" does not parse and silently falls back to 0700.
    unix_socket_permission: "0770",
    logtail: { enabled: false },
  };
  // 0.28 expires OIDC nodes after oidc.expiry (default 180d); 0.29 after node.expiry (default never).
  if (opts.oidc.enable) cfg.oidc = { ...oidcConfig(opts.oidc), ...(v028 ? { expiry: fleet.nodeExpiry?.after ?? "0" } : {}) };
  return deepMerge(cfg, opts.extraSettings);
}

/** headscale 0.29's oidc section; the secret is only ever a path. */
export function oidcConfig(o: HeadscaleOptions["oidc"]): Record<string, unknown> {
  return {
    only_start_if_oidc_is_available: o.onlyStartIfAvailable,
    issuer: o.issuer,
    client_id: o.clientId,
    client_secret_path: HS.oidcSecret,
    scope: o.scope,
    email_verified_required: o.emailVerifiedRequired,
    ...(Object.keys(o.extraParams).length > 0 ? { extra_params: o.extraParams } : {}),
    allowed_domains: o.allowedDomains,
    allowed_users: o.allowedUsers,
    allowed_groups: o.allowedGroups,
    use_expiry_from_token: o.useExpiryFromToken,
    pkce: { enabled: o.pkce, method: "S256" },
  };
}

export function renderHeadscaleConfig(i: HeadscaleRenderInput): string {
  return "# Rendered by meshfleet (modules/headscale.ts); edits are overwritten.\n" + stringify(headscaleConfigObject(i), { lineWidth: 0 });
}

export function renderDerpMap(regions: DerpRegion[]): string {
  return "# Rendered by meshfleet (modules/derp.ts). Keys are lowercase on purpose: Headscale reads this with yaml.v3.\n" + stringify(derpMapFile(regions), { lineWidth: 0 });
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlain(b) && isPlain(v) ? deepMerge(b, v) : v;
  }
  return out;
}

function isPlain(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function hasKey(obj: Record<string, unknown>, dotted: string): boolean {
  let cur: unknown = obj;
  for (const part of dotted.split(".")) {
    if (!isPlain(cur) || !(part in cur)) return false;
    cur = cur[part];
  }
  return true;
}

function seconds(d: string): number {
  const n = Number(d.slice(0, -1));
  return n * { s: 1, m: 60, h: 3600, d: 86400 }[d.slice(-1) as "s" | "m" | "h" | "d"];
}

/**
 * Headscale's isSafeServerURL: the same-domain check compares the hostname,
 * the suffix check splits `url.Host` (with the port!) on dots, so
 * `https://hs.example.com:8443` passes with base_domain example.com.
 */
export function serverUrlConflict(serverUrl: string, baseDomain: string): "same" | "suffix" | null {
  if (baseDomain === "") return null;
  let u: URL;
  try {
    u = new URL(serverUrl);
  } catch {
    return null;
  }
  if (u.hostname === baseDomain) return "same";
  const s = u.host.split(".");
  const b = baseDomain.split(".");
  if (s.length <= b.length) return null;
  for (let k = 0; k < b.length; k++) if (s[s.length - k - 1] !== b[b.length - k - 1]) return null;
  return "suffix";
}

/** The oidc options headscale would refuse or silently mishandle, and a client secret written into git. */
export function oidcAssertions(o: HeadscaleOptions): Assertion[] {
  const c = o.oidc;
  const a: Assertion[] = [];
  // A legacy oidc key is reported by the legacy-key check alone.
  const inGit = hasKey(o.extraSettings, "oidc") && !LEGACY_KEYS.some((k) => k.startsWith("oidc.") && hasKey(o.extraSettings, k));
  a.push({
    assertion: !inGit,
    path: "headscale.extraSettings.oidc",
    expected: "OIDC through the typed headscale.oidc options (the client secret from the stack's secrets, never from git)",
    found: "an oidc section in extraSettings",
    fix: "move it to headscale.oidc (enable, issuer, clientId, ...) and run `pulumi config set --secret meshfleet:headscaleOidcClientSecret <secret>`",
  });
  if (!c.enable) return a;
  let issuer: URL | null = null;
  try {
    issuer = new URL(c.issuer);
  } catch {
    issuer = null;
  }
  a.push({
    assertion: issuer !== null && issuer.protocol === "https:" && !issuer.search && !issuer.hash,
    path: "headscale.oidc.issuer",
    expected: "the provider's https:// issuer URL (no query or fragment)",
    found: JSON.stringify(c.issuer),
    fix: "set headscale.oidc.issuer to the issuer your provider's /.well-known/openid-configuration names",
  });
  a.push({
    assertion: c.clientId !== "",
    path: "headscale.oidc.clientId",
    expected: "the client id the provider gave headscale",
    found: '""',
    fix: "register headscale as a client at the provider (redirect URL: <serverUrl>/oidc/callback) and set headscale.oidc.clientId",
  });
  a.push({
    assertion: c.scope.includes("openid"),
    path: "headscale.oidc.scope",
    expected: 'a list that includes "openid" (without it there is no ID token)',
    found: JSON.stringify(c.scope),
    fix: `set headscale.oidc.scope: [${["openid", ...c.scope.filter((s) => s !== "openid")].join(", ")}]`,
  });
  for (const [i, d] of c.allowedDomains.entries())
    a.push({
      assertion: /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i.test(d),
      path: `headscale.oidc.allowedDomains[${i}]`,
      expected: "an e-mail domain such as example.com (no @, no scheme)",
      found: JSON.stringify(d.slice(0, 80)),
      fix: `set it to ${JSON.stringify(d.replace(/^.*@/, "").replace(/^https?:\/\//, "").replace(/\/.*$/, "") || "example.com")}`,
    });
  for (const [i, u] of c.allowedUsers.entries())
    a.push({
      assertion: /^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(u),
      path: `headscale.oidc.allowedUsers[${i}]`,
      expected: "an e-mail address (headscale matches users by e-mail)",
      found: JSON.stringify(u.slice(0, 80)),
      fix: "write the user's e-mail address, e.g. alice@example.com",
    });
  return a;
}

/** fleet.yaml's oidcUsers against the coordinator's OIDC: people who can log in, and not also a user meshfleet creates. */
export function oidcUserAssertions(o: HeadscaleOptions, f: ModuleContext["fleet"], ff: string): Assertion[] {
  const c = o.oidc;
  const a: Assertion[] = [];
  if (f.oidcUsers.length === 0) return a;
  a.push({
    assertion: c.enable,
    file: ff,
    path: "oidcUsers",
    expected: "people who log in through OpenID Connect, which the coordinator offers (headscale.oidc.enable)",
    found: `${f.oidcUsers.length} address${f.oidcUsers.length === 1 ? "" : "es"} with headscale.oidc.enable: false on ${f.coordinator.host}`,
    fix: `set up headscale.oidc on ${f.coordinator.host} (docs/oidc.md), or remove oidcUsers`,
  });
  f.oidcUsers.forEach((e, i) => {
    a.push({
      assertion: !f.users.includes(e),
      file: ff,
      path: `oidcUsers[${i}]`,
      expected: "a person meshfleet does not also create (not in users)",
      found: `${JSON.stringify(e)}, also in users: headscale would find two users for the token ${e}`,
      fix: `remove ${e} from users (its OIDC login creates it)`,
    });
    if (!c.enable) return;
    const domain = e.slice(e.indexOf("@") + 1);
    const refused = c.allowedUsers.length > 0 && !c.allowedUsers.includes(e) ? "headscale.oidc.allowedUsers" : c.allowedDomains.length > 0 && !c.allowedDomains.includes(domain) ? "headscale.oidc.allowedDomains" : "";
    a.push({
      assertion: refused === "",
      file: ff,
      path: `oidcUsers[${i}]`,
      expected: `a person headscale lets log in (headscale.oidc.allowedUsers and allowedDomains on ${f.coordinator.host})`,
      found: `${JSON.stringify(e)}, which ${refused} leaves out`,
      fix: refused === "headscale.oidc.allowedUsers" ? `add ${e} to headscale.oidc.allowedUsers, or remove it here` : `add ${domain} to headscale.oidc.allowedDomains, or remove it here`,
    });
  });
  return a;
}

export function headscaleAssertions(o: HeadscaleOptions, ctx: ModuleContext, embedded: boolean): Assertion[] {
  const f = ctx.fleet;
  const ff = ctx.fleetFile;
  const a: Assertion[] = [...oidcAssertions(o), ...oidcUserAssertions(o, f, ff), ...versionAssertions(f, ff)];
  a.push({
    assertion: ctx.host === f.coordinator.host,
    path: "headscale.enable",
    expected: `Headscale only on the coordinator (fleet.yaml coordinator.host: ${f.coordinator.host})`,
    found: `headscale.enable: true on ${ctx.host}`,
    fix: `set coordinator.host: ${ctx.host} in ${ff}, or headscale.enable: false here`,
  });
  const conflict = serverUrlConflict(f.coordinator.serverUrl, f.dns.baseDomain);
  a.push({
    assertion: conflict === null,
    file: ff,
    path: "dns.baseDomain",
    expected:
      "a MagicDNS domain that is not the server URL's host and does not contain it (clients would resolve the coordinator inside the tailnet and lose it)",
    found: `baseDomain ${JSON.stringify(f.dns.baseDomain)} with serverUrl ${f.coordinator.serverUrl}${conflict === "same" ? " (same host)" : conflict === "suffix" ? " (the server is inside it)" : ""}`,
    fix: "set dns.baseDomain to a domain of its own, e.g. tailnet.internal or ts.<your domain>",
  });
  a.push({
    assertion: !f.dns.magicDns || f.dns.baseDomain !== "",
    file: ff,
    path: "dns.baseDomain",
    expected: "a base domain when dns.magicDns is true",
    found: '""',
    fix: "set dns.baseDomain (e.g. tailnet.internal), or dns.magicDns: false",
  });
  a.push({
    assertion: !f.dns.overrideLocalDns || f.dns.nameservers.global.length > 0,
    file: ff,
    path: "dns.nameservers.global",
    expected: "at least one global nameserver when dns.overrideLocalDns is true",
    found: "[]",
    fix: "add resolvers to dns.nameservers.global (e.g. [1.1.1.1]), or set dns.overrideLocalDns: false",
  });
  const regions = derperRegionsOf(ctx).length + (embedded ? 1 : 0) + f.derp.publicUrls.length;
  a.push({
    assertion: regions > 0,
    file: ff,
    path: "derp",
    expected: 'at least one DERP region (Headscale exits with "initial DERPMap is empty")',
    found: "no host with derp.enable, no embedded relay and derp.publicUrls: []",
    fix: `set derp.enable: true on a public host (or derp.mode: embedded on ${f.coordinator.host}), or add derp.publicUrls in ${ff}`,
  });
  a.push({
    assertion: seconds(o.ephemeralInactivityTimeout) > 65,
    path: "headscale.ephemeralInactivityTimeout",
    expected: "more than 65s",
    found: o.ephemeralInactivityTimeout,
    fix: "set headscale.ephemeralInactivityTimeout: 30m",
  });
  o.trustedProxies.forEach((c, k) => {
    const p = parseCidr(c);
    a.push({
      assertion: p !== null && p.bits > 0,
      path: `headscale.trustedProxies[${k}]`,
      expected: "a CIDR narrower than /0, e.g. 127.0.0.1/32 (a bare address is an error in Headscale)",
      found: JSON.stringify(c),
      fix: p !== null
        ? "name the proxy's own address range"
        : parseCidr(`${c}/32`) !== null ? `write it as ${c}/32`
        : parseCidr(`${c}/128`) !== null ? `write it as ${c}/128`
        : "write the proxy's address as a CIDR, e.g. 127.0.0.1/32 (a name is not accepted)",
    });
  });
  const rel = renderedRelease(f.coordinator.headscaleVersion);
  for (const k of rel.legacyKeys) {
    a.push({
      assertion: !hasKey(o.extraSettings, k),
      path: `headscale.extraSettings.${k}`,
      expected: `no key Headscale ${rel.keys} rejects as legacy`,
      found: k,
      fix: `remove ${k} (see Headscale's config-example.yaml for its replacement)`,
    });
  }
  a.push({
    assertion: !(hasKey(o.extraSettings, "dns.extra_records_path") && f.dns.extraRecords.length > 0),
    path: "headscale.extraSettings.dns.extra_records_path",
    expected: "either dns.extraRecords in fleet.yaml or extra_records_path, not both",
    found: "both",
    fix: "move the records into one of them",
  });
  return a;
}

function unitFor(o: HeadscaleOptions): UnitSpec {
  const content = [
    "[Unit]",
    "Description=Headscale coordination server (meshfleet)",
    "Wants=network-online.target",
    "After=network-online.target",
    ...(localPostgres(o) ? PG_LOCAL_UNIT_LINES : []),
    "",
    "[Service]",
    "Type=simple",
    "User=headscale",
    "Group=headscale",
    // Refuses to start on an empty database after database.type changed (modules/headscale-postgres.ts).
    GUARD_UNIT_LINE,
    `ExecStart=${o.package} serve --config ${HS.config}`,
    "ExecReload=/bin/kill -HUP $MAINPID",
    "Restart=always",
    "RestartSec=5",
    ...(o.database.type === "postgres" ? [`Environment=PGPASSFILE=${HS.pgpass}`] : []),
    "StateDirectory=headscale",
    "StateDirectoryMode=0750",
    "RuntimeDirectory=headscale",
    "RuntimeDirectoryMode=0750",
    "ProtectSystem=strict",
    `ReadWritePaths=${HS.stateDir} ${HS.runDir}`,
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "NoNewPrivileges=yes",
    // Headscale binds high ports only (STUN 3478 included), so it needs no capability at all.
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "MemoryDenyWriteExecute=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "UMask=0077",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  return { name: "headscale.service", content, enable: true };
}

/** headscale.database.postgres.local in effect: Postgres, run on this host by the module. */
function localPostgres(o: HeadscaleOptions): boolean {
  return o.database.type === "postgres" && o.database.postgres.local;
}

function portOf(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(":") + 1));
}

export const headscaleModule = defineModule({
  name: "headscale",
  description: "The Headscale coordination server: config.yaml, policy, DERP map, keys, and its unit or container.",
  options: headscaleOptions,
  facts(o) {
    return { services: { headscale: o.enable } };
  },
  config(o, ctx): Contribution {
    if (!o.enable) return {};
    const derpOpts: DerpOptions = ctx.self.config.derp;
    const emb = derpOpts.enable && derpOpts.mode === "embedded" ? derpOpts : null;
    const fileRegions = derperRegionsOf(ctx);
    const docker = ctx.self.runtime === "docker";
    const config = renderHeadscaleConfig({
      serverUrl: ctx.fleet.coordinator.serverUrl,
      opts: o,
      fleet: ctx.fleet,
      embedded: emb
        ? {
            regionId: regionIdOf(emb, ctx),
            regionCode: ctx.fleet.derp.regionCode,
            regionName: ctx.fleet.derp.regionName,
            stunPort: emb.stunPort,
            ...(emb.ipv4 ? { ipv4: emb.ipv4 } : {}),
          }
        : null,
      fileRegions,
      inContainer: docker,
    });

    // In-process paths -> host paths: identical for systemd, under one folder for docker.
    const hostPath = (p: string) => (docker ? `${DOCKER_HOST_DIR}/${p.split("/").pop()}` : p);
    const owner = docker ? "root" : "headscale";
    const secretFile = (p: string, ref: string): FileSpec => ({
      path: hostPath(p), content: "", mode: "0600", owner, group: owner, secret: true, secretRef: ref,
    });
    const plain = (p: string, content: string): FileSpec => ({
      path: hostPath(p), content, mode: "0640", owner: "root", group: docker ? "root" : "headscale",
    });
    const inContainer: { containerPath: string; source: string; secret: boolean }[] = [];
    const files: FileSpec[] = [];
    const add = (f: FileSpec, containerPath: string) => {
      files.push(f);
      inContainer.push({ containerPath, source: f.path, secret: !!f.secretRef });
    };
    add(plain(HS.config, config), HS.config);
    add(plain(HS.policy, ctx.policyHuJson !== "" ? policyForRelease(ctx.policyHuJson, ctx.fleet.coordinator.headscaleVersion) : "{}\n"), HS.policy);
    if (fileRegions.length > 0) add(plain(HS.derpMap, renderDerpMap(fileRegions)), HS.derpMap);
    // An adopted key (headscale.adopt) stays as it is: no file, so the keySeed-derived key never replaces it.
    const ownKeys = writesKeys(o.adopt);
    if (ownKeys.noise) add(secretFile(HS.noiseKey, "noise-key"), HS.noiseKey);
    if (emb && ownKeys.derp) add(secretFile(HS.derpKey, "derp-key"), HS.derpKey);
    if (o.oidc.enable) add(secretFile(HS.oidcSecret, OIDC_SECRET_REF), HS.oidcSecret);
    // Postgres password: a libpq password file that headscale's driver (pgx) reads through PGPASSFILE, on
    // both runtimes: only that path is in the unit's or the container's environment, and the password is
    // never quoted for a shell or an EnvironmentFile (whose quoting and escapes would change it).
    if (o.database.type === "postgres") add(secretFile(HS.pgpass, "headscale-postgres-pgpass"), HS.pgpass);

    const health = loopbackOf(o.listenAddr);
    const probes: HealthProbe[] = [
      { name: "headscale-health", kind: "http", url: `http://${health}/health`, expectStatus: 200 },
    ];
    const inbound: InboundRule[] = o.openFirewall
      ? [{ proto: "tcp", port: portOf(o.listenAddr), from: [], owner: "headscale", comment: "Headscale HTTP (no proxy)" }]
      : [];
    if (emb) inbound.push({ proto: "udp", port: emb.stunPort, from: [], owner: "headscale", comment: "embedded DERP STUN" });

    const expiry = nodeExpiryChecks(ctx);
    const assertions = [
      ...headscaleAssertions(o, ctx, !!emb),
      ...expiry.assertions,
      ...backupAssertions(o.backup, docker),
      ...postgresAssertions({ type: o.database.type, postgres: o.database.postgres, docker }),
    ];
    // Adopted keys derive from nothing, so the snapshots keep a copy of them.
    const adoptedKeys = o.adopt.enable ? { noise: o.adopt.noisePrivateKeyPath, ...(o.adopt.derpPrivateKeyPath !== "" ? { derp: o.adopt.derpPrivateKeyPath } : {}) } : {};
    const bk = o.backup.enable && !docker ? backupInputOf(o, { config: HS.config, policy: HS.policy, pgpass: HS.pgpass }, adoptedKeys) : null;
    assertions.push(...adoptAssertions({
      adopt: o.adopt, docker, database: o.database, extraSettings: o.extraSettings, writable: [HS.stateDir, HS.runDir],
      written: [...files, ...(bk ? backupFiles(bk) : [])].map((f) => f.path),
    }));
    const fleet = { derpRegions: derpRegionsOf(ctx), users: ctx.fleet.users };

    if (docker) {
      assertions.push(...dockerSubnetAssertions(o.dockerSubnet, ctx));
      const published = (listen: string, internal: number) => {
        const host = listen.slice(0, listen.lastIndexOf(":"));
        return { internal, external: portOf(listen), protocol: "tcp" as const, ip: host === "" || host === "0.0.0.0" ? undefined : host };
      };
      const ports: ContainerSpec["ports"] = [published(o.listenAddr, portOf(o.listenAddr))];
      if (o.metricsListenAddr !== "") ports.push(published(o.metricsListenAddr, portOf(o.metricsListenAddr)));
      if (emb) ports.push({ internal: emb.stunPort, external: emb.stunPort, protocol: "udp" });
      for (const p of ports) if (p.ip === undefined) delete p.ip;
      const container: ContainerSpec = {
        name: "headscale",
        image: o.image !== "" ? o.image : `docker.io/headscale/headscale:${ctx.fleet.coordinator.headscaleVersion}`,
        ports,
        volumes: [{ name: "headscale-data", containerPath: HS.stateDir }],
        env: o.database.type === "postgres" ? { PGPASSFILE: HS.pgpass } : {},
        command: ["serve", "--config", HS.config],
        uploads: inContainer,
        restart: "unless-stopped",
        // The image is distroless: no shell, no curl; `headscale health` asks the server itself.
        healthcheck: { test: ["CMD", "headscale", "health"], interval: "30s", timeout: "5s", retries: 3 },
        subnet: o.dockerSubnet,
      };
      return { files, inbound, containers: [container], probes, assertions, warnings: expiry.warnings, fleet };
    }

    files.push({
      path: "/etc/sysusers.d/headscale.conf",
      content: `u headscale - "Headscale coordination server" ${HS.stateDir} /usr/sbin/nologin\n`,
      mode: "0644",
      owner: "root",
      group: "root",
    });
    const pgLocal = localPostgres(o);
    const packages = [...(bk ? backupPackages(bk) : []), ...(pgLocal ? ["postgresql"] : [])];
    return {
      files: [
        ...files,
        ...(bk ? backupFiles(bk) : []),
        ...databaseGuardFiles({ type: o.database.type, sqlitePath: o.database.sqlitePath, startEmpty: o.database.startEmpty }),
        ...(pgLocal ? pgSetupFiles({ name: o.database.postgres.name, user: o.database.postgres.user, pgpass: HS.pgpass }) : []),
      ],
      ...(packages.length ? { packages } : {}),
      inbound,
      // A new policy or DERP map only takes effect when headscale reloads it;
      // the unit names only config.yaml, so list every file it reads.
      units: [
        { ...unitFor(o), restartTriggers: files.filter((f) => !f.path.startsWith("/etc/sysusers.d/")).map((f) => f.path).sort() },
        ...(bk ? backupUnits(bk) : []),
        ...(pgLocal ? [pgSetupUnit(HS.pgpass)] : []),
      ],
      probes: [...probes, { name: "headscale-unit", kind: "unit-active", unit: "headscale.service" }],
      assertions,
      warnings: expiry.warnings,
      fleet,
    };
  },
});
