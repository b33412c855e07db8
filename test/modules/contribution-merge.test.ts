/**
 * Modules contribute firewall ports and systemd units through the same
 * priority merge as host files (NixOS `networking.firewall.allowedTCPPorts`,
 * `systemd.services.<name>`): a module's public port is a definition of the
 * port list of its protocol, its unit a definition of `systemd.units.<name>`,
 * so a host file's `!mkForce` wins over them, a plain value joins them (lists)
 * or conflicts with them (a different scalar), and what lands on the host (the
 * nft table, the unit files) follows. On copies of the lab fleet.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { evaluateFleet, formatDiagnostics, type FleetSystem, type HostSystem } from "../../core/index.ts";
import { hostArtifacts } from "../../core/artifacts.ts";
import { REGISTRY } from "../../modules/index.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

/** A copy of hosts/lab with text appended to host files. */
function labCopy(append: Record<string, string> = {}): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "mf-contrib-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, "lab");
  cpSync("hosts/lab", dir, { recursive: true });
  for (const [name, text] of Object.entries(append)) {
    const file = path.join(dir, name);
    writeFileSync(file, readFileSync(file, "utf8") + text);
  }
  return dir;
}

async function evalOk(dir: string): Promise<FleetSystem> {
  const r = await evaluateFleet(REGISTRY, dir, "lab");
  expect(r.fleet, formatDiagnostics(r.diagnostics)).toBeDefined();
  return r.fleet!;
}

async function evalErrors(dir: string) {
  const r = await evaluateFleet(REGISTRY, dir, "lab");
  expect(r.fleet).toBeUndefined();
  return r.diagnostics.filter((d) => d.severity === "error");
}

const ports = (h: HostSystem, proto: "tcp" | "udp") => h.firewall.inbound.filter((r) => r.proto === proto).map((r) => `${r.owner}:${r.port}`).sort();
const nft = (h: HostSystem) => hostArtifacts(h).find((a) => a.path === "meshfleet/nftables.nft")!.content;
const unit = (h: HostSystem, name: string) => h.units.find((u) => u.name === name);

