/**
 * bench/deploy's scale run (issue 19, "ten times larger"): the first deploy
 * and the no-op `meshfleet up` at N agent hosts, for each N asked, with the
 * same Ansible playbook (bench/deploy/ansible.yml) on the same hosts, in the
 * same run.
 *
 *   node --import tsx bench/deploy/scale.ts [--scale 4,20] [--instance 8] [--runs 3] [--no-ansible] [--keep]
 *
 * For each N: `lab down` on the instance, then `lab up` of a generated fleet
 * (bench/deploy/scale-fleet.ts: hosts/lab's 3 agent hosts plus N - 3
 * laptop-like clients, client01.., booted as more nspawn hosts on the
 * laptop's LAN), so every first deploy starts from fresh hosts and an empty
 * stack. Measured:
 *   - first deploy: lab up's `meshfleet up` step (runDeploy, the code behind
 *     the command), from an empty stack onto the fresh hosts: headscale,
 *     Caddy and every node's tailscaled, login and generation;
 *   - no-op up (median of --runs), in process and as a whole `meshfleet up`
 *     command (the prebuilt CLI, `--expect-no-changes`);
 *   - Ansible: a first run into an empty scratch folder, then no-op runs
 *     (median of --runs), forks = max(10, N) so every host runs at once as
 *     meshfleet's do.
 * Then the growth from the first N to each other N, wall time and CPU. CPU
 * beside each wall time: "deploy" = this process and everything it waited
 * for, "hosts" = the fleet's hosts' containers, "machine" = every core's busy
 * time (/proc/stat): what is left of it is other work on the shared machine.
 * The lab goes down at the end (`--keep` leaves the last one up).
 */
import { execa } from "execa";
import { appendFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { runDeploy } from "../../cli/commands/deploy.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { fleetHosts } from "../../lab/e2e/fleet.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO } from "../../lab/e2e/pulumi.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { ansible, ansibleSetup, cpuNow, median, prebuilt, s } from "./measure.ts";
import { LAB_AGENT_HOSTS, parseScales, scaleFleet } from "./scale-fleet.ts";

