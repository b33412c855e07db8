import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { derivePrivateKey } from "../../core/keys.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { headscaleModule, renderHeadscaleConfig, serverUrlConflict } from "../../modules/headscale.ts";
import { makeCtx, seed004 } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

const NOISE = derivePrivateKey("test-seed-0123456789", "noise");
const DERP = derivePrivateKey("test-seed-0123456789", "derp");

function run(ctx: ModuleContext): Contribution {
  return headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
}
const file = (c: Contribution, path: string) => c.files!.find((f) => f.path === path);
const failed = (c: Contribution) =>
  c.assertions!.filter((a) => !a.assertion).map((a) => `${a.file ?? "(host file)"}: ${a.path}: expected ${a.expected}, found ${a.found}. Fix: ${a.fix}`);

/** The seed-004 coordinator with the embedded relay instead of derper on another host. */
function embeddedCtx(extra: Record<string, unknown> = {}): ModuleContext {
  return makeCtx(
    "vps",
    {
      vps: {
        address: "203.0.113.10",
        options: { headscale: { enable: true }, "reverse-proxy": { enable: true }, derp: { enable: true, mode: "embedded", ...extra } },
      },
    },
    { dns: { baseDomain: "tailnet.example.net" } },
  );
}

describe("headscale module", () => {
  it("contributes nothing unless enabled", () => {
    const ctx = makeCtx("vps", { vps: { address: "203.0.113.10" } });
    expect(headscaleModule.config(headscaleModule.options.parse({}), ctx)).toEqual({});
  });

  it("every option has a default and a description", () => {
    const parsed = headscaleModule.options.parse({});
    expect(parsed.enable).toBe(false);
    for (const [k, v] of Object.entries(headscaleModule.options.shape)) {
      expect((v as { description?: string }).description, k).toBeTruthy();
    }
  });

  it("renders seed 004's coordinator (golden)", async () => {
    const c = run(seed004());
    await expect(file(c, "/etc/headscale/config.yaml")!.content).toMatchFileSnapshot("__goldens__/headscale/config.yaml");
    await expect(file(c, "/etc/headscale/derp.yaml")!.content).toMatchFileSnapshot("__goldens__/headscale/derp.yaml");
    await expect(c.units![0].content).toMatchFileSnapshot("__goldens__/headscale/headscale.service");
    expect(failed(c)).toEqual([]);
  });

  it("keys come from secrets, never from the render", () => {
    const c = run(embeddedCtx());
    const noise = file(c, "/var/lib/headscale/noise_private.key")!;
    expect(noise).toMatchObject({ secretRef: "noise-key", content: "", mode: "0600", owner: "headscale", secret: true });
    expect(file(c, "/var/lib/headscale/derp_server_private.key")).toMatchObject({ secretRef: "derp-key", mode: "0600" });
    const cfg = parse(file(c, "/etc/headscale/config.yaml")!.content);
    expect(cfg.derp.server).toMatchObject({ enabled: true, region_id: 900, stun_listen_addr: "0.0.0.0:3478" });
    expect(cfg.derp.paths).toEqual([]);
    expect(file(c, "/etc/headscale/derp.yaml")).toBeUndefined();
  });

  it("writes unix_socket_permission as a string Headscale parses", () => {
    const text = file(run(seed004()), "/etc/headscale/config.yaml")!.content;
    expect(text).toContain('unix_socket_permission: "0770"');
    expect(parse(text).unix_socket_permission).toBe("0770");
  });

  it("docker runtime: files under /opt, uploads, pinned image, bound inside the container", () => {
    const ctx = seed004({ kind: "caddy" }, undefined, "docker");
    const c = run(ctx);
    expect(c.units).toBeUndefined();
    const ct = c.containers![0];
    expect(ct.image).toBe("docker.io/headscale/headscale:0.29.2");
    expect(ct.restart).toBe("unless-stopped");
    expect(ct.volumes).toEqual([{ name: "headscale-data", containerPath: "/var/lib/headscale" }]);
    expect(ct.ports).toContainEqual({ internal: 8080, external: 8080, protocol: "tcp", ip: "127.0.0.1" });
    expect(ct.uploads).toContainEqual({ containerPath: "/var/lib/headscale/noise_private.key", source: "/opt/meshfleet/headscale/noise_private.key", secret: true });
    for (const u of ct.uploads) expect(c.files!.map((f) => f.path)).toContain(u.source);
    const cfg = parse(file(c, "/opt/meshfleet/headscale/config.yaml")!.content);
    expect(cfg.listen_addr).toBe("0.0.0.0:8080");
    expect(c.probes).toContainEqual({ name: "headscale-health", kind: "http", url: "http://127.0.0.1:8080/health", expectStatus: 200 });
  });

  it("opens no public port by default (the proxy fronts it)", () => {
    expect(run(seed004()).inbound).toEqual([]);
  });

  it("contributes the fleet's DERP regions", () => {
    const c = run(seed004());
    expect(c.fleet!.derpRegions).toEqual([
      {
        regionId: 900, regionCode: "home", regionName: "meshfleet",
        nodes: [{ name: "900-relay", hostName: "derp.example.com", ipv4: "203.0.113.20", stunPort: 3478, derpPort: 443 }],
      },
    ]);
  });
});

