/**
 * The module interface, as in NixOS: a module declares its options (a zod
 * object with a default and a description on every field), may set other
 * modules' options (`settings`, merged by priority with the host files, so
 * `!mkForce` wins over a module too), states the facts it stands for
 * (`facts`: services, the node's place in the tailnet), and finally
 * contributes to the host's primitives (`config`).
 *
 * core/ never imports modules/: whoever evaluates passes a `ModuleRegistry`
 * (modules/index.ts `REGISTRY`), as nixpkgs passes its module list to
 * `evalModules`. The typed config tree (`HostConfig`) is the base options
 * plus `ModuleOptions`, an interface each module file extends with its own
 * entry, inferred from its zod schema:
 *
 *   declare module "../core/module.ts" {
 *     interface ModuleOptions { derp: z.output<typeof derpOptions> }
 *   }
 */
import type { z } from "zod";
import type { FleetConfig } from "./fleet-schema.ts";
import type {
  BestEffortCommand, ContainerSpec, DerpRegion, DnsRecord, FileSpec, FirewallSpec, HealthProbe, HostServices,
  InboundRule, LxcSettings, MetricsSettings, PreAuthKeyRequest, Runtime, TailscaleSettings, UnitSpec,
} from "./types.ts";

/** Each module's merged options by its name; every module file adds its entry (see above). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ModuleOptions {}

/** The host-level options every host has, whatever modules are loaded (core/eval.ts `hostBaseShape`). */
export interface HostBaseOptions {
  imports: string[];
  address: string;
  ssh: { user: string; port: number; privateKeyPath: string; hostKey: string };
  lan: string[];
  agent: boolean;
  runtime: Runtime;
  description: string;
}

/** One host's whole config tree: base options and every module's options, typed. */
export type HostConfig = HostBaseOptions & ModuleOptions;

/** What one host looks like to other hosts' modules (after the option merge, before `config`). */
export interface PeerView {
  name: string;
  file: string;
  address: string;
  /** Roles derived from the evaluated module enables (profile names). */
  roles: string[];
  runtime: Runtime;
  lan: string[];
  /** The merged options (defaults filled in, module settings applied). */
  config: HostConfig;
  facts: HostFacts;
}

/** The tailnet node a host is, as its modules state it (`facts`). */
export interface TailnetFacts {
  /** Node name in the tailnet. */
  name: string;
  /** The option that sets the name (for problems with it), e.g. `tailscale.hostname`. */
  nameOption: string;
  tags: string[];
  /** The user its pre-auth key is for ("" when tagged only). */
  user: string;
  /** Subnet routes it advertises, each with the option path that holds it (`tailscale.advertiseRoutes[0]`). */
  routes: { cidr: string; option: string }[];
  exitNode: boolean;
}

export interface HostFacts {
  services: Partial<HostServices>;
  /** The host joins the mesh as this node; null when it does not. */
  tailnet: TailnetFacts | null;
  /** The host enforces the fleet's policy on its own tailscale0 (host-side enforcement). */
  enforcePolicy?: boolean;
}

/** What a module states about the host from its options alone (before any `config`). */
export type ModuleFacts = { services?: Partial<HostServices>; tailnet?: TailnetFacts | null; enforcePolicy?: boolean };

/** Host-side enforcement of the policy for one host (fleet phase), or null when the host trusts tailscale0. */
export interface HostEnforcement {
  tailnet: FirewallSpec["tailnet"];
  /** Set name -> literal CIDRs (LANs, `hosts:` entries). */
  sets: FirewallSpec["sets"];
  /** Set name -> the fleet hosts whose live tailnet addresses belong in it. */
  setMembers: FirewallSpec["setMembers"];
  /** For a router: the policy's rules on what it forwards from tailscale0 to its routed prefixes. */
  routed?: FirewallSpec["routed"];
}

export interface ModuleContext {
  /** This host's name (the file's stem). */
  host: string;
  /** The file that declared this host (repo-relative). */
  file: string;
  self: PeerView;
  /** Every host of the fleet, this one included. */
  hosts: Record<string, PeerView>;
  /** The mesh-wide settings from fleet.yaml. */
  fleet: FleetConfig;
  fleetFile: string;
  stack: string;
  /** The policy rendered to HuJSON (what the coordinator's policy file holds). */
  policyHuJson: string;
  /** Route/exit-node auto-approvers generated from the fleet, merged with hand-written ones. */
  autoApprovers: { routes: Record<string, string[]>; exitNode: string[] };
  /** The fleet phase's host-side enforcement for this host; null when it trusts tailscale0 (or is not a node). */
  enforcement?: HostEnforcement | null;
}

