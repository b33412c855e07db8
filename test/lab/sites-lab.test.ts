/**
 * Sites as stacks (issue 19, docs/sites.md) on the real lab, instance 4
 * (MESHFLEET_LAB_E2E=1, root, tools built; in CI a missing prerequisite
 * fails, never skips). Booted fresh (vps, lxc-tailscale, nas, laptop and the
 * two NATs; not the derp host) and taken down at the end.
 *
 * hosts/lab split into three folders beside each other (written by the test,
 * with instance 4's SSH addresses), three stacks on one backend:
 *   - lab-core:   the VPS (headscale, Caddy with pebble's certificate, DERP)
 *                 and the fleet's users, DNS and policy; sites: [lab-home, lab-laptop];
 *   - lab-home:   the home LAN's subnet router lxc-tailscale (the nas is on its LAN);
 *   - lab-laptop: the laptop behind its own NAT (the lab's second LAN).
 * Every deploy goes through the CLI (`meshfleet up --stack S --config-file …`).
 *
 * Proved here:
 *   - a site deployed before its core exists is refused, naming the core and
 *     the fix, and its host gets nothing;
 *   - the core's up deploys the VPS alone; each site's up deploys its own
 *     host alone (the other hosts' generations stay as they were), its keys
 *     and the coordinator's URL read from the core stack (StackReference on
 *     the lab's passphrase backend); no pre-auth key in any output;
 *   - both sites' nodes are in the one headscale, the home router's route
 *     auto-approved by the core's policy, and the laptop reaches the nas
 *     (192.168.8.10, on the other site's LAN) through tailscale0;
 *   - a policy change in the core (alice loses the home LAN): `plan` from
 *     each site's stack shows the laptop losing the nas and lxc-tailscale's
 *     new generation headed with its stack; the home site's up is refused
 *     while the core runs the old policy (policySha256), nothing switches;
 *     after the core's up the laptop no longer reaches the nas, and the home
 *     site's up then goes through, touching lxc-tailscale alone.
 */
import { execa } from "execa";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openStack } from "../../cli/commands/deploy.ts";
import { labKeyPath, labKnownHostsPath, hostsUp } from "../../lab/hosts/index.ts";
import { acmeDir, pebbleBinary, pushListenerCa, startAcme, trustAcmeRoot } from "../../lab/e2e/acme.ts";
import { hsCli } from "../../lab/e2e/coordinator-runtime.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths } from "../../lab/e2e/paths.ts";
import { waitTailnetRoute } from "../../lab/e2e/ping.ts";
import { provideCaddy } from "../../lab/e2e/prepare.ts";
import { failureSummary, keptSecret, labPulumiEnv, REPO, runPulumi } from "../../lab/e2e/pulumi.ts";
import { labTopology } from "../../lab/topology.ts";
import { skipUnlessCi } from "./ci-gate.ts";
import { labMissing, labOn } from "./harness.ts";

const INSTANCE = 4;
const p = e2ePaths(INSTANCE);
const CORE = "lab-core";
const HOME = "lab-home";
const AWAY = "lab-laptop";
/** Which lab host each stack deploys. */
const OWN: Record<string, string> = { [CORE]: "vps", [HOME]: "lxc-tailscale", [AWAY]: "laptop" };
const FLEET_HOSTS = Object.values(OWN);
const BOOT = ["vps", "lxc-tailscale", "nas", "laptop"];
const NAS = "192.168.8.10";
const AGENT = "/usr/local/lib/meshfleet/meshfleet-agent.mjs";
const ROOT = join(p.dir, "sites");
const cfgFile = (stack: string) => join(p.dir, `Pulumi.${stack}.yaml`);
const on = labOn(INSTANCE);
const say = (l: string) => process.stderr.write(`[sites-lab] ${l}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** hosts/lab's fleet.yaml policy lines the policy change edits (the test fails loudly if hosts/lab changes them). */
const LAN_GRANT = 'dst: ["192.168.8.0/24:*", "tag:server:*", "tag:router:80,443"]';
const LAN_TEST = 'accept: ["192.168.8.10:22", "tag:server:22", "tag:router:443"]\n      deny: ["tag:router:22"]';

function replaceOnce(text: string, from: string, to: string): string {
  if (!text.includes(from)) throw new Error(`hosts/lab/fleet.yaml no longer holds ${from}; update sites-lab's policy change`);
  return text.replace(from, to);
}

