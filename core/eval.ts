/**
 * Evaluation: loaded files -> merged options -> module contributions ->
 * one HostSystem per host and a FleetSystem. Pure apart from reading the
 * folder (load.ts); every problem found is returned, none thrown.
 */
import path from "node:path";
import { z } from "zod";
import { diag, hasErrors, show } from "./diagnostics.ts";
import { fleetSchema, type FleetConfig } from "./fleet-schema.ts";
import { loadFleetDir, parseYaml, displayPath, type LoadedFleet } from "./load.ts";
import { mergeDefinitions, stripPrio, zodDiagnostics, type Definition } from "./merge.ts";
import type { Contribution, MeshModule, ModuleContext, PeerView } from "./module.ts";
import { PRIORITY } from "./priority.ts";
import { addressIn, cidr, cidrContains, cidrsOverlap, parseCidr } from "./schema-types.ts";
import { policyHooks } from "./policy-hooks.ts";
import { fleetPolicyNodes, tailnetRulesForHost, type Policy } from "./policy/index.ts";
import { AGENT_HOST_PATH, type Diagnostic, type FleetSystem, type HostSystem, type InboundRule, type TailscaleSettings } from "./types.ts";
import { MODULES, PROFILES, tailscaleSetArgs, tailscaleUpArgs } from "../modules/index.ts";
import { readFileSync, existsSync } from "node:fs";

export const hostBaseShape = {
  imports: z.array(z.string()).default([]).describe(`Profiles (${Object.keys(PROFILES).join(", ")}) or ./files.yaml to import.`),
  address: z.string().min(1).describe("Address (IP or DNS name) Pulumi reaches the host's sshd on."),
  ssh: z
    .object({
      user: z.string().default("root").describe("SSH user meshfleet deploys as."),
      port: z.number().int().min(1).max(65535).default(22).describe("sshd port."),
      privateKeyPath: z.string().default("").describe("Private key for this host (empty: the stack's meshfleet:sshPrivateKeyPath)."),
      hostKey: z
        .union([z.string().regex(/^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) [A-Za-z0-9+/=]+$/, { message: "an SSH public key such as ssh-ed25519 AAAA…" }), z.literal("")])
        .default("")
        .describe("The host's SSH public key, checked on every deploy (empty: from the stack's meshfleet:knownHostsPath, else unchecked)."),
    })
    .strict()
    .default({ user: "root", port: 22, privateKeyPath: "", hostKey: "" })
    .describe("How Pulumi reaches the host."),
  lan: z.array(cidr).default([]).describe("LAN subnets the host is attached to (advertised routes must be inside one)."),
  agent: z.boolean().default(true).describe("Run the meshfleet agent (false for phones and other nodes you configure by hand)."),
  runtime: z.enum(["systemd", "docker"]).default("systemd").describe("How services run: native systemd units, or docker containers (the seeds' setup)."),
  description: z.string().default("").describe("Free text shown by `meshfleet hosts`."),
};

export function hostSchema(modules: MeshModule[] = MODULES) {
  const shape: Record<string, z.ZodType> = { ...hostBaseShape };
  for (const m of modules) shape[m.name] = m.options.prefault({} as never); // prefault: zod 4 parses it, so inner defaults apply
  return z.object(shape).strict();
}

export interface EvalResult {
  fleet?: FleetSystem;
  diagnostics: Diagnostic[];
}

export async function evaluateFleet(dir: string, stack = path.basename(path.resolve(dir))): Promise<EvalResult> {
  return evaluateLoaded(await loadFleetDir(dir), stack);
}

