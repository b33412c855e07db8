/**
 * Host-side enforcement of the policy on tailscale0: the rules of the
 * policy whose destinations include this host, as nft-ready data for the
 * host's own `inet meshfleet` table. Belt and braces: tailscaled already
 * filters by the same policy; this keeps a host closed if the coordinator
 * is wrong or compromised.
 *
 * Each distinct source list becomes a set `peers_<n>` holding the addresses
 * the policy resolves it to today; the rule comment names the policy rule and
 * its sources (`acls[2] src=group:admins,tag:ci`) so the agent can refresh
 * the set from `tailscale status` as peers come and go. Sets hold CIDRs, so
 * the agent must declare them with `flags interval`.
 *
 * Limits: nft rules here carry tcp/udp ports or "any"; a rule for another
 * protocol (icmp, sctp, …) is left out, so that traffic is dropped by the
 * host's tailnet and routed chains unless a rule for every protocol admits
 * its source (core/render.ts; a ping the firewall's allowPing accepts before
 * the tailnet chain aside). Port ranges are expanded into port lists.
 */
import { MeshfleetError } from "../diagnostics.ts";
import type { FirewallSpec, RoutedRule, TailnetRule } from "../types.ts";
import { compilePolicy } from "./compile.ts";
import { contains, fromPrefixStrings, fromRanges, intersect, isEmpty, THE_INTERNET, toStrings, union, type IPSet } from "./ipset.ts";
import { Resolver, type PolicyNode } from "./resolve.ts";
import type { Policy } from "./schema.ts";

export interface HostTailnetRules {
  tailnet: TailnetRule[];
  /** Per set, its addresses (from `compiledForHosts`, each list may be shared with other hosts' results: read it, never change it). */
  sets: FirewallSpec["sets"];
  /** With `members`: per set, the nodes (by name) whose addresses it holds. */
  setMembers?: FirewallSpec["setMembers"];
  /** With `routes`: the rules on what this host forwards from the tailnet to them (sets shared with `tailnet`). */
  routed?: FirewallSpec["routed"];
}

/**
 * `routes`: the prefixes this host routes for the tailnet, as git has them
 * (its advertised subnet routes, and 0.0.0.0/0 and ::/0 for an exit node),
 * approved or not: the kernel forwards whatever reaches it. Each policy rule
 * whose destinations overlap them (a regular rule, or a via grant naming one
 * of this host's tags) becomes a routed rule to the overlap.
 */
export function tailnetRulesForHost(host: string, nodes: PolicyNode[], policy: Policy, opts: { users?: string[]; members?: boolean; routes?: string[] } = {}): HostTailnetRules {
  return compiledForHosts(nodes, policy, opts.users).rulesFor(host, opts);
}

/**
 * The policy compiled once for the rules of many hosts (`rulesFor`, as
 * tailnetRulesForHost gives them): the fleet phase asks it for every host
 * that enforces the policy. Compiling it for each of them made the fleet
 * phase quadratic (1,000 hosts, 500 enforcing: 11 s).
 */
