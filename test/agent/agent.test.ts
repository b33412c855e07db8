/**
 * The bundled agent (dist/meshfleet-agent.mjs) run as a process against a
 * temp root. nft/systemctl/tailscale are stand-ins on PATH (test/agent/fakebin)
 * that keep state under the root; real effects are proved in real.test.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { nftRuleset } from "../../contract/nftables.ts";
import { agent, buildAgent, bundle, file, read, nftTable, snapshot, tailscaleConfig, tempRoot, writeBundle } from "./helpers.ts";

beforeAll(() => {
  buildAgent();
});

const table = nftTable;
const FW1 = table([]);
const FW2 = table([{ l4: { proto: "tcp", dports: [8080] }, verdict: "accept" }]);
/** What the agent loads for them: the contract's text. */
const NFT1 = nftRuleset(FW1)!;
const NFT2 = nftRuleset(FW2)!;
const UNIT = "[Service]\nExecStart=/usr/bin/app -c /etc/app/app.conf\n";

const gen1 = () =>
  bundle({
    files: [file("/etc/app/app.conf", "v=1\n"), file("/etc/app/key", "SECRET-ONE", { secret: true, mode: "0600" }), file("/etc/other.conf", "other\n")],
    sysctl: { "net.ipv4.ip_forward": "1" },
    firewall: FW1,
    units: [{ name: "app.service", content: UNIT, enable: true }],
  });
const gen2 = () =>
  bundle({
    files: [file("/etc/app/app.conf", "v=2\n"), file("/etc/app/key", "SECRET-TWO", { secret: true, mode: "0600" })],
    sysctl: { "net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1" },
    firewall: FW2,
    units: [{ name: "app.service", content: UNIT, enable: true }, { name: "extra.service", content: "[Service]\nExecStart=/bin/true\n", enable: true }],
  });

function expectGen1Live(root: string) {
  expect(read(root, "etc/app/app.conf")).toBe("v=1\n");
  expect(read(root, "etc/app/key")).toBe("SECRET-ONE");
  expect(read(root, "etc/other.conf")).toBe("other\n");
  expect(read(root, "etc/systemd/system/extra.service")).toBeNull();
  expect(read(root, "sim/nft")?.trim()).toBe(NFT1.trim());
  expect(read(root, "etc/sysctl.d/90-meshfleet.conf")).not.toContain("ipv6");
  expect(fs.readlinkSync(path.join(root, "var/lib/meshfleet/current"))).toBe("generations/1");
}

const calls = (root: string) => read(root, "sim/calls.log") ?? "";