describe("serverUrlConflict mirrors headscale's isSafeServerURL", () => {
  it.each([
    ["https://headscale.example.com", "example.com", "suffix"],
    ["https://headscale.example.com", "headscale.example.com", "same"],
    ["https://headscale.example.com", "ts.headscale.example.com", null],
    ["https://headscale.example.com", "tailnet.internal", null],
    // Headscale splits url.Host, port included, so the last label is "com:8443".
    ["https://headscale.example.com:8443", "example.com", null],
    ["https://headscale.example.com:8443", "headscale.example.com", "same"],
    ["https://example.com", "example.com", "same"],
  ])("%s with base_domain %s → %s", (url, base, want) => {
    expect(serverUrlConflict(url, base)).toBe(want);
  });
});

describe("headscale assertions (messages are part of the contract)", () => {
  it.each([
    ["base_domain contains the server", { dns: { baseDomain: "example.com" } }],
    ["base_domain is the server host", { dns: { baseDomain: "headscale.example.com" } }],
    ["magic DNS without base_domain", { dns: { baseDomain: "" } }],
    ["override without global nameservers", { dns: { baseDomain: "tailnet.internal", nameservers: { global: [], split: {} } } }],
  ])("%s", (_name, fleet) => {
    const ctx = makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true }, derp: { enable: true, mode: "embedded" } } } }, fleet);
    expect(failed(run(ctx))).toMatchSnapshot();
  });

  it("an empty DERP map", () => {
    const ctx = makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true } } } });
    expect(failed(run(ctx))).toMatchSnapshot();
  });

  it("option-level problems", () => {
    const ctx = makeCtx("home", {
      vps: { address: "203.0.113.10" },
      home: {
        address: "192.168.8.2",
        options: {
          headscale: {
            enable: true,
            ephemeralInactivityTimeout: "60s",
            trustedProxies: ["127.0.0.1", "0.0.0.0/0"],
            extraSettings: { dns_config: {}, oidc: { expiry: "1d" } },
          },
          derp: { enable: true, mode: "embedded" },
        },
      },
    });
    expect(failed(run(ctx))).toMatchSnapshot();
  });

  it("the embedded relay and derper on the same region", async () => {
    const { derpModule } = await import("../../modules/derp.ts");
    const ctx = makeCtx(
      "vps",
      {
        vps: { address: "203.0.113.10", options: { headscale: { enable: true }, derp: { enable: true, mode: "embedded" } } },
        relay: { address: "203.0.113.20", options: { derp: { enable: true, hostname: "derp.example.com" } } },
      },
    );
    const c = derpModule.config(ctx.self.config.derp, ctx);
    expect(failed(c)).toMatchSnapshot();
  });
});

