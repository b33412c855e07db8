/**
 * The Pulumi program: read the stack's config, evaluate the fleet in
 * hosts/<stack>, and build one Mesh. A broken fleet stops here with the
 * foundation's diagnostics, before any resource exists.
 *
 * Stack config (stacks/Pulumi.<stack>.yaml):
 *   meshfleet:hostsDir            fleet directory (default hosts/<stack>)
 *   meshfleet:keySeed             secret, ≥ 16 characters: the Noise/DERP keys derive from it
 *   meshfleet:sshPrivateKeyPath   private key file for every host (default: ssh's own keys and agent)
 *   meshfleet:knownHostsPath      known_hosts file with host key pins (read with ssh-keygen -F) for hosts
 *                                 whose file sets no ssh.hostKey; a host with no pin stops the deploy
 *   meshfleet:agentPath           the bundled agent (default dist/meshfleet-agent.mjs)
 *   meshfleet:confirmTimeoutSeconds  lockout guard window (default 120)
 *   meshfleet:headscaleBinaryPath a headscale binary to install (systemd runtime)
 *   meshfleet:imageDigests        { headscale: sha256:…, nginx: sha256:… } (docker runtime)
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { Mesh } from "./components/index.ts";
import { evaluateFleet, formatDiagnostics, hasErrors } from "./core/index.ts";
import { REGISTRY } from "./modules/index.ts";

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? path.join(homedir(), p.slice(1)) : p;
}

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
  if (knownHostsPath && !existsSync(expandHome(knownHostsPath))) {
    throw new pulumi.RunError(`meshfleet:knownHostsPath: ${knownHostsPath} does not exist. Fix: \`npx meshfleet pin HOST\` records pins there, or pulumi config set meshfleet:knownHostsPath <path of a known_hosts file>`);
  }
  const keyPath = config.get("sshPrivateKeyPath");
  if (keyPath) {
    try {
      readFileSync(expandHome(keyPath));
    } catch (e) {
      throw new pulumi.RunError(`meshfleet:sshPrivateKeyPath: cannot read ${keyPath} (${(e as NodeJS.ErrnoException).code ?? e}). Fix: pulumi config set meshfleet:sshPrivateKeyPath <path of your key>`);
    }
  }
  const mesh = new Mesh(stack, {
    fleet,
    keySeed: config.requireSecret("keySeed"),
    ssh: {
      knownHostsPath: knownHostsPath ? path.resolve(expandHome(knownHostsPath)) : undefined,
      privateKeyPath: keyPath ? path.resolve(expandHome(keyPath)) : undefined,
    },
    agent: {
      agentPath: config.get("agentPath") ?? "dist/meshfleet-agent.mjs",
      confirmTimeoutSeconds: config.getNumber("confirmTimeoutSeconds") ?? 120,
    },
    headscaleBinaryPath: config.get("headscaleBinaryPath"),
    imageDigests: config.getObject<Record<string, string>>("imageDigests"),
  });
  return {
    coordinatorUrl: mesh.coordinatorUrl,
    nodes: mesh.nodes,
    summary: mesh.summary,
    joinInstructions: mesh.joinInstructions,
  };
}

// Pulumi calls a default-exported function and exports what it returns as stack
// outputs. The module may have no other export: Pulumi's Node.js host refuses
// an entry module with both a default and named exports.
export default program;