export function compiledForHosts(nodes: PolicyNode[], policy: Policy, users?: string[]): { rulesFor(host: string, opts?: { members?: boolean; routes?: string[] }): HostTailnetRules } {
  const resolver = new Resolver(policy, nodes, users);
  const compiled = compilePolicy(policy, resolver);
  let byName: Map<string, (typeof resolver.nodes)[number]> | undefined;
  // A set's members by its addresses, shared by every host (the same sources give the same set on many hosts).
  const membersOf = new Map<string, string[]>();
  // A compiled rule's sources as text, once for every host: writing them for each host was most of the
  // fleet phase (1,000 hosts, 500 enforcing: 1.5 s). The list is shared by the hosts' results: read-only.
  const textOf = new WeakMap<IPSet, { addrs: string[]; key: string }>();
  return { rulesFor: (host, opts = {}) => rulesFor(host, opts) };

  function rulesFor(host: string, opts: { members?: boolean; routes?: string[] }): HostTailnetRules {
    // Allow-all: nothing to enforce (an empty list means "not enforced").
    if (compiled.allowAll) return { tailnet: [], sets: {} };
    if (!byName) {
      byName = new Map();
      for (const n of resolver.nodes) if (!byName.has(n.node.name)) byName.set(n.node.name, n);
    }
    const me = byName.get(host);
    if (!me) throw new MeshfleetError(`tailnetRulesForHost: ${host} is not one of the policy's nodes (${resolver.nodes.map((n) => n.node.name).join(", ")}); enforce only on hosts that join the mesh`);

    const sets: Record<string, string[]> = {};
    const setMembers: Record<string, string[]> = {};
    const setNames = new Map<string, string>();
    const setFor = (src: IPSet): string => {
      let text = textOf.get(src);
      if (!text) {
        const list = toStrings(src);
        textOf.set(src, (text = { addrs: list, key: list.join(" ") }));
      }
      const { addrs, key } = text;
      let name = setNames.get(key);
      if (!name) {
        name = `peers_${setNames.size}`;
        setNames.set(key, name);
        sets[name] = addrs;
        // The nodes in it, from the resolver's own view of them (no address is parsed back).
        if (opts.members) {
          let members = membersOf.get(key);
          if (!members) membersOf.set(key, (members = resolver.nodes.filter((n) => n.addrs.some((a) => contains(src, a))).map((n) => n.node.name).sort()));
          setMembers[name] = [...members];
        }
      }
      return name;
    };
    const tailnet: TailnetRule[] = [];
    const srcText = (path: string) => {
      const [section, idx] = /^(acls|grants)\[(\d+)\]$/.exec(path)!.slice(1);
      const rule = section === "acls" ? policy.acls![Number(idx)] : policy.grants![Number(idx)];
      return rule.src.join(",");
    };
    for (const r of compiled.rules) {
      let src: IPSet | null = null;
      if (r.category === "regular") {
        if (!me.addrs.some((a) => contains(r.dst, a))) continue;
        src = r.src;
      } else if (r.category === "self") {
        if (me.tagged || me.node.user === undefined) continue;
        const peers = resolver.nodes.filter((n) => r.srcNodes!.has(n.index) && n.node.user === me.node.user);
        if (peers.length === 0) continue;
        src = fromRanges(peers.flatMap((n) => n.set));
      } else continue; // via rules route through this host; they do not open the host itself
      if (r.proto !== "" && r.proto !== "tcp" && r.proto !== "udp") continue;
      const anyPort = r.ports.some((p) => p.first <= 1 && p.last === 65535);
      const ports = anyPort ? "any" : [...new Set(r.ports.flatMap((p) => range(Math.max(1, p.first), p.last)))].sort((a, b) => a - b);
      tailnet.push({
        proto: r.proto === "" ? "any" : (r.proto as "tcp" | "udp"),
        ports,
        fromSet: setFor(src),
        comment: `${r.origin.path} src=${srcText(r.origin.path)}`,
      });
    }
    if (tailnet.length === 0) {
      // Nobody may reach this host: enforce with a rule from an empty set.
      tailnet.push({ proto: "any", ports: "any", fromSet: setFor([]), comment: "policy allows no peer to reach this host" });
    }
    const out: HostTailnetRules = opts.members ? { tailnet, sets, setMembers } : { tailnet, sets };
    if (opts.routes?.length) {
      const prefixes = fromPrefixStrings(opts.routes);
      const routed: RoutedRule[] = [];
      for (const r of compiled.rules) {
        let dst = r.dst;
        if (r.category === "via") {
          // A via grant opens the route on the routers it names only (by tag).
          if (!r.via!.some((t) => me.node.tags.includes(t))) continue;
          if (r.viaInternet) dst = union(dst, THE_INTERNET);
        } else if (r.category !== "regular") continue;
        const to = intersect(dst, prefixes);
        if (isEmpty(to)) continue;
        if (r.proto !== "" && r.proto !== "tcp" && r.proto !== "udp") continue;
        const anyPort = r.ports.some((p) => p.first <= 1 && p.last === 65535);
        const ports = anyPort ? "any" : [...new Set(r.ports.flatMap((p) => range(Math.max(1, p.first), p.last)))].sort((a, b) => a - b);
        routed.push({ proto: r.proto === "" ? "any" : (r.proto as "tcp" | "udp"), ports, fromSet: setFor(r.src), to: toStrings(to), comment: `${r.origin.path} src=${srcText(r.origin.path)}` });
      }
      out.routed = { prefixes: toStrings(prefixes), rules: routed };
    }
    return out;
  }
}

function range(a: number, b: number): number[] {
  const out: number[] = [];
  for (let i = a; i <= b; i++) out.push(i);
  return out;
}

export type { PolicyNode };
