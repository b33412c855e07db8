/**
 * Issue 18, TUN in the subnet router's LXC container, by Proxmox VE version:
 * each variant the lxc module renders is run through the provider's real pct
 * script, by sh, on a copy of a Proxmox-like tree (test/fixtures/pve*):
 * /etc/pve/lxc/205.conf, the node's /dev/net/tun (made here, as root, unless
 * the fixture is a kernel without the tun module), and a stand-in `pct` that
 * checks pct(1)'s grammar (test/components/fake-pct.mjs; the real pct runs
 * only on a Proxmox VE node). Each fixture says the config lines, the pct
 * calls, the resulting config, the CT's own TUN node (owner, group, mode)
 * where the variant makes one, or the error the deploy stops with:
 *   pve8.2-unprivileged, pve8.1-privileged  `pct set 205 --dev0 /dev/net/tun`
 *   pve8.0-privileged                        cgroup2 rule + bind mount of the host's node
 *   pve8.0-unprivileged                      the same, bound to the CT's own node (100000:100000)
 *   pve7.4-unprivileged-idmap                own node owned by the idmap's root (200000:300000),
 *                                            lines before the snapshot section
 *   pve8.2-no-tun-module                     stops before anything changes, saying why
 * Each runs twice: the second run changes nothing and restarts nothing.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { validateLxc } from "../../components/index.ts";
import { evaluateFleet } from "../../core/index.ts";
import type { LxcSettings } from "../../core/types.ts";
import { ctTunNode, pveHasDev0, tunVariant } from "../../modules/lxc.ts";
import { REGISTRY } from "../../modules/index.ts";
import { pctScript } from "../../provider/resources/proxmox.ts";
import { writeFleet } from "../core/fleet-fixture.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

const FIXTURES = path.join(import.meta.dirname, "..", "fixtures");
const FAKE_PCT = path.join(import.meta.dirname, "..", "components", "fake-pct.mjs");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

interface Expected {
  state: "running" | "stopped";
  hostTun?: boolean;
  config: string[];
  calls: string[];
  modprobe?: string[];
  error?: string;
  tunNode: { uid: number; gid: number; mode: string } | null;
}

async function lxcOf(ctYaml: string): Promise<LxcSettings> {
  const { dir, cleanup } = writeFleet({ "lxc-tailscale.yaml": ctYaml });
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    return r.fleet!.hosts["lxc-tailscale"].lxc!;
  } finally {
    cleanup();
  }
}

/** The Proxmox-like tree in a temp folder, with stand-in pct and modprobe on PATH. */
function proxmoxTree(fixture: string, want: Expected) {
  const root = mkdtempSync(path.join(os.tmpdir(), "mf-pve-tree-"));
  dirs.push(root);
  cpSync(path.join(FIXTURES, fixture, "etc"), path.join(root, "etc"), { recursive: true });
  writeFileSync(path.join(root, "etc/pve/state"), want.state);
  if (want.hostTun !== false) {
    mkdirSync(path.join(root, "dev/net"), { recursive: true });
    const r = spawnSync("mknod", [path.join(root, "dev/net/tun"), "c", "10", "200"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
  }
  const bin = path.join(root, "bin");
  mkdirSync(bin);
  const fake = (name: string, body: string) => {
    writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(bin, name), 0o755);
  };
  fake("pct", `PCT_FAKE_DIR=${root}/etc/pve exec node ${FAKE_PCT} "$@"`);
  // A kernel without the module: modprobe says so, as kmod does, and fails.
  fake("modprobe", `echo "modprobe $*" >> ${root}/modprobe.calls\necho "modprobe: FATAL: Module $1 not found in directory /lib/modules/$(uname -r)" >&2\nexit 1`);
  return root;
}

/** The module's commands pointed at the tree: the node's /dev/net/tun (the check) and meshfleet's own TUN nodes; the CT's config by the script's paths. */
function scriptFor(l: LxcSettings, root: string): string {
  const pctCommands = l.pctCommands.map((argv) =>
    argv.map((a) => {
      let x = a.replaceAll("/var/lib/meshfleet/lxc/", `${root}/var/lib/meshfleet/lxc/`);
      if (x.includes("modprobe tun")) x = x.replace(/\[ -c \/dev\/net\/tun \]/g, `[ -c ${root}/dev/net/tun ]`);
      return x;
    }),
  );
  return pctScript("lxc-tailscale", { ...l, pctCommands }).replaceAll("/etc/pve/lxc", `${root}/etc/pve/lxc`);
}

const run = (root: string, script: string) => spawnSync("sh", ["-c", script], { env: { ...process.env, PATH: `${root}/bin:${process.env.PATH}` }, encoding: "utf8" });
const lines = (f: string) => (existsSync(f) ? readFileSync(f, "utf8").trim().split("\n") : []);

describe("TUN passthrough by Proxmox VE version", () => {
  it.each([
    ["7.4", false, "bind-host"],
    ["7.4", true, "bind-mapped"],
    ["8.0", true, "bind-mapped"],
    ["8.1", true, "dev0"],
    ["8.1", false, "dev0"],
    ["8.2", true, "dev0"],
    ["9.0", true, "dev0"],
    ["10.0", false, "dev0"],
  ] as const)("PVE %s, unprivileged %s: %s", (v, unpriv, variant) => {
    expect(tunVariant(v, unpriv)).toBe(variant);
    expect(pveHasDev0(v)).toBe(variant === "dev0");
  });

  it("every fixture is run below", () => {
    expect(readdirSync(FIXTURES).filter((d) => d.startsWith("pve")).sort()).toEqual([
      "pve7.4-unprivileged-idmap", "pve8.0-privileged", "pve8.0-unprivileged", "pve8.1-privileged", "pve8.2-no-tun-module", "pve8.2-unprivileged",
    ]);
  });

  it("mode create is refused in check with the fix (a created CT has no SSH key, Node or tailscale, so the deploy could not reach it); its pct create would be argv", async () => {
    const { dir, cleanup } = writeFleet({ "lxc-tailscale.yaml": readFileSync(path.join(FIXTURES, "pve8.2-unprivileged/ct.yaml"), "utf8").replace("  ctid: 205\n", "  ctid: 205\n  mode: create\n") });
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      const errors = r.diagnostics.filter((d) => d.severity === "error");
      expect(errors.map((d) => `${d.path}: expected ${d.expected}, found ${d.found}. Fix: ${d.fix}`)).toEqual([
        "lxc.mode: expected \"adopt\": a container that already runs sshd with the deploy's key, Node 18+ and tailscale, found \"create\" (pct create gives a container with no SSH key, no Node and no tailscale, so the deploy could not reach it). Fix: create CT 205 on the Proxmox node with `pct create 205 local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst --ssh-public-keys KEYFILE ...`, install openssh-server, nodejs and tailscale in it, then set lxc.mode: adopt",
      ]);
    } finally {
      cleanup();
    }
    // The provider still runs a create given as argv (one argument each) only when the CT is missing.
    const l = await lxcOf(readFileSync(path.join(FIXTURES, "pve8.2-unprivileged/ct.yaml"), "utf8"));
    expect(validateLxc({ name: "lxc-tailscale", file: "hosts/x/lxc-tailscale.yaml", lxc: { ...l, mode: "create", pctCommands: [["pct", "create", "205", "local:vztmpl/debian-12.tar.zst"], ...l.pctCommands] } } as never)).toEqual([]);
  });

  it("a pveVersion that is not a version is refused with its path", async () => {
    const { dir, cleanup } = writeFleet({ "lxc-tailscale.yaml": readFileSync(path.join(FIXTURES, "pve8.2-unprivileged/ct.yaml"), "utf8").replace('pveVersion: "8.2"', "pveVersion: 8.2.1") });
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      expect(r.diagnostics.filter((d) => d.severity === "error").map((d) => `${d.path}: expected ${d.expected}, found ${d.found}`)).toEqual(['lxc.pveVersion: expected a Proxmox VE version such as 8.2, found "8.2.1"']);
    } finally {
      cleanup();
    }
  });
});

