/**
 * Sites as stacks (docs/sites.md). The core stack's Mesh deploys the
 * coordinator and the core's own hosts, makes every site host's pre-auth
 * key, and exports per site what the site needs (`coreOutputs`). A site
 * stack's SiteMesh deploys only its own folder's hosts: it reads the
 * coordinator's URL, its hosts' keys and the coordinator's public Noise key
 * from the core stack through a StackReference, and never opens a
 * connection to the coordinator or to another site's hosts.
 *
 * Route approval in a site: headscale approves a site router's routes by the
 * autoApprovers the core rendered from every site's routes (the whole fleet
 * is evaluated everywhere). The site cannot ask headscale, so it checks what
 * makes that approval hold: the core stack runs the policy this site
 * evaluated (the same sha256 of the rendered policy) at the URL this site's
 * hosts are configured with, and holds a key for each of its hosts. The
 * core's outputs are read before anything is declared: on `up` a mismatch
 * stops the site with no resource declared (no host switches); a preview
 * warns and goes on.
 */
import * as pulumi from "@pulumi/pulumi";
import { secretRefs } from "../core/bundle.ts";
import { derivePrivateKey, publicKeyOf } from "../core/keys.ts";
import { sha256 } from "../contract/bundle.ts";
import { unreadableCoreMessage } from "../core/sites.ts";
import type { FleetSystem, HostSystem, SiteLayout } from "../core/types.ts";
import { NOISE_PUBLIC_KEY_REF } from "../modules/tailscale.ts";
import { ExitNode, validateExitNodeArgs } from "./exitNode.ts";
import { validateHostAgentArgs, type HostAgentArgs } from "./hostAgent.ts";
import { MeshNode } from "./meshNode.ts";
import { meshSummary, nodeKind, type Mesh, type NodeSummary } from "./mesh.ts";
import { validateMeshNodeArgs, type MeshNodeArgs, type NodeBase } from "./node.ts";
import { prerequisiteSpec } from "./prerequisites.ts";
import { Prerequisites } from "../provider/sdk.ts";
import { assertNoProblems, hostConnection, privateKeyInput, slug, type SshAccess } from "./shell.ts";
import { SubnetRouter, validateSubnetRouterArgs } from "./subnetRouter.ts";

/** The sha256 of the policy file headscale loads: what a site compares with its core's. */
export function policyDigest(fleet: FleetSystem): string {
  return sha256(fleet.policyHuJson);
}

/** The secrets a site host may read: its pre-auth key and the coordinator's public Noise key (the rest are the core's). */
export const SITE_SECRETS = (host: string) => [`preauth:${host}`, NOISE_PUBLIC_KEY_REF];

/** What the core stack exports for its sites (stack outputs of the core's program). */
export interface CoreOutputs {
  /** The coordinator's URL, as the Coordinator serves it. */
  coordinatorUrl: pulumi.Output<string>;
  /** sha256 of the policy the coordinator loads (not secret: a digest of a file in git). */
  policySha256: pulumi.Output<string>;
  /** The coordinator's public Noise key (a secret: derived from the seed; hosts restart tailscaled when it changes). */
  noisePublicKey: pulumi.Output<string>;
  /** Per site, its hosts' pre-auth keys: `{ office: { preAuthKeys: { desk: "hskey-auth-…" } } }`, one secret. */
  sites: pulumi.Output<Record<string, { preAuthKeys: Record<string, string> }>>;
}

/** The core stack's outputs for its sites, from its Mesh (which made every site host's key). */
export function coreOutputs(mesh: Mesh, fleet: FleetSystem, keySeed: pulumi.Input<string>): CoreOutputs {
  const layout = fleet.sites;
  if (!layout || layout.site !== null) throw new pulumi.RunError(`stack ${fleet.stack}: coreOutputs is for a core stack (a fleet.yaml with sites)`);
  const perSite = Object.fromEntries(
    Object.entries(layout.sites).map(([site, s]) => [
      site,
      pulumi.all(Object.fromEntries(s.hosts.filter((h) => mesh.preAuthKeys[h]).map((h) => [h, mesh.preAuthKeys[h].key]))).apply((preAuthKeys) => ({ preAuthKeys })),
    ]),
  );
  return {
    coordinatorUrl: mesh.coordinatorUrl,
    policySha256: pulumi.output(policyDigest(fleet)),
    noisePublicKey: pulumi.secret(pulumi.secret(keySeed).apply((s) => publicKeyOf(derivePrivateKey(s, "noise")))),
    sites: pulumi.secret(pulumi.all(perSite)),
  };
}

