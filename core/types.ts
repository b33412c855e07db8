/**
 * The evaluated shapes every later stage reads: one HostSystem per host and
 * one FleetSystem for the mesh. These are the only primitives a module may
 * contribute to (see ARCHITECTURE.md, "The module system").
 */

/** One problem found in the fleet, printed as `file: path: expected X, found Y. Fix: Z`. */
export interface Diagnostic {
  severity: "error" | "warning";
  /** The file the problem is in, relative to the repo root (e.g. `hosts/home/vps.yaml`). */
  file: string;
  /** The option path inside that file (e.g. `tailscale.advertiseRoutes[1]`); "" for the whole file. */
  path: string;
  expected: string;
  found: string;
  /** The setting that fixes it. */
  fix: string;
}

export type Octal = string; // "0644", "0600"

/** Where HostAgent installs the bundled agent on every host (one definition: contract/constants.ts). */
export { AGENT_HOST_PATH } from "../contract/constants.ts";

/** A file the agent owns on a host. */
export interface FileSpec {
  path: string;
  content: string;
  mode: Octal;
  owner: string;
  group: string;
  /** Secret content: never logged, rendered as a Pulumi secret, written 0600. */
  secret?: boolean;
  /**
   * For secrets not known at evaluation time (Noise/DERP private keys, the
   * pre-auth key): the name of the secret whose value becomes the content when
   * the bundle is made (`noise-key`, `derp-key`, `preauth:<host>`). `content` is "" then.
   */
  secretRef?: string;
}

export interface UnitSpec {
  /** e.g. `headscale.service` */
  name: string;
  content: string;
  /** Enabled and started by the agent. */
  enable: boolean;
  /**
   * Files whose change restarts the unit, beyond the paths its own text
   * names (headscale reads its policy and DERP map from paths named only in
   * config.yaml).
   */
  restartTriggers?: string[];
}

export type Proto = "tcp" | "udp";

/** An inbound rule on the host's public side. */
export interface InboundRule {
  proto: Proto;
  port: number;
  /** Source CIDRs; empty means anywhere. */
  from: string[];
  /** Which module asked for it (shown in `hosts`, plan and nft comments). */
  owner: string;
  comment: string;
  /**
   * Why the port must stay open (sshd's: meshfleet deploys over it): a host
   * list that drops it (`firewall.allowedTCPPorts: !mkForce [...]`) is an
   * error while the firewall is on.
   */
  required?: string;
}

/** A rule on tailscale0: traffic from these peers' sets to this host's ports. */
export interface TailnetRule {
  proto: Proto | "any";
  ports: number[] | "any";
  /** Name of an nft set (`peers_<x>`) holding the allowed source addresses. */
  fromSet: string;
  comment: string;
}

/**
 * A rule on traffic a router forwards from tailscale0 to the prefixes it
 * routes: from these peers' sets to these destinations and ports.
 */
export interface RoutedRule extends TailnetRule {
  /** Destination CIDRs (the rule's destinations inside the routed prefixes). */
  to: string[];
}

export interface FirewallSpec {
  /** False leaves the host's firewall alone (no `inet meshfleet` table). */
  enable: boolean;
  inbound: InboundRule[];
  /** Host-side enforcement of the policy on tailscale0 (issue 7); empty = not enforced. */
  tailnet: TailnetRule[];
  /**
   * nft sets: name -> the CIDRs always in it. Rendered as `<name>_v4` and
   * `<name>_v6` (nft sets hold one family each).
   */
  sets: Record<string, string[]>;
  /**
   * For host-side enforcement: which fleet hosts' live tailnet addresses
   * belong in each set. The agent resolves them from `tailscale status` and
   * refreshes the sets as peers come and go (`meshfleet-agent peers`).
   */
  setMembers: Record<string, string[]>;
  /**
   * Ports services listen on for the tailnet only (node-exporter's 9100):
   * never on the public side. With trustTailnet they are accepted with the
   * rest of tailscale0; with host-side enforcement the policy decides.
   */
  tailnetInbound: InboundRule[];
  /** Allow forwarding (subnet routers, exit nodes). */
  forward: boolean;
  /** Clamp the MSS of forwarded TCP SYNs to the route's MTU (subnet-router/exit-node `clampMss`); unset is off. */
  mssClamp?: boolean;
  /**
   * Host-side enforcement on forwarded traffic (a router with trustTailnet
   * false): what arrives on tailscale0 for the prefixes the host routes is
   * accepted only by these rules of the git policy; unset: not filtered here.
   */
  routed?: { prefixes: string[]; rules: RoutedRule[] };
  /** Interfaces whose traffic is accepted whole (a management link). */
  trustedInterfaces: string[];
  /** Accept all of tailscale0 (true) or only what `tailnet` allows (false). */
  trustTailnet: boolean;
  allowPing: boolean;
  /**
   * The input chain's policy for what no rule accepts (the firewall module's
   * `defaultPolicy`): "drop" closes the host but for its open ports; "accept"
   * leaves traffic outside the tailnet alone (only what the host asked for is
   * dropped: a port limited to sources, ping off). Unset: drop.
   */
  defaultPolicy?: "drop" | "accept";
  /** Ports opened on one interface or to some sources only (firewall.interfaces, firewall.sources). */
  scoped?: ScopedRule[];
}

