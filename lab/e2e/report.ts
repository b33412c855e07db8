/**
 * `meshfleet lab report`: one self-contained HTML page from what the lab
 * recorded (up.json, checks.json) and the fleet's evaluated policy: the
 * topology as inline SVG, tunnels direct or relayed, routes, who can reach
 * what, each check's result and the versions. renderReport is pure.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { labTopology, type LabTopology } from "../topology.ts";
import type { ChecksFile, PeerView } from "./checks.ts";
import { e2ePaths } from "./paths.ts";
import type { UpSummary } from "./up.ts";

export interface ReportInput {
  topology: LabTopology;
  up?: UpSummary;
  checks?: ChecksFile;
  /** Policy matrix: rows are sources, columns destinations, cells what is allowed. */
  matrix: { sources: string[]; destinations: string[]; cells: Record<string, Record<string, string>> };
  routes: { host: string; routes: string[] }[];
  generatedAt: string;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** Topology drawing: internet on top, its hosts and NATs below, NAT LANs further down; tunnels from the laptop as arcs, labelled in a legend. */
export function topologySvg(topo: LabTopology, peers: PeerView[] | undefined): string {
  const W = 980;
  const pos: Record<string, { x: number; y: number }> = {
    internet: { x: 490, y: 50 },
    vps: { x: 110, y: 180 },
    derp: { x: 300, y: 180 },
    homenat: { x: 560, y: 180 },
    laptopnat: { x: 850, y: 180 },
    "lxc-tailscale": { x: 460, y: 320 },
    nas: { x: 660, y: 320 },
    laptop: { x: 850, y: 320 },
  };
  const lines: string[] = [];
  const arcs: string[] = [];
  const boxes: string[] = [];
  const legend: string[] = [];
  const box = (name: string, label: string, sub: string[], kind: string) => {
    const p = pos[name];
    if (!p) return;
    const fill = kind === "nat" ? "#fde68a" : kind === "internet" ? "#e5e7eb" : "#bfdbfe";
    boxes.push(`<g><rect x="${p.x - 90}" y="${p.y - 28}" width="180" height="${40 + 13 * sub.length}" rx="8" fill="${fill}" stroke="#334155"/>` +
      `<text x="${p.x}" y="${p.y - 8}" text-anchor="middle" font-size="14" font-weight="bold">${esc(label)}</text>` +
      sub.map((t, i) => `<text x="${p.x}" y="${p.y + 9 + 13 * i}" text-anchor="middle" font-size="11">${esc(t)}</text>`).join("") + "</g>");
  };
  for (const h of topo.hosts) {
    for (const l of h.links) {
      const a = pos[h.name], b = pos[l.to];
      if (a && b) lines.push(`<line x1="${a.x}" y1="${a.y}" x2="${b.x}" y2="${b.y}" stroke="#64748b" stroke-width="2"/>`);
    }
  }
  // Tunnels seen from the laptop: green solid = direct, orange dashed = relayed through DERP.
  (peers ?? []).forEach((p, i) => {
    const a = pos.laptop, b = pos[p.name];
    if (!a || !b) return;
    const relayed = p.curAddr === "" && p.relay !== "";
    const color = relayed ? "#ea580c" : p.curAddr ? "#16a34a" : "#94a3b8";
    const dip = 430 + 30 * i;
    arcs.push(`<path d="M ${a.x} ${a.y + 30} Q ${(a.x + b.x) / 2} ${dip} ${b.x} ${b.y + 30}" fill="none" stroke="${color}" stroke-width="3" ${relayed ? 'stroke-dasharray="8 6"' : ""}/>`);
    const y = 470 + 18 * i;
    legend.push(`<line x1="20" y1="${y - 4}" x2="60" y2="${y - 4}" stroke="${color}" stroke-width="3" ${relayed ? 'stroke-dasharray="8 6"' : ""}/>` +
      `<text x="70" y="${y}" font-size="12" fill="${color}">laptop ⇄ ${esc(p.name)}: ${relayed ? `relayed (${esc(p.relay)})` : p.curAddr ? `direct ${esc(p.curAddr)}` : "idle"}</text>`);
  });
  for (const h of topo.hosts) {
    const addrs = [...h.links.map((l) => l.address), ...h.bridges.flatMap((b) => b.addresses)];
    box(h.name, h.name, addrs.slice(0, 2), h.role === "nat" ? "nat" : h.role === "internet" ? "internet" : "host");
  }
  const H = 480 + 18 * Math.max(1, (peers ?? []).length);
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif">${lines.join("")}${arcs.join("")}${boxes.join("")}${legend.join("")}</svg>`;
}

/**
 * The report's deploy line: what `meshfleet up` changed and what `agent verify`
 * found on each host afterwards. "ok" needs both; drift is counted by host.
 */
export function deployLine(up: UpSummary | undefined): string {
  if (!up) return "not run";
  const changes = up.deploy ? Object.entries(up.deploy.changes).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(", ") : "";
  const drift = up.drift;
  const driftText = drift
    ? drift.every((d) => d.ok)
      ? `agent verify: no drift on ${drift.length}/${drift.length} hosts`
      : `agent verify: drift on ${drift.filter((d) => !d.ok).length}/${drift.length} hosts (${drift.filter((d) => !d.ok).map((d) => `${d.host}: ${d.detail}`).join("; ")})`
    : "agent verify: not run";
  const head = up.ok ? `ok in ${(up.totalMs / 1000).toFixed(1)}s` : `FAILED at ${up.failedStep ?? "?"}`;
  return [head, changes && `resources: ${changes}`, driftText].filter(Boolean).join("; ");
}

