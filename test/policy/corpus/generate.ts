/**
 * A seeded corpus of policies + tailnets for cross-checking the evaluator
 * against `headscale policy check`. Each case is a set of users, nodes (with
 * tags, addresses and approved routes, written into headscale's own SQLite
 * database by crosscheck.ts) and a policy whose `tests` exercise users,
 * groups, tags, hosts, CIDRs, `*`, autogroups, autogroup:self, protocols,
 * port lists/ranges, subnet routes, allow-all and deny-all; and `ssh` rules
 * with `sshTests` (accept/check actions, root, autogroup:nonroot and named
 * login users, tags, users, groups, autogroup:self, CIDR sources).
 *
 * Two address layouts: "adjacent" (node i at 100.64.0.i+1, as headscale's
 * sequential allocation hands them out: neighbours merge into /31s and wider
 * prefixes) and "spaced" (node i at 100.64.0.2i+1: no two nodes merge). The
 * same seed gives the same policies in both; only the addresses differ.
 */
import { runPolicyTests, runSshTests, type Policy, type PolicyNode } from "../../../core/policy/index.ts";

export type Layout = "adjacent" | "spaced";

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

export function generateCorpus(seed: number, count: number, layout: Layout = "adjacent"): CorpusCase[] {
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
        ips: layout === "adjacent" ? [`100.64.0.${i + 1}`, `fd7a:115c:a1e0::${i + 1}`] : [`100.64.0.${2 * i + 1}`, `fd7a:115c:a1e0::${(2 * i + 1).toString(16)}`],
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
    // SSH rules and sshTests from a generator of their own, so the cases above stay as recorded.
    if (c % 3 !== 2) addSsh(policy, users, prng(seed * 7919 + c));
    if (c % 2 === 0 && policy.sshTests) policy.sshTests = predictedSsh(policy, nodes, users);
    cases.push({ name: `${layout === "adjacent" ? "" : `${layout}-`}case-${String(c).padStart(3, "0")}`, users, nodes, policy });
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

function addSsh(policy: Policy, users: string[], rnd: () => number): void {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  const some = <T>(xs: T[], min: number, max: number): T[] => {
    const n = min + Math.floor(rnd() * (max - min + 1));
    return Array.from({ length: n }, () => pick(xs)).filter((x, i, a) => a.indexOf(x) === i);
  };
  const userAliases = users.map((u) => `${u}@`);
  const logins = ["root", "autogroup:nonroot", "deploy", "ubuntu"];
  policy.ssh = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => {
    const action = rnd() < 0.35 ? ("check" as const) : ("accept" as const);
    const kind = rnd();
    if (kind < 0.2) {
      // autogroup:self needs user or group sources
      return { action, src: some([...userAliases, "group:admins", "autogroup:member"], 1, 2), dst: ["autogroup:self"], users: some(logins, 1, 2) };
    }
    if (kind < 0.35) {
      const u = pick(userAliases);
      return { action, src: [u], dst: [u], users: some(logins, 1, 2) };
    }
    const tagged = rnd() < 0.3;
    const src = tagged ? some([...TAGS, "autogroup:tagged"], 1, 2) : some([...userAliases, "group:admins", "group:dev", "autogroup:member"], 1, 2);
    const dst = some(tagged ? [...TAGS, "autogroup:tagged"] : [...TAGS, "autogroup:tagged", "autogroup:member"], 1, 2);
    return { action, src, dst, users: some(logins, 1, 3) };
  });
  const srcs = [...userAliases, "group:admins", ...TAGS, "100.64.0.2", "100.64.0.0/31", "h1", "dave@"];
  const dsts = [...TAGS, "autogroup:member", "autogroup:tagged", "autogroup:self", ...userAliases, "h1", "100.64.0.3"];
  const who = ["root", "deploy", "ubuntu", "admin"];
  policy.sshTests = Array.from({ length: 1 + Math.floor(rnd() * 3) }, () => {
    const t: NonNullable<Policy["sshTests"]>[number] = { src: pick(srcs), dst: some(dsts, 1, 2) };
    const accept = some(who, 0, 2);
    const deny = some(who, 0, 1).filter((u) => !accept.includes(u));
    const check = rnd() < 0.4 ? some(who, 1, 1) : [];
    if (accept.length) t.accept = accept;
    if (deny.length) t.deny = deny;
    if (check.length) t.check = check;
    if (!t.accept && !t.deny && !t.check) t.accept = ["root"];
    return t;
  });
}

