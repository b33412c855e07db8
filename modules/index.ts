/**
 * The module registry: every module a host can set options for, and the
 * profiles it can import. Whoever evaluates passes `REGISTRY` to
 * `evaluateFleet` (core never imports this folder). A new module is one
 * file plus its entry here.
 */
import type { AnyModule, ModuleOptions, ModuleRegistry } from "../core/module.ts";
import { agentModule } from "./agent.ts";
import { derpModule } from "./derp.ts";
import { firewallModule } from "./firewall.ts";
import { headscaleModule } from "./headscale.ts";
import { kernelModule } from "./kernel.ts";
import { lxcModule } from "./lxc.ts";
import { metricsModule } from "./metrics.ts";
import { nodeExporterModule } from "./node-exporter.ts";
import { PROFILES } from "./profiles.ts";
import { reverseProxyModule } from "./reverse-proxy.ts";
import { exitNodeModule, subnetRouterModule } from "./routing.ts";
import { sshModule } from "./ssh.ts";
import { systemdModule } from "./systemd.ts";
import { tailscaleModule } from "./tailscale.ts";

/** In contribution order (the agent's own units come last). */
export const MODULES = [
  headscaleModule, reverseProxyModule, derpModule, tailscaleModule, subnetRouterModule,
  exitNodeModule, firewallModule, sshModule, lxcModule, metricsModule, nodeExporterModule, agentModule, kernelModule, systemdModule,
] as const satisfies readonly AnyModule[];

// Every module in the list declares its options in the typed config tree, and nothing else does.
type Names = (typeof MODULES)[number]["name"];
const _everyModuleTyped: [Exclude<keyof ModuleOptions, Names>, Exclude<Names, keyof ModuleOptions>] extends [never, never] ? true : false = true;
void _everyModuleTyped;

export const REGISTRY: ModuleRegistry = { modules: MODULES, profiles: PROFILES };

export { PROFILES } from "./profiles.ts";
