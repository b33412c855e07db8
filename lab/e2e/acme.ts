/**
 * A real ACME server for the lab: pebble (a pinned tool, built from its Go
 * module) in the lab's internet namespace at 203.0.113.1, and, when names are
 * asked for, a small authoritative DNS server beside it for pebble's
 * validation authority. `lab up` runs it so the VPS's Caddy gets a real
 * certificate for https://203.0.113.10 (an IP identifier, RFC 8738), and
 * test/lab/acme-lab.test.ts runs it for hs.lab.test.
 *
 * The processes outlive the command that starts them (`lab check` runs later),
 * so they are detached and recorded by pid in the state folder; `stopAcme`
 * (lab down) ends exactly those pids, after checking each is still the process
 * recorded. pebble makes a new root at each start: hosts append its root to
 * their trust store (trustAcmeRoot), so a certificate issued by an earlier
 * start still verifies until it is renewed.
 *
 * pebble validates for real (http-01 over the lab's network);
 * PEBBLE_VA_ALWAYS_VALID is never set. PEBBLE_VA_NOSLEEP only drops pebble's
 * random 0-15 s wait before each validation.
 */
import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { labTopology } from "../topology.ts";
import { e2eDir } from "./paths.ts";
import { sshExec, type RunResult } from "../hosts/index.ts";
import { loadVersions } from "../tools/versions.ts";
import { toolStatus } from "../tools/status.ts";

/** pebble listens on the internet namespace's own address, which every lab host routes to. */
export const ACME_ADDRESS = "203.0.113.1";
export const ACME_PORT = 14000;
export const ACME_MANAGEMENT_PORT = 15000;
export const ACME_DIRECTORY = `https://${ACME_ADDRESS}:${ACME_PORT}/dir`;
export const DNS_PORT = 8053;
/** On a host: the CA of pebble's own HTTPS listener (reverse-proxy.acmeCaRoot in hosts/lab/vps.yaml). */
export const LISTENER_CA_ON_HOST = "/etc/meshfleet/acme-ca.pem";
/** On a host: pebble roots are added here, one file per root, and the system store is rebuilt. */
const TRUST_DIR = "/usr/local/share/ca-certificates";
const TRUST_PREFIX = "meshfleet-lab-acme-";
/** What the lab trusted before pebble (Caddy's internal CA): removed where found. */
const OLD_CADDY_ROOT = `${TRUST_DIR}/meshfleet-lab-caddy.crt`;
/** A day: far from renewal in a lab session; acme-lab asks for seconds to see renewals. */
const DEFAULT_VALIDITY_S = 86_400;

export interface AcmeOptions {
  instance: number;
  /** Where the listener CA, pebble's config, logs and the pid record live. Kept across starts. */
  dir: string;
  /** DNS names pebble's validation authority resolves (name -> IPv4); none: no DNS server (IP identifiers need none). */
  names?: Record<string, string>;
  /** pebble's certificate lifetime in seconds. */
  validitySeconds?: number;
  /** More pebble environment (e.g. PEBBLE_AUTHZREUSE=0). */
  env?: Record<string, string>;
  log?: (line: string) => void;
}

export interface AcmeServer {
  directory: string;
  /** Local path of the listener CA (what a client of the directory must trust). */
  listenerCa: string;
  /** pebble's root and intermediate, PEM, as issued for this start. */
  root: string;
  intermediate: string;
  /** Local path of root + intermediate. */
  rootsFile: string;
  pids: number[];
  /** true when a running pebble from an earlier start was kept. */
  reused: boolean;
  ms: number;
}

interface Recorded {
  name: string;
  pid: number;
  /** A word of /proc/PID/cmdline that identifies it, so a reused pid is never killed. */
  marker: string;
}

/** The lab instance's ACME state (listener CA, pebble's config and log, the pid record), beside its stack's state. */
export const acmeDir = (instance: number): string => join(e2eDir(instance), "acme");

const internetNs = (instance: number): string => labTopology(instance).hosts.find((h) => h.role === "internet")!.netns!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pidFile = (dir: string) => join(dir, "pids.json");

