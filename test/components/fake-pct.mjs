#!/usr/bin/env node
// A stand-in for Proxmox VE's `pct` that refuses what the real one refuses,
// for the subcommands meshfleet runs (create, set, start, reboot, status,
// config, stop, destroy), by the grammar of pct(1) (PVE 8): `pct <command>
// <vmid> [ARGS] [OPTIONS]`, vmid an integer 100..999999999, each option one
// of that command's documented options with a value of its type. A bad call
// prints pct's own style of message ("400 unable to parse option", "Unknown
// option", "value ... does not look like a valid VM ID") and exits 255, as
// pct does; a good one acts on a config tree:
//   PCT_FAKE_DIR/lxc/<vmid>.conf   the CT's config (what /etc/pve/lxc holds)
//   PCT_FAKE_DIR/state             running | stopped
//   PCT_FAKE_DIR/calls             one line per call
// Why a fake: the real pct is a Perl front end to the Proxmox cluster file
// system (pmxcfs), LXC and the PVE API daemons; it runs only on a Proxmox VE
// node, and this machine is not one (no /etc/pve, no pve-cluster service).
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const dir = process.env.PCT_FAKE_DIR;
if (!dir) {
  process.stderr.write("fake pct: PCT_FAKE_DIR is not set\n");
  process.exit(2);
}
const argv = process.argv.slice(2);
appendFileSync(join(dir, "calls"), `pct ${argv.join(" ")}\n`);
const die = (msg) => {
  process.stderr.write(`${msg}\n`);
  process.exit(255);
};

const bool = (v) => /^(0|1|yes|no|on|off|true|false)$/.test(v);
const int = (v) => /^-?\d+$/.test(v);
const str = (v) => v.length > 0;
const devSpec = (v) => v.split(",").every((p, i) => (i === 0 && !p.includes("=") ? p.startsWith("/dev/") : /^(path=\/dev\/\S+|gid=\d+|uid=\d+|mode=[0-7]{3,4}|deny-write=[01])$/.test(p)));
const netSpec = (v) => v.split(",").every((p) => /^(name|bridge|firewall|gw|gw6|hwaddr|ip|ip6|link_down|mtu|rate|tag|trunks|type)=\S+$/.test(p)) && /(^|,)name=/.test(v);
const features = (v) => v.split(",").every((p) => /^(fuse|keyctl|mknod|nesting|force_rw_sys|mount)=\S+$/.test(p));

// Options shared by create and set (pct(1), "pct create" / "pct set").
const CONFIG = {
  arch: (v) => /^(amd64|i386|arm64|armhf|riscv32|riscv64)$/.test(v),
  cmode: (v) => /^(shell|console|tty)$/.test(v),
  console: bool,
  cores: (v) => int(v) && Number(v) >= 1 && Number(v) <= 8192,
  cpulimit: (v) => /^\d+(\.\d+)?$/.test(v),
  cpuunits: int,
  debug: bool,
  description: str,
  features,
  hookscript: str,
  hostname: (v) => /^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/.test(v),
  lock: str,
  memory: (v) => int(v) && Number(v) >= 16,
  nameserver: str,
  onboot: bool,
  ostype: (v) => /^(debian|devuan|ubuntu|centos|fedora|opensuse|archlinux|alpine|gentoo|nixos|unmanaged)$/.test(v),
  protection: bool,
  rootfs: str,
  searchdomain: str,
  startup: str,
  swap: int,
  tags: str,
  template: bool,
  timezone: str,
  tty: int,
  unprivileged: bool,
  entrypoint: str,
  env: str,
};
const indexed = { dev: devSpec, net: netSpec, mp: str, unused: str };
const CREATE = { ...CONFIG, "ignore-unpack-errors": bool, password: str, pool: str, restore: bool, "ssh-public-keys": str, start: bool, storage: str, unique: bool, force: bool, bwlimit: str };
const SET = { ...CONFIG, delete: str, digest: str, revert: str };
const COMMANDS = {
  create: { args: ["ostemplate"], opts: CREATE, indexed: true },
  set: { args: [], opts: SET, indexed: true },
  start: { args: [], opts: { skiplock: bool, debug: bool } },
  reboot: { args: [], opts: { timeout: int } },
  stop: { args: [], opts: { skiplock: bool, "overrule-shutdown": bool } },
  status: { args: [], opts: { verbose: bool } },
  config: { args: [], opts: { current: bool, snapshot: str } },
  destroy: { args: [], opts: { force: bool, purge: bool, "destroy-unreferenced-disks": bool } },
};

