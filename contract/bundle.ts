/**
 * The bundle contract: everything the agent needs to activate one host's
 * generation, as one JSON document. This file is the whole contract — one
 * zod schema gives both the TypeScript type and the validation, and
 * `BUNDLE_FORMAT` names its version. The deploy side builds bundles
 * (core/render.ts renderHost); the agent reads them (agent/ops.ts) and
 * imports nothing else from the deploy side.
 *
 * Changing the schema means bumping BUNDLE_FORMAT: test/contract holds a
 * golden of the schema's JSON form together with the format number.
 */
import * as crypto from "node:crypto";
import { en } from "zod/locales";
import * as z from "zod/mini";
import { NFT_FAMILY, NFT_TABLE, SYSCTL_FILE, unitPath } from "./constants.ts";

export const BUNDLE_FORMAT = 3;


// ---------------------------------------------------------------------------
// Small value types

/**
 * Where the agent may write: an absolute path of non-empty segments, none of
 * them "." or "..", so no "//", no trailing "/", no control characters.
 */
export const ABS_PATH = /^(?:\/(?!\.\.?(?:\/|$))[^/\0\n\r]+)+$/;
const v4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
function isIpv6(s: string): boolean {
  // Stryker disable next-line Regex: a quick refusal; a character outside the class ends up in some group, which the anchored group check below refuses, so the anchors here change nothing
  if (!/^[0-9a-fA-F:]+$/.test(s) || s.split("::").length > 2) return false;
  const parts = s.split("::").map((h) => (h ? h.split(":") : []));
  if (parts.some((gs) => gs.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g)))) return false;
  const n = parts.reduce((a, gs) => a + gs.length, 0);
  return parts.length === 2 ? n < 8 : n === 8;
}
/** An address or CIDR of either family; `family` tells which. */
export function cidrFamily(s: string): "ip" | "ip6" | null {
  const [a, bits, more] = s.split("/");
  if (more !== undefined) return null;
  const fam = v4.test(a) ? "ip" : isIpv6(a) ? "ip6" : null;
  // Stryker disable next-line ConditionalExpression: without it every way below returns fam, which is null here
  if (!fam) return null;
  if (bits === undefined) return fam;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > (fam === "ip" ? 32 : 128)) return null;
  return fam;
}

/**
 * The schemas, built on first use: building them costs the agent tens of
 * milliseconds at start-up, and most of its commands (the 30 s peers timer,
 * metrics, status) never read a bundle from outside.
 */
