/**
 * Policy -> filter rules, as headscale 0.29 compiles them
 * (compiled.go compileGrants / compileOneGrant, filter.go):
 *  - each ACL becomes one grant per destination (aclToGrants), appended after
 *    the policy's own grants;
 *  - a grant yields one rule per `ip` entry; its destinations share the ports;
 *  - a `*` source also admits every approved subnet route (srcIPsWithRoutes),
 *    autogroup:danger-all admits everything;
 *  - a grant whose sources resolve to nothing yields no rule;
 *  - autogroup:self destinations and `via` grants are per-node: they are not
 *    in the global filter the policy `tests` run against.
 * Each rule keeps where it came from so that an answer can say why.
 */
import { parseAlias, parseDestination, parseIpSpec, parseProto, protoNumbers, ANY_PORTS, type Alias, type PortRange } from "./alias.ts";
import { ALL, EMPTY, contains, fromPrefixStrings, union, type IPSet } from "./ipset.ts";
import { Resolver } from "./resolve.ts";
import type { Policy } from "./schema.ts";

export interface RuleOrigin {
  /** `acls[2]` or `grants[0]`. */
  path: string;
  /** The rule as written, short: `group:admins -> tag:server:22`. */
  text: string;
}

export interface CompiledRule {
  id: number;
  origin: RuleOrigin;
  category: "regular" | "self" | "via";
  /** Sources as filter SrcIPs (wildcard routes included). */
  src: IPSet;
  /**
   * The sets whose union is `src`: each resolved source (shared with every rule that names it), and
   * the subnet routes with `*`. A node is in `src` when it is in one of them (reachability reads it).
   */
  srcParts?: IPSet[];
  /** For self rules: the sources before narrowing to the destination's user. */
  srcNodes?: Set<number>;
  /** Union of the destinations' addresses (`*` = everything). */
  dst: IPSet;
  /** Canonical proto name, "" for every protocol. */
  proto: string;
  protos: number[] | null;
  ports: PortRange[];
  /** Via grants: the router tags. */
  via?: string[];
  /** Via grants: autogroup:internet in the destinations (exit nodes). */
  viaInternet?: boolean;
}

export interface Compiled {
  /** No acls and no grants: headscale allows everything. */
  allowAll: boolean;
  rules: CompiledRule[];
  resolver: Resolver;
}

interface GrantLike {
  path: string;
  text: string;
  src: string[];
  dst: Alias[];
  specs: { proto: string; ports: PortRange[] }[];
  via?: string[];
}

