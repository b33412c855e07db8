/**
 * What stops a deploy, and how it reads: a broken fleet before any resource
 * exists, and a route headscale did not approve after the node joined.
 */
import { describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import program from "../../index.ts";
import { DeployError, Mesh, validateMesh } from "../../components/index.ts";
import { renderNftables } from "../../core/index.ts";
import { installMocks, settle, valueOf } from "./harness.ts";
import { evaluateStack, fakeAgentFile, fakeHeadscale, KEY_SEED } from "./fixtures.ts";

describe("route approval is verified, not assumed", () => {
  it("fails the deploy naming the host and the route headscale did not approve", async () => {
    const { fleet } = await evaluateStack("home");
    const hs = fakeHeadscale(fleet, { deny: [{ host: "lxc-tailscale", route: "192.168.20.0/24" }] });
    const rec = await installMocks(hs.respond);
    const mesh = new Mesh("home", { fleet, keySeed: pulumi.secret(KEY_SEED), renderNftables, agent: { agentPath: fakeAgentFile() } });
    await valueOf(mesh.nodes);
    await settle();
    // The verdict is a command on the coordinator that fails with one line per problem.
    const verdict = rec.byName("home-lxc-tailscale-routes-verdict").inputs.create as string;
    expect(verdict).toContain("host lxc-tailscale: route 192.168.20.0/24 is declared in the fleet but headscale did not approve it");
    expect(verdict).toContain('autoApprovers.routes[\"192.168.20.0/24\"]'.replace(/\\/g, ""));
    expect(verdict.trim().endsWith("exit 1")).toBe(true);
    expect(verdict).not.toContain("192.168.8.0/24 is declared");
    expect(rec.byName("home-exit-routes-verdict").inputs.create).not.toContain("exit 1");
    // It runs for real: exit status 1 and the message on stderr.
    const r = spawnSync("sh", ["-c", verdict], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^meshfleet: host lxc-tailscale: route 192.168.20.0\/24 is declared in the fleet but headscale did not approve it \(approved: 192.168.8.0\/24\)/);
    expect(await valueOf(mesh.members["lxc-tailscale"].parts.routes!.approvedRoutes)).toEqual(["192.168.8.0/24"]);
  });

  it("passes when headscale approved everything (same fleet, nothing denied)", async () => {
    const { fleet } = await evaluateStack("home");
    await installMocks(fakeHeadscale(fleet).respond);
    const mesh = new Mesh("home", { fleet, keySeed: pulumi.secret(KEY_SEED), renderNftables, agent: { agentPath: fakeAgentFile() } });
    const nodes = await valueOf(mesh.nodes);
    expect(nodes["lxc-tailscale"].state).toBe("generation 2");
    await settle();
  });
});

describe("a broken fleet stops before any resource exists", () => {
  it("index.ts throws a RunError with the foundation's diagnostics, and registers nothing", async () => {
    const { dirUsed } = await evaluateStack("home");
    const broken = mkdtempSync(join(tmpdir(), "meshfleet-broken-"));
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

  it("Mesh reports every deploy problem at once (missing agent bundle, missing key, bad image pin) and creates nothing", async () => {
    const { fleet } = await evaluateStack("home");
    const vps = fleet.hosts.vps;
    const broken = {
      ...fleet,
      preAuthKeys: fleet.preAuthKeys.filter((k) => k.host !== "laptop"),
      hosts: { ...fleet.hosts, vps: { ...vps, containers: vps.containers.map((c) => (c.name === "headscale" ? { ...c, image: "headscale/headscale:latest" } : c)) } },
    };
    const problems = validateMesh({ fleet: broken, agent: { agentPath: "/nonexistent/meshfleet-agent.mjs" } });
    expect(problems).toContain("the agent bundle /nonexistent/meshfleet-agent.mjs does not exist. Fix: run `npm run build:agent` before `pulumi up`");
    expect(problems.some((p) => p.includes('host laptop reads secret "preauth:laptop" but the fleet asks for no pre-auth key for it'))).toBe(true);
    expect(problems.some((p) => p.includes("containers[headscale].image: expected an image pinned by an exact tag or digest, found the moving tag \"latest\""))).toBe(true);
    const rec = await installMocks(() => undefined);
    expect(() => new Mesh("home", { fleet: broken, keySeed: KEY_SEED, renderNftables, agent: { agentPath: "/nonexistent/meshfleet-agent.mjs" } })).toThrow(DeployError);
    await settle();
    expect(rec.resources).toEqual([]);
  });
});