export interface SiteMeshArgs {
  /**
   * The whole fleet evaluated from this site's folder (core `evaluateFleet`); its `sites` says which hosts are this site's.
   * @example (await evaluateFleet(REGISTRY, "hosts/office", "office")).fleet
   */
  fleet: FleetSystem;
  /**
   * How the deploy logs in to this site's hosts (pins, private key). Nothing of the core's is needed.
   * @default {}
   * @example { knownHostsPath: "~/.config/meshfleet/known_hosts", privateKeyPath: "~/.ssh/id_ed25519" }
   */
  ssh?: SshAccess;
  /**
   * HostAgent options for every host of the site.
   * @default {}
   * @example { agentPath: "dist/meshfleet-agent.mjs", confirmTimeoutSeconds: 120 }
   */
  agent?: Partial<Pick<HostAgentArgs, "agentPath" | "remoteAgentPath" | "stateDir" | "confirmTimeoutSeconds" | "node">>;
}

/** This stack's part, for a site stack. */
function siteOf(fleet: FleetSystem): SiteLayout & { site: string } {
  const l = fleet.sites;
  if (!l || l.site === null) throw new pulumi.RunError(`stack ${fleet.stack}: expected a site's folder (its fleet.yaml is core: { stack, dir }), found ${l ? "the core" : "a fleet without sites"}. Fix: deploy it with Mesh`);
  return l as SiteLayout & { site: string };
}

/** Every problem that would stop a site's deploy, found before any resource exists. */
export function validateSiteMesh(args: SiteMeshArgs): string[] {
  const { fleet } = args;
  const l = fleet.sites;
  if (!l || l.site === null) return [`stack ${fleet.stack}: expected a site's folder (its fleet.yaml is core: { stack, dir }), found ${l ? "the core" : "a fleet without sites"}. Fix: deploy it with Mesh`];
  const p: string[] = [];
  if (!l.core.stack) p.push(`${fleet.stack}: fleet.yaml: core.stack: expected the core's Pulumi stack name, found none. Fix: set core.stack`);
  const keyed = new Set(fleet.preAuthKeys.map((k) => k.host));
  for (const name of l.local) {
    const h = fleet.hosts[name];
    for (const ref of secretRefs(h))
      if (!SITE_SECRETS(h.name).includes(ref))
        p.push(`${h.file}: files: secret "${ref}" is one only the core stack has (a site reads ${SITE_SECRETS(h.name).join(" and ")}). Fix: move ${h.name} into the core's folder, or drop what reads "${ref}"`);
    const nodeArgs = nodeArgsOf(h, { loginServer: "", preAuthKey: keyed.has(h.name) ? "" : undefined, secrets: {}, args });
    const kind = nodeKind(h);
    p.push(...(kind === "subnet-router" ? validateSubnetRouterArgs(nodeArgs) : kind === "exit-node" ? validateExitNodeArgs(nodeArgs) : validateMeshNodeArgs(nodeArgs)));
    if (h.agent) p.push(...validateHostAgentArgs({ host: h, secrets: Object.fromEntries(secretRefs(h).map((r) => [r, ""])), ssh: args.ssh, ...args.agent }));
  }
  return [...new Set(p)];
}

function nodeArgsOf(h: HostSystem, o: { loginServer: pulumi.Input<string>; preAuthKey?: pulumi.Input<string>; secrets: Record<string, pulumi.Input<string>>; args: SiteMeshArgs; prerequisites?: MeshNodeArgs["prerequisites"] }): MeshNodeArgs {
  return {
    host: h,
    loginServer: o.loginServer,
    tailscaleVersion: o.args.fleet.tailscaleVersion,
    preAuthKey: o.preAuthKey,
    secrets: o.secrets,
    ssh: o.args.ssh,
    agent: o.args.agent,
    approvalByCore: true,
    prerequisites: o.prerequisites,
  };
}

/**
 * Why a site must not deploy against the core as it runs (empty: it may).
 * `core` is what the core stack exports; undefined fields: the core stack
 * has no such output yet (never deployed, or deployed before sites).
 */
