/**
 * `meshfleet up --reboot-check` against the real lab (issue 18 §4;
 * MESHFLEET_LAB_E2E=1, root, tools built; in CI a missing prerequisite fails,
 * never skips). Lab instance 8, with a copy of hosts/lab whose SSH addresses
 * are instance 8's; `lab up` deploys it and `lab down` removes it at the end.
 * (test/lab/hosts.test.ts boots instance 8 too: the two do not run at once.)
 *
 * Proved here:
 *   - `up --reboot-check --on lxc-tailscale` reboots the subnet router (the
 *     lab restarts a container that exits 133) and passes: the router answers
 *     on a new boot id with its generation active and confirmed, table inet
 *     meshfleet loaded, tailscale Running, 192.168.8.0/24 advertised, verify
 *     clean; the coordinator brought along by --on is not rebooted;
 *   - with a unit that stops tailscaled after each boot (added by hand),
 *     the same command fails naming the host and tailscale, says the
 *     generation was not rolled back, and names `meshfleet rollback`.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runDeploy, type DeployResult } from "../../cli/commands/deploy.ts";
import { sshExec } from "../../lab/hosts/index.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths, STACK } from "../../lab/e2e/paths.ts";
import { labPulumiEnv } from "../../lab/e2e/pulumi.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { labTopology } from "../../lab/topology.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { labMissing, labOn, writeLabFleet } from "../lab/harness.ts";

const INSTANCE = 8;
const p = e2ePaths(INSTANCE);
const HOSTS = join(p.dir, `hosts-lab${INSTANCE}`);
const TS = "/opt/meshfleet/tools/tailscale@1.98.10/bin/tailscale";
const AGENT = "node /usr/local/lib/meshfleet/meshfleet-agent.mjs";
const ROUTER = "lxc-tailscale";
const FAULT_UNIT = "meshfleet-test-fault.service";
const FAULT = `/etc/systemd/system/${FAULT_UNIT}`;

/** hosts/lab with instance INSTANCE's SSH addresses, named as the stack's fleet folder. */
const writeInstanceFleet = () => writeLabFleet(INSTANCE);

const on = labOn(INSTANCE);

const bootId = async (host: string) => (await on(host, "cat /proc/sys/kernel/random/boot_id")).trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What `up` printed, the provider's progress lines among it. */
const said: string[] = [];

function rebootUp(): Promise<DeployResult> {
  return runDeploy({
    verb: "up",
    stack: STACK,
    configFile: p.stackConfig,
    env: labPulumiEnv(INSTANCE),
    on: [ROUTER],
    rebootCheck: true,
    logFile: p.log,
    say: (l) => {
      said.push(l);
      process.stderr.write(`[reboot-lab] ${l}\n`);
    },
  });
}

const labNetns = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").filter((l) => l.startsWith(labTopology(INSTANCE).prefix));

