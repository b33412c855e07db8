/**
 * bench/status: `meshfleet status` on the lab's fleet against a floor
 * measured in the same run, with ratios.
 *
 *   node --import tsx bench/status/run.ts [--instance 0] [--runs 5] [--config-file FILE]
 *
 * Needs a deployed lab (`meshfleet lab up --instance N`); changes nothing.
 * Measured, alternating, median of --runs:
 *   - floor: one plain `ssh host true` per host, all in parallel, each a new
 *     connection with the same pins and key (the least any SSH-read status
 *     can cost);
 *   - status reads: collectStatus (the code behind `meshfleet status`) with a
 *     new SSH session, so its handshakes are counted, after the fleet is
 *     evaluated;
 *   - the whole command: `node bin/meshfleet.mjs status --json` as a user
 *     runs it (node start, tsx, fleet evaluation, reads).
 * The target is < 3 s for the lab fleet. The load average is printed: on a
 * shared 2-CPU machine wall times are mostly waiting.
 */
import { execa } from "execa";
import { loadavg } from "node:os";
import { join } from "node:path";
import { collectStatus } from "../../cli/commands/status.ts";
import { connectionTo, newSession, openStackFleet, tryRun } from "../../cli/fleet-hosts.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { REPO } from "../../lab/e2e/pulumi.ts";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const instance = Number(arg("instance", "0"));
const runs = Number(arg("runs", "5"));
const configFile = arg("config-file", e2ePaths(instance).stackConfig);
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const a = await openStackFleet({ stack: STACK, configFile });
const hosts = a.selected.filter((h) => h.agent && h.address);

async function floor(): Promise<number> {
  const session = newSession();
  const t0 = Date.now();
  const rs = await Promise.all(hosts.map((h) => tryRun(session, connectionTo(a, h), "true", { what: "floor", fresh: true })));
  const ms = Date.now() - t0;
  session.close();
  const bad = rs.find((r) => r.error || r.code !== 0);
  if (bad) throw new Error(`floor: ${bad.error ?? bad.stderr}`);
  return ms;
}

async function reads(): Promise<number> {
  const session = newSession();
  const t0 = Date.now();
  const { status } = await collectStatus(a, session);
  const ms = Date.now() - t0;
  session.close();
  const bad = status.hosts.find((h) => !h.reachable || !h.generation);
  if (bad) throw new Error(`status: host ${bad.host} not read: ${bad.error ?? "no generation"}`);
  return ms;
}

async function whole(): Promise<number> {
  const t0 = Date.now();
  const r = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "status", "--stack", STACK, "--config-file", configFile, "--json"], { cwd: REPO, reject: false });
  const ms = Date.now() - t0;
  if (r.exitCode !== 0) throw new Error(`meshfleet status: exit ${r.exitCode}: ${String(r.stderr).slice(0, 300)}`);
  return ms;
}

const f: number[] = [];
const rd: number[] = [];
const w: number[] = [];
const load0 = loadavg()[0]!;
for (let i = 0; i < runs; i++) {
  f.push(await floor());
  rd.push(await reads());
  w.push(await whole());
}
const F = median(f);
const R = median(rd);
const W = median(w);
console.log(`bench/status: lab instance ${instance}, ${hosts.length} hosts (${hosts.map((h) => h.name).join(", ")}), ${runs} runs, load ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}`);
console.log(`  floor (ssh host true, parallel)   ${s(F)}   runs: ${f.map(s).join(", ")}`);
console.log(`  status reads (collectStatus)      ${s(R)}   ${(R / F).toFixed(2)}× floor   runs: ${rd.map(s).join(", ")}`);
console.log(`  meshfleet status (whole command)  ${s(W)}   ${(W / F).toFixed(2)}× floor   runs: ${w.map(s).join(", ")}`);
console.log(`  target < 3 s: ${W < 3000 ? "met" : R < 3000 ? `met by the reads, not by the whole command (${s(W - R)} is node start, tsx and fleet evaluation)` : "NOT met"}`);
