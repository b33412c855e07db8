/**
 * Issue 19: evaluation and render on several threads (cli/parallel-eval.ts,
 * core/shard.ts) must give what the serial path gives (evaluateFleet, then
 * allArtifacts): byte-identical artifacts in the same order, the same
 * diagnostics in the same order, the same FleetSystem. On generated fleets,
 * with warnings and errors found in phase 3 (joined from the shards), and on
 * fleets the shards hand to the serial path (a problem before phase 3). The
 * comparison is shown to fail on a worker's fault: one byte more in one file,
 * two hosts swapped.
 */
import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { generateFleet } from "../../bench/eval-scale/generate.ts";
import { evaluateParallel, type ParallelOptions, type ParallelResult } from "../../cli/parallel-eval.ts";
import { serialEvaluateAndRender, type ShardedResult } from "../../core/shard.ts";
import { REGISTRY } from "../../modules/index.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "mf-parallel-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function fleet(name: string, n: number, edit?: (dir: string) => void): string {
  const dir = path.join(root, name);
  mkdirSync(dir);
  generateFleet(dir, n, 20);
  edit?.(dir);
  return dir;
}

/** Every artifact as one text (path, mode, bytes), the diagnostics and the fleet as JSON: equal means byte-identical. */
function same(p: ShardedResult, s: ShardedResult, keepHosts = true) {
  expect(p.artifacts?.length).toBe(s.artifacts?.length);
  const diff = (p.artifacts ?? []).findIndex((a, i) => {
    const b = s.artifacts![i];
    return a.path !== b.path || a.mode !== b.mode || Buffer.compare(Buffer.from(a.content), Buffer.from(b.content)) !== 0;
  });
  expect(diff, `artifact ${diff}: ${p.artifacts?.[diff]?.path} vs ${s.artifacts?.[diff]?.path}`).toBe(-1);
  expect(JSON.stringify(p.diagnostics)).toBe(JSON.stringify(s.diagnostics));
  expect(p.hostNames).toEqual(s.hostNames);
  if (keepHosts) expect(JSON.stringify(p.fleet)).toBe(JSON.stringify(s.fleet));
}

async function both(dir: string, opts: ParallelOptions = {}): Promise<{ p: ParallelResult; s: ShardedResult }> {
  const p = await evaluateParallel(dir, "stack", { render: true, minHosts: 0, threads: 2, ...opts });
  const s = await serialEvaluateAndRender(REGISTRY, dir, "stack", true);
  return { p, s };
}

/** A client with ports in ranges on a firewall left at accept: a warning from its firewall module, in phase 3. */
const warnOn = (dir: string, host: string) => appendFileSync(path.join(dir, `${host}.yaml`), "firewall:\n  allowedTCPPortRanges: [{ from: 8000, to: 8010 }]\n");

