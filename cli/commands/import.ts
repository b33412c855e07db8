/**
 * `meshfleet import --from HOST | --from-dir DIR --out DIR`: take an existing
 * headscale into a fleet folder. Reads its config.yaml, its policy (HuJSON,
 * core/hujson.ts) and its users and nodes (`headscale users|nodes list -o
 * json`), and writes fleet.yaml (coordinator, users, prefixes, DNS, DERP
 * region, policy), the coordinator's host file (listeners, database, log,
 * DERP server, OIDC, `headscale.adopt` so that the deploy keeps the existing
 * Noise key, DERP key and database), the nodes list (for `check --nodes`)
 * and IMPORT.md: every config key, where it went or why it did not.
 *
 * Private keys and the database are never read: over SSH only their
 * metadata is (`stat`); secrets in config.yaml (the Postgres password, the
 * OIDC client secret, the CLI API key) are named, never copied. The source is
 * only read: nothing on the host changes, and nothing in --out is deleted
 * but a policy.hujson an earlier import wrote, when the policy now fits
 * fleet.yaml (--force).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Document, isScalar, parse as parseYaml, visit } from "yaml";
import { MeshfleetError, oneLine } from "../../core/diagnostics.ts";
import { HuJsonError, parseHuJson } from "../../core/hujson.ts";
import { LIMITS, parseYaml as loaderYaml } from "../../core/load.ts";
import { policySchema } from "../../core/policy/schema.ts";
import { email, userName } from "../../core/schema-types.ts";
import type { Diagnostic } from "../../core/types.ts";
import { flagHelp, parseArgs, UsageError, type Flag } from "../args.ts";
import type { Command } from "../command.ts";

const flags: Flag[] = [
  { name: "from", value: true, help: "the existing headscale's host: [user@]address[:port], reached over SSH with a pinned host key" },
  { name: "from-dir", value: true, help: "a copy of its /etc/headscale folder with users.json and nodes.json beside config.yaml (offline)" },
  { name: "out", value: true, help: "the fleet folder to write (default hosts/<stack>); must be empty or absent unless --force" },
  { name: "stack", value: true, help: "the stack: --out defaults to hosts/<stack>, SSH pins and key come from its stacks/Pulumi.<stack>.yaml" },
  { name: "name", value: true, help: "the coordinator's host name in the fleet (default coordinator)" },
  { name: "known-hosts", value: true, help: "known_hosts file holding HOST's pinned key (default: the stack's meshfleet:knownHostsPath)" },
  { name: "identity", value: true, help: "SSH private key file (default: the stack's meshfleet:sshPrivateKeyPath, else ssh's own)" },
  { name: "config", value: true, help: "headscale's config file on HOST (default /etc/headscale/config.yaml)" },
  { name: "force", help: "write into a folder that is not empty (only the files import writes are replaced, and a policy.hujson an earlier import wrote is removed when the policy now fits fleet.yaml; nothing else is deleted)" },
  { name: "json", help: "print the import report as JSON" },
];

const usage = `usage: meshfleet import (--from [user@]HOST[:PORT] | --from-dir DIR) (--out DIR | --stack S) [--name NAME] [--force] [--json]

Reads an existing headscale (0.29) and writes a fleet folder that deploys the
same coordinator: fleet.yaml (serverUrl, users, prefixes, DNS, DERP region,
the policy from its HuJSON file), NAME.yaml (listeners, database, log, DERP
server, OIDC, and headscale.adopt: the deploy keeps the existing Noise key,
DERP key and database instead of starting empty), nodes.json (for \`meshfleet
check --nodes\`) and IMPORT.md. Every config key is accounted for: mapped to
an option, kept in headscale.extraSettings, changed by meshfleet (and why),
or not mapped (and what to do). Private keys and the database are never read
or copied; the Postgres password and OIDC client secret are named, not copied.

--from logs in with OpenSSH (StrictHostKeyChecking=yes against the pins alone,
as the deploy does) and runs, read-only: cat config.yaml and the policy file,
\`headscale users list -o json\`, \`headscale nodes list -o json\`, \`headscale
version\`, and \`stat\` of the key and database files. Pin first:
  ssh-keyscan -p PORT HOST > known_hosts   (check the fingerprint: ssh-keygen -lf known_hosts)
--from-dir DIR reads DIR/config.yaml, the policy file (policy.path with
/etc/headscale/ read as DIR/), DIR/users.json and DIR/nodes.json (the two
lists saved with -o json), and DIR/policy.hujson when policy.mode is database.

Then: meshfleet check --hosts-dir OUT --nodes OUT/nodes.json
Exit 0 when written (IMPORT.md lists what was not mapped), 1 when the source
cannot be read or the written fleet does not pass check, 2 for a command line
it cannot take.

${flagHelp(flags)}`;

// ---------------------------------------------------------------------------
// What is read from the source

export interface FileMeta {
  path: string;
  exists: boolean;
  owner?: string;
  mode?: string;
}

export interface ImportSource {
  /** Where it came from, for messages: "ssh root@vps:22" or the folder. */
  origin: string;
  /** How a file of the source is named in messages (a host path, or the local copy). */
  configFile: string;
  configText: string;
  /** The config file's folder on the original host (relative paths in config.yaml resolve against it). */
  configDir: string;
  /** Reads a file the config names (absolute, as on the original host); undefined when absent. */
  readFile: (hostPath: string) => { shown: string; text: string } | undefined;
  /** The policy when policy.mode is database (`headscale policy get`), if it could be had. */
  databasePolicy?: { shown: string; text: string };
  usersJson?: { shown: string; text: string };
  nodesJson?: { shown: string; text: string };
  version?: string;
  /** Key and database files: metadata only (SSH); undefined offline. */
  stat?: (hostPath: string) => FileMeta | undefined;
  /** headscale's binary on the host, when known. */
  binary?: string;
  ssh?: { address: string; port: number; user: string; hostKey?: string };
}

// ---------------------------------------------------------------------------
// The mapping (pure)

export type ItemKind = "mapped" | "extra" | "changed" | "unmapped" | "secret" | "default";

export interface ReportItem {
  /** The config key (dotted), or `policy.<key>`, `users`, `nodes`. */
  key: string;
  kind: ItemKind;
  /** Where it went (an option path), for mapped and extra. */
  to?: string;
  /** The value as found (never for a secret). */
  value?: string;
  note?: string;
}

export interface ImportResult {
  ok: boolean;
  origin: string;
  hostName: string;
  fleet: Record<string, unknown>;
  host: Record<string, unknown>;
  nodes: unknown[] | undefined;
  items: ReportItem[];
  problems: Diagnostic[];
  /**
   * The policy as its own file would hold it (headscale's HuJSON): the text
   * as headscale had it, comments kept, when the import changed nothing in
   * it; else the policy fleet.yaml holds, as JSON. Written to policy.hujson
   * when the policy would take fleet.yaml past the loader's YAML limits.
   */
  policyText?: string;
}

/** Keys whose value is a map of data, not more config keys. */
const MAP_KEYS = new Set(["dns.nameservers.split", "oidc.extra_params"]);

/** Keys headscale 0.29.2 reads (hscontrol/types/config.go) that meshfleet has no option for: carried in extraSettings. Value: headscale's default (a key at its default is not carried). */
const EXTRA_DEFAULTS: Record<string, unknown> = {
  "database.debug": false,
  "database.gorm.prepare_stmt": true,
  "database.gorm.parameterized_queries": true,
  "database.gorm.skip_err_record_not_found": true,
  "database.gorm.slow_threshold": 1000,
  "database.sqlite.wal_autocheckpoint": 1000,
  "database.postgres.max_idle_conns": 10,
  "database.postgres.conn_max_idle_time_secs": 3600,
  "dns.search_domains": [],
  "dns.extra_records_path": "",
  "node.routes.ha.probe_interval": "10s",
  "node.routes.ha.probe_timeout": "5s",
  "derp.server.ipv6": "",
  "derp.server.automatically_add_embedded_derp_region": true,
  "derp.server.stun.enabled": true,
  "taildrop.enabled": true,
  "auto_update.enabled": false,
  "tuning.batch_change_delay": undefined,
  "tuning.batcher_workers": undefined,
  "tuning.node_mapsession_buffered_chan_size": undefined,
  "tuning.node_store_batch_size": undefined,
  "tuning.node_store_batch_timeout": undefined,
  "tuning.notifier_send_timeout": undefined,
  "tuning.register_cache_expiration": undefined,
  "tuning.register_cache_max_entries": undefined,
  "cli.address": "",
  "cli.timeout": "5s",
  "cli.insecure": false,
  "oidc.pkce.method": "S256",
};

