/**
 * The provider's resource types: their tokens and the shapes of their inputs
 * and outputs, shared by the provider (provider.ts) and the program-side
 * classes components create (sdk.ts). Plain data only.
 */

import type { PrerequisiteSpec } from "./prerequisites.ts";

export const TOKENS = {
  generation: "meshfleet:host:Generation",
  file: "meshfleet:host:File",
  serviceCheck: "meshfleet:host:ServiceCheck",
  prerequisites: "meshfleet:host:Prerequisites",
  user: "meshfleet:headscale:User",
  preAuthKey: "meshfleet:headscale:PreAuthKey",
  routeApproval: "meshfleet:headscale:RouteApproval",
  ready: "meshfleet:headscale:Ready",
  placement: "meshfleet:headscale:Placement",
  container: "meshfleet:proxmox:Container",
} as const;

export type Token = (typeof TOKENS)[keyof typeof TOKENS];

/**
 * How the provider reaches a host's sshd. Host keys are always checked
 * against `hostKeys` (StrictHostKeyChecking=yes); an empty list is refused
 * before anything is sent.
 */
export interface SshConnection {
  /** The fleet's name for the host, used in every message. */
  name: string;
  /** Address (IP or DNS name) of the host's sshd. */
  host: string;
  port: number;
  user: string;
  /** Pinned public host keys, `"ssh-ed25519 AAAA…"`. */
  hostKeys: string[];
  /** Private key file; unset: the resource's `sshPrivateKey` text, else ssh's own defaults and agent. */
  privateKeyPath?: string;
  /** Seconds per dial attempt. @default 10 */
  connectTimeoutSeconds?: number;
  /** Dial attempts before giving up (hosts answer slowly right after a boot). @default 30 */
  dialAttempts?: number;
}

/** Common to every resource that uses SSH. */
export interface Connected {
  connection: SshConnection;
  /** Private key text (a secret input; written to a 0600 file for the run only). */
  sshPrivateKey?: string;
}

/** Where the headscale CLI runs on the coordinator. */
export interface HeadscaleCliSpec {
  runtime: "docker" | "systemd";
  container?: string;
  binary?: string;
}

// ---- meshfleet:host:Generation ----

/** One file of a generation as `preview --diff` shows it: never its content. */
export interface FileSummary {
  mode: string;
  owner: string;
  group: string;
  /** sha256 of the content (a digest, safe to show for secret files too). */
  sha256: string;
  secret: boolean;
  /** Outputs only: what `read` found wrong on the host. */
  drift?: string;
}

export interface GenerationSummary {
  /** Bundle hash: names the generation. */
  hash: string;
  files: Record<string, FileSummary>;
  /** Unit name → sha256 of its spec. */
  units: Record<string, string>;
  sysctl: Record<string, string>;
  /** sha256 of the firewall part of the bundle ("" when the firewall is off). */
  firewall: string;
  /**
   * The policy of each base chain, "input drop, forward accept" ("" when the
   * firewall is off): `preview` says in words when a host starts dropping
   * what it accepted. Absent in states written before it existed.
   */
  firewallPolicy?: string;
  /** sha256 of the tailscale settings ("" when tailscale is off). */
  tailscale: string;
}

export interface AgentSpec {
  /** The bundled agent on this machine. */
  localPath: string;
  /** Its sha256: a changed agent is pushed again. */
  sha256: string;
  /** Where it lives on the host. */
  remotePath: string;
  /** Node.js on the host. */
  node: string;
  /** The agent's state directory on the host. */
  stateDir: string;
}

export interface GenerationInputs extends Connected, GenerationSummary {
  host: string;
  agent: AgentSpec;
  /** The whole bundle as JSON: a secret input, sent on stdin, never stored in outputs. */
  bundle: string;
  confirmTimeoutSeconds: number;
  /** Push at creation only (a coordinator's bootstrap generation). */
  once?: boolean;
  /**
   * `meshfleet up --reboot-check`: after the confirm, reboot the host and keep
   * the deploy only if it comes back with this generation active, its firewall
   * loaded, tailscale up with its routes, and no drift. Set for one run; never
   * stored in the outputs.
   */
  rebootCheck?: boolean;
}

export interface DriftItem {
  kind: string;
  subject: string;
  detail: string;
}

export interface GenerationOutputs extends Omit<GenerationInputs, "bundle" | "rebootCheck"> {
  /** The agent's generation number on the host. */
  generation: number;
  /** `status --json` of the agent after the switch (or at the last refresh). */
  status: string;
  /** `verify` findings: what differs from the generation on the host. */
  drift: DriftItem[];
}

