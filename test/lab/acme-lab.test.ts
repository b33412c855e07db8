/**
 * The reverse proxy's whole certificate cycle against a real ACME server
 * (issue 13 item 8), on lab instance 4 (MESHFLEET_LAB_E2E=1, root, pebble
 * built by `meshfleet tools build`; in CI a missing prerequisite fails, never
 * skips).
 *
 * pebble (built from its Go module) runs in the lab's internet namespace at
 * 203.0.113.1, with a TLS certificate for its own listener made here (a test
 * CA that lives only in a temp folder), and a small DNS server beside it that
 * answers hs.lab.test with the VPS's public address. pebble validates for
 * real: http-01 over port 80 (and tls-alpn-01 over 443 for Caddy) across the
 * lab's network; PEBBLE_VA_ALWAYS_VALID is not set. Certificates live
 * VALIDITY seconds (pebble's profile), so a renewal is due soon after issue.
 *
 * The VPS gets headscale and the reverse proxy from a fleet evaluated by
 * meshfleet and switched by the real agent:
 *   - nginx: Debian's nginx and certbot (.debs fetched once by setup into
 *     the lab cache, lab/hosts/debs.ts; installed with dpkg: the lab's
 *     shared root stays as it is);
 *     the switch starts nginx on its self-signed placeholder, certbot gets the
 *     first certificate by webroot, the deploy hook reloads nginx, and the
 *     agent's probe of https://hs.lab.test/health passes on it. Then the
 *     renewal unit (the one the timer starts) renews it, and the serial nginx
 *     serves over TLS changes to the new certificate's.
 *   - Caddy: the next generation replaces nginx by Caddy with acme_ca and
 *     acme_ca_root; Caddy gets its certificate from pebble, and once it is in
 *     its renewal window a reload makes Caddy renew and serve the new one.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { derivePrivateKey, evaluateFleet, renderHost, secretRefs } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { CERT_UNIT, RENEW_UNIT, TLS_DIR } from "../../modules/reverse-proxy.ts";
import { lab } from "../../lab/hosts/index.ts";
import { ACME_DEBS, cachedDebs, debsDir, ensureDebs, SETUP_FIX } from "../../lab/hosts/debs.ts";
import { provideCaddy, pushFile } from "../../lab/e2e/prepare.ts";
import { loadVersions } from "../../lab/tools/versions.ts";
import { toolStatus } from "../../lab/tools/status.ts";
import { NEEDS_ROOT, skipUnlessCi } from "./ci-gate.ts";

const INSTANCE = 4;
const L = lab(INSTANCE);
const NS = L.topology.hosts.find((h) => h.role === "internet")!.netns!;
const ACME_IP = "203.0.113.1";
const VPS_IP = "203.0.113.10";
const DOMAIN = "hs.lab.test";
const DIRECTORY = `https://${ACME_IP}:14000/dir`;
const CA_ON_HOST = "/etc/meshfleet/acme-ca.pem";
const ROOTS_ON_HOST = "/root/pebble-roots.pem";
const AGENT_ON_HOST = "/usr/local/lib/meshfleet/meshfleet-agent.mjs";
const VALIDITY = 90;
const REPO = path.resolve(import.meta.dirname, "../..");

const pebbleSpec = loadVersions().tools.find((t) => t.name === "pebble")!;
const pebble = toolStatus(pebbleSpec);
const pebbleBin = pebble.binaries?.find((b) => b.name === "pebble")?.path ?? "";
const real = process.env.MESHFLEET_LAB_E2E === "1" && process.getuid?.() === 0;
const missing =
  process.getuid?.() !== 0 ? NEEDS_ROOT
  : process.env.MESHFLEET_LAB_E2E !== "1" ? "the lab tests run with MESHFLEET_LAB_E2E=1 (.ci/run sets it)"
  : !pebbleBin || !existsSync(pebbleBin) ? "pebble 2.10.3 is not built: run `meshfleet tools build` (lab/versions.json pins it)"
  : !existsSync("/usr/bin/caddy") ? "/usr/bin/caddy is missing: install the Debian package caddy (scripts/setup.sh does)"
  : !cachedDebs(ACME_DEBS) ? `the .debs of ${ACME_DEBS.packages.join(", ")} are not in the lab cache (${debsDir(ACME_DEBS)}): ${SETUP_FIX}`
  : "";

const say = (l: string) => process.stderr.write(`[acme-lab] ${l}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function on(cmd: string, opts: { input?: string; timeoutMs?: number; ok?: boolean } = {}) {
  const r = await L.sshExec("vps", cmd, { timeoutMs: opts.timeoutMs ?? 120_000, ...(opts.input !== undefined ? { input: opts.input } : {}) });
  if (opts.ok !== false && r.code !== 0) throw new Error(`vps: ${cmd}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}
const inNs = (argv: string[], input?: string) =>
  execFileSync("ip", ["netns", "exec", NS, ...argv], { encoding: "utf8", timeout: 30_000, ...(input !== undefined ? { input } : {}), stdio: ["pipe", "pipe", "pipe"] });

/** What the proxy serves on 203.0.113.10:443 for hs.lab.test, seen from the internet namespace: serial, issuer and chain verification. */
function served(roots: string): { serial: string; issuer: string; verified: boolean } {
  const s = execFileSync("sh", ["-c", `ip netns exec ${NS} openssl s_client -connect ${VPS_IP}:443 -servername ${DOMAIN} -CAfile ${roots} </dev/null 2>/dev/null`], { encoding: "utf8", timeout: 30_000 });
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(s)?.[0] ?? "";
  const info = execFileSync("openssl", ["x509", "-noout", "-serial", "-issuer"], { input: pem, encoding: "utf8" });
  return { serial: /serial=(\w+)/.exec(info)![1], issuer: /issuer=(.*)/.exec(info)![1].trim(), verified: /Verify return code: 0 \(ok\)/.test(s) };
}

