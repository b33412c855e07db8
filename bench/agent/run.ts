/**
 * Agent benchmark: bundle size, `--help` start-up, a switch's wall time and
 * peak RSS, each against a floor measured in the same run:
 *   --help  vs `node -e 0` (the runtime's own start-up)
 *   switch  vs a plain shell script doing the same file writes + `sysctl -p` + `nft -f`
 * Switches run for real (nft, /proc/sys) inside a private network and mount
 * namespace this script creates (`unshare --net --mount`), with tmpfs over
 * /var/lib and /etc/sysctl.d: the machine's own firewall, sysctls and files
 * are never touched. Needs root.
 *   node --import tsx bench/agent/run.ts [--runs N]
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { BUNDLE_FORMAT, bundleHash, sha256, type Bundle, type Firewall, type NftRule } from "../../contract/bundle.ts";
import { nftScript } from "../../contract/nftables.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");
const AGENT = path.join(REPO, "dist", "meshfleet-agent.mjs");
const runsArg = process.argv.indexOf("--runs");
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 7;

// Hosts run the agent with a plain environment; an extra CA bundle alone adds tens of ms to every node start.
delete process.env.NODE_EXTRA_CA_CERTS;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (f: () => void) => {
  const t = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t) / 1e6;
};
const must = (argv: string[], env?: NodeJS.ProcessEnv) => {
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", env: env ?? process.env });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: exit ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
};

const FILES_DIR = "/var/lib/meshfleet-bench";
const SYSCTL = { "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1", "net.ipv4.conf.all.rp_filter": "2", "net.core.somaxconn": "1024" };

function firewall(v: number): Firewall {
  const rules: NftRule[] = Array.from({ length: 40 }, (_, i) => ({ saddr: { family: "ip", set: "peers" }, l4: { proto: "tcp", dports: [10000 + i + v] }, verdict: "accept", comment: `rule ${i}` }));
  return {
    family: "inet",
    table: "meshfleet",
    sets: [{ name: "peers", type: "ipv4_addr", elements: ["100.64.0.0/24", `100.64.${v}.0/24`], members: [] }],
    chains: [{ name: "input", hook: { type: "filter", hook: "input", priority: "filter", policy: "accept" }, rules: [{ ctState: ["established", "related"], verdict: "accept" }, ...rules] }],
  };
}

function makeBundle(v: number): Bundle {
  const files = Array.from({ length: 20 }, (_, i) => {
    const content = `# file ${i}, version ${v}\n${"x".repeat(2000)}\n`;
    return { path: `${FILES_DIR}/etc/f${String(i).padStart(2, "0")}.conf`, mode: "0644", owner: "root", group: "root", sha256: sha256(content), content, secret: false };
  });
  const body: Omit<Bundle, "hash"> = {
    format: BUNDLE_FORMAT,
    host: "bench",
    files,
    sysctl: SYSCTL,
    units: [],
    firewall: firewall(v),
    tailscale: null,
    probes: [],
    metrics: { enable: false, textfileDir: "" },
    bestEffort: [],
  };
  return { ...body, hash: bundleHash(body) };
}

/** The floor: what a hand-written deploy script does for the same bundle. */
function floorScript(b: Bundle, dir: string): string {
  const lines = ["#!/bin/sh", "set -e", `mkdir -p ${FILES_DIR}/etc`];
  b.files.forEach((f, i) => lines.push(`cp ${dir}/f${i} ${f.path}.tmp && chmod ${f.mode} ${f.path}.tmp && mv ${f.path}.tmp ${f.path}`));
  lines.push(`sysctl -q -p ${dir}/sysctl.conf`, `nft -f ${dir}/ruleset.nft`);
  b.files.forEach((f, i) => fs.writeFileSync(path.join(dir, `f${i}`), f.content));
  fs.writeFileSync(path.join(dir, "sysctl.conf"), Object.entries(b.sysctl).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n");
  fs.writeFileSync(path.join(dir, "ruleset.nft"), nftScript(b.firewall));
  const script = path.join(dir, "deploy.sh");
  fs.writeFileSync(script, lines.join("\n") + "\n", { mode: 0o755 });
  return script;
}

/** Wall ms and peak RSS (KiB) of one command, via GNU time when present. */
function measured(argv: string[]): { ms: number; rssKiB: number | null } {
  const hasTime = fs.existsSync("/usr/bin/time");
  const out = "/tmp/meshfleet-bench-time";
  let r: ReturnType<typeof spawnSync> | undefined;
  const t = ms(() => {
    r = spawnSync(hasTime ? "/usr/bin/time" : argv[0], hasTime ? ["-f", "%M", "-o", out, ...argv] : argv.slice(1), { encoding: "utf8" });
  });
  if (r!.status !== 0) throw new Error(`${argv.join(" ")}: exit ${r!.status}: ${r!.stderr}`);
  return { ms: t, rssKiB: hasTime ? Number(fs.readFileSync(out, "utf8").trim().split("\n").pop()) : null };
}

function inner(): void {
  // Private mounts: the agent's state and sysctl.d land on tmpfs that vanish with this namespace.
  must(["mount", "-t", "tmpfs", "tmpfs", "/var/lib"]);
  must(["mount", "-t", "tmpfs", "tmpfs", "/etc/sysctl.d"]);
  const work = fs.mkdtempSync("/var/lib/bench-");
  const bundles = [makeBundle(1), makeBundle(2)];
  const bundleFiles = bundles.map((b, i) => {
    const p = path.join(work, `b${i}.json`);
    fs.writeFileSync(p, JSON.stringify(b));
    return p;
  });
  const floors = bundles.map((b, i) => {
    const d = path.join(work, `floor${i}`);
    fs.mkdirSync(d);
    return floorScript(b, d);
  });
  const agentSwitch: number[] = [];
  const floor: number[] = [];
  const rss: number[] = [];
  const noop: number[] = [];
  const first = measured([process.execPath, AGENT, "switch", bundleFiles[0]]);
  for (let i = 0; i < RUNS; i++) {
    const k = (i + 1) % 2;
    const a = measured([process.execPath, AGENT, "switch", bundleFiles[k]]);
    agentSwitch.push(a.ms);
    if (a.rssKiB) rss.push(a.rssKiB);
    floor.push(measured(["/bin/sh", floors[k]]).ms);
    // put the agent's view back in line with the host after the floor script rewrote it
    noop.push(measured([process.execPath, AGENT, "switch", bundleFiles[k]]).ms);
    const v = spawnSync(process.execPath, [AGENT, "verify"], { encoding: "utf8" });
    if (v.status !== 0) throw new Error(`verify after switch ${i}: ${v.stdout}${v.stderr}`);
  }
  const result = {
    firstSwitchMs: first.ms,
    switchMs: median(agentSwitch),
    floorMs: median(floor),
    noopMs: median(noop),
    rssKiB: rss.length ? Math.max(...rss) : null,
  };
  process.stdout.write(JSON.stringify(result));
}

function outer(): void {
  if (process.getuid?.() !== 0) {
    console.error("bench/agent needs root (it makes a private network and mount namespace for nft and sysctl)");
    process.exit(2);
  }
  execFileSync(process.execPath, [path.join(REPO, "agent", "build.mjs")], { stdio: "pipe" });
  const size = fs.statSync(AGENT).size;

  const helpAgent: number[] = [];
  const helpFloor: number[] = [];
  for (let i = 0; i < 15; i++) {
    helpFloor.push(ms(() => must([process.execPath, "-e", "0"])));
    helpAgent.push(ms(() => must([process.execPath, AGENT, "--help"])));
  }
  const helpMs = median(helpAgent);
  const nodeMs = median(helpFloor);

  const r = spawnSync("unshare", ["--net", "--mount", "--propagation", "private", process.execPath, "--import", "tsx", fileURLToPath(import.meta.url), "--inner", "--runs", String(RUNS)], {
    encoding: "utf8",
    cwd: REPO,
  });
  if (r.status !== 0) throw new Error(`sandboxed switch bench failed: ${r.stderr}${r.stdout}`);
  const s = JSON.parse(r.stdout) as { firstSwitchMs: number; switchMs: number; floorMs: number; noopMs: number; rssKiB: number | null };

  const row = (what: string, value: string, budget: string, ratio: string) => console.log(`${what.padEnd(34)} ${value.padStart(12)}  ${budget.padEnd(12)} ${ratio}`);
  console.log(`meshfleet agent bench (node ${process.version}, ${RUNS} switches, 20 files + 4 sysctls + 42-rule nft table)`);
  row("what", "measured", "budget", "vs floor");
  row("bundle size", `${(size / 1024).toFixed(1)} KiB`, "< 400 KiB", "");
  row("--help", `${helpMs.toFixed(0)} ms`, "< 150 ms", `${(helpMs / nodeMs).toFixed(2)}x node -e 0 (${nodeMs.toFixed(0)} ms)`);
  row("first switch (gen 0 -> 1)", `${s.firstSwitchMs.toFixed(0)} ms`, "", "");
  row("switch (changed bundle, median)", `${s.switchMs.toFixed(0)} ms`, "", `${(s.switchMs / s.floorMs).toFixed(2)}x shell nft -f + sysctl -p (${s.floorMs.toFixed(0)} ms)`);
  row("switch, unchanged bundle (no-op)", `${s.noopMs.toFixed(0)} ms`, "", `${(s.noopMs / s.floorMs).toFixed(2)}x shell`);
  row("peak RSS during a switch", s.rssKiB ? `${(s.rssKiB / 1024).toFixed(1)} MiB` : "n/a", "< 60 MiB", "");
  const over = size > 400 * 1024 || helpMs > 150 || (s.rssKiB ?? 0) > 60 * 1024;
  if (over) {
    console.log("OVER BUDGET");
    process.exit(1);
  }
}

if (process.argv.includes("--inner")) inner();
else outer();
