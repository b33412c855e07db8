/** The drills' shared pieces, in process: verdicts, the fleet edit, and how the report shows a drill's times. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { diffLines, must, registration, runDrill } from "../../lab/e2e/drills/drill.ts";
import { DRILLS, withBackupOn } from "../../lab/e2e/drills/index.ts";
import { renderReport } from "../../lab/e2e/report.ts";
import { labTopology } from "../../lab/topology.ts";

const REPO = join(import.meta.dirname, "..", "..");

describe("coordinator drills", () => {
  it("runDrill: the body's reason on a pass; the failed step's reason, and the times so far, on a failure or a throw", async () => {
    expect(await runDrill(async (t) => ((t.a = 5), "fine"))).toEqual({ ok: true, why: "fine", timings: { a: 5 } });
    expect(
      await runDrill(async (t) => {
        t.backupMs = 1200;
        must(1 + 1 === 3, "after the restore the registrations differ: lost: laptop 100.64.0.3 routes=");
        return "unreachable";
      }),
    ).toEqual({ ok: false, why: "after the restore the registrations differ: lost: laptop 100.64.0.3 routes=", timings: { backupMs: 1200 } });
    expect(await runDrill(async () => Promise.reject(new Error("vps: systemctl stop headscale: exit 5")))).toMatchObject({ ok: false, why: "vps: systemctl stop headscale: exit 5" });
  });

  it("registration and diffLines name the node a restore lost and the one it added", () => {
    const before = registration([
      { id: 1, given_name: "vps", ip_addresses: ["fd7a::1", "100.64.0.1"] },
      { id: 2, given_name: "laptop", ip_addresses: ["100.64.0.3"], approved_routes: [] },
    ]);
    expect(before).toEqual(["laptop 100.64.0.3 routes=", "vps 100.64.0.1,fd7a::1 routes="]);
    expect(diffLines(before, ["vps 100.64.0.1,fd7a::1 routes=", "laptop 100.64.0.9 routes="])).toBe("lost: laptop 100.64.0.3 routes=; new: laptop 100.64.0.9 routes=");
    expect(diffLines(before, before)).toBe("");
  });

  it("withBackupOn turns headscale.backup on in hosts/lab's vps.yaml, and says when the line it edits is gone", () => {
    const vps = readFileSync(join(REPO, "hosts", "lab", "vps.yaml"), "utf8");
    expect(withBackupOn(vps)).toMatch(/^headscale:\n {2}backup:\n {4}enable: true\n {4}keep: 3\n {2}package: /m);
    expect(() => withBackupOn("address: 1.2.3.4\n")).toThrow("vps.yaml has no `headscale:` block to turn headscale.backup on in");
  });

  it("the report shows a drill's phase times under its reason", () => {
    const html = renderReport({
      topology: labTopology(0),
      checks: { at: "", instance: 0, totalMs: 1, peers: {}, versions: {}, checks: [{ name: DRILLS.backupRestore, ok: true, reason: "3 nodes", ms: 90_000, timings: { backupMs: 1500, restoreMs: 7250 } }] },
      matrix: { sources: [], destinations: [], cells: {} },
      routes: [],
      generatedAt: "now",
    });
    expect(html).toContain("<td>3 nodes<br><small>backupMs 1.5s, restoreMs 7.3s</small></td>");
  });
});