/** Keys meshfleet sets itself; a different old value is reported with the reason. Value: meshfleet's own, and why. */
const MESHFLEET_SETS: Record<string, [unknown, string]> = {
  grpc_allow_insecure: [false, "meshfleet keeps gRPC to TLS (the local CLI uses the unix socket)"],
  disable_check_updates: [true, "otherwise every CLI call asks GitHub for a newer release"],
  "logtail.enabled": [false, "meshfleet never sends logs to Tailscale's log service"],
  unix_socket: ["/var/run/headscale/headscale.sock", "meshfleet's unit and CLI calls use this socket"],
  unix_socket_permission: ["0770", "the socket's mode as meshfleet's unit sets it"],
  "derp.server.verify_clients": [true, "the embedded relay serves only nodes headscale knows"],
  "policy.mode": ["file", "the policy lives in git (fleet.yaml policy) and is rendered to a file"],
  "policy.path": ["/etc/headscale/policy.hujson", "meshfleet renders the policy to its own file"],
  "derp.server.private_key_path": ["(headscale.adopt.derpPrivateKeyPath)", "the key is adopted where it is"],
  "noise.private_key_path": ["(headscale.adopt.noisePrivateKeyPath)", "the key is adopted where it is"],
  "tls_cert_path": ["", "TLS ends at the reverse proxy (reverse-proxy module); headscale serves plain HTTP on loopback"],
  "tls_key_path": ["", "TLS ends at the reverse proxy (reverse-proxy module)"],
  "tls_letsencrypt_hostname": ["", "the reverse proxy gets the certificate (Caddy, reverse-proxy.tls: auto)"],
  "tls_letsencrypt_cache_dir": ["/var/lib/headscale/cache", "the reverse proxy gets the certificate"],
  "tls_letsencrypt_challenge_type": ["HTTP-01", "the reverse proxy gets the certificate"],
  "tls_letsencrypt_listen": [":http", "the reverse proxy gets the certificate"],
  acme_url: ["https://acme-v02.api.letsencrypt.org/directory", "the reverse proxy gets the certificate"],
  "derp.paths": [[], "meshfleet writes its own DERP map file from the hosts with derp.enable (the regions in the old files are not imported)"],
};

/** Secrets: named, never copied. */
const SECRETS: Record<string, string> = {
  "database.postgres.pass": "pulumi config set --secret meshfleet:headscalePostgresPassword (the value from the old config.yaml; meshfleet writes it to a 0600 PGPASSFILE)",
  "oidc.client_secret": "pulumi config set --secret meshfleet:headscaleOidcClientSecret (the value from the old config.yaml)",
  "oidc.client_secret_path": "pulumi config set --secret meshfleet:headscaleOidcClientSecret < the file it names (on the old host)",
  "cli.api_key": "not needed: meshfleet's CLI calls use the unix socket on the coordinator",
};

/** Keys headscale 0.29 refuses to start with, and what import does with them. */
const LEGACY: Record<string, string> = {
  acl_policy_path: "read as the policy file; headscale 0.29 wants policy.path (meshfleet renders that)",
  dns_config: "headscale 0.29 refuses it; move its settings to dns: (magic_dns, base_domain, nameservers.global) and import again",
  randomize_client_port: "moved to the policy's randomizeClientPort (headscale 0.29's place for it)",
  "oidc.expiry": "headscale 0.29 refuses it; fleet.yaml nodeExpiry.after replaces it",
  "oidc.strip_email_domain": "removed in headscale 0.26: users keep their full names",
  "oidc.map_legacy_users": "removed in headscale 0.26",
  "dns.use_username_in_magic_dns": "removed in headscale 0.23",
  ephemeral_node_inactivity_timeout: "deprecated: read as node.ephemeral.inactivity_timeout",
};

const LOG_LEVELS = ["panic", "fatal", "error", "warn", "info", "debug", "trace"];
const DURATION = /^[1-9]\d*(s|m|h|d)$/;
const LISTEN = /^(\[[0-9a-fA-F:]+\]|[^:\s]*):\d{1,5}$/;

function flatten(v: unknown, prefix: string, out: Map<string, unknown>): void {
  if (v && typeof v === "object" && !Array.isArray(v) && !MAP_KEYS.has(prefix) && Object.keys(v).length > 0) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) flatten(x, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out.set(prefix, v);
}

function setPath(o: Record<string, unknown>, dotted: string, v: unknown): void {
  const parts = dotted.split(".");
  let cur = o;
  for (const p of parts.slice(0, -1)) {
    if (!cur[p] || typeof cur[p] !== "object") cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]!] = v;
}

