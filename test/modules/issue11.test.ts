/**
 * Issue 11's three bugs, each on a copy of the lab fleet, and what fixed
 * them: a host's roles and facts come from its evaluated config (whichever
 * way it was spelled), the route list is computed once by the option merge
 * and reported where it was written, and modules set each other's options
 * through the same priority merge as host files (so !mkForce wins over them).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { evaluateFleet, formatDiagnostics, type FleetSystem, type ModuleRegistry } from "../../core/index.ts";
import { defineModule } from "../../core/module.ts";
import { REGISTRY } from "../../modules/index.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** A copy of hosts/lab with files edited (a function of the old text), added (a string) or removed (null). */
function labCopy(edits: Record<string, string | null | ((old: string) => string)> = {}): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "mf-issue11-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, "lab");
  cpSync("hosts/lab", dir, { recursive: true });
  for (const [name, e] of Object.entries(edits)) {
    const file = path.join(dir, name);
    if (e === null) rmSync(file);
    else writeFileSync(file, typeof e === "string" ? e : e(readFileSync(file, "utf8")));
  }
  return dir;
}

async function evalOk(dir: string): Promise<FleetSystem> {
  const r = await evaluateFleet(REGISTRY, dir, "lab");
  expect(r.fleet, formatDiagnostics(r.diagnostics)).toBeDefined();
  return r.fleet!;
}

/** The host minus the fields that name its file (which differ between two copies). */
const comparable = (f: FleetSystem, host: string) => JSON.parse(JSON.stringify({ ...f.hosts[host], file: "", warnings: [] }));

describe("bug 1: subnet-router.enable without the import is a subnet router", () => {
  it("same host, roles and facts as with the import", async () => {
    const imported = await evalOk(labCopy());
    const enabled = await evalOk(labCopy({
      "lxc-tailscale.yaml": (t) => t.replace("imports: [subnet-router, ./_tools.yaml]", "imports: [./_tools.yaml]").replace("subnet-router:\n", "subnet-router:\n  enable: true\n"),
    }));
    const h = enabled.hosts["lxc-tailscale"];
    expect(h.roles).toEqual(["subnet-router"]);
    expect(h.services).toMatchObject({ subnetRouter: true, exitNode: false, tailnet: true, headscale: false, proxy: null, derp: null });
    expect(h.tailscale.advertiseRoutes).toEqual(["192.168.8.0/24"]);
    expect(h.sysctl["net.ipv4.ip_forward"]).toBe("1");
    // Whichever way it is spelled, the evaluated host is the same (so nothing downstream is replaced).
    expect(comparable(enabled, "lxc-tailscale")).toEqual(comparable(imported, "lxc-tailscale"));
    expect(imported.hosts["lxc-tailscale"].roles).toEqual(["subnet-router"]);
  });

  it("routes set through tailscale.advertiseRoutes alone make a subnet router too", async () => {
    const f = await evalOk(labCopy({
      "lxc-tailscale.yaml": (t) => t.replace("imports: [subnet-router, ./_tools.yaml]", "imports: [client, ./_tools.yaml]").replace("subnet-router:\n  routes: [192.168.8.0/24]\n", "").replace("tailscale:\n", "tailscale:\n  advertiseRoutes: [192.168.8.0/24]\n"),
    }));
    const h = f.hosts["lxc-tailscale"];
    expect(h.services.subnetRouter).toBe(true);
    expect(h.tailscale.advertiseRoutes).toEqual(["192.168.8.0/24"]);
    expect(h.firewall.forward).toBe(true);
    expect(h.probes).toContainEqual({ name: "routes advertised", kind: "routes-advertised", routes: ["192.168.8.0/24"] });
    expect(f.autoApprovers.routes["192.168.8.0/24"]).toEqual(["tag:router"]);
  });

  it("a subnet router whose host turns tailscale off is refused at tailscale.enable", async () => {
    const r = await evaluateFleet(REGISTRY, labCopy({ "lxc-tailscale.yaml": (t) => t.replace("tailscale:\n", "tailscale:\n  enable: false\n") }), "lab");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toMatchObject([
      { path: "tailscale.enable", file: expect.stringMatching(/lxc-tailscale\.yaml$/), expected: "true with subnet-router (it advertises to the tailnet)" },
    ]);
  });

  it("a plain client has no router facts", async () => {
    const f = await evalOk(labCopy());
    expect(f.hosts.laptop.roles).toEqual(["client"]);
    expect(f.hosts.laptop.services).toEqual({ headscale: false, proxy: null, derp: null, subnetRouter: false, exitNode: false, tailnet: true, nodeExporter: false });
  });
});

