/**
 * agent/activate.ts in process: the steps of an activation on a temp root
 * through the real Host and State (programs answered by test/agent/sim.ts):
 * their order, their effects, the journal, the log and every failure's message.
 * The bundled agent's rollback around these failures is agent.test.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Bundle, TailscaleConfig } from "../../contract/bundle.ts";
import { nftRuleset, nftScriptFor } from "../../contract/nftables.ts";
import { activate, AgentError, crashPoint, journalStep, STEPS, type ActivateOptions } from "../../agent/activate.ts";
import type { Host } from "../../agent/host.ts";
import type { Generation, Journal } from "../../agent/state.ts";
import { bundle, file, nftTable, tailscaleConfig } from "./helpers.ts";
import { get, put, sim, type Sim } from "./sim.ts";

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

const table = nftTable;
const FW1 = table([]);
const FW2 = table([{ l4: { proto: "tcp", dports: [8080] }, verdict: "accept" }]);
const UNIT = "[Service]\nExecStart=/usr/bin/app -c /etc/app/app.conf\n";
const KEY = "/etc/meshfleet/tailscale-authkey";
const ts = (over: Partial<TailscaleConfig> = {}): TailscaleConfig => tailscaleConfig({ authKeyFile: KEY, routes: [], ...over });
const TS_UP = `up --auth-key file:${KEY} --login-server=https://hs.example.test --hostname=router --advertise-routes= --advertise-exit-node=false --accept-routes=false --accept-dns=true --ssh=false --snat-subnet-routes=true --netfilter-mode=on --timeout 60s`;

interface Run {
  plan: ReturnType<typeof activate>;
  log: string[];
  journal: Journal;
  gen: Generation;
}

let nextGen = 1;
/** Stage `target` as a new generation and activate it from `from` (the current one, if any). */
function run(s: Sim, target: Bundle, o: { from?: Generation; others?: Generation[]; host?: Host; applied?: TailscaleConfig | null; log?: string[] } = {}): Run {
  const gen = s.state.stage(nextGen++, target);
  const log = o.log ?? [];
  const journal: Journal = { op: "switch", from: o.from?.n ?? 0, to: gen.n, startedAt: "2026-01-01T00:00:00.000Z", done: ["stage"] };
  const others = o.others ?? (o.from ? [o.from] : []);
  const opts: ActivateOptions = {
    host: o.host ?? s.host,
    state: s.state,
    log: (l) => log.push(l),
    journal,
    target: gen,
    plan: { target, others: others.map((g) => ({ bundle: g.bundle, nftLive: s.state.load(g.n).nftLive })), appliedTailscale: o.applied ?? null },
  };
  const plan = activate(opts);
  return { plan, log, journal, gen };
}

/** Activation's error (it must be an AgentError), with the journal as far as it got. */
function failing(s: Sim, target: Bundle, o: Parameters<typeof run>[2] = {}): { error: AgentError; journal: Journal; log: string[] } {
  const log: string[] = [];
  const gen = s.state.stage(nextGen++, target);
  const journal: Journal = { op: "switch", from: o.from?.n ?? 0, to: gen.n, startedAt: "2026-01-01T00:00:00.000Z", done: ["stage"] };
  const others = o.others ?? (o.from ? [o.from] : []);
  try {
    activate({
      host: o.host ?? s.host,
      state: s.state,
      log: (l) => log.push(l),
      journal,
      target: gen,
      plan: { target, others: others.map((g) => ({ bundle: g.bundle, nftLive: null })), appliedTailscale: o.applied ?? null },
    });
  } catch (e) {
    expect(e).toBeInstanceOf(AgentError);
    return { error: e as AgentError, journal, log };
  }
  throw new Error("activation did not fail");
}

const mode = (s: Sim, p: string) => fs.statSync(path.join(s.root, p)).mode & 0o7777;