describe("headscale accepts what meshfleet renders", () => {
  const skip = rt.missing("headscale");

  async function check(c: Contribution, prefix = "/etc/headscale", lib = "/var/lib/headscale") {
    const t = rt.tempDir("hs");
    try {
      const cfg = rt.layoutHeadscale(t.dir, {
        config: file(c, `${prefix}/config.yaml`)!.content,
        policy: file(c, `${prefix}/policy.hujson`)!.content,
        derpMap: file(c, `${prefix}/derp.yaml`)?.content,
        noiseKey: NOISE,
        derpKey: file(c, `${lib}/derp_server_private.key`) ? DERP : undefined,
      });
      const test = await rt.headscaleConfigtest(cfg);
      const policy = await rt.headscalePolicyCheck(cfg, `${t.dir}/etc/policy.hujson`);
      return { test, policy };
    } finally {
      t.cleanup();
    }
  }

  it.skipIf(skip)("configtest and policy check: derper fleet (seed 004)", async () => {
    const { test, policy } = await check(run(seed004()));
    expect(test.ok, test.output).toBe(true);
    expect(policy.ok, policy.output).toBe(true);
    expect(policy.output).toContain("Policy is valid");
  });

  it.skipIf(skip)("configtest: embedded relay, docker layout", async () => {
    const { test } = await check(run(embeddedCtx()));
    expect(test.ok, test.output).toBe(true);
    const d = run(seed004({ kind: "caddy" }, undefined, "docker"));
    const r = await check(d, "/opt/meshfleet/headscale", "/opt/meshfleet/headscale");
    expect(r.test.ok, r.test.output).toBe(true);
  });

  it.skipIf(skip)("the check can fail: headscale rejects what the assertions reject", async () => {
    // Render a config the assertions flag (base_domain contains the server) and show headscale agrees.
    const ctx = makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true }, derp: { enable: true, mode: "embedded" } } } }, { dns: { baseDomain: "example.com" } });
    const { test } = await check(run(ctx));
    expect(test.ok).toBe(false);
    expect(test.output).toContain("server_url cannot be part of base_domain");
    const bad = await check({ files: [{ path: "/etc/headscale/config.yaml", content: "server_url: ftp://x\n", mode: "0640", owner: "root", group: "root" }, { path: "/etc/headscale/policy.hujson", content: "{}", mode: "0640", owner: "root", group: "root" }] });
    expect(bad.test.ok).toBe(false);
  });

  it.skipIf(skip)("headscale serve reads the DERP map file (lowercase keys) on loopback", async () => {
    const ctx = seed004();
    const c = run(ctx);
    const t = rt.tempDir("hs-serve");
    try {
      const [http, metrics, grpc] = [await rt.freePort(), await rt.freePort(), await rt.freePort()];
      const config = file(c, "/etc/headscale/config.yaml")!.content
        .replace("listen_addr: 127.0.0.1:8080", `listen_addr: 127.0.0.1:${http}`)
        .replace("metrics_listen_addr: 127.0.0.1:9090", `metrics_listen_addr: 127.0.0.1:${metrics}`)
        .replace("grpc_listen_addr: 127.0.0.1:50443", `grpc_listen_addr: 127.0.0.1:${grpc}`);
      expect(config).toContain(`127.0.0.1:${http}`);
      const cfg = rt.layoutHeadscale(t.dir, {
        config, policy: file(c, "/etc/headscale/policy.hujson")!.content,
        derpMap: file(c, "/etc/headscale/derp.yaml")!.content, noiseKey: NOISE,
      });
      const r = await rt.withHeadscaleServing(cfg, `http://127.0.0.1:${metrics}`, `http://127.0.0.1:${http}/health`, async () => {
        const res = await fetch(`http://127.0.0.1:${metrics}/debug/derp`, { headers: { Accept: "application/json" } });
        return (await res.text());
      });
      expect(r.ok, r.output).toBe(true);
      expect(r.result).toContain("derp.example.com");
      expect(r.result).toContain("900");
      // The socket permission parsed (upstream's "0o770" default would fall back to 0700).
      expect(r.output).not.toMatch(/unix_socket_permission/i);
    } finally {
      t.cleanup();
    }
  }, 60_000);

  it.skipIf(skip)("headscale serve refuses CamelCase DERP map keys (why derp.yaml is lowercase)", async () => {
    const c = run(seed004());
    const t = rt.tempDir("hs-camel");
    try {
      const [http, metrics, grpc] = [await rt.freePort(), await rt.freePort(), await rt.freePort()];
      const config = file(c, "/etc/headscale/config.yaml")!.content
        .replace("listen_addr: 127.0.0.1:8080", `listen_addr: 127.0.0.1:${http}`)
        .replace("metrics_listen_addr: 127.0.0.1:9090", `metrics_listen_addr: 127.0.0.1:${metrics}`)
        .replace("grpc_listen_addr: 127.0.0.1:50443", `grpc_listen_addr: 127.0.0.1:${grpc}`);
      const camel = "Regions:\n  900:\n    RegionID: 900\n    RegionCode: home\n    Nodes:\n      - Name: a\n        RegionID: 900\n        HostName: derp.example.com\n";
      const cfg = rt.layoutHeadscale(t.dir, { config, policy: "{}", derpMap: camel, noiseKey: NOISE });
      const r = await rt.withHeadscaleServing(cfg, "", `http://127.0.0.1:${http}/health`, async () => "served");
      expect(r.ok).toBe(false);
      expect(r.output).toContain("DERPMap is empty");
    } finally {
      t.cleanup();
    }
  }, 60_000);
});

describe("renderHeadscaleConfig", () => {
  it("is deterministic and merges extraSettings last", () => {
    const ctx = seed004();
    const opts = headscaleModule.options.parse({ enable: true, extraSettings: { log: { level: "debug" }, node: { expiry: "180d" } } });
    const input = { serverUrl: ctx.fleet.coordinator.serverUrl, opts, fleet: ctx.fleet, embedded: null, fileRegions: [], inContainer: false };
    const a = renderHeadscaleConfig(input);
    expect(renderHeadscaleConfig(input)).toBe(a);
    const cfg = parse(a);
    expect(cfg.log).toEqual({ level: "debug", format: "text" });
    expect(cfg.node).toEqual({ ephemeral: { inactivity_timeout: "30m" }, expiry: "180d" });
  });
});
