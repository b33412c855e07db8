/**
 * The lab's world as data: which hosts exist, what they are for, which network
 * namespace each lives in, and every address. Pure: no I/O here. The lab's
 * builder (lab/hosts) turns this into namespaces, bridges and veth pairs; other
 * code (the end-to-end lab, the agent tests) reads it to know where each host
 * answers SSH and what its addresses are.
 *
 * Layout (all inside the lab's own namespaces; "public" addresses come from the
 * documentation ranges and never reach the machine's real interfaces):
 *
 *   internet (netns, router between 203.0.113.0/24 and 198.51.100.0/24 on bridge inet0)
 *    ├─ vps        203.0.113.10   headscale / reverse proxy / embedded DERP
 *    ├─ derp       203.0.113.30   a standalone DERP relay
 *    ├─ homenat    203.0.113.20   NAT ─ home LAN 192.168.8.0/24 (bridge lan0, .1)
 *    │                                 ├─ lxc-tailscale 192.168.8.205 (subnet router)
 *    │                                 └─ nas           192.168.8.10
 *    └─ laptopnat  198.51.100.20  NAT ─ laptop LAN 10.77.0.0/24 (bridge lan0, .1)
 *                                      └─ laptop        10.77.0.10
 *                                      └─ client01..NN  10.77.0.100 up (only with `clients`: bench/deploy's scale run)
 *
 * Every booted host also has `mgmt0` on a management subnet whose other end is
 * a bridge in the root namespace; that link carries only the lab's SSH (no
 * default route points at it, its bridge ports are isolated from each other and
 * the root namespace refuses to forward or accept new connections from it).
 */

/** `a.b.c.d/len` */
export type Cidr = `${number}.${number}.${number}.${number}/${number}`;
/** `a.b.c.d` */
export type Ipv4 = `${number}.${number}.${number}.${number}`;

export type HostKind =
  /** A Debian root booted with systemd-nspawn in its namespace: systemd, sshd, node. */
  | "nspawn"
  /** A bare network namespace: routers and NATs that need only the kernel. */
  | "netns";

export type HostRole =
  | "internet"
  | "coordinator"
  | "derp"
  | "nat"
  | "subnet-router"
  | "server"
  | "client";

/** A bridge that lives inside a host's namespace (a segment other hosts plug into). */
export interface LabBridge {
  /** Interface name inside the owner's namespace. */
  name: string;
  /** The owner's own addresses on the bridge (the gateway of the segment). */
  addresses: Cidr[];
}

/** One interface of a host, the far end of a veth pair plugged into another host's bridge. */
export interface LabLink {
  /** Host whose namespace holds the bridge. */
  to: string;
  /** Bridge name in that host's namespace. */
  bridge: string;
  /** Interface name inside this host's namespace. */
  ifname: string;
  address: Cidr;
  /** Default gateway through this link, if any. */
  gateway?: Ipv4;
}

export interface LabHost {
  name: string;
  /** Short id (≤ 5 chars) used in interface names, which the kernel caps at 15 characters. */
  id: string;
  role: HostRole;
  kind: HostKind;
  /** Network namespace (under /run/netns). */
  netns: string;
  links: LabLink[];
  bridges: LabBridge[];
  /** Routes packets between its interfaces (net.ipv4.ip_forward=1 in its namespace). */
  forwarding: boolean;
  /** Masquerade everything leaving through this interface (an nftables NAT in its namespace). */
  masqueradeOut?: string;
  /** Management address (nspawn hosts only): where the root namespace reaches sshd. */
  mgmt?: Ipv4;
}

export interface LabTopology {
  /**
   * Lab instance number: several labs may coexist (a developer's lab and a
   * test's). Taken: 0 the developer's / end-to-end lab, 6 bench/lab-boot,
   * 8 test/lab/hosts, 9 test/lab/peers (list in lab/hosts/README.md).
   */
  instance: number;
  /** Prefix of every netns, and of every interface made in the root namespace. */
  prefix: string;
  /** Root-namespace bridge of the management subnet. */
  mgmtBridge: string;
  /** Root namespace's own address on the management subnet. */
  mgmtGateway: Cidr;
  /** The management subnet; nothing else is ever routed through it. */
  mgmtSubnet: Cidr;
  /** The nftables table made in the root namespace to fence the management link. */
  rootNftTable: string;
  hosts: LabHost[];
}

export const MAX_INSTANCE = 9;

/** At most this many generated clients (their mgmt addresses are .100 up, their LAN addresses 10.77.0.100 up). */
export const MAX_CLIENTS = 99;

/** Name of generated client `i` (1-based): client01, client02, ... */
export function clientName(i: number): string {
  return `client${String(i).padStart(2, "0")}`;
}

export interface TopologyOptions {
  /**
   * Generated clients (bench/deploy's scale run): `clients` more nspawn
   * hosts like the laptop, client01..clientNN on the laptop's LAN
   * (10.77.0.100 up, mgmt .100 up). @default 0: the standard lab
   */
  clients?: number;
}

