/**
 * The docker runtime's compose network (issue 13 item 8): a fixed, declared
 * IPv4 subnet (headscale.dockerSubnet) instead of whatever docker picks, so
 * headscale can trust the reverse proxy's container by address
 * (trusted_proxies) and see the real client address it forwards, not the
 * proxy's address on the docker bridge.
 */
import type { Assertion, ModuleContext } from "../core/module.ts";
import { cidrsOverlap, isNetworkAddress, parseCidr } from "../core/schema-types.ts";

/**
 * Outside docker's default address pools (172.17.0.0/16-172.31.0.0/16 and
 * 192.168.0.0/16), the tailnet's 100.64.0.0/10 and the lab's ranges.
 */
export const DEFAULT_DOCKER_SUBNET = "172.16.238.0/24";

/**
 * The daemon's default address pools (docker 20.10 and later, libnetwork's
 * ipamutils: 172.17-31.x.x as /16s, 192.168.x.x as /20s), from which it picks
 * docker0's and every other network's subnet; a compose network declared
 * inside them collides with one docker made ("Pool overlaps") at `up`.
 */
export const DOCKER_DEFAULT_POOLS = ["172.17.0.0/16", "172.18.0.0/15", "172.20.0.0/14", "172.24.0.0/13", "192.168.0.0/16"] as const;

/** headscale's trusted_proxies on the docker runtime: the option's CIDRs plus the compose network. */
export function trustedProxiesOf(trusted: readonly string[], dockerSubnet: string | null): string[] {
  return dockerSubnet === null || trusted.includes(dockerSubnet) ? [...trusted] : [...trusted, dockerSubnet];
}

/**
 * Problems with the compose network's subnet: an IPv4 network address with
 * room for the containers, not overlapping the tailnet's prefix, nor any
 * host's LAN or advertised route (docker would route those to its bridge),
 * nor docker's default address pools.
 */
export function dockerSubnetAssertions(subnet: string, ctx: ModuleContext, path = "headscale.dockerSubnet"): Assertion[] {
  const p = parseCidr(subnet);
  const a: Assertion[] = [];
  a.push({
    assertion: p !== null && !p.v6 && p.bits >= 16 && p.bits <= 28 && isNetworkAddress(p),
    path,
    expected: "an IPv4 network in CIDR form from /16 to /28 (host bits zero), e.g. " + DEFAULT_DOCKER_SUBNET,
    found: JSON.stringify(subnet),
    fix: `set ${path}: ${DEFAULT_DOCKER_SUBNET}, or another private range no LAN or route of the fleet uses`,
  });
  if (p === null || p.v6) return a;
  const taken: { where: string; cidr: string }[] = [];
  taken.push({ where: `${ctx.fleetFile} prefixes.v4 (the tailnet)`, cidr: ctx.fleet.prefixes.v4 });
  for (const name of Object.keys(ctx.hosts).sort()) {
    const h = ctx.hosts[name]!;
    h.lan.forEach((c, i) => taken.push({ where: `${h.file} lan[${i}]`, cidr: c }));
    const routes = h.config.tailscale?.advertiseRoutes ?? [];
    routes.forEach((c, i) => taken.push({ where: `${h.file} tailscale.advertiseRoutes[${i}]`, cidr: c }));
  }
  const hits = taken.filter((t) => {
    const q = parseCidr(t.cidr);
    return q !== null && !q.v6 && cidrsOverlap(p, q);
  });
  a.push({
    assertion: hits.length === 0,
    path,
    expected: "a subnet for the docker runtime's compose network that overlaps no tailnet prefix, LAN or advertised route of the fleet",
    found: `${subnet}, which overlaps ${hits.map((h) => `${h.where} ${h.cidr}`).join(", ")}`,
    fix: `set ${path} to a private range none of those use (the default ${DEFAULT_DOCKER_SUBNET}, or e.g. 172.16.239.0/24)`,
  });
  const pools = DOCKER_DEFAULT_POOLS.filter((c) => cidrsOverlap(p, parseCidr(c)!));
  a.push({
    assertion: pools.length === 0,
    path,
    expected: "a subnet outside docker's default address pools (172.17.0.0/16-172.31.0.0/16 and 192.168.0.0/16), from which docker picks its own networks' subnets",
    found: `${subnet}, which overlaps docker's pool ${pools.join(", ")}`,
    fix: `set ${path} to a private range outside those pools (the default ${DEFAULT_DOCKER_SUBNET}, or e.g. 10.200.0.0/24)`,
  });
  return a;
}