/** A tiny authoritative DNS server for pebble's VA: A hs.lab.test -> the VPS; AAAA empty; anything else NXDOMAIN. */
const DNS_SERVER = `
const dgram = require("node:dgram");
const net = require("node:net");
const [addr, port, name, ip] = process.argv.slice(2);
function answer(m) {
  let o = 12, labels = [];
  while (m[o] !== 0) { labels.push(m.subarray(o + 1, o + 1 + m[o]).toString()); o += m[o] + 1; }
  const qtype = m.readUInt16BE(o + 1), qend = o + 5;
  const known = labels.join(".").toLowerCase() === name;
  const isA = known && qtype === 1;
  const h = Buffer.alloc(12);
  m.copy(h, 0, 0, 2);
  h.writeUInt16BE(0x8400 | (m.readUInt16BE(2) & 0x0100) | (known ? 0 : 3), 2);
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
// pebble's resolver asks over TCP: each message has a two-byte length in front.
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

function fleet(dir: string, proxy: string): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    path.join(dir, "fleet.yaml"),
    `coordinator:\n  host: vps\n  serverUrl: https://${DOMAIN}\n  headscaleVersion: 0.29.2\nusers: [alice]\npolicy:\n  acls:\n    - action: accept\n      src: [alice@]\n      dst: ["*:*"]\n`,
  );
  writeFileSync(
    path.join(dir, "vps.yaml"),
    `imports: [coordinator, reverse-proxy]\naddress: ${L.address("vps")}\nheadscale:\n  package: ${L.toolsDir}/headscale@0.29.2/bin/headscale\nderp:\n  enable: true\n  mode: embedded\n` +
      `reverse-proxy:\n${proxy}  acmeDirectory: ${DIRECTORY}\n  acmeCaRoot: ${CA_ON_HOST}\n`,
  );
}

async function bundleFor(dir: string): Promise<string> {
  const ev = await evaluateFleet(REGISTRY, dir, "acme");
  const errors = ev.diagnostics.filter((d) => d.severity === "error");
  if (errors.length) throw new Error(errors.map((d) => `${d.path}: ${d.found}; ${d.fix}`).join("\n"));
  const host = ev.fleet!.hosts.vps!;
  // A fixed test seed: the derived headscale keys are throwaway, and never printed.
  const secrets = Object.fromEntries(secretRefs(host).map((r) => [r, derivePrivateKey("meshfleet-acme-lab-test-seed", r.replace(/-key$/, ""))]));
  return JSON.stringify(renderHost(host, secrets));
}

