/**
 * The bundle contract (contract/bundle.ts) at its edges, beside the goldens
 * and refusals of bundle.test.ts: every field's check with its message, the
 * cross-field rules, canonical JSON and the hashes. Pure and fast, so that
 * Stryker (npm run mutate -- bundle) can run it for every mutant; each case
 * pins a boundary a plausible slip would move.
 */
import { beforeAll, describe, expect, it, vi } from "vitest";
import type * as Contract from "../../contract/bundle.ts";
import type { Bundle } from "../../contract/bundle.ts";
import { secretRefs } from "../../core/bundle.ts";
import type { HostSystem } from "../../core/types.ts";

/**
 * The contract module, imported afresh for this file: it builds its schemas
 * once, on first use, and keeps them; a fresh instance builds them again, so a
 * mutated schema (npm run mutate -- bundle) is the one these tests meet.
 * They are built here, before any test: Stryker's vitest runner credits code
 * run inside a test to that test alone, so a schema first built in the first
 * test would have its mutants tried against that test only. Built outside a
 * test, they are "static" and every test of the file runs against each.
 */
let C: typeof Contract;
beforeAll(async () => {
  vi.resetModules();
  C = await import("../../contract/bundle.ts");
  C.schemas();
});

const base = (): Omit<Bundle, "hash"> => ({
  format: C.BUNDLE_FORMAT,
  host: "router",
  files: [{ path: "/etc/app/app.conf", mode: "0644", owner: "root", group: "root", sha256: C.sha256("v=1\n"), content: "v=1\n", secret: false }],
  sysctl: { "net.ipv4.ip_forward": "1" },
  units: [{ name: "app.service", content: "[Service]\n", enable: true, restartTriggers: ["/etc/app/app.conf"] }],
  firewall: {
    family: "inet",
    table: "meshfleet",
    sets: [
      { name: "peers_v4", type: "ipv4_addr", elements: ["192.0.2.0/24"], members: ["laptop"] },
      { name: "peers_v6", type: "ipv6_addr", elements: ["fd7a:115c:a1e0::/48"], members: [] },
    ],
    chains: [
      {
        name: "input",
        hook: { type: "filter", hook: "input", priority: "filter", policy: "drop" },
        rules: [
          { iifname: "tailscale0", ctState: ["established", "related"], saddr: { family: "ip", set: "peers_v4" }, l4: { proto: "tcp", dports: [22, 443] }, counter: true, verdict: "accept", comment: "ssh and https" },
          { saddr: { family: "ip6", cidrs: ["fd7a:115c:a1e0::1"] }, icmp: { family: "ip6", types: ["echo-request"] }, verdict: { jump: "extra" } },
        ],
      },
      { name: "extra", hook: null, rules: [{ verdict: "drop" }] },
    ],
  },
  tailscale: {
    cli: "/usr/bin/tailscale",
    loginServer: "https://hs.example.test",
    authKeyFile: "/etc/meshfleet/tailscale-authkey",
    hostname: "router",
    tags: ["tag:router"],
    routes: ["192.168.8.0/24"],
    exitNode: false,
    acceptRoutes: false,
    acceptDns: true,
    ssh: false,
    snatSubnetRoutes: true,
    netfilterMode: "on",
    extraUpFlags: ["--operator=alice"],
  },
  probes: [
    { name: "web", kind: "http", url: "https://localhost/", expectStatus: 200 },
    { name: "ssh", kind: "tcp", host: "127.0.0.1", port: 22 },
  ],
  metrics: { enable: true, textfileDir: "/var/lib/node_exporter" },
  bestEffort: [{ argv: ["sysctl", "--system"], why: "apply" }],
});

/** The problems of the base bundle after `edit`, sealed (so only the edit is wrong). */
function problemsAfter(edit: (b: any) => void): string[] {
  const b = structuredClone(base()) as any;
  edit(b);
  return C.checkBundle(C.sealBundle(b));
}

describe("a valid bundle", () => {
  it("passes parse, check and the sealed check", () => {
    const b = C.sealBundle(base());
    expect(C.checkBundle(b)).toEqual([]);
    expect(C.checkSealed(b)).toEqual([]);
    const r = C.parseBundle(b);
    expect(r.ok && r.bundle).toEqual(b);
  });
});

