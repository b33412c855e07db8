/**
 * Mesh: one evaluated FleetSystem in, the whole mesh out. Validates
 * everything first (all problems at once, before any resource exists), then
 * builds, in dependency order:
 *
 *   Coordinator (+ ReverseProxy, DerpRelay on its host) ─▶ ready
 *     ─▶ HeadscaleUser per fleet user ─▶ PreAuthKey per request
 *       ─▶ SubnetRouter / ExitNode / MeshNode per host (agent push with its key)
 *         ─▶ RouteApproval for what each node advertises
 */
import * as pulumi from "@pulumi/pulumi";
import { secretRefs } from "../core/bundle.ts";
import { derivePrivateKey, publicKeyOf } from "../core/keys.ts";
import { NOISE_PUBLIC_KEY_REF } from "../modules/tailscale.ts";
import type { FleetSystem, HostSystem } from "../core/types.ts";
import { Coordinator, coordinatorCli, validateCoordinatorArgs, type CoordinatorArgs } from "./coordinator.ts";
import { DerpRelay, type DerpMode } from "./derpRelay.ts";
import { OIDC_SECRET_REF } from "../modules/headscale.ts";
import { POSTGRES_SECRET_REFS, postgresSecretFiles, validateContainerSpec, validatePostgresPassword } from "./dockerService.ts";
import { ExitNode, validateExitNodeArgs } from "./exitNode.ts";
import { HeadscaleUser, validateHeadscaleUserArgs } from "./headscaleUser.ts";
import { validateHostAgentArgs, type HostAgentArgs } from "./hostAgent.ts";
import { MeshNode } from "./meshNode.ts";
import { validateMeshNodeArgs, type MeshNodeArgs, type NodeBase } from "./node.ts";
import { PreAuthKey, validatePreAuthKeyArgs } from "./preAuthKey.ts";
import { ReverseProxy, type ProxyKind } from "./reverseProxy.ts";
import { assertNoProblems, hostConnection, privateKeyInput, slug, type SshAccess } from "./shell.ts";
import { prerequisiteSpec } from "./prerequisites.ts";
import { Prerequisites } from "../provider/sdk.ts";
import { SubnetRouter, validateSubnetRouterArgs } from "./subnetRouter.ts";

export interface MeshArgs {
  /**
   * The evaluated fleet (core `evaluateFleet`).
   * @example (await evaluateFleet("hosts/home")).fleet
   */
  fleet: FleetSystem;
  /**
   * The stack's key seed (a secret ≥ 16 characters); the Noise and DERP keys derive from it.
   * @example config.requireSecret("keySeed")
   */
  keySeed: pulumi.Input<string>;
  /**
   * How the deploy logs in to every host and Proxmox node: pins for hosts
   * whose file sets no `ssh.hostKey` (a known_hosts file, read with
   * `ssh-keygen -F`), and the private key (a file path; key text only when
   * there is no file). A host with no pin stops the deploy before anything
   * is touched.
   * @default {}
   * @example { knownHostsPath: "~/.config/meshfleet/known_hosts", privateKeyPath: "~/.ssh/id_ed25519" }
   */
  ssh?: SshAccess;
  /**
   * HostAgent options for every host.
   * @default {}
   * @example { agentPath: "dist/meshfleet-agent.mjs", confirmTimeoutSeconds: 120 }
   */
  agent?: Partial<Pick<HostAgentArgs, "agentPath" | "remoteAgentPath" | "stateDir" | "confirmTimeoutSeconds" | "node">>;
  /**
   * Image digests by container name (docker runtime), pinned on top of the tag.
   * @default {}
   * @example { headscale: "sha256:…" }
   */
  imageDigests?: Record<string, string>;
  /**
   * A headscale binary to install on a systemd-runtime coordinator.
   * @default undefined (already on the host)
   * @example "/home/alice/.cache/meshfleet/tools/headscale@0.29.2/bin/headscale" (absolute, or relative to the repository's root; no ~)
   */
  headscaleBinaryPath?: string;
  /**
   * The Postgres password (headscale.database.type: postgres), a secret; meshfleet writes it as a
   * 0600 libpq password file named by PGPASSFILE on both runtimes (never in a unit's or container's env).
   * @default undefined (a Postgres coordinator then stops the deploy)
   * @example config.requireSecret("headscalePostgresPassword")
   */
  headscalePostgresPassword?: pulumi.Input<string>;
  /**
   * The OIDC client secret (headscale.oidc.enable), a secret; written to the 0600 file headscale's
   * oidc.client_secret_path names, never into config.yaml or git.
   * @default undefined (an OIDC coordinator then stops the deploy)
   * @example config.requireSecret("headscaleOidcClientSecret")
   */
  headscaleOidcClientSecret?: pulumi.Input<string>;
  /**
   * The coordinator's database and keys were put on its new host by hand
   * (docs/move.md): a move of coordinator.host only records it.
   * @default false
   * @example config.getBoolean("coordinatorMovedByHand")
   */
  coordinatorMovedByHand?: boolean;
  /**
   * Seconds the route approval checks wait.
   * @default 60
   * @example 180
   */
  routeApprovalTimeoutSeconds?: number;
}

