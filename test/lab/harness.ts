/**
 * What the lab test files share (fleet-lab, backup-lab, reboot-lab and
 * coordinator-life-lab wrote it out each): the CI gate of a lab test, the
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
