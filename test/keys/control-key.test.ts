/**
 * Issue 12 item 16: rotating keySeed gives headscale a new Noise key, and a
 * running tailscaled never fetches it again (its control client keeps the
 * key it fetched at start; seen on lab instance 1: every node offline until
 * tailscaled restarts). So each agent node's bundle carries the coordinator's
 * Noise public key as a restart trigger of tailscaled.service, and the unit
 * waits before starting while the control server still presents another key
 * (the nodes may switch before the coordinator does).
 */
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { unitDependencies } from "../../agent/desired.ts";
import { evaluateFleet, type FleetSystem } from "../../core/index.ts";
import { derivePrivateKey, publicKeyOf } from "../../core/keys.ts";
import { renderHost, secretRefs } from "../../core/bundle.ts";
import { providedSecrets } from "../../components/mesh.ts";
import { REGISTRY } from "../../modules/index.ts";
import { CONTROL_KEY_FILE, CONTROL_KEY_WAIT, CONTROL_KEY_WAIT_SCRIPT, NOISE_PUBLIC_KEY_REF } from "../../modules/tailscale.ts";

let lab: FleetSystem;
beforeAll(async () => {
  const r = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
  if (!r.fleet) throw new Error("hosts/lab does not evaluate");
  lab = r.fleet;
});

const SEED_A = "c2VlZC1BLXRlc3Qtb25seS0wMTIzNDU2Nzg5YWJjZGVm";
const SEED_B = "c2VlZC1CLXRlc3Qtb25seS0wMTIzNDU2Nzg5YWJjZGVm";
const pubOf = (seed: string) => publicKeyOf(derivePrivateKey(seed, "noise"));

describe("a new keySeed restarts tailscaled on every agent node", () => {
  it("each agent node carries the coordinator's Noise public key as a restart trigger of tailscaled", () => {
    for (const name of ["laptop", "lxc-tailscale", "vps"]) {
      const h = lab.hosts[name];
      expect(h.files.find((f) => f.path === CONTROL_KEY_FILE), name).toMatchObject({ secretRef: NOISE_PUBLIC_KEY_REF, mode: "0600", owner: "root" });
      const unit = h.units.find((u) => u.name === "tailscaled.service")!;
      expect(unitDependencies(unit, h.files.map((f) => f.path)), name).toContain(CONTROL_KEY_FILE);
      expect(unit.content).toMatch(new RegExp(`^ExecStartPre=-/usr/bin/node --use-openssl-ca ${CONTROL_KEY_WAIT} https://203\\.0\\.113\\.10 ${CONTROL_KEY_FILE}$`, "m"));
    }
    expect(providedSecrets(lab)).toContain(NOISE_PUBLIC_KEY_REF);
  });

  it("the wait runs on meshfleet-agent.nodePath, the node the agent's own units run (not whatever node is on systemd's PATH)", async () => {
    const root = mkdtempSync(join(tmpdir(), "mf-control-key-"));
    try {
      const dir = join(root, "lab");
      cpSync("hosts/lab", dir, { recursive: true });
      writeFileSync(join(dir, "laptop.yaml"), readFileSync(join(dir, "laptop.yaml"), "utf8") + "meshfleet-agent:\n  nodePath: /opt/node22/bin/node\n");
      const r = await evaluateFleet(REGISTRY, dir, "lab");
      const unit = r.fleet!.hosts.laptop.units.find((u) => u.name === "tailscaled.service")!;
      expect(unit.content).toMatch(new RegExp(`^ExecStartPre=-/opt/node22/bin/node --use-openssl-ca ${CONTROL_KEY_WAIT} `, "m"));
      expect(unit.content).not.toContain("/usr/bin/env node");
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("two seeds give the laptop two bundles that differ in that file only (so the agent restarts tailscaled), and no private key in it", () => {
    const h = lab.hosts.laptop;
    const render = (seed: string) => renderHost(h, Object.fromEntries(secretRefs(h).map((r) => [r, r === NOISE_PUBLIC_KEY_REF ? pubOf(seed) : "hskey-auth-stand-in"])));
    const a = render(SEED_A);
    const b = render(SEED_B);
    expect(a.hash).not.toBe(b.hash);
    const changed = a.files.filter((f) => b.files.find((g) => g.path === f.path)?.sha256 !== f.sha256).map((f) => f.path);
    expect(changed).toEqual([CONTROL_KEY_FILE]);
    const file = b.files.find((f) => f.path === CONTROL_KEY_FILE)!;
    expect(file.content.trim()).toBe(pubOf(SEED_B));
    expect(file.content).not.toContain(derivePrivateKey(SEED_B, "noise").slice("privkey:".length));
  });
});

describe("control-key-wait.mjs (ExecStartPre of tailscaled)", () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** A /key endpoint that presents `old` until `switchAfterMs`, then `next` (as headscale restarting with a new key). */
  async function keyServer(old: string, next: string, switchAfterMs: number): Promise<string> {
    const t0 = Date.now();
    server = createServer((req, res) => {
      if (!req.url?.startsWith("/key")) return void res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ legacyPublicKey: `mkey:${"0".repeat(64)}`, publicKey: `mkey:${Date.now() - t0 < switchAfterMs ? old : next}` }));
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
    const a = server.address();
    return `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}`;
  }

  function runWait(url: string, want: string): Promise<{ ms: number; out: string; code: number | null }> {
    const dir = mkdtempSync(join(tmpdir(), "mf-ckw-"));
    dirs.push(dir);
    writeFileSync(join(dir, "wait.mjs"), CONTROL_KEY_WAIT_SCRIPT);
    writeFileSync(join(dir, "key.pub"), want + "\n");
    const t0 = Date.now();
    return new Promise((resolve) => {
      const p = spawn(process.execPath, [join(dir, "wait.mjs"), url, join(dir, "key.pub")]);
      let out = "";
      p.stdout.on("data", (d) => (out += d));
      p.on("close", (code) => resolve({ ms: Date.now() - t0, out, code }));
    });
  }

  it("waits while the server presents the old key, and lets tailscaled start once it presents the new one", async () => {
    const url = await keyServer(pubOf(SEED_A), pubOf(SEED_B), 2500);
    const r = await runWait(url, pubOf(SEED_B));
    expect(r.code).toBe(0);
    expect(r.out).toContain("presents the expected Noise key");
    expect(r.ms).toBeGreaterThanOrEqual(2400);
    expect(r.ms).toBeLessThan(8000);
  });

  it("does not wait when the key already matches, or when the server does not answer (an outage must not hold tailscaled back)", async () => {
    const url = await keyServer(pubOf(SEED_B), pubOf(SEED_B), 0);
    const same = await runWait(url, pubOf(SEED_B));
    expect(same.out).toContain("presents the expected Noise key");
    // Not the 60-s wait; the bound is loose because a fresh node process alone can take seconds on a loaded machine.
    expect(same.ms).toBeLessThan(10_000);
    const down = await runWait("http://127.0.0.1:9", pubOf(SEED_B));
    expect(down.code).toBe(0);
    expect(down.out).toContain("not answering");
    expect(down.ms).toBeLessThan(4000);
  });
});