const show = (v: unknown) => {
  const s = typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 119)}…` : s;
};
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function isLoopbackListen(a: string): boolean {
  const host = a.slice(0, a.lastIndexOf(":")).replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || host.startsWith("127.");
}

/** The pure part: the source's texts in, the fleet, the host and the report out. */
export function mapImport(src: ImportSource, o: { hostName: string; address?: string }): ImportResult {
  const items: ReportItem[] = [];
  const problems: Diagnostic[] = [];
  const problem = (file: string, p: string, expected: string, found: string, fix: string) => problems.push({ severity: "error", file, path: p, expected, found, fix });
  // Keys come from the file as typed: escaped, so a report cannot drive the terminal.
  const item = (key: string, kind: ItemKind, rest: Omit<ReportItem, "key" | "kind"> = {}) => items.push({ key: oneLine(key, 200), kind, ...rest });
  let policyText: string | undefined;
  const result = (fleet: Record<string, unknown> = {}, host: Record<string, unknown> = {}, nodes?: unknown[]): ImportResult => ({
    ok: problems.length === 0, origin: src.origin, hostName: o.hostName, fleet, host, nodes, items, problems, ...(policyText !== undefined ? { policyText } : {}),
  });

  // config.yaml
  let cfg: Record<string, unknown>;
  try {
    const v = parseYaml(src.configText) as unknown;
    if (!v || typeof v !== "object" || Array.isArray(v)) {
      problem(src.configFile, "", "headscale's config.yaml: a mapping of settings (server_url, listen_addr, ...)", v === null || v === undefined ? "an empty file" : show(v), "point --from-dir/--config at headscale's config.yaml");
      return result();
    }
    cfg = v as Record<string, unknown>;
  } catch (e) {
    const pos = (e as { linePos?: { line: number; col: number }[] }).linePos?.[0];
    problem(src.configFile, pos ? `line ${pos.line}, column ${pos.col}` : "", "YAML", (e as Error).message.split("\n")[0]!, "fix the YAML (headscale itself would not start with it)");
    return result();
  }
  const flat = new Map<string, unknown>();
  flatten(cfg, "", flat);
  const done = new Set<string>();
  const take = (k: string): unknown => {
    done.add(k);
    return flat.get(k);
  };
  const has = (k: string) => flat.has(k);
  const abs = (p: string) => (p.startsWith("/") ? p : path.posix.join(src.configDir, p));

  const fleet: Record<string, unknown> = {};
  const host: Record<string, unknown> = {};
  const hs: Record<string, unknown> = {};
  const extra: Record<string, unknown> = {};
  const mapped = (k: string, to: string, v: unknown, note?: string) => item(k, "mapped", { to, value: show(v), ...(note ? { note } : {}) });

  // Legacy keys first: some are read on.
  for (const k of [...flat.keys()]) {
    const top = Object.keys(LEGACY).find((l) => k === l || k.startsWith(`${l}.`));
    if (!top) continue;
    if (top === "acl_policy_path" || top === "randomize_client_port" || top === "ephemeral_node_inactivity_timeout") continue; // read below
    done.add(k);
    item(k, "unmapped", { value: show(flat.get(k)), note: LEGACY[top] });
  }

  // server_url
  const serverUrl = take("server_url");
  if (typeof serverUrl !== "string" || !/^https?:\/\//.test(serverUrl)) {
    problem(src.configFile, "server_url", "the URL clients reach headscale at (http:// or https://)", serverUrl === undefined ? "no server_url" : show(serverUrl), "headscale needs it too: set server_url in config.yaml");
  }
  const url = typeof serverUrl === "string" ? serverUrl.replace(/\/+$/, "") : "";
  const https = url.startsWith("https://");
  fleet.coordinator = { host: o.hostName, serverUrl: url, headscaleVersion: versionOf(src.version) ?? "0.29.2" };
  if (url) mapped("server_url", "fleet.yaml coordinator.serverUrl", url);
  if (!versionOf(src.version)) item("headscale version", "changed", { value: src.version ?? "not known (offline import)", note: "coordinator.headscaleVersion is set to 0.29.2; set the version the host runs (check names the upgrade path from older ones)" });

  // Listeners
  const listen = take("listen_addr");
  const tlsSelf = [flat.get("tls_cert_path"), flat.get("tls_letsencrypt_hostname")].some((x) => typeof x === "string" && x !== "");
  const proxied = https; // meshfleet fronts an https server_url with its reverse proxy
  if (typeof listen === "string" && LISTEN.test(listen)) {
    if (proxied && !isLoopbackListen(listen)) {
      const port = Number(listen.slice(listen.lastIndexOf(":") + 1));
      const to = `127.0.0.1:${port === 443 || port === 80 ? 8080 : port}`;
      hs.listenAddr = to;
      item("listen_addr", "changed", { to: "headscale.listenAddr", value: show(listen), note: `now ${to}: the reverse proxy serves ${url} and forwards to headscale on loopback${tlsSelf ? " (headscale did TLS itself before)" : ""}` });
    } else {
      hs.listenAddr = listen;
      mapped("listen_addr", "headscale.listenAddr", listen);
      if (!proxied && !isLoopbackListen(listen)) hs.openFirewall = true;
    }
  } else if (listen !== undefined) item("listen_addr", "unmapped", { value: show(listen), note: "not host:port; headscale.listenAddr keeps meshfleet's 127.0.0.1:8080" });
  for (const [k, opt] of [["metrics_listen_addr", "metricsListenAddr"], ["grpc_listen_addr", "grpcListenAddr"]] as const) {
    const v = take(k);
    if (v === undefined) continue;
    if (typeof v === "string" && (v === "" && k === "metrics_listen_addr" || LISTEN.test(v))) {
      hs[opt] = v;
      mapped(k, `headscale.${opt}`, v);
    } else item(k, "unmapped", { value: show(v), note: `not host:port; headscale.${opt} keeps meshfleet's default` });
  }
  const tp = take("trusted_proxies");
  if (Array.isArray(tp) && tp.every((x) => typeof x === "string")) {
    if (tp.length > 0) {
      hs.trustedProxies = tp;
      mapped("trusted_proxies", "headscale.trustedProxies", tp);
    } else item("trusted_proxies", "changed", { value: "[]", note: "meshfleet trusts the local reverse proxy (127.0.0.1/32, ::1/128) so client addresses are the real ones" });
  } else if (tp !== undefined) item("trusted_proxies", "unmapped", { value: show(tp), note: "not a list of CIDRs" });

  // Prefixes
  const prefixes: Record<string, unknown> = {};
  for (const k of ["v4", "v6", "allocation"] as const) {
    const v = take(`prefixes.${k}`);
    if (v !== undefined) {
      prefixes[k] = v;
      mapped(`prefixes.${k}`, `fleet.yaml prefixes.${k}`, v);
    }
  }
  if (!has("prefixes.v4") && !has("prefixes.v6")) problem(src.configFile, "prefixes", "prefixes.v4 and/or prefixes.v6 (the tailnet's address ranges)", "neither", "headscale needs at least one: set them in config.yaml");
  for (const k of ["v4", "v6"] as const)
    if (!has(`prefixes.${k}`) && (has("prefixes.v4") || has("prefixes.v6")))
      item(`prefixes.${k}`, "changed", { value: "not set", note: `meshfleet always hands out both families: new nodes also get ${k} addresses from ${k === "v4" ? "100.64.0.0/10" : "fd7a:115c:a1e0::/48"} (fleet.yaml prefixes.${k})` });
  if (Object.keys(prefixes).length) fleet.prefixes = prefixes;

  // DNS
  const dns: Record<string, unknown> = {};
  const dnsMap: [string, string][] = [["dns.magic_dns", "magicDns"], ["dns.base_domain", "baseDomain"], ["dns.override_local_dns", "overrideLocalDns"]];
  for (const [k, to] of dnsMap) {
    const v = take(k);
    if (v !== undefined) {
      dns[to] = v;
      mapped(k, `fleet.yaml dns.${to}`, v);
    }
  }
  const ns: Record<string, unknown> = {};
  const g = take("dns.nameservers.global");
  if (g !== undefined) {
    ns.global = g ?? [];
    mapped("dns.nameservers.global", "fleet.yaml dns.nameservers.global", g);
  }
  const split = take("dns.nameservers.split");
  if (split && typeof split === "object" && Object.keys(split).length > 0) {
    ns.split = split;
    mapped("dns.nameservers.split", "fleet.yaml dns.nameservers.split", split);
  } else if (has("dns.nameservers.split")) item("dns.nameservers.split", "default", { value: show(split), note: "none" });
  if (Object.keys(ns).length) dns.nameservers = ns;
  const er = take("dns.extra_records");
  if (Array.isArray(er) && er.length > 0) {
    dns.extraRecords = er.map((r) => {
      const x = (r ?? {}) as Record<string, unknown>;
      return { name: x.name, type: x.type ?? "A", value: x.value };
    });
    mapped("dns.extra_records", "fleet.yaml dns.extraRecords", er);
  } else if (has("dns.extra_records")) item("dns.extra_records", "default", { value: show(er), note: "none" });
  if (Object.keys(dns).length) fleet.dns = dns;

  // DERP
  const derpFleet: Record<string, unknown> = {};
  const urls = take("derp.urls");
  if (Array.isArray(urls)) {
    derpFleet.publicUrls = urls;
    mapped("derp.urls", "fleet.yaml derp.publicUrls", urls, urls.length ? "headscale fetches these at start; a failed fetch stops it" : undefined);
  }
  for (const [k, to] of [["derp.auto_update_enabled", "derpAutoUpdate"], ["derp.update_frequency", "derpUpdateFrequency"]] as const) {
    const v = take(k);
    if (v === undefined) continue;
    if (to === "derpUpdateFrequency" && (typeof v !== "string" || !DURATION.test(v))) {
      item(k, "unmapped", { value: show(v), note: "meshfleet takes one number and unit (30m, 3h, 1d); headscale.derpUpdateFrequency keeps 3h" });
      continue;
    }
    hs[to] = v;
    mapped(k, `headscale.${to}`, v);
  }
  const embedded = take("derp.server.enabled") === true;
  if (has("derp.server.enabled")) mapped("derp.server.enabled", embedded ? "derp.enable + derp.mode: embedded (host file)" : "(no embedded relay)", embedded);
  let derpKeyPath = "";
  if (embedded) {
    const d: Record<string, unknown> = { mode: "embedded" };
    const rid = take("derp.server.region_id");
    if (typeof rid === "number" && rid >= 900 && rid <= 999) {
      derpFleet.regionId = rid;
      mapped("derp.server.region_id", "fleet.yaml derp.regionId", rid);
    } else item("derp.server.region_id", "changed", { value: show(rid), note: "meshfleet's own region ids are 900-999: fleet.yaml derp.regionId is 900; clients learn the new map at their next netmap" });
    for (const [k, to] of [["derp.server.region_code", "regionCode"], ["derp.server.region_name", "regionName"]] as const) {
      const v = take(k);
      if (typeof v === "string" && v !== "") {
        derpFleet[to] = v;
        mapped(k, `fleet.yaml derp.${to}`, v);
      }
    }
    const stun = take("derp.server.stun_listen_addr");
    if (typeof stun === "string" && LISTEN.test(stun)) {
      d.stunPort = Number(stun.slice(stun.lastIndexOf(":") + 1));
      mapped("derp.server.stun_listen_addr", "derp.stunPort (host file)", stun, "meshfleet binds STUN on every address (0.0.0.0)");
    } else if (stun !== undefined) item("derp.server.stun_listen_addr", "unmapped", { value: show(stun), note: "not host:port; derp.stunPort keeps 3478" });
    const v4 = take("derp.server.ipv4");
    if (typeof v4 === "string" && v4 !== "") {
      d.ipv4 = v4;
      mapped("derp.server.ipv4", "derp.ipv4 (host file)", v4);
    }
    const kp = take("derp.server.private_key_path");
    if (typeof kp === "string" && kp !== "") derpKeyPath = abs(kp);
    host.derp = d;
  } else {
    for (const k of [...flat.keys()].filter((k) => k.startsWith("derp.server.") && k !== "derp.server.enabled")) {
      done.add(k);
      item(k, "default", { value: show(flat.get(k)), note: "the embedded relay was off: not used" });
    }
  }
  if (Object.keys(derpFleet).length) fleet.derp = derpFleet;

  // Keys and database: adopted where they are.
  const noise = take("noise.private_key_path");
  if (typeof noise !== "string" || noise === "") problem(src.configFile, "noise.private_key_path", "the Noise private key's path (headscale requires it)", show(noise), "set noise.private_key_path in config.yaml as the running headscale has it");
  const noisePath = typeof noise === "string" && noise !== "" ? abs(noise) : "";
  hs.adopt = { enable: true, noisePrivateKeyPath: noisePath, derpPrivateKeyPath: derpKeyPath };
  item("noise.private_key_path", "mapped", { to: "headscale.adopt.noisePrivateKeyPath", value: show(noisePath), note: "adopted: the deploy keeps this file; it is never read or copied" });
  if (derpKeyPath) item("derp.server.private_key_path", "mapped", { to: "headscale.adopt.derpPrivateKeyPath", value: show(derpKeyPath), note: "adopted: the deploy keeps this file" });

  const dbType = take("database.type");
  const db: Record<string, unknown> = {};
  if (dbType === "sqlite" || dbType === "sqlite3" || dbType === undefined) {
    db.type = "sqlite";
    const p = take("database.sqlite.path");
    const sqlitePath = typeof p === "string" && p !== "" ? abs(p) : "/var/lib/headscale/db.sqlite";
    db.sqlitePath = sqlitePath;
    item("database.sqlite.path", "mapped", { to: "headscale.database.sqlitePath", value: show(sqlitePath), note: "adopted: the deploy opens this database; it is never read or copied" });
    const wal = take("database.sqlite.write_ahead_log");
    if (typeof wal === "boolean") {
      db.writeAheadLog = wal;
      mapped("database.sqlite.write_ahead_log", "headscale.database.writeAheadLog", wal);
    }
    if (dbType !== undefined) mapped("database.type", "headscale.database.type", "sqlite");
    for (const k of [...flat.keys()].filter((k) => k.startsWith("database.postgres."))) {
      done.add(k);
      item(k, k === "database.postgres.pass" ? "secret" : "default", { ...(k === "database.postgres.pass" ? {} : { value: show(flat.get(k)) }), note: "the database is SQLite: not used" });
    }
  } else if (dbType === "postgres") {
    db.type = "postgres";
    mapped("database.type", "headscale.database.type", "postgres");
    const pg: Record<string, unknown> = {};
    for (const [k, to] of [["host", "host"], ["port", "port"], ["name", "name"], ["user", "user"], ["ssl", "ssl"], ["max_open_conns", "maxOpenConns"]] as const) {
      const v = take(`database.postgres.${k}`);
      if (v === undefined) continue;
      pg[to] = k === "port" && typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
      mapped(`database.postgres.${k}`, `headscale.database.postgres.${to}`, v);
    }
    db.postgres = pg;
    for (const k of [...flat.keys()].filter((k) => k.startsWith("database.sqlite."))) {
      done.add(k);
      item(k, "default", { value: show(flat.get(k)), note: "the database is Postgres: not used" });
    }
    item("database", "mapped", { to: "headscale.database.postgres", note: "adopted: the deploy connects to the same database" });
  } else {
    problem(src.configFile, "database.type", "sqlite, sqlite3 or postgres", show(dbType), "set database.type as headscale 0.29 reads it");
  }
  hs.database = db;

  // node.*
  const expiry = take("node.expiry");
  if (expiry !== undefined && String(expiry) !== "0") {
    if (typeof expiry === "string" && DURATION.test(expiry)) {
      fleet.nodeExpiry = { after: expiry, exemptTags: [] as string[] };
      mapped("node.expiry", "fleet.yaml nodeExpiry.after", expiry);
    } else item("node.expiry", "unmapped", { value: show(expiry), note: "meshfleet takes one number and unit (180d); set fleet.yaml nodeExpiry.after" });
  } else if (expiry !== undefined) mapped("node.expiry", "fleet.yaml nodeExpiry.after (0, the default)", expiry);
  const eph = has("node.ephemeral.inactivity_timeout") ? take("node.ephemeral.inactivity_timeout") : take("ephemeral_node_inactivity_timeout");
  const ephKey = has("node.ephemeral.inactivity_timeout") ? "node.ephemeral.inactivity_timeout" : "ephemeral_node_inactivity_timeout";
  if (has("node.ephemeral.inactivity_timeout") && has("ephemeral_node_inactivity_timeout")) {
    done.add("ephemeral_node_inactivity_timeout");
    item("ephemeral_node_inactivity_timeout", "unmapped", { value: show(flat.get("ephemeral_node_inactivity_timeout")), note: "deprecated; node.ephemeral.inactivity_timeout wins" });
  }
  if (eph !== undefined) {
    if (typeof eph === "string" && DURATION.test(eph)) {
      hs.ephemeralInactivityTimeout = eph;
      mapped(ephKey, "headscale.ephemeralInactivityTimeout", eph);
    } else item(ephKey, "unmapped", { value: show(eph), note: "meshfleet takes one number and unit (30m); headscale.ephemeralInactivityTimeout keeps 30m" });
  }

  // log
  const lvl = take("log.level");
  if (typeof lvl === "string" && LOG_LEVELS.includes(lvl)) {
    hs.logLevel = lvl;
    mapped("log.level", "headscale.logLevel", lvl);
  } else if (lvl !== undefined) item("log.level", "unmapped", { value: show(lvl), note: `one of ${LOG_LEVELS.join(", ")}; headscale.logLevel keeps info` });
  const lf = take("log.format");
  if (lf === "text" || lf === "json") {
    hs.logFormat = lf;
    mapped("log.format", "headscale.logFormat", lf);
  } else if (lf !== undefined) item("log.format", "unmapped", { value: show(lf), note: "text or json" });

  // OIDC
  const oidcKeys = [...flat.keys()].filter((k) => k.startsWith("oidc.") && !(k in LEGACY));
  if (oidcKeys.length) {
    const on = take("oidc.enabled") === true || (flat.has("oidc.issuer") && !flat.has("oidc.enabled"));
    if (!on) {
      for (const k of oidcKeys) if (!done.has(k) && !(k in SECRETS)) { done.add(k); item(k, "default", { value: show(flat.get(k)), note: "OIDC was off: not used" }); }
    } else {
      const oidc: Record<string, unknown> = { enable: true };
      const pairs: [string, string][] = [["issuer", "issuer"], ["client_id", "clientId"], ["scope", "scope"], ["allowed_domains", "allowedDomains"], ["allowed_groups", "allowedGroups"], ["allowed_users", "allowedUsers"], ["email_verified_required", "emailVerifiedRequired"], ["pkce.enabled", "pkce"], ["use_expiry_from_token", "useExpiryFromToken"], ["only_start_if_oidc_is_available", "onlyStartIfAvailable"], ["extra_params", "extraParams"]];
      for (const [k, to] of pairs) {
        const v = take(`oidc.${k}`);
        if (v === undefined) continue;
        oidc[to] = v;
        mapped(`oidc.${k}`, `headscale.oidc.${to}`, v);
      }
      if (has("oidc.enabled")) mapped("oidc.enabled", "headscale.oidc.enable", true);
      hs.oidc = oidc;
    }
  }

  // Secrets: named only.
  for (const [k, what] of Object.entries(SECRETS)) {
    if (!has(k) || done.has(k)) continue;
    done.add(k);
    item(k, "secret", { note: `not copied. ${what}` });
  }

  // randomize_client_port (legacy) -> policy
  let randomize = false;
  if (has("randomize_client_port")) {
    randomize = take("randomize_client_port") === true;
    item("randomize_client_port", randomize ? "mapped" : "default", { to: randomize ? "fleet.yaml policy.randomizeClientPort" : undefined, value: show(flat.get("randomize_client_port")), note: LEGACY.randomize_client_port });
  }

  const acme = take("acme_email");
  if (typeof acme === "string" && acme !== "" && https) {
    host["reverse-proxy"] = { acmeEmail: acme };
    mapped("acme_email", "reverse-proxy.acmeEmail (host file)", acme, "the reverse proxy gets the certificate now");
  } else if (acme !== undefined) item("acme_email", "default", { value: show(acme), note: https ? "none" : "no TLS (http server_url): not used" });

  // Keys meshfleet sets itself, and those it carries as extraSettings.
  for (const [k, [mine, why]] of Object.entries(MESHFLEET_SETS)) {
    if (!has(k) || done.has(k)) continue;
    const v = take(k);
    if (k === "policy.path" || k === "policy.mode") {
      item(k, "changed", { value: show(v), note: why });
      continue;
    }
    if (same(v, mine)) item(k, "default", { value: show(v), note: "meshfleet sets the same" });
    else item(k, "changed", { value: show(v), note: `meshfleet sets ${show(mine)}: ${why}` });
  }
  for (const k of [...flat.keys()]) {
    if (done.has(k)) continue;
    const known = k in EXTRA_DEFAULTS ? k : undefined;
    if (!known) continue;
    const v = take(k);
    if (EXTRA_DEFAULTS[k] !== undefined && same(v, EXTRA_DEFAULTS[k])) {
      item(k, "default", { value: show(v), note: "headscale's default" });
      continue;
    }
    setPath(extra, k, v);
    item(k, "extra", { to: `headscale.extraSettings.${k}`, value: show(v) });
  }
  // What is left: unknown to headscale 0.29 (it ignores them).
  for (const k of [...flat.keys()]) {
    if (done.has(k)) continue;
    done.add(k);
    const top = Object.keys(LEGACY).find((l) => k === l || k.startsWith(`${l}.`));
    if (top === "acl_policy_path") continue;
    item(k, "unmapped", { value: show(flat.get(k)), note: "not a headscale 0.29 setting (headscale ignores it): not carried over; if it is a typo of a real key, fix it on the host and import again" });
  }
  if (Object.keys(extra).length) hs.extraSettings = extra;

  // The policy
  const mode = flat.get("policy.mode") ?? "file";
  if (flat.has("acl_policy_path")) item("acl_policy_path", "unmapped", { value: show(flat.get("acl_policy_path")), note: LEGACY.acl_policy_path });
  let policy: Record<string, unknown> | undefined;
  let policySource: { shown: string; text: string } | undefined;
  const readPolicy = (shown: string, text: string) => {
    try {
      const v = parseHuJson(text);
      if (!v || typeof v !== "object" || Array.isArray(v)) {
        problem(shown, "", "a policy object ({ \"groups\": ..., \"acls\": ... })", show(v), "point policy.path at headscale's policy file");
        return;
      }
      policy = v as Record<string, unknown>;
      policySource = { shown, text };
    } catch (e) {
      if (!(e instanceof HuJsonError)) throw e;
      const m = /^expected (.*), found (.*)$/.exec(e.reason);
      problem(shown, `line ${e.position.line}, column ${e.position.col}`, m ? `HuJSON: ${m[1]}` : "HuJSON (JSON with comments and trailing commas)", m ? m[2]! : e.reason, "fix the file (headscale itself refuses it: `headscale policy check -f FILE`) and import again");
    }
  };
  if (mode === "database") {
    if (src.databasePolicy) readPolicy(src.databasePolicy.shown, src.databasePolicy.text);
    else problem(src.configFile, "policy.mode", "the policy headscale keeps in its database", "policy.mode: database and no copy of the policy", "save it with `headscale policy get > policy.hujson` next to config.yaml (--from-dir), or use --from");
  } else {
    const legacyPath = flat.get("acl_policy_path");
    const p = flat.get("policy.path") ?? legacyPath;
    if (typeof p === "string" && p !== "") {
      const f = src.readFile(abs(p));
      if (f) readPolicy(f.shown, f.text);
      else problem(src.configFile, flat.has("policy.path") ? "policy.path" : "acl_policy_path", "the policy file it names", `${abs(p)}: not found${src.ssh ? " on the host" : " in the copy"}`, src.ssh ? "check policy.path on the host" : `copy ${abs(p)} into the --from-dir folder (${p.startsWith("/etc/headscale/") ? p.slice("/etc/headscale/".length) : path.posix.basename(p)})`);
    } else {
      policy = {}; // allow-all: made explicit below
      item("policy", "changed", { value: "no policy file (allow-all)", note: "see policy.acls" });
    }
  }
  if (policy) {
    const clean: Record<string, unknown> = {};
    const known = Object.keys((policySchema as unknown as { shape: Record<string, unknown> }).shape);
    for (const [k, v] of Object.entries(policy)) {
      if (known.includes(k)) clean[k] = v;
      else item(`policy.${k}`, "unmapped", { value: show(v), note: "not a key of headscale 0.29's policy (it would refuse the file): left out of fleet.yaml" });
    }
    if (randomize && clean.randomizeClientPort === undefined) clean.randomizeClientPort = true;
    if (clean.acls === undefined && clean.grants === undefined) {
      // headscale allows everything without acls and grants; meshfleet wants that said (a policy fails closed).
      clean.acls = [{ action: "accept", src: ["*"], dst: ["*:*"] }];
      item("policy.acls", "changed", { value: "no acls and no grants (allow-all)", note: 'written as one rule allowing every node everything ({action: accept, src: ["*"], dst: ["*:*"]}): the same traffic, said explicitly, as meshfleet requires' });
    }
    fleet.policy = clean;
    policyText =
      policySource && same(clean, policy)
        ? policySource.text
        : `// The policy meshfleet import took from ${policySource?.shown ?? src.origin}, with the changes IMPORT.md lists (the original's comments are not kept).\n${JSON.stringify(clean, null, 2)}\n`;
    if (Object.keys(clean).length) item("policy", "mapped", { to: "fleet.yaml policy", note: `${Object.keys(clean).join(", ")}` });
  }

  // Users: headscale's own become fleet.yaml users (adopted by the deploy); those an OIDC login made, oidcUsers by e-mail.
  const users: string[] = [];
  const oidcUsers: string[] = [];
  /** Every user's name, with how many users have it, and an OIDC login's e-mail by its name. */
  const nameCount = new Map<string, number>();
  const oidcEmailOf = new Map<string, string>();
  if (!src.usersJson) problem(src.origin, "users", "the users list (headscale users list -o json)", "none", src.ssh ? "is headscale running on the host? (users list needs the server)" : "save it beside config.yaml: headscale users list -o json > users.json");
  else {
    const list = parseList(src.usersJson, "users", problem);
    let local = 0;
    for (const u of list ?? []) {
      const { name, provider, email: mail } = (u ?? {}) as Record<string, unknown>;
      if (typeof name === "string") nameCount.set(name, (nameCount.get(name) ?? 0) + 1);
      if (provider === "oidc") {
        if (typeof mail === "string" && email.safeParse(mail).success) {
          oidcUsers.push(mail);
          if (typeof name === "string") oidcEmailOf.set(name, mail);
        } else item("users", "unmapped", { value: show(name ?? u), note: `a user an OpenID Connect login made, with no e-mail meshfleet can name it by (${show(mail)}): it stays in the adopted database, but the policy cannot name it in fleet.yaml` });
        continue;
      }
      local++;
      if (typeof name === "string" && userName.safeParse(name).success) users.push(name);
      else item("users", "unmapped", { value: show(name ?? u), note: "not a name meshfleet's users take (a letter, then letters, digits, - . _); the user stays in the adopted database, but the policy cannot name it in fleet.yaml" });
    }
    if (list) item("users", "mapped", { to: "fleet.yaml users", value: show(users), note: `${users.length} of ${local} headscale's own; the existing users are adopted by the deploy (not created again)` });
    if (oidcUsers.length) item("users", "mapped", { to: "fleet.yaml oidcUsers", value: show(oidcUsers), note: "users OpenID Connect logins made, by e-mail: meshfleet neither creates nor adopts them (docs/oidc.md)" });
  }
  fleet.users = users;
  if (oidcUsers.length) fleet.oidcUsers = oidcUsers;
  // The policy names an OIDC login's user by e-mail in meshfleet (its name is the provider's preferred_username): its
  // tokens are rewritten where the policy names users (never ssh login names, hosts or grants' app payloads), for a
  // name only that login has; a name two users share is left as it is and said (headscale refuses such a token).
  if (oidcEmailOf.size && fleet.policy && typeof fleet.policy === "object") {
    const renamed = new Set<string>();
    const shared = new Set<string>();
    const one = (v: unknown): unknown => {
      const m = typeof v === "string" ? /^([^@:]+)@(:.*)?$/.exec(v) : null;
      const to = m ? oidcEmailOf.get(m[1]) : undefined;
      if (!m || !to) return v;
      if ((nameCount.get(m[1]) ?? 0) > 1) {
        shared.add(m[1]);
        return v;
      }
      renamed.add(`${v} -> ${to}${m[2] ?? ""}`);
      return `${to}${m[2] ?? ""}`;
    };
    const list = (v: unknown) => (Array.isArray(v) ? v.map(one) : typeof v === "string" ? one(v) : v);
    const values = (o: unknown) => (o && typeof o === "object" && !Array.isArray(o) ? Object.fromEntries(Object.entries(o).map(([k, x]) => [k, list(x)])) : o);
    const rules = (v: unknown, keys: string[]) =>
      Array.isArray(v) ? v.map((r) => (r && typeof r === "object" ? { ...r, ...Object.fromEntries(keys.filter((k) => k in r).map((k) => [k, list((r as Record<string, unknown>)[k])])) } : r)) : v;
    const p = fleet.policy as Record<string, unknown>;
    const aa = p.autoApprovers as Record<string, unknown> | undefined;
    const parts: Record<string, unknown> = {
      groups: values(p.groups),
      tagOwners: values(p.tagOwners),
      acls: rules(p.acls, ["src", "dst"]),
      grants: rules(p.grants, ["src", "dst"]),
      ssh: rules(p.ssh, ["src", "dst"]),
      autoApprovers: aa && typeof aa === "object" ? { ...aa, ...("routes" in aa ? { routes: values(aa.routes) } : {}), ...("exitNode" in aa ? { exitNode: list(aa.exitNode) } : {}) } : aa,
      nodeAttrs: rules(p.nodeAttrs, ["target"]),
      tests: rules(p.tests, ["src", "accept", "deny"]),
      sshTests: rules(p.sshTests, ["src", "dst"]),
    };
    const clean = { ...p, ...Object.fromEntries(Object.entries(parts).filter(([k]) => k in p)) };
    if (renamed.size) {
      fleet.policy = clean;
      policyText = `// The policy meshfleet import took from ${policySource?.shown ?? src.origin}, with the changes IMPORT.md lists (the original's comments are not kept).\n${JSON.stringify(clean, null, 2)}\n`;
      item("policy", "changed", { value: [...renamed].join(", "), note: "OIDC logins' users named by e-mail, as fleet.yaml oidcUsers lists them (headscale matches the token against name and e-mail alike)" });
    }
    for (const n of shared)
      item("policy", "unmapped", { value: `${n}@`, note: `${nameCount.get(n)} headscale users are named ${n}, an OpenID Connect login's among them: headscale finds two users for ${n}@ and refuses a policy naming it; left as it is: name the person by e-mail (${oidcEmailOf.get(n)}) and give the other user another name` });
  }

  // Nodes: reported; the list is written for check --nodes.
  let nodes: unknown[] | undefined;
  if (!src.nodesJson) problem(src.origin, "nodes", "the nodes list (headscale nodes list -o json)", "none", src.ssh ? "is headscale running on the host? (nodes list needs the server)" : "save it beside config.yaml: headscale nodes list -o json > nodes.json");
  else {
    nodes = parseList(src.nodesJson, "nodes", problem);
    if (nodes) {
      const owners = (fleet.policy as Record<string, unknown> | undefined)?.tagOwners as Record<string, unknown> | undefined;
      const tags = new Set<string>();
      for (const n of nodes) for (const t of ((n as Record<string, unknown>)?.tags as string[] | undefined) ?? []) tags.add(t);
      const unowned = [...tags].filter((t) => !owners || !(t in owners));
      item("nodes", "mapped", { to: "nodes.json", note: `${nodes.length} nodes stay registered (the database is adopted)${tags.size ? `; tags in use: ${[...tags].sort().join(", ")}` : ""}${unowned.length ? `; not in policy.tagOwners: ${unowned.join(", ")} (headscale keeps them, but no one can assign them again)` : ""}` });
      if (fleet.nodeExpiry && tags.size) (fleet.nodeExpiry as { exemptTags: string[] }).exemptTags = [...tags].sort();
    }
  }
  if (fleet.nodeExpiry) {
    const owners = Object.keys(((fleet.policy as Record<string, unknown> | undefined)?.tagOwners as Record<string, unknown> | undefined) ?? {});
    const ex = fleet.nodeExpiry as { exemptTags: string[] };
    ex.exemptTags = [...new Set([...ex.exemptTags, ...owners])].sort();
  }

  // The host file
  const imports = ["coordinator", ...(proxied ? ["reverse-proxy"] : []), ...(embedded ? ["derp-relay"] : [])];
  const address = src.ssh?.address ?? o.address ?? (url ? new URL(url).hostname : "");
  const hostFile: Record<string, unknown> = {
    imports,
    description: `headscale imported from ${src.origin}`,
    address,
    runtime: "systemd",
  };
  if (!src.ssh) item("address", "changed", { value: show(address), note: "offline import: the host's SSH address is taken from server_url; set address (and ssh.user/port/hostKey) in the host file" });
  if (src.ssh) hostFile.ssh = { user: src.ssh.user, port: src.ssh.port, ...(src.ssh.hostKey ? { hostKey: src.ssh.hostKey } : {}) };
  if (src.binary && src.binary.startsWith("/")) hs.package = src.binary;
  hostFile.headscale = hs;
  Object.assign(hostFile, host);
  if (proxied) item("reverse proxy", "changed", { note: `the host imports reverse-proxy (Caddy, TLS by ACME for ${url ? new URL(url).hostname : "the server name"}); if nginx or another proxy serves it today, set reverse-proxy.kind or stop it before the first deploy` });
  const order = ["coordinator", "users", "oidcUsers", "prefixes", "dns", "derp", "nodeExpiry", "policy"];
  const ordered = Object.fromEntries(order.filter((k) => k in fleet).map((k) => [k, fleet[k]]));
  return result(ordered, hostFile, nodes);
}

