/**
 * The Pulumi program: read the stack's config, evaluate the fleet in
 * hosts/<stack>, and build one Mesh. A broken fleet stops here with the
 * foundation's diagnostics, before any resource exists.
 *
 * Stack config (stacks/Pulumi.<stack>.yaml):
 *   meshfleet:hostsDir            fleet directory (default hosts/<stack>)
 *   meshfleet:keySeed             secret, ≥ 32 random bytes in base64 (`openssl rand -base64 32`): the Noise/DERP keys derive from it
 *   meshfleet:sshPrivateKeyPath   private key file for every host (default: ssh's own keys and agent)
 *   meshfleet:knownHostsPath      known_hosts file with host key pins (read with ssh-keygen -F) for hosts
 *                                 whose file sets no ssh.hostKey; a host with no pin stops the deploy
 *   meshfleet:agentPath           the bundled agent (default dist/meshfleet-agent.mjs)
 *   meshfleet:confirmTimeoutSeconds  lockout guard window (default 120)
 *   meshfleet:headscaleBinaryPath a headscale binary to install (systemd runtime)
 *   meshfleet:imageDigests        { headscale: sha256:…, nginx: sha256:… } (docker runtime)
 *   meshfleet:headscalePostgresPassword  secret, the database password when headscale.database.type is postgres
 *   meshfleet:headscaleOidcClientSecret  secret, the OIDC client secret when headscale.oidc.enable is set
 *   meshfleet:coordinatorMovedByHand  true while coordinator.host moves to a host whose database and keys were
 *                                 put there by hand (docs/move.md): the move copies nothing
 *   meshfleet:coreStack           a site stack: the core's stack name when not the one its fleet.yaml gives
 *                                 (a fully qualified org/project/stack on a shared backend)
 *
 * Sites as stacks (docs/sites.md): a core folder (fleet.yaml with sites) builds
 * the Mesh and exports what its sites read; a site folder (fleet.yaml with
 * core:) builds a SiteMesh of its own hosts, reading the core's outputs
 * through a StackReference. Neither deploys the other's hosts.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { Mesh } from "./components/index.ts";
import { coreOutputs, readCore, SiteMesh } from "./components/site.ts";
import { validatePostgresPassword } from "./components/dockerService.ts";
import { evaluateFleet, formatDiagnostics, hasErrors } from "./core/index.ts";
import { REGISTRY } from "./modules/index.ts";
import { localPath } from "./provider/pins.ts";

async function program(): Promise<Record<string, pulumi.Output<unknown>>> {
  const config = new pulumi.Config("meshfleet");
  const stack = pulumi.getStack();
  const hostsDir = config.get("hostsDir") ?? path.join("hosts", stack);
  const { fleet, diagnostics } = await evaluateFleet(REGISTRY, path.resolve(hostsDir), stack);
  if (!fleet || hasErrors(diagnostics)) {
    throw new pulumi.RunError(`the fleet in ${hostsDir} has errors; nothing was deployed:\n${formatDiagnostics(diagnostics)}`);
  }
  for (const w of diagnostics.filter((d) => d.severity === "warning")) pulumi.log.warn(formatDiagnostics([w]));

  // Host key pins for hosts whose file names none come from a known_hosts file
  // (the lab records one); the fleet itself is left as evaluated.
  const knownHostsPath = config.get("knownHostsPath");
  if (knownHostsPath && !existsSync(localPath(knownHostsPath))) {
    throw new pulumi.RunError(`meshfleet:knownHostsPath: ${knownHostsPath} does not exist. Fix: \`npx meshfleet pin HOST\` records pins there, or pulumi config set meshfleet:knownHostsPath <path of a known_hosts file>`);
  }
  const keyPath = config.get("sshPrivateKeyPath");
  if (keyPath) {
    try {
      readFileSync(localPath(keyPath));
    } catch (e) {
      throw new pulumi.RunError(`meshfleet:sshPrivateKeyPath: cannot read ${keyPath} (${(e as NodeJS.ErrnoException).code ?? e}). Fix: pulumi config set meshfleet:sshPrivateKeyPath <path of your key>`);
    }
  }
  const ssh = {
    knownHostsPath: knownHostsPath ? localPath(knownHostsPath) : undefined,
    privateKeyPath: keyPath ? localPath(keyPath) : undefined,
  };
  if (fleet.sites && fleet.sites.site !== null) {
    // A site: its own hosts only; no key seed, no coordinator access (the core's outputs carry what it needs).
    const { core } = await readCore(`${stack}-core`, config.get("coreStack") ?? fleet.sites.core.stack);
    const site = new SiteMesh(stack, {
      fleet,
      core,
      ssh,
      agent: { agentPath: config.get("agentPath") ?? "dist/meshfleet-agent.mjs", confirmTimeoutSeconds: config.getNumber("confirmTimeoutSeconds") ?? 120 },
    });
    return { coordinatorUrl: site.coordinatorUrl, nodes: site.nodes, summary: site.summary, joinInstructions: site.joinInstructions };
  }
  const keySeed = pulumi.secret(checkedKeySeed());
  const mesh = new Mesh(stack, {
    fleet,
    keySeed,
    ssh,
    agent: {
      agentPath: config.get("agentPath") ?? "dist/meshfleet-agent.mjs",
      confirmTimeoutSeconds: config.getNumber("confirmTimeoutSeconds") ?? 120,
    },
    headscaleBinaryPath: config.get("headscaleBinaryPath"),
    imageDigests: config.getObject<Record<string, string>>("imageDigests"),
    headscalePostgresPassword: postgresPassword(),
    headscaleOidcClientSecret: oidcClientSecret(),
    coordinatorMovedByHand: config.getBoolean("coordinatorMovedByHand"),
  });
  return {
    coordinatorUrl: mesh.coordinatorUrl,
    nodes: mesh.nodes,
    summary: mesh.summary,
    joinInstructions: mesh.joinInstructions,
    // A core with sites: the policy's digest, the public Noise key and each site's keys (secrets), read by the sites.
    ...(fleet.sites ? (({ coordinatorUrl: _, ...rest }) => rest)(coreOutputs(mesh, fleet, keySeed)) : {}),
  };
}

// Pulumi calls a default-exported function and exports what it returns as stack
// outputs. The module may have no other export: Pulumi's Node.js host refuses
// an entry module with both a default and named exports.
export default program;

/** The stack's OIDC client secret when set, a secret from here on (checked where it is used, never shown). */
function oidcClientSecret(): pulumi.Output<string> | undefined {
  const v = pulumi.runtime.getConfig("meshfleet:headscaleOidcClientSecret");
  return v === undefined ? undefined : pulumi.secret(v);
}

