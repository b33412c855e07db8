/**
 * What the lab test files share (fleet-lab, backup-lab, reboot-lab and the
 * coordinator lab files wrote it out each): the CI gate of a lab test, the
 * copy of hosts/lab with an instance's SSH addresses set as that instance's
 * fleet folder, and a command on a lab host that throws on failure.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { sshExec } from "../../lab/hosts/index.ts";
import { e2ePaths } from "../../lab/e2e/paths.ts";
import { REPO } from "../../lab/e2e/pulumi.ts";
import { labTopology } from "../../lab/topology.ts";
import { isRoot, NEEDS_ROOT } from "./ci-gate.ts";
import { labCli } from "../../lab/e2e/drills/lab-cli.ts";
import { coordinatorBinaryEdit, toolBinary } from "../../lab/e2e/drills/upgrade.ts";

/** What a lab test lacks here (root, MESHFLEET_LAB_E2E=1), or false: `describe.skipIf(skipUnlessCi(labMissing()))`. */
export function labMissing(env: NodeJS.ProcessEnv = process.env): string | false {
  if (!isRoot()) return NEEDS_ROOT;
  if (env.MESHFLEET_LAB_E2E !== "1") return "the lab tests run with MESHFLEET_LAB_E2E=1 (.ci/run sets it)";
  return false;
}

/**
 * Writes `<instance dir>/hosts-labN`: hosts/lab with instance N's SSH
 * addresses, each file passed through `edit`; points `meshfleet:hostsDir`
 * (and any `config` given) of that instance's stack config at it. Returns
 * the folder. `lab down` removes the stack config: write it after.
 */
export function writeLabFleet(instance: number, o: { edit?: (file: string, text: string) => string; config?: Record<string, unknown> } = {}): string {
  const p = e2ePaths(instance);
  const dir = join(p.dir, `hosts-lab${instance}`);
  const net = labTopology(instance).mgmtSubnet.replace(/\.0\/24$/, ".");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(join(REPO, "hosts", "lab"))) {
    const text = readFileSync(join(REPO, "hosts", "lab", f), "utf8").replaceAll("172.31.240.", net);
    writeFileSync(join(dir, f), o.edit ? o.edit(f, text) : text);
  }
  const cfg = existsSync(p.stackConfig) ? ((parse(readFileSync(p.stackConfig, "utf8")) as { config?: Record<string, unknown> } | null) ?? {}) : {};
  mkdirSync(p.dir, { recursive: true });
  writeFileSync(p.stackConfig, stringify({ ...cfg, config: { ...(cfg.config ?? {}), "meshfleet:hostsDir": dir, ...(o.config ?? {}) } }));
  return dir;
}

/** `on(host, cmd)` for one instance: the command's stdout, or an error naming host, command, exit and output. */
export function labOn(instance: number): (host: string, cmd: string, o?: { input?: string; timeoutMs?: number }) => Promise<string> {
  return async (host, cmd, o = {}) => {
    const r = await sshExec(host, cmd, { instance, timeoutMs: o.timeoutMs ?? 30_000, input: o.input });
    if (r.code !== 0) throw new Error(`${host}: ${cmd.slice(0, 200)}: exit ${r.code}: ${r.stderr || r.stdout}`);
    return r.stdout;
  };
}

/** The first binary of a pinned tool (lab/versions.json) as built here, or null (lab/e2e/drills/upgrade.ts). */
export { toolBinary };

/**
 * hosts/lab for `instance` with its coordinator running the headscale binary
 * meshfleet installs (meshfleet:headscaleBinaryPath -> /usr/local/bin/headscale),
 * pinned at `version` (coordinator-life and the staged upgrade).
 */
export function writeCoordinatorFleet(instance: number, version: string, binaryPath: string): void {
  writeLabFleet(instance, { edit: coordinatorBinaryEdit(version), config: { "meshfleet:headscaleBinaryPath": binaryPath } });
}

export interface HeadscaleNodeRow {
  id: number | string;
  given_name: string;
  ip_addresses: string[];
  approved_routes?: string[];
  online?: boolean;
  expiry?: { seconds?: number | string };
}

/** headscale's nodes on the instance's VPS (the binary meshfleet installs). */
export async function headscaleNodes(instance: number): Promise<HeadscaleNodeRow[]> {
  return (JSON.parse((await labOn(instance)("vps", "/usr/local/bin/headscale -c /etc/headscale/config.yaml nodes list -o json")) || "null") ?? []) as HeadscaleNodeRow[];
}

/** Each node's name, IPs and approved routes, sorted: what an upgrade must keep. */
export function registration(ns: HeadscaleNodeRow[]): string[] {
  return ns.map((n) => `${n.given_name} ${[...n.ip_addresses].sort().join(",")} routes=${[...(n.approved_routes ?? [])].sort().join(",")}`).sort();
}

/**
 * `meshfleet <verb> --stack lab --config-file <instance's>` as a whole CLI process (`up` with
 * --yes), its state dir given (lab/e2e/drills/lab-cli.ts, which the move and upgrade drills use).
 */
export { labCli };
