/**
 * core/policy/alias.ts, table-driven: each of the policy's little languages
 * (aliases, destinations, ports, protocols, grant ip specs) with the exact
 * value or message, at the boundaries headscale 0.29 draws. Pure and fast, so
 * that Stryker (npm run mutate -- policy-compile) can try each mutant.
 */
import { describe, expect, it } from "vitest";
import { ANY_PORTS, formatPorts, parseAlias, parseDestination, parseIpSpec, parsePorts, parseProto, protoNumbers, protoSupportsPorts } from "../../core/policy/alias.ts";

const err = (error: string) => ({ ok: false, error });
const NOT_ALIAS = (s: string) => err(`${JSON.stringify(s)} is not a user (alice@), group:, tag:, autogroup:, host name, IP or CIDR`);

describe("parseAlias", () => {
  it.each<[string, unknown]>([
    ["alice@", { kind: "user", text: "alice@", name: "alice" }],
    [" alice@ ", { kind: "user", text: "alice@", name: "alice" }],
    ["alice@example.com", { kind: "user", text: "alice@example.com", name: "alice@example.com" }],
    ["*", { kind: "wildcard", text: "*" }],
    ["group:admins", { kind: "group", text: "group:admins" }],
    ["tag:web", { kind: "tag", text: "tag:web" }],
    ["tag:W1", { kind: "tag", text: "tag:W1" }],
    ["autogroup:member", { kind: "autogroup", text: "autogroup:member", name: "member" }],
    ["autogroup:danger-all", { kind: "autogroup", text: "autogroup:danger-all", name: "danger-all" }],
    ["nas", { kind: "host", text: "nas" }],
  ])("%s", (s, want) => expect(parseAlias(s)).toEqual({ ok: true, value: want }));

  it("addresses and CIDRs are prefixes, before anything else", () => {
    const a = parseAlias("10.0.0.0/8");
    expect(a.ok && a.value.kind).toBe("prefix");
    expect(a.ok && a.value.text).toBe("10.0.0.0/8");
    const b = parseAlias(" fd7a::1 ");
    expect(b.ok && b.value.kind).toBe("prefix");
    expect(b.ok && b.value.text).toBe("fd7a::1");
  });

  it("refusals, with the message", () => {
    expect(parseAlias("tag:1web")).toEqual(err(`tag names must start with a letter after 'tag:', found "tag:1web"`));
    expect(parseAlias("tag:")).toEqual(err(`tag names must start with a letter after 'tag:', found "tag:"`));
    // The letter must come right after the first tag:, not anywhere later.
    expect(parseAlias("tag:1tag:x")).toEqual(err(`tag names must start with a letter after 'tag:', found "tag:1tag:x"`));
    expect(parseAlias("autogroup:admins")).toEqual(err('unknown autogroup "autogroup:admins" (one of autogroup:internet, autogroup:member, autogroup:nonroot, autogroup:tagged, autogroup:self, autogroup:danger-all)'));
    expect(parseAlias("")).toEqual(NOT_ALIAS(""));
    expect(parseAlias("  ")).toEqual(NOT_ALIAS(""));
    expect(parseAlias("x:y")).toEqual(NOT_ALIAS("x:y"));
  });
});

describe("parseDestination", () => {
  const dest = (s: string) => {
    const d = parseDestination(s);
    return d.ok ? [d.value.alias.kind, d.value.alias.text, d.value.ports, d.value.portsText] : d;
  };
  it("split at the last colon", () => {
    expect(dest("tag:web:443")).toEqual(["tag", "tag:web", [{ first: 443, last: 443 }], "443"]);
    expect(dest("*:*")).toEqual(["wildcard", "*", ANY_PORTS, "*"]);
    expect(dest("nas:22,80-81")).toEqual(["host", "nas", [{ first: 22, last: 22 }, { first: 80, last: 81 }], "22,80-81"]);
    expect(dest("fd7a::1:22")).toEqual(["prefix", "fd7a::1", [{ first: 22, last: 22 }], "22"]);
    expect(dest("[fd7a::1]:22")).toEqual(["prefix", "fd7a::1", [{ first: 22, last: 22 }], "22"]);
    expect(dest("[fd7a::]/48:22")).toEqual(["prefix", "fd7a::/48", [{ first: 22, last: 22 }], "22"]);
  });
  it("refusals, with the message", () => {
    const brackets = (s: string) => err(`square brackets are only valid around IPv6 addresses, found ${JSON.stringify(s)}`);
    for (const s of ["[10.0.0.1]:22", "[fd7a::1", "[fd7a::1:22", "[fd7a::1]22", "[nas]:22", "[fd7a::/48]:22", "[]:22"]) expect([s, parseDestination(s)]).toEqual([s, brackets(s)]);
    expect(parseDestination("nas")).toEqual(err('"nas" has no port: write it as alias:port, e.g. tag:web:443 or host:*'));
    expect(parseDestination(":22")).toEqual(err('":22" starts with a colon'));
    expect(parseDestination("nas:")).toEqual(err('"nas:" ends with a colon (no port)'));
    expect(parseDestination("nas:x")).toEqual(err('"nas:x": port "x" is not a number'));
    expect(parseDestination("tag:1:22")).toEqual(err(`tag names must start with a letter after 'tag:', found "tag:1"`));
  });
});

