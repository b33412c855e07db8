/**
 * A NetworkDiff as Markdown for a pull-request comment (with a Mermaid
 * picture of what changed) and as JSON for machines.
 */
import type { NetworkDiff, ReachChange } from "./diff.ts";

const MAX_ROWS = 50;
const MAX_EDGES = 40;

export function renderDiffJson(d: NetworkDiff): string {
  return `${JSON.stringify(d, null, 2)}\n`;
}

export function renderDiffMarkdown(d: NetworkDiff, title = `meshfleet plan: ${d.stack}`): string {
  const out: string[] = [`## ${title}`, ""];
  if (d.empty) {
    out.push("No change to the network.", "");
    return out.join("\n");
  }
  out.push(summary(d), "");

  const hostLines: string[] = [];
  for (const h of d.hosts.added) hostLines.push(`- ➕ \`${h}\` added`);
  for (const h of d.hosts.removed) hostLines.push(`- ➖ \`${h}\` removed`);
  for (const r of d.hosts.roles) hostLines.push(`- \`${r.host}\` roles ${[...r.added.map((x) => `+${x}`), ...r.removed.map((x) => `−${x}`)].join(" ")}`);
  for (const t of d.hosts.tags) hostLines.push(`- \`${t.host}\` tags ${list(t.before)} → ${list(t.after)}`);
  section(out, "Hosts", hostLines);

  const routeLines: string[] = [];
  for (const r of d.routes.added) routeLines.push(`- ➕ \`${r.route}\` via \`${r.host}\`${r.approved ? " (auto-approved)" : " (**needs manual approval**: no autoApprover covers it)"}`);
  for (const r of d.routes.removed) routeLines.push(`- ➖ \`${r.route}\` via \`${r.host}\``);
  for (const h of d.exitNodes.added) routeLines.push(`- ➕ exit node \`${h}\``);
  for (const h of d.exitNodes.removed) routeLines.push(`- ➖ exit node \`${h}\``);
  section(out, "Routes and exit nodes", routeLines);

  const t = d.reach.total;
  if (t.gained + t.lost + t.changed > 0) {
    out.push("### Reachability", "");
    out.push(`${t.gained} pair(s) gained, ${t.lost} lost, ${t.changed} changed.`, "");
    const byRule = new Map<string, number>();
    for (const [kind, xs] of [["gained", d.reach.gained], ["lost", d.reach.lost], ["changed", d.reach.changed]] as const) {
      for (const c of xs) for (const w of c.why.length ? c.why : ["(no rule)"]) byRule.set(`${kind}|${w}`, (byRule.get(`${kind}|${w}`) ?? 0) + 1);
    }
    if (byRule.size > 0) {
      out.push("| change | rule | pairs |", "| --- | --- | ---: |");
      for (const [k, n] of [...byRule].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
        const [kind, rule] = k.split(/\|(.*)/s);
        out.push(`| ${kind} | ${cell(rule)} | ${n} |`);
      }
      out.push("");
    }
    const rows: ReachChange[] = [...d.reach.gained, ...d.reach.lost, ...d.reach.changed];
    out.push("| | from | to | before | after | why |", "| --- | --- | --- | --- | --- | --- |");
    for (const c of rows.slice(0, MAX_ROWS)) {
      const mark = !c.before ? "➕" : !c.after ? "➖" : "✏️";
      out.push(`| ${mark} | \`${c.src}\` | \`${c.dst}\` | ${cell(c.before || "—")} | ${cell(c.after || "—")} | ${cell(c.why.join("; ") || "no rule matched")} |`);
    }
    const more = t.gained + t.lost + t.changed - Math.min(rows.length, MAX_ROWS);
    if (more > 0) out.push("", `…and ${more} more pair(s); run \`meshfleet plan --json\` for all of them.`);
    out.push("");
  }

  // Whole-host input policy first: a host that starts dropping is the change a person must not miss.
  const fwLines: string[] = [];
  for (const c of d.firewall.policies) {
    if (c.after === "drop") {
      const was = c.before === "absent" ? "not in the fleet; meshfleet dropped nothing there" : c.before === "off" ? "no meshfleet firewall" : "accepted";
      fwLines.push(`- ⚠️ \`${c.host}\`: input policy becomes **drop**: everything not listed below is now dropped outside the tailnet (was: ${was})`);
      fwLines.push(...(c.open.length ? c.open.map((p) => `  - open: \`${p.port}\` ${p.detail}`) : ["  - open: nothing (only the tailnet and established connections get in)"]));
    } else {
      const what = c.after === "off" ? "meshfleet's firewall goes (no `inet meshfleet` table)" : "input policy becomes **accept**";
      fwLines.push(`- \`${c.host}\`: ${what}: inbound traffic outside the tailnet is no longer dropped (was: drop, except ${c.wasOpen.map((p) => `\`${p.port}\``).join(", ") || "nothing"})`);
      fwLines.push(...c.limited.map((p) => `  - still dropped: \`${p.port}\` ${limitText(p.detail)}`));
    }
  }
  for (const p of d.firewall.limited.added) fwLines.push(`- ⚠️ \`${p.host}\`: \`${p.port}\` now dropped outside the tailnet ${limitText(p.detail)}`);
  for (const p of d.firewall.limited.removed) fwLines.push(`- \`${p.host}\`: \`${p.port}\` no longer limited (was ${p.detail})`);
  section(out, "Firewall", fwLines);

  const portLines = [
    ...d.publicPorts.opened.map((p) => `- ⚠️ opened \`${p.port}\` on \`${p.host}\` ${p.detail}`),
    ...d.publicPorts.closed.map((p) => `- closed \`${p.port}\` on \`${p.host}\` ${p.detail}`),
  ];
  section(out, "Public ports", portLines);
  section(out, "DNS records", [...d.dns.added.map((r) => `- ➕ \`${r}\``), ...d.dns.removed.map((r) => `- ➖ \`${r}\``)]);
  section(out, "Versions", d.versions.map((v) => `- ${v.key}: \`${v.before || "—"}\` → \`${v.after || "—"}\``));
  if (d.policyChanged && t.gained + t.lost + t.changed === 0) out.push("The policy file changed without changing who can reach what.", "");

  const diagram = mermaid(d);
  if (diagram) out.push("### What changed", "", "```mermaid", diagram, "```", "");
  return out.join("\n");
}

