/**
 * What every mesh node shares (client, subnet router, exit node): the Proxmox
 * CT when the host lives in one, the agent push with the host's pre-auth key,
 * the route approval check for what it advertises, or, for a host without an
 * agent (a phone), join instructions as a secret output.
 */
import * as pulumi from "@pulumi/pulumi";
import { secretRefs } from "../core/bundle.ts";
import type { SshConnection } from "../provider/types.ts";
import type { HostSystem, LxcSettings } from "../core/types.ts";
import type { HeadscaleCli } from "./headscaleCli.ts";
import { HostAgent, type HostAgentArgs } from "./hostAgent.ts";
import { ProxmoxLxc, validateLxc } from "./proxmoxLxc.ts";
import { RouteApproval } from "./routeApproval.ts";
import { assertNoProblems, privateKeyInput, shArgv, withAfter, type SshAccess } from "./shell.ts";

export interface MeshNodeArgs {
  /**
   * The evaluated host.
   * @example fleet.hosts["laptop"]
   */
  host: HostSystem;
  /**
   * The coordinator's URL (`--login-server`).
   * @example coordinator.url
   */
  loginServer: pulumi.Input<string>;
  /**
   * The Tailscale release the fleet expects, named in the join instructions of a node without an agent.
   * @default undefined (not named)
   * @example fleet.tailscaleVersion
   */
  tailscaleVersion?: string;
  /**
   * The host's pre-auth key (a secret, from PreAuthKey.key); fills `preauth:<host>`.
   * @default undefined (the host already joined, or has no tailscale)
   * @example preAuthKey.key
   */
  preAuthKey?: pulumi.Input<string>;
  /**
   * Other secret values the host's files reference.
   * @default {}
   * @example {}
   */
  secrets?: Record<string, pulumi.Input<string>>;
  /**
   * How the deploy logs in to the host and its Proxmox node (pins, private key).
   * @default {}
   * @example { knownHostsPath: "~/.config/meshfleet/known_hosts", privateKeyPath: "~/.ssh/id_ed25519" }
   */
  ssh?: SshAccess;
  /**
   * HostAgent options.
   * @default {}
   * @example { confirmTimeoutSeconds: 300 }
   */
  agent?: Partial<Pick<HostAgentArgs, "agentPath" | "remoteAgentPath" | "stateDir" | "confirmTimeoutSeconds" | "node">>;
  /**
   * The coordinator's CLI and SSH connection, for the route approval check.
   * Required when the host advertises routes or an exit node.
   * @default undefined
   * @example { cli: coordinator.cli, connection: hostConnection(vps, ssh) }
   */
  coordinator?: { cli: HeadscaleCli; connection: SshConnection };
  /**
   * A site stack's node (docs/sites.md): the deploy has no access to the
   * coordinator, which the core stack deploys. Its routes are approved by the
   * autoApprovers the core renders from every site's routes, and the site
   * checks that the core runs the policy it evaluated (SiteMesh) instead of
   * asking headscale; no RouteApproval is made.
   * @default false
   * @example true
   */
  approvalByCore?: boolean;
  /**
   * Seconds the route approval check waits for the node and its approval.
   * @default 60
   * @example 180
   */
  routeApprovalTimeoutSeconds?: number;
  /**
   * What the node's generation waits for: the coordinator's generation, which
   * carries the policy whose autoApprovers approve the routes and may restart
   * headscale. A node whose tailscale settings change while headscale
   * restarts can have its new routes lost: tailscaled retries a map request
   * built before the change, headscale applies it after the newer update, and
   * keeps the old announced routes (seen with headscale 0.29.2 and tailscale
   * 1.98). So a node switches only once the coordinator's switch is confirmed.
   * @default []
   * @example [mesh.members["vps"].parts.agent.confirmed]
   */
  after?: pulumi.Resource[];
  /**
   * Every agent host's Prerequisites resource (the gate resolves once all are
   * declared): the node's generation waits for all of them, so no host
   * switches while one host's prerequisites are refused. `add` declares this
   * host's own once its LXC container exists.
   * @default undefined (no prerequisites check: a node built outside Mesh)
   * @example { gate }
   */
  prerequisites?: { gate: Promise<pulumi.Resource[]>; add?: (opts: pulumi.CustomResourceOptions) => pulumi.Resource };
}

/** Problems common to every node kind. */
export function validateMeshNodeArgs(args: MeshNodeArgs): string[] {
  const h = args.host;
  const p = validateLxc(h, args.ssh);
  const advertises = h.tailscale.enable && (h.tailscale.advertiseRoutes.length > 0 || h.tailscale.advertiseExitNode);
  if (advertises && h.agent && !args.coordinator && !args.approvalByCore) p.push(`${h.name}: it advertises routes, so the deploy needs the coordinator to check their approval`);
  if (!h.agent && h.lxc) p.push(`${h.file}: agent: host ${h.name} lives in a Proxmox CT but has no agent; set agent: true`);
  const needsKey = secretRefs(h).includes(`preauth:${h.name}`) || (!h.agent && h.tailscale.enable);
  if (needsKey && args.preAuthKey === undefined) p.push(`fleet.yaml: preAuthKeys: host ${h.name} needs a pre-auth key, found none. Fix: add { host: ${h.name}, user: … } to preAuthKeys`);
  return p;
}

/**
 * Join instructions for a device meshfleet cannot reach (no agent): what to
 * type, with the key. The key goes into a 0600 file read with
 * `--auth-key=file:`, never onto a command line (shell history, `ps`).
 */
