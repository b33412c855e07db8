/**
 * bench/deploy/per-switch: what one switch costs on a lab host, process by
 * process.
 *
 *   node --import tsx bench/deploy/per-switch.ts [--instance 0] [--runs 2] [--hosts laptop|all]
 *
 * Needs a deployed lab (`meshfleet lab up`); leaves hosts/lab deployed. Each
 * run deploys one file (the sshd drop-in) on the laptop (or on every host
 * with `--hosts all`) through runDeploy, then puts hosts/lab back; both
 * deploys are one-file switches and both are counted.
 *
 * How: the kernel's BSD process accounting (acct(2), switched on for the
 * run only and off again whatever happens) writes a record for every process
 * that exits: its name, parent, user and system time. Each record is placed
 * by its parent chain under a lab host's systemd-nspawn, or under this
 * process (the deploy: the Pulumi CLI, the provider, ssh), or elsewhere
 * (other work on the machine, not counted). Processes that outlive the run
 * (systemd, journald, tailscaled, the ssh master's sshd) are counted by the
 * growth of their /proc CPU over the run. Needs root (CAP_SYS_PACCT).
 */
import { execa } from "execa";
import { cpSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { runDeploy } from "../../cli/commands/deploy.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO, runPulumi } from "../../lab/e2e/pulumi.ts";
import { fleetHosts } from "../../lab/e2e/up.ts";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
};
const instance = Number(arg("instance", "0"));
const runs = Number(arg("runs", "2"));
const which = arg("hosts", "laptop");
const p = e2ePaths(instance);
const env = labPulumiEnv(instance);

/** acct(2) through libc: a path switches accounting on into that file, none switches it off. */
async function acct(file: string | null): Promise<void> {
  const py = `import ctypes,sys\nlibc=ctypes.CDLL(None,use_errno=True)\nif libc.acct(${file === null ? "None" : "sys.argv[1].encode()"})!=0: sys.exit("acct: errno %d" % ctypes.get_errno())`;
  await execa("python3", ["-c", py, ...(file === null ? [] : [file])]);
}

interface Rec {
  pid: number;
  ppid: number;
  comm: string;
  cpuMs: number;
  etimeMs: number;
}

/** comp_t: 13-bit mantissa, 3-bit base-8 exponent. */
const comp = (v: number) => (v & 0x1fff) << (3 * (v >> 13));
const AHZ_MS = 10; // acct v3 counts in AHZ = 100 ticks a second

/** struct acct_v3 records (64 bytes each). */
function readAcct(file: string): Rec[] {
  const b = readFileSync(file);
  const out: Rec[] = [];
  for (let o = 0; o + 64 <= b.length; o += 64) {
    if (b[o + 1] !== 3) continue;
    const pid = b.readUInt32LE(o + 16);
    const ppid = b.readUInt32LE(o + 20);
    const etime = b.readFloatLE(o + 28);
    const ut = comp(b.readUInt16LE(o + 32));
    const st = comp(b.readUInt16LE(o + 34));
    const comm = b.subarray(o + 48, o + 64).toString("latin1").replace(/\0.*$/s, "");
    out.push({ pid, ppid, comm, cpuMs: (ut + st) * AHZ_MS, etimeMs: etime * AHZ_MS });
  }
  return out;
}

interface Live {
  ppid: number;
  comm: string;
  cpuMs: number;
  exe: string;
  cmd: string;
}

function liveProcs(): Map<number, Live> {
  const m = new Map<number, Live>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const t = readFileSync(`/proc/${d}/stat`, "utf8");
      const comm = t.slice(t.indexOf("(") + 1, t.lastIndexOf(")"));
      const f = t.slice(t.lastIndexOf(")") + 2).split(" ");
      let exe = "";
      try {
        exe = readlinkSync(`/proc/${d}/exe`);
      } catch {
        /* kernel thread or gone */
      }
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8");
      m.set(Number(d), { ppid: Number(f[1]), comm, cpuMs: (Number(f[11]) + Number(f[12])) * 10, exe, cmd });
    } catch {
      /* gone */
    }
  }
  return m;
}

/** The lab hosts' nspawn pids, by host name. */
function nspawnRoots(live: Map<number, Live>): Map<number, string> {
  const roots = new Map<number, string>();
  for (const [pid, l] of live) {
    if (!l.exe.endsWith("systemd-nspawn")) continue;
    for (const h of fleetHosts()) if (l.cmd.includes(`--machine=mfl${instance}-${h}\0`)) roots.set(pid, h);
  }
  return roots;
}

type Owner = string; // a host name, "deploy", or "other"

function owner(pid: number, parentOf: (pid: number) => number | undefined, roots: Map<number, string>): Owner {
  for (let x = pid, i = 0; x > 1 && i < 128; i++) {
    if (roots.has(x)) return roots.get(x)!;
    if (x === process.pid) return "deploy";
    const pp = parentOf(x);
    if (pp === undefined) return "other";
    x = pp;
  }
  return "other";
}

