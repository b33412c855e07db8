/**
 * status, doctor and rollback against the real lab (MESHFLEET_LAB_E2E=1, root,
 * tools built; in CI a missing prerequisite fails, never skips). Lab instance
 * 5, with a copy of hosts/lab whose SSH addresses are instance 5's (hosts/lab's
 * are instance 0's); a lab already deployed there is reused, else `lab up`
 * deploys it (and `lab down` removes it afterwards).
 *
 * Proved here:
 *   - status matches what `headscale nodes list` and `tailscale status` say;
 *   - each doctor check finds the fault it names when it is injected
 *     (forwarding off, TUN missing, UDP to the relay blocked, coordinator
 *     down, a route not approved, UDP GRO forwarding off), and the fix the
 *     finding names makes it pass again;
 *   - rollback from the workstation: status then shows the older generation,
 *     confirmed, no drift; `preview --refresh` shows the host would change;
 *   - prerequisites (issue 14 item 2): a package a module declares (sqlite3,
 *     for the backup) that the VPS lacks is installed by the deploy with
 *     apt-get from the host's apt sources (a local file: source here, the
 *     lab has no mirror); a host that is not Debian is refused and no host's
 *     generation changes.
 */
import { execa } from "execa";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDeploy } from "../../cli/commands/deploy.ts";
import { runDoctor, type Finding } from "../../cli/commands/doctor.ts";
import { readGenerations } from "../../cli/commands/generations.ts";
import { rollback } from "../../cli/commands/rollback.ts";
import { collectStatus } from "../../cli/commands/status.ts";
import { newSession, openStackFleet, type StackAccess } from "../../cli/fleet-hosts.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, REPO } from "../../lab/e2e/pulumi.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { labMissing, labOn, writeLabFleet } from "../lab/harness.ts";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { ensureDebs, PREREQ_DEBS } from "../../lab/hosts/debs.ts";

const INSTANCE = 5;
const p = e2ePaths(INSTANCE);
const HOSTS = join(p.dir, `hosts-lab${INSTANCE}`);
const HS = "/opt/meshfleet/tools/headscale@0.29.2/bin/headscale";

/** hosts/lab with instance INSTANCE's SSH addresses, named as the stack's fleet folder. */
function writeInstanceFleet(extra: Record<string, string> = {}): void {
  writeLabFleet(INSTANCE, { edit: (f, text) => text + (extra[f] ?? "") });
}

const on = labOn(INSTANCE);

const find = (fs: Finding[], host: string, check: string) => fs.filter((f) => f.host === host && f.check === check);

