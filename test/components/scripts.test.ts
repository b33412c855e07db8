/**
 * The shell the provider sends over SSH, run for real through sh with
 * stand-in `pct` (checking pct(1)'s grammar, fake-pct.mjs) and `node` programs that record their calls: the pct
 * script on a Proxmox-like config tree, the agent switch, and the pure
 * parsers and checks, table-driven.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  agentState,
  checkRouteApproval,
  parsePreAuthKeyJson,
  parseSshTarget,
  pctScript,
  validateImagePin,
  validateLxc,
  pinnedImage,
  shq,
} from "../../components/index.ts";
import type { LxcSettings } from "../../core/types.ts";
import { prepareScript, switchScript } from "../../provider/resources/generation.ts";
import { findNode } from "../../provider/headscale-cli.ts";
import { evaluateStack } from "./fixtures.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function temp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}
/** A stand-in program that appends its argv (and stdin when asked) to a log. */
function fakeBin(dir: string, name: string, body: string): void {
  mkdirSync(join(dir, "bin"), { recursive: true });
  const p = join(dir, "bin", name);
  writeFileSync(p, `#!/bin/sh\necho "${name} $*" >> ${dir}/calls.log\n${body}\n`);
  chmodSync(p, 0o755);
}
function run(dir: string, script: string, env: Record<string, string> = {}, input?: string) {
  return spawnSync("sh", ["-c", script], { env: { ...process.env, PATH: `${dir}/bin:${process.env.PATH}`, ...env }, encoding: "utf8", input });
}
const calls = (dir: string) => (existsSync(`${dir}/calls.log`) ? readFileSync(`${dir}/calls.log`, "utf8").trim().split("\n") : []);

const FAKE_PCT = join(import.meta.dirname, "fake-pct.mjs");

describe("the stand-in pct refuses what pct(1) refuses (so the scripts below can fail on a bad call)", () => {
  const pve = () => {
    const dir = temp("mf-pct-grammar-");
    mkdirSync(join(dir, "lxc"));
    writeFileSync(join(dir, "lxc", "205.conf"), "arch: amd64\n");
    writeFileSync(join(dir, "state"), "stopped");
    return (...argv: string[]) => spawnSync("node", [FAKE_PCT, ...argv], { env: { ...process.env, PCT_FAKE_DIR: dir }, encoding: "utf8" });
  };
  it.each([
    [["frobnicate", "205"], /unknown command 'pct frobnicate'/],
    [["set", "abc", "--dev0", "/dev/net/tun"], /vmid: value 'abc' does not look like a valid VM ID/],
    [["set", "99", "--onboot", "1"], /does not look like a valid VM ID/],
    [["set", "205", "--dev0"], /Option dev0 requires an argument/],
    [["set", "205", "--devv0", "/dev/net/tun"], /Unknown option: devv0/],
    [["set", "205", "--dev0", "net/tun"], /dev0: invalid format/],
    [["set", "205", "--onboot", "maybe"], /onboot: invalid format/],
    [["set", "205", "/dev/net/tun"], /400 too many arguments/],
    [["start", "205", "--force"], /Unknown option: force/],
    [["create", "206"], /not enough arguments/],
    [["create", "206", "debian-12.tar.zst"], /ostemplate: invalid format/],
    [["create", "206", "local:vztmpl/debian-12.tar.zst", "--hostname", "LXC tailscale"], /hostname: invalid format/],
    [["create", "205", "local:vztmpl/debian-12.tar.zst"], /CT 205 already exists/],
    [["status", "207"], /Configuration file 'nodes\/pve\/lxc\/207.conf' does not exist/],
  ] as const)("pct %j is refused", (argv, msg) => {
    const r = pve()(...argv);
    expect(r.status).toBe(255);
    expect(r.stderr).toMatch(msg);
  });
  it("accepts the documented forms meshfleet uses", () => {
    const pct = pve();
    for (const argv of [["status", "205"], ["set", "205", "--dev0", "/dev/net/tun"], ["set", "205", "--dev1", "path=/dev/net/tun,mode=0666"], ["config", "205"], ["start", "205"], ["reboot", "205"], ["status", "205", "--verbose"], ["create", "206", "local:vztmpl/debian-12.tar.zst", "--hostname", "LXC_tailscale", "--net0", "name=eth0,bridge=vmbr0,ip=dhcp", "--unprivileged", "1", "--features", "nesting=1"], ["stop", "206"], ["destroy", "206", "--purge"]]) {
      const r = pct(...argv);
      expect(r.status, `pct ${argv.join(" ")}: ${r.stderr}`).toBe(0);
    }
    expect(pct("config", "205").stdout).toBe("arch: amd64\ndev0: /dev/net/tun\ndev1: path=/dev/net/tun,mode=0666\n");
  });
});