/** sshTests rewritten to what meshfleet predicts: each login user where every destination agrees (accept, deny, check). */
function predictedSsh(policy: Policy, nodes: PolicyNode[], users: string[]): Policy["sshTests"] {
  const out: NonNullable<Policy["sshTests"]> = [];
  const passes = (t: NonNullable<Policy["sshTests"]>[number]) => runSshTests(nodes, { ...policy, sshTests: [t] }, { users }).allPassed;
  for (const t of policy.sshTests ?? []) {
    const logins = [...new Set([...(t.accept ?? []), ...(t.deny ?? []), ...(t.check ?? [])])];
    const accept = logins.filter((u) => passes({ src: t.src, dst: t.dst, accept: [u] }));
    const deny = logins.filter((u) => passes({ src: t.src, dst: t.dst, deny: [u] }));
    const check = (t.check ?? []).filter((u) => passes({ src: t.src, dst: t.dst, check: [u] }));
    if (accept.length + check.length + deny.length === 0) continue;
    out.push({ src: t.src, dst: t.dst, ...(accept.length ? { accept } : {}), ...(deny.length ? { deny } : {}), ...(check.length ? { check } : {}) });
  }
  return out.length ? out : undefined;
}

/**
 * Cases written by hand where the layout decides the verdict: headscale merges
 * tag:web's adjacent addresses (100.64.0.2, .3) into 100.64.0.2/31, and the
 * /31 passes when any rule's sources overlap it, so a rule written for tag:db
 * (on .2 only) lets "tag:web" through on the adjacent layout and not on the
 * spaced one. The SSH test's source tries each address of its CIDR on its own.
 */
export function handCrafted(layout: Layout): CorpusCase[] {
  const ip = (i: number) => (layout === "adjacent" ? [`100.64.0.${i + 1}`, `fd7a:115c:a1e0::${i + 1}`] : [`100.64.0.${2 * i + 1}`, `fd7a:115c:a1e0::${(2 * i + 1).toString(16)}`]);
  const nodes: PolicyNode[] = [
    { name: "laptop", user: "alice", tags: [], ips: ip(0), approvedRoutes: [] },
    { name: "web1", user: "alice", tags: ["tag:web", "tag:db"], ips: ip(1), approvedRoutes: [] },
    { name: "web2", user: "alice", tags: ["tag:web"], ips: ip(2), approvedRoutes: [] },
    { name: "ci", user: "alice", tags: ["tag:ci"], ips: ip(3), approvedRoutes: [] },
  ];
  const tagOwners = Object.fromEntries(TAGS.map((t) => [t, ["alice@"]]));
  const prefix = layout === "adjacent" ? "" : `${layout}-`;
  return [
    {
      name: `${prefix}merged-source`,
      users: ["alice", "bob"],
      nodes,
      policy: {
        tagOwners,
        acls: [{ action: "accept", src: ["tag:db"], dst: ["tag:ci:22"] }, { action: "accept", src: ["alice@"], dst: ["tag:web:80"] }],
        tests: [
          { src: "tag:web", accept: ["tag:ci:22"] },
          { src: "tag:db", accept: ["tag:ci:22"], deny: ["tag:web:80"] },
          { src: "100.64.0.2/31", proto: "tcp", accept: ["tag:ci:22"] },
          { src: "alice@", accept: ["tag:web:80", "100.64.0.3:80"] },
        ],
      },
    },
    {
      name: `${prefix}ssh-cidr-source`,
      users: ["alice", "bob"],
      nodes,
      policy: {
        tagOwners,
        ssh: [
          { action: "accept", src: ["tag:db"], dst: ["tag:ci"], users: ["root"] },
          { action: "check", src: ["alice@"], dst: ["tag:web"], users: ["autogroup:nonroot"] },
        ],
        sshTests: [
          { src: "100.64.0.2/31", dst: ["tag:ci"], accept: ["root"] },
          { src: "tag:web", dst: ["tag:ci"], accept: ["root"], deny: ["deploy"] },
          { src: "alice@", dst: ["tag:web"], check: ["deploy"], deny: ["root"] },
          { src: "alice@", dst: ["tag:ci"], check: ["root"] },
          { src: "bob@", dst: ["autogroup:self"], accept: ["root"] },
        ],
      },
    },
  ];
}