describe("each field's check and message", () => {
  const cases: [string, (b: any) => void, string][] = [
    ["host label", (b) => (b.host = "-bad"), 'host: expected a host name (DNS label), found "-bad"'],
    ["host label too long", (b) => (b.host = "a".repeat(64)), `host: expected a host name (DNS label), found "${"a".repeat(64)}"`],
    ["hash", (b) => (b.files[0].sha256 = "A".repeat(64)), 'files[0].sha256: expected 64 lowercase hex digits (sha256), found "' + "A".repeat(64) + '"'],
    ["mode", (b) => (b.files[0].mode = "644"), 'files[0].mode: expected an octal mode such as "0644", found "644"'],
    ["mode digit", (b) => (b.files[0].mode = "0648"), 'files[0].mode: expected an octal mode such as "0644", found "0648"'],
    ["owner", (b) => (b.files[0].owner = "Root"), 'files[0].owner: expected a user or group name, found "Root"'],
    ["group", (b) => (b.files[0].group = "a".repeat(33)), `files[0].group: expected a user or group name, found "${"a".repeat(33)}"`],
    ["unit name", (b) => (b.units[0].name = "app"), 'units[0].name: expected a systemd unit name such as tailscaled.service, found "app"'],
    ["restart trigger", (b) => (b.units[0].restartTriggers = ["rel/path"]), 'units[0].restartTriggers[0]: expected an absolute path without "..", "." or empty ("//") segments, found "rel/path"'],
    ["sysctl key", (b) => (b.sysctl = { "Net.x": "1" }), "sysctl.Net.x: Invalid key in record"],
    ["sysctl value", (b) => (b.sysctl = { "net.x": "1\n2" }), 'sysctl.net.x: expected a one-line value, found "1\\n2"'],
    ["iifname", (b) => (b.firewall.chains[0].rules[0].iifname = "a".repeat(16)), `firewall.chains[0].rules[0].iifname: expected an interface name, found "${"a".repeat(16)}"`],
    ["set name", (b) => (b.firewall.sets[0].name = "Peers"), 'firewall.sets[0].name: expected an nft name (lowercase letters, digits, _), found "Peers"'],
    ["set element", (b) => (b.firewall.sets[0].elements = ["300.0.0.1"]), 'firewall.sets[0].elements[0]: expected an address or CIDR such as 192.168.8.0/24 or fd7a:115c:a1e0::/48, found "300.0.0.1"'],
    ["member", (b) => (b.firewall.sets[0].members = ["a_b"]), 'firewall.sets[0].members[0]: expected a host name (DNS label), found "a_b"'],
    ["comment", (b) => (b.firewall.chains[0].rules[0].comment = "x".repeat(129)), `firewall.chains[0].rules[0].comment: expected a comment of at most 128 characters without quotes or backslashes, found "${"x".repeat(76)}...`],
    ["comment of exactly 80 characters shown whole", (b) => (b.firewall.chains[0].rules[0].comment = "x".repeat(76) + '"'), `firewall.chains[0].rules[0].comment: expected a comment of at most 128 characters without quotes or backslashes, found "${"x".repeat(76)}\\""`],
    ["comment backslash", (b) => (b.firewall.chains[0].rules[0].comment = "a\\b"), 'firewall.chains[0].rules[0].comment: expected a comment of at most 128 characters without quotes or backslashes, found "a\\\\b"'],
    ["tag", (b) => (b.tailscale.tags = ["router"]), 'tailscale.tags[0]: expected a tag such as tag:router, found "router"'],
    ["login server", (b) => (b.tailscale.loginServer = "hs.example.test"), 'tailscale.loginServer: expected a URL starting with http:// or https://, found "hs.example.test"'],
    ["login server with a space", (b) => (b.tailscale.loginServer = "https://hs example"), 'tailscale.loginServer: expected a URL starting with http:// or https://, found "https://hs example"'],
    ["cli", (b) => (b.tailscale.cli = "Tailscale"), 'tailscale.cli: expected an absolute path without "..", "." or empty ("//") segments, or a command name such as tailscale; found "Tailscale"'],
    ["extra flag", (b) => (b.tailscale.extraUpFlags = ["-x"]), 'tailscale.extraUpFlags[0]: expected a flag such as --operator=alice, found "-x"'],
    ["probe url", (b) => (b.probes[0].url = "ftp://x"), 'probes[0].url: expected an http(s) URL, found "ftp://x"'],
    ["textfile dir", (b) => (b.metrics.textfileDir = "var/lib"), 'metrics.textfileDir: expected an absolute path without "..", "." or empty ("//") segments, found "var/lib"'],
  ];
  it.each(cases)("%s", (_name, edit, message) => {
    expect(problemsAfter(edit)).toEqual([message]);
  });

  it("edge values that are valid", () => {
    const ok: ((b: any) => void)[] = [
      (b) => (b.host = "a"),
      (b) => (b.host = "a".repeat(63)),
      (b) => (b.host = "A-1"),
      (b) => (b.files[0].owner = "_svc-1$"),
      (b) => (b.files[0].group = "a".repeat(32)),
      (b) => (b.files[0].mode = "0777"),
      (b) => (b.units[0].name = "getty@tty1.service"),
      (b) => (b.units[0].name = "x.timer"),
      (b) => (b.sysctl = { "net/ipv4/conf/eth0.100/forwarding": "1 2\t3" }),
      (b) => (b.firewall.chains[0].rules[0].iifname = "a".repeat(15)),
      (b) => (b.firewall.chains[0].rules[0].comment = "x".repeat(128)),
      (b) => ((b.firewall.sets[0].name = "a".repeat(63)), (b.firewall.chains[0].rules[0].saddr.set = "a".repeat(63))),
      (b) => (b.tailscale.cli = "tailscale"),
      (b) => (b.tailscale.loginServer = "http://10.0.0.1:8080/path"),
      (b) => (b.tailscale.extraUpFlags = ["--operator", "--x-y=a b"]),
      (b) => (b.metrics.textfileDir = ""),
      (b) => (b.probes = [{ name: "p", kind: "http", url: "http://x", expectStatus: 599, insecure: true }, { name: "t", kind: "tcp", host: "h", port: 65535 }, { name: "r", kind: "routes-advertised", routes: [] }, { name: "u", kind: "unit-active", unit: "a.service" }, { name: "ts", kind: "tailscale-running" }]),
      // Every member of every enum, so that none can be dropped or misspelt.
      (b) => (b.firewall.chains[0].rules[0].ctState = ["established", "related", "invalid", "new", "untracked"]),
      (b) => (b.firewall.chains[0].rules[1].icmp.types = ["echo-request", "nd-neighbor-solicit", "nd-neighbor-advert", "nd-router-advert", "packet-too-big"]),
      (b) => (b.firewall.chains[0].rules[0].l4.proto = "udp"),
      (b) => (b.firewall.chains[0].rules[0].l4 = { proto: "tcp+udp" }),
      (b) => b.firewall.chains.push({ name: "fwd", hook: { type: "filter", hook: "forward", priority: "filter", policy: "accept" }, rules: [] }, { name: "out", hook: { type: "filter", hook: "output", priority: "filter", policy: "drop" }, rules: [] }),
      (b) => (b.tailscale.netfilterMode = "nodivert"),
      (b) => (b.tailscale.netfilterMode = "off"),
      (b) => (b.firewall.sets[1].type = "ipv6_addr"),
      (b) => (b.tailscale.routes = ["fd7a:115c:a1e0::/48", "10.0.0.0/8"]),
    ];
    for (const e of ok) expect(problemsAfter(e)).toEqual([]);
  });

  it("every pattern is anchored at both ends: junk before or after a valid value is refused", () => {
    const at: [string, (b: any, v: string) => void, string, string, string][] = [
      ["host", (b, v) => (b.host = v), "router", "-", "-"],
      ["files[0].sha256", (b, v) => (b.files[0].sha256 = v), C.sha256("v=1\n"), "x", "0"],
      ["files[0].mode", (b, v) => (b.files[0].mode = v), "0644", "1", "4"],
      ["files[0].owner", (b, v) => (b.files[0].owner = v), "root", "A", "A"],
      ["units[0].name", (b, v) => (b.units[0].name = v), "app.service", "/", "x"],
      ["firewall.chains[0].rules[0].iifname", (b, v) => (b.firewall.chains[0].rules[0].iifname = v), "eth0", " ", " "],
      ["firewall.chains[1].name", (b, v) => (b.firewall.chains[1].name = v), "extra", "_", "X"],
      ["firewall.chains[0].rules[0].comment", (b, v) => (b.firewall.chains[0].rules[0].comment = v), "ok", '"', '"'],
      ["tailscale.tags[0]", (b, v) => (b.tailscale.tags = [v]), "tag:router", "x", "_"],
      ["tailscale.loginServer", (b, v) => (b.tailscale.loginServer = v), "https://hs.example.test", " ", " x"],
      ["tailscale.cli", (b, v) => (b.tailscale.cli = v), "tailscale", "X", "/"],
      ["tailscale.extraUpFlags[0]", (b, v) => (b.tailscale.extraUpFlags = [v]), "--operator=alice", "x", "\n"],
      ["probes[0].url", (b, v) => (b.probes[0].url = v), "https://localhost/", "x", ""],
      ["sysctl.net.x", (b, v) => (b.sysctl = { "net.x": v }), "1", "", "\n"],
    ];
    for (const [path, set, valid, before, after] of at) {
      if (before) expect([path, problemsAfter((b) => set(b, before + valid))[0]?.split(":")[0]]).toEqual([path, path]);
      if (after) expect([path, problemsAfter((b) => set(b, valid + after))[0]?.split(":")[0]]).toEqual([path, path]);
    }
    expect(problemsAfter((b) => (b.sysctl = { "x.net/": "1" }))).toEqual([]);
    expect(problemsAfter((b) => (b.sysctl = { "-x": "1" }))).toEqual(["sysctl.-x: Invalid key in record"]);
    expect(problemsAfter((b) => (b.tailscale.loginServer = "http://hs"))).toEqual([]);
    expect(problemsAfter((b) => (b.tailscale.loginServer = "https://hs/a b"))).toHaveLength(1);
    expect(problemsAfter((b) => (b.tailscale.cli = "tailscale-1.2_x"))).toEqual([]);
    expect(problemsAfter((b) => (b.tailscale.extraUpFlags = ["--x=a=b c"]))).toEqual([]);
    expect(problemsAfter((b) => (b.probes[0].url = "http://x"))).toEqual([]);
    // The anchors of the patterns not listed above, one value each.
    expect(problemsAfter((b) => (b.tailscale.loginServer = "xhttps://hs"))).toEqual(['tailscale.loginServer: expected a URL starting with http:// or https://, found "xhttps://hs"']);
    expect(problemsAfter((b) => (b.probes[0].url = "xhttp://x"))).toEqual(['probes[0].url: expected an http(s) URL, found "xhttp://x"']);
    expect(problemsAfter((b) => (b.sysctl = { "net.x ": "1" }))).toEqual(["sysctl.net.x : Invalid key in record"]);
    expect(problemsAfter((b) => (b.files[0].group = "root$x"))).toEqual(['files[0].group: expected a user or group name, found "root$x"']);
    expect(problemsAfter((b) => (b.firewall.sets[0].members = ["laptop-"]))).toEqual(['firewall.sets[0].members[0]: expected a host name (DNS label), found "laptop-"']);
  });

  it("the other alternatives and values each pattern takes", () => {
    // A login server: http or https, a host, then any path without spaces.
    for (const ok of ["https://hs.example.test/", "https://hs/a/b?c=d", "http://hs/x"]) expect([ok, problemsAfter((b) => (b.tailscale.loginServer = ok))]).toEqual([ok, []]);
    for (const bad of ["https://", "https:///a", "https://hs/\n", "https://hs/ ", "httpss://hs"]) expect([bad, problemsAfter((b) => (b.tailscale.loginServer = bad))[0]?.split(":")[0]]).toEqual([bad, "tailscale.loginServer"]);
    // The tailscale CLI as a command name: lowercase first, then letters, digits, ".", "_", "-".
    for (const bad of ["1tailscale", "-t", "ts cli", ""]) expect([bad, problemsAfter((b) => (b.tailscale.cli = bad))[0]?.split(":")[0]]).toEqual([bad, "tailscale.cli"]);
    for (const ok of ["t", "ts.1", "ts_x-2"]) expect([ok, problemsAfter((b) => (b.tailscale.cli = ok))]).toEqual([ok, []]);
    // A flag's value is optional; a lone "=" or a line break is not a flag.
    for (const ok of ["--x", "--x=", "--accept-risk=lose-ssh"]) expect([ok, problemsAfter((b) => (b.tailscale.extraUpFlags = [ok]))]).toEqual([ok, []]);
    for (const bad of ["--", "--X", "--x\n", "--x=a\nb", "--=x"]) expect([bad, problemsAfter((b) => (b.tailscale.extraUpFlags = [bad]))[0]?.split(":")[0]]).toEqual([bad, "tailscale.extraUpFlags[0]"]);
    // A sysctl value is one line, possibly empty; a key starts lowercase, a digit or "_".
    expect(problemsAfter((b) => (b.sysctl = { _x: "", "0.y": "a b" }))).toEqual([]);
    expect(problemsAfter((b) => (b.sysctl = { "net.x": "1\r" }))).toEqual(['sysctl.net.x: expected a one-line value, found "1\\r"']);
    // A host label may be one character, or two with no hyphen at either end.
    expect(problemsAfter((b) => (b.host = "ab"))).toEqual([]);
    expect(problemsAfter((b) => (b.host = "a-"))).toEqual(['host: expected a host name (DNS label), found "a-"']);
  });

  it("a value missing where a union or a pattern is expected is shown as nothing", () => {
    expect(problemsAfter((b) => delete b.tailscale.cli)).toEqual([
      "tailscale.cli: expected Invalid input: expected string, received undefined; found nothing",
    ]);
  });

  it("numbers and lists at their bounds", () => {
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].l4.dports = [0]))).toEqual(["firewall.chains[0].rules[0].l4.dports[0]: Too small: expected number to be >=1"]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].l4.dports = [65536]))).toEqual(["firewall.chains[0].rules[0].l4.dports[0]: Too big: expected number to be <=65535"]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].l4.dports = []))).toEqual(["firewall.chains[0].rules[0].l4.dports: Too small: expected array to have >=1 items"]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].ctState = []))).toEqual(["firewall.chains[0].rules[0].ctState: Too small: expected array to have >=1 items"]);
    expect(problemsAfter((b) => (b.probes[0].expectStatus = 99))).toEqual(["probes[0].expectStatus: Too small: expected number to be >=100"]);
    expect(problemsAfter((b) => (b.probes[0].expectStatus = 600))).toEqual(["probes[0].expectStatus: Too big: expected number to be <=599"]);
    expect(problemsAfter((b) => (b.probes[1].host = ""))).toEqual(["probes[1].host: Too small: expected string to have >=1 characters"]);
    expect(problemsAfter((b) => (b.probes[1].name = ""))).toEqual(["probes[1].name: Too small: expected string to have >=1 characters"]);
    expect(problemsAfter((b) => (b.bestEffort[0].argv = []))).toEqual(["bestEffort[0].argv: Too small: expected array to have >=1 items"]);
  });
});

