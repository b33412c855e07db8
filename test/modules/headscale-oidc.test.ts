/**
 * headscale.oidc (issue 15 item 4): typed options render headscale 0.29's
 * oidc section with only a client_secret_path, the secret file is a 0600
 * secret filled from the stack (never in git), bad values are refused with
 * the fix, and the real headscale 0.29.2 accepts the rendered config
 * (`headscale configtest`) — and refuses it when the secret file is missing.
 */
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { derivePrivateKey } from "../../core/keys.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { HS, OIDC_SECRET_REF, headscaleModule } from "../../modules/headscale.ts";
import { providedSecrets, validateOidcClientSecret } from "../../components/mesh.ts";
import { makeCtx } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

const NOISE = derivePrivateKey("test-seed-0123456789", "noise");
const OIDC = { enable: true, issuer: "https://sso.example.com/realms/home", clientId: "headscale", allowedDomains: ["example.com"], allowedGroups: ["vpn"], extraParams: { domain_hint: "example.com" } };

function ctxWith(headscale: Record<string, unknown>, runtime: "systemd" | "docker" = "systemd"): ModuleContext {
  return makeCtx("vps", { vps: { address: "203.0.113.10", runtime, options: { headscale: { enable: true, ...headscale } } } });
}
function run(ctx: ModuleContext): Contribution {
  return headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
}
// The bare coordinator has no DERP region; only headscale's own options are under test.
const failed = (c: Contribution) =>
  c.assertions!.filter((a) => !a.assertion && a.path.startsWith("headscale.")).map((a) => `${a.path}: expected ${a.expected}, found ${a.found}. Fix: ${a.fix}`);
const config = (c: Contribution) => c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content;

describe("headscale.oidc", () => {
  it("renders the oidc section with a secret path only, and a 0600 secret file filled from the stack", () => {
    const c = run(ctxWith({ oidc: OIDC }));
    expect(failed(c)).toEqual([]);
    const oidc = parse(config(c)).oidc;
    expect(oidc).toEqual({
      only_start_if_oidc_is_available: true,
      issuer: "https://sso.example.com/realms/home",
      client_id: "headscale",
      client_secret_path: HS.oidcSecret,
      scope: ["openid", "profile", "email"],
      email_verified_required: true,
      extra_params: { domain_hint: "example.com" },
      allowed_domains: ["example.com"],
      allowed_users: [],
      allowed_groups: ["vpn"],
      use_expiry_from_token: false,
      pkce: { enabled: true, method: "S256" },
    });
    expect(config(c)).not.toMatch(/client_secret:/);
    const secret = c.files!.find((f) => f.path === HS.oidcSecret)!;
    expect(secret).toMatchObject({ mode: "0600", owner: "headscale", secret: true, secretRef: OIDC_SECRET_REF, content: "" });
    // Off by default: no section, no secret file.
    const off = run(ctxWith({}));
    expect(parse(config(off)).oidc).toBeUndefined();
    expect(off.files!.some((f) => f.secretRef === OIDC_SECRET_REF)).toBe(false);
  });

  it("docker runtime: the secret file is uploaded into the container as a secret", () => {
    const c = run(ctxWith({ oidc: OIDC }, "docker"));
    const up = c.containers![0].uploads.find((u) => u.containerPath === HS.oidcSecret)!;
    expect(up).toMatchObject({ secret: true });
    expect(c.files!.find((f) => f.path === up.source)).toMatchObject({ mode: "0600", secretRef: OIDC_SECRET_REF });
  });

  it("refuses what headscale would refuse or mishandle, and a secret in git, each with its fix", () => {
    expect(failed(run(ctxWith({ oidc: { ...OIDC, issuer: "http://sso.example.com", clientId: "", scope: ["profile"], allowedDomains: ["@example.com"], allowedUsers: ["alice"] } })))).toEqual([
      'headscale.oidc.issuer: expected the provider\'s https:// issuer URL (no query or fragment), found "http://sso.example.com". Fix: set headscale.oidc.issuer to the issuer your provider\'s /.well-known/openid-configuration names',
      "headscale.oidc.clientId: expected the client id the provider gave headscale, found \"\". Fix: register headscale as a client at the provider (redirect URL: <serverUrl>/oidc/callback) and set headscale.oidc.clientId",
      'headscale.oidc.scope: expected a list that includes "openid" (without it there is no ID token), found ["profile"]. Fix: set headscale.oidc.scope: [openid, profile]',
      'headscale.oidc.allowedDomains[0]: expected an e-mail domain such as example.com (no @, no scheme), found "@example.com". Fix: set it to "example.com"',
      'headscale.oidc.allowedUsers[0]: expected an e-mail address (headscale matches users by e-mail), found "alice". Fix: write the user\'s e-mail address, e.g. alice@example.com',
    ]);
    const inGit = failed(run(ctxWith({ extraSettings: { oidc: { issuer: "https://sso.example.com", client_id: "x", client_secret: "hunter2" } } })));
    expect(inGit).toHaveLength(1);
    expect(inGit[0]).toMatch(/^headscale\.extraSettings\.oidc: .*meshfleet:headscaleOidcClientSecret/);
    expect(inGit[0]).not.toContain("hunter2");
  });

  it("the deploy provides the secret only from the stack, and checks it without showing it", () => {
    const fleet = { preAuthKeys: [] } as never;
    expect(providedSecrets(fleet)).not.toContain(OIDC_SECRET_REF);
    expect(providedSecrets(fleet, { oidcClientSecret: true })).toContain(OIDC_SECRET_REF);
    expect(validateOidcClientSecret("s3cr3t")).toEqual([]);
    expect(validateOidcClientSecret("")).toHaveLength(1);
    const bad = validateOidcClientSecret("s3cr3t\n");
    expect(bad).toHaveLength(1);
    expect(bad[0]).not.toContain("s3cr3t");
  });

  describe("headscale 0.29.2 accepts the rendered config", () => {
    const skip = rt.missing("headscale");
    async function configtest(c: Contribution, secret: string | null) {
      const t = rt.tempDir("hs-oidc");
      try {
        const cfg = rt.layoutHeadscale(t.dir, { config: config(c), policy: c.files!.find((f) => f.path.endsWith("/policy.hujson"))!.content, noiseKey: NOISE });
        if (secret !== null) writeFileSync(`${t.dir}/lib/oidc_client_secret`, secret, { mode: 0o600 });
        return await rt.headscaleConfigtest(cfg);
      } finally {
        t.cleanup();
      }
    }
    it.skipIf(skip)("configtest passes with the secret file, and fails naming it without", async () => {
      // The provider is not reachable from a test: configtest must not need it.
      const c = run(ctxWith({ oidc: { ...OIDC, onlyStartIfAvailable: false } }));
      const ok = await configtest(c, "s3cr3t-value");
      expect(ok.ok, ok.output).toBe(true);
      expect(ok.output).not.toContain("s3cr3t-value");
      const missing = await configtest(c, null);
      expect(missing.ok).toBe(false);
      expect(missing.output).toMatch(/oidc_client_secret/);
    });
  });
});
