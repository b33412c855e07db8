/**
 * fleet.yaml `oidcUsers`: people who log in through OpenID Connect, named in
 * the policy by e-mail (headscale matches `carol@example.com` against each
 * user's e-mail and name). meshfleet does not create them; check accepts the
 * policy naming them, and refuses what headscale would resolve to two users
 * or what the coordinator would never let log in. The real headscale 0.29.2
 * resolves the same tokens to the same nodes: test/modules/oidc-users.real.test.ts.
 */
import { afterEach, describe, expect, it } from "vitest";
import { formatDiagnostic } from "../../core/diagnostics.ts";
import { evaluateFleet } from "../../core/eval.ts";
import { networkModel } from "../../core/netdiff/index.ts";
import { parseNodesList } from "../../core/policy/live.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "./fleet-fixture.ts";

const OIDC_VPS = BASE["vps.yaml"] + "headscale:\n  oidc:\n    enable: true\n    issuer: https://id.example.com/\n    clientId: headscale\n";
const fleetYaml = (extra: string, acl = "      src: [carol@example.com]\n      dst: [\"tag:router:22\"]\n") =>
  BASE["fleet.yaml"].replace("users: [alice]\n", `users: [alice]\n${extra}`) + `    - action: accept\n${acl}`;

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));
async function evaluate(files: Record<string, string>) {
  const f = writeFleet(files);
  cleanups.push(f.cleanup);
  const r = await evaluateFleet(REGISTRY, f.dir, "fx");
  const shown = (sev: string) => r.diagnostics.filter((d) => d.severity === sev).map((d) => formatDiagnostic(d).replace(/^\w+: .*?fx\//, ""));
  return { ...r, errors: shown("error"), warnings: shown("warning") };
}

describe("fleet.yaml oidcUsers", () => {
  it("the policy names an OIDC person by e-mail; meshfleet does not create them; headscale's policy file keeps the token", async () => {
    const r = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com]\n"), "vps.yaml": OIDC_VPS });
    expect(r.errors).toEqual([]);
    expect(r.fleet!.users).toEqual(["alice"]);
    expect(r.fleet!.oidcUsers).toEqual(["carol@example.com"]);
    expect(r.fleet!.policyHuJson).toContain('"carol@example.com"');
    // A fleet without oidcUsers has no such field (its FleetSystem, goldens and plans are as before).
    const plain = await evaluate({});
    expect(plain.errors).toEqual([]);
    expect("oidcUsers" in plain.fleet!).toBe(false);
  });

  it("without oidcUsers the same token is an unknown user, and the fix says where it goes", async () => {
    const r = await evaluate({ "fleet.yaml": fleetYaml(""), "vps.yaml": OIDC_VPS });
    expect(r.errors).toEqual([
      'fleet.yaml: policy.acls[1].src[0]: expected a user from fleet.yaml users (alice@), found unknown user "carol@example.com". Fix: add carol@example.com to oidcUsers in fleet.yaml if this person logs in through OpenID Connect, or fix the address',
    ]);
  });

  it("carol@ for an OIDC person is refused with the e-mail form (headscale matches carol@ by name, which a login only usually gives)", async () => {
    const r = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com]\n", "      src: [carol@]\n      dst: [\"tag:router:22\"]\n"), "vps.yaml": OIDC_VPS });
    expect(r.errors).toEqual([
      'fleet.yaml: policy.acls[1].src[0]: expected a user from fleet.yaml users or oidcUsers (alice@, carol@example.com), found unknown user "carol@". Fix: write the OIDC person as carol@example.com (headscale matches carol@ by name, which an OIDC login only usually gives)',
    ]);
  });

  it("meshfleet's carol and an OIDC carol@example.com: the token carol@ is warned about (headscale would find two users and refuse the policy)", async () => {
    const fleet = fleetYaml("oidcUsers: [carol@example.com]\n", "      src: [carol@]\n      dst: [\"tag:router:22\"]\n").replace("users: [alice]", "users: [alice, carol]");
    const r = await evaluate({ "fleet.yaml": fleet, "vps.yaml": OIDC_VPS });
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([
      'fleet.yaml: policy.acls[1].src[0]: expected a user token headscale finds one user for (carol@ matches every user named carol, and carol@example.com will most likely log in as carol), found "carol@". Fix: name the OIDC person carol@example.com in the policy and give meshfleet\'s user another name in fleet.yaml users, or remove carol@example.com from oidcUsers',
    ]);
  });

  it("refuses oidcUsers the coordinator cannot serve: no OIDC, a person also in users, one its allowedUsers or allowedDomains leave out", async () => {
    const noOidc = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com]\n") });
    expect(noOidc.errors).toEqual([
      "fleet.yaml: oidcUsers: expected people who log in through OpenID Connect, which the coordinator offers (headscale.oidc.enable), found 1 address with headscale.oidc.enable: false on vps. Fix: set up headscale.oidc on vps (docs/oidc.md), or remove oidcUsers",
    ]);
    const twice = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com]\n").replace("users: [alice]", "users: [alice, carol@example.com]"), "vps.yaml": OIDC_VPS });
    expect(twice.errors).toEqual([
      'fleet.yaml: oidcUsers[0]: expected a person meshfleet does not also create (not in users), found "carol@example.com", also in users: headscale would find two users for the token carol@example.com. Fix: remove carol@example.com from users (its OIDC login creates it)',
    ]);
    const allowed = await evaluate({
      "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com, dave@other.org]\n"),
      "vps.yaml": OIDC_VPS + "    allowedDomains: [example.com]\n",
    });
    expect(allowed.errors).toEqual([
      'fleet.yaml: oidcUsers[1]: expected a person headscale lets log in (headscale.oidc.allowedUsers and allowedDomains on vps), found "dave@other.org", which headscale.oidc.allowedDomains leaves out. Fix: add other.org to headscale.oidc.allowedDomains, or remove it here',
    ]);
    const bad = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol]\n"), "vps.yaml": OIDC_VPS });
    expect(bad.errors.join("\n")).toMatch(/oidcUsers\[0\]: expected an e-mail address such as carol@example\.com/);
  });

  it("the coordinator's lockout check counts OIDC people: SSH to it from carol@example.com alone is enough; an e-mail admin's fix is written as its token", async () => {
    const only = (extra: string) =>
      BASE["fleet.yaml"].replace(/policy:[\s\S]*$/, "") + extra +
      "policy:\n  tagOwners:\n    tag:router: [alice@]\n  acls:\n    - action: accept\n      src: [carol@example.com]\n      dst: [\"tag:router:443\"]\n";
    const ssh = "    - action: accept\n      src: [carol@example.com]\n      dst: [\"autogroup:member:22\"]\n";
    const ok = await evaluate({ "fleet.yaml": only("oidcUsers: [carol@example.com]\n") + ssh, "vps.yaml": OIDC_VPS });
    expect(ok.errors).toEqual([]);
    // Without that rule nobody reaches it: the lockout error, as for a fleet without OIDC people.
    const none = await evaluate({ "fleet.yaml": only("oidcUsers: [carol@example.com]\n"), "vps.yaml": OIDC_VPS });
    expect(none.errors.join("\n")).toMatch(/expected some user allowed tcp:22 to the coordinator vps, found no user device can SSH to it/);
    const admin = await evaluate({ "fleet.yaml": only("oidcUsers: [carol@example.com]\nadmins: [carol@example.com]\n"), "vps.yaml": OIDC_VPS });
    expect(admin.errors.join("\n")).toMatch(/expected admin carol@example\.com allowed tcp:22 to the coordinator vps, .*Fix: add \{action: accept, src: \[carol@example\.com\], dst: \[autogroup:member:22\]\}/);
  });

  it("a host that enforces the policy itself (trustTailnet: false) and that a rule lets an OIDC person reach is warned about: it drops their traffic", async () => {
    const router = BASE["router.yaml"] + "firewall:\n  trustTailnet: false\n";
    const r = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com]\n"), "vps.yaml": OIDC_VPS, "router.yaml": router });
    expect(r.errors).toEqual([]);
    expect(r.warnings.filter((w) => w.includes("trustTailnet"))).toEqual([
      "router.yaml: firewall.trustTailnet: expected a host the policy's OIDC people can reach, with the policy left to headscale (trustTailnet: true), found firewall.trustTailnet: false on router, and the policy lets carol@example.com reach it or what it routes (router: acls[1]: carol@example.com -> tag:router:22): router enforces the policy with the fleet's own nodes' addresses only, so it drops their traffic. Fix: set firewall.trustTailnet: true on router (headscale's policy still filters what reaches it), or leave carol@example.com out of the rules that reach it",
    ]);
    // What it routes counts too: its forward chain admits only the fleet's own nodes.
    const routed = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com]\n", "      src: [carol@example.com]\n      dst: [\"192.168.8.0/24:*\"]\n"), "vps.yaml": OIDC_VPS, "router.yaml": router });
    expect(routed.errors).toEqual([]);
    expect(routed.warnings.filter((w) => w.includes("trustTailnet"))).toEqual([expect.stringContaining("the policy lets carol@example.com reach it or what it routes (192.168.8.0/24 via router: acls[1]")]);
    // A rule that does not reach the enforcing host: nothing to say.
    const other = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com]\n", "      src: [carol@example.com]\n      dst: [\"alice@:22\"]\n"), "vps.yaml": OIDC_VPS, "router.yaml": router });
    expect(other.errors).toEqual([]);
    expect(other.warnings.filter((w) => w.includes("trustTailnet"))).toEqual([]);
  });

  it("with the coordinator's nodes (plan --nodes), an OIDC person's node is theirs by e-mail: the rule naming them reaches the router", async () => {
    const r = await evaluate({ "fleet.yaml": fleetYaml("oidcUsers: [carol@example.com]\n"), "vps.yaml": OIDC_VPS });
    const node = (id: number, name: string, user: { name: string; email?: string }, ip: string, tags: string[] = []) => ({
      id: String(id), name, given_name: name, user: { id: String(id), ...user }, ip_addresses: [ip], tags, approved_routes: [], available_routes: [], online: true,
    });
    const list = (carolEmail: string) => JSON.stringify([
      node(1, "laptop", { name: "alice" }, "100.64.0.1"),
      node(2, "router", { name: "alice" }, "100.64.0.2", ["tag:router"]),
      node(3, "carol-phone", { name: "carol", email: carolEmail }, "100.64.0.3"),
    ]);
    const access = (email: string) => {
      const live = parseNodesList(list(email), "nodes.json");
      expect(live.diagnostics).toEqual([]);
      const m = networkModel(r.fleet!, live.nodes);
      return { router: m.reach.explain("carol-phone", "router", 22, "tcp"), laptop: m.reach.explain("carol-phone", "laptop", 22, "tcp") };
    };
    const mine = access("carol@example.com");
    expect(mine.router, mine.router.why).toMatchObject({ allowed: true });
    expect(mine.laptop.allowed, mine.laptop.why).toBe(false);
    // Another person of the same name (another e-mail) is not carol@example.com.
    const other = access("carol@elsewhere.net");
    expect(other.router.allowed, other.router.why).toBe(false);
  });
});