describe("a full activation", () => {
  it("files, sysctl, nftables, units, tailscale, current: each carried out, journaled and logged in that order", () => {
    const s = sim();
    s.backendState = "NeedsLogin";
    const target = bundle({
      files: [file("/etc/app/app.conf", "v=1\n"), file(KEY, "hskey", { secret: true, mode: "0600" })],
      sysctl: { "net.ipv4.ip_forward": "1" },
      firewall: FW2,
      units: [{ name: "app.service", content: UNIT, enable: true }],
      tailscale: ts(),
    });
    const { log, journal, gen, plan } = run(s, target);
    expect(plan.nft.op).toBe("replace");
    expect(get(s, "/etc/app/app.conf")).toBe("v=1\n");
    expect(mode(s, "/etc/app/app.conf")).toBe(0o644);
    expect(get(s, KEY)).toBe("hskey");
    expect(mode(s, KEY)).toBe(0o600);
    expect(get(s, "/etc/sysctl.d/90-meshfleet.conf")).toContain("net.ipv4.ip_forward = 1");
    expect(get(s, "/proc/sys/net/ipv4/ip_forward")).toBe("1\n");
    expect(get(s, "/etc/systemd/system/app.service")).toBe(UNIT);
    expect(s.nftLoaded).toBe(nftScriptFor(nftRuleset(FW2)));
    expect(get(s, "/var/lib/meshfleet/nft-apply.nft")).toBe(nftScriptFor(nftRuleset(FW2)));
    expect(mode(s, "/var/lib/meshfleet/nft-apply.nft")).toBe(0o600);
    expect(s.state.load(gen.n).nftLive).toBe(s.nft);
    expect(s.state.currentNumber()).toBe(gen.n);
    expect(journal.done).toEqual(["stage", "files", "sysctl", "nftables", "units", "tailscale", "current"]);
    expect(s.state.journal()).toEqual(journal);
    expect(s.calls).toEqual([
      "nft -s list table inet meshfleet",
      "tailscale status --json",
      `nft -f ${s.root}/var/lib/meshfleet/nft-apply.nft`,
      "nft -s list table inet meshfleet",
      "systemctl daemon-reload",
      "systemctl enable app.service",
      "systemctl restart app.service",
      `tailscale ${TS_UP}`,
    ]);
    expect(log).toEqual([
      "  file write /etc/app/app.conf (new)",
      `  file write ${KEY} (new)`,
      "  sysctl net.ipv4.ip_forward = 1",
      "  nftables: replace table inet meshfleet (table inet meshfleet is missing)",
      "  unit app.service restarted (unit file changed)",
      "  tailscale up (not logged in (BackendState NeedsLogin))",
    ]);
  });

  it("each file is written once, in its own step: files, then the sysctl file, then unit files", () => {
    const s = sim();
    put(s, "/etc/app/app.conf", "old\n", 0o600);
    const written: string[] = [];
    const host: Host = { ...s.host, writeFileAtomic: (p, ...rest) => (p.startsWith("/var/lib/meshfleet") || written.push(p), s.host.writeFileAtomic(p, ...rest)) };
    const { log } = run(s, bundle({ files: [file("/etc/app/app.conf", "v=1\n")], sysctl: { "net.a": "1" }, units: [{ name: "app.service", content: UNIT, enable: true }] }), { host });
    expect(written).toEqual(["/etc/app/app.conf", "/etc/sysctl.d/90-meshfleet.conf", "/etc/systemd/system/app.service"]);
    expect(log[0]).toBe("  file write /etc/app/app.conf (content changed, mode 0600 -> 0644)");
  });

  it("activating the same bundle again changes nothing and says so for each step", () => {
    const s = sim();
    const target = bundle({ files: [file("/etc/app/app.conf", "v=1\n")], sysctl: { "net.ipv4.ip_forward": "1" }, firewall: FW1, units: [{ name: "app.service", content: UNIT, enable: true }], tailscale: ts() });
    const first = run(s, target);
    s.calls.length = 0;
    const again = run(s, target, { from: first.gen, applied: ts() });
    expect(again.log).toEqual(["  files unchanged", "  sysctl unchanged", "  nftables unchanged", "  units unchanged", "  tailscale unchanged"]);
    expect(s.calls).toEqual(["nft -s list table inet meshfleet", "tailscale status --json", "nft -s list table inet meshfleet"]);
    expect(s.state.load(again.gen.n).nftLive).toBe(nftRuleset(FW1));
  });

  it("the firewall turned off removes the table and records no listing", () => {
    const s = sim();
    const first = run(s, bundle({ firewall: FW1 }));
    expect(s.state.load(first.gen.n).nftLive).not.toBeNull();
    const off = run(s, bundle(), { from: first.gen });
    expect(off.log).toContain("  nftables: remove table inet meshfleet (firewall is off in this generation)");
    expect(s.nftLoaded).toBe(nftScriptFor(null));
    expect(s.nft).toBeNull();
    expect(s.state.load(off.gen.n).nftLive).toBeNull();
  });

  it("the peer sets of a new table are filled before the probes; no sets, no refresh", () => {
    const s = sim();
    const fw = table([{ saddr: { family: "ip", set: "peers_v4" }, verdict: "accept" }], [{ name: "peers_v4", type: "ipv4_addr", elements: ["192.0.2.1"], members: ["laptop"] }]);
    const r = run(s, bundle({ firewall: fw }));
    expect(r.log.at(-1)).toBe("  peers: 1 set(s) refreshed; 0/1 allowed hosts online (none)");
    expect(s.peerScript).toBe("flush set inet meshfleet peers_v4\nadd element inet meshfleet peers_v4 { 192.0.2.1 }\n");
    const r2 = run(s, bundle({ firewall: FW1 }), { from: r.gen });
    expect(r2.log.filter((l) => l.includes("peers"))).toEqual([]);
  });

  it("best-effort commands run after activation; a failure is a warning, not an error", () => {
    const s = sim();
    const seen: [string[], number | undefined][] = [];
    s.onRun = (argv, opts) => seen.push([argv, opts?.timeoutMs]);
    s.runResults.set("modprobe", { code: 1, stderr: "modprobe: FATAL: Module wireguard not found\n" });
    const r = run(s, bundle({ bestEffort: [{ argv: ["sysctl", "--system"], why: "apply the sysctl.d files" }, { argv: ["modprobe", "wireguard"], why: "load the module" }] }));
    expect(seen).toEqual([
      [["sysctl", "--system"], 30_000],
      [["modprobe", "wireguard"], 30_000],
    ]);
    expect(r.log.at(-1)).toBe("  warning: best-effort `modprobe wireguard` exited with code 1: modprobe: FATAL: Module wireguard not found (load the module)");
    expect(r.log.filter((l) => l.includes("warning"))).toHaveLength(1);
    expect(s.state.currentNumber()).toBe(r.gen.n);
  });
});

