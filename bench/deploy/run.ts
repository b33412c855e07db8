/**
 * bench/deploy: `meshfleet up` on the lab's hosts, against a floor and an
 * Ansible playbook measured in the same run, with ratios.
 *
 *   node --import tsx bench/deploy/run.ts [--instance 0] [--runs 3]
 *
 * Needs a deployed lab (`meshfleet lab up`); leaves it deployed as it found it.
 * Measured, each deploy through runDeploy (the code behind `meshfleet up`):
 *   - no-op up (median of --runs), in process and as a whole `meshfleet up`
 *     command (Node start included);
 *   - a one-host change: one more advertised route on lxc-tailscale;
 *   - one file (the sshd drop-in) on one host (laptop), then on every host:
 *     the growth from 1 host to all of them;
 *   - refresh;
 *   - the floor: per host, in parallel, one ssh piping a tar of that host's
 *     rendered files into a scratch folder, then `nft -c -f` of its ruleset
 *     and `sysctl -p` of its sysctl file (what any push tool must at least do);
 *   - Ansible (Debian's ansible-core; bench/deploy/ansible.yml) doing the same
 *     pushes over the same ssh (the lab's key, its known_hosts pinned,
 *     StrictHostKeyChecking=yes): a first run into an empty scratch folder,
 *     then no-op runs (median of --runs).
 * Each change starts from the deployed hosts/lab and is put back (not
 * counted) before the next. Not measured here: the first deploy (see `lab
 * up`'s "meshfleet up" step, printed from up.json when present).
 *
 * CPU beside wall time: the lab's hosts and this process share the
 * machine's cores, so the wall time of parallel switches is bounded by the
 * CPU they need. Printed per deploy: "deploy" = this process and everything
 * it waited for (the Pulumi CLI, the provider, ssh: /proc/self/stat with
 * children), "hosts" = the lab hosts' containers (each nspawn host's
 * process tree, exited processes counted through their parents).
 * The `meshfleet up` command runs the prebuilt CLI (dist/cli): it is built
 * first when stale, and each run says which it ran.
 */
import { execa } from "execa";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { runDeploy, type DeployResult } from "../../cli/commands/deploy.ts";
import { sshArgs } from "../../lab/hosts/index.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO, runPulumi } from "../../lab/e2e/pulumi.ts";
import { fleetHosts } from "../../lab/e2e/up.ts";
import { ansible as ansibleIn, ansibleSetup, cpuNow as cpuNowOf, median, prebuilt, s } from "./measure.ts";

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const instance = arg("instance", 0);
const runs = arg("runs", 3);
/** `--no-ansible` skips the Ansible baseline (for quick runs while profiling; its ratio is then not printed). */
const withAnsible = !process.argv.includes("--no-ansible");
const p = e2ePaths(instance);
const env = labPulumiEnv(instance);

/** CPU so far: this process with everything it waited for, and the lab hosts. */
const cpuNow = () => cpuNowOf(instance, fleetHosts());

const cpuText = (a: { deploy: number; hosts: number }, b: { deploy: number; hosts: number }) =>
  `cpu deploy ${s(b.deploy - a.deploy)}, hosts ${s(b.hosts - a.hosts)}`;

type Measured = { ms: number; cpu: { deploy: number; hosts: number } };

async function up(label: string, verb: "up" | "refresh" = "up"): Promise<Measured & { r: DeployResult }> {
  const c0 = cpuNow();
  const t = Date.now();
  const r = await runDeploy({ verb, stack: STACK, configFile: p.stackConfig, env, logFile: p.log });
  const ms = Date.now() - t;
  const c1 = cpuNow();
  if (!r.ok) throw new Error(`${label}: ${r.errors.join("; ")}`);
  console.log(`  ${label.padEnd(34)} ${s(ms).padStart(8)}  ${cpuText(c0, c1)}  ${JSON.stringify(r.changes)}`);
  return { ms, r, cpu: { deploy: c1.deploy - c0.deploy, hosts: c1.hosts - c0.hosts } };
}

async function setHostsDir(dir: string): Promise<void> {
  const r = await runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:hostsDir", dir], { env });
  if (r.code !== 0) throw new Error(`pulumi config set meshfleet:hostsDir: ${r.stderr.trim()}`);
}

/** A copy of hosts/lab with `edit` applied to one file; returns its folder. */
function editedFleet(name: string, file: string, edit: (text: string) => string): string {
  const dir = join(p.dir, `bench-${name}`);
  rmSync(dir, { recursive: true, force: true });
  cpSync(join(REPO, "hosts", "lab"), dir, { recursive: true });
  const f = join(dir, file);
  const before = readFileSync(f, "utf8");
  const after = edit(before);
  if (after === before) throw new Error(`${file}: the bench's edit no longer applies`);
  writeFileSync(f, after);
  return dir;
}