/** A cross-option check, reported with every other problem (NixOS `assertions`). */
export interface Assertion {
  assertion: boolean;
  /**
   * Option path, e.g. `tailscale.advertiseRoutes[1]`. The evaluator reports it
   * where the value was defined: the host file, an imported file, or the option
   * of another module that set it (`subnet-router.routes[0]`).
   */
  path: string;
  expected: string;
  found: string;
  fix: string;
  /** Defaults to the file that defined `path` (else the host's file). */
  file?: string;
}

export type Warning = Omit<Assertion, "assertion"> & { when: boolean };

/**
 * A module setting another module's option, as a host file would (NixOS
 * `config.services.x.y = ...`). Merged at plain priority unless the value is
 * wrapped in mkDefault/mkForce. `from` names this module's own option the
 * value comes from, so a problem with it is reported there.
 */
export interface OptionSetting {
  /**
   * Option path: dotted (`tailscale.advertiseRoutes`), or a list of keys when
   * a key holds dots itself (`["kernel", "sysctl", "net.ipv4.ip_forward"]`).
   */
  option: string | string[];
  value: unknown;
  from?: string;
}

/** Contributions to the primitives; lists concatenate, records merge by key. */
export interface Contribution {
  files?: FileSpec[];
  sysctl?: Record<string, string>;
  /** Public-side inbound rules. */
  inbound?: InboundRule[];
  /**
   * Ports a service listens on for the tailnet only: never opened on the
   * public side; on tailscale0 the host accepts them when it trusts the
   * tailnet, and the fleet policy decides when it enforces it.
   */
  tailnetInbound?: InboundRule[];
  /** Allow forwarding through this host (subnet router, exit node). */
  forward?: boolean;
  /** Firewall-wide settings (the firewall module) and host-side enforcement (the agent module). */
  firewall?: Partial<Omit<FirewallSpec, "inbound" | "forward" | "tailnetInbound">>;
  units?: UnitSpec[];
  containers?: ContainerSpec[];
  /** Tailscale settings (the tailscale module); arrays concatenate, scalars must agree. */
  tailscale?: Partial<TailscaleSettings>;
  metrics?: MetricsSettings;
  packages?: string[];
  lxc?: LxcSettings;
  probes?: HealthProbe[];
  bestEffort?: BestEffortCommand[];
  /** The node binary the agent's units run (the agent module). */
  agentNodePath?: string;
  /** Mesh-wide contributions. */
  fleet?: {
    dnsRecords?: DnsRecord[];
    derpRegions?: DerpRegion[];
    preAuthKeys?: PreAuthKeyRequest[];
    users?: string[];
  };
  assertions?: Assertion[];
  warnings?: Warning[];
}

/** The identity of the host a module's `settings`/`facts` run for. */
export interface HostIdentity {
  name: string;
  file: string;
  config: HostConfig;
}

export interface MeshModule<N extends string = string, S extends z.ZodObject<any> = z.ZodObject<any>> {
  /** The option key in a host file, e.g. `headscale`, `reverse-proxy`. */
  name: N;
  description: string;
  options: S;
  /** Options this module sets on other modules (NixOS `mkIf cfg.enable { ... }`); from its own options only. */
  settings?(options: z.output<S>, host: HostIdentity): OptionSetting[];
  /** What the host is because of this module, from the final options (services, tailnet node). */
  facts?(options: z.output<S>, host: HostIdentity): ModuleFacts;
  /** Contributions; called for every host, whatever `enable` says (check it yourself). */
  config(options: z.output<S>, ctx: ModuleContext): Contribution;
}

export type AnyModule = MeshModule<string, z.ZodObject<any>>;

export function defineModule<N extends string, S extends z.ZodObject<any>>(m: MeshModule<N, S>): MeshModule<N, S> {
  return m;
}

/** A bundle of option definitions a host `imports` (usually `X.enable` at mkDefault). */
export interface Profile {
  description: string;
  definitions: Record<string, unknown>;
}

/** Everything evaluation needs to know about modules: passed in by the caller. */
export interface ModuleRegistry {
  modules: readonly AnyModule[];
  profiles: Record<string, Profile>;
}
