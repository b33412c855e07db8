/**
 * The lockout guard: something outside this SSH session that rolls the host
 * back unless `confirm` arrives in time. A transient systemd timer survives
 * the session (and its cgroup) going away, so it is preferred; a detached
 * child in its own session is the fallback where systemd is absent.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import type { Host } from "./host.ts";

export type GuardKind = "systemd" | "detached";

export const guardUnit = (n: number) => `meshfleet-guard-${n}`;

export function chooseGuard(host: Host): GuardKind {
  const forced = process.env.MESHFLEET_GUARD;
  if (forced === "systemd" || forced === "detached") return forced;
  if (host.root !== "/" || !fs.existsSync("/run/systemd/system")) return "detached";
  return host.run(["systemd-run", "--version"], { timeoutMs: 5000 }).code === 0 ? "systemd" : "detached";
}

/** The argv that re-enters this agent: the same node binary and bundled file. */
export function selfArgv(host: Host, args: string[]): string[] {
  const script = fs.realpathSync(process.argv[1]);
  return [process.execPath, script, ...(host.root !== "/" ? ["--root", host.root] : []), ...args];
}

export function startGuard(host: Host, n: number, timeoutS: number): { kind: "systemd"; unit: string } | { kind: "detached"; pid: number } {
  const kind = chooseGuard(host);
  if (kind === "systemd") {
    const unit = guardUnit(n);
    host.systemctl(["stop", `${unit}.timer`, `${unit}.service`]);
    host.systemctl(["reset-failed", `${unit}.timer`, `${unit}.service`]);
    const argv = [
      "systemd-run",
      "--unit",
      unit,
      "--description",
      `meshfleet lockout guard for generation ${n}`,
      `--on-active=${timeoutS}s`,
      "--timer-property=AccuracySec=100ms",
      ...selfArgv(host, ["guard-expire", String(n)]),
    ];
    const r = host.run(argv, { timeoutMs: 30_000 });
    if (r.code === 0) return { kind, unit };
    // fall through to the detached guard rather than leave the host unguarded
  }
  const deadline = Date.now() + timeoutS * 1000;
  const argv = selfArgv(host, ["guard-wait", String(n), String(deadline)]);
  const child = spawn(argv[0], argv.slice(1), {
    detached: true,
    stdio: "ignore",
    env: process.env,
  });
  child.unref();
  return { kind: "detached", pid: child.pid ?? 0 };
}

export function stopGuard(host: Host, g: { kind: "systemd"; unit: string } | { kind: "detached"; pid: number }): void {
  if (g.kind === "systemd") host.systemctl(["stop", `${g.unit}.timer`]);
  else if (g.pid > 0) {
    try {
      process.kill(g.pid, "SIGTERM");
    } catch {
      // already gone: the pending file is what it checks anyway
    }
  }
}