/**
 * hosts/lab as three folders under ROOT: the core (the VPS, fleet.yaml with
 * sites) and one folder per site (its host, and a fleet.yaml of core: only).
 * `narrowed`: the core's policy without alice's grant to the home LAN.
 */
function writeSites(narrowed = false): void {
  const net = labTopology(INSTANCE).mgmtSubnet.replace(/\.0\/24$/, ".");
  const src = (f: string) => readFileSync(join(REPO, "hosts", "lab", f), "utf8").replaceAll("172.31.240.", net);
  let fleet = src("fleet.yaml") + `sites: [${HOME}, ${AWAY}]\n`;
  if (narrowed) {
    fleet = replaceOnce(fleet, LAN_GRANT, 'dst: ["tag:server:*", "tag:router:80,443"]');
    fleet = replaceOnce(fleet, LAN_TEST, 'accept: ["tag:server:22", "tag:router:443"]\n      deny: ["tag:router:22", "192.168.8.10:22"]');
  }
  const files: Record<string, Record<string, string>> = {
    [CORE]: { "fleet.yaml": fleet },
    [HOME]: { "fleet.yaml": `core:\n  stack: ${CORE}\n  dir: ../${CORE}\n` },
    [AWAY]: { "fleet.yaml": `core:\n  stack: ${CORE}\n  dir: ../${CORE}\n` },
  };
  for (const [stack, host] of Object.entries(OWN)) {
    files[stack]![`${host}.yaml`] = src(`${host}.yaml`);
    files[stack]!["_tools.yaml"] = src("_tools.yaml");
  }
  for (const [stack, fs] of Object.entries(files)) {
    mkdirSync(join(ROOT, stack), { recursive: true });
    for (const [f, text] of Object.entries(fs)) writeFileSync(join(ROOT, stack, f), text);
  }
}