describe("parsePorts", () => {
  it.each<[string, [number, number][]]>([
    ["*", [[0, 65535]]],
    ["22", [[22, 22]]],
    ["1", [[1, 1]]],
    ["65535", [[65535, 65535]]],
    ["80,443", [[80, 80], [443, 443]]],
    ["0-65535", [[0, 65535]]],
    ["8000-8000", [[8000, 8000]]],
    ["+22", [[22, 22]]],
  ])("%s", (s, want) => expect(parsePorts(s)).toEqual({ ok: true, value: want.map(([first, last]) => ({ first, last })) }));

  it("refusals, with the message", () => {
    expect(parsePorts("0")).toEqual(err("port 0 is below 1 (use * for every port)"));
    expect(parsePorts("65536")).toEqual(err("port 65536 is out of range 1-65535"));
    expect(parsePorts("1-65536")).toEqual(err("port 65536 is out of range 1-65535"));
    expect(parsePorts("70000-1")).toEqual(err("port 70000 is out of range 1-65535"));
    expect(parsePorts("-1")).toEqual(err('port range "-1" is not first-last'));
    expect(parsePorts("1-2-3")).toEqual(err('port range "1-2-3" is not first-last'));
    expect(parsePorts("9-8")).toEqual(err("port range 9-8 runs backwards"));
    expect(parsePorts("x-8")).toEqual(err('port "x" is not a number'));
    expect(parsePorts("8-x")).toEqual(err('port "x" is not a number'));
    expect(parsePorts("22x")).toEqual(err('port "22x" is not a number'));
    expect(parsePorts("x22")).toEqual(err('port "x22" is not a number'));
    expect(parsePorts("22,")).toEqual(err('port "" is not a number'));
    expect(parsePorts("**")).toEqual(err('port "**" is not a number'));
  });
});

describe("protocols", () => {
  it("parseProto: names (any case), numbers as their names, else the number; '' and undefined are any", () => {
    expect(parseProto(undefined)).toEqual({ ok: true, value: "" });
    expect(parseProto("")).toEqual({ ok: true, value: "" });
    expect(parseProto("TCP")).toEqual({ ok: true, value: "tcp" });
    expect(parseProto("ip-in-ip")).toEqual({ ok: true, value: "ip-in-ip" });
    expect(parseProto("4")).toEqual({ ok: true, value: "ipv4" });
    expect(parseProto("6")).toEqual({ ok: true, value: "tcp" });
    expect(parseProto("58")).toEqual({ ok: true, value: "ipv6-icmp" });
    expect(parseProto("255")).toEqual({ ok: true, value: "255" });
    expect(parseProto("99")).toEqual({ ok: true, value: "99" });
  });
  it("parseProto refusals", () => {
    expect(parseProto("*")).toEqual(err('proto "*" is not known: omit proto for every protocol, or name one (tcp, udp, icmp)'));
    expect(parseProto("tcpx")).toEqual(err('proto "tcpx" is not a protocol name (tcp, udp, icmp, …) or number 1-255'));
    expect(parseProto("x6")).toEqual(err('proto "x6" is not a protocol name (tcp, udp, icmp, …) or number 1-255'));
    expect(parseProto("6x")).toEqual(err('proto "6x" is not a protocol name (tcp, udp, icmp, …) or number 1-255'));
    expect(parseProto("06")).toEqual(err('proto "06": a leading 0 is not allowed'));
    expect(parseProto("0")).toEqual(err('proto "0": a leading 0 is not allowed'));
    expect(parseProto("256")).toEqual(err("proto 256 is out of range 1-255"));
  });
  it("protoNumbers and protoSupportsPorts", () => {
    expect(protoNumbers("")).toBeNull();
    expect(protoNumbers("tcp")).toEqual([6]);
    expect(protoNumbers("ip-in-ip")).toEqual([4]);
    expect(protoNumbers("99")).toEqual([99]);
    expect(["", "tcp", "udp", "sctp", "icmp", "gre", "99"].map(protoSupportsPorts)).toEqual([true, true, true, true, false, false, false]);
  });
});

describe("parseIpSpec and formatPorts", () => {
  it("parseIpSpec: *, ports alone (any protocol), proto:ports", () => {
    expect(parseIpSpec("*")).toEqual({ ok: true, value: { proto: "", ports: [{ first: 0, last: 65535 }] } });
    expect(parseIpSpec("53")).toEqual({ ok: true, value: { proto: "", ports: [{ first: 53, last: 53 }] } });
    expect(parseIpSpec("udp:53,5353")).toEqual({ ok: true, value: { proto: "udp", ports: [{ first: 53, last: 53 }, { first: 5353, last: 5353 }] } });
    expect(parseIpSpec("icmp:*")).toEqual({ ok: true, value: { proto: "icmp", ports: [{ first: 0, last: 65535 }] } });
    expect(parseIpSpec("x")).toEqual(err('ip "x": port "x" is not a number'));
    expect(parseIpSpec("tcp:1:2")).toEqual(err('ip "tcp:1:2": expected proto:ports with one colon'));
    expect(parseIpSpec("nope:22")).toEqual(err('proto "nope" is not a protocol name (tcp, udp, icmp, …) or number 1-255'));
    expect(parseIpSpec("tcp:0")).toEqual(err('ip "tcp:0": port 0 is below 1 (use * for every port)'));
  });
  it("formatPorts: * for every port, ranges as first-last", () => {
    expect(formatPorts([{ first: 0, last: 65535 }])).toBe("*");
    expect(formatPorts([{ first: 1, last: 65535 }])).toBe("1-65535");
    expect(formatPorts([{ first: 0, last: 65534 }])).toBe("0-65534");
    expect(formatPorts([{ first: 0, last: 65535 }, { first: 1, last: 1 }])).toBe("0-65535,1");
    expect(formatPorts([{ first: 22, last: 22 }, { first: 80, last: 90 }])).toBe("22,80-90");
    expect(formatPorts([])).toBe("");
  });
});
