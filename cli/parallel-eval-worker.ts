/**
 * One shard of a parallel evaluation (cli/parallel-eval.ts): load and
 * evaluate its hosts' options, hand their peers to the main thread, then,
 * given every peer and the fleet phase's policy, run its hosts' modules and
 * render their files.
 */
import { writeSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { evaluateSites } from "../core/eval.ts";
import { shardHosts, shardOptions, shardOrigins, Unsharded, type ShardOptions } from "../core/shard.ts";
import { loadSites } from "../core/sites.ts";
import type { PeerView } from "../core/module.ts";
import { REGISTRY } from "../modules/index.ts";
import type { HostSystem } from "../core/types.ts";
import { hostDigest, packArtifacts, threadCpuMs, type FromWorker, type KeptHost, type ToWorker } from "./parallel-eval.ts";
import { tuneForShortRun } from "./short-run.ts";

tuneForShortRun();
// MESHFLEET_SHARD_TIMES: each step in ms since the main thread began the evaluation (its clock, sent with the first message), as the main thread's own steps.
const loadedAt = performance.timeOrigin + performance.now();
let since: number | undefined;
// Written straight to fd 2: a worker's console goes through the main thread, which may end the worker before it is written.
// A pipe the main thread made non-blocking may refuse a write (EAGAIN): tried again briefly; a timing line never fails the shard.
const say = (line: string) => {
  const bytes = Buffer.from(line + "\n");
  for (let off = 0, tries = 0; off < bytes.length && tries < 50; ) {
    try {
      off += writeSync(2, bytes, off);
    } catch {
      tries++;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    }
  }
};
const lap = (what: string) => {
  if (process.env.MESHFLEET_SHARD_TIMES) say(`[worker] ${what} ${((performance.timeOrigin + performance.now()) - since!).toFixed(0)} ms, thread cpu ${threadCpuMs()}`);
};
const port = parentPort!;
const send = (m: FromWorker) => port.postMessage(m);
let own: ShardOptions | undefined;
let peers: Record<string, PeerView> | undefined;
let fault: string | undefined;
// plan's base, as digests by host name: sent by the main thread once it has evaluated the base (a "fleet" job withBase waits for it).
let baseDigests: (d: Record<string, string>) => void;
const base = new Promise<Record<string, string>>((resolve) => (baseDigests = resolve));

port.on("message", async (m: ToWorker) => {
  try {
    if (m.type === "options") {
      fault = m.fault;
      since = m.since;
      if (process.env.MESHFLEET_SHARD_TIMES) say(`[worker] modules loaded ${(loadedAt - since).toFixed(0)} ms`);
      own = await shardOptions(REGISTRY, m.dir, m.only);
      lap("options");
      send({ type: "options", peers: own.peers, named: own.named });
      lap("options sent");
    } else if (m.type === "fleet") {
      // A whole fleet (plan's working tree): a fleet with sites reads its sibling folders, which the shards' checks do not cover.
      since = m.since;
      if (process.env.MESHFLEET_SHARD_TIMES) say(`[worker] modules loaded ${(loadedAt - since).toFixed(0)} ms`);
      const sites = await loadSites(m.dir);
      if (sites.layout) throw new Unsharded("a fleet with sites");
      const r = evaluateSites(REGISTRY, sites, m.stack);
      lap("fleet evaluated");
      if (!m.withBase || !r.fleet) {
        send({ type: "fleet", fleet: r.fleet, diagnostics: r.diagnostics });
      } else {
        // Only the hosts the main thread does not already hold the same (most, in a change to a few files): copying 10,000 HostSystems costs both threads.
        // Its own digests while the main thread makes the base's.
        const order = Object.keys(r.fleet.hosts);
        const mine = order.map((name) => hostDigest(r.fleet!.hosts[name]));
        lap("digests");
        const digests = await base;
        lap("base digests");
        const hosts: Record<string, HostSystem> = {};
        const kept: Record<string, KeptHost> = {};
        order.forEach((name, i) => {
          const h = r.fleet!.hosts[name];
          if (Object.hasOwn(digests, name) && digests[name] === mine[i]) kept[name] = { file: h.file, warnings: h.warnings };
          else hosts[name] = h;
        });
        lap(`compared: ${Object.keys(hosts).length} of ${order.length} hosts to send`);
        send({ type: "fleet", fleet: { ...r.fleet, hosts }, diagnostics: r.diagnostics, order, kept });
      }
      lap("fleet sent");
    } else if (m.type === "origins") {
      send({ type: "origins", origins: shardOrigins(own!, m.wants) });
    } else if (m.type === "base") {
      baseDigests(m.digests);
    } else if (m.type === "peers") {
      // Every peer in file order, this shard's own (the objects phase 1 made) in its place.
      peers = {};
      m.peers.forEach((list, k) => {
        for (const p of k === m.index ? own!.peers : list!) peers![p.name] = p;
      });
      lap("peers");
    } else {
      lap("hosts message");
      if (fault === "throw") throw new Error("a fault injected in the shard");
      const shard = shardHosts(REGISTRY, own!, peers!, m.stack, m.pol, m.enforcement, { render: m.render, keepHosts: m.keepHosts });
      if (fault === "artifact-byte" && shard.artifacts?.[0]?.[0]) shard.artifacts[0][0].content += " ";
      if (fault === "swap-hosts" && shard.names.length > 1) {
        for (const list of [shard.names, ...(shard.hosts ? [shard.hosts] : []), shard.warnings, shard.fleetParts, ...(shard.artifacts ? [shard.artifacts] : [])] as unknown[][]) [list[0], list[1]] = [list[1], list[0]];
      }
      lap("hosts");
      const packed = shard.artifacts ? packArtifacts(shard.artifacts) : undefined;
      send({ type: "hosts", shard: { ...shard, artifacts: undefined }, packed, cpuMs: threadCpuMs() });
      lap("hosts sent");
    }
  } catch (e) {
    send(e instanceof Unsharded ? { type: "unsharded", why: e.message } : { type: "error", message: (e as Error).stack ?? String(e) });
  }
});
