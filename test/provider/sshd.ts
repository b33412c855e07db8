/**
 * A throwaway OpenSSH server on 127.0.0.1 for the provider's real tests:
 * its own host key and authorized key in a temp folder, run in a private
 * mount namespace (its own /etc/passwd with the privilege-separation user,
 * its own /run), so the machine's files are never touched. Commands the
 * provider runs through it see MESHFLEET_ROOT (the agent acts on a temp
 * root) and the agent tests' stand-ins for nft/systemctl/tailscale on PATH.
 *
 * The sshd binary: MESHFLEET_TEST_SSHD (a path to sshd), else
 * /usr/sbin/sshd, else the one in the lab's cached Debian root. A binary
 * from another root (`<root>/usr/sbin/sshd`) gets the libraries the machine
 * lacks (libwrap) from that root, linked one by one into a folder on
 * LD_LIBRARY_PATH, never the root's whole lib folder.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { rootfsDir } from "../../lab/hosts/paths.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const FAKEBIN = path.resolve(HERE, "../agent/fakebin");

export function sshdBinary(): string | null {
  for (const c of [process.env.MESHFLEET_TEST_SSHD, "/usr/sbin/sshd", path.join(rootfsDir(), "usr/sbin/sshd")]) if (c && existsSync(c)) return path.resolve(c);
  return null;
}

/** A folder of links to the libraries `bin` needs that the machine lacks, from the root the binary came from. */
function missingLibs(bin: string, into: string): string | null {
  const ldd = spawnSync("ldd", [bin], { encoding: "utf8" });
  const missing = [...(ldd.stdout ?? "").matchAll(/^\s*(\S+) => not found/gm)].map((m) => m[1]);
  if (!missing.length) return null;
  const root = path.resolve(path.dirname(bin), "../..");
  mkdirSync(into, { recursive: true });
  for (const lib of missing) {
    const from = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "lib/aarch64-linux-gnu"].map((d) => path.join(root, d, lib)).find((f) => existsSync(f));
    if (from) symlinkSync(from, path.join(into, lib));
  }
  return into;
}

/** Why the real tests cannot run here, or null when they can. */
export function sshdUnavailable(): string | null {
  if (!sshdBinary()) return "no sshd (set MESHFLEET_TEST_SSHD to an sshd binary, e.g. unpacked from Debian's openssh-server)";
  if (typeof process.getuid === "function" && process.getuid() !== 0) return "needs root (a private mount namespace for sshd)";
  if (spawnSync("unshare", ["-m", "true"]).status !== 0) return "unshare -m is not permitted here";
  return null;
}

export interface Sshd {
  port: number;
  dir: string;
  /** The agent's temp root (MESHFLEET_ROOT for every command run through this sshd). */
  root: string;
  hostKey: string;
  clientKeyPath: string;
  clientKeyText: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on("error", reject);
  });
}

async function waitPort(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, "127.0.0.1", () => {
        c.end();
        r(true);
      });
      c.on("error", () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`sshd on 127.0.0.1:${port} did not listen within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSshd(env: Record<string, string> = {}): Promise<Sshd> {
  const bin = sshdBinary()!;
  const dir = mkdtempSync(path.join(tmpdir(), "mf-sshd-"));
  const root = path.join(dir, "root");
  mkdirSync(path.join(root, "sim"), { recursive: true });
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "hostkey")]);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "client")]);
  writeFileSync(path.join(dir, "authorized_keys"), readFileSync(path.join(dir, "client.pub")), { mode: 0o600 });
  mkdirSync(path.join(root, "etc/ssh"), { recursive: true });
  writeFileSync(path.join(root, "etc/ssh/authorized_keys"), readFileSync(path.join(dir, "client.pub")), { mode: 0o600 });
  writeFileSync(path.join(dir, "passwd"), `${readFileSync("/etc/passwd", "utf8").trimEnd()}\nsshd:x:65534:65534:sshd:/nonexistent:/usr/sbin/nologin\n`);
  const port = await freePort();
  const setEnv = { MESHFLEET_ROOT: root, MESHFLEET_GUARD: "detached", MESHFLEET_PROBE_DEADLINE_MS: "1500", PATH: `${FAKEBIN}:${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`, ...env };
  writeFileSync(
    path.join(dir, "sshd_config"),
    [
      "ListenAddress 127.0.0.1",
      `Port ${port}`,
      `HostKey ${path.join(dir, "hostkey")}`,
      // Under the agent's root: a generation that rewrites it locks the deploy out, as on a real host.
      `AuthorizedKeysFile ${path.join(root, "etc/ssh/authorized_keys")}`,
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "UsePAM no",
      "PermitRootLogin prohibit-password",
      "StrictModes no",
      "PidFile none",
      "MaxSessions 50",
      "MaxStartups 50:30:100",
      `SetEnv ${Object.entries(setEnv).map(([k, v]) => `${k}=${v}`).join(" ")}`,
    ].join("\n") + "\n",
  );
  const libs = missingLibs(bin, path.join(dir, "lib"));
  const script = [
    "set -e",
    "mount --make-rprivate /",
    `mount --bind ${path.join(dir, "passwd")} /etc/passwd`,
    "mount -t tmpfs -o mode=0755 none /run",
    "mkdir -m 0755 /run/sshd",
    `exec ${bin} -D -e -f ${path.join(dir, "sshd_config")}`,
  ].join("\n");
  const child: ChildProcess = spawn("unshare", ["-m", "sh", "-c", script], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, ...(libs ? { LD_LIBRARY_PATH: libs } : {}) },
  });
  let log = "";
  child.stderr!.on("data", (d) => (log += d));
  try {
    await waitPort(port, 5000);
  } catch (e) {
    child.kill("SIGKILL");
    throw new Error(`${(e as Error).message}: ${log}`);
  }
  return {
    port,
    dir,
    root,
    hostKey: readFileSync(path.join(dir, "hostkey.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" "),
    clientKeyPath: path.join(dir, "client"),
    clientKeyText: readFileSync(path.join(dir, "client"), "utf8"),
    async stop() {
      const done = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
      // Guards the agent left detached under this root (a test that let one run out) go with it.
      for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
        try {
          const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
          if (cmd.includes("guard-wait") && readFileSync(`/proc/${pid}/environ`, "utf8").includes(`MESHFLEET_ROOT=${root}`)) process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone already
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
