/**
 * Profiles a host `imports`: bundles of option definitions at mkDefault
 * priority, so a host file can override any of them with a plain value.
 */
import { mkDefault } from "../core/priority.ts";

export interface Profile {
  description: string;
  definitions: Record<string, unknown>;
}

const on = (module: string) => ({ [module]: { enable: mkDefault(true) } });

export const PROFILES: Record<string, Profile> = {
  coordinator: { description: "Runs Headscale, the mesh's control server.", definitions: { ...on("headscale") } },
  "reverse-proxy": { description: "Fronts Headscale with TLS (Caddy by default, or nginx).", definitions: { ...on("reverse-proxy") } },
  "derp-relay": { description: "Runs a DERP relay (standalone derper) and STUN for the mesh.", definitions: { ...on("derp") } },
  "subnet-router": {
    description: "A tailnet node that advertises LAN subnets.",
    definitions: { ...on("subnet-router"), tailscale: { enable: mkDefault(true) } },
  },
  "exit-node": {
    description: "A tailnet node that offers itself as an exit node.",
    definitions: { ...on("exit-node"), tailscale: { enable: mkDefault(true) } },
  },
  client: { description: "A plain tailnet node (laptop, server, phone).", definitions: { tailscale: { enable: mkDefault(true) } } },
  "proxmox-lxc": { description: "The host is a Proxmox LXC container with TUN passed through.", definitions: { ...on("lxc") } },
};
