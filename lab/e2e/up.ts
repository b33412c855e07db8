/**
 * `meshfleet lab up`: tools, hosts, agent bundle, the lab-only preparations,
 * then `meshfleet up` (the same runDeploy, in this process) deploying
 * hosts/lab on stack `lab` with the lab's own backend, passphrase and config
 * file, and last `agent verify` on every host, so drift is counted, not
 * assumed. Every step prints its progress; the first failure stops the run
 * and is named.
 */
import { execa } from "execa";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hostsUp, labKeyPath, labKnownHostsPath } from "../hosts/index.ts";
import { buildTools, toolsStatus } from "../tools/index.ts";
import { dropStackState } from "./down.ts";
import { e2ePaths } from "./paths.ts";
import { provideCaddy } from "./prepare.ts";
import { acmeDir, pushListenerCa, startAcme, trustAcmeRoot, verifyAcmeTls, type AcmeServer } from "./acme.ts";
import { Progress, StepError, type StepRecord } from "./progress.ts";
import { runDeploy, type HostResult } from "../../cli/commands/deploy.ts";
import { AGENT_HOST_PATH } from "../../core/types.ts";
import { sshExec } from "../hosts/index.ts";
import { labPulumiEnv, REPO, STACK } from "./pulumi.ts";
import { ensureStack } from "./stack.ts";
import { prepareVariant, provideTls, verifyTls } from "./docker-variant.ts";
import { preparePostgres, writePostgresFleet } from "./postgres-variant.ts";

import { COORDINATOR, FLEET_DIR, fleetHosts, SERVER_URL } from "./fleet.ts";

export { COORDINATOR, FLEET_DIR, fleetHosts, SERVER_URL };

export interface UpSummary {
  ok: boolean;
  instance: number;
  startedAt: string;
  totalMs: number;
  failedStep?: string;
  error?: string;
  steps: StepRecord[];
  pulumi?: { changes?: string; outputs?: Record<string, unknown> };
  /** What `meshfleet up` did: Pulumi's counts and each host's. */
  deploy?: { ok: boolean; changes: Record<string, number>; hosts: HostResult[]; ms: number; errors: string[] };
  /** `agent verify` on every fleet host after the deploy: ok means no drift. */
  drift?: { host: string; ok: boolean; detail: string }[];
}

export interface LabUpOptions {
  instance: number;
  log: (line: string) => void;
  /** Skip building missing tools (fail instead). */
  noBuild?: boolean;
  /** Run on the booted hosts before the deploy (a test's own setup the deploy needs, e.g. a binary the lab has no package for). */
  beforeDeploy?: () => Promise<void>;
  /** The Postgres variant (lab/e2e/postgres-variant.ts): the coordinator keeps headscale's database in a local Postgres, headscale.backup on. */
  postgres?: boolean;
  /** The docker variant (issue 20, lab/e2e/docker-variant.ts): the VPS runs headscale, nginx and derper in docker. */
  docker?: boolean;
  /**
   * A fleet folder other than hosts/lab, with its own hosts (bench/deploy's
   * scale run: hosts/lab plus generated clients, `clients` booted for them).
   * Standard variant only. @default hosts/lab
   */
  fleetDir?: string;
  /** Generated clients to boot (lab/topology.ts `clients`). @default none */
  clients?: number;
  /** Called as soon as the deploy returns, before `agent verify` (a bench's clock and CPU). */
  afterDeploy?: () => void;
}

/** `agent verify` on every fleet host: exit 0 means the host matches its generation. */
export async function agentVerify(instance: number, hosts = fleetHosts()): Promise<{ host: string; ok: boolean; detail: string }[]> {
  return Promise.all(
    hosts.map(async (host) => {
      const r = await sshExec(host, `node ${AGENT_HOST_PATH} verify`, { instance, timeoutMs: 30_000 }).catch((e: Error) => ({ code: -1, stdout: "", stderr: e.message }));
      const text = `${r.stdout}\n${r.stderr}`.trim().split("\n").filter(Boolean);
      return { host, ok: r.code === 0, detail: r.code === 0 ? "no drift" : text.slice(-3).join(" | ") || `exit ${r.code}` };
    }),
  );
}