describe("the outer checks", () => {
  it("not an object, and the format first", () => {
    for (const x of [null, undefined, 3, "x", [], [base()]]) expect(C.checkBundle(x)).toEqual(["bundle is not a JSON object"]);
    expect(C.checkBundle({ ...C.sealBundle(base()), format: C.BUNDLE_FORMAT - 1 })).toEqual([
      `bundle format ${C.BUNDLE_FORMAT - 1} is not supported (this agent reads format ${C.BUNDLE_FORMAT}); deploy with a matching meshfleet`,
    ]);
  });

  it("unknown fields, one or several, named with the format", () => {
    expect(C.checkBundle({ ...C.sealBundle(base()), a: 1 })).toEqual([`bundle: unknown field "a" (this agent reads bundle format ${C.BUNDLE_FORMAT})`]);
    expect(C.checkBundle({ ...C.sealBundle(base()), a: 1, b: 2 })).toEqual([`bundle: unknown fields "a", "b" (this agent reads bundle format ${C.BUNDLE_FORMAT})`]);
  });

  it("a union's alternatives are each named once", () => {
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].verdict = "reject"))).toEqual([
      'firewall.chains[0].rules[0].verdict: expected Invalid option: expected one of "accept"|"drop", or Invalid input: expected object, received string; found "reject"',
    ]);
    expect(problemsAfter((b) => (b.probes[0] = { name: "x", kind: "nope" }))).toEqual([
      expect.stringMatching(/^probes\[0\]\.kind: /),
    ]);
  });

  it("a missing field is named by its path, the top level as 'bundle'", () => {
    expect(problemsAfter((b) => delete b.files[0].content)).toEqual(["files[0].content: Invalid input: expected string, received undefined"]);
    expect(problemsAfter((b) => delete b.metrics)).toEqual(["metrics: Invalid input: expected object, received undefined"]);
  });
});

