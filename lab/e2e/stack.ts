/**
 * The lab stack's config, kept in the lab's state folder: the repo's
 * stacks/Pulumi.lab.yaml (if any) as the base, plus what only this machine
 * knows (the key seed secret, the lab's ssh key and known_hosts paths) and
 * the passphrase's salt. Every deploy reads it through `--config-file`, so the
 * repo's stacks/ is never edited.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import { openStack } from "../../cli/commands/deploy.ts";
import { e2ePaths, STACK } from "./paths.ts";
import { failureSummary, keptSecret, REPO, runPulumi } from "./pulumi.ts";

type StackFile = { encryptionsalt?: string; secretsprovider?: string; config?: Record<string, unknown> };

const readYaml = (p: string): StackFile => (existsSync(p) ? ((parse(readFileSync(p, "utf8")) as StackFile | null) ?? {}) : {});

export const repoStackFile = () => join(REPO, "stacks", `Pulumi.${STACK}.yaml`);

/**
 * Make sure stack `lab` exists in the lab's backend, with its config file in
 * place: the machine's values written, the stack opened the way `meshfleet up`
 * opens it (which keeps the salt `stack init` makes in the lab's file and
 * leaves the repo's exactly as it was), then the key seed set as a secret.
 */
/** `o.hostsDir`: the fleet folder to deploy (the docker variant's, or hosts/lab again after it); unset keeps the stack's. */
export async function ensureStack(instance: number, env: Record<string, string>, ssh: { keyPath: string; knownHostsPath: string }, o: { hostsDir?: string } = {}): Promise<string> {
  const p = e2ePaths(instance);
  mkdirSync(dirname(p.stackConfig), { recursive: true });
  const base = readYaml(repoStackFile());
  const mine = readYaml(p.stackConfig);
  const cfg: Record<string, unknown> = { ...(base.config ?? {}), ...(mine.config ?? {}) };
  cfg["meshfleet:sshPrivateKeyPath"] = ssh.keyPath;
  // The lab's known_hosts holds each host's key as booted: every connection is checked against it.
  cfg["meshfleet:knownHostsPath"] = ssh.knownHostsPath;
  // Absolute: the program resolves them against its working directory.
  cfg["meshfleet:hostsDir"] = resolve(REPO, String(o.hostsDir ?? cfg["meshfleet:hostsDir"] ?? `hosts/${STACK}`));
  cfg["meshfleet:agentPath"] = resolve(REPO, String(cfg["meshfleet:agentPath"] ?? "dist/meshfleet-agent.mjs"));
  writeFileSync(p.stackConfig, stringify({ ...(mine.encryptionsalt ? { encryptionsalt: mine.encryptionsalt } : {}), config: cfg }));

  const hadSalt = !!mine.encryptionsalt;
  // Opening creates the stack if it is new; no program runs here.
  await openStack({ stack: STACK, configFile: p.stackConfig, env, program: async () => ({}) });
  if (!readYaml(p.stackConfig).encryptionsalt) {
    throw new Error(`${p.stackConfig}: no encryptionsalt after opening stack ${STACK}; remove ${dirname(p.stackConfig)}/state and run lab up again`);
  }
  if (!readYaml(p.stackConfig).config?.["meshfleet:keySeed"]) {
    const seed = keptSecret(p.keySeed, 32);
    // The secret goes on stdin, never on a command line.
    const repoBefore = existsSync(repoStackFile()) ? readFileSync(repoStackFile(), "utf8") : undefined;
    const set = await runPulumi(["config", "set", "--secret", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:keySeed"], { env, input: seed });
    const repoAfter = existsSync(repoStackFile()) ? readFileSync(repoStackFile(), "utf8") : undefined;
    if (repoAfter !== repoBefore) throw new Error(`pulumi config set --config-file changed ${repoStackFile()}; restore it with git`);
    if (set.code !== 0) throw new Error(`pulumi config set meshfleet:keySeed: ${failureSummary(set)}`);
  }
  return hadSalt ? "selected" : "created";
}
