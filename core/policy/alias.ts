/**
 * Parsing of the policy's little languages: aliases (`alice@`, `group:x`,
 * `tag:x`, hosts, CIDRs, autogroups, `*`), `alias:ports` destinations, port
 * lists and protocols. Mirrors headscale 0.29 (types.go parseAlias,
 * utils.go splitDestinationAndPort/parsePortRange, Protocol.validate) so a
 * string meshfleet accepts is one headscale accepts, with the same meaning.
 */
import { parsePrefix, type Prefix } from "./ipset.ts";

export type Alias =
  | { kind: "prefix"; text: string; prefix: Prefix }
  | { kind: "wildcard"; text: "*" }
  | { kind: "user"; text: string; name: string }
  | { kind: "group"; text: string }
  | { kind: "tag"; text: string }
  | { kind: "autogroup"; text: string; name: AutoGroupName }
  | { kind: "host"; text: string };

export const AUTOGROUPS = ["internet", "member", "nonroot", "tagged", "self", "danger-all"] as const;
export type AutoGroupName = (typeof AUTOGROUPS)[number];

export interface PortRange { first: number; last: number }
export const ANY_PORTS: PortRange[] = [{ first: 0, last: 65535 }];

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };
const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(error: string): Parsed<T> => ({ ok: false, error });

/** parseAlias: a prefix first, then `*`, user (contains @), group, tag, autogroup, host. */
export function parseAlias(raw: string): Parsed<Alias> {
  const s = raw.trim();
  const prefix = parsePrefix(s);
  if (prefix) return ok({ kind: "prefix", text: s, prefix });
  if (s === "*") return ok({ kind: "wildcard", text: "*" });
  if (s.includes("@")) return ok({ kind: "user", text: s, name: s.replace(/@$/, "") });
  if (s.startsWith("group:")) return ok({ kind: "group", text: s });
  if (s.startsWith("tag:")) {
    if (!/^tag:[A-Za-z]/.test(s)) return fail(`tag names must start with a letter after 'tag:', found ${JSON.stringify(s)}`);
    return ok({ kind: "tag", text: s });
  }
  if (s.startsWith("autogroup:")) {
    const name = s.slice("autogroup:".length);
    if (!(AUTOGROUPS as readonly string[]).includes(name)) {
      return fail(`unknown autogroup ${JSON.stringify(s)} (one of ${AUTOGROUPS.map((a) => `autogroup:${a}`).join(", ")})`);
    }
    return ok({ kind: "autogroup", text: s, name: name as AutoGroupName });
  }
  if (s !== "" && !s.includes(":")) return ok({ kind: "host", text: s });
  return fail(`${JSON.stringify(s)} is not a user (alice@), group:, tag:, autogroup:, host name, IP or CIDR`);
}

export interface Destination { alias: Alias; ports: PortRange[]; portsText: string }

/** `alias:ports`, split at the last colon; `[v6]:port` and `[v6]/bits:port` accepted. */
export function parseDestination(raw: string): Parsed<Destination> {
  let input = raw;
  if (input.startsWith("[")) {
    const close = input.indexOf("]");
    // Without a "]" (close = -1) rest is the whole input, which starts with "[" and fails the rest check.
    const host = input.slice(1, close);
    const rest = input.slice(close + 1);
    const p = parsePrefix(host);
    if (!p || !p.v6 || host.includes("/") || !(rest.startsWith(":") || rest.startsWith("/"))) {
      return fail(`square brackets are only valid around IPv6 addresses, found ${JSON.stringify(raw)}`);
    }
    input = host + rest;
  }
  const colon = input.lastIndexOf(":");
  if (colon < 0) return fail(`${JSON.stringify(raw)} has no port: write it as alias:port, e.g. tag:web:443 or host:*`);
  if (colon === 0) return fail(`${JSON.stringify(raw)} starts with a colon`);
  if (colon === input.length - 1) return fail(`${JSON.stringify(raw)} ends with a colon (no port)`);
  const portsText = input.slice(colon + 1);
  const ports = parsePorts(portsText);
  if (!ports.ok) return fail(`${JSON.stringify(raw)}: ${ports.error}`);
  const alias = parseAlias(input.slice(0, colon));
  if (!alias.ok) return alias;
  return ok({ alias: alias.value, ports: ports.value, portsText });
}