function versionOf(v: string | undefined): string | undefined {
  const m = v ? /(\d+\.\d+\.\d+)/.exec(v) : null;
  return m?.[1];
}

function parseList(f: { shown: string; text: string }, what: string, problem: (file: string, p: string, e: string, found: string, fix: string) => void): unknown[] | undefined {
  let v: unknown;
  try {
    v = JSON.parse(f.text);
  } catch (e) {
    problem(f.shown, "", `the ${what} list as JSON (headscale ${what} list -o json)`, (e as Error).message, `save it again with: headscale ${what} list -o json > ${what}.json`);
    return undefined;
  }
  if (v && typeof v === "object" && !Array.isArray(v) && "error" in v) {
    problem(f.shown, "", `the ${what} list`, `headscale's error: ${show((v as { error: unknown }).error)}`, "is headscale running? The list needs the server (its unix socket)");
    return undefined;
  }
  if (v === null) return [];
  if (!Array.isArray(v)) {
    problem(f.shown, "", `a JSON array (headscale ${what} list -o json)`, show(v), `save it again with: headscale ${what} list -o json > ${what}.json`);
    return undefined;
  }
  return v;
}

// ---------------------------------------------------------------------------
// Sources: a folder, or a host over SSH

export function dirSource(dir: string): ImportSource {
  const root = path.resolve(dir);
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new MeshfleetError(`--from-dir ${dir}: not a folder. Fix: copy the host's /etc/headscale folder here, with users.json and nodes.json beside config.yaml`);
  const local = (hostPath: string) => (hostPath.startsWith("/etc/headscale/") ? path.join(root, hostPath.slice("/etc/headscale/".length)) : path.join(root, path.posix.basename(hostPath)));
  const read = (f: string) => (existsSync(f) && statSync(f).isFile() ? { shown: f, text: readFileSync(f, "utf8") } : undefined);
  const config = read(path.join(root, "config.yaml")) ?? read(path.join(root, "config.yml"));
  if (!config) throw new MeshfleetError(`${path.join(dir, "config.yaml")}: no such file. Fix: copy the host's /etc/headscale/config.yaml into ${dir}`);
  return {
    origin: dir,
    configFile: config.shown,
    configText: config.text,
    configDir: "/etc/headscale",
    readFile: (p) => read(local(p)),
    databasePolicy: read(path.join(root, "policy.hujson")) ?? read(path.join(root, "policy.json")),
    usersJson: read(path.join(root, "users.json")),
    nodesJson: read(path.join(root, "nodes.json")),
    version: read(path.join(root, "version"))?.text.trim(),
  };
}

