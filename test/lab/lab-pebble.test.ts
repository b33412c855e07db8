/**
 * `lab up` without Caddy's internal CA (issue 13 item 8): on lab instance 0
 * (MESHFLEET_LAB_E2E=1, root, tools built; in CI a missing prerequisite fails):
 *   - the VPS serves https://203.0.113.10 with a certificate that pebble,
 *     started by `lab up` in the internet namespace, issued for the IP
 *     address: its chain verifies against pebble's root alone (and not
 *     against the listener CA, the negative control), its issuer is pebble's
 *     intermediate, Caddy's journal shows the order at pebble's directory,
 *     and Caddy never made its internal CA;
 *   - pebble restarted (a new root) is appended to a host's trust: the
 *     certificate from the first root still verifies through the system store;
 *   - `lab down` stops pebble by its recorded pid and leaves no namespace.
 */
import { existsSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NEEDS_ROOT, skipUnlessCi } from "./ci-gate.ts";
import { acmeDir, ACME_DIRECTORY, pebbleBinary, servedCertificate, startAcme, stopAcme, trustAcmeRoot, type AcmeServer } from "../../lab/e2e/acme.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { labUp, type UpSummary } from "../../lab/e2e/up.ts";
import { lab } from "../../lab/hosts/index.ts";
import { execa } from "execa";

// hosts/lab holds instance 0's addresses: `lab up` of the standard fleet runs there.
const INSTANCE = 0;
const L = lab(INSTANCE);
const VPS_IP = "203.0.113.10";
const pebble = pebbleBinary();
const missing =
  process.getuid?.() !== 0 ? NEEDS_ROOT
  : process.env.MESHFLEET_LAB_E2E !== "1" ? "the lab tests run with MESHFLEET_LAB_E2E=1 (.ci/run sets it)"
  : "missing" in pebble ? pebble.missing
  : "";
const say = (l: string) => process.stderr.write(`[lab-pebble] ${l}\n`);

async function on(host: string, cmd: string) {
  const r = await L.sshExec(host, cmd, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${host}: ${cmd}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}
const recordedPids = (): number[] => {
  const f = `${acmeDir(INSTANCE)}/pids.json`;
  return existsSync(f) ? (JSON.parse(readFileSync(f, "utf8")) as { pid: number }[]).map((r) => r.pid) : [];
};

describe.skipIf(skipUnlessCi(missing))(`lab up gets the VPS's certificate from pebble (lab instance ${INSTANCE})`, () => {
  let up: UpSummary;
  let acme: AcmeServer;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    await labDown({ instance: INSTANCE, log: () => undefined }).catch(() => undefined);
    up = await labUp({ instance: INSTANCE, log: (l) => say(l), noBuild: true });
    timings.labUp = up.totalMs;
    if (!up.ok) throw new Error(`lab up failed at ${up.failedStep}: ${up.error}`);
    // The running pebble, as lab up left it (kept: same settings, same namespace).
    acme = await startAcme({ instance: INSTANCE, dir: acmeDir(INSTANCE) });
  }, 1_800_000);

  afterAll(async () => {
    say(`timings (ms): ${JSON.stringify(timings)}`);
    await labDown({ instance: INSTANCE, log: () => undefined });
  }, 300_000);

  it("lab up started pebble, trusted its root on every host, and verified TLS from the laptop", () => {
    expect(acme.reused).toBe(true);
    const steps = up.steps.map((s) => `${s.step}${s.host ? ` ${s.host}` : ""}`);
    expect(steps).toEqual(expect.arrayContaining(["acme server", "acme CA vps", "trust ACME root laptop", "trust ACME root lxc-tailscale", "trust ACME root vps", "verify TLS laptop"]));
    expect(steps.some((s) => /caddy CA|trust CA/.test(s))).toBe(false);
    timings.acmeStep = up.steps.find((s) => s.step === "acme server")!.ms;
  });

  it("the VPS's certificate is pebble's: the chain verifies against pebble's root alone, the issuer is pebble's intermediate, the subject is the IP", async () => {
    const intermediateCn = /CN\s*=\s*(.*)/.exec((await execa("openssl", ["x509", "-noout", "-subject", "-nameopt", "oneline"], { input: acme.intermediate })).stdout)![1];
    const good = await servedCertificate("laptop", VPS_IP, acme.root, INSTANCE);
    expect(good.verified, good.verifyCode).toBe(true);
    expect(good.issuer).toBe(`CN = ${intermediateCn}`);
    expect(intermediateCn).toMatch(/^Pebble Intermediate CA /);
    expect(good.san).toBe(`IP Address:${VPS_IP}`);
    // The negative control: the same check against another CA fails, so a pass above means something.
    const other = await servedCertificate("laptop", VPS_IP, readFileSync(acme.listenerCa, "utf8"), INSTANCE);
    expect(other.verified).toBe(false);
    expect(other.verifyCode).toMatch(/^20 /);
    // Caddy ordered it from pebble's directory for the IP identifier, over http-01; it never made its internal CA.
    const journal = await on("vps", "journalctl -u caddy --no-pager -o cat");
    const lines = journal.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as { msg: string; ts: number; identifier?: string; ca?: string; challenge_type?: string });
    const asked = lines.find((l) => l.msg === "trying to solve challenge" && l.identifier === VPS_IP);
    expect(asked).toMatchObject({ ca: ACME_DIRECTORY, challenge_type: "http-01" });
    const t0 = lines.find((l) => l.msg === "obtaining certificate" && l.identifier === VPS_IP)!.ts;
    const t1 = lines.find((l) => l.msg === "certificate obtained successfully" && l.identifier === VPS_IP)!.ts;
    timings.firstIssuance = Math.round((t1 - t0) * 1000);
    expect((await on("vps", "test -e /var/lib/caddy/.local/share/caddy/pki/authorities/local && echo made || echo none")).trim()).toBe("none");
    expect((await on("laptop", "ls /usr/local/share/ca-certificates/")).trim()).toMatch(/^meshfleet-lab-acme-[0-9a-f]{16}\.crt$/);
  });

  it("a restarted pebble's new root is added, not swapped: the certificate from the first root still verifies through the system store", async () => {
    const first = acme;
    await stopAcme(acmeDir(INSTANCE));
    // Another validity makes the settings differ, so startAcme starts a new pebble (new root).
    const second = await startAcme({ instance: INSTANCE, dir: acmeDir(INSTANCE), validitySeconds: 7_200 });
    expect(second.reused).toBe(false);
    expect(second.root).not.toBe(first.root);
    const r = await trustAcmeRoot("laptop", second.root, INSTANCE);
    expect(r).toMatch(/\(2 pebble roots\)$/);
    expect((await on("laptop", `curl -sS -o /dev/null -w '%{http_code}' --max-time 10 https://${VPS_IP}/health`)).trim()).toBe("200");
    acme = second;
  });

  it("lab down stops pebble by its recorded pid and removes the lab's namespaces", async () => {
    const pids = recordedPids();
    expect(pids.length).toBe(1);
    expect(existsSync(`/proc/${pids[0]}`)).toBe(true);
    await labDown({ instance: INSTANCE, log: () => undefined });
    expect(existsSync(`/proc/${pids[0]}`)).toBe(false);
    expect(recordedPids()).toEqual([]);
    const ns = (await execa("ip", ["netns", "list"])).stdout.split("\n").filter((l) => l.startsWith(`mfl${INSTANCE}-`));
    expect(ns).toEqual([]);
  });
});
