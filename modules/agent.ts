/**
 * meshfleet-agent: the agent's own units on every host it runs on (the host
 * option `agent`), and host-side enforcement of the fleet's policy
 * (firewall.trustTailnet: false): the tailnet rules the fleet phase worked
 * out for this host, and the timer that keeps their peer sets current.
 */
import { z } from "zod";
import { AGENT_HOST_PATH, DEFAULT_NODE_BIN } from "../contract/constants.ts";
import { defineModule, type Contribution } from "../core/module.ts";
import type { UnitSpec } from "../core/types.ts";

export const agentOptions = z
  .object({
    nodePath: z
      .string()
      .startsWith("/")
      .default(DEFAULT_NODE_BIN)
      .describe("The Node.js binary (18 or newer) the agent's units run on the host, e.g. /usr/bin/nodejs."),
  })
  .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    "meshfleet-agent": z.output<typeof agentOptions>;
  }
}

/**
 * The lockout guard is a transient timer, gone after a reboot: at boot the
 * agent finishes or rolls back an interrupted switch and re-arms the guard of
 * a generation still awaiting its confirm.
 */
export function bootUnit(node: string): UnitSpec {
  return {
    name: "meshfleet-boot.service",
    enable: true,
    content: `[Unit]\nDescription=meshfleet: recover an interrupted switch, keep the lockout guard across reboots\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\n# simple, so starting it never waits on a pending confirm; stays active after it is done.\nType=simple\nRemainAfterExit=yes\nExecStart=${node} ${AGENT_HOST_PATH} boot\n\n[Install]\nWantedBy=multi-user.target\n`,
  };
}

/**
 * The kernel boots without table inet meshfleet: this loads the current
 * generation's table before any network interface comes up (oneshot, so
 * network-pre.target waits for it to finish).
 */
export function firewallBootUnit(node: string): UnitSpec {
  return {
    name: "meshfleet-firewall.service",
    enable: true,
    content: `[Unit]\nDescription=meshfleet: load the current generation's nft table before the network\nDefaultDependencies=no\nAfter=local-fs.target\nBefore=network-pre.target shutdown.target\nWants=network-pre.target\nConflicts=shutdown.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=${node} ${AGENT_HOST_PATH} boot-firewall\n\n[Install]\nWantedBy=sysinit.target\n`,
  };
}

export function peerRefreshUnits(node: string): UnitSpec[] {
  return [
    {
      name: "meshfleet-peers.service",
      enable: false,
      content: `[Unit]\nDescription=meshfleet: refresh the policy's peer sets from tailscale status\nAfter=tailscaled.service\n\n[Service]\nType=oneshot\nExecStart=${node} ${AGENT_HOST_PATH} peers\n`,
    },
    {
      name: "meshfleet-peers.timer",
      enable: true,
      content: "[Unit]\nDescription=meshfleet: keep the policy's peer sets current\n\n[Timer]\nOnBootSec=10\nOnUnitActiveSec=30\nAccuracySec=5\n\n[Install]\nWantedBy=timers.target\n",
    },
  ];
}

export const agentModule = defineModule({
  name: "meshfleet-agent",
  description: "The meshfleet agent's own units, and host-side enforcement of the fleet's policy.",
  options: agentOptions,
  facts(_o, host) {
    const fw = host.config.firewall;
    return { enforcePolicy: host.config.agent && fw.enable && !fw.trustTailnet };
  },
  config(o, ctx): Contribution {
    if (!ctx.self.config.agent) return {};
    const c: Contribution = { agentNodePath: o.nodePath, units: [bootUnit(o.nodePath), ...(ctx.self.config.firewall.enable ? [firewallBootUnit(o.nodePath)] : [])] };
    const e = ctx.enforcement;
    if (e) {
      c.units!.push(...peerRefreshUnits(o.nodePath));
      c.firewall = { tailnet: e.tailnet, sets: e.sets, setMembers: e.setMembers, ...(e.routed ? { routed: e.routed } : {}) };
    }
    return c;
  },
});