describe("cross-field rules", () => {
  it("TCP MSS clamping: only in forward or output chains, only for TCP; a rule must do something", () => {
    const fwd = (rule: object) => (b: any) => b.firewall.chains.push({ name: "fwd", hook: { type: "filter", hook: "forward", priority: "filter", policy: "accept" }, rules: [rule] });
    expect(problemsAfter(fwd({ l4: { proto: "tcp" }, tcpMss: "rt-mtu" }))).toEqual([]);
    expect(problemsAfter(fwd({ tcpMss: "rt-mtu" }))).toEqual([]);
    expect(problemsAfter((b) => b.firewall.chains.push({ name: "out", hook: { type: "filter", hook: "output", priority: "filter", policy: "accept" }, rules: [{ tcpMss: "rt-mtu" }] }))).toEqual([]);
    expect(problemsAfter(fwd({ l4: { proto: "udp" }, tcpMss: "rt-mtu" }))).toEqual(["firewall.chains[2].rules[0]: clamps the TCP MSS of udp packets"]);
    expect(problemsAfter(fwd({ l4: { proto: "tcp+udp" }, tcpMss: "rt-mtu" }))).toEqual(["firewall.chains[2].rules[0]: clamps the TCP MSS of tcp+udp packets"]);
    expect(problemsAfter((b) => b.firewall.chains[0].rules.push({ tcpMss: "rt-mtu" }))).toEqual(["firewall.chains[0].rules[2]: clamps the TCP MSS in chain input, which is not hooked on forward or output"]);
    expect(problemsAfter((b) => b.firewall.chains[1].rules.push({ tcpMss: "rt-mtu" }))).toEqual(["firewall.chains[1].rules[1]: clamps the TCP MSS in chain extra, which is not hooked on forward or output"]);
    expect(problemsAfter(fwd({ l4: { proto: "tcp" } }))).toEqual(["firewall.chains[2].rules[0]: has no verdict and no statement (tcpMss, counter): it does nothing"]);
    expect(problemsAfter(fwd({ counter: true }))).toEqual([]);
  });

  it("paths written twice: by files, the sysctl file or units", () => {
    expect(problemsAfter((b) => b.files.push({ ...b.files[0] }))).toEqual(["files[1]: path /etc/app/app.conf is also written by files[0]"]);
    const sysctlFile = { ...base().files[0], path: "/etc/sysctl.d/90-meshfleet.conf" };
    expect(problemsAfter((b) => b.files.push(sysctlFile))).toEqual(["sysctl: path /etc/sysctl.d/90-meshfleet.conf is also written by files[1]"]);
    expect(problemsAfter((b) => ((b.sysctl = {}), b.files.push(sysctlFile)))).toEqual([]);
    const unitFile = { ...base().files[0], path: "/etc/systemd/system/app.service" };
    expect(problemsAfter((b) => b.files.push(unitFile))).toEqual(["units[0]: path /etc/systemd/system/app.service is also written by files[1]"]);
  });

  it("sets: names repeat, elements of the other family", () => {
    expect(problemsAfter((b) => b.firewall.sets.push({ ...b.firewall.sets[0] }))).toEqual(["firewall.sets: set names repeat"]);
    expect(problemsAfter((b) => (b.firewall.sets[0].elements = ["fd7a::1"]))).toEqual(["firewall.sets[0].elements[0]: fd7a::1 is not an IPv4 address"]);
    expect(problemsAfter((b) => (b.firewall.sets[1].elements = ["10.0.0.0/8", "fd7a::/16"]))).toEqual(["firewall.sets[1].elements[0]: 10.0.0.0/8 is not an IPv6 address"]);
  });

  it("chains: names repeat, jumps and sets that are not there, families that do not match", () => {
    expect(problemsAfter((b) => b.firewall.chains.push({ ...b.firewall.chains[1] }))).toEqual(["firewall.chains: chain names repeat"]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[1].verdict = { jump: "nowhere" }))).toEqual(["firewall.chains[0].rules[1]: jumps to chain nowhere, which the table does not have"]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].saddr.set = "nope"))).toEqual(["firewall.chains[0].rules[0]: uses set nope, which the table does not have"]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].saddr.family = "ip6"))).toEqual(["firewall.chains[0].rules[0]: matches ip6 saddr against ipv4_addr set peers_v4"]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].saddr = { family: "ip6", set: "peers_v6" }))).toEqual([]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].saddr = { family: "ip", set: "peers_v6" }))).toEqual(["firewall.chains[0].rules[0]: matches ip saddr against ipv6_addr set peers_v6"]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[1].saddr.cidrs = ["fd7a::1", "10.0.0.1"]))).toEqual(["firewall.chains[0].rules[1]: 10.0.0.1 is not an ip6 address"]);
  });

  it("a rule's source and destination: sets and CIDRs checked alike, and of one family", () => {
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].daddr = { family: "ip", cidrs: ["192.168.8.0/24"] }))).toEqual([]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[0].daddr = { family: "ip6", cidrs: ["fd00::/8"] }))).toEqual([
      "firewall.chains[0].rules[0]: matches ip saddr and ip6 daddr",
    ]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[1].daddr = { family: "ip", set: "peers_v4" }))).toEqual([
      "firewall.chains[0].rules[1]: matches ip6 saddr and ip daddr",
    ]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[1].daddr = { family: "ip6", set: "gone" }))).toEqual([
      "firewall.chains[0].rules[1]: uses set gone, which the table does not have",
    ]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[1].daddr = { family: "ip6", set: "peers_v4" }))).toEqual([
      "firewall.chains[0].rules[1]: matches ip6 daddr against ipv4_addr set peers_v4",
    ]);
    expect(problemsAfter((b) => (b.firewall.chains[0].rules[1].daddr = { family: "ip6", cidrs: ["10.0.0.1"] }))).toEqual([
      "firewall.chains[0].rules[1]: 10.0.0.1 is not an ip6 address",
    ]);
    // Only a destination: no family to disagree with.
    expect(problemsAfter((b) => (b.firewall.chains[1].rules[0].daddr = { family: "ip6", cidrs: ["fd00::1"] }))).toEqual([]);
  });

  it("hashes: a file's content and the bundle's, skipped when asked", () => {
    const b = C.sealBundle(base());
    const tampered = structuredClone(b);
    tampered.files[0].content = "v=2\n";
    expect(C.checkBundle(tampered)).toEqual(["files[0] (/etc/app/app.conf): sha256 does not match its content", "bundle hash does not match its content"]);
    expect(C.consistencyProblems(tampered)).toEqual(["files[0] (/etc/app/app.conf): sha256 does not match its content", "bundle hash does not match its content"]);
    expect(C.consistencyProblems(tampered, false)).toEqual([]);
    expect(C.checkSealed(tampered)).toEqual([]);
    expect(C.consistencyProblems(b)).toEqual([]);
    expect(C.consistencyProblems({ ...b, firewall: null })).toEqual(["bundle hash does not match its content"]);
  });
});

