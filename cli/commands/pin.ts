/**
 * `meshfleet pin HOST --stack S`: fetch the host's SSH key (ssh-keyscan),
 * show its fingerprint, and record it where deploys check it: `ssh.hostKey`
 * in the host's YAML (comments and layout kept, through yaml's Document API)
 * or a known_hosts file (`--known-hosts FILE`, the stack's
 * meshfleet:knownHostsPath). A different key already pinned is refused
 * unless --replace: that is exactly what a pin is for.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { parse, parseDocument } from "yaml";
import { MeshfleetError } from "../../core/diagnostics.ts";
import { flagHelp, parseArgs, UsageError, type Flag } from "../args.ts";
import type { Command } from "../command.ts";
import { REPO_ROOT, stackHostsDir } from "./deploy.ts";

const flags: Flag[] = [
  { name: "stack", value: true, help: "the stack whose fleet holds HOST (hosts/<stack>, or its meshfleet:hostsDir)" },
  { name: "hosts-dir", value: true, help: "read the fleet from this folder instead" },
  { name: "known-hosts", value: true, help: "record the key in this known_hosts file instead of the host's YAML" },
  { name: "replace", help: "replace a different key already pinned (after checking the new one out of band)" },
  { name: "timeout", value: true, help: "seconds ssh-keyscan waits (default 5)" },
  { name: "json", help: "print what was recorded as JSON" },
];

/** Key types deploys accept (the fleet schema's ssh.hostKey), most preferred first. */
export const KEY_TYPES = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"];

export interface ScannedKey {
  type: string;
  key: string;
  /** `type base64` as ssh.hostKey holds it. */
  line: string;
}

/** The preferred key out of ssh-keyscan's output (`host type base64` lines; `#` lines are comments). */
export function pickKey(scan: string): ScannedKey | undefined {
  const keys = scan
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => l.split(/\s+/))
    .filter((p) => p.length >= 3 && KEY_TYPES.includes(p[1]!))
    .map((p) => ({ type: p[1]!, key: p[2]!, line: `${p[1]} ${p[2]}` }));
  return keys.sort((a, b) => KEY_TYPES.indexOf(a.type) - KEY_TYPES.indexOf(b.type))[0];
}

/** `256 SHA256:... (ED25519)` for a `type base64` key line. */
export function fingerprint(keyLine: string): string {
  const r = spawnSync("ssh-keygen", ["-lf", "-"], { input: `${keyLine}\n`, encoding: "utf8" });
  if (r.error) throw new MeshfleetError("ssh-keygen is not installed (apt-get install openssh-client)");
  if (r.status !== 0) throw new MeshfleetError(`ssh-keygen -lf: ${r.stderr.trim()}`);
  return r.stdout.trim().replace(/\s+no comment\s+/, " ");
}

/** How known_hosts names a host: `addr`, or `[addr]:port` off port 22. */
export const knownHostsName = (address: string, port: number) => (port === 22 ? address : `[${address}]:${port}`);

/**
 * Sets `ssh.hostKey` in a host file's text, keeping its comments and layout.
 * Returns the new text and the key that was there ("" when none).
 */
export function setHostKeyInYaml(text: string, keyLine: string): { text: string; previous: string } {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new MeshfleetError(`not valid YAML: ${doc.errors[0]!.message}`);
  const previous = doc.getIn(["ssh", "hostKey"]);
  doc.setIn(["ssh", "hostKey"], keyLine);
  // No folding (a key is one long word) and flow lists as written ([a, b], not [ a, b ]).
  return { text: doc.toString({ lineWidth: 0, flowCollectionPadding: false }), previous: typeof previous === "string" ? previous : "" };
}

interface Target {
  host: string;
  address: string;
  port: number;
  file: string;
}

/** The host's address and port: from the evaluated fleet, or (if the fleet does not evaluate) its own file. */
async function findHost(host: string, stack: string, hostsDir?: string): Promise<Target> {
  const dir = hostsDir ? resolve(hostsDir) : stackHostsDir(stack);
  const file = [join(dir, `${host}.yaml`), join(dir, `${host}.yml`)].find(existsSync);
  if (!file) {
    const { fleetHostNames } = await import("./deploy.ts");
    throw new MeshfleetError(`${relative(REPO_ROOT, dir) || dir}: no host ${JSON.stringify(host)} (hosts: ${fleetHostNames(dir).join(", ") || "none"})`);
  }
  try {
    const { evaluateFleet } = await import("../../core/index.ts");
    const { REGISTRY } = await import("../../modules/index.ts");
    const { fleet } = await evaluateFleet(REGISTRY, dir, stack);
    const h = fleet?.hosts[host];
    if (h) return { host, address: h.address, port: h.ssh.port, file };
  } catch {
    /* fall back to the host's own file below */
  }
  const raw = (parse(readFileSync(file, "utf8")) ?? {}) as { address?: unknown; ssh?: { port?: unknown } };
  if (typeof raw.address !== "string" || raw.address === "") throw new MeshfleetError(`${relative(REPO_ROOT, file)}: address: expected the host's SSH address, found ${JSON.stringify(raw.address)}`);
  return { host, address: raw.address, port: typeof raw.ssh?.port === "number" ? raw.ssh.port : 22, file };
}

