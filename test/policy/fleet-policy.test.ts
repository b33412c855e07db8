/**
 * Issue 17, policy verdicts like headscale's, on whole fleets: each class has
 * a fixture whose exact diagnostics (file, option path, expected, found, fix)
 * are asserted.
 *  - a coordinator outside the tailnet is not held to the lockout check;
 *  - sshTests run as headscale runs them, and their shapes are validated;
 *  - verdicts that depend on the addresses are flagged, and `--nodes` (the
 *    coordinator's `headscale nodes list --output json`) gives the real ones;
 *  - a nodes file that is not such a list is refused, naming where.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { parseNodesList, readNodesFile, runFleetTests, runSshTests, type PolicyNode } from "../../core/policy/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";

const F = "<fleet>/fleet.yaml";
/** Other modules' warnings (e.g. on the base fixture's proxy) are not this file's subject. */
const errors = <T extends { severity: string }>(ds: T[]) => ds.filter((d) => d.severity === "error");

async function evaluate(files: Record<string, string | null>) {
  const { dir, cleanup } = writeFleet(files);
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    const clean = <T>(x: T): T => JSON.parse(JSON.stringify(x).split(dir).join("<fleet>"));
    return { r, clean, dir };
  } finally {
    cleanup();
  }
}

const withPolicy = (policy: string) => BASE["fleet.yaml"].replace(/policy:[\s\S]*$/, policy);
const tagged = (n: number, tags: string) => `imports: [client]\naddress: 10.0.0.${n}\ntailscale:\n  tags: [${tags}]\n`;

describe("a coordinator outside the tailnet", () => {
  const restrictive = BASE["fleet.yaml"].replace('dst: ["*:*"]', 'dst: ["tag:router:22"]');

  it("is not held to admin tcp/22 through the policy", async () => {
    const vps = BASE["vps.yaml"].replace("client]", "]").replace("tailscale:\n  user: alice\n", "");
    const { r } = await evaluate({ "fleet.yaml": restrictive, "vps.yaml": vps });
    expect(errors(r.diagnostics)).toEqual([]);
    expect(r.fleet!.hosts.vps.tailscale.enable).toBe(false);
  });

  it("is held to it when it is a tailnet node, with a fix that names a destination it has", async () => {
    const { r, clean } = await evaluate({ "fleet.yaml": restrictive });
    expect(clean(errors(r.diagnostics))).toEqual([
      {
        severity: "error", file: F, path: "policy.acls",
        expected: "some user allowed tcp:22 to the coordinator vps",
        found: "no user device can SSH to it over the tailnet",
        fix: "list admins in fleet.yaml and add {action: accept, src: [<admin>@], dst: [autogroup:member:22]} to policy.acls",
      },
    ]);
  });
});

const sshPolicy = `policy:
  tagOwners:
    tag:router: [alice@]
    tag:web: [alice@]
    tag:db: [alice@]
  acls:
    - action: accept
      src: [alice@]
      dst: ["*:*"]
    - action: accept
      src: [tag:db]
      dst: ["tag:router:22"]
  ssh:
    - action: check
      src: [alice@]
      dst: [tag:router]
      users: [autogroup:nonroot]
    - action: accept
      src: [tag:db]
      dst: [tag:router]
      users: [root]
  tests:
    - src: tag:web
      accept: ["tag:router:22"]
  sshTests:
    - src: alice@
      dst: [tag:router]
      accept: [deploy]
      check: [root]
    - src: tag:web
      dst: [tag:router]
      deny: [deploy]
      accept: [root]
    - src: alice@
      dst: [tag:router]
      check: [deploy]
      deny: [root]
`;
const webs = { "web1.yaml": tagged(21, "tag:web, tag:db"), "web2.yaml": tagged(22, "tag:web") };

