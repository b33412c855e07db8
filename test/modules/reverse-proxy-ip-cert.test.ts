/**
 * Issue 13 item 8, the lab's side: Caddy with an IP address as its site gets
 * an ACME certificate only from an issuer named on the site (certmagic takes
 * its internal CA for an IP otherwise, whatever the global acme_ca says), so
 * the Caddyfile carries `tls { issuer acme { ... } }` there, with tls-alpn-01
 * off. A DNS name keeps the global options. Let's Encrypt's directory with an
 * IP stays refused. hosts/lab renders exactly that, and its probe verifies TLS.
 */
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/index.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { REGISTRY } from "../../modules/index.ts";
import { reverseProxyModule } from "../../modules/reverse-proxy.ts";
import { ACME_DIRECTORY, LISTENER_CA_ON_HOST } from "../../lab/e2e/acme.ts";
import { makeCtx } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

const PEBBLE = { acmeDirectory: "https://203.0.113.1:14000/dir", acmeCaRoot: "/etc/meshfleet/acme-ca.pem" };

function ctxFor(serverUrl: string, proxy: Record<string, unknown>): ModuleContext {
  return makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true }, "reverse-proxy": { enable: true, kind: "caddy", ...proxy } } } }, { coordinator: { host: "vps", serverUrl } });
}
function run(ctx: ModuleContext): Contribution {
  return reverseProxyModule.config(reverseProxyModule.options.parse(ctx.self.config["reverse-proxy"]), ctx);
}
const caddyfile = (c: Contribution) => c.files!.find((f) => f.path.endsWith("Caddyfile"))!.content;
const failed = (c: Contribution) => (c.assertions ?? []).filter((a) => !a.assertion).map((a) => `${a.path}: ${a.found}`);

const SITE_ISSUER = [
  "https://203.0.113.10:443 {",
  "\ttls {",
  "\t\tissuer acme {",
  "\t\t\tdir https://203.0.113.1:14000/dir",
  "\t\t\ttrusted_roots /etc/meshfleet/acme-ca.pem",
  "\t\t\tdisable_tlsalpn_challenge",
  "\t\t}",
  "\t}",
].join("\n");

describe("Caddy: a certificate for an IP address from a named ACME directory", () => {
  it.each<[string, string, Record<string, unknown>, { site: boolean; global: boolean; internal: boolean; insecureProbe: boolean; problems: string[] }]>([
    ["IP, pebble's directory", "https://203.0.113.10", { tls: "auto", ...PEBBLE }, { site: true, global: false, internal: false, insecureProbe: false, problems: [] }],
    ["DNS name, pebble's directory", "https://hs.lab.test", { tls: "auto", ...PEBBLE }, { site: false, global: true, internal: false, insecureProbe: false, problems: [] }],
    ["IP, Caddy's internal CA", "https://203.0.113.10", { tls: "internal" }, { site: false, global: false, internal: true, insecureProbe: true, problems: [] }],
    ["IP, Let's Encrypt (the default directory)", "https://203.0.113.10", { tls: "auto" }, { site: false, global: false, internal: false, insecureProbe: false, problems: ["reverse-proxy.domain: 203.0.113.10"] }],
  ])("%s", (_name, serverUrl, proxy, want) => {
    const c = run(ctxFor(serverUrl, proxy));
    const text = caddyfile(c);
    expect(failed(c)).toEqual(want.problems);
    expect(text.includes(SITE_ISSUER)).toBe(want.site);
    expect(/^\tacme_ca https:\/\/203\.0\.113\.1:14000\/dir$/m.test(text)).toBe(want.global);
    expect(/^\tacme_ca_root /m.test(text)).toBe(want.global);
    expect(text.includes("\ttls internal")).toBe(want.internal);
    const probe = c.probes!.find((p) => p.name === "reverse-proxy-health")!;
    expect(probe.kind === "http" && !!probe.insecure).toBe(want.insecureProbe);
  });

  it("the ACME account's email goes on the site issuer too", () => {
    const text = caddyfile(run(ctxFor("https://203.0.113.10", { tls: "auto", acmeEmail: "ops@example.com", ...PEBBLE })));
    expect(text).toContain("\t\t\temail ops@example.com\n");
  });

  it("hosts/lab: the VPS's Caddy asks the lab's pebble for its IP certificate, and the agent's probe verifies it", async () => {
    const r = await evaluateFleet(REGISTRY, "hosts/lab");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    const vps = r.fleet!.hosts.vps!;
    const text = vps.files.find((f) => f.path === "/etc/caddy/Caddyfile")!.content;
    expect(text).toContain(SITE_ISSUER.replace("https://203.0.113.1:14000/dir", ACME_DIRECTORY).replace("/etc/meshfleet/acme-ca.pem", LISTENER_CA_ON_HOST));
    expect(text).not.toContain("tls internal");
    const probe = vps.probes.find((p) => p.name === "reverse-proxy-health")!;
    expect(probe).toMatchObject({ kind: "http", url: "https://203.0.113.10:443/health" });
    expect(probe.kind === "http" && probe.insecure).toBeFalsy();
  });

  it.skipIf(rt.missing("caddy"))("Caddy 2.6 adapts it to an automation policy for the IP with the ACME issuer alone (no internal issuer)", () => {
    const text = caddyfile(run(ctxFor("https://203.0.113.10", { tls: "auto", ...PEBBLE })));
    const t = rt.tempDir("caddy-ip");
    let r: SpawnSyncReturns<string>;
    try {
      writeFileSync(join(t.dir, "Caddyfile"), text);
      r = spawnSync(rt.toolPath("caddy")!, ["adapt", "--adapter", "caddyfile", "--config", join(t.dir, "Caddyfile")], { encoding: "utf8" });
    } finally {
      t.cleanup();
    }
    expect(r.status, r.stderr).toBe(0);
    const policies = JSON.parse(r.stdout).apps.tls.automation.policies as { subjects?: string[]; issuers: Record<string, unknown>[] }[];
    const ip = policies.find((p) => p.subjects?.includes("203.0.113.10"))!;
    expect(ip.issuers).toEqual([
      { module: "acme", ca: PEBBLE.acmeDirectory, trusted_roots_pem_files: [PEBBLE.acmeCaRoot], challenges: { "tls-alpn": { disabled: true } } },
    ]);
  });
});
