/**
 * The headscale version matrix (issue 18 item 3): the real headscale of each
 * supported release (the pinned 0.29.2 and the newest 0.28, both built by
 * `meshfleet tools build`) reads the config meshfleet renders for that release
 * (`configtest`) and its policy (`policy check`): hosts/home and hosts/lab with
 * coordinator.headscaleVersion set to it, the seed-004 coordinator, the embedded
 * relay on docker, and OIDC. That each binary reads the keys rendered for it is
 * shown by a value it refuses, and each case first asks the binary its version.
 * Found with these: 0.28 refuses a policy file with `tests` (so its file has
 * none), 0.29 refuses 0.28's oidc.expiry, and 0.28's `policy check` takes no
 * config (realtools' headscalePolicyCheck says which form each release takes).
 * The route-approval test on loopback runs the same matrix
 * (test/components/route-approval.real.test.ts).
 */
import { writeFileSync } from "node:fs";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { derivePrivateKey } from "../../core/keys.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { renderPolicyHuJson, type Policy } from "../../core/policy/index.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { policyForRelease } from "../../modules/headscale-versions.ts";
import { makeCtx } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

const NOISE = derivePrivateKey("matrix-test-seed-0123456789", "noise");
const DERP = derivePrivateKey("matrix-test-seed-0123456789", "derp");

/** The seed-004 coordinator (derper on another host) or the embedded relay, for a headscale release. */
function ctxFor(version: string, o: { docker?: boolean; embedded?: boolean; headscale?: Record<string, unknown> } = {}): ModuleContext {
  return makeCtx(
    "vps",
    {
      vps: {
        address: "203.0.113.10",
        runtime: o.docker ? "docker" : "systemd",
        options: {
          headscale: { enable: true, ...o.headscale },
          "reverse-proxy": { enable: true, kind: "caddy" },
          ...(o.embedded ? { derp: { enable: true, mode: "embedded" } } : {}),
        },
      },
      relay: { address: "203.0.113.20", options: { derp: { enable: !o.embedded, hostname: "derp.example.com", ipv4: "203.0.113.20", derpPort: 443 } } },
    },
    {
      coordinator: { host: "vps", serverUrl: "https://headscale.example.com", headscaleVersion: version },
      dns: { baseDomain: "tailnet.example.net", nameservers: { global: ["1.1.1.1"], split: { "home.arpa": ["192.168.8.1"] } } },
    },
  );
}

const run = (ctx: ModuleContext): Contribution => headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
const content = (c: Contribution, suffix: string) => c.files!.find((f) => f.path.endsWith(suffix))?.content;
const refused = (c: Contribution) => c.assertions!.filter((a) => !a.assertion).map((a) => `${a.path}: ${a.found}`);

/** configtest and policy check by `tool` of a coordinator's rendered files (either layout). */
async function check(tool: rt.HeadscaleTool, files: { config: string; policy: string; derpMap?: string; derpKey?: boolean; oidcSecret?: boolean }) {
  const t = rt.tempDir("hs-matrix");
  try {
    const cfg = rt.layoutHeadscale(t.dir, {
      config: files.config.replaceAll("/opt/meshfleet/headscale/", "/etc/headscale/"),
      policy: files.policy,
      derpMap: files.derpMap,
      noiseKey: NOISE,
      derpKey: files.derpKey ? DERP : undefined,
    });
    if (files.oidcSecret) writeFileSync(`${t.dir}/lib/oidc_client_secret`, "matrix-client-secret", { mode: 0o600 });
    const test = await rt.headscaleConfigtest(cfg, tool);
    const policy = await rt.headscalePolicyCheck(cfg, `${t.dir}/etc/policy.hujson`, tool);
    return { test, policy };
  } finally {
    t.cleanup();
  }
}

const filesOf = (c: Contribution) => ({
  config: content(c, "/config.yaml")!,
  policy: content(c, "/policy.hujson")!,
  derpMap: content(c, "/derp.yaml"),
  derpKey: c.files!.some((f) => f.path.endsWith("/derp_server_private.key")),
  oidcSecret: c.files!.some((f) => f.path.endsWith("/oidc_client_secret")),
});

/** The key each release reads the ephemeral timeout from, as its "too low" error names it. */
const EPHEMERAL_KEY: Record<string, string> = { "0.28": "ephemeral_node_inactivity_timeout", "0.29": "node.ephemeral.inactivity_timeout" };
const minorOf = (v: string) => v.split(".").slice(0, 2).join(".");

describe("the matrix is the pinned headscale and the newest 0.28", () => {
  it("lab/versions.json pins both; they are different minor releases", () => {
    expect(rt.HEADSCALE_MATRIX.map((m) => minorOf(m.version)).sort()).toEqual(["0.28", "0.29"]);
    expect(rt.HEADSCALE_MATRIX[0]).toEqual({ tool: "headscale", version: "0.29.2" });
  });
});

