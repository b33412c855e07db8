/**
 * doctor run before the first deploy (the preflight of docs/deploy.md §8):
 * what the deploy itself sets up is skipped, saying so, and everything else
 * stays as found. The guide's lab test (test/lab/guide-lab.test.ts) runs it
 * on hosts that were never deployed.
 */
import { describe, expect, it } from "vitest";
import { beforeFirstDeploy, type Finding } from "../../cli/commands/doctor.ts";
import type { HostStatus } from "../../cli/commands/status.ts";

const st = (n: number) => ({ host: "r", generation: n ? { n } : null }) as unknown as HostStatus;
const f = (check: string, level: Finding["level"] = "fail"): Finding => ({ host: "r", check, level, what: `${check} is off`, why: "w", fix: "x" });
const FOUND = [f("ip forwarding"), f("udp gro forwarding", "warn"), f("udp to relay"), f("tun device"), f("agent runtime"), f("ip forwarding", "ok")];

describe("doctor before the first deploy", () => {
  it.each([
    // host deployed, fleet deployed -> levels of FOUND
    [false, false, ["skip", "skip", "skip", "fail", "fail", "ok"]],
    [false, true, ["skip", "skip", "fail", "fail", "fail", "ok"]],
    [true, true, ["fail", "warn", "fail", "fail", "fail", "ok"]],
  ])("host deployed %s, coordinator deployed %s", (host, fleet, levels) => {
    expect(beforeFirstDeploy(st(host ? 3 : 0), fleet, FOUND).map((x) => x.level)).toEqual(levels);
  });

  it("says why a finding is skipped", () => {
    expect(beforeFirstDeploy(st(0), false, FOUND).slice(0, 3).map((x) => x.what)).toEqual([
      "ip forwarding is off: the host's first generation sets it (nothing deployed yet)",
      "udp gro forwarding is off: the host's first generation sets it (nothing deployed yet)",
      "the relay is not deployed yet (udp to relay is off); the first `meshfleet up` starts it",
    ]);
  });
});