export function evaluateLoaded(loaded: LoadedFleet, stack: string, modules: MeshModule[] = MODULES): EvalResult {
  const diagnostics: Diagnostic[] = [...loaded.diagnostics];
  const schema = hostSchema(modules);
  const knownModules = new Set(modules.map((m) => m.name));

  // 1. fleet.yaml
  let fleetCfg: FleetConfig | undefined;
  const fleetFile = loaded.fleet?.file ?? displayPath(path.join(loaded.dir, "fleet.yaml"));
  if (loaded.fleet) {
    const r = fleetSchema.safeParse(stripPrio(loaded.fleet.value), { reportInput: true });
    if (r.success) fleetCfg = r.data;
    else diagnostics.push(...zodDiagnostics(fleetSchema, r.error, new Map(), fleetFile));
  }

  // 2. hosts: imports, merge by priority, parse
  const peers: Record<string, PeerView> = {};
  for (const { name, source } of loaded.hosts) {
    const defs: Definition[] = [];
    const roles: string[] = [];
    const raw = source.value;
    if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
      diagnostics.push(diag(source.file, "", "a mapping of options (imports, address, ssh, modules...)", show(stripPrio(raw)), "write the host as key: value lines"));
      continue;
    }
    collectImports(source.file, raw as Record<string, unknown>, defs, roles, diagnostics, new Set([source.file]));
    defs.push({ file: source.file, priority: PRIORITY.plain, value: raw });
    const merged = mergeDefinitions(schema, defs);
    const before = diagnostics.length;
    diagnostics.push(...merged.diagnostics);
    const parsed = schema.safeParse(merged.value, { reportInput: true });
    if (!parsed.success) {
      diagnostics.push(...zodDiagnostics(schema, parsed.error, merged.sources, source.file).filter((d) => !(d.found.startsWith("unknown option") && diagnostics.length > before)));
      continue;
    }
    if (diagnostics.length > before) continue;
    const o = parsed.data as Record<string, any>;
    peers[name] = { name, file: source.file, address: o.address, roles, runtime: o.runtime, lan: o.lan, options: o };
  }
  if (!fleetCfg || hasErrors(diagnostics)) return { diagnostics };

  // 3. fleet-wide structure: the coordinator, names, routes
  const coordinators = Object.values(peers).filter((p) => p.options.headscale?.enable);
  const coordHost = fleetCfg.coordinator.host;
  if (!peers[coordHost] && !loaded.hosts.some((h) => h.name === coordHost)) {
    diagnostics.push(diag(fleetFile, "coordinator.host", `the name of a host file in ${displayPath(loaded.dir)} (${Object.keys(peers).join(", ") || "none"})`, JSON.stringify(coordHost), `create ${coordHost}.yaml importing "coordinator", or point coordinator.host at an existing host`));
  } else if (coordinators.length === 0) {
    diagnostics.push(diag(peers[coordHost]?.file ?? fleetFile, "imports", 'the coordinator host to import "coordinator" (headscale.enable)', "no host runs headscale", `add "coordinator" to imports in ${peers[coordHost]?.file ?? coordHost + ".yaml"}`));
  }
  if (coordinators.length > 1) {
    for (const c of coordinators.slice(1))
      diagnostics.push(diag(c.file, "headscale.enable", `one coordinator per fleet (already ${coordinators[0].name} in ${coordinators[0].file})`, "a second host running headscale", `remove "coordinator" from this host's imports, or set coordinator.host in ${fleetFile}`));
  } else if (coordinators.length === 1 && coordinators[0].name !== coordHost && peers[coordHost]) {
    diagnostics.push(diag(fleetFile, "coordinator.host", `the host that runs headscale (${coordinators[0].name})`, JSON.stringify(coordHost), `set coordinator.host: ${coordinators[0].name}`));
  }
  checkNames(peers, diagnostics);
  checkRoutesAcrossHosts(peers, diagnostics);

  // 4. policy (typed, validated, rendered)
  const pol = policyHooks.prepare(fleetCfg.policy, { fleetFile, fleet: fleetCfg, peers });
  diagnostics.push(...pol.diagnostics);
  if (hasErrors(diagnostics)) return { diagnostics };

  // 5. module contributions
  const hosts: Record<string, HostSystem> = {};
  const fleetWarnings: Diagnostic[] = [];
  const dnsRecords: FleetSystem["dnsRecords"] = [...fleetCfg.dns.extraRecords];
  const derpRegions: FleetSystem["derpRegions"] = [];
  const preAuthKeys: FleetSystem["preAuthKeys"] = [];
  const users = new Set<string>(fleetCfg.users);
  for (const peer of Object.values(peers)) {
    const ctx: ModuleContext = {
      host: peer.name, file: peer.file, self: peer, hosts: peers, fleet: fleetCfg, fleetFile, stack,
      policyHuJson: pol.huJson, autoApprovers: pol.autoApprovers,
    };
    const contribs: { module: string; c: Contribution }[] = [];
    for (const m of modules) {
      try {
        contribs.push({ module: m.name, c: m.config(peer.options[m.name], ctx) });
      } catch (e) {
        diagnostics.push(diag(peer.file, m.name, `module ${m.name} to evaluate`, (e as Error).message, "report this: a module must not throw (use assertions)"));
      }
    }
    const host = assemble(peer, contribs, diagnostics);
    hosts[peer.name] = host;
    for (const { c } of contribs) {
      dnsRecords.push(...(c.fleet?.dnsRecords ?? []));
      for (const r of c.fleet?.derpRegions ?? []) if (!derpRegions.some((x) => x.regionId === r.regionId)) derpRegions.push(r);
      preAuthKeys.push(...(c.fleet?.preAuthKeys ?? []));
      for (const u of c.fleet?.users ?? []) users.add(u);
    }
    fleetWarnings.push(...host.warnings);
  }
  diagnostics.push(...fleetWarnings);
  if (hasErrors(diagnostics)) return { diagnostics };

  const fleet: FleetSystem = {
    stack,
    dir: loaded.dir,
    coordinator: {
      host: coordHost,
      serverUrl: fleetCfg.coordinator.serverUrl,
      headscaleVersion: fleetCfg.coordinator.headscaleVersion,
      baseDomain: fleetCfg.dns.baseDomain,
      runtime: peers[coordHost].runtime,
    },
    users: [...users],
    policy: pol.policy,
    policyHuJson: pol.huJson,
    dnsRecords,
    derpRegions,
    preAuthKeys,
    autoApprovers: pol.autoApprovers,
    hosts,
    warnings: fleetWarnings,
  };
  enforcePolicyOnHosts(fleet);
  return { fleet, diagnostics };
}

