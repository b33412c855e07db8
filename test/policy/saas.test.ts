/**
 * Issue 15 item 7: the fleet's policy for Tailscale's own service. Users
 * become logins (fleet.yaml tailscaleSaas), what cannot be mapped is refused
 * with the path and the fix, and the same evaluator run on both policies
 * says whether the fleet's tests and its reachability stay the same, or
 * names the place they differ.
 */
import { spawnSync } from "node:child_process";
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { policySchema } from "../../core/policy/schema.ts";
import { compareSaas, loginOf, saasPolicy } from "../../core/policy/saas.ts";
import { checkFleetFile } from "../../core/fleet-schema.ts";
import { REGISTRY } from "../../modules/index.ts";

const REPO = path.resolve(import.meta.dirname, "../..");
const FILE = "hosts/lab/fleet.yaml";
const MAP = { loginDomain: "example.com", logins: {} };
let lab: FleetSystem;
let home: FleetSystem;

beforeAll(async () => {
  lab = (await evaluateFleet(REGISTRY, path.join(REPO, "hosts/lab"), "lab")).fleet!;
  home = (await evaluateFleet(REGISTRY, path.join(REPO, "hosts/home"), "home")).fleet!;
}, 120_000);

/** HuJSON as the console reads it: comments and trailing commas allowed (meshfleet writes neither inside the object). */
const hujson = (text: string) => JSON.parse(text.split("\n").filter((l) => !l.trimStart().startsWith("//")).join("\n"));

describe("the policy for Tailscale's service", () => {
  it("maps users to logins, keeps tags, groups and tests, and writes out the approvers the hosts imply", () => {
    const e = saasPolicy(lab, MAP, FILE);
    expect(e.diagnostics).toEqual([]);
    const p = hujson(e.text);
    expect(policySchema.safeParse(p).success).toBe(true);
    expect(p.groups).toEqual({ "group:admins": ["alice@example.com"] });
    expect(p.acls[0].src).toEqual(["alice@example.com"]);
    expect(p.tagOwners).toEqual({ "tag:server": ["group:admins"], "tag:router": ["group:admins"] });
    expect(p.tests).toEqual([{ src: "alice@example.com", accept: ["192.168.8.10:22", "tag:server:22", "tag:router:443"], deny: ["tag:router:22"] }]);
    // headscale's file gets these from meshfleet at deploy time; the service's file must carry them.
    expect(p.autoApprovers).toEqual({ routes: { "192.168.8.0/24": ["tag:router"] } });
    expect(e.text).not.toMatch(/"[a-z]+@"/); // no headscale-style user left
    expect(e.text.startsWith("// Tailscale policy file")).toBe(true);
  });

  it("maps a user in a destination, an ssh rule, an approver and a test, per-user logins first", () => {
    const f = withPolicy(lab, {
      groups: { "group:admins": ["alice@"] },
      tagOwners: { "tag:server": ["alice@"], "tag:router": ["alice@"] },
      acls: [{ action: "accept", src: ["bob@"], dst: ["alice@:22", "tag:server:*"] }],
      ssh: [{ action: "check", src: ["alice@"], dst: ["alice@"], users: ["autogroup:nonroot"] }],
      autoApprovers: { exitNode: ["bob@"] },
      tests: [{ src: "bob@", accept: ["tag:server:80"], deny: ["tag:router:22"] }],
    }, ["alice", "bob"]);
    const e = saasPolicy(f, { loginDomain: "example.com", logins: { bob: "bob@github" } }, FILE);
    expect(e.diagnostics).toEqual([]);
    expect(e.logins).toEqual({ alice: "alice@example.com", bob: "bob@github" });
    expect(e.policy.acls![0]).toEqual({ action: "accept", src: ["bob@github"], dst: ["alice@example.com:22", "tag:server:*"] });
    expect(e.policy.ssh![0]).toMatchObject({ src: ["alice@example.com"], dst: ["alice@example.com"], users: ["autogroup:nonroot"] });
    expect(e.policy.autoApprovers!.exitNode).toEqual(["bob@github"]);
    expect(e.policy.tests![0].src).toBe("bob@github");
    expect(loginOf("carol@corp.example", { loginDomain: "", logins: {} })).toBe("carol@corp.example");
  });

  it("refuses a user it cannot map, and two users on one login, each with the path and the fix", () => {
    const none = saasPolicy(lab, { loginDomain: "", logins: {} }, FILE);
    expect(none.text).toBe("");
    expect(formatDiagnostics(none.diagnostics)).toBe(
      'error: hosts/lab/fleet.yaml: policy.groups["group:admins"][0]: expected a Tailscale login (an e-mail such as alice@example.com) for the headscale user alice, found "alice@", and neither tailscaleSaas.loginDomain nor tailscaleSaas.logins.alice is set. Fix: set tailscaleSaas.loginDomain: <your domain> in fleet.yaml, or tailscaleSaas.logins: {alice: alice@<domain>}',
    );
    const two = saasPolicy(withPolicy(lab, { acls: [{ action: "accept", src: ["alice@", "bob@"], dst: ["*:*"] }] }, ["alice", "bob"]), { loginDomain: "example.com", logins: { bob: "Alice@example.com", zed: "zed@example.com" } }, FILE);
    expect(two.text).toBe("");
    expect(formatDiagnostics(two.diagnostics)).toBe(
      [
        "error: hosts/lab/fleet.yaml: tailscaleSaas.logins: expected one Tailscale login per headscale user, found alice and bob all map to alice@example.com. Fix: give each of alice, bob its own login in tailscaleSaas.logins",
        'warning: hosts/lab/fleet.yaml: tailscaleSaas.logins.zed: expected a headscale user of this fleet (fleet.yaml users) or one the policy names, found "zed", which neither names. Fix: remove it, or add zed to users',
      ].join("\n"),
    );
  });

  it("warns about what a move changes: tailnet addresses in hosts, other address ranges", () => {
    const f = withPolicy(lab, { ...(lab.policy as object), hosts: { old: "100.64.0.7/32", nas: "192.168.8.10/32" } });
    const e = saasPolicy(f, MAP, FILE, { v4: "100.100.0.0/16", v6: "fd7a:115c:a1e0::/48" });
    expect(e.text).not.toBe("");
    expect(e.diagnostics.map((d) => `${d.severity} ${d.path}`)).toEqual(["warning policy.hosts.old", "warning prefixes"]);
  });

  it("fleet.yaml's tailscaleSaas is checked: a login domain with a scheme, a login without @", () => {
    const base = { coordinator: { host: "vps", serverUrl: "https://hs.example.com" } };
    expect(checkFleetFile({ ...base, tailscaleSaas: { loginDomain: "example.com", logins: { bob: "bob@github" } } }, "fleet.yaml")).toEqual([]);
    expect(formatDiagnostics(checkFleetFile({ ...base, tailscaleSaas: { loginDomain: "https://example.com", logins: { bob: "bob" } } }, "fleet.yaml"))).toMatchSnapshot();
  });
});