describe("parallel evaluation and render (issue 19)", () => {
  it("gives the serial path's artifacts, diagnostics and fleet on a generated fleet, sharded on 2 and 3 threads", async () => {
    const dir = fleet("plain", 400);
    const { p, s } = await both(dir);
    expect(p.path).toMatch(/^sharded: 2 threads/);
    expect(s.fleet).toBeDefined();
    expect(s.artifacts!.length).toBeGreaterThan(4_000);
    same(p, s);
    const three = await evaluateParallel(dir, "stack", { render: true, minHosts: 0, threads: 3 });
    expect(three.path).toMatch(/^sharded: 3 threads/);
    same(three, s);
    // Without the hosts copied back: the same files and names, no FleetSystem.
    const light = await evaluateParallel(dir, "stack", { render: true, minHosts: 0, threads: 2, keepHosts: false });
    expect(light.fleet).toBeUndefined();
    same(light, s, false);
  });

  it("joins phase 3's warnings and errors from the shards in the serial order", async () => {
    const warned = fleet("warned", 300, (dir) => ["h3", "h151", "h299"].forEach((h) => warnOn(dir, h)));
    const w = await both(warned);
    expect(w.p.path).toMatch(/^sharded/);
    expect(w.s.diagnostics.filter((d) => d.severity === "warning").map((d) => path.basename(d.file))).toEqual(["h151.yaml", "h299.yaml", "h3.yaml"]);
    expect(w.s.fleet).toBeDefined();
    same(w.p, w.s);
    // Errors of phase 3 in both shards (a route outside the router's LAN, sshd's port dropped by !mkForce), and a warning: no fleet, no files.
    const failed = fleet("failed", 300, (dir) => {
      writeFileSync(path.join(dir, "h20.yaml"), "imports: [subnet-router]\naddress: 192.0.2.20\nlan: [10.20.0.0/24]\nsubnet-router:\n  routes: [10.99.0.0/24]\ntailscale:\n  tags: [tag:router]\n");
      writeFileSync(path.join(dir, "h201.yaml"), "imports: [client]\naddress: 198.51.100.1\ntailscale:\n  user: alice\nfirewall:\n  allowedTCPPorts: !mkForce []\n");
      warnOn(dir, "h3");
    });
    const f = await both(failed);
    expect(f.p.path).toMatch(/^sharded/);
    expect(f.s.fleet).toBeUndefined();
    expect(f.s.diagnostics.map((d) => `${d.severity} ${path.basename(d.file)}`)).toEqual(["error h20.yaml", "error h201.yaml", "warning h3.yaml"]);
    same(f.p, f.s);
  });

  it("keeps the sharded path when the fleet phase only warns, its warnings first as in the serial path", async () => {
    // An auto-approver tag no host carries (the policy's check), and three routers that enforce the policy
    // themselves while a rule lets an OIDC person reach them (the enforcement check: it names where each
    // router's firewall.trustTailnet was set, which only the shard holding the router knows).
    const dir = fleet("phase-warned", 300, (d) => {
      const f = path.join(d, "fleet.yaml");
      writeFileSync(f, readFileSync(f, "utf8")
        .replace("users: [alice, bob]\n", "users: [alice, bob]\noidcUsers: [carol@example.com]\n")
        .replace("  acls:\n", '  autoApprovers:\n    routes:\n      10.200.0.0/24: ["tag:t1"]\n  acls:\n    - action: accept\n      src: [carol@example.com]\n      dst: ["tag:router:22"]\n'));
      appendFileSync(path.join(d, "vps.yaml"), "headscale:\n  oidc:\n    enable: true\n    issuer: https://id.example.com/\n    clientId: headscale\n");
      for (const h of ["h10", "h150", "h290"]) appendFileSync(path.join(d, `${h}.yaml`), "firewall:\n  trustTailnet: false\n");
    });
    const { p, s } = await both(dir);
    expect(s.fleet).toBeDefined();
    const phase = s.diagnostics.map((d) => `${path.basename(d.file)}: ${d.path}`);
    expect(phase).toEqual(['fleet.yaml: policy.autoApprovers.routes["10.200.0.0/24"][0]', "h10.yaml: firewall.trustTailnet", "h150.yaml: firewall.trustTailnet", "h290.yaml: firewall.trustTailnet"]);
    expect(p.path).toMatch(/^sharded: 2 threads/);
    same(p, s);
    // With a warning of phase 3 as well: the fleet phase's come first.
    warnOn(dir, "h3");
    const more = await both(dir);
    expect(more.p.path).toMatch(/^sharded/);
    expect(more.s.diagnostics.map((d) => path.basename(d.file)).slice(-2)).toEqual(["h290.yaml", "h3.yaml"]);
    same(more.p, more.s);
    // In a folder whose path a diagnostic cuts short (240 characters), on 3 threads: the shards' answers
    // go through the same shortening as the serial path's origins.
    const deep = path.join(root, "x".repeat(120), "y".repeat(120));
    mkdirSync(deep, { recursive: true });
    cpSync(dir, deep, { recursive: true });
    const long = await both(deep, { threads: 3 });
    expect(long.p.path).toMatch(/^sharded: 3 threads/);
    expect(long.s.diagnostics.filter((d) => d.path === "firewall.trustTailnet").map((d) => d.file.length)).toEqual([240, 240, 240]);
    same(long.p, long.s);
  });

  it("names a policy file's problems found in phase 3 in that file, as the serial path does", async () => {
    const dir = path.join(root, "policy-file");
    mkdirSync(dir);
    generateFleet(dir, 300, 20, { policyFile: true });
    const clean = await both(dir);
    expect(clean.p.path).toMatch(/^sharded/);
    expect(clean.s.fleet?.policyFile).toMatch(/policy\.hujson$/);
    same(clean.p, clean.s);
    // headscale 0.28 has no grants: the coordinator's module says so in phase 3, on the main thread's shard.
    const fleetFile = path.join(dir, "fleet.yaml");
    writeFileSync(fleetFile, readFileSync(fleetFile, "utf8").replace("  serverUrl: https://hs.example.com\n", "  serverUrl: https://hs.example.com\n  headscaleVersion: 0.28.0\n"));
    const policy = path.join(dir, "policy.hujson");
    writeFileSync(policy, readFileSync(policy, "utf8").replace('"acls"', '"grants": [{ "src": ["alice@"], "dst": ["*"], "ip": ["*"] }],\n  "acls"'));
    const old = await both(dir);
    expect(old.p.path).toMatch(/^sharded/);
    expect(old.s.diagnostics.map((d) => `${path.basename(d.file)}: ${d.path}`)).toContain("policy.hujson: grants");
    same(old.p, old.s);
  });

  it("hands a fleet with a problem before phase 3 to the serial path, with its diagnostics", async () => {
    const bad = fleet("bad", 300, (dir) => {
      writeFileSync(path.join(dir, "h7.yaml"), "imports: [client]\naddress: 198.51.100.7\nnoSuchOption: 1\n");
      writeFileSync(path.join(dir, "h260.yaml"), "imports: [cliemt]\naddress: 198.51.100.9\n");
    });
    const { p, s } = await both(bad);
    expect(p.path).toMatch(/^serial/);
    expect(s.diagnostics.length).toBeGreaterThanOrEqual(2);
    same(p, s);
    const small = await evaluateParallel(fleet("small", 20), "stack", { render: true, threads: 2 });
    expect(small.path).toMatch(/^serial: 20 hosts/);
  });

  it("can fail: a worker's fault is caught by the comparison", async () => {
    const dir = fleet("fault", 200);
    for (const fault of ["artifact-byte", "swap-hosts"] as const) {
      const { p, s } = await both(dir, { fault });
      expect(p.path).toMatch(/^sharded/);
      expect(() => same(p, s)).toThrow();
    }
    // A shard's thread that fails costs the speed, not the answer: the serial path's result.
    const { p, s } = await both(dir, { fault: "throw" });
    expect(p.path).toMatch(/^serial: a shard failed: .*a fault injected/);
    same(p, s);
  });
});