export function keyscan(address: string, port: number, timeoutSeconds = 5): ScannedKey {
  const r = spawnSync("ssh-keyscan", ["-T", String(timeoutSeconds), "-p", String(port), "-t", "ed25519,ecdsa,rsa", address], { encoding: "utf8", timeout: (timeoutSeconds + 5) * 1000 });
  if (r.error) throw new MeshfleetError(`ssh-keyscan: ${(r.error as NodeJS.ErrnoException).code === "ENOENT" ? "not installed (apt-get install openssh-client)" : r.error.message}`);
  const key = pickKey(r.stdout);
  if (!key) {
    const why = r.stderr.split("\n").filter((l) => l.trim() && !l.startsWith("#")).slice(-2).join(" | ");
    throw new MeshfleetError(`ssh-keyscan ${address} port ${port}: no ${KEY_TYPES.join("/")} key answered${why ? ` (${why})` : ""}; is sshd running there and reachable?`);
  }
  return key;
}

/** Records the key in a known_hosts file; `ssh-keygen -F` finds existing entries, hashed ones included. */
function pinKnownHosts(file: string, name: string, key: ScannedKey, replace: boolean): "added" | "unchanged" | "replaced" {
  mkdirSync(dirname(file), { recursive: true });
  if (!existsSync(file)) writeFileSync(file, "", { mode: 0o644 });
  const found = spawnSync("ssh-keygen", ["-F", name, "-f", file], { encoding: "utf8" });
  const lines = found.status === 0 ? found.stdout.split("\n").filter((l) => l && !l.startsWith("#")) : [];
  const same = lines.some((l) => l.split(/\s+/).slice(1, 3).join(" ") === key.line);
  const other = lines.filter((l) => l.split(/\s+/)[1] === key.type && l.split(/\s+/).slice(1, 3).join(" ") !== key.line);
  if (same && other.length === 0) return "unchanged";
  if (other.length > 0) {
    if (!replace) {
      throw new MeshfleetError(
        `${file}: ${name} is pinned to a different ${key.type} key (${fingerprint(other[0]!.split(/\s+/).slice(1, 3).join(" "))}); ` +
          `the host now shows ${fingerprint(key.line)}. If the host was reinstalled and you checked the new key, rerun with --replace`,
      );
    }
    execFileSync("ssh-keygen", ["-R", name, "-f", file], { stdio: "ignore" });
    rmBackup(file);
  }
  if (!same || other.length > 0) appendFileSync(file, `${name} ${key.line}\n`);
  return other.length > 0 ? "replaced" : "added";
}

function rmBackup(file: string): void {
  // ssh-keygen -R leaves file.old behind.
  try {
    execFileSync("rm", ["-f", `${file}.old`]);
  } catch {
    /* nothing to remove */
  }
}

export const command: Command = {
  name: "pin",
  summary: "record a host's SSH key (ssh-keyscan) where deploys check it",
  usage: `usage: meshfleet pin HOST --stack S [--hosts-dir DIR] [--known-hosts FILE] [--replace] [--json]

Asks HOST's sshd for its key (ssh-keyscan, ed25519 preferred), prints its
fingerprint, and records it: as ssh.hostKey in hosts/<stack>/HOST.yaml
(comments kept), or with --known-hosts in that file (point the stack's
meshfleet:knownHostsPath at it). Deploys connect with
StrictHostKeyChecking=yes against these pins; a host with no pin is refused
before anything is sent to it.

Trust on first use: compare the fingerprint with the host's own
(\`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub\` on its console) before
you deploy to it.

${flagHelp(flags)}`,
  async run(argv) {
    const { opts, positional } = parseArgs(argv, flags, { positionals: ["HOST"] });
    if (positional.length !== 1) throw new UsageError("meshfleet pin needs the host to pin, e.g. meshfleet pin vps --stack home");
    if (typeof opts.stack !== "string") throw new MeshfleetError("meshfleet pin: which stack? Add --stack S");
    const t = await findHost(positional[0]!, opts.stack, typeof opts["hosts-dir"] === "string" ? opts["hosts-dir"] : undefined);
    const key = keyscan(t.address, t.port, typeof opts.timeout === "string" ? Number(opts.timeout) : 5);
    const fp = fingerprint(key.line);
    const replace = !!opts.replace;
    let where: string;
    let action: string;
    if (typeof opts["known-hosts"] === "string") {
      const file = resolve(opts["known-hosts"]);
      action = pinKnownHosts(file, knownHostsName(t.address, t.port), key, replace);
      where = file;
    } else {
      const before = readFileSync(t.file, "utf8");
      const { text, previous } = setHostKeyInYaml(before, key.line);
      if (previous === key.line) action = "unchanged";
      else if (previous && !replace) {
        throw new MeshfleetError(
          `${relative(REPO_ROOT, t.file)}: ssh.hostKey pins a different key (${fingerprint(previous)}); the host now shows ${fp}. ` +
            `If the host was reinstalled and you checked the new key, rerun with --replace`,
        );
      } else {
        writeFileSync(t.file, text);
        action = previous ? "replaced" : "added";
      }
      where = `${relative(REPO_ROOT, t.file)} (ssh.hostKey)`;
    }
    if (opts.json) {
      process.stdout.write(JSON.stringify({ host: t.host, address: t.address, port: t.port, key: key.line, fingerprint: fp, recorded: where, action }, null, 2) + "\n");
    } else {
      process.stdout.write(`${t.host} (${t.address} port ${t.port}): ${fp}\n`);
      process.stdout.write(`${action === "unchanged" ? "already pinned in" : action === "replaced" ? "replaced the pin in" : "pinned in"} ${where}\n`);
      if (action !== "unchanged") process.stdout.write("Compare it with the host's own fingerprint (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on its console) before deploying.\n");
    }
    return 0;
  },
};
