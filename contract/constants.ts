/**
 * Constants both ends of the bundle contract share: the deploy side (core,
 * components, the CLI) and the agent on the host. One definition each.
 */

/** The nftables table meshfleet owns (family inet); other tables are never touched. */
export const NFT_TABLE = "meshfleet";
export const NFT_FAMILY = "inet";

/** The routes an exit node advertises. */
export const EXIT_ROUTES: readonly string[] = Object.freeze(["0.0.0.0/0", "::/0"]);

/** Where HostAgent installs the bundled agent on every host; units that run it use this path. */
export const AGENT_HOST_PATH = "/usr/local/lib/meshfleet/meshfleet-agent.mjs";

/** The node binary on hosts when nothing else is configured. */
export const DEFAULT_NODE_BIN = "/usr/bin/node";

/** The agent's state folder on a host (generations, journal, backups, lock). */
export const STATE_DIR = "/var/lib/meshfleet";

/** The sysctl.d file the agent writes from a bundle's `sysctl`. */
export const SYSCTL_FILE = "/etc/sysctl.d/90-meshfleet.conf";

/** Where the agent writes a bundle's systemd units. */
export const UNIT_DIR = "/etc/systemd/system";

export const unitPath = (name: string): string => `${UNIT_DIR}/${name}`;
