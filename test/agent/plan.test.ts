/**
 * agent/plan.ts in process: what activation would change, read from a host
 * (a temp root through the real Host; programs answered by test/agent/sim.ts).
 * The bundled agent's end-to-end behaviour is agent.test.ts; these pin each
 * decision and message of the plan so that a changed one fails here.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Bundle } from "../../contract/bundle.ts";
import { sha256 } from "../../contract/bundle.ts";
import { nftRuleset } from "../../contract/nftables.ts";
import { fromStored } from "../../agent/legacy.ts";
import { describePlan, lineDiff, makePlan, ownerIds, planIsEmpty, tailscaleBackendState, type Plan, type PlanInput } from "../../agent/plan.ts";
import { bundle, file, nftTable, tailscaleConfig } from "./helpers.ts";
import { put, sim, type Sim } from "./sim.ts";

afterEach(() => {
  vi.restoreAllMocks();
});

const table = nftTable;
const FW1 = table([]);
const FW2 = table([{ l4: { proto: "tcp", dports: [8080] }, verdict: "accept" }]);
const UNIT = "[Service]\nExecStart=/usr/bin/app -c /etc/app/app.conf\n";

const plan = (s: Sim, target: Bundle, others: Bundle[] = [], extra: Partial<PlanInput> = {}): Plan =>
  makePlan(s.host, s.state, { target, others: others.map((b) => ({ bundle: b, nftLive: null })), appliedTailscale: null, ...extra });

const ts = tailscaleConfig;

/** A host with an `app` user and group (uid/gid 1234) in its own /etc/passwd and /etc/group. */
function withAppUser(s: Sim): void {
  put(s, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\napp:x:1234:1234::/nonexistent:/usr/sbin/nologin\n");
  put(s, "/etc/group", "root:x:0:\napp:x:1234:\n");
}

describe("files", () => {
  it("a file that is not there is written, reason new, nothing to take over", () => {
    const s = sim();
    const f = file("/etc/app/app.conf", "v=1\n");
    const p = plan(s, bundle({ files: [f] }));
    expect(p.files).toEqual([
      {
        path: "/etc/app/app.conf",
        kind: "file",
        op: "write",
        reasons: ["new"],
        secret: false,
        takeOver: false,
        desired: { path: f.path, kind: "file", content: "v=1\n", sha256: sha256("v=1\n"), mode: "0644", owner: "root", group: "root", secret: false },
      },
    ]);
  });

  it("a file that is already as wanted is left alone", () => {
    const s = sim();
    put(s, "/etc/app/app.conf", "v=1\n");
    const p = plan(s, bundle({ files: [file("/etc/app/app.conf", "v=1\n")] }));
    expect(p.files).toEqual([]);
    expect(planIsEmpty(p)).toBe(true);
  });

  it("a link, a folder or a special file where a file should be is named, and taken over (backed up first)", () => {
    const s = sim();
    fs.mkdirSync(path.join(s.root, "etc"), { recursive: true });
    fs.symlinkSync("/etc/passwd", path.join(s.root, "etc/link.conf"));
    fs.mkdirSync(path.join(s.root, "etc/dir.conf"));
    execFileSync("mkfifo", [path.join(s.root, "etc/fifo.conf")]);
    const p = plan(s, bundle({ files: [file("/etc/link.conf", "x"), file("/etc/dir.conf", "x"), file("/etc/fifo.conf", "x")] }));
    expect(p.files.map((a) => [a.path, a.op, a.reasons, a.takeOver])).toEqual([
      ["/etc/link.conf", "write", ["a symlink where a file should be"], true],
      ["/etc/dir.conf", "write", ["a folder where a file should be"], true],
      ["/etc/fifo.conf", "write", ["a special file where a file should be"], true],
    ]);
  });

  it("changed content, secret content and mode are each a reason", () => {
    const s = sim();
    put(s, "/etc/a.conf", "old\n");
    put(s, "/etc/key", "OLD-SECRET", 0o600);
    put(s, "/etc/b.conf", "same\n", 0o640);
    put(s, "/etc/c.conf", "old\n", 0o600);
    const p = plan(
      s,
      bundle({
        files: [file("/etc/a.conf", "new\n"), file("/etc/key", "NEW-SECRET", { secret: true, mode: "0600" }), file("/etc/b.conf", "same\n"), file("/etc/c.conf", "new\n", { mode: "0755" })],
      }),
    );
    expect(p.files.map((a) => [a.path, a.reasons, a.secret])).toEqual([
      ["/etc/a.conf", ["content changed"], false],
      ["/etc/key", ["content changed (secret)"], true],
      ["/etc/b.conf", ["mode 0640 -> 0644"], false],
      ["/etc/c.conf", ["content changed", "mode 0600 -> 0755"], false],
    ]);
  });

  it("a regular file the host cannot read counts as changed", () => {
    const s = sim();
    put(s, "/etc/a.conf", "v=1\n");
    const host = { ...s.host, readFile: () => null };
    const p = makePlan(host, s.state, { target: bundle({ files: [file("/etc/a.conf", "v=1\n")] }), others: [], appliedTailscale: null });
    expect(p.files.map((a) => a.reasons)).toEqual([["content changed"]]);
  });

  it("as root, a file's owner and group are compared (uid and gid each on its own)", () => {
    const s = sim();
    withAppUser(s);
    put(s, "/etc/app/a.conf", "a\n");
    put(s, "/etc/app/b.conf", "b\n");
    put(s, "/etc/app/c.conf", "c\n");
    put(s, "/etc/app/d.conf", "d\n");
    fs.chownSync(path.join(s.root, "etc/app/b.conf"), 1234, 0);
    fs.chownSync(path.join(s.root, "etc/app/c.conf"), 1234, 1234);
    fs.chownSync(path.join(s.root, "etc/app/d.conf"), 0, 1234);
    const own = { owner: "app", group: "app" };
    const p = plan(s, bundle({ files: ["a", "b", "c", "d"].map((n) => file(`/etc/app/${n}.conf`, `${n}\n`, own)) }));
    expect(p.files.map((a) => [a.path, a.reasons])).toEqual([
      ["/etc/app/a.conf", ["owner 0:0 -> app:app"]],
      ["/etc/app/b.conf", ["owner 1234:0 -> app:app"]],
      ["/etc/app/d.conf", ["owner 0:1234 -> app:app"]],
    ]);
    expect(ownerIds(s.host, { owner: "app", group: "root" })).toEqual({ uid: 1234, gid: 0 });
    expect(ownerIds(s.host, { owner: "nobody-here", group: "app" })).toEqual({ uid: null, gid: 1234 });
  });

  it("not as root, owners are not compared (the agent could not change them)", () => {
    const s = sim();
    withAppUser(s);
    put(s, "/etc/app/a.conf", "a\n");
    vi.spyOn(process as { getuid(): number }, "getuid").mockReturnValue(1000);
    const p = plan(s, bundle({ files: [file("/etc/app/a.conf", "a\n", { owner: "app", group: "app" })] }));
    expect(p.files).toEqual([]);
  });

  it("takes over (backs up first) only what the previous generation did not own and has no backup yet", () => {
    const s = sim();
    for (const f of ["/etc/mine.conf", "/etc/theirs.conf", "/etc/backed.conf", "/etc/recovered.conf"]) put(s, f, "live\n");
    s.state.backupFile("/etc/backed.conf");
    const want = ["/etc/mine.conf", "/etc/theirs.conf", "/etc/backed.conf", "/etc/recovered.conf"].map((p) => file(p, "new\n"));
    const from = bundle({ files: [file("/etc/mine.conf", "live\n")] });
    // The interrupted generation (others[1]) owned recovered.conf, but only `from` (others[0]) is ours for sure.
    const interrupted = bundle({ files: [file("/etc/recovered.conf", "live\n")] });
    const p = plan(s, bundle({ files: want }), [from, interrupted]);
    expect(p.files.map((a) => [a.path, a.takeOver])).toEqual([
      ["/etc/mine.conf", false],
      ["/etc/theirs.conf", true],
      ["/etc/backed.conf", false],
      ["/etc/recovered.conf", true],
    ]);
  });

  it("files no longer in the bundle: removed if there, restored if they were taken over, skipped if gone", () => {
    const s = sim();
    put(s, "/etc/old.conf", "old\n");
    put(s, "/etc/taken.conf", "ours\n");
    put(s, "/etc/old-key", "S", 0o600);
    s.state.backupFile("/etc/taken.conf");
    const prev = bundle({
      files: [file("/etc/old.conf", "old\n"), file("/etc/taken.conf", "ours\n"), file("/etc/gone.conf", "g\n"), file("/etc/keep.conf", "k\n")],
      units: [{ name: "old.service", content: "[Service]\n", enable: true }],
    });
    // The interrupted generation's files are released too.
    const interrupted = bundle({ files: [file("/etc/old-key", "S", { secret: true, mode: "0600" })] });
    put(s, "/etc/keep.conf", "k\n");
    put(s, "/etc/systemd/system/old.service", "[Service]\n");
    const p = plan(s, bundle({ files: [file("/etc/keep.conf", "k\n")] }), [prev, interrupted]);
    expect(p.files.map(({ desired, ...a }) => (expect(desired).toBeUndefined(), a))).toEqual([
      { path: "/etc/old.conf", kind: "file", op: "remove", reasons: ["no longer managed"], secret: false, takeOver: false },
      { path: "/etc/taken.conf", kind: "file", op: "restore", reasons: ["no longer managed; pre-existing file restored"], secret: false, takeOver: false },
      { path: "/etc/systemd/system/old.service", kind: "unit", op: "remove", reasons: ["no longer managed"], secret: false, takeOver: false },
      { path: "/etc/old-key", kind: "file", op: "remove", reasons: ["no longer managed"], secret: true, takeOver: false },
    ]);
  });
});

describe("sysctl", () => {
  it("keys whose live value differs (whitespace aside) or is unset, in key order", () => {
    const s = sim();
    put(s, "/proc/sys/net/ipv4/ip_forward", "0\n");
    put(s, "/proc/sys/net/ipv4/ip_local_port_range", "32768\t60999\n");
    put(s, "/proc/sys/net/core/somaxconn", "4096\n");
    const p = plan(
      s,
      bundle({ sysctl: { "net.ipv6.conf.all.forwarding": "1", "net.ipv4.ip_local_port_range": "32768 60999", "net.core.somaxconn": "4096", "net.ipv4.ip_forward": "1" } }),
    );
    expect(p.sysctl).toEqual([
      { key: "net.ipv4.ip_forward", from: "0", to: "1" },
      { key: "net.ipv6.conf.all.forwarding", from: null, to: "1" },
    ]);
  });

  it("keys a generation drops go back to their backed-up value, where the live one differs", () => {
    const s = sim();
    put(s, "/proc/sys/net/b", "1\n");
    put(s, "/proc/sys/net/a", "1\n");
    put(s, "/proc/sys/net/same", "0  1\n");
    s.state.writeSysctlBackups({ "net.b": "0", "net.a": "0", "net.same": "0 1", "net.unset": "5", "net.kept": "0" });
    const prev = bundle({ sysctl: { "net.b": "1", "net.a": "1", "net.same": "1", "net.nobackup": "1", "net.kept": "1", "net.unset": "1" } });
    const p = plan(s, bundle({ sysctl: { "net.kept": "1" } }), [prev]);
    expect(p.sysctlRestore).toEqual([
      { key: "net.a", to: "0" },
      { key: "net.b", to: "0" },
      { key: "net.unset", to: "5" },
    ]);
  });
});

describe("nftables", () => {
  const live1 = nftRuleset(FW1)!;
  it("the firewall off and no table: nothing; a table left: removed", () => {
    const s = sim();
    expect(plan(s, bundle()).nft).toEqual({ op: "none", why: "unchanged" });
    s.nft = live1;
    expect(plan(s, bundle()).nft).toEqual({ op: "remove", why: "firewall is off in this generation" });
  });

  it("a missing table, a first ruleset or a changed one is replaced", () => {
    const s = sim();
    expect(plan(s, bundle({ firewall: FW1 })).nft).toEqual({ op: "replace", why: "table inet meshfleet is missing" });
    s.nft = live1;
    expect(plan(s, bundle({ firewall: FW1 })).nft).toEqual({ op: "replace", why: "ruleset changed" });
    expect(plan(s, bundle({ firewall: FW2 }), [bundle({ firewall: FW1 })]).nft).toEqual({ op: "replace", why: "ruleset changed" });
  });

  it("from a generation an older agent stored, the change says so", () => {
    const s = sim();
    s.nft = live1;
    const v1 = fromStored({
      format: 1,
      host: "testhost",
      hash: "a".repeat(64),
      files: [],
      sysctl: {},
      nftables: "table inet meshfleet {\n}\n",
      units: [],
      tailscale: null,
      probes: [],
      metrics: { enable: false, textfileDir: "" },
      bestEffort: [],
    });
    expect(plan(s, bundle({ firewall: FW1 }), [v1]).nft).toEqual({ op: "replace", why: "ruleset changed (from a generation an older agent wrote)" });
  });

  it("the same ruleset: unchanged unless the live table drifted (peer set elements aside) or recovery forces it", () => {
    const sets = [{ name: "peers_v4", type: "ipv4_addr" as const, elements: [], members: ["laptop"] }];
    const fw = table([{ saddr: { family: "ip", set: "peers_v4" }, verdict: "accept" }], sets);
    const listed = "table inet meshfleet {\n\tset peers_v4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 100.64.0.1 }\n\t}\n}\n";
    const s = sim();
    const prev = bundle({ firewall: fw });
    const input = (nftLive: string | null, extra: Partial<PlanInput> = {}): PlanInput => ({ target: bundle({ firewall: fw }), others: [{ bundle: prev, nftLive }], appliedTailscale: null, ...extra });
    s.nft = listed;
    expect(makePlan(s.host, s.state, input(listed)).nft).toEqual({ op: "none", why: "unchanged" });
    s.nft = listed.replace("100.64.0.1", "100.64.0.2");
    expect(makePlan(s.host, s.state, input(listed)).nft).toEqual({ op: "none", why: "unchanged" });
    s.nft = listed.replace("flags interval\n", "flags interval\n\t\tcounter\n");
    expect(makePlan(s.host, s.state, input(listed)).nft).toEqual({ op: "replace", why: "live table drifted" });
    // No listing recorded for the previous generation: nothing to compare with.
    expect(makePlan(s.host, s.state, input(null)).nft).toEqual({ op: "none", why: "unchanged" });
    s.nft = listed;
    expect(makePlan(s.host, s.state, input(listed, { forceNft: true })).nft).toEqual({ op: "replace", why: "reapplied: an interrupted run may have changed it" });
    expect(makePlan(s.host, s.state, input(listed, { forceNft: false })).nft).toEqual({ op: "none", why: "unchanged" });
  });
});

describe("units", () => {
  it("a new or changed unit file is written, daemon-reloaded, enabled and restarted; one not enabled only written", () => {
    const s = sim();
    put(s, "/etc/systemd/system/b.service", "[Service]\nExecStart=/bin/old\n");
    const p = plan(
      s,
      bundle({
        units: [
          { name: "a.service", content: "[Service]\nExecStart=/bin/a\n", enable: true },
          { name: "b.service", content: "[Service]\nExecStart=/bin/b\n", enable: true },
          { name: "c.timer", content: "[Timer]\nOnCalendar=daily\n", enable: false },
        ],
      }),
    );
    expect(p.units).toEqual({ write: ["a.service", "b.service", "c.timer"], remove: [], restart: ["a.service", "b.service"], enable: ["a.service", "b.service"], reload: true });
    expect(p.files.map((a) => [a.path, a.kind, a.reasons])).toEqual([
      ["/etc/systemd/system/a.service", "unit", ["new"]],
      ["/etc/systemd/system/b.service", "unit", ["content changed"]],
      ["/etc/systemd/system/c.timer", "unit", ["new"]],
    ]);
  });

  it("a unit restarts when a file it names or lists as a trigger changed, not for other files; no reload", () => {
    const s = sim();
    const units = [
      { name: "app.service", content: UNIT, enable: true },
      { name: "trig.service", content: "[Service]\nExecStart=/bin/t\n", enable: true, restartTriggers: ["/etc/t.conf"] },
      { name: "other.service", content: "[Service]\nExecStart=/bin/o\n", enable: true },
      { name: "off.service", content: "[Service]\nExecStart=/bin/x -c /etc/app/app.conf\n", enable: false },
    ];
    for (const u of units) put(s, `/etc/systemd/system/${u.name}`, u.content);
    put(s, "/etc/app/app.conf", "v=1\n");
    put(s, "/etc/t.conf", "t=1\n");
    put(s, "/etc/unrelated.conf", "u=1\n");
    const b = (app: string, t: string, u: string) => bundle({ files: [file("/etc/app/app.conf", app), file("/etc/t.conf", t), file("/etc/unrelated.conf", u)], units });
    expect(plan(s, b("v=1\n", "t=1\n", "u=2\n")).units).toEqual({ write: [], remove: [], restart: [], enable: [], reload: false });
    expect(plan(s, b("v=2\n", "t=2\n", "u=1\n")).units).toEqual({ write: [], remove: [], restart: ["app.service", "trig.service"], enable: ["app.service", "trig.service"], reload: false });
  });

  it("a trigger naming another unit's file restarts the unit when that unit file changes", () => {
    const s = sim();
    const worker = (v: string) => ({ name: "worker.service", content: `[Service]\nExecStart=/bin/w ${v}\n`, enable: true });
    const watcher = { name: "watcher.service", content: "[Service]\nExecStart=/bin/watch\n", enable: true, restartTriggers: ["/etc/systemd/system/worker.service"] };
    for (const u of [worker("1"), watcher]) put(s, `/etc/systemd/system/${u.name}`, u.content);
    expect(plan(s, bundle({ units: [worker("1"), watcher] })).units.restart).toEqual([]);
    expect(plan(s, bundle({ units: [worker("2"), watcher] })).units).toEqual({ write: ["worker.service"], remove: [], restart: ["worker.service", "watcher.service"], enable: ["worker.service", "watcher.service"], reload: true });
  });

  it("units the generation drops are removed once each, sorted, with a reload", () => {
    const s = sim();
    const u = (name: string) => ({ name, content: "[Service]\n", enable: true });
    put(s, "/etc/systemd/system/keep.service", "[Service]\n");
    put(s, "/etc/systemd/system/z.service", "[Service]\n");
    const p = plan(s, bundle({ units: [u("keep.service")] }), [bundle({ units: [u("z.service"), u("keep.service"), u("a.service")] }), bundle({ units: [u("z.service")] })]);
    // Nothing written (z.service's file is removed, not written): the removal alone asks for the reload.
    expect(p.units).toEqual({ write: [], remove: ["a.service", "z.service"], restart: [], enable: [], reload: true });
    expect(p.files.map((a) => [a.path, a.op])).toEqual([["/etc/systemd/system/z.service", "remove"]]);
  });

  it("with repair, a unit the host stopped or disabled is restarted and enabled; without, systemctl is not asked", () => {
    const s = sim();
    const units = ["up.service", "stopped.service", "disabled.service"].map((name) => ({ name, content: "[Service]\nExecStart=/bin/x\n", enable: true }));
    for (const u of units) put(s, `/etc/systemd/system/${u.name}`, u.content);
    s.active = new Set(["up.service", "disabled.service"]);
    s.enabled = new Set(["up.service", "stopped.service"]);
    const b = bundle({ units });
    expect(plan(s, b).units.restart).toEqual([]);
    expect(s.calls.filter((c) => c.startsWith("systemctl"))).toEqual([]);
    const p = plan(s, b, [], { repair: true });
    expect(p.units).toEqual({ write: [], remove: [], restart: ["stopped.service", "disabled.service"], enable: ["stopped.service", "disabled.service"], reload: false });
    expect(s.calls.filter((c) => c.startsWith("systemctl"))).toEqual([
      "systemctl is-active up.service",
      "systemctl is-enabled up.service",
      "systemctl is-active stopped.service",
      "systemctl is-active disabled.service",
      "systemctl is-enabled disabled.service",
    ]);
  });

  it("drop-ins the bundle does not carry are removed (backed up first) and their unit restarted after a reload", () => {
    const s = sim();
    const units = [{ name: "app.service", content: UNIT, enable: true }];
    put(s, "/etc/systemd/system/app.service", UNIT);
    put(s, "/etc/systemd/system/app.service.d/override.conf", "[Service]\nUser=root\n");
    put(s, "/run/systemd/system/app.service.d/zz.conf", "[Service]\nExecStartPre=/bin/sh\n");
    put(s, "/etc/systemd/system/app.service.d/notes.txt", "not a drop-in\n");
    put(s, "/etc/systemd/system/app.service.d/ours.conf", "[Service]\nNice=5\n");
    s.state.backupFile("/run/systemd/system/app.service.d/zz.conf");
    const p = plan(s, bundle({ units, files: [file("/etc/systemd/system/app.service.d/ours.conf", "[Service]\nNice=5\n")] }));
    expect(p.files).toEqual([
      { path: "/etc/systemd/system/app.service.d/override.conf", kind: "file", op: "remove", reasons: ["drop-in for app.service not in the bundle"], secret: false, takeOver: true },
      { path: "/run/systemd/system/app.service.d/zz.conf", kind: "file", op: "remove", reasons: ["drop-in for app.service not in the bundle"], secret: false, takeOver: false },
    ]);
    expect(p.units).toEqual({ write: [], remove: [], restart: ["app.service"], enable: ["app.service"], reload: true });
  });
});

describe("tailscale", () => {
  it("not managed: nothing, and tailscale is not asked", () => {
    const s = sim();
    expect(plan(s, bundle()).tailscale).toEqual({ op: "none", argv: [], why: "tailscale is not managed by this generation" });
    expect(s.calls.filter((c) => c.startsWith("tailscale"))).toEqual([]);
  });

  it("managed: decided from the backend state `tailscale status --json` reports", () => {
    const s = sim();
    const b = bundle({ tailscale: ts() });
    expect(plan(s, b, [], { appliedTailscale: ts() }).tailscale.op).toBe("none");
    expect(s.calls).toContain("tailscale status --json");
    s.backendState = "NeedsLogin";
    expect(plan(s, b, [], { appliedTailscale: ts() }).tailscale.why).toBe("not logged in (BackendState NeedsLogin)");
  });

  it("the backend state: BackendState from the JSON (printed with exit 1 when logged out), else empty", () => {
    const s = sim();
    s.backendState = "NeedsLogin";
    expect(tailscaleBackendState(s.host)).toBe("NeedsLogin");
    s.backendState = null;
    expect(tailscaleBackendState(s.host)).toBe("");
    const noField = { ...s.host, tailscale: () => ({ code: 0, stdout: "{}", stderr: "", timedOut: false }) };
    expect(tailscaleBackendState(noField)).toBe("");
    let asked: [string[], number | undefined] | undefined;
    const spy = { ...s.host, tailscale: (args: string[], t?: number) => ((asked = [args, t]), { code: 0, stdout: '{"BackendState":"Running"}', stderr: "", timedOut: false }) };
    expect(tailscaleBackendState(spy)).toBe("Running");
    expect(asked).toEqual([["status", "--json"], 15_000]);
  });
});

describe("planIsEmpty", () => {
  const empty = (): Plan => ({
    files: [],
    sysctl: [],
    sysctlRestore: [],
    nft: { op: "none", why: "unchanged" },
    units: { write: [], remove: [], restart: [], enable: [], reload: false },
    tailscale: { op: "none", argv: [], why: "unchanged" },
  });
  it("empty only when every part is", () => {
    expect(planIsEmpty(empty())).toBe(true);
    const spoil: ((p: Plan) => void)[] = [
      (p) => p.files.push({ path: "/x", kind: "file", op: "remove", reasons: [], secret: false, takeOver: false }),
      (p) => p.sysctl.push({ key: "a", from: null, to: "1" }),
      (p) => p.sysctlRestore.push({ key: "a", to: "1" }),
      (p) => (p.nft = { op: "replace", why: "x" }),
      (p) => p.units.write.push("a.service"),
      (p) => p.units.remove.push("a.service"),
      (p) => p.units.restart.push("a.service"),
      (p) => (p.tailscale = { op: "set", argv: ["set"], why: "x" }),
    ];
    for (const f of spoil) {
      const p = empty();
      f(p);
      expect(planIsEmpty(p)).toBe(false);
    }
    // Two kinds of unit change together are not empty either (counts add, never cancel).
    for (const [a, b] of [[4, 6], [4, 5], [5, 6]]) {
      const p = empty();
      spoil[a](p);
      spoil[b](p);
      expect(planIsEmpty(p)).toBe(false);
    }
  });
});

describe("describePlan", () => {
  it("one line per change, a diff for changed non-secret content only, never a secret", () => {
    const s = sim();
    put(s, "/etc/app/app.conf", "a\nb\nc\n");
    put(s, "/etc/key", "OLD-SECRET", 0o600);
    put(s, "/etc/mode.conf", "m\n", 0o600);
    put(s, "/etc/both.conf", "x\ny\n", 0o600);
    put(s, "/etc/old.conf", "old\n");
    put(s, "/proc/sys/net/ipv4/ip_forward", "0\n");
    put(s, "/proc/sys/net/dropped", "1\n");
    s.state.writeSysctlBackups({ "net.dropped": "0" });
    s.nft = nftRuleset(FW1);
    s.backendState = "NeedsLogin";
    const prev = bundle({ files: [file("/etc/old.conf", "old\n")], sysctl: { "net.dropped": "1" }, units: [{ name: "gone.service", content: "[Service]\n", enable: true }], firewall: FW1 });
    const target = bundle({
      files: [
        file("/etc/app/app.conf", "a\nB\nc\n"),
        file("/etc/key", "NEW-SECRET", { secret: true, mode: "0600" }),
        file("/etc/mode.conf", "m\n"),
        file("/etc/both.conf", "x\nY\n"),
        file("/etc/new.conf", "n\n"),
        file("/etc/meshfleet/tailscale-authkey", "K", { secret: true, mode: "0600" }),
      ],
      sysctl: { "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1" },
      units: [{ name: "app.service", content: UNIT, enable: true }],
      firewall: FW2,
      tailscale: ts(),
    });
    const p = plan(s, target, [prev]);
    const lines = describePlan(s.host, p);
    expect(lines).toEqual([
      "file: write /etc/app/app.conf (content changed)",
      "      a",
      "    - b",
      "    + B",
      "      c",
      "      ...",
      "file: write /etc/key (content changed (secret))",
      "file: write /etc/mode.conf (mode 0600 -> 0644)",
      "file: write /etc/both.conf (content changed, mode 0600 -> 0644)",
      "      x",
      "    - y",
      "    + Y",
      "      ",
      "file: write /etc/new.conf (new)",
      "file: write /etc/meshfleet/tailscale-authkey (new)",
      "sysctl: write /etc/sysctl.d/90-meshfleet.conf (new)",
      "unit: write /etc/systemd/system/app.service (new)",
      "file: remove /etc/old.conf (no longer managed)",
      "sysctl: net.ipv4.ip_forward 0 -> 1",
      "sysctl: net.ipv6.conf.all.forwarding (unset) -> 1",
      "sysctl: net.dropped restored to 0",
      "nftables: replace table inet meshfleet (ruleset changed)",
      "unit: stop, disable and remove gone.service",
      "unit: write app.service",
      "unit: systemctl daemon-reload",
      "unit: enable and restart app.service",
      `tailscale: tailscale up --auth-key file:/etc/meshfleet/tailscale-authkey --login-server=https://hs.example.test --hostname=router --advertise-routes=192.168.8.0/24 --advertise-exit-node=false --accept-routes=false --accept-dns=true --ssh=false --snat-subnet-routes=true --netfilter-mode=on --timeout 60s (not logged in (BackendState NeedsLogin))`,
    ]);
    expect(lines.join("\n")).not.toMatch(/SECRET/);
  });

  it("a file that is no longer there when the diff is printed diffs against nothing", () => {
    const s = sim();
    const p = plan(s, bundle({ files: [file("/etc/a.conf", "x\n")] }));
    p.files[0].reasons = ["content changed"];
    expect(describePlan(s.host, p)).toEqual(["file: write /etc/a.conf (content changed)", "    + x", "      "]);
  });

  it("an empty plan prints nothing", () => {
    const s = sim();
    expect(describePlan(s.host, plan(s, bundle()))).toEqual([]);
  });
});

describe("lineDiff", () => {
  it("changed lines with one line of context, elisions between far apart changes", () => {
    const a = ["1", "2", "3", "4", "5", "6", "7", "8", "9"].join("\n");
    const b = ["1", "2", "X", "4", "5", "6", "7", "Y", "9"].join("\n");
    expect(lineDiff(a, b)).toEqual(["  2", "- 3", "+ X", "  4", "  ...", "  7", "- 8", "+ Y", "  9"]);
    expect(lineDiff(a, b, 0)).toEqual(["- 3", "+ X", "  ...", "- 8", "+ Y", "  ..."]);
    expect(lineDiff(a, a)).toEqual([]);
  });

  it("insertions and deletions keep the longest common subsequence", () => {
    expect(lineDiff("a\nb\nc", "a\nc")).toEqual(["  a", "- b", "  c"]);
    expect(lineDiff("a\nc", "a\nb\nc")).toEqual(["  a", "+ b", "  c"]);
    expect(lineDiff("x\na\nb", "a\nb\ny", 3)).toEqual(["- x", "  a", "  b", "+ y"]);
    // Lines left over on either side after the other runs out.
    expect(lineDiff("a\nb\nc", "a")).toEqual(["  a", "- b", "- c"]);
    expect(lineDiff("a", "a\nb\nc")).toEqual(["  a", "+ b", "+ c"]);
    // A moved line: the three kept in order beat the one moved.
    expect(lineDiff("a\nb\nc\nd", "b\nc\nd\na", 5)).toEqual(["- a", "  b", "  c", "  d", "+ a"]);
    expect(lineDiff("x\na\ny\nb\nz", "a\nb", 5)).toEqual(["- x", "  a", "- y", "  b", "- z"]);
    // The table holds the longest common run from each pair of positions (the larger of the two ways
    // on): a line kept is shown kept, never removed and added again, and a tie removes first.
    expect(lineDiff("c", "a\nb\nc\nc", 5)).toEqual(["+ a", "+ b", "  c", "+ c"]);
    expect(lineDiff("a\nc\na", "b\nc\na", 5)).toEqual(["- a", "+ b", "  c", "  a"]);
    expect(lineDiff("a\nb\nc\nd\ne", "e\na\nb\nX\nd", 5)).toEqual(["+ e", "  a", "  b", "- c", "+ X", "  d", "- e"]);
    // Ties go to the deletion first.
    expect(lineDiff("a", "b")).toEqual(["- a", "+ b"]);
    expect(lineDiff("p\na\nq", "p\nb\nq")).toEqual(["  p", "- a", "+ b", "  q"]);
  });

  it("files too big to diff (more than 4,000,000 line pairs) are summarised", () => {
    const lines = (n: number, tag = "") => Array.from({ length: n }, (_, i) => `${tag}${i}`).join("\n");
    expect(lineDiff(lines(2001), lines(2000))).toEqual(["(2001 -> 2000 lines)"]);
    const d = lineDiff(lines(2000), lines(2000).replace(/^7$/m, "seven"));
    expect(d).toEqual(["  6", "- 7", "+ seven", "  8", "  ..."]);
  });
});