describe("bug 2: derp.enable without the derp-relay import runs a DERP relay", () => {
  it("same relay, region and facts as with the import", async () => {
    const imported = await evalOk(labCopy());
    const enabled = await evalOk(labCopy({
      "vps.yaml": (t) => t.replace("imports: [coordinator, reverse-proxy, derp-relay, client, ./_tools.yaml]", "imports: [coordinator, reverse-proxy, client, ./_tools.yaml]").replace("derp:\n", "derp:\n  enable: true\n"),
    }));
    const vps = enabled.hosts.vps;
    expect(vps.services).toMatchObject({ headscale: true, proxy: "caddy", derp: "standalone", tailnet: true });
    expect(vps.roles).toEqual(["coordinator", "reverse-proxy", "derp-relay", "client"]);
    expect(enabled.derpRegions).toEqual(imported.derpRegions);
    expect(enabled.derpRegions.map((r) => r.nodes.map((n) => n.name))).toEqual([["900-vps"]]);
    expect(comparable(enabled, "vps")).toEqual(comparable(imported, "vps"));
  });

  it("the embedded relay is a fact too (home fleet: nginx in front, headscale's relay)", async () => {
    const r = await evaluateFleet(REGISTRY, "hosts/home", "home");
    expect(r.fleet!.hosts.vps.services).toMatchObject({ headscale: true, proxy: "nginx", derp: "embedded" });
    expect(r.fleet!.hosts["lxc-tailscale"].services).toMatchObject({ subnetRouter: true, derp: null, proxy: null });
    expect(r.fleet!.hosts.exit.services).toMatchObject({ exitNode: true, subnetRouter: false });
    expect(r.fleet!.hosts.exit.roles).toEqual(["exit-node"]);
  });
});

describe("bug 3: an overlapping route is reported where it was written", () => {
  const router2 = (tailscale: string, extra = "") =>
    `imports: [client]\naddress: 172.31.240.206\nlan: [192.168.0.0/16, 10.9.0.0/24]\ntailscale:\n  tags: [tag:router]\n${tailscale}${extra}`;

  async function overlapDiags(dir: string) {
    const r = await evaluateFleet(REGISTRY, dir, "lab");
    expect(r.fleet).toBeUndefined();
    return r.diagnostics.filter((d) => d.expected.startsWith("a route that does not overlap"));
  }

  it("through tailscale.advertiseRoutes: at tailscale.advertiseRoutes[i] of that file", async () => {
    const dir = labCopy({ "router2.yaml": router2("  advertiseRoutes: [10.9.0.0/24, 192.168.0.0/16]\n") });
    const d = await overlapDiags(dir);
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ path: "tailscale.advertiseRoutes[1]", file: expect.stringMatching(/router2\.yaml$/) });
    expect(d[0].found).toContain("overlaps 192.168.8.0/24 from lxc-tailscale");
  });

  it("through subnet-router.routes next to tailscale.advertiseRoutes: at subnet-router.routes[i]", async () => {
    const dir = labCopy({
      "router2.yaml": router2("  advertiseRoutes: [10.9.0.0/24]\n", "subnet-router:\n  enable: true\n  routes: [192.168.0.0/16]\n"),
    });
    const d = await overlapDiags(dir);
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ path: "subnet-router.routes[0]", file: expect.stringMatching(/router2\.yaml$/) });
  });

  it("through an imported file: that file, counted within its own list", async () => {
    const dir = labCopy({
      "_routes.yaml": "tailscale:\n  advertiseRoutes: [192.168.0.0/16]\n",
      "router2.yaml": router2("  advertiseRoutes: [10.9.0.0/24]\n").replace("imports: [client]", "imports: [client, ./_routes.yaml]"),
    });
    const d = await overlapDiags(dir);
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ path: "tailscale.advertiseRoutes[0]", file: expect.stringMatching(/_routes\.yaml$/) });
  });

  it("a route outside the LAN set through tailscale is checked like a subnet-router one", async () => {
    const r = await evaluateFleet(REGISTRY, labCopy({ "router2.yaml": router2("  advertiseRoutes: [172.16.0.0/24]\n") }), "lab");
    const d = r.diagnostics.filter((x) => x.expected.startsWith("a subnet inside the host's LAN"));
    expect(d).toMatchObject([{ path: "tailscale.advertiseRoutes[0]", file: expect.stringMatching(/router2\.yaml$/) }]);
  });
});

