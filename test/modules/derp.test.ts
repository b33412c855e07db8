import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { derpMapFile, derpModule, derpRegionsOf, derperArgs } from "../../modules/derp.ts";
import { renderDerpMap } from "../../modules/headscale.ts";
import { makeCtx, seed004 } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

function on(ctx: ModuleContext, host: string): ModuleContext {
  return { ...ctx, host, file: ctx.hosts[host].file, self: ctx.hosts[host] };
}
function run(ctx: ModuleContext): Contribution {
  return derpModule.config(derpModule.options.parse(ctx.self.config.derp), ctx);
}
const failed = (c: Contribution) =>
  c.assertions!.filter((a) => !a.assertion).map((a) => `${a.file ?? "(host file)"}: ${a.path}: expected ${a.expected}, found ${a.found}. Fix: ${a.fix}`);

describe("derp module", () => {
  it("contributes nothing unless enabled; options documented", () => {
    expect(run(seed004())).toEqual({});
    for (const [k, v] of Object.entries(derpModule.options.shape)) expect((v as { description?: string }).description, k).toBeTruthy();
  });

  it("derper unit for seed 004's relay (golden)", async () => {
    const c = run(on(seed004(), "relay"));
    await expect(c.units![0].content).toMatchFileSnapshot("__goldens__/derp/derper.service");
    expect(c.inbound!.map((r) => `${r.proto}/${r.port}`)).toEqual(["udp/3478", "tcp/443"]);
    expect(failed(c)).toEqual([]);
  });

  it("verifies clients against headscale, failing closed", () => {
    const ctx = on(seed004(), "relay");
    const args = derperArgs(derpModule.options.parse(ctx.self.config.derp), ctx, "derper");
    expect(args).toContain("-verify-client-url=https://headscale.example.com/verify");
    expect(args).toContain("-verify-client-url-fail-open=false");
    // On the coordinator itself it asks headscale over loopback.
    const local = makeCtx("vps", {
      vps: { address: "203.0.113.10", options: { headscale: { enable: true }, derp: { enable: true, derpPort: 8443, certMode: "manual", hostname: "203.0.113.10" } } },
    });
    expect(derperArgs(derpModule.options.parse(local.self.config.derp), local, "derper")).toContain("-verify-client-url=http://127.0.0.1:8080/verify");
  });

  it("the DERP map uses yaml.v3's lowercase keys and integer region ids (golden)", async () => {
    const ctx = makeCtx("a", {
      a: { address: "203.0.113.20", options: { derp: { enable: true, hostname: "derp-a.example.com" } } },
      b: { address: "198.51.100.7", options: { derp: { enable: true, hostname: "198.51.100.7", certMode: "manual", derpPort: 8443, insecureForTests: true, canPort80: true } } },
      c: { address: "203.0.113.30", options: { derp: { enable: true, regionId: 901, hostname: "derp-c.example.com" } } },
    });
    const regions = derpRegionsOf(ctx);
    expect(regions.map((r) => [r.regionId, r.nodes.map((n) => n.name)])).toEqual([[900, ["900-a", "900-b"]], [901, ["901-c"]]]);
    const text = renderDerpMap(regions);
    await expect(text).toMatchFileSnapshot("__goldens__/derp/derp.yaml");
    expect(text).toMatch(/^  900:$/m);
    expect(text).not.toMatch(/[A-Z][a-z]+ID|HostName|Regions/);
    expect(parse(text).regions[900].nodes[1]).toMatchObject({ hostname: "198.51.100.7", derpport: 8443, insecurefortests: true, canport80: true });
    expect([...derpMapFile([]).regions.keys()]).toEqual([]);
  });

  it("embedded mode: only STUN opens, no unit, region on the server URL", async () => {
    const ctx = makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true }, derp: { enable: true, mode: "embedded" } } } });
    const c = run(ctx);
    expect(c.units).toBeUndefined();
    // Headscale runs the embedded relay, so its module opens STUN (once, not twice).
    expect(c.inbound).toBeUndefined();
    const { headscaleModule } = await import("../../modules/headscale.ts");
    const hs = headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
    expect(hs.inbound!.map((r) => `${r.proto}/${r.port}`)).toEqual(["udp/3478"]);
    expect(derpRegionsOf(ctx)).toEqual([
      { regionId: 900, regionCode: "home", regionName: "meshfleet", nodes: [{ name: "900", hostName: "headscale.example.com", stunPort: 3478, derpPort: 443 }] },
    ]);
  });

  it("docker runtime: a pinned image is required", () => {
    const ctx = makeCtx("relay", { vps: { address: "203.0.113.10" }, relay: { address: "203.0.113.20", runtime: "docker", options: { derp: { enable: true, hostname: "derp.example.com" } } } });
    expect(failed(run(ctx))).toMatchSnapshot();
    const ok = makeCtx("relay", { vps: { address: "203.0.113.10" }, relay: { address: "203.0.113.20", runtime: "docker", options: { derp: { enable: true, hostname: "derp.example.com", image: "registry.example/derper:1.98.10" } } } });
    const c = run(ok);
    expect(c.containers![0]).toMatchObject({ image: "registry.example/derper:1.98.10", restart: "unless-stopped", volumes: [{ name: "derper-data", containerPath: "/var/lib/derper" }] });
  });

  it("insecureForTests only for a lab relay: documentation addresses and reserved names pass, a real name is refused", () => {
    const relay = (hostname: string, mode = "derper") =>
      makeCtx("relay", {
        vps: { address: "203.0.113.10" },
        relay: { address: "198.51.100.20", options: { derp: { enable: true, mode, hostname, certMode: "manual", derpPort: 8443, insecureForTests: true } } },
      });
    const insecure = (c: Contribution) => failed(c).filter((l) => l.includes("derp.insecureForTests"));
    for (const lab of ["203.0.113.10", "198.51.100.20", "192.0.2.1", "derp.lab.test", "relay.example", "Relay.Example."]) expect(insecure(run(relay(lab))), lab).toEqual([]);
    expect(insecure(run(relay("derp.example.com")))).toEqual([
      '(host file): derp.insecureForTests: expected false outside a lab (the lab\'s relay names are documentation addresses or .test/.example names), found true for the relay "derp.example.com", so every client would skip its certificate check. Fix: remove derp.insecureForTests and give the relay a certificate clients trust (derp.certMode: letsencrypt with a DNS name, or manual with a CA-signed certificate)',
    ]);
    for (const real of ["8.8.8.8", "192.168.8.2", "derp.home.arpa"]) expect(insecure(run(relay(real))), real).toHaveLength(1);
    // The embedded relay is named by the server URL's host.
    const embedded = (url: string) =>
      makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true }, derp: { enable: true, mode: "embedded", insecureForTests: true } } } }, { coordinator: { host: "vps", serverUrl: url } });
    expect(insecure(run(embedded("https://203.0.113.10")))).toEqual([]);
    expect(insecure(run(embedded("https://hs.example.org")))).toHaveLength(1);
  });

  it("assertion messages", () => {
    const ctx = makeCtx("home", {
      vps: { address: "203.0.113.10", options: { "reverse-proxy": { enable: true }, derp: { enable: true } } },
      home: { address: "192.168.8.2", options: { derp: { enable: true, mode: "embedded" } } },
      ipv: { address: "203.0.113.40", options: { derp: { enable: true, derpPort: 3340 } } },
    });
    expect(failed(run(ctx))).toMatchSnapshot("embedded off the coordinator");
    expect(failed(run(on(ctx, "vps")))).toMatchSnapshot("derper on 443 next to the proxy, IP hostname");
    expect(failed(run(on(ctx, "ipv")))).toMatchSnapshot("letsencrypt off 443");
  });
});

describe("derper accepts its flags", () => {
  const skip = rt.missing("derper");
  it.skipIf(skip)("every flag meshfleet passes exists in derper 1.98.10", async () => {
    const ctx = on(seed004(), "relay");
    const args = derperArgs(derpModule.options.parse(ctx.self.config.derp), ctx, "derper").slice(1);
    const { execa } = await import("execa");
    const help = await execa(rt.toolPath("derper")!, ["-h"], { reject: false, all: true });
    for (const a of args) {
      const flag = a.replace(/^-/, "").split("=")[0];
      expect(help.all, flag).toMatch(new RegExp(`^\\s+-${flag}\\b`, "m"));
    }
  });
});