/** The pinned pebble's binary, or why it is not there. */
export function pebbleBinary(): { path: string } | { missing: string } {
  const spec = loadVersions().tools.find((t) => t.name === "pebble");
  if (!spec) return { missing: "pebble is not pinned in lab/versions.json" };
  const bin = toolStatus(spec).binaries?.find((b) => b.name === "pebble")?.path ?? "";
  if (!bin || !existsSync(bin)) return { missing: `pebble ${spec.version} is not built: run \`meshfleet tools build --only pebble\`` };
  return { path: bin };
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "";
  }
}

function readRecord(dir: string): Recorded[] {
  try {
    return JSON.parse(readFileSync(pidFile(dir), "utf8")) as Recorded[];
  } catch {
    return [];
  }
}

/** The recorded processes still alive as themselves. */
function alive(dir: string): Recorded[] {
  return readRecord(dir).filter((r) => cmdline(r.pid).includes(r.marker));
}

/** End the recorded pebble and DNS server (by pid, only if each is still that process). Returns what was stopped. */
export async function stopAcme(dir: string): Promise<string[]> {
  const stopped: string[] = [];
  for (const r of alive(dir)) {
    try {
      process.kill(r.pid, "SIGTERM");
    } catch {
      continue;
    }
    for (let i = 0; i < 50 && cmdline(r.pid).includes(r.marker); i++) await sleep(100);
    if (cmdline(r.pid).includes(r.marker)) process.kill(r.pid, "SIGKILL");
    stopped.push(`${r.name} (pid ${r.pid})`);
  }
  rmSync(pidFile(dir), { force: true });
  return stopped;
}

/** The CA of pebble's HTTPS listener and the listener's certificate: made once, kept in `dir` (the VPS's acmeCaRoot file stays the same). */
async function ensureListener(dir: string): Promise<void> {
  const ssl = (args: string[]) => execa("openssl", args, { cwd: dir });
  if (!existsSync(join(dir, "listener-ca.pem")) || !existsSync(join(dir, "listener-ca.key"))) {
    await ssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3650", "-subj", "/CN=meshfleet lab ACME listener CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", "-keyout", "listener-ca.key", "-out", "listener-ca.pem"]);
    rmSync(join(dir, "listener.pem"), { force: true });
  }
  if (!existsSync(join(dir, "listener.pem"))) {
    await ssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=pebble", "-keyout", "listener.key", "-out", "listener.csr"]);
    writeFileSync(join(dir, "listener-ext.cnf"), `subjectAltName=IP:${ACME_ADDRESS},DNS:pebble\n`);
    await ssl(["x509", "-req", "-in", "listener.csr", "-CA", "listener-ca.pem", "-CAkey", "listener-ca.key", "-CAcreateserial", "-days", "3650", "-extfile", "listener-ext.cnf", "-out", "listener.pem"]);
  }
}

/** Start `argv` in the internet namespace, detached, its output in `log`; resolves when `ready` shows in the log. */
async function startDetached(ns: string, argv: string[], env: Record<string, string>, log: string, ready: RegExp, name: string): Promise<number> {
  const fd = openSync(log, "w");
  // `ip netns exec` execs the command itself: the pid is the server's.
  const p = spawn("ip", ["netns", "exec", ns, ...argv], { env: { ...process.env, ...env }, stdio: ["ignore", fd, fd], detached: true });
  closeSync(fd);
  p.unref();
  const pid = p.pid;
  if (!pid) throw new Error(`${name}: could not start ${argv[0]}`);
  const t0 = Date.now();
  while (Date.now() - t0 < 20_000) {
    const out = existsSync(log) ? readFileSync(log, "utf8") : "";
    if (ready.test(out)) return pid;
    if (p.exitCode !== null || !existsSync(`/proc/${pid}`)) throw new Error(`${name} exited at start: ${out.trim().split("\n").slice(-3).join(" | ")}`);
    await sleep(100);
  }
  throw new Error(`${name} did not say it was ready in 20 s (log: ${log})`);
}