// ---- meshfleet:host:File ----

export interface FileInputs extends Connected {
  host: string;
  localPath: string;
  sha256: string;
  remotePath: string;
  /** Octal mode. @default "0755" */
  mode: string;
}

export interface FileOutputs extends FileInputs {
  /** Outputs: the sha256 found on the host at the last read ("" if missing). */
  liveSha256: string;
}

// ---- meshfleet:host:ServiceCheck ----

export interface ServiceCheckInputs extends Connected {
  host: string;
  units: string[];
  /** Re-checked when this changes (the host's generation hash). */
  trigger: string;
}

export interface ServiceCheckOutputs extends ServiceCheckInputs {
  /** Unit → `systemctl is-active` answer. */
  states: Record<string, string>;
}

// ---- meshfleet:host:Prerequisites ----

export interface PrerequisitesInputs extends Connected {
  host: string;
  /** What the host needs (provider/prerequisites.ts). */
  spec: PrerequisiteSpec;
}

export interface PrerequisitesOutputs extends PrerequisitesInputs {
  /** The packages this resource installed at its last create or update. */
  installed: string[];
}

// ---- meshfleet:headscale:* ----

export interface HeadscaleBase extends Connected {
  cli: HeadscaleCliSpec;
}

export interface UserInputs extends HeadscaleBase {
  name: string;
}

export interface UserOutputs extends UserInputs {
  userId: number;
}

export interface PreAuthKeyInputs extends HeadscaleBase {
  /** The fleet host the key is for. */
  host: string;
  /** The name its node registers with (tailscale hostname); default: host. Renewal looks the node up by it. */
  hostname?: string;
  /** Owner's numeric id; absent for a tags-only key. */
  userId?: number;
  reusable: boolean;
  ephemeral: boolean;
  expiration: string;
  tags: string[];
}

export interface PreAuthKeyOutputs extends PreAuthKeyInputs {
  /** `hskey-auth-…`: a secret output (additionalSecretOutputs). */
  key: string;
  keyId: number;
  /** At the last read: the key is expired (or gone). */
  expired: boolean;
}

export interface RouteApprovalInputs extends HeadscaleBase {
  host: string;
  hostname: string;
  routes: string[];
  exitNode: boolean;
  /** The node's generation hash: re-verified when it changes. */
  trigger: string;
  timeoutSeconds: number;
}

export interface RouteApprovalOutputs extends RouteApprovalInputs {
  nodeId: number;
  /** What headscale approves for the node (at the last create/update/read). */
  approvedRoutes: string[];
}

export interface ReadyInputs extends HeadscaleBase {
  host: string;
  timeoutSeconds: number;
  /** Re-checked when this changes (the generation or container serving headscale). */
  trigger: string;
}

export interface ReadyOutputs extends ReadyInputs {
  state: string;
}

// ---- meshfleet:proxmox:Container ----

export interface ContainerInputs extends Connected {
  /** The fleet host living in the CT. */
  host: string;
  ctid: number;
  mode: "create" | "adopt";
  /** Lines /etc/pve/lxc/<ctid>.conf must have. */
  config: string[];
  /** `pct` argv lists (or `sh -c SCRIPT`), in order. */
  pctCommands: string[][];
}

export interface ContainerOutputs extends ContainerInputs {
  /** `pct status` at the last create/update/read. */
  status: string;
  /** Config lines the CT lacks at the last read. */
  missingConfig: string[];
}

// ---- meshfleet:headscale:Placement ----

/** Which host runs the coordinator: a change of `host` moves headscale and its database there (provider/placement.ts). */
export interface PlacementInputs extends Connected {
  /** The coordinator host. */
  host: string;
  runtime: "systemd" | "docker";
  /** The headscale container (docker runtime). */
  container?: string;
  databaseType: "sqlite" | "postgres";
  /** database.sqlitePath */
  databasePath: string;
  /** database.postgres.host (postgres only). */
  postgresHost?: string;
  /** headscale.adopt keeps keys meshfleet cannot derive: such a coordinator is not moved. */
  adopted: boolean;
  serverUrl: string;
  /** The stack says the database and keys were put on the new host by hand (meshfleet:coordinatorMovedByHand): a move only records it. */
  movedByHand?: boolean;
}

export interface PlacementOutputs extends PlacementInputs {
  /** When the database last moved here, and from which host. */
  movedFrom?: string;
  movedAt?: string;
}
