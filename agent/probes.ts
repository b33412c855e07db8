/**
 * Health probes from the bundle, each retried until it passes or the shared
 * deadline passes. A probe that never passes fails the switch.
 * node:http/https/net load lazily: they cost start-up time on every command.
 */
import type { Probe as HealthProbe } from "../contract/bundle.ts";
import type { Host } from "./host.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function httpStatus(url: string, insecure: boolean, timeoutMs: number): Promise<number> {
  const mod = url.startsWith("https:") ? await import("node:https") : await import("node:http");
  return new Promise((resolve, reject) => {
    const req = mod.get(url, { timeout: timeoutMs, rejectUnauthorized: !insecure }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.on("error", reject);
  });
}

async function tcpOpen(host: string, port: number, timeoutMs: number): Promise<void> {
  const net = await import("node:net");
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, timeout: timeoutMs }, () => {
      s.destroy();
      resolve();
    });
    s.on("timeout", () => s.destroy(new Error("timed out")));
    s.on("error", reject);
  });
}

/** One attempt: null when it passes, else why not. */
export async function probeOnce(host: Host, p: HealthProbe): Promise<string | null> {
  try {
    switch (p.kind) {
      case "http": {
        const code = await httpStatus(p.url, !!p.insecure, 5000);
        return code === p.expectStatus ? null : `GET ${p.url}: expected status ${p.expectStatus}, found ${code}`;
      }
      case "tcp":
        await tcpOpen(p.host, p.port, 5000);
        return null;
      case "tailscale-running": {
        const r = host.tailscale(["status", "--json"], 10_000);
        const state = (() => {
          try {
            return String(JSON.parse(r.stdout).BackendState);
          } catch {
            return "unavailable";
          }
        })();
        return state === "Running" ? null : `tailscale BackendState is ${state}, expected Running`;
      }
      case "routes-advertised": {
        const r = host.tailscale(["debug", "prefs"], 10_000);
        const have = new Set<string>((JSON.parse(r.stdout).AdvertiseRoutes as string[] | null) ?? []);
        const missing = p.routes.filter((x) => !have.has(x));
        return missing.length === 0 ? null : `routes not advertised: ${missing.join(", ")}`;
      }
      case "unit-active": {
        const r = host.systemctl(["is-active", p.unit]);
        const s = r.stdout.trim();
        return s === "active" ? null : `unit ${p.unit} is ${s || "unknown"}, expected active`;
      }
    }
  } catch (e) {
    return `${p.kind} probe: ${(e as Error).message}`;
  }
}

/** Run all probes until each passes or `deadlineMs` from now; returns the failures. */
export async function runProbes(host: Host, probes: HealthProbe[], deadlineMs: number, log: (l: string) => void): Promise<string[]> {
  const until = Date.now() + deadlineMs;
  const failures: string[] = [];
  for (const p of probes) {
    let why: string | null = null;
    for (;;) {
      why = await probeOnce(host, p);
      if (why === null || Date.now() >= until) break;
      await sleep(Math.min(1000, Math.max(50, until - Date.now())));
    }
    if (why === null) log(`  probe ${p.name}: ok`);
    else {
      log(`  probe ${p.name}: FAILED: ${why}`);
      failures.push(`${p.name}: ${why}`);
    }
  }
  return failures;
}