describe("files", () => {
  it("sysusers.d files first, then the users are made once (in the agent's root), then the files they own", () => {
    const s = sim();
    put(s, "/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    put(s, "/etc/group", "root:x:0:\n");
    const order: string[] = [];
    const timeouts: (number | undefined)[] = [];
    s.onRun = (argv, opts) => {
      // The sysusers.d file is on disk before systemd-sysusers reads it.
      order.push(`${argv.join(" ")}${get(s, "/etc/sysusers.d/app.conf") === null ? " (before its file)" : ""}`);
      timeouts.push(opts?.timeoutMs);
      if (argv[0] === "systemd-sysusers") {
        fs.appendFileSync(path.join(s.root, "etc/passwd"), "app:x:1234:1234::/:/usr/sbin/nologin\n");
        fs.appendFileSync(path.join(s.root, "etc/group"), "app:x:1234:\n");
      }
    };
    const r = run(
      s,
      bundle({
        files: [
          file("/etc/app/key", "K", { owner: "app", group: "app", mode: "0600", secret: true }),
          file("/etc/sysusers.d/app.conf", "u app - - -\n"),
          file("/etc/app/app.conf", "v=1\n", { group: "app", mode: "0640" }),
        ],
      }),
    );
    expect(order).toEqual([`systemd-sysusers --root ${s.root}/`]);
    expect(timeouts).toEqual([30_000]);
    expect(r.log.slice(0, 3)).toEqual(["  file write /etc/sysusers.d/app.conf (new)", "  file write /etc/app/key (new)", "  file write /etc/app/app.conf (new)"]);
    const st = fs.statSync(path.join(s.root, "etc/app/key"));
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1234, 1234, 0o600]);
    const st2 = fs.statSync(path.join(s.root, "etc/app/app.conf"));
    expect([st2.uid, st2.gid, st2.mode & 0o7777]).toEqual([0, 1234, 0o640]);
  });

  it("on the host itself (root /) systemd-sysusers gets no --root", () => {
    const s = sim();
    const argvs: string[][] = [];
    s.onRun = (argv) => argvs.push(argv);
    // The host maps only "/" to itself, to see the argv; every file still lands under the temp root.
    const host: Host = { ...s.host, p: (h) => (h === "/" ? "/" : s.host.p(h)) };
    run(s, bundle({ files: [file("/etc/sysusers.d/x.conf", "u x - - -\n"), file("/etc/x.conf", "x\n")] }), { host });
    expect(argvs).toEqual([["systemd-sysusers"]]);
  });

  it("no systemd-sysusers without a sysusers.d file to write; removing one does not count", () => {
    const s = sim();
    s.onRun = (argv) => {
      throw new Error(`unexpected ${argv.join(" ")}`);
    };
    const first = run(s, bundle({ files: [file("/etc/sysusers.d/old.conf", "u old - - -\n")] }), { host: { ...s.host, run: () => ({ code: 0, stdout: "", stderr: "", timedOut: false }) } });
    const r = run(s, bundle({ files: [file("/etc/x.conf", "x\n")] }), { from: first.gen });
    expect(r.log).toEqual(["  file write /etc/x.conf (new)", "  file remove /etc/sysusers.d/old.conf (no longer managed)", "  sysctl unchanged", "  nftables unchanged", "  units unchanged", "  tailscale unchanged"]);
    expect(get(s, "/etc/sysusers.d/old.conf")).toBeNull();
  });

  it("systemd-sysusers failing fails the files step before any owned file is written", () => {
    const s = sim();
    s.runResults.set("systemd-sysusers", { code: 1, stderr: "Failed to parse /etc/sysusers.d/app.conf\n" });
    const f = failing(s, bundle({ files: [file("/etc/sysusers.d/app.conf", "u app\n"), file("/etc/app/app.conf", "v\n")] }));
    expect(f.error.message).toBe(`files: \`systemd-sysusers --root ${s.root}/\` exited with code 1: Failed to parse /etc/sysusers.d/app.conf`);
    expect(f.journal.done).toEqual(["stage"]);
    expect(get(s, "/etc/app/app.conf")).toBeNull();
  });

  it("a file whose user or group does not exist is refused, naming both and the fix", () => {
    for (const [owner, group] of [
      ["nobody-here", "root"],
      ["root", "nogroup-here"],
    ]) {
      const s = sim();
      const f = failing(s, bundle({ files: [file("/etc/a.conf", "a\n", { owner, group })] }));
      expect(f.error.message).toBe(`files: /etc/a.conf belongs to ${owner}:${group}, which does not exist on this host (declare it in /etc/sysusers.d)`);
      expect(get(s, "/etc/a.conf")).toBeNull();
    }
  });

  it("a folder others can write fails the step (an AgentError naming the file); other write errors pass through", () => {
    const s = sim();
    fs.mkdirSync(path.join(s.root, "etc/app"), { recursive: true, mode: 0o777 });
    fs.chmodSync(path.join(s.root, "etc/app"), 0o777);
    const f = failing(s, bundle({ files: [file("/etc/app/a.conf", "a\n")] }));
    expect(f.error.message).toMatch(/^files: \/etc\/app\/a\.conf: refused to write it: folder .*\/etc\/app is writable by others \(mode 777\)/);
    const s2 = sim();
    const host: Host = {
      ...s2.host,
      writeFileAtomic: () => {
        throw new Error("ENOSPC: no space left on device");
      },
    };
    const gen = s2.state.stage(1, bundle({ files: [file("/etc/a.conf", "a\n")] }));
    const j: Journal = { op: "switch", from: 0, to: 1, startedAt: "", done: [] };
    let thrown: unknown;
    try {
      activate({ host, state: s2.state, log: () => {}, journal: j, target: gen, plan: { target: gen.bundle, others: [], appliedTailscale: null } });
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect(thrown).not.toBeInstanceOf(AgentError);
    expect((thrown as Error).message).toBe("ENOSPC: no space left on device");
  });

  it("what it takes over is backed up before it is overwritten or removed, and restored when released", () => {
    const s = sim();
    put(s, "/etc/app/app.conf", "ORIGINAL\n", 0o640);
    put(s, "/etc/systemd/system/app.service.d/override.conf", "[Service]\nUser=root\n");
    const units = [{ name: "app.service", content: UNIT, enable: true }];
    const first = run(s, bundle({ files: [file("/etc/app/app.conf", "v=1\n")], units }));
    expect(get(s, "/etc/app/app.conf")).toBe("v=1\n");
    expect(get(s, "/etc/systemd/system/app.service.d/override.conf")).toBeNull();
    expect(s.state.hasBackup("/etc/app/app.conf")).toBe(true);
    expect(s.state.hasBackup("/etc/systemd/system/app.service.d/override.conf")).toBe(true);
    expect(first.log).toContain("  file remove /etc/systemd/system/app.service.d/override.conf (drop-in for app.service not in the bundle)");
    const second = run(s, bundle({ files: [file("/etc/app/app.conf", "v=2\n"), file("/etc/new.conf", "n\n")], units }), { from: first.gen });
    // A file rewritten over what an earlier generation wrote is not backed up (it was never the host's).
    const rewritten = run(s, bundle({ files: [file("/etc/app/app.conf", "v=2\n"), file("/etc/new.conf", "n2\n")], units }), { from: second.gen });
    expect(rewritten.log).toContain("  file write /etc/new.conf (content changed)");
    expect(s.state.hasBackup("/etc/new.conf")).toBe(false);
    const released = run(s, bundle({ files: [file("/etc/new.conf", "n\n")], units }), { from: rewritten.gen });
    expect(released.log).toContain("  file restore /etc/app/app.conf (no longer managed; pre-existing file restored)");
    expect(get(s, "/etc/app/app.conf")).toBe("ORIGINAL\n");
    expect(mode(s, "/etc/app/app.conf")).toBe(0o640);
    // The restored drop-in is not among the released files: it stays backed up until the unit goes.
    const gone = run(s, bundle(), { from: released.gen });
    expect(gone.log).toContain("  file remove /etc/new.conf (no longer managed)");
    expect(get(s, "/etc/new.conf")).toBeNull();
    // What the agent itself wrote is removed without a backup.
    expect(s.state.hasBackup("/etc/new.conf")).toBe(false);
  });
});

