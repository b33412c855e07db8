/**
 * Runs the corpus through the real `headscale policy check` and through
 * meshfleet's evaluator, and compares the failing test lines.
 *
 * `policy check --bypass-grpc-and-access-database-directly` resolves the
 * policy against the users and nodes in headscale's own database and runs
 * the `tests` block (SetPolicy, the user-write boundary). Offline, with an
 * empty database, only `hosts:` entries, IPs, CIDRs and `*` resolve; so each
 * case's users and nodes are written into a freshly migrated SQLite database
 * first (`users` and `nodes` rows: addresses, tags, approved routes, and the
 * announced routes in host_info, which headscale intersects with the
 * approved ones). Needs the headscale binary and the sqlite3 CLI.
 *
 *   node --import tsx test/policy/corpus/crosscheck.ts [--record]
 *
 * --record rewrites headscale-results.json (headscale's answers), which the
 * vitest suite replays when the binary is absent.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import { join } from "node:path";
import { renderPolicyHuJson, runPolicyTests, runSshTests } from "../../../core/policy/index.ts";
import { generateCorpus, handCrafted, type CorpusCase } from "./generate.ts";

export const CORPUS_SEED = 7;
export const CORPUS_SIZE = 60;

/** Both address layouts (adjacent, as headscale allocates in sequence; and spaced), same policies. */
export function corpusCases(): CorpusCase[] {
  return [
    ...generateCorpus(CORPUS_SEED, CORPUS_SIZE, "adjacent"), ...handCrafted("adjacent"),
    ...generateCorpus(CORPUS_SEED, CORPUS_SIZE, "spaced"), ...handCrafted("spaced"),
  ];
}

export function headscaleBinary(): string {
  const dir = process.env.MESHFLEET_TOOLS_DIR ?? join(homedir(), ".cache/meshfleet/tools");
  return join(dir, "headscale@0.29.2/bin/headscale");
}

export interface HeadscaleAnswer {
  valid: boolean;
  /** Failing test lines (`src -> dst: expected X, got Y`, or `src: error`). */
  failures: string[];
  /** Set when the policy was rejected for another reason than its tests. */
  error?: string;
}

function config(dir: string): string {
  return `server_url: http://127.0.0.1:1
listen_addr: 127.0.0.1:1
metrics_listen_addr: ""
grpc_listen_addr: 127.0.0.1:2
noise:
  private_key_path: ${dir}/noise.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
database:
  type: sqlite
  sqlite:
    path: ${dir}/db.sqlite
derp:
  urls: []
  paths: []
  server:
    enabled: false
dns:
  magic_dns: false
  override_local_dns: false
policy:
  mode: file
  path: ""
unix_socket: ${dir}/hs.sock
disable_check_updates: true
log:
  level: error
`;
}

const q = (s: string) => `'${s.replace(/'/g, "''")}'`;

function seedSql(c: CorpusCase): string {
  const lines = c.users.map((u, i) => `insert into users(id,name,created_at,updated_at) values (${i + 1},${q(u)},datetime('now'),datetime('now'));`);
  c.nodes.forEach((n, i) => {
    const key = (i + 1).toString(16).padStart(64, "0");
    const uid = c.users.indexOf(n.user ?? "") + 1 || 1;
    const hostInfo = JSON.stringify({ RoutableIPs: n.approvedRoutes });
    lines.push(
      `insert into nodes(id,machine_key,node_key,disco_key,endpoints,host_info,ipv4,ipv6,hostname,given_name,user_id,register_method,tags,approved_routes,created_at,updated_at) values (` +
        [i + 1, q(`mkey:${key}`), q(`nodekey:${key}`), q(`discokey:${key}`), q("[]"), q(hostInfo), q(n.ips[0]), q(n.ips[1]), q(n.name), q(n.name), uid, q("authkey"), q(JSON.stringify(n.tags)), q(JSON.stringify(n.approvedRoutes)), "datetime('now')", "datetime('now')"].join(",") +
        `);`,
    );
  });
  return lines.join("\n");
}

