/**
 * The lab's wires: namespaces, bridges, veth pairs, routes, NATs and the
 * management link. `networkPlan` is pure (topology in, ordered commands out,
 * each naming what it makes); `applyNetwork` runs the plan and records each
 * thing as it appears.
 */
import type { Cidr, LabHost, LabTopology } from "../topology.ts";
import { mgmtVethName, portName } from "../topology.ts";
import { run } from "./exec.ts";
import type { LabState, Made } from "./state.ts";
import { record } from "./state.ts";

export interface NetStep {
  /** Human label for progress lines. */
  what: string;
  argv: string[];
  input?: string;
  /** What this step makes, recorded once it succeeded. */
  makes?: Made;
}

const inNs = (ns: string, argv: string[]) => ["ip", "netns", "exec", ns, ...argv];
const sysctl = (ns: string, kv: string) => inNs(ns, ["sysctl", "-qw", kv]);

/**
 * A home router's nftables: masquerade what leaves through `out`, and drop
 * what comes in unasked, as a real one does. The drop is not only realism:
 * without it a peer's early hole-punching packet reaches the router itself,
 * leaves an unreplied conntrack entry for that port pair, and the router's
 * own masquerade then picks another source port for the LAN host's packets
 * to the same peer, so two NATed tailscale peers never get a direct path.
 */