export async function labUp(opts: LabUpOptions): Promise<UpSummary> {
  const { instance } = opts;
  const pr = new Progress(opts.log);
  const summary: UpSummary = { ok: false, instance, startedAt: new Date().toISOString(), totalMs: 0, steps: pr.steps };
  const p = e2ePaths(instance);
  mkdirSync(p.dir, { recursive: true });
  try {
    await pr.step("tools", undefined, async () => {
      const missing = toolsStatus().filter((t) => t.state !== "cached" && t.state !== "path");
      if (missing.length === 0) return "cached";
      if (opts.noBuild) {
        // The hosts need the peers now; pulumi is needed only at the stack step, which fails by itself naming it.
        const peers = missing.filter((t) => !t.name.startsWith("pulumi"));
        if (peers.length > 0) throw new Error(`not built: ${peers.map((t) => `${t.name} ${t.version}`).join(", ")} (run \`meshfleet tools build\`)`);
        return `not built yet: ${missing.map((t) => t.name).join(", ")} (needed from the stack step on)`;
      }
      await buildTools({ onProgress: (x) => pr.line("tools", `${x.tool} ${x.version}: ${x.step}${x.detail ? ` ${x.detail}` : ""}`) });
      return `built ${missing.map((t) => t.name).join(", ")}`;
    }, (v) => v);

    await pr.step("hosts", undefined, async () => {
      const r = await hostsUp({ instance, ...(opts.docker ? { docker: [COORDINATOR] } : {}), ...(opts.clients ? { clients: opts.clients } : {}), log: (l) => pr.line("hosts", l.trim().replace(/^[\d.]+s\s+/, "")) });
      const down = r.hosts.filter((h) => h.kind === "nspawn" && (h.state !== "up" || !h.ssh));
      if (down.length > 0) throw new Error(`hosts without ssh after boot: ${down.map((h) => h.name).join(", ")}`);
      const fresh = fleetHosts(opts.fleetDir).filter((h) => h in r.bootMs);
      if (fresh.length > 0 && existsSync(join(p.dir, "state"))) {
        // Fresh hosts hold none of the recorded resources; a kept state would make pulumi up a no-op.
        dropStackState(instance);
        pr.line("hosts", `fresh ${fresh.join(", ")}: dropped the old stack state`);
      }
      return `${r.hosts.filter((h) => h.state === "up").length} up${fresh.length ? `, booted ${fresh.join(", ")}` : ", all already running"}`;
    }, (v) => v);

    // The docker variant: images built on the VPS, its fleet written (the standard lab: hosts/lab).
    if (opts.docker && opts.fleetDir) throw new Error("lab up: a fleet folder of its own is for the standard variant only");
    const variant = await pr.step(opts.docker ? "docker images" : "variant", opts.docker ? COORDINATOR : undefined, () => prepareVariant(instance, !!opts.docker, (l) => pr.line("docker images", l)), (v) => v.detail);
    if (opts.fleetDir) Object.assign(variant, { fleetDir: opts.fleetDir, stackHostsDir: opts.fleetDir });
    if (opts.postgres) {
      if (opts.docker || opts.fleetDir) throw new Error("lab up: --postgres is a variant of the standard lab, not of --docker or a fleet folder of its own");
      Object.assign(variant, await pr.step("postgres fleet", COORDINATOR, async () => writePostgresFleet(instance), (v) => v.detail));
    }
    const fleetDir = variant.fleetDir;

    await pr.step("agent bundle", undefined, async () => {
      const r = await execa(process.execPath, [join(REPO, "agent", "build.mjs")], { reject: false, cwd: REPO });
      if (r.exitCode !== 0) throw new Error(`npm run build:agent: ${String(r.stderr).trim().split("\n").slice(-3).join(" | ")}`);
      return String(r.stdout).trim();
    }, (v) => v);

    await pr.step("program", undefined, async () => {
      if (!existsSync(join(REPO, "index.ts"))) throw new Error("the Pulumi program index.ts (Pulumi.yaml main) is not in the repo yet");
      const r = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "check", "--hosts-dir", fleetDir], { reject: false, cwd: REPO });
      if (r.exitCode !== 0) throw new Error(`meshfleet check hosts/lab: ${`${r.stdout}\n${r.stderr}`.trim().split("\n").slice(-4).join(" | ")}`);
    });

    if (!opts.docker) await pr.step("caddy", COORDINATOR, () => provideCaddy(COORDINATOR, instance), (v) => v);
    else await pr.step("lab TLS", COORDINATOR, () => provideTls(instance), (v) => v);
    // The ACME server the VPS's Caddy gets its certificate from (hosts/lab/vps.yaml reverse-proxy.acmeDirectory),
    // started after the hosts: it lives in their internet namespace. Every host trusts its root before the deploy,
    // so the nodes' first login to https://203.0.113.10 verifies.
    // (The docker variant's nginx reads the lab TLS files above instead.)
    let acme: AcmeServer | undefined;
    if (!opts.docker) {
      await pr.step("acme server", undefined, async () => {
        acme = await startAcme({ instance, dir: acmeDir(instance), log: (l) => pr.line("acme server", l) });
        return `pebble at ${acme.directory}, ${acme.reused ? "already running" : "started"} (pid ${acme.pids.join(", ")})`;
      }, (v) => v);
      await pr.step("acme CA", COORDINATOR, () => pushListenerCa(COORDINATOR, acme!.listenerCa, instance), (v) => v);
      for (const h of fleetHosts(fleetDir)) {
        await pr.step("trust ACME root", h, () => trustAcmeRoot(h, acme!.root, instance), (v) => v);
      }
    }

    // What each host gets, written for inspection beside the lab's state.
    await pr.step("render", undefined, async () => {
      const out = join(p.dir, "rendered");
      rmSync(out, { recursive: true, force: true });
      const r = await execa(process.execPath, [join(REPO, "bin", "meshfleet.mjs"), "render", "--hosts-dir", fleetDir, "--out", out], { reject: false, cwd: REPO });
      if (r.exitCode !== 0) throw new Error(`meshfleet render: ${`${r.stdout}\n${r.stderr}`.trim().split("\n").slice(-3).join(" | ")}`);
      return out;
    });

    let env: Record<string, string> = {};
    await pr.step("stack", STACK, async () => {
      env = labPulumiEnv(instance);
      return ensureStack(instance, env, { keyPath: labKeyPath({ instance }), knownHostsPath: labKnownHostsPath({ instance }) }, { hostsDir: variant.stackHostsDir });
    }, (v) => v);

    if (opts.postgres) await pr.step("postgres", COORDINATOR, () => preparePostgres(instance, env), (v) => v);
    // The same code path as `meshfleet up --stack lab --yes --config-file <lab>/Pulumi.lab.yaml`.
    if (opts.beforeDeploy) await pr.step("before deploy", undefined, async () => (await opts.beforeDeploy!(), "done"));
    const up = await pr.step("meshfleet up", STACK, async () => {
      const r = await runDeploy({
        verb: "up",
        stack: STACK,
        configFile: p.stackConfig,
        env,
        logFile: p.log,
        say: (l) => pr.line("up", l.trim().slice(0, 180)),
      });
      opts.afterDeploy?.();
      summary.deploy = { ok: r.ok, changes: r.changes, hosts: r.hosts, ms: r.ms, errors: r.errors };
      summary.pulumi = { outputs: r.outputs };
      if (!r.ok) throw new Error(`${r.errors.join("\n  ")}\n  (full log: ${p.log})`);
      return Object.entries(r.changes).map(([k, n]) => `${n} ${k}`).join(", ");
    }, (v) => v);
    summary.pulumi = { ...summary.pulumi, changes: up };

    // The deploy said ok; the hosts must agree: no drift from the generation just switched to.
    await pr.step("agent verify", undefined, async () => {
      summary.drift = await agentVerify(instance, fleetHosts(fleetDir));
      const bad = summary.drift.filter((d) => !d.ok);
      if (bad.length > 0) throw new Error(`drift after the deploy on ${bad.map((d) => `${d.host}: ${d.detail}`).join("; ")}`);
      return `${summary.drift.length}/${summary.drift.length} hosts without drift`;
    }, (v) => v);

    await pr.step("verify TLS", "laptop", () => (opts.docker ? verifyTls(instance, SERVER_URL) : verifyAcmeTls(COORDINATOR, "laptop", SERVER_URL, acme!, instance)), (v) => v);
    summary.ok = true;
  } catch (e) {
    summary.ok = false;
    summary.failedStep = e instanceof StepError ? e.step : "?";
    summary.error = (e as Error).message;
  }
  summary.totalMs = Date.now() - pr.t0;
  writeFileSync(p.upResult, JSON.stringify(summary, null, 2));
  return summary;
}