function buildSchemas() {
  // zod/mini keeps the agent small; it has no messages until a locale is set.
  z.config(en());
  const str = (re: RegExp, message: string) => z.string().check(z.regex(re, { message }));

  const absPath = str(ABS_PATH, 'an absolute path without "..", "." or empty ("//") segments');

  const hex64 = str(/^[0-9a-f]{64}$/, "64 lowercase hex digits (sha256)");
  const mode = str(/^0[0-7]{3}$/, 'an octal mode such as "0644"');
  const account = str(/^[a-z_][a-z0-9_-]{0,31}\$?$/, "a user or group name");
  const unitName = str(/^[A-Za-z0-9@._:\\-]+\.(service|timer|socket|path|target|mount)$/, "a systemd unit name such as tailscaled.service");
  const ifname = str(/^[A-Za-z0-9_.:@-]{1,15}$/, "an interface name");
  const nftName = str(/^[a-z][a-z0-9_]{0,62}$/, "an nft name (lowercase letters, digits, _)");
  /** nft comments: at most 128 bytes, no quotes or backslashes (they end up inside "..."). */
  const nftComment = str(/^[^"\\\n\r]{0,128}$/, "a comment of at most 128 characters without quotes or backslashes");
  const port = z.int().check(z.gte(1), z.lte(65535));
  const tag = str(/^tag:[a-z0-9][a-z0-9-]*$/, "a tag such as tag:router");
  const hostLabel = str(/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/, "a host name (DNS label)");
  const ipFamily = z.enum(["ip", "ip6"]);
  const nonEmpty = <T extends z.ZodMiniType>(t: T) => z.array(t).check(z.minLength(1));

  const cidr = z.string().check(z.refine((s) => cidrFamily(s) !== null, { message: "an address or CIDR such as 192.168.8.0/24 or fd7a:115c:a1e0::/48" }));

  // ---------------------------------------------------------------------------
  // The parts of a bundle

  const bundleFileSchema = z.strictObject({
    path: absPath,
    mode,
    owner: account,
    group: account,
    /** sha256 hex of `content` (utf8). */
    sha256: hex64,
    content: z.string(),
    /** Secret content: never logged or diffed; written 0600. */
    secret: z.boolean(),
  });

  const bundleUnitSchema = z.strictObject({
    name: unitName,
    content: z.string(),
    /** Enabled and started by the agent. */
    enable: z.boolean(),
    /** Files whose change restarts the unit, beyond the paths its own text names. */
    restartTriggers: z.array(absPath),
  });

  /** An address match: literal CIDRs of one family, or a set of the table. */
  const addrMatch = z.union([
    z.strictObject({ family: ipFamily, cidrs: nonEmpty(cidr) }),
    z.strictObject({ family: ipFamily, set: nftName }),
  ]);

  /** One nft rule: matches (all optional, in this order in the text), a statement, then a verdict (a rule without one goes on to the next). */
  const nftRuleSchema = z.strictObject({
    iifname: z.optional(ifname),
    ctState: z.optional(nonEmpty(z.enum(["established", "related", "invalid", "new", "untracked"]))),
    saddr: z.optional(addrMatch),
    /**
     * Format 3. The destination (a router's forward chain: tailnet traffic
     * to the prefixes it routes, filtered by the git policy).
     */
    daddr: z.optional(addrMatch),
    icmp: z.optional(
      z.strictObject({
        family: ipFamily,
        types: nonEmpty(z.enum(["echo-request", "nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert", "packet-too-big"])),
      }),
    ),
    l4: z.optional(z.strictObject({ proto: z.enum(["tcp", "udp", "tcp+udp"]), dports: z.optional(nonEmpty(port)) })),
    /**
     * Format 3. TCP SYNs get their MSS lowered to the route's MTU
     * (`tcp flags syn tcp option maxseg size set rt mtu`): TCP through a
     * router whose path MTU discovery fails stalls (tailscale#8672, #9720).
     */
    tcpMss: z.optional(z.literal("rt-mtu")),
    counter: z.optional(z.boolean()),
    verdict: z.optional(z.union([z.enum(["accept", "drop"]), z.strictObject({ jump: nftName })])),
    comment: z.optional(nftComment),
  });

  const nftSetSchema = z.strictObject({
    name: nftName,
    type: z.enum(["ipv4_addr", "ipv6_addr"]),
    /** Addresses and CIDRs always in the set (flags interval). */
    elements: z.array(cidr),
    /**
     * Fleet hosts whose live tailnet addresses of this family belong in the
     * set too; the agent fills them from `tailscale status` (`peers`).
     */
    members: z.array(hostLabel),
  });

  const nftChainSchema = z.strictObject({
    name: nftName,
    /** A base chain's hook, or null for a regular chain (reached by jump). */
    hook: z.nullable(
      z.strictObject({
        type: z.literal("filter"),
        hook: z.enum(["input", "forward", "output"]),
        priority: z.literal("filter"),
        policy: z.enum(["accept", "drop"]),
      }),
    ),
    rules: z.array(nftRuleSchema),
  });

  /** The host's `table inet meshfleet`, as data; the agent renders it (contract/nftables.ts). */
  const firewallSchema = z.strictObject({
    family: z.literal(NFT_FAMILY),
    table: z.literal(NFT_TABLE),
    sets: z.array(nftSetSchema),
    chains: z.array(nftChainSchema),
  });

  /** The tailscale client's settings; the agent builds the `tailscale up/set` argv (contract/tailscale.ts). */
  const tailscaleSchema = z.strictObject({
    /** The tailscale CLI on the host: an absolute path, or a command name looked up on PATH. */
    cli: z.union([absPath, str(/^[a-z][a-z0-9._-]*$/, "a command name such as tailscale")]),
    loginServer: str(/^https?:\/\/[^\s/]+(\/\S*)?$/, "a URL starting with http:// or https://"),
    /** The 0600 file holding the pre-auth key (one of the bundle's secret files). */
    authKeyFile: absPath,
    hostname: hostLabel,
    /** The node's tags: they come from its pre-auth key; the agent checks them, never requests them. */
    tags: z.array(tag),
    /** Subnet routes advertised (the exit routes are `exitNode`). */
    routes: z.array(cidr),
    exitNode: z.boolean(),
    acceptRoutes: z.boolean(),
    acceptDns: z.boolean(),
    ssh: z.boolean(),
    snatSubnetRoutes: z.boolean(),
    netfilterMode: z.enum(["on", "nodivert", "off"]),
    /** More `tailscale up` flags, one per element (`--operator=alice`). */
    extraUpFlags: z.array(str(/^--[a-z][a-z-]*(=[^\n\r]*)?$/, "a flag such as --operator=alice")),
  });

  const probeName = z.string().check(z.minLength(1));
  const probeSchema = z.discriminatedUnion("kind", [
    z.strictObject({ name: probeName, kind: z.literal("http"), url: str(/^https?:\/\//, "an http(s) URL"), expectStatus: z.int().check(z.gte(100), z.lte(599)), insecure: z.optional(z.boolean()) }),
    z.strictObject({ name: probeName, kind: z.literal("tcp"), host: z.string().check(z.minLength(1)), port }),
    z.strictObject({ name: probeName, kind: z.literal("tailscale-running") }),
    z.strictObject({ name: probeName, kind: z.literal("routes-advertised"), routes: z.array(cidr) }),
    z.strictObject({ name: probeName, kind: z.literal("unit-active"), unit: unitName }),
  ]);

  const bundleSchema = z.strictObject({
    format: z.literal(BUNDLE_FORMAT),
    host: hostLabel,
    /** sha256 over the canonical JSON of every other field; names the generation. */
    hash: hex64,
    files: z.array(bundleFileSchema),
    /** sysctl key -> value, written to SYSCTL_FILE and applied. */
    sysctl: z.record(str(/^[a-z0-9_][A-Za-z0-9_.\-/]*$/, "a sysctl key such as net.ipv4.ip_forward"), str(/^[^\n\r]*$/, "a one-line value")),
    units: z.array(bundleUnitSchema),
    /** null: the firewall is off (no table inet meshfleet). */
    firewall: z.nullable(firewallSchema),
    /** null: tailscale is not managed on this host. */
    tailscale: z.nullable(tailscaleSchema),
    probes: z.array(probeSchema),
    metrics: z.strictObject({ enable: z.boolean(), textfileDir: z.union([absPath, z.literal("")]) }),
    /** Host commands run after activation; their failures are warnings. */
    bestEffort: z.array(z.strictObject({ argv: nonEmpty(z.string()), why: z.string() })),
  });

  return { bundleFileSchema, bundleUnitSchema, nftRuleSchema, nftSetSchema, nftChainSchema, firewallSchema, tailscaleSchema, probeSchema, bundleSchema };
}

type Schemas = ReturnType<typeof buildSchemas>;
let built: Schemas | undefined;
/** The bundle's schema and its parts' (built once, on first use). */
export const schemas = (): Schemas => (built ??= buildSchemas());

/** The bundle's zod schema (lazy: built when first used). */
export const bundleSchema = z.lazy(() => schemas().bundleSchema);

export type Bundle = z.infer<Schemas["bundleSchema"]>;
export type BundleFile = z.infer<Schemas["bundleFileSchema"]>;
export type BundleUnit = z.infer<Schemas["bundleUnitSchema"]>;
export type Firewall = z.infer<Schemas["firewallSchema"]>;
export type NftSet = z.infer<Schemas["nftSetSchema"]>;
export type NftChain = z.infer<Schemas["nftChainSchema"]>;
export type NftRule = z.infer<Schemas["nftRuleSchema"]>;
export type TailscaleConfig = z.infer<Schemas["tailscaleSchema"]>;
export type Probe = z.infer<Schemas["probeSchema"]>;

// ---------------------------------------------------------------------------
// Hashing

/** crypto.hash (node >= 20.12): one call, no Hash object; the agent may run on an older node. */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: "hex") => string }).hash;
export const sha256 = (s: string): string => (oneShot ? oneShot("sha256", s, "hex") : crypto.createHash("sha256").update(s, "utf8").digest("hex"));

/**
 * sha256 for texts many hosts share (unit files, non-secret files): texts
 * hashed before -> their hash, so a fleet's 1,000 copies of one unit are
 * hashed once. Never for secret content (the memo would keep it). Bounded by
 * the characters held.
 */
const hashed = new Map<string, string>();
let hashedChars = 0;
const HASHED_MAX_CHARS = 4 * 1024 * 1024;
export const sha256Shared = (s: string): string => {
  const known = hashed.get(s);
  if (known !== undefined) return known;
  const h = sha256(s);
  if (s.length <= 64 * 1024) {
    if (hashedChars + s.length > HASHED_MAX_CHARS) {
      hashed.clear();
      hashedChars = 0;
    }
    hashed.set(s, h);
    hashedChars += s.length;
  }
  return h;
};

/** JSON with keys sorted at every level: the same bundle always hashes the same. */
export function canonicalJson(value: unknown): string {
  return canonical(value) as string;
}

/** An object key that is an array index: JSON.stringify writes those first, in numeric order. */
const isIndexKey = (k: string) => {
  const c = k.charCodeAt(0);
  // Stryker disable next-line ConditionalExpression,LogicalOperator: a quick refusal of keys that do not start with a digit; the regex below refuses them as well
  if (c < 48 || c > 57) return false;
  return /^(?:0|[1-9]\d{0,9})$/.test(k) && Number(k) < 4294967295;
};

/**
 * JSON.stringify(sortedKeys(v)), written out directly: no sorted copy (a
 * bundle is hashed on every render). Plain objects and arrays only; any other
 * object (toJSON, a class instance) goes through the sorted copy as before.
 */
function canonical(v: unknown): string | undefined {
  if (v === null) return "null";
  switch (typeof v) {
    case "string":
    case "number":
    case "bigint":
      return JSON.stringify(v);
    // Stryker disable next-line ConditionalExpression: without this case a boolean falls through to the sorted copy below, which writes the same true or false
    case "boolean":
      return v ? "true" : "false";
    case "object":
      break;
    default:
      return undefined;
  }
  // Stryker disable next-line ConditionalExpression,BlockStatement: the fast way; without it an array goes through the sorted copy below, which keeps its order and writes the same text
  if (Array.isArray(v)) {
    let s = "[";
    for (let i = 0; i < v.length; i++) s += (i ? "," : "") + (canonical(v[i]) ?? "null");
    return s + "]";
  }
  const proto = Object.getPrototypeOf(v);
  // Only speed: a class instance (without toJSON) written out below reads the same as its sorted copy (both take its own enumerable keys), and a plain object the same through the copy.
  // Stryker disable next-line all: which objects other than toJSON ones take the sorted copy changes only speed (see above)
  if (proto !== Object.prototype && proto !== null) return JSON.stringify(sortedKeys(v));
  if (typeof (v as { toJSON?: unknown }).toJSON === "function") return JSON.stringify(sortedKeys(v));
  const o = v as Record<string, unknown>;
  let keys = Object.keys(o).sort();
  if (keys.some(isIndexKey)) keys = [...keys.filter(isIndexKey).sort((a, b) => Number(a) - Number(b)), ...keys.filter((k) => !isIndexKey(k))];
  let s = "{";
  for (const k of keys) {
    const x = canonical(o[k]);
    if (x === undefined) continue;
    s += (s.length > 1 ? "," : "") + JSON.stringify(k) + ":" + x;
  }
  return s + "}";
}

/** A copy with object keys in sorted order (null-prototype objects, so no key is special). */
function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (v && typeof v === "object" && typeof (v as { toJSON?: unknown }).toJSON !== "function") {
    const o = v as Record<string, unknown>;
    const out: Record<string, unknown> = Object.create(null);
    for (const k of Object.keys(o).sort()) out[k] = sortedKeys(o[k]);
    return out;
  }
  return v;
}

export function bundleHash(b: Omit<Bundle, "hash"> | Bundle): string {
  const { hash: _ignored, ...rest } = b as Bundle;
  return sha256(canonicalJson(rest));
}

/** Fill in `hash` for a bundle body. */
export function sealBundle(body: Omit<Bundle, "hash">): Bundle {
  return { ...body, hash: bundleHash(body) };
}

// ---------------------------------------------------------------------------
// Validation

function issuePath(path: readonly PropertyKey[]): string {
  let s = "";
  for (const k of path) s += typeof k === "number" ? `[${k}]` : s ? `.${String(k)}` : String(k);
  return s || "bundle";
}

function valueAt(x: unknown, path: readonly PropertyKey[]): unknown {
  let v = x;
  // Stryker disable next-line ConditionalExpression,LogicalOperator: zod's issue paths stop at the first value that is not an object (a missing field is the last step), so the guard never meets a primitive
  for (const k of path) v = v && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/** A union alternative's first issue's message. */
// Stryker disable next-line OptionalChaining,StringLiteral: zod gives every failed alternative at least one issue, so e[0] is always there and "?" is never shown
const firstMessage = (e: readonly { message: string }[]): string => e[0]?.message ?? "?";

const shown = (v: unknown): string => {
  const s = v === undefined ? "nothing" : JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

/** Cross-field rules the schema's shape cannot say; `hashes: false` skips the content and bundle hashes. */
export function consistencyProblems(b: Bundle, hashes = true): string[] {
  const out: string[] = [];
  const owned = new Map<string, string>();
  const claim = (p: string, by: string) => {
    const prev = owned.get(p);
    if (prev) out.push(`${by}: path ${p} is also written by ${prev}`);
    else owned.set(p, by);
  };
  b.files.forEach((f, i) => {
    claim(f.path, `files[${i}]`);
    if (hashes && sha256(f.content) !== f.sha256) out.push(`files[${i}] (${f.path}): sha256 does not match its content`);
  });
  if (Object.keys(b.sysctl).length) claim(SYSCTL_FILE, "sysctl");
  b.units.forEach((u, i) => claim(unitPath(u.name), `units[${i}]`));
  if (b.firewall) {
    const sets = new Map(b.firewall.sets.map((s) => [s.name, s]));
    if (sets.size !== b.firewall.sets.length) out.push("firewall.sets: set names repeat");
    b.firewall.sets.forEach((s, i) =>
      s.elements.forEach((e, j) => {
        if (cidrFamily(e) !== (s.type === "ipv4_addr" ? "ip" : "ip6")) out.push(`firewall.sets[${i}].elements[${j}]: ${e} is not an ${s.type === "ipv4_addr" ? "IPv4" : "IPv6"} address`);
      }),
    );
    const chains = new Set(b.firewall.chains.map((c) => c.name));
    if (chains.size !== b.firewall.chains.length) out.push("firewall.chains: chain names repeat");
    b.firewall.chains.forEach((c, i) =>
      c.rules.forEach((r, j) => {
        const at = `firewall.chains[${i}].rules[${j}]`;
        if (typeof r.verdict === "object" && !chains.has(r.verdict.jump)) out.push(`${at}: jumps to chain ${r.verdict.jump}, which the table does not have`);
        if (r.verdict === undefined && !r.tcpMss && !r.counter) out.push(`${at}: has no verdict and no statement (tcpMss, counter): it does nothing`);
        if (r.tcpMss && r.l4 && r.l4.proto !== "tcp") out.push(`${at}: clamps the TCP MSS of ${r.l4.proto} packets`);
        // The kernel takes `rt mtu` only where a route is known: forward, output (nft_rt validate).
        if (r.tcpMss && c.hook?.hook !== "forward" && c.hook?.hook !== "output") out.push(`${at}: clamps the TCP MSS in chain ${c.name}, which is not hooked on forward or output`);
        for (const dir of ["saddr", "daddr"] as const) {
          const m = r[dir];
          if (m && "set" in m) {
            const s = sets.get(m.set);
            if (!s) out.push(`${at}: uses set ${m.set}, which the table does not have`);
            else if ((s.type === "ipv4_addr") !== (m.family === "ip")) out.push(`${at}: matches ${m.family} ${dir} against ${s.type} set ${s.name}`);
          }
          if (m && "cidrs" in m) for (const c2 of m.cidrs) if (cidrFamily(c2) !== m.family) out.push(`${at}: ${c2} is not an ${m.family} address`);
        }
        // One packet has one family: such a rule never matches (nft refuses it in an inet table).
        if (r.saddr && r.daddr && r.saddr.family !== r.daddr.family) out.push(`${at}: matches ${r.saddr.family} saddr and ${r.daddr.family} daddr`);
      }),
    );
  }
  if (hashes && b.hash !== bundleHash(b)) out.push("bundle hash does not match its content");
  return out;
}

/**
 * Check an untrusted value (a parsed bundle.json) against the contract
 * before anything is touched: the format version, the schema (unknown
 * fields refused), paths, content hashes and the bundle hash.
 */
export function parseBundle(x: unknown): { ok: true; bundle: Bundle } | { ok: false; problems: string[] } {
  return checked(x, true);
}

/**
 * The contract check for a bundle just built and sealed here (core/render.ts):
 * everything but the hashes, which sealing made right.
 */
export function checkSealed(b: Bundle): string[] {
  const r = checked(b, false);
  return r.ok ? [] : r.problems;
}

function checked(x: unknown, hashes: boolean): { ok: true; bundle: Bundle } | { ok: false; problems: string[] } {
  if (!x || typeof x !== "object" || Array.isArray(x)) return { ok: false, problems: ["bundle is not a JSON object"] };
  const format = (x as { format?: unknown }).format;
  if (format !== BUNDLE_FORMAT)
    return { ok: false, problems: [`bundle format ${JSON.stringify(format)} is not supported (this agent reads format ${BUNDLE_FORMAT}); deploy with a matching meshfleet`] };
  const r = schemas().bundleSchema.safeParse(x);
  if (!r.success) {
    const problems = r.error.issues.map((i) =>
      i.code === "unrecognized_keys"
        ? `${issuePath(i.path)}: unknown field${i.keys.length > 1 ? "s" : ""} ${i.keys.map((k) => JSON.stringify(k)).join(", ")} (this agent reads bundle format ${BUNDLE_FORMAT})`
        : i.code === "invalid_format" || i.code === "custom"
          ? `${issuePath(i.path)}: expected ${i.message}, found ${shown(valueAt(x, i.path))}`
          : i.code === "invalid_union" && i.errors.length
            ? `${issuePath(i.path)}: expected ${[...new Set(i.errors.map(firstMessage))].join(", or ")}; found ${shown(valueAt(x, i.path))}`
            : `${issuePath(i.path)}: ${i.message}`,
    );
    return { ok: false, problems };
  }
  const problems = consistencyProblems(r.data, hashes);
  return problems.length ? { ok: false, problems } : { ok: true, bundle: r.data };
}

/** The problems with a bundle; empty = valid. */
export function checkBundle(x: unknown): string[] {
  const r = parseBundle(x);
  return r.ok ? [] : r.problems;
}

/** The schema's JSON Schema form (its golden guards BUNDLE_FORMAT). */
export function bundleJsonSchema(): unknown {
  // Stryker disable next-line ObjectLiteral,StringLiteral: a guard for a future field zod cannot put in JSON Schema; today's schema has none, so the default ("throw") gives the same
  return z.toJSONSchema(schemas().bundleSchema, { unrepresentable: "any" });
}
