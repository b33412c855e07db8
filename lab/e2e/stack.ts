/**
 * The lab stack's config, kept in the lab's state folder: the repo's
 * stacks/Pulumi.lab.yaml (if any) as the base, plus what only this machine
 * knows (the key seed secret, the lab's ssh key path) and the passphrase
 * provider's salt. Pulumi reads it through `--config-file`.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { e2ePaths, STACK } from "./paths.ts";
import { failureSummary, keptSecret, PROJECT_DIR, REPO, runPulumi } from "./pulumi.ts";

type StackFile = { encryptionsalt?: string; secretsprovider?: string; config?: Record<string, unknown> };

const readYaml = (p: string): StackFile => (existsSync(p) ? ((parse(readFileSync(p, "utf8")) as StackFile | null) ?? {}) : {});

export const repoStackFile = () => join(REPO, "stacks", `Pulumi.${STACK}.yaml`);
/** Where `stack init` writes the salt: the project's stackConfigDir (stacks/). */
const projectStackFile = () => join(PROJECT_DIR, "stacks", `Pulumi.${STACK}.yaml`);

/**
 * Make sure stack `lab` exists in the lab's backend and is selected, with its
 * config file in place. `stack init` writes the passphrase salt to the
 * project's stack file; that write is moved into the lab's own file so the
 * repo's copy is left exactly as it was.
 */
export async function ensureStack(instance: number, env: Record<string, string>, ssh: { keyPath: string; knownHostsPath: string }): Promise<string> {
  const p = e2ePaths(instance);
  mkdirSync(dirname(p.stackConfig), { recursive: true });
  const repoFile = projectStackFile();
  const repoBefore = existsSync(repoFile) ? readFileSync(repoFile, "utf8") : undefined;
  const base = readYaml(repoStackFile());
  const mine = readYaml(p.stackConfig);

  const ls = await runPulumi(["stack", "ls", "--json"], { env });
  if (ls.code !== 0) throw new Error(`pulumi stack ls: ${failureSummary(ls)}`);
  const stacks = JSON.parse(ls.stdout || "[]") as { name: string }[];
  let made = false;
  if (!stacks.some((s) => s.name === STACK || s.name.endsWith(`/${STACK}`))) {
    const init = await runPulumi(["stack", "init", STACK, "--secrets-provider", "passphrase"], { env });
    const after = readYaml(repoFile);
    if (after.encryptionsalt) mine.encryptionsalt = after.encryptionsalt;
    restore(repoFile, repoBefore);
    if (init.code !== 0) throw new Error(`pulumi stack init ${STACK}: ${failureSummary(init)}`);
    made = true;
  }
  const sel = await runPulumi(["stack", "select", STACK], { env });
  if (sel.code !== 0) throw new Error(`pulumi stack select ${STACK}: ${failureSummary(sel)}`);

  const merged: StackFile = {
    ...(mine.encryptionsalt ? { encryptionsalt: mine.encryptionsalt } : {}),
    config: { ...(base.config ?? {}), ...(mine.config ?? {}) },
  };
  const cfg = merged.config as Record<string, unknown>;
  cfg["meshfleet:sshPrivateKeyPath"] = ssh.keyPath;
  // The lab's known_hosts holds each host's key as booted: the provider checks it on every connection.
  cfg["meshfleet:knownHostsPath"] = ssh.knownHostsPath;
  // Absolute: the program resolves them against its working directory.
  cfg["meshfleet:hostsDir"] = resolve(REPO, String(cfg["meshfleet:hostsDir"] ?? `hosts/${STACK}`));
  cfg["meshfleet:agentPath"] = resolve(REPO, String(cfg["meshfleet:agentPath"] ?? "dist/meshfleet-agent.mjs"));
  writeFileSync(p.stackConfig, stringify(merged));

  if (!(merged.config as Record<string, unknown>)["meshfleet:keySeed"]) {
    const seed = keptSecret(p.keySeed, 32);
    // The secret goes on stdin, never on a command line.
    const set = await runPulumi(["config", "set", "--secret", "--config-file", p.stackConfig, "meshfleet:keySeed"], { env, input: seed });
    restore(repoFile, repoBefore);
    if (set.code !== 0) throw new Error(`pulumi config set meshfleet:keySeed: ${failureSummary(set)}`);
  }
  return made ? "created" : "selected";
}

function restore(path: string, before: string | undefined): void {
  const now = existsSync(path) ? readFileSync(path, "utf8") : undefined;
  if (now === before) return;
  if (before === undefined) {
    // Pulumi made it; the lab's copy has what it needed.
    rmSync(path, { force: true });
  } else writeFileSync(path, before);
}
