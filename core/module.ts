/**
 * The module interface, as in NixOS: a module declares its options (a zod
 * object with a default and a description on every field) and a `config`
 * that, given the merged options, contributes to the host's primitives.
 * Cross-host facts (who runs DERP, the coordinator's URL) come from `ctx`,
 * like `nodes.<name>.config` in a NixOS network.
 */
import type { z } from "zod";
import type {
  BestEffortCommand, ContainerSpec, DerpRegion, DnsRecord, FileSpec, HealthProbe,
  InboundRule, LxcSettings, PreAuthKeyRequest, Runtime, TailscaleSettings, UnitSpec,
} from "./types.ts";
import type { FleetConfig } from "./fleet-schema.ts";

/** What one host looks like to other hosts' modules (after option merge, before config). */
export interface PeerView {
  name: string;
  file: string;
  address: string;
  roles: string[];
  runtime: Runtime;
  lan: string[];
  /** Merged options per module name (defaults filled in). */
  options: Record<string, any>;
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
}

/** A cross-option check, reported with every other problem (NixOS `assertions`). */
export interface Assertion {
  assertion: boolean;
  /** Option path inside the host file, e.g. `subnet-router.routes[1]`. */
  path: string;
  expected: string;
  found: string;
  fix: string;
  /** Defaults to the host's file. */
  file?: string;
}

export type Warning = Omit<Assertion, "assertion"> & { when: boolean };

/** Contributions to the primitives; lists concatenate, records merge by key. */
export interface Contribution {
  files?: FileSpec[];
  sysctl?: Record<string, string>;
  inbound?: InboundRule[];
  /** Allow forwarding through this host (subnet router, exit node). */
  forward?: boolean;
  units?: UnitSpec[];
  containers?: ContainerSpec[];
  /** Partial tailscale settings; arrays concatenate, scalars must agree. */
  tailscale?: Partial<Omit<TailscaleSettings, "upArgs" | "setArgs">>;
  packages?: string[];
  lxc?: LxcSettings;
  probes?: HealthProbe[];
  bestEffort?: BestEffortCommand[];
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

export interface MeshModule<S extends z.ZodObject<any> = z.ZodObject<any>> {
  /** The option key in a host file, e.g. `headscale`, `reverse-proxy`. */
  name: string;
  description: string;
  options: S;
  /** Contributions; called for every host, whatever `enable` says (check it yourself). */
  config(options: z.infer<S>, ctx: ModuleContext): Contribution;
}

export function defineModule<S extends z.ZodObject<any>>(m: MeshModule<S>): MeshModule<S> {
  return m;
}
