/**
 * What only the lab can supply before the mesh is deployed: the Caddy binary
 * and its user on the VPS (the lab's Debian root has no caddy; a real VPS gets
 * it from its distribution), and a Caddy internal CA made once by the lab,
 * seeded into Caddy's storage on the VPS and trusted by every node. Seeding
 * the CA before Caddy first starts is what lets nodes trust
 * https://203.0.113.10 on the first `pulumi up` (otherwise the root exists only
 * after Caddy ran, i.e. after the nodes tried to log in).
 */
import { execa } from "execa";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { sshArgs, sshExec, type RunResult } from "../hosts/index.ts";
import { e2ePaths } from "./paths.ts";

export const CADDY_CA_DIR = "/var/lib/caddy/.local/share/caddy/pki/authorities/local";
export const NODE_CA_PATH = "/usr/local/share/ca-certificates/meshfleet-lab-caddy.crt";

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function must(host: string, cmd: string, instance: number, input?: string, timeoutMs = 60_000): Promise<RunResult> {
  const r = await sshExec(host, cmd, { instance, input, timeoutMs });
  if (r.code !== 0) throw new Error(`on ${host}: \`${cmd.slice(0, 120)}\` exited ${r.code}: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  return r;
}

/** Copy a local file to `host:dest` (mode), through the lab's ssh. Skips when the same bytes are there. */
export async function pushFile(host: string, local: string, dest: string, mode: string, instance: number): Promise<boolean> {
  const sum = createHash("sha256").update(readFileSync(local)).digest("hex");
  const have = await sshExec(host, `sha256sum ${q(dest)} 2>/dev/null | cut -d' ' -f1`, { instance });
  if (have.stdout.trim() === sum) return false;
  const r = await execa("ssh", [...sshArgs(host, { instance }), `cat > ${q(dest)}.tmp && chmod ${mode} ${q(dest)}.tmp && mv ${q(dest)}.tmp ${q(dest)}`], {
    inputFile: local,
    reject: false,
    timeout: 120_000,
  });
  if (r.exitCode !== 0) throw new Error(`copy ${local} to ${host}:${dest}: ${String(r.stderr).trim()}`);
  return true;
}

/** Caddy on the VPS: this machine's caddy binary and a `caddy` system user whose home is /var/lib/caddy. */
export async function provideCaddy(host: string, instance: number): Promise<string> {
  const local = "/usr/bin/caddy";
  if (!existsSync(local) || statSync(local).size === 0) {
    throw new Error(`${local} is missing on this machine: install the Debian package caddy (scripts/setup.sh does)`);
  }
  const copied = await pushFile(host, local, "/usr/bin/caddy", "0755", instance);
  await must(
    host,
    "getent group caddy >/dev/null || groupadd --system caddy; " +
      "getent passwd caddy >/dev/null || useradd --system --gid caddy --home-dir /var/lib/caddy --shell /usr/sbin/nologin caddy; " +
      "mkdir -p /var/lib/caddy /etc/caddy && chown caddy:caddy /var/lib/caddy",
    instance,
  );
  const v = await must(host, "/usr/bin/caddy version", instance);
  return `${copied ? "copied" : "present"}, ${v.stdout.trim().split(" ")[0]}`;
}

/** The lab's Caddy root CA (EC P-256, 10 years), made once and kept with the stack's secrets. */
export async function ensureLabCa(instance: number): Promise<{ cert: string; key: string; made: boolean }> {
  const p = e2ePaths(instance);
  if (existsSync(p.caCert) && existsSync(p.caKey)) return { cert: p.caCert, key: p.caKey, made: false };
  mkdirSync(dirname(p.caCert), { recursive: true, mode: 0o700 });
  await execa("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", p.caKey]);
  await execa("chmod", ["600", p.caKey]);
  await execa("openssl", [
    "req", "-x509", "-new", "-key", p.caKey, "-out", p.caCert, "-days", "3650", "-sha256",
    "-subj", "/CN=meshfleet lab - Caddy Local Authority",
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return { cert: p.caCert, key: p.caKey, made: true };
}

/** Seed the root into Caddy's storage on the VPS (Caddy keeps an existing root and makes its intermediate from it). */
export async function seedCaddyCa(host: string, instance: number): Promise<string> {
  const ca = await ensureLabCa(instance);
  await must(host, `mkdir -p ${CADDY_CA_DIR}`, instance);
  const a = await pushFile(host, ca.cert, `${CADDY_CA_DIR}/root.crt`, "0644", instance);
  const b = await pushFile(host, ca.key, `${CADDY_CA_DIR}/root.key`, "0600", instance);
  if (a || b) {
    // An intermediate signed by an older root would break the chain: let Caddy make a new one.
    await must(host, `rm -f ${CADDY_CA_DIR}/intermediate.crt ${CADDY_CA_DIR}/intermediate.key`, instance);
  }
  await must(host, "chown -R caddy:caddy /var/lib/caddy", instance);
  return a || b ? "seeded" : "already there";
}

/** Make `host` trust the lab's Caddy root (system store: Go's TLS in tailscaled and curl read it). */
export async function trustCaddyCa(host: string, instance: number): Promise<string> {
  const ca = await ensureLabCa(instance);
  const changed = await pushFile(host, ca.cert, NODE_CA_PATH, "0644", instance);
  if (changed) await must(host, "update-ca-certificates >/dev/null", instance);
  return changed ? "trusted" : "already trusted";
}

/** After the deploy: the root Caddy serves with is the one the nodes trust, and TLS verifies from a node. */
export async function verifyCaddyTls(vps: string, node: string, url: string, instance: number): Promise<string> {
  const ca = await ensureLabCa(instance);
  const there = await must(vps, `cat ${CADDY_CA_DIR}/root.crt`, instance);
  if (there.stdout.trim() !== readFileSync(ca.cert, "utf8").trim()) {
    throw new Error(`${vps}:${CADDY_CA_DIR}/root.crt is not the lab's root (Caddy made its own; remove its pki folder and run lab up again)`);
  }
  const r = await sshExec(node, `curl -sS -o /dev/null -w '%{http_code}' --max-time 10 ${q(url)}/health`, { instance });
  if (r.code !== 0) throw new Error(`curl ${url}/health from ${node}: ${r.stderr.trim()}`);
  return `${url}/health -> ${r.stdout.trim()} (verified TLS from ${node})`;
}

