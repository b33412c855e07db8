/**
 * The end-to-end lab. Always: the report renders from recorded results (and
 * headless Chromium draws it), the CLI's lab commands refuse bad input in one
 * line. With MESHFLEET_LAB_E2E=1 (root, tools built): the whole thing for real
 * on lab instance 0 (hosts/lab's addresses are instance 0's) — lab up with
 * the real pulumi up, then every check must pass on real traffic, then down.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inflateSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { NEEDS_ROOT, skipUnlessCi } from "./ci-gate.ts";
import type { ChecksFile } from "../../lab/e2e/checks.ts";
import { labChecks } from "../../lab/e2e/checks.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { deployLine, renderReport, topologySvg } from "../../lab/e2e/report.ts";
import { fleetHosts, labUp, type UpSummary } from "../../lab/e2e/up.ts";
import { labTopology } from "../../lab/topology.ts";

const REPO = join(import.meta.dirname, "..", "..");
const topo = labTopology(0);

const checks: ChecksFile = {
  at: "2026-01-01T00:00:00Z",
  instance: 0,
  totalMs: 41_000,
  checks: [
    { name: "subnet route: laptop reaches nas", ok: true, reason: "laptop -> 192.168.8.10:22 connected via tailscale0", ms: 800 },
    { name: "policy denies laptop -> vps:22", ok: false, reason: "laptop -> 100.64.0.1:22 connected, but the policy denies it", ms: 3100 },
  ],
  peers: {
    normal: [
      { name: "lxc-tailscale", ips: ["100.64.0.2"], online: true, active: true, curAddr: "", relay: "lab" },
      { name: "vps", ips: ["100.64.0.1"], online: true, active: false, curAddr: "203.0.113.10:41641", relay: "lab" },
    ],
  },
  versions: { tailscale: "1.98.10" },
};
const up: UpSummary = { ok: false, instance: 0, startedAt: "", totalMs: 12_300, failedStep: "pulumi up lab", error: "x", steps: [{ step: "hosts", ok: true, ms: 6600, detail: "8 up" }, { step: "pulumi up", host: "lab", ok: false, ms: 5000, detail: "exit 255" }] };
const matrix = { sources: ["laptop", "lxc-tailscale"], destinations: ["vps", "192.168.8.0/24 via lxc-tailscale"], cells: { laptop: { vps: "tcp:80,443", "192.168.8.0/24 via lxc-tailscale": "any:*" } } };

describe("lab report", () => {
  const html = renderReport({ topology: topo, up, checks, matrix, routes: [{ host: "lxc-tailscale", routes: ["192.168.8.0/24"] }], generatedAt: "now" });

  it("draws every host of the topology and each tunnel as it was seen", () => {
    const svg = topologySvg(topo, checks.peers.normal);
    for (const h of topo.hosts) expect(svg).toContain(`>${h.name}<`);
    expect(svg).toMatch(/laptop ⇄ lxc-tailscale: relayed \(lab\)/);
    expect(svg).toMatch(/laptop ⇄ vps: direct 203\.0\.113\.10:41641/);
    expect(svg).toContain('stroke-dasharray="8 6"');
  });

  it("shows each check with its result and reason, the failed deploy step and the policy matrix", () => {
    expect(html).toContain('<tr class="fail"><td>FAIL</td><td>policy denies laptop -&gt; vps:22</td>');
    expect(html).toContain('<tr class="pass"><td>PASS</td><td>subnet route: laptop reaches nas</td>');
    expect(html).toContain("1/2 passed");
    expect(html).toContain("FAILED at pulumi up lab");
    expect(html).toMatch(/<th>laptop<\/th><td class="pass">tcp:80,443<\/td><td class="pass">any:\*<\/td>/);
    expect(html).toMatch(/<th>lxc-tailscale<\/th><td class="deny">—<\/td>/);
  });

  it("counts drift in the deploy line: ok needs agent verify clean on every host", () => {
    const base: UpSummary = { ok: true, instance: 0, startedAt: "", totalMs: 38_000, steps: [], deploy: { ok: true, changes: { create: 29 }, hosts: [], ms: 26_000, errors: [] } };
    expect(deployLine({ ...base, drift: [{ host: "laptop", ok: true, detail: "no drift" }, { host: "vps", ok: true, detail: "no drift" }] })).toBe("ok in 38.0s; resources: 29 create; agent verify: no drift on 2/2 hosts");
    const drifted = { ...base, ok: false, failedStep: "agent verify", drift: [{ host: "laptop", ok: true, detail: "no drift" }, { host: "vps", ok: false, detail: "table inet meshfleet missing" }] };
    expect(deployLine(drifted)).toBe("FAILED at agent verify; resources: 29 create; agent verify: drift on 1/2 hosts (vps: table inet meshfleet missing)");
    expect(deployLine({ ...base, drift: undefined })).toContain("agent verify: not run");
    expect(renderReport({ topology: topo, up: drifted, checks, matrix, routes: [], generatedAt: "now" })).toContain("Deploy: FAILED at agent verify; resources: 29 create; agent verify: drift on 1/2 hosts (vps: table inet meshfleet missing).");
  });

  it("renders in headless Chromium to a non-trivial PNG", () => {
    const chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
    expect(chromium, "chromium is not installed (apt-get install chromium)").toBeTruthy();
    const dir = mkdtempSync(join(tmpdir(), "mf-report-"));
    try {
      const page = join(dir, "report.html");
      const png = join(dir, "report.png");
      writeFileSync(page, html);
      const r = spawnSync(chromium!, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars", "--window-size=1000,1400", `--screenshot=${png}`, `file://${page}`], { timeout: 60_000, encoding: "utf8" });
      expect(existsSync(png), `no screenshot: ${r.stderr}`).toBe(true);
      const buf = readFileSync(png);
      expect(buf.subarray(1, 4).toString()).toBe("PNG");
      expect(buf.readUInt32BE(16)).toBe(1000);
      // Non-trivial: the decoded pixels use many distinct values (a blank page has one or two).
      const idat: Buffer[] = [];
      for (let o = 8; o < buf.length; ) {
        const len = buf.readUInt32BE(o);
        if (buf.toString("latin1", o + 4, o + 8) === "IDAT") idat.push(buf.subarray(o + 8, o + 8 + len));
        o += 12 + len;
      }
      const raw = inflateSync(Buffer.concat(idat));
      expect(new Set(raw).size).toBeGreaterThan(40);
      expect(statSync(png).size).toBeGreaterThan(20_000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("lab commands", () => {
  const cli = (...args: string[]) => spawnSync(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "lab", ...args], { encoding: "utf8", cwd: REPO });

  it("lists up, check, report, down beside hosts", () => {
    const r = cli("help");
    for (const s of ["up", "check", "report", "down", "hosts up"]) expect(r.stdout).toMatch(new RegExp(`^  ${s} `, "m"));
  });

  it("refuses an unknown argument in one line, without a stack", () => {
    const r = cli("up", "--frobnicate");
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe('meshfleet lab: lab up: unknown argument "--frobnicate"');
  });
});

const real = process.env.MESHFLEET_LAB_E2E === "1" && process.getuid?.() === 0;

describe.skipIf(skipUnlessCi(!real && (process.getuid?.() !== 0 ? NEEDS_ROOT : "the lab end to end runs with MESHFLEET_LAB_E2E=1 (.ci/run sets it)")))("the lab for real (MESHFLEET_LAB_E2E=1)", () => {
  const lines: string[] = [];
  afterAll(async () => {
    if (process.env.MESHFLEET_LAB_KEEP !== "1") await labDown({ instance: 0, log: () => undefined });
  }, 300_000);

  it("lab up deploys hosts/lab through meshfleet up, and agent verify finds no drift", async () => {
    const r = await labUp({ instance: 0, log: (l) => lines.push(l) });
    expect(r.error ?? "", lines.slice(-15).join("\n")).toBe("");
    expect(r.ok).toBe(true);
    expect(r.steps.map((s) => s.step)).toEqual(expect.arrayContaining(["meshfleet up", "agent verify"]));
    expect(r.deploy?.ok).toBe(true);
    expect(r.drift?.map((d) => d.host).sort()).toEqual(fleetHosts());
    expect(r.drift?.filter((d) => !d.ok)).toEqual([]);
  }, 1_800_000);

  it("lab check passes every check on real traffic", async () => {
    const r = await labChecks({ instance: 0, log: (l) => lines.push(l) });
    for (const c of r.checks) expect(c.ok, `${c.name}: ${c.reason}`).toBe(true);
    expect(r.checks.length).toBeGreaterThanOrEqual(7);
    // The checks that hold (lab/e2e/hold-checks.ts) are among them, by name.
    for (const n of ["headscale held down ~60 s", "a replaced pre-auth key is refused", "a deploy that locks itself out", "after every check: a second run makes no changes"]) expect(r.checks.map((c) => c.name).some((x) => x.startsWith(n)), n).toBe(true);
    // 60 s of coordinator outage and a lockout that waits out the guard (120 s) come on top of the rest.
  }, 1_200_000);

  it("lab report writes the page", () => {
    const out = execFileSync(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "lab", "report"], { encoding: "utf8", cwd: REPO });
    const path = out.trim().replace(/^report: /, "");
    expect(readFileSync(path, "utf8")).toContain("<svg");
  });
});
