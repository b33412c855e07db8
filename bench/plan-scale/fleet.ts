/**
 * The fleet and the two policy revisions bench/plan-scale measures
 * (bench/policy's shape, seeded): half the nodes tagged (15 tags), the rest
 * owned by 20 users, 2% of tagged nodes routing a /24; rules from users,
 * groups, tags, autogroup:member and a CIDR to tags, groups, autogroup:self
 * and a CIDR; the head revision replaces the last 5% of the rules.
 */
import { policySchema, syntheticIps, type Policy, type PolicyNode } from "../../core/policy/index.ts";
import { prng } from "../../test/policy/corpus/generate.ts";

export function benchFleet(hosts: number, rules: number, opts: { selfHeavy?: boolean } = {}): { nodes: PolicyNode[]; base: Policy; head: Policy } {
  const rnd = prng(42);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  // selfHeavy: the plan diff's worst case, Tailscale's default policy shape. Every node untagged and
  // its own user, and an autogroup:member -> autogroup:self rule first, so every node is a source and
  // a target class of its own; rules name users (and groups of them) out of all the nodes' users.
  const USERS = Array.from({ length: opts.selfHeavy ? hosts : 20 }, (_, i) => `user${i}`);
  const TAGS = Array.from({ length: 15 }, (_, i) => `tag:t${i}`);
  const nodes: PolicyNode[] = syntheticIps(Array.from({ length: hosts }, (_, i) => {
    const tagged = !opts.selfHeavy && rnd() < 0.5;
    // (Drawn in this order: the default fleet stays the one earlier figures were measured on.)
    const user = tagged ? undefined : opts.selfHeavy ? USERS[i] : pick(USERS);
    const tags = tagged ? [pick(TAGS)] : [];
    const routes = (tagged || opts.selfHeavy) && rnd() < 0.02 ? [`10.${i % 250}.${Math.floor(i / 250) % 256}.0/24`] : [];
    return { name: `h${i}`, user, tags, ips: [], approvedRoutes: routes };
  }));
  const policy = (n: number): Policy => {
    const groups = Object.fromEntries(Array.from({ length: 5 }, (_, g) => [`group:g${g}`, USERS.filter((_, i) => i % 5 === g).map((u) => `${u}@`)]));
    // (selfHeavy: no autogroup:member source, which a rule to autogroup:member:* turns into everyone to
    // everyone, leaving head nothing to change.)
    const srcs = [...USERS.map((u) => `${u}@`), ...Object.keys(groups), ...TAGS, ...(opts.selfHeavy ? [] : ["autogroup:member"]), "10.3.0.0/16"];
    const dsts = [...TAGS, ...Object.keys(groups), "autogroup:member", "10.7.0.0/16", "autogroup:self"];
    const acls = Array.from({ length: n }, () => {
      const d = pick(dsts);
      const src = d === "autogroup:self" ? ["autogroup:member"] : [pick(srcs), pick(srcs)];
      return { action: "accept" as const, src, dst: [`${d}:${pick(["22", "80,443", "*", "5432", "8000-8100"])}`] };
    });
    if (opts.selfHeavy) acls.unshift({ action: "accept" as const, src: ["autogroup:member"], dst: ["autogroup:self:*"] });
    return policySchema.parse({ groups, tagOwners: Object.fromEntries(TAGS.map((t) => [t, ["user0@"]])), acls });
  };
  const base = policy(rules);
  const changed = Math.max(1, Math.round(rules / 20));
  const head: Policy = { ...base, acls: [...base.acls!.slice(0, rules - changed), ...policy(changed).acls!] };
  return { nodes, base, head };
}