function summary(d: NetworkDiff): string {
  const parts: string[] = [];
  const n = (x: number, s: string) => x && parts.push(`${x} ${s}`);
  n(d.hosts.added.length, "host(s) added");
  n(d.hosts.removed.length, "host(s) removed");
  n(d.hosts.roles.length + d.hosts.tags.length, "host(s) changed");
  n(d.routes.added.length + d.routes.removed.length + d.exitNodes.added.length + d.exitNodes.removed.length, "route change(s)");
  n(d.reach.total.gained, "reachability pair(s) gained");
  n(d.reach.total.lost, "lost");
  n(d.reach.total.changed, "changed");
  n(d.firewall.policies.filter((c) => c.after === "drop").length, "host(s) now dropping inbound traffic");
  n(d.firewall.policies.filter((c) => c.after !== "drop").length, "host(s) no longer dropping");
  n(d.firewall.limited.added.length + d.firewall.limited.removed.length, "port limit change(s)");
  n(d.publicPorts.opened.length, "public port(s) opened");
  n(d.publicPorts.closed.length, "closed");
  n(d.dns.added.length + d.dns.removed.length, "DNS change(s)");
  n(d.versions.length, "version change(s)");
  return `**${parts.join(", ") || "policy text changed"}**`;
}

/** `only from X (ssh)` -> `except from X (ssh)`; other limits as they are. */
const limitText = (detail: string) => detail.replace(/^only from /, "except from ");

function section(out: string[], title: string, lines: string[]) {
  if (lines.length === 0) return;
  out.push(`### ${title}`, "", ...lines, "");
}

function list(xs: string[]): string {
  return xs.length ? xs.map((x) => `\`${x}\``).join(", ") : "none";
}

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

function mermaid(d: NetworkDiff): string {
  const ids = new Map<string, string>();
  const id = (name: string) => {
    let v = ids.get(name);
    if (!v) {
      v = `n${ids.size}`;
      ids.set(name, v);
    }
    return v;
  };
  const lines: string[] = ["flowchart LR"];
  const styles: string[] = [];
  let edge = 0;
  const edges = new Map<string, { from: string; to: string; label: string; kind: "gained" | "lost" | "changed" }>();
  const add = (c: ReachChange, kind: "gained" | "lost" | "changed") => {
    const key = `${c.src}|${c.dst}`;
    if (!edges.has(key)) edges.set(key, { from: c.src, to: c.dst, label: kind === "lost" ? c.before : c.after, kind });
  };
  d.reach.gained.forEach((c) => add(c, "gained"));
  d.reach.lost.forEach((c) => add(c, "lost"));
  d.reach.changed.forEach((c) => add(c, "changed"));
  for (const e of [...edges.values()].slice(0, MAX_EDGES)) {
    const arrow = e.kind === "lost" ? "-.->" : "-->";
    const sign = e.kind === "gained" ? "+" : e.kind === "lost" ? "−" : "~";
    lines.push(`  ${id(e.from)}["${e.from}"] ${arrow}|"${sign}${e.label.replace(/"/g, "'")}"| ${id(e.to)}["${e.to}"]`);
    styles.push(`  linkStyle ${edge++} stroke:${e.kind === "gained" ? "#2da44e" : e.kind === "lost" ? "#cf222e" : "#bf8700"}`);
  }
  for (const r of d.routes.added) lines.push(`  ${id(r.host)}["${r.host}"] ==>|"+route"| ${id(`${r.route} via ${r.host}`)}["${r.route}"]`) && styles.push(`  linkStyle ${edge++} stroke:#2da44e`);
  for (const h of d.hosts.added) lines.push(`  ${id(h)}["${h}"]:::added`);
  for (const h of d.hosts.removed) lines.push(`  ${id(h)}["${h}"]:::removed`);
  if (lines.length === 1) return "";
  if (edges.size > MAX_EDGES) lines.push(`  more["…${edges.size - MAX_EDGES} more"]`);
  lines.push("  classDef added fill:#dafbe1,stroke:#2da44e", "  classDef removed fill:#ffebe9,stroke:#cf222e");
  return [...lines, ...styles].join("\n");
}
