/**
 * Issue 18: what the MSS clamp is for, on real kernels, without the lab.
 * Two LANs joined through two routers over a link with a smaller MTU (1280,
 * tailscale0's), path MTU discovery broken (the routers' "fragmentation
 * needed" errors dropped, as a middlebox does): a TCP transfer from one LAN
 * host to the other stalls; with each router's own meshfleet table (the
 * subnet router's rendered ruleset, loaded by the real nft) the SYNs are
 * clamped to the route MTU and the transfer completes. All in throwaway
 * network namespaces of this test:
 *
 *   a (10.71.1.2) ─ r1 ═ 1280 ═ r2 ─ b (10.71.3.2)
 */
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nftScript } from "../../contract/nftables.ts";
import { evaluateFleet } from "../../core/index.ts";
import { hostFirewall } from "../../core/render.ts";
import { REGISTRY } from "../../modules/index.ts";
import { writeFleet } from "../core/fleet-fixture.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

const tag = `mfm${process.pid % 100000}`;
const NS = { a: `${tag}-a`, r1: `${tag}-r1`, r2: `${tag}-r2`, b: `${tag}-b` };
const ip = (...args: string[]) => execa("ip", args);
const inNs = (ns: string, cmd: string[], input?: string) => execa("ip", ["netns", "exec", ns, ...cmd], { input, all: true, reject: false });

/** The receiver: counts bytes until the sender closes (or the time is up), prints the count. */
const SERVER = "const n=require('net');let c=0;const s=n.createServer(k=>{k.on('data',d=>c+=d.length);k.on('end',()=>{console.log(c);process.exit(0)})});s.listen(5001,'10.71.3.2',()=>console.log('listening'));setTimeout(()=>{console.log(c);process.exit(0)},+process.argv[1])";
/** The sender: BYTES bytes, then close. */
const CLIENT = "const n=require('net');const k=n.connect(5001,'10.71.3.2',()=>{k.end(Buffer.alloc(+process.argv[1],120))});k.on('error',e=>{console.error(e.message);process.exit(1)})";

const BYTES = 8 * 1024 * 1024;

async function transfer(timeoutMs: number, bytes = BYTES): Promise<{ received: number; ms: number }> {
  const server = execa("ip", ["netns", "exec", NS.b, "node", "-e", SERVER, String(timeoutMs)], { reject: false });
  await new Promise<void>((resolve) => server.stdout!.once("data", () => resolve()));
  const t0 = performance.now();
  const client = execa("ip", ["netns", "exec", NS.a, "node", "-e", CLIENT, String(bytes)], { reject: false, timeout: timeoutMs + 2000 });
  const s = await server;
  const ms = Math.round(performance.now() - t0);
  client.kill();
  await client.catch(() => undefined);
  return { received: Number(s.stdout.trim().split("\n").pop()), ms };
}

describe.skipIf(skipUnlessCi(!isRoot() && NEEDS_ROOT))("MSS clamping through two routers over a 1280-byte link with PMTU discovery broken", () => {
  let script = "";
  beforeAll(async () => {
    const { dir, cleanup } = writeFleet({});
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      script = nftScript(hostFirewall(r.fleet!.hosts.router.firewall));
    } finally {
      cleanup();
    }
    for (const ns of Object.values(NS)) await ip("netns", "add", ns);
    const link = async (n1: string, i1: string, a1: string, n2: string, i2: string, a2: string, mtu: number) => {
      await ip("link", "add", `${tag}x`, "netns", n1, "type", "veth", "peer", "name", `${tag}y`, "netns", n2);
      await ip("-n", n1, "link", "set", `${tag}x`, "name", i1, "mtu", String(mtu), "up");
      await ip("-n", n2, "link", "set", `${tag}y`, "name", i2, "mtu", String(mtu), "up");
      await ip("-n", n1, "addr", "add", a1, "dev", i1);
      await ip("-n", n2, "addr", "add", a2, "dev", i2);
    };
    await link(NS.a, "eth0", "10.71.1.2/24", NS.r1, "eth0", "10.71.1.1/24", 1500);
    await link(NS.r1, "ts0", "10.71.2.1/24", NS.r2, "ts0", "10.71.2.2/24", 1280);
    await link(NS.r2, "eth0", "10.71.3.1/24", NS.b, "eth0", "10.71.3.2/24", 1500);
    for (const ns of Object.values(NS)) await ip("-n", ns, "link", "set", "lo", "up");
    await ip("-n", NS.a, "route", "add", "default", "via", "10.71.1.1");
    await ip("-n", NS.b, "route", "add", "default", "via", "10.71.3.1");
    await ip("-n", NS.r1, "route", "add", "10.71.3.0/24", "via", "10.71.2.2");
    await ip("-n", NS.r2, "route", "add", "10.71.1.0/24", "via", "10.71.2.1");
    for (const r of [NS.r1, NS.r2]) {
      await inNs(r, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      // Broken PMTU discovery: the router's own "fragmentation needed" never reaches the sender.
      const drop = await inNs(r, ["nft", "-f", "-"], "table inet pmtu_blackhole {\n  chain output {\n    type filter hook output priority filter; policy accept;\n    icmp type destination-unreachable icmp code frag-needed drop\n  }\n}\n");
      expect(drop.all).toBe("");
    }
  }, 60_000);
  afterAll(async () => {
    for (const ns of Object.values(NS)) await ip("netns", "del", ns).catch(() => undefined);
  });

  it("without the clamp the transfer stalls; with each router's meshfleet table it completes", async () => {
    // The path works for packets that fit: 1,000 bytes go through without the clamp.
    expect((await transfer(6000, 1000)).received).toBe(1000);
    const stalled = await transfer(6000);
    expect(stalled.received).toBeLessThan(BYTES);
    for (const r of [NS.r1, NS.r2]) {
      const loaded = await inNs(r, ["nft", "-f", "-"], script);
      expect(loaded.all).toBe("");
    }
    const done = await transfer(20_000);
    expect(done.received).toBe(BYTES);
    console.log(`MSS clamp: ${BYTES} bytes a->b through two routers over a 1280-byte link, PMTUD broken: without the clamp ${stalled.received} bytes in ${stalled.ms} ms (stalled); with it all in ${done.ms} ms`);
  }, 60_000);
});
