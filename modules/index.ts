/** Every module a host can set options for, in activation-independent order. */
import type { MeshModule } from "../core/module.ts";
import { derpModule } from "./derp.ts";
import { firewallModule } from "./firewall.ts";
import { headscaleModule } from "./headscale.ts";
import { lxcModule } from "./lxc.ts";
import { metricsModule } from "./metrics.ts";
import { reverseProxyModule } from "./reverse-proxy.ts";
import { exitNodeModule, subnetRouterModule } from "./routing.ts";
import { sshModule } from "./ssh.ts";
import { tailscaleModule } from "./tailscale.ts";

export const MODULES: MeshModule[] = [
  headscaleModule, reverseProxyModule, derpModule, tailscaleModule, subnetRouterModule,
  exitNodeModule, firewallModule, sshModule, lxcModule, metricsModule,
] as MeshModule[];

export { PROFILES } from "./profiles.ts";
export { renderNftables } from "./firewall.ts";
export { tailscaleUpArgs, tailscaleSetArgs } from "./tailscale.ts";
