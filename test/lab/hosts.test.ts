/**
 * The lab's hosts for real: boot two of them (vps on the "internet", laptop
 * behind its NAT), log in over SSH with the lab's key (host keys checked),
 * prove the things tailscaled and the agent need work inside (nftables, TUN,
 * forwarding sysctls in the host's own namespace), reach vps from laptop
 * through the NAT, then tear down and prove nothing is left.
 * Needs root (namespaces, mounts, nspawn).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NEEDS_ROOT, skipUnlessCi } from "./ci-gate.ts";
import { lab, type UpResult } from "../../lab/hosts/index.ts";
import { networkPlan } from "../../lab/hosts/network.ts";
import { runDir, stateFile } from "../../lab/hosts/paths.ts";
import { findHost, labTopology, MAX_INSTANCE } from "../../lab/topology.ts";

// An instance of its own: never touches a developer's lab (0) or the peers test (9).
const L = lab(8);
const isRoot = process.getuid?.() === 0;

function labNetns(): string[] {
  return existsSync("/run/netns") ? readdirSync("/run/netns").filter((n) => n.startsWith(L.topology.prefix)) : [];
}

function labMounts(): string[] {
  const dir = runDir(L.instance);
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(dir));
}

/** Processes started with one of this lab's namespaces (read only: used to check, never to kill). */
function labNspawnPids(): number[] {
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
      if (argv[0]?.endsWith("systemd-nspawn") && argv.some((a) => a.startsWith(`--network-namespace-path=/run/netns/${L.topology.prefix}`))) {
        pids.push(Number(d));
      }
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

function aliveNotZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return false;
  }
}