export function natRuleset(out: string): string {
  return [
    "table ip lab_nat {",
    "  chain postrouting {",
    "    type nat hook postrouting priority srcnat; policy accept;",
    `    oifname "${out}" masquerade`,
    "  }",
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    `    iifname "${out}" ct state established,related accept`,
    `    iifname "${out}" icmp type echo-request accept`,
    `    iifname "${out}" drop`,
    "  }",
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    iifname "${out}" ct state established,related accept`,
    `    iifname "${out}" drop`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/**
 * The root namespace's fence around the management bridge: nothing is
 * forwarded to or from it (so lab traffic can never reach a real interface
 * through it), and hosts cannot open connections to the root namespace; only
 * replies to the root's own connections (SSH) come back.
 */
export function fenceRuleset(topo: LabTopology): string {
  const br = topo.mgmtBridge;
  return [
    `table inet ${topo.rootNftTable} {`,
    "  chain forward {",
    "    type filter hook forward priority filter - 10; policy accept;",
    `    iifname "${br}" drop`,
    `    oifname "${br}" drop`,
    "  }",
    "  chain input {",
    "    type filter hook input priority filter - 10; policy accept;",
    `    iifname "${br}" ct state established,related accept`,
    `    iifname "${br}" drop`,
    "  }",
    "}",
    "",
  ].join("\n");
}

export function networkPlan(topo: LabTopology, hosts: readonly LabHost[]): NetStep[] {
  const steps: NetStep[] = [];
  const byName = new Map(hosts.map((h) => [h.name, h]));

  for (const h of hosts) {
    steps.push({ what: `netns ${h.netns}`, argv: ["ip", "netns", "add", h.netns], makes: { kind: "netns", name: h.netns } });
    steps.push({ what: `lo ${h.name}`, argv: ["ip", "-n", h.netns, "link", "set", "lo", "up"] });
    // Two subnets share the internet bridge; redirects would teach hosts a
    // shortcut around the router and make the lab's paths depend on timing.
    steps.push({ what: `sysctl ${h.name}`, argv: sysctl(h.netns, "net.ipv4.conf.all.send_redirects=0") });
    steps.push({ what: `sysctl ${h.name}`, argv: sysctl(h.netns, "net.ipv4.conf.default.send_redirects=0") });
    if (h.forwarding) steps.push({ what: `forwarding ${h.name}`, argv: sysctl(h.netns, "net.ipv4.ip_forward=1") });
  }

  for (const h of hosts) {
    for (const br of h.bridges) {
      steps.push({ what: `bridge ${h.name}/${br.name}`, argv: ["ip", "-n", h.netns, "link", "add", br.name, "type", "bridge"] });
      for (const a of br.addresses) {
        steps.push({ what: `address ${h.name}/${br.name}`, argv: ["ip", "-n", h.netns, "addr", "add", a, "dev", br.name] });
      }
      steps.push({ what: `up ${h.name}/${br.name}`, argv: ["ip", "-n", h.netns, "link", "set", br.name, "up"] });
    }
  }

  for (const h of hosts) {
    for (const l of h.links) {
      const owner = byName.get(l.to);
      if (!owner) throw new Error(`lab topology: host "${h.name}" links to "${l.to}", which is not in the lab being made`);
      const port = portName(h, l);
      steps.push({
        what: `link ${h.name}/${l.ifname} -> ${owner.name}/${l.bridge}`,
        argv: ["ip", "-n", owner.netns, "link", "add", port, "type", "veth", "peer", "name", l.ifname, "netns", h.netns],
      });
      steps.push({ what: `port ${owner.name}/${port}`, argv: ["ip", "-n", owner.netns, "link", "set", port, "master", l.bridge, "up"] });
      steps.push({ what: `address ${h.name}/${l.ifname}`, argv: ["ip", "-n", h.netns, "addr", "add", l.address, "dev", l.ifname] });
      steps.push({ what: `up ${h.name}/${l.ifname}`, argv: ["ip", "-n", h.netns, "link", "set", l.ifname, "up"] });
      if (l.gateway) {
        steps.push({ what: `route ${h.name}`, argv: ["ip", "-n", h.netns, "route", "add", "default", "via", l.gateway, "dev", l.ifname] });
      }
    }
  }

  for (const h of hosts) {
    if (h.masqueradeOut) {
      steps.push({ what: `nat ${h.name}`, argv: inNs(h.netns, ["nft", "-f", "-"]), input: natRuleset(h.masqueradeOut) });
    }
  }

  const booted = hosts.filter((h) => h.kind === "nspawn");
  if (booted.length > 0) {
    const br = topo.mgmtBridge;
    steps.push({ what: `mgmt bridge ${br}`, argv: ["ip", "link", "add", br, "type", "bridge"], makes: { kind: "link", name: br } });
    steps.push({ what: `mgmt fence ${topo.rootNftTable}`, argv: ["nft", "-f", "-"], input: fenceRuleset(topo), makes: { kind: "nft", family: "inet", name: topo.rootNftTable } });
    steps.push({ what: `mgmt ipv6 off`, argv: ["sysctl", "-qw", `net.ipv6.conf.${br}.disable_ipv6=1`] });
    steps.push({ what: `mgmt address`, argv: ["ip", "addr", "add", topo.mgmtGateway, "dev", br] });
    steps.push({ what: `mgmt up`, argv: ["ip", "link", "set", br, "up"] });
    for (const h of booted) {
      if (!h.mgmt) throw new Error(`lab topology: nspawn host "${h.name}" has no mgmt address`);
      const veth = mgmtVethName(topo, h);
      const prefixLen = topo.mgmtSubnet.split("/")[1];
      steps.push({
        what: `mgmt link ${h.name}`,
        argv: ["ip", "link", "add", veth, "type", "veth", "peer", "name", "mgmt0", "netns", h.netns],
        makes: { kind: "link", name: veth },
      });
      steps.push({ what: `mgmt ipv6 off ${h.name}`, argv: ["sysctl", "-qw", `net.ipv6.conf.${veth}.disable_ipv6=1`] });
      steps.push({ what: `mgmt ipv6 off ${h.name}`, argv: sysctl(h.netns, "net.ipv6.conf.mgmt0.disable_ipv6=1") });
      steps.push({ what: `mgmt port ${h.name}`, argv: ["ip", "link", "set", veth, "master", br] });
      // Isolated ports talk to the bridge (the root namespace) only, never to
      // each other: the mgmt link must not become a shortcut between hosts.
      steps.push({ what: `mgmt isolate ${h.name}`, argv: ["ip", "link", "set", "dev", veth, "type", "bridge_slave", "isolated", "on"] });
      steps.push({ what: `mgmt up ${h.name}`, argv: ["ip", "link", "set", veth, "up"] });
      steps.push({ what: `mgmt address ${h.name}`, argv: ["ip", "-n", h.netns, "addr", "add", `${h.mgmt}/${prefixLen}` as Cidr, "dev", "mgmt0"] });
      steps.push({ what: `mgmt up ${h.name}`, argv: ["ip", "-n", h.netns, "link", "set", "mgmt0", "up"] });
    }
  }
  return steps;
}

export async function applyNetwork(state: LabState, steps: readonly NetStep[]): Promise<void> {
  for (const s of steps) {
    await run(s.argv, { input: s.input, timeoutMs: 20_000 });
    if (s.makes) record(state, s.makes);
  }
}