describe.skipIf(skipUnlessCi(missing))(`reverse proxy certificates from pebble (lab instance ${INSTANCE})`, () => {
  const tmp = mkdtempSync(path.join(tmpdir(), "mf-acme-lab-"));
  const roots = path.join(tmp, "pebble-roots.pem");
  const procs: ChildProcess[] = [];
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    // The test CA for pebble's own listener (never committed: made here, removed with tmp).
    const ssl = (args: string[]) => execFileSync("openssl", args, { cwd: tmp, stdio: "pipe" });
    ssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=meshfleet acme-lab listener CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", "-keyout", "ca.key", "-out", "ca.pem"]);
    ssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=pebble", "-keyout", "pebble.key", "-out", "pebble.csr"]);
    writeFileSync(path.join(tmp, "ext.cnf"), `subjectAltName=IP:${ACME_IP},DNS:pebble\n`);
    ssl(["x509", "-req", "-in", "pebble.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "pebble.pem"]);
    writeFileSync(
      path.join(tmp, "pebble.json"),
      JSON.stringify({
        pebble: {
          listenAddress: `${ACME_IP}:14000`,
          managementListenAddress: `${ACME_IP}:15000`,
          certificate: path.join(tmp, "pebble.pem"),
          privateKey: path.join(tmp, "pebble.key"),
          httpPort: 80,
          tlsPort: 443,
          ocspResponderURL: "",
          externalAccountBindingRequired: false,
          profiles: { default: { description: `certificates of ${VALIDITY} s, so renewal is due at once`, validityPeriod: VALIDITY } },
        },
      }),
    );
    writeFileSync(path.join(tmp, "dns.cjs"), DNS_SERVER);

    let t = Date.now();
    await L.down();
    await L.up({ hosts: ["vps"], log: (l) => say(l) });
    timings.labUp = Date.now() - t;

    // pebble and its DNS in the internet namespace; killed by pid in afterAll.
    const start = (argv: string[], env: Record<string, string>, ready: RegExp, name: string) =>
      new Promise<void>((resolve, reject) => {
        const p = spawn("ip", ["netns", "exec", NS, ...argv], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
        procs.push(p);
        let out = "";
        const timer = setTimeout(() => reject(new Error(`${name} did not start: ${out}`)), 20_000);
        const onData = (d: Buffer) => {
          out += d.toString();
          if (ready.test(out)) {
            clearTimeout(timer);
            resolve();
          }
        };
        p.stdout!.on("data", onData);
        p.stderr!.on("data", onData);
        p.on("exit", (c) => reject(new Error(`${name} exited ${c}: ${out}`)));
      });
    await start([process.execPath, path.join(tmp, "dns.cjs"), ACME_IP, "8053", DOMAIN, VPS_IP], {}, /dns ready/, "dns");
    // No nonce rejections and no reused authorizations: every order is validated anew.
    await start([pebbleBin, "-config", path.join(tmp, "pebble.json"), "-dnsserver", `${ACME_IP}:8053`], { PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" }, /Listening on: /, "pebble");
    // pebble's issuing root (made at its start) and intermediate: what a client of this CA trusts.
    const mgmt = (p: string) => inNs(["curl", "-sf", "--cacert", path.join(tmp, "ca.pem"), `https://${ACME_IP}:15000${p}`]);
    writeFileSync(roots, mgmt("/roots/0") + mgmt("/intermediates/0"));

    // nginx and certbot from Debian's packages, fetched once by setup into the lab cache (the hosts have no mirror) and installed with dpkg.
    t = Date.now();
    const { dir: debs, files: debFiles } = await ensureDebs(ACME_DEBS, { allowFetch: false });
    const pkgs = debFiles.map((f) => path.basename(f));
    await on("mkdir -p /root/debs /etc/meshfleet /usr/local/lib/meshfleet");
    execFileSync("tar", ["-cf", path.join(tmp, "debs.tar"), "-C", debs, ...pkgs]);
    await pushFile("vps", path.join(tmp, "debs.tar"), "/root/debs.tar", "0644", INSTANCE);
    await on("tar -xf /root/debs.tar -C /root/debs && DEBIAN_FRONTEND=noninteractive dpkg -i /root/debs/*.deb >/root/dpkg.log 2>&1 || { tail -20 /root/dpkg.log; exit 1; }", { timeoutMs: 300_000 });
    timings.packages = Date.now() - t;
    say(`installed ${pkgs.length} packages: ${(await on("nginx -v 2>&1; certbot --version")).stdout.trim().replace(/\n/g, ", ")}`);

    await pushFile("vps", path.join(tmp, "ca.pem"), CA_ON_HOST, "0644", INSTANCE);
    await pushFile("vps", roots, ROOTS_ON_HOST, "0644", INSTANCE);
    // The name the agent's probe asks for, as public DNS would answer it.
    await on(`grep -q ' ${DOMAIN}$' /etc/hosts || echo '${VPS_IP} ${DOMAIN}' >> /etc/hosts`);
    execFileSync(process.execPath, [path.join(REPO, "agent", "build.mjs")], { stdio: "pipe" });
    await pushFile("vps", path.join(REPO, "dist", "meshfleet-agent.mjs"), AGENT_ON_HOST, "0644", INSTANCE);
  }, 900_000);

  afterAll(async () => {
    for (const p of procs) if (p.pid && p.exitCode === null) p.kill("SIGTERM");
    say(`timings (ms): ${JSON.stringify(timings)}`);
    if (real) await L.down();
    rmSync(tmp, { recursive: true, force: true });
  }, 300_000);

  /** The agent switches the VPS to `bundle`; its probes (https://hs.lab.test/health among them) must pass with pebble's roots trusted. */
  async function switchTo(name: string, bundle: string): Promise<string> {
    await on(`cat > /root/${name}.json`, { input: bundle });
    const r = await on(`NODE_EXTRA_CA_CERTS=${ROOTS_ON_HOST} node ${AGENT_ON_HOST} switch /root/${name}.json --confirm-timeout 300`, { timeoutMs: 600_000, ok: false });
    expect(r.code, `${r.stdout}\n${r.stderr}\n${(await on(`journalctl -u ${CERT_UNIT} -u nginx -u caddy --no-pager | tail -40`, { ok: false })).stdout}`).toBe(0);
    await on(`node ${AGENT_ON_HOST} confirm`);
    return r.stdout;
  }

  it("nginx: first certificate by certbot webroot at deploy, renewal, and nginx serves the new one after the reload", async () => {
    const dir = path.join(tmp, "fleet-nginx");
    fleet(dir, "  kind: nginx\n");
    let t = Date.now();
    const out = await switchTo("nginx", await bundleFor(dir));
    timings.nginxFirst = Date.now() - t;
    expect(out).toMatch(/probe reverse-proxy-health: ok/);
    // The certificate nginx serves is pebble's, verified up to pebble's root, and the links point at certbot's files.
    const first = served(roots);
    expect(first.issuer).toMatch(/Pebble Intermediate/);
    expect(first.verified).toBe(true);
    expect((await on(`readlink ${TLS_DIR}/${DOMAIN}/fullchain.pem`)).stdout.trim()).toBe(`/etc/letsencrypt/live/${DOMAIN}/fullchain.pem`);
    const live = (await on(`openssl x509 -noout -serial -in /etc/letsencrypt/live/${DOMAIN}/fullchain.pem`)).stdout.trim();
    expect(live).toBe(`serial=${first.serial}`);
    const renewal = (await on(`cat /etc/letsencrypt/renewal/${DOMAIN}.conf`)).stdout;
    expect(renewal).toContain("authenticator = webroot");
    expect(renewal).toContain(`server = ${DIRECTORY}`);
    expect(renewal).toContain("renew_hook = /usr/local/lib/meshfleet/certbot-nginx deploy");
    // headscale answers through it, over the lab's internet.
    expect(inNs(["curl", "-sf", "--cacert", roots, "--resolve", `${DOMAIN}:443:${VPS_IP}`, `https://${DOMAIN}/health`])).toMatch(/pass/);
    // Port 80: the challenge path is not redirected (404 for an unknown token), everything else is.
    expect(inNs(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--resolve", `${DOMAIN}:80:${VPS_IP}`, `http://${DOMAIN}/.well-known/acme-challenge/nope`])).toBe("404");
    expect(inNs(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--resolve", `${DOMAIN}:80:${VPS_IP}`, `http://${DOMAIN}/register/x`])).toBe("301");

    // Renewal: the unit the timer starts. The certificate is due (VALIDITY s), so certbot renews by webroot and its hook reloads nginx.
    t = Date.now();
    await on(`systemctl start ${RENEW_UNIT}`, { timeoutMs: 300_000 });
    timings.nginxRenew = Date.now() - t;
    const log = (await on(`journalctl -u ${RENEW_UNIT} --no-pager`)).stdout;
    expect(log).toMatch(/nginx: serving serial=/);
    const second = served(roots);
    expect(second.serial).not.toBe(first.serial);
    expect(second.issuer).toMatch(/Pebble Intermediate/);
    expect(second.verified).toBe(true);
    expect((await on(`openssl x509 -noout -serial -in /etc/letsencrypt/live/${DOMAIN}/fullchain.pem`)).stdout.trim()).toBe(`serial=${second.serial}`);
    // nginx was reloaded, not restarted: the master process is the same.
    expect((await on("systemctl show -p ExecMainPID --value nginx.service")).stdout.trim()).not.toBe("0");
    say(`nginx: first ${first.serial} in ${timings.nginxFirst} ms (switch), renewed ${second.serial} in ${timings.nginxRenew} ms`);
  }, 900_000);

  it("Caddy: its own ACME client gets pebble's certificate, renews it, and serves the new one after a reload", async () => {
    say(`caddy: ${await provideCaddy("vps", INSTANCE)}`);
    const dir = path.join(tmp, "fleet-caddy");
    fleet(dir, "  kind: caddy\n");
    let t = Date.now();
    const out = await switchTo("caddy", await bundleFor(dir));
    timings.caddyFirst = Date.now() - t;
    expect(out).toMatch(/probe reverse-proxy-health: ok/);
    expect((await on("systemctl is-active nginx.service", { ok: false })).stdout.trim()).not.toBe("active");
    const first = served(roots);
    expect(first.issuer).toMatch(/Pebble Intermediate/);
    expect(first.verified).toBe(true);
    expect(inNs(["curl", "-sf", "--cacert", roots, "--resolve", `${DOMAIN}:443:${VPS_IP}`, `https://${DOMAIN}/health`])).toMatch(/pass/);

    // Caddy renews in the last third of a certificate's life; wait for it, then reload (caddy.service's ExecReload).
    const notBefore = Date.parse(execFileSync("sh", ["-c", `ip netns exec ${NS} openssl s_client -connect ${VPS_IP}:443 -servername ${DOMAIN} </dev/null 2>/dev/null | openssl x509 -noout -startdate`], { encoding: "utf8" }).split("=")[1]);
    const due = notBefore + (VALIDITY * 2_000) / 3 + 2_000;
    if (due > Date.now()) await sleep(due - Date.now());
    t = Date.now();
    await on("systemctl reload caddy.service");
    let second = first;
    while (Date.now() - t < 60_000) {
      second = served(roots);
      if (second.serial !== first.serial) break;
      await sleep(1_000);
    }
    timings.caddyRenew = Date.now() - t;
    expect(second.serial).not.toBe(first.serial);
    expect(second.issuer).toMatch(/Pebble Intermediate/);
    expect(second.verified).toBe(true);
    const journal = (await on("journalctl -u caddy --no-pager")).stdout;
    expect(journal).toMatch(/renew/i);
    expect(journal).toContain(DIRECTORY);
    say(`caddy: first ${first.serial} in ${timings.caddyFirst} ms (switch), renewed ${second.serial} ${timings.caddyRenew} ms after the reload`);
  }, 900_000);
});
