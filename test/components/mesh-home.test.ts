/**
 * The home fleet (seed 004: headscale in docker on the VPS behind nginx,
 * embedded DERP, the LXC subnet router in CT 205, laptop, phone, exit node)
 * through Mesh on the mock engine: the resource graph, the VPS's containers
 * as a compose file in its generation, and the inputs of meshfleet's own provider resources (the CT, the
 * generation with its bundle, the headscale user, keys and route approval).
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { Mesh } from "../../components/index.ts";
import { secretRefs } from "../../core/index.ts";
import { renderHost } from "../../core/render.ts";
import { bundleSummary } from "../../provider/summary.ts";
import type { FleetSystem } from "../../core/types.ts";
import { derivePrivateKey, publicKeyOf } from "../../core/keys.ts";
import { installMocks, isSecret, settle, valueOf, type Recorder } from "./harness.ts";
import { COMPOSE_FILE, COMPOSE_UNIT, type ComposeFile } from "../../agent/compose.ts";
import { evaluateStack, fakeAgentFile, fakeHeadscale, hostKeyOf, KEY_SEED, knownHostsFile, SSH_KEY } from "./fixtures.ts";

let fleet: FleetSystem;
let rec: Recorder;
let mesh: Mesh;
let agentPath: string;

beforeAll(async () => {
  ({ fleet } = await evaluateStack("home"));
  agentPath = fakeAgentFile();
  const hs = fakeHeadscale(fleet);
  rec = await installMocks(hs.respond);
  mesh = new Mesh("home", {
    fleet,
    keySeed: pulumi.secret(KEY_SEED),
    // Key text (a secret) rather than a file: the provider writes it 0600 for the run.
    ssh: { privateKey: pulumi.secret(SSH_KEY), knownHostsPath: knownHostsFile(fleet, { hashed: ["exit"] }) },
    agent: { agentPath },
  });
  await valueOf(mesh.summary);
  await settle();
});


describe("home fleet, docker runtime: the resource graph", () => {
  it("has the components and children each role needs, named with their component as prefix", () => {
    const names = (t: string) => rec.ofType(t).map((r) => r.name).sort();
    expect(names("meshfleet:index:Mesh")).toEqual(["home"]);
    expect(names("meshfleet:index:Coordinator")).toEqual(["home-coordinator"]);
    expect(names("meshfleet:index:ReverseProxy")).toEqual(["home-proxy"]);
    expect(names("meshfleet:index:DerpRelay")).toEqual(["home-derp"]);
    expect(names("meshfleet:index:SubnetRouter")).toEqual(["home-lxc-tailscale"]);
    expect(names("meshfleet:index:ExitNode")).toEqual(["home-exit"]);
    expect(names("meshfleet:index:MeshNode")).toEqual(["home-laptop", "home-phone", "home-vps"]);
    expect(names("meshfleet:index:HeadscaleUser")).toEqual(["home-user-alice"]);
    expect(names("meshfleet:index:PreAuthKey")).toEqual(fleet.preAuthKeys.map((k) => `home-key-${k.host}`).sort());
    expect(names("meshfleet:index:ProxmoxLxc")).toEqual(["home-lxc-tailscale-lxc"]);
    expect(names("meshfleet:index:RouteApproval")).toEqual(["home-exit-routes", "home-lxc-tailscale-routes"]);
    // A host without an agent gets nothing pushed: no HostAgent for the phone.
    // The VPS joins the mesh: the Coordinator's bootstrap push (headscale's container) comes first, then its node's.
    expect(names("meshfleet:index:HostAgent")).toEqual(["home-coordinator-bootstrap", "home-exit-agent", "home-laptop-agent", "home-lxc-tailscale-agent", "home-vps-agent"]);
    // Every host action is a resource of meshfleet's own provider; nothing of @pulumi/command is left.
    expect(names("meshfleet:host:Generation")).toEqual(["home-coordinator-bootstrap-generation", "home-exit-agent-generation", "home-laptop-agent-generation", "home-lxc-tailscale-agent-generation", "home-vps-agent-generation"]);
    expect(names("meshfleet:headscale:User")).toEqual(["home-user-alice-user"]);
    expect(names("meshfleet:headscale:PreAuthKey")).toEqual(fleet.preAuthKeys.map((k) => `home-key-${k.host}-key`).sort());
    expect(names("meshfleet:headscale:RouteApproval")).toEqual(["home-exit-routes-approval", "home-lxc-tailscale-routes-approval"]);
    expect(names("meshfleet:headscale:Ready")).toEqual(["home-coordinator-ready"]);
    expect(names("meshfleet:proxmox:Container")).toEqual(["home-lxc-tailscale-lxc-ct"]);
    expect(rec.resources.filter((r) => r.type.startsWith("command:"))).toEqual([]);
    // No docker API from the deploy machine: the containers are in the VPS's generation.
    expect(rec.resources.filter((r) => r.type.startsWith("docker:") || r.type === "pulumi:providers:docker")).toEqual([]);

    for (const r of rec.resources) {
      if (r.name === "home" || r.type === "pulumi:pulumi:Stack") continue;
      const parent = rec.parentName(r.name);
      expect(parent, `${r.type} ${r.name} has a parent`).toBeDefined();
      expect(r.name.startsWith(`${parent}-`) || parent === "home", `${r.name} is prefixed by its parent ${parent}`).toBe(true);
    }
  });

  it("parents children to their component", () => {
    expect(rec.parentName("home-coordinator")).toBe("home");
    expect(rec.parentName("home-coordinator-bootstrap")).toBe("home-coordinator");
    expect(rec.parentName("home-lxc-tailscale-lxc-ct")).toBe("home-lxc-tailscale-lxc");
    expect(rec.parentName("home-lxc-tailscale-lxc")).toBe("home-lxc-tailscale");
    expect(rec.parentName("home-lxc-tailscale-agent-generation")).toBe("home-lxc-tailscale-agent");
    expect(rec.parentName("home-key-laptop-key")).toBe("home-key-laptop");
  });

  it("orders the deploy: coordinator answers, then users, keys, nodes, then route checks", () => {
    const ready = "home-coordinator-ready";
    expect(rec.before(ready)).toContain("home-coordinator-bootstrap-generation");
    expect(rec.before("home-user-alice-user")).toContain(ready);
    expect(rec.before("home-key-laptop-key")).toContain("home-user-alice-user");
    expect(rec.before("home-key-laptop-key")).toContain(ready);
    // A node's generation waits for its key (through the secret bundle) and for the coordinator.
    const gen = rec.before("home-laptop-agent-generation");
    expect(gen).toContain("home-key-laptop-key");
    expect(gen).toContain(ready);
    // The subnet router's CT exists and runs before anything is pushed into it.
    expect(rec.before("home-lxc-tailscale-agent-generation")).toContain("home-lxc-tailscale-lxc-ct");
    // Route approval after the node's generation is confirmed.
    expect(rec.before("home-lxc-tailscale-routes-approval")).toContain("home-lxc-tailscale-agent-generation");
    // The key does not wait for any node, and the coordinator waits for no key.
    expect(rec.before(ready)).not.toContain("home-key-vps-key");
    expect(rec.before("home-coordinator-bootstrap-generation")).not.toContain("home-user-alice-user");
  });

});

describe("home fleet: the VPS's containers in its generation", () => {
  const composeOfGen = (name: string) => {
    const bundle = JSON.parse(rec.byName(name).inputs.bundle);
    const f = bundle.files.find((x: { path: string }) => x.path === COMPOSE_FILE);
    return { bundle, compose: JSON.parse(f.content) as ComposeFile & { services: Record<string, Record<string, unknown>> } };
  };

  it("both pushes to the VPS carry the same compose file: headscale and nginx, pinned, with the spec's ports, volume, restart, health check and command", () => {
    const spec = fleet.hosts.vps.containers.find((c) => c.name === "headscale")!;
    const boot = composeOfGen("home-coordinator-bootstrap-generation");
    const full = composeOfGen("home-vps-agent-generation");
    expect(full.compose).toEqual(boot.compose);
    const hs = full.compose.services.headscale!;
    expect(hs.image).toBe(`docker.io/headscale/headscale:${fleet.coordinator.headscaleVersion}`);
    expect(hs.container_name).toBe("headscale");
    expect(hs.ports).toContain("127.0.0.1:8080:8080/tcp");
    expect(hs.volumes).toContain("headscale-data:/var/lib/headscale");
    expect(hs.restart).toBe("unless-stopped");
    expect(hs.healthcheck).toEqual(spec.healthcheck);
    expect(hs.command).toEqual(spec.command);
    expect(Object.keys(full.compose.services).sort()).toEqual(["headscale", "nginx"]);
    expect(full.bundle.units.map((u: { name: string }) => u.name)).toContain(COMPOSE_UNIT);
    expect(full.bundle.probes).toContainEqual({ name: "containers-unit", kind: "unit-active", unit: COMPOSE_UNIT });
  });

  it("the keys are files of the generation (0600, filled from the seed) and never in the compose file", () => {
    const { bundle } = composeOfGen("home-vps-agent-generation");
    const noise = bundle.files.find((f: { path: string }) => f.path === "/var/lib/headscale/noise_private.key");
    expect(noise).toMatchObject({ mode: "0600", owner: "headscale", content: derivePrivateKey(KEY_SEED, "noise") });
    const text = bundle.files.find((f: { path: string }) => f.path === COMPOSE_FILE).content as string;
    expect(text).not.toContain(derivePrivateKey(KEY_SEED, "noise"));
    expect(text).not.toContain(derivePrivateKey(KEY_SEED, "derp"));
    // The bundle itself travels as a secret.
    expect(JSON.stringify(rec.byName("home-vps-agent-generation").raw.bundle)).toContain("1b47061264138c4ac30d75fd1eb44270");
  });

  it("the proxy checks the compose unit once the VPS's generation is confirmed", () => {
    expect(rec.byName("home-proxy-check").inputs.units).toEqual([COMPOSE_UNIT]);
    expect(rec.before("home-proxy-check")).toContain("home-vps-agent-generation");
  });
});

describe("home fleet: the Proxmox CT, the generation and headscale", () => {
  it("prerequisites: the docker VPS needs docker.io and docker-compose; the CT's check waits for the CT, the other nodes wait for it, the coordinator does not", () => {
    expect(rec.byName("home-vps-prerequisites").inputs.spec.packages).toEqual(expect.arrayContaining([{ name: "docker.io", command: "docker" }, { name: "docker-compose", command: "docker-compose" }]));
    expect([...rec.before("home-lxc-tailscale-prerequisites")]).toContain("home-lxc-tailscale-lxc-ct");
    expect([...rec.before("home-laptop-agent-generation")]).toContain("home-lxc-tailscale-prerequisites");
    expect([...rec.before("home-lxc-tailscale-agent-generation")]).toContain("home-lxc-tailscale-prerequisites");
    expect([...rec.before("home-coordinator-bootstrap-generation")]).not.toContain("home-lxc-tailscale-prerequisites");
    expect([...rec.before("home-coordinator-bootstrap-generation")]).toContain("home-laptop-prerequisites");
  });

  it("adopts CT 205 on the Proxmox node with the module's pct commands, the node pinned like a host", () => {
    const ct = rec.byName("home-lxc-tailscale-lxc-ct");
    const lxc = fleet.hosts["lxc-tailscale"].lxc!;
    expect(ct.inputs.connection).toEqual({ name: "Proxmox node root@192.168.8.82 (of lxc-tailscale)", host: "192.168.8.82", port: 22, user: "root", hostKeys: [hostKeyOf("pve-192.168.8.82")] });
    expect(ct.inputs).toMatchObject({ host: "lxc-tailscale", ctid: 205, mode: "adopt", config: lxc.config, pctCommands: lxc.pctCommands });
    expect(ct.inputs.pctCommands.map((a: string[]) => a.join(" "))).toContain("pct set 205 --dev0 /dev/net/tun");
  });

  it("ships the host's real bundle (its key filled in) as a secret, with a per-file summary in clear", () => {
    const host = fleet.hosts["lxc-tailscale"];
    const g = rec.byName("home-lxc-tailscale-agent-generation");
    expect(g.inputs.connection).toEqual({ name: "lxc-tailscale", host: host.address, port: host.ssh.port, user: host.ssh.user, hostKeys: [hostKeyOf("lxc-tailscale")] });
    expect(g.inputs.agent).toMatchObject({ remotePath: "/usr/local/lib/meshfleet/meshfleet-agent.mjs", node: "node", stateDir: "/var/lib/meshfleet" });
    expect(g.inputs.agent.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(g.inputs.confirmTimeoutSeconds).toBe(120);
    // The bundle goes as a secret, and is the host's real bundle with its key filled in.
    expect(JSON.stringify(g.raw.bundle)).toContain("1b47061264138c4ac30d75fd1eb44270");
    const bundle = JSON.parse(g.inputs.bundle);
    const key = rec.byName("home-key-lxc-tailscale-key").state.key as string;
    expect(bundle).toEqual(renderHost(host, { "preauth:lxc-tailscale": key, "noise-public-key": publicKeyOf(derivePrivateKey(KEY_SEED, "noise")) }));
    expect(secretRefs(host)).toEqual(["noise-public-key", "preauth:lxc-tailscale"]);
    // What preview --diff shows is in clear: paths, modes, digests; the key file's content is not there.
    const summary = bundleSummary(bundle);
    expect(g.inputs).toMatchObject(summary);
    expect(JSON.stringify(g.raw.files)).not.toContain(key);
    expect(JSON.stringify(g.raw.files)).not.toContain("1b47061264138c4ac30d75fd1eb44270");
    // Private key text: a secret input and an additional secret output.
    expect(JSON.stringify(g.raw.sshPrivateKey)).toContain("1b47061264138c4ac30d75fd1eb44270");
    expect(g.additionalSecretOutputs).toContain("sshPrivateKey");
  });

  it("pins come from the fleet's known_hosts file, hashed entries too (ssh-keygen -F)", () => {
    expect(rec.byName("home-exit-agent-generation").inputs.connection.hostKeys).toEqual([hostKeyOf("exit")]);
    expect(rec.byName("home-vps-agent-generation").inputs.connection).toMatchObject({ host: "203.0.113.10", port: 56777, hostKeys: [hostKeyOf("vps")] });
  });

  it("creates the user and the pre-auth keys through the headscale CLI in the container; keys are secret outputs", () => {
    const user = rec.byName("home-user-alice-user");
    expect(user.inputs).toMatchObject({ name: "alice", cli: { runtime: "docker", container: "headscale" } });
    expect(user.inputs.connection).toMatchObject({ host: "203.0.113.10", port: 56777 });
    const laptopReq = fleet.preAuthKeys.find((k) => k.host === "laptop")!;
    const laptop = rec.byName("home-key-laptop-key");
    expect(laptop.inputs).toMatchObject({ host: "laptop", userId: 1, reusable: laptopReq.reusable, ephemeral: laptopReq.ephemeral, expiration: laptopReq.expiration, tags: laptopReq.tags });
    expect(rec.byName("home-key-lxc-tailscale-key").inputs).toMatchObject({ expiration: "90d", tags: ["tag:router"] });
    for (const k of rec.ofType("meshfleet:headscale:PreAuthKey")) expect(k.additionalSecretOutputs).toEqual(expect.arrayContaining(["key", "sshPrivateKey"]));
  });

  it("approves the router's declared routes on the coordinator after the node joined", () => {
    const a = rec.byName("home-lxc-tailscale-routes-approval");
    expect(a.inputs).toMatchObject({ host: "lxc-tailscale", hostname: "lxc-tailscale", routes: ["192.168.8.0/24", "192.168.20.0/24"], exitNode: false, timeoutSeconds: 60 });
    expect(a.inputs.connection.host).toBe("203.0.113.10");
    // Re-verified when the node's generation changes.
    expect(a.inputs.trigger).toBe(rec.byName("home-lxc-tailscale-agent-generation").inputs.hash);
    expect(rec.byName("home-exit-routes-approval").inputs).toMatchObject({ routes: [], exitNode: true });
  });
});

describe("home fleet: the Mesh outputs", () => {
  it("reports the coordinator URL, each node's roles, routes and state, and a summary", async () => {
    expect(await valueOf(mesh.coordinatorUrl)).toBe("https://headscale.example.com");
    const nodes = await valueOf(mesh.nodes);
    expect(Object.keys(nodes).sort()).toEqual(Object.keys(fleet.hosts).sort());
    expect(nodes["lxc-tailscale"].routes).toEqual(["192.168.8.0/24", "192.168.20.0/24"]);
    expect(nodes["lxc-tailscale"].roles).toContain("subnet-router");
    expect(nodes.exit.routes).toEqual(["0.0.0.0/0", "::/0"]);
    expect(nodes.laptop.state).toBe("generation 2");
    expect(nodes.phone.state).toBe("join instructions issued");
    const summary = await valueOf(mesh.summary);
    expect(summary).toMatch(/^mesh home: coordinator https:\/\/headscale.example.com on vps \(docker, headscale 0.29.2\), 5 nodes/);
    expect(summary).toMatch(/lxc-tailscale +subnet-router,proxmox-lxc +192.168.8.0\/24 192.168.20.0\/24 +generation 2/);
  });

  it("gives the phone join instructions with the login server and its key, as a secret", async () => {
    const join = await valueOf(mesh.joinInstructions);
    expect(await isSecret(mesh.joinInstructions)).toBe(true);
    expect(join.phone).toContain("--login-server=https://headscale.example.com");
    expect(join.phone).toMatch(/^Pre-auth key: hskey-auth-[0-9a-f]+$/m);
    // The key never goes on a command line (shell history, ps): tailscale reads it from a 0600 file.
    expect(join.phone).toContain("--auth-key=file:/etc/tailscale-authkey");
    expect(join.phone).toContain("install -m 600 /dev/stdin /etc/tailscale-authkey");
    expect(join.phone.split("\n").filter((l) => /hskey-auth-/.test(l))).toHaveLength(1);
    // The fleet's tailscaleVersion (its default) is what the phone is asked to run.
    expect(join.phone).toContain("Tailscale: 1.98.10 or newer (the fleet's tailscaleVersion)");
    expect(Object.keys(join)).toEqual(["phone"]);
  });
});