/** `[user@]host[:port]`, `[v6]:port`. */
export function parseTarget(s: string): { user: string; host: string; port: number } {
  const m = /^(?:([^@\s]+)@)?(\[[0-9a-fA-F:.]+\]|[^:@\s[\]]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) throw new UsageError(`--from ${JSON.stringify(s)}: expected [user@]host[:port], e.g. root@vps.example.com:22`);
  const port = m[3] ? Number(m[3]) : 22;
  if (port < 1 || port > 65535) throw new UsageError(`--from ${s}: port ${port} is not 1-65535`);
  return { user: m[1] ?? "root", host: m[2]!.replace(/^\[|\]$/g, ""), port };
}

const Q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

async function sshSource(target: string, o: { knownHosts?: string; identity?: string; config: string }): Promise<ImportSource> {
  const { SshSession } = await import("../../provider/ssh.ts");
  const { knownHostsKeys, localPath } = await import("../../provider/pins.ts");
  const { sections } = await import("../fleet-hosts.ts");
  const t = parseTarget(target);
  const hostKeys = o.knownHosts ? knownHostsKeys(localPath(o.knownHosts), t.host, t.port) : [];
  if (hostKeys.length === 0) {
    throw new MeshfleetError(
      `--from ${target}: no pinned SSH host key for ${t.port === 22 ? t.host : `[${t.host}]:${t.port}`}${o.knownHosts ? ` in ${o.knownHosts}` : ""}, so nothing is sent to it. ` +
        `Fix: ssh-keyscan -p ${t.port} ${t.host} >> known_hosts, compare \`ssh-keygen -lf known_hosts\` with the host's own fingerprint, then add --known-hosts known_hosts`,
    );
  }
  const conn = { name: t.host, host: t.host, port: t.port, user: t.user, hostKeys, ...(o.identity ? { privateKeyPath: localPath(o.identity) } : {}), connectTimeoutSeconds: 10, dialAttempts: 1 };
  const session = new SshSession();
  const origin = `${t.user}@${t.host}:${t.port}`;
  try {
    const run = async (script: string, what: string) => {
      let r: Awaited<ReturnType<typeof session.run>>;
      try {
        r = await session.run(conn, script, { what, quiet: true, timeoutMs: 60_000 });
      } catch (e) {
        // The transport's own advice names `meshfleet pin`, which is for fleet hosts; this one is pinned by --known-hosts.
        const why = (e as Error).message.replace(/^host [^:]*: /, "").replace(/\. If the host was reinstalled.*$/s, "");
        const fix = /does not match the pinned key/.test(why) ? `. Fix: if the host was reinstalled, check its key out of band (ssh-keyscan -p ${t.port} ${t.host}; ssh-keygen -lf) and replace its line in ${o.knownHosts}` : "";
        throw new MeshfleetError(`--from ${origin}: ${why}${fix}`, [], { cause: e });
      }
      if (r.code === 255 && !r.stdout) throw new MeshfleetError(`--from ${origin}: ssh failed: ${r.stderr.trim().split("\n").slice(-2).join(" ")}`);
      return r;
    };
    const cfg = o.config;
    const first = await run(
      [
        `cfg=${Q(cfg)}`,
        `hs=$(command -v headscale || ls /usr/local/bin/headscale /usr/bin/headscale 2>/dev/null | head -n1)`,
        `echo @@mf:config@@; if cat -- "$cfg"; then echo; else echo; echo @@mf:config-error@@; cat -- "$cfg" 2>&1 >/dev/null; fi`,
        `echo @@mf:binary@@; echo "$hs"`,
        `echo @@mf:version@@; [ -n "$hs" ] && "$hs" version 2>/dev/null; echo`,
        `echo @@mf:users@@; [ -n "$hs" ] && "$hs" -c "$cfg" users list -o json 2>/dev/null; echo`,
        `echo @@mf:nodes@@; [ -n "$hs" ] && "$hs" -c "$cfg" nodes list -o json 2>/dev/null; echo`,
        `echo @@mf:policy-db@@; [ -n "$hs" ] && "$hs" -c "$cfg" policy get 2>/dev/null; echo`,
        `echo @@mf:end@@`,
      ].join("\n"),
      `read headscale's config, users and nodes on ${origin}`,
    );
    const s = sections(first.stdout + "\n");
    if (s["config-error"] !== undefined || !s.config) {
      throw new MeshfleetError(`--from ${origin}: cannot read ${cfg}: ${(s["config-error"] || "empty").trim()}. Fix: log in as root (or a member of group headscale), or give --config PATH`);
    }
    const binary = s.binary?.trim() || undefined;
    // Second round: the files config.yaml names; the policy's text, the keys' and database's metadata only.
    let parsed: Record<string, unknown> = {};
    try {
      parsed = (parseYaml(s.config) as Record<string, unknown>) ?? {};
    } catch {
      /* mapImport reports the YAML error */
    }
    const dirOf = path.posix.dirname(cfg);
    const absOf = (p: unknown) => (typeof p === "string" && p !== "" ? (p.startsWith("/") ? p : path.posix.join(dirOf, p)) : undefined);
    const get = (k: string) => k.split(".").reduce<unknown>((v, p) => (v && typeof v === "object" ? (v as Record<string, unknown>)[p] : undefined), parsed);
    const policyPath = absOf(get("policy.path") ?? get("acl_policy_path"));
    const metaPaths = [absOf(get("noise.private_key_path")), absOf(get("derp.server.private_key_path")), absOf(get("database.sqlite.path"))].filter((p): p is string => !!p);
    const second = await run(
      [
        ...(policyPath ? [`echo @@mf:policy@@; if cat -- ${Q(policyPath)}; then echo; else echo; echo @@mf:policy-missing@@; fi`] : []),
        `echo @@mf:stat@@`,
        ...metaPaths.map((p) => `stat -c '%n|%U|%a' -- ${Q(p)} 2>/dev/null || echo ${Q(`${p}|-|-`)}`),
        `echo @@mf:end@@`,
      ].join("\n"),
      `read headscale's policy file and stat its key files on ${origin}`,
    );
    const s2 = sections(second.stdout + "\n");
    const meta = new Map<string, FileMeta>();
    for (const line of (s2.stat ?? "").split("\n").filter(Boolean)) {
      const [p, owner, mode] = line.split("|");
      meta.set(p!, owner === "-" ? { path: p!, exists: false } : { path: p!, exists: true, owner, mode });
    }
    const hostKey = hostKeys[0]!.trim().split(/\s+/).slice(0, 2).join(" ");
    return {
      origin,
      configFile: `${origin}:${cfg}`,
      configText: s.config,
      configDir: dirOf,
      readFile: (p) => (p === policyPath && s2.policy !== undefined && s2["policy-missing"] === undefined ? { shown: `${origin}:${p}`, text: s2.policy } : undefined),
      databasePolicy: s["policy-db"] ? { shown: `${origin}: headscale policy get`, text: s["policy-db"] } : undefined,
      usersJson: s.users ? { shown: `${origin}: headscale users list -o json`, text: s.users } : undefined,
      nodesJson: s.nodes ? { shown: `${origin}: headscale nodes list -o json`, text: s.nodes } : undefined,
      version: s.version?.trim() || undefined,
      stat: (p) => meta.get(p),
      binary,
      ssh: { address: t.host, port: t.port, user: t.user, hostKey: /^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) /.test(hostKey) ? hostKey : undefined },
    };
  } finally {
    session.close();
  }
}