describe("bundle refusal", () => {
  it.each([
    ["bad file hash", (b: ReturnType<typeof gen1>) => ((b.files[0].content = "tampered\n"), b), /sha256 does not match its content/],
    ["bad bundle hash", (b: ReturnType<typeof gen1>) => ((b.sysctl["kernel.x"] = "1"), b), /bundle hash does not match/],
    ["bad format", (b: ReturnType<typeof gen1>) => ({ ...b, format: 1 }), /format 1 is not supported \(this agent reads format 3\)/],
    ["unknown field", (b: ReturnType<typeof gen1>) => ({ ...b, nftables: NFT1 }), /unknown field "nftables"/],
    ["a path with ..", (b: ReturnType<typeof gen1>) => bundle({ ...b, files: [file("/etc/app/../../root/.ssh/authorized_keys", "x")] }), /files\[0\]\.path: expected an absolute path without "\.\.", "\." or empty \("\/\/"\) segments, found "\/etc\/app\/\.\.\//],
    ["a path with //", (b: ReturnType<typeof gen1>) => bundle({ ...b, files: [file("/etc//app.conf", "x")] }), /files\[0\]\.path: .*found "\/etc\/\/app\.conf"/],
    ["a relative path", (b: ReturnType<typeof gen1>) => bundle({ ...b, files: [file("etc/app.conf", "x")] }), /files\[0\]\.path: .*found "etc\/app\.conf"/],
  ])("%s: one clear line, exit 1, nothing changed", (_name, spoil, msg) => {
    const root = tempRoot();
    expect(agent(root, ["switch", writeBundle(root, gen1())]).code).toBe(0);
    const before = snapshot(root);
    const r = agent(root, ["switch", writeBundle(root, spoil(gen1()) as never, "bad.json")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(msg);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/refused/);
    expect(snapshot(root)).toEqual(before);
  });

  it("not JSON", () => {
    const root = tempRoot();
    const p = path.join(root, "..", `${path.basename(root)}-x.json`);
    fs.writeFileSync(p, "{nope");
    const r = agent(root, ["switch", p]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/refused: not valid JSON/);
    expect(fs.existsSync(path.join(root, "var/lib/meshfleet/generations"))).toBe(false);
  });
});

describe("generations", () => {
  it("numbers generations, no-ops an unchanged bundle, rolls back and continues numbering", () => {
    const root = tempRoot();
    const b1 = writeBundle(root, gen1());
    expect(agent(root, ["switch", b1]).stdout).toMatch(/generation 1 is active/);
    const before = calls(root);
    const again = agent(root, ["switch", b1]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("generation 1 is already current; nothing to do");
    // It looked (verify's reads), and changed nothing.
    expect(calls(root).slice(before.length)).not.toMatch(/nft -f|systemctl (restart|enable|disable|stop|daemon-reload)|tailscale (up|set|login)/);
    expect(agent(root, ["switch", writeBundle(root, gen2())]).stdout).toMatch(/generation 2 is active/);
    expect(read(root, "etc/other.conf")).toBeNull();
    expect(read(root, "proc/sys/net/ipv6/conf/all/forwarding")).toBe("1\n");
    expect(agent(root, ["verify"]).code).toBe(0);
    expect(agent(root, ["rollback"]).code).toBe(0);
    expectGen1Live(root);
    expect(calls(root)).toMatch(/systemctl stop extra.service\nsystemctl disable extra.service/);
    expect(agent(root, ["verify"]).code).toBe(0);
    const b3 = bundle({ ...gen1(), files: [file("/etc/app/app.conf", "v=3\n")] } as never);
    expect(agent(root, ["switch", writeBundle(root, b3)]).stdout).toMatch(/generation 3 is active/);
    const gens = JSON.parse(agent(root, ["generations", "--json"]).stdout);
    expect(gens.map((g: { generation: number; current: boolean }) => [g.generation, g.current])).toEqual([
      [1, false],
      [2, false],
      [3, true],
    ]);
  });

  it("restarts only units whose unit file or files changed", () => {
    const root = tempRoot();
    agent(root, ["switch", writeBundle(root, gen1())]);
    const b = gen1();
    b.files[2] = file("/etc/other.conf", "changed\n");
    const r = agent(root, ["switch", writeBundle(root, bundle({ ...b } as never))]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("units unchanged");
    const b2 = gen1();
    b2.files[0] = file("/etc/app/app.conf", "v=9\n");
    const before = calls(root).length;
    expect(agent(root, ["switch", writeBundle(root, bundle({ ...b2 } as never))]).stdout).toMatch(/app.service restarted \(its files changed\)/);
    expect(calls(root).slice(before)).toMatch(/systemctl restart app.service/);
  });

  it("rollback restores a pre-existing file it had overwritten, and sysctls it had changed", () => {
    const root = tempRoot();
    fs.mkdirSync(path.join(root, "etc/app"), { recursive: true });
    fs.writeFileSync(path.join(root, "etc/app/app.conf"), "ORIGINAL\n", { mode: 0o640 });
    fs.mkdirSync(path.join(root, "proc/sys/net/ipv4"), { recursive: true });
    fs.writeFileSync(path.join(root, "proc/sys/net/ipv4/ip_forward"), "0\n");
    expect(agent(root, ["switch", writeBundle(root, gen1())]).code).toBe(0);
    expect(read(root, "etc/app/app.conf")).toBe("v=1\n");
    expect(read(root, "proc/sys/net/ipv4/ip_forward")).toBe("1\n");
    // a generation that no longer manages the file gives the original back
    const b2 = bundle({ files: [file("/etc/app/key", "K", { mode: "0600" })] });
    expect(agent(root, ["switch", writeBundle(root, b2)]).code).toBe(0);
    expect(read(root, "etc/app/app.conf")).toBe("ORIGINAL\n");
    expect(fs.statSync(path.join(root, "etc/app/app.conf")).mode & 0o777).toBe(0o640);
    expect(read(root, "proc/sys/net/ipv4/ip_forward")).toBe("0\n");
    expect(read(root, "sim/nft")).toBeNull();
    // back to 1 takes it over again; rollback 0 releases everything
    expect(agent(root, ["rollback", "1"]).code).toBe(0);
    expect(read(root, "etc/app/app.conf")).toBe("v=1\n");
    expect(agent(root, ["verify"]).code).toBe(0);
    expect(agent(root, ["rollback", "0"]).code).toBe(0);
    expect(read(root, "etc/app/app.conf")).toBe("ORIGINAL\n");
    expect(read(root, "etc/app/key")).toBeNull();
    expect(read(root, "etc/systemd/system/app.service")).toBeNull();
    expect(read(root, "etc/sysctl.d/90-meshfleet.conf")).toBeNull();
    expect(read(root, "proc/sys/net/ipv4/ip_forward")).toBe("0\n");
  });

  it("gc keeps the newest N and the current one", () => {
    const root = tempRoot();
    for (let i = 1; i <= 5; i++) agent(root, ["switch", writeBundle(root, bundle({ files: [file("/etc/n", `${i}\n`)] }))]);
    expect(agent(root, ["rollback", "2"]).code).toBe(0);
    const r = agent(root, ["gc", "--keep", "2"]);
    expect(r.code).toBe(0);
    expect(fs.readdirSync(path.join(root, "var/lib/meshfleet/generations")).sort()).toEqual(["2", "4", "5"]);
    expect(agent(root, ["verify"]).code).toBe(0);
  });
});

describe("repair and confirm by hash (the provider's update and create)", () => {
  it("a switch of the current bundle re-applies it where the host drifted (--repair is accepted and changes nothing)", () => {
    const root = tempRoot();
    const b = gen1();
    expect(agent(root, ["switch", writeBundle(root, b)]).code).toBe(0);
    fs.writeFileSync(path.join(root, "etc/app/app.conf"), "edited by hand\n");
    const plain = agent(root, ["switch", writeBundle(root, b)]);
    expect(plain.stdout).toContain("generation 1 re-applied: drift repaired");
    expect(read(root, "etc/app/app.conf")).toBe("v=1\n");
    fs.writeFileSync(path.join(root, "etc/app/app.conf"), "edited by hand\n");
    const r = agent(root, ["switch", writeBundle(root, b), "--repair"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("generation 1 re-applied: drift repaired");
    expect(read(root, "etc/app/app.conf")).toBe("v=1\n");
    expect(agent(root, ["verify"]).code).toBe(0);
    // A unit stopped by hand is drift too: --repair starts it again.
    fs.writeFileSync(path.join(root, "sim/active"), "");
    expect(agent(root, ["verify"]).code).toBe(1);
    const u = agent(root, ["switch", writeBundle(root, b), "--repair"]);
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toContain("unit app.service restarted");
    expect(agent(root, ["verify"]).code).toBe(0);
  });

  it("confirm HASH fails unless that generation is current", () => {
    const root = tempRoot();
    const b = gen1();
    expect(agent(root, ["switch", writeBundle(root, b)]).code).toBe(0);
    const wrong = agent(root, ["confirm", "f".repeat(64)]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`generation ffffffffffff is not current (generation 1 ${b.hash.slice(0, 12)} is)`);
    expect(agent(root, ["confirm", b.hash]).code).toBe(0);
  });

  it("confirm HASH --status confirms, then prints status and verify from the same process (after the mark); a refused confirm prints neither", () => {
    const root = tempRoot();
    const b = gen1();
    expect(agent(root, ["switch", writeBundle(root, b), "--confirm-timeout", "300"]).code).toBe(0);
    // Drift made while the confirm is pending: the report after the confirm must show it.
    fs.chmodSync(path.join(root, "etc/app/app.conf"), 0o666);
    const wrong = agent(root, ["confirm", "f".repeat(64), "--status"]);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).not.toContain("@@meshfleet-status@@");
    const c = agent(root, ["confirm", b.hash, "--status"]);
    expect(c.code, c.stderr).toBe(0);
    const [before, after] = c.stdout.split("@@meshfleet-status@@\n");
    expect(before).toMatch(/generation 1 \(bundle [0-9a-f]{12}\) confirmed/);
    const doc = JSON.parse(after!);
    // Read after the confirm: nothing awaits confirmation any more.
    expect(doc).toMatchObject({ generation: 1, hash: b.hash, pendingConfirm: null });
    expect(doc.verify.drift.map((d: { kind: string; subject: string; detail: string }) => `${d.kind} ${d.subject}: ${d.detail}`)).toEqual([
      "file /etc/app/app.conf: mode is 0666, expected 0644",
    ]);
    // The same document status --json --verify prints.
    const sv = JSON.parse(agent(root, ["status", "--json", "--verify"]).stdout);
    expect(doc.verify).toEqual(sv.verify);
    expect(Object.keys(doc)).toEqual(Object.keys(sv));
    // Nothing pending now: the guard was stopped by the confirm.
    expect(JSON.parse(agent(root, ["status", "--json"]).stdout).pendingConfirm).toBeNull();
  });
});

describe("verify and diff", () => {
  it("reports drift in files, sysctl, nft and units, exits 1; diff never prints secrets", () => {
    const root = tempRoot();
    agent(root, ["switch", writeBundle(root, gen1())]);
    fs.writeFileSync(path.join(root, "etc/app/key"), "EDITED-SECRET");
    fs.chmodSync(path.join(root, "etc/app/app.conf"), 0o666);
    fs.writeFileSync(path.join(root, "proc/sys/net/ipv4/ip_forward"), "0\n");
    fs.writeFileSync(path.join(root, "sim/nft"), NFT2);
    fs.writeFileSync(path.join(root, "sim/active"), "");
    const r = agent(root, ["verify", "--json"]);
    expect(r.code).toBe(1);
    const kinds = JSON.parse(r.stdout).drift.map((d: { kind: string; subject: string; detail: string }) => `${d.kind} ${d.subject}: ${d.detail}`);
    expect(kinds).toEqual([
      "file /etc/app/app.conf: mode is 0666, expected 0644",
      "file /etc/app/key: content changed (secret)",
      "sysctl net.ipv4.ip_forward: is 0, expected 1",
      "nftables table inet meshfleet: differs from the ruleset this generation applied",
      "unit app.service: is inactive, expected active",
    ]);
    // status --verify gives the same verdict in the one process `meshfleet status` runs per host; status itself exits 0.
    const sv = agent(root, ["status", "--json", "--verify"]);
    expect(sv.code).toBe(0);
    const both = JSON.parse(sv.stdout);
    expect(both.generation).toBe(1);
    expect(both.verify).toEqual(JSON.parse(r.stdout));
    expect(JSON.parse(agent(root, ["status", "--json"]).stdout).verify).toBeUndefined();
    const d = agent(root, ["diff", writeBundle(root, gen2())]);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain("file: write /etc/app/key (content changed (secret))");
    expect(d.stdout).toContain("- v=1");
    expect(d.stdout).toContain("+ v=2");
    expect(d.stdout).not.toMatch(/SECRET/);
    expect(d.stdout).toContain("file: remove /etc/other.conf");
    expect(d.stdout).toContain("sysctl: net.ipv6.conf.all.forwarding (unset) -> 1");
    // diff is dry: nothing changed
    expect(read(root, "etc/app/app.conf")).toBe("v=1\n");
  });
});

describe("failures roll back", () => {
  it("a failing probe rolls back to the previous generation", () => {
    const root = tempRoot();
    agent(root, ["switch", writeBundle(root, gen1())]);
    const b = bundle({ ...gen2(), probes: [{ name: "closed-port", kind: "tcp", host: "127.0.0.1", port: 1 }] } as never);
    const r = agent(root, ["switch", writeBundle(root, b)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/switch to generation 2 failed and was rolled back to generation 1: health probes failed: closed-port/);
    expectGen1Live(root);
    expect(agent(root, ["verify"]).code).toBe(0);
    expect(JSON.parse(agent(root, ["status", "--json"]).stdout).lastSwitch.success).toBe(false);
  });

  it("a file owned by a user neither the host nor the bundle's sysusers.d has is refused before anything changes", () => {
    const root = tempRoot();
    agent(root, ["switch", writeBundle(root, gen1())]);
    const b = bundle({ ...gen2(), files: [...gen2().files, file("/etc/headscale/noise.key", "k", { owner: "nosuchuser-mf", group: "nosuchuser-mf", mode: "0600" })] } as never);
    const r = agent(root, ["switch", writeBundle(root, b)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/file \/etc\/headscale\/noise\.key: owner nosuchuser-mf does not exist on this host \(nor in the bundle's sysusers\.d\).*nothing was changed/);
    expectGen1Live(root);
    expect(agent(root, ["verify"]).code).toBe(0);
  });

  it("users a bundle declares in sysusers.d are made (in the agent's root) before the files they own", () => {
    const root = tempRoot();
    fs.mkdirSync(path.join(root, "etc"), { recursive: true });
    fs.writeFileSync(path.join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    fs.writeFileSync(path.join(root, "etc/group"), "root:x:0:\n");
    const b = bundle({
      files: [
        file("/etc/sysusers.d/mftest.conf", "u mftest - \"meshfleet test\" /var/lib/mftest\n"),
        file("/var/lib/mftest/key", "k", { owner: "mftest", group: "mftest", mode: "0600" }),
      ],
    });
    const r = agent(root, ["switch", writeBundle(root, b)]);
    expect(r.code, r.stderr).toBe(0);
    const uid = fs.readFileSync(path.join(root, "etc/passwd"), "utf8").match(/^mftest:x:(\d+):/m)?.[1];
    expect(uid).toBeDefined();
    expect(fs.statSync(path.join(root, "var/lib/mftest/key")).uid).toBe(Number(uid));
    expect(agent(root, ["verify"]).code).toBe(0);
  });

  it("a ruleset nft rejects, or a unit that fails to start, rolls back", () => {
    const root = tempRoot();
    agent(root, ["switch", writeBundle(root, gen1())]);
    // The stand-in nft refuses any script containing INVALID, as the real one refuses a bad ruleset.
    const bad = bundle({ ...gen2(), firewall: table([{ l4: { proto: "tcp", dports: [8080] }, verdict: "accept", comment: "INVALID" }]) });
    const r = agent(root, ["switch", writeBundle(root, bad)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nftables: `nft -f .*` exited with code 1: Error: syntax error/);
    expectGen1Live(root);
    fs.writeFileSync(path.join(root, "sim/fail-units"), "extra.service\n");
    const r2 = agent(root, ["switch", writeBundle(root, gen2())]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/units: `systemctl restart extra.service` exited with code 1/);
    expectGen1Live(root);
    expect(agent(root, ["verify"]).code).toBe(0);
  });
});

describe("crash safety", () => {
  const steps = ["stage", "files", "sysctl", "nftables", "units", "tailscale", "current", "probes"];
  it.each(steps)("killed after step %s: the next run rolls back and verify is clean", (step) => {
    const root = tempRoot();
    expect(agent(root, ["switch", writeBundle(root, gen1())]).code).toBe(0);
    const r = agent(root, ["switch", writeBundle(root, gen2())], { MESHFLEET_TEST_CRASH_AT: step });
    expect(r.code).toBe(86);
    expect(fs.existsSync(path.join(root, "var/lib/meshfleet/journal.json"))).toBe(true);
    const s = agent(root, ["status"]);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/recovery: switch 1 -> 2 was interrupted/);
    expectGen1Live(root);
    expect(agent(root, ["verify"]).code).toBe(0);
    expect(fs.existsSync(path.join(root, "var/lib/meshfleet/journal.json"))).toBe(false);
    // and the next switch works normally
    expect(agent(root, ["switch", writeBundle(root, gen2())]).stdout).toMatch(/generation 3 is active/);
    expect(agent(root, ["verify"]).code).toBe(0);
  });

  it.each(["files", "units", "current"])("killed during a rollback after %s: the next run finishes the rollback", (step) => {
    const root = tempRoot();
    agent(root, ["switch", writeBundle(root, gen1())]);
    agent(root, ["switch", writeBundle(root, gen2())]);
    expect(agent(root, ["rollback"], { MESHFLEET_TEST_CRASH_AT: step }).code).toBe(86);
    expect(agent(root, ["verify"]).stdout).toMatch(/recovery: rollback 2 -> 1/);
    expectGen1Live(root);
    expect(agent(root, ["verify"]).code).toBe(0);
  });
});

describe("lockout guard", () => {
  it("rolls back by itself without confirm; keeps the generation with confirm", async () => {
    const root = tempRoot();
    agent(root, ["switch", writeBundle(root, gen1())]);
    const r = agent(root, ["switch", writeBundle(root, gen2()), "--confirm-timeout", "2"]);
    expect(r.stdout).toMatch(/generation 2 is active; awaiting confirm within \d+s/);
    expect(read(root, "etc/app/app.conf")).toBe("v=2\n");
    await new Promise((res) => setTimeout(res, 4500));
    expectGen1Live(root);
    expect(JSON.parse(agent(root, ["status", "--json"]).stdout).pendingConfirm).toBeNull();
    expect(agent(root, ["verify"]).code).toBe(0);

    const r2 = agent(root, ["switch", writeBundle(root, gen2()), "--confirm-timeout", "2"]);
    expect(r2.stdout).toMatch(/generation 3 is active; awaiting confirm/);
    expect(agent(root, ["confirm"]).stdout).toMatch(/generation 3 \(bundle [0-9a-f]{12}\) confirmed/);
    await new Promise((res) => setTimeout(res, 3000));
    expect(fs.readlinkSync(path.join(root, "var/lib/meshfleet/current"))).toBe("generations/3");
    expect(agent(root, ["verify"]).code).toBe(0);
  }, 30_000);

  it("a reboot that loses the guard: `boot` waits out the deadline and rolls back by itself", () => {
    const root = tempRoot();
    agent(root, ["switch", writeBundle(root, gen1())]);
    agent(root, ["switch", writeBundle(root, gen2()), "--confirm-timeout", "3"]);
    const pending = JSON.parse(fs.readFileSync(path.join(root, "var/lib/meshfleet/pending.json"), "utf8"));
    expect(pending.guard.kind).toBe("detached");
    process.kill(pending.guard.pid, "SIGKILL"); // what a reboot does to the guard
    expect(read(root, "etc/app/app.conf")).toBe("v=2\n");
    const b = agent(root, ["boot"]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/boot: generation 2 awaits confirm; rolling back to 1/);
    expectGen1Live(root);
    expect(agent(root, ["verify"]).code).toBe(0);
    expect(agent(root, ["boot"]).stdout).toContain("boot: no generation awaits confirm");
  }, 30_000);
});

describe("tailscale", () => {
  const ts = tailscaleConfig;
  const flags = (routes: string) =>
    `--advertise-routes=${routes} --advertise-exit-node=false --accept-routes=false --accept-dns=true --ssh=false --snat-subnet-routes=true --netfilter-mode=on`;
  it("logs in once with the key file, then uses set, and logs in again (new key) only for tags", () => {
    const root = tempRoot();
    const key = file("/etc/meshfleet/tailscale-authkey", "hskey-secret", { secret: true, mode: "0600" });
    const tsCalls = () => calls(root).split("\n").filter((l) => /^tailscale (up|set)/.test(l));
    expect(agent(root, ["switch", writeBundle(root, bundle({ files: [key], tailscale: ts() }))]).code).toBe(0);
    expect(tsCalls()).toEqual([
      `tailscale up --auth-key file:/etc/meshfleet/tailscale-authkey --login-server=https://hs.example.test --hostname=router ${flags("192.168.8.0/24")} --timeout 60s`,
    ]);
    fs.writeFileSync(path.join(root, "sim/ts-status.json"), JSON.stringify({ BackendState: "Running" }));
    const routes = ["192.168.8.0/24", "192.168.20.0/24"];
    const withRoutes = ts({ routes });
    expect(agent(root, ["switch", writeBundle(root, bundle({ files: [key], tailscale: withRoutes }))]).code).toBe(0);
    expect(tsCalls().slice(1)).toEqual([`tailscale set --hostname=router ${flags("192.168.8.0/24,192.168.20.0/24")}`]);
    // unchanged tailscale settings, other change: no tailscale call at all
    expect(agent(root, ["switch", writeBundle(root, bundle({ files: [key, file("/etc/x", "x")], tailscale: withRoutes }))]).code).toBe(0);
    expect(tsCalls()).toHaveLength(2);
    // Tags come from the pre-auth key (headscale 0.29), so new tags re-login with the new key.
    const tagged = { ...withRoutes, tags: ["tag:router", "tag:exit"] };
    expect(agent(root, ["switch", writeBundle(root, bundle({ files: [key], tailscale: tagged }))]).code).toBe(0);
    expect(tsCalls().slice(2)).toEqual([
      `tailscale up --force-reauth --auth-key file:/etc/meshfleet/tailscale-authkey --login-server=https://hs.example.test --hostname=router ${flags("192.168.8.0/24,192.168.20.0/24")} --timeout 60s`,
    ]);
    expect(calls(root)).not.toContain("hskey-secret");
  });
});

describe("metrics", () => {
  it("writes the textfile with peer counts by the CLI's direct/relay rule", () => {
    const root = tempRoot();
    fs.writeFileSync(
      path.join(root, "sim/ts-status.json"),
      JSON.stringify({
        BackendState: "Running",
        Peer: {
          a: { Active: true, CurAddr: "198.51.100.7:41641", Relay: "lab" },
          b: { Active: true, CurAddr: "", Relay: "lab" },
          c: { Active: true, CurAddr: "", Relay: "lab", PeerRelay: "203.0.113.9:7777" },
          d: { Active: false, CurAddr: "", Relay: "lab" },
        },
      }),
    );
    const b = bundle({ files: [file("/etc/x", "1")], metrics: { enable: true, textfileDir: "/var/lib/prometheus/node-exporter" } });
    expect(agent(root, ["switch", writeBundle(root, b)]).code).toBe(0);
    const text = read(root, "var/lib/prometheus/node-exporter/meshfleet.prom")!;
    const values = Object.fromEntries(
      text
        .split("\n")
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => l.split(" ")),
    );
    expect(values).toMatchObject({
      tailscale_up: "1",
      tailscale_backend_running: "1",
      tailscale_peers: "4",
      tailscale_peers_direct: "1",
      tailscale_peers_relay: "1",
      meshfleet_generation: "1",
      meshfleet_drift: "0",
      meshfleet_last_switch_success: "1",
    });
    expect(Math.abs(Number(values.meshfleet_last_switch_timestamp_seconds) - Date.now() / 1000)).toBeLessThan(60);
    // exposition format: every sample has HELP and TYPE, names are valid
    for (const name of Object.keys(values)) {
      expect(name).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*$/);
      expect(text).toContain(`# HELP ${name} `);
      expect(text).toContain(`# TYPE ${name} gauge`);
    }
    fs.writeFileSync(path.join(root, "etc/x"), "drifted");
    expect(agent(root, ["verify"]).code).toBe(1);
    expect(read(root, "var/lib/prometheus/node-exporter/meshfleet.prom")).toMatch(/^meshfleet_drift 1$/m);
  });
});

describe("what verify costs the host", () => {
  const two = () =>
    bundle({
      files: [file("/etc/x", "1")],
      units: [
        { name: "app.service", content: UNIT, enable: true },
        { name: "extra.service", content: "[Service]\nExecStart=/bin/true\n", enable: true },
      ],
      tailscale: tailscaleConfig(),
      metrics: { enable: true, textfileDir: "/var/lib/prometheus/node-exporter" },
    });
  const verifyCalls = (root: string) => {
    fs.writeFileSync(path.join(root, "sim/calls.log"), "");
    const r = agent(root, ["verify", "--json"]);
    return { r, calls: fs.readFileSync(path.join(root, "sim/calls.log"), "utf8").trim().split("\n") };
  };

  it("one systemctl call per question for all units, and tailscale status asked once for the tags and the metrics", () => {
    const root = tempRoot();
    fs.writeFileSync(path.join(root, "sim/ts-status.json"), JSON.stringify({ BackendState: "Running", Self: { Tags: null }, Peer: {} }));
    expect(agent(root, ["switch", writeBundle(root, two())]).code).toBe(0);
    fs.writeFileSync(path.join(root, "sim/active"), "app.service\n");
    const { r, calls } = verifyCalls(root);
    expect(calls.filter((c) => c.startsWith("systemctl "))).toEqual(["systemctl is-enabled app.service extra.service", "systemctl is-active app.service extra.service"]);
    expect(calls.filter((c) => c === "tailscale status --json")).toHaveLength(1);
    // The answers land on the right units.
    expect(JSON.parse(r.stdout).drift.filter((d: { kind: string }) => d.kind === "unit")).toEqual([{ kind: "unit", subject: "extra.service", detail: "is inactive, expected active" }]);
    expect(read(root, "var/lib/prometheus/node-exporter/meshfleet.prom")).toMatch(/^tailscale_backend_running 1$/m);
  });

  it("the metrics refresh (the switch's, the timer's) asks tailscale status once for the drift's tag check and the peer counts", () => {
    const root = tempRoot();
    fs.writeFileSync(path.join(root, "sim/ts-status.json"), JSON.stringify({ BackendState: "Running", Self: { Tags: null }, Peer: {} }));
    expect(agent(root, ["switch", writeBundle(root, two())]).code).toBe(0);
    fs.writeFileSync(path.join(root, "sim/calls.log"), "");
    expect(agent(root, ["metrics"]).code).toBe(0);
    const calls = fs.readFileSync(path.join(root, "sim/calls.log"), "utf8").trim().split("\n");
    expect(calls.filter((c) => c === "tailscale status --json")).toHaveLength(1);
    expect(calls).toContain("tailscale debug prefs");
    expect(read(root, "var/lib/prometheus/node-exporter/meshfleet.prom")).toMatch(/^tailscale_backend_running 1$/m);
  });

  it("a unit systemctl cannot find (is-enabled stops there) is asked again unit by unit and reported", () => {
    const root = tempRoot();
    expect(agent(root, ["switch", writeBundle(root, two())]).code).toBe(0);
    fs.writeFileSync(path.join(root, "sim/missing"), "app.service\n");
    const { r, calls } = verifyCalls(root);
    expect(calls.filter((c) => c.startsWith("systemctl is-enabled"))).toEqual([
      "systemctl is-enabled app.service extra.service",
      "systemctl is-enabled app.service",
      "systemctl is-enabled extra.service",
    ]);
    const units = JSON.parse(r.stdout).drift.filter((d: { kind: string }) => d.kind === "unit");
    expect(units).toEqual([{ kind: "unit", subject: "app.service", detail: "is unknown, expected enabled" }]);
  });
});

describe("cli", () => {
  it("--help for the agent and each command", () => {
    const root = tempRoot();
    const r = agent(root, ["--help"]);
    expect(r.code).toBe(0);
    for (const c of ["switch", "confirm", "rollback", "status", "verify", "diff", "generations", "gc", "metrics"]) {
      expect(r.stdout).toContain(`  ${c}`);
      const h = agent(root, [c, "--help"]);
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(new RegExp(`^usage: meshfleet-agent ${c}`));
    }
    const bad = agent(root, ["switch", "/nonexistent.json"]);
    expect(bad.stderr).toBe("meshfleet-agent: cannot read bundle /nonexistent.json: ENOENT\n");
  });
});