/** Ports opened on one interface (`iifname`) or to some sources (`from`) only. */
export interface ScopedRule {
  proto: Proto;
  ports: number[];
  /** Port ranges "lo-hi" (firewall.allowedTCPPortRanges and its scoped forms), after the ports. */
  ranges?: string[];
  iifname?: string;
  from?: string[];
  /** The option that opens them, e.g. `firewall.interfaces.eth0.allowedTCPPorts`. */
  comment: string;
}

export interface TailscaleSettings {
  enable: boolean;
  loginServer: string;
  /** Path on the host of the 0600 file holding the pre-auth key. */
  authKeyFile: string;
  hostname: string;
  tags: string[];
  advertiseRoutes: string[];
  advertiseExitNode: boolean;
  acceptRoutes: boolean;
  acceptDns: boolean;
  ssh: boolean;
  snatSubnetRoutes: boolean;
  /** Path of the tailscale CLI on the host (the agent runs it). */
  cli: string;
  /** How tailscaled manages netfilter rules (`--netfilter-mode`). */
  netfilterMode: "on" | "nodivert" | "off";
  /** The user's extra `tailscale up` flags, one per element. */
  extraUpFlags: string[];
  /** `tailscale up` argv (without the auth key), one flag per element (contract/tailscale.ts builds it). */
  upArgs: string[];
  /** `tailscale set` argv for later changes, one flag per element. */
  setArgs: string[];
  /** tailscale.apt: the apt repository the deploy installs tailscale from, pinned to tailscaleVersion; absent when meshfleet does not install tailscale. */
  aptUrl?: string;
  /** tailscale.apt.suite ("" = the host's release codename). */
  aptSuite?: string;
  aptComponent?: string;
  /** tailscale.apt.keyring: the repository's signing keyring, a file in the fleet's folder. */
  aptKeyring?: string;
}

export interface ContainerSpec {
  name: string;
  image: string;
  ports: { internal: number; external: number; protocol: Proto; ip?: string }[];
  volumes: { name: string; containerPath: string }[];
  env: Record<string, string>;
  command: string[];
  /** Files uploaded into the container: container path -> the HostSystem file it comes from. */
  uploads: { containerPath: string; source: string; secret: boolean }[];
  restart: "unless-stopped" | "always" | "no";
  healthcheck?: { test: string[]; interval: string; timeout: string; retries: number };
  /** The subnet of the host's compose network this container needs (every container of a host is on that one network). */
  subnet?: string;
}

export interface LxcSettings {
  ctid: number;
  /** Proxmox node host (SSH target) that owns the container. */
  proxmoxHost: string;
  pveVersion: string;
  /** `create` a new container or `adopt` an existing one. */
  mode: "create" | "adopt";
  /** Lines for /etc/pve/lxc/<ctid>.conf that TUN passthrough needs. */
  config: string[];
  /** `pct` argv lists, run in order on the Proxmox host. */
  pctCommands: string[][];
}

export type HealthProbe =
  | { name: string; kind: "http"; url: string; expectStatus: number; insecure?: boolean }
  | { name: string; kind: "tcp"; host: string; port: number }
  | { name: string; kind: "tailscale-running" }
  | { name: string; kind: "routes-advertised"; routes: string[] }
  | { name: string; kind: "unit-active"; unit: string };

export interface MetricsSettings {
  enable: boolean;
  /** node_exporter textfile collector directory. */
  textfileDir: string;
}

/** Best-effort host commands run after activation (failures are warnings). */
export interface BestEffortCommand {
  argv: string[];
  why: string;
}

export interface SshSettings {
  user: string;
  port: number;
  /** Path (on the deploying machine) of the private key, or "" for the agent. */
  privateKeyPath: string;
  /** The host's SSH public key (`ssh-ed25519 AAAA…`) deploys check; "" leaves it unchecked. */
  hostKey: string;
}

export type Runtime = "systemd" | "docker";

/**
 * What runs on a host, from its evaluated config (whichever way it was
 * spelled: a profile import or the module's `enable`). Components read these
 * facts; they never guess from profile, unit or container names.
 */
