/**
 * `meshfleet status`'s table: the fleet's tailscaleVersion is used — a node
 * running an older tailscale is named BELOW it, a newer or equal one is not.
 */
import { describe, expect, it } from "vitest";
import { compareVersions, expiry, statusLines, type FleetStatus, type HostStatus } from "../../cli/commands/status.ts";

function host(name: string, version: string | null): HostStatus {
  return {
    host: name,
    reachable: true,
    ms: 12,
    generation: { n: 3, hash: "a".repeat(64), createdAt: null, ageSeconds: 60, confirmed: true, pendingConfirm: null },
    drift: { clean: true, items: [] },
    tailscale: { enabled: true, state: "Running", online: true, version, wanted: "1.98.10", minimum: "1.80.0", peers: [], keyExpiry: null },
    headscale: null,
    agent: { sha256: "b".repeat(64), matchesLocal: true },
  };
}

describe("status and the fleet's tailscaleVersion", () => {
  it("compares release numbers field by field, not as text", () => {
    expect(compareVersions("1.96.4", "1.98.10")).toBe(-1);
    expect(compareVersions("1.98.9", "1.98.10")).toBe(-1);
    expect(compareVersions("1.98.10", "1.98.10")).toBe(0);
    expect(compareVersions("1.100.0", "1.98.10")).toBe(1);
    expect(compareVersions("2.0", "1.98.10")).toBe(1);
  });

  it("names a node below the fleet's release and leaves the others alone", () => {
    const s: FleetStatus = { stack: "lab", at: "", ms: 900, coordinator: "vps", hosts: [host("old", "1.96.4"), host("same", "1.98.10"), host("newer", "1.100.0"), host("unknown", null)] };
    const lines = statusLines(s).join("\n");
    const row = (n: string) => lines.split("\n").find((l) => l.startsWith(n + " "))!;
    expect(row("old")).toContain("ts 1.96.4 (BELOW the fleet's 1.98.10)");
    expect(row("same")).not.toContain("BELOW");
    expect(row("newer")).not.toContain("BELOW");
    expect(row("unknown")).toContain("ts -");
    expect(row("unknown")).not.toContain("BELOW");
  });

  it("a host without an agent is not asked: not UNREACHABLE, no missing agent, headscale's view of its node", () => {
    const phone: HostStatus = {
      ...host("phone", null),
      reachable: null,
      generation: null,
      drift: null,
      tailscale: { ...host("phone", null).tailscale, state: null, online: null },
      headscale: { registered: true, online: false, advertised: [], approved: [], expiry: null },
      agent: { sha256: null, matchesLocal: null },
    };
    const down: HostStatus = { ...host("nas", null), reachable: false, error: "ssh: connect timed out" };
    const lines = statusLines({ stack: "home", at: "", ms: 900, coordinator: "vps", hosts: [phone, down] });
    const row = (n: string) => lines.find((l) => l.startsWith(n + " "))!;
    expect(row("phone")).not.toContain("UNREACHABLE");
    expect(row("phone")).toMatch(/no agent +- +OFFLINE \(headscale\) +- +none +never +agent none, ts - +joined by hand: headscale's view/);
    expect(lines.at(-1)).toMatch(/^read 1 host\(s\) in 0\.9s; 1 without an agent from headscale's node list$/);
    expect(row("nas")).toContain("UNREACHABLE");
  });

  it("names a node below headscale's own minimum first: it cannot connect at all", () => {
    const s: FleetStatus = { stack: "lab", at: "", ms: 900, coordinator: "vps", hosts: [host("ancient", "1.78.1")] };
    expect(statusLines(s).join("\n")).toContain("ts 1.78.1 (BELOW headscale's minimum 1.80.0: it cannot connect)");
  });

  it("flags a node key that expires within 14 days, and not one later", () => {
    const now = Date.parse("2026-11-30T12:00:00Z");
    const day = 24 * 3600 * 1000;
    expect(expiry(new Date(now + 13 * day).toISOString(), now)).toMatch(/\(SOON\)$/);
    expect(expiry(new Date(now + 15 * day).toISOString(), now)).not.toContain("SOON");
    expect(expiry(new Date(now - day).toISOString(), now)).toMatch(/^EXPIRED/);
    expect(expiry("0001-01-01T00:00:00Z", now)).toBe("never");
  });
});
