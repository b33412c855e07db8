/**
 * The sshTests cases of sshtests-cases.ts against headscale 0.29.2 itself:
 * their recorded failure lines must be what `headscale policy check` says now
 * (users and nodes written into its database, as the corpus does). Needs the
 * built headscale and sqlite3; sshtests.test.ts holds the evaluator to the
 * same lines in process (and is the one Stryker runs).
 */
import { existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { askHeadscale, headscaleBinary } from "./corpus/crosscheck.ts";
import { SSH_CASES, SSH_NODES, SSH_USERS } from "./sshtests-cases.ts";

const live = existsSync(headscaleBinary()) && spawnSync("sqlite3", ["-version"]).status === 0;

describe("sshtests cases", () => {
  it("have failing and passing ones, lines of each kind", () => {
    expect(SSH_CASES.length).toBeGreaterThanOrEqual(20);
    expect(SSH_CASES.filter((c) => c.want.valid).length).toBeGreaterThanOrEqual(5);
    const lines = SSH_CASES.flatMap((c) => c.want.failures);
    for (const end of ["expected ALLOWED, got DENIED", "expected DENIED, got ALLOWED", "expected ALLOWED via check, got DENIED", "expected ALLOWED via check, got ALLOWED via accept", "resolved to no IP addresses", "resolved to no nodes"]) {
      expect(lines.some((l) => l.endsWith(end)), end).toBe(true);
    }
  });

  it.skipIf(skipUnlessCi(!live && "asking headscale live needs headscale 0.29.2 (meshfleet tools build) and sqlite3 (apt-get install sqlite3)"))("are answered by headscale 0.29.2 as recorded", () => {
    const answers = askHeadscale(SSH_CASES.map((c) => ({ name: c.name, users: SSH_USERS, nodes: SSH_NODES, policy: c.policy })));
    expect(Object.fromEntries(SSH_CASES.map((c) => [c.name, answers[c.name]]))).toEqual(Object.fromEntries(SSH_CASES.map((c) => [c.name, c.want])));
  }, 60_000);
});