async function management(dir: string, ns: string, path: string): Promise<string> {
  const r = await execa("ip", ["netns", "exec", ns, "curl", "-sf", "--max-time", "10", "--cacert", join(dir, "listener-ca.pem"), `https://${ACME_ADDRESS}:${ACME_MANAGEMENT_PORT}${path}`], { reject: false });
  if (r.exitCode !== 0) throw new Error(`pebble's management ${path}: curl exit ${r.exitCode} ${String(r.stderr).trim()}`);
  return String(r.stdout);
}

/**
 * pebble (and the DNS server when names are given) running in the lab's
 * internet namespace. A pebble already running there from an earlier start
 * with the same settings is kept (same root); otherwise the recorded ones are
 * stopped and new ones started.
 */
export async function startAcme(opts: AcmeOptions): Promise<AcmeServer> {
  const t0 = Date.now();
  const bin = pebbleBinary();
  if ("missing" in bin) throw new Error(bin.missing);
  const ns = internetNs(opts.instance);
  mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
  await ensureListener(opts.dir);
  const names = opts.names ?? {};
  const validity = opts.validitySeconds ?? DEFAULT_VALIDITY_S;
  const config = {
    pebble: {
      listenAddress: `${ACME_ADDRESS}:${ACME_PORT}`,
      managementListenAddress: `${ACME_ADDRESS}:${ACME_MANAGEMENT_PORT}`,
      certificate: join(opts.dir, "listener.pem"),
      privateKey: join(opts.dir, "listener.key"),
      httpPort: 80,
      tlsPort: 443,
      ocspResponderURL: "",
      externalAccountBindingRequired: false,
      profiles: { default: { description: `certificates of ${validity} s`, validityPeriod: validity } },
    },
  };
  const env = { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", ...(opts.env ?? {}) };
  const settings = JSON.stringify({ config, names, env, bin: bin.path });
  const settingsFile = join(opts.dir, "settings.json");

  const running = alive(opts.dir);
  const sameNs = async (pid: number) => (await execa("ip", ["netns", "identify", String(pid)], { reject: false })).stdout.trim() === ns;
  let reused = false;
  if (
    running.some((r) => r.name === "pebble") &&
    running.length === 1 + (Object.keys(names).length > 0 ? 1 : 0) &&
    existsSync(settingsFile) && readFileSync(settingsFile, "utf8") === settings &&
    (await Promise.all(running.map((r) => sameNs(r.pid)))).every(Boolean)
  ) {
    reused = true;
  } else {
    const stopped = await stopAcme(opts.dir);
    if (stopped.length > 0) opts.log?.(`stopped ${stopped.join(", ")}`);
    writeFileSync(join(opts.dir, "pebble.json"), JSON.stringify(config, null, 2));
    const record: Recorded[] = [];
    const args = ["-config", join(opts.dir, "pebble.json")];
    try {
      if (Object.keys(names).length > 0) {
        const script = join(opts.dir, "dns.cjs");
        writeFileSync(script, DNS_SERVER);
        const pid = await startDetached(ns, [process.execPath, script, ACME_ADDRESS, String(DNS_PORT), JSON.stringify(names)], {}, join(opts.dir, "dns.log"), /dns ready/, "the lab's DNS server");
        record.push({ name: "dns", pid, marker: script });
        args.push("-dnsserver", `${ACME_ADDRESS}:${DNS_PORT}`);
      }
      const pid = await startDetached(ns, [bin.path, ...args], env, join(opts.dir, "pebble.log"), /Listening on: /, "pebble");
      record.push({ name: "pebble", pid, marker: join(opts.dir, "pebble.json") });
    } finally {
      writeFileSync(pidFile(opts.dir), JSON.stringify(record));
    }
    writeFileSync(settingsFile, settings);
  }
  // pebble's PEM ends without a newline: joined as is, openssl reads "-----END CERTIFICATE----------BEGIN" as a bad end line.
  const root = `${(await management(opts.dir, ns, "/roots/0")).trim()}\n`;
  const intermediate = `${(await management(opts.dir, ns, "/intermediates/0")).trim()}\n`;
  const rootsFile = join(opts.dir, "pebble-roots.pem");
  writeFileSync(rootsFile, root + intermediate);
  return { directory: ACME_DIRECTORY, listenerCa: join(opts.dir, "listener-ca.pem"), root, intermediate, rootsFile, pids: alive(opts.dir).map((r) => r.pid), reused, ms: Date.now() - t0 };
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function must(host: string, cmd: string, instance: number, input?: string): Promise<RunResult> {
  const r = await sshExec(host, cmd, { instance, input, timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`on ${host}: \`${cmd.slice(0, 120)}\` exited ${r.code}: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  return r;
}

/**
 * `host` trusts pebble's root in its system store (Go's TLS in tailscaled,
 * curl, and Debian's node, which reads OpenSSL's store, all use it). Roots are
 * added, never replaced: a certificate from an earlier pebble start still
 * verifies. The lab's former Caddy internal root is taken out.
 */
export async function trustAcmeRoot(host: string, root: string, instance: number): Promise<string> {
  const fp = createHash("sha256").update(root.trim()).digest("hex").slice(0, 16);
  const file = `${TRUST_DIR}/${TRUST_PREFIX}${fp}.crt`;
  const r = await must(
    host,
    `changed=; cat > ${q(file)}.new; if cmp -s ${q(file)}.new ${q(file)}; then rm -f ${q(file)}.new; else mv ${q(file)}.new ${q(file)}; changed=1; fi; ` +
      `if [ -e ${q(OLD_CADDY_ROOT)} ]; then rm -f ${q(OLD_CADDY_ROOT)}; changed=1; fi; ` +
      `if [ -n "$changed" ]; then update-ca-certificates --fresh >/dev/null && echo changed; fi; ls ${TRUST_DIR} | grep -c '^${TRUST_PREFIX}'`,
    instance,
    root,
  );
  const count = r.stdout.trim().split("\n").pop();
  return `${r.stdout.includes("changed") ? "trusted" : "already trusted"} pebble root ${fp} (${count} pebble roots)`;
}

/** The listener CA on the host that runs the ACME client (reverse-proxy.acmeCaRoot). */
export async function pushListenerCa(host: string, listenerCa: string, instance: number): Promise<string> {
  const pem = readFileSync(listenerCa, "utf8");
  const f = LISTENER_CA_ON_HOST;
  const r = await must(host, `mkdir -p /etc/meshfleet && cat > ${f}.new && chmod 0644 ${f}.new && if cmp -s ${f}.new ${f}; then rm -f ${f}.new; echo same; else mv ${f}.new ${f}; fi`, instance, pem);
  return r.stdout.trim() === "same" ? `${f} already there` : `${f} written`;
}

/** What a TLS server presents: the leaf's issuer and subject alternative names, and whether the chain verifies against `caFile` alone. */
export interface Served {
  issuer: string;
  san: string;
  serial: string;
  verified: boolean;
  verifyCode: string;
}

/**
 * The certificate `host:443` presents, seen from `from` (a lab host), verified
 * against only the PEM given (openssl's -CAfile with no default store).
 */
export async function servedCertificate(from: string, address: string, caPem: string, instance: number, servername?: string): Promise<Served> {
  const tmp = `/tmp/meshfleet-served-ca.pem`;
  await must(from, `cat > ${tmp}`, instance, caPem);
  const r = await must(
    from,
    `out=$(openssl s_client -connect ${address}:443 ${servername ? `-servername ${q(servername)}` : "-noservername"} -CAfile ${tmp} -no-CApath -no-CAstore </dev/null 2>&1); ` +
      `printf '%s\\n' "$out" | grep -E '^ *Verify return code:' ; printf '%s\\n' "$out" | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' | openssl x509 -noout -issuer -serial -ext subjectAltName; rm -f ${tmp}`,
    instance,
  );
  const code = /Verify return code: (\d+ \([^)]*\))/.exec(r.stdout)?.[1] ?? "none";
  return {
    issuer: /issuer=(.*)/.exec(r.stdout)?.[1]?.trim() ?? "",
    serial: /serial=(\w+)/.exec(r.stdout)?.[1] ?? "",
    san: /X509v3 Subject Alternative Name:.*\n\s*(.*)/.exec(r.stdout)?.[1]?.trim() ?? "",
    verified: code.startsWith("0 "),
    verifyCode: code,
  };
}

/**
 * After the deploy: the VPS serves a certificate from this pebble (its chain
 * verifies against pebble's root alone, the served intermediate in between, and the issuer is pebble's
 * intermediate), and `url`/health answers from `node` through its system store.
 */
export async function verifyAcmeTls(vps: string, node: string, url: string, server: AcmeServer, instance: number): Promise<string> {
  const address = new URL(url).hostname;
  const s = await servedCertificate(node, address, server.root, instance);
  const issuerCn = /CN\s*=\s*(.*)$/.exec(subjectOf(server.intermediate))?.[1] ?? "";
  if (!s.verified) throw new Error(`${vps} serves a certificate that does not verify against this pebble's root (openssl: ${s.verifyCode}; issuer ${s.issuer})`);
  if (!issuerCn || !s.issuer.includes(issuerCn)) throw new Error(`${vps} serves a certificate issued by ${JSON.stringify(s.issuer)}, not pebble's intermediate ${JSON.stringify(issuerCn)}`);
  const r = await sshExec(node, `curl -sS -o /dev/null -w '%{http_code}' --max-time 10 ${q(url)}/health`, { instance });
  if (r.code !== 0) throw new Error(`curl ${url}/health from ${node}: ${r.stderr.trim()}`);
  return `${url}/health -> ${r.stdout.trim()} (TLS verified from ${node}; issued by ${issuerCn}, SAN ${s.san})`;
}

/** The subject of a certificate (the intermediate's subject is the leaf's issuer). */
function subjectOf(pem: string): string {
  return execFileSync("openssl", ["x509", "-noout", "-subject", "-nameopt", "oneline"], { input: pem, encoding: "utf8" }).trim();
}

/**
 * A tiny authoritative DNS server for pebble's validation authority: A for the
 * names given (JSON name -> IPv4), AAAA empty, anything else NXDOMAIN. pebble
 * asks over TCP, so both UDP and TCP (two-byte length prefix) are served.
 */
const DNS_SERVER = `
const dgram = require("node:dgram");
const net = require("node:net");
const [addr, port, namesJson] = process.argv.slice(2);
const names = Object.fromEntries(Object.entries(JSON.parse(namesJson)).map(([k, v]) => [k.toLowerCase(), v]));
function answer(m) {
  let o = 12, labels = [];
  while (m[o] !== 0) { labels.push(m.subarray(o + 1, o + 1 + m[o]).toString()); o += m[o] + 1; }
  const qtype = m.readUInt16BE(o + 1), qend = o + 5;
  const ip = names[labels.join(".").toLowerCase()];
  const isA = ip !== undefined && qtype === 1;
  const h = Buffer.alloc(12);
  m.copy(h, 0, 0, 2);
  h.writeUInt16BE(0x8400 | (m.readUInt16BE(2) & 0x0100) | (ip !== undefined ? 0 : 3), 2);
  h.writeUInt16BE(1, 4); h.writeUInt16BE(isA ? 1 : 0, 6);
  const parts = [h, m.subarray(12, qend)];
  if (isA) {
    const a = Buffer.alloc(16);
    a.writeUInt16BE(0xc00c, 0); a.writeUInt16BE(1, 2); a.writeUInt16BE(1, 4); a.writeUInt32BE(5, 6); a.writeUInt16BE(4, 10);
    ip.split(".").forEach((b, i) => (a[12 + i] = Number(b)));
    parts.push(a);
  }
  return Buffer.concat(parts);
}
const u = dgram.createSocket("udp4");
u.on("message", (m, r) => u.send(answer(m), r.port, r.address));
const t = net.createServer((c) => {
  let buf = Buffer.alloc(0);
  c.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const out = answer(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      buf = buf.subarray(2 + buf.readUInt16BE(0));
      const len = Buffer.alloc(2); len.writeUInt16BE(out.length);
      c.write(Buffer.concat([len, out]));
    }
  });
  c.on("error", () => {});
});
u.bind(Number(port), addr, () => t.listen(Number(port), addr, () => console.log("dns ready")));
`;
