/**
 * What bench/deploy's runs share (run.ts, scale.ts): CPU of this process and
 * of the lab hosts' containers, the Ansible baseline over the lab's ssh, and
 * the prebuilt CLI check.
 */
import { execa } from "execa";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sshArgs } from "../../lab/hosts/index.ts";
import { REPO } from "../../lab/e2e/pulumi.ts";

export const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const TICK_MS = 10; // CLK_TCK is 100 on Linux
/** utime, stime, cutime, cstime of /proc/PID/stat in ms (the fields after the command's closing parenthesis). */
export function procCpu(pid: number | "self"): { self: number; children: number; ppid: number } | undefined {
  try {
    const t = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = t.slice(t.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) * TICK_MS, children: (Number(f[13]) + Number(f[14])) * TICK_MS };
  } catch {
    return undefined;
  }
}

/** CPU ms of lab `instance`'s hosts `hosts`: every process under each host's systemd-nspawn, with its reaped children. */
export function hostsCpu(instance: number, hosts: readonly string[]): number {
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
    if (hosts.some((h) => cmd.includes(`--machine=mfl${instance}-${h}\0`))) roots.add(pid);
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

/** CPU so far: this process with everything it waited for, and the lab's hosts. */
export function cpuNow(instance: number, hosts: readonly string[]): { deploy: number; hosts: number } {
  const me = procCpu("self")!;
  return { deploy: me.self + me.children, hosts: hostsCpu(instance, hosts) };
}

/** The lab hosts' ssh options as Ansible wants them: its user, address and common args. */
export function ansibleInventory(instance: number, dir: string, rendered: string, hosts: readonly string[]): string {
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

/** The scratch folder Ansible copies into on each host. */
export const SCRATCH = "/tmp/mf-ansible";

/** A fresh Ansible folder `dir` (its ansible.cfg and inventory) and an empty scratch folder on every host; returns the inventory. */
export async function ansibleSetup(instance: number, dir: string, rendered: string, hosts: readonly string[]): Promise<string> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, "tmp"), { recursive: true });
  writeFileSync(join(dir, "ansible.cfg"), "[defaults]\nstdout_callback = default\n");
  const inventory = ansibleInventory(instance, dir, rendered, hosts);
  await Promise.all(hosts.map((h) => execa("ssh", [...sshArgs(h, { instance }), `rm -rf ${SCRATCH}`])));
  return inventory;
}

/** One ansible-playbook run from `dir` (its ansible.cfg, temp and ControlPersist folders); the time is the whole process, as for a user. */
export async function ansible(dir: string, inventory: string, rendered: string, label: string, forks = 10): Promise<{ ms: number; changed: number }> {
  const t = Date.now();
  const r = await execa("ansible-playbook", ["-i", inventory, join(REPO, "bench", "deploy", "ansible.yml"), "-e", `rendered=${rendered}`, "-e", `scratch=${SCRATCH}`], {
    reject: false,
    cwd: dir,
    env: {
      ANSIBLE_CONFIG: join(dir, "ansible.cfg"),
      ANSIBLE_HOST_KEY_CHECKING: "True",
      ANSIBLE_PIPELINING: "True",
      ANSIBLE_FORKS: String(forks),
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
export async function prebuilt(): Promise<string> {
  // @ts-expect-error plain JS, no types
  const { freshManifest } = (await import("../../bin/meshfleet.mjs")) as { freshManifest: () => Promise<unknown> };
  if (await freshManifest()) return "prebuilt CLI";
  const b = await execa(process.execPath, [join(REPO, "cli", "build.mjs")], { reject: false, cwd: REPO });
  if (b.exitCode !== 0) return `tsx (the prebuilt CLI does not build: ${String(b.stderr).trim().split("\n")[0]})`;
  return (await freshManifest()) ? "prebuilt CLI (rebuilt)" : "tsx (sources changed while building)";
}