// ---------------------------------------------------------------------------
// Writing

/**
 * YAML as the example fleets are written: lists of plain values on one line (`src: [group:admins]`). A key
 * `<<` (a policy host may be named so) is quoted: plain, the loader would read it as a merge key.
 */
export function yamlText(v: unknown): string {
  const doc = new Document(v);
  visit(doc, {
    Seq(_, node) {
      if (node.items.every((i) => isScalar(i))) node.flow = true;
    },
    Pair(_, pair) {
      if (isScalar(pair.key) && pair.key.value === "<<") pair.key.type = "QUOTE_DOUBLE";
    },
  });
  return doc.toString({ lineWidth: 0, flowCollectionPadding: false });
}

function header(origin: string, what: string): string {
  return `# Imported by \`meshfleet import\` from ${origin} (${what}).\n# IMPORT.md lists every setting of the old config.yaml and where it went.\n`;
}

/** Nodes as `check --nodes` reads them, without anything a node could be taken over with (pre-auth key objects). */
function nodesFileText(nodes: unknown[]): string {
  const clean = nodes.map((n) => {
    if (!n || typeof n !== "object") return n;
    const { pre_auth_key: _drop, ...rest } = n as Record<string, unknown>;
    return rest;
  });
  return JSON.stringify(clean, null, 2) + "\n";
}