/**
 * Host-side enforcement (firewall.trustTailnet: false): the policy's rules
 * that reach this host become its own nft rules on tailscale0, so a policy
 * widened on the coordinator alone does not open the host. Sets name fleet
 * hosts, not addresses: the agent fills in their live tailnet addresses.
 */
/**
 * The lockout guard is a transient timer, gone after a reboot: at boot the
 * agent finishes or rolls back an interrupted switch and re-arms the guard of
 * a generation still awaiting its confirm.
 */
const AGENT_BOOT_UNIT = {
  name: "meshfleet-boot.service",
  enable: true,
  content: `[Unit]\nDescription=meshfleet: recover an interrupted switch, keep the lockout guard across reboots\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\n# simple, so starting it never waits on a pending confirm; stays active after it is done.\nType=simple\nRemainAfterExit=yes\nExecStart=/usr/bin/node ${AGENT_HOST_PATH} boot\n\n[Install]\nWantedBy=multi-user.target\n`,
};

const PEER_REFRESH_UNITS = [
  {
    name: "meshfleet-peers.service",
    enable: false,
    content: `[Unit]\nDescription=meshfleet: refresh the policy's peer sets from tailscale status\nAfter=tailscaled.service\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/node ${AGENT_HOST_PATH} peers\n`,
  },
  {
    name: "meshfleet-peers.timer",
    enable: true,
    content: "[Unit]\nDescription=meshfleet: keep the policy's peer sets current\n\n[Timer]\nOnBootSec=10\nOnUnitActiveSec=30\nAccuracySec=5\n\n[Install]\nWantedBy=timers.target\n",
  },
];

function enforcePolicyOnHosts(fleet: FleetSystem) {
  const enforced = Object.values(fleet.hosts).filter((h) => h.firewall.enable && !h.firewall.trustTailnet && h.tailscale.enable);
  if (!enforced.length || !fleet.policy) return;
  const nodes = fleetPolicyNodes(fleet);
  const tailnetPrefixes = [parseCidr("100.64.0.0/10")!, parseCidr("fd7a:115c:a1e0::/48")!];
  for (const h of enforced) {
    const r = tailnetRulesForHost(h.name, nodes, fleet.policy as Policy, { users: fleet.users });
    h.firewall.tailnet = r.tailnet;
    h.units.push(...PEER_REFRESH_UNITS);
    for (const [name, cidrs] of Object.entries(r.sets)) {
      const parsed = cidrs.map((c) => [c, parseCidr(c.includes("/") ? c : `${c}/${c.includes(":") ? 128 : 32}`)] as const);
      // Addresses inside the tailnet's ranges stand for nodes; the rest (LANs, `hosts:` entries) are literal.
      h.firewall.sets[name] = parsed.filter(([, p]) => p && !tailnetPrefixes.some((t) => cidrContains(t, p))).map(([c]) => c);
      h.firewall.setMembers[name] = nodes
        .filter((n) => n.ips.some((ip) => parsed.some(([, p]) => p && addressIn(ip, p))))
        .map((n) => n.name)
        .sort();
    }
  }
}