describe("sysctl", () => {
  it("backs up live values of keys it takes over (once), not of keys the previous generation set or that were unset", () => {
    const s = sim();
    put(s, "/proc/sys/net/a", "0\n");
    put(s, "/proc/sys/net/b", "7\n");
    s.state.writeSysctlBackups({ "net.b": "5" });
    const first = run(s, bundle({ sysctl: { "net.a": "1", "net.b": "1", "net.c": "1" } }));
    expect(s.state.sysctlBackups()).toEqual({ "net.a": "0", "net.b": "5" });
    expect(get(s, "/proc/sys/net/c")).toBe("1\n");
    expect(get(s, "/etc/sysctl.d/90-meshfleet.conf")).toBe("# Written by the meshfleet agent; changes here are reverted on the next switch.\nnet.a = 1\nnet.b = 1\nnet.c = 1\n");
    expect(first.log).toEqual(["  files unchanged", "  sysctl net.a = 1", "  sysctl net.b = 1", "  sysctl net.c = 1", "  nftables unchanged", "  units unchanged", "  tailscale unchanged"]);
    // The previous generation set net.a: its live value now is ours, not the host's.
    put(s, "/proc/sys/net/a", "3\n");
    const write = vi.spyOn(s.state, "writeSysctlBackups");
    run(s, bundle({ sysctl: { "net.a": "2", "net.b": "1", "net.c": "1" } }), { from: first.gen });
    expect(write).not.toHaveBeenCalled();
    expect(s.state.sysctlBackups()).toEqual({ "net.a": "0", "net.b": "5" });
  });

  it("keys dropped go back to their backups, beside keys set", () => {
    const s = sim();
    put(s, "/proc/sys/net/a", "0\n");
    const first = run(s, bundle({ sysctl: { "net.a": "1" } }));
    const r = run(s, bundle({ sysctl: { "net.c": "1" } }), { from: first.gen });
    expect(get(s, "/proc/sys/net/a")).toBe("0\n");
    expect(r.log).toContain("  sysctl net.c = 1");
    expect(r.log).toContain("  sysctl net.a restored to 0");
    expect(r.log).not.toContain("  sysctl unchanged");
  });

  it("a key the kernel refuses fails the step, naming the key, value and file", () => {
    const s = sim();
    s.sysctlRejects.add("net.ipv4.ip_forward");
    const f = failing(s, bundle({ sysctl: { "net.ipv4.ip_forward": "1" } }));
    expect(f.error.message).toBe("sysctl net.ipv4.ip_forward = 1 (from /etc/sysctl.d/90-meshfleet.conf): EACCES: permission denied, open '/proc/sys/net/ipv4/ip_forward'");
    expect(f.journal.done).toEqual(["stage", "files"]);
  });
});

