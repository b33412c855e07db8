/**
 * bench/plan-scale/phases.ts: where plan's core at 10,000 x 1,000 spends its
 * time, with run.ts's fleet and policies, three rounds in one process (the
 * first is cold): the resolver, compilePolicy, one whole reachability
 * evaluation, and the diff of two evaluated revisions (which also works out
 * the class pairs' access that evaluation leaves until asked). A profiling
 * aid; run.ts is the measure.
 *
 *   node --import tsx bench/plan-scale/phases.ts [hosts] [rules] [--self-heavy]
 */
import { Resolver } from "../../core/policy/resolve.ts";
import { compilePolicy } from "../../core/policy/compile.ts";
import { evaluateReachability, type Policy } from "../../core/policy/index.ts";
import { diffNetwork, type NetworkModel } from "../../core/netdiff/index.ts";
import { benchFleet } from "./fleet.ts";

const args = process.argv.slice(2).filter((a) => a !== "--self-heavy");
const hosts = Number(args[0] ?? 10000);
const rules = Number(args[1] ?? 1000);
const { nodes, base, head } = benchFleet(hosts, rules, { selfHeavy: process.argv.includes("--self-heavy") });
const cpu = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
const model = (p: Policy): NetworkModel => ({ stack: "bench", hosts: {}, dns: [], versions: {}, policyHuJson: "", reach: evaluateReachability(nodes, p) });
for (let round = 0; round < 3; round++) {
  let at = cpu();
  const resolver = new Resolver(base, nodes);
  const tResolver = cpu() - at;
  at = cpu();
  compilePolicy(base, resolver);
  const tCompile = cpu() - at;
  at = cpu();
  evaluateReachability(nodes, base);
  const tEval = cpu() - at;
  const [b, h] = [model(base), model(head)];
  at = cpu();
  const d = diffNetwork(b, h);
  const tDiff = cpu() - at;
  console.log(`round ${round}: resolver ${tResolver.toFixed(0)} ms, compilePolicy ${tCompile.toFixed(0)} ms, whole evaluation ${tEval.toFixed(0)} ms, diff of two evaluated ${tDiff.toFixed(0)} ms (CPU; ${d.reach.total.changed} changed)`);
}
