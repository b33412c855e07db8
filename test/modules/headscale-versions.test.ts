/**
 * issue 18 item 3: the headscale releases meshfleet renders a config for.
 * `check` refuses another one with the staged upgrade path, and a
 * tailscaleVersion below what that headscale accepts (its capver minimum).
 * Each supported release gets the config keys it reads (0.28 and 0.29 differ);
 * that the real binaries read them is in headscale-matrix.real.test.ts.
 */
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { evaluateFleet } from "../../core/index.ts";
import type { ModuleContext } from "../../core/module.ts";
import { REGISTRY } from "../../modules/index.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { compareReleases, headscaleRelease, policyForRelease, versionAssertions } from "../../modules/headscale-versions.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { makeCtx } from "./realtools/context.ts";

const failed = (v: string, t = "1.98.10") =>
  versionAssertions({ coordinator: { headscaleVersion: v }, tailscaleVersion: t }, "hosts/home/fleet.yaml")
    .filter((a) => !a.assertion)
    .map((a) => `${a.file}: ${a.path}: expected ${a.expected}, found ${a.found}. Fix: ${a.fix}`);

describe("headscale versions", () => {
  it("0.29.x and 0.28.x are rendered for; their minimum clients are tailscale 1.80 and 1.74 (capver 113 and 106)", () => {
    expect(headscaleRelease("0.29.2")).toMatchObject({ minTailscale: "1.80.0", keys: "0.29" });
    expect(headscaleRelease("0.29.1")).toBeDefined();
    expect(headscaleRelease("0.28.0")).toMatchObject({ minTailscale: "1.74.0", keys: "0.28" });
    expect(headscaleRelease("0.27.1")).toBeUndefined();
    expect(failed("0.29.2")).toEqual([]);
    expect(failed("0.28.0")).toEqual([]);
    expect(failed("0.28.0", "1.74.0")).toEqual([]);
    expect(failed("0.28.0", "1.72.0")[0]).toContain("tailscaleVersion: expected 1.74.0 or newer (headscale 0.28.0 refuses older clients)");
    expect(compareReleases("0.9.0", "0.29.2")).toBe(-1);
  });

  it("an older release is refused with the staged path from it; a newer one with the release meshfleet knows", () => {
    expect(failed("0.27.1")).toEqual([
      'hosts/home/fleet.yaml: coordinator.headscaleVersion: expected a headscale release meshfleet renders the config of (0.28.x, 0.29.x), found "0.27.1". Fix: upgrade in stages, 0.27.1 -> 0.28.0 -> 0.29.2, each with a backup and a health check: set coordinator.headscaleVersion to each in turn',
    ]);
    expect(failed("0.26.0")[0]).toContain("0.26.0 -> 0.27.1 -> 0.28.0 -> 0.29.2");
    expect(failed("0.30.0")[0]).toContain("Fix: set coordinator.headscaleVersion: 0.29.2 (newer releases are not known to meshfleet yet)");
  });

  it("a tailscaleVersion below what headscale accepts is refused", () => {
    expect(failed("0.29.2", "1.78.0")).toEqual([
      'hosts/home/fleet.yaml: tailscaleVersion: expected 1.80.0 or newer (headscale 0.29.2 refuses older clients), found "1.78.0". Fix: set tailscaleVersion to 1.80.0 or newer, and upgrade the nodes below it',
    ]);
    expect(failed("0.29.2", "1.80.0")).toEqual([]);
  });

  it("check reports it on fleet.yaml, once", async () => {
    const f = writeFleet({ "fleet.yaml": BASE["fleet.yaml"].replace(/coordinator:\n/, "coordinator:\n  headscaleVersion: 0.27.1\n") });
    try {
      const r = await evaluateFleet(REGISTRY, f.dir);
      const d = r.diagnostics.filter((x) => x.path === "coordinator.headscaleVersion");
      expect(d).toHaveLength(1);
      expect(d[0]).toMatchObject({ severity: "error", file: expect.stringMatching(/fleet\.yaml$/), found: '"0.27.1"' });
    } finally {
      f.cleanup();
    }
  });

  it("check refuses a nodeExpiry on 0.28 (no node.expiry there: a pre-auth-key node would never expire)", () => {
    const ne = (v: string, after: string) =>
      versionAssertions({ coordinator: { headscaleVersion: v }, tailscaleVersion: "1.98.10", nodeExpiry: { after } }, "hosts/home/fleet.yaml").filter((a) => !a.assertion);
    expect(ne("0.28.0", "180d")).toEqual([
      expect.objectContaining({ path: "nodeExpiry.after", found: '"180d"', fix: "upgrade headscale to 0.29.2 (coordinator.headscaleVersion) first, or remove nodeExpiry.after" }),
    ]);
    expect(ne("0.28.0", "0")).toEqual([]);
    expect(ne("0.29.2", "180d")).toEqual([]);
  });
});