/** One ssh per host, in parallel: tar of its rendered files, nft -c -f, sysctl -p. */
async function floor(): Promise<number> {
  const rendered = join(p.dir, "rendered");
  const hosts = fleetHosts().filter((h) => existsSync(join(rendered, h)));
  const t = Date.now();
  await Promise.all(
    hosts.map(async (h) => {
      const dir = join(rendered, h);
      const nft = existsSync(join(dir, "meshfleet", "nftables.nft")) ? "nft -c -f /tmp/mf-floor/meshfleet/nftables.nft" : "true";
      const sysctl = readdirSync(join(dir, "etc")).includes("sysctl.d") ? "sysctl -q -p /tmp/mf-floor/etc/sysctl.d/*.conf" : "true";
      const tar = execa("tar", ["-C", dir, "-cf", "-", "."]);
      const ssh = execa("ssh", [...sshArgs(h, { instance }), `rm -rf /tmp/mf-floor && mkdir -p /tmp/mf-floor && tar -C /tmp/mf-floor -xf - && ${nft} && ${sysctl}`], { reject: false });
      tar.stdout!.pipe(ssh.stdin!);
      const r = await ssh;
      if (r.exitCode !== 0) throw new Error(`floor on ${h}: ${String(r.stderr).trim()}`);
    }),
  );
  return Date.now() - t;
}

/** One ansible-playbook run from the bench's Ansible folder. */
const ansible = (inventory: string, rendered: string, label: string) => ansibleIn(join(p.dir, "bench-ansible"), inventory, rendered, label);

/** A whole `meshfleet up` command, as a user runs it (Node start, CLI load, the deploy). */
async function upCommand(label: string): Promise<Measured> {
  const via = await prebuilt();
  const c0 = cpuNow();
  const t = Date.now();
  const r = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "up", "--stack", STACK, "--config-file", p.stackConfig, "--yes", "--expect-no-changes"], {
    reject: false,
    cwd: REPO,
    env: { ...process.env, ...env },
  });
  const ms = Date.now() - t;
  const c1 = cpuNow();
  if (r.exitCode !== 0) throw new Error(`${label}: meshfleet up exited ${r.exitCode}: ${String(r.stderr).trim().slice(-400)}`);
  console.log(`  ${label.padEnd(34)} ${s(ms).padStart(8)}  ${cpuText(c0, c1)}  via ${via}`);
  return { ms, cpu: { deploy: c1.deploy - c0.deploy, hosts: c1.hosts - c0.hosts } };
}

/** Deploy an edited copy of hosts/lab, then put hosts/lab back (not counted). */
async function change(label: string, name: string, file: string, edit: (text: string) => string): Promise<Measured> {
  try {
    await setHostsDir(editedFleet(name, file, edit));
    return await up(label);
  } finally {
    await setHostsDir(join(REPO, "hosts", "lab"));
    await up(`  back to hosts/lab (not counted)`);
  }
}