/** The lab's hosts for instance `instance` (0 is the default lab; tests use others). */
export function labTopology(instance = 0, o: TopologyOptions = {}): LabTopology {
  if (!Number.isInteger(instance) || instance < 0 || instance > MAX_INSTANCE) {
    throw new Error(`lab instance: expected an integer 0..${MAX_INSTANCE}, found ${instance}`);
  }
  const clients = o.clients ?? 0;
  if (!Number.isInteger(clients) || clients < 0 || clients > MAX_CLIENTS) {
    throw new Error(`lab clients: expected an integer 0..${MAX_CLIENTS}, found ${clients}`);
  }
  const prefix = `mfl${instance}-`;
  const ns = (name: string) => `${prefix}${name}`;
  const mgmtNet = `172.31.${240 + instance}`;
  const mgmt = (last: number) => `${mgmtNet}.${last}` as Ipv4;
  const inet = (host: string, address: Cidr, gateway: Ipv4): LabLink => ({
    to: "internet",
    bridge: "inet0",
    ifname: host,
    address,
    gateway,
  });

  const hosts: LabHost[] = [
    {
      name: "internet",
      id: "inet",
      role: "internet",
      kind: "netns",
      netns: ns("inet"),
      links: [],
      bridges: [{ name: "inet0", addresses: ["203.0.113.1/24", "198.51.100.1/24"] }],
      forwarding: true,
    },
    {
      name: "vps",
      id: "vps",
      role: "coordinator",
      kind: "nspawn",
      netns: ns("vps"),
      links: [{ ...inet("eth0", "203.0.113.10/24", "203.0.113.1") }],
      bridges: [],
      forwarding: false,
      mgmt: mgmt(10),
    },
    {
      name: "derp",
      id: "derp",
      role: "derp",
      kind: "nspawn",
      netns: ns("derp"),
      links: [{ ...inet("eth0", "203.0.113.30/24", "203.0.113.1") }],
      bridges: [],
      forwarding: false,
      mgmt: mgmt(30),
    },
    {
      name: "homenat",
      id: "hnat",
      role: "nat",
      kind: "netns",
      netns: ns("homenat"),
      links: [{ ...inet("wan0", "203.0.113.20/24", "203.0.113.1") }],
      bridges: [{ name: "lan0", addresses: ["192.168.8.1/24"] }],
      forwarding: true,
      masqueradeOut: "wan0",
    },
    {
      name: "lxc-tailscale",
      id: "lxc",
      role: "subnet-router",
      kind: "nspawn",
      netns: ns("lxc-tailscale"),
      links: [{ to: "homenat", bridge: "lan0", ifname: "eth0", address: "192.168.8.205/24", gateway: "192.168.8.1" }],
      bridges: [],
      forwarding: false,
      mgmt: mgmt(205),
    },
    {
      name: "nas",
      id: "nas",
      role: "server",
      kind: "nspawn",
      netns: ns("nas"),
      links: [{ to: "homenat", bridge: "lan0", ifname: "eth0", address: "192.168.8.10/24", gateway: "192.168.8.1" }],
      bridges: [],
      forwarding: false,
      mgmt: mgmt(11),
    },
    {
      name: "laptopnat",
      id: "lnat",
      role: "nat",
      kind: "netns",
      netns: ns("laptopnat"),
      links: [{ ...inet("wan0", "198.51.100.20/24", "198.51.100.1") }],
      bridges: [{ name: "lan0", addresses: ["10.77.0.1/24"] }],
      forwarding: true,
      masqueradeOut: "wan0",
    },
    {
      name: "laptop",
      id: "lap",
      role: "client",
      kind: "nspawn",
      netns: ns("laptop"),
      links: [{ to: "laptopnat", bridge: "lan0", ifname: "eth0", address: "10.77.0.10/24", gateway: "10.77.0.1" }],
      bridges: [],
      forwarding: false,
      mgmt: mgmt(77),
    },
  ];
  for (let i = 1; i <= clients; i++) {
    hosts.push({
      name: clientName(i),
      id: `c${String(i).padStart(2, "0")}`,
      role: "client",
      kind: "nspawn",
      netns: ns(clientName(i)),
      links: [{ to: "laptopnat", bridge: "lan0", ifname: "eth0", address: `10.77.0.${99 + i}/24` as Cidr, gateway: "10.77.0.1" }],
      bridges: [],
      forwarding: false,
      mgmt: mgmt(99 + i),
    });
  }

  return {
    instance,
    prefix,
    mgmtBridge: `${prefix}mgmt`,
    mgmtGateway: `${mgmtNet}.1/24` as Cidr,
    mgmtSubnet: `${mgmtNet}.0/24` as Cidr,
    rootNftTable: `${prefix.replace(/-$/, "")}_fence`,
    hosts,
  };
}

/** The default lab (instance 0). */
export const topology: LabTopology = labTopology(0);

export function findHost(topo: LabTopology, name: string): LabHost {
  const host = topo.hosts.find((h) => h.name === name);
  if (!host) {
    throw new Error(`lab host "${name}": no such host (hosts: ${topo.hosts.map((h) => h.name).join(", ")})`);
  }
  return host;
}

/** The address part of a CIDR. */
export function addressOf(cidr: Cidr): Ipv4 {
  return cidr.split("/")[0] as Ipv4;
}

/** A host's first "real" (non-management) address: its public or LAN address. */
export function primaryAddress(host: LabHost): Ipv4 {
  const link = host.links[0];
  if (!link) throw new Error(`lab host "${host.name}" has no links`);
  return addressOf(link.address);
}

/** Root-namespace name of a host's management veth (≤ 15 chars). */
export function mgmtVethName(topo: LabTopology, host: LabHost): string {
  return `${topo.prefix}m-${host.id}`;
}

/** Name, in the bridge owner's namespace, of the port a link plugs into (≤ 15 chars). */
export function portName(host: LabHost, link: LabLink): string {
  return `p-${host.id}-${link.ifname}`.slice(0, 15);
}

/**
 * The hosts needed so that `wanted` can talk to each other as in the full lab:
 * every wanted host plus every host owning a bridge on its path to the internet.
 */
export function hostsNeeded(topo: LabTopology, wanted: readonly string[]): LabHost[] {
  const need = new Set<string>();
  const add = (name: string) => {
    if (need.has(name)) return;
    need.add(name);
    for (const link of findHost(topo, name).links) add(link.to);
  };
  for (const w of wanted) add(w);
  return topo.hosts.filter((h) => need.has(h.name));
}
