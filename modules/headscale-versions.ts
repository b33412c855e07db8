/**
 * The headscale releases meshfleet renders a config for, and what each needs
 * of its clients. headscale 0.29 reads keys that 0.28 does not know and
 * refuses keys older releases used (REFERENCE: the legacy keys are fatal), so
 * a fleet pinned to an unsupported release is refused in `check`, with the
 * staged path upgrades are known to take (each stage with a backup and a
 * health check).
 *
 * The client minimum is headscale's own: 0.29.2 supports the latest ten
 * tailscale minor releases (capver.MinSupportedCapabilityVersion 113 = v1.80).
 */
import type { Assertion } from "../core/module.ts";

export interface HeadscaleRelease {
  /** The oldest tailscale client release this headscale accepts. */
  minTailscale: string;
}

/** By major.minor: the releases whose config meshfleet renders. */
export const SUPPORTED_HEADSCALE: Record<string, HeadscaleRelease> = {
  "0.29": { minTailscale: "1.80.0" },
};

/** The known-good staged upgrade path (headscale#1758, #2182, #2870, #2063). */
export const UPGRADE_PATH = ["0.27.1", "0.28.0", "0.29.2"];

const minor = (v: string) => v.split(".").slice(0, 2).join(".");

/** -1, 0 or 1 comparing dotted release numbers field by field. */
export function compareReleases(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** The release's entry, or undefined when meshfleet does not render its config. */
export function headscaleRelease(version: string): HeadscaleRelease | undefined {
  return SUPPORTED_HEADSCALE[minor(version)];
}

/** The fleet's headscale version is one meshfleet renders for, and its tailscaleVersion one that headscale accepts. */
export function versionAssertions(fleet: { coordinator: { headscaleVersion: string }; tailscaleVersion: string }, fleetFile: string): Assertion[] {
  const hv = fleet.coordinator.headscaleVersion;
  const rel = headscaleRelease(hv);
  const supported = Object.keys(SUPPORTED_HEADSCALE).map((m) => `${m}.x`).join(", ");
  const latest = UPGRADE_PATH[UPGRADE_PATH.length - 1]!;
  const from = UPGRADE_PATH.findIndex((v) => compareReleases(v, hv) > 0);
  const stages = from >= 0 ? UPGRADE_PATH.slice(from) : [latest];
  return [
    {
      assertion: rel !== undefined,
      file: fleetFile,
      path: "coordinator.headscaleVersion",
      expected: `a headscale release meshfleet renders the config of (${supported})`,
      found: JSON.stringify(hv),
      fix:
        compareReleases(hv, latest) < 0
          ? `upgrade in stages, ${[hv, ...stages].join(" -> ")}, each with a backup and a health check: set coordinator.headscaleVersion to each in turn`
          : `set coordinator.headscaleVersion: ${latest} (newer releases are not known to meshfleet yet)`,
    },
    {
      assertion: rel === undefined || compareReleases(fleet.tailscaleVersion, rel.minTailscale) >= 0,
      file: fleetFile,
      path: "tailscaleVersion",
      expected: `${rel?.minTailscale ?? "?"} or newer (headscale ${hv} refuses older clients)`,
      found: JSON.stringify(fleet.tailscaleVersion),
      fix: `set tailscaleVersion to ${rel?.minTailscale ?? "a supported release"} or newer, and upgrade the nodes below it`,
    },
  ];
}