describe.skipIf(skipUnlessCi(labMissing()))(`status, doctor and rollback on lab instance ${INSTANCE}`, () => {
  let a: StackAccess;
  let broughtUp = false;
  const open = () => openStackFleet({ stack: STACK, configFile: p.stackConfig });

  beforeAll(async () => {
    writeInstanceFleet();
    // Reuse a deployed lab: every host read with a generation.
    let deployed = false;
    try {
      const s = newSession();
      const { status } = await collectStatus(await open(), s);
      s.close();
      deployed = status.hosts.every((h) => h.reachable && (h.generation?.n ?? 0) > 0);
    } catch {
      deployed = false;
    }
    if (!deployed) {
      const r = await labUp({ instance: INSTANCE, log: () => {}, noBuild: true });
      if (!r.ok) throw new Error(`lab up --instance ${INSTANCE}: ${r.error}`);
      broughtUp = true;
    }
    a = await open();
  });

  afterAll(async () => {
    if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
  });

  it("status matches headscale nodes list and tailscale status on the hosts", async () => {
    const s = newSession();
    const { status } = await collectStatus(a, s);
    s.close();
    const nodes = JSON.parse(await on("vps", `${HS} nodes list -o json`)) as { given_name: string; online: boolean; available_routes?: string[]; approved_routes?: string[] }[];
    for (const h of status.hosts) {
      expect(h.reachable, h.error).toBe(true);
      const gens = JSON.parse(await on(h.host, "node /usr/local/lib/meshfleet/meshfleet-agent.mjs status --json"));
      expect(h.generation).toMatchObject({ n: gens.generation, hash: gens.hash, confirmed: true });
      const ts = JSON.parse(await on(h.host, "/opt/meshfleet/tools/tailscale@1.98.10/bin/tailscale status --json"));
      expect(h.tailscale.state).toBe(ts.BackendState);
      expect(h.tailscale.version).toBe(String(ts.Version).split("-")[0]);
      expect(h.tailscale.peers.map((x) => x.peer).sort()).toEqual(Object.values(ts.Peer as Record<string, { HostName: string }>).map((x) => x.HostName).sort());
      const n = nodes.find((x) => x.given_name === h.host)!;
      expect(h.headscale).toMatchObject({ registered: true, online: n.online, advertised: n.available_routes ?? [], approved: n.approved_routes ?? [] });
    }
    expect(status.hosts.find((h) => h.host === "lxc-tailscale")!.headscale!.approved).toContain("192.168.8.0/24");
  });

  it("doctor passes on the deployed lab", async () => {
    const r = await runDoctor(a);
    expect(r.findings.filter((f) => f.level === "fail")).toEqual([]);
    // Every check it claims to make was made.
    for (const [host, check] of [["vps", "port 443/tcp"], ["vps", "port 3478/udp"], ["vps", "headscale health"], ["lxc-tailscale", "ip forwarding"], ["lxc-tailscale", "tun device"], ["lxc-tailscale", "routes"], ["laptop", "udp to relay"], ["laptop", "clock"], ["laptop", "agent runtime"], ["vps", "pre-auth keys"]] as const) {
      // A family the host does not route is reported as skipped ("not needed"), beside the checks made.
      expect(find(r.findings, host, check).filter((f) => f.level !== "skip").map((f) => f.level), `${host} ${check}`).toEqual(["ok"]);
    }
  });

  /** Inject a fault, expect doctor to name it on `host`/`check`, apply the fix it names, expect the check to pass. */
  async function faultCase(o: { host: string; check: string; level?: "fail" | "warn"; inject: string; injectOn?: string; fix?: (f: Finding) => Promise<void>; what: RegExp }): Promise<void> {
    await on(o.injectOn ?? o.host, o.inject);
    let fixed = false;
    try {
      const bad = await runDoctor(a);
      const hits = find(bad.findings, o.host, o.check).filter((f) => f.level === (o.level ?? "fail"));
      expect(hits.length, JSON.stringify(find(bad.findings, o.host, o.check))).toBeGreaterThan(0);
      const f = hits[0]!;
      expect(f.what).toMatch(o.what);
      expect(f.why).toBeTruthy();
      expect(f.fix).toBeTruthy();
      if (o.fix) await o.fix(f);
      else {
        expect(f.fixCommand, "the finding names its fix as one command").toBeDefined();
        expect(f.fix).toContain(f.fixCommand!.command);
        await on(f.fixCommand!.on, f.fixCommand!.command);
      }
      fixed = true;
      // Some fixes take a moment (a service starting).
      let after = await runDoctor(a);
      const settled = (x: Finding) => x.level === "ok" || x.level === "skip";
      for (let i = 0; i < 10 && !find(after.findings, o.host, o.check).every(settled); i++) {
        await new Promise((r) => setTimeout(r, 2000));
        after = await runDoctor(a);
      }
      expect(find(after.findings, o.host, o.check).map((x) => `${x.level}: ${x.what}`)).toEqual(find(after.findings, o.host, o.check).map((x) => `${x.level === "skip" ? "skip" : "ok"}: ${x.what}`));
    } finally {
      if (!fixed) await faultCleanup[o.check]?.();
    }
  }

  const faultCleanup: Record<string, () => Promise<unknown>> = {
    "ip forwarding": () => on("lxc-tailscale", "sysctl -w net.ipv4.ip_forward=1"),
    "tun device": () => on("lxc-tailscale", "[ -c /dev/net/tun ] || mknod /dev/net/tun c 10 200; chmod 0666 /dev/net/tun"),
    "udp to relay": () => on("vps", "nft delete table inet mf_test_fault 2>/dev/null; true"),
    "headscale health": () => on("vps", "systemctl start headscale"),
    "udp gro forwarding": () => on("lxc-tailscale", "ethtool -K eth0 rx-udp-gro-forwarding on rx-gro-list off"),
  };

  it("forwarding off on the subnet router: found, and sysctl -w fixes it", () =>
    faultCase({ host: "lxc-tailscale", check: "ip forwarding", inject: "sysctl -w net.ipv4.ip_forward=0", what: /net\.ipv4\.ip_forward is 0/ }));

  it("TUN missing on the subnet router: found, and the mknod it names fixes it", () =>
    faultCase({ host: "lxc-tailscale", check: "tun device", inject: "umount -l /dev/net/tun 2>/dev/null; rm -f /dev/net/tun", what: /\/dev\/net\/tun is missing/ }));

  it("UDP to the relay blocked: found from the nodes, and opening 3478/udp fixes it", () =>
    faultCase({
      host: "laptop",
      check: "udp to relay",
      injectOn: "vps",
      inject: "nft -f - <<'EOF'\ntable inet mf_test_fault {\n  chain input { type filter hook input priority -10; udp dport 3478 drop; }\n}\nEOF",
      what: /no STUN answer from 203\.0\.113\.10:3478\/udp/,
      // The fix it names: allow 3478/udp on the relay (here: remove what drops it, as `nft list ruleset` shows).
      fix: async (f) => {
        expect(f.fix).toMatch(/allow 3478\/udp/);
        expect(await on("vps", "nft list ruleset")).toMatch(/udp dport 3478 drop/);
        await on("vps", "nft delete table inet mf_test_fault");
      },
    }));

  it("coordinator down: found by the health check, and the start command it names fixes it", () =>
    faultCase({ host: "vps", check: "headscale health", inject: "systemctl stop headscale", what: /answers (nothing|HTTP 50\d)/ }));

  it("a route not approved: found, and the approve-routes command it names fixes it", async () => {
    const nodes = JSON.parse(await on("vps", `${HS} nodes list -o json`)) as { id: number; given_name: string }[];
    const id = nodes.find((n) => n.given_name === "lxc-tailscale")!.id;
    await faultCase({ host: "lxc-tailscale", check: "routes", injectOn: "vps", inject: `${HS} nodes approve-routes -i ${id} -r ''`, what: /route 192\.168\.8\.0\/24 .*headscale did not approve it/ });
  });

  it("UDP GRO forwarding off on the router: a warning, and the ethtool command it names fixes it", () =>
    faultCase({ host: "lxc-tailscale", check: "udp gro forwarding", level: "warn", inject: "ethtool -K eth0 rx-udp-gro-forwarding off", what: /rx-udp-gro-forwarding is off/ }));

  it("the CLI: doctor --json exits 1 with the finding while the coordinator is down, 0 after", async () => {
    const cli = (args: string[]) => execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), ...args, "--stack", STACK, "--config-file", p.stackConfig], { cwd: REPO, reject: false });
    await on("vps", "systemctl stop headscale");
    try {
      const bad = await cli(["doctor", "--json"]);
      expect(bad.exitCode).toBe(1);
      const j = JSON.parse(String(bad.stdout)) as { findings: Finding[] };
      expect(j.findings.find((f) => f.check === "headscale health")).toMatchObject({ level: "fail", fixCommand: { on: "vps", command: "systemctl start headscale" } });
      const text = await cli(["doctor"]);
      expect(String(text.stdout)).toMatch(/FAIL vps: headscale health: .*\n\s+why: .*\n\s+fix: systemctl start headscale on vps/);
    } finally {
      await on("vps", "systemctl start headscale");
    }
    let good = await cli(["doctor", "--json"]);
    for (let i = 0; i < 10 && good.exitCode !== 0; i++) {
      await new Promise((r) => setTimeout(r, 2000));
      good = await cli(["doctor", "--json"]);
    }
    expect(good.exitCode, String(good.stdout).slice(0, 2000)).toBe(0);
  });

  it("rollback from the workstation: status shows the older generation, confirmed, no drift; preview --refresh shows the host would change", async () => {
    const env = labPulumiEnv(INSTANCE);
    const deploy = (verb: "up" | "preview", refresh = false) => runDeploy({ verb, stack: STACK, configFile: p.stackConfig, env, refresh, on: verb === "up" ? ["laptop"] : undefined });
    // A new generation on the laptop, from the fleet: one more sysctl in its host file (a new value each run).
    writeInstanceFleet({ "laptop.yaml": `kernel:\n  sysctl:\n    net.core.somaxconn: "${4096 + (Date.now() % 1000)}"\n` });
    const up = await deploy("up");
    expect(up.ok, up.errors.join("; ")).toBe(true);
    a = await open();
    const s1 = newSession();
    const gens = await readGenerations(a, a.fleet.hosts.laptop!, s1);
    s1.close();
    const cur = gens.find((g) => g.current)!;
    const older = gens.filter((g) => g.generation < cur.generation && g.status !== "failed").pop()!;
    expect(older).toBeDefined();
    const r = await rollback({ ...a, selected: [a.fleet.hosts.laptop!] }, { confirmTimeoutSeconds: 60, dryRun: false, say: () => {} });
    expect(r).toMatchObject({ confirmed: true, to: { generation: older.generation, hash: older.hash }, drift: [] });
    try {
      const s = newSession();
      const { status } = await collectStatus({ ...a, selected: [a.fleet.hosts.laptop!] }, s);
      s.close();
      expect(status.hosts[0]).toMatchObject({ generation: { n: older.generation, hash: older.hash, confirmed: true }, drift: { clean: true } });
      const pv = await deploy("preview", true);
      expect(pv.ok, pv.errors.join("; ")).toBe(true);
      const laptop = pv.resources.filter((x) => x.host === "laptop" && x.op !== "same" && x.op !== "read" && x.op !== "refresh");
      expect(laptop.map((x) => `${x.op} ${x.type}`)).toContain("update meshfleet:host:Generation");
    } finally {
      // Back to what it ran.
      await rollback({ ...a, selected: [a.fleet.hosts.laptop!] }, { to: cur.generation, confirmTimeoutSeconds: 60, dryRun: false, say: () => {} });
    }
  });

  it("prerequisites: a declared package the VPS lacks is installed by apt-get; a non-Debian host is refused and no host switches", async () => {
    const env = labPulumiEnv(INSTANCE);
    const up = () => runDeploy({ verb: "up", stack: STACK, configFile: p.stackConfig, env });
    // A local apt source on the VPS holding sqlite3 (fetched once by setup; the lab has no mirror), and no sqlite3 yet.
    // A run cut short earlier may have left the laptop's os-release replaced: put the kept one back first.
    await on("laptop", "test ! -e /root/os-release.meshfleet-keep || { rm -f /etc/os-release && mv /root/os-release.meshfleet-keep /etc/os-release; }");
    const { dir, files } = await ensureDebs(PREREQ_DEBS, { allowFetch: false });
    const packages = execFileSync("dpkg-scanpackages", ["--multiversion", "."], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    await on("vps", "dpkg -r sqlite3 >/dev/null 2>&1; rm -f /usr/local/bin/sqlite3; mkdir -p /srv/meshfleet-lab-apt && ! command -v sqlite3");
    for (const f of files) await on("vps", `base64 -d > /srv/meshfleet-lab-apt/${f.split("/").pop()}`, { input: readFileSync(f).toString("base64") });
    await on("vps", "cat > /srv/meshfleet-lab-apt/Packages && echo 'deb [trusted=yes] file:/srv/meshfleet-lab-apt ./' > /etc/apt/sources.list.d/meshfleet-lab.list", { input: packages });
    let passed = false;
    const backup = (f: string, text: string) => (f === "vps.yaml" ? text.replace(/^headscale:\n/m, "headscale:\n  backup:\n    enable: true\n    keep: 2\n") : text);
    const status = async (h: string) => JSON.parse(await on(h, "node /usr/local/lib/meshfleet/meshfleet-agent.mjs status --json")) as { generation: number; hash: string };
    try {
      writeLabFleet(INSTANCE, { edit: backup });
      const r = await up();
      expect(r.ok, r.errors.join("; ")).toBe(true);
      expect(r.resources.filter((x) => x.host === "vps" && x.type === "meshfleet:host:Prerequisites").map((x) => x.op)).toEqual(["update"]);
      expect((await on("vps", "dpkg-query -W -f='${Status} ${Version}' sqlite3")).trim()).toMatch(/^install ok installed 3\./);
      expect((await on("vps", "systemctl list-unit-files headscale-backup.timer --no-legend")).trim()).toMatch(/^headscale-backup\.timer/);

      // The laptop claims to be another OS; the fleet changes the laptop and the VPS. Nothing switches.
      // Kept once: a second save would keep the fake.
      await on("laptop", "{ test -e /root/os-release.meshfleet-keep || mv /etc/os-release /root/os-release.meshfleet-keep; } && printf 'ID=alpine\\nVERSION_ID=3.20\\n' > /etc/os-release");
      const before = { vps: await status("vps"), laptop: await status("laptop") };
      writeLabFleet(INSTANCE, { edit: (f, text) => backup(f, text) + (f === "laptop.yaml" || f === "vps.yaml" ? `kernel:\n  sysctl:\n    net.core.somaxconn: "${5000 + (Date.now() % 1000)}"\n` : "") });
      const refused = await up();
      expect(refused.ok).toBe(false);
      expect(refused.errors.join("\n")).toMatch(/host laptop: expected a Debian-family system with apt-get .*found alpine 3\.20/);
      expect({ vps: await status("vps"), laptop: await status("laptop") }).toEqual(before);
      passed = true;
    } finally {
      // Each step on its own, errors collected: a failing restore must not hide the case's own failure, nor skip the next step.
      const left: string[] = [];
      const step = async (what: string, f: () => Promise<unknown>) => {
        try {
          await f();
        } catch (e) {
          left.push(`${what}: ${(e as Error).message}`);
        }
      };
      await step("laptop's os-release back", () => on("laptop", "test ! -e /root/os-release.meshfleet-keep || { rm -f /etc/os-release && mv /root/os-release.meshfleet-keep /etc/os-release; }"));
      await step("the local apt source removed", () => on("vps", "rm -f /etc/apt/sources.list.d/meshfleet-lab.list"));
      await step("hosts/lab deployed back", async () => {
        writeInstanceFleet();
        const back = await up();
        if (!back.ok) throw new Error(back.errors.join("; "));
      });
      const msg = `fleet-lab prerequisites: putting the lab back failed:\n${left.join("\n")}`;
      // After a failure above, that failure is the one reported; after a pass, a failed restore fails the case.
      if (left.length && passed) throw new Error(msg);
      if (left.length) console.error(msg);
    }
  }, 900_000);
});
