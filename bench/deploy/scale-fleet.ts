/**
 * The fleet bench/deploy's scale run deploys: hosts/lab (its SSH addresses
 * moved to the lab instance's management subnet) plus generated clients,
 * each one like the laptop (a tailnet client of alice's behind the laptop's
 * NAT), on the generated hosts lab/topology.ts boots for `clients`. Pure.
 */
import { clientName, labTopology, MAX_CLIENTS } from "../../lab/topology.ts";

/** The agent hosts in hosts/lab (vps, lxc-tailscale, laptop): a scale of N agent hosts adds N minus these. */
export const LAB_AGENT_HOSTS = 3;

/** The scales asked for (`4,20`): integers from LAB_AGENT_HOSTS up to LAB_AGENT_HOSTS + MAX_CLIENTS, in the order given. */
export function parseScales(text: string): number[] {
  const xs = text.split(",").map((x) => x.trim());
  return xs.map((x) => {
    const n = Number(x);
    if (!/^\d+$/.test(x) || n < LAB_AGENT_HOSTS || n > LAB_AGENT_HOSTS + MAX_CLIENTS) {
      throw new Error(`--scale: expected agent host counts from ${LAB_AGENT_HOSTS} (hosts/lab's) to ${LAB_AGENT_HOSTS + MAX_CLIENTS}, comma-separated; found "${x}"`);
    }
    return n;
  });
}

/** A generated client's host file: the laptop's shape on its own SSH address. */
export function clientYaml(i: number, address: string): string {
  return [
    "imports: [client, ./_tools.yaml]",
    `description: Generated client ${i} of bench/deploy's scale run, behind the laptop's NAT`,
    `address: ${address}`,
    "tailscale:",
    "  user: alice",
    "  acceptRoutes: true",
    "",
  ].join("\n");
}

/**
 * The scale run's fleet for `agentHosts` agent hosts on lab `instance`:
 * file name to text. `lab` is hosts/lab's files (name to text), which name
 * instance 0's management addresses (172.31.240.x).
 */
export function scaleFleet(lab: Record<string, string>, instance: number, agentHosts: number): Record<string, string> {
  const clients = agentHosts - LAB_AGENT_HOSTS;
  if (!Number.isInteger(clients) || clients < 0 || clients > MAX_CLIENTS) throw new Error(`scale fleet: ${agentHosts} agent hosts: hosts/lab has ${LAB_AGENT_HOSTS}, at most ${MAX_CLIENTS} more`);
  const topo = labTopology(instance, { clients });
  const net = topo.mgmtSubnet.replace(/\.0\/24$/, ".");
  const out: Record<string, string> = {};
  for (const [f, text] of Object.entries(lab)) {
    if (/^client\d+\.yaml$/.test(f)) throw new Error(`scale fleet: hosts/lab has ${f}, a generated client's name`);
    out[f] = text.replaceAll("172.31.240.", net);
  }
  for (let i = 1; i <= clients; i++) {
    const h = topo.hosts.find((x) => x.name === clientName(i))!;
    out[`${h.name}.yaml`] = clientYaml(i, h.mgmt!);
  }
  return out;
}