describe("pct script (Proxmox CT created or adopted, TUN passthrough, started)", () => {
  /** A Proxmox node in a directory: `pct status` answers from a state file. */
  function proxmox(ct: { exists: boolean; running: boolean; conf?: string }) {
    const dir = temp("mf-pve-");
    mkdirSync(join(dir, "lxc"));
    if (ct.exists) writeFileSync(join(dir, "lxc", "205.conf"), ct.conf ?? "arch: amd64\nhostname: LXC_tailscale\n");
    writeFileSync(join(dir, "state"), ct.running ? "running" : "stopped");
    // pct's grammar (pct(1)) checked by a stand-in: the real pct runs only on a Proxmox VE node (see fake-pct.mjs).
    fakeBin(dir, "pct", `PCT_FAKE_DIR=${dir} exec node ${FAKE_PCT} "$@"`);
    const script = (l: LxcSettings) => pctScript("lxc-tailscale", l).replaceAll("/etc/pve/lxc", `${dir}/lxc`);
    return { dir, script, conf: () => readFileSync(join(dir, "lxc", "205.conf"), "utf8") };
  }
  const raw: LxcSettings = {
    ctid: 205,
    proxmoxHost: "root@192.168.8.82",
    pveVersion: "8.1",
    mode: "adopt",
    config: ["lxc.cgroup2.devices.allow: c 10:200 rwm", "lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file"],
    pctCommands: [],
  };

  it("adopting a CT that does not exist fails naming host and CT", () => {
    const pve = proxmox({ exists: false, running: false });
    const r = run(pve.dir, pve.script(raw));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("meshfleet: lxc-tailscale: CT 205 does not exist on this Proxmox node (lxc.mode is adopt)");
  });

  it("adds the TUN lines before the snapshot sections, reboots a running CT once, and changes nothing on a re-run", () => {
    const pve = proxmox({ exists: true, running: true, conf: "arch: amd64\nhostname: LXC_tailscale\n\n[before-upgrade]\narch: amd64\n" });
    const r1 = run(pve.dir, pve.script(raw));
    expect(r1.status, r1.stderr).toBe(0);
    expect(pve.conf()).toBe(
      "arch: amd64\nhostname: LXC_tailscale\n\nlxc.cgroup2.devices.allow: c 10:200 rwm\nlxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file\n[before-upgrade]\narch: amd64\n",
    );
    expect(calls(pve.dir).filter((c) => c.startsWith("pct reboot"))).toEqual(["pct reboot 205"]);
    const before = calls(pve.dir).length;
    const r2 = run(pve.dir, pve.script(raw));
    expect(r2.status).toBe(0);
    const again = calls(pve.dir).slice(before);
    expect(again.some((c) => /pct (reboot|start)/.test(c))).toBe(false);
    expect(pve.conf().match(/lxc.cgroup2/g)).toHaveLength(1);
  });

  it("starts a stopped CT", () => {
    const pve = proxmox({ exists: true, running: false, conf: "arch: amd64\nlxc.cgroup2.devices.allow: c 10:200 rwm\nlxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file\n" });
    const r = run(pve.dir, pve.script(raw));
    expect(r.status, r.stderr).toBe(0);
    expect(calls(pve.dir)).toContain("pct start 205");
    expect(r.stdout.trim().split("\n").pop()).toBe("status: running");
  });

  it("creates a missing CT once (mode create), then leaves it be", () => {
    const pve = proxmox({ exists: false, running: false });
    const l: LxcSettings = { ...raw, mode: "create", config: ["dev0: /dev/net/tun"], pctCommands: [["pct", "create", "205", "local:vztmpl/debian-12.tar.zst", "--hostname", "LXC_tailscale"]] };
    expect(validateLxc({ name: "lxc-tailscale", file: "hosts/home/lxc-tailscale.yaml", lxc: l } as never)).toEqual([]);
    expect(run(pve.dir, pve.script(l)).status).toBe(0);
    expect(run(pve.dir, pve.script(l)).status).toBe(0);
    expect(calls(pve.dir).filter((c) => c.startsWith("pct create"))).toEqual(["pct create 205 local:vztmpl/debian-12.tar.zst --hostname LXC_tailscale"]);
    expect(pve.conf()).toContain("dev0: /dev/net/tun");
  });

  it("runs the home fleet's own lxc commands (pct set --dev0, then start or reboot)", async () => {
    const { fleet } = await evaluateStack("home");
    const l = fleet.hosts["lxc-tailscale"].lxc!;
    const pve = proxmox({ exists: true, running: false });
    const r = run(pve.dir, pve.script(l));
    expect(r.status, r.stderr).toBe(0);
    expect(calls(pve.dir)).toEqual(["pct status 205", "pct set 205 --dev0 /dev/net/tun", "pct status 205", "pct start 205", "pct status 205"]);
    expect(pve.conf()).toContain("dev0: /dev/net/tun");
  });
});

