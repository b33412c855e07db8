/**
 * What each agent host needs before any generation is switched (issue 14
 * item 2): its OS, the agent's Node, the Debian packages its modules
 * declare, and the pinned tailscale and headscale binaries. The spec is
 * built here from the evaluated host; the Prerequisites resource
 * (provider/resources/prerequisites.ts) probes, refuses and installs.
 */
import { NODE_MINIMUM_MAJOR, PACKAGE_COMMANDS, type PinnedBinary, type PrerequisiteSpec } from "../provider/prerequisites.ts";
import type { HostSystem } from "../core/types.ts";

export interface PrerequisiteContext {
  tailscaleVersion: string;
  /** The agent's node command (HostAgent `node`). */
  node?: string;
  /** The coordinator: its headscale CLI binary (systemd runtime) and whether the deploy installs it. */
  coordinator?: { headscaleVersion: string; binary?: string; deployed: boolean };
}

export function prerequisiteSpec(h: HostSystem, c: PrerequisiteContext): PrerequisiteSpec {
  const binaries: PinnedBinary[] = [];
  if (h.tailscale.enable) {
    binaries.push({
      what: "tailscale",
      path: h.tailscale.cli,
      versionArgs: ["version"],
      version: c.tailscaleVersion,
      option: "tailscaleVersion",
      fix: `install tailscale ${c.tailscaleVersion} from Tailscale's apt repository on the host (docs/deploy.md, "Each host's prerequisites"), or set the tailscale module's cli and tailscaledPath to where it is`,
    });
  }
  if (c.coordinator?.binary) {
    binaries.push({
      what: "headscale",
      path: c.coordinator.binary,
      versionArgs: ["version"],
      version: c.coordinator.headscaleVersion,
      option: "coordinator.headscaleVersion",
      fix: `install headscale ${c.coordinator.headscaleVersion} (its release .deb), or set meshfleet:headscaleBinaryPath so the deploy installs it`,
      deployed: c.coordinator.deployed,
    });
  }
  // The docker runtime's containers run under Debian's docker.io and its compose program (bookworm: docker-compose 1.29).
  const packages = [...new Set([...h.packages, ...(h.containers.length ? ["docker.io", "docker-compose"] : [])])].sort();
  return {
    host: h.name,
    packages: packages.map((name) => (PACKAGE_COMMANDS[name] ? { name, command: PACKAGE_COMMANDS[name] } : { name })),
    node: { path: c.node ?? "node", minimumMajor: NODE_MINIMUM_MAJOR },
    binaries,
  };
}
