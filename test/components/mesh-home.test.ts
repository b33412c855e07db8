/**
 * The home fleet (seed 004: headscale in docker on the VPS behind nginx,
 * embedded DERP, the LXC subnet router in CT 205, laptop, phone, exit node)
 * through Mesh on the mock engine: the resource graph, the docker inputs,
 * the pct commands, the agent push, and the headscale CLI commands.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { Mesh } from "../../components/index.ts";
import { makeBundle, renderNftables, secretRefs } from "../../core/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import { installMocks, isSecret, settle, valueOf, type Recorder } from "./harness.ts";
import { evaluateStack, fakeAgentFile, fakeHeadscale, KEY_SEED, SSH_KEY } from "./fixtures.ts";

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
    sshPrivateKey: pulumi.secret(SSH_KEY),
    sshPrivateKeyPath: "/home/me/.ssh/id_ed25519",
    renderNftables,
    agent: { agentPath },
  });
  await valueOf(mesh.summary);
  await settle();
});

const COMMAND = "command:remote:Command";

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
    expect(names("meshfleet:index:HostAgent")).toEqual(["home-exit-agent", "home-laptop-agent", "home-lxc-tailscale-agent", "home-vps-agent"]);
    expect(names("docker:index/container:Container")).toEqual(["home-coordinator-container", "home-proxy-container"]);
    expect(names("docker:index/remoteImage:RemoteImage")).toEqual(["home-coordinator-image", "home-proxy-image"]);
    expect(names("docker:index/volume:Volume")).toEqual(["home-coordinator-volume-headscale-data"]);

    for (const r of rec.resources) {
      if (r.name === "home" || r.type === "pulumi:pulumi:Stack") continue;
      const parent = rec.parentName(r.name);
      expect(parent, `${r.type} ${r.name} has a parent`).toBeDefined();
      expect(r.name.startsWith(`${parent}-`) || parent === "home", `${r.name} is prefixed by its parent ${parent}`).toBe(true);
    }
  });

  it("parents children to their component", () => {
    expect(rec.parentName("home-coordinator")).toBe("home");
    expect(rec.parentName("home-coordinator-container")).toBe("home-coordinator");
    expect(rec.parentName("home-lxc-tailscale-lxc-pct")).toBe("home-lxc-tailscale-lxc");
    expect(rec.parentName("home-lxc-tailscale-lxc")).toBe("home-lxc-tailscale");
    expect(rec.parentName("home-lxc-tailscale-agent-switch")).toBe("home-lxc-tailscale-agent");
    expect(rec.parentName("home-key-laptop-create")).toBe("home-key-laptop");
  });

  it("orders the deploy: coordinator answers, then users, keys, nodes, then route checks", () => {
    const ready = "home-coordinator-ready";
    expect(rec.before(ready)).toContain("home-coordinator-container");
    expect(rec.before("home-user-alice-create")).toContain(ready);
    expect(rec.before("home-key-laptop-create")).toContain("home-user-alice-create");
    expect(rec.before("home-key-laptop-create")).toContain(ready);
    // A node's push waits for its key (through the secret bundle) and for the coordinator.
    const sw = rec.before("home-laptop-agent-switch");
    expect(sw).toContain("home-key-laptop-create");
    expect(sw).toContain(ready);
    expect(sw).toContain("home-laptop-agent-agent");
    // The subnet router's CT exists and runs before anything is pushed into it.
    expect(rec.before("home-lxc-tailscale-agent-prepare")).toContain("home-lxc-tailscale-lxc-pct");
    // confirm after switch; status after confirm; route check after confirm.
    expect(rec.dependsOn("home-lxc-tailscale-agent-confirm")).toContain("home-lxc-tailscale-agent-switch");
    expect(rec.dependsOn("home-lxc-tailscale-agent-status")).toContain("home-lxc-tailscale-agent-confirm");
    expect(rec.before("home-lxc-tailscale-routes-check")).toContain("home-lxc-tailscale-agent-confirm");
    // The key does not wait for any node, and the coordinator waits for no key.
    expect(rec.before(ready)).not.toContain("home-key-vps-create");
    expect(rec.before("home-coordinator-container")).not.toContain("home-user-alice-create");
  });

  it("uses one docker provider over SSH to the VPS for every container", () => {
    const [provider] = rec.ofType("pulumi:providers:docker");
    const vps = fleet.hosts.vps;
    expect(provider.inputs.host).toBe(`ssh://${vps.ssh.user}@${vps.address}:${vps.ssh.port}`);
    expect(provider.inputs.sshOpts).toContain("/home/me/.ssh/id_ed25519");
    for (const r of [...rec.ofType("docker:index/container:Container"), ...rec.ofType("docker:index/remoteImage:RemoteImage")]) {
      expect(r.provider.startsWith(provider.urn), `${r.name} uses the VPS provider`).toBe(true);
    }
  });
});

describe("home fleet: the headscale container", () => {
  it("runs the pinned image with the spec's ports, volume, restart, health check and command", () => {
    const spec = fleet.hosts.vps.containers.find((c) => c.name === "headscale")!;
    const image = rec.byName("home-coordinator-image");
    expect(image.inputs.name).toBe(`docker.io/headscale/headscale:${fleet.coordinator.headscaleVersion}`);
    expect(image.inputs.name).not.toMatch(/:latest$/);
    const c = rec.byName("home-coordinator-container").inputs;
    expect(c.name).toBe("headscale");
    expect(c.image).toBe(rec.byName("home-coordinator-image").state.imageId ?? c.image);
    expect(c.ports).toEqual(spec.ports.map((p) => ({ internal: p.internal, external: p.external, protocol: p.protocol, ...(p.ip ? { ip: p.ip } : {}) })));
    expect(c.ports).toContainEqual({ internal: 8080, external: 8080, protocol: "tcp", ip: "127.0.0.1" });
    expect(c.volumes).toEqual([{ volumeName: "headscale-data", containerPath: "/var/lib/headscale" }]);
    expect(c.restart).toBe("unless-stopped");
    expect(c.healthcheck).toEqual({ tests: spec.healthcheck!.test, interval: spec.healthcheck!.interval, timeout: spec.healthcheck!.timeout, retries: spec.healthcheck!.retries });
    expect(c.wait).toBe(true);
    expect(c.command).toEqual(spec.command);
    expect(c.networksAdvanced).toEqual([{ name: "meshfleet", aliases: ["headscale"] }]);
  });

  it("uploads exactly the rendered files, the keys derived from the seed and sent as secrets", () => {
    const vps = fleet.hosts.vps;
    const spec = vps.containers.find((c) => c.name === "headscale")!;
    const c = rec.byName("home-coordinator-container");
    const secrets = { "noise-key": derivePrivateKey(KEY_SEED, "noise"), "derp-key": derivePrivateKey(KEY_SEED, "derp") };
    const want = spec.uploads.map((u) => {
      const f = vps.files.find((x) => x.path === u.source)!;
      return { file: u.containerPath, content: f.secretRef ? secrets[f.secretRef as keyof typeof secrets] : f.content };
    });
    expect(c.inputs.uploads).toEqual(want);
    expect(want.length).toBeGreaterThanOrEqual(3);
    // Secret uploads travel wrapped as secrets; plain ones do not.
    const raw = c.raw.uploads as any[];
    spec.uploads.forEach((u, i) => {
      const wrapped = JSON.stringify(raw[i]).includes("1b47061264138c4ac30d75fd1eb44270");
      expect(wrapped, `${u.containerPath} secret=${u.secret}`).toBe(u.secret);
    });
  });

  it("runs nginx next to it from the same host spec", () => {
    const spec = fleet.hosts.vps.containers.find((c) => c.name === "nginx")!;
    const c = rec.byName("home-proxy-container").inputs;
    expect(rec.byName("home-proxy-image").inputs.name).toBe(spec.image);
    expect(c.ports.map((p: any) => p.external).sort()).toEqual([443, 80]);
    expect(c.uploads.map((u: any) => u.file)).toEqual(spec.uploads.map((u) => u.containerPath));
  });
});

describe("home fleet: pct, the agent push and the headscale CLI", () => {
  it("adopts CT 205 on the Proxmox node with the module's pct commands (TUN passthrough, started)", () => {
    const pct = rec.byName("home-lxc-tailscale-lxc-pct").inputs;
    const lxc = fleet.hosts["lxc-tailscale"].lxc!;
    expect(pct.connection.host).toBe("192.168.8.82");
    expect(pct.connection.user).toBe("root");
    expect(pct.create).toContain("pct status 205 >/dev/null 2>&1 || {");
    expect(pct.create).toContain("pct set 205 --dev0 /dev/net/tun");
    expect(pct.create).toContain("grep -qxF -- 'dev0: /dev/net/tun' /etc/pve/lxc/205.conf");
    expect(pct.update).toBe(pct.create);
    // Adopted: the CT is not destroyed with the stack.
    expect(pct.delete).toBeUndefined();
    expect(lxc.mode).toBe("adopt");
  });

  it("pushes the agent and the host's bundle, switches with a confirm timeout, confirms on a new connection", () => {
    const host = fleet.hosts["lxc-tailscale"];
    const copy = rec.byName("home-lxc-tailscale-agent-agent").inputs;
    expect(copy.remotePath).toBe("/usr/local/lib/meshfleet/meshfleet-agent.mjs");
    expect(copy.connection.host).toBe(host.address);
    const sw = rec.byName("home-lxc-tailscale-agent-switch");
    expect(sw.inputs.create).toContain("node /usr/local/lib/meshfleet/meshfleet-agent.mjs switch /var/lib/meshfleet/incoming/bundle.json --confirm-timeout 120");
    expect(sw.inputs.create).toContain("umask 077");
    // The bundle goes by stdin, as a secret, and is the host's real bundle with its key filled in.
    expect(JSON.stringify(sw.raw.stdin)).toContain("1b47061264138c4ac30d75fd1eb44270");
    const bundle = JSON.parse(sw.inputs.stdin);
    const keyCmd = rec.byName("home-key-lxc-tailscale-create");
    const key = JSON.parse(keyCmd.state.stdout).key as string;
    expect(bundle).toEqual(makeBundle(host, renderNftables(host), { "preauth:lxc-tailscale": key }));
    expect(secretRefs(host)).toEqual(["preauth:lxc-tailscale"]);
    // An unchanged host does nothing: the switch only re-runs when the bundle hash changes.
    expect(sw.inputs.triggers[0]).toBe(bundle.hash);
    const confirm = rec.byName("home-lxc-tailscale-agent-confirm").inputs;
    expect(confirm.create).toBe("node /usr/local/lib/meshfleet/meshfleet-agent.mjs confirm");
    expect(confirm.triggers).toEqual([bundle.hash]);
    expect(rec.byName("home-lxc-tailscale-agent-status").inputs.create).toMatch(/ status --json$/);
  });

  it("creates the user and the pre-auth keys with the headscale CLI in the container, keys replaced not edited", () => {
    const user = rec.byName("home-user-alice-create");
    expect(user.inputs.create).toBe("docker exec headscale headscale users create alice -o json");
    expect(user.inputs.delete).toBe("docker exec headscale headscale users destroy --name alice --force");
    expect(user.inputs.connection.host).toBe("203.0.113.10");
    expect(user.inputs.connection.port).toBe(56777);
    const laptopReq = fleet.preAuthKeys.find((k) => k.host === "laptop")!;
    const laptop = rec.byName("home-key-laptop-create");
    const flags = [laptopReq.reusable ? " --reusable" : "", laptopReq.ephemeral ? " --ephemeral" : ""].join("");
    expect(laptop.inputs.create).toBe(`docker exec headscale headscale preauthkeys create -u 1${flags} -e ${laptopReq.expiration} -o json`);
    const router = rec.byName("home-key-lxc-tailscale-create");
    expect(router.inputs.create).toMatch(/^docker exec headscale headscale preauthkeys create( -u \d+)? -e 90d --tags tag:router -o json$/);
    for (const k of rec.ofType(COMMAND).filter((r) => /^home-key-.*-create$/.test(r.name))) {
      expect(k.additionalSecretOutputs).toContain("stdout");
      expect(k.replaceOnChanges).toContain("create");
      expect(k.inputs.logging).toBe("none");
      expect(k.inputs.delete).toContain("preauthkeys expire --id");
    }
  });

  it("checks route approval on the coordinator after the node joined", () => {
    const chk = rec.byName("home-lxc-tailscale-routes-check").inputs;
    expect(chk.create).toContain("docker exec headscale headscale nodes list -o json");
    expect(chk.connection.host).toBe("203.0.113.10");
    expect(chk.create).toContain(`'"192.168.20.0/24"'`);
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
    expect(join.phone).toMatch(/--auth-key=hskey-auth-[0-9a-f]+/);
    expect(Object.keys(join)).toEqual(["phone"]);
  });
});
