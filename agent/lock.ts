/**
 * One agent at a time changes the host: an flock(2) on the state folder's
 * lock file. The kernel drops the lock when its holder exits for any reason
 * (a crash, `kill -9`, a reboot), so there is no stale lock to judge and no
 * takeover race; a pid left in the file by a dead agent means nothing, even
 * if an unrelated process has that pid after a reboot (the old pid lock let
 * such a process block `boot`'s rollback).
 *
 * Node has no flock, so `flock` from util-linux takes it for us on our own
 * open file (passed as its fd 3): the lock belongs to the open file
 * description, which stays ours when that helper exits, and goes away when
 * the agent closes it or dies. Node opens files close-on-exec, so nothing the
 * agent starts later (the detached guard) inherits it.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export interface Lock {
  release(): void;
}

/** flock's exit code when the lock stays held (-E). */
const HELD = 75;

/** Take the lock; wait up to `waitMs` for another agent. Returns `heldBy` (the holder's pid, 0 if unknown) when still held. */
export function tryLock(dir: string, waitMs: number): Lock | { heldBy: number } {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, "lock");
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  const wait = waitMs > 0 ? ["-w", String(Math.max(1, Math.ceil(waitMs / 1000)))] : ["-n"];
  const r = spawnSync("flock", ["-x", ...wait, "-E", String(HELD), "3"], { stdio: ["ignore", "ignore", "pipe", fd], encoding: "utf8" });
  if (r.status !== 0) {
    const holder = Number(readAll(fd).trim()) || 0;
    fs.closeSync(fd);
    if (r.status === HELD) return { heldBy: holder };
    throw new Error(
      r.error
        ? `cannot lock ${file}: \`flock\` (util-linux) did not run: ${r.error.message}`
        : `cannot lock ${file}: \`flock -x 3\` exited with ${r.status ?? r.signal}: ${(r.stderr ?? "").trim()}`,
    );
  }
  // For messages only: who holds it. The lock itself is the flock.
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, String(process.pid), 0);
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    try {
      fs.ftruncateSync(fd, 0);
    } catch {
      // the lock goes with the descriptor either way
    }
    fs.closeSync(fd);
    process.off("exit", release);
  };
  process.on("exit", release);
  return { release };
}

function readAll(fd: number): string {
  const buf = Buffer.alloc(64);
  try {
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString("utf8");
  } catch {
    return "";
  }
}
