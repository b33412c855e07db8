/**
 * The fleet and the two policy revisions bench/plan-scale measures
 * (bench/policy's shape, seeded): half the nodes tagged (15 tags), the rest
 * owned by 20 users, 2% of tagged nodes routing a /24; rules from users,
 * groups, tags, autogroup:member and a CIDR to tags, groups, autogroup:self
 * and a CIDR; the head revision replaces the last 5% of the rules.
 */
import { policySchema, syntheticIps, type Policy, type PolicyNode } from "../../core/policy/index.ts";
import { prng } from "../../test/policy/corpus/generate.ts";

export function benchFleet(hosts: number, rules: number): { nodes: PolicyNode[]; base: Policy; head: Policy } {
  const rnd = prng(42);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const USERS = Array.from({ length: 20 }, (_, i) => `user${i}`);
  const TAGS = Array.from({ length: 15 }, (_, i) => `tag:t${i}`);
  const nodes: PolicyNode[] = syntheticIps(Array.from({ length: hosts }, (_, i) => {
    const tagged = rnd() < 0.5;
    return { name: `h${i}`, user: tagged ? undefined : pick(USERS), tags: tagged ? [pick(TAGS)] : [], ips: [], approvedRoutes: tagged && rnd() < 0.02 ? [`10.${i % 250}.${Math.floor(i / 250) % 256}.0/24`] : [] };
  }));
  const policy = (n: number): Policy => {
    const groups = Object.fromEntries(Array.from({ length: 5 }, (_, g) => [`group:g${g}`, USERS.filter((_, i) => i % 5 === g).map((u) => `${u}@`)]));
    const srcs = [...USERS.map((u) => `${u}@`), ...Object.keys(groups), ...TAGS, "autogroup:member", "10.3.0.0/16"];
    const dsts = [...TAGS, ...Object.keys(groups), "autogroup:member", "10.7.0.0/16", "autogroup:self"];
    const acls = Array.from({ length: n }, () => {
      const d = pick(dsts);
      const src = d === "autogroup:self" ? ["autogroup:member"] : [pick(srcs), pick(srcs)];
      return { action: "accept" as const, src, dst: [`${d}:${pick(["22", "80,443", "*", "5432", "8000-8100"])}`] };
    });
    return policySchema.parse({ groups, tagOwners: Object.fromEntries(TAGS.map((t) => [t, ["user0@"]])), acls });
  };
  const base = policy(rules);
  const changed = Math.max(1, Math.round(rules / 20));
  const head: Policy = { ...base, acls: [...base.acls!.slice(0, rules - changed), ...policy(changed).acls!] };
  return { nodes, base, head };
}