/**
 * Whether this stack deploys the host: every host of a fleet without sites,
 * else only the hosts of this stack's own folder (core/sites.ts). The others
 * are evaluated (the policy, the keys) but never touched.
 */
export function deploysHere(fleet: FleetSystem, host: string): boolean {
  return !fleet.sites || fleet.sites.local.includes(host);
}

/** Whether the coordinator host is also a node: it joins the mesh (in either runtime the Coordinator's own push delivers headscale). */
export function coordinatorIsNode(h: HostSystem): boolean {
  return joinsMesh(h);
}

/** The host reads its own pre-auth key: it joins the mesh. */
export function joinsMesh(h: HostSystem): boolean {
  return secretRefs(h).some((r) => r.startsWith("preauth:"));
}

export type NodeKind = "subnet-router" | "exit-node" | "client";

/** Which component a host becomes. */
export function nodeKind(h: HostSystem): NodeKind {
  if (h.roles.includes("subnet-router")) return "subnet-router";
  if (h.roles.includes("exit-node")) return "exit-node";
  return "client";
}

/** The reverse proxy on the coordinator host, if any: by role, container or unit. */
export function proxyKind(h: HostSystem): ProxyKind | null {
  for (const k of ["caddy", "nginx"] as const) {
    if (h.containers.some((c) => c.name === k) || h.units.some((u) => u.name === `${k}.service`)) return k;
  }
  return null;
}

/** A standalone derper, headscale's embedded relay, or none. */
export function derpMode(fleet: FleetSystem, h: HostSystem): DerpMode | null {
  if (h.containers.some((c) => c.name === "derper") || h.units.some((u) => u.name === "derper.service")) return "standalone";
  return (h.roles.includes("derp") || h.roles.includes("derp-relay")) && fleet.derpRegions.length > 0 ? "embedded" : null;
}

/** The OIDC client secret's problems, never showing it: one line, not empty. */
export function validateOidcClientSecret(v: string): string[] {
  if (v === "") return ["meshfleet:headscaleOidcClientSecret: empty. Fix: pulumi config set --secret meshfleet:headscaleOidcClientSecret <secret>"];
  if (/[\r\n\0]/.test(v)) return ["meshfleet:headscaleOidcClientSecret: holds a line break or NUL (not shown). Fix: set it again without the trailing newline, e.g. printf '%s' ... | pulumi config set --secret meshfleet:headscaleOidcClientSecret"];
  return [];
}

/** The secret names meshfleet can fill, for a fleet. */
export function providedSecrets(fleet: FleetSystem, o: { postgresPassword?: boolean; oidcClientSecret?: boolean } = {}): string[] {
  return [
    "noise-key",
    "derp-key",
    NOISE_PUBLIC_KEY_REF,
    ...(o.postgresPassword ? POSTGRES_SECRET_REFS : []),
    ...(o.oidcClientSecret ? [OIDC_SECRET_REF] : []),
    ...fleet.preAuthKeys.map((k) => `preauth:${k.host}`),
  ];
}