export function reportMarkdown(r: ImportResult, keyMeta: FileMeta[]): string {
  const by = (k: ItemKind) => r.items.filter((i) => i.kind === k);
  const line = (i: ReportItem) => `- \`${i.key}\`${i.value !== undefined ? ` = ${i.value}` : ""}${i.to ? ` → ${i.to}` : ""}${i.note ? ` — ${i.note}` : ""}`;
  const sec = (title: string, k: ItemKind, blurb: string) => (by(k).length ? [`## ${title} (${by(k).length})`, "", blurb, "", ...by(k).map(line), ""] : []);
  const adopt = ((r.host.headscale as Record<string, unknown>)?.adopt ?? {}) as Record<string, string>;
  const db = ((r.host.headscale as Record<string, unknown>)?.database ?? {}) as Record<string, string>;
  return [
    `# Import of the headscale at ${r.origin}`,
    "",
    "## Adopted state (never read, copied or written by meshfleet)",
    "",
    `- Noise private key: \`${adopt.noisePrivateKeyPath}\``,
    adopt.derpPrivateKeyPath ? `- DERP private key: \`${adopt.derpPrivateKeyPath}\`` : "- DERP private key: none adopted (the embedded relay was off)",
    db.type === "postgres" ? "- Database: the same PostgreSQL database (headscale.database.postgres)" : `- Database: \`${db.sqlitePath}\` (with its -wal/-shm files)`,
    ...keyMeta.map((m) => `  - on the host: \`${m.path}\` ${m.exists ? `exists (owner ${m.owner}, mode ${m.mode})` : "does not exist"}`),
    ...(keyMeta.some((m) => m.exists && m.owner !== "headscale" && m.path.startsWith("/var/lib/headscale/"))
      ? ["  - meshfleet's unit runs headscale as user headscale; systemd (StateDirectory=) gives it /var/lib/headscale, files included, when the unit first starts"]
      : []),
    "",
    "`headscale.adopt` in the host file keeps these: the deploy writes no key file (the stack's keySeed is not used for",
    "them) and `meshfleet check` refuses a fleet that would write over them. Back them up yourself: unlike derived keys,",
    "they cannot be made again from the keySeed.",
    "",
    ...sec("Not mapped", "unmapped", "Read but not carried over; each says why and what to do."),
    ...sec("Secrets (named, not copied)", "secret", "Set them as stack secrets; they never go into git."),
    ...sec("Changed by meshfleet", "changed", "meshfleet sets these itself; the old value and the reason."),
    ...sec("Kept as headscale.extraSettings", "extra", "headscale settings meshfleet has no option for, rendered as they were."),
    ...sec("Mapped", "mapped", "Now typed options."),
    ...sec("At their defaults", "default", "Nothing to carry over."),
  ].join("\n");
}

/** The policy file an import writes when the policy is too large for fleet.yaml. */
const POLICY_FILE = "policy.hujson";

/** The name the inline fleet.yaml is checked under (no file has it). */
const INLINE = "(import) fleet.yaml";

/**
 * What a diagnostic of the loader's YAML check says past one of its size
 * limits (core/load.ts LIMITS: bytes, lines, list items, values, depth), for
 * the report; undefined for any other diagnostic (syntax, a tag, a key).
 */
export function limitPassed(d: Diagnostic): string | undefined {
  const e = d.expected;
  const at = d.path ? ` at ${d.path}` : "";
  if (e.startsWith(`a fleet file of at most ${LIMITS.fileBytes / 1024} KiB`)) return `${d.found} of YAML, past meshfleet's ${LIMITS.fileBytes / 1024} KiB limit`;
  if (e.startsWith(`at most ${LIMITS.lines} lines`)) return `${d.found} lines and list items, past meshfleet's ${LIMITS.lines} limit`;
  if (e.startsWith(`a mapping of at most ${LIMITS.listItems} keys`) || e.startsWith(`a list of at most ${LIMITS.listItems} items`)) return `${d.found}${at}, past meshfleet's ${LIMITS.listItems}-entry limit`;
  if (e.startsWith(`at most ${LIMITS.values} values`)) return `more than ${LIMITS.values} values${at}, past meshfleet's limit`;
  if (e.startsWith(`lists and mappings nested at most ${LIMITS.depth} deep`)) return `nesting deeper than ${LIMITS.depth}${at}, past meshfleet's limit`;
  return undefined;
}

/**
 * A policy too large for fleet.yaml (past the loader's YAML limits: headscale
 * policies of more than ~120 rules) goes to policy.hujson in headscale's own
 * text, and fleet.yaml names it (`policy: ./policy.hujson`); the report says
 * so, naming the limit fleet.yaml would pass. Only a limit moves it, and only
 * when fleet.yaml without the policy is within them: any other problem of the
 * inline text stays there for check to report. Undefined when fleet.yaml
 * holds it, as before.
 */
function policyInItsFile(r: ImportResult, origin: string): { fleetText: string } | undefined {
  if (r.policyText === undefined) return undefined;
  const inline = header(origin, "fleet settings and policy") + yamlText(r.fleet);
  const passed = loaderYaml(inline, INLINE).diagnostics.map(limitPassed).find((l) => l !== undefined);
  if (!passed) return undefined;
  const fleetText = header(origin, "fleet settings; the policy is in policy.hujson") + yamlText({ ...r.fleet, policy: `./${POLICY_FILE}` });
  if (loaderYaml(fleetText, INLINE).diagnostics.some((d) => limitPassed(d) !== undefined)) return undefined;
  const policyItem = r.items.find((i) => i.key === "policy" && i.kind === "mapped");
  const note = `too large for fleet.yaml (${passed}): written to ${POLICY_FILE} as headscale's policy file, and fleet.yaml says policy: ./${POLICY_FILE}`;
  if (policyItem) Object.assign(policyItem, { to: `${POLICY_FILE} (fleet.yaml policy: ./${POLICY_FILE})`, note: `${policyItem.note}; ${note}` });
  else r.items.push({ key: "policy", kind: "changed", to: POLICY_FILE, note });
  return { fleetText };
}

/**
 * Whether `dir` holds the policy.hujson of an earlier import: its fleet.yaml
 * names it (`policy: ./policy.hujson`). A policy.hujson nothing names is not
 * the import's and stays.
 */
