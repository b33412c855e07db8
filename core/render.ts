/**
 * The one render: an evaluated host to the bundle its agent activates.
 * Pure. The deploy (components/HostAgent) ships its result, `meshfleet
 * render` writes its files (contract/desired.ts), tests golden it.
 */
import { BUNDLE_FORMAT, canonicalJson, checkSealed, consistencyProblems, schemas, sealBundle, sha256, sha256Shared, type Bundle, type BundleFile, type Firewall, type NftChain, type NftRule, type NftSet, type Probe, type TailscaleConfig } from "../contract/bundle.ts";
import { NFT_FAMILY, NFT_TABLE } from "../contract/constants.ts";
import { nftRuleset } from "../contract/nftables.ts";
import { MeshfleetError } from "./diagnostics.ts";
import type { FirewallSpec, HealthProbe, HostSystem, TailnetRule, TailscaleSettings } from "./types.ts";

/** An nft comment: no quotes or backslashes (it sits inside "..."), at most 128 characters. */
const comment = (s: string) => s.replace(/["\\\n\r]/g, "'").slice(0, 128);
const familyOf = (c: string): "ip" | "ip6" => (c.includes(":") ? "ip6" : "ip");

/**
 * A scoped rule's ports, its ranges ("lo-hi") spelled out: bundle format 3
 * carries single ports only, so a range is every port in it (an anonymous
 * nft set); firewall.ts caps a range option's size.
 */
function scopedPorts(r: { ports: number[]; ranges?: string[] }): number[] {
  const out = new Set(r.ports);
  for (const x of r.ranges ?? []) {
    const [lo, hi] = x.split("-").map(Number);
    for (let p = lo; p <= hi; p++) out.add(p);
  }
  return [...out].sort((a, b) => a - b);
}

/** A host's firewall as the bundle carries it: `table inet meshfleet` as data, or null when off. */
export function hostFirewall(fw: FirewallSpec): Firewall | null {
  if (!fw.enable) return null;
  const enforce = fw.tailnet.length > 0 || !fw.trustTailnet;
  const sets: NftSet[] = [];
  for (const name of Object.keys(fw.sets).sort()) {
    // nft sets hold one family; each policy set becomes a v4 and a v6 set.
    for (const [fam, type] of [["v4", "ipv4_addr"], ["v6", "ipv6_addr"]] as const)
      sets.push({ name: `${name}_${fam}`, type, elements: fw.sets[name].filter((e) => e.includes(":") === (fam === "v6")), members: [...(fw.setMembers[name] ?? [])] });
  }
  const policy = fw.defaultPolicy ?? "drop";
  const tailnetRule: NftRule = enforce
    ? { iifname: "tailscale0", verdict: { jump: "tailnet" } }
    : { iifname: "tailscale0", verdict: "accept", comment: "tailnet: filtered by the coordinator policy" };
  const inbound = [...fw.inbound].sort((a, b) => a.proto.localeCompare(b.proto) || a.port - b.port);
  /** One rule per address family: an nft anonymous set holds one family. */
  const bySource = (from: readonly string[], base: NftRule): NftRule[] =>
    (["ip", "ip6"] as const).flatMap((fam) => {
      const cidrs = from.filter((c) => familyOf(c) === fam);
      return cidrs.length ? [{ ...(base.iifname !== undefined ? { iifname: base.iifname } : {}), saddr: { family: fam, cidrs }, ...base }] : [];
    });
  const input: NftRule[] = [{ ctState: ["established", "related"], verdict: "accept" }];
  if (policy === "accept") {
    // Traffic outside the tailnet is left alone (a plain client's default): no policy drop, no
    // `ct state invalid drop`; only what the host asked for is dropped (a port limited to some
    // sources, ping off). Open ports and scoped ports would be no-ops, so they are not rendered.
    input.push(
      { iifname: "lo", verdict: "accept" },
      ...fw.trustedInterfaces.map((i): NftRule => ({ iifname: i, verdict: "accept", comment: "trusted interface" })),
      tailnetRule,
    );
    for (const r of inbound) {
      if (!r.from.length) continue;
      const l4 = { proto: r.proto, dports: [r.port] };
      input.push(...bySource(r.from, { l4, verdict: "accept", comment: comment(`${r.owner}: ${r.comment}`) }));
      input.push({ l4, verdict: "drop", comment: comment(`${r.owner}: from other sources`) });
    }
    if (!fw.allowPing)
      input.push({ icmp: { family: "ip", types: ["echo-request"] }, verdict: "drop", comment: "firewall.allowPing false" }, { icmp: { family: "ip6", types: ["echo-request"] }, verdict: "drop", comment: "firewall.allowPing false" });
  } else {
    input.push(
      { ctState: ["invalid"], verdict: "drop" },
      { iifname: "lo", verdict: "accept" },
      ...fw.trustedInterfaces.map((i): NftRule => ({ iifname: i, verdict: "accept", comment: "trusted interface" })),
      ...(fw.allowPing
        ? [{ icmp: { family: "ip", types: ["echo-request"] }, verdict: "accept" } as NftRule, { icmp: { family: "ip6", types: ["echo-request"] }, verdict: "accept" } as NftRule]
        : []),
      // IPv6 neighbour discovery and router adverts must always pass, or v6 breaks.
      { icmp: { family: "ip6", types: ["nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert", "packet-too-big"] }, verdict: "accept" },
      tailnetRule,
    );
    for (const r of inbound) {
      const base: NftRule = { l4: { proto: r.proto, dports: [r.port] }, verdict: "accept", comment: comment(`${r.owner}: ${r.comment}`) };
      if (!r.from.length) input.push(base);
      else input.push(...bySource(r.from, base));
    }
    // Ports open on one interface or to some sources only (firewall.interfaces / firewall.sources).
    for (const r of fw.scoped ?? []) {
      const base: NftRule = { ...(r.iifname !== undefined ? { iifname: r.iifname } : {}), l4: { proto: r.proto, dports: scopedPorts(r) }, verdict: "accept", comment: comment(r.comment) };
      if (!r.from?.length) input.push(base);
      else input.push(...bySource(r.from, base));
    }
  }
  const chains: NftChain[] = [{ name: "input", hook: { type: "filter", hook: "input", priority: "filter", policy }, rules: input }];
  const l4Of = (r: TailnetRule): NftRule["l4"] =>
    r.proto === "any" ? (r.ports === "any" ? undefined : { proto: "tcp+udp", dports: r.ports }) : r.ports === "any" ? { proto: r.proto } : { proto: r.proto, dports: r.ports };
  if (enforce) {
    const rules: NftRule[] = [];
    for (const r of fw.tailnet) {
      const l4 = l4Of(r);
      for (const [fam, family] of [["v4", "ip"], ["v6", "ip6"]] as const)
        rules.push({ saddr: { family, set: `${r.fromSet}_${fam}` }, ...(l4 ? { l4 } : {}), verdict: "accept", comment: comment(r.comment) });
    }
    rules.push({ counter: true, verdict: "drop", comment: "tailnet: not allowed by the fleet policy" });
    chains.push({ name: "tailnet", hook: null, rules });
  }
  const forward: NftRule[] = [];
  // Forwarded TCP of a router: MSS clamped to the route's MTU (tailscale#8672), first, so every forwarded SYN is clamped.
  if (fw.mssClamp) forward.push({ tcpMss: "rt-mtu", comment: "clamp TCP MSS to the route MTU" });
  // A router with trustTailnet false: what the tailnet sends to its routed prefixes passes only by the git policy
  // (the coordinator's filter alone is not trusted); the rest of forwarding is left alone.
  if (fw.routed && fw.routed.prefixes.length) {
    const routed: NftRule[] = [{ ctState: ["established", "related"], verdict: "accept" }];
    for (const r of fw.routed.rules) {
      const l4 = l4Of(r);
      for (const [fam, family] of [["v4", "ip"], ["v6", "ip6"]] as const) {
        const to = r.to.filter((c) => familyOf(c) === family);
        if (to.length) routed.push({ saddr: { family, set: `${r.fromSet}_${fam}` }, daddr: { family, cidrs: to }, ...(l4 ? { l4 } : {}), verdict: "accept", comment: comment(r.comment) });
      }
    }
    routed.push({ counter: true, verdict: "drop", comment: "routed: not allowed by the fleet policy" });
    for (const family of ["ip", "ip6"] as const) {
      const to = fw.routed.prefixes.filter((c) => familyOf(c) === family);
      if (to.length) forward.push({ iifname: "tailscale0", daddr: { family, cidrs: to }, verdict: { jump: "routed" }, comment: "tailnet to the routed prefixes" });
    }
    chains.push({ name: "routed", hook: null, rules: routed });
  }
  if (forward.length) chains.push({ name: "forward", hook: { type: "filter", hook: "forward", priority: "filter", policy: "accept" }, rules: forward });
  return { family: NFT_FAMILY, table: NFT_TABLE, sets, chains };
}

/** The whole `table inet meshfleet { ... }` text for a host, or null when its firewall is off. */
export const renderNftables = (host: HostSystem): string | null => nftRuleset(hostFirewall(host.firewall));

/** Flags the evaluation renders from typed settings; the rest of upArgs are the user's extra flags. */
const TYPED_FLAGS = ["--login-server", "--hostname", "--advertise-routes", "--advertise-exit-node", "--accept-routes", "--accept-dns", "--ssh", "--snat-subnet-routes", "--netfilter-mode"];

/** A host's tailscale settings as the bundle carries them (typed; no argv), or null when not managed. */
export function hostTailscale(t: TailscaleSettings): TailscaleConfig | null {
  if (!t.enable) return null;
  const typed = t as TailscaleSettings & { netfilterMode?: TailscaleConfig["netfilterMode"]; extraUpFlags?: string[] };
  const nfArg = t.upArgs.find((a) => a.startsWith("--netfilter-mode="));
  const netfilterMode = typed.netfilterMode ?? ((nfArg?.slice("--netfilter-mode=".length) ?? "on") as TailscaleConfig["netfilterMode"]);
  const extraUpFlags = typed.extraUpFlags ?? t.upArgs.filter((a) => !TYPED_FLAGS.some((f) => a === f || a.startsWith(`${f}=`)));
  return {
    cli: t.cli,
    loginServer: t.loginServer,
    authKeyFile: t.authKeyFile,
    hostname: t.hostname,
    tags: [...t.tags],
    routes: [...t.advertiseRoutes],
    exitNode: t.advertiseExitNode,
    acceptRoutes: t.acceptRoutes,
    acceptDns: t.acceptDns,
    ssh: t.ssh,
    snatSubnetRoutes: t.snatSubnetRoutes,
    netfilterMode,
    extraUpFlags: [...extraUpFlags],
  };
}

function probe(p: HealthProbe): Probe {
  switch (p.kind) {
    case "http":
      return { name: p.name, kind: p.kind, url: p.url, expectStatus: p.expectStatus, ...(p.insecure !== undefined ? { insecure: p.insecure } : {}) };
    case "tcp":
      return { name: p.name, kind: p.kind, host: p.host, port: p.port };
    case "tailscale-running":
      return { name: p.name, kind: p.kind };
    case "routes-advertised":
      return { name: p.name, kind: p.kind, routes: [...p.routes] };
    case "unit-active":
      return { name: p.name, kind: p.kind, unit: p.unit };
  }
}

/**
 * Render a host's bundle. `secrets` fills files with a secretRef (a missing
 * one is an error, never ""). The result is checked against the contract, so
 * the deploy never ships a bundle its agent would refuse.
 */
export function renderHost(host: HostSystem, secrets: Record<string, string>): Bundle {
  return rendered(host, secrets, true) as Bundle;
}

/**
 * The bundle without its hash, checked against the contract as renderHost's
 * is: what `meshfleet render` writes (core/artifacts.ts), which never shows
 * the hash, so it is not worked out (the canonical JSON and the sha256 of
 * every host's whole bundle).
 */
export function renderHostBody(host: HostSystem, secrets: Record<string, string>): Omit<Bundle, "hash"> {
  return rendered(host, secrets, false);
}

function rendered(host: HostSystem, secrets: Record<string, string>, seal: boolean): Bundle | Omit<Bundle, "hash"> {
  const files: BundleFile[] = [...host.files]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((f) => {
      let content = f.content;
      if (f.secretRef) {
        const v = secrets[f.secretRef];
        if (v === undefined)
          throw new MeshfleetError(`host ${host.name}: file ${f.path} needs secret "${f.secretRef}", which was not given`, [
            { severity: "error", file: host.file, path: "", expected: `secret "${f.secretRef}" for ${f.path}`, found: "none given", fix: "give the render every secret secretRefs(host) names" },
          ]);
        content = v;
      }
      const secret = !!(f.secret || f.secretRef);
      return { path: f.path, mode: secret ? "0600" : f.mode, owner: f.owner, group: f.group, sha256: secret ? sha256(content) : sha256Shared(content), content, secret };
    });
  const { bundle, fieldsValid } = sealChecked(seal, {
    format: BUNDLE_FORMAT,
    host: host.name,
    files,
    sysctl: Object.fromEntries(Object.keys(host.sysctl).sort().map((k) => [k, String(host.sysctl[k])])),
    units: [...host.units]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((u) => ({ name: u.name, content: u.content, enable: u.enable, restartTriggers: [...(u.restartTriggers ?? [])] })),
    firewall: hostFirewall(host.firewall),
    tailscale: hostTailscale(host.tailscale),
    probes: host.probes.map(probe),
    metrics: { enable: host.metrics.enable, textfileDir: host.metrics.textfileDir },
    bestEffort: host.bestEffort.map((c) => ({ argv: [...c.argv], why: c.why })),
  });
  // Every field passed its schema: only the cross-field rules are left. Else the full check, for its exact problems.
  const problems = fieldsValid ? consistencyProblems(bundle as Bundle, false) : checkSealed("hash" in bundle ? bundle : sealBundle(bundle));
  if (problems.length)
    throw new MeshfleetError(
      `host ${host.name} (${host.file}): its bundle breaks the bundle contract: ${problems.join("; ")}. Fix the module or option that produced it`,
      problems.map((p) => ({ severity: "error" as const, file: host.file, path: "", expected: "a bundle the agent accepts", found: p, fix: "fix the module or option that produced it" })),
    );
  return bundle;
}

// ---------------------------------------------------------------------------
// Sealing and checking, field by field

type Schema = { safeParse(x: unknown): { success: boolean } };

let fields: Map<string, Schema> | undefined;
/** The bundle schema's fields (built on first use, like the schema). */
function bundleFields(): Map<string, Schema> {
  fields ??= new Map(Object.entries((schemas().bundleSchema as unknown as { _zod: { def: { shape: Record<string, Schema> } } })._zod.def.shape));
  return fields;
}

/**
 * Per field schema: the JSON.stringify text of each value it accepted -> that
 * value's canonical JSON ("" until a sealed render first asks for it). Render builds equal values with equal key order, so
 * the native JSON text finds a value seen before (the unit list, files and
 * firewall every client shares) without sorting or checking it again. Equal
 * JSON text is equal JSON data, and the bundle travels as JSON: a field is
 * judged by the data its JSON carries. Bounded: a long-lived process renders
 * many fleets.
 */
const accepted = new Map<Schema, Map<string, string>>();
const ACCEPTED_MAX = 20_000;

/**
 * Fields that differ from host to host only in one property (the tailscale
 * node name): the rest is shared by most of a fleet's hosts. Such a field is
 * accepted when the rest was accepted before (with some valid value of the
 * property; the key set is the same, as the text keeps every other key and
 * the property is checked to be present) and the property passes its own
 * schema. Sound for a strict object without checks of its own, which is
 * checked (perHostSchema); else the whole field takes `field`.
 */
const PER_HOST_PROPERTY: Record<string, string> = { tailscale: "hostname" };
type ObjectDef = { type: string; innerType?: Schema; shape?: Record<string, Schema>; checks?: unknown[] };
const defOf = (s: Schema) => (s as unknown as { _zod: { def: ObjectDef } })._zod.def;
const perHostSchemas = new Map<Schema, { prop: Schema; seen: Set<string> } | null>();
function perHostSchema(schema: Schema, prop: string): { prop: Schema; seen: Set<string> } | null {
  let known = perHostSchemas.get(schema);
  if (known === undefined) {
    let def = defOf(schema);
    if (def.type === "nullable" && def.innerType) def = defOf(def.innerType);
    const p = def.type === "object" && !def.checks?.length ? def.shape?.[prop] : undefined;
    perHostSchemas.set(schema, (known = p ? { prop: p, seen: new Set() } : null));
  }
  return known;
}

function fieldPerHost(schema: Schema, value: unknown, prop: string, seal: boolean): { json: string | undefined; ok: boolean } {
  const spec = value !== null && typeof value === "object" && !Array.isArray(value) && prop in value ? perHostSchema(schema, prop) : null;
  if (!spec) return field(schema, value, seal);
  const v = value as Record<string, unknown>;
  const json = seal ? canonicalJson(value) : undefined;
  const rest = JSON.stringify({ ...v, [prop]: undefined }); // JSON leaves the property out
  if (spec.seen.has(rest)) return { json, ok: spec.prop.safeParse(v[prop]).success };
  if (!schema.safeParse(value).success) return { json, ok: false };
  if (spec.seen.size >= ACCEPTED_MAX) spec.seen.clear();
  spec.seen.add(rest);
  return { json, ok: true };
}

/**
 * Lists whose items' `content` the schema takes as any text (files, units):
 * whether such a list is valid does not depend on the texts, only on each
 * being text. Without `seal` (no canonical JSON wanted) the memo of such a
 * field is keyed by its JSON with each text content left out: writing every
 * file's text into a key, and hashing that key, was most of the field
 * check's time (10,000 hosts: about a second). Worked out from the schema
 * (an array of objects whose `content` is a string without checks), so a
 * check added to the contract's content turns this off.
 */
const contentBlindSchemas = new Map<Schema, Map<string, true> | null>();
function contentBlindMemo(schema: Schema): Map<string, true> | null {
  let memo = contentBlindSchemas.get(schema);
  if (memo === undefined) {
    const def = defOf(schema) as ObjectDef & { element?: Schema };
    const item = def.type === "array" && !def.checks?.length && def.element ? defOf(def.element) : undefined;
    const content = item?.type === "object" && !item.checks?.length ? item.shape?.content : undefined;
    const c = content ? defOf(content) : undefined;
    contentBlindSchemas.set(schema, (memo = c?.type === "string" && !c.checks?.length ? new Map() : null));
  }
  return memo;
}

/** The list's JSON with each plain item's text `content` as "" (other items as they are); undefined for what is not a list. */
function contentBlindKey(value: unknown): string | undefined {
  if (!Array.isArray(value)) return undefined;
  const items: unknown[] = new Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const o = value[i] as Record<string, unknown> | null | undefined;
    const plain = o !== null && typeof o === "object" && Object.getPrototypeOf(o) === Object.prototype;
    items[i] = plain && Object.prototype.hasOwnProperty.call(o, "content") && typeof o.content === "string" ? { ...o, content: "" } : o;
  }
  return JSON.stringify(items);
}

/** Whether a field's schema accepts it, and its canonical JSON when `seal` (else undefined). */
function field(schema: Schema, value: unknown, seal: boolean): { json: string | undefined; ok: boolean } {
  if (value === undefined) return { json: undefined, ok: schema.safeParse(value).success };
  const blind = seal ? null : contentBlindMemo(schema);
  const key = blind ? contentBlindKey(value) : undefined;
  if (blind && key !== undefined) {
    if (blind.has(key)) return { json: undefined, ok: true };
    if (!schema.safeParse(value).success) return { json: undefined, ok: false };
    if (blind.size >= ACCEPTED_MAX) blind.clear();
    blind.set(key, true);
    return { json: undefined, ok: true };
  }
  const text = JSON.stringify(value);
  let seen = accepted.get(schema);
  if (!seen) accepted.set(schema, (seen = new Map()));
  const known = seen.get(text);
  if (known !== undefined) {
    if (!seal) return { json: undefined, ok: true };
    if (known) return { json: known, ok: true };
    const json = canonicalJson(value);
    seen.set(text, json);
    return { json, ok: true };
  }
  const json = seal ? canonicalJson(value) : undefined;
  if (!schema.safeParse(value).success) return { json, ok: false };
  if (seen.size >= ACCEPTED_MAX) seen.clear();
  seen.set(text, json ?? "");
  return { json, ok: true };
}

/**
 * Check each field of a bundle body against its part of the bundle schema
 * and, when `seal`, seal it (contract sealBundle: `hash` = sha256 of the
 * canonical JSON of every other field). The canonical JSON is assembled from
 * the fields' (in sorted order), so the text hashed is exactly
 * canonicalJson(body); a test holds the hash to bundleHash. `fieldsValid:
 * false` when a field failed, or is unknown or missing: the caller then runs
 * the full contract check for its problems.
 */
function sealChecked(seal: boolean, body: Omit<Bundle, "hash">): { bundle: Bundle | Omit<Bundle, "hash">; fieldsValid: boolean } {
  const spec = bundleFields();
  const b = body as unknown as Record<string, unknown>;
  let fieldsValid = true;
  let text = "{";
  const keys = Object.keys(b).sort();
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    if (k === "hash") continue; // as bundleHash: the hash covers every other field
    const schema = spec.get(k);
    let json: string | undefined;
    if (!schema) {
      fieldsValid = false;
      if (seal) json = canonicalJson(b[k]) as string | undefined;
    } else {
      const f = k in PER_HOST_PROPERTY ? fieldPerHost(schema, b[k], PER_HOST_PROPERTY[k], seal) : field(schema, b[k], seal);
      if (!f.ok) fieldsValid = false;
      json = f.json;
    }
    if (json !== undefined) text += (text.length > 1 ? "," : "") + JSON.stringify(k) + ":" + json;
  }
  for (const k of spec.keys()) if (k !== "hash" && !(k in b)) fieldsValid = false;
  return { bundle: seal ? { ...body, hash: sha256(text + "}") } : body, fieldsValid };
}