export function coreMismatch(fleet: FleetSystem, core: { coordinatorUrl?: unknown; policySha256?: unknown; noisePublicKey?: unknown; sites?: unknown }, coreStack: string): string[] {
  const site = siteOf(fleet).site;
  const up = `meshfleet up --stack ${coreStack}`;
  const p: string[] = [];
  if (typeof core.coordinatorUrl !== "string" || typeof core.policySha256 !== "string")
    return [`core stack ${coreStack}: expected its outputs coordinatorUrl and policySha256, found ${core.coordinatorUrl === undefined && core.policySha256 === undefined ? "none (is the core deployed?)" : "only some of them"}. Fix: ${up} first`];
  if (core.coordinatorUrl !== fleet.coordinator.serverUrl)
    p.push(`core stack ${coreStack}: coordinatorUrl: expected ${fleet.coordinator.serverUrl} (coordinator.serverUrl in the core's fleet.yaml, which this site's hosts log in to), found ${core.coordinatorUrl}. Fix: ${up} (the core runs an older fleet.yaml), or bring this checkout up to date`);
  if (core.policySha256 !== policyDigest(fleet))
    p.push(`core stack ${coreStack}: policySha256: expected ${policyDigest(fleet).slice(0, 12)}… (the policy this site evaluated, whose autoApprovers approve its routers' routes), found ${core.policySha256.slice(0, 12)}…: the coordinator runs another policy. Fix: ${up} first, then this site`);
  const local = siteOf(fleet).local.map((n) => fleet.hosts[n]);
  if (typeof core.noisePublicKey !== "string" && local.some((h) => secretRefs(h).includes(NOISE_PUBLIC_KEY_REF)))
    p.push(`core stack ${coreStack}: noisePublicKey: expected the coordinator's public Noise key, found none. Fix: ${up}`);
  const keys = (core.sites as Record<string, { preAuthKeys?: Record<string, string> }> | undefined)?.[site]?.preAuthKeys ?? {};
  for (const k of fleet.preAuthKeys)
    if (siteOf(fleet).local.includes(k.host) && typeof keys[k.host] !== "string")
      p.push(`core stack ${coreStack}: sites.${site}.preAuthKeys.${k.host}: expected the host's pre-auth key, found none. Fix: ${up} (the core makes every site host's key)`);
  return p;
}

/** The core stack's outputs as a site read them (plain values; the secret ones are wrapped again where they are used). */
export interface CoreRead {
  /** The stack read. */
  stack: string;
  coordinatorUrl?: unknown;
  policySha256?: unknown;
  noisePublicKey?: unknown;
  sites?: unknown;
}

/**
 * Read the core stack's outputs through a StackReference, before any host
 * resource is declared: a site whose core is not as it evaluated it stops
 * here on `up` with nothing declared (SiteMesh). Secret outputs come back as
 * values and go on only as Pulumi secrets.
 */
export async function readCore(name: string, coreStack: string, opts?: pulumi.CustomResourceOptions): Promise<{ ref: pulumi.StackReference; core: CoreRead }> {
  const ref = new pulumi.StackReference(name, { name: coreStack }, opts);
  const get = async (k: string) => {
    const d = await ref.getOutputDetails(k);
    return d.value ?? d.secretValue;
  };
  let values: unknown[];
  try {
    values = await Promise.all(["coordinatorUrl", "policySha256", "noisePublicKey", "sites"].map(get));
  } catch (e) {
    // A core stack that does not exist (yet, or under another name on this backend): the engine's own
    // error names neither the site nor the fix.
    throw new pulumi.RunError(unreadableCoreMessage(coreStack, (e as Error).message.split("\n")[0]!));
  }
  const [coordinatorUrl, policySha256, noisePublicKey, sites] = values;
  return { ref, core: { stack: coreStack, coordinatorUrl, policySha256, noisePublicKey, sites } };
}

export interface SiteMeshCore {
  /**
   * The core stack's outputs, read before the site is built (`readCore`).
   * @example (await readCore("office-core", "core")).core
   */
  core: CoreRead;
}

export class SiteMesh extends pulumi.ComponentResource {
  /** The coordinator's URL as the core stack exports it. */
  public readonly coordinatorUrl: pulumi.Output<string>;
  /** Per node of this site: name, roles, routes, state. */
  public readonly nodes: pulumi.Output<Record<string, NodeSummary>>;
  public readonly summary: pulumi.Output<string>;
  /** Join instructions of this site's hosts without an agent (a secret). */
  public readonly joinInstructions: pulumi.Output<Record<string, string>>;
  /** Why this site must not deploy against the core as it runs (coreMismatch); a preview warns with them, an up stops before any resource. */
  public readonly coreProblems: string[];
  public readonly members: Record<string, NodeBase> = {};

