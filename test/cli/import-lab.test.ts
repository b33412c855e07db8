/**
 * `meshfleet import --from HOST` over SSH against a real lab host (lab
 * instance 6's vps, booted alone): headscale 0.29.2 runs there as an
 * existing install would (/etc/headscale, /var/lib/headscale, a HuJSON policy
 * with comments and trailing commas, users and nodes made through its CLI).
 * Import logs in with the lab's key, the host key checked against the pins
 * alone, and writes a fleet that `meshfleet check --nodes` accepts; the
 * adopted files are found on the host (stat only) and no private key text
 * is in anything it wrote or printed. A pin for another key is refused
 * before anything is read. Then `meshfleet up` of the imported fleet, through
 * Pulumi on a stack of its own, takes the host over: meshfleet's headscale
 * unit serves the old database and keys (nodes, addresses and node keys as
 * they were, the key files byte for byte), and a second `up
 * --expect-no-changes` passes with the host untouched. Needs root (the lab
 * boots nspawn hosts).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse as parseYaml, stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/eval.ts";
import { parseHuJson } from "../../core/hujson.ts";
import { renderHost } from "../../core/render.ts";
import { REGISTRY } from "../../modules/index.ts";
import { lab } from "../../lab/hosts/index.ts";
import { runPulumi } from "../../lab/e2e/pulumi.ts";
import { pulumiEnv } from "../../lab/tools/index.ts";
import { openStack } from "../../cli/commands/deploy.ts";
import { randomBytes } from "node:crypto";
import { findHost } from "../../lab/topology.ts";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";
import * as rt from "../modules/realtools/index.ts";
import { hostConfig, POLICY } from "./import-fixtures.ts";

// lab/hosts/README.md: instance 6 (shared with bench/lab-boot and test/agent/real.test.ts; files run one at a time).
const L = lab(6);
const ROOT = path.resolve(import.meta.dirname, "../..");
const HS = `${L.toolsDir}/headscale@0.29.2/bin/headscale`;
const missing = !isRoot() ? NEEDS_ROOT : !rt.toolPath("headscale") ? "headscale 0.29.2 is not built: run `meshfleet tools build`" : "";

describe.skipIf(skipUnlessCi(missing))("meshfleet import --from a lab host over SSH (lab instance 6)", () => {
  const tmp = mkdtempSync(path.join(tmpdir(), "mf-import-lab-"));
  const vps = findHost(L.topology, "vps").mgmt!;
  const cli = (args: string[]) => spawnSync(process.execPath, [path.join(ROOT, "bin/meshfleet.mjs"), ...args], { encoding: "utf8", cwd: ROOT, timeout: 180_000 });
  const on = async (cmd: string, input?: string) => {
    const r = await L.sshExec("vps", cmd, { timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) });
    if (r.code !== 0) throw new Error(`vps: ${cmd}: exit ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  let keys: string[] = [];

  beforeAll(async () => {
    await L.down();
    await L.up({ hosts: ["vps"], log: (l) => process.stderr.write(`[lab6] ${l}\n`) });
    // An existing headscale, laid out as a hand install: binary on PATH, root-owned state.
    await on(`ln -sf ${HS} /usr/local/bin/headscale && mkdir -p /etc/headscale /var/lib/headscale /var/run/headscale`);
    await on("cat > /etc/headscale/config.yaml", hostConfig({ http: 8080, metrics: 9090, grpc: 50443, stun: 3478 }));
    await on("cat > /etc/headscale/acl.hujson", POLICY);
    await on("umask 077; for k in noise_private derp_server_private; do headscale generate private-key -o json | sed -n 's/.*\"private_key\": *\"\\(.*\\)\".*/\\1/p' > /var/lib/headscale/$k.key; done");
    keys = (await on("cat /var/lib/headscale/noise_private.key /var/lib/headscale/derp_server_private.key")).trim().split("\n");
    expect(keys.every((k) => /^privkey:[0-9a-f]{64}$/.test(k)), "generated keys").toBe(true);
    await on("systemd-run --unit=headscale-old headscale serve -c /etc/headscale/config.yaml");
    await on("for i in $(seq 1 100); do headscale users list -o json >/dev/null 2>&1 && exit 0; sleep 0.3; done; journalctl -u headscale-old --no-pager | tail -20; exit 1");
    await on("headscale users create alice -o json && headscale users create bob -o json");
    for (const [name, n] of [["laptop", 1], ["server", 2]] as const) {
      const id = `hskey-authreq-${String(n).repeat(24)}`;
      await on(`headscale debug create-node --name ${name} --user alice --key ${id} -o json && headscale auth register --auth-id ${id} --user alice -o json`);
    }
    await on("headscale nodes tag -i 2 -t tag:server -o json");
  }, 600_000);

  afterAll(async () => {
    await L.down();
    rmSync(tmp, { recursive: true, force: true });
  }, 180_000);

  it("reads config, policy, users, nodes and the version over SSH; check passes; nothing secret is written", async () => {
    const out = path.join(tmp, "fleet");
    const r = cli(["import", "--from", `root@${vps}`, "--known-hosts", L.knownHostsPath, "--identity", L.keyPath, "--out", out, "--name", "vps"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const written = readdirSync(out).sort();
    expect(written).toEqual(["IMPORT.md", "fleet.yaml", "nodes.json", "vps.yaml"]);
    const all = written.map((f) => readFileSync(path.join(out, f), "utf8")).join("\n") + r.stdout + r.stderr;
    for (const k of keys) {
      expect(all).not.toContain(k);
      expect(all).not.toContain(k.slice(8));
    }
    const fleet = parseYaml(readFileSync(path.join(out, "fleet.yaml"), "utf8"));
    expect(fleet.coordinator).toEqual({ host: "vps", serverUrl: "https://hs.example.org", headscaleVersion: "0.29.2" });
    expect(fleet.users).toEqual(["alice", "bob"]);
    expect(fleet.policy).toEqual(parseHuJson(POLICY));
    const host = parseYaml(readFileSync(path.join(out, "vps.yaml"), "utf8"));
    const pinned = readFileSync(L.knownHostsPath, "utf8").split("\n").find((l) => l.startsWith(`${vps} `))!.split(" ").slice(1, 3).join(" ");
    expect(host.address).toBe(vps);
    expect(host.ssh).toEqual({ user: "root", port: 22, hostKey: pinned });
    expect(host.headscale.package).toBe("/usr/local/bin/headscale");
    expect(host.headscale.adopt).toEqual({ enable: true, noisePrivateKeyPath: "/var/lib/headscale/noise_private.key", derpPrivateKeyPath: "/var/lib/headscale/derp_server_private.key" });
    const nodes = JSON.parse(readFileSync(path.join(out, "nodes.json"), "utf8")) as { name: string; tags?: string[] }[];
    expect(nodes.map((n) => n.name).sort()).toEqual(["laptop", "server"]);
    const report = readFileSync(path.join(out, "IMPORT.md"), "utf8");
    expect(report).toContain("on the host: `/var/lib/headscale/noise_private.key` exists (owner root, mode 600)");
    expect(report).toContain("on the host: `/var/lib/headscale/db.sqlite` exists (owner root, mode ");
    expect(report).toContain("systemd (StateDirectory=) gives it /var/lib/headscale, files included, when the unit first starts");
    expect(report).not.toContain("`owner of");
    expect(report).toMatch(/`frobnicate_level` = 3/);

    const check = cli(["check", "--hosts-dir", out, "--nodes", path.join(out, "nodes.json")]);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    // Import only read: the keys on the host are as they were.
    expect((await on("cat /var/lib/headscale/noise_private.key /var/lib/headscale/derp_server_private.key")).trim().split("\n").join() === keys.join(), "keys unchanged (compared, never printed)").toBe(true);
  }, 300_000);

  it("meshfleet up of the imported fleet adopts the existing headscale: same nodes, addresses and keys; a second up changes nothing", async () => {
    // The fleet written by the first test, without the reverse proxy (the lab's Debian has no Caddy and no DNS for
    // hs.example.org): the coordinator alone, deployed by `meshfleet up` through Pulumi as a user would.
    const out = path.join(tmp, "fleet-up");
    cpSync(path.join(tmp, "fleet"), out, { recursive: true });
    const hostFile = parseYaml(readFileSync(path.join(out, "vps.yaml"), "utf8"));
    hostFile.imports = ["coordinator", "derp-relay"];
    writeFileSync(path.join(out, "vps.yaml"), stringify(hostFile));
    const fleetFile = parseYaml(readFileSync(path.join(out, "fleet.yaml"), "utf8"));
    fleetFile.coordinator.serverUrl = "http://203.0.113.10:8080";
    writeFileSync(path.join(out, "fleet.yaml"), stringify(fleetFile));
    const ev = await evaluateFleet(REGISTRY, out, "imported");
    expect(ev.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    const bundle = renderHost(ev.fleet!.hosts.vps!, {}); // no secret: the keys are adopted, not written
    expect(bundle.files.filter((f) => f.secret)).toEqual([]);

    // A stack of its own: the fleet folder, the lab's key and pins, a key seed (nothing derives from it here).
    const env = { ...pulumiEnv(path.join(tmp, "pulumi"), { passphrase: "import-lab: a test stack, nothing secret in it" }), MESHFLEET_STATE_DIR: path.join(tmp, "state") };
    const configFile = path.join(tmp, "Pulumi.imported.yaml");
    writeFileSync(configFile, stringify({ config: { "meshfleet:hostsDir": out, "meshfleet:sshPrivateKeyPath": L.keyPath, "meshfleet:knownHostsPath": L.knownHostsPath, "meshfleet:agentPath": path.join(ROOT, "dist", "meshfleet-agent.mjs") } }));
    await openStack({ stack: "imported", configFile, env, program: async () => ({}) });
    const seed = await runPulumi(["config", "set", "--secret", "--config-file", configFile, "--stack", "imported", "meshfleet:keySeed"], { env, input: randomBytes(32).toString("base64") });
    expect(seed.code, seed.stderr).toBe(0);
    execFileSync(process.execPath, [path.join(ROOT, "agent", "build.mjs")], { stdio: "pipe" });
    const up = (...extra: string[]) => spawnSync(process.execPath, [path.join(ROOT, "bin/meshfleet.mjs"), "up", "--stack", "imported", "--config-file", configFile, "--yes", ...extra], { encoding: "utf8", cwd: ROOT, env, timeout: 600_000 });

    const before = JSON.parse(await on("headscale nodes list -o json")) as { name: string; ip_addresses: string[]; node_key: string; machine_key: string }[];
    // The old server stops (a packaged headscale.service would be replaced by meshfleet's unit of the same name).
    await on("systemctl stop headscale-old");
    const first = up();
    expect(first.status, first.stdout + first.stderr).toBe(0);
    expect(first.stdout + first.stderr).toMatch(/vps/);
    expect((await on("systemctl is-active headscale.service")).trim()).toBe("active");
    expect(JSON.parse(await on("node /usr/local/lib/meshfleet/meshfleet-agent.mjs status --json"))).toMatchObject({ generation: 1, pendingConfirm: null });
    // systemd's StateDirectory= hands the root-owned state to user headscale; the keys are the old ones, byte for byte.
    expect((await on("stat -c '%U %a' /var/lib/headscale/noise_private.key")).trim()).toBe("headscale 600");
    // Compared, never printed: a failure must not show the keys.
    const sameKeys = async () => (await on("cat /var/lib/headscale/noise_private.key /var/lib/headscale/derp_server_private.key")).trim().split("\n").join() === keys.join();
    expect(await sameKeys(), "the key files are the old ones, byte for byte").toBe(true);
    const after = JSON.parse(await on("headscale nodes list -o json")) as typeof before;
    const strip = (ns: typeof before) => ns.map((x) => `${x.name} ${x.ip_addresses.join(",")} ${x.node_key} ${x.machine_key}`).sort();
    expect(strip(after)).toEqual(strip(before));
    expect((JSON.parse(await on("headscale users list -o json")) as { name: string }[]).map((u) => u.name).sort()).toEqual(["alice", "bob"]);
    expect(await on("grep private_key_path /etc/headscale/config.yaml")).toBe("  private_key_path: /var/lib/headscale/noise_private.key\n    private_key_path: /var/lib/headscale/derp_server_private.key\n");
    const hashes = await on("sha256sum /var/lib/headscale/noise_private.key /var/lib/headscale/derp_server_private.key /etc/headscale/config.yaml");

    // The same fleet again: nothing to change, and nothing changed on the host.
    const second = up("--expect-no-changes");
    expect(second.status, second.stdout + second.stderr).toBe(0);
    expect(JSON.parse(await on("node /usr/local/lib/meshfleet/meshfleet-agent.mjs status --json"))).toMatchObject({ generation: 1 });
    expect(await on("sha256sum /var/lib/headscale/noise_private.key /var/lib/headscale/derp_server_private.key /etc/headscale/config.yaml")).toBe(hashes);
    expect(strip(JSON.parse(await on("headscale nodes list -o json")) as typeof before)).toEqual(strip(before));
    // The no-op check can fail: with one more sysctl in the fleet, a preview expecting no changes refuses.
    writeFileSync(path.join(out, "vps.yaml"), stringify({ ...hostFile, kernel: { sysctl: { "net.core.somaxconn": "4097" } } }));
    const changed = spawnSync(process.execPath, [path.join(ROOT, "bin/meshfleet.mjs"), "preview", "--stack", "imported", "--config-file", configFile, "--expect-no-changes"], { encoding: "utf8", cwd: ROOT, env, timeout: 600_000 });
    expect(changed.status, changed.stdout + changed.stderr).not.toBe(0);
    expect(changed.stdout + changed.stderr).toMatch(/vps.*update|update.*Generation/);
  }, 900_000);

  it("refuses a host whose key is not the pinned one, before reading anything", async () => {
    const other = path.join(tmp, "other_known_hosts");
    writeFileSync(other, `${vps} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjh1mQ7rY3o9k1d0mYbq1a0Y7YwQe0o2a3p0u8XWmXb\n`);
    const out = path.join(tmp, "never");
    const r = cli(["import", "--from", `root@${vps}`, "--known-hosts", other, "--identity", L.keyPath, "--out", out]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(`meshfleet: --from root@${vps}:22: its SSH host key does not match the pinned key, so nothing was sent to it. Fix: if the host was reinstalled, check its key out of band (ssh-keyscan -p 22 ${vps}; ssh-keygen -lf) and replace its line in ${other}`);
    expect(() => readdirSync(out)).toThrow();
  }, 120_000);
});
