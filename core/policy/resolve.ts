/**
 * Alias -> addresses, against a set of nodes, with headscale 0.29's rules
 * (types.go `resolve` methods):
 *  - users and groups match untagged nodes only (a tagged node belongs to its tags);
 *  - a tag matches every node carrying it;
 *  - hosts and CIDRs are literal prefixes, never widened to a node's other IPs;
 *  - `*` is the tailnet ranges (100.64.0.0/10 minus the ChromeOS range, fd7a:115c:a1e0::/48);
 *  - autogroup:member = untagged nodes, autogroup:tagged = tagged nodes,
 *    autogroup:internet = public space, autogroup:danger-all = everything;
 *  - autogroup:self only exists per destination node (see compile.ts).
 */
import type { Alias } from "./alias.ts";
import {
  ALL, EMPTY, THE_INTERNET, TAILNET_WILDCARD, V4_BASE, fromRanges, parseAddr, parsePrefix, prefixToSet,
  type IPSet,
} from "./ipset.ts";
import type { Policy } from "./schema.ts";
import { EXIT_ROUTES } from "../../contract/constants.ts";

/** A node as the policy sees it. */
export interface PolicyNode {
  name: string;
  /** The owning user (without `@`); ignored when the node is tagged. */
  user?: string;
  tags: string[];
  /** Tailnet addresses (100.64.x.y, fd7a:115c:a1e0::x). */
  ips: string[];
  /** Approved routes, exit routes (0.0.0.0/0, ::/0) included. */
  approvedRoutes: string[];
}

export interface NodeInfo {
  node: PolicyNode;
  index: number;
  addrs: bigint[];
  set: IPSet;
  tagged: boolean;
  /** Approved routes without the exit routes (headscale's SubnetRoutes). */
  subnetRoutes: string[];
  exitNode: boolean;
}

export interface Resolved {
  set: IPSet | null;
  error?: string;
  /** The nodes matched by identity (users, groups, tags, member/tagged); undefined for address aliases. */
  nodes?: number[];
}

export class Resolver {
  readonly nodes: NodeInfo[];
  readonly users: Set<string>;
  private readonly cache = new Map<string, Resolved>();
  private readonly byTag = new Map<string, number[]>();
  private readonly byUser = new Map<string, number[]>();
  /** Every node address in order, to build node sets without sorting. */
  private readonly sorted: { a: bigint; i: number }[];

  constructor(readonly policy: Policy, nodes: PolicyNode[], users?: string[]) {
    this.nodes = nodes.map((node, index) => {
      const addrs = node.ips.map((ip) => parseAddrCached(ip)).filter((n): n is bigint => n !== undefined);
      const isExit = (r: string) => EXIT_ROUTES.includes(r);
      return {
        node,
        index,
        addrs,
        set: fromRanges(addrs.map((a) => [a, a] as const)),
        tagged: node.tags.length > 0,
        subnetRoutes: node.approvedRoutes.filter((r) => !isExit(r)),
        exitNode: node.approvedRoutes.some(isExit),
      };
    });
    for (const n of this.nodes) {
      for (const t of n.node.tags) push(this.byTag, t, n.index);
      if (n.tagged) continue;
      // Stryker disable next-line ConditionalExpression: `true` files a user-less node under the key undefined, which no lookup uses (a user alias's name is a string); `false` (no node filed) fails every user test, checked by hand
      if (n.node.user !== undefined) push(this.byUser, n.node.user, n.index);
    }
    this.sorted = this.nodes.flatMap((n) => n.addrs.map((a) => ({ a, i: n.index }))).sort((x, y) => {
      // Stryker disable next-line EqualityOperator: `<=` only reorders one address held by two nodes, which fromNodes takes once either way; `>=` (descending) fails the range tests, checked by hand
      if (x.a < y.a) return -1;
      // Stryker disable next-line ConditionalExpression,EqualityOperator: V8's sort reads a comparator's result only as below zero or not, so 1 and 0 here sort alike
      return x.a > y.a ? 1 : 0;
    });
    this.users = new Set(users ?? nodes.map((n) => n.user).filter((u): u is string => u !== undefined));
  }

  resolve(alias: Alias): Resolved {
    const hit = this.cache.get(alias.text);
    if (hit) return hit;
    const r = this.compute(alias);
    this.cache.set(alias.text, r);
    return r;
  }

  private fromNodes(idx: number[], error?: string): Resolved {
    const mark = new Uint8Array(this.nodes.length);
    for (const i of idx) mark[i] = 1;
    const ranges: [bigint, bigint][] = [];
    for (const { a, i } of this.sorted) {
      if (!mark[i]) continue;
      const last = ranges[ranges.length - 1];
      if (last && last[1] + 1n === a && a !== V4_BASE) last[1] = a;
      else if (!last || last[1] < a) ranges.push([a, a]);
    }
    return { set: ranges, nodes: idx, error };
  }

  private compute(alias: Alias): Resolved {
    switch (alias.kind) {
      case "prefix":
        return { set: prefixToSet(alias.prefix) };
      case "wildcard":
        return { set: TAILNET_WILDCARD };
      case "user": {
        const known = this.users.has(alias.name);
        return this.fromNodes(this.byUser.get(alias.name) ?? [], known ? undefined : `user not found: token ${JSON.stringify(alias.text)}`);
      }
      case "group": {
        const members = this.policy.groups?.[alias.text] ?? [];
        const idx = new Set<number>();
        const errors: string[] = [];
        for (const m of members) {
          const name = m.replace(/@$/, "");
          if (!this.users.has(name)) errors.push(`user not found: token ${JSON.stringify(m)}`);
          for (const i of this.byUser.get(name) ?? []) idx.add(i);
        }
        return this.fromNodes([...idx].sort((a, b) => a - b), errors.length ? errors.join("; ") : undefined);
      }
      case "tag":
        return this.fromNodes(this.byTag.get(alias.text) ?? []);
      case "host": {
        const value = this.policy.hosts?.[alias.text];
        const p = value === undefined ? null : parsePrefix(value);
        if (!p) return { set: null, error: `error resolving host: ${JSON.stringify(alias.text)}` };
        return { set: prefixToSet(p) };
      }
      case "autogroup":
        switch (alias.name) {
          case "member":
            return this.fromNodes(this.nodes.filter((n) => !n.tagged).map((n) => n.index));
          case "tagged":
            return this.fromNodes(this.nodes.filter((n) => n.tagged).map((n) => n.index));
          case "internet":
            return { set: THE_INTERNET };
          case "danger-all":
            return { set: ALL };
          case "self":
            return { set: null, error: "autogroup:self requires per-node resolution and cannot be resolved in this context" };
          default:
            return { set: null, error: `unknown autogroup: ${JSON.stringify(alias.text)}` };
        }
    }
  }
}

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

export { EMPTY };

// Both revisions of a plan share most addresses; parsing IPv6 text is the costly part.
const addrCache = new Map<string, bigint | undefined>();
function parseAddrCached(ip: string): bigint | undefined {
  // Stryker disable next-line ConditionalExpression: `false` skips a cache, and parsing the same text again gives the same value; `true` (nothing ever parsed) fails every address test, checked by hand
  if (addrCache.has(ip)) return addrCache.get(ip);
  const n = parseAddr(ip)?.n;
  // Stryker disable next-line ConditionalExpression,EqualityOperator: when the cache is emptied changes memory and speed, never a parsed value
  if (addrCache.size > 200_000) addrCache.clear();
  addrCache.set(ip, n);
  return n;
}
