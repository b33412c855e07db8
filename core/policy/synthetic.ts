/**
 * Stand-in tailnet addresses for nodes that have not joined yet. headscale
 * hands addresses out at registration, so a fleet in git has none; the
 * evaluator needs some to place `*` and CIDR rules. Each name hashes to a
 * fixed address (stable across commits, so a diff does not see every node
 * move when one is added), probing on collision, outside the ChromeOS and
 * MagicDNS ranges. Policies that name real tailnet IPs in `hosts:` do not
 * match these: such rules are evaluated once real addresses are known.
 */
import type { PolicyNode } from "./resolve.ts";

const SPACE = 1 << 22; // 100.64.0.0/10

export function syntheticIps(nodes: PolicyNode[]): PolicyNode[] {
  const used = new Set<number>();
  for (const n of nodes) for (const ip of n.ips) used.add(offsetOf(ip));
  return nodes.map((n) => {
    if (n.ips.length > 0) return n;
    let off = fnv(n.name) % SPACE;
    while (used.has(off) || reserved(off) || off === 0) off = (off + 1) % SPACE;
    used.add(off);
    const v4 = 100 * 2 ** 24 + 64 * 2 ** 16 + off;
    const ip4 = [v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255].join(".");
    const ip6 = `fd7a:115c:a1e0::${(off >>> 16).toString(16)}:${(off & 0xffff).toString(16)}`;
    return { ...n, ips: [ip4, ip6] };
  });
}

function offsetOf(ip: string): number {
  const m = /^100\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m) return -1;
  return ((Number(m[1]) - 64) << 16) + (Number(m[2]) << 8) + Number(m[3]);
}

function reserved(off: number): boolean {
  const a = off >>> 16; // second octet - 64
  const b = (off >>> 8) & 255;
  const last = off & 255;
  if (a + 64 === 100 && b === 100) return true; // 100.100.100.0/24 (MagicDNS) lives at 100.100.x
  if (a + 64 === 115 && (b === 92 || b === 93)) return true; // 100.115.92.0/23 (ChromeOS)
  return last === 0 || last === 255;
}

function fnv(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
