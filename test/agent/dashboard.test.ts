/** The Grafana dashboard only queries metrics the agent actually writes. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { renderMetrics } from "../../agent/metrics.ts";

describe("dashboards/meshfleet.json", () => {
  it("is valid JSON whose queries name only the agent's metrics", () => {
    const dash = JSON.parse(readFileSync(new URL("../../dashboards/meshfleet.json", import.meta.url), "utf8"));
    const written = new Set(
      renderMetrics({ tailscaleUp: 0, backendRunning: 0, peers: 0, direct: 0, relay: 0, generation: 0, drift: 0, lastSwitchSuccess: 0, lastSwitchTimestamp: 0 })
        .split("\n")
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => l.split(" ")[0]),
    );
    const exprs: string[] = dash.panels.flatMap((p: { targets: { expr: string }[] }) => p.targets.map((t) => t.expr));
    const used = new Set(exprs.flatMap((e) => e.match(/\b(tailscale|meshfleet)_[a-z_]+/g) ?? []));
    expect([...used].filter((m) => !written.has(m))).toEqual([]);
    expect([...written].filter((m) => !used.has(m))).toEqual([]);
    expect(new Set(dash.panels.map((p: { id: number }) => p.id)).size).toBe(dash.panels.length);
  });
});
