/**
 * Precise option types shared by modules: CIDRs, ports, tags, durations,
 * host names. Each carries a message a person can act on.
 */
import { z } from "zod";

export const cidr = z
  .string()
  .refine((s) => parseCidr(s) !== null, { message: "a CIDR such as 192.168.8.0/24 or fd7a:115c:a1e0::/48" });

export const ipv4 = z.string().refine((s) => parseIpv4(s) !== null, { message: "an IPv4 address such as 203.0.113.10" });

export const port = z.number().int().min(1).max(65535);

export const tag = z
  .string()
  .regex(/^tag:[a-z0-9][a-z0-9-]*$/, { message: "a tag such as tag:router (lowercase letters, digits, '-')" });

export const duration = z.string().regex(/^\d+(s|m|h|d)$/, { message: "a duration such as 90d, 24h or 30m" });

/** headscale user names: ≥ 2 chars, start with a letter, letters/digits/-._ and one @. */
export const userName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9._-]*(@[A-Za-z0-9._-]*)?$/, { message: "a user name that starts with a letter (letters, digits, - . _)" })
  .min(2);

/**
 * An e-mail address as a policy names a person who logs in through OpenID Connect: headscale
 * matches the token `carol@example.com` against each user's e-mail (and name), exactly.
 */
export const email = z
  .string()
  .max(254)
  .regex(/^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/, { message: "an e-mail address such as carol@example.com" });

export const hostName = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, { message: "a DNS label: lowercase letters, digits and '-'" });

export const url = z.string().regex(/^https?:\/\/[^\s/]+(\/.*)?$/, { message: "a URL starting with http:// or https://" });

/** [network address as bigint, prefix length, family] or null. */
export interface ParsedCidr { addr: bigint; bits: number; v6: boolean }

export function parseIpv4(s: string): bigint | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return null;
  let v = 0n;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255 || (m[i].length > 1 && m[i].startsWith("0"))) return null;
    v = (v << 8n) | BigInt(o);
  }
  return v;
}

export function parseIpv6(s: string): bigint | null {
  if (!/^[0-9a-fA-F:]+$/.test(s) || s.split("::").length > 2) return null;
  const [head, tail] = s.includes("::") ? s.split("::") : [s, undefined];
  const h = head ? head.split(":") : [];
  const t = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const missing = 8 - h.length - t.length;
  if ((tail === undefined && missing !== 0) || missing < 0) return null;
  const groups = [...h, ...Array(tail === undefined ? 0 : missing).fill("0"), ...t];
  if (groups.length !== 8) return null;
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return v;
}

export function parseCidr(s: string): ParsedCidr | null {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return null;
  const bits = Number(m[2]);
  const v4 = parseIpv4(m[1]);
  if (v4 !== null) return bits <= 32 ? { addr: v4, bits, v6: false } : null;
  const v6 = parseIpv6(m[1]);
  if (v6 !== null) return bits <= 128 ? { addr: v6, bits, v6: true } : null;
  return null;
}

/** The CIDR's host bits are zero (192.168.8.0/24, not 192.168.8.5/24). */
export function isNetworkAddress(c: ParsedCidr): boolean {
  const width = c.v6 ? 128 : 32;
  const hostBits = BigInt(width - c.bits);
  return (c.addr & ((1n << hostBits) - 1n)) === 0n;
}

/** Does `outer` contain `inner` (same family)? */
export function cidrContains(outer: ParsedCidr, inner: ParsedCidr): boolean {
  if (outer.v6 !== inner.v6 || inner.bits < outer.bits) return false;
  const width = outer.v6 ? 128 : 32;
  const shift = BigInt(width - outer.bits);
  return outer.addr >> shift === inner.addr >> shift;
}

export function cidrsOverlap(a: ParsedCidr, b: ParsedCidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/** An address (no prefix) inside a CIDR. */
export function addressIn(addr: string, c: ParsedCidr): boolean {
  const v = c.v6 ? parseIpv6(addr) : parseIpv4(addr);
  if (v === null) return false;
  return cidrContains(c, { addr: v, bits: c.v6 ? 128 : 32, v6: c.v6 });
}