/** Turns a policy into rules; unparsable entries are skipped (validatePolicy reports them). */
export function compilePolicy(policy: Policy, resolver: Resolver): Compiled {
  const allowAll = policy.acls === undefined && policy.grants === undefined;
  const grants: GrantLike[] = [];
  (policy.grants ?? []).forEach((g, i) => {
    const dst = g.dst.map((d) => parseAlias(d)).filter((a) => a.ok).map((a) => (a as { value: Alias }).value);
    // Stryker disable next-line ArrayDeclaration: without ip a grant has no spec, so no rule; ["Stryker was here"] is no spec either (not proto:ports), and the origin text is only ever seen on a rule
    const ip = g.ip ?? [];
    const specs = ip.map(parseIpSpec).filter((s) => s.ok).map((s) => (s as { value: { proto: string; ports: PortRange[] } }).value);
    grants.push({
      path: `grants[${i}]`,
      text: `${g.src.join(", ")} -> ${g.dst.join(", ")} [${ip.join(", ")}]${g.via ? ` via ${g.via.join(", ")}` : ""}`,
      src: g.src, dst, specs, via: g.via,
    });
  });
  (policy.acls ?? []).forEach((a, i) => {
    const proto = parseProto(a.proto);
    if (!proto.ok) return;
    const parsed = a.dst.map((d, j) => ({ d: parseDestination(d), j, raw: d }));
    const isSelf = (x: Alias) => x.kind === "autogroup" && x.name === "self";
    const valid = parsed.filter((p) => p.d.ok) as { d: { ok: true; value: { alias: Alias; ports: PortRange[] } }; j: number; raw: string }[];
    // aclToGrants: non-self destinations first when any destination is not an autogroup.
    const hasNonAutogroup = valid.some((p) => p.d.value.alias.kind !== "autogroup");
    const ordered = hasNonAutogroup
      ? [...valid.filter((p) => !isSelf(p.d.value.alias)), ...valid.filter((p) => isSelf(p.d.value.alias))]
      : valid;
    for (const p of ordered) {
      grants.push({
        path: `acls[${i}]`,
        text: `${a.src.join(", ")} -> ${p.raw}${proto.value ? ` (${proto.value})` : ""}`,
        src: a.src,
        dst: [p.d.value.alias],
        specs: [{ proto: proto.value, ports: p.d.value.ports }],
      });
    }
  });

  const rules: CompiledRule[] = [];
  const subnetRoutes = fromPrefixStrings(resolver.nodes.flatMap((n) => n.subnetRoutes));
  // Rules name the same few sources, in the same combinations: each union made once.
  const setIds = new Map<IPSet, number>();
  const unions = new Map<string, IPSet>();
  const keyOf = (sets: IPSet[]) => sets.map((x) => setIds.get(x) ?? setIds.set(x, setIds.size).size - 1).sort((a, b) => a - b).join(",");
  const unionOf = (key: string, sets: IPSet[]) => {
    let u = unions.get(key);
    if (!u) unions.set(key, (u = union(...sets)));
    return u;
  };
  // Which nodes have an address in a resolved source, per source (self rules name the same few).
  const holders = new Map<IPSet, Uint8Array>();
  const selfSources = new Map<string, Set<number>>();
  const holdersOf = (set: IPSet) => {
    let h = holders.get(set);
    if (!h) {
      h = Uint8Array.from(resolver.nodes, (n) => (n.addrs.some((a) => contains(set, a)) ? 1 : 0));
      holders.set(set, h);
    }
    return h;
  };
  for (const g of grants) {
    const srcAliases = g.src.map((s) => parseAlias(s)).filter((a) => a.ok).map((a) => (a as { value: Alias }).value);
    if (srcAliases.some((a) => a.kind === "autogroup" && a.name === "self")) continue; // errSelfInSources
    // A literally empty dst makes no rule (headscale checks src too: an empty src resolves to nothing, below).
    if (g.dst.length === 0) continue;
    const resolved = srcAliases.map((a) => resolver.resolve(a)).filter((r) => r.set !== null);
    // No source, or none that resolves to an address: no rule. autogroup:danger-all resolves to
    // everything, which no route adds to.
    const parts = resolved.map((r) => r.set as IPSet);
    const partsKey = keyOf(parts);
    const merged = unionOf(partsKey, parts);
    if (merged.length === 0) continue;
    const hasWildcard = srcAliases.some((a) => a.kind === "wildcard");
    const src = hasWildcard ? union(merged, subnetRoutes) : merged;
    const origin = { path: g.path, text: g.text };
    const base = { origin, src, srcParts: hasWildcard ? [...parts, subnetRoutes] : parts };

    if (g.via && g.via.length > 0) {
      const viaInternet = g.dst.some((d) => d.kind === "autogroup" && d.name === "internet");
      const dst = union(
        ...g.dst
          .filter((d) => !(d.kind === "autogroup" && d.name === "internet"))
          .map((d) => resolver.resolve(d).set ?? EMPTY),
      );
      for (const s of g.specs) {
        rules.push({ ...base, id: rules.length, category: "via", dst, proto: s.proto, protos: protoNumbers(s.proto), ports: s.ports, via: g.via, viaInternet });
      }
      continue;
    }

    const selfDst = g.dst.some((d) => d.kind === "autogroup" && d.name === "self");
    // The other destinations, one regular rule per spec when they hold an address. autogroup:self
    // resolves to null here (it is per node, below), so it adds nothing to them.
    const dst = union(...g.dst.map((d) => (d.kind === "wildcard" ? ALL : resolver.resolve(d).set ?? EMPTY)));
    if (dst.length > 0) {
      for (const s of g.specs) {
        rules.push({ ...base, id: rules.length, category: "regular", dst, proto: s.proto, protos: protoNumbers(s.proto), ports: s.ports });
      }
    }
    if (selfDst) {
      // filterSourcesToSameUser: a source node counts when one of its IPs is in a resolved source.
      // One set per distinct sources, shared by the rules that have them.
      let srcNodes = selfSources.get(partsKey);
      if (!srcNodes) {
        srcNodes = new Set<number>();
        const inParts = parts.map(holdersOf);
        for (const n of resolver.nodes) {
          if (n.tagged || n.node.user === undefined) continue;
          if (inParts.some((h) => h[n.index] === 1)) srcNodes.add(n.index);
        }
        selfSources.set(partsKey, srcNodes);
      }
      for (const s of g.specs) {
        rules.push({ ...base, id: rules.length, category: "self", srcNodes, dst: EMPTY, proto: s.proto, protos: protoNumbers(s.proto), ports: s.ports });
      }
    }
  }
  return { allowAll, rules, resolver };
}

export { ANY_PORTS };
