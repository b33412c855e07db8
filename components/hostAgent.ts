/**
 * HostAgent: one host's generation, rendered here (core renderHost) and
 * applied by the provider's `meshfleet:host:Generation` through the host's
 * agent, with the lockout guard: `switch` arms a rollback timer, and only a
 * `confirm <hash>` over a *new* SSH connection keeps the generation. A deploy
 * that cuts its own SSH path (firewall, tailnet route) is rolled back by the
 * host itself, and the deploy fails naming the host.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { secretRefs } from "../core/bundle.ts";
import { renderHost } from "../core/render.ts";
import { AGENT_HOST_PATH, type HostSystem } from "../core/types.ts";
import { Generation } from "../provider/sdk.ts";
import { bundleSummary } from "../provider/summary.ts";
import type { GenerationSummary } from "../provider/types.ts";
import { assertNoProblems, connectionIssues, hostConnection, privateKeyInput, type SshAccess } from "./shell.ts";

export interface HostAgentArgs {
  /**
   * The evaluated host whose generation is pushed.
   * @example fleet.hosts["router"]
   */
  host: HostSystem;
  /**
   * Values for the host's secret references (FileSpec.secretRef): `noise-key`,
   * `derp-key`, `preauth:<host>`. Only the names the host uses are read.
   * @default {}
   * @example { "preauth:router": preAuthKey.key }
   */
  secrets?: Record<string, pulumi.Input<string>>;
  /**
   * How the deploy logs in: pins from a known_hosts file, the private key.
   * @default {} (the host file's ssh.hostKey, ssh's own key and agent)
   * @example { knownHostsPath: "~/.config/meshfleet/known_hosts", privateKeyPath: "~/.ssh/id_ed25519" }
   */
  ssh?: SshAccess;
  /**
   * The bundled agent on this machine (built by `npm run build:agent`).
   * @default "dist/meshfleet-agent.mjs"
   * @example "/srv/meshfleet/dist/meshfleet-agent.mjs"
   */
  agentPath?: string;
  /**
   * Where the agent file lives on the host.
   * @default "/usr/local/lib/meshfleet/meshfleet-agent.mjs"
   * @example "/opt/meshfleet/meshfleet-agent.mjs"
   */
  remoteAgentPath?: string;
  /**
   * The agent's state directory on the host (generations, incoming bundle).
   * @default "/var/lib/meshfleet"
   * @example "/persist/meshfleet"
   */
  stateDir?: string;
  /**
   * Seconds the agent waits for `confirm` before rolling back by itself.
   * @default 120
   * @example 300
   */
  confirmTimeoutSeconds?: number;
  /**
   * The Node.js binary on the host (Node 18 or newer).
   * @default "node"
   * @example "/usr/bin/nodejs"
   */
  node?: string;
  /**
   * Push this generation once, at creation, and never again (the coordinator's
   * bootstrap generation, before the host can get its own pre-auth key).
   * @default false
   * @example true
   */
  once?: boolean;
  /**
   * Reboot the host after its switch and confirm, and fail the deploy unless it
   * comes back with the generation active, its firewall loaded, tailscale up with
   * its routes, and no drift (`meshfleet up --reboot-check`, which sets
   * MESHFLEET_REBOOT_CHECK for the run: `*` or host names, comma-separated).
   * @default true when MESHFLEET_REBOOT_CHECK names this host, else false
   * @example true
   */
  rebootCheck?: boolean;
}

/** Whether MESHFLEET_REBOOT_CHECK (`*`, or host names comma-separated) names `host`. */
export function rebootCheckFor(host: string, value: string | undefined = process.env.MESHFLEET_REBOOT_CHECK): boolean {
  if (!value) return false;
  const names = value.split(",").map((x) => x.trim()).filter(Boolean);
  return names.includes("*") || names.includes(host);
}

export const HOST_AGENT_DEFAULTS = {
  agentPath: "dist/meshfleet-agent.mjs",
  remoteAgentPath: AGENT_HOST_PATH,
  stateDir: "/var/lib/meshfleet",
  confirmTimeoutSeconds: 120,
  node: "node",
} as const;