const [cmd, vmid, ...rest] = argv;
const spec = COMMANDS[cmd ?? ""];
if (!spec) die(`unknown command 'pct ${cmd ?? ""}'\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]`);
if (vmid === undefined) die(`400 not enough arguments\npct ${cmd} <vmid>`);
if (!/^\d+$/.test(vmid) || Number(vmid) < 100 || Number(vmid) > 999999999) die(`400 Parameter verification failed.\nvmid: value '${vmid}' does not look like a valid VM ID`);
const positional = [];
let i = 0;
for (; i < spec.args.length; i++) {
  const a = rest[i];
  if (a === undefined || a.startsWith("--")) die(`400 not enough arguments\npct ${cmd} <vmid> <${spec.args[i]}>`);
  positional.push(a);
}
const opts = {};
for (; i < rest.length; i++) {
  const a = rest[i];
  if (!a.startsWith("--")) die(`400 too many arguments\npct ${cmd} <vmid>${spec.args.map((x) => ` <${x}>`).join("")} [OPTIONS]`);
  const eq = a.indexOf("=");
  const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
  const m = /^([a-z]+)(\d+)$/.exec(name);
  const check = spec.opts[name] ?? (spec.indexed && m && Number(m[2]) <= 255 ? indexed[m[1]] : undefined);
  if (!check) die(`Unknown option: ${name}\n400 unable to parse option`);
  let value;
  if (eq > 0) value = a.slice(eq + 1);
  else if (check === bool && (rest[i + 1] === undefined || rest[i + 1].startsWith("--"))) value = "1";
  else if (rest[i + 1] === undefined) die(`Option ${name} requires an argument\n400 unable to parse option`);
  else value = rest[++i];
  if (!check(value)) die(`400 Parameter verification failed.\n${name}: invalid format - value '${value}' does not match the format of ${name}`);
  opts[name] = value;
}
if (cmd === "create" && !/^[A-Za-z0-9_-]+:(vztmpl\/)?\S+\.(tar\.(gz|xz|zst)|tar)$/.test(positional[0])) die(`400 Parameter verification failed.\nostemplate: invalid format - '${positional[0]}' is not a volume ID like local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`);

const conf = join(dir, "lxc", `${vmid}.conf`);
const state = join(dir, "state");
const exists = existsSync(conf);
const missing = () => die(`Configuration file 'nodes/pve/lxc/${vmid}.conf' does not exist`);
switch (cmd) {
  case "status":
    if (!exists) missing();
    process.stdout.write(`status: ${readFileSync(state, "utf8").trim()}\n`);
    break;
  case "config":
    if (!exists) missing();
    process.stdout.write(readFileSync(conf, "utf8"));
    break;
  case "create":
    if (exists) die(`unable to create CT ${vmid} - CT ${vmid} already exists on node 'pve'`);
    writeFileSync(conf, `arch: ${opts.arch ?? "amd64"}\n${opts.hostname ? `hostname: ${opts.hostname}\n` : ""}`);
    writeFileSync(state, opts.start === "1" ? "running" : "stopped");
    break;
  case "set": {
    if (!exists) missing();
    let text = readFileSync(conf, "utf8");
    for (const [k, v] of Object.entries(opts)) {
      if (k === "delete" || k === "digest" || k === "revert") continue;
      const line = `${k}: ${v}`;
      text = new RegExp(`^${k}: .*$`, "m").test(text) ? text.replace(new RegExp(`^${k}: .*$`, "m"), line) : `${text}${line}\n`;
    }
    writeFileSync(conf, text);
    break;
  }
  case "start":
  case "reboot":
    if (!exists) missing();
    writeFileSync(state, "running");
    break;
  case "stop":
    if (!exists) missing();
    writeFileSync(state, "stopped");
    break;
  case "destroy":
    if (!exists) missing();
    if (readFileSync(state, "utf8").trim() === "running" && opts.force !== "1") die(`CT ${vmid} is running - destroy failed`);
    rmSync(conf);
    break;
}
