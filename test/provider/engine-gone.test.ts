/**
 * The provider process ends when the engine that started it is gone. An
 * engine killed mid-run (SIGKILL, as test/cli/backend-postgres.real.test.ts
 * does to a whole `meshfleet up`) never tells its plugins, and before this
 * the provider served on with nobody to serve, one process per killed run.
 * Here a shell stands for the engine: it starts the provider (as the engine
 * does, with an engine address) and is killed; the provider must exit within
 * a few seconds, and must stay up while its parent lives.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../modules/realtools/index.ts";

const BIN = join(import.meta.dirname, "..", "..", "provider", "bin", "pulumi-resource-meshfleet");

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let stray: number[] = [];
afterEach(() => {
  for (const pid of stray) if (alive(pid)) process.kill(pid, "SIGKILL");
  stray = [];
});

describe("the provider and its engine", () => {
  it("exits once the process that started it is killed, and not before", async () => {
    const t = tempDir("provider-engine");
    try {
      const pidFile = join(t.dir, "pid");
      // The stand-in engine: starts the provider with an (unreachable) engine address, records its pid, waits.
      const engine = spawn("sh", ["-c", `"${BIN}" 127.0.0.1:1 >"${t.dir}/out" 2>&1 & echo $! >"${pidFile}"; wait`], { stdio: "ignore" });
      let pid = 0;
      for (let i = 0; i < 100 && !pid; i++) {
        await sleep(100);
        try {
          pid = Number(readFileSync(pidFile, "utf8").trim());
        } catch {
          /* not yet */
        }
      }
      expect(pid, "the provider did not start").toBeGreaterThan(0);
      stray.push(pid);
      // Up while its engine lives (its port printed: it serves).
      for (let i = 0; i < 200 && !/^\d+\s*$/m.test(readFileSync(join(t.dir, "out"), "utf8")); i++) await sleep(100);
      expect(readFileSync(join(t.dir, "out"), "utf8")).toMatch(/^\d+\s*$/m);
      await sleep(2_500);
      expect(alive(pid), "the provider exited while its engine still ran").toBe(true);
      // The engine is killed: the provider follows within a few seconds.
      engine.kill("SIGKILL");
      const t0 = Date.now();
      while (alive(pid) && Date.now() - t0 < 10_000) await sleep(100);
      expect(alive(pid), "the provider still runs 10 s after its engine was killed").toBe(false);
    } finally {
      t.cleanup();
    }
  }, 60_000);
});
