/**
 * HostAgent: ship one host's generation to its agent over SSH and make the
 * agent activate it, with the lockout guard: `switch` arms a rollback timer,
 * and only a `confirm` over a *new* SSH connection keeps the generation. A
 * deploy that cuts its own SSH path (firewall, tailnet route) is rolled back
 * by the host itself.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { makeBundle, secretRefs, type Bundle } from "../core/bundle.ts";
import { AGENT_HOST_PATH, type HostSystem } from "../core/types.ts";
import { assertNoProblems, shq } from "./shell.ts";

export interface HostAgentArgs {
  /**
   * The evaluated host whose generation is pushed.
   * @example fleet.hosts["router"]
   */
  host: HostSystem;
  /**
   * The host's rendered `table inet meshfleet` ruleset, or null to leave the firewall alone.
   * @default null
   * @example renderNftables(fleet.hosts["router"])
   */
  nftables?: string | null;
  /**
   * Values for the host's secret references (FileSpec.secretRef): `noise-key`,
   * `derp-key`, `preauth:<host>`. Only the names the host uses are read.
   * @default {}
   * @example { "preauth:router": preAuthKey.key }
   */
  secrets?: Record<string, pulumi.Input<string>>;
  /**
   * How to reach the host's sshd.
   * @example hostConnection(host, sshPrivateKey)
   */
  connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
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
}

export const HOST_AGENT_DEFAULTS = {
  agentPath: "dist/meshfleet-agent.mjs",
  remoteAgentPath: AGENT_HOST_PATH,
  stateDir: "/var/lib/meshfleet",
  confirmTimeoutSeconds: 120,
  node: "node",
} as const;

/** Problems with HostAgent args, found before anything is created. */
export function validateHostAgentArgs(args: Pick<HostAgentArgs, "host" | "secrets" | "agentPath" | "confirmTimeoutSeconds">): string[] {
  const problems: string[] = [];
  const h = args.host;
  const agentPath = args.agentPath ?? HOST_AGENT_DEFAULTS.agentPath;
  if (!h.agent) problems.push(`${h.file}: agent: host ${h.name} has no agent (agent: false), so nothing can be pushed to it; give it join instructions (MeshNode) instead`);
  if (!h.address) problems.push(`${h.file}: address: expected the address Pulumi reaches ${h.name}'s sshd on, found nothing. Fix: set address`);
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

/** The shell script of the switch step; the bundle arrives on stdin and never touches argv or logs. */
export function switchScript(o: { node: string; remoteAgentPath: string; stateDir: string; confirmTimeoutSeconds: number }): string {
  const incoming = `${o.stateDir}/incoming`;
  const file = `${incoming}/bundle.json`;
  return [
    "set -eu",
    "umask 077",
    `mkdir -p ${shq(incoming)}`,
    `cat > ${shq(`${file}.tmp`)}`,
    `mv -f ${shq(`${file}.tmp`)} ${shq(file)}`,
    `${shq(o.node)} ${shq(o.remoteAgentPath)} switch ${shq(file)} --confirm-timeout ${o.confirmTimeoutSeconds}`,
  ].join("\n");
}

/** The preparation step: the host has Node and the agent's directories exist. */
export function prepareScript(o: { host: string; node: string; remoteAgentPath: string; stateDir: string }): string {
  const dir = o.remoteAgentPath.replace(/\/[^/]+$/, "") || "/";
  return [
    "set -eu",
    `if ! command -v ${shq(o.node)} >/dev/null 2>&1; then echo ${shq(`meshfleet: ${o.host} has no ${o.node} (Node.js 18 or newer); install the nodejs package on it`)} >&2; exit 1; fi`,
    `install -d -m 0755 ${shq(dir)}`,
    `install -d -m 0700 ${shq(o.stateDir)}`,
  ].join("\n");
}

export class HostAgent extends pulumi.ComponentResource {
  /** The generation hash now active on the host (sha256 of the bundle). */
  public readonly generation: pulumi.Output<string>;
  /** `meshfleet-agent status --json` after the confirm. */
  public readonly status: pulumi.Output<string>;
  /** The confirm step; depend on it for "this host runs its new generation". */
  public readonly confirmed: command.remote.Command;

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
    // A one-shot generation keeps its first bundle: later changes go to the host's full HostAgent.
    const frozen = args.once ? { ignoreChanges: ["triggers", "stdin", "create"] } : {};
    const agentSha = createHash("sha256").update(readFileSync(o.agentPath)).digest("hex");

    // Only the secrets this host references travel with its bundle.
    const wanted = secretRefs(host);
    const secretValues = pulumi.all(Object.fromEntries(wanted.map((r) => [r, args.secrets![r]])) as Record<string, pulumi.Input<string>>);
    const bundle: pulumi.Output<Bundle> = secretValues.apply((s) => makeBundle(host, args.nftables ?? null, s));
    const bundleJson = pulumi.secret(bundle.apply((b) => JSON.stringify(b)));
    // The hash of a bundle is a sha256 over 256-bit keys and public text; it names the generation and may be shown.
    this.generation = pulumi.unsecret(bundle.apply((b) => b.hash));

    const prepare = new command.remote.Command(
      `${name}-prepare`,
      { connection: args.connection, create: prepareScript({ host: host.name, ...o }) },
      { parent: this },
    );
    const copy = new command.remote.CopyToRemote(
      `${name}-agent`,
      {
        connection: args.connection,
        source: new pulumi.asset.FileAsset(o.agentPath),
        remotePath: o.remoteAgentPath,
        triggers: [agentSha],
      },
      { parent: this, dependsOn: [prepare] },
    );
    const sw = new command.remote.Command(
      `${name}-switch`,
      {
        connection: args.connection,
        create: switchScript(o),
        stdin: bundleJson,
        // An unchanged generation (same hash, same agent) does nothing on `pulumi up`.
        triggers: [this.generation, agentSha],
        logging: "stdoutAndStderr",
      },
      { parent: this, dependsOn: [copy], ...frozen },
    );
    // A separate resource is a separate SSH connection: if the switch cut SSH, this fails and the host rolls back.
    this.confirmed = new command.remote.Command(
      `${name}-confirm`,
      {
        connection: args.connection,
        create: `${shq(o.node)} ${shq(o.remoteAgentPath)} confirm`,
        triggers: [this.generation],
      },
      { parent: this, dependsOn: [sw], ...frozen },
    );
    const status = new command.remote.Command(
      `${name}-status`,
      {
        connection: args.connection,
        create: `${shq(o.node)} ${shq(o.remoteAgentPath)} status --json`,
        triggers: [this.generation],
        logging: "stderr",
      },
      { parent: this, dependsOn: [this.confirmed], ...frozen },
    );
    this.status = status.stdout;
    this.registerOutputs({ generation: this.generation, status: this.status });
  }
}
