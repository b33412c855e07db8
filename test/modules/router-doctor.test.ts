/**
 * Issue 18, doctor on a router, against the real kernel and the real
 * ethtool in a throwaway network namespace (no lab): forwarding is checked
 * per address family, for the families the node routes; UDP GRO forwarding
 * is checked on each interface a meshfleet-udp-gro unit sets it on, and
 * running the unit's own ExecStart turns the warning into ok.
 */
import { execa } from "execa";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { doctorScript, groFindings, groInterfaces, routedFamilies, routerFindings, type Finding } from "../../cli/commands/doctor.ts";
import { sections, type StackAccess } from "../../cli/fleet-hosts.ts";
import { evaluateFleet, type FleetSystem, type HostSystem } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

async function fleetOf(files: Record<string, string>): Promise<FleetSystem> {
  const { dir, cleanup } = writeFleet(files);
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    return r.fleet!;
  } finally {
    cleanup();
  }
}
const router = (extra: string) => BASE["router.yaml"].replace("subnet-router:\n", `subnet-router:\n${extra}`);
const show = (fs: Finding[], check: string) => fs.filter((f) => f.check === check).map((f) => `${f.level}: ${f.what}`);

describe("the families a router forwards", () => {
  it.each<[string, string[], boolean, boolean, string[]]>([
    ["IPv4 routes", ["192.168.8.0/24"], false, true, []],
    ["IPv6 routes only", ["fd00:8::/64"], false, false, ["fd00:8::/64"]],
    ["both", ["192.168.8.0/24", "fd00:8::/64"], false, true, ["fd00:8::/64"]],
    ["an exit node", [], true, true, ["::/0"]],
  ])("%s", (_n, routes, exit, v4, v6) => {
    const h = { tailscale: { advertiseRoutes: routes, advertiseExitNode: exit } } as unknown as HostSystem;
    expect(routedFamilies(h)).toEqual({ v4, v6 });
  });
});

describe("doctor's UDP GRO findings read the interfaces from the units", () => {
  it("one finding per unit interface; none of the old default-route guess", async () => {
    const f = await fleetOf({ "router.yaml": router("  lanInterface: br-lan\n") + "exit-node:\n  enable: true\n  wanInterface: wan0\n" });
    const h = f.hosts.router;
    expect(groInterfaces(h)).toEqual([
      { iface: "br-lan", unit: "meshfleet-udp-gro-br\\x2dlan.service" },
      { iface: "wan0", unit: "meshfleet-udp-gro-wan0.service" },
    ]);
    const script = doctorScript(h, { fleet: f } as unknown as StackAccess);
    expect(script).toMatch(/ethtool -k '?br-lan'? 2>&1/);
    expect(script).toContain("systemctl is-active 'meshfleet-udp-gro-br\\x2dlan.service'");
    expect(script).not.toContain("ip -4 route show default");
  });

  it.each<[string, string, string]>([
    ["on", "unit=active\nrx-gro-list: off\nrx-udp-gro-forwarding: on", "ok: eth0: rx-udp-gro-forwarding on, rx-gro-list off (meshfleet-udp-gro-eth0.service active)"],
    ["off", "unit=active\nrx-gro-list: off\nrx-udp-gro-forwarding: off", "warn: eth0: rx-udp-gro-forwarding is off (meshfleet-udp-gro-eth0.service is active)"],
    ["on with gro-list on", "unit=inactive\nrx-gro-list: on\nrx-udp-gro-forwarding: on", "warn: eth0: rx-udp-gro-forwarding is on and rx-gro-list is on (meshfleet-udp-gro-eth0.service is inactive)"],
    ["fixed off (driver)", "unit=active\nrx-gro-list: off [fixed]\nrx-udp-gro-forwarding: off [fixed]", "skip: eth0: the driver has no UDP GRO forwarding (off [fixed]); meshfleet-udp-gro-eth0.service tolerated it, nothing to do"],
    ["no such feature (kernel before 5.12)", "unit=active\nrx-gro-list: off", "skip: eth0: the driver has no UDP GRO forwarding (no rx-udp-gro-forwarding feature); meshfleet-udp-gro-eth0.service tolerated it, nothing to do"],
    ["no ethtool", "unit=inactive\nno-ethtool", "skip: eth0: ethtool is not installed (meshfleet-udp-gro-eth0.service is skipped without it)"],
    ["no such interface", "unit=active\nnetlink error: No such device", "warn: eth0: ethtool cannot read the interface (netlink error: No such device)"],
  ])("%s", async (_n, out, want) => {
    const f = await fleetOf({});
    expect(show(groFindings(f.hosts.router, { "gro-0": out }), "udp gro forwarding")).toEqual([want]);
  });

  it("a warning names the ethtool command as its fix, and the unit", async () => {
    const f = await fleetOf({});
    const [w] = groFindings(f.hosts.router, { "gro-0": "unit=active\nrx-udp-gro-forwarding: off" });
    expect(w.fixCommand).toEqual({ on: "router", command: "ethtool -K eth0 rx-udp-gro-forwarding on rx-gro-list off" });
    expect(w.fix).toContain("meshfleet-udp-gro-eth0.service applies it at every boot");
  });

  it("udpGroForwarding: false is said, not checked", async () => {
    const f = await fleetOf({ "router.yaml": router("  udpGroForwarding: false\n") });
    expect(show(groFindings(f.hosts.router, {}), "udp gro forwarding")).toEqual(["skip: udpGroForwarding is off for this router (no meshfleet-udp-gro unit)"]);
  });
});