/** Problems with HostAgent args, found before anything is created. */
export function validateHostAgentArgs(args: Pick<HostAgentArgs, "host" | "secrets" | "agentPath" | "confirmTimeoutSeconds" | "ssh">): string[] {
  const problems: string[] = [];
  const h = args.host;
  const agentPath = args.agentPath ?? HOST_AGENT_DEFAULTS.agentPath;
  if (!h.agent) problems.push(`${h.file}: agent: host ${h.name} has no agent (agent: false), so nothing can be pushed to it; give it join instructions (MeshNode) instead`);
  if (!h.address) problems.push(`${h.file}: address: expected the address Pulumi reaches ${h.name}'s sshd on, found nothing. Fix: set address`);
  else problems.push(...connectionIssues(hostConnection(h, args.ssh), `${h.file}: ssh.hostKey`));
  if (!existsSync(agentPath)) problems.push(`the agent bundle ${agentPath} does not exist. Fix: run \`npm run build:agent\` before \`pulumi up\``);
  for (const ref of secretRefs(h)) {
    if (!args.secrets || !(ref in args.secrets)) problems.push(`${h.file}: files: host ${h.name} needs secret "${ref}", which the deploy does not provide`);
  }
  const t = args.confirmTimeoutSeconds ?? HOST_AGENT_DEFAULTS.confirmTimeoutSeconds;
  if (!Number.isInteger(t) || t < 10) problems.push(`HostAgent ${h.name}: confirmTimeoutSeconds: expected a whole number of seconds ≥ 10, found ${t}`);
  return problems;
}

/**
 * The host as its first generation on a coordinator that also joins the mesh:
 * everything but the tailscale join (its pre-auth key file, the tailscale
 * settings and the probes that need a joined node), because the key comes
 * from the headscale this very generation starts.
 */
export function bootstrapHost(h: HostSystem): HostSystem {
  return {
    ...h,
    files: h.files.filter((f) => !f.secretRef?.startsWith("preauth:")),
    tailscale: { ...h.tailscale, enable: false },
    probes: h.probes.filter((p) => p.kind !== "tailscale-running" && p.kind !== "routes-advertised"),
  };
}

export class HostAgent extends pulumi.ComponentResource {
  /** The generation hash now active on the host (sha256 of the bundle). */
  public readonly generation: pulumi.Output<string>;
  /** `meshfleet-agent status --json` after the confirm. */
  public readonly status: pulumi.Output<string>;
  /** The host's generation: switched, confirmed over a new connection, verified. Depend on it for "this host runs its new generation". */
  public readonly confirmed: Generation;

  constructor(name: string, args: HostAgentArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateHostAgentArgs(args), `HostAgent ${name}`);
    super("meshfleet:index:HostAgent", name, {}, opts);
    const o = {
      agentPath: args.agentPath ?? HOST_AGENT_DEFAULTS.agentPath,
      remoteAgentPath: args.remoteAgentPath ?? HOST_AGENT_DEFAULTS.remoteAgentPath,
      stateDir: args.stateDir ?? HOST_AGENT_DEFAULTS.stateDir,
      confirmTimeoutSeconds: args.confirmTimeoutSeconds ?? HOST_AGENT_DEFAULTS.confirmTimeoutSeconds,
      node: args.node ?? HOST_AGENT_DEFAULTS.node,
    };
    const host = args.host;
    const agentSha = createHash("sha256").update(readFileSync(o.agentPath)).digest("hex");

    // Only the secrets this host references travel with its bundle.
    const wanted = secretRefs(host);
    const secretValues = pulumi.all(Object.fromEntries(wanted.map((r) => [r, args.secrets![r]])) as Record<string, pulumi.Input<string>>);
    const bundle = secretValues.apply((s) => renderHost(host, s));
    // Digests and public metadata only: shown by `preview --diff`, kept in clear in the state.
    const summary = pulumi.unsecret(bundle.apply((b) => bundleSummary(b)));
    const part = <K extends keyof GenerationSummary>(k: K) => summary.apply((x) => x[k]);

    this.confirmed = new Generation(
      `${name}-generation`,
      {
        host: host.name,
        connection: hostConnection(host, args.ssh),
        ...privateKeyInput(args.ssh),
        agent: { localPath: path.resolve(o.agentPath), sha256: agentSha, remotePath: o.remoteAgentPath, node: o.node, stateDir: o.stateDir },
        bundle: pulumi.secret(bundle.apply((b) => JSON.stringify(b))),
        confirmTimeoutSeconds: o.confirmTimeoutSeconds,
        once: args.once === true,
        // Only when asked: a state written without it stays as it was.
        ...((args.rebootCheck ?? rebootCheckFor(args.host.name)) && args.once !== true ? { rebootCheck: true } : {}),
        hash: part("hash"),
        files: part("files"),
        units: part("units"),
        sysctl: part("sysctl"),
        firewall: part("firewall"),
        firewallPolicy: part("firewallPolicy"),
        tailscale: part("tailscale"),
      },
      { parent: this },
    );
    // The hash names the generation (a sha256 over 256-bit keys and public text) and may be shown.
    this.generation = pulumi.unsecret(this.confirmed.hash);
    this.status = this.confirmed.status;
    this.registerOutputs({ generation: this.generation, status: this.status });
  }
}
