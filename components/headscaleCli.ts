/** The headscale CLI facts (headscale 0.29.2) live with the provider that runs them; re-exported for components and tests. */
export * from "../provider/headscale-cli.ts";
