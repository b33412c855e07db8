/**
 * The evaluator against headscale 0.29.2 itself, on the seeded corpus: live
 * when the headscale binary and sqlite3 are present, else against the
 * answers headscale gave when the corpus was recorded (crosscheck.ts --record).
 */
import { existsSync, readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { askHeadscale, compare, corpusCases, headscaleBinary, ours, type HeadscaleAnswer } from "./corpus/crosscheck.ts";

const cases = corpusCases();
const recorded: Record<string, HeadscaleAnswer> = JSON.parse(readFileSync(new URL("./corpus/headscale-results.json", import.meta.url), "utf8"));
const live = existsSync(headscaleBinary()) && spawnSync("sqlite3", ["-version"]).status === 0;

describe("policy tests agree with headscale 0.29.2", () => {
  it("has at least 50 cases, passing and failing ones", () => {
    expect(cases.length).toBeGreaterThanOrEqual(50);
    const failing = Object.values(recorded).filter((a) => !a.valid).length;
    expect(failing).toBeGreaterThan(10);
    expect(cases.length - failing).toBeGreaterThan(10);
  });

  it("covers both address layouts and sshTests, and the layout changes some verdicts", () => {
    const spaced = cases.filter((c) => c.name.startsWith("spaced-"));
    expect(spaced.length * 2).toBe(cases.length);
    for (const c of spaced) expect(cases.some((x) => x.name === c.name.slice("spaced-".length))).toBe(true);
    // Adjacent nodes merge (100.64.0.2/31): headscale passes tag:web where the spaced layout fails it.
    expect(recorded["merged-source"]).toEqual({ valid: true, failures: [] });
    expect(recorded["spaced-merged-source"]).toEqual({ valid: false, failures: ["tag:web -> tag:ci:22: expected ALLOWED, got DENIED"] });
    expect(ours(cases.find((c) => c.name === "spaced-merged-source")!)).toEqual(recorded["spaced-merged-source"]);
    const sshLines = Object.values(recorded).flatMap((a) => a.failures).filter((l) => /^\S+\/\S+ -> \S+: expected /.test(l));
    expect(sshLines.length).toBeGreaterThan(50);
    expect(sshLines.some((l) => l.endsWith("expected ALLOWED via check, got ALLOWED via accept"))).toBe(true);
    expect(sshLines.some((l) => l.endsWith("expected DENIED, got ALLOWED"))).toBe(true);
    expect(cases.filter((c) => (c.policy.sshTests ?? []).length > 0).length).toBeGreaterThan(60);
  });

  it("matches the recorded headscale answers line for line", () => {
    const r = compare(cases, recorded);
    expect(r.disagreements).toEqual([]);
  });

  it.skipIf(skipUnlessCi(!live && "asking headscale live needs headscale 0.29.2 (meshfleet tools build) and sqlite3 (apt-get install sqlite3)"))("matches headscale run now", () => {
    const r = compare(cases, askHeadscale(cases));
    expect(r.disagreements).toEqual([]);
  }, 120_000);
});
