/**
 * What stops a deploy, and how it reads: a broken fleet before any resource
 * exists (a host with no pinned host key among them), and a route headscale
 * did not approve after the node joined.
 */
import { describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import program from "../../index.ts";
import { DeployError, Mesh, validateMesh } from "../../components/index.ts";
import { installMocks, settle, valueOf } from "./harness.ts";
import { scratchDir } from "../scratch.ts";
import { evaluateStack, fakeAgentFile, fakeHeadscale, KEY_SEED, knownHostsFile } from "./fixtures.ts";

describe("route approval is verified, not assumed", () => {
  it("every advertising node gets a RouteApproval of exactly its declared routes (the provider fails it when headscale disagrees: test/provider)", async () => {
    const { fleet } = await evaluateStack("home");
    const rec = await installMocks(fakeHeadscale(fleet).respond);
    const mesh = new Mesh("home", { fleet, keySeed: pulumi.secret(KEY_SEED), ssh: { knownHostsPath: knownHostsFile(fleet) }, agent: { agentPath: fakeAgentFile() } });
    const nodes = await valueOf(mesh.nodes);
    expect(nodes["lxc-tailscale"].state).toBe("generation 2");
    await settle();
    expect(rec.byName("home-lxc-tailscale-routes-approval").inputs).toMatchObject({ routes: ["192.168.8.0/24", "192.168.20.0/24"], exitNode: false });
    expect(rec.byName("home-exit-routes-approval").inputs).toMatchObject({ routes: [], exitNode: true });
    expect(await valueOf(mesh.members["lxc-tailscale"].parts.routes!.approvedRoutes)).toEqual(["192.168.20.0/24", "192.168.8.0/24"]);
  });
});

describe("a broken fleet stops before any resource exists", () => {
  it("index.ts throws a RunError with the foundation's diagnostics, and registers nothing", async () => {
    const { dirUsed } = await evaluateStack("home");
    const broken = scratchDir("meshfleet-broken-");
    cpSync(dirUsed, broken, { recursive: true });
    const router = join(broken, "lxc-tailscale.yaml");
    writeFileSync(router, readFileSync(router, "utf8").replace("routes: [192.168.8.0/24, 192.168.20.0/24]", "routes: [192.168.8.0/33]"));
    const rec = await installMocks(() => undefined, {
      config: { "meshfleet:hostsDir": broken, "meshfleet:keySeed": KEY_SEED, "meshfleet:agentPath": fakeAgentFile() },
      secretKeys: ["meshfleet:keySeed"],
    });
    const err = await program().then(
      () => null,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(pulumi.RunError);
    expect(err!.message).toMatch(/^the fleet in .* has errors; nothing was deployed:\n/);
    expect(err!.message).toContain("lxc-tailscale.yaml");
    expect(err!.message).toContain("192.168.8.0/33");
    expect(err!.stack === undefined || (pulumi.RunError as any).isInstance(err)).toBe(true);
    expect(rec.resources).toEqual([]);
  });

  it("Mesh reports every deploy problem at once (missing agent bundle, missing key, bad image pin, unpinned hosts) and creates nothing", async () => {
    const { fleet } = await evaluateStack("home");
    const vps = fleet.hosts.vps;
    const broken = {
      ...fleet,
      preAuthKeys: fleet.preAuthKeys.filter((k) => k.host !== "laptop"),
      hosts: { ...fleet.hosts, vps: { ...vps, containers: vps.containers.map((c) => (c.name === "headscale" ? { ...c, image: "headscale/headscale:latest" } : c)) } },
    };
    // laptop and the Proxmox node are not in the known_hosts file.
    const ssh = { knownHostsPath: knownHostsFile(fleet, { leaveOut: ["laptop", "lxc-tailscale"] }) };
    const problems = validateMesh({ fleet: broken, ssh, agent: { agentPath: "/nonexistent/meshfleet-agent.mjs" } });
    expect(problems).toContain(
      "hosts/home/laptop.yaml: ssh.hostKey: host laptop (192.168.8.50): no pinned SSH host key, so nothing is sent to it. Fix: `npx meshfleet pin laptop` (shows the fingerprint and records it), or set ssh.hostKey in its host file",
    );
    expect(problems.some((p) => p.startsWith("hosts/home/lxc-tailscale.yaml: lxc.proxmoxHost: host Proxmox node root@192.168.8.82 (of lxc-tailscale) (192.168.8.82): no pinned SSH host key"))).toBe(true);
    expect(problems.filter((p) => p.includes("no pinned SSH host key"))).toHaveLength(3);
    expect(problems).toContain("the agent bundle /nonexistent/meshfleet-agent.mjs does not exist. Fix: run `npm run build:agent` before `pulumi up`");
    expect(problems.some((p) => p.includes('host laptop reads secret "preauth:laptop" but the fleet asks for no pre-auth key for it'))).toBe(true);
    expect(problems.some((p) => p.includes("containers[headscale].image: expected an image pinned by an exact tag or digest, found the moving tag \"latest\""))).toBe(true);
    const rec = await installMocks(() => undefined);
    expect(() => new Mesh("home", { fleet: broken, keySeed: KEY_SEED, ssh, agent: { agentPath: "/nonexistent/meshfleet-agent.mjs" } })).toThrow(DeployError);
    await settle();
    expect(rec.resources).toEqual([]);
  });
});