/** Every problem that would stop the deploy, found before any resource exists. */
export function validateMesh(args: Pick<MeshArgs, "fleet" | "agent" | "headscaleBinaryPath" | "ssh" | "headscalePostgresPassword" | "headscaleOidcClientSecret">): string[] {
  const { fleet } = args;
  const p: string[] = [];
  const coord = fleet.hosts[fleet.coordinator.host];
  if (!coord) {
    return [`fleet.yaml: coordinator.host: expected one of the fleet's hosts (${Object.keys(fleet.hosts).join(", ")}), found ${JSON.stringify(fleet.coordinator.host)}`];
  }
  if (fleet.sites && fleet.sites.site !== null)
    return [`stack ${fleet.stack}: expected the core's folder for a Mesh, found site ${fleet.sites.site} (its fleet.yaml names core ${fleet.sites.core.stack}). Fix: deploy a site with SiteMesh (index.ts does), the core with Mesh`];
  const provided = providedSecrets(fleet, { postgresPassword: args.headscalePostgresPassword !== undefined, oidcClientSecret: args.headscaleOidcClientSecret !== undefined });
  const secretsOf = (h: HostSystem) => Object.fromEntries(secretRefs(h).filter((r) => provided.includes(r)).map((r) => [r, ""]));
  for (const h of Object.values(fleet.hosts)) {
    for (const ref of secretRefs(h)) {
      if (!provided.includes(ref)) {
        p.push(
          (POSTGRES_SECRET_REFS as readonly string[]).includes(ref)
            ? `${h.file}: headscale.database.type: postgres needs the database password. Fix: pulumi config set --secret meshfleet:headscalePostgresPassword <password>`
            : ref === OIDC_SECRET_REF
            ? `${h.file}: headscale.oidc.enable needs the client secret. Fix: pulumi config set --secret meshfleet:headscaleOidcClientSecret <secret> (from the OIDC provider's client registration)`
            : ref.startsWith("preauth:")
            ? `fleet.yaml: preAuthKeys: host ${h.name} reads secret "${ref}" but the fleet asks for no pre-auth key for it. Fix: add { host: ${h.name}, user: … } to preAuthKeys`
            : `${h.file}: files: secret "${ref}" is not one meshfleet provides (${provided.join(", ")})`,
        );
      }
    }
  }
  const coordArgs: CoordinatorArgs = { host: coord, info: fleet.coordinator, secrets: secretsOf(coord), binaryPath: args.headscaleBinaryPath, ssh: args.ssh };
  p.push(...validateCoordinatorArgs(coordArgs));
  const proxy = proxyKind(coord);
  if (proxy && coord.runtime === "docker") p.push(...validateContainerSpec(coord, coord.containers.find((c) => c.name === proxy)!, Object.keys(secretsOf(coord))));
  if (derpMode(fleet, coord) === "standalone" && coord.runtime === "docker") {
    p.push(...validateContainerSpec(coord, coord.containers.find((c) => c.name === "derper")!, Object.keys(secretsOf(coord))));
  }
  for (const u of fleet.users) p.push(...validateHeadscaleUserArgs({ user: u }));
  for (const k of fleet.preAuthKeys) {
    if (!fleet.hosts[k.host]) p.push(`fleet.yaml: preAuthKeys: expected a host of the fleet, found ${JSON.stringify(k.host)}`);
    if (k.user && !fleet.users.includes(k.user)) p.push(`fleet.yaml: preAuthKeys[${k.host}].user: expected one of users (${fleet.users.join(", ")}), found ${JSON.stringify(k.user)}`);
    p.push(...validatePreAuthKeyArgs(k));
  }
  const keyed = new Set(fleet.preAuthKeys.map((k) => k.host));
  for (const h of Object.values(fleet.hosts)) {
    if (!deploysHere(fleet, h.name)) continue;
    if (h.name === coord.name && !coordinatorIsNode(coord)) {
      if (h.agent) p.push(...validateHostAgentArgs({ host: h, secrets: secretsOf(h), ssh: args.ssh, ...args.agent }));
      continue;
    }
    const nodeArgs: MeshNodeArgs = {
      host: h,
      loginServer: fleet.coordinator.serverUrl,
      preAuthKey: keyed.has(h.name) ? "" : undefined,
      coordinator: { cli: coordinatorCli(coord), connection: hostConnection(coord, args.ssh) },
      ssh: args.ssh,
    };
    const kind = nodeKind(h);
    p.push(...(kind === "subnet-router" ? validateSubnetRouterArgs(nodeArgs) : kind === "exit-node" ? validateExitNodeArgs(nodeArgs) : validateMeshNodeArgs(nodeArgs)));
    if (h.agent) p.push(...validateHostAgentArgs({ host: h, secrets: secretsOf(h), ssh: args.ssh, ...args.agent }));
  }
  return [...new Set(p)];
}

