/**
 * The rendered home and lab fleets, checked by the real programs that will
 * read them: `nft -c` (in a throwaway network namespace), `caddy validate`,
 * `nginx -t`, `headscale configtest` and `headscale policy check`.
 */
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";
import { hostArtifacts } from "../../core/artifacts.ts";
import { renderPolicyHuJson, type Policy } from "../../core/policy/index.ts";
import { derivePrivateKey, evaluateFleet, formatDiagnostics, type FleetSystem } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import {
  caddyValidate, forLocalNginx, headscaleConfigtest, headscalePolicyCheck, layoutHeadscale, missing, nginxTest, tempDir,
} from "../modules/realtools/index.ts";

const NS = `mf-nftcheck-${process.pid}`;
const isRoot = process.getuid?.() === 0;

beforeAll(async () => {
  if (isRoot) await execa("ip", ["netns", "add", NS]);
});
afterAll(async () => {
  if (isRoot) await execa("ip", ["netns", "del", NS], { reject: false });
});

for (const stack of ["home", "lab"]) {
  describe(`hosts/${stack}: rendered files accepted by the real programs`, async () => {
    const r = await evaluateFleet(REGISTRY, `hosts/${stack}`, stack);
    const fleet = r.fleet as FleetSystem;

    it("evaluates with no diagnostics", () => {
      expect(formatDiagnostics(r.diagnostics)).toBe("");
    });

    for (const host of Object.values(fleet.hosts)) {
      const arts = hostArtifacts(host);
      const nft = arts.find((a) => a.path === "meshfleet/nftables.nft"); // the script the agent loads
      if (nft)
        it.skipIf(skipUnlessCi(!isRoot && NEEDS_ROOT))(`${host.name}: nft -c accepts the inet meshfleet table`, async () => {
          const res = await execa("ip", ["netns", "exec", NS, "nft", "-c", "-f", "-"], { input: nft.content, reject: false, all: true });
          expect(res.exitCode, res.all).toBe(0);
        });
      const caddy = host.files.find((f) => f.path.endsWith("Caddyfile"));
      if (caddy)
        it.skipIf(missing("caddy"))(`${host.name}: caddy validate accepts the Caddyfile`, async () => {
          // A site issuer's trusted_roots file is on the host (hosts/lab: put there by lab up): give caddy a real one.
          const t = tempDir("caddy-roots");
          try {
            const { selfSignedCert } = await import("../modules/realtools/index.ts");
            const { cert } = await selfSignedCert(t.dir, "test");
            const res = await caddyValidate(caddy.content.replace(/trusted_roots (\S+)/g, `trusted_roots ${cert}`));
            expect(res.ok, res.output).toBe(true);
          } finally {
            t.cleanup();
          }
        });
      const nginx = host.files.find((f) => f.path.includes("nginx") || (f.path.endsWith(".conf") && f.content.includes("proxy_pass")));
      if (nginx)
        it.skipIf(missing("nginx"))(`${host.name}: nginx -t accepts ${nginx.path}`, async () => {
          const t = tempDir("nginx");
          try {
            // TLS paths point at certificates the host gets later; give nginx real ones.
            const { selfSignedCert } = await import("../modules/realtools/index.ts");
            let conf = nginx.content;
            const certs = await selfSignedCert(t.dir, "headscale.example.com");
            conf = conf.replace(/ssl_certificate\s+\S+;/, `ssl_certificate ${certs.cert};`).replace(/ssl_certificate_key\s+\S+;/, `ssl_certificate_key ${certs.key};`);
            // nginx -t resolves upstream names; the docker runtime's upstream is a
            // container name only the docker network resolves, so point it at loopback.
            conf = conf.replace(/\bheadscale:(\d+)/g, "127.0.0.1:$1");
            conf = await forLocalNginx(conf); // `http2 on;` for the 1.28 image; see forLocalNginx
            const res = await nginxTest(conf, t.dir);
            expect(res.ok, res.output).toBe(true);
          } finally {
            t.cleanup();
          }
        });
      const hsConfig = host.files.find((f) => f.path.endsWith("headscale/config.yaml"));
      if (hsConfig)
        it.skipIf(missing("headscale"))(`${host.name}: headscale configtest and policy check accept config.yaml and the policy`, async () => {
          const t = tempDir("hs");
          try {
            const derpMap = host.files.find((f) => f.path.endsWith("derp.yaml"))?.content;
            const cfg = layoutHeadscale(t.dir, {
              config: hsConfig.content.replaceAll("/opt/meshfleet/headscale/", "/etc/headscale/"),
              // Offline, headscale has no nodes, so the policy's own `tests` cannot
              // resolve (a test whose src has no IPs fails); they run on meshfleet's
              // evaluator in `meshfleet check`, cross-checked in test/policy.
              policy: renderPolicyHuJson({ ...(fleet.policy as Policy), tests: undefined }, fleet.autoApprovers),
              derpMap,
              noiseKey: derivePrivateKey("render-test-seed-0123456789", "noise"),
              derpKey: derivePrivateKey("render-test-seed-0123456789", "derp"),
            });
            const ct = await headscaleConfigtest(cfg);
            expect(ct.ok, ct.output).toBe(true);
            const pc = await headscalePolicyCheck(cfg, `${t.dir}/etc/policy.hujson`);
            expect(pc.ok, pc.output).toBe(true);
          } finally {
            t.cleanup();
          }
        });
    }
  });
}