async function main(): Promise<void> {
  console.log(`bench/deploy on lab ${instance} (${fleetHosts().join(", ")}); load ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  const first = existsSync(p.upResult) ? (JSON.parse(readFileSync(p.upResult, "utf8")) as { steps?: { step: string; ms: number; detail?: string }[] }).steps?.find((x) => x.step === "meshfleet up") : undefined;
  if (first) console.log(`  ${"last lab up's deploy (up.json)".padEnd(34)} ${s(first.ms).padStart(8)}  ${first.detail ?? ""}`);
  await up("settle (not counted)");
  const noop: number[] = [];
  for (let i = 0; i < runs; i++) noop.push((await up(`no-op up #${i + 1}`)).ms);
  const noopCmd: Measured[] = [];
  for (let i = 0; i < runs; i++) noopCmd.push(await upCommand(`meshfleet up command, no-op #${i + 1}`));
  const floors: number[] = [];
  for (let i = 0; i < runs; i++) {
    floors.push(await floor());
    console.log(`  ${`floor #${i + 1} (ssh+tar+nft+sysctl)`.padEnd(34)} ${s(floors.at(-1)!).padStart(8)}`);
  }

  const rendered = join(p.dir, "rendered");
  const hosts = fleetHosts().filter((h) => existsSync(join(rendered, h)));
  const aNoop: number[] = [];
  let aFirst = { ms: NaN, changed: 0 };
  if (withAnsible) {
  const inventory = await ansibleSetup(instance, join(p.dir, "bench-ansible"), rendered, hosts);
  aFirst = await ansible(inventory, rendered, "ansible: first run (empty scratch)");
  if (aFirst.changed < hosts.length) throw new Error(`ansible's first run changed ${aFirst.changed} tasks on ${hosts.length} hosts: expected the copy and handlers to run on each`);
  for (let i = 0; i < runs; i++) {
    const r = await ansible(inventory, rendered, `ansible: no-op #${i + 1}`);
    if (r.changed !== 0) throw new Error(`ansible's no-op run #${i + 1} changed ${r.changed} tasks`);
    aNoop.push(r.ms);
  }
  }

  const one = (
    await change("one host: one more route", "route", "lxc-tailscale.yaml", (t) =>
      t.replace("lan: [192.168.8.0/24]", "lan: [192.168.8.0/24, 192.168.9.0/24]").replace("routes: [192.168.8.0/24]", "routes: [192.168.8.0/24, 192.168.9.0/24]"),
    )
  ).ms;
  const sshd = (t: string) => `${t.trimEnd()}\nsshd:\n  permitRootLogin: "yes"\n`;
  // Alternating, --runs times each: the machine's load moves between runs.
  const oneFiles: Measured[] = [];
  const alls: Measured[] = [];
  for (let i = 0; i < runs; i++) {
    oneFiles.push(await change(`one host: one file (laptop sshd) #${i + 1}`, "file1", "laptop.yaml", sshd));
    alls.push(await change(`all ${hosts.length} hosts: one file (sshd) #${i + 1}`, "fileall", "_tools.yaml", sshd));
  }
  const oneFile = median(oneFiles.map((x) => x.ms));
  const all = median(alls.map((x) => x.ms));
  const refresh = (await up("refresh", "refresh")).ms;

  const n = median(noop);
  const nc = median(noopCmd.map((x) => x.ms));
  const cpuMed = (xs: Measured[], k: "deploy" | "hosts") => median(xs.map((x) => x.cpu[k]));
  const f = median(floors);
  const a = withAnsible ? median(aNoop) : NaN;
  console.log("");
  console.log(`no-op up ${s(n)} in process, ${s(nc)} as a command (target <= 4 s: ${nc <= 4000 ? "met" : n <= 4000 ? "met in process only" : "missed"}); floor ${s(f)}; no-op / floor ${(n / f).toFixed(1)}x`);
  if (withAnsible) console.log(`ansible no-op ${s(a)} (first run ${s(aFirst.ms)}): ansible / meshfleet no-op = ${(a / nc).toFixed(2)}x as commands, ${(a / n).toFixed(2)}x in process (target >= 2x: ${a >= 2 * nc ? "met" : a >= 2 * n ? "met in process only" : "missed"})`);
  console.log(`one-host change (route) ${s(one)} = ${(one / (f + n)).toFixed(2)}x (floor + no-op) (target <= 3x: ${one <= 3 * (f + n) ? "met" : "missed"})`);
  console.log(`one file: 1 host ${s(oneFile)}, ${hosts.length} hosts ${s(all)} (medians of ${runs}): growth ${(all / oneFile).toFixed(2)}x (target < 1.5x: ${all < 1.5 * oneFile ? "met" : "missed"}); all hosts / one-host route change ${(all / one).toFixed(2)}x`);
  console.log(
    `  CPU (medians): 1 host deploy ${s(cpuMed(oneFiles, "deploy"))} + hosts ${s(cpuMed(oneFiles, "hosts"))}; ${hosts.length} hosts deploy ${s(cpuMed(alls, "deploy"))} + hosts ${s(cpuMed(alls, "hosts"))}; ` +
      `the hosts' CPU grows ${(cpuMed(alls, "hosts") / cpuMed(oneFiles, "hosts")).toFixed(2)}x while wall grows ${(all / oneFile).toFixed(2)}x (${(os.cpus().length)} cores shared by the lab's hosts and the deploy)`,
  );
  console.log(`no-op command CPU (median): ${s(cpuMed(noopCmd, "deploy"))} deploy, ${s(cpuMed(noopCmd, "hosts"))} hosts`);
  console.log(`refresh ${s(refresh)} = ${(refresh / n).toFixed(2)}x no-op up`);
}

main().then(() => console.log(`load at the end ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`)).catch((e) => {
  console.error(`bench/deploy: ${(e as Error).message}`);
  process.exitCode = 1;
});
