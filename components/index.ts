/** meshfleet's Pulumi components: the public surface for index.ts and tests. */
export { Mesh, validateMesh, meshSummary, nodeKind, proxyKind, derpMode, providedSecrets, type MeshArgs, type NodeSummary } from "./mesh.ts";
export { Coordinator, validateCoordinatorArgs, coordinatorCli, type CoordinatorArgs } from "./coordinator.ts";
export { ReverseProxy, validateReverseProxyArgs, type ReverseProxyArgs, type ProxyKind } from "./reverseProxy.ts";
export { DerpRelay, validateDerpRelayArgs, type DerpRelayArgs, type DerpMode } from "./derpRelay.ts";
export { SubnetRouter, validateSubnetRouterArgs, type SubnetRouterArgs } from "./subnetRouter.ts";
export { ExitNode, validateExitNodeArgs, type ExitNodeArgs } from "./exitNode.ts";
export { MeshNode, type MeshNodeArgs } from "./meshNode.ts";
export { validateMeshNodeArgs, joinInstructions, agentState } from "./node.ts";
export { HostAgent, validateHostAgentArgs, bootstrapHost, HOST_AGENT_DEFAULTS, type HostAgentArgs } from "./hostAgent.ts";
export { HeadscaleUser, validateHeadscaleUserArgs, type HeadscaleUserArgs } from "./headscaleUser.ts";
export { PreAuthKey, validatePreAuthKeyArgs, type PreAuthKeyArgs } from "./preAuthKey.ts";
export { RouteApproval, type RouteApprovalArgs } from "./routeApproval.ts";
export { ProxmoxLxc, pctScript, pctDeleteScript, validateLxc, proxmoxConnection, type ProxmoxLxcArgs } from "./proxmoxLxc.ts";
export { validateImagePin, pinnedImage, validateContainerSpec, composeHost, renderCompose, composeUnit } from "./dockerService.ts";
export * from "./headscaleCli.ts";
export { DeployError, shq, shArgv, parseSshTarget, hostConnection, targetConnection, pinsFor, knownHostsKeys, type SshAccess } from "./shell.ts";