describe("addresses and paths", () => {
  it("cidrFamily", () => {
    for (const [s, want] of [
      ["10.0.0.1", "ip"],
      ["0.0.0.0/0", "ip"],
      ["255.255.255.255/32", "ip"],
      ["10.0.0.0/33", null],
      ["256.0.0.1", null],
      ["01.0.0.1", null],
      ["1.2.3", null],
      ["10.0.0.0/8/8", null],
      ["10.0.0.0/x", null],
      ["10.0.0.0/", null],
      ["10.0.0.0/0008", null],
      ["::", "ip6"],
      ["::/128", "ip6"],
      ["::/129", null],
      ["fd7a:115c:a1e0::/48", "ip6"],
      ["1:2:3:4:5:6:7:8", "ip6"],
      ["1:2:3:4:5:6:7:8:9", null],
      ["1:2:3:4:5:6:7", null],
      ["1::2::3", null],
      ["1:2:3::4:5:6::7:8", null],
      ["249.240.199.9", "ip"],
      ["200.201.202.203/24", "ip"],
      ["9.99.100.10", "ip"],
      ["1:2:3:4:5:6:7::", "ip6"],
      ["1:2:3:4:5:6:7:8::", null],
      ["12345::", null],
      ["10.0.0.1x", null],
      ["x10.0.0.1", null],
      ["10.0.0.1 ", null],
      ["240.0.0.1", "ip"],
      ["1.240.0.1", "ip"],
      ["1.2.3.04", null],
      ["1.2.3.4/", null],
      ["::1x", null],
      ["x::1", null],
      ["fe80::1%eth0", null],
      ["g::", null],
      ["", null],
    ] as const)
      expect([s, C.cidrFamily(s)]).toEqual([s, want]);
  });

  it("ABS_PATH: absolute, no empty, '.' or '..' segments, no control characters", () => {
    for (const ok of ["/", "/a", "/a/b.c", "/a/..b", "/a/.b", "/a/b..", "/a b/c"]) expect([ok, C.ABS_PATH.test(ok) || ok === "/"]).toEqual([ok, true]);
    for (const bad of ["a", "/a/", "//a", "/a//b", "/./a", "/a/.", "/a/..", "/../a", "/a\nb", "/a\rb", "/a\0b", ""]) expect([bad, C.ABS_PATH.test(bad)]).toEqual([bad, false]);
  });
});