describe("nftables", () => {
  it("a ruleset nft refuses fails the step with nft's message", () => {
    const s = sim();
    s.nftError = "/var/lib/meshfleet/nft-apply.nft:5:3-9: Error: syntax error, unexpected junk\n";
    const f = failing(s, bundle({ firewall: FW2 }));
    expect(f.error.message).toBe("nftables: `nft -f /var/lib/meshfleet/nft-apply.nft` exited with code 1: /var/lib/meshfleet/nft-apply.nft:5:3-9: Error: syntax error, unexpected junk");
    expect(f.journal.done).toEqual(["stage", "files", "sysctl"]);
  });
});

describe("units", () => {
  it("units dropped are stopped and disabled even if that fails; written, reloaded, enabled, restarted in that order", () => {
    const s = sim();
    const u = (name: string, content = "[Service]\nExecStart=/bin/x\n") => ({ name, content, enable: true });
    const first = run(s, bundle({ units: [u("old.service"), u("app.service")], files: [file("/etc/app/app.conf", "v=1\n")] }));
    s.failVerbs.add("stop");
    s.failVerbs.add("disable");
    s.calls.length = 0;
    const r = run(s, bundle({ units: [u("app.service", UNIT), u("new.service")], files: [file("/etc/app/app.conf", "v=1\n")] }), { from: first.gen });
    expect(s.calls.filter((c) => c.startsWith("systemctl"))).toEqual([
      "systemctl stop old.service",
      "systemctl disable old.service",
      "systemctl daemon-reload",
      "systemctl enable app.service",
      "systemctl enable new.service",
      "systemctl restart app.service",
      "systemctl restart new.service",
    ]);
    expect(get(s, "/etc/systemd/system/old.service")).toBeNull();
    expect(get(s, "/etc/systemd/system/new.service")).toBe("[Service]\nExecStart=/bin/x\n");
    expect(r.log.filter((l) => l.includes("unit"))).toEqual([
      "  unit old.service stopped and disabled",
      "  unit app.service restarted (unit file changed)",
      "  unit new.service restarted (unit file changed)",
    ]);
    // Only a file it reads changed: restarted for its files, no reload.
    s.calls.length = 0;
    const r2 = run(s, bundle({ units: [u("app.service", UNIT), u("new.service")], files: [file("/etc/app/app.conf", "v=2\n")] }), { from: r.gen });
    expect(s.calls.filter((c) => c.startsWith("systemctl"))).toEqual(["systemctl enable app.service", "systemctl restart app.service"]);
    expect(r2.log).toContain("  unit app.service restarted (its files changed)");
    // One unit file written (not enabled, so not restarted) and one unit removed: changes, not "unchanged".
    const r3 = run(s, bundle({ units: [u("app.service", UNIT), { name: "t.timer", content: "[Timer]\n", enable: false }], files: [file("/etc/app/app.conf", "v=2\n")] }), { from: r2.gen });
    expect(r3.plan.units).toMatchObject({ write: ["t.timer"], remove: ["new.service"], restart: [] });
    expect(r3.log).not.toContain("  units unchanged");
  });

  it.each([
    ["daemon-reload", "systemctl daemon-reload"],
    ["enable", "systemctl enable app.service"],
    ["restart", "systemctl restart app.service"],
  ])("a failing systemctl %s fails the step with its message", (verb, argv) => {
    const s = sim();
    s.failVerbs.add(verb);
    const f = failing(s, bundle({ units: [{ name: "app.service", content: UNIT, enable: true }] }));
    const unit = verb === "daemon-reload" ? "undefined" : "app.service";
    expect(f.error.message).toBe(`units: \`${argv}\` exited with code 1: Job for ${unit} failed. | See "systemctl status ${unit}" for details.`);
    expect(f.journal.done).toEqual(["stage", "files", "sysctl", "nftables"]);
  });
});