const argOf = (name: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const instance = Number(argOf("instance") ?? 8);
const runs = Number(argOf("runs") ?? 3);
const scales = parseScales(argOf("scale") ?? "4,20");
const withAnsible = !process.argv.includes("--no-ansible");
const keep = process.argv.includes("--keep");
const p = e2ePaths(instance);
const load = () => os.loadavg().map((x) => x.toFixed(1)).join(" ");

/** Busy ms of every core so far (/proc/stat's first line: all but idle and iowait). */
function machineBusy(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f as [number, number, number, number, number, number, number, number];
  return (user + nice + system + irq + softirq + steal) * 10;
}

type Cpu = { deploy: number; hosts: number; machine: number };
type Measured = { ms: number; cpu: Cpu };

/** Wall time and CPU of `fn`, on the fleet's hosts. */
function clock(hosts: readonly string[]) {
  const now = (): Cpu => ({ ...cpuNow(instance, hosts), machine: machineBusy() });
  let t0 = 0;
  let c0: Cpu = { deploy: 0, hosts: 0, machine: 0 };
  return {
    start: () => {
      c0 = now();
      t0 = Date.now();
    },
    stop: (): Measured => {
      const ms = Date.now() - t0;
      const c1 = now();
      return { ms, cpu: { deploy: c1.deploy - c0.deploy, hosts: c1.hosts - c0.hosts, machine: c1.machine - c0.machine } };
    },
  };
}

const cpuText = (m: Measured) =>
  `cpu deploy ${s(m.cpu.deploy)}, hosts ${s(m.cpu.hosts)}, machine ${s(m.cpu.machine)} of ${s(m.ms * os.cpus().length)} (others ${s(Math.max(0, m.cpu.machine - m.cpu.deploy - m.cpu.hosts))})`;
const line = (label: string, m: Measured, extra = "") => console.log(`  ${label.padEnd(36)} ${s(m.ms).padStart(8)}  ${cpuText(m)}${extra ? `  ${extra}` : ""}`);

/** hosts/lab's files with the generated clients, written beside the lab's state; returns the folder. */
function writeFleet(n: number): string {
  const lab = Object.fromEntries(readdirSync(join(REPO, "hosts", "lab")).map((f) => [f, readFileSync(join(REPO, "hosts", "lab", f), "utf8")]));
  const dir = join(p.dir, `hosts-scale${n}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(scaleFleet(lab, instance, n))) writeFileSync(join(dir, f), text);
  return dir;
}

interface Scale {
  n: number;
  hosts: string[];
  bootMs: number;
  first: Measured;
  firstChanges: string;
  noop: Measured[];
  noopCmd: Measured[];
  ansibleFirst?: Measured;
  ansibleNoop: Measured[];
  load: { before: string; after: string };
}

async function measure(n: number): Promise<Scale> {
  console.log(`\n== ${n} agent hosts (hosts/lab's ${LAB_AGENT_HOSTS} + ${n - LAB_AGENT_HOSTS} generated clients), lab ${instance}; load ${load()}`);
  await labDown({ instance, log: () => {} });
  const dir = writeFleet(n);
  const hosts = fleetHosts(dir);
  const c = clock(hosts);
  const upLog = join(p.dir, `bench-scale${n}-lab-up.log`);
  rmSync(upLog, { force: true });
  let first: Measured | undefined;
  const t = Date.now();
  const before = load();
  const r = await labUp({
    instance,
    noBuild: true,
    fleetDir: dir,
    clients: n - LAB_AGENT_HOSTS,
    // Every line to a log beside the lab's state; the steps' ends and failures here.
    log: (l) => {
      appendFileSync(upLog, `${l}\n`);
      if (/ ok \(|FAILED/.test(l)) console.log(`    ${l.trim().slice(0, 160)}`);
    },
    beforeDeploy: async () => c.start(),
    afterDeploy: () => (first = c.stop()),
  });
  if (!r.ok) throw new Error(`lab up of ${n} agent hosts failed at ${r.failedStep}: ${r.error}`);
  const bootMs = r.steps.find((x) => x.step === "hosts")?.ms ?? NaN;
  console.log(`  lab up ${s(Date.now() - t)} (hosts step ${s(bootMs)}); ${hosts.length} agent hosts: ${hosts.join(", ")}`);
  const firstChanges = r.pulumi?.changes ?? "";
  line("first deploy (meshfleet up)", first!, firstChanges);

  const env = labPulumiEnv(instance);
  const noop: Measured[] = [];
  for (let i = 0; i < runs; i++) {
    c.start();
    const d = await runDeploy({ verb: "up", stack: STACK, configFile: p.stackConfig, env, logFile: p.log });
    const m = c.stop();
    if (!d.ok) throw new Error(`no-op up #${i + 1}: ${d.errors.join("; ")}`);
    line(`no-op up, in process #${i + 1}`, m, JSON.stringify(d.changes));
    noop.push(m);
  }
  const noopCmd: Measured[] = [];
  for (let i = 0; i < runs; i++) {
    const via = await prebuilt();
    c.start();
    const x = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "up", "--stack", STACK, "--config-file", p.stackConfig, "--yes", "--expect-no-changes"], {
      reject: false,
      cwd: REPO,
      env: { ...process.env, ...env },
    });
    const m = c.stop();
    if (x.exitCode !== 0) throw new Error(`meshfleet up command #${i + 1} exited ${x.exitCode}: ${String(x.stderr).trim().slice(-400)}`);
    line(`meshfleet up command, no-op #${i + 1}`, m, `via ${via}`);
    noopCmd.push(m);
  }

  let ansibleFirst: Measured | undefined;
  const ansibleNoop: Measured[] = [];
  if (withAnsible) {
    const rendered = join(p.dir, "rendered");
    const adir = join(p.dir, "bench-ansible");
    const inventory = await ansibleSetup(instance, adir, rendered, hosts);
    const forks = Math.max(10, hosts.length);
    c.start();
    const a = await ansible(adir, inventory, rendered, `ansible: first run, forks ${forks}`, forks);
    ansibleFirst = c.stop();
    line("  (its CPU)", ansibleFirst);
    if (a.changed < hosts.length) throw new Error(`ansible's first run changed ${a.changed} tasks on ${hosts.length} hosts: expected the copy and handlers to run on each`);
    for (let i = 0; i < runs; i++) {
      c.start();
      const x = await ansible(adir, inventory, rendered, `ansible: no-op #${i + 1}`, forks);
      const m = c.stop();
      if (x.changed !== 0) throw new Error(`ansible's no-op run #${i + 1} changed ${x.changed} tasks`);
      line("  (its CPU)", m);
      ansibleNoop.push(m);
    }
  }
  return { n, hosts, bootMs, first: first!, firstChanges, noop, noopCmd, ansibleFirst, ansibleNoop, load: { before, after: load() } };
}

/** The run whose wall time is the median's, so its CPU goes with it. */
const med = (xs: Measured[]): Measured => {
  const m = median(xs.map((x) => x.ms));
  return xs.find((x) => x.ms === m)!;
};
const cpuAll = (m: Measured) => m.cpu.deploy + m.cpu.hosts;

function report(results: Scale[]): void {
  const base = results[0]!;
  console.log(`\n== bench/deploy scale, lab ${instance}, ${os.cpus().length} cores, medians of ${runs}`);
  const rows: [string, (x: Scale) => Measured | undefined][] = [
    ["first deploy (meshfleet up)", (x) => x.first],
    ["no-op up, in process", (x) => med(x.noop)],
    ["no-op meshfleet up command", (x) => med(x.noopCmd)],
    ["ansible first run", (x) => x.ansibleFirst],
    ["ansible no-op", (x) => (x.ansibleNoop.length ? med(x.ansibleNoop) : undefined)],
  ];
  for (const [label, get] of rows) {
    const b = get(base);
    if (!b) continue;
    const cells = results.map((x) => {
      const m = get(x)!;
      const growth = x === base ? "" : `, growth ${(m.ms / b.ms).toFixed(2)}x wall, ${(cpuAll(m) / cpuAll(b)).toFixed(2)}x CPU`;
      return `${x.n} hosts ${s(m.ms)} (CPU deploy ${s(m.cpu.deploy)} + hosts ${s(m.cpu.hosts)}${growth})`;
    });
    console.log(`${label}: ${cells.join("; ")}`);
  }
  for (const x of results.slice(1)) {
    const g = (a: Measured, b: Measured) => a.ms / b.ms;
    const target = (r: number) => (r < 2 ? "met" : "missed");
    const f = g(x.first, base.first);
    const nc = g(med(x.noopCmd), med(base.noopCmd));
    const np = g(med(x.noop), med(base.noop));
    console.log(`growth ${base.n} -> ${x.n} agent hosts (target < 2x): first deploy ${f.toFixed(2)}x (${target(f)}), no-op command ${nc.toFixed(2)}x (${target(nc)}), no-op in process ${np.toFixed(2)}x (${target(np)})`);
  }
  if (withAnsible) {
    for (const x of results) {
      console.log(`ansible / meshfleet at ${x.n} hosts: first run ${(x.ansibleFirst!.ms / x.first.ms).toFixed(2)}x the first deploy (which does far more), no-op ${(med(x.ansibleNoop).ms / med(x.noopCmd).ms).toFixed(2)}x the no-op command`);
    }
  }
  for (const x of results) console.log(`load at ${x.n} hosts: ${x.load.before} before, ${x.load.after} after; hosts step (boot) ${s(x.bootMs)}`);
  writeFileSync(join(p.dir, "bench-scale.json"), JSON.stringify({ at: new Date().toISOString(), instance, runs, cores: os.cpus().length, results }, null, 2) + "\n");
}

async function main(): Promise<void> {
  if (!argOf("child-out")) console.log(`bench/deploy scale ${scales.join(", ")} agent hosts on lab ${instance}; load ${load()}`);
  const results: Scale[] = [];
  const child = argOf("child-out");
  if (child) {
    writeFileSync(child, JSON.stringify(await measure(scales[0]!)));
    return;
  }
  try {
    // Each count in a process of its own, as a user's runs are: the deploy's code keeps host key pins
    // for the life of a process (provider/pins.ts), and a lab booted again has new host keys.
    for (const n of scales) {
      const out = join(p.dir, `bench-scale${n}.json`);
      rmSync(out, { force: true });
      const x = await execa(process.execPath, [...process.execArgv, process.argv[1]!, "--scale", String(n), "--instance", String(instance), "--runs", String(runs), "--child-out", out, ...(withAnsible ? [] : ["--no-ansible"])], { stdio: "inherit", reject: false });
      if (x.exitCode !== 0) throw new Error(`the run of ${n} agent hosts exited ${x.exitCode}`);
      results.push(JSON.parse(readFileSync(out, "utf8")) as Scale);
    }
  } finally {
    if (results.length > 0) report(results);
    if (!keep) {
      await labDown({ instance, log: () => {} });
      console.log(`lab ${instance} down`);
    }
  }
}

main().then(() => argOf("child-out") || console.log(`load at the end ${load()}`)).catch((e) => {
  console.error(`bench/deploy scale: ${(e as Error).message}`);
  process.exitCode = 1;
});
