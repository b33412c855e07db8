/**
 * Host key pins: the fleet's own `ssh.hostKey` first, else the stack's
 * known_hosts file read with `ssh-keygen -F` (so hashed entries match, and
 * `[host]:port` entries for other ports); a host with no pin is a problem
 * reported before anything is created.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path, { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connectionIssues, hostConnection, knownHostsKeys, pinsFor, targetConnection } from "../../components/shell.ts";
import type { HostSystem } from "../../core/types.ts";

const K = (s: string) => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${s}`;

function knownHosts(): string {
  const dir = mkdtempSync(join(tmpdir(), "mf-kh-"));
  const hashed = join(dir, "hashed");
  writeFileSync(hashed, `172.31.240.205 ${K("router")}\n`);
  execFileSync("ssh-keygen", ["-H", "-f", hashed], { stdio: "ignore" });
  const f = join(dir, "known_hosts");
  writeFileSync(
    f,
    [
      "# lab",
      `172.31.240.10 ${K("vps")}`,
      `[172.31.240.77]:2222 ${K("lap")}`,
      readFileSync(hashed, "utf8").trim(),
      `a.example,b.example ssh-rsa AAAAB3NzaC1yc2E`,
      `[172.31.240.11]:22 ${K("bracketed22")}`,
    ].join("\n") + "\n",
  );
  return f;
}

describe("host key pins", () => {
  const f = knownHosts();
  afterAll(() => rmSync(path.dirname(f), { recursive: true, force: true }));
  it.each([
    ["172.31.240.10", 22, [K("vps")]],
    ["172.31.240.77", 2222, [K("lap")]],
    ["172.31.240.77", 22, []],
    ["172.31.240.205", 22, [K("router")]],
    ["b.example", 22, ["ssh-rsa AAAAB3NzaC1yc2E"]],
    ["172.31.240.11", 22, [K("bracketed22")]],
    ["203.0.113.10", 22, []],
  ])("ssh-keygen -F %s:%i", (address, port, want) => expect(knownHostsKeys(f, address as string, port as number)).toEqual(want));

  it("the fleet's own pin wins over the known_hosts file", () => {
    expect(pinsFor(`${K("own")} comment`, "172.31.240.10", 22, f)).toEqual([K("own")]);
    expect(pinsFor(undefined, "172.31.240.10", 22, f)).toEqual([K("vps")]);
  });

  const host = (o: Partial<HostSystem["ssh"]>, address = "203.0.113.99") =>
    ({ name: "nas", file: "hosts/home/nas.yaml", address, ssh: { user: "root", port: 22, hostKey: "", ...o } }) as unknown as HostSystem;

  it("a host with no pin is a problem naming the host and the fix, before anything is sent", () => {
    const c = hostConnection(host({}), { knownHostsPath: f, privateKeyPath: "/nonexistent/id" });
    expect(c).toEqual({ name: "nas", host: "203.0.113.99", port: 22, user: "root", hostKeys: [], privateKeyPath: "/nonexistent/id" });
    expect(connectionIssues(c, "hosts/home/nas.yaml: ssh.hostKey")).toEqual([
      "hosts/home/nas.yaml: ssh.hostKey: host nas (203.0.113.99): no pinned SSH host key, so nothing is sent to it. Fix: `npx meshfleet pin nas` (shows the fingerprint and records it), or set ssh.hostKey in its host file",
      "hosts/home/nas.yaml: ssh.hostKey: host nas: private key /nonexistent/id does not exist. Fix: point the host's ssh.privateKeyPath or the stack's meshfleet:sshPrivateKeyPath at an existing key",
    ]);
    expect(connectionIssues(hostConnection(host({}, "172.31.240.10"), { knownHostsPath: f }), "x")).toEqual([]);
  });

  it("a host's own ssh.privateKeyPath wins over the stack's key, with ~ expanded and a relative path made absolute", () => {
    expect(hostConnection(host({ privateKeyPath: "~/.ssh/nas_ed25519" }), { privateKeyPath: "/keys/stack" }).privateKeyPath).toBe(join(homedir(), ".ssh/nas_ed25519"));
    expect(hostConnection(host({ privateKeyPath: "keys/nas" }), { privateKeyPath: "/keys/stack" }).privateKeyPath).toBe(path.resolve("keys/nas"));
    expect(hostConnection(host({ privateKeyPath: "" }), { privateKeyPath: "/keys/stack" }).privateKeyPath).toBe("/keys/stack");
  });

  it("a Proxmox node is pinned like a host", () => {
    expect(targetConnection("pve", "root@172.31.240.77:2222", { knownHostsPath: f })).toEqual({ name: "pve", host: "172.31.240.77", port: 2222, user: "root", hostKeys: [K("lap")] });
  });
});