describe("agent switch over SSH", () => {
  it("writes the bundle from stdin to a 0600 file in a 0700 dir and runs switch with the confirm timeout", () => {
    const dir = temp("mf-switch-");
    fakeBin(dir, "node", `[ "$2" = switch ] && cp "$3" ${dir}/seen.json; exit 0`);
    const state = join(dir, "state");
    const bundle = JSON.stringify({ host: "router", secret: "hskey-auth-abc" });
    const r = run(dir, switchScript({ node: "node", remotePath: "/usr/local/lib/meshfleet/meshfleet-agent.mjs", stateDir: state, localPath: "", sha256: "" }, 90, false), {}, bundle);
    expect(r.status, r.stderr).toBe(0);
    const f = join(state, "incoming", "bundle.json");
    expect(statSync(f).mode & 0o777).toBe(0o600);
    expect(statSync(join(state, "incoming")).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(dir, "seen.json"), "utf8")).toBe(bundle);
    expect(calls(dir)).toEqual([`node /usr/local/lib/meshfleet/meshfleet-agent.mjs switch ${f} --confirm-timeout 90`]);
    // A repair re-applies the current generation where the host drifted.
    const r2 = run(dir, switchScript({ node: "node", remotePath: "/usr/local/lib/meshfleet/meshfleet-agent.mjs", stateDir: state, localPath: "", sha256: "" }, 90, true), {}, bundle);
    expect(r2.status, r2.stderr).toBe(0);
    expect(calls(dir)[1]).toBe(`node /usr/local/lib/meshfleet/meshfleet-agent.mjs switch ${f} --confirm-timeout 90 --repair`);
    // The bundle never appears on a command line.
    expect(calls(dir).join("\n")).not.toContain("hskey-auth");
  });

  it("fails before the push when the host has no Node.js, saying what to install", () => {
    const dir = temp("mf-prepare-");
    const r = spawnSync("sh", ["-c", prepareScript("router", { node: "node-that-is-not-there", remotePath: `${dir}/lib/agent.mjs`, stateDir: `${dir}/state`, localPath: "", sha256: "" })], { encoding: "utf8" });
    expect(r.status).toBe(3);
    expect(r.stderr).toContain("meshfleet: router has no node-that-is-not-there (Node.js 18 or newer); install the nodejs package on it");
  });
});

describe("route approval: the node headscale lists", () => {
  it("is the newest registration of the hostname; none when it never joined", () => {
    const nodes = JSON.stringify([
      { id: 1, name: "router", given_name: "router", approved_routes: ["192.168.8.0/24"] },
      { id: 7, name: "router", given_name: "router", approved_routes: ["192.168.8.0/24", "192.168.9.0/24"] },
      { id: 3, name: "laptop", given_name: "laptop" },
    ]);
    expect(findNode(nodes, "router")?.id).toBe(7);
    expect(findNode(nodes, "nas")).toBeNull();
    expect(() => findNode(JSON.stringify({ error: "connection refused" }), "router")).toThrow("headscale nodes list: connection refused");
  });
});