describe("the config keys each release reads", () => {
  const ctxFor = (headscaleVersion: string, vps: Record<string, unknown> = {}, fleet: Record<string, unknown> = {}): ModuleContext =>
    makeCtx(
      "vps",
      { vps: { address: "203.0.113.10", options: { headscale: { enable: true, ...vps }, derp: { enable: true, mode: "embedded" } } } },
      { coordinator: { host: "vps", serverUrl: "https://headscale.example.com", headscaleVersion }, dns: { baseDomain: "tailnet.example.net" }, ...fleet },
    );
  const rendered = (ctx: ModuleContext) => {
    const c = headscaleModule.config(ctx.self.config.headscale, ctx);
    const cfg = c.files!.find((f) => f.path === "/etc/headscale/config.yaml")!.content;
    return { cfg: parse(cfg) as Record<string, any>, errors: (c.assertions ?? []).filter((a) => !a.assertion).map((a) => `${a.path}: ${a.found}`) };
  };

  it("a 0.29 fleet: node.ephemeral.inactivity_timeout, node.expiry and trusted_proxies; no 0.28 key", () => {
    const { cfg, errors } = rendered(ctxFor("0.29.2", { ephemeralInactivityTimeout: "45m" }, { nodeExpiry: { after: "90d", exemptTags: [] } }));
    expect(errors).toEqual([]);
    expect(cfg.node).toEqual({ expiry: "90d", ephemeral: { inactivity_timeout: "45m" } });
    expect(cfg.trusted_proxies).toEqual(["127.0.0.1/32", "::1/128"]);
    expect(cfg).not.toHaveProperty("ephemeral_node_inactivity_timeout");
  });

  it("a 0.28 fleet: ephemeral_node_inactivity_timeout; no node section, no trusted_proxies; the rest as for 0.29", () => {
    const { cfg, errors } = rendered(ctxFor("0.28.0", { ephemeralInactivityTimeout: "45m" }));
    expect(errors).toEqual([]);
    expect(cfg.ephemeral_node_inactivity_timeout).toBe("45m");
    expect(cfg).not.toHaveProperty("node");
    expect(cfg).not.toHaveProperty("trusted_proxies");
    const same = rendered(ctxFor("0.29.2", { ephemeralInactivityTimeout: "45m" })).cfg;
    const { node: _n, trusted_proxies: _t, ...rest29 } = same;
    const { ephemeral_node_inactivity_timeout: _e, ...rest28 } = cfg;
    expect(rest28).toEqual(rest29);
  });

  it("OIDC: 0.28 gets oidc.expiry (its default is 180d; meshfleet's is never), 0.29 must not (it refuses it)", () => {
    const oidc = { oidc: { enable: true, issuer: "https://id.example.com", clientId: "headscale" } };
    expect(rendered(ctxFor("0.28.0", oidc)).cfg.oidc.expiry).toBe("0");
    expect(rendered(ctxFor("0.29.2", oidc)).cfg.oidc).not.toHaveProperty("expiry");
  });

  it("legacy keys in extraSettings are refused per release: randomize_client_port only on 0.29", () => {
    const extra = { extraSettings: { randomize_client_port: true, dns_config: { magic_dns: true } } };
    expect(rendered(ctxFor("0.29.2", extra)).errors).toEqual(["headscale.extraSettings.dns_config: dns_config", "headscale.extraSettings.randomize_client_port: randomize_client_port"]);
    expect(rendered(ctxFor("0.28.0", extra)).errors).toEqual(["headscale.extraSettings.dns_config: dns_config"]);
  });

  it("an unsupported release is rendered with the newest keys and refused by check", () => {
    const { cfg, errors } = rendered(ctxFor("0.27.1"));
    expect(cfg).toHaveProperty("node");
    expect(errors).toEqual(['coordinator.headscaleVersion: "0.27.1"']);
  });
});

describe("the policy each release reads", () => {
  const v = (headscaleVersion: string, policy: unknown) =>
    versionAssertions({ coordinator: { headscaleVersion }, tailscaleVersion: "1.98.10", policy }, "hosts/home/fleet.yaml")
      .filter((a) => !a.assertion)
      .map((a) => `${a.path}: ${a.fix}`);
  const policy = {
    acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }],
    grants: [{ src: ["*"], dst: ["*"], ip: ["*"] }],
    nodeAttrs: [{ target: ["*"], attr: ["funnel"] }],
    randomizeClientPort: true,
    ssh: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self"], users: ["root"] }, { action: "accept", src: ["*"], dst: ["*"], users: ["root"], acceptEnv: ["LANG"] }],
    tests: [{ src: "alice@", accept: ["tag:router:22"] }],
  };

  it("check refuses what 0.28's policy has no field for (it refuses the whole file), naming each; 0.29 takes it all", () => {
    expect(v("0.28.0", policy)).toEqual([
      "policy.grants: write the grants as acls, or upgrade headscale to 0.29.2 (coordinator.headscaleVersion) first",
      "policy.nodeAttrs: remove policy.nodeAttrs, or upgrade headscale to 0.29.2 (coordinator.headscaleVersion) first",
      "policy.randomizeClientPort: remove policy.randomizeClientPort, or upgrade headscale to 0.29.2 (coordinator.headscaleVersion) first",
      "policy.ssh[1].acceptEnv: remove policy.ssh[1].acceptEnv, or upgrade headscale to 0.29.2 (coordinator.headscaleVersion) first",
    ]);
    expect(v("0.29.2", policy)).toEqual([]);
    expect(v("0.28.0", { acls: policy.acls, tests: policy.tests })).toEqual([]);
  });

  it("0.28's file leaves out tests and sshTests (meshfleet check runs them); 0.29's is the rendered one", () => {
    const text = '// Generated by meshfleet\n// Do not edit\n{\n  "acls": [],\n  "tests": [\n    {\n      "src": "alice@"\n    }\n  ],\n  "sshTests": []\n}\n';
    expect(policyForRelease(text, "0.29.2")).toBe(text);
    expect(policyForRelease(text, "0.28.0")).toBe('// Generated by meshfleet\n// Do not edit\n{\n  "acls": []\n}\n');
    const none = '// x\n{\n  "acls": []\n}\n';
    expect(policyForRelease(none, "0.28.0")).toBe(none);
  });
});
