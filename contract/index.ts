/**
 * The bundle contract, shared by the deploy side and the agent: the schema
 * and its format (bundle.ts), the constants both ends use (constants.ts), and
 * the pure renderings of a bundle's parts — the files it puts on a host
 * (desired.ts), its nft text (nftables.ts), its tailscale argv (tailscale.ts).
 */
export * from "./bundle.ts";
export * from "./constants.ts";
export * from "./desired.ts";
export * from "./nftables.ts";
export * from "./tailscale.ts";
