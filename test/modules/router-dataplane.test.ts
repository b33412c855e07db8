/**
 * Issue 18, a router whose data plane works: MSS clamping of forwarded TCP
 * in the host's own nft table (loaded by the real nft in a throwaway network
 * namespace), UDP GRO forwarding as a unit per interface (checked by the
 * real systemd-analyze), and a Proxmox node that routes a subnet holding its
 * own containers refused (tailscale#12407). Each new option has a bad-input
 * case with its exact diagnostic.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consistencyProblems, type Bundle, type Firewall } from "../../contract/bundle.ts";
import { nftRuleText, nftRuleset, nftScript } from "../../contract/nftables.ts";
import { evaluateFleet, type FleetSystem } from "../../core/index.ts";
import { hostFirewall } from "../../core/render.ts";
import { REGISTRY } from "../../modules/index.ts";
import { groUnit, groUnitName, systemdEscape } from "../../modules/routing.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

const cleanups: (() => void)[] = [];
afterAll(() => cleanups.forEach((c) => c()));

async function evaluate(files: Record<string, string>) {
  const { dir, cleanup } = writeFleet(files);
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    const strip = (s: string) => s.split(dir).join("<fleet>");
    return { fleet: r.fleet, diagnostics: r.diagnostics.map((d) => ({ ...d, file: strip(d.file), fix: strip(d.fix) })) };
  } finally {
    cleanup();
  }
}
const errors = <D extends { severity: string }>(r: { diagnostics: D[] }) => r.diagnostics.filter((d) => d.severity === "error");
async function fleetOf(files: Record<string, string>): Promise<FleetSystem> {
  const r = await evaluate(files);
  expect(errors(r)).toEqual([]);
  return r.fleet!;
}

const router = BASE["router.yaml"];
const exitNode = (extra = "") => `imports: [exit-node]\naddress: 10.0.0.5\ntailscale:\n  user: alice\n${extra}`;
const CLAMP = "tcp flags syn tcp option maxseg size set rt mtu";

describe("MSS clamping of forwarded TCP", () => {
  it("a subnet router's table gets a forward chain that clamps SYNs to the route MTU and decides nothing else", async () => {
    const f = await fleetOf({});
    const fw = hostFirewall(f.hosts.router.firewall)!;
    expect(fw.chains.find((c) => c.name === "forward")).toEqual({
      name: "forward",
      hook: { type: "filter", hook: "forward", priority: "filter", policy: "accept" },
      rules: [{ tcpMss: "rt-mtu", comment: "clamp TCP MSS to the route MTU" }],
    });
    expect(nftRuleset(fw)).toContain(
      `  chain forward {\n    type filter hook forward priority filter; policy accept;\n    ${CLAMP} comment "clamp TCP MSS to the route MTU"\n  }\n`,
    );
    // A host that routes nothing forwards nothing: no forward chain.
    expect(hostFirewall(f.hosts.laptop.firewall)!.chains.map((c) => c.name)).toEqual(["input"]);
  });

  it("an exit node clamps too; clampMss: false on either leaves the chain out", async () => {
    const f = await fleetOf({ "laptop.yaml": exitNode() });
    expect(hostFirewall(f.hosts.laptop.firewall)!.chains.map((c) => c.name)).toEqual(["input", "forward"]);
    const off = await fleetOf({ "laptop.yaml": exitNode("exit-node:\n  clampMss: false\n"), "router.yaml": router.replace("subnet-router:\n", "subnet-router:\n  clampMss: false\n") });
    expect(hostFirewall(off.hosts.laptop.firewall)!.chains.map((c) => c.name)).toEqual(["input"]);
    expect(hostFirewall(off.hosts.router.firewall)!.chains.map((c) => c.name)).toEqual(["input"]);
  });

  it("clampMss with the firewall off is a warning (the clamp lives in the table the firewall loads)", async () => {
    const r = await evaluate({ "router.yaml": router + "firewall:\n  enable: false\n" });
    expect(errors(r)).toEqual([]);
    expect(r.diagnostics.filter((d) => d.path.endsWith("clampMss"))).toEqual([
      {
        severity: "warning",
        file: "<fleet>/router.yaml",
        path: "subnet-router.clampMss",
        expected: "firewall.enable: true (the MSS clamp is a chain of the host's meshfleet nft table)",
        found: "firewall.enable: false, so TCP through this router is not clamped",
        fix: "remove firewall.enable: false, or set subnet-router.clampMss: false and clamp MSS yourself",
      },
    ]);
    const quiet = await evaluate({ "router.yaml": router.replace("subnet-router:\n", "subnet-router:\n  clampMss: false\n") + "firewall:\n  enable: false\n" });
    expect(quiet.diagnostics.filter((d) => d.path.endsWith("clampMss"))).toEqual([]);
  });

  it("the contract refuses a clamp where the kernel has no route, a clamp on UDP, and a rule that does nothing", () => {
    const fw: Firewall = {
      family: "inet",
      table: "meshfleet",
      sets: [],
      chains: [
        { name: "input", hook: { type: "filter", hook: "input", priority: "filter", policy: "drop" }, rules: [{ tcpMss: "rt-mtu" }, {}] },
        { name: "forward", hook: { type: "filter", hook: "forward", priority: "filter", policy: "accept" }, rules: [{ l4: { proto: "udp" }, tcpMss: "rt-mtu" }, { counter: true }] },
      ],
    };
    const b = { format: 3, host: "r", hash: "", files: [], sysctl: {}, units: [], firewall: fw, tailscale: null, probes: [], metrics: { enable: false, textfileDir: "" }, bestEffort: [] } as unknown as Bundle;
    expect(consistencyProblems(b, false)).toEqual([
      "firewall.chains[0].rules[0]: clamps the TCP MSS in chain input, which is not hooked on forward or output",
      "firewall.chains[0].rules[1]: has no verdict and no statement (tcpMss, counter): it does nothing",
      "firewall.chains[1].rules[0]: clamps the TCP MSS of udp packets",
    ]);
    expect(nftRuleText({ l4: { proto: "tcp", dports: [443] }, tcpMss: "rt-mtu", counter: true })).toBe(`tcp dport 443 ${CLAMP} counter`);
  });

  it("clampMss that is not a boolean is refused with its path", async () => {
    const r = await evaluate({ "router.yaml": router.replace("subnet-router:\n", "subnet-router:\n  clampMss: sometimes\n") });
    expect(errors(r).map((d) => `${d.file}: ${d.path}: expected ${d.expected}, found ${d.found}`)).toEqual([
      "<fleet>/router.yaml: subnet-router.clampMss: expected a boolean, found \"sometimes\"",
    ]);
    const e = await evaluate({ "laptop.yaml": exitNode("exit-node:\n  clampMss: 1\n") });
    expect(errors(e).map((d) => `${d.file}: ${d.path}: expected ${d.expected}, found ${d.found}`)).toEqual(["<fleet>/laptop.yaml: exit-node.clampMss: expected a boolean, found 1"]);
  });
});

describe.skipIf(skipUnlessCi(!isRoot() && NEEDS_ROOT))("the real nft takes the clamp (as root, in a throwaway network namespace)", () => {
  const ns = `mf-router-${process.pid}`;
  const nft = (input: string, args = ["-f", "-"]) => execa("ip", ["netns", "exec", ns, "nft", ...args], { input, all: true, reject: false });
  beforeAll(async () => {
    await execa("ip", ["netns", "add", ns]);
  });
  afterAll(async () => {
    await execa("ip", ["netns", "del", ns], { reject: false });
  });

  it("nft -c accepts the subnet router's and the exit node's table; loaded, it lists the clamp back; the bytecode sets the MSS option from the route", async () => {
    const f = await fleetOf({ "laptop.yaml": exitNode() });
    for (const h of ["router", "laptop"]) {
      const script = nftScript(hostFirewall(f.hosts[h].firewall));
      const check = await nft(script, ["-c", "-f", "-"]);
      expect(check.all, h).toBe("");
      expect(check.exitCode, h).toBe(0);
    }
    const script = nftScript(hostFirewall(f.hosts.router.firewall));
    const loaded = await nft(script);
    expect(loaded.all).toBe("");
    const listed = (await nft("", ["list", "chain", "inet", "meshfleet", "forward"])).stdout;
    expect(listed).toMatch(/type filter hook forward priority filter; policy accept;/);
    expect(listed).toContain(`${CLAMP} comment "clamp TCP MSS to the route MTU"`);
    // The kernel's view: the TCP flags test, then the route's MSS written into the MSS option (kind 2).
    const debug = await nft(script, ["--debug=netlink", "-c", "-f", "-"]);
    expect(debug.exitCode).toBe(0);
    expect(debug.stdout).toMatch(/\[ rt load tcpmss => reg 1 \]/);
    expect(debug.stdout).toMatch(/\[ exthdr write tcpopt reg 1 => 2b @ 2 \+ 2 \]/);
  });

  it("the kernel refuses the clamp in an input chain when it loads it (nft -c does not see it: the contract's rule catches it before)", async () => {
    const bad = "table inet mf_probe {\n  chain input {\n    type filter hook input priority filter; policy accept;\n    " + CLAMP + "\n  }\n}\n";
    expect((await nft(bad, ["-c", "-f", "-"])).exitCode).toBe(0);
    const r = await nft(bad);
    expect(r.exitCode).toBe(1);
    expect(r.all).toContain("Could not process rule: Operation not supported");
  });
});

describe("UDP GRO forwarding: a unit per interface", () => {
  it("the subnet router's LAN interface gets its unit (no best-effort command any more)", async () => {
    const f = await fleetOf({});
    const u = f.hosts.router.units.find((x) => x.name === "meshfleet-udp-gro-eth0.service")!;
    expect(u).toEqual(groUnit("eth0"));
    expect(u.content).toContain("ExecStart=-/usr/sbin/ethtool -K eth0 rx-udp-gro-forwarding on rx-gro-list off\n");
    expect(u.content).toContain("ConditionFileIsExecutable=/usr/sbin/ethtool\n");
    expect(f.hosts.router.bestEffort.filter((c) => c.argv[0] === "ethtool")).toEqual([]);
  });

  it("one unit when a subnet router is also an exit node on the same interface; two on two interfaces; none when off", async () => {
    const both = router + "exit-node:\n  enable: true\n";
    const one = await fleetOf({ "router.yaml": both });
    expect(one.hosts.router.units.filter((u) => u.name.startsWith("meshfleet-udp-gro-")).map((u) => u.name)).toEqual(["meshfleet-udp-gro-eth0.service"]);
    const two = await fleetOf({ "router.yaml": both.replace("exit-node:\n", "exit-node:\n  wanInterface: br-wan\n") });
    expect(two.hosts.router.units.filter((u) => u.name.startsWith("meshfleet-udp-gro-")).map((u) => u.name)).toEqual(["meshfleet-udp-gro-eth0.service", "meshfleet-udp-gro-br\\x2dwan.service"]);
    const off = await fleetOf({ "router.yaml": router.replace("subnet-router:\n", "subnet-router:\n  udpGroForwarding: false\n") });
    expect(off.hosts.router.units.filter((u) => u.name.startsWith("meshfleet-udp-gro-"))).toEqual([]);
  });

  it("interface names are escaped for unit names as systemd-escape does", () => {
    expect(systemdEscape("eth0")).toBe("eth0");
    expect(systemdEscape("br-lan")).toBe("br\\x2dlan");
    expect(systemdEscape("enp1s0.100")).toBe("enp1s0.100");
    expect(groUnitName("wg@x")).toBe("meshfleet-udp-gro-wg\\x40x.service");
    for (const i of ["br-lan", "enp1s0.100", "wg@x"]) {
      const r = spawnSync("systemd-escape", [i], { encoding: "utf8" });
      if (r.status === 0) expect(systemdEscape(i)).toBe(r.stdout.trim());
    }
    // systemd specifiers and variables stay literal in ExecStart=.
    expect(groUnit("a%b").content).toContain("ethtool -K a%%b rx-udp-gro-forwarding");
  });

  it("a lanInterface that is not an interface name is refused with its path", async () => {
    const r = await evaluate({ "router.yaml": router.replace("subnet-router:\n", "subnet-router:\n  lanInterface: eth0/1\n") });
    expect(errors(r).map((d) => `${d.file}: ${d.path}: expected ${d.expected}, found ${d.found}. Fix: ${d.fix}`)).toEqual([
      "<fleet>/router.yaml: subnet-router.lanInterface: expected a network interface name such as eth0 (at most 15 characters, no / : or spaces), found \"eth0/1\". Fix: set subnet-router.lanInterface to the interface's name as `ip link` shows it",
    ]);
  });

  const analyze = "/usr/bin/systemd-analyze";
  it.skipIf(skipUnlessCi(!existsSync(analyze) && "systemd-analyze is missing (apt-get install systemd)"))("systemd-analyze verify accepts the units (eth0, and a name that needs escaping)", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "mf-gro-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    for (const iface of ["eth0", "br-lan"]) {
      const unit = groUnit(iface);
      const file = path.join(dir, unit.name);
      writeFileSync(file, unit.content);
      const r = spawnSync(analyze, ["verify", file], { encoding: "utf8", timeout: 30_000 });
      // Lines about the host's other units are not this unit's; anything naming it is.
      const ours = `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.includes(unit.name) || l.includes("ethtool"));
      expect(ours, r.stderr).toEqual([]);
      expect(r.status, r.stderr).toBe(0);
    }
  }, 60_000);
});

describe("a Proxmox node as the router of its own containers (tailscale#12407)", () => {
  const node = "imports: [subnet-router]\naddress: 192.168.8.2\nlan: [192.168.8.0/24]\nsubnet-router:\n  routes: [192.168.8.0/24]\ntailscale:\n  tags: [tag:router]\n";
  const ct = "imports: [client, proxmox-lxc]\naddress: 192.168.8.105\nlxc:\n  ctid: 205\n  proxmoxHost: root@192.168.8.2\ntailscale:\n  user: alice\n";
  it("is refused at the route, naming the container, with both fixes", async () => {
    const r = await evaluate({ "router.yaml": node, "nas.yaml": ct });
    expect(errors(r)).toEqual([
      {
        severity: "error",
        file: "<fleet>/router.yaml",
        path: "subnet-router.routes[0]",
        expected: "a subnet router that is not the Proxmox node of containers inside the route it advertises (tailscale#12407: traffic to them is masqueraded twice and dropped)",
        found: "192.168.8.0/24, which holds this Proxmox node's own container nas (192.168.8.105, CT 205), with tailscale.snatSubnetRoutes on",
        fix: "run the subnet router inside a container on the node instead (imports: [subnet-router, proxmox-lxc], as hosts/home/lxc-tailscale.yaml), or set tailscale.snatSubnetRoutes: false on router and route the tailnet (100.64.0.0/10) to 192.168.8.2 on the LAN's gateway",
      },
    ]);
  });

  it("passes with snatSubnetRoutes off, with the container outside the route, or on another node", async () => {
    expect(errors(await evaluate({ "router.yaml": node.replace("tailscale:\n", "tailscale:\n  snatSubnetRoutes: false\n"), "nas.yaml": ct }))).toEqual([]);
    expect(errors(await evaluate({ "router.yaml": node, "nas.yaml": ct.replace("proxmoxHost: root@192.168.8.2", "proxmoxHost: root@192.168.8.3") }))).toEqual([]);
    expect(errors(await evaluate({ "router.yaml": node.replace("lan: [192.168.8.0/24]", "lan: [192.168.8.0/24, 192.168.20.0/24]").replace("routes: [192.168.8.0/24]", "routes: [192.168.20.0/24]"), "nas.yaml": ct }))).toEqual([]);
  });
});
