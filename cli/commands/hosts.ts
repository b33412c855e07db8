/** meshfleet hosts: the fleet as a table. */
import { evaluateFleet, formatDiagnostics, hasErrors, type HostServices } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { fleetFlags, fleetLine, flagHelp, parseArgs, resolveFleet } from "../args.ts";
import type { Command } from "../command.ts";

/** One row per host; lists stay lists (the table joins them, --json keeps them arrays). */
export function hostRows(fleet: NonNullable<Awaited<ReturnType<typeof evaluateFleet>>["fleet"]>) {
  return Object.values(fleet.hosts).map((h) => ({
    host: h.name,
    roles: [...h.roles],
    address: h.address,
    agent: h.agent,
    runtime: h.agent ? h.runtime : null,
    services: servicesOf(h.services),
    tags: [...h.tailscale.tags],
    routes: [...h.tailscale.advertiseRoutes],
    exitNode: h.tailscale.advertiseExitNode,
    // What the host does with traffic outside the tailnet that no port opens; "off" without meshfleet's
    // firewall, null on a host meshfleet does not manage (no agent).
    firewall: !h.agent ? null : h.firewall.enable ? (h.firewall.defaultPolicy ?? "drop") : ("off" as const),
    ports: [
      ...h.firewall.inbound.map((r): { port: number | string; proto: string; from: "any" | "tailnet" } => ({ port: r.port, proto: r.proto, from: "any" as const })),
      // firewall.allowedTCPPortRanges/allowedUDPPortRanges: open on every interface, as "lo-hi".
      ...(h.firewall.scoped ?? [])
        .filter((r) => r.iifname === undefined && !r.from?.length)
        .flatMap((r) => [...r.ports, ...(r.ranges ?? [])].map((port) => ({ port, proto: r.proto, from: "any" as const }))),
      ...h.firewall.tailnetInbound.map((r) => ({ port: r.port, proto: r.proto, from: "tailnet" as const })),
    ],
  }));
}

type HostRow = ReturnType<typeof hostRows>[number];

/** The table's cells: lists comma-joined, "-" for none. */
export function textRow(r: HostRow): Record<string, string> {
  const list = (xs: string[]) => xs.join(",") || "-";
  return {
    host: r.host,
    roles: list(r.roles),
    address: r.address,
    runtime: r.runtime ?? "no agent",
    services: list(r.services),
    tags: list(r.tags),
    routes: list([...r.routes, ...(r.exitNode ? ["exit"] : [])]),
    firewall: r.firewall ?? "-",
    // Under accept every port is open anyway: the listed ones are only those the modules declare.
    ports: r.firewall === "accept" ? `all${r.ports.length ? ` (declared: ${list(r.ports.map((p) => `${p.port}/${p.proto}${p.from === "tailnet" ? "(tailnet)" : ""}`))})` : ""}` : list(r.ports.map((p) => `${p.port}/${p.proto}${p.from === "tailnet" ? "(tailnet)" : ""}`)),
  };
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
  flags: fleetFlags,
  usage: `usage: meshfleet hosts [--stack S | --hosts-dir DIR] [--json]

A table of the fleet's hosts; --json prints {stack, dir, hosts: [...]} with
every list (roles, services, tags, routes, ports) as a JSON array.

${flagHelp(fleetFlags)}`,
  async run(argv) {
    const { opts } = parseArgs(argv, fleetFlags, { positionals: [] });
    const { dir, stack } = resolveFleet(opts);
    const r = await evaluateFleet(REGISTRY, dir, stack);
    if (!r.fleet || hasErrors(r.diagnostics)) {
      console.error(formatDiagnostics(r.diagnostics));
      console.error(`${r.diagnostics.filter((d) => d.severity === "error").length} error(s) in ${fleetLine({ dir, stack })}`);
      return 1;
    }
    const rows = hostRows(r.fleet);
    if (opts.json) console.log(JSON.stringify({ stack, dir, hosts: rows }, null, 2));
    else console.log(`${fleetLine({ dir, stack })}\n\n${table(rows.map(textRow))}`);
    return 0;
  },
};
