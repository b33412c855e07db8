/**
 * The nft text of a bundle's firewall, pure. The agent loads exactly this
 * (`nftScript`) and `meshfleet render` writes the same text, so a golden is
 * what lands on the host.
 */
import type { Firewall, NftRule, NftSet } from "./bundle.ts";
import { NFT_FAMILY, NFT_TABLE } from "./constants.ts";

export const NFT_TABLE_REF = `${NFT_FAMILY} ${NFT_TABLE}`;

const q = (s: string) => `"${s}"`;
const list = (xs: readonly (string | number)[]) => (xs.length === 1 ? String(xs[0]) : `{ ${xs.join(", ")} }`);

const addrs = (m: NonNullable<NftRule["saddr"]>) => ("set" in m ? `@${m.set}` : `{ ${m.cidrs.join(", ")} }`);

export function nftRuleText(r: NftRule): string {
  const parts: string[] = [];
  if (r.iifname !== undefined) parts.push(`iifname ${q(r.iifname)}`);
  if (r.ctState) parts.push(`ct state ${r.ctState.join(",")}`);
  if (r.saddr) parts.push(`${r.saddr.family} saddr ${addrs(r.saddr)}`);
  if (r.daddr) parts.push(`${r.daddr.family} daddr ${addrs(r.daddr)}`);
  if (r.icmp) parts.push(`${r.icmp.family === "ip" ? "icmp" : "icmpv6"} type ${list(r.icmp.types)}`);
  if (r.l4) {
    const protos = r.l4.proto === "tcp+udp" ? ["tcp", "udp"] : [r.l4.proto];
    if (!r.l4.dports) parts.push(`meta l4proto ${list(protos)}`);
    else if (protos.length === 1) parts.push(`${protos[0]} dport ${list(r.l4.dports)}`);
    else parts.push(`meta l4proto ${list(protos)} th dport ${list(r.l4.dports)}`);
  }
  if (r.tcpMss === "rt-mtu") parts.push("tcp flags syn tcp option maxseg size set rt mtu");
  if (r.counter) parts.push("counter");
  if (r.verdict !== undefined) parts.push(typeof r.verdict === "string" ? r.verdict : `jump ${r.verdict.jump}`);
  if (r.comment !== undefined) parts.push(`comment ${q(r.comment)}`);
  return parts.join(" ");
}

function setLines(s: NftSet): string[] {
  const lines = [`  set ${s.name} {`, `    type ${s.type}`, "    flags interval"];
  if (s.elements.length) lines.push(`    elements = { ${s.elements.join(", ")} }`);
  lines.push("  }");
  return lines;
}

/** The whole `table inet meshfleet { ... }` text, or null when the firewall is off. */
export function nftRuleset(fw: Firewall | null): string | null {
  if (!fw) return null;
  const lines = [`table ${fw.family} ${fw.table} {`];
  for (const s of fw.sets) lines.push(...setLines(s));
  for (const c of fw.chains) {
    lines.push(`  chain ${c.name} {`);
    if (c.hook) lines.push(`    type ${c.hook.type} hook ${c.hook.hook} priority ${c.hook.priority}; policy ${c.hook.policy};`);
    for (const r of c.rules) lines.push(`    ${nftRuleText(r)}`);
    lines.push("  }");
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

/**
 * What the agent feeds `nft -f`: one transaction that creates the table if
 * missing, deletes it and loads the new ruleset (or only deletes it when the
 * firewall is off). No other table is touched.
 */
export const nftScript = (fw: Firewall | null): string => nftScriptFor(nftRuleset(fw));

/** nftScript for a ruleset already rendered (null: only delete the table). */
export function nftScriptFor(ruleset: string | null): string {
  return [`table ${NFT_TABLE_REF} {}`, `delete table ${NFT_TABLE_REF}`, ruleset ?? "", ""].join("\n");
}

/** The sets the agent refreshes from `tailscale status` (host-side policy enforcement): all of the table's sets. */
export const peerSets = (fw: Firewall | null): NftSet[] => (fw ? fw.sets : []);

/**
 * The nft script that replaces the elements of every peer set in one
 * transaction: the set's fixed elements plus the live addresses (of the
 * set's family) of its member hosts.
 */
export function peerSetScript(sets: readonly NftSet[], addrs: Map<string, string[]>): string {
  const lines: string[] = [];
  for (const s of sets) {
    const v6 = s.type === "ipv6_addr";
    const live = s.members.flatMap((m) => addrs.get(m) ?? []).filter((a) => a.includes(":") === v6);
    const all = [...new Set([...s.elements, ...live])];
    lines.push(`flush set ${NFT_TABLE_REF} ${s.name}`);
    if (all.length) lines.push(`add element ${NFT_TABLE_REF} ${s.name} { ${all.join(", ")} }`);
  }
  return lines.join("\n") + "\n";
}

/** A table listing with the elements of the named sets left out (they follow tailscale status). */
export function nftComparable(text: string, dynamicSets?: readonly string[]): string {
  const names = dynamicSets ? dynamicSets.map((n) => n.replace(/\W/g, "")).join("|") : "peers_\\w+";
  if (!names) return text;
  return text.replace(new RegExp(`(set (?:${names}) \\{[^{}]*?)\\s*elements = \\{[^{}]*\\}`, "g"), "$1");
}