describe.skipIf(skipUnlessCi(labMissing() || ("missing" in pebbleBinary() && (pebbleBinary() as { missing: string }).missing)))(`sites as stacks on lab instance ${INSTANCE}: a core and two site stacks`, () => {
  let env: Record<string, string> = {};
  let stateDir = "";
  const times: Record<string, number> = {};
  const t0 = Date.now();

  /** `meshfleet <args>` as a whole CLI process with the lab's backend; an up also checks that no pre-auth key is printed. */
  async function cli(...args: string[]): Promise<{ code: number | undefined; out: string; stdout: string; ms: number }> {
    const t = Date.now();
    const r = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), ...args], {
      cwd: REPO,
      reject: false,
      env: { ...process.env, ...env, MESHFLEET_STATE_DIR: stateDir },
      timeout: 900_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out, `meshfleet ${args.join(" ")} printed a pre-auth key`).not.toMatch(/hskey-auth-[A-Za-z0-9]/);
    return { code: r.exitCode, out, stdout: String(r.stdout), ms: Date.now() - t };
  }
  const up = (stack: string) => cli("up", "--stack", stack, "--config-file", cfgFile(stack), "--yes");
  const timed = async <T extends { ms: number }>(name: string, r: Promise<T>): Promise<T> => {
    const x = await r;
    times[name] = x.ms;
    say(`${name}: ${(x.ms / 1000).toFixed(1)} s`);
    return x;
  };

  /** Each fleet host's generation as its agent reports it (null: no agent there, nothing deployed). */
  async function generations(): Promise<Record<string, string | null>> {
    const out: Record<string, string | null> = {};
    for (const h of FLEET_HOSTS) {
      const s = await on(h, `test -e ${AGENT} && node ${AGENT} status --json || echo null`);
      const j = JSON.parse(s) as { generation?: number; hash?: string } | null;
      out[h] = j ? `${j.generation} ${j.hash}` : null;
    }
    return out;
  }

  /** A stack on the lab's backend (one passphrase for all three) with its config file; only the core gets a key seed. */
  async function makeStack(stack: string): Promise<void> {
    writeFileSync(
      cfgFile(stack),
      `config:\n  meshfleet:hostsDir: ${join(ROOT, stack)}\n  meshfleet:sshPrivateKeyPath: ${labKeyPath({ instance: INSTANCE })}\n  meshfleet:knownHostsPath: ${labKnownHostsPath({ instance: INSTANCE })}\n  meshfleet:agentPath: ${resolve(REPO, "dist/meshfleet-agent.mjs")}\n  meshfleet:confirmTimeoutSeconds: 60\n`,
    );
    await openStack({ stack, configFile: cfgFile(stack), env, program: async () => ({}) });
    if (stack !== CORE) return;
    const set = await runPulumi(["config", "set", "--secret", "--config-file", cfgFile(CORE), "--stack", CORE, "meshfleet:keySeed"], { env, input: keptSecret(p.keySeed, 32) });
    if (set.code !== 0) throw new Error(`pulumi config set meshfleet:keySeed: ${failureSummary(set)}`);
  }

  /** laptop -> nas:22 over the tailnet: the SSH banner's first bytes, or "" when nothing answers within 5 s. */
  const nasBanner = async () => (await on("laptop", `timeout 5 bash -c 'exec 3<>/dev/tcp/${NAS}/22; head -c 7 <&3' 2>/dev/null || true`)).trim();

  beforeAll(async () => {
    // Fresh: whatever an earlier run left on this instance goes first (its stack state with it).
    await labDown({ instance: INSTANCE, log: () => {} });
    for (const s of Object.keys(OWN)) rmSync(cfgFile(s), { force: true });
    rmSync(ROOT, { recursive: true, force: true });
    stateDir = mkdtempSync(join(tmpdir(), "mf-sites-lab-"));
    let t = Date.now();
    const booted = await hostsUp({ instance: INSTANCE, hosts: BOOT });
    const down = booted.hosts.filter((h) => BOOT.includes(h.name) && (h.state !== "up" || !h.ssh));
    if (down.length) throw new Error(`hosts without ssh after boot: ${down.map((h) => h.name).join(", ")}`);
    times.boot = Date.now() - t;
    say(`boot ${BOOT.join(", ")}: ${(times.boot / 1000).toFixed(1)} s`);

    // What `lab up` does before its deploy, for these hosts: the agent bundle, Caddy on the VPS, pebble and its roots.
    t = Date.now();
    const built = await execa(process.execPath, [join(REPO, "agent", "build.mjs")], { reject: false, cwd: REPO });
    if (built.exitCode !== 0) throw new Error(`agent bundle: ${String(built.stderr).slice(-400)}`);
    await provideCaddy("vps", INSTANCE);
    const acme = await startAcme({ instance: INSTANCE, dir: acmeDir(INSTANCE) });
    await pushListenerCa("vps", acme.listenerCa, INSTANCE);
    for (const h of FLEET_HOSTS) await trustAcmeRoot(h, acme.root, INSTANCE);

    // Three folders, the two sites' stacks on the lab's backend (the core's is made by the first case).
    writeSites();
    env = labPulumiEnv(INSTANCE);
    for (const stack of [HOME, AWAY]) await makeStack(stack);
    times.prepare = Date.now() - t;
    say(`prepare (agent bundle, Caddy, pebble, stacks): ${(times.prepare / 1000).toFixed(1)} s`);
  }, 900_000);

  afterAll(async () => {
    await labDown({ instance: INSTANCE, log: () => {} });
    for (const s of Object.keys(OWN)) rmSync(cfgFile(s), { force: true });
    rmSync(ROOT, { recursive: true, force: true });
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    say(`times (s): ${Object.entries({ ...times, file: Date.now() - t0 }).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`).join(", ")}`);
  }, 300_000);

  it("a site deployed before its core is refused, naming the core and the fix, while the core's stack is missing and while it is not deployed; its host gets nothing", async () => {
    const missing = await timed("site up, no core stack (refused)", up(HOME));
    expect(missing.code, missing.out.slice(-2000)).not.toBe(0);
    expect(missing.out).toMatch(new RegExp(`the core stack ${CORE} could not be read .*Fix: deploy the core first \\(\`meshfleet up --stack ${CORE}\`\\)`));
    // The core's stack made (as `meshfleet up --stack lab-core` would) but not deployed: it has no outputs yet.
    await makeStack(CORE);
    const empty = await timed("site up, core not deployed (refused)", up(HOME));
    expect(empty.code, empty.out.slice(-2000)).not.toBe(0);
    expect(empty.out).toContain(`core stack ${CORE}: expected its outputs coordinatorUrl and policySha256, found none (is the core deployed?). Fix: meshfleet up --stack ${CORE} first`);
    expect(await generations()).toEqual({ vps: null, "lxc-tailscale": null, laptop: null });
  }, 900_000);

  it("the core's up deploys the VPS alone; each site's up its own host alone, keys and URL read from the core", async () => {
    if (!existsSync(cfgFile(CORE))) await makeStack(CORE); // the case above stopped before it made it
    const core = await timed("core up", up(CORE));
    expect(core.code, core.out.slice(-3000)).toBe(0);
    const g1 = await generations();
    expect(g1.vps).not.toBeNull();
    expect({ lxc: g1["lxc-tailscale"], laptop: g1.laptop }).toEqual({ lxc: null, laptop: null });

    const home = await timed("home site up", up(HOME));
    expect(home.code, home.out.slice(-3000)).toBe(0);
    const g2 = await generations();
    expect(g2["lxc-tailscale"]).not.toBeNull();
    expect({ vps: g2.vps, laptop: g2.laptop }).toEqual({ vps: g1.vps, laptop: null });

    const away = await timed("laptop site up", up(AWAY));
    expect(away.code, away.out.slice(-3000)).toBe(0);
    const g3 = await generations();
    expect(g3.laptop).not.toBeNull();
    expect({ vps: g3.vps, lxc: g3["lxc-tailscale"] }).toEqual({ vps: g2.vps, lxc: g2["lxc-tailscale"] });

    // What each site read from the core: the coordinator's URL its hosts log in to (the sites export no keys of their own).
    for (const r of [home, away]) {
      expect(r.out).toContain("output coordinatorUrl: https://203.0.113.10");
      expect(r.out).not.toMatch(/output (sites|policySha256|noisePublicKey):/);
    }
    expect(core.out).toMatch(/output sites: "?\[secret\]/);
  }, 1_800_000);

  it("both sites' nodes join the one headscale; the laptop reaches the nas through the home site's router", async () => {
    const t = Date.now();
    type Node = { given_name: string; online?: boolean; approved_routes?: string[] };
    let nodes: Node[] = [];
    for (let i = 0; i < 30; i++) {
      nodes = JSON.parse((await on("vps", `${hsCli()} nodes list -o json`)) || "[]") as Node[];
      if (FLEET_HOSTS.every((h) => nodes.some((n) => n.given_name === h && n.online))) break;
      await sleep(1000);
    }
    expect(nodes.map((n) => `${n.given_name} ${n.online ? "online" : "offline"}`).sort()).toEqual(["laptop online", "lxc-tailscale online", "vps online"]);
    expect(nodes.find((n) => n.given_name === "lxc-tailscale")!.approved_routes).toContain("192.168.8.0/24");
    await waitTailnetRoute(INSTANCE, "laptop", NAS, 30_000);
    let banner = "";
    for (let i = 0; i < 10 && !banner.startsWith("SSH-"); i++) {
      banner = await nasBanner();
      if (!banner.startsWith("SSH-")) await sleep(1000);
    }
    expect(banner).toMatch(/^SSH-/);
    const ping = await on("laptop", `ping -n -c 3 -W 3 ${NAS}`);
    expect(ping).toMatch(/3 packets transmitted, 3 received/);
    times.traffic = Date.now() - t;
  }, 300_000);

  it("a policy change in the core: plan from each site shows it; the site is refused until the core is up; then it goes through", async () => {
    // The folders as deployed are the base revision of a git history of their own.
    const git = (...a: string[]) => execFileSync("git", ["-c", "user.name=sites-lab", "-c", "user.email=sites-lab@example.invalid", ...a], { cwd: ROOT, encoding: "utf8" });
    git("init", "-q");
    git("add", ".");
    git("commit", "-q", "-m", "as deployed");
    writeSites(true);

    for (const site of [HOME, AWAY]) {
      const r = await timed(`plan from ${site}`, cli("plan", "--base", "HEAD", "--hosts-dir", join(ROOT, site), "--stack", site));
      expect(r.code, r.out.slice(-2000)).toBe(0);
      // The whole fleet from either site: the laptop loses the nas, and the other stacks' hosts change, each under its stack.
      expect(r.out).toContain(`the whole fleet of stacks ${CORE}, ${HOME}, ${AWAY} (this stack deploys ${OWN[site]})`);
      expect(r.out).toContain(`#### \`lxc-tailscale\` — stack ${HOME}`);
      expect(r.out).toContain(`#### \`vps\` — stack ${CORE}`);
      const j = await cli("plan", "--base", "HEAD", "--hosts-dir", join(ROOT, site), "--stack", site, "--json");
      expect(j.code).toBe(0);
      const d = JSON.parse(j.stdout) as { reach: { lost: { src: string; dst: string }[] }; generations: { host: string; stack?: string }[] };
      expect(d.reach.lost.map((x) => `${x.src} -> ${x.dst}`)).toContain("laptop -> 192.168.8.0/24 via lxc-tailscale");
      expect(d.generations.map((g) => `${g.host} ${g.stack}`)).toEqual(expect.arrayContaining([`lxc-tailscale ${HOME}`, `vps ${CORE}`]));
    }

    // The home site before the core: refused (the core runs the old policy), nothing switches.
    const before = await generations();
    const refused = await timed("home site up, core behind (refused)", up(HOME));
    expect(refused.code, refused.out.slice(-2000)).not.toBe(0);
    expect(refused.out).toMatch(new RegExp(`core stack ${CORE}: policySha256: .*Fix: \`?meshfleet up --stack ${CORE}\`? first, then this site`));
    expect(await generations()).toEqual(before);

    // The core first: headscale takes the new policy and the laptop loses the nas at once (the home router's own table is still the old one).
    const core = await timed("core up, new policy", up(CORE));
    expect(core.code, core.out.slice(-3000)).toBe(0);
    const g1 = await generations();
    expect(g1.vps).not.toBe(before.vps);
    expect({ lxc: g1["lxc-tailscale"], laptop: g1.laptop }).toEqual({ lxc: before["lxc-tailscale"], laptop: before.laptop });
    let banner = "SSH-";
    for (let i = 0; i < 20 && banner.startsWith("SSH-"); i++) {
      banner = await nasBanner();
      if (banner.startsWith("SSH-")) await sleep(1000);
    }
    expect(banner, "the laptop still reaches nas:22 after the core's policy took its grant away").toBe("");

    // Then the site: it goes through and switches lxc-tailscale alone.
    const home = await timed("home site up, after the core", up(HOME));
    expect(home.code, home.out.slice(-3000)).toBe(0);
    const g2 = await generations();
    expect(g2["lxc-tailscale"]).not.toBe(before["lxc-tailscale"]);
    expect({ vps: g2.vps, laptop: g2.laptop }).toEqual({ vps: g1.vps, laptop: g1.laptop });
    expect(await nasBanner()).toBe("");
  }, 1_800_000);
});