  constructor(name: string, args: SiteMeshArgs & SiteMeshCore, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateSiteMesh(args), `meshfleet cannot deploy site stack ${args.fleet.stack}`);
    const fleet = args.fleet;
    const layout = siteOf(fleet);
    const core = args.core;
    const problems = coreMismatch(fleet, core, core.stack);
    // On up, a site whose core runs another policy, URL or keys declares nothing: no host switches.
    if (!pulumi.runtime.isDryRun()) assertNoProblems(problems, `meshfleet cannot deploy site stack ${fleet.stack}`);
    super("meshfleet:index:SiteMesh", name, {}, opts);
    this.coreProblems = problems;
    for (const m of problems) pulumi.log.warn(`${m} (a preview goes on; up stops here)`, this);
    this.coordinatorUrl = pulumi.output(typeof core.coordinatorUrl === "string" ? core.coordinatorUrl : fleet.coordinator.serverUrl);
    const noise = pulumi.secret(typeof core.noisePublicKey === "string" ? core.noisePublicKey : "");
    const siteKeys = ((core.sites as Record<string, { preAuthKeys?: Record<string, unknown> }> | undefined)?.[layout.site]?.preAuthKeys ?? {}) as Record<string, unknown>;
    const keyOf = (host: string) => pulumi.secret(typeof siteKeys[host] === "string" ? (siteKeys[host] as string) : "");
    const keyed = new Set(fleet.preAuthKeys.map((k) => k.host));

    const prereqs: pulumi.Resource[] = [];
    let openGate!: (rs: pulumi.Resource[]) => void;
    const gate = new Promise<pulumi.Resource[]>((r) => (openGate = r));
    const key = privateKeyInput(args.ssh);
    const prerequisitesOf = (h: HostSystem, o: pulumi.CustomResourceOptions = {}) => {
      const r = new Prerequisites(
        `${name}-${slug(h.name)}-prerequisites`,
        { host: h.name, connection: hostConnection(h, args.ssh), ...key, spec: prerequisiteSpec(h, { tailscaleVersion: fleet.tailscaleVersion, node: args.agent?.node }) },
        { parent: this, ...o },
      );
      prereqs.push(r);
      return r;
    };
    const local = layout.local.map((n) => fleet.hosts[n]);
    for (const h of local) if (h.agent && !h.lxc) prerequisitesOf(h);
    try {
      for (const h of local) {
        const secrets: Record<string, pulumi.Input<string>> = secretRefs(h).includes(NOISE_PUBLIC_KEY_REF) ? { [NOISE_PUBLIC_KEY_REF]: noise } : {};
        const nodeArgs = nodeArgsOf(h, {
          loginServer: this.coordinatorUrl,
          preAuthKey: keyed.has(h.name) ? keyOf(h.name) : undefined,
          secrets,
          args,
          prerequisites: { gate, ...(h.lxc ? { add: (o: pulumi.CustomResourceOptions) => prerequisitesOf(h, o) } : {}) },
        });
        const n = `${name}-${slug(h.name)}`;
        const kind = nodeKind(h);
        this.members[h.name] = kind === "subnet-router" ? new SubnetRouter(n, nodeArgs, { parent: this }) : kind === "exit-node" ? new ExitNode(n, nodeArgs, { parent: this }) : new MeshNode(n, nodeArgs, { parent: this });
      }
    } finally {
      openGate([...prereqs]);
    }

    const entries = Object.values(this.members).map((m) => pulumi.all([m.nodeName, m.roles, m.routes, m.state]).apply(([nodeName, roles, routes, state]) => ({ name: nodeName, roles, routes, state })));
    this.nodes = pulumi.all(entries).apply((list) => Object.fromEntries(list.map((e) => [e.name, e])));
    this.summary = this.nodes.apply((n) => `site ${layout.site} of ${core.stack}: ` + meshSummary(fleet, n).replace(/^mesh \S+: /, ""));
    const join = Object.entries(this.members).filter(([, m]) => m.joinInstructions);
    this.joinInstructions = pulumi.secret(pulumi.all(Object.fromEntries(join.map(([h, m]) => [h, m.joinInstructions!]))));
    this.registerOutputs({ coordinatorUrl: this.coordinatorUrl, nodes: this.nodes, summary: this.summary, joinInstructions: this.joinInstructions });
  }
}