for (const hv of rt.HEADSCALE_MATRIX) {
  const minor = minorOf(hv.version);
  describe.skipIf(rt.missing(hv.tool))(`headscale ${hv.version} (tool ${hv.tool}) accepts what meshfleet renders for it`, () => {
    it(`the binary is ${hv.version} (\`headscale version\`)`, async () => {
      expect(await rt.headscaleVersionOf(hv.tool)).toBe(hv.version);
    });

    for (const stack of ["home", "lab"] as const)
      it(`hosts/${stack} with coordinator.headscaleVersion ${hv.version}: configtest and policy check`, async () => {
        const fleet = await rt.evaluateStackAt(stack, hv.version);
        const coord = fleet.hosts[fleet.coordinator.host]!;
        const config = coord.files.find((f) => f.path.endsWith("headscale/config.yaml"))!.content;
        // Rendered for this release: the ephemeral timeout under the key it reads.
        const at = EPHEMERAL_KEY[minor]!.split(".").reduce<any>((o, k) => o?.[k], parse(config));
        expect(at, `hosts/${stack}: config.yaml for ${hv.version} sets ${EPHEMERAL_KEY[minor]}`).toMatch(/^\d+[smh]$/);
        const rendered = coord.files.find((f) => f.path.endsWith("headscale/policy.hujson"))!.content;
        const { test, policy } = await check(hv.tool, {
          config,
          // 0.28: the file as rendered for it (no tests: it refuses the field). 0.29: offline headscale has no
          // nodes, so the policy's own `tests` cannot resolve (as in test/core/render-real.test.ts); left out here.
          policy: minor === "0.28" ? rendered : renderPolicyHuJson({ ...(fleet.policy as Policy), tests: undefined }, fleet.autoApprovers),
          derpMap: coord.files.find((f) => f.path.endsWith("derp.yaml"))?.content,
          derpKey: coord.files.some((f) => f.path.endsWith("derp_server_private.key")),
        });
        expect(test.ok, test.output).toBe(true);
        expect(policy.ok, policy.output).toBe(true);
        expect(policy.output).toContain("Policy is valid");
      }, 60_000);

    it("seed 004 (derper), the embedded relay on docker, and OIDC: configtest and policy check", async () => {
      const cases = {
        seed004: run(ctxFor(hv.version)),
        "embedded, docker": run(ctxFor(hv.version, { docker: true, embedded: true })),
        oidc: run(ctxFor(hv.version, { headscale: { oidc: { enable: true, issuer: "https://id.example.com", clientId: "headscale", onlyStartIfAvailable: false } } })),
      };
      for (const [name, c] of Object.entries(cases)) {
        expect(refused(c), name).toEqual([]);
        const { test, policy } = await check(hv.tool, filesOf(c));
        expect(test.ok, `${name}: ${test.output}`).toBe(true);
        expect(policy.ok, `${name}: ${policy.output}`).toBe(true);
      }
    }, 60_000);

    it(`reads the ephemeral timeout from ${EPHEMERAL_KEY[minor]}: a rendered 30s is refused naming it`, async () => {
      // check refuses 30s too (headscale.ephemeralInactivityTimeout); here headscale itself must.
      const c = run(ctxFor(hv.version, { headscale: { ephemeralInactivityTimeout: "30s" } }));
      const { test } = await check(hv.tool, filesOf(c));
      expect(test.ok, test.output).toBe(false);
      expect(test.output).toContain(`${EPHEMERAL_KEY[minor]} (30s) is set too low`);
    }, 60_000);
  });
}

/** Why the keys are rendered per release: what each binary does with the other release's config. */
const [v29, v28] = [rt.HEADSCALE_MATRIX.find((m) => minorOf(m.version) === "0.29")!, rt.HEADSCALE_MATRIX.find((m) => minorOf(m.version) === "0.28")!];
describe.skipIf(rt.missing("headscale", "headscale-0.28"))(`across the matrix: ${v28.version} and ${v29.version} with each other's config`, () => {
  it(`${v28.version} ignores the 0.29 key: a 30s timeout rendered for 0.29 passes it unseen (it would run with its default)`, async () => {
    const c = run(ctxFor(v29.version, { headscale: { ephemeralInactivityTimeout: "30s" } }));
    const { test } = await check(v28.tool, filesOf(c));
    expect(test.ok, test.output).toBe(true);
  }, 60_000);

  it(`${v28.version} refuses a policy file with tests (unknown field); the file rendered for it has none`, async () => {
    const fleet = await rt.evaluateStackAt("lab", v29.version);
    const with29 = fleet.hosts[fleet.coordinator.host]!.files.find((f) => f.path.endsWith("headscale/policy.hujson"))!.content;
    expect(with29).toContain('"tests"');
    const t = rt.tempDir("hs-matrix-policy");
    try {
      writeFileSync(`${t.dir}/p.hujson`, with29);
      const r = await rt.headscalePolicyCheck("", `${t.dir}/p.hujson`, v28.tool);
      expect(r.ok).toBe(false);
      expect(r.output).toContain('unknown field "tests"');
      writeFileSync(`${t.dir}/p.hujson`, policyForRelease(with29, v28.version));
      const ok = await rt.headscalePolicyCheck("", `${t.dir}/p.hujson`, v28.tool);
      expect(ok.ok, ok.output).toBe(true);
    } finally {
      t.cleanup();
    }
  }, 60_000);

  it(`${v29.version} refuses the OIDC config rendered for 0.28 (oidc.expiry): an upgrade must bring the 0.29 config with the binary`, async () => {
    const c = run(ctxFor(v28.version, { headscale: { oidc: { enable: true, issuer: "https://id.example.com", clientId: "headscale", onlyStartIfAvailable: false } } }));
    const { test } = await check(v29.tool, filesOf(c));
    expect(test.ok, test.output).toBe(false);
    expect(test.output).toContain("oidc.expiry");
    // Without OIDC the 0.28 config starts 0.29 (the old ephemeral key is read, with a warning).
    const plain = await check(v29.tool, filesOf(run(ctxFor(v28.version))));
    expect(plain.test.ok, plain.test.output).toBe(true);
  }, 60_000);
});