describe("sshTests, evaluated as headscale does", () => {
  it("reports each failing login with headscale's line, on stand-in addresses", async () => {
    const { r, clean } = await evaluate({ "fleet.yaml": withPolicy(sshPolicy), ...webs });
    expect(errors(r.diagnostics)).toEqual([]);
    const t = clean(runFleetTests(r.fleet!));
    expect(t.diagnostics.filter((d) => d.path.startsWith("policy.sshTests"))).toEqual([
      {
        severity: "error", file: F, path: "policy.sshTests[0].check[0]",
        expected: "alice@ may SSH to router as root through a check rule",
        found: "DENIED (alice@/root -> router: expected ALLOWED via check, got DENIED)",
        fix: "add an ssh rule {action: check, src: [alice@], dst: [tag:router], users: [root]}",
      },
      {
        // web2 has tag:web but not tag:db: one of the source's addresses is refused root.
        severity: "error", file: F, path: "policy.sshTests[1].accept[0]",
        expected: "tag:web may SSH to router as root",
        found: "DENIED (tag:web/root -> router: expected ALLOWED, got DENIED)",
        fix: "add an ssh rule {action: accept, src: [tag:web], dst: [tag:router], users: [root]}, or move root to deny",
      },
    ]);
    expect(t.results.filter((x) => x.line.startsWith("ssh ")).map((x) => `${x.line} ${x.pass}`)).toEqual([
      "ssh alice@ -> deploy@router: may log in true",
      "ssh alice@ -> root@router: logs in after a check false",
      "ssh tag:web -> root@router: may log in false",
      "ssh tag:web -> deploy@router: may not log in true",
      "ssh alice@ -> root@router: may not log in true",
      "ssh alice@ -> deploy@router: logs in after a check true",
    ]);
  });

  const N = (name: string, ip: number, o: Partial<PolicyNode> = {}): PolicyNode => ({ name, tags: [], ips: [`100.64.0.${ip}`, `fd7a:115c:a1e0::${ip}`], approvedRoutes: [], ...o });
  const nodes = [N("laptop", 1, { user: "alice" }), N("phone", 2, { user: "alice" }), N("srv", 3, { tags: ["tag:srv"] }), N("bobpc", 4, { user: "bob" })];

  it("says ALLOWED via accept when a check test is met by an accept rule, and tries every address of a CIDR source", () => {
    const r = runSshTests(nodes, {
      tagOwners: { "tag:srv": ["alice@"] },
      ssh: [
        { action: "accept", src: ["alice@"], dst: ["tag:srv"], users: ["root", "autogroup:nonroot"] },
        { action: "check", src: ["autogroup:member"], dst: ["autogroup:self"], users: ["root"] },
      ],
      sshTests: [
        { src: "alice@", dst: ["tag:srv"], check: ["root"], deny: ["ubuntu"] },
        { src: "100.64.0.0/31", dst: ["tag:srv"], accept: ["root"] },
        { src: "alice@", dst: ["autogroup:self"], check: ["root"], accept: [""] },
        { src: "tag:srv", dst: ["autogroup:self", "bob@"], accept: ["root"] },
        { src: "bob@", dst: ["tag:srv"] },
        { src: "100.64.0.3", dst: ["laptop-alias"], accept: ["root"] },
      ],
    }, { users: ["alice", "bob"] });
    expect(r.failures).toEqual([
      "alice@/ubuntu -> srv: expected DENIED, got ALLOWED",
      "alice@/root -> srv: expected ALLOWED via check, got ALLOWED via accept",
      // 100.64.0.0 has no node: that address is refused, so the CIDR is.
      "100.64.0.0/31/root -> srv: expected ALLOWED, got DENIED",
      // "" is never a login user.
      'alice@/"" -> laptop: expected ALLOWED, got DENIED',
      'alice@/"" -> phone: expected ALLOWED, got DENIED',
      'tag:srv: dst alias "autogroup:self" resolved to no nodes',
      "tag:srv/root -> bobpc: expected ALLOWED, got DENIED",
      "bob@: no accept, deny, or check assertions specified",
      '100.64.0.3/32: failed to resolve destinations: resolving destination "laptop-alias": error resolving host: "laptop-alias"',
    ]);
    expect(r.allPassed).toBe(false);
  });
});

describe("sshTests shapes headscale refuses", () => {
  it("names each one", async () => {
    const policy = `policy:
  tagOwners:
    tag:router: [alice@]
  hosts:
    lan: 192.168.8.0/24
  ssh:
    - action: accept
      src: ["100.64.0.0/10"]
      dst: [tag:router]
      users: [root]
  acls:
    - action: accept
      src: [alice@]
      dst: ["*:*"]
  sshTests:
    - src: ""
      dst: []
    - src: alice@
      dst: ["tag:router:22", autogroup:internet, 100.64.0.0/24, lan, tag:nope]
      accept: [" "]
`;
    const { r, clean } = await evaluate({ "fleet.yaml": withPolicy(policy) });
    const e = (path: string, expected: string, found: string, fix: string) => ({ severity: "error", file: F, path, expected, found, fix });
    const one = "one SSH host (a tag, host, user, IP or autogroup:member/tagged/self)";
    expect(clean(errors(r.diagnostics))).toEqual([
      e("policy.ssh[0].src[0]", "users (alice@), group:x, tag:x or autogroup:member/tagged as SSH sources", '"100.64.0.0/10"', "name the source devices by tag, user or group"),
      e("policy.sshTests[0].src", "one source alias (a user, group, tag, host or IP)", '""', "name the source, e.g. alice@ or tag:ci"),
      e("policy.sshTests[0].dst", "at least one destination", "[]", "add a destination, e.g. dst: [tag:server]"),
      e("policy.sshTests[0]", "accept, deny or check (at least one login user)", "none", "add accept: [root] or deny: [root], the login users to test"),
      e("policy.sshTests[1].dst[0]", "a tag defined in policy.tagOwners (sshTests destinations have no port)", 'unknown tag "tag:router:22"', "write tag:router (SSH is always port 22)"),
      e("policy.sshTests[1].dst[1]", one, '"autogroup:internet"', "autogroup:internet cannot be an SSH destination; name the host's tag"),
      e("policy.sshTests[1].dst[2]", one, '"100.64.0.0/24"', "test one address of the range, or the host's tag"),
      e("policy.sshTests[1].dst[3]", one, '"lan" (lan is 192.168.8.0/24)', "test one address of the range, or the host's tag"),
      e("policy.sshTests[1].dst[4]", "a tag defined in policy.tagOwners (sshTests destinations have no port)", 'unknown tag "tag:nope"', "add tag:nope to policy.tagOwners, or fix the name"),
      e("policy.sshTests[1].accept[0]", "a login user (root, a name)", '""', "name the login user, e.g. root"),
    ]);
  });
});

