import { describe, expect, it } from "vitest";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { renderCaddyfile, renderNginxConf, reverseProxyModule, siteOf } from "../../modules/reverse-proxy.ts";
import { makeCtx, seed004 } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

function run(ctx: ModuleContext): Contribution {
  return reverseProxyModule.config(reverseProxyModule.options.parse(ctx.self.config["reverse-proxy"]), ctx);
}
const failed = (c: Contribution) =>
  c.assertions!.filter((a) => !a.assertion).map((a) => `${a.file ?? "(host file)"}: ${a.path}: expected ${a.expected}, found ${a.found}. Fix: ${a.fix}`);

describe("reverse-proxy module", () => {
  it("contributes nothing unless enabled", () => {
    const ctx = makeCtx("vps", { vps: { address: "203.0.113.10" } });
    expect(reverseProxyModule.config(reverseProxyModule.options.parse({}), ctx)).toEqual({});
    for (const [k, v] of Object.entries(reverseProxyModule.options.shape)) expect((v as { description?: string }).description, k).toBeTruthy();
  });

  it("nginx, seed 004 (golden)", async () => {
    const c = run(seed004({ kind: "nginx" }));
    expect(c.files![0].path).toBe("/etc/nginx/conf.d/meshfleet-headscale.conf");
    await expect(c.files![0].content).toMatchFileSnapshot("__goldens__/reverse-proxy/nginx.conf");
    await expect(c.units![0].content).toMatchFileSnapshot("__goldens__/reverse-proxy/nginx.service");
    expect(c.packages).toEqual(["nginx", "certbot", "openssl"]);
    expect(c.inbound!.map((r) => `${r.proto}/${r.port}`)).toEqual(["tcp/80", "tcp/443"]);
    expect(failed(c)).toEqual([]);
  });

  it("caddy, automatic TLS and the lab's internal CA (goldens)", async () => {
    const auto = run(seed004({ kind: "caddy", acmeEmail: "ops@example.com" }));
    expect(auto.files![0].path).toBe("/etc/caddy/Caddyfile");
    await expect(auto.files![0].content).toMatchFileSnapshot("__goldens__/reverse-proxy/Caddyfile.auto");
    await expect(auto.units![0].content).toMatchFileSnapshot("__goldens__/reverse-proxy/caddy.service");
    const internal = run(seed004({ kind: "caddy", tls: "internal" }));
    await expect(internal.files![0].content).toMatchFileSnapshot("__goldens__/reverse-proxy/Caddyfile.internal");
    expect(internal.probes![0]).toMatchObject({ kind: "http", url: "https://headscale.example.com:443/health", insecure: true });
  });

  it("upstream follows headscale.listenAddr; the site follows serverUrl", () => {
    const ctx = makeCtx(
      "vps",
      { vps: { address: "203.0.113.10", options: { headscale: { enable: true, listenAddr: "0.0.0.0:8081" }, "reverse-proxy": { enable: true } } } },
      { coordinator: { host: "vps", serverUrl: "https://hs.example.org:8443" } },
    );
    const s = siteOf(reverseProxyModule.options.parse(ctx.self.config["reverse-proxy"]), ctx);
    expect(s).toMatchObject({ domain: "hs.example.org", upstream: "127.0.0.1:8081", httpsPort: 8443 });
    expect(renderCaddyfile(s)).toContain("https://hs.example.org:8443 {");
    expect(renderNginxConf(s)).toContain("return 301 https://$host:8443$request_uri;");
  });

  it("rate limits login paths only, never the control or DERP paths", () => {
    const conf = run(seed004({ kind: "nginx" })).files![0].content;
    const limited = /location ~ \^\/\(([^)]*)\)\//.exec(conf)![1].split("|");
    expect(limited).toEqual(["register", "auth", "oidc"]);
    for (const path of ["/ts2021", "/key", "/derp", "/verify", "/machine/"]) {
      expect(limited.some((p) => path.startsWith(`/${p}/`))).toBe(false);
    }
    expect(run(seed004({ kind: "nginx", rateLimit: { enable: false } })).files![0].content).not.toContain("limit_req");
  });

  it("HSTS on the HTTPS site of both proxies (max-age from hstsMaxAge; 0 sends none; never on plain HTTP)", () => {
    const hsts = 'Strict-Transport-Security "max-age=31536000"';
    const nginx = run(seed004({ kind: "nginx" })).files![0].content;
    expect(nginx).toContain(`    add_header ${hsts} always;`);
    const caddy = run(seed004({ kind: "caddy" })).files![0].content;
    expect(caddy).toContain(`\theader ${hsts}`);
    expect(caddy.indexOf(hsts)).toBeGreaterThan(caddy.indexOf("https://"));
    expect(run(seed004({ kind: "nginx", hstsMaxAge: 600 })).files![0].content).toContain('add_header Strict-Transport-Security "max-age=600" always;');
    for (const kind of ["nginx", "caddy"]) expect(run(seed004({ kind, hstsMaxAge: 0 })).files![0].content).not.toContain("Strict-Transport-Security");
  });

  it("Caddy has no rate limiter: the Caddyfile says so, and asking for one with Caddy is refused with the fix", () => {
    expect(run(seed004({ kind: "caddy" })).files![0].content).toContain("# No rate limit on /register/, /auth/, /oidc/");
    expect(failed(run(seed004({ kind: "caddy" })))).toEqual([]);
    expect(failed(run(seed004({ kind: "caddy", rateLimit: { enable: true } })))).toEqual([
      "(host file): reverse-proxy.rateLimit.enable: expected unset or false with kind caddy (Caddy as Debian and Docker ship it has no rate limiter), found true. Fix: set reverse-proxy.kind: nginx (its limit_req limits /register/, /auth/ and /oidc/), or remove reverse-proxy.rateLimit.enable",
    ]);
    expect(run(seed004({ kind: "nginx" })).files![0].content).toContain("limit_req zone=meshfleet_headscale_register");
  });

  it("docker runtime: nginx reloads every 6 hours, so a certificate certbot renewed on the host is served", () => {
    const ct = run(seed004({ kind: "nginx" }, undefined, "docker")).containers![0];
    expect(ct.command).toEqual(["/bin/sh", "-c", "while :; do sleep 6h & wait $!; nginx -s reload; done & exec nginx -g 'daemon off;'"]);
  });

  it("docker runtime: config under /opt, uploaded into a pinned image", () => {
    const c = run(seed004({ kind: "caddy" }, undefined, "docker"));
    const ct = c.containers![0];
    expect(ct.image).toMatch(/^docker\.io\/library\/caddy:\d+\.\d+\.\d+$/);
    expect(ct.uploads).toEqual([{ containerPath: "/etc/caddy/Caddyfile", source: "/opt/meshfleet/reverse-proxy/Caddyfile", secret: false }]);
    expect(c.files![0].path).toBe("/opt/meshfleet/reverse-proxy/Caddyfile");
    expect(c.files![0].content).toContain("reverse_proxy headscale:8080");
    expect(ct.restart).toBe("unless-stopped");
  });

  it("assertion messages", () => {
    const bad = makeCtx(
      "vps",
      { vps: { address: "203.0.113.10", options: { "reverse-proxy": { enable: true, kind: "nginx", tls: "internal", httpPort: 443 } } } },
    );
    expect(failed(run(bad))).toMatchSnapshot();
    const off = makeCtx("vps", { vps: { address: "203.0.113.10", options: { "reverse-proxy": { enable: true, tls: "off" } } } });
    expect(failed(run(off))).toMatchSnapshot();
    const ip = makeCtx(
      "vps",
      { vps: { address: "203.0.113.10", options: { "reverse-proxy": { enable: true } } } },
      { coordinator: { host: "vps", serverUrl: "https://203.0.113.10" } },
    );
    expect(failed(run(ip))).toMatchSnapshot();
  });
});