describe("modules set each other's options through the priority merge", () => {
  it("!mkForce in a host file wins over a module's setting (subnet-router -> tailscale.advertiseRoutes)", async () => {
    const f = await evalOk(labCopy({
      "lxc-tailscale.yaml": (t) => t.replace("tailscale:\n", "tailscale:\n  advertiseRoutes: !mkForce [192.168.8.0/25]\n"),
    }));
    expect(f.hosts["lxc-tailscale"].tailscale.advertiseRoutes).toEqual(["192.168.8.0/25"]);
    expect(f.hosts["lxc-tailscale"].tailscale.upArgs).toContain("--advertise-routes=192.168.8.0/25");
  });

  it("tailscale flags are built once, by the bundle contract, from typed settings", async () => {
    const f = await evalOk(labCopy({ "laptop.yaml": (t) => t.replace("tailscale:\n", "tailscale:\n  netfilterMode: nodivert\n  extraUpFlags: [--operator=alice]\n") }));
    const t = f.hosts.laptop.tailscale;
    expect(t).toMatchObject({ netfilterMode: "nodivert", extraUpFlags: ["--operator=alice"] });
    expect(t.upArgs).toEqual(expect.arrayContaining(["--netfilter-mode=nodivert", "--operator=alice"]));
    expect(t.setArgs).toContain("--netfilter-mode=nodivert");
    expect(t.setArgs).not.toContain("--operator=alice");
  });

  it("!mkForce false on tailscale.advertiseExitNode beats the exit-node module", async () => {
    const r = await evaluateFleet(REGISTRY, "hosts/home", "home");
    expect(r.fleet!.hosts.exit.tailscale.advertiseExitNode).toBe(true);
    const root = mkdtempSync(path.join(os.tmpdir(), "mf-issue11-"));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    cpSync("hosts/home", path.join(root, "home"), { recursive: true });
    const file = path.join(root, "home", "exit.yaml");
    writeFileSync(file, readFileSync(file, "utf8").replace("tailscale:\n", "tailscale:\n  advertiseExitNode: !mkForce false\n"));
    const forced = await evaluateFleet(REGISTRY, path.join(root, "home"), "home");
    expect(forced.fleet, formatDiagnostics(forced.diagnostics)).toBeDefined();
    expect(forced.fleet!.hosts.exit.tailscale.advertiseExitNode).toBe(false);
    expect(forced.fleet!.hosts.exit.services.exitNode).toBe(false);
    expect(forced.fleet!.autoApprovers.exitNode).toEqual([]);
  });

  it("a plain value that disagrees with a module's setting is a conflict, reported in the host file", async () => {
    const conflict = await evaluateFleet(REGISTRY, labCopy({
      "laptop.yaml": (t) => t.replace("tailscale:\n", "tailscale:\n  advertiseExitNode: false\n") + "exit-node:\n  enable: true\n",
    }), "lab");
    expect(conflict.fleet).toBeUndefined();
    const d = conflict.diagnostics.filter((x) => x.severity === "error");
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ path: "tailscale.advertiseExitNode", file: expect.stringMatching(/laptop\.yaml$/), found: "true here (set by the exit-node module)" });
  });
});