describe("firewall ports: modules define the port lists, merged by priority with the host's", () => {
  it("as the modules define them when the host sets nothing", async () => {
    const vps = (await evalOk(labCopy())).hosts.vps;
    expect(ports(vps, "tcp")).toEqual(["derp:8443", "reverse-proxy:443", "reverse-proxy:80", "ssh:22"]);
    expect(ports(vps, "udp")).toEqual(["derp:3478", "tailscale:41641"]);
  });

  it("a plain host list joins the modules' (lists concatenate at one priority)", async () => {
    const vps = (await evalOk(labCopy({ "vps.yaml": "firewall:\n  allowedTCPPorts: [8080]\n" }))).hosts.vps;
    expect(ports(vps, "tcp")).toEqual(["derp:8443", "firewall:8080", "reverse-proxy:443", "reverse-proxy:80", "ssh:22"]);
    expect(nft(vps)).toMatch(/tcp dport 8080 accept comment "firewall: firewall.allowedTCPPorts"/);
  });

  it("a host's !mkForce TCP list replaces every module's TCP port, and the nft table follows", async () => {
    const before = (await evalOk(labCopy())).hosts.vps;
    expect(nft(before)).toMatch(/tcp dport 80 accept/);
    const vps = (await evalOk(labCopy({ "vps.yaml": "firewall:\n  allowedTCPPorts: !mkForce [22, 443, 8080]\n" }))).hosts.vps;
    // The ports the forced list names that a module also opens are opened as the module does.
    expect(ports(vps, "tcp")).toEqual(["firewall:8080", "reverse-proxy:443", "ssh:22"]);
    // UDP is another option: the modules' UDP ports stay.
    expect(ports(vps, "udp")).toEqual(["derp:3478", "tailscale:41641"]);
    const text = nft(vps);
    expect(text).not.toMatch(/tcp dport 80 /);
    expect(text).not.toMatch(/tcp dport 8443 /);
    expect(text).toMatch(/tcp dport 443 accept comment "reverse-proxy: /);
    expect(text).toMatch(/tcp dport 8080 accept comment "firewall: firewall.allowedTCPPorts"/);
    expect(text).toMatch(/udp dport 3478 accept/);
  });

  it("a host's !mkForce UDP list replaces every module's UDP port (tailscale's, STUN)", async () => {
    const vps = (await evalOk(labCopy({ "vps.yaml": "firewall:\n  allowedUDPPorts: !mkForce []\n" }))).hosts.vps;
    expect(ports(vps, "udp")).toEqual([]);
    expect(nft(vps)).not.toMatch(/udp dport/);
    expect(ports(vps, "tcp")).toContain("ssh:22");
  });

  it("!mkForce from an imported file wins over the modules as from the host file", async () => {
    const vps = (await evalOk(labCopy({ "_tools.yaml": "firewall:\n  allowedUDPPorts: !mkForce [41641]\n" }))).hosts.vps;
    expect(ports(vps, "udp")).toEqual(["tailscale:41641"]); // derp's STUN port is gone
  });

  it("a forced list keeps the SSH sources (firewall.sshFrom) of the port it names", async () => {
    const vps = (await evalOk(labCopy({ "vps.yaml": "firewall:\n  sshFrom: [192.0.2.0/24]\n  allowedTCPPorts: !mkForce [22]\n" }))).hosts.vps;
    expect(vps.firewall.inbound.filter((r) => r.proto === "tcp")).toEqual([expect.objectContaining({ owner: "ssh", port: 22, from: ["192.0.2.0/24"] })]);
    expect(nft(vps)).toMatch(/ip saddr \{ 192\.0\.2\.0\/24 \} tcp dport 22 accept/);
  });

  it("a forced list that drops the SSH port meshfleet deploys through is an error, reported where it was written", async () => {
    const errors = await evalErrors(labCopy({ "vps.yaml": "firewall:\n  allowedTCPPorts: !mkForce [443]\n" }));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ path: "firewall.allowedTCPPorts", expected: "tcp port 22 open (ssh: meshfleet deploys over SSH)" });
    expect(errors[0].file).toMatch(/vps\.yaml$/);
    expect(errors[0].fix).toMatch(/add 22 to firewall\.allowedTCPPorts/);
  });

  it("with the firewall off, a forced list without SSH is no lockout (nothing is filtered)", async () => {
    const vps = (await evalOk(labCopy({ "vps.yaml": "firewall:\n  enable: false\n  allowedTCPPorts: !mkForce [443]\n" }))).hosts.vps;
    expect(hostArtifacts(vps).some((a) => a.path === "meshfleet/nftables.nft")).toBe(false);
  });

  it("a host port a module already opens is still a clash between the two (as before)", async () => {
    const errors = await evalErrors(labCopy({ "vps.yaml": "firewall:\n  allowedTCPPorts: [443]\n" }));
    expect(errors.map((d) => d.expected)).toContainEqual(expect.stringMatching(/^one service per port \(tcp 443 is reverse-proxy's/));
  });
});

describe("systemd units: modules define systemd.units.<name>, merged by priority with the host's", () => {
  it("a host's !mkForce stops a module's unit; the unit file is still written, not started", async () => {
    const before = (await evalOk(labCopy())).hosts.vps;
    expect(unit(before, "derper.service")?.enable).toBe(true);
    const vps = (await evalOk(labCopy({ "vps.yaml": "systemd:\n  units:\n    derper.service:\n      enable: !mkForce false\n" }))).hosts.vps;
    const u = unit(vps, "derper.service")!;
    expect(u.enable).toBe(false);
    expect(u.content).toBe(unit(before, "derper.service")!.content);
    // Every other unit as before, in the modules' order.
    expect(vps.units.map((x) => x.name)).toEqual(before.units.map((x) => x.name));
    expect(vps.units.filter((x) => x.name !== "derper.service")).toEqual(before.units.filter((x) => x.name !== "derper.service"));
  });

  it("a plain value that differs from the module's is a conflict at one priority, naming the option and the module", async () => {
    const errors = await evalErrors(labCopy({ "vps.yaml": "systemd:\n  units:\n    derper.service:\n      enable: false\n" }));
    expect(errors).toHaveLength(1);
    expect(errors[0].path).toBe("systemd.units.derper.service.enable");
    expect(errors[0].file).toMatch(/vps\.yaml$/);
    expect(errors[0].found).toMatch(/\(set by the derp module\)/);
    expect(errors[0].fix).toMatch(/mkForce/);
  });

  it("!mkForce content replaces a module's unit text; plain restart triggers join the module's", async () => {
    const text = "[Unit]\\nDescription=my derper\\n\\n[Service]\\nExecStart=/usr/local/bin/derper\\n";
    const vps = (await evalOk(labCopy({
      "vps.yaml": `systemd:\n  units:\n    derper.service:\n      content: !mkForce "${text}"\n    headscale.service:\n      restartTriggers: [/etc/extra.conf]\n`,
    }))).hosts.vps;
    expect(unit(vps, "derper.service")!.content).toBe(text.replace(/\\n/g, "\n"));
    const before = (await evalOk(labCopy())).hosts.vps;
    expect([...unit(vps, "headscale.service")!.restartTriggers!].sort()).toEqual([...(unit(before, "headscale.service")!.restartTriggers ?? []), "/etc/extra.conf"].sort());
    expect(unit(before, "headscale.service")!.restartTriggers!.length).toBeGreaterThan(0);
    const files = hostArtifacts(vps);
    expect(files.find((a) => a.path === "etc/systemd/system/derper.service")?.content).toBe(text.replace(/\\n/g, "\n"));
  });

  it("a host's own unit (with content) is added; settings for a unit nobody provides are an error", async () => {
    const own = (await evalOk(labCopy({ "laptop.yaml": 'systemd:\n  units:\n    backup.timer:\n      content: "[Timer]\\nOnCalendar=daily\\n"\n' }))).hosts.laptop;
    expect(unit(own, "backup.timer")).toEqual({ name: "backup.timer", content: "[Timer]\nOnCalendar=daily\n", enable: true });
    const errors = await evalErrors(labCopy({ "laptop.yaml": "systemd:\n  units:\n    derper.service:\n      enable: !mkForce false\n" }));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ path: "systemd.units.derper.service", found: "settings for derper.service, which no module on this host provides" });
    expect(errors[0].file).toMatch(/laptop\.yaml$/);
  });
});
