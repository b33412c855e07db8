/**
 * Plan's core on a big fleet: 1,000 hosts, a 100-rule policy, reachability
 * for both revisions and their diff. Prints the time and its ratio against a
 * baseline measured in the same run: parsing the policy with its schema and
 * rendering it to HuJSON (the least any plan must do).
 *
 *   node --import tsx bench/policy/run.ts
 */
import { policySchema, renderPolicyHuJson, evaluateReachability, syntheticIps, type Policy, type PolicyNode } from "../../core/policy/index.ts";
import { diffNetwork, type NetworkModel } from "../../core/netdiff/index.ts";
import { prng } from "../../test/policy/corpus/generate.ts";

const rnd = prng(42);
const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
const USERS = Array.from({ length: 20 }, (_, i) => `user${i}`);
const TAGS = Array.from({ length: 15 }, (_, i) => `tag:t${i}`);

function fleet(n: number): PolicyNode[] {
  return syntheticIps(Array.from({ length: n }, (_, i) => {
    const tagged = rnd() < 0.5;
    return {
      name: `h${i}`,
      user: tagged ? undefined : pick(USERS),
      tags: tagged ? [pick(TAGS)] : [],
      ips: [],
      approvedRoutes: tagged && rnd() < 0.02 ? [`10.${i % 250}.0.0/16`] : [],
    };
  }));
}

function policy(rules: number): Policy {
  const groups = Object.fromEntries(Array.from({ length: 5 }, (_, g) => [`group:g${g}`, USERS.filter((_, i) => i % 5 === g).map((u) => `${u}@`)]));
  const srcs = [...USERS.map((u) => `${u}@`), ...Object.keys(groups), ...TAGS, "autogroup:member", "10.3.0.0/16"];
  const dsts = [...TAGS, ...Object.keys(groups), "autogroup:member", "10.7.0.0/16", "autogroup:self"];
  const acls = Array.from({ length: rules }, () => {
    const d = pick(dsts);
    const src = d === "autogroup:self" ? ["autogroup:member"] : [pick(srcs), pick(srcs)];
    return { action: "accept" as const, src, dst: [`${d}:${pick(["22", "80,443", "*", "5432", "8000-8100"])}`] };
  });
  return policySchema.parse({ groups, tagOwners: Object.fromEntries(TAGS.map((t) => [t, ["user0@"]])), acls });
}

function model(nodes: PolicyNode[], p: Policy): NetworkModel {
  return { stack: "bench", hosts: {}, dns: [], versions: {}, policyHuJson: "", reach: evaluateReachability(nodes, p) };
}

const nodes = fleet(1000);
const base = policy(100);
const head: Policy = { ...base, acls: [...base.acls!.slice(0, 95), ...policy(5).acls!] };
const raw = JSON.parse(JSON.stringify(head));

/** Wall and CPU milliseconds per run; CPU time is what the budget is judged on, as CI machines are shared. */
const time = (f: () => void, reps: number) => {
  f();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) f();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / reps, cpu: (c.user + c.system) / 1000 / reps };
};

const baseline = time(() => renderPolicyHuJson(policySchema.parse(raw)), 50);
let summary = "";
const reach = time(() => { evaluateReachability(nodes, base); }, 3);
const plan = time(() => {
  const d = diffNetwork(model(nodes, base), model(nodes, head));
  summary = `${d.reach.total.gained} gained, ${d.reach.total.lost} lost, ${d.reach.total.changed} changed`;
}, 3);
const ms = (t: { wall: number; cpu: number }) => `${t.cpu.toFixed(0)} ms CPU (${t.wall.toFixed(0)} ms wall)`;
console.log(`plan diff + reachability, 1000 hosts x 100 rules, two revisions: ${ms(plan)} (${summary})`);
console.log(`  one reachability evaluation: ${ms(reach)}`);
console.log(`baseline, parse + render the policy: ${ms(baseline)}`);
console.log(`ratio: ${(plan.cpu / Math.max(baseline.cpu, 0.001)).toFixed(0)}x baseline (CPU); budget 1000 ms: ${plan.cpu < 1000 ? "ok" : "OVER"}`);
process.exitCode = plan.cpu < 1000 ? 0 : 1;