export interface NodeSummary {
  name: string;
  roles: string[];
  routes: string[];
  state: string;
}

/** The readable network summary (a stack output). */
export function meshSummary(fleet: FleetSystem, nodes: Record<string, NodeSummary>): string {
  const c = fleet.coordinator;
  const rows = Object.values(nodes).map((n) => [n.name, n.roles.join(",") || "client", n.routes.join(" ") || "-", n.state]);
  const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i].length), 4));
  return [
    `mesh ${fleet.stack}: coordinator ${c.serverUrl} on ${c.host} (${c.runtime}, headscale ${c.headscaleVersion}), ${Object.keys(nodes).length} nodes`,
    ...rows.map((r) => `  ${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${r[2].padEnd(widths[2])}  ${r[3]}`),
  ].join("\n");
}

export class Mesh extends pulumi.ComponentResource {
  public readonly coordinatorUrl: pulumi.Output<string>;
  /** Per node: name, roles, routes, state. */
  public readonly nodes: pulumi.Output<Record<string, NodeSummary>>;
  public readonly summary: pulumi.Output<string>;
  /** Join instructions of hosts without an agent (a secret). */
  public readonly joinInstructions: pulumi.Output<Record<string, string>>;
  public readonly coordinator: Coordinator;
  public readonly proxy?: ReverseProxy;
  public readonly derp?: DerpRelay;
  public readonly users: Record<string, HeadscaleUser> = {};
  public readonly preAuthKeys: Record<string, PreAuthKey> = {};
  public readonly members: Record<string, NodeBase> = {};

  constructor(name: string, args: MeshArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateMesh(args), `meshfleet cannot deploy stack ${args.fleet.stack}`);
    super("meshfleet:index:Mesh", name, {}, opts);
    const fleet = args.fleet;
    const coordHost = fleet.hosts[fleet.coordinator.host];
    const seed = pulumi.secret(args.keySeed);
    const keys: Record<string, pulumi.Output<string>> = {
      "noise-key": pulumi.secret(seed.apply((s) => derivePrivateKey(s, "noise"))),
      "derp-key": pulumi.secret(seed.apply((s) => derivePrivateKey(s, "derp"))),
      // Public, but derived from the seed: each node's tailscaled restarts when it changes (modules/tailscale.ts).
      [NOISE_PUBLIC_KEY_REF]: pulumi.secret(seed.apply((s) => publicKeyOf(derivePrivateKey(s, "noise")))),
    };
    if (args.headscalePostgresPassword !== undefined) {
      const pw = pulumi.secret(args.headscalePostgresPassword).apply((v) => {
        assertNoProblems(validatePostgresPassword(v), `meshfleet cannot deploy stack ${args.fleet.stack}`);
        return v;
      });
      for (const ref of POSTGRES_SECRET_REFS) keys[ref] = pulumi.secret(pw.apply((v) => postgresSecretFiles(v)[ref]));
    }
    if (args.headscaleOidcClientSecret !== undefined) {
      keys[OIDC_SECRET_REF] = pulumi.secret(pulumi.output(args.headscaleOidcClientSecret).apply((v) => {
        assertNoProblems(validateOidcClientSecret(v), `meshfleet cannot deploy stack ${args.fleet.stack}`);
        return v;
      }));
    }
    const pick = (h: HostSystem) => Object.fromEntries(secretRefs(h).filter((r) => r in keys).map((r) => [r, keys[r]]));
    const child = { parent: this };

