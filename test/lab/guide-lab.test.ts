/**
 * docs/deploy.md, run as written against lab instance 6, its hosts taken as
 * the user's (MESHFLEET_LAB_E2E=1, root, tools built).
 *
 * The commands are the guide's own: each code block marked `<!-- lab: run -->`
 * is taken from the Markdown and run by bash, one block after another in one
 * "terminal" (exports and `cd` carry over) with HOME a fresh folder, in a copy
 * of this working tree that stands for the user's clone. A block marked
 * `<!-- lab: skip: why -->` is not run; its lab equivalent is done here, and
 * named where it is done:
 *   - the clone and `npm ci`: the copy, with the tree's installed node_modules;
 *   - §2's copy of hosts/home: hosts/lab with instance 6's addresses, plus hosts/home's phone.yaml;
 *   - §4's DNS record: none needed, the lab's serverUrl is the VPS's address;
 *   - §6's apt-get lines: the lab's hosts come with Node.js and the built tools; this
 *     machine's caddy goes to the VPS, and the lab's internal CA is seeded and trusted
 *     (the VPS's reverse proxy is set to `tls: internal` for that, whatever hosts/lab uses);
 *   - §6's ssh-copy-id: the lab's key, authorized at boot, is put at ~/.ssh/id_ed25519;
 *   - §10's phone app: a fresh tailscaled on the lab's "derp" machine (a host on the
 *     internet side, as a phone on mobile data is), joined with the Desktop/CLI line
 *     `meshfleet join phone` printed.
 * "When something fails" is run after a change that goes bad on lxc-tailscale
 * (rollback, preview, the fleet fixed, `up --refresh`), and after drift made
 * by hand (forwarding turned off on the router).
 * The pre-auth key join prints is never logged: outputs are shown with it cut.
 */
import { spawn } from "node:child_process";
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { labDown } from "../../lab/e2e/down.ts";
import { provideCaddy, seedCaddyCa, trustCaddyCa } from "../../lab/e2e/prepare.ts";
import { REPO } from "../../lab/e2e/pulumi.ts";
import { hostsUp, labKeyPath, toolsDir } from "../../lab/hosts/index.ts";
import { labTopology } from "../../lab/topology.ts";
import { guideBlocks, type GuideBlock } from "../cli/guide-blocks.ts";
import { skipUnlessCi } from "./ci-gate.ts";
import { labMissing, labOn } from "./harness.ts";

const INSTANCE = 6;
const on = labOn(INSTANCE);
const TS = "/opt/meshfleet/tools/tailscale@1.98.10/bin";
const doc = readFileSync(join(REPO, "docs", "deploy.md"), "utf8");
const { blocks } = guideBlocks(doc);
const runnable = blocks.filter((b) => b.mode !== "skip");
const block = (section: string, i = 0): GuideBlock => {
  const b = runnable.filter((x) => x.section.includes(section))[i];
  if (!b) throw new Error(`docs/deploy.md: no runnable block in a section "${section}"`);
  return b;
};

interface Ran {
  code: number | null;
  /** stdout and stderr as they came. */
  out: string;
  stdout: string;
  ms: number;
}