export function joinInstructions(host: HostSystem, loginServer: string, key: string, tailscaleVersion?: string): string {
  const keyFile = "/etc/tailscale-authkey";
  const argv = ["tailscale", "up", `--login-server=${loginServer}`, `--auth-key=file:${keyFile}`, `--hostname=${host.tailscale.hostname || host.name}`];
  if (host.tailscale.acceptRoutes) argv.push("--accept-routes");
  return [
    `${host.name} has no meshfleet agent; join it by hand.`,
    `Login server: ${loginServer}`,
    ...(tailscaleVersion ? [`Tailscale: ${tailscaleVersion} or newer (the fleet's tailscaleVersion)`] : []),
    `Pre-auth key: ${key}`,
    `Desktop/CLI: paste the key into a file only root reads: sudo install -m 600 /dev/stdin ${keyFile} (paste, Enter, Ctrl-D); then: sudo ${shArgv(argv)}; then sudo rm ${keyFile}`,
    `Mobile app: Settings → Accounts → Use an alternate server → ${loginServer}, then sign in with the pre-auth key.`,
  ].join("\n");
}

/**
 * A short state from `meshfleet-agent status --json` ({generation, hash,
 * pendingConfirm, lastSwitch}); an unknown shape reads as "deployed".
 */
export function agentState(statusJson: string): string {
  let s: { generation?: unknown; pendingConfirm?: unknown; lastSwitch?: { success?: unknown; error?: unknown } | null };
  try {
    s = JSON.parse(statusJson);
  } catch {
    return "deployed";
  }
  if (typeof s?.generation !== "number") return "deployed";
  if (s.lastSwitch && s.lastSwitch.success === false) return `generation ${s.generation} (last switch failed: ${String(s.lastSwitch.error ?? "unknown")})`;
  if (s.pendingConfirm) return `generation ${s.generation} (awaiting confirm)`;
  return `generation ${s.generation}`;
}

export interface NodeParts {
  lxc?: ProxmoxLxc;
  agent?: HostAgent;
  routes?: RouteApproval;
  state: pulumi.Output<string>;
  joinInstructions?: pulumi.Output<string>;
}

/** Create a node's children under `parent`, each named `<name>-…`. */
export function deployNode(parent: pulumi.ComponentResource, name: string, args: MeshNodeArgs): NodeParts {
  const h = args.host;
  if (!h.agent) {
    const text = pulumi.all([args.loginServer, args.preAuthKey ?? ""]).apply(([url, key]) => joinInstructions(h, url, key, args.tailscaleVersion));
    return { state: pulumi.output("join instructions issued"), joinInstructions: pulumi.secret(text) };
  }
  const lxc = h.lxc ? new ProxmoxLxc(`${name}-lxc`, { host: h as HostSystem & { lxc: LxcSettings }, ssh: args.ssh }, { parent }) : undefined;
  if (lxc) args.prerequisites?.add?.({ dependsOn: [lxc] });
  const before = [...(lxc ? [lxc] : []), ...(args.after ?? [])];
  const secrets: Record<string, pulumi.Input<string>> = { ...(args.secrets ?? {}) };
  if (args.preAuthKey !== undefined) secrets[`preauth:${h.name}`] = args.preAuthKey;
  const agent = new HostAgent(
    `${name}-agent`,
    { host: h, secrets, ssh: args.ssh, ...args.agent },
    { parent, dependsOn: withAfter(args.prerequisites?.gate, before) },
  );
  const t = h.tailscale;
  let routes: RouteApproval | undefined;
  if (t.enable && (t.advertiseRoutes.length > 0 || t.advertiseExitNode) && args.coordinator) {
    routes = new RouteApproval(
      `${name}-routes`,
      {
        expect: { host: h.name, hostname: t.hostname || h.name, routes: t.advertiseRoutes, exitNode: t.advertiseExitNode },
        cli: args.coordinator.cli,
        connection: args.coordinator.connection,
        ...privateKeyInput(args.ssh),
        trigger: agent.generation,
        timeoutSeconds: args.routeApprovalTimeoutSeconds,
      },
      { parent, dependsOn: [agent.confirmed] },
    );
  }
  // The state reads "deployed" only once the routes are verified too: a failed check fails this output.
  const state = pulumi.all([agent.status, routes?.approvedRoutes ?? []]).apply(([s]) => agentState(s));
  return { lxc, agent, routes, state };
}

/** The outputs every node kind registers. */
export abstract class NodeBase extends pulumi.ComponentResource {
  public readonly nodeName!: pulumi.Output<string>;
  public readonly roles!: pulumi.Output<string[]>;
  public readonly routes!: pulumi.Output<string[]>;
  public readonly state!: pulumi.Output<string>;
  /** Only for hosts without an agent; a secret. */
  public readonly joinInstructions?: pulumi.Output<string>;
  public readonly parts!: NodeParts;

  protected constructor(type: string, name: string, args: MeshNodeArgs, problems: string[], opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(problems, `${type.split(":").pop()} ${name}`);
    super(type, name, {}, opts);
    const h = args.host;
    const parts = deployNode(this, name, args);
    Object.assign(this, {
      parts,
      nodeName: pulumi.output(h.name),
      roles: pulumi.output(h.roles),
      routes: pulumi.output([...h.tailscale.advertiseRoutes, ...(h.tailscale.advertiseExitNode ? ["0.0.0.0/0", "::/0"] : [])]),
      state: parts.state,
      joinInstructions: parts.joinInstructions,
    });
    this.registerOutputs({
      nodeName: this.nodeName,
      roles: this.roles,
      routes: this.routes,
      state: this.state,
      ...(this.joinInstructions ? { joinInstructions: this.joinInstructions } : {}),
    });
  }
}
