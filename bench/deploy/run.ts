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
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { runDeploy, type DeployResult } from "../../cli/commands/deploy.ts";
import { sshArgs } from "../../lab/hosts/index.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO, runPulumi } from "../../lab/e2e/pulumi.ts";
import { fleetHosts } from "../../lab/e2e/up.ts";

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
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// ---- CPU ----

const TICK_MS = 10; // CLK_TCK is 100 on Linux
/** utime, stime, cutime, cstime of /proc/PID/stat in ms (the fields after the command's closing parenthesis). */
function procCpu(pid: number | "self"): { self: number; children: number; ppid: number } | undefined {
  try {
    const t = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = t.slice(t.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) * TICK_MS, children: (Number(f[13]) + Number(f[14])) * TICK_MS };
  } catch {
    return undefined;
  }
}

/** CPU ms of the lab hosts' containers: every process under each host's systemd-nspawn, with its reaped children. */
function hostsCpu(): number {
  const all = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number);
  const roots = new Set<number>();
  for (const pid of all) {
    let cmd = "";
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (!readlinkSync(`/proc/${pid}/exe`).endsWith("systemd-nspawn")) continue;
    } catch {
      continue;
    }
    if (fleetHosts().some((h) => cmd.includes(`--machine=mfl${instance}-${h}\0`))) roots.add(pid);
  }
  const stats = new Map(all.map((pid) => [pid, procCpu(pid)] as const).filter((x): x is [number, NonNullable<ReturnType<typeof procCpu>>] => x[1] !== undefined));
  const under = (pid: number): boolean => {
    for (let x = pid, i = 0; x > 1 && i < 64; x = stats.get(x)?.ppid ?? 0, i++) if (roots.has(x)) return true;
    return false;
  };
  let ms = 0;
  for (const [pid, st] of stats) if (under(pid)) ms += st.self + st.children;
  return ms;
}

/** CPU so far: this process with everything it waited for, and the lab hosts. */
function cpuNow(): { deploy: number; hosts: number } {
  const me = procCpu("self")!;
  return { deploy: me.self + me.children, hosts: hostsCpu() };
}

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

/** The lab hosts' ssh options as Ansible wants them: its user, address and common args. */
function ansibleInventory(dir: string, rendered: string, hosts: string[]): string {
  const lines = ["[lab]"];
  let common: string[] = [];
  for (const h of hosts) {
    const args = sshArgs(h, { instance });
    const dest = args.at(-1)!;
    const [user, address] = dest.split("@") as [string, string];
    // Everything but the destination, with -i given to Ansible as its key file.
    const opts = args.slice(0, -1);
    const k = opts.indexOf("-i");
    const key = opts[k + 1]!;
    common = opts.filter((_, j) => j !== k && j !== k + 1);
    const hdir = join(rendered, h);
    const hasNft = existsSync(join(hdir, "meshfleet", "nftables.nft"));
    const hasSysctl = existsSync(join(hdir, "etc", "sysctl.d"));
    lines.push(`${h} ansible_host=${address} ansible_user=${user} ansible_ssh_private_key_file=${key} has_nft=${hasNft} has_sysctl=${hasSysctl}`);
  }
  lines.push("", "[lab:vars]", `ansible_ssh_common_args='${common.join(" ")}'`, "ansible_python_interpreter=/usr/bin/python3");
  const f = join(dir, "inventory.ini");
  writeFileSync(f, lines.join("\n") + "\n");
  return f;
}

const SCRATCH = "/tmp/mf-ansible";

/** One ansible-playbook run; the time is the whole process, as for a user. */
async function ansible(inventory: string, rendered: string, label: string): Promise<{ ms: number; changed: number }> {
  const dir = join(p.dir, "bench-ansible");
  const t = Date.now();
  const r = await execa("ansible-playbook", ["-i", inventory, join(REPO, "bench", "deploy", "ansible.yml"), "-e", `rendered=${rendered}`, "-e", `scratch=${SCRATCH}`], {
    reject: false,
    cwd: dir,
    env: {
      ANSIBLE_CONFIG: join(dir, "ansible.cfg"),
      ANSIBLE_HOST_KEY_CHECKING: "True",
      ANSIBLE_PIPELINING: "True",
      ANSIBLE_FORKS: "10",
      ANSIBLE_NOCOLOR: "1",
      ANSIBLE_RETRY_FILES_ENABLED: "False",
      ANSIBLE_LOCAL_TEMP: join(dir, "tmp"),
      ANSIBLE_SSH_CONTROL_PATH_DIR: join(dir, "cp"),
      ANSIBLE_HOME: join(dir, "home"),
    },
  });
  const ms = Date.now() - t;
  if (r.exitCode !== 0) throw new Error(`ansible-playbook (${label}) exited ${r.exitCode}: ${String(r.stdout).trim().split("\n").slice(-12).join("\n")}\n${String(r.stderr).trim()}`);
  const recap = String(r.stdout).split("PLAY RECAP")[1] ?? "";
  const changed = [...recap.matchAll(/changed=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  console.log(`  ${label.padEnd(34)} ${s(ms).padStart(8)}  changed=${changed}`);
  return { ms, changed };
}

/** Whether bin/meshfleet.mjs runs the prebuilt CLI; builds it first when stale. */
async function prebuilt(): Promise<string> {
  // @ts-expect-error plain JS, no types
  const { freshManifest } = (await import("../../bin/meshfleet.mjs")) as { freshManifest: () => Promise<unknown> };
  if (await freshManifest()) return "prebuilt CLI";
  const b = await execa(process.execPath, [join(REPO, "cli", "build.mjs")], { reject: false, cwd: REPO });
  if (b.exitCode !== 0) return `tsx (the prebuilt CLI does not build: ${String(b.stderr).trim().split("\n")[0]})`;
  return (await freshManifest()) ? "prebuilt CLI (rebuilt)" : "tsx (sources changed while building)";
}

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
  const adir = join(p.dir, "bench-ansible");
  rmSync(adir, { recursive: true, force: true });
  mkdirSync(join(adir, "tmp"), { recursive: true });
  writeFileSync(join(adir, "ansible.cfg"), "[defaults]\nstdout_callback = default\n");
  const inventory = ansibleInventory(adir, rendered, hosts);
  await Promise.all(hosts.map((h) => execa("ssh", [...sshArgs(h, { instance }), `rm -rf ${SCRATCH}`])));
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