describe.skipIf(skipUnlessCi(labMissing()))(`up --reboot-check on lab instance ${INSTANCE}`, () => {
  beforeAll(async () => {
    writeInstanceFleet();
    const r = await labUp({ instance: INSTANCE, log: (l) => process.stderr.write(`[lab${INSTANCE}] ${l}\n`), noBuild: true });
    if (!r.ok) throw new Error(`lab up --instance ${INSTANCE}: ${r.error}`);
  }, 900_000);

  afterAll(async () => {
    await labDown({ instance: INSTANCE, log: () => {} });
    expect(labNetns()).toEqual([]);
  }, 300_000);

  it("reboots the subnet router, which comes back whole: new boot, generation active, firewall, tailscale, routes, no drift", async () => {
    const before = await bootId(ROUTER);
    const vpsBefore = await bootId("vps");
    const hash = JSON.parse(await on(ROUTER, `${AGENT} status --json`)).hash as string;
    const t0 = Date.now();
    const r = await rebootUp();
    const ms = Date.now() - t0;
    expect(r.ok, r.errors.join("\n")).toBe(true);
    const gen = r.resources.find((x) => x.type === "meshfleet:host:Generation" && x.host === ROUTER && x.diff?.some((d) => d.key === "rebootCheck"));
    expect(gen, "the router's Generation was updated for the reboot").toBeDefined();
    // The wait is not silent: the provider's progress reaches `up`'s output under the router's name.
    const progress = said.filter((l) => l.includes(`${ROUTER} `) && l.includes("--reboot-check:")).join("\n");
    expect(progress).toMatch(/--reboot-check: rebooting; waiting up to \d+s/);
    expect(progress).toMatch(/--reboot-check: back on a new boot after [\d.]+s/);
    expect(progress).toMatch(/--reboot-check: passed in [\d.]+s/);
    process.stderr.write(`[reboot-lab] up --reboot-check --on ${ROUTER}: ${(ms / 1000).toFixed(1)}s in all, the router's Generation (switch, reboot, checks) ${((gen!.ms ?? 0) / 1000).toFixed(1)}s\n`);

    expect(await bootId(ROUTER)).not.toBe(before);
    expect(await bootId("vps"), "the coordinator --on brings along is not rebooted").toBe(vpsBefore);
    const st = JSON.parse(await on(ROUTER, `${AGENT} status --json`));
    expect(st).toMatchObject({ hash, pendingConfirm: null });
    expect(await on(ROUTER, "nft list table inet meshfleet")).toMatch(/table inet meshfleet/);
    expect(JSON.parse(await on(ROUTER, `${TS} status --json`)).BackendState).toBe("Running");
    expect(JSON.parse(await on(ROUTER, `${TS} debug prefs`)).AdvertiseRoutes).toContain("192.168.8.0/24");
    expect(await on(ROUTER, `${AGENT} verify`)).toMatch(/no drift/);
  }, 420_000);

  it("fails naming the host and tailscale when tailscaled does not come back after the boot, and says nothing was rolled back", async () => {
    // A unit of nobody's that stops tailscaled after each boot: the router runs fine until the reboot. (A fault the
    // agent sees as drift, `systemctl disable tailscaled` or a drop-in, is repaired by the switch before the reboot.)
    await on(ROUTER, `printf '%s\\n' '[Unit]' 'After=tailscaled.service' '[Service]' 'Type=oneshot' 'ExecStart=/bin/systemctl stop tailscaled.service' '[Install]' 'WantedBy=multi-user.target' > ${FAULT} && systemctl daemon-reload && systemctl enable ${FAULT_UNIT}`);
    try {
      const before = await bootId(ROUTER);
      const r = await rebootUp();
      expect(r.ok).toBe(false);
      const err = r.errors.join("\n");
      expect(err).toMatch(new RegExp(`host ${ROUTER}: --reboot-check: the host came back .* but not whole`));
      expect(err).toMatch(/tailscale: BackendState is .*, expected Running/);
      expect(err).toMatch(/routes: .*192\.168\.8\.0\/24/);
      expect(err).toMatch(/drift: unit tailscaled\.service: is (inactive|failed), expected active/);
      expect(err).toContain("not rolled back");
      expect(err).toContain(`meshfleet rollback --on ${ROUTER}`);
      expect(await bootId(ROUTER)).not.toBe(before);
      expect(JSON.parse(await on(ROUTER, `${AGENT} status --json`)).pendingConfirm, "nothing awaits a confirm: the generation stays").toBeNull();
    } finally {
      await on(ROUTER, `systemctl disable ${FAULT_UNIT}; rm -f ${FAULT} && systemctl daemon-reload && systemctl start tailscaled`);
    }
    // Put back by hand, the router passes the same check again.
    for (let i = 0; i < 30; i++) {
      const s = await sshExec(ROUTER, `${TS} status --json`, { instance: INSTANCE, timeoutMs: 15_000 });
      if (s.code === 0 && JSON.parse(s.stdout).BackendState === "Running") break;
      await sleep(1000);
    }
    const again = await rebootUp();
    expect(again.ok, again.errors.join("\n")).toBe(true);
  }, 900_000);
});