async function setHostsDir(dir: string): Promise<void> {
  const r = await runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:hostsDir", dir], { env });
  if (r.code !== 0) throw new Error(`pulumi config set meshfleet:hostsDir: ${r.stderr.trim()}`);
}

function editedFleet(file: string): string {
  const dir = join(p.dir, "bench-per-switch");
  rmSync(dir, { recursive: true, force: true });
  cpSync(join(REPO, "hosts", "lab"), dir, { recursive: true });
  const f = join(dir, file);
  writeFileSync(f, `${readFileSync(f, "utf8").trimEnd()}\nsshd:\n  permitRootLogin: "yes"\n`);
  return dir;
}

async function deploy(label: string): Promise<number> {
  const t = Date.now();
  const r = await runDeploy({ verb: "up", stack: STACK, configFile: p.stackConfig, env, logFile: p.log });
  if (!r.ok) throw new Error(`${label}: ${r.errors.join("; ")}`);
  return Date.now() - t;
}

async function main(): Promise<void> {
  const file = which === "all" ? "_tools.yaml" : "laptop.yaml";
  console.log(`bench/deploy/per-switch on lab ${instance}, one file on ${which === "all" ? "every host" : "laptop"}, ${runs} x 2 switches; load ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`);
  await deploy("settle");
  const tmp = mkdtempSync(join(os.tmpdir(), "mf-acct-"));
  const acctFile = join(tmp, "acct");
  writeFileSync(acctFile, "");
  const before = liveProcs();
  const roots = nspawnRoots(before);
  const wall: number[] = [];
  await acct(acctFile);
  try {
    for (let i = 0; i < runs; i++) {
      await setHostsDir(editedFleet(file));
      wall.push(await deploy(`change #${i + 1}`));
      await setHostsDir(join(REPO, "hosts", "lab"));
      wall.push(await deploy(`back #${i + 1}`));
    }
  } finally {
    await acct(null);
    await setHostsDir(join(REPO, "hosts", "lab"));
    // A failed deploy leaves the records unread: the file goes all the same.
    if (wall.length < runs * 2) rmSync(tmp, { recursive: true, force: true });
  }
  let recs: Rec[];
  const after = liveProcs();
  try {
    recs = readAcct(acctFile);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const switches = runs * 2;

  // Parents: a live process's from /proc, an exited one's from its (latest) record.
  const recParent = new Map<number, number>();
  for (const r of recs) recParent.set(r.pid, r.ppid);
  const parentOf = (pid: number) => after.get(pid)?.ppid ?? before.get(pid)?.ppid ?? recParent.get(pid);

  type Row = { n: number; cpuMs: number; etimeMs: number };
  const table = new Map<Owner, Map<string, Row>>();
  const add = (o: Owner, key: string, cpuMs: number, etimeMs: number) => {
    const t = table.get(o) ?? new Map<string, Row>();
    table.set(o, t);
    const row = t.get(key) ?? { n: 0, cpuMs: 0, etimeMs: 0 };
    row.n++;
    row.cpuMs += cpuMs;
    row.etimeMs += etimeMs;
    t.set(key, row);
  };
  for (const r of recs) add(owner(r.pid, parentOf, roots), r.comm, r.cpuMs, r.etimeMs);
  for (const [pid, a] of after) {
    const d = a.cpuMs - (before.get(pid)?.cpuMs ?? 0);
    if (d <= 0 || pid === process.pid) continue;
    add(owner(pid, parentOf, roots), `${a.comm} (alive)`, d, 0);
  }
  // This process itself (the engine's side in process: runDeploy, the Automation API).
  const self = after.get(process.pid)!;
  add("deploy", "this process (runDeploy)", self.cpuMs - (before.get(process.pid)?.cpuMs ?? 0), 0);

  console.log(`wall per deploy: ${wall.map((ms) => (ms / 1000).toFixed(2)).join(", ")} s`);
  for (const o of [...fleetHosts().filter((h) => table.has(h)), "deploy"]) {
    const t = table.get(o);
    if (!t) continue;
    const rows = [...t.entries()].sort((a, b) => b[1].cpuMs - a[1].cpuMs);
    const total = rows.reduce((a, [, r]) => a + r.cpuMs, 0);
    console.log(`\n${o}: ${(total / switches).toFixed(0)} ms CPU per switch (${switches} switches)`);
    for (const [k, r] of rows) {
      if (r.cpuMs === 0 && r.n < switches) continue;
      console.log(`  ${k.padEnd(28)} ${(r.n / switches).toFixed(1).padStart(5)} per switch  ${(r.cpuMs / switches).toFixed(0).padStart(5)} ms CPU per switch${r.etimeMs ? `  (${(r.etimeMs / r.n).toFixed(0)} ms wall each)` : ""}`);
    }
  }
  console.log(`\nload at the end ${os.loadavg().map((x) => x.toFixed(1)).join(" ")}`);
}

main().catch((e) => {
  console.error(`bench/deploy/per-switch: ${(e as Error).message}`);
  process.exitCode = 1;
});
