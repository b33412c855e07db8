/**
 * Issue 12: each test carries out an attack (or the failure) against the
 * bundled agent under --root and checks that it no longer works. Every one
 * failed on the agent before these fixes (the comment says how).
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Firewall } from "../../contract/bundle.ts";
import { nftRuleset } from "../../contract/nftables.ts";
import { AGENT, agent, buildAgent, bundle, file, read, tempRoot, writeBundle } from "./helpers.ts";
import { NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

beforeAll(() => {
  buildAgent();
});

const STATE = "var/lib/meshfleet";
const isRoot = process.getuid?.() === 0;
const FW: Firewall = {
  family: "inet",
  table: "meshfleet",
  sets: [],
  chains: [{ name: "input", hook: { type: "filter", hook: "input", priority: "filter", policy: "drop" }, rules: [{ iifname: "lo", verdict: "accept" }, { l4: { proto: "tcp", dports: [22] }, verdict: "accept", comment: "ssh" }] }],
};

/** A root with a `headscale` service user (uid 1234) and its state folder, owned by it, as on a coordinator. */
function coordinatorRoot(): string {
  const root = tempRoot();
  fs.mkdirSync(path.join(root, "etc"), { recursive: true });
  fs.writeFileSync(path.join(root, "etc/passwd"), "root:x:0:0::/root:/bin/sh\nheadscale:x:1234:1234::/var/lib/headscale:/usr/sbin/nologin\n");
  fs.writeFileSync(path.join(root, "etc/group"), "root:x:0:\nheadscale:x:1234:\n");
  fs.writeFileSync(path.join(root, "etc/shadow"), "root:$y$SECRET-HASH:19000::::::\n", { mode: 0o600 });
  fs.mkdirSync(path.join(root, "var/lib/headscale"), { recursive: true, mode: 0o750 });
  fs.chownSync(path.join(root, "var/lib/headscale"), 1234, 1234);
  return root;
}
const noiseKey = (content: string) => file("/var/lib/headscale/noise_private.key", content, { owner: "headscale", group: "headscale", mode: "0600", secret: true });

