/** meshfleet hosts: the fleet as a table. */
import { evaluateFleet, formatDiagnostics, hasErrors, type HostServices } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { fleetDir, fleetFlags, flagHelp, parseArgs } from "../args.ts";
import type { Command } from "../command.ts";

export function hostRows(fleet: NonNullable<Awaited<ReturnType<typeof evaluateFleet>>["fleet"]>) {
  return Object.values(fleet.hosts).map((h) => ({
    host: h.name,
    roles: h.roles.join(",") || "-",
    address: h.address,
    runtime: h.agent ? h.runtime : "no agent",
    services: servicesOf(h.services).join(",") || "-",
    tags: h.tailscale.tags.join(",") || "-",
    routes: [...h.tailscale.advertiseRoutes, ...(h.tailscale.advertiseExitNode ? ["exit"] : [])].join(",") || "-",
    ports: [
      ...h.firewall.inbound.map((r) => `${r.port}/${r.proto}`),
      ...h.firewall.tailnetInbound.map((r) => `${r.port}/${r.proto}(tailnet)`),
    ].join(",") || "-",
  }));
}

/** The services a host runs, from its evaluated facts: `headscale`, `nginx`, `derp:embedded`, ... */
export function servicesOf(s: HostServices): string[] {
  return [
    ...(s.headscale ? ["headscale"] : []),
    ...(s.proxy ? [s.proxy] : []),
    ...(s.derp ? [`derp:${s.derp}`] : []),
    ...(s.subnetRouter ? ["subnet-router"] : []),
    ...(s.exitNode ? ["exit-node"] : []),
    ...(s.nodeExporter ? ["node-exporter"] : []),
  ];
}

export function table(rows: Record<string, string>[]): string {
  if (!rows.length) return "(no hosts)";
  const cols = Object.keys(rows[0]);
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
  const line = (r: Record<string, string>) => cols.map((c, i) => r[c].padEnd(w[i])).join("  ").trimEnd();
  return [line(Object.fromEntries(cols.map((c) => [c, c.toUpperCase()]))), ...rows.map(line)].join("\n");
}

export const command: Command = {
  name: "hosts",
  summary: "print the fleet's hosts: roles, services, addresses, tags, routes, open ports",
  usage: `usage: meshfleet hosts [--stack S | --hosts-dir DIR] [--json]\n\n${flagHelp(fleetFlags)}`,
  async run(argv) {
    const { opts } = parseArgs(argv, fleetFlags);
    const { dir, stack } = fleetDir(opts);
    const r = await evaluateFleet(REGISTRY, dir, stack);
    if (!r.fleet || hasErrors(r.diagnostics)) {
      console.error(formatDiagnostics(r.diagnostics));
      return 1;
    }
    const rows = hostRows(r.fleet);
    console.log(opts.json ? JSON.stringify(rows, null, 2) : table(rows));
    return 0;
  },
};