function earlierPolicyFile(dir: string): boolean {
  const fleet = path.join(dir, "fleet.yaml");
  if (!existsSync(path.join(dir, POLICY_FILE)) || !existsSync(fleet)) return false;
  try {
    const v = parseYaml(readFileSync(fleet, "utf8")) as { policy?: unknown } | null;
    return v?.policy === `./${POLICY_FILE}`;
  } catch {
    return false;
  }
}

function outDirProblem(dir: string, force: boolean): string | undefined {
  if (!existsSync(dir)) return undefined;
  if (!statSync(dir).isDirectory()) return `--out ${dir}: exists and is not a folder. Fix: choose another --out`;
  const entries = readdirSync(dir);
  if (entries.length > 0 && !force) return `--out ${dir}: not empty (${entries.slice(0, 5).join(", ")}${entries.length > 5 ? ", ..." : ""}); nothing was written. Fix: choose an empty or new folder, or add --force to replace only fleet.yaml, policy.hujson, the host file, nodes.json and IMPORT.md there (nothing else is deleted; a policy.hujson an earlier import wrote is removed when the policy now fits fleet.yaml)`;
  return undefined;
}

export const command: Command = {
  name: "import",
  summary: "take an existing headscale (config, policy, users) into a fleet folder",
  flags,
  usage,
  async run(argv) {
    const { opts } = parseArgs(argv, flags, { positionals: [] });
    const from = typeof opts.from === "string" ? opts.from : undefined;
    const fromDir = typeof opts["from-dir"] === "string" ? opts["from-dir"] : undefined;
    if (!!from === !!fromDir) throw new UsageError(from ? "give --from or --from-dir, not both" : "where is the headscale? --from [user@]HOST[:PORT] or --from-dir DIR");
    const stack = typeof opts.stack === "string" ? opts.stack : undefined;
    const out = typeof opts.out === "string" ? opts.out : stack ? path.join("hosts", stack) : undefined;
    if (!out) throw new UsageError("where to write the fleet? --out DIR or --stack S (hosts/<S>)");
    const name = typeof opts.name === "string" ? opts.name : "coordinator";
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) throw new UsageError(`--name ${JSON.stringify(name)}: a host name (lowercase letters, digits, -)`);
    const outAbs = path.resolve(out);
    const bad = outDirProblem(outAbs, !!opts.force);
    if (bad) {
      if (opts.json) console.log(JSON.stringify({ ok: false, written: [], problems: [{ severity: "error", file: out, path: "--out", expected: "an empty or new folder", found: "not empty", fix: bad }] }, null, 2));
      else console.error(`meshfleet import: ${bad}`);
      return 1;
    }

    let src: ImportSource;
    if (fromDir) src = dirSource(fromDir);
    else {
      let knownHosts = typeof opts["known-hosts"] === "string" ? opts["known-hosts"] : undefined;
      let identity = typeof opts.identity === "string" ? opts.identity : undefined;
      if (stack && (!knownHosts || !identity)) {
        const { stackConfigFile } = await import("../fleet-hosts.ts");
        const f = stackConfigFile(stack);
        const cfg = existsSync(f) ? ((parseYaml(readFileSync(f, "utf8")) as { config?: Record<string, unknown> } | null)?.config ?? {}) : {};
        knownHosts ??= typeof cfg["meshfleet:knownHostsPath"] === "string" ? (cfg["meshfleet:knownHostsPath"] as string) : undefined;
        identity ??= typeof cfg["meshfleet:sshPrivateKeyPath"] === "string" ? (cfg["meshfleet:sshPrivateKeyPath"] as string) : undefined;
      }
      src = await sshSource(from!, { knownHosts, identity, config: typeof opts.config === "string" ? opts.config : "/etc/headscale/config.yaml" });
    }

    const r = mapImport(src, { hostName: name });
    const keyMeta: FileMeta[] = [];
    if (src.stat) {
      const hs = (r.host.headscale ?? {}) as { adopt?: { noisePrivateKeyPath?: string; derpPrivateKeyPath?: string }; database?: { type?: string; sqlitePath?: string } };
      for (const p of [hs.adopt?.noisePrivateKeyPath, hs.adopt?.derpPrivateKeyPath, hs.database?.type === "sqlite" ? hs.database.sqlitePath : undefined]) {
        if (!p) continue;
        const m = src.stat(p);
        if (m) keyMeta.push(m);
        // meshfleet's unit has StateDirectory=headscale: systemd gives /var/lib/headscale (recursively) to user
        // headscale when it starts. A file elsewhere keeps its owner and must be readable by headscale.
        if (m?.exists && m.owner !== "headscale" && !p.startsWith("/var/lib/headscale/"))
          r.items.push({ key: `owner of ${p}`, kind: "changed", value: `${m.owner}, mode ${m.mode}`, note: `meshfleet runs headscale as user headscale, and only /var/lib/headscale is handed to it by systemd: before the first deploy, stop headscale and chown headscale:headscale ${p} (or move it into /var/lib/headscale and set the path)` });
        if (m && !m.exists) r.problems.push({ severity: "error", file: src.configFile, path: p === hs.adopt?.noisePrivateKeyPath ? "noise.private_key_path" : p === hs.database?.sqlitePath ? "database.sqlite.path" : "derp.server.private_key_path", expected: "an existing file to adopt", found: `${p} does not exist on the host`, fix: "is this the config the running headscale uses? Give its path with --config" });
      }
    }
    const written: string[] = [];
    const removed: string[] = [];
    let check: { ok: boolean; diagnostics: Diagnostic[] } | undefined;
    if (r.problems.length === 0) {
      mkdirSync(outAbs, { recursive: true });
      const policyFile = policyInItsFile(r, src.origin);
      // --force over an import that wrote policy.hujson, when the policy now fits fleet.yaml: the old file would stay, unused.
      const stale = !policyFile && earlierPolicyFile(outAbs);
      const files: [string, string][] = [
        ["fleet.yaml", policyFile?.fleetText ?? header(src.origin, "fleet settings and policy") + yamlText(r.fleet)],
        ...(policyFile ? [[POLICY_FILE, r.policyText!] as [string, string]] : []),
        [`${name}.yaml`, header(src.origin, "the coordinator") + yamlText(r.host)],
        ["nodes.json", nodesFileText(r.nodes ?? [])],
        ["IMPORT.md", reportMarkdown(r, keyMeta)],
      ];
      for (const [f, text] of files) {
        writeFileSync(path.join(outAbs, f), text);
        written.push(path.join(out, f));
      }
      if (stale) {
        rmSync(path.join(outAbs, POLICY_FILE));
        removed.push(path.join(out, POLICY_FILE));
      }
      // The result must be a fleet meshfleet takes: evaluate it as `meshfleet check` does.
      const { evaluateFleet } = await import("../../core/eval.ts");
      const { REGISTRY } = await import("../../modules/index.ts");
      const { hasErrors } = await import("../../core/diagnostics.ts");
      const ev = await evaluateFleet(REGISTRY, outAbs, stack ?? path.basename(outAbs));
      check = { ok: !hasErrors(ev.diagnostics), diagnostics: ev.diagnostics };
    }
    const ok = r.problems.length === 0 && !!check?.ok;
    if (opts.json) {
      console.log(JSON.stringify({ ok, origin: r.origin, out, written, removed, host: name, items: r.items, problems: r.problems, check: check ?? null, adopted: keyMeta }, null, 2));
    } else {
      const { formatDiagnostics } = await import("../../core/diagnostics.ts");
      if (r.problems.length) {
        console.error(formatDiagnostics(r.problems));
        console.error(`${r.problems.length} problem(s) reading ${r.origin}; nothing was written.`);
        return 1;
      }
      const count = (k: ItemKind) => r.items.filter((i) => i.kind === k).length;
      console.log(`imported ${r.origin} into ${out}: ${written.map((w) => path.basename(w)).join(", ")}`);
      console.log(`  ${count("mapped")} mapped, ${count("extra")} kept in headscale.extraSettings, ${count("changed")} changed by meshfleet, ${count("unmapped")} not mapped, ${count("secret")} secrets named (not copied)`);
      for (const i of r.items.filter((x) => x.kind === "unmapped" || x.kind === "secret")) console.log(`  ${i.kind === "secret" ? "secret" : "not mapped"}: ${i.key}${i.value !== undefined ? ` = ${i.value}` : ""}: ${i.note}`);
      console.log(`  adopted (kept where they are, never copied): ${[((r.host.headscale as Record<string, Record<string, string>>).adopt?.noisePrivateKeyPath), (r.host.headscale as Record<string, Record<string, string>>).adopt?.derpPrivateKeyPath, (r.host.headscale as Record<string, Record<string, string>>).database?.sqlitePath].filter(Boolean).join(", ")}`);
      for (const f of removed) console.log(`  removed ${f}: the policy now fits fleet.yaml, which no longer names it (an earlier import wrote it)`);
      console.log(`  details: ${path.join(out, "IMPORT.md")}`);
      if (check && !check.ok) {
        console.error(formatDiagnostics(check.diagnostics.filter((d) => d.severity === "error")));
        console.error(`the imported fleet does not pass check yet: fix the above in ${out}, then run meshfleet check --hosts-dir ${out} --nodes ${path.join(out, "nodes.json")}`);
      } else console.log(`next: meshfleet check --hosts-dir ${out} --nodes ${path.join(out, "nodes.json")}`);
    }
    return ok ? 0 : 1;
  },
};
