/**
 * The pieces of status/doctor that need no lab: the stack resolution is the
 * deploy's, `ss` and `tailscale status` parsing, the STUN request derper
 * accepts (checked against a UDP server here, fingerprint by zlib's crc32),
 * and the one-host rule of rollback/generations.
 */
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import * as deploy from "../../cli/commands/deploy.ts";
import { parseSs, STUN_JS } from "../../cli/commands/doctor.ts";
import { peerPaths } from "../../cli/commands/status.ts";
import { sections, selectHosts, stackConfigFile, stackHostsDir } from "../../cli/fleet-hosts.ts";

const tmp = mkdtempSync(join(tmpdir(), "mf-fleet-hosts-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("stack resolution", () => {
  it("is the one resolution meshfleet up uses too (one definition, not a copy)", () => {
    expect(deploy.stackConfigFile).toBe(stackConfigFile);
    expect(deploy.stackHostsDir).toBe(stackHostsDir);
    expect(deploy.selectHosts).toBe(selectHosts);
  });

  it("finds the config file and fleet folder", () => {
    const root = join(tmp, "repo");
    mkdirSync(join(root, "stacks"), { recursive: true });
    writeFileSync(join(root, "Pulumi.yaml"), "name: meshfleet\nruntime: nodejs\nstackConfigDir: stacks\n");
    writeFileSync(join(root, "stacks", "Pulumi.home.yaml"), "config:\n  meshfleet:hostsDir: fleets/home\n");
    const other = join(tmp, "other.yaml");
    writeFileSync(other, `config:\n  meshfleet:hostsDir: ${join(tmp, "abs")}\n`);
    expect(stackConfigFile("home", undefined, root)).toBe(join(root, "stacks", "Pulumi.home.yaml"));
    expect(stackConfigFile("home", other, root)).toBe(other);
    expect(stackHostsDir("home", other, root)).toBe(join(tmp, "abs"));
    expect(stackHostsDir("home", undefined, root)).toBe(join(root, "fleets", "home"));
    expect(stackHostsDir("nope", undefined, root)).toBe(join(root, "hosts", "nope"));
  });

  it("selects hosts for --on as meshfleet up does, errors included", () => {
    const hosts = [
      { name: "vps", roles: ["coordinator"], tags: ["tag:server"] },
      { name: "lxc", roles: ["subnet-router"], tags: ["tag:router"] },
      { name: "laptop", roles: ["client"], tags: [] },
    ];
    expect(selectHosts(["vps"], hosts)).toEqual(["vps"]);
    expect(selectHosts(["@router"], hosts)).toEqual(["lxc"]);
    expect(selectHosts(["@tag:server,laptop"], hosts)).toEqual(["vps", "laptop"]);
    expect(selectHosts(["@subnet-router", "vps"], hosts)).toEqual(["lxc", "vps"]);
    expect(() => selectHosts(["nas"], hosts)).toThrow(/--on nas: no such host \(hosts: vps, lxc, laptop\)/);
    expect(() => selectHosts(["@db"], hosts)).toThrow(/--on @db: no host has the role or tag "db"/);
  });
});

describe("parsing what hosts print", () => {
  it("splits a script's sections even when a tool prints no final newline", () => {
    expect(sections('\n@@mf:a@@\n{"x":1}\n@@mf:b@@\nline\n\n@@mf:end@@\n')).toEqual({ a: '{"x":1}', b: "line", end: "" });
  });

  it("reads ports and their processes from ss -Hlntup", () => {
    const ss = [
      'udp UNCONN 0      0                  0.0.0.0:41641 0.0.0.0:* users:(("tailscaled",pid=1448,fd=18))',
      'udp UNCONN 0      0                        *:3478        *:* users:(("derper",pid=1440,fd=8))',
      'tcp LISTEN 0      4096                     *:443         *:* users:(("caddy",pid=1430,fd=8))',
      'tcp LISTEN 0      511                [::]:80       [::]:* users:(("apache2",pid=7,fd=4),("apache2",pid=8,fd=4))',
    ].join("\n");
    expect(parseSs(ss)).toEqual([
      { proto: "udp", port: 41641, procs: ["tailscaled"] },
      { proto: "udp", port: 3478, procs: ["derper"] },
      { proto: "tcp", port: 443, procs: ["caddy"] },
      { proto: "tcp", port: 80, procs: ["apache2", "apache2"] },
    ]);
  });

  it("tells direct, relayed and idle peers apart", () => {
    const paths = peerPaths({
      Peer: {
        a: { HostName: "vps", Online: true, CurAddr: "203.0.113.10:41641", Relay: "lab", Active: true },
        b: { HostName: "nas", Online: true, CurAddr: "", Relay: "lab", Active: true },
        c: { HostName: "phone", Online: false, CurAddr: "", Relay: "lab", Active: false },
      },
    });
    expect(paths.map((p) => `${p.peer}:${p.path}`)).toEqual(["vps:direct", "nas:relayed", "phone:idle"]);
  });
});

describe("the STUN probe", () => {
  it("sends a binding request with SOFTWARE tailnode and a valid FINGERPRINT, and reports ok only for the matching answer", async () => {
    const server = createSocket("udp4");
    const got: Buffer[] = [];
    server.on("message", (m, r) => {
      got.push(m);
      // Answer first with a wrong transaction id (must be ignored), then the right one.
      const bad = Buffer.alloc(20);
      bad.writeUInt16BE(0x0101, 0);
      server.send(bad, r.port, r.address);
      const ok = Buffer.from(m.subarray(0, 20));
      ok.writeUInt16BE(0x0101, 0);
      ok.writeUInt16BE(0, 2);
      server.send(ok, r.port, r.address);
    });
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
    const port = server.address().port;
    const out = await new Promise<string>((resolve) => {
      const c = spawn(process.execPath, ["-e", STUN_JS, "127.0.0.1", String(port)]);
      let s = "";
      c.stdout.on("data", (d) => (s += d));
      c.on("close", () => resolve(s.trim()));
    });
    server.close();
    expect(out).toBe("ok");
    const m = got[0]!;
    expect(m.length).toBe(40);
    expect(m.readUInt16BE(0)).toBe(0x0001);
    expect(m.readUInt16BE(2)).toBe(20);
    expect(m.readUInt32BE(4)).toBe(0x2112a442);
    expect(m.readUInt16BE(20)).toBe(0x8022);
    expect(m.subarray(24, 32).toString("latin1")).toBe("tailnode");
    expect(m.readUInt16BE(32)).toBe(0x8028);
    expect(m.readUInt32BE(36)).toBe((crc32(m.subarray(0, 32)) ^ 0x5354554e) >>> 0);
  });

  it("reports a timeout when nothing answers", async () => {
    const server = createSocket("udp4");
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
    const port = server.address().port;
    const out = await new Promise<string>((resolve) => {
      const c = spawn(process.execPath, ["-e", STUN_JS, "127.0.0.1", String(port)]);
      let s = "";
      c.stdout.on("data", (d) => (s += d));
      c.on("close", () => resolve(s.trim()));
    });
    server.close();
    expect(out).toBe("timeout");
  });
});