const fixtures = readdirSync(FIXTURES).filter((d) => d.startsWith("pve")).sort();
describe.skipIf(skipUnlessCi(!isRoot() && NEEDS_ROOT))("each variant on a Proxmox-like tree (as root: the tree's TUN nodes are real character devices)", () => {
  it.each(fixtures)("%s", async (fixture) => {
    const want = JSON.parse(readFileSync(path.join(FIXTURES, fixture, "expected.json"), "utf8")) as Expected;
    const l = await lxcOf(readFileSync(path.join(FIXTURES, fixture, "ct.yaml"), "utf8"));
    expect(l.config).toEqual(want.config);
    const root = proxmoxTree(fixture, want);
    const conf = path.join(root, "etc/pve/lxc/205.conf");
    const r = run(root, scriptFor(l, root));
    expect(lines(path.join(root, "etc/pve/calls"))).toEqual(want.calls);
    expect(lines(path.join(root, "modprobe.calls"))).toEqual(want.modprobe ?? []);
    expect(readFileSync(conf, "utf8")).toBe(readFileSync(path.join(FIXTURES, fixture, "expected/205.conf"), "utf8"));
    if (want.error) {
      expect(r.status).toBe(1);
      expect(r.stderr.trim()).toBe(want.error.replace("KERNEL", os.release()));
      return;
    }
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n").pop()).toBe("status: running");
    const node = `${root}${ctTunNode(205)}`;
    if (!want.tunNode) expect(existsSync(node)).toBe(false);
    else {
      const st = statSync(node);
      expect(st.isCharacterDevice()).toBe(true);
      expect([Math.floor(st.rdev / 256), st.rdev % 256]).toEqual([10, 200]);
      expect({ uid: st.uid, gid: st.gid, mode: `0${(st.mode & 0o777).toString(8)}` }).toEqual(want.tunNode);
    }
    // Again: nothing changes, nothing restarts.
    const before = lines(path.join(root, "etc/pve/calls")).length;
    const again = run(root, scriptFor(l, root));
    expect(again.status, again.stderr).toBe(0);
    expect(lines(path.join(root, "etc/pve/calls")).slice(before).filter((c) => /pct (start|reboot)/.test(c))).toEqual([]);
    expect(readFileSync(conf, "utf8")).toBe(readFileSync(path.join(FIXTURES, fixture, "expected/205.conf"), "utf8"));
  });
});
