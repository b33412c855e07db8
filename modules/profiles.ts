/**
 * Profiles a host `imports`: bundles of option definitions at mkDefault
 * priority, so a host file can override any of them with a plain value.
 * A profile only turns modules on; what a module implies (subnet-router
 * turns tailscale on) the module sets itself, so `subnet-router.enable: true`
 * without the import gives the same host. A host's roles are the profiles
 * whose enables hold in its evaluated config (core/eval.ts `rolesOf`).
 *
 * The firewall follows the roles (modules/firewall.ts `defaultPolicy`): a
 * host with a role meshfleet runs (coordinator, proxy, relay, router, exit
 * node) drops what no rule opens; a client alone leaves traffic outside the
 * tailnet alone, so joining the fleet closes nothing it served.
 */
import type { Profile } from "../core/module.ts";
import { mkDefault } from "../core/priority.ts";

export type { Profile };

const on = (module: string) => ({ [module]: { enable: mkDefault(true) } });

export const PROFILES: Record<string, Profile> = {
  coordinator: { description: "Runs Headscale, the mesh's control server.", definitions: { ...on("headscale") } },
  "reverse-proxy": { description: "Fronts Headscale with TLS (Caddy by default, or nginx).", definitions: { ...on("reverse-proxy") } },
  "derp-relay": { description: "Runs a DERP relay (standalone derper) and STUN for the mesh.", definitions: { ...on("derp") } },
  "subnet-router": {
    description: "A tailnet node that advertises LAN subnets.",
    definitions: { ...on("subnet-router"), ...on("tailscale") },
  },
  "exit-node": {
    description: "A tailnet node that offers itself as an exit node.",
    definitions: { ...on("exit-node"), ...on("tailscale") },
  },
  client: { description: "A plain tailnet node (laptop, desktop, NAS, phone). Alone, its firewall leaves traffic outside the tailnet alone (firewall.defaultPolicy: accept): joining closes nothing it served.", definitions: { ...on("tailscale") } },
  "proxmox-lxc": { description: "The host is a Proxmox LXC container with TUN passed through.", definitions: { ...on("lxc") } },
};
