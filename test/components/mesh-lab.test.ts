/**
 * The lab fleet (systemd runtime, NixOS style): headscale, caddy and derper
 * arrive with the VPS's generation through the agent. The VPS also joins its
 * own mesh, so its first generation is a bootstrap without the tailscale join
 * (pushed once), and its full generation follows once its key exists.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { Mesh } from "../../components/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { installMocks, settle, valueOf, type Recorder } from "./harness.ts";
import { evaluateStack, fakeAgentFile, fakeHeadscale, KEY_SEED, knownHostsFile } from "./fixtures.ts";

let fleet: FleetSystem;
let rec: Recorder;
let mesh: Mesh;

beforeAll(async () => {
  ({ fleet } = await evaluateStack("lab"));
  rec = await installMocks(fakeHeadscale(fleet).respond, { stack: "lab" });
  mesh = new Mesh("lab", { fleet, keySeed: pulumi.secret(KEY_SEED), ssh: { knownHostsPath: knownHostsFile(fleet), privateKeyPath: fakeAgentFile() }, agent: { agentPath: fakeAgentFile() } });
  await valueOf(mesh.summary);
  await settle();
});

describe("lab fleet, systemd runtime", () => {
  it("creates no docker resources and pushes the VPS twice: a one-shot bootstrap, then its full generation", () => {
    expect(rec.resources.filter((r) => r.type.startsWith("docker:") || r.type === "pulumi:providers:docker")).toEqual([]);
    const agents = rec.ofType("meshfleet:index:HostAgent").map((r) => r.name).sort();
    expect(agents).toEqual(["lab-coordinator-bootstrap", "lab-laptop-agent", "lab-lxc-tailscale-agent", "lab-vps-agent"]);
    // The bootstrap generation is pushed once: the provider's diff never updates a `once` generation.
    expect(rec.byName("lab-coordinator-bootstrap-generation").inputs.once).toBe(true);
    expect(rec.byName("lab-vps-agent-generation").inputs.once).toBe(false);
    // A key file, not key text: no secret key input at all.
    for (const g of rec.ofType("meshfleet:host:Generation")) expect("sshPrivateKey" in g.inputs).toBe(false);
  });

  it("bootstraps without the join: no key file, no tailscale settings, no probe that needs a joined node", () => {
    const boot = JSON.parse(rec.byName("lab-coordinator-bootstrap-generation").inputs.bundle);
    const full = JSON.parse(rec.byName("lab-vps-agent-generation").inputs.bundle);
    expect(boot.files.map((f: any) => f.path)).not.toContain(fleet.hosts.vps.tailscale.authKeyFile);
    expect(full.files.map((f: any) => f.path)).toContain(fleet.hosts.vps.tailscale.authKeyFile);
    expect(boot.tailscale).toBeNull();
    expect(full.tailscale.loginServer).toBe("https://203.0.113.10");
    expect(boot.probes.map((p: any) => p.kind)).not.toContain("tailscale-running");
    expect(boot.units.map((u: any) => u.name)).toEqual(full.units.map((u: any) => u.name));
    expect(boot.files.find((f: any) => f.path === "/var/lib/headscale/noise_private.key").secret).toBe(true);
  });

  it("waits for headscale with the binary its unit runs, and orders bootstrap → ready → key → full push", () => {
    const ready = rec.byName("lab-coordinator-ready").inputs;
    expect(ready.cli).toEqual({ runtime: "systemd", binary: "/opt/meshfleet/tools/headscale@0.29.2/bin/headscale" });
    expect(ready.trigger).toBe(rec.byName("lab-coordinator-bootstrap-generation").inputs.hash);
    expect(rec.before("lab-coordinator-ready")).toContain("lab-coordinator-bootstrap-generation");
    expect(rec.before("lab-key-vps-key")).toContain("lab-coordinator-ready");
    expect(rec.before("lab-vps-agent-generation")).toContain("lab-key-vps-key");
    expect(rec.byName("lab-key-vps-key").inputs).toMatchObject({ host: "vps", expiration: "1d", tags: ["tag:server"], cli: ready.cli });
    expect("userId" in rec.byName("lab-key-vps-key").inputs).toBe(false);
  });

  it("switches the other hosts after the VPS's generation is confirmed (its policy, and no route announced while headscale restarts)", () => {
    for (const h of ["laptop", "lxc-tailscale"]) {
      expect(rec.before(`lab-${h}-agent-generation`)).toContain("lab-coordinator-ready");
      expect(rec.before(`lab-${h}-agent-generation`)).toContain(`lab-key-${h}-key`);
      expect(rec.before(`lab-${h}-agent-generation`)).toContain("lab-vps-agent-generation");
    }
    expect(rec.before("lab-vps-agent-generation")).not.toContain("lab-lxc-tailscale-agent-generation");
    expect([...rec.before("lab-lxc-tailscale-routes-approval")]).toEqual(expect.arrayContaining(["lab-vps-agent-generation", "lab-lxc-tailscale-agent-generation"]));
  });

  it("checks every agent host's prerequisites before any host's generation (a refusal on one host switches none)", () => {
    const prereqs = ["vps", "laptop", "lxc-tailscale"].map((h) => `lab-${h}-prerequisites`);
    for (const p of prereqs) expect(rec.byName(p).type).toBe("meshfleet:host:Prerequisites");
    for (const g of ["lab-coordinator-bootstrap-generation", "lab-vps-agent-generation", "lab-laptop-agent-generation", "lab-lxc-tailscale-agent-generation"]) {
      expect([...rec.before(g)]).toEqual(expect.arrayContaining(prereqs));
    }
    expect(rec.byName("lab-vps-prerequisites").inputs.spec).toMatchObject({
      host: "vps",
      packages: [{ name: "caddy", command: "caddy" }],
      node: { path: "node", minimumMajor: 18 },
      binaries: [
        { what: "tailscale", version: "1.98.10", option: "tailscaleVersion" },
        { what: "headscale", path: "/opt/meshfleet/tools/headscale@0.29.2/bin/headscale", version: "0.29.2", deployed: false },
      ],
    });
  });

  it("records which host runs the coordinator, and its database and keys, before headscale is pushed there (a move goes through it)", () => {
    const p = rec.byName("lab-coordinator-placement");
    expect(p.type).toBe("meshfleet:headscale:Placement");
    expect(p.inputs).toMatchObject({ host: "vps", runtime: "systemd", databaseType: "sqlite", databasePath: "/var/lib/headscale/db.sqlite", adopted: false, serverUrl: "https://203.0.113.10" });
    expect(rec.before("lab-coordinator-bootstrap-generation")).toContain("lab-coordinator-placement");
    expect([...rec.before("lab-coordinator-placement")]).toEqual(expect.arrayContaining(["lab-vps-prerequisites", "lab-laptop-prerequisites"]));
  });

  it("checks caddy and derper after the VPS's final generation", () => {
    const proxy = rec.byName("lab-proxy-check");
    expect(proxy.type).toBe("meshfleet:host:ServiceCheck");
    expect(proxy.inputs.units).toEqual(["caddy.service"]);
    expect(rec.before("lab-proxy-check")).toContain("lab-vps-agent-generation");
    const derp = rec.byName("lab-derp-check");
    expect(derp.inputs.units).toEqual(["derper.service"]);
    expect(derp.inputs.trigger).toBe(rec.byName("lab-vps-agent-generation").inputs.hash);
    expect(rec.before("lab-derp-check")).toContain("lab-vps-agent-generation");
  });

  it("summarises the mesh", async () => {
    const s = await valueOf(mesh.summary);
    expect(s.split("\n")[0]).toBe("mesh lab: coordinator https://203.0.113.10 on vps (systemd, headscale 0.29.2), 3 nodes");
    expect(s).toMatch(/lxc-tailscale +subnet-router +192.168.8.0\/24 +generation 2/);
  });
});