    // Every agent host's prerequisites (OS, the agent's Node, declared packages, pinned binaries) are
    // checked, and missing packages installed, before any host's generation switches: a refusal on
    // one host leaves every host's configuration as it was. An LXC container meshfleet creates gets
    // its check once the container exists (deployNode); the coordinator cannot wait for those (the
    // container waits for headscale), the other nodes do. The gate resolves when all are declared.
    const prereqs: pulumi.Resource[] = [];
    let openGate!: (rs: pulumi.Resource[]) => void;
    const gate = new Promise<pulumi.Resource[]>((r) => (openGate = r));
    const prereqContext = (h: HostSystem) => ({
      tailscaleVersion: fleet.tailscaleVersion,
      node: args.agent?.node,
      coordinator:
        h.name === coordHost.name && coordHost.runtime === "systemd"
          ? { headscaleVersion: fleet.coordinator.headscaleVersion, binary: coordinatorCli(coordHost, { binaryPath: args.headscaleBinaryPath }).binary, deployed: !!args.headscaleBinaryPath }
          : undefined,
    });
    const prerequisitesOf = (h: HostSystem, opts: pulumi.CustomResourceOptions = {}) => {
      const r = new Prerequisites(`${name}-${slug(h.name)}-prerequisites`, { host: h.name, connection: hostConnection(h, args.ssh), ...key, spec: prerequisiteSpec(h, prereqContext(h)) }, { parent: this, ...opts });
      prereqs.push(r);
      return r;
    };
    const key = privateKeyInput(args.ssh);
    if (coordHost.agent) prerequisitesOf(coordHost);
    for (const h of Object.values(fleet.hosts)) if (h.agent && h.name !== coordHost.name && !h.lxc && deploysHere(fleet, h.name)) prerequisitesOf(h);

    this.coordinator = new Coordinator(
      `${name}-coordinator`,
      {
        host: coordHost,
        info: fleet.coordinator,
        secrets: pick(coordHost),
        ssh: args.ssh,
        imageDigest: args.imageDigests?.headscale,
        imageDigests: args.imageDigests,
        binaryPath: args.headscaleBinaryPath,
        agent: args.agent,
        joinsMesh: joinsMesh(coordHost),
        after: Promise.resolve([...prereqs]),
        ...(args.coordinatorMovedByHand ? { movedByHand: true } : {}),
      },
      child,
    );
    const c = this.coordinator;
    const coordConn = hostConnection(coordHost, args.ssh);
    const answered: pulumi.ComponentResourceOptions = { parent: this, dependsOn: [c.ready] };
    for (const u of fleet.users) {
      this.users[u] = new HeadscaleUser(`${name}-user-${slug(u)}`, { user: u, cli: c.cli, connection: coordConn, ...key }, answered);
    }
    for (const req of fleet.preAuthKeys) {
      const user = req.user ? this.users[req.user] : undefined;
      this.preAuthKeys[req.host] = new PreAuthKey(
        `${name}-key-${slug(req.host)}`,
        { request: req, hostname: fleet.hosts[req.host]?.tailscale.hostname || req.host, userId: user?.userId, cli: c.cli, connection: coordConn, ...key },
        { parent: this, dependsOn: [c.ready, ...(user ? [user] : [])] },
      );
    }

