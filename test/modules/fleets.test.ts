/**
 * Through the evaluator: the repo's own fleets (hosts/lab, hosts/home) render
 * coordinator files that the real headscale, caddy and nginx accept.
 */
import { describe, expect, it } from "vitest";
import { derivePrivateKey } from "../../core/keys.ts";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import type { HostSystem } from "../../core/types.ts";
import * as rt from "./realtools/index.ts";

const NOISE = derivePrivateKey("test-seed-0123456789", "noise");
const DERP = derivePrivateKey("test-seed-0123456789", "derp");

async function coordinator(dir: string): Promise<HostSystem> {
  const r = await evaluateFleet(REGISTRY, dir);
  // Only this suite's modules are judged here; other modules' findings belong to their tests.
  const ours = r.diagnostics.filter((d) => d.severity === "error" && /^(headscale|derp|reverse-proxy|dns|coordinator)/.test(d.path));
  expect(ours).toEqual([]);
  expect(r.fleet, JSON.stringify(r.diagnostics, null, 1)).toBeDefined();
  const host = r.fleet!.coordinator.host;
  return r.fleet!.hosts[host];
}

describe.each([["hosts/lab"], ["hosts/home"]])("%s coordinator", (dir) => {
  const skipHs = rt.missing("headscale");
  it.skipIf(skipHs)("headscale configtest accepts the rendered config, DERP map and policy", async () => {
    const h = await coordinator(dir);
    const base = h.runtime === "docker" ? "/opt/meshfleet/headscale" : "/etc/headscale";
    const lib = h.runtime === "docker" ? "/opt/meshfleet/headscale" : "/var/lib/headscale";
    const get = (p: string) => h.files.find((f) => f.path === p)?.content;
    const t = rt.tempDir("fleet-hs");
    try {
      const cfg = rt.layoutHeadscale(t.dir, {
        config: get(`${base}/config.yaml`)!,
        policy: get(`${base}/policy.hujson`)!,
        derpMap: get(`${base}/derp.yaml`),
        noiseKey: NOISE,
        derpKey: h.files.some((f) => f.path === `${lib}/derp_server_private.key`) ? DERP : undefined,
      });
      // configtest loads the policy too; `policy check` would also run the policy's tests, which
      // cannot pass on an empty database (no users, no nodes), so it is the policy suite's job.
      const test = await rt.headscaleConfigtest(cfg);
      expect(test.ok, test.output).toBe(true);
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(rt.missing("caddy", "nginx", "openssl"))("the proxy accepts its config", async () => {
    const h = await coordinator(dir);
    const caddy = h.files.find((f) => f.path.endsWith("/Caddyfile"));
    const nginx = h.files.find((f) => f.path.endsWith("/meshfleet-headscale.conf"));
    expect(caddy ?? nginx).toBeDefined();
    if (caddy) {
      const t = rt.tempDir("fleet-caddy");
      try {
        // caddy validate loads a site issuer's trusted_roots; the file is on the host (hosts/lab: put there by lab up), so point it at a test one.
        const { cert } = await rt.selfSignedCert(t.dir, "test");
        const r = await rt.caddyValidate(caddy.content.replace(/trusted_roots (\S+)/g, `trusted_roots ${cert}`));
        expect(r.ok, r.output).toBe(true);
      } finally {
        t.cleanup();
      }
    }
    if (nginx) {
      const t = rt.tempDir("fleet-nginx");
      try {
        const { cert, key } = await rt.selfSignedCert(t.dir, "test");
        // certbot's files do not exist here: point the (unchanged) config at a test pair.
        const conf = nginx.content.replace(/ssl_certificate (\S+);/, `ssl_certificate ${cert};`).replace(/ssl_certificate_key (\S+);/, `ssl_certificate_key ${key};`);
        const r = await rt.nginxTest(await rt.forLocalNginx(conf), t.dir);
        expect(r.ok, r.output).toBe(true);
      } finally {
        t.cleanup();
      }
    }
  });
});
