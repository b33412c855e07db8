/**
 * The evaluator against headscale 0.29.2 itself, on the seeded corpus: live
 * when the headscale binary and sqlite3 are present, else against the
 * answers headscale gave when the corpus was recorded (crosscheck.ts --record).
 */
import { existsSync, readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { CORPUS_SEED, CORPUS_SIZE, askHeadscale, compare, headscaleBinary, type HeadscaleAnswer } from "./corpus/crosscheck.ts";
import { generateCorpus } from "./corpus/generate.ts";

const cases = generateCorpus(CORPUS_SEED, CORPUS_SIZE);
const recorded: Record<string, HeadscaleAnswer> = JSON.parse(readFileSync(new URL("./corpus/headscale-results.json", import.meta.url), "utf8"));
const live = existsSync(headscaleBinary()) && spawnSync("sqlite3", ["-version"]).status === 0;

describe("policy tests agree with headscale 0.29.2", () => {
  it("has at least 50 cases, passing and failing ones", () => {
    expect(cases.length).toBeGreaterThanOrEqual(50);
    const failing = Object.values(recorded).filter((a) => !a.valid).length;
    expect(failing).toBeGreaterThan(10);
    expect(cases.length - failing).toBeGreaterThan(10);
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