describe.skipIf(skipUnlessCi(!isRoot && NEEDS_ROOT))("item 2: a service user cannot make root write or chown outside its folder", () => {
  it("a symlink planted at the old fixed temp name is not followed (it made /etc/shadow headscale's)", () => {
    const root = coordinatorRoot();
    const shadow = path.join(root, "etc/shadow");
    // What the headscale user can do in its own folder before the next deploy:
    fs.symlinkSync(shadow, path.join(root, "var/lib/headscale/.noise_private.key.meshfleet-tmp"));
    const r = agent(root, ["switch", writeBundle(root, bundle({ files: [noiseKey("privkey:ONE")] }))]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(shadow, "utf8")).toBe("root:$y$SECRET-HASH:19000::::::\n");
    expect(fs.statSync(shadow).uid).toBe(0);
    const key = fs.lstatSync(path.join(root, "var/lib/headscale/noise_private.key"));
    expect(key.isFile() && key.uid === 1234 && (key.mode & 0o777) === 0o600).toBe(true);
    // The planted link is left alone, never written through.
    expect(fs.readlinkSync(path.join(root, "var/lib/headscale/.noise_private.key.meshfleet-tmp"))).toBe(shadow);
  });

  it("a file swapped for a symlink (to a copy with the same content) is drift, and the next switch replaces the link", () => {
    const root = coordinatorRoot();
    const b = bundle({ files: [noiseKey("privkey:ONE")] });
    expect(agent(root, ["switch", writeBundle(root, b)]).code).toBe(0);
    const key = path.join(root, "var/lib/headscale/noise_private.key");
    const copy = path.join(root, "var/lib/headscale/copy");
    fs.copyFileSync(key, copy);
    fs.chownSync(copy, 1234, 1234);
    fs.chmodSync(copy, 0o600);
    fs.rmSync(key);
    fs.symlinkSync(copy, key);
    const v = agent(root, ["verify"]);
    // Before: stat followed the link, so content, mode and owner all matched: "no drift".
    expect(v.code).toBe(1);
    expect(v.stdout).toContain("file /var/lib/headscale/noise_private.key: is a symlink, expected a regular file");
    expect(agent(root, ["switch", writeBundle(root, b)]).code).toBe(0);
    expect(fs.lstatSync(key).isFile()).toBe(true);
    expect(agent(root, ["verify"]).code).toBe(0);
  });

  it("a folder owned by another user is refused (before: root wrote a root-owned file into it)", () => {
    const root = coordinatorRoot();
    expect(agent(root, ["switch", writeBundle(root, bundle({ files: [file("/etc/motd", "one\n")] }))]).code).toBe(0);
    const r = agent(root, ["switch", writeBundle(root, bundle({ files: [file("/etc/motd", "one\n"), file("/var/lib/headscale/cron-job", "* * * * * root sh\n")] }))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("refused to write it: folder");
    expect(r.stderr).toContain("belongs to uid 1234");
    expect(read(root, "var/lib/headscale/cron-job")).toBeNull();
    expect(fs.readlinkSync(path.join(root, STATE, "current"))).toBe("generations/1");
  });

  it("a folder on the way that others may write is refused", () => {
    const root = tempRoot();
    fs.mkdirSync(path.join(root, "srv/open"), { recursive: true });
    fs.chmodSync(path.join(root, "srv/open"), 0o777);
    const r = agent(root, ["switch", writeBundle(root, bundle({ files: [file("/srv/open/app.conf", "x\n")] }))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("is writable by others");
    expect(read(root, "srv/open/app.conf")).toBeNull();
  });
});

describe("item 13: drift the checks missed", () => {
  it("a drop-in that adds User=root to a unit is drift, and a switch of the same bundle removes it (kept as a backup)", () => {
    const root = tempRoot();
    const b = bundle({ units: [{ name: "app.service", content: "[Service]\nUser=app\nExecStart=/usr/bin/app\n", enable: true }] });
    expect(agent(root, ["switch", writeBundle(root, b)]).code).toBe(0);
    const dropin = path.join(root, "etc/systemd/system/app.service.d/override.conf");
    fs.mkdirSync(path.dirname(dropin), { recursive: true });
    fs.writeFileSync(dropin, "[Service]\nUser=root\n");
    const v = agent(root, ["verify"]);
    // Before: verify looked at the unit file only and said "no drift".
    expect(v.code).toBe(1);
    expect(v.stdout).toContain("unit app.service: drop-in /etc/systemd/system/app.service.d/override.conf is not in the bundle");
    const s = agent(root, ["switch", writeBundle(root, b)]);
    expect(s.code, s.stderr).toBe(0);
    expect(fs.existsSync(dropin)).toBe(false);
    expect(read(root, "sim/calls.log")).toMatch(/systemctl daemon-reload\n(.*\n)*systemctl restart app.service\n[^]*$/);
    expect(agent(root, ["verify"]).code).toBe(0);
  });
});

describe("item 1: the table comes back", () => {
  it("a switch of the bundle that is already current re-applies a deleted table (before: `nothing to do`)", () => {
    const root = tempRoot();
    const b = bundle({ firewall: FW });
    expect(agent(root, ["switch", writeBundle(root, b)]).code).toBe(0);
    fs.rmSync(path.join(root, "sim/nft")); // what a reboot does to the table
    const r = agent(root, ["switch", writeBundle(root, b)]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("generation 1 re-applied: drift repaired");
    expect(read(root, "sim/nft")?.trim()).toBe(nftRuleset(FW)!.trim());
  });

  it("boot-firewall loads the current generation's table; a no-op when it is there (before: no such command)", () => {
    const root = tempRoot();
    expect(agent(root, ["switch", writeBundle(root, bundle({ firewall: FW }))]).code).toBe(0);
    fs.rmSync(path.join(root, "sim/nft"));
    const r = agent(root, ["boot-firewall"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("table inet meshfleet of generation 1 loaded (it was missing)");
    expect(read(root, "sim/nft")?.trim()).toBe(nftRuleset(FW)!.trim());
    expect(agent(root, ["boot-firewall"]).stdout).toContain("already loaded");
    expect(agent(root, ["verify"]).code).toBe(0);
  });

  it.skipIf(skipUnlessCi(!isRoot && NEEDS_ROOT))("with the real nft in a throwaway network namespace: a deleted or flushed table is back after boot-firewall and after a switch", () => {
    const ns = `mf-h7-${process.pid}`;
    const root = tempRoot();
    const inNs = (argv: string[], env: Record<string, string> = {}) =>
      spawnSync("ip", ["netns", "exec", ns, ...argv], { encoding: "utf8", env: { ...process.env, ...env }, timeout: 60_000 });
    // The real nft (no stand-ins on PATH); the bundle has no units or tailscale, so nothing else runs.
    const run = (args: string[]) => inNs([process.execPath, AGENT, "--root", root, ...args], { MESHFLEET_GUARD: "detached" });
    const table = () => inNs(["nft", "list", "table", "inet", "meshfleet"]);
    expect(spawnSync("ip", ["netns", "add", ns]).status).toBe(0);
    try {
      const b = bundle({ firewall: FW });
      const s = run(["switch", writeBundle(root, b)]);
      expect(s.status, s.stderr).toBe(0);
      expect(table().stdout).toContain('tcp dport 22 accept comment "ssh"');
      expect(inNs(["nft", "delete", "table", "inet", "meshfleet"]).status).toBe(0);
      expect(table().status).not.toBe(0);
      const boot = run(["boot-firewall"]);
      expect(boot.status, boot.stderr).toBe(0);
      expect(table().stdout).toContain('tcp dport 22 accept comment "ssh"');
      expect(inNs(["nft", "flush", "table", "inet", "meshfleet"]).status).toBe(0);
      expect(table().stdout).not.toContain("dport 22");
      expect(run(["verify"]).status).toBe(1);
      const again = run(["switch", writeBundle(root, b)]);
      expect(again.status, again.stderr).toBe(0);
      expect(again.stdout).toContain("drift repaired");
      expect(table().stdout).toContain('tcp dport 22 accept comment "ssh"');
      expect(run(["verify"]).status).toBe(0);
    } finally {
      spawnSync("ip", ["netns", "del", ns]);
    }
  });
});

describe("item 8: the lock is an flock", () => {
  it("a stale pid in the lock file (a live, unrelated process after a reboot) does not stop boot's recovery", () => {
    const root = tempRoot();
    const one = bundle({ files: [file("/etc/app.conf", "one\n")] });
    const two = bundle({ files: [file("/etc/app.conf", "two\n")] });
    expect(agent(root, ["switch", writeBundle(root, one)]).code).toBe(0);
    expect(agent(root, ["switch", writeBundle(root, two)], { MESHFLEET_TEST_CRASH_AT: "files" }).code).toBe(86);
    fs.writeFileSync(path.join(root, STATE, "lock"), "1"); // pid 1 is alive: the old lock counted it as the owner
    const b = agent(root, ["boot"]);
    // Before: "note: agent pid 1 is changing this host right now", no recovery, two's file stayed.
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toContain("recovery: switch 1 -> 2 was interrupted");
    expect(read(root, "etc/app.conf")).toBe("one\n");
  });

  it("a live holder of the flock is waited for, and a reader says so", async () => {
    const root = tempRoot();
    expect(agent(root, ["switch", writeBundle(root, bundle({ files: [file("/etc/app.conf", "one\n")] }))]).code).toBe(0);
    const lock = path.join(root, STATE, "lock");
    const holder = spawn("flock", ["-x", lock, "sleep", "3"], { stdio: "ignore" });
    try {
      await new Promise((r) => setTimeout(r, 500));
      expect(spawnSync("flock", ["-n", lock, "true"]).status).not.toBe(0);
      expect(agent(root, ["verify"]).stdout).toContain("is changing this host right now");
      const t0 = Date.now();
      const s = agent(root, ["switch", writeBundle(root, bundle({ files: [file("/etc/app.conf", "two\n")] }))]);
      expect(s.code, s.stderr).toBe(0);
      expect(Date.now() - t0).toBeGreaterThan(1000);
    } finally {
      holder.kill("SIGKILL");
    }
    // After the agent exits, the lock is free (nothing to clean up).
    expect(spawnSync("flock", ["-n", lock, "true"]).status).toBe(0);
  }, 30_000);
});

describe("item 5: a rollback by the guard is never a success", () => {
  it("confirm after the guard rolled back fails and names the generation (before: exit 0, `nothing awaits confirmation`)", () => {
    const root = tempRoot();
    expect(agent(root, ["switch", writeBundle(root, bundle({ files: [file("/etc/app.conf", "one\n")] }))]).code).toBe(0);
    const two = bundle({ files: [file("/etc/app.conf", "two\n")] });
    expect(agent(root, ["switch", writeBundle(root, two), "--confirm-timeout", "60"]).code).toBe(0);
    const pending = JSON.parse(fs.readFileSync(path.join(root, STATE, "pending.json"), "utf8"));
    process.kill(pending.guard.pid, "SIGKILL");
    expect(agent(root, ["guard-expire", "2"]).code).toBe(0); // what the guard does at its deadline
    const c = agent(root, ["confirm"]);
    expect(c.code).toBe(1);
    expect(c.stderr).toContain("generation 2 was not kept: not confirmed in time; rolled back to 1; generation 1 is current");
    const h = agent(root, ["confirm", two.hash]);
    expect(h.code).toBe(1);
    expect(h.stderr).toContain(`generation ${two.hash.slice(0, 12)} is not current`);
  });
});

describe("item 12: secrets do not linger", () => {
  it("the incoming bundle is deleted after the switch, also a refused one", () => {
    const root = tempRoot();
    const incoming = path.join(root, STATE, "incoming");
    fs.mkdirSync(incoming, { recursive: true, mode: 0o700 });
    const f = path.join(incoming, "bundle.json");
    fs.writeFileSync(f, JSON.stringify(bundle({ files: [file("/etc/key", "SECRET", { secret: true, mode: "0600" })] })));
    expect(agent(root, ["switch", f]).code).toBe(0);
    expect(fs.existsSync(f)).toBe(false);
    fs.writeFileSync(f, '{"format":2,"secret":"SECRET"}');
    expect(agent(root, ["switch", f]).code).toBe(1);
    expect(fs.existsSync(f)).toBe(false);
    // A bundle from elsewhere is the caller's to keep.
    const outside = writeBundle(root, bundle({ files: [file("/etc/key", "SECRET-2", { secret: true, mode: "0600" })] }));
    expect(agent(root, ["switch", outside]).code).toBe(0);
    expect(fs.existsSync(outside)).toBe(true);
  });

  it("switch keeps N generations; only the current one and the next rollback target keep their secrets", () => {
    const root = tempRoot();
    for (let i = 1; i <= 5; i++) {
      const r = agent(root, ["switch", writeBundle(root, bundle({ files: [file("/etc/key", `SECRET-${i}`, { secret: true, mode: "0600" })] })), "--keep", "3"]);
      expect(r.code, r.stderr).toBe(0);
    }
    const gens = path.join(root, STATE, "generations");
    expect(fs.readdirSync(gens).sort()).toEqual(["3", "4", "5"]);
    const stored = (n: number) => fs.readFileSync(path.join(gens, String(n), "bundle.json"), "utf8");
    expect(stored(5)).toContain("SECRET-5");
    expect(stored(4)).toContain("SECRET-4");
    expect(stored(3)).not.toContain("SECRET-3");
    const listed = JSON.parse(agent(root, ["generations", "--json"]).stdout) as { generation: number; secretsPruned: boolean }[];
    expect(listed.map((g) => [g.generation, g.secretsPruned])).toEqual([[3, true], [4, false], [5, false]]);
    const r3 = agent(root, ["rollback", "3"]);
    expect(r3.code).toBe(1);
    expect(r3.stderr).toContain("generation 3 no longer holds its secrets");
    expect(read(root, "etc/key")).toBe("SECRET-5");
    expect(agent(root, ["rollback"]).code).toBe(0);
    expect(read(root, "etc/key")).toBe("SECRET-4");
  });
});

describe("item 11: paths are normalized", () => {
  it.each([
    ["..", "/etc/../../escaped"],
    ["//", "/etc//dup"],
    ["trailing /", "/etc/dup/"],
    [".", "/etc/./dup"],
    ["relative", "etc/dup"],
  ])("a path with %s is refused before anything is touched", (_what, p) => {
    const root = tempRoot();
    const r = agent(root, ["switch", writeBundle(root, bundle({ files: [file(p, "x\n")] }))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("files[0].path: expected an absolute path without");
    expect(fs.existsSync(path.join(root, STATE))).toBe(false);
    expect(fs.existsSync(path.join(root, "..", "escaped"))).toBe(false);
  });
});

describe("item 4: peers are known by node key, never by the name they report", () => {
  const setFw: Firewall = {
    ...FW,
    sets: [{ name: "peers_0_v4", type: "ipv4_addr", elements: [], members: ["laptop"] }],
    chains: [{ ...FW.chains[0], rules: [...FW.chains[0].rules, { saddr: { family: "ip", set: "peers_0_v4" }, verdict: "accept" }] }],
  };
  const status = (peers: Record<string, { HostName: string; DNSName: string; ip: string }>) =>
    JSON.stringify({
      BackendState: "Running",
      Self: { PublicKey: "nodekey:self", HostName: "nas", DNSName: "nas.tailnet.", TailscaleIPs: ["100.64.0.1"] },
      Peer: Object.fromEntries(Object.entries(peers).map(([k, p]) => [k, { PublicKey: k, HostName: p.HostName, DNSName: p.DNSName, TailscaleIPs: [p.ip] }])),
    });
  const setLine = (root: string) => read(root, "sim/nft-sets") ?? "";

  it("a second node calling itself laptop is not admitted; nor is another key the coordinator lists as laptop", () => {
    const root = tempRoot();
    const laptop = { HostName: "laptop", DNSName: "laptop.tailnet.", ip: "100.64.0.3" };
    fs.writeFileSync(path.join(root, "sim/ts-status.json"), status({ "nodekey:laptop": laptop }));
    expect(agent(root, ["switch", writeBundle(root, bundle({ firewall: setFw }))]).code).toBe(0);
    expect(setLine(root)).toContain("{ 100.64.0.3 }");
    // The impostor reports HostName "laptop"; the coordinator gives it another name (before: admitted by HostName).
    fs.writeFileSync(path.join(root, "sim/ts-status.json"), status({ "nodekey:laptop": laptop, "nodekey:evil": { HostName: "laptop", DNSName: "laptop-1.tailnet.", ip: "100.64.0.66" } }));
    expect(agent(root, ["peers"]).code).toBe(0);
    expect(setLine(root)).toContain("{ 100.64.0.3 }");
    expect(setLine(root)).not.toContain("100.64.0.66");
    // A coordinator that now lists another key under the name laptop (before: admitted by DNSName).
    fs.writeFileSync(path.join(root, "sim/ts-status.json"), status({ "nodekey:evil": { HostName: "laptop", DNSName: "laptop.tailnet.", ip: "100.64.0.66" } }));
    const p = agent(root, ["peers"]);
    expect(p.stdout).toContain("laptop: a node with another key (nodekey:evil...) is listed under this name; not admitted");
    expect(setLine(root)).not.toContain("100.64.0.66");
    // A person who knows it is really the laptop re-pins.
    expect(agent(root, ["peers", "--repin"]).code).toBe(0);
    expect(setLine(root)).toContain("{ 100.64.0.66 }");
  });
});

afterAll(() => undefined);