/** `*`, `22`, `80,443`, `8000-8100`: ports 1-65535 (0 only as a range start). */
export function parsePorts(def: string): Parsed<PortRange[]> {
  if (def === "*") return ok([...ANY_PORTS]);
  const out: PortRange[] = [];
  for (const part of def.split(",")) {
    if (part.includes("-")) {
      const bits = part.split("-").filter((x) => x !== "");
      if (bits.length !== 2) return fail(`port range ${JSON.stringify(part)} is not first-last`);
      const a = parsePort(bits[0]);
      const b = parsePort(bits[1]);
      if (!a.ok) return a as Parsed<PortRange[]>;
      if (!b.ok) return b as Parsed<PortRange[]>;
      if (a.value > b.value) return fail(`port range ${part} runs backwards`);
      out.push({ first: a.value, last: b.value });
    } else {
      const p = parsePort(part);
      if (!p.ok) return p as Parsed<PortRange[]>;
      if (p.value < 1) return fail(`port ${part} is below 1 (use * for every port)`);
      out.push({ first: p.value, last: p.value });
    }
  }
  return ok(out);
}

function parsePort(s: string): Parsed<number> {
  if (!/^[+-]?\d+$/.test(s)) return fail(`port ${JSON.stringify(s)} is not a number`);
  // Never negative: parsePorts reads every part holding a "-" as a range and splits the "-" away.
  const n = Number(s);
  if (n > 65535) return fail(`port ${s} is out of range 1-65535`);
  return ok(n);
}

export const PROTO_NUMBERS: Record<string, number> = {
  icmp: 1, igmp: 2, ipv4: 4, "ip-in-ip": 4, tcp: 6, egp: 8, igp: 9, udp: 17,
  gre: 47, esp: 50, ah: 51, "ipv6-icmp": 58, sctp: 132, fc: 133,
};
const NUMBER_TO_NAME: Record<number, string> = Object.fromEntries(
  Object.entries(PROTO_NUMBERS).filter(([k]) => k !== "ip-in-ip").map(([k, v]) => [v, k]),
);

/** A protocol as headscale canonicalises it: a known name, or a number 1-255. "" means any. */
export function parseProto(raw: string | undefined): Parsed<string> {
  if (raw === undefined || raw === "") return ok("");
  const s = raw.toLowerCase();
  if (s === "*") return fail(`proto "*" is not known: omit proto for every protocol, or name one (tcp, udp, icmp)`);
  if (s in PROTO_NUMBERS) return ok(s);
  if (!/^\d+$/.test(s)) return fail(`proto ${JSON.stringify(raw)} is not a protocol name (tcp, udp, icmp, …) or number 1-255`);
  if (s.startsWith("0")) return fail(`proto ${JSON.stringify(raw)}: a leading 0 is not allowed`);
  const n = Number(s);
  if (n > 255) return fail(`proto ${raw} is out of range 1-255`);
  return ok(NUMBER_TO_NAME[n] ?? s);
}

/** IANA numbers for a canonical proto; null means every protocol. */
export function protoNumbers(proto: string): number[] | null {
  if (proto === "") return null;
  return [PROTO_NUMBERS[proto] ?? Number(proto)];
}

export function protoSupportsPorts(proto: string): boolean {
  return proto === "" || proto === "tcp" || proto === "udp" || proto === "sctp";
}

export interface IpSpec { proto: string; ports: PortRange[] }

/** A grant's `ip` entry: `*`, `443`, `tcp:443`, `udp:53,5353`, `icmp:*`. */
export function parseIpSpec(raw: string): Parsed<IpSpec> {
  // "*" too: parsePorts reads it as every port.
  if (!raw.includes(":")) {
    const ports = parsePorts(raw);
    return ports.ok ? ok({ proto: "", ports: ports.value }) : fail(`ip ${JSON.stringify(raw)}: ${ports.error}`);
  }
  const parts = raw.split(":");
  if (parts.length !== 2) return fail(`ip ${JSON.stringify(raw)}: expected proto:ports with one colon`);
  const proto = parseProto(parts[0]);
  if (!proto.ok) return proto;
  const ports = parsePorts(parts[1]);
  if (!ports.ok) return fail(`ip ${JSON.stringify(raw)}: ${ports.error}`);
  return ok({ proto: proto.value, ports: ports.value });
}

export function formatPorts(ports: PortRange[]): string {
  if (ports.length === 1 && ports[0].first === 0 && ports[0].last === 65535) return "*";
  return ports.map((p) => (p.first === p.last ? `${p.first}` : `${p.first}-${p.last}`)).join(",");
}
