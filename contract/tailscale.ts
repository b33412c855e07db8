/**
 * The `tailscale up` / `tailscale set` argv for a bundle's typed tailscale
 * settings, one flag per element. Pure; the agent runs them and
 * `meshfleet render` shows them.
 */
import type { TailscaleConfig } from "./bundle.ts";
import { EXIT_ROUTES } from "./constants.ts";

function commonFlags(s: TailscaleConfig): string[] {
  return [
    `--advertise-routes=${s.routes.join(",")}`,
    `--advertise-exit-node=${s.exitNode}`,
    `--accept-routes=${s.acceptRoutes}`,
    `--accept-dns=${s.acceptDns}`,
    `--ssh=${s.ssh}`,
    `--snat-subnet-routes=${s.snatSubnetRoutes}`,
    `--netfilter-mode=${s.netfilterMode}`,
  ];
}

/**
 * `tailscale up` flags (no auth key): every setting explicit, so a later
 * `up` never fails on "non-default flags". No --advertise-tags: headscale
 * 0.29 gives a node the tags of its pre-auth key and refuses tags a client
 * requests when it registers with a key.
 */
export function tailscaleUpFlags(s: TailscaleConfig): string[] {
  return [`--login-server=${s.loginServer}`, `--hostname=${s.hostname}`, ...commonFlags(s), ...s.extraUpFlags];
}

/** `tailscale set` flags: what `set` can change without logging in again (no tags, no login server). */
export function tailscaleSetFlags(s: TailscaleConfig): string[] {
  return [`--hostname=${s.hostname}`, ...commonFlags(s)];
}

/** Every route the node advertises, exit routes included, sorted. */
export const advertisedRoutes = (s: TailscaleConfig): string[] => [...s.routes, ...(s.exitNode ? EXIT_ROUTES : [])].sort();
