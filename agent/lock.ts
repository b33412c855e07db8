/**
 * One agent at a time changes the host. The lock file holds the owner's pid;
 * a lock whose owner is dead (a crash, `kill -9`) is taken over, which is
 * what lets the next run recover from the journal.
 */
import * as fs from "node:fs";
import * as path from "node:path";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

export interface Lock {
  release(): void;
}

/** Take the lock; wait up to `waitMs` for a live owner. Returns null when still held by another live agent. */
export function tryLock(dir: string, waitMs: number): Lock | { heldBy: number } {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "lock");
  const until = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = fs.openSync(file, "wx", 0o600);
      fs.writeSync(fd, String(process.pid));
      fs.closeSync(fd);
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        try {
          if (fs.readFileSync(file, "utf8") === String(process.pid)) fs.unlinkSync(file);
        } catch {
          // already gone
        }
      };
      process.on("exit", release);
      return { release };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const owner = Number(fs.readFileSync(file, "utf8").trim() || "0");
    if (!owner || owner === process.pid || !alive(owner)) {
      fs.rmSync(file, { force: true });
      continue;
    }
    if (Date.now() >= until) return { heldBy: owner };
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
  }
}