    // In the systemd runtime the coordinator's own generation carries the
    // policy, and headscale auto-approves a route only once the policy allowing
    // it is loaded. The other nodes' generations switch after the
    // coordinator's is confirmed: a node's new routes announced while headscale
    // restarts can be lost (MeshNodeArgs.after), and the routes then meet the
    // policy that approves them. When the coordinator's generation is
    // unchanged the nodes do not wait. Route approval still has headscale
    // reload its policy once when a route was announced first.
    const ordered = Object.values(fleet.hosts).sort((a, b) => Number(b.name === coordHost.name) - Number(a.name === coordHost.name));
    // A coordinator that is not a node: its one generation (c.hostAgent) is the one that carries the policy.
    let after: pulumi.Resource[] = coordinatorIsNode(coordHost) ? [] : [c.hostAgent.confirmed];
    try {
      for (const h of ordered) {
        if (h.name === coordHost.name && !coordinatorIsNode(h)) continue;
        // A site's host is the site stack's to deploy; this stack made its key (above) and exports it.
        if (!deploysHere(fleet, h.name)) continue;
        const nodeArgs: MeshNodeArgs = {
          // The coordinator's final generation keeps its compose file and unit (docker runtime).
          host: h.name === coordHost.name ? c.generationHost : h,
          loginServer: c.url,
          tailscaleVersion: fleet.tailscaleVersion,
          preAuthKey: this.preAuthKeys[h.name]?.key,
          secrets: pick(h),
          ssh: args.ssh,
          agent: args.agent,
          coordinator: { cli: c.cli, connection: coordConn },
          routeApprovalTimeoutSeconds: args.routeApprovalTimeoutSeconds,
          after,
          prerequisites: { gate, ...(h.lxc && h.name !== coordHost.name ? { add: (o: pulumi.CustomResourceOptions) => prerequisitesOf(h, o) } : {}) },
        };
        const kind = nodeKind(h);
        const n = `${name}-${slug(h.name)}`;
        const opts = answered;
        this.members[h.name] =
          kind === "subnet-router" ? new SubnetRouter(n, nodeArgs, opts) : kind === "exit-node" ? new ExitNode(n, nodeArgs, opts) : new MeshNode(n, nodeArgs, opts);
        const coordAgentPart = h.name === coordHost.name ? this.members[h.name].parts.agent : undefined;
        if (coordAgentPart) after = [coordAgentPart.confirmed];
      }
    } finally {
      // Resolved even when a member throws: a generation waiting on it would otherwise hold the run open.
      openGate([...prereqs]);
    }

    // Systemd runtime: the proxy and relay checks follow the host's final generation.
    const coordAgent = this.members[coordHost.name]?.parts.agent ?? c.hostAgent;
    const proxy = proxyKind(coordHost);
    if (proxy) {
      this.proxy = new ReverseProxy(
        `${name}-proxy`,
        {
          host: coordHost,
          kind: proxy,
          url: fleet.coordinator.serverUrl,
          hostAgent: coordAgent,
          ssh: args.ssh,
          secrets: pick(coordHost),
        },
        child,
      );
    }
    const derp = derpMode(fleet, coordHost);
    if (derp) {
      this.derp = new DerpRelay(
        `${name}-derp`,
        {
          host: coordHost,
          mode: derp,
          region: fleet.derpRegions[0],
          hostAgent: coordAgent,
          ssh: args.ssh,
          secrets: pick(coordHost),
        },
        child,
      );
    }

    const coordState = c.ready.state.apply((s) => s || "serving");
    const entries: pulumi.Output<NodeSummary>[] = [
      ...(this.members[coordHost.name] ? [] : [coordState.apply((state) => ({ name: coordHost.name, roles: coordHost.roles, routes: [] as string[], state }))]),
      ...Object.values(this.members).map((m) =>
        pulumi.all([m.nodeName, m.roles, m.routes, m.state]).apply(([nodeName, roles, routes, state]) => ({ name: nodeName, roles, routes, state })),
      ),
    ];
    this.nodes = pulumi.all(entries).apply((list) => Object.fromEntries(list.map((e) => [e.name, e])));
    this.summary = this.nodes.apply((n) => meshSummary(fleet, n));
    this.coordinatorUrl = c.url;
    const join = Object.entries(this.members).filter(([, m]) => m.joinInstructions);
    this.joinInstructions = pulumi.secret(pulumi.all(Object.fromEntries(join.map(([h, m]) => [h, m.joinInstructions!]))));
    this.registerOutputs({
      coordinatorUrl: this.coordinatorUrl,
      nodes: this.nodes,
      summary: this.summary,
      joinInstructions: this.joinInstructions,
    });
  }
}
