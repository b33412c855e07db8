/**
 * Issue 12 item 16 rehearsed on the real lab (lab instance 1; MESHFLEET_LAB_E2E=1,
 * root, tools built; in CI a missing prerequisite fails, never skips): a new
 * meshfleet:keySeed, then `meshfleet up`.
 *
 * What the lab showed before meshfleet handled it: headscale restarts with the
 * new Noise key, and every node (the VPS's own included) stays offline in
 * headscale for good: tailscaled keeps the key it fetched at start ("reading
 * response header: EOF" on every map poll); tailscale status still says Running
 * and the data plane keeps working on the last netmap. `tailscale down/up` (the
 * prefs toggle a GUI does) and a plain `tailscale up` do not help; a restart of
 * tailscaled does (4-6 s).
 *
 * Proved here, through the same runDeploy as `meshfleet up`:
 *   - the deploy succeeds and every node is online in headscale again, with the
 *     same node id and addresses, without a re-login: the agent restarted
 *     tailscaled because the coordinator's Noise public key in its bundle changed;
 *   - the laptop reaches the NAS through the subnet route (a new connection via
 *     tailscale0) and sees lxc-tailscale online in a fresh netmap;
 *   - the coordinator's key file holds the new key; after `meshfleet-agent gc --keep 1`
 *     (SECURITY.md) the old private key is nowhere on the coordinator.
 * The time from the deploy's start until every node was back is printed.
 *
 * Also on this instance (issue 18 section 1): lab check's MSS transfer item
 * passes on the deployed router and fails with its clamp rule deleted.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDeploy } from "../../cli/commands/deploy.ts";
import { derivePrivateKey, publicKeyOf } from "../../core/keys.ts";
import { sshExec } from "../../lab/hosts/index.ts";
import { mssTransferCheck } from "../../lab/e2e/dataplane-checks.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv, runPulumi } from "../../lab/e2e/pulumi.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { labTopology } from "../../lab/topology.ts";
import { skipUnlessCi } from "./ci-gate.ts";
import { labMissing, writeLabFleet } from "./harness.ts";

const INSTANCE = 1;
const p = e2ePaths(INSTANCE);
const TS = "/opt/meshfleet/tools/tailscale@1.98.10/bin/tailscale";
const HS = "/opt/meshfleet/tools/headscale@0.29.2/bin/headscale -c /etc/headscale/config.yaml";
const AGENT = "node /usr/local/lib/meshfleet/meshfleet-agent.mjs";
const NOISE_KEY = "/var/lib/headscale/noise_private.key";
const NODES = ["vps", "laptop", "lxc-tailscale"];
const say = (l: string) => process.stderr.write(`[seed-rotation] ${l}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function on(host: string, cmd: string, input?: string): Promise<string> {
  const r = await sshExec(host, cmd, { instance: INSTANCE, timeoutMs: 60_000, input });
  if (r.code !== 0) throw new Error(`${host}: ${cmd}: exit ${r.code}: ${(r.stderr || r.stdout).slice(0, 400)}`);
  return r.stdout;
}

type HsNode = { id: string | number; given_name: string; online?: boolean; ip_addresses: string[]; machine_key: string };
const nodes = async () => JSON.parse(await on("vps", `${HS} nodes list -o json`)) as HsNode[];
const serverKey = async () => (JSON.parse(await on("laptop", "curl -s --max-time 5 'https://203.0.113.10/key?v=130'")) as { publicKey: string }).publicKey;
const labNetns = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").filter((l) => l.startsWith(labTopology(INSTANCE).prefix));

describe.skipIf(skipUnlessCi(labMissing()))(`keySeed rotation on lab instance ${INSTANCE}`, () => {
  beforeAll(async () => {
    writeLabFleet(INSTANCE);
    const r = await labUp({ instance: INSTANCE, log: (l) => process.stderr.write(`[lab${INSTANCE}] ${l}\n`), noBuild: true });
    if (!r.ok) throw new Error(`lab up --instance ${INSTANCE}: ${r.error}`);
  }, 900_000);

  afterAll(async () => {
    await labDown({ instance: INSTANCE, log: () => {} });
    expect(labNetns()).toEqual([]);
  }, 300_000);

  // Issue 18 section 1: lab check's MSS item passes on the deployed router and fails once the clamp rule is gone.
  it("lab check's MSS transfer passes with the router's clamp and fails without it", async () => {
    const t0 = Date.now();
    const good = await mssTransferCheck(INSTANCE);
    say(`MSS check with the clamp: ${((Date.now() - t0) / 1000).toFixed(1)}s: ${good.why}`);
    expect(good.ok, good.why).toBe(true);
    await on("lxc-tailscale", `nft delete rule inet meshfleet forward handle $(nft -a list chain inet meshfleet forward | grep 'maxseg size set rt mtu' | grep -o 'handle [0-9]*' | cut -d' ' -f2)`);
    try {
      const bad = await mssTransferCheck(INSTANCE);
      expect(bad.ok, "the transfer worked without the clamp, so the check proves nothing").toBe(false);
      expect(bad.why).toMatch(/no clamp rule .* then the transfer stalled/);
    } finally {
      await on("lxc-tailscale", "systemctl restart meshfleet-firewall.service");
    }
    expect(await on("lxc-tailscale", "nft list chain inet meshfleet forward")).toMatch(/maxseg size set rt mtu/);
  }, 120_000);

  it("a new keySeed and meshfleet up: every node back online with the same id and addresses, the subnet route works, the old Noise key gone", async () => {
    // Before: every node online (earlier runs of this file rotate too; they leave the nodes online).
    for (let i = 0; i < 30 && !(await nodes()).every((n) => n.online); i++) await sleep(1000);
    const before = await nodes();
    expect(before.filter((n) => NODES.includes(n.given_name)).map((n) => [n.given_name, n.online])).toEqual(expect.arrayContaining(NODES.map((n) => [n, true])));
    // The old private key stays in this process's memory only, for the search at the end; never printed.
    const oldKey = (await on("vps", `cat ${NOISE_KEY}`)).trim();
    expect(oldKey).toMatch(/^privkey:[0-9a-f]{64}$/);
    const oldPub = await serverKey();
    expect(oldPub).toBe(`mkey:${publicKeyOf(oldKey)}`);

    const seed = randomBytes(32).toString("base64");
    const env = labPulumiEnv(INSTANCE);
    const set = await runPulumi(["config", "set", "--secret", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:keySeed"], { env, input: seed });
    expect(set.code, set.stderr).toBe(0);

    const t0 = Date.now();
    const r = await runDeploy({ verb: "up", stack: STACK, configFile: p.stackConfig, env, logFile: p.log, say: (l) => say(l.trim().slice(0, 160)) });
    const deployMs = Date.now() - t0;
    expect(r.ok, r.errors.join("\n")).toBe(true);
    // Every agent node's generation changed (its control key file), so the agent restarted tailscaled.
    const gens = r.resources.filter((x) => x.type === "meshfleet:host:Generation" && x.op === "update").map((x) => x.host).sort();
    expect(gens).toEqual([...NODES].sort());

    const newPub = `mkey:${publicKeyOf(derivePrivateKey(seed, "noise"))}`;
    expect(await serverKey()).toBe(newPub);
    expect(newPub).not.toBe(oldPub);

    let back: HsNode[] = [];
    let backMs = -1;
    for (let i = 0; i < 120; i++) {
      back = await nodes();
      if (NODES.every((n) => back.find((x) => x.given_name === n)?.online === true)) {
        backMs = Date.now() - t0;
        break;
      }
      await sleep(500);
    }
    say(`deploy ${(deployMs / 1000).toFixed(1)}s; every node online again ${(backMs / 1000).toFixed(1)}s after the deploy started`);
    expect(back.filter((n) => !n.online).map((n) => n.given_name), "offline in headscale after the rotation").toEqual([]);
    // Same registrations: no re-login, no new node, the same addresses.
    const view = (ns: HsNode[]) => ns.map((n) => ({ id: String(n.id), name: n.given_name, ips: [...n.ip_addresses].sort(), machine: n.machine_key })).sort((a, b) => a.id.localeCompare(b.id));
    expect(view(back)).toEqual(view(before));

    // The laptop's fresh netmap shows the router online, and a new connection to the NAS goes through the tunnel.
    for (let i = 0; i < 30; i++) {
      const st = JSON.parse(await on("laptop", `${TS} status --json`)) as { BackendState: string; Peer?: Record<string, { HostName: string; Online: boolean }> };
      if (st.BackendState === "Running" && Object.values(st.Peer ?? {}).some((x) => x.HostName === "lxc-tailscale" && x.Online)) break;
      if (i === 29) throw new Error(`laptop's status: ${st.BackendState}, lxc-tailscale not online`);
      await sleep(1000);
    }
    expect(await on("laptop", "ip route get 192.168.8.10")).toMatch(/dev tailscale0/);
    // The restarted tailscaleds make new WireGuard sessions; lxc-tailscale (trustTailnet: false) probably admits the
    // laptop again at a refresh of its peer sets (meshfleet-peers.timer, every 30 s): 14.7-42 s after the deploy's
    // start in the runs so far, so up to 90 s here.
    let nasMs = -1;
    for (let i = 0; i < 30 && nasMs < 0; i++) {
      if ((await sshExec("laptop", "nc -z -w 3 192.168.8.10 22", { instance: INSTANCE, timeoutMs: 15_000 })).code === 0) nasMs = Date.now() - t0;
    }
    say(`laptop -> nas 192.168.8.10:22 through lxc-tailscale connects ${(nasMs / 1000).toFixed(1)}s after the deploy started`);
    expect(nasMs, "laptop -> nas through the subnet route").toBeGreaterThan(0);

    // The coordinator: the new key in place; the generation kept for a rollback still holds the old one
    // until `gc --keep 1` drops it (the documented last step); then the old key is nowhere on the host.
    expect((await on("vps", `cat ${NOISE_KEY}`)).trim()).toBe(derivePrivateKey(seed, "noise"));
    const find = "grep -rlF -f /dev/stdin /var/lib /etc /root /tmp /run /usr/local 2>/dev/null || true";
    const holders = (await on("vps", find, oldKey.replace(/^privkey:/, "") + "\n")).trim().split("\n").filter(Boolean);
    say(`before gc the old Noise key is in: ${holders.join(", ") || "nothing"}`);
    // The search must find it where it is before gc (an older generation), or the "gone" check below proves nothing.
    expect(holders.some((f) => f.includes("/generations/")), `the search finds the old Noise key in a generation before gc: ${holders.join(", ")}`).toBe(true);
    await on("vps", `${AGENT} gc --keep 1`);
    expect((await on("vps", find, oldKey.replace(/^privkey:/, "") + "\n")).trim(), "files still holding the old Noise key").toBe("");
    expect(await on("vps", `${AGENT} verify`)).toMatch(/no drift/);
  }, 600_000);
});
