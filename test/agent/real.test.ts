/**
 * The bundled agent on a real Debian bookworm host of the lab (systemd-nspawn
 * in its own network namespace, the host's own Node 18, nft, sysctl and
 * systemd): switch -> confirm -> second switch -> rollback, verify clean
 * after each; and the lockout guard bringing SSH back by itself after a
 * generation that drops port 22 on the management interface.
 * Needs root (it boots lab hosts); skipped with a message otherwise.
 */
import * as fs from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NEEDS_ROOT, skipOrFail, skipUnlessCi } from "../lab/ci-gate.ts";
import { lab } from "../../lab/hosts/index.ts";
import type { Firewall, NftRule } from "../../contract/bundle.ts";
import { AGENT, buildAgent, bundle, file } from "./helpers.ts";
import { firewallBootUnit } from "../../modules/agent.ts";

// Lab instance of its own: 0 is a developer's, 7-9 belong to other tests and benches.
const L = lab(6);
const HOST = "derp";
const isRoot = process.getuid?.() === 0;
const AGENT_ON_HOST = "/usr/local/lib/meshfleet/meshfleet-agent.mjs";
let unavailable = isRoot ? "" : "needs root to boot lab hosts";

const fw = (rules: NftRule[]): Firewall => ({
  family: "inet",
  table: "meshfleet",
  sets: [],
  chains: [{ name: "input", hook: { type: "filter", hook: "input", priority: "filter", policy: "accept" }, rules }],
});
const hello: NftRule = { l4: { proto: "tcp", dports: [8080] }, verdict: "accept", comment: "hello" };