describe("canonical JSON and hashes", () => {
  it("sorts keys at every level, drops undefined members, keeps arrays in order", () => {
    expect(C.canonicalJson({ b: 1, a: [3, { d: true, c: null }], u: undefined, s: "x" })).toBe('{"a":[3,{"c":null,"d":true}],"b":1,"s":"x"}');
    expect(C.canonicalJson([undefined, () => 1, 2])).toBe("[null,null,2]");
    expect(C.canonicalJson({ f: false })).toBe('{"f":false}');
    expect(C.canonicalJson({})).toBe("{}");
    expect(C.canonicalJson([])).toBe("[]");
    expect(C.canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
    expect(C.canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
    expect(C.canonicalJson("x\n")).toBe('"x\\n"');
    expect(C.canonicalJson(undefined)).toBeUndefined();
    expect(() => C.canonicalJson(1n)).toThrow(TypeError);
  });

  it("writes index-like keys first in numeric order (as JSON.stringify does), then the others sorted", () => {
    const o = { b: 1, 10: "ten", 2: "two", 0: "zero", "01": "not an index", 4294967295: "not an index either", 4294967294: "last index" };
    expect(C.canonicalJson(o)).toBe('{"0":"zero","2":"two","10":"ten","4294967294":"last index","01":"not an index","4294967295":"not an index either","b":1}');
    expect(C.canonicalJson({ "9": 1, a: 2 })).toBe('{"9":1,"a":2}');
    // Index keys by number, the first and last digits included: "9" before "10", "0" before "10".
    expect(C.canonicalJson({ 10: "a", 9: "b", 0: "c", "-1": "d", ":": "e", "/": "f" })).toBe('{"0":"c","9":"b","10":"a","-1":"d","/":"f",":":"e"}');
    expect(C.canonicalJson({ 10: "a", 9: "b" })).toBe(JSON.stringify({ 10: "a", 9: "b" }));
  });

  it("objects with toJSON or a class go through a sorted copy", () => {
    expect(C.canonicalJson({ d: new Date(0) })).toBe('{"d":"1970-01-01T00:00:00.000Z"}');
    class P {
      constructor(
        readonly z: number,
        readonly y: { b: number; a: number },
      ) {}
    }
    expect(C.canonicalJson({ p: new P(1, { b: 2, a: 1 }) })).toBe('{"p":{"y":{"a":1,"b":2},"z":1}}');
    expect(C.canonicalJson({ t: { toJSON: () => ({ b: 1, a: 2 }) } })).toBe('{"t":{"b":1,"a":2}}');
    // At the top, or inside an array: toJSON is still called.
    expect(C.canonicalJson({ toJSON: () => "x", a: 1 })).toBe('"x"');
    expect(C.canonicalJson([{ toJSON: () => 1 }])).toBe("[1]");
    expect(C.canonicalJson(Object.assign(Object.create(null), { b: 1, a: 2 }))).toBe('{"a":2,"b":1}');
    expect(C.canonicalJson([new P(1, { b: 2, a: 1 })])).toBe('[{"y":{"a":1,"b":2},"z":1}]');
    class Q {
      constructor(readonly list: unknown[]) {}
    }
    expect(C.canonicalJson({ q: new Q([3, { b: 1, a: 2 }, undefined]) })).toBe('{"q":{"list":[3,{"a":2,"b":1},null]}}');
  });

  it("sha256 and the shared memo agree, for short, repeated and long texts", () => {
    expect(C.sha256("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(C.sha256("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    for (const s of ["abc", "abc", "x".repeat(64 * 1024), "y".repeat(64 * 1024 + 1), "z".repeat(64 * 1024 + 1)]) expect(C.sha256Shared(s)).toBe(C.sha256(s));
    // More than the memo holds: it starts over, still right.
    for (let i = 0; i < 80; i++) expect(C.sha256Shared(`${i}`.padEnd(60 * 1024, "-"))).toBe(C.sha256(`${i}`.padEnd(60 * 1024, "-")));
    expect(C.sha256Shared("abc")).toBe(C.sha256("abc"));
  });

  it("bundleHash ignores the hash field; sealBundle fills it", () => {
    const body = base();
    const h = C.bundleHash(body);
    expect(h).toBe(C.sha256(C.canonicalJson(body)));
    expect(C.bundleHash({ ...body, hash: "f".repeat(64) } as Bundle)).toBe(h);
    expect(C.sealBundle(body)).toEqual({ ...body, hash: h });
    expect(C.bundleHash({ ...body, host: "other" })).not.toBe(h);
  });
});

describe("the exported schema and its JSON Schema form", () => {
  it("bundleSchema parses a bundle as checkBundle's schema does", () => {
    const b = C.sealBundle(base());
    expect(C.bundleSchema.safeParse(b)).toMatchObject({ success: true, data: b });
    expect(C.bundleSchema.safeParse({ ...b, host: "-" }).success).toBe(false);
  });

  it("bundleJsonSchema: the format number and every field, unknown fields refused", () => {
    const js = C.bundleJsonSchema() as { type: string; properties: Record<string, unknown>; required: string[]; additionalProperties: boolean };
    expect(js.type).toBe("object");
    expect(js.properties.format).toEqual({ type: "number", const: C.BUNDLE_FORMAT });
    expect(js.required).toEqual(["format", "host", "hash", "files", "sysctl", "units", "firewall", "tailscale", "probes", "metrics", "bestEffort"]);
    expect(js.additionalProperties).toBe(false);
  });
});

/**
 * The contract module once more, with node:crypto wrapped: which texts are
 * hashed, how often, and the fallback for a node without crypto.hash.
 */
describe("sha256 and its memo, counted", () => {
  async function withCrypto(hash: "counted" | "absent") {
    const calls: string[] = [];
    vi.resetModules();
    vi.doMock("node:crypto", async (importOriginal) => {
      const orig = await importOriginal<typeof import("node:crypto")>();
      const createHash = (alg: string) => {
        const h = orig.createHash(alg);
        const update = h.update.bind(h);
        (h as { update: unknown }).update = (s: string, enc: "utf8") => (calls.push(s), update(s, enc));
        return h;
      };
      return { ...orig, createHash, hash: hash === "absent" ? undefined : (alg: string, s: string, enc: "hex") => (calls.push(s), orig.hash(alg, s, enc)) };
    });
    try {
      return { M: await import("../../contract/bundle.ts"), calls };
    } finally {
      vi.doUnmock("node:crypto");
      vi.resetModules();
    }
  }

  it("without crypto.hash (node < 20.12): createHash gives the same hex digest", async () => {
    const { M, calls } = await withCrypto("absent");
    expect(M.sha256("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(M.sha256("é")).toBe(C.sha256("é"));
    expect(calls).toEqual(["abc", "é"]);
  });

  it("a text up to 64 KiB is hashed once; a longer one every time", async () => {
    const { M, calls } = await withCrypto("counted");
    const texts = ["a", "bb", "c".repeat(1000), "d".repeat(64 * 1024)];
    for (const t of [...texts, ...texts]) expect(M.sha256Shared(t)).toBe(C.sha256(t));
    expect(calls.map((s) => s.length)).toEqual(texts.map((t) => t.length));
    const long = "e".repeat(64 * 1024 + 1);
    M.sha256Shared(long);
    M.sha256Shared(long);
    expect(calls.slice(texts.length).map((s) => s.length)).toEqual([long.length, long.length]);
  });

  it("the memo holds up to 4 Mi characters, then starts over", async () => {
    const { M, calls } = await withCrypto("counted");
    // 64 texts of 64 KiB: exactly 4 Mi characters, all kept.
    const texts = Array.from({ length: 64 }, (_, i) => `${i}`.padEnd(64 * 1024, "-"));
    for (const t of texts) M.sha256Shared(t);
    for (const t of texts) M.sha256Shared(t);
    expect(calls).toHaveLength(64);
    // One character more: the memo is emptied, then holds the new text only.
    M.sha256Shared("x");
    expect(calls).toHaveLength(65);
    M.sha256Shared("x");
    M.sha256Shared(texts[63]);
    expect(calls).toHaveLength(66);
    M.sha256Shared("x");
    expect(calls).toHaveLength(66);
  });
});

describe("secretRefs", () => {
  it("the secrets a host's files need, once each, sorted", () => {
    const host = { files: [{ secretRef: "b" }, {}, { secretRef: "a" }, { secretRef: "b" }] } as unknown as HostSystem;
    expect(secretRefs(host)).toEqual(["a", "b"]);
    expect(secretRefs({ files: [] } as unknown as HostSystem)).toEqual([]);
  });
});
