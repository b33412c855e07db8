/**
 * node-exporter: a module added as one file plus its entry in the registry.
 * Its unit runs Debian's prometheus-node-exporter with the agent's textfile
 * directory; its port is opened on the tailnet only (never the public side).
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { evaluateFleet, formatDiagnostics, renderNftables, type FleetSystem } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { nodeExporterModule } from "../../modules/node-exporter.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function labWith(edits: Record<string, (old: string) => string>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "mf-nodeexp-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, "lab");
  cpSync("hosts/lab", dir, { recursive: true });
  for (const [name, e] of Object.entries(edits)) writeFileSync(path.join(dir, name), e(readFileSync(path.join(dir, name), "utf8")));
  return dir;
}

const enable = (t: string) => t + "node-exporter:\n  enable: true\n";

async function lab(edits: Record<string, (old: string) => string>): Promise<FleetSystem> {
  const r = await evaluateFleet(REGISTRY, labWith(edits), "lab");
  expect(r.fleet, formatDiagnostics(r.diagnostics)).toBeDefined();
  return r.fleet!;
}

describe("node-exporter module", () => {
  it("is in the registry, off by default, every option documented", async () => {
    expect(REGISTRY.modules.map((m) => m.name)).toContain("node-exporter");
    for (const [k, v] of Object.entries(nodeExporterModule.options.shape)) expect((v as { description?: string }).description, k).toBeTruthy();
    const r = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
    for (const h of Object.values(r.fleet!.hosts)) {
      expect(h.services.nodeExporter).toBe(false);
      expect(h.units.map((u) => u.name)).not.toContain("prometheus-node-exporter.service");
    }
  });

  it("runs node_exporter on the agent's textfile directory, port open on tailscale0 only", async () => {
    const f = await lab({ "laptop.yaml": (t) => enable(t) + "metrics:\n  textfileDir: /var/lib/meshfleet/metrics\n" });
    const h = f.hosts.laptop;
    expect(h.services.nodeExporter).toBe(true);
    const unit = h.units.find((u) => u.name === "prometheus-node-exporter.service")!;
    expect(unit.enable).toBe(true);
    expect(unit.content).toContain("ExecStart=/usr/bin/prometheus-node-exporter --web.listen-address=:9100 --collector.textfile.directory=/var/lib/meshfleet/metrics\n");
    expect(h.packages).toContain("prometheus-node-exporter");
    // Not on the public side; on the tailnet side.
    expect(h.firewall.inbound.map((r) => r.port)).not.toContain(9100);
    expect(h.firewall.tailnetInbound).toEqual([{ proto: "tcp", port: 9100, from: [], owner: "node-exporter", comment: "node_exporter metrics (tailnet only)" }]);
    const nft = renderNftables(h)!;
    expect(nft).not.toMatch(/dport 9100/);
    expect(nft).toContain('iifname "tailscale0" accept');
  });

  it("on a host that enforces the policy, the policy decides who may scrape it", async () => {
    const f = await lab({ "lxc-tailscale.yaml": enable });
    const h = f.hosts["lxc-tailscale"];
    expect(h.firewall.trustTailnet).toBe(false);
    const nft = renderNftables(h)!;
    expect(nft).toContain('iifname "tailscale0" jump tailnet');
    // The public input chain holds no 9100 rule; the tailnet chain holds only the policy's rules.
    expect(nft).not.toMatch(/dport 9100/);
  });

  it("a host that does not join the mesh cannot run it (nobody could reach it)", async () => {
    const r = await evaluateFleet(REGISTRY, labWith({ "laptop.yaml": (t) => enable(t).replace("imports: [client, ./_tools.yaml]", "imports: [./_tools.yaml]") }), "lab");
    expect(r.fleet).toBeUndefined();
    expect(r.diagnostics.filter((d) => d.severity === "error").map((d) => `${path.basename(d.file)}: ${d.path}: expected ${d.expected}`)).toEqual([
      "laptop.yaml: node-exporter.enable: expected a host that joins the mesh (node_exporter is reachable over the tailnet only)",
    ]);
  });

  const bin = "/usr/bin/prometheus-node-exporter";
  const analyze = "/usr/bin/systemd-analyze";
  const NO_EXPORTER = "prometheus-node-exporter is not installed (apt-get install prometheus-node-exporter; scripts/setup.sh installs it)";
  it.skipIf(skipUnlessCi(!existsSync(bin) ? NO_EXPORTER : !existsSync(analyze) && "systemd-analyze is missing (apt-get install systemd)"))("systemd-analyze verify accepts the unit", async () => {
    const f = await lab({ "laptop.yaml": enable });
    const unit = f.hosts.laptop.units.find((u) => u.name === "prometheus-node-exporter.service")!;
    const dir = mkdtempSync(path.join(os.tmpdir(), "mf-unit-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, unit.name), unit.content);
    const r = spawnSync(analyze, ["verify", path.join(dir, unit.name)], { encoding: "utf8", timeout: 30_000 });
    // Warnings about the host's other units are not this unit's; anything naming it is.
    const ours = `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.includes(unit.name));
    expect(ours, r.stderr).toEqual([]);
    expect(r.status, r.stderr).toBe(0);
  }, 40_000);

  it.skipIf(skipUnlessCi(!existsSync(bin) && NO_EXPORTER))("the real node_exporter accepts the rendered flags and serves the textfile metrics", async () => {
    const f = await lab({ "laptop.yaml": enable });
    const exec = f.hosts.laptop.units.find((u) => u.name === "prometheus-node-exporter.service")!.content.split("\n").find((l) => l.startsWith("ExecStart="))!;
    const argv = exec.slice("ExecStart=".length).split(" ");
    const dir = mkdtempSync(path.join(os.tmpdir(), "mf-textfile-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(path.join(dir, "meshfleet.prom"), "# TYPE meshfleet_generation gauge\nmeshfleet_generation 7\n");
    const port = await freePort();
    // Same flags, but loopback on a free port and a temporary textfile directory.
    const args = argv.slice(1).map((a) =>
      a.startsWith("--web.listen-address=") ? `--web.listen-address=127.0.0.1:${port}` : a.startsWith("--collector.textfile.directory=") ? `--collector.textfile.directory=${dir}` : a,
    );
    expect(args.map((a) => a.split("=")[0])).toEqual(["--web.listen-address", "--collector.textfile.directory"]);
    const child = spawn(argv[0], args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (b) => (stderr += b));
    cleanups.push(() => child.kill("SIGTERM"));
    let body = "";
    for (let i = 0; i < 50 && !body.includes("meshfleet_generation"); i++) {
      await new Promise((r) => setTimeout(r, 100));
      body = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => "");
    }
    expect(body, stderr).toMatch(/^meshfleet_generation 7$/m);
  }, 20_000);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
    s.on("error", reject);
  });
}