const SERVER = `const http = require("http"); const fs = require("fs");
const body = fs.readFileSync(process.env.CONF, "utf8"); // read once: a changed file shows only after a restart
http.createServer((q, s) => s.end(body)).listen(8080, "127.0.0.1");
`;
const UNIT = `[Unit]
Description=meshfleet agent test server
[Service]
Environment=CONF=/etc/meshfleet-test/hello.conf
ExecStart=/usr/bin/node /etc/meshfleet-test/server.js
[Install]
WantedBy=multi-user.target
`;
const probes = [
  { name: "hello-http", kind: "http" as const, url: "http://127.0.0.1:8080/", expectStatus: 200 },
  { name: "hello-unit", kind: "unit-active" as const, unit: "meshfleet-hello.service" },
  { name: "sshd", kind: "tcp" as const, host: "127.0.0.1", port: 22 },
];
const common = (hello: string) => [
  file("/etc/meshfleet-test/server.js", SERVER),
  file("/etc/meshfleet-test/hello.conf", hello),
  file("/etc/meshfleet-test/token", `secret-${hello}`, { secret: true, mode: "0600" }),
];
const units = [{ name: "meshfleet-hello.service", content: UNIT, enable: true }];
const b1 = bundle({
  host: HOST,
  files: [...common("v1"), file("/etc/issue.net", "managed by meshfleet\n")],
  sysctl: { "net.ipv4.ip_forward": "1" },
  firewall: fw([hello]),
  units,
  probes,
  metrics: { enable: true, textfileDir: "/var/lib/prometheus/node-exporter" },
});
const b2 = bundle({
  host: HOST,
  files: common("v2"),
  sysctl: { "net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "2" },
  firewall: fw([hello, { l4: { proto: "tcp", dports: [8081] }, verdict: "accept" }]),
  units,
  probes,
  metrics: { enable: true, textfileDir: "/var/lib/prometheus/node-exporter" },
});
// Generation 1 plus the unit that loads the table at boot (issue 12 item 1), as the meshfleet-agent module renders it.
const withBootUnit = bundle({ ...b1, units: [...units, { ...firewallBootUnit("/usr/bin/node"), restartTriggers: [] }] } as never);
// The lockout: SSH arrives on mgmt0; this generation drops it there (established sessions too).
const lockout = bundle({ ...b1, firewall: fw([{ iifname: "mgmt0", l4: { proto: "tcp", dports: [22] }, verdict: "drop" }, hello]) });

async function sh(cmd: string, input?: string, timeoutMs = 120_000) {
  return L.sshExec(HOST, cmd, { input, timeoutMs });
}
async function ok(cmd: string, input?: string): Promise<string> {
  const r = await sh(cmd, input);
  if (r.code !== 0) throw new Error(`${HOST}: ${cmd}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const agentCmd = (args: string) => `node ${AGENT_ON_HOST} ${args}`;
const push = (dest: string, content: string) => ok(`mkdir -p $(dirname ${dest}) && cat > ${dest}.tmp && mv ${dest}.tmp ${dest}`, content);
const verifyClean = async () => {
  const r = await sh(agentCmd("verify"));
  expect(r.stdout + r.stderr).toMatch(/no drift/);
  expect(r.code).toBe(0);
};

let original: { issue: string; forward: string; rpFilter: string };

describe.skipIf(skipUnlessCi(!isRoot && NEEDS_ROOT))("agent on a real lab host", () => {
  beforeAll(async () => {
    buildAgent();
    try {
      await L.down();
      await L.up({ hosts: [HOST] });
    } catch (e) {
      unavailable = `lab hosts could not be booted: ${(e as Error).message.split("\n")[0]}`;
      console.warn(`skipping real agent tests: ${unavailable}`);
      return;
    }
    await push(AGENT_ON_HOST, fs.readFileSync(AGENT, "utf8"));
    await push("/root/b1.json", JSON.stringify(b1));
    await push("/root/b2.json", JSON.stringify(b2));
    await push("/root/lockout.json", JSON.stringify(lockout));
    await push("/root/boot-unit.json", JSON.stringify(withBootUnit));
    // someone else's table, which the agent must never touch
    await ok("nft add table inet keepme && nft add chain inet keepme c");
    original = {
      issue: await ok("cat /etc/issue.net"),
      forward: (await ok("sysctl -n net.ipv4.ip_forward")).trim(),
      rpFilter: (await ok("sysctl -n net.ipv4.conf.all.rp_filter")).trim(),
    };
  }, 600_000);

  afterAll(async () => {
    if (isRoot) await L.down();
  }, 300_000);

  it("switch with --confirm-timeout, then confirm over a new connection", async (ctx) => {
    if (unavailable) skipOrFail(ctx, unavailable);
    expect((await ok("node --version")).trim()).toMatch(/^v18\./);
    const r = await sh(agentCmd("switch /root/b1.json --confirm-timeout 60"));
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/lockout guard armed: meshfleet-guard-1 rolls back to generation 0/);
    expect(r.stdout).toMatch(/probe hello-http: ok/);
    expect(r.stdout).toMatch(/generation 1 is active; awaiting confirm/);
    expect((await sh("systemctl is-active meshfleet-guard-1.timer")).stdout.trim()).toBe("active");
    expect(await ok(agentCmd("confirm"))).toMatch(/generation 1 \(bundle [0-9a-f]{12}\) confirmed/);
    expect((await sh("systemctl is-active meshfleet-guard-1.timer")).stdout.trim()).not.toBe("active");
    expect(await ok("curl -s http://127.0.0.1:8080/")).toBe("v1");
    expect(await ok("nft list table inet meshfleet")).toContain("tcp dport 8080 accept");
    expect((await ok("sysctl -n net.ipv4.ip_forward")).trim()).toBe("1");
    expect(await ok("cat /etc/sysctl.d/90-meshfleet.conf")).toContain("net.ipv4.ip_forward = 1");
    expect((await ok("stat -c %a /etc/meshfleet-test/token")).trim()).toBe("600");
    expect(await ok("cat /etc/issue.net")).toBe("managed by meshfleet\n");
    expect((await ok("systemctl is-enabled meshfleet-hello.service")).trim()).toBe("enabled");
    expect(await ok("cat /var/lib/prometheus/node-exporter/meshfleet.prom")).toMatch(/^meshfleet_generation 1$/m);
    await verifyClean();
    // verify sees real drift, and its absence again
    await ok("sysctl -w net.ipv4.ip_forward=0");
    const d = await sh(agentCmd("verify"));
    expect(d.code).toBe(1);
    expect(d.stdout).toContain("sysctl net.ipv4.ip_forward: is 0, expected 1");
    await ok("nft add rule inet meshfleet input tcp dport 9999 drop");
    expect((await sh(agentCmd("verify"))).stdout).toContain("nftables table inet meshfleet: differs");
    await ok("sysctl -w net.ipv4.ip_forward=1 && nft flush chain inet meshfleet input && nft add rule inet meshfleet input tcp dport 8080 accept comment '\"hello\"'");
    await verifyClean();
    expect(await ok(agentCmd("switch /root/b1.json"))).toContain("generation 1 is already current; nothing to do");
  }, 300_000);

  it("a second switch changes files, sysctls, the table and restarts the unit", async (ctx) => {
    if (unavailable) skipOrFail(ctx, unavailable);
    const diff = await ok(agentCmd("diff /root/b2.json"));
    expect(diff).toContain("file: write /etc/meshfleet-test/token (content changed (secret))");
    expect(diff).not.toContain("secret-v");
    expect(diff).toContain("file: restore /etc/issue.net");
    const r = await ok(agentCmd("switch /root/b2.json"));
    expect(r).toMatch(/unit meshfleet-hello.service restarted \(its files changed\)/);
    expect(r).toMatch(/generation 2 is active/);
    expect(await ok("curl -s http://127.0.0.1:8080/")).toBe("v2");
    expect(await ok("nft list table inet meshfleet")).toContain("tcp dport 8081 accept");
    expect((await ok("sysctl -n net.ipv4.conf.all.rp_filter")).trim()).toBe("2");
    expect(await ok("cat /etc/issue.net")).toBe(original.issue);
    await verifyClean();
  }, 300_000);

  it("rollback returns to generation 1 everywhere", async (ctx) => {
    if (unavailable) skipOrFail(ctx, unavailable);
    expect(await ok(agentCmd("rollback"))).toMatch(/generation 1 is current/);
    expect(await ok("curl -s http://127.0.0.1:8080/")).toBe("v1");
    expect(await ok("nft list table inet meshfleet")).not.toContain("8081");
    expect((await ok("sysctl -n net.ipv4.conf.all.rp_filter")).trim()).toBe(original.rpFilter);
    expect(await ok("cat /etc/issue.net")).toBe("managed by meshfleet\n");
    expect(await ok("nft list tables")).toContain("table inet keepme");
    await verifyClean();
  }, 300_000);

  it("lockout: a generation that drops SSH on mgmt0 is rolled back by the guard without confirm", async (ctx) => {
    if (unavailable) skipOrFail(ctx, unavailable);
    const t0 = Date.now();
    // The session that runs the switch is cut by the new table: it may hang until the timeout.
    const cut = await sh(agentCmd("switch /root/lockout.json --confirm-timeout 20"), undefined, 12_000);
    expect(cut.stdout).toMatch(/lockout guard armed: meshfleet-guard-\d+ rolls back to generation 1/);
    // Its output may or may not make it back (only inbound port-22 packets are dropped); a NEW connection must fail.
    const during = await sh("true", undefined, 5_000);
    expect(during.code).not.toBe(0); // really locked out
    let back = false;
    while (Date.now() - t0 < 120_000) {
      if ((await sh("true", undefined, 5_000)).code === 0) {
        back = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
    expect(back).toBe(true);
    const secs = (Date.now() - t0) / 1000;
    expect(secs).toBeGreaterThan(15);
    const status = JSON.parse(await ok(agentCmd("status --json")));
    expect(status.generation).toBe(1);
    expect(status.pendingConfirm).toBeNull();
    expect(status.lastSwitch.success).toBe(false);
    expect(await ok("nft list table inet meshfleet")).not.toContain("dport 22");
    const gens = JSON.parse(await ok(agentCmd("generations --json")));
    expect(gens.at(-1)).toMatchObject({ generation: 3, status: "failed", current: false });
    await verifyClean();
    console.log(`lockout: SSH back after ${secs.toFixed(1)}s`);
  }, 300_000);

  it("a table lost as at boot comes back from meshfleet-firewall.service, which runs before network-pre.target", async (ctx) => {
    if (unavailable) skipOrFail(ctx, unavailable);
    const s = await sh(agentCmd("switch /root/boot-unit.json"));
    expect(s.code, s.stderr).toBe(0);
    const prop = async (p: string) => (await ok(`systemctl show -p ${p} --value meshfleet-firewall.service`)).trim();
    expect((await prop("Before")).split(" ")).toContain("network-pre.target");
    expect(await prop("Type")).toBe("oneshot");
    expect((await prop("Wants")).split(" ")).toContain("network-pre.target");
    expect((await ok("systemctl is-enabled meshfleet-firewall.service")).trim()).toBe("enabled");
    await ok("nft delete table inet meshfleet");
    expect((await sh("nft list table inet meshfleet")).code).not.toBe(0);
    await ok("systemctl restart meshfleet-firewall.service");
    expect(await ok("nft list table inet meshfleet")).toContain('tcp dport 8080 accept comment "hello"');
    expect(await ok("nft list tables")).toContain("table inet keepme");
    await verifyClean();
  }, 300_000);

  it("rollback 0 releases everything and restores what was there before", async (ctx) => {
    if (unavailable) skipOrFail(ctx, unavailable);
    await ok(agentCmd("rollback 0"));
    expect(await ok("cat /etc/issue.net")).toBe(original.issue);
    expect((await sh("test -e /etc/meshfleet-test/hello.conf")).code).not.toBe(0);
    expect((await sh("test -e /etc/sysctl.d/90-meshfleet.conf")).code).not.toBe(0);
    expect((await sh("nft list table inet meshfleet")).code).not.toBe(0);
    expect((await sh("systemctl is-active meshfleet-hello.service")).stdout.trim()).not.toBe("active");
    expect((await ok("sysctl -n net.ipv4.ip_forward")).trim()).toBe(original.forward);
    expect(await ok("nft list tables")).toContain("table inet keepme");
  }, 300_000);
});