describe("verdicts that depend on the addresses, and the coordinator's real ones", () => {
  const policy = `policy:
  tagOwners:
    tag:router: [alice@]
    tag:web: [alice@]
    tag:db: [alice@]
  acls:
    - action: accept
      src: [alice@]
      dst: ["*:*"]
    - action: accept
      src: [tag:db]
      dst: ["tag:router:22"]
  tests:
    - src: tag:web
      accept: ["tag:router:22"]
`;
  const nodesJson = (web1: string, web2: string) => JSON.stringify([
    { id: "1", name: "web1", given_name: "web1", ip_addresses: [web1, `fd7a:115c:a1e0::${web1.split(".")[3]}`], user: { id: "1", name: "tagged-devices" }, tags: ["tag:web", "tag:db"] },
    { id: "2", name: "web-2", given_name: "web2", ip_addresses: [web2, `fd7a:115c:a1e0::${web2.split(".")[3]}`], user: { id: "1", name: "tagged-devices" }, tags: ["tag:web"] },
    { id: "3", name: "bobs-phone", given_name: "bobs-phone", ip_addresses: ["100.64.0.9", "fd7a:115c:a1e0::9"], user: { id: "2", name: "bob" } },
  ]);

  it("warns when adjacent addresses (headscale's /31 merge) would change a verdict", async () => {
    const { r, clean } = await evaluate({ "fleet.yaml": withPolicy(policy), ...webs });
    const t = clean(runFleetTests(r.fleet!));
    expect(t.diagnostics.map((d) => `${d.severity} ${d.path}: ${d.found.replace(/\(for part of the source: [^)]*\)/, "(part)")}`)).toEqual([
      "error policy.tests[0].accept[0]: DENIED: no rule matched: no rule has this source (part)",
      "warning policy.tests[0].accept[0]: tag:web -> tag:router:22 is DENIED on meshfleet's stand-in addresses but ALLOWED when the nodes sit on adjacent addresses (headscale merges a source's adjacent addresses into one prefix, and a prefix passes when any rule overlaps it)",
    ]);
    expect(t.diagnostics[1].fix).toBe("check against the coordinator's addresses: headscale nodes list --output json > nodes.json, then meshfleet check --nodes nodes.json");
  });

  it("gives headscale's verdict on the coordinator's addresses: adjacent passes, spaced fails", async () => {
    const { r, clean } = await evaluate({ "fleet.yaml": withPolicy(policy), ...webs });
    const adjacent = parseNodesList(nodesJson("100.64.0.2", "100.64.0.3"), "nodes.json");
    expect(adjacent.diagnostics).toEqual([]);
    expect(runFleetTests(r.fleet!, { live: adjacent.nodes, liveFile: "nodes.json" }).diagnostics).toEqual([]);
    const spaced = parseNodesList(nodesJson("100.64.0.2", "100.64.0.5"), "nodes.json");
    expect(clean(runFleetTests(r.fleet!, { live: spaced.nodes, liveFile: "nodes.json" }).diagnostics)).toEqual([
      {
        severity: "error", file: F, path: "policy.tests[0].accept[0]", expected: "ALLOWED",
        found: "DENIED: no rule matched: no rule has this source (for part of the source: fd7a:115c:a1e0::5) (on the coordinator's addresses from nodes.json)",
        fix: "add an acl allowing tag:web to tag:router:22, or move it to deny",
      },
    ]);
  });

  it("lets the tailnet's other nodes take part (bob's phone resolves bob@)", async () => {
    const p = policy.replace("  tests:\n", "  tests:\n    - src: bob@\n      deny: [\"tag:web:22\"]\n");
    const { r, clean } = await evaluate({ "fleet.yaml": withPolicy(p).replace("users: [alice]", "users: [alice, bob]"), ...webs });
    expect(errors(r.diagnostics)).toEqual([]);
    const without = clean(runFleetTests(r.fleet!)).diagnostics.filter((d) => d.path === "policy.tests[0].src");
    expect(without).toEqual([{ severity: "error", file: F, path: "policy.tests[0].src", expected: "a source that resolves to nodes", found: 'source "bob@" resolved to no IP addresses', fix: "name a user, group, tag or host of this fleet" }]);
    const live = parseNodesList(nodesJson("100.64.0.2", "100.64.0.3"), "nodes.json");
    const t = runFleetTests(r.fleet!, { live: live.nodes });
    expect(t.diagnostics).toEqual([]);
    expect(t.results.map((x) => `${x.line} ${x.pass}`)).toEqual(["bob@ -> tag:web:22: expected DENIED true", "tag:web -> tag:router:22: expected ALLOWED true"]);
  });
});