export function renderReport(r: ReportInput): string {
  const c = r.checks;
  const peers = c?.peers["udp-blocked"] && !c.peers.normal ? c.peers["udp-blocked"] : c?.peers.normal;
  const checksRows = (c?.checks ?? [])
    .map((k) => `<tr class="${k.ok ? "pass" : "fail"}"><td>${k.ok ? "PASS" : "FAIL"}</td><td>${esc(k.name)}</td><td>${(k.ms / 1000).toFixed(1)}s</td><td>${esc(k.reason)}${k.timings ? `<br><small>${esc(Object.entries(k.timings).map(([t, ms]) => `${t} ${(ms / 1000).toFixed(1)}s`).join(", "))}</small>` : ""}</td></tr>`)
    .join("");
  const stepRows = (r.up?.steps ?? [])
    .map((s) => `<tr class="${s.ok ? "pass" : "fail"}"><td>${s.ok ? "ok" : "FAIL"}</td><td>${esc(s.step)}${s.host ? ` ${esc(s.host)}` : ""}</td><td>${(s.ms / 1000).toFixed(1)}s</td><td>${esc(s.detail ?? "")}</td></tr>`)
    .join("");
  const m = r.matrix;
  const matrix = `<table><tr><th>from \\ to</th>${m.destinations.map((d) => `<th>${esc(d)}</th>`).join("")}</tr>${m.sources
    .map((s) => `<tr><th>${esc(s)}</th>${m.destinations.map((d) => {
      const v = m.cells[s]?.[d] ?? "";
      return `<td class="${v ? "pass" : "deny"}">${v ? esc(v) : "—"}</td>`;
    }).join("")}</tr>`)
    .join("")}</table>`;
  const tunnels = (peers ?? []).map((p) => `<tr><td>${esc(p.name)}</td><td>${esc(p.ips.join(", "))}</td><td>${p.curAddr ? `direct ${esc(p.curAddr)}` : p.relay ? `relayed via ${esc(p.relay)}` : "idle"}</td><td>${p.online ? "online" : "offline"}</td></tr>`).join("");
  const versions = Object.entries(c?.versions ?? {}).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("");
  const passed = c ? c.checks.filter((k) => k.ok).length : 0;
  return `<!doctype html><html><head><meta charset="utf-8"><title>meshfleet lab report</title><style>
body{font-family:sans-serif;margin:24px;color:#0f172a}table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #cbd5e1;padding:4px 8px;font-size:13px;text-align:left}
.pass td:first-child,.pass{background:#dcfce7}.fail td:first-child,.fail{background:#fee2e2}td.deny{background:#f1f5f9;color:#64748b}h2{margin-top:28px}
</style></head><body>
<h1>meshfleet lab</h1>
<p>Generated ${esc(r.generatedAt)}. Deploy: ${esc(deployLine(r.up))}. Checks: ${c ? `${passed}/${c.checks.length} passed in ${(c.totalMs / 1000).toFixed(1)}s` : "not run"}.</p>
<h2>Topology</h2>${topologySvg(r.topology, peers)}
<h2>Tunnels (seen from laptop)</h2><table><tr><th>peer</th><th>tailnet IPs</th><th>path</th><th>state</th></tr>${tunnels || '<tr><td colspan="4">no status recorded</td></tr>'}</table>
<h2>Routes</h2><table><tr><th>host</th><th>advertised routes</th></tr>${r.routes.map((x) => `<tr><td>${esc(x.host)}</td><td>${esc(x.routes.join(", ") || "—")}</td></tr>`).join("")}</table>
<h2>Policy: who can reach what</h2>${matrix}
<h2>Checks</h2><table><tr><th></th><th>check</th><th>time</th><th>reason</th></tr>${checksRows || '<tr><td colspan="4">lab check has not run</td></tr>'}</table>
<h2>Deploy steps</h2><table><tr><th></th><th>step</th><th>time</th><th>detail</th></tr>${stepRows || '<tr><td colspan="4">lab up has not run</td></tr>'}</table>
<h2>Versions</h2><table>${versions || '<tr><td colspan="2">not recorded</td></tr>'}</table>
</body></html>`;
}

const readJson = <T>(p: string): T | undefined => (existsSync(p) ? (JSON.parse(readFileSync(p, "utf8")) as T) : undefined);

export async function writeReport(instance: number): Promise<string> {
  const p = e2ePaths(instance);
  const { policyMatrix, fleetRoutes } = await import("./policy.ts");
  const html = renderReport({
    topology: labTopology(instance),
    up: readJson<UpSummary>(p.upResult),
    checks: readJson<ChecksFile>(p.checks),
    matrix: await policyMatrix(),
    routes: await fleetRoutes(),
    generatedAt: new Date().toISOString(),
  });
  mkdirSync(p.dir, { recursive: true });
  writeFileSync(p.report, html);
  return p.report;
}
