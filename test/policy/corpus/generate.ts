/**
 * A seeded corpus of policies + tailnets for cross-checking the evaluator
 * against `headscale policy check`. Each case is a set of users, nodes (with
 * tags, addresses and approved routes, written into headscale's own SQLite
 * database by crosscheck.ts) and a policy whose `tests` exercise users,
 * groups, tags, hosts, CIDRs, `*`, autogroups, autogroup:self, protocols,
 * port lists/ranges, subnet routes, allow-all and deny-all.
 */
import { runPolicyTests, type Policy, type PolicyNode } from "../../../core/policy/index.ts";

export interface CorpusCase {
  name: string;
  users: string[];
  nodes: PolicyNode[];
  policy: Policy;
}

/** mulberry32: tiny, seeded, good enough for test generation. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TAGS = ["tag:web", "tag:db", "tag:router", "tag:ci"];
const PORTS = ["*", "22", "80,443", "8000-8100", "53", "443"];
const TEST_PORTS = [22, 80, 443, 53, 8080, 8050];

export function generateCorpus(seed: number, count: number): CorpusCase[] {
  const rnd = prng(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  const some = <T>(xs: T[], min: number, max: number): T[] => {
    const n = min + Math.floor(rnd() * (max - min + 1));
    return Array.from({ length: n }, () => pick(xs)).filter((x, i, a) => a.indexOf(x) === i);
  };
  const cases: CorpusCase[] = [];
  for (let c = 0; c < count; c++) {
    const users = ["alice", "bob", "carol"].slice(0, 2 + Math.floor(rnd() * 2));
    const nodeCount = 4 + Math.floor(rnd() * 5);
    const k = 1 + Math.floor(rnd() * 9);
    const nodes: PolicyNode[] = [];
    for (let i = 0; i < nodeCount; i++) {
      const tagged = rnd() < 0.4;
      const tags = tagged ? some(TAGS, 1, 2) : [];
      const routes: string[] = [];
      if (tagged && rnd() < 0.4) routes.push(`192.168.${k + (i % 2)}.0/24`);
      if (tagged && rnd() < 0.2) routes.push("0.0.0.0/0", "::/0");
      nodes.push({
        name: `n${i}`,
        user: pick(users),
        tags,
        ips: [`100.64.0.${i + 1}`, `fd7a:115c:a1e0::${i + 1}`],
        approvedRoutes: routes,
      });
    }
    const userAliases = users.map((u) => `${u}@`);
    const hosts: Record<string, string> = { h1: "100.64.0.1", h2: "10.1.0.0/16", h3: "192.168.1.5", nas: `192.168.${k}.10`, tailnet: "100.64.0.0/24" };
    const groups = { "group:admins": users.slice(0, 2).map((u) => `${u}@`), "group:dev": [`${users[users.length - 1]}@`] };
    const srcPool = [...userAliases, "group:admins", "group:dev", ...TAGS, "h1", "h2", "*", "autogroup:member", "autogroup:tagged", "100.64.0.0/30", "100.64.0.3", `192.168.${k}.0/24`];
    const dstPool = [...userAliases, "group:admins", ...TAGS, "h1", "h3", "nas", "tailnet", "*", "autogroup:member", "autogroup:tagged", "100.64.0.2", `192.168.${k}.0/24`, "10.1.2.3"];
    const policy: Policy = { groups, tagOwners: Object.fromEntries(TAGS.map((t) => [t, ["alice@"]])), hosts };
    const mode = rnd();
    if (mode < 0.08) {
      // allow-all: no acls, no grants
    } else if (mode < 0.14) {
      policy.grants = []; // deny-all
    } else {
      const nAcl = Math.floor(rnd() * 4);
      const nGrant = Math.floor(rnd() * 3);
      if (nAcl > 0 || nGrant === 0) {
        policy.acls = Array.from({ length: Math.max(1, nAcl) }, () => {
          const proto = pick([undefined, undefined, "tcp", "udp"]);
          const selfOnly = rnd() < 0.12;
          const src = selfOnly ? some([...userAliases, "group:admins", "autogroup:member"], 1, 2) : some(srcPool, 1, 2);
          const dst = selfOnly ? [`autogroup:self:${pick(PORTS)}`] : some(dstPool, 1, 3).map((d) => `${d}:${pick(PORTS)}`);
          return { action: "accept" as const, src, dst, ...(proto ? { proto } : {}) };
        });
      }
      if (nGrant > 0) {
        policy.grants = Array.from({ length: nGrant }, () => ({
          src: some(srcPool, 1, 2),
          dst: some(dstPool, 1, 2),
          ip: some(["*", "tcp:22", "udp:53", "tcp:80,443", "443", "icmp:*", "tcp:8000-8100"], 1, 2),
        }));
      }
    }
    const testSrc = [...userAliases, "group:admins", ...TAGS, "h1", "h3", "100.64.0.2", "100.64.0.0/30", `192.168.${k}.7`, "autogroup:member", "dave@"];
    const testDst = [...userAliases, ...TAGS, "h1", "h3", "nas", "100.64.0.2", "100.64.0.4", `192.168.${k}.20`];
    policy.tests = Array.from({ length: 2 + Math.floor(rnd() * 4) }, () => {
      const proto = pick([undefined, undefined, "tcp", "udp"]);
      const dsts = some(testDst, 1, 4).map((d) => `${d}:${pick(TEST_PORTS)}`);
      const accept = dsts.filter(() => rnd() < 0.5);
      const deny = dsts.filter((d) => !accept.includes(d));
      return { src: pick(testSrc), ...(proto ? { proto } : {}), ...(accept.length ? { accept } : {}), ...(deny.length ? { deny } : {}) };
    });
    // Every other case states what meshfleet predicts (accept what it allows,
    // deny what it denies, drop lines it cannot evaluate): headscale must then
    // pass it. The rest keep random expectations, so failures are compared too.
    if (c % 2 === 0) policy.tests = predicted(policy, nodes, users);
    cases.push({ name: `case-${String(c).padStart(3, "0")}`, users, nodes, policy });
  }
  return cases;
}

function predicted(policy: Policy, nodes: PolicyNode[], users: string[]): Policy["tests"] {
  const report = runPolicyTests(nodes, policy, { users });
  const out: NonNullable<Policy["tests"]> = [];
  report.results.forEach((r, i) => {
    if (r.errors.length > 0 && r.lines.length === 0) return;
    const t = policy.tests![i];
    const accept = r.lines.filter((l) => l.got === "ALLOWED").map((l) => l.dst);
    const deny = r.lines.filter((l) => l.got === "DENIED").map((l) => l.dst);
    if (accept.length + deny.length === 0) return;
    out.push({ src: t.src, ...(t.proto ? { proto: t.proto } : {}), ...(accept.length ? { accept } : {}), ...(deny.length ? { deny } : {}) });
  });
  return out;
}