describe("tailscale", () => {
  it("runs the planned argv with 90 s, and a failure fails the step with tailscale's message", () => {
    const s = sim();
    s.backendState = "NeedsLogin";
    let timeout: number | undefined;
    const host: Host = { ...s.host, tailscale: (args, t) => (args[0] === "up" && (timeout = t), s.host.tailscale(args, t)) };
    run(s, bundle({ files: [file(KEY, "k", { secret: true, mode: "0600" })], tailscale: ts() }), { host });
    expect(timeout).toBe(90_000);
    s.tailscaleCode = 1;
    const f = failing(s, bundle({ files: [file(KEY, "k", { secret: true, mode: "0600" })], tailscale: ts() }));
    expect(f.error.message).toBe(`tailscale: \`tailscale ${TS_UP}\` exited with code 1: backend error: invalid key: unable to validate API key`);
    expect(f.journal.done).toEqual(["stage", "files", "sysctl", "nftables", "units"]);
  });
});

describe("journal and the crash hook", () => {
  it("journalStep records a step durably", () => {
    const s = sim();
    const j: Journal = { op: "rollback", from: 2, to: 1, startedAt: "t", done: [] };
    journalStep(s.state, j, "files");
    journalStep(s.state, j, "sysctl");
    expect(j.done).toEqual(["files", "sysctl"]);
    expect(s.state.journal()).toEqual(j);
    expect(STEPS).toEqual(["stage", "files", "sysctl", "nftables", "units", "tailscale", "current", "probes"]);
  });

  it("MESHFLEET_TEST_CRASH_AT exits (86) right after that step's effects, before the journal has it", () => {
    const s = sim();
    vi.stubEnv("MESHFLEET_TEST_CRASH_AT", "sysctl");
    const exit = vi.spyOn(process, "exit").mockImplementation(((code: number) => {
      throw new Error(`exit ${code}`);
    }) as never);
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    const gen = s.state.stage(1, bundle({ sysctl: { "net.a": "1" } }));
    const j: Journal = { op: "switch", from: 0, to: 1, startedAt: "", done: ["stage"] };
    expect(() => activate({ host: s.host, state: s.state, log: () => {}, journal: j, target: gen, plan: { target: gen.bundle, others: [], appliedTailscale: null } })).toThrow("exit 86");
    expect(exit).toHaveBeenCalledWith(86);
    expect(err).toHaveBeenCalledWith("test hook: exiting abruptly after step sysctl\n");
    expect(get(s, "/proc/sys/net/a")).toBe("1\n");
    expect(s.state.journal()?.done).toEqual(["stage", "files"]);
    vi.stubEnv("MESHFLEET_TEST_CRASH_AT", "files");
    expect(() => crashPoint("sysctl")).not.toThrow();
  });
});