describe("sysctl through the priority merge (kernel.sysctl)", () => {
  it("subnet-router sets forwarding as kernel.sysctl; !mkForce in the host file wins", async () => {
    const plain = await evalOk(labCopy());
    expect(plain.hosts["lxc-tailscale"].sysctl).toEqual({ "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1" });
    const forced = await evalOk(labCopy({
      "lxc-tailscale.yaml": (t) => t + 'kernel:\n  sysctl:\n    net.ipv6.conf.all.forwarding: !mkForce "0"\n    vm.swappiness: "10"\n',
    }));
    expect(forced.hosts["lxc-tailscale"].sysctl).toEqual({ "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "0", "vm.swappiness": "10" });
  });

  it("a plain value against a module's: a conflict at the sysctl key, in the host file", async () => {
    const r = await evaluateFleet(REGISTRY, labCopy({
      "lxc-tailscale.yaml": (t) => t + 'kernel:\n  sysctl:\n    net.ipv4.ip_forward: "0"\n',
    }), "lab");
    expect(r.fleet).toBeUndefined();
    expect(r.diagnostics.filter((d) => d.severity === "error")).toMatchObject([
      { path: "kernel.sysctl.net.ipv4.ip_forward", file: expect.stringMatching(/lxc-tailscale\.yaml$/), found: '"1" here (set by the subnet-router module)' },
    ]);
  });

  it("routes spelled through tailscale alone turn forwarding on too (the same route on two routers is HA)", async () => {
    const f = await evalOk(labCopy({
      "laptop.yaml": (t) => t.replace("tailscale:\n", "tailscale:\n  advertiseRoutes: [192.168.8.0/24]\n") + "lan: [192.168.8.0/24]\n",
    }));
    expect(f.hosts.laptop.sysctl["net.ipv4.ip_forward"]).toBe("1");
    expect(f.hosts.laptop.services.subnetRouter).toBe(true);
  });
});

describe("the agent's own units come from the meshfleet-agent module", () => {
  it("meshfleet-agent.nodePath is the node the units run (the configurable node binary)", async () => {
    const f = await evalOk(labCopy({ "laptop.yaml": (t) => t + "meshfleet-agent:\n  nodePath: /usr/bin/nodejs\n" }));
    const laptop = f.hosts.laptop;
    expect(laptop.agentNodePath).toBe("/usr/bin/nodejs");
    const execs = laptop.units.flatMap((u) => u.content.split("\n").filter((l) => l.startsWith("ExecStart=")));
    expect(execs.filter((l) => l.includes("meshfleet-agent.mjs"))).toEqual([
      "ExecStart=/usr/bin/nodejs /usr/local/lib/meshfleet/meshfleet-agent.mjs metrics",
      "ExecStart=/usr/bin/nodejs /usr/local/lib/meshfleet/meshfleet-agent.mjs boot",
      "ExecStart=/usr/bin/nodejs /usr/local/lib/meshfleet/meshfleet-agent.mjs boot-firewall",
    ]);
  });

  it("host-side enforcement: the rules and the peer timer come with the host, not added afterwards", async () => {
    const f = await evalOk(labCopy());
    const router = f.hosts["lxc-tailscale"];
    expect(router.units.map((u) => u.name)).toEqual(expect.arrayContaining(["meshfleet-boot.service", "meshfleet-peers.service", "meshfleet-peers.timer"]));
    expect(router.firewall.tailnet.length).toBeGreaterThan(0);
    expect(Object.values(router.firewall.setMembers).flat().every((n) => n in f.hosts)).toBe(true);
    expect(f.hosts.laptop.units.map((u) => u.name)).not.toContain("meshfleet-peers.timer");
  });

  it("evaluation is repeatable: the same folder gives the same fleet", async () => {
    const a = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
    const b = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
    expect(JSON.stringify(a.fleet)).toEqual(JSON.stringify(b.fleet));
  });

  it("the caller's registry is what evaluation knows: a module added there is evaluated like the others", async () => {
    const motd = defineModule({
      name: "motd",
      description: "A message of the day.",
      options: z.object({ text: z.string().default("").describe("The message.") }).strict(),
      config: (o) => (o.text ? { files: [{ path: "/etc/motd", content: `${o.text}\n`, mode: "0644", owner: "root", group: "root" }] } : {}),
    });
    const registry: ModuleRegistry = { ...REGISTRY, modules: [...REGISTRY.modules, motd] };
    const dir = labCopy({ "laptop.yaml": (t) => t + "motd:\n  text: hello\n" });
    const r = await evaluateFleet(registry, dir, "lab");
    expect(r.fleet?.hosts.laptop.files.find((f) => f.path === "/etc/motd")?.content).toBe("hello\n");
    // The default registry does not know it: the same file is refused, naming the option.
    const refused = await evaluateFleet(REGISTRY, dir, "lab");
    expect(refused.diagnostics.find((d) => d.severity === "error")).toMatchObject({ path: "motd", found: 'unknown option "motd"' });
  });

  it("without the registry, evaluation says what to pass", async () => {
    await expect(evaluateFleet(undefined as never, "hosts/lab", "lab")).rejects.toThrow(/module registry/);
    await expect(evaluateFleet("hosts/lab" as never, "lab")).rejects.toThrow(/REGISTRY/);
  });
});