describe("caddy accepts the Caddyfile", () => {
  const skip = rt.missing("caddy");
  it.skipIf(skip).each<[string, Record<string, unknown>]>([
    ["auto", { kind: "caddy", acmeEmail: "ops@example.com" }],
    ["internal", { kind: "caddy", tls: "internal" }],
    ["off", { kind: "caddy", tls: "off" }],
  ])("caddy validate: tls %s", async (_n, proxy) => {
    const ctx = proxy.tls === "off"
      ? makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true }, "reverse-proxy": { enable: true, ...proxy } } } }, { coordinator: { host: "vps", serverUrl: "http://headscale.example.com" } })
      : seed004(proxy);
    const c = run(ctx);
    expect(failed(c)).toEqual([]);
    const r = await rt.caddyValidate(c.files![0].content);
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toContain("Valid configuration");
  });

  it.skipIf(skip)("the check can fail: caddy rejects a broken Caddyfile", async () => {
    const r = await rt.caddyValidate("headscale.example.com {\n\treverse_proxy {\n");
    expect(r.ok).toBe(false);
  });
});

describe("nginx accepts the conf.d file inside http {}", () => {
  const skip = rt.missing("nginx", "openssl");
  it.skipIf(skip).each([
    ["tls with rate limits", { kind: "nginx" }],
    ["tls without rate limits", { kind: "nginx", rateLimit: { enable: false } }],
  ])("nginx -t: %s", async (_n, proxy) => {
    const t = rt.tempDir("nginx");
    try {
      const { cert, key } = await rt.selfSignedCert(t.dir, "headscale.example.com");
      const c = run(seed004({ ...proxy, certificate: cert, certificateKey: key }));
      const r = await rt.nginxTest(c.files![0].content, t.dir);
      expect(r.ok, r.output).toBe(true);
      expect(r.output).toContain("test is successful");
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(skip)("nginx -t: docker runtime (upstream resolved per request, so nginx starts before headscale does)", async () => {
    const t = rt.tempDir("nginx");
    try {
      const { cert, key } = await rt.selfSignedCert(t.dir, "headscale.example.com");
      // The pinned image is nginx 1.28 (`http2 on;`); this machine's nginx -t is Debian 12's 1.22, so the test renders for it.
      expect(run(seed004({ kind: "nginx", certificate: cert, certificateKey: key }, undefined, "docker")).files![0].content).toContain("http2 on;");
      const conf = run(seed004({ kind: "nginx", certificate: cert, certificateKey: key, nginxVersion: "1.22" }, undefined, "docker")).files![0].content;
      expect(conf).toContain("proxy_pass http://$meshfleet_headscale;");
      expect(conf).not.toContain("upstream headscale_upstream");
      const r = await rt.nginxTest(conf, t.dir);
      expect(r.ok, r.output).toBe(true);
      // The same name in an upstream block is what nginx refuses without docker's DNS.
      const eager = await rt.nginxTest(conf.replace("resolver 127.0.0.11 valid=10s;", "upstream eager { server headscale:8080; }"), t.dir);
      expect(eager.ok).toBe(false);
      expect(eager.output).toContain('host not found in upstream "headscale:8080"');
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(skip)("nginx -t: tls off", async () => {
    const t = rt.tempDir("nginx");
    try {
      const ctx = makeCtx("vps", { vps: { address: "203.0.113.10", options: { "reverse-proxy": { enable: true, kind: "nginx", tls: "off" } } } }, { coordinator: { host: "vps", serverUrl: "http://headscale.example.com" } });
      const r = await rt.nginxTest(run(ctx).files![0].content, t.dir);
      expect(r.ok, r.output).toBe(true);
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(skip)("the check can fail: nginx rejects the file included twice (duplicate map, upstream and zone)", async () => {
    const t = rt.tempDir("nginx");
    try {
      const { cert, key } = await rt.selfSignedCert(t.dir, "headscale.example.com");
      const conf = run(seed004({ kind: "nginx", certificate: cert, certificateKey: key })).files![0].content;
      const r = await rt.nginxTest(conf + "\n" + conf, t.dir);
      expect(r.ok).toBe(false);
    } finally {
      t.cleanup();
    }
  });
});
