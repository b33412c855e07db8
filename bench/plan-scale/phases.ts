/**
 * bench/plan-scale/phases.ts: where one reachability evaluation at 10,000 x
 * 1,000 spends its time (resolver, compilePolicy, the rest), with the same
 * fleet and policy as run.ts. A profiling aid; run.ts is the measure.
 *
 *   node --import tsx bench/plan-scale/phases.ts [hosts] [rules]
 */
import { Resolver } from "../../core/policy/resolve.ts";
import { compilePolicy } from "../../core/policy/compile.ts";
import { evaluateReachability } from "../../core/policy/index.ts";
import { benchFleet } from "./fleet.ts";

const hosts = Number(process.argv[2] ?? 10000);
const rules = Number(process.argv[3] ?? 1000);
const { nodes, base } = benchFleet(hosts, rules);
const cpu = () => { const c = process.cpuUsage(); return (c.user + c.system) / 1000; };
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
  console.log(`round ${round}: resolver ${tResolver.toFixed(0)} ms, compilePolicy ${tCompile.toFixed(0)} ms, whole evaluation ${tEval.toFixed(0)} ms (CPU)`);
}