async function ok(host: string, cmd: string): Promise<string> {
  const r = await L.sshExec(host, cmd, { timeoutMs: 30_000 });
  if (r.code !== 0) throw new Error(`${host}: ${cmd}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

describe("lab topology and network plan (pure)", () => {
  const inRange = (ip: string, net: string) => ip.split(".").slice(0, 3).join(".") === net;
  it.each([0, 5, 8, MAX_INSTANCE])("instance %i: names fit the kernel, carry the lab prefix, addresses stay in lab ranges", (i) => {
    const topo = labTopology(i);
    const steps = networkPlan(topo, topo.hosts);
    const ifnames = steps.flatMap((s) => {
      const a = s.argv;
      const at = a.indexOf("add");
      return at >= 0 && a[at + 2] === "type" ? [a[at + 1]!, ...(a.includes("peer") ? [a[a.indexOf("name") + 1]!] : [])] : [];
    });
    expect(ifnames.length).toBeGreaterThan(10);
    for (const n of ifnames) expect(n.length, n).toBeLessThanOrEqual(15);
    // Whatever is made in the root namespace or as a netns carries the instance prefix.
    for (const s of steps) {
      if (s.makes?.kind === "netns" || s.makes?.kind === "link") expect(s.makes.name.startsWith(topo.prefix), s.makes.name).toBe(true);
    }
    // The machine's own network (192.0.2.0/24 here) is never used inside the lab.
    const addrs = topo.hosts.flatMap((h) => [...h.links.map((l) => l.address), ...h.bridges.flatMap((b) => b.addresses), ...(h.mgmt ? [h.mgmt] : [])]);
    for (const a of addrs) expect(inRange(a.split("/")[0]!, "192.0.2"), a).toBe(false);
    // Only routers forward, and nothing points a default route at the mgmt link.
    expect(steps.filter((s) => s.argv.includes("default")).every((s) => !s.argv.includes("mgmt0"))).toBe(true);
    expect(topo.hosts.filter((h) => h.forwarding).map((h) => h.name).sort()).toEqual(["homenat", "internet", "laptopnat"]);
  });

  it("gives each instance its own mgmt subnet and prefix", () => {
    const seen = new Set<string>();
    for (let i = 0; i <= MAX_INSTANCE; i++) {
      const t = labTopology(i);
      expect(seen.has(t.mgmtSubnet)).toBe(false);
      seen.add(t.mgmtSubnet);
    }
    expect(() => labTopology(10)).toThrow(/expected an integer 0\.\.9, found 10/);
  });
});

describe.skipIf(skipUnlessCi(!isRoot && NEEDS_ROOT))("lab hosts (real nspawn hosts)", () => {
  let up: UpResult;

  beforeAll(async () => {
    await L.down(); // a previous run killed half-way leaves records; finish them first
    up = await L.up({ hosts: ["vps", "laptop"], log: (l) => process.stderr.write(`[lab8] ${l}\n`) });
  }, 600_000);

  afterAll(async () => {
    await L.down();
  }, 120_000);

  it("boots exactly the asked hosts and the routers on their paths", () => {
    const upHosts = up.hosts.filter((h) => h.state === "up").map((h) => h.name).sort();
    expect(upHosts).toEqual(["internet", "laptop", "laptopnat", "vps"]);
    expect(Object.keys(up.bootMs).sort()).toEqual(["laptop", "vps"]);
    expect(labNspawnPids()).toHaveLength(2);
  });

  it("logs in over SSH with the lab key, host keys checked", async () => {
    expect((await ok("vps", "hostname")).trim()).toBe("vps");
    expect((await ok("laptop", "hostname")).trim()).toBe("laptop");
    // known_hosts holds one line per booted host, and a wrong key is refused.
    const known = readFileSync(L.knownHostsPath, "utf8").trim().split("\n");
    expect(known.map((l) => l.split(" ")[0]).sort()).toEqual([findHost(L.topology, "laptop").mgmt, findHost(L.topology, "vps").mgmt].sort());
  }, 60_000);

  it("refuses a host whose key is not the recorded one", async () => {
    const vpsMgmt = findHost(L.topology, "vps").mgmt!;
    const args = L.sshArgs("vps").map((a) => (a.startsWith("UserKnownHostsFile=") ? "UserKnownHostsFile=/dev/null" : a));
    const { execa } = await import("execa");
    const r = await execa("ssh", [...args, "true"], { reject: false });
    expect(r.exitCode).not.toBe(0);
    expect(String(r.stderr)).toMatch(/Host key verification failed|No .*host key is known/i);
    expect(args.at(-1)).toBe(`root@${vpsMgmt}`);
  }, 30_000);

  it("runs nftables inside a host", async () => {
    const out = await ok("vps", "nft add table inet labtest && nft list tables");
    expect(out).toContain("table inet labtest");
    // The host's ruleset is its own: laptop does not see vps's table.
    expect(await ok("laptop", "nft list tables")).not.toContain("labtest");
  }, 30_000);

  it("creates a TUN device inside a host", async () => {
    const out = await ok("laptop", "ip tuntap add dev tun7 mode tun && ip -o link show tun7");
    expect(out).toMatch(/tun7: <[^>]*POINTOPOINT/);
    expect(await ok("laptop", "ip -o -d link show tun7")).toContain("tun type tun");
  }, 30_000);

  it("sets a forwarding sysctl in the host's own namespace", async () => {
    const before = await L.netnsExec("laptop", ["cat", "/proc/sys/net/ipv4/ip_forward"]);
    expect(before.stdout.trim()).toBe("0");
    expect((await ok("laptop", "sysctl -w net.ipv4.ip_forward=1 && cat /proc/sys/net/ipv4/ip_forward")).trim()).toMatch(/1$/);
    // Seen from the root namespace in laptop's netns, and only there.
    expect((await L.netnsExec("laptop", ["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe("1");
    expect((await L.netnsExec("vps", ["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe("0");
  }, 30_000);

  it("reaches vps from laptop through laptop's NAT", async () => {
    const vps = L.address("vps");
    const nat = L.address("laptopnat");
    await ok("vps", "rm -f /tmp/got; (timeout 20 nc -lvn 7000 >/tmp/got 2>&1 &)");
    let sent = false;
    for (let i = 0; i < 20 && !sent; i++) {
      const r = await L.sshExec("laptop", `echo hello-from-laptop | nc -N -w3 ${vps} 7000`);
      sent = r.code === 0;
      if (!sent) await new Promise((r) => setTimeout(r, 200));
    }
    expect(sent).toBe(true);
    const got = await ok("vps", "sleep 0.3; cat /tmp/got");
    expect(got).toContain("hello-from-laptop");
    // The connection arrives from the NAT's public address, not laptop's LAN address.
    expect(got).toContain(`Connection received on ${nat}`);
    expect(got).not.toContain(L.address("laptop"));
  }, 60_000);

  it("keeps the management link out of lab traffic", async () => {
    const vpsMgmt = findHost(L.topology, "vps").mgmt!;
    // Hosts cannot reach each other over mgmt (isolated bridge ports) ...
    const r = await L.sshExec("laptop", `ping -c1 -W1 ${vpsMgmt}`);
    expect(r.code).not.toBe(0);
    // ... and have no default route through it.
    expect(await ok("laptop", "ip route show default")).toMatch(/^default via 10\.77\.0\.1 dev eth0/);
  }, 30_000);

  it("is idempotent, and reboots a host whose nspawn was killed without leaving its container behind", async () => {
    const again = await L.up({ hosts: ["vps", "laptop"] });
    expect(again.bootMs).toEqual({}); // nothing booted: both were running
    const state = JSON.parse(readFileSync(stateFile(L.instance), "utf8")) as { made: { kind: string; host?: string; pid?: number }[] };
    const nspawn = state.made.find((m) => m.kind === "process" && m.host === "laptop")!.pid!;
    const init = state.made.find((m) => m.kind === "container" && m.host === "laptop")!.pid!;
    expect(readFileSync(`/proc/${init}/comm`, "utf8").trim()).toBe("systemd");
    process.kill(nspawn, "SIGKILL"); // the container's init survives this
    await new Promise((r) => setTimeout(r, 300));
    expect(aliveNotZombie(init)).toBe(true);
    const re = await L.up({ hosts: ["vps", "laptop"] });
    expect(Object.keys(re.bootMs)).toEqual(["laptop"]);
    expect(aliveNotZombie(init)).toBe(false);
    // Exactly one systemd runs in laptop's netns again, and it answers SSH.
    expect((await ok("laptop", "hostname")).trim()).toBe("laptop");
    expect(labNspawnPids()).toHaveLength(2);
    up = re;
  }, 120_000);

  it("tears down leaving nothing behind", async () => {
    const pids = up.hosts.filter((h) => h.pid).map((h) => h.pid!);
    expect(pids).toHaveLength(2);
    expect(labNetns().length).toBeGreaterThan(0);
    expect(labMounts()).toHaveLength(2);
    const down = await L.down();
    expect(down.removed.length).toBeGreaterThan(0);
    expect(labNetns()).toEqual([]);
    expect(labNspawnPids()).toEqual([]);
    expect(labMounts()).toEqual([]);
    const links = readdirSync("/sys/class/net").filter((n) => n.startsWith(L.topology.prefix));
    expect(links).toEqual([]);
    expect(existsSync(runDir(L.instance))).toBe(false);
    // A second down has nothing left to do.
    expect((await L.down()).removed).toEqual([]);
  }, 120_000);
});
