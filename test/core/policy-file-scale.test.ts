/**
 * Issue 19's policy of 1,000 rules: too large for fleet.yaml (the YAML
 * limits), loaded from policy.hujson, and `meshfleet check` passes on a
 * generated fleet with it. The fleet here has 1,000 hosts to stay fast; the
 * 10,000-host fleet is the same generator (bench/eval-scale/generate.ts
 * DIR 10000 1000 --policy-file).
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { generateFleet } from "../../bench/eval-scale/generate.ts";
import { command as check } from "../../cli/commands/check.ts";
import { evaluateFleet } from "../../core/eval.ts";
import { loadFleetDir } from "../../core/load.ts";
import { REGISTRY } from "../../modules/index.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "mf-policy-scale-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const fleet = (name: string, hosts: number, rules: number, policyFile: boolean) => {
  const dir = path.join(root, name);
  mkdirSync(dir);
  generateFleet(dir, hosts, rules, { policyFile });
  return dir;
};

async function runCheck(dir: string): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const o = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void (out += a.join(" ") + "\n"));
  const e = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void (err += a.join(" ") + "\n"));
  try {
    return { code: await check.run(["--hosts-dir", dir]), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe("a 1,000-rule policy in policy.hujson", () => {
  it("inline in fleet.yaml it is refused by the YAML limit", async () => {
    const r = await loadFleetDir(fleet("inline", 3, 1000, false));
    expect(r.diagnostics.map((d) => d.expected)).toEqual(["a fleet file of at most 16 KiB (the documented limit)"]);
  });

  it("from its file, 1,000 hosts load and meshfleet check passes", async () => {
    const dir = fleet("file", 1000, 1000, true);
    expect(readFileSync(path.join(dir, "fleet.yaml"), "utf8")).toContain("policy: ./policy.hujson");
    const r = await runCheck(dir);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^ok: .*: 1000 hosts evaluated/);
    const loaded = await loadFleetDir(dir);
    expect((loaded.fleet!.value as { policy: { acls: unknown[] } }).policy.acls).toHaveLength(1001);
  }, 60_000);

  it("a broken rule among the 1,000 fails check, named in policy.hujson at its index", async () => {
    const dir = fleet("broken", 30, 1000, true);
    const file = path.join(dir, "policy.hujson");
    const text = readFileSync(file, "utf8");
    const at = text.indexOf('"tag:t7:1507"');
    expect(at).toBeGreaterThan(0);
    writeFileSync(file, text.slice(0, at) + '"tag:nope:1507"' + text.slice(at + '"tag:t7:1507"'.length));
    const r = await runCheck(dir);
    expect(r.code).toBe(1);
    expect(r.err).toContain("policy.hujson: acls[508].dst[0]: expected a tag defined in tagOwners");
  });

  it("the generator writes the same policy either way", async () => {
    const [a, b] = [await evaluateFleet(REGISTRY, fleet("same-inline", 20, 40, false)), await evaluateFleet(REGISTRY, fleet("same-file", 20, 40, true))];
    expect(a.diagnostics).toEqual([]);
    expect(b.diagnostics).toEqual([]);
    expect(b.fleet!.policyHuJson).toBe(a.fleet!.policyHuJson);
  });
});