const ethtool = "/usr/sbin/ethtool";
describe.skipIf(skipUnlessCi(!isRoot() ? NEEDS_ROOT : !existsSync(ethtool) && "ethtool is missing (apt-get install ethtool)"))("doctor's router checks on a real kernel (a throwaway network namespace, a veth as the LAN)", () => {
  const ns = `mf-doctor-${process.pid}`;
  const inNs = (cmd: string[]) => execa("ip", ["netns", "exec", ns, ...cmd], { all: true, reject: false });
  beforeAll(async () => {
    await execa("ip", ["netns", "add", ns]);
    await execa("ip", ["-n", ns, "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"]);
  });
  afterAll(async () => {
    await execa("ip", ["netns", "del", ns], { reject: false });
  });

  /** Doctor's own script for the host, run in the namespace, then its router findings. */
  async function doctorOn(f: FleetSystem, host: string): Promise<Finding[]> {
    const h = f.hosts[host];
    // Only the router part of the script (its STUN probes would wait for relays this namespace has no route to).
    const script = doctorScript(h, { fleet: { ...f, derpRegions: [] } } as unknown as StackAccess);
    const r = await inNs(["sh", "-c", script]);
    return routerFindings(h, sections(r.stdout));
  }

  it("an IPv4 router: IPv4 forwarding off fails, IPv6 is not needed; sysctl -w (the fix it names) makes it ok", async () => {
    const f = await fleetOf({ "router.yaml": router("  lanInterface: lan0\n") });
    await inNs(["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    let fs = await doctorOn(f, "router");
    expect(show(fs, "ip forwarding")).toEqual(["fail: net.ipv4.ip_forward is 0 on a subnet router", "skip: net.ipv6.conf.all.forwarding not needed: the node routes no IPv6"]);
    const fail = fs.find((x) => x.check === "ip forwarding" && x.level === "fail")!;
    await inNs(fail.fixCommand!.command.split(" "));
    fs = await doctorOn(f, "router");
    expect(show(fs, "ip forwarding")).toEqual(["ok: net.ipv4.ip_forward = 1", "skip: net.ipv6.conf.all.forwarding not needed: the node routes no IPv6"]);
  });

  it("an IPv6-only router: IPv4 is not needed, IPv6 forwarding off fails and its fix makes it ok", async () => {
    const f = await fleetOf({
      "router.yaml": "imports: [subnet-router]\naddress: 192.168.8.205\nlan: [fd00:8::/64]\nsubnet-router:\n  lanInterface: lan0\n  routes: [fd00:8::/64]\ntailscale:\n  tags: [tag:router]\n",
    });
    await inNs(["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
    await inNs(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=0"]);
    let fs = await doctorOn(f, "router");
    expect(show(fs, "ip forwarding")).toEqual(["skip: net.ipv4.ip_forward not needed: the node routes no IPv4", "fail: net.ipv6.conf.all.forwarding is 0 but the node routes IPv6 (fd00:8::/64)"]);
    await inNs(fs.find((x) => x.level === "fail")!.fixCommand!.command.split(" "));
    fs = await doctorOn(f, "router");
    expect(show(fs, "ip forwarding")).toEqual(["skip: net.ipv4.ip_forward not needed: the node routes no IPv4", "ok: net.ipv6.conf.all.forwarding = 1"]);
  });

  it("UDP GRO forwarding off on the LAN veth warns; the unit's own ExecStart turns it on and doctor says ok", async () => {
    const f = await fleetOf({ "router.yaml": router("  lanInterface: lan0\n") });
    await inNs([ethtool, "-K", "lan0", "rx-udp-gro-forwarding", "off"]);
    let fs = await doctorOn(f, "router");
    expect(show(fs, "udp gro forwarding")).toEqual([expect.stringMatching(/^warn: lan0: rx-udp-gro-forwarding is off \(meshfleet-udp-gro-lan0.service is \S+\)$/)]);
    const unit = f.hosts.router.units.find((u) => u.name === "meshfleet-udp-gro-lan0.service")!;
    const exec = /^ExecStart=-(.+)$/m.exec(unit.content)![1]!.split(" ");
    const r = await inNs(exec);
    expect(r.exitCode, r.all).toBe(0);
    fs = await doctorOn(f, "router");
    expect(show(fs, "udp gro forwarding")).toEqual([expect.stringMatching(/^ok: lan0: rx-udp-gro-forwarding on, rx-gro-list off/)]);
  });

  it("a unit on an interface the host does not have: the unit's ethtool fails (the unit tolerates it), doctor names the interface", async () => {
    const f = await fleetOf({ "router.yaml": router("  lanInterface: nope0\n") });
    const unit = f.hosts.router.units.find((u) => u.name === "meshfleet-udp-gro-nope0.service")!;
    const r = await inNs(/^ExecStart=-(.+)$/m.exec(unit.content)![1]!.split(" "));
    expect(r.exitCode).not.toBe(0);
    const fs = await doctorOn(f, "router");
    expect(show(fs, "udp gro forwarding")).toEqual([expect.stringMatching(/^warn: nope0: ethtool cannot read the interface \(.*(No such device|no device matches).*\)$/)]);
  });
});
