/**
 * The reverse proxy's whole certificate cycle against a real ACME server
 * (issue 13 item 8), on lab instance 4 (MESHFLEET_LAB_E2E=1, root, pebble
 * built by `meshfleet tools build`; in CI a missing prerequisite fails, never
 * skips).
 *
 * pebble (built from its Go module) runs in the lab's internet namespace at
 * 203.0.113.1 (lab/e2e/acme.ts, the same code `lab up` starts it with), with
 * a TLS certificate for its own listener from a test CA that lives only in a
 * temp folder here, and a small DNS server beside it that answers hs.lab.test
 * with the VPS's public address. pebble validates for
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
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { derivePrivateKey, evaluateFleet, renderHost, secretRefs } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { CERT_UNIT, RENEW_UNIT, TLS_DIR } from "../../modules/reverse-proxy.ts";
import { lab } from "../../lab/hosts/index.ts";
import { ACME_DEBS, cachedDebs, debsDir, ensureDebs, SETUP_FIX } from "../../lab/hosts/debs.ts";
import { provideCaddy, pushFile } from "../../lab/e2e/prepare.ts";
import { ACME_DIRECTORY, acmeDir as labAcmeDir, LISTENER_CA_ON_HOST, pebbleBinary, startAcme, stopAcme, type AcmeServer } from "../../lab/e2e/acme.ts";
import { NEEDS_ROOT, skipUnlessCi } from "./ci-gate.ts";

const INSTANCE = 4;
const L = lab(INSTANCE);
const NS = L.topology.hosts.find((h) => h.role === "internet")!.netns!;
const VPS_IP = "203.0.113.10";
const DOMAIN = "hs.lab.test";
const DIRECTORY = ACME_DIRECTORY;
const CA_ON_HOST = LISTENER_CA_ON_HOST;
const ROOTS_ON_HOST = "/root/pebble-roots.pem";
const AGENT_ON_HOST = "/usr/local/lib/meshfleet/meshfleet-agent.mjs";
const VALIDITY = 90;
const REPO = path.resolve(import.meta.dirname, "../..");

const pebble = pebbleBinary();
const real = process.env.MESHFLEET_LAB_E2E === "1" && process.getuid?.() === 0;
const missing =
  process.getuid?.() !== 0 ? NEEDS_ROOT
  : process.env.MESHFLEET_LAB_E2E !== "1" ? "the lab tests run with MESHFLEET_LAB_E2E=1 (.ci/run sets it)"
  : "missing" in pebble ? pebble.missing
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
  // Made in beforeAll: a describe body runs at collection even when the suite is skipped, and afterAll would not remove it.
  let tmp = "";
  let acmeDir = "";
  let acme: AcmeServer;
  let roots = "";
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(tmpdir(), "mf-acme-lab-"));
    acmeDir = path.join(tmp, "acme");
    let t = Date.now();
    // A pebble that `lab up --instance 4` left would outlive the namespace L.down removes.
    await stopAcme(labAcmeDir(INSTANCE));
    await L.down();
    await L.up({ hosts: ["vps"], log: (l) => say(l) });
    timings.labUp = Date.now() - t;

    // pebble and its DNS in the internet namespace, recorded by pid and stopped in afterAll.
    // No reused authorizations: every order is validated anew.
    t = Date.now();
    acme = await startAcme({ instance: INSTANCE, dir: acmeDir, names: { [DOMAIN]: VPS_IP }, validitySeconds: VALIDITY, env: { PEBBLE_AUTHZREUSE: "0" }, log: say });
    timings.acmeStart = Date.now() - t;
    // pebble's issuing root (made at its start) and intermediate: what a client of this CA trusts.
    roots = acme.rootsFile;

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

    await pushFile("vps", acme.listenerCa, CA_ON_HOST, "0644", INSTANCE);
    await pushFile("vps", roots, ROOTS_ON_HOST, "0644", INSTANCE);
    // The name the agent's probe asks for, as public DNS would answer it.
    await on(`grep -q ' ${DOMAIN}$' /etc/hosts || echo '${VPS_IP} ${DOMAIN}' >> /etc/hosts`);
    execFileSync(process.execPath, [path.join(REPO, "agent", "build.mjs")], { stdio: "pipe" });
    await pushFile("vps", path.join(REPO, "dist", "meshfleet-agent.mjs"), AGENT_ON_HOST, "0644", INSTANCE);
  }, 900_000);

  afterAll(async () => {
    const stopped = acmeDir ? await stopAcme(acmeDir) : [];
    say(`stopped ${stopped.join(", ") || "nothing"}`);
    say(`timings (ms): ${JSON.stringify(timings)}`);
    if (real) await L.down();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
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