function collectImports(file: string, raw: Record<string, unknown>, defs: Definition[], roles: string[], out: Diagnostic[], seen: Set<string>) {
  const imports = stripPrio(raw.imports);
  if (imports === undefined) return;
  if (!Array.isArray(imports)) {
    out.push(diag(file, "imports", "a list of profiles or ./files.yaml", show(imports), "write imports: [client]"));
    return;
  }
  imports.forEach((imp, i) => {
    if (typeof imp !== "string") {
      out.push(diag(file, `imports[${i}]`, "a profile name or ./file.yaml", show(imp), "write the import as a string"));
      return;
    }
    if (imp.startsWith("./") || imp.startsWith("../")) {
      const full = path.resolve(path.dirname(file), imp);
      const shown = displayPath(full);
      if (seen.has(shown)) return;
      if (!existsSync(full)) {
        out.push(diag(file, `imports[${i}]`, "a file that exists", JSON.stringify(imp), `create ${shown} or fix the path`));
        return;
      }
      const r = parseYaml(readFileSync(full, "utf8"), shown);
      out.push(...r.diagnostics);
      if (r.value && typeof r.value === "object") {
        seen.add(shown);
        collectImports(shown, r.value as Record<string, unknown>, defs, roles, out, seen);
        defs.push({ file: shown, priority: PRIORITY.plain, value: r.value });
      }
      return;
    }
    const profile = PROFILES[imp];
    if (!profile) {
      out.push(diag(file, `imports[${i}]`, `one of the profiles ${Object.keys(PROFILES).join(", ")} or a ./file.yaml`, JSON.stringify(imp), `fix the name${suggestName(imp)}`));
      return;
    }
    if (!roles.includes(imp)) roles.push(imp);
    defs.push({ file: `profile "${imp}" (imported by ${file})`, priority: PRIORITY.mkDefault, value: profile.definitions });
  });
}

function suggestName(imp: string): string {
  const near = Object.keys(PROFILES).find((p) => p.startsWith(imp.slice(0, 3)));
  return near ? `: did you mean "${near}"?` : "";
}

function checkNames(peers: Record<string, PeerView>, out: Diagnostic[]) {
  const byTsName = new Map<string, PeerView>();
  for (const p of Object.values(peers)) {
    const ts = p.options.tailscale;
    if (!ts?.enable) continue;
    const n = ts.hostname || p.name;
    const prev = byTsName.get(n);
    if (prev)
      out.push(diag(p.file, "tailscale.hostname", `a node name no other host uses (${prev.name} in ${prev.file} is "${n}")`, JSON.stringify(n), "set tailscale.hostname to a unique name"));
    else byTsName.set(n, p);
  }
}

function checkRoutesAcrossHosts(peers: Record<string, PeerView>, out: Diagnostic[]) {
  const seen: { host: PeerView; route: string; i: number }[] = [];
  for (const p of Object.values(peers)) {
    const routes: string[] = [...(p.options["subnet-router"]?.enable ? p.options["subnet-router"].routes : []), ...(p.options.tailscale?.advertiseRoutes ?? [])];
    routes.forEach((route, i) => {
      const c = parseCidr(route);
      if (!c) return;
      for (const s of seen) {
        if (s.host === p || s.route === route) continue; // identical routes on two routers are HA, allowed
        if (cidrsOverlap(c, parseCidr(s.route)!))
          out.push(diag(p.file, `subnet-router.routes[${i}]`, `a route that does not overlap other routers' routes`, `${route}, which overlaps ${s.route} from ${s.host.name} (${s.host.file})`, "advertise the same CIDR on both (high availability) or make them disjoint"));
      }
      seen.push({ host: p, route, i });
    });
  }
}