/** The stack's Postgres password when set, checked (one line) without showing it; a secret from here on. */
function postgresPassword(): pulumi.Output<string> | undefined {
  const pw = pulumi.runtime.getConfig("meshfleet:headscalePostgresPassword");
  if (pw === undefined) return undefined;
  const problems = validatePostgresPassword(pw);
  if (problems.length) throw new pulumi.RunError(problems.join("\n"));
  return pulumi.secret(pw);
}

/**
 * The stack's keySeed, read where it is checked: at least 32 random bytes
 * (base64 or hex), since the coordinator's Noise key and the DERP key derive
 * from it. The message never shows the value.
 */
function checkedKeySeed(): string {
  const seed = pulumi.runtime.getConfig("meshfleet:keySeed");
  const fix = "Fix: openssl rand -base64 32 | pulumi config set --secret meshfleet:keySeed (SECURITY.md: rotating the seed)";
  if (seed === undefined) throw new pulumi.RunError(`meshfleet:keySeed: missing. ${fix}`);
  const s = seed.trim();
  const bytes = /^[0-9a-fA-F]+$/.test(s) ? s.length / 2 : /^[A-Za-z0-9+/_-]+={0,2}$/.test(s) ? Math.floor((s.replace(/=+$/, "").length * 6) / 8) : 0;
  if (bytes < 32 || new Set(s).size < 16)
    throw new pulumi.RunError(
      `meshfleet:keySeed: expected at least 32 random bytes in base64 (44 characters) or hex, found ${bytes ? `${bytes} bytes` : `${s.length} characters that are neither`}${bytes >= 32 ? " with too few distinct characters to be random" : ""}. ${fix}`,
    );
  return s;
}