describe.skipIf(skipUnlessCi(labMissing()))(`docs/deploy.md on lab instance ${INSTANCE}`, () => {
  const tmp = mkdtempSync(join(tmpdir(), "mf-guide-lab-"));
  const home = join(tmp, "home");
  const ws = join(tmp, "meshfleet");
  const state = join(tmp, "terminal");
  const secrets: string[] = [];
  const cut = (s: string) => secrets.reduce((t, k) => t.replaceAll(k, "[pre-auth key]"), s);

  /**
   * One block in the user's terminal: the previous blocks' exports and folder, `set -e`, HOME the user's.
   * The terminal skips the update checks of npm and Pulumi (the lab reaches no registry); nothing else is set.
   */
  function run(b: GuideBlock, timeoutMs = 900_000): Promise<Ran> {
    const script = join(state, `block-${b.line}.sh`);
    const wrapper = join(state, `block-${b.line}.run.sh`);
    writeFileSync(script, b.text + "\n");
    writeFileSync(
      wrapper,
      `set -eo pipefail\nsource ${state}/env\ncd "$(cat ${state}/pwd)"\nsource ${script}\n` +
        `pwd > ${state}/pwd\nexport -p | grep -v -E '^declare -x (OLDPWD|PWD|SHLVL|_)=' > ${state}/env\n`,
    );
    // A block that asks at the terminal runs in one (script(1) gives it a pty), and the user answers yes.
    const argv = b.mode === "run-yes" ? ["script", "-qefc", `bash ${wrapper}`, "/dev/null"] : ["bash", wrapper];
    const t0 = Date.now();
    return new Promise((resolve) => {
      const env = { PATH: process.env.PATH!, HOME: home, LANG: "C.UTF-8", TERM: "dumb", NPM_CONFIG_UPDATE_NOTIFIER: "false", PULUMI_SKIP_UPDATE_CHECK: "true", PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true" };
      const child = spawn(argv[0]!, argv.slice(1), { env, stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      let stdout = "";
      let answered = 0;
      const onData = (d: Buffer) => {
        out += d.toString();
        const asked = out.split("[y/N]").length - 1;
        if (b.mode === "run-yes" && asked > answered) {
          answered = asked;
          child.stdin.write("yes\n");
        }
      };
      child.stdout.on("data", (d: Buffer) => {
        stdout += d.toString();
        onData(d);
      });
      child.stderr.on("data", onData);
      const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs);
      child.on("close", (code) => {
        clearTimeout(timer);
        child.stdin.end();
        resolve({ code, out, stdout, ms: Date.now() - t0 });
      });
    });
  }
  async function mustRun(b: GuideBlock): Promise<Ran> {
    const r = await run(b);
    expect(r.code, `docs/deploy.md line ${b.line} (${b.section}):\n${b.text}\n---\n${cut(r.out).slice(-4000)}`).toBe(0);
    return r;
  }

  beforeAll(async () => {
    await labDown({ instance: INSTANCE, log: () => {} });
    const up = await hostsUp({ instance: INSTANCE, log: (l) => process.stderr.write(`[lab${INSTANCE}] ${l}\n`) });
    const down = up.hosts.filter((h) => h.kind === "nspawn" && (h.state !== "up" || !h.ssh));
    if (down.length > 0) throw new Error(`lab ${INSTANCE}: hosts without ssh after boot: ${down.map((h) => h.name).join(", ")}`);

    // The user's clone: this working tree as it is, without git's folder and its own hosts/mine or stack file.
    mkdirSync(ws, { recursive: true });
    for (const e of readdirSync(REPO)) {
      if (e === ".git" || e === "node_modules") continue;
      cpSync(join(REPO, e), join(ws, e), { recursive: true, preserveTimestamps: true, filter: (src) => !/\/hosts\/mine$|\/stacks\/Pulumi\.mine\.yaml$/.test(src) });
    }
    symlinkSync(join(REPO, "node_modules"), join(ws, "node_modules"));
    // Their home: the lab's key where the guide's ssh key is, and the tools cache where `tools build` keeps it.
    mkdirSync(join(home, ".ssh"), { recursive: true, mode: 0o700 });
    copyFileSync(labKeyPath({ instance: INSTANCE }), join(home, ".ssh", "id_ed25519"));
    chmodSync(join(home, ".ssh", "id_ed25519"), 0o600);
    mkdirSync(join(home, ".cache", "meshfleet"), { recursive: true });
    symlinkSync(toolsDir(), join(home, ".cache", "meshfleet", "tools"));
    mkdirSync(state, { recursive: true });
    writeFileSync(join(state, "env"), "");
    writeFileSync(join(state, "pwd"), ws + "\n");

    // §2, the lab's equivalent of copying hosts/home: hosts/lab on this instance's addresses, and the phone.
    const net = labTopology(INSTANCE).mgmtSubnet.replace(/\.0\/24$/, ".");
    mkdirSync(join(ws, "hosts", "mine"));
    for (const f of readdirSync(join(REPO, "hosts", "lab"))) {
      let text = readFileSync(join(REPO, "hosts", "lab", f), "utf8").replaceAll("172.31.240.", net);
      // The VPS's certificate from Caddy's internal CA, which this test seeds and every host trusts (§6 below).
      if (f === "vps.yaml") text = text.replace(/^reverse-proxy:\n(?:[ \t]+.*\n)*/m, "reverse-proxy:\n  kind: caddy\n  tls: internal\n");
      writeFileSync(join(ws, "hosts", "mine", f), text);
    }
    expect(readFileSync(join(ws, "hosts", "mine", "vps.yaml"), "utf8")).toMatch(/^reverse-proxy:\n  kind: caddy\n  tls: internal\n(?! )/m);
    copyFileSync(join(REPO, "hosts", "home", "phone.yaml"), join(ws, "hosts", "mine", "phone.yaml"));

    // §4 and §6, the lab's equivalents (see the file's comment).
    await provideCaddy("vps", INSTANCE);
    await seedCaddyCa("vps", INSTANCE);
    for (const h of ["vps", "lxc-tailscale", "laptop", "derp"]) await trustCaddyCa(h, INSTANCE);
  }, 600_000);

  afterAll(async () => {
    await labDown({ instance: INSTANCE, log: () => {} });
    rmSync(tmp, { recursive: true, force: true });
  }, 180_000);

  it("marks its blocks: the test runs each one marked run, in the guide's order", () => {
    expect(runnable.length).toBe(12);
  });

  it("§1 the workstation: the agent bundle and the pinned Pulumi CLI, on PATH", async () => {
    const r = await mustRun(block("1. The workstation"));
    expect(existsSync(join(ws, "dist", "meshfleet-agent.mjs"))).toBe(true);
    expect(r.out).toMatch(/pulumi\s+3\.248\.0\s+cached/);
    expect(readFileSync(join(state, "env"), "utf8")).toMatch(/PATH=".*\.cache\/meshfleet\/tools\/pulumi@3\.248\.0\/bin/);
  }, 300_000);

  it("§2 the fleet: check and hosts", async () => {
    const r = await mustRun(block("2. The fleet"));
    expect(r.out).toMatch(/lxc-tailscale/);
    expect(r.out).toMatch(/phone/);
  }, 120_000);

  it("§3 the stack and its secrets: the stack file holds the seed encrypted, nothing in clear", async () => {
    await mustRun(block("3. The stack"));
    const file = readFileSync(join(ws, "stacks", "Pulumi.mine.yaml"), "utf8");
    expect(file).toMatch(/encryptionsalt: /);
    expect(file).toMatch(/meshfleet:keySeed:\n\s+secure: /);
    expect(file).toContain(`meshfleet:sshPrivateKeyPath: ${home}/.ssh/id_ed25519`);
    expect(existsSync(join(home, ".config", "meshfleet", "passphrase"))).toBe(true);
    // The clone's, not the repo's.
    expect(existsSync(join(REPO, "stacks", "Pulumi.mine.yaml"))).toBe(false);
  }, 120_000);

  it("§7 pins every host's key in its host file", async () => {
    await mustRun(block("7. Pin"));
    for (const h of ["vps", "lxc-tailscale", "laptop"]) expect(readFileSync(join(ws, "hosts", "mine", `${h}.yaml`), "utf8"), h).toMatch(/hostKey: ssh-ed25519 /);
  }, 120_000);

  it("§8 preflight: doctor passes before the first deploy", async () => {
    const r = await mustRun(block("8. Preflight"));
    expect(r.out).not.toMatch(/^FAIL /m);
  }, 180_000);

  it("§9 the first deploy: preview, then up answered yes at the terminal", async () => {
    const r = await mustRun(block("9. The first deploy", 0));
    expect(r.out).toMatch(/Do you want to perform this up\? \[y\/N\]/);
    for (const h of ["vps", "lxc-tailscale", "laptop"]) await on(h, "node /usr/local/lib/meshfleet/meshfleet-agent.mjs verify");
  }, 900_000);

  it("§9 status and doctor after: every host confirmed, the route approved, doctor clean", async () => {
    const r = await mustRun(block("9. The first deploy", 1));
    expect(r.out).toMatch(/192\.168\.8\.0\/24/);
    expect(r.out).not.toMatch(/^FAIL /m);
    expect(r.out).not.toMatch(/UNREACHABLE|UNCONFIRMED|NOT APPROVED/);
  }, 300_000);

  it("§10 joining the phone: join prints the key, a fresh tailscaled joins with its Desktop/CLI line, status lists it", async () => {
    const r = await mustRun(block("10. Joining the phone"));
    const key = /^Pre-auth key: (\S+)$/m.exec(r.out)?.[1];
    expect(key, "join printed a pre-auth key").toBeTruthy();
    secrets.push(key!);
    const line = /^Desktop\/CLI: .*?; then: sudo (tailscale up [^;]+); then sudo rm (\S+)$/m.exec(r.out);
    expect(line, cut(r.out)).toBeTruthy();
    // The phone's app, installed: tailscaled on a machine of its own on the internet side.
    await on("derp", `mkdir -p /var/lib/phone && systemd-run --unit=phone-tailscaled ${TS}/tailscaled --state=/var/lib/phone/tailscaled.state --tun=userspace-networking --port=41641`);
    await on("derp", "for i in $(seq 1 100); do [ -S /var/run/tailscale/tailscaled.sock ] && exit 0; sleep 0.2; done; exit 1");
    // Its Desktop/CLI line as printed: the key into a file only root reads, `tailscale up`, the file removed.
    await on("derp", `install -m 600 /dev/stdin /etc/tailscale-authkey`, { input: key + "\n" });
    await on("derp", `PATH=${TS}:$PATH ${line![1]!}`, { timeoutMs: 120_000 });
    await on("derp", `rm ${line![2]!}`);
    const st = JSON.parse(await on("derp", `${TS}/tailscale status --json`)) as { BackendState: string; Self: { HostName: string } };
    expect(st.BackendState).toBe("Running");
    const status = await mustRun({ ...block("9. The first deploy", 1), text: "npx meshfleet status --stack mine --json" });
    const j = JSON.parse(status.stdout) as { hosts: { host: string; tailscale: { peers: { peer: string }[] } }[] };
    // The policy lets alice's devices reach tag:server (the VPS) and tag:router's web ports: both see the phone.
    for (const h of ["vps", "lxc-tailscale"]) expect(j.hosts.find((x) => x.host === h)!.tailscale.peers.map((p) => p.peer), h).toContain("phone");
  }, 300_000);

  it("when something fails: a bad change on lxc-tailscale, then generations and rollback as the guide says", async () => {
    type Row = { host: string; generation: { n: number; hash: string; confirmed: boolean }; drift: { clean: boolean } };
    const routerStatus = async (): Promise<Row> => JSON.parse((await mustRun({ ...block("9. The first deploy", 1), text: "npx meshfleet status --stack mine --on lxc-tailscale --json" })).stdout).hosts[0];
    const good = await routerStatus();
    // A change that turned out bad: one more sysctl, deployed to the router alone.
    const hostFile = join(ws, "hosts", "mine", "lxc-tailscale.yaml");
    const inGit = readFileSync(hostFile, "utf8");
    writeFileSync(hostFile, inGit + `kernel:\n  sysctl:\n    net.core.somaxconn: "4097"\n`);
    const bad = await run({ ...block("9. The first deploy", 0), mode: "run", text: "npx meshfleet up --stack mine --on lxc-tailscale --yes" });
    expect(bad.code, cut(bad.out)).toBe(0);
    expect((await on("lxc-tailscale", "cat /etc/sysctl.d/*meshfleet*")).includes("net.core.somaxconn")).toBe(true);
    expect((await routerStatus()).generation.n).toBeGreaterThan(good.generation.n);

    const r = await mustRun(block("When something fails"));
    expect(r.out).toMatch(new RegExp(`generation ${good.generation.n} \\(${good.generation.hash.slice(0, 12)}\\) is current and confirmed over a new SSH connection; no drift`));
    // As the guide says: status shows the older generation, confirmed, no drift; the host is behind the fleet in git.
    expect(await routerStatus()).toMatchObject({ host: "lxc-tailscale", generation: { n: good.generation.n, hash: good.generation.hash, confirmed: true }, drift: { clean: true } });
    expect(await on("lxc-tailscale", "cat /etc/sysctl.d/*meshfleet* 2>/dev/null; true")).not.toContain("net.core.somaxconn");
    expect(r.out).toContain("lxc-tailscale is now behind the fleet in git");

    // The preview shows the router would change back; the fleet is fixed in git; `up --refresh` deploys it.
    const pv = await mustRun(block("When something fails", 1));
    expect(pv.out).toMatch(/lxc-tailscale\s+~\s+meshfleet:host:Generation .* will update/);
    writeFileSync(hostFile, inGit);
    await mustRun(block("When something fails", 2));
    expect(await routerStatus()).toMatchObject({ generation: { confirmed: true }, drift: { clean: true } });
    expect(await on("lxc-tailscale", "cat /etc/sysctl.d/*meshfleet* 2>/dev/null; true")).not.toContain("net.core.somaxconn");
  }, 600_000);

  it("drift made by hand: status shows it, refresh --preview-only names the resource, up --refresh puts it back", async () => {
    await on("lxc-tailscale", "sysctl -w net.ipv4.ip_forward=0");
    const r = await mustRun(block("When something fails", 3));
    expect(r.out).toMatch(/drift lxc-tailscale: .*ip_forward/);
    expect(r.out).toMatch(/lxc-tailscale\s+~\s+meshfleet:host:Generation/);
    expect((await on("lxc-tailscale", "sysctl -n net.ipv4.ip_forward")).trim()).toBe("1");
    const after = await mustRun({ ...block("9. The first deploy", 1), text: "npx meshfleet status --stack mine --on lxc-tailscale --json" });
    expect(JSON.parse(after.stdout).hosts[0]).toMatchObject({ generation: { confirmed: true }, drift: { clean: true } });
  }, 600_000);
});