describe("--nodes FILE that is not the coordinator's list", () => {
  const root = mkdtempSync(join(tmpdir(), "mf-nodes-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const fix = "save the coordinator's list with: headscale nodes list --output json > FILE";
  const e = (path: string, expected: string, found: string, f = fix) => ({ severity: "error", file: "n.json", path, expected, found, fix: f });

  it.each([
    ["not JSON", "nodes:\n- a", [e("", "the JSON output of headscale nodes list --output json", "not JSON (Unexpected token 'o', \"nodes:\n- a\" is not valid JSON)")]],
    ["headscale's own error", '{"error":"failed to connect"}', [e("error", "a list of nodes", 'headscale\'s error "failed to connect"', "run the command again where headscale is running (it needs the server), then save its output")]],
    ["an object", '{"nodes":[]}', [e("", "a JSON list of nodes", '{"nodes":[]}')]],
    ["bad entries", JSON.stringify([7, { ip_addresses: [] }, { name: "a", ip_addresses: ["100.64.0.1", "1.2.3"], tags: ["web"], approved_routes: ["10.0.0.0/8", "10.0.0.1"] }, { name: "b", ip_addresses: "100.64.0.2" }]), [
      e("[0]", "a node object", "7"),
      e("[1]", "a node with name or given_name", '{"ip_addresses":[]}'),
      e("[2].ip_addresses[1]", "an IPv4 or IPv6 address", '"1.2.3"'),
      e("[2].tags[0]", "tag:<name>", '"web"'),
      e("[2].approved_routes[1]", "a CIDR", '"10.0.0.1"'),
      e("[3].ip_addresses", "a list of addresses", '"100.64.0.2"'),
    ]],
  ] as const)("%s", (_n, text, want) => {
    expect(parseNodesList(text, "n.json").diagnostics).toEqual(want);
  });

  it("an empty tailnet (null) is no nodes, not an error", () => {
    expect(parseNodesList("null", "n.json")).toEqual({ nodes: [], diagnostics: [] });
  });

  it("a folder, a missing file and bytes that are not UTF-8 are named", () => {
    mkdirSync(join(root, "dir"));
    writeFileSync(join(root, "bin.json"), Buffer.from([0x5b, 0xff, 0xfe, 0x5d]));
    const how = "save the coordinator's list with: headscale nodes list --output json > nodes.json";
    const d = (f: string, expected: string, found: string) => [{ severity: "error", file: join(root, f), path: "--nodes", expected, found, fix: how }];
    expect(readNodesFile(join(root, "dir")).diagnostics).toEqual(d("dir", "a regular file", "a folder"));
    expect(readNodesFile(join(root, "none.json")).diagnostics).toEqual(d("none.json", "a readable file", "ENOENT"));
    expect(readNodesFile(join(root, "bin.json")).diagnostics).toEqual(d("bin.json", "UTF-8 JSON text", "bytes that are not UTF-8"));
  });

  it("check --nodes refuses it and evaluates nothing further (exit 1)", async () => {
    writeFileSync(join(root, "bad.json"), "[1]");
    const { dir, cleanup } = writeFleet();
    const err = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    try {
      const { command } = await import("../../cli/commands/check.ts");
      expect(await command.run(["--hosts-dir", dir, "--nodes", join(root, "bad.json")])).toBe(1);
      const printed = err.mock.calls.map((c) => String(c[0]).split(root).join("<root>")).join("\n").split("\n");
      expect(printed.filter((l) => l.includes("bad.json"))).toEqual([`error: <root>/bad.json: [0]: expected a node object, found 1. Fix: ${fix}`]);
      writeFileSync(join(root, "ok.json"), "[]");
      expect(await command.run(["--hosts-dir", dir, "--nodes", join(root, "ok.json")])).toBe(0);
    } finally {
      err.mockRestore();
      log.mockRestore();
      cleanup();
    }
  });
});