export interface HostServices {
  /** Headscale runs here (headscale.enable). */
  headscale: boolean;
  /** The reverse proxy in front of Headscale (reverse-proxy.enable → its kind). */
  proxy: "caddy" | "nginx" | null;
  /** A DERP relay: standalone derper, or Headscale's embedded one (derp.enable → derp.mode). */
  derp: "standalone" | "embedded" | null;
  /** The node advertises at least one subnet route (subnet-router.routes or tailscale.advertiseRoutes). */
  subnetRouter: boolean;
  /** The node offers itself as an exit node (exit-node.enable or tailscale.advertiseExitNode). */
  exitNode: boolean;
  /** The host joins the mesh (tailscale.enable). */
  tailnet: boolean;
  /** prometheus-node-exporter runs here, on the tailnet only (node-exporter.enable). */
  nodeExporter: boolean;
}

export interface HostSystem {
  name: string;
  /** The file that declared the host. */
  file: string;
  /** Address Pulumi reaches the host's sshd on. */
  address: string;
  ssh: SshSettings;
  /**
   * Roles from the evaluated config: the profiles whose module enables all
   * hold (most specific only), e.g. `coordinator`, `subnet-router`.
   */
  roles: string[];
  /** What runs on the host (from its evaluated config). */
  services: HostServices;
  /** The node binary the agent's own units run (meshfleet-agent.nodePath). */
  agentNodePath: string;
  /** Hosts without an agent (a phone) only get join instructions. */
  agent: boolean;
  runtime: Runtime;
  files: FileSpec[];
  sysctl: Record<string, string>;
  firewall: FirewallSpec;
  units: UnitSpec[];
  containers: ContainerSpec[];
  tailscale: TailscaleSettings;
  packages: string[];
  lxc: LxcSettings | null;
  probes: HealthProbe[];
  metrics: MetricsSettings;
  bestEffort: BestEffortCommand[];
  /** The LAN CIDRs this host is attached to (routes must be inside one). */
  lan: string[];
  warnings: Diagnostic[];
}

export interface PreAuthKeyRequest {
  /** The host that will use it. */
  host: string;
  user: string;
  reusable: boolean;
  ephemeral: boolean;
  /** e.g. `90d` */
  expiration: string;
  tags: string[];
}

export interface DnsRecord {
  name: string;
  type: "A" | "AAAA";
  value: string;
}

export interface DerpRegion {
  regionId: number;
  regionCode: string;
  regionName: string;
  nodes: {
    name: string;
    hostName: string;
    ipv4?: string;
    stunPort: number;
    derpPort: number;
    insecureForTests?: boolean;
    canPort80?: boolean;
  }[];
}

export interface CoordinatorInfo {
  host: string;
  serverUrl: string;
  headscaleVersion: string;
  baseDomain: string;
  runtime: Runtime;
}

export interface FleetSystem {
  stack: string;
  /** Directory the fleet was read from. */
  dir: string;
  coordinator: CoordinatorInfo;
  /** The Tailscale release the fleet expects (fleet.yaml `tailscaleVersion`): `status` names nodes below it; join instructions ask for it. */
  tailscaleVersion: string;
  users: string[];
  /** fleet.yaml's oidcUsers, when it names any: people who log in through OpenID Connect, whom the policy names by e-mail (not created by meshfleet). */
  oidcUsers?: string[];
  /** The policy as typed data (core/policy). */
  policy: unknown;
  /** The policy rendered to the HuJSON headscale 0.29 reads. */
  policyHuJson: string;
  dnsRecords: DnsRecord[];
  derpRegions: DerpRegion[];
  preAuthKeys: PreAuthKeyRequest[];
  /** route or `exit-node` -> owners (`tag:router`, `alice@`). */
  autoApprovers: { routes: Record<string, string[]>; exitNode: string[] };
  hosts: Record<string, HostSystem>;
  warnings: Diagnostic[];
  /** A fleet spread over a core stack and site stacks (core/sites.ts): which folder holds which hosts, and which this stack deploys. */
  sites?: SiteLayout;
  /** The policy's own file, as shown, when fleet.yaml names one (`policy: ./policy.hujson`): problems in the policy are named there. */
  policyFile?: string;
}

/** Which folder of a fleet with sites holds which hosts (docs/sites.md). */
export interface SiteLayout {
  /** The site this stack deploys (its folder's name), or null for the core. */
  site: string | null;
  /** The core: its folder, its Pulumi stack as the sites name it, its hosts (the coordinator among them). */
  core: { dir: string; stack: string; hosts: string[] };
  /** Each site, by folder name: its folder and hosts. */
  sites: Record<string, { dir: string; hosts: string[] }>;
  /** The hosts this stack deploys (its own folder's). */
  local: string[];
}
