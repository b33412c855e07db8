/**
 * Every artifact of a fleet as (relative path, content) pairs: per host under
 * `<host>/`, mesh-wide under `fleet/`. Pure; `meshfleet render` writes them,
 * tests feed them to the real programs.
 *
 * A host's files come from its bundle (core/render.ts renderHostBody: the
 * bundle renderHost checks, without the hash no file shows) through the
 * same list the agent writes (contract/desired.ts): the bundle's files, the
 * sysctl.d file and the unit files, at their host paths. The nft script is
 * the one the agent loads; tailscale.json holds the typed settings and the
 * argv the agent runs. Secret files are listed in meshfleet/SECRETS, never
 * written.
 */
import { desiredFiles } from "../contract/desired.ts";
import type { Firewall } from "../contract/bundle.ts";
import { nftScript } from "../contract/nftables.ts";
import { tailscaleSetFlags, tailscaleUpFlags } from "../contract/tailscale.ts";
import { secretRefs } from "./bundle.ts";
import { renderHostBody } from "./render.ts";
import type { FleetSystem, HostSystem } from "./types.ts";
import { stringify } from "yaml";

export interface Artifact { path: string; content: string; mode: string }

/**
 * nftScript per distinct firewall (its JSON text): most of a fleet's hosts
 * share one table, and the text is a pure function of it. Bounded.
 */
const scripts = new Map<string, string>();
function nftScriptOf(fw: Firewall): string {
  const key = JSON.stringify(fw);
  let script = scripts.get(key);
  if (script === undefined) {
    if (scripts.size >= 1_000) scripts.clear();
    scripts.set(key, (script = nftScript(fw)));
  }
  return script;
}

/** Stand-ins for secrets not known at render time; their files are listed, never written. */
const standIns = (h: HostSystem) => Object.fromEntries(secretRefs(h).map((k) => [k, ""]));

/** A host's artifacts, each path under `under` (allArtifacts gives `<host>/`). */
export function hostArtifacts(h: HostSystem, under = ""): Artifact[] {
  const bundle = renderHostBody(h, standIns(h));
  const secretRef = new Map(h.files.map((f) => [f.path, f.secretRef]));
  const out: Artifact[] = [];
  const secrets: string[] = [];
  const desired = desiredFiles(bundle, false); // no file here shows its sha256
  for (let i = 0; i < desired.length; i++) {
    const f = desired[i];
    if (f.secret) { secrets.push(`${f.path}\t${secretRef.get(f.path) ?? "secret"}`); continue; }
    out.push({ path: under + (f.path.startsWith("/") ? f.path.slice(1) : f.path), content: f.content, mode: f.mode });
  }
  if (bundle.firewall) out.push({ path: under + "meshfleet/nftables.nft", content: nftScriptOf(bundle.firewall), mode: "0644" });
  if (bundle.tailscale) {
    const t = bundle.tailscale;
    const view = {
      settings: t,
      up: [t.cli, "up", "--auth-key", `file:${t.authKeyFile}`, ...tailscaleUpFlags(t)],
      set: [t.cli, "set", ...tailscaleSetFlags(t)],
    };
    out.push({ path: under + "meshfleet/tailscale.json", content: JSON.stringify(view, null, 2) + "\n", mode: "0644" });
  }
  if (h.containers.length) out.push({ path: under + "meshfleet/containers.yaml", content: stringify(h.containers), mode: "0644" });
  if (h.lxc) {
    out.push({ path: under + `meshfleet/lxc/${h.lxc.ctid}.conf`, content: h.lxc.config.join("\n") + "\n", mode: "0644" });
    out.push({ path: under + "meshfleet/lxc/pct.sh", content: "#!/bin/sh\nset -e\n" + h.lxc.pctCommands.map(shellJoin).join("\n") + "\n", mode: "0755" });
  }
  if (bundle.bestEffort.length) out.push({ path: under + "meshfleet/best-effort.sh", content: "#!/bin/sh\n" + bundle.bestEffort.map((c) => `${shellJoin(c.argv)} || true  # ${c.why}`).join("\n") + "\n", mode: "0755" });
  if (secrets.length) out.push({ path: under + "meshfleet/SECRETS", content: "# secret files, written by the agent from Pulumi secrets (path, secret)\n" + secrets.join("\n") + "\n", mode: "0644" });
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
    ...Object.values(f.hosts).flatMap((h) => hostArtifacts(h, `${h.name}/`)),
    ...fleetArtifacts(f).map((a) => ({ ...a, path: `fleet/${a.path}` })),
  ];
}

const shellJoin = (argv: string[]) => argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(" ");
