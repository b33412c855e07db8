/**
 * Every artifact of a fleet as (relative path, content) pairs: per host under
 * `<host>/`, mesh-wide under `fleet/`. Pure; `meshfleet render` writes them,
 * tests feed them to the real programs. Secret files are listed, never written.
 */
import { renderNftables } from "../modules/firewall.ts";
import type { FleetSystem, HostSystem } from "./types.ts";
import { stringify } from "yaml";

export interface Artifact { path: string; content: string; mode: string }

export function hostArtifacts(h: HostSystem): Artifact[] {
  const out: Artifact[] = [];
  const secrets: string[] = [];
  for (const f of h.files) {
    if (f.secretRef || f.secret) { secrets.push(`${f.path}\t${f.secretRef ?? "secret"}`); continue; }
    out.push({ path: f.path.replace(/^\//, ""), content: f.content, mode: f.mode });
  }
  for (const u of h.units) out.push({ path: `etc/systemd/system/${u.name}`, content: u.content, mode: "0644" });
  if (Object.keys(h.sysctl).length)
    out.push({ path: "etc/sysctl.d/90-meshfleet.conf", content: Object.entries(h.sysctl).map(([k, v]) => `${k} = ${v}`).join("\n") + "\n", mode: "0644" });
  const nft = renderNftables(h);
  if (nft) out.push({ path: "etc/nftables.d/meshfleet.nft", content: nft, mode: "0644" });
  if (h.tailscale.enable)
    out.push({ path: "meshfleet/tailscale.json", content: JSON.stringify({ up: h.tailscale.upArgs, set: h.tailscale.setArgs, authKeyFile: h.tailscale.authKeyFile }, null, 2) + "\n", mode: "0644" });
  if (h.containers.length) out.push({ path: "meshfleet/containers.yaml", content: stringify(h.containers), mode: "0644" });
  if (h.lxc) {
    out.push({ path: `meshfleet/lxc/${h.lxc.ctid}.conf`, content: h.lxc.config.join("\n") + "\n", mode: "0644" });
    out.push({ path: "meshfleet/lxc/pct.sh", content: "#!/bin/sh\nset -e\n" + h.lxc.pctCommands.map(shellJoin).join("\n") + "\n", mode: "0755" });
  }
  if (h.bestEffort.length) out.push({ path: "meshfleet/best-effort.sh", content: "#!/bin/sh\n" + h.bestEffort.map((c) => `${shellJoin(c.argv)} || true  # ${c.why}`).join("\n") + "\n", mode: "0755" });
  if (secrets.length) out.push({ path: "meshfleet/SECRETS", content: "# secret files, written by the agent from Pulumi secrets (path, secret)\n" + secrets.join("\n") + "\n", mode: "0644" });
  return out;
}

export function fleetArtifacts(f: FleetSystem): Artifact[] {
  return [
    { path: "policy.hujson", content: f.policyHuJson, mode: "0644" },
    { path: "derp-regions.json", content: JSON.stringify(f.derpRegions, null, 2) + "\n", mode: "0644" },
    { path: "dns-records.json", content: JSON.stringify(f.dnsRecords, null, 2) + "\n", mode: "0644" },
    { path: "users.json", content: JSON.stringify(f.users, null, 2) + "\n", mode: "0644" },
    { path: "preauth-keys.json", content: JSON.stringify(f.preAuthKeys, null, 2) + "\n", mode: "0644" },
    { path: "auto-approvers.json", content: JSON.stringify(f.autoApprovers, null, 2) + "\n", mode: "0644" },
  ];
}

export function allArtifacts(f: FleetSystem): Artifact[] {
  return [
    ...Object.values(f.hosts).flatMap((h) => hostArtifacts(h).map((a) => ({ ...a, path: `${h.name}/${a.path}` }))),
    ...fleetArtifacts(f).map((a) => ({ ...a, path: `fleet/${a.path}` })),
  ];
}

const shellJoin = (argv: string[]) => argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
