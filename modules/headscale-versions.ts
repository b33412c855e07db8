/**
 * The headscale releases meshfleet renders a config for, and what each needs
 * of its clients. headscale 0.29 reads keys that 0.28 does not know and
 * refuses keys older releases used (REFERENCE: the legacy keys are fatal), so
 * a fleet pinned to an unsupported release is refused in `check`, with the
 * staged path upgrades are known to take (each stage with a backup and a
 * health check).
 *
 * The client minimum is headscale's own: 0.29.2 supports the latest ten
 * tailscale minor releases (capver.MinSupportedCapabilityVersion 113 = v1.80),
 * 0.28.0 those from capver 106 (v1.74; capver_generated.go of each release).
 *
 * The config keys that differ (config-example.yaml and hscontrol/types/config.go
 * of 0.28.0 and 0.29.2): 0.29 reads node.expiry, node.ephemeral.inactivity_timeout
 * and trusted_proxies, and refuses oidc.expiry and randomize_client_port; 0.28
 * reads ephemeral_node_inactivity_timeout (0.29 still reads it, with a warning)
 * and oidc.expiry (default 180d), and knows no node.expiry: a node registered
 * with a pre-auth key keeps the expiry its client asked for (none).
 *
 * The policy file differs too (hscontrol/policy/v2/types.go): 0.28 refuses a
 * field it does not know, and knows no grants, nodeAttrs, randomizeClientPort,
 * ssh acceptEnv, tests or sshTests. `tests` and `sshTests` are left out of its
 * file (meshfleet check runs them on its own evaluator); the others change who
 * reaches what, so `check` refuses them with 0.28.
 */
import type { Assertion } from "../core/module.ts";

export interface HeadscaleRelease {
  /** The oldest tailscale client release this headscale accepts. */
  minTailscale: string;
  /** Which config keys it reads where the releases differ (see above). */
  keys: "0.28" | "0.29";
  /** Keys it refuses to start with (config.go's deprecator fatals); extraSettings must not set them. */
  legacyKeys: string[];
}

const LEGACY_BOTH = ["acl_policy_path", "dns_config", "oidc.strip_email_domain", "oidc.map_legacy_users", "dns.use_username_in_magic_dns"];

/** By major.minor: the releases whose config meshfleet renders. */
export const SUPPORTED_HEADSCALE: Record<string, HeadscaleRelease> = {
  "0.28": { minTailscale: "1.74.0", keys: "0.28", legacyKeys: LEGACY_BOTH },
  "0.29": { minTailscale: "1.80.0", keys: "0.29", legacyKeys: [...LEGACY_BOTH.slice(0, 2), "randomize_client_port", "oidc.expiry", ...LEGACY_BOTH.slice(2)] },
};

/** The entry whose keys are rendered: the release's own, else the newest (`check` refuses the fleet then). */
export function renderedRelease(version: string): HeadscaleRelease {
  return headscaleRelease(version) ?? SUPPORTED_HEADSCALE[Object.keys(SUPPORTED_HEADSCALE).sort(compareReleases).at(-1)!]!;
}

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
export function versionAssertions(
  fleet: { coordinator: { headscaleVersion: string }; tailscaleVersion: string; nodeExpiry?: { after: string }; policy?: unknown },
  fleetFile: string,
): Assertion[] {
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
    {
      assertion: rel?.keys !== "0.28" || (fleet.nodeExpiry?.after ?? "0") === "0",
      file: fleetFile,
      path: "nodeExpiry.after",
      expected: `"0" with headscale ${hv} (it has no node.expiry: a node that joins with a pre-auth key never expires)`,
      found: JSON.stringify(fleet.nodeExpiry?.after),
      fix: `upgrade headscale to ${latest} (coordinator.headscaleVersion) first, or remove nodeExpiry.after`,
    },
    ...(rel?.keys === "0.28" ? policyFieldsOf(fleet.policy) : []).map((path) => ({
      assertion: false,
      file: fleetFile,
      path,
      expected: `a policy headscale ${hv} reads (its policy has no ${path.split(".").at(-1)}: it refuses the whole file)`,
      found: `${path} set`,
      fix: path.endsWith("grants")
        ? `write the grants as acls, or upgrade headscale to ${latest} (coordinator.headscaleVersion) first`
        : `remove ${path}, or upgrade headscale to ${latest} (coordinator.headscaleVersion) first`,
    })),
  ];
}

/** The fields of fleet.yaml's policy that headscale 0.28's policy does not have (tests and sshTests aside). */
function policyFieldsOf(policy: unknown): string[] {
  if (!policy || typeof policy !== "object") return [];
  const p = policy as Record<string, unknown>;
  const out = ["grants", "nodeAttrs", "randomizeClientPort"].filter((k) => p[k] !== undefined).map((k) => `policy.${k}`);
  if (Array.isArray(p.ssh)) p.ssh.forEach((r, i) => (r as Record<string, unknown>)?.acceptEnv !== undefined && out.push(`policy.ssh[${i}].acceptEnv`));
  return out;
}

/**
 * The rendered policy file (core/policy/render.ts: comment lines, then JSON) as
 * `version` reads it: without tests and sshTests for 0.28, unchanged otherwise.
 */
export function policyForRelease(huJson: string, version: string): string {
  if (renderedRelease(version).keys !== "0.28" || !/"(tests|sshTests)"/.test(huJson)) return huJson;
  const lines = huJson.split("\n");
  const head = lines.filter((l) => l.startsWith("//"));
  const body = JSON.parse(lines.filter((l) => !l.startsWith("//")).join("\n")) as Record<string, unknown>;
  delete body.tests;
  delete body.sshTests;
  return [...head, JSON.stringify(body, null, 2), ""].join("\n");
}
