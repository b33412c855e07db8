/**
 * bench/plan-scale: plan's core at issue 19's size (10,000 hosts x 1,000
 * rules; bench/policy does 1,000 x 100): reachability for both revisions of
 * a policy on the same nodes, and their diff (core/netdiff), as `meshfleet
 * plan` does once both fleets are evaluated. Each size runs in a fresh
 * process (so its peak RSS is its own and the JIT starts cold, as a command
 * does) and prints CPU time (user + sys, holds on a shared machine), wall
 * time and peak RSS, beside a baseline measured in the same run: parsing
 * the head policy with its schema and rendering it to HuJSON (the least any
 * plan does), and the smaller size for the growth.
 *
 *   node --import tsx bench/plan-scale/run.ts [--sizes 1000x100,10000x1000] [--runs 3] [--self-heavy]
 *
 * The fleet and policies are bench/policy's (seeded, fleet.ts): half the
 * nodes tagged (15 tags), the rest owned by 20 users, 2% of tagged nodes
 * routing a /24; rules from users, groups, tags, autogroup:member, CIDRs to
 * tags, groups, autogroup:self, a CIDR; the head revision replaces the last
 * 5% of rules. --self-heavy is the diff's worst case instead: every node
 * untagged and its own user, and an autogroup:member -> autogroup:self rule
 * (Tailscale's default policy shape), so every node is a class of its own.
 * phases.ts says where the time goes.
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";

const self = fileURLToPath(import.meta.url);

type Sample = { hosts: number; rules: number; planCpu: number; planWall: number; reachCpu: number; reachWall: number; baseCpu: number; baseWall: number; rssMb: number; summary: string };

async function child(hosts: number, rules: number, selfHeavy: boolean) {
  const { policySchema, renderPolicyHuJson, evaluateReachability } = await import("../../core/policy/index.ts");
  const { diffNetwork } = await import("../../core/netdiff/index.ts");
  type NetworkModel = import("../../core/netdiff/index.ts").NetworkModel;
  type Policy = import("../../core/policy/index.ts").Policy;
  const { benchFleet } = await import("./fleet.ts");
  const { nodes, base, head } = benchFleet(hosts, rules, { selfHeavy });
  const raw = JSON.parse(JSON.stringify(head));
  const model = (p: Policy): NetworkModel => ({ stack: "bench", hosts: {}, dns: [], versions: {}, policyHuJson: "", reach: evaluateReachability(nodes, p) });
  const clock = () => ({ c: process.cpuUsage(), t: performance.now() });
  const since = (from: ReturnType<typeof clock>) => { const c = process.cpuUsage(from.c); return { cpu: (c.user + c.system) / 1000, wall: performance.now() - from.t }; };
  // Cold, once each, as a command runs them: the baseline, one reachability evaluation, then plan's core.
  let at = clock();
  renderPolicyHuJson(policySchema.parse(raw));
  const b = since(at);
  at = clock();
  evaluateReachability(nodes, base);
  const r = since(at);
  at = clock();
  const d = diffNetwork(model(base), model(head));
  const p = since(at);
  const summary = `${d.reach.total.gained} gained, ${d.reach.total.lost} lost, ${d.reach.total.changed} changed`;
  const s: Sample = { hosts, rules, planCpu: p.cpu, planWall: p.wall, reachCpu: r.cpu, reachWall: r.wall, baseCpu: b.cpu, baseWall: b.wall, rssMb: process.resourceUsage().maxRSS / 1024, summary };
  console.log(JSON.stringify(s));
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === "--child") return child(Number(argv[1]), Number(argv[2]), argv[3] === "self-heavy");
  const arg = (k: string, d: string) => (argv.includes(k) ? argv[argv.indexOf(k) + 1] : d);
  const sizes = arg("--sizes", "1000x100,10000x1000").split(",").map((s) => s.split("x").map(Number) as [number, number]);
  const runs = Number(arg("--runs", "3"));
  const selfHeavy = argv.includes("--self-heavy");
  console.log(`load average ${os.loadavg().map((x) => x.toFixed(1)).join(" ")} on ${os.cpus().length} cores`);
  if (selfHeavy) console.log("fleet: --self-heavy (every node untagged and its own user, an autogroup:member -> autogroup:self rule: a class per node)");
  console.log(`plan-scale: reachability of two policy revisions + their diff, each size in a cold process, median (by CPU) of ${runs}; ms as CPU / wall`);
  console.log("hosts x rules      plan (2 reach + diff)   one reachability   baseline parse+render    peak RSS   ratio to baseline (CPU)");
  const out: Sample[] = [];
  for (const [h, r] of sizes) {
    const xs: Sample[] = [];
    for (let i = 0; i < runs; i++)
      xs.push(JSON.parse(execFileSync(process.execPath, ["--import", "tsx", self, "--child", String(h), String(r), selfHeavy ? "self-heavy" : "default"], { encoding: "utf8", maxBuffer: 16 << 20 }).trim().split("\n").pop()!));
    const s = xs.sort((a, b) => a.planCpu - b.planCpu)[Math.floor(xs.length / 2)];
    out.push(s);
    const cw = (c: number, w: number) => `${c.toFixed(0).padStart(6)} / ${w.toFixed(0).padStart(6)}`;
    console.log(`${`${h} x ${r}`.padEnd(16)}  ${cw(s.planCpu, s.planWall).padStart(20)}   ${cw(s.reachCpu, s.reachWall).padStart(16)}   ${cw(s.baseCpu, s.baseWall).padStart(20)}   ${s.rssMb.toFixed(0).padStart(6)} MB   ${(s.planCpu / Math.max(s.baseCpu, 0.1)).toFixed(0)}x   (${s.summary})`);
  }
  if (out.length >= 2) {
    const [a, b] = [out[0], out[out.length - 1]];
    const work = (b.hosts * b.rules) / (a.hosts * a.rules);
    console.log(`growth ${b.hosts}x${b.rules} / ${a.hosts}x${a.rules}: ${(b.planCpu / a.planCpu).toFixed(1)}x CPU for ${(b.hosts / a.hosts).toFixed(0)}x the hosts and ${(b.rules / a.rules).toFixed(0)}x the rules (${work.toFixed(0)}x hosts*rules)`);
  }
  const big = out.find((s) => s.hosts === 10000 && s.rules === 1000);
  if (big) console.log(`target plan 10,000 hosts x 1,000 rules < 2 s: ${big.planWall < 2000 ? "met" : "NOT met"} by wall (${big.planWall.toFixed(0)} ms), ${big.planCpu < 2000 ? "met" : "NOT met"} by CPU (${big.planCpu.toFixed(0)} ms), ${big.rssMb.toFixed(0)} MB`);
}

await main();
