/**
 * fleet.yaml: the mesh-wide settings (coordinator, users, DNS, DERP, policy).
 * Every field has its default and description here; docs come from these.
 */
import { z } from "zod";
import { diag, quote, show, suggest } from "./diagnostics.ts";
import { schemaKind, zodDiagnostics } from "./merge.ts";
import { labelProblem } from "./names.ts";
import { policySchema } from "./policy/schema.ts";
import { cidr, duration, email, hostName, ipv4, isNetworkAddress, parseCidr, parseIpv4, parseIpv6, url, userName, type ParsedCidr } from "./schema-types.ts";
import type { Diagnostic } from "./types.ts";

/** A resolver headscale accepts: an IP address, or a DNS-over-HTTPS URL. Anything else it drops silently, leaving nodes with no resolver. */
export function isNameserver(s: string): boolean {
  if (parseIpv4(s) !== null || parseIpv6(s.replace(/%[A-Za-z0-9_.-]+$/, "")) !== null) return true;
  if (!/^https:\/\/[^\s/?#]+(\/[^\s]*)?$/.test(s)) return false;
  try {
    return new URL(s).hostname !== "";
  } catch {
    return false;
  }
}

const NAMESERVER = "an IP address such as 1.1.1.1 or 2606:4700:4700::1111, or a DNS-over-HTTPS URL (https://…)";
const nameserver = z.string().refine(isNameserver, { message: NAMESERVER });

/** Why `s` is not a domain name (labels of letters, digits and '-', dot-separated); undefined when it is one. */
export function domainProblem(s: string): string | undefined {
  if (s === "") return "an empty name";
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) return "a URL (write the domain alone, without the scheme)";
  if (/:\d*$/.test(s)) return "a port (write the domain alone)";
  const body = s.endsWith(".") ? s.slice(0, -1) : s;
  if (body.length > 253) return `${body.length} characters (a domain has at most 253)`;
  for (const label of body.split(".")) {
    const p = labelProblem(label);
    if (p) return label === "" ? "an empty label (two dots in a row, or a leading dot)" : `the label ${quote(label)}, which has ${p}`;
  }
  return undefined;
}

/** A domain as DNS compares it: lowercase, no trailing dot. */
export const canonicalDomain = (s: string) => s.toLowerCase().replace(/\.$/, "");

/** coordinator.headscaleVersion when fleet.yaml sets none (the one copy: `meshfleet up`'s upgrade step reads it too). */
export const DEFAULT_HEADSCALE_VERSION = "0.29.2";

export const fleetSchema = z
  .object({
    coordinator: z
      .object({
        host: hostName.describe("The host (a file in this folder) that runs Headscale."),
        serverUrl: url.describe("The URL clients use to reach Headscale (through the reverse proxy), e.g. https://headscale.example.com."),
        headscaleVersion: z.string().regex(/^\d+\.\d+\.\d+$/).default(DEFAULT_HEADSCALE_VERSION).describe("Headscale release to deploy: one of the releases meshfleet renders the config of (0.28.x, 0.29.x; `meshfleet check` refuses another, naming the staged upgrade path). With meshfleet:headscaleBinaryPath (systemd runtime) a change is an upgrade `meshfleet up` does first: a backup, the new binary with the config rendered for it, a health check, a rollback if it fails."),
      })
      .strict()
      .describe("Where the coordinator runs and how clients reach it."),
    tailscaleVersion: z.string().regex(/^\d+\.\d+\.\d+$/).default("1.98.10").describe("The Tailscale release the fleet expects: `meshfleet status` flags a node running an older one, and join instructions for hand-joined nodes ask for it."),
    users: z.array(userName).default([]).describe("Headscale users to create (nodes log in as one of them unless tagged)."),
    admins: z.array(userName).default([]).describe("Users who must keep SSH to the coordinator (checked against the policy)."),
    oidcUsers: z
      .array(email)
      .default([])
      .describe("People who log in through OpenID Connect (the coordinator's headscale.oidc), by e-mail address: the policy may name them so (carol@example.com). meshfleet does not create them; their first login does."),
    prefixes: z
      .object({
        v4: cidr.default("100.64.0.0/10").describe("IPv4 range node addresses come from."),
        v6: cidr.default("fd7a:115c:a1e0::/48").describe("IPv6 range node addresses come from."),
        allocation: z.enum(["sequential", "random"]).default("sequential").describe("How addresses are handed out."),
      })
      .strict()
      .default({ v4: "100.64.0.0/10", v6: "fd7a:115c:a1e0::/48", allocation: "sequential" })
      .describe("Tailnet address ranges."),
    dns: z
      .object({
        magicDns: z.boolean().default(true).describe("Give nodes names under baseDomain."),
        baseDomain: z.string().default("tailnet.internal").describe("MagicDNS domain; must differ from the server URL's host and not contain it."),
        overrideLocalDns: z.boolean().default(true).describe("Make nodes use the nameservers below."),
        nameservers: z
          .object({
            global: z.array(nameserver).default(["1.1.1.1", "9.9.9.9"]).describe("Resolvers for everything: IP addresses or DNS-over-HTTPS URLs."),
            split: z
              .record(z.string(), z.array(nameserver).min(1))
              .default({})
              .describe("Per-domain resolvers: a domain -> a list of resolver addresses, e.g. home.arpa: [192.168.8.1]."),
          })
          .strict()
          .default({ global: ["1.1.1.1", "9.9.9.9"], split: {} }),
        extraRecords: z
          .array(z.object({ name: z.string(), type: z.enum(["A", "AAAA"]).default("A"), value: z.string() }).strict())
          .default([])
          .describe("Extra DNS records served to nodes."),
      })
      .strict()
      .default({ magicDns: true, baseDomain: "tailnet.internal", overrideLocalDns: true, nameservers: { global: ["1.1.1.1", "9.9.9.9"], split: {} }, extraRecords: [] })
      .describe("MagicDNS and resolvers pushed to nodes."),
    derp: z
      .object({
        regionId: z.number().int().min(900).max(999).default(900).describe("The self-hosted DERP region id (900-999 are free for custom regions)."),
        regionCode: z.string().default("home").describe("Short region code shown by `tailscale netcheck`."),
        regionName: z.string().default("meshfleet").describe("Region name."),
        publicUrls: z.array(url).default([]).describe("DERP map URLs to merge (fetched by Headscale at start; keep [] offline)."),
      })
      .strict()
      .default({ regionId: 900, regionCode: "home", regionName: "meshfleet", publicUrls: [] })
      .describe("The self-hosted DERP region; its nodes are the hosts with the derp module enabled."),
    preAuthKeyExpiration: duration.default("90d").describe("Lifetime of the pre-auth keys meshfleet makes."),
    nodeExpiry: z
      .object({
        after: z
          .string()
          .regex(/^(0|[1-9]\d*(s|m|h|d))$/, { message: 'a duration such as 180d or 90d, or "0" (keys never expire)' })
          .default("0")
          .describe("How long a node's key lasts after it logs in (headscale's node.expiry; Tailscale's service uses 180d); then the node drops every tunnel until someone logs it in again. \"0\": never."),
        exemptTags: z
          .array(z.string())
          .default([])
          .describe("Tags whose nodes never expire (servers). headscale 0.29 never expires any tagged node, so this must list every tag a host of this fleet carries; checked when after is not \"0\"."),
      })
      .strict()
      .default({ after: "0", exemptTags: [] })
      .describe("Node key expiry for user devices, with tagged servers exempt."),
    policy: z.any().default({}).describe("The tailnet policy (groups, tagOwners, hosts, acls, grants, ssh, autoApprovers, nodeAttrs, tests), as a mapping here, or the path of a file of this folder holding it in headscale's own format (HuJSON: JSON with comments and trailing commas), e.g. policy: ./policy.hujson. A file is for a policy larger than fleet.yaml may be (16 KiB, about 120 rules); it may be up to 1 MiB, 200,000 values, nested 32 deep, and a problem in it is named in it (policy.hujson: acls[3].dst[0])."),
    tailscaleSaas: z
      .object({
        loginDomain: z
          .string()
          .refine((s) => s === "" || domainProblem(s) === undefined, { message: "an e-mail domain such as example.com (no @, no scheme), or \"\"" })
          .default("")
          .describe("Tailscale's service knows users by login: `alice@` becomes `alice@<loginDomain>` in the policy file `meshfleet render --policy-for tailscale-saas` writes (\"\": no default, each user needs a login below)."),
        logins: z
          .record(userName, z.string().regex(/^[^@\s]+@[^@\s]+$/, { message: "a Tailscale login: name@domain (alice@example.com, alice@github)" }))
          .default({})
          .describe("headscale user -> Tailscale login, for users whose login is not <name>@<loginDomain> (bob: bob@gmail.com, carol: carol@github)."),
      })
      .strict()
      .default({ loginDomain: "", logins: {} })
      .describe("How this fleet's users are written for Tailscale's own service (a move to or from it); headscale ignores it."),
    sites: z
      .array(hostName)
      .default([])
      .describe("Site stacks of this fleet: folders beside this one (e.g. [home-site, office]), each with a fleet.yaml of `core: { stack, dir }` and its own hosts. Every stack evaluates the whole fleet (the policy covers every site, and this core makes each site host's pre-auth key), and deploys only its own folder's hosts (docs/sites.md)."),
  })
  .strict();

/**
 * A site's fleet.yaml: only where its core is. Everything mesh-wide (the
 * coordinator, users, policy, DNS) is the core's; a site has hosts.
 */
export const siteFleetSchema = z
  .object({
    core: z
      .object({
        stack: z.string().regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+){0,2}$/, { message: "a Pulumi stack name (core, or org/project/core)" }).describe("The Pulumi stack that deploys the core (the coordinator); this site reads the coordinator's URL and its pre-auth keys from that stack's outputs."),
        dir: z.string().regex(/^\.\.\/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\/?$/, { message: "the core's folder beside this one: ../<name>" }).describe("The core's folder, relative to this one (../core); its fleet.yaml lists this folder in sites."),
      })
      .strict()
      .describe("This site's core stack."),
  })
  .strict();

