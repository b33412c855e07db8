/**
 * issue 18 item 3: the headscale releases meshfleet renders a config for.
 * `check` refuses another one with the staged upgrade path, and a
 * tailscaleVersion below what that headscale accepts (its capver minimum).
 */
import { describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { compareReleases, headscaleRelease, versionAssertions } from "../../modules/headscale-versions.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";

const failed = (v: string, t = "1.98.10") =>
  versionAssertions({ coordinator: { headscaleVersion: v }, tailscaleVersion: t }, "hosts/home/fleet.yaml")
    .filter((a) => !a.assertion)
    .map((a) => `${a.file}: ${a.path}: expected ${a.expected}, found ${a.found}. Fix: ${a.fix}`);

describe("headscale versions", () => {
  it("0.29.x is rendered for; its minimum client is tailscale 1.80 (headscale 0.29.2's capver 113)", () => {
    expect(headscaleRelease("0.29.2")).toEqual({ minTailscale: "1.80.0" });
    expect(headscaleRelease("0.29.1")).toBeDefined();
    expect(headscaleRelease("0.28.0")).toBeUndefined();
    expect(failed("0.29.2")).toEqual([]);
    expect(compareReleases("0.9.0", "0.29.2")).toBe(-1);
  });

  it("an older release is refused with the staged path from it; a newer one with the release meshfleet knows", () => {
    expect(failed("0.27.1")).toEqual([
      'hosts/home/fleet.yaml: coordinator.headscaleVersion: expected a headscale release meshfleet renders the config of (0.29.x), found "0.27.1". Fix: upgrade in stages, 0.27.1 -> 0.28.0 -> 0.29.2, each with a backup and a health check: set coordinator.headscaleVersion to each in turn',
    ]);
    expect(failed("0.26.0")[0]).toContain("0.26.0 -> 0.27.1 -> 0.28.0 -> 0.29.2");
    expect(failed("0.28.0")[0]).toContain("0.28.0 -> 0.29.2");
    expect(failed("0.30.0")[0]).toContain("Fix: set coordinator.headscaleVersion: 0.29.2 (newer releases are not known to meshfleet yet)");
  });

  it("a tailscaleVersion below what headscale accepts is refused", () => {
    expect(failed("0.29.2", "1.78.0")).toEqual([
      'hosts/home/fleet.yaml: tailscaleVersion: expected 1.80.0 or newer (headscale 0.29.2 refuses older clients), found "1.78.0". Fix: set tailscaleVersion to 1.80.0 or newer, and upgrade the nodes below it',
    ]);
    expect(failed("0.29.2", "1.80.0")).toEqual([]);
  });

  it("check reports it on fleet.yaml, once", async () => {
    const f = writeFleet({ "fleet.yaml": BASE["fleet.yaml"].replace(/coordinator:\n/, "coordinator:\n  headscaleVersion: 0.27.1\n") });
    try {
      const r = await evaluateFleet(REGISTRY, f.dir);
      const d = r.diagnostics.filter((x) => x.path === "coordinator.headscaleVersion");
      expect(d).toHaveLength(1);
      expect(d[0]).toMatchObject({ severity: "error", file: expect.stringMatching(/fleet\.yaml$/), found: '"0.27.1"' });
    } finally {
      f.cleanup();
    }
  });
});