describe("pure checks", () => {
  const node = (o: object) => JSON.stringify([{ id: 4, name: "router", given_name: "router", ...o }]);
  it.each([
    ["all approved", node({ available_routes: ["10.0.0.0/24"], approved_routes: ["10.0.0.0/24"] }), { routes: ["10.0.0.0/24"], exitNode: false }, []],
    [
      "announced, not approved",
      node({ available_routes: ["10.0.0.0/24"], tags: ["tag:router"] }),
      { routes: ["10.0.0.0/24"], exitNode: false },
      ['host router: route 10.0.0.0/24 is declared in the fleet but headscale did not approve it (approved: none); make autoApprovers.routes["10.0.0.0/24"] in the policy cover the node\'s owner or tags (tag:router), then redeploy'],
    ],
    [
      "not announced",
      node({}),
      { routes: ["10.0.0.0/24"], exitNode: false },
      ["host router: route 10.0.0.0/24 is declared in the fleet but the node does not announce it to headscale (available: none); check tailscale.advertiseRoutes and the agent's `tailscale set` on router"],
    ],
    [
      "exit node needs both default routes",
      node({ available_routes: ["0.0.0.0/0", "::/0"], approved_routes: ["0.0.0.0/0"] }),
      { routes: [], exitNode: true },
      ["host router: exit-node route ::/0 is declared in the fleet but headscale did not approve it (approved: 0.0.0.0/0); make autoApprovers.exitNode in the policy cover the node's owner or tags (no tags), then redeploy"],
    ],
    ["headscale error", JSON.stringify({ error: "connection refused" }), { routes: ["10.0.0.0/24"], exitNode: false }, ["host router: headscale nodes list failed: connection refused"]],
  ])("checkRouteApproval: %s", (_n, json, w, problems) => {
    expect(checkRouteApproval(json, { host: "router", hostname: "router", ...w })).toEqual(problems);
  });

  it("checkRouteApproval reads the newest registration of a reinstalled node", () => {
    const json = JSON.stringify([
      { id: 2, given_name: "router", approved_routes: [] , available_routes: ["10.0.0.0/24"] },
      { id: 9, given_name: "router", approved_routes: ["10.0.0.0/24"], available_routes: ["10.0.0.0/24"] },
    ]);
    expect(checkRouteApproval(json, { host: "router", hostname: "router", routes: ["10.0.0.0/24"], exitNode: false })).toEqual([]);
  });

  it("parsePreAuthKeyJson never puts headscale's output in its error (it may hold a key)", () => {
    expect(() => parsePreAuthKeyJson('{"key":"hskey-auth-x", "oops"', "laptop")).toThrow(/^pre-auth key for laptop: headscale did not print JSON \(\d+ bytes; output withheld/);
    try {
      parsePreAuthKeyJson('{"key":"hskey-auth-secretvalue"}', "laptop");
    } catch (e) {
      expect(String(e)).not.toContain("secretvalue");
    }
  });

  it.each([
    ["docker.io/headscale/headscale:0.29.2", true],
    ["headscale/headscale:0.29.2@sha256:" + "a".repeat(64), true],
    ["headscale/headscale@sha256:" + "b".repeat(64), true],
    ["headscale/headscale:latest", false],
    ["headscale/headscale", false],
    ["localhost:5000/headscale", false],
    ["nginx:stable", false],
  ])("validateImagePin(%s) pinned=%s", (image, ok) => {
    expect(validateImagePin(image, "x").length === 0).toBe(ok);
  });

  it("pinnedImage adds a digest to the tag", () => {
    expect(pinnedImage("headscale/headscale:0.29.2", "sha256:" + "c".repeat(64))).toBe(`headscale/headscale:0.29.2@sha256:${"c".repeat(64)}`);
    expect(pinnedImage("headscale/headscale:0.29.2")).toBe("headscale/headscale:0.29.2");
  });

  it.each([
    ["root@192.168.8.82", { user: "root", host: "192.168.8.82", port: 22 }],
    ["admin@pve.lan:2222", { user: "admin", host: "pve.lan", port: 2222 }],
    ["pve.lan", { user: "root", host: "pve.lan", port: 22 }],
    ["root@[2001:db8::1]:22", { user: "root", host: "2001:db8::1", port: 22 }],
  ])("parseSshTarget(%s)", (t, want) => {
    expect(parseSshTarget(t)).toEqual(want);
  });

  it("agentState reads the agent's status --json", () => {
    expect(agentState(JSON.stringify({ generation: 3, pendingConfirm: null, lastSwitch: { success: true } }))).toBe("generation 3");
    expect(agentState(JSON.stringify({ generation: 3, pendingConfirm: { generation: 4 } }))).toBe("generation 3 (awaiting confirm)");
    expect(agentState(JSON.stringify({ generation: 2, lastSwitch: { success: false, error: "probe headscale-health failed" } }))).toBe("generation 2 (last switch failed: probe headscale-health failed)");
    expect(agentState("not json")).toBe("deployed");
  });
});
