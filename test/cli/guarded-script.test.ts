/**
 * The guarded scripts' head (cli/guarded-script.ts), run by sh: a start of
 * headscale that fails is said with the start command's own words and tried
 * once more; one that fails twice fails. (Found in CI: under load, a
 * Postgres restore's `systemctl start headscale` failed once and the restore
 * put the live database back, with nothing in its log to say why.)
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { guardedHead } from "../../cli/guarded-script.ts";

const dir = mkdtempSync(path.join(tmpdir(), "mf-guarded-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(name: string, start: string): { log: string; code: number | null } {
  const log = path.join(dir, `${name}.log`);
  const script = [
    ...guardedHead({ about: ["test"], who: "restore", vars: [], waitSeconds: 1, log, stop: "true", start }),
    `if start_hs; then finish 0 "started"; fi`,
    `finish 1 "not started"`,
  ].join("\n");
  const file = path.join(dir, `${name}.sh`);
  writeFileSync(file, script);
  const r = spawnSync("sh", [file], { encoding: "utf8" });
  return { log: readFileSync(log, "utf8"), code: r.status };
}

describe("guarded scripts: starting headscale", () => {
  it("a start that fails once is said with its reason and tried again", () => {
    const flag = path.join(dir, "started-once");
    const r = run("once", `if [ -e ${flag} ]; then true; else touch ${flag}; echo 'Job for headscale.service failed.' >&2; false; fi`);
    expect(r.code).toBe(0);
    expect(r.log).toContain("restore: headscale did not start (try 1 of 2): Job for headscale.service failed.");
    expect(r.log).not.toContain("try 2 of 2");
    expect(r.log.trimEnd().endsWith("@@mf:result@@\nstarted")).toBe(true);
    expect(existsSync(flag)).toBe(true);
  }, 20_000);

  it("a start that fails twice fails, each failure said", () => {
    const r = run("never", "echo 'unit headscale.service not found' >&2; exit 5");
    expect(r.code).toBe(1);
    expect(r.log).toContain("restore: headscale did not start (try 1 of 2): unit headscale.service not found");
    expect(r.log).toContain("restore: headscale did not start (try 2 of 2): unit headscale.service not found");
    expect(r.log.trimEnd().endsWith("not started")).toBe(true);
  }, 20_000);

  it("a start that succeeds says nothing", () => {
    const r = run("ok", "true");
    expect(r.code).toBe(0);
    expect(r.log).not.toContain("did not start");
  });
});
