/**
 * Generations an older agent stored (bundle format 1: the nft table as
 * text, tailscale settings with argv). A host upgraded to this agent still
 * has them as its current generation, and a failed first switch rolls back
 * to one, so they are read here into the current Bundle type. Their nft text
 * and peer sets, which format 2 carries as data, are kept on the side.
 * Bundles from outside (`switch`, `diff`) are never read this way.
 */
import { BUNDLE_FORMAT, type Bundle, type NftSet, type TailscaleConfig } from "../contract/bundle.ts";
import { nftRuleset, peerSets } from "../contract/nftables.ts";

interface LegacyParts {
  nft: string | null;
  sets: NftSet[];
}
const legacy = new WeakMap<Bundle, LegacyParts>();

/** The ruleset a generation's bundle loads (its table as text), or null when its firewall is off. */
export function rulesetOf(b: Bundle): string | null {
  const l = legacy.get(b);
  return l ? l.nft : nftRuleset(b.firewall);
}

/** The sets `peers` refreshes for a generation's bundle. */
export function peerSetsOf(b: Bundle): NftSet[] {
  const l = legacy.get(b);
  return l ? l.sets : peerSets(b.firewall);
}

export const isLegacy = (b: Bundle): boolean => legacy.has(b);

type V1Tailscale = Omit<TailscaleConfig, "routes" | "exitNode" | "netfilterMode" | "extraUpFlags"> & {
  advertiseRoutes: string[];
  advertiseExitNode: boolean;
  upArgs: string[];
};
const V1_TYPED_FLAGS = ["--login-server", "--hostname", "--advertise-routes", "--advertise-exit-node", "--accept-routes", "--accept-dns", "--ssh", "--snat-subnet-routes", "--netfilter-mode"];

function tailscaleV1(t: V1Tailscale | null): TailscaleConfig | null {
  if (!t) return null;
  const nf = t.upArgs.find((a) => a.startsWith("--netfilter-mode="))?.slice("--netfilter-mode=".length);
  return {
    cli: t.cli,
    loginServer: t.loginServer,
    authKeyFile: t.authKeyFile,
    hostname: t.hostname,
    tags: t.tags,
    routes: t.advertiseRoutes,
    exitNode: t.advertiseExitNode,
    acceptRoutes: t.acceptRoutes,
    acceptDns: t.acceptDns,
    ssh: t.ssh,
    snatSubnetRoutes: t.snatSubnetRoutes,
    netfilterMode: nf === "off" || nf === "nodivert" ? nf : "on",
    extraUpFlags: t.upArgs.filter((a) => !V1_TYPED_FLAGS.some((f) => a === f || a.startsWith(`${f}=`))),
  };
}

/** A bundle as this or an older agent stored it in a generation. Stored bundles were checked when they were switched to. */
export function fromStored(raw: unknown): Bundle {
  const x = raw as Record<string, unknown> & { format?: number };
  if (x.format === BUNDLE_FORMAT) return x as unknown as Bundle;
  // Format 3 only added what format 2 could not say (a rule's tcpMss, a rule without a verdict): a format 2 bundle is one as it is.
  if (x.format === 2) return { ...x, format: BUNDLE_FORMAT } as unknown as Bundle;
  if (x.format !== 1) throw new Error(`stored bundle format ${String(x.format)} is unknown to this agent (it reads ${BUNDLE_FORMAT}, 2 and 1)`);
  const v1 = x as unknown as {
    host: string;
    hash: string;
    files: Bundle["files"];
    sysctl: Bundle["sysctl"];
    nftables: string | null;
    units: { name: string; content: string; enable: boolean; restartTriggers?: string[] }[];
    tailscale: V1Tailscale | null;
    probes: Bundle["probes"];
    metrics: Bundle["metrics"];
    bestEffort: Bundle["bestEffort"];
    peerSets?: Record<string, { members: string[]; cidrs: string[] }>;
  };
  const b: Bundle = {
    format: BUNDLE_FORMAT,
    host: v1.host,
    hash: v1.hash,
    files: v1.files,
    sysctl: v1.sysctl,
    units: v1.units.map((u) => ({ name: u.name, content: u.content, enable: u.enable, restartTriggers: u.restartTriggers ?? [] })),
    firewall: null,
    tailscale: tailscaleV1(v1.tailscale),
    probes: v1.probes,
    metrics: v1.metrics,
    bestEffort: v1.bestEffort,
  };
  const sets: NftSet[] = Object.entries(v1.peerSets ?? {}).flatMap(([name, s]) =>
    (["v4", "v6"] as const).map((fam) => ({
      name: `${name}_${fam}`,
      type: fam === "v4" ? ("ipv4_addr" as const) : ("ipv6_addr" as const),
      elements: s.cidrs.filter((c) => c.includes(":") === (fam === "v6")),
      members: s.members,
    })),
  );
  legacy.set(b, { nft: v1.nftables, sets });
  return b;
}
