/**
 * The docker runtime's compose network (issue 13 item 8, last line):
 * headscale and the reverse proxy share one compose network on a fixed
 * subnet (headscale.dockerSubnet), and headscale's trusted_proxies include
 * it, so headscale believes the proxy's X-Real-IP (the client's address)
 * instead of taking the proxy container's address on the docker bridge as
 * the client's. A subnet overlapping the tailnet, a LAN, a route or docker's
 * default address pools is refused. The rendered config still passes `headscale configtest` and the
 * Caddyfile `caddy validate`.
 */
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import type { HostSystem } from "../../core/types.ts";
import { composeSubnet, composeUnit, renderCompose } from "../../components/dockerService.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { reverseProxyModule } from "../../modules/reverse-proxy.ts";
import { DEFAULT_DOCKER_SUBNET, trustedProxiesOf } from "../../modules/docker-network.ts";
import { evaluateStack } from "../components/fixtures.ts";
import { makeCtx } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

const run = (ctx: ModuleContext): Contribution => headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);
const configOf = (c: Contribution) => c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content;
const failed = (c: Contribution) =>
  c.assertions!.filter((a) => !a.assertion && a.path === "headscale.dockerSubnet").map((a) => `${a.file ?? "<option file>"}: ${a.path}: expected ${a.expected}, found ${a.found}. Fix: ${a.fix}`);

function ctx(runtime: "systemd" | "docker", headscale: Record<string, unknown> = {}, router: Record<string, unknown> = {}, proxy: Record<string, unknown> = { kind: "caddy" }): ModuleContext {
  return makeCtx("vps", {
    vps: { address: "203.0.113.10", runtime, options: { headscale: { enable: true, ...headscale }, "reverse-proxy": { enable: true, ...proxy } } },
    router: { address: "192.168.8.105", options: router },
  });
}