export type FleetConfig = z.infer<typeof fleetSchema>;

const FLEET_DESC = "a mapping of fleet settings (coordinator, users, dns, derp, policy...)";

/**
 * Every problem in fleet.yaml's value, reported together: the schema's (with
 * "did you mean" for misspelt keys, the policy's keys included), resolvers
 * that are not addresses, split-DNS domains that are not domains, and a
 * baseDomain that would swallow the server URL's host however it is spelt.
 * The loader calls this before evaluation; a fleet.yaml with errors goes no
 * further, so each problem is reported once.
 */
export function checkFleetFile(value: unknown, file: string): Diagnostic[] {
  if (!value || typeof value !== "object" || Array.isArray(value))
    return [diag(file, "", FLEET_DESC, show(value), "write fleet.yaml as key: value lines, starting with coordinator: (host and serverUrl)")];
  const out: Diagnostic[] = [];
  const v = value as Record<string, unknown>;
  if ("core" in v && !("coordinator" in v)) return checkSiteFile(v, file);
  const r = fleetSchema.safeParse(v, { reportInput: true });
  if (!r.success) {
    const rest = r.error.issues.filter((i) => i.code !== "unrecognized_keys");
    for (const i of r.error.issues) if (i.code === "unrecognized_keys") out.push(...unknownKeys(file, fleetSchema, i.path as PropertyKey[], i.keys));
    if (rest.length) out.push(...zodDiagnostics(fleetSchema, { issues: rest } as unknown as z.ZodError, new Map(), file));
  }
  const policy = v.policy;
  if (policy && typeof policy === "object" && !Array.isArray(policy)) {
    const p = policySchema.safeParse(policy);
    if (!p.success)
      for (const i of p.error.issues) if (i.code === "unrecognized_keys") out.push(...unknownKeys(file, policySchema, i.path as PropertyKey[], i.keys, "policy"));
  }
  if (policy && typeof policy === "object" && !Array.isArray(policy)) out.push(...checkPolicyNoOps(policy as Record<string, unknown>, file));
  out.push(...checkDns(v, file));
  const coord = v.coordinator as Record<string, unknown> | undefined;
  if (coord && typeof coord.serverUrl === "string" && /^http:\/\//i.test(coord.serverUrl) && !isLoopbackUrl(coord.serverUrl))
    out.push(
      diag(file, "coordinator.serverUrl", "an https:// URL (clients send their node keys and pre-auth keys to it)", quote(coord.serverUrl), `use https:// (the reverse-proxy profile terminates TLS), or keep http only on a network you trust`, "warning"),
    );
  return out;
}

/** A site's fleet.yaml (core: { stack, dir }): the schema's problems, a key of the core's form named as such. */
function checkSiteFile(v: Record<string, unknown>, file: string): Diagnostic[] {
  const r = siteFleetSchema.safeParse(v, { reportInput: true });
  if (r.success) return [];
  const out: Diagnostic[] = [];
  const coreKeys = Object.keys(fleetSchema.shape);
  for (const i of r.error.issues) {
    if (i.code !== "unrecognized_keys") continue;
    for (const k of i.keys) {
      const at = [...(i.path as PropertyKey[]), k].reduce<string>((p, x) => joinPath(p, x), "");
      out.push(
        i.path.length === 0 && coreKeys.includes(k)
          ? diag(file, at, "a site's fleet file: core: { stack, dir } alone (the mesh-wide settings are the core's)", `${quote(k)} in a site (this file has core:)`, `move ${k} into the core's fleet.yaml, or remove core: to make this folder a fleet of its own`)
          : unknownKeys(file, siteFleetSchema, i.path as PropertyKey[], [k])[0],
      );
    }
  }
  const rest = r.error.issues.filter((i) => i.code !== "unrecognized_keys");
  if (rest.length) out.push(...zodDiagnostics(siteFleetSchema, { issues: rest } as unknown as z.ZodError, new Map(), file));
  return out;
}

function isLoopbackUrl(u: string): boolean {
  try {
    const h = new URL(u).hostname;
    return h === "localhost" || h === "[::1]" || h.startsWith("127.");
  } catch {
    return false;
  }
}

const joinPath = (base: string, key: PropertyKey) => (typeof key === "number" ? `${base}[${key}]` : base ? `${base}.${String(key)}` : String(key));

/** One diagnostic per unknown key, with the closest known key as the fix when there is one. */
function unknownKeys(file: string, schema: z.ZodType, at: PropertyKey[], keys: string[], prefix = ""): Diagnostic[] {
  let s: z.ZodType | undefined = schema;
  for (const k of at) {
    if (!s) break;
    const kind = schemaKind(s);
    if (kind.kind === "object") s = kind.shape[k as string];
    else if (kind.kind === "record") s = kind.value;
    else if (kind.kind === "array") s = elementOf(s);
    else s = undefined;
  }
  const kind = s ? schemaKind(s) : undefined;
  const known = kind?.kind === "object" ? Object.keys(kind.shape) : [];
  const base = at.reduce<string>((p, k) => joinPath(p, k), prefix);
  const where = base ? `${base}` : "the top level";
  return keys.map((k) => {
    const near = suggest(k, known);
    return diag(
      file,
      joinPath(base, k),
      `one of the options ${known.join(", ")}${base ? "" : ""}`,
      `unknown option ${quote(k)} at ${where}`,
      near ? `did you mean "${near}"? Rename it.` : `remove ${quote(k)}${base ? ` from ${base}` : ""}`,
    );
  });
}

function elementOf(s: z.ZodType): z.ZodType | undefined {
  let a: any = s;
  while (a?._zod?.def && a._zod.def.type !== "array") a = a._zod.def.innerType ?? a._zod.def.in;
  return a?._zod?.def?.element;
}

/** The network of a CIDR with host bits set, written out (192.168.8.5/24 -> 192.168.8.0/24). */
function networkOf(c: ParsedCidr): string {
  const width = c.v6 ? 128 : 32;
  const mask = ((1n << BigInt(width)) - 1n) ^ ((1n << BigInt(width - c.bits)) - 1n);
  const a = c.addr & mask;
  if (!c.v6) return `${[24n, 16n, 8n, 0n].map((s) => String((a >> s) & 255n)).join(".")}/${c.bits}`;
  const groups = Array.from({ length: 8 }, (_, i) => ((a >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
  return `${groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::")}/${c.bits}`;
}

/**
 * Policy entries headscale takes without a word and that then do nothing:
 * an auto-approver route with host bits set (it never equals an advertised
 * route), and a tag whose only owners are groups with no members (no one can
 * assign it).
 */
function checkPolicyNoOps(policy: Record<string, unknown>, file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  const aa = policy.autoApprovers as Record<string, unknown> | undefined;
  const routes = aa && typeof aa === "object" ? aa.routes : undefined;
  if (routes && typeof routes === "object" && !Array.isArray(routes))
    for (const r of Object.keys(routes)) {
      const c = parseCidr(r);
      if (c && !isNetworkAddress(c))
        out.push(diag(file, `policy.autoApprovers.routes["${r}"]`, "a network address (host bits zero): an approver for a route with host bits set never matches an advertised route", quote(r), `write the network: ${networkOf(c)}`));
    }
  const groups = (policy.groups && typeof policy.groups === "object" ? policy.groups : {}) as Record<string, unknown>;
  const owners = (policy.tagOwners && typeof policy.tagOwners === "object" ? policy.tagOwners : {}) as Record<string, unknown>;
  for (const [tag, list] of Object.entries(owners)) {
    if (!Array.isArray(list) || list.length === 0) continue;
    const empty = list.filter((o) => typeof o === "string" && o.startsWith("group:") && Array.isArray(groups[o]) && (groups[o] as unknown[]).length === 0);
    if (empty.length === list.length)
      out.push(
        diag(file, `policy.tagOwners["${tag}"]`, "a tag someone can assign (an owner that is a user, or a group with members)", `owners ${empty.join(", ")}, which ${empty.length > 1 ? "have" : "has"} no members`, `add members to ${empty[0]} in policy.groups, or list a user (alice@) as an owner of ${tag}`, "warning"),
      );
  }
  return out;
}

function checkDns(v: Record<string, unknown>, file: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  const dns = v.dns as Record<string, unknown> | undefined;
  if (!dns || typeof dns !== "object") return out;
  const ns = dns.nameservers as Record<string, unknown> | undefined;
  const split = ns && typeof ns === "object" ? ns.split : undefined;
  if (split && typeof split === "object" && !Array.isArray(split))
    for (const domain of Object.keys(split)) {
      const p = domainProblem(domain);
      if (p)
        out.push(
          diag(file, `dns.nameservers.split.${domain}`, "a domain (such as home.arpa) mapped to a list of resolver addresses", `${quote(domain)}, which has ${p}`, "write the key as the domain whose names those resolvers answer, e.g. home.arpa: [192.168.8.1]"),
        );
    }
  const records = dns.extraRecords;
  if (Array.isArray(records))
    records.forEach((r, i) => {
      if (!r || typeof r !== "object") return; // the schema reports it
      const { name, type = "A", value } = r as Record<string, unknown>;
      if (typeof name === "string") {
        const p = domainProblem(name);
        if (p) out.push(diag(file, `dns.extraRecords[${i}].name`, "a DNS name such as nas.home.arpa", `${quote(name)}, which has ${p}`, "set the name to a domain name of letters, digits, '-' and dots"));
      }
      if (typeof value === "string" && (type === "A" || type === "AAAA")) {
        const ok = type === "A" ? parseIpv4(value) !== null : parseIpv6(value) !== null;
        if (!ok)
          out.push(
            diag(file, `dns.extraRecords[${i}].value`, type === "A" ? "an IPv4 address for an A record, such as 192.168.8.10" : "an IPv6 address for an AAAA record, such as fd7a:115c:a1e0::1", quote(value), type === "A" ? "set the value to an IPv4 address, or type: AAAA for an IPv6 one" : "set the value to an IPv6 address, or type: A for an IPv4 one"),
          );
      }
    });
  const base = dns.baseDomain;
  const serverUrl = (v.coordinator as Record<string, unknown> | undefined)?.serverUrl;
  if (typeof base !== "string" || base === "") return out;
  const conflict = typeof serverUrl === "string" ? serverUrlConflict(serverUrl, base) : null;
  if (conflict)
    out.push(
      diag(
        file,
        "dns.baseDomain",
        "a MagicDNS domain that is not the server URL's host and does not contain it (clients would resolve the coordinator inside the tailnet and lose it)",
        `baseDomain ${quote(base)} with serverUrl ${serverUrl}${conflict === "same" ? " (same host)" : " (the server is inside it)"}`,
        "set dns.baseDomain to a domain of its own, e.g. tailnet.internal or ts.<your domain>",
      ),
    );
  else {
    const p = domainProblem(base);
    if (p) out.push(diag(file, "dns.baseDomain", "a domain name such as tailnet.internal", `${quote(base)}, which has ${p}`, "set dns.baseDomain to a domain name alone, e.g. tailnet.internal"));
  }
  return out;
}

/**
 * Does baseDomain equal the server URL's host, or contain it? Compared as DNS
 * compares names: case-insensitive, a trailing dot ignored, a port in either
 * ignored (the names resolve the same whatever the port).
 */
export function serverUrlConflict(serverUrl: string, baseDomain: string): "same" | "suffix" | null {
  let host: string;
  try {
    host = new URL(serverUrl).hostname;
  } catch {
    return null;
  }
  if (host.startsWith("[")) return null; // an IPv6 literal is inside no domain
  const h = canonicalDomain(host);
  const b = canonicalDomain(baseDomain.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").replace(/\/.*$/, "").replace(/:\d*$/, ""));
  if (!b) return null;
  if (h === b) return "same";
  if (h.endsWith(`.${b}`)) return "suffix";
  return null;
}

export { ipv4 };