/** Merge the contributions of all modules into a HostSystem. */
function assemble(peer: PeerView, contribs: { module: string; c: Contribution }[], out: Diagnostic[]): HostSystem {
  const o = peer.options;
  const fw = o.firewall;
  const host: HostSystem = {
    name: peer.name,
    file: peer.file,
    address: peer.address,
    ssh: { user: o.ssh.user, port: o.ssh.port, privateKeyPath: o.ssh.privateKeyPath, hostKey: o.ssh.hostKey },
    roles: peer.roles,
    agent: o.agent,
    runtime: o.runtime,
    files: [],
    sysctl: {},
    firewall: { enable: fw.enable, inbound: [], tailnet: [], sets: {}, setMembers: {}, forward: false, trustedInterfaces: fw.trustedInterfaces, trustTailnet: fw.trustTailnet, allowPing: fw.allowPing },
    units: [],
    containers: [],
    tailscale: {
      enable: false, loginServer: "", authKeyFile: "", hostname: peer.name, tags: [], advertiseRoutes: [], advertiseExitNode: false,
      acceptRoutes: false, acceptDns: true, ssh: false, snatSubnetRoutes: true, cli: o.tailscale.tailscalePath, upArgs: [], setArgs: [],
    },
    packages: [],
    lxc: null,
    probes: [],
    metrics: { enable: o.metrics.enable, textfileDir: o.metrics.textfileDir },
    bestEffort: [],
    lan: peer.lan,
    warnings: [],
  };
  const fileOwner = new Map<string, string>();
  const unitOwner = new Map<string, string>();
  const portOwner = new Map<string, InboundRule>();
  for (const { module, c } of contribs) {
    for (const f of c.files ?? []) {
      const prev = fileOwner.get(f.path);
      if (prev) out.push(diag(peer.file, module, `one module writing ${f.path}`, `both ${prev} and ${module}`, `disable one of the two modules on this host`));
      else { fileOwner.set(f.path, module); host.files.push(f); }
    }
    for (const [k, v] of Object.entries(c.sysctl ?? {})) {
      if (host.sysctl[k] !== undefined && host.sysctl[k] !== v)
        out.push(diag(peer.file, module, `one value for sysctl ${k}`, `${host.sysctl[k]} and ${v}`, "make the modules agree"));
      host.sysctl[k] = v;
    }
    for (const r of c.inbound ?? []) {
      const key = `${r.proto}/${r.port}`;
      const prev = portOwner.get(key);
      if (prev && prev.owner !== r.owner)
        out.push(diag(peer.file, `${r.owner}`, `one service per port (${r.proto} ${r.port} is ${prev.owner}'s: ${prev.comment})`, `${r.owner} also wants ${r.proto} ${r.port}`, `move one of them to another port`));
      else if (!prev) { portOwner.set(key, r); host.firewall.inbound.push(r); }
    }
    if (c.forward) host.firewall.forward = true;
    for (const u of c.units ?? []) {
      const prev = unitOwner.get(u.name);
      if (prev) out.push(diag(peer.file, module, `one module owning ${u.name}`, `both ${prev} and ${module}`, "disable one of the two modules on this host"));
      else { unitOwner.set(u.name, module); host.units.push(u); }
    }
    host.containers.push(...(c.containers ?? []));
    host.packages.push(...(c.packages ?? []).filter((p) => !host.packages.includes(p)));
    if (c.lxc) host.lxc = c.lxc;
    host.probes.push(...(c.probes ?? []));
    host.bestEffort.push(...(c.bestEffort ?? []));
    if (c.tailscale) mergeTailscale(host.tailscale, c.tailscale, peer, module, out);
    for (const a of c.assertions ?? [])
      if (!a.assertion) out.push(diag(a.file ?? peer.file, a.path, a.expected, a.found, a.fix));
    for (const w of c.warnings ?? [])
      if (w.when) host.warnings.push(diag(w.file ?? peer.file, w.path, w.expected, w.found, w.fix, "warning"));
  }
  if (host.agent) host.units.push(AGENT_BOOT_UNIT);
  if (!host.agent) {
    // A node without an agent (a phone) is configured by hand from its join
    // instructions: nothing is rendered for the host itself.
    Object.assign(host, { files: [], sysctl: {}, units: [], containers: [], packages: [], probes: [], bestEffort: [], lxc: null });
    host.firewall = { ...host.firewall, enable: false, inbound: [] };
    host.metrics = { ...host.metrics, enable: false };
  }
  const t = host.tailscale;
  t.advertiseRoutes = [...new Set(t.advertiseRoutes)];
  if (t.enable) {
    const tsOpts = o.tailscale;
    t.upArgs = tailscaleUpArgs(t, tsOpts.netfilterMode, tsOpts.extraUpFlags);
    t.setArgs = tailscaleSetArgs(t, tsOpts.netfilterMode);
  }
  return host;
}

function mergeTailscale(t: TailscaleSettings, c: Partial<TailscaleSettings>, peer: PeerView, module: string, out: Diagnostic[]) {
  for (const [k, v] of Object.entries(c) as [keyof TailscaleSettings, unknown][]) {
    if (Array.isArray(v)) (t[k] as unknown[]) = [...(t[k] as unknown[]), ...v];
    else if (typeof v === "boolean") {
      if (k === "advertiseExitNode" || k === "enable") (t as any)[k] = (t as any)[k] || v;
      else (t as any)[k] = v;
    } else if (typeof v === "string") {
      const cur = t[k] as string;
      if (cur && cur !== v && k !== "hostname") out.push(diag(peer.file, `tailscale.${k}`, `one value`, `${cur} and ${v} (from ${module})`, "make them agree"));
      (t as any)[k] = v;
    }
  }
}