describe("both policies compared on the same nodes", () => {
  it("the lab's and the home fleet's tests hold under both, and every pair has the same access", () => {
    for (const f of [lab, home]) {
      const c = compareSaas(f, saasPolicy(f, MAP, FILE));
      expect(c.differences).toEqual([]);
      expect(c.testLines).toBeGreaterThan(0);
      expect(c.testsPassingBoth).toBe(c.testLines);
      expect(c.pairs).toBeGreaterThan(0);
    }
  });

  it("names the difference: a test written with the e-mail of a user headscale knows by name", () => {
    // headscale matches `alice@example.com` against a user's name or e-mail; the CLI-made user alice has
    // neither, so the line fails there, while on the service it is alice's login.
    const policy = lab.policy as { tests: unknown[] };
    const f = withPolicy(lab, { ...policy, tests: [...policy.tests, { src: "alice@example.com", accept: ["tag:server:22"] }] });
    const c = compareSaas(f, saasPolicy(f, MAP, FILE));
    expect(c.differences).toEqual([
      { what: "test", line: "tests[1]: alice@example.com", headscale: 'failed to resolve source "alice@example.com": resolving: user not found: token "alice@example.com"', saas: "ok" },
    ]);
  });

  it("names the difference: a route the service would not approve changes who reaches the LAN", () => {
    // Take the approvers away on the service's side: the router's route is no longer approved there, and the
    // laptop's access to the LAN goes (tests look at the rules alone, as headscale's do, so they stay the same).
    const e = saasPolicy(lab, MAP, FILE);
    const c = compareSaas(lab, { ...e, policy: { ...e.policy, autoApprovers: {} } });
    expect(c.differences).toEqual([{ what: "reach", line: "laptop -> 192.168.8.0/24 via lxc-tailscale", headscale: "any:*", saas: "denied" }]);
  });
});

describe("meshfleet render --policy-for tailscale-saas", () => {
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(path.join(tmpdir(), "mf-saas-"));
    cpSync(path.join(REPO, "hosts/lab"), path.join(tmp, "lab"), { recursive: true });
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [path.join(REPO, "bin", "meshfleet.mjs"), "render", "--hosts-dir", path.join(tmp, "lab"), ...args], {
      cwd: REPO, encoding: "utf8", env: { ...process.env, MESHFLEET_TSX: "1", NO_COLOR: "1" }, timeout: 120_000,
    });

  it("writes nothing without logins, then the file and the comparison once fleet.yaml has a login domain", () => {
    const out = path.join(tmp, "policy.hujson");
    const no = cli("--policy-for", "tailscale-saas", "--out", out);
    expect(no.status).toBe(1);
    expect(no.stderr).toContain("neither tailscaleSaas.loginDomain nor tailscaleSaas.logins.alice is set");
    expect(() => statSync(out)).toThrow();
    appendFileSync(path.join(tmp, "lab", "fleet.yaml"), "tailscaleSaas:\n  loginDomain: example.com\n");
    const ok = cli("--policy-for", "tailscale-saas", "--out", out);
    expect(ok.stderr).toBe("");
    expect(ok.status).toBe(0);
    expect(ok.stdout).toBe(
      `wrote ${out} (Tailscale's policy file; users as logins: alice@ -> alice@example.com)\n` +
        "same under both: 4 of 4 test lines pass under headscale and under the service's file, and the 5 allowed (source, destination) pairs have the same access\n",
    );
    expect(hujson(readFileSync(out, "utf8")).groups).toEqual({ "group:admins": ["alice@example.com"] });
    const bad = cli("--policy-for", "tailscale", "--out", out);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--policy-for "tailscale": the targets are tailscale-saas');
  });
});

function withPolicy(f: FleetSystem, policy: object, users = f.users): FleetSystem {
  return { ...f, policy, users };
}