describe("compose network and trusted proxies (docker runtime)", () => {
  it("the default subnet stays clear of the tailnet, docker's own pools and the lab's ranges", () => {
    expect(headscaleModule.options.parse({}).dockerSubnet).toBe(DEFAULT_DOCKER_SUBNET);
    expect(failed(run(ctx("docker")))).toEqual([]);
    // docker's default address pools (172.17-31.x.x, 192.168.x.x): refused at check, not at `docker-compose up`.
    expect(failed(run(ctx("docker", { dockerSubnet: "172.17.0.0/24" })))).toEqual([
      "<option file>: headscale.dockerSubnet: expected a subnet outside docker's default address pools (172.17.0.0/16-172.31.0.0/16 and 192.168.0.0/16), from which docker picks its own networks' subnets, found 172.17.0.0/24, which overlaps docker's pool 172.17.0.0/16. Fix: set headscale.dockerSubnet to a private range outside those pools (the default 172.16.238.0/24, or e.g. 10.200.0.0/24)",
    ]);
    for (const inPool of ["172.31.255.0/24", "172.24.0.0/16", "192.168.200.0/24", "172.16.0.0/12"]) {
      expect(failed(run(ctx("docker", { dockerSubnet: inPool }))).join("\n"), inPool).toContain(`found ${inPool}, which overlaps docker's pool`);
    }
    for (const clear of ["172.16.239.0/24", "172.32.0.0/24", "10.200.0.0/24", "192.169.0.0/24"]) expect(failed(run(ctx("docker", { dockerSubnet: clear }))), clear).toEqual([]);
    expect(trustedProxiesOf(["127.0.0.1/32"], DEFAULT_DOCKER_SUBNET)).toEqual(["127.0.0.1/32", DEFAULT_DOCKER_SUBNET]);
    expect(trustedProxiesOf([DEFAULT_DOCKER_SUBNET], DEFAULT_DOCKER_SUBNET)).toEqual([DEFAULT_DOCKER_SUBNET]);
  });

  it("headscale trusts the compose network on docker, and only loopback on systemd", () => {
    expect(parse(configOf(run(ctx("docker")))).trusted_proxies).toEqual(["127.0.0.1/32", "::1/128", "172.16.238.0/24"]);
    expect(parse(configOf(run(ctx("docker", { dockerSubnet: "10.200.0.0/24", trustedProxies: ["127.0.0.1/32"] })))).trusted_proxies).toEqual(["127.0.0.1/32", "10.200.0.0/24"]);
    expect(parse(configOf(run(ctx("systemd")))).trusted_proxies).toEqual(["127.0.0.1/32", "::1/128"]);
    expect(run(ctx("docker")).containers![0]!.subnet).toBe("172.16.238.0/24");
  });

  it("hosts/home's VPS (headscale and nginx in docker): the compose network has the subnet headscale trusts", async () => {
    const { fleet } = await evaluateStack("home");
    const vps = fleet.hosts.vps!;
    const compose = renderCompose(vps);
    expect(compose.networks).toEqual({ default: { ipam: { driver: "default", config: [{ subnet: "172.16.238.0/24" }] } } });
    // No service names a network: all are on `default`, the declared one.
    for (const s of Object.values(compose.services)) expect(s).not.toHaveProperty("networks");
    const cfg = vps.files.find((f) => f.path === "/opt/meshfleet/headscale/config.yaml")!.content;
    expect(parse(cfg).trusted_proxies).toContain(compose.networks!.default.ipam.config[0]!.subnet);
    // A network made before (docker's pick) is dropped before `up`, which would refuse to change it.
    expect(composeUnit(compose).content).toContain("ExecStartPre=-/bin/sh -c 'docker network prune -f --filter label=com.docker.compose.project=meshfleet >/dev/null'");
  });

  it("no container naming a subnet: no network section; two different subnets: refused", async () => {
    const { fleet } = await evaluateStack("home");
    const vps = fleet.hosts.vps!;
    const plain: HostSystem = { ...vps, containers: vps.containers.map(({ subnet: _s, ...c }) => c) };
    expect(renderCompose(plain)).not.toHaveProperty("networks");
    const two: HostSystem = { ...vps, containers: vps.containers.map((c) => ({ ...c, subnet: c.name === "headscale" ? "172.16.238.0/24" : "172.16.239.0/24" })) };
    expect(() => composeSubnet(two)).toThrow(
      /containers: expected one subnet for the compose network, found headscale: 172\.16\.238\.0\/24, nginx: 172\.16\.239\.0\/24\. Fix: give every container the same subnet \(headscale\.dockerSubnet\)/,
    );
  });

  it("refuses a subnet overlapping the tailnet, a LAN or a route, and one that is not an IPv4 network", () => {
    expect(failed(run(ctx("docker", { dockerSubnet: "100.100.0.0/16" })))).toEqual([
      "<option file>: headscale.dockerSubnet: expected a subnet for the docker runtime's compose network that overlaps no tailnet prefix, LAN or advertised route of the fleet, found 100.100.0.0/16, which overlaps hosts/lab/fleet.yaml prefixes.v4 (the tailnet) 100.64.0.0/10. Fix: set headscale.dockerSubnet to a private range none of those use (the default 172.16.238.0/24, or e.g. 172.16.239.0/24)",
    ]);
    const routed = ctx("docker", { dockerSubnet: "192.168.0.0/16" }, { lan: ["192.168.8.0/24"], tailscale: { enable: true, advertiseRoutes: ["192.168.8.0/24"] } });
    expect(failed(run(routed))).toEqual([
      "<option file>: headscale.dockerSubnet: expected a subnet for the docker runtime's compose network that overlaps no tailnet prefix, LAN or advertised route of the fleet, found 192.168.0.0/16, which overlaps hosts/lab/router.yaml lan[0] 192.168.8.0/24, hosts/lab/router.yaml tailscale.advertiseRoutes[0] 192.168.8.0/24. Fix: set headscale.dockerSubnet to a private range none of those use (the default 172.16.238.0/24, or e.g. 172.16.239.0/24)",
      "<option file>: headscale.dockerSubnet: expected a subnet outside docker's default address pools (172.17.0.0/16-172.31.0.0/16 and 192.168.0.0/16), from which docker picks its own networks' subnets, found 192.168.0.0/16, which overlaps docker's pool 192.168.0.0/16. Fix: set headscale.dockerSubnet to a private range outside those pools (the default 172.16.238.0/24, or e.g. 10.200.0.0/24)",
    ]);
    for (const bad of ["172.16.238.5/24", "fd00::/64", "172.16.0.0/30", "docker0"]) {
      expect(failed(run(ctx("docker", { dockerSubnet: bad })))[0]).toContain(`headscale.dockerSubnet: expected an IPv4 network in CIDR form from /16 to /28 (host bits zero), e.g. 172.16.238.0/24, found "${bad}"`);
    }
    // The systemd runtime has no compose network: nothing to check.
    expect(failed(run(ctx("systemd", { dockerSubnet: "100.100.0.0/16" })))).toEqual([]);
  });
});

describe("the real programs accept it", () => {
  const skipHs = rt.missing("headscale");
  const skipCaddy = rt.missing("caddy");

  it.skipIf(skipHs)("headscale configtest: the docker runtime's config with the compose network trusted", async () => {
    const c = run(ctx("docker"));
    const t = rt.tempDir("hs-docker-net");
    try {
      const text = configOf(c);
      expect(text).toContain("172.16.238.0/24");
      const cfg = rt.layoutHeadscale(t.dir, {
        config: text.replaceAll("/opt/meshfleet/headscale/", "/etc/headscale/"),
        policy: c.files!.find((f) => f.path.endsWith("/policy.hujson"))!.content,
        noiseKey: "privkey:" + "1".repeat(64),
      });
      const r = await rt.headscaleConfigtest(cfg);
      expect(r.ok, r.output).toBe(true);
    } finally {
      t.cleanup();
    }
  });

  it.skipIf(skipCaddy)("caddy validate: the docker runtime's Caddyfile", async () => {
    const c = ctx("docker", {}, {}, { kind: "caddy", tls: "internal" });
    const p = reverseProxyModule.config(reverseProxyModule.options.parse(c.self.config["reverse-proxy"]), c);
    const caddyfile = p.files!.find((f) => f.path.endsWith("/Caddyfile"))!.content;
    expect(caddyfile).toContain("reverse_proxy headscale:8080");
    const r = await rt.caddyValidate(caddyfile);
    expect(r.ok, r.output).toBe(true);
  });
});
