/**
 * The lab raises fs.inotify.max_user_instances before it boots hosts (at the
 * kernel's default of 128, two labs at once ran out and a host's systemd
 * exited at boot), never lowers it, and says what it did. Run here on a file
 * standing in for the sysctl.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ensureInotifyInstances, INOTIFY_INSTANCES } from "../../lab/hosts/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mf-inotify-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the lab's inotify instances", () => {
  it("raises the kernel's default to what the hosts need, saying so", () => {
    const f = join(dir, "low");
    writeFileSync(f, "128\n");
    expect(ensureInotifyInstances(f)).toBe(`raised fs.inotify.max_user_instances from 128 to ${INOTIFY_INSTANCES} (each host's systemd holds about 12; at 128 a host fails to boot once about 10 run on the machine)`);
    expect(readFileSync(f, "utf8")).toBe(`${INOTIFY_INSTANCES}\n`);
  });

  it("leaves a limit that is high enough, or higher, alone", () => {
    const f = join(dir, "high");
    writeFileSync(f, "8192\n");
    expect(ensureInotifyInstances(f)).toBeNull();
    expect(readFileSync(f, "utf8")).toBe("8192\n");
    expect(ensureInotifyInstances(join(dir, "absent"))).toBeNull();
  });
});