export function askHeadscale(cases: CorpusCase[]): Record<string, HeadscaleAnswer> {
  const bin = headscaleBinary();
  const root = mkdtempSync(join(tmpdir(), "meshfleet-corpus-"));
  try {
    // A migrated, empty database to copy for each case.
    writeFileSync(join(root, "config.yaml"), config(root));
    writeFileSync(join(root, "empty.json"), "{}");
    spawnSync(bin, ["-c", join(root, "config.yaml"), "policy", "check", "-f", join(root, "empty.json"), "--bypass-grpc-and-access-database-directly", "--force"], { encoding: "utf8" });
    const out: Record<string, HeadscaleAnswer> = {};
    for (const c of cases) {
      const dir = join(root, c.name);
      execFileSync("mkdir", ["-p", dir]);
      copyFileSync(join(root, "db.sqlite"), join(dir, "db.sqlite"));
      writeFileSync(join(dir, "config.yaml"), config(dir));
      execFileSync("sqlite3", [join(dir, "db.sqlite")], { input: seedSql(c) });
      const file = join(dir, "policy.hujson");
      writeFileSync(file, renderPolicyHuJson(c.policy));
      const r = spawnSync(bin, ["-c", join(dir, "config.yaml"), "policy", "check", "-f", file, "--bypass-grpc-and-access-database-directly", "--force"], { encoding: "utf8" });
      out[c.name] = parseAnswer(r.status ?? 1, r.stdout, r.stderr);
    }
    return out;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

export function parseAnswer(status: number, stdout: string, stderr: string): HeadscaleAnswer {
  if (status === 0 && stdout.includes("Policy is valid")) return { valid: true, failures: [] };
  const text = stderr.split("\n").filter((l) => !/^\d{4}-\d\d-\d\dT/.test(l)).join("\n");
  // One failing block prints `Error: test(s) failed:\n<lines>`; tests and sshTests failing together
  // print `Error: multiple errors:\n\ttest(s) failed:\n<lines>\n\ttest(s) failed:\n<lines>` (multierr).
  const m = /Error: (?:multiple errors:\n\t)?test\(s\) failed:\n([\s\S]*)$/.exec(text);
  if (m) return { valid: false, failures: m[1].split("\n").map((l) => l.trim()).filter((l) => l && l !== "test(s) failed:").sort() };
  return { valid: false, failures: [], error: text.trim() };
}

export function ours(c: CorpusCase): HeadscaleAnswer {
  const r = runPolicyTests(c.nodes, c.policy, { users: c.users });
  const s = runSshTests(c.nodes, c.policy, { users: c.users });
  return { valid: r.allPassed && s.allPassed, failures: [...r.failures, ...s.failures].sort() };
}

export function compare(cases: CorpusCase[], answers: Record<string, HeadscaleAnswer>) {
  let agree = 0;
  let lines = 0;
  const disagreements: { name: string; headscale: HeadscaleAnswer; meshfleet: HeadscaleAnswer }[] = [];
  for (const c of cases) {
    const hs = answers[c.name];
    const me = ours(c);
    lines += (c.policy.tests ?? []).reduce((n, t) => n + (t.accept?.length ?? 0) + (t.deny?.length ?? 0), 0);
    lines += (c.policy.sshTests ?? []).reduce((n, t) => n + t.dst.length * ((t.accept?.length ?? 0) + (t.deny?.length ?? 0) + (t.check?.length ?? 0)), 0);
    if (hs && !hs.error && hs.valid === me.valid && JSON.stringify(hs.failures) === JSON.stringify(me.failures)) agree++;
    else disagreements.push({ name: c.name, headscale: hs, meshfleet: me });
  }
  return { cases: cases.length, agree, disagree: disagreements.length, testLines: lines, disagreements };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const cases = corpusCases();
  const answers = askHeadscale(cases);
  if (process.argv.includes("--record")) {
    writeFileSync(new URL("./headscale-results.json", import.meta.url), `${JSON.stringify(answers, null, 1)}\n`);
  }
  const r = compare(cases, answers);
  const failing = Object.values(answers).filter((a) => !a.valid).length;
  const failLines = Object.values(answers).reduce((n, a) => n + a.failures.length, 0);
  const errLines = Object.values(answers).reduce((n, a) => n + a.failures.filter((l) => !l.includes(": expected ")).length, 0);
  console.log(`corpus: ${r.cases} policies, ${r.testLines} test lines; headscale: ${r.cases - failing} passed, ${failing} failed their tests (${failLines} failing lines, ${errLines} of them resolution errors); agree ${r.agree}, disagree ${r.disagree}`);
  for (const d of r.disagreements) console.log(JSON.stringify(d, null, 1));
  process.exit(r.disagree === 0 ? 0 : 1);
}
