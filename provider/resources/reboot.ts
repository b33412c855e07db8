/**
 * `meshfleet up --reboot-check` (issue 18 §4, after deploy-rs#211): once a
 * generation is switched, confirmed and verified, reboot the host and keep
 * the deploy only if the host comes back with that generation active, table
 * inet meshfleet loaded, tailscale Running with its routes advertised, and
 * `verify` clean. What does not come back fails the deploy naming the host
 * and the missing piece. The generation is not rolled back then: it was
 * confirmed before the reboot, so the message names `meshfleet rollback`.
 *
 * The reboot is a transient timer (systemd-run), so the SSH session that
 * asks for it ends cleanly before sshd goes down. A new boot is told by
 * /proc/sys/kernel/random/boot_id (systemd-nspawn gives each container boot
 * its own), read over new connections only: the run's shared one dies with
 * the old boot.
 */
import { spawnSync } from "node:child_process";
import { log } from "../log.ts";
import { progress } from "../progress.ts";
import { shq } from "../quote.ts";
import { session, type RunResult } from "../ssh.ts";
import type { AgentSpec, GenerationInputs } from "../types.ts";
import { ProviderError } from "../wire.ts";
import { inspectScript, parseInspect } from "./inspect.ts";

/** Seconds from the reboot until every check must pass. */
export const REBOOT_CHECK_SECONDS = 180;

/** What the bundle says must be there after a boot. */
export interface RebootExpect {
  hash: string;
  /** The generation has a firewall (table inet meshfleet). */
  firewall: boolean;
  /** Tailscale is managed: its CLI and the routes it must advertise. */
  tailscale: { cli: string; routes: string[] } | null;
}

/** The expectations from the bundle's JSON (the bundle itself never leaves this function). */
export function rebootExpect(bundleJson: string): RebootExpect {
  const b = JSON.parse(bundleJson) as {
    hash: string;
    firewall: unknown;
    tailscale: { cli: string; routes: string[]; exitNode: boolean } | null;
  };
  const ts = b.tailscale;
  return {
    hash: b.hash,
    firewall: b.firewall !== null && b.firewall !== undefined,
    tailscale: ts ? { cli: ts.cli, routes: [...ts.routes, ...(ts.exitNode ? ["0.0.0.0/0", "::/0"] : [])] } : null,
  };
}

const BOOT_ID = "/proc/sys/kernel/random/boot_id";

/** Print the boot id, then reboot from a timer of PID 1's (the session that asks ends first). */
export function rebootScript(): string {
  return [
    "set -eu",
    `cat ${BOOT_ID}`,
    // --no-block: queue the reboot, do not wait for it. Two seconds let this session end cleanly.
    "systemd-run --quiet --collect --on-active=2 --timer-property=AccuracySec=100ms systemctl reboot --no-block",
  ].join("\n");
}

const MARK = (s: string) => `@@meshfleet-reboot-${s}@@`;
/** A mark on a line of its own: `tailscale status --json` ends without a newline. */
const mark = (s: string) => `echo; echo ${MARK(s)}`;

/** One round trip after the boot: boot id, the table, tailscale's state and prefs, then status + verify. */
export function rebootCheckScript(a: AgentSpec, e: RebootExpect): string {
  const lines = [mark("boot"), `cat ${BOOT_ID}`, mark("nft"), "if nft list table inet meshfleet >/dev/null 2>&1; then echo loaded; else echo missing; fi"];
  if (e.tailscale) {
    const cli = shq(e.tailscale.cli);
    lines.push(mark("ts-status"), `timeout 10 ${cli} status --json 2>/dev/null || true`, mark("ts-prefs"), `timeout 10 ${cli} debug prefs 2>/dev/null || true`);
  }
  lines.push(mark("inspect"), inspectScript(a));
  return lines.join("\n");
}

function sections(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /^@@meshfleet-reboot-([a-z-]+)@@$/gm;
  const marks = [...stdout.matchAll(re)];
  marks.forEach((m, i) => {
    const start = m.index! + m[0].length + 1;
    out[m[1]!] = stdout.slice(start, i + 1 < marks.length ? marks[i + 1]!.index : undefined);
  });
  return out;
}

export interface RebootFindings {
  bootId: string;
  /** What did not come back, each led by its piece: "generation: …", "firewall: …", "tailscale: …", "routes: …", "drift: …". */
  missing: string[];
  statusText: string;
  generation: number;
}

/** Read one check's output against what the bundle expects. */
export function parseRebootCheck(host: string, stdout: string, e: RebootExpect): RebootFindings {
  const s = sections(stdout);
  const missing: string[] = [];
  const { status, statusText, drift } = parseInspect(host, s.inspect ?? "");
  if (status.hash !== e.hash) missing.push(`generation: the host runs ${status.hash ? `${status.hash.slice(0, 12)} (generation ${status.generation})` : "no generation"}, not ${e.hash.slice(0, 12)}`);
  else if (status.pendingConfirm) missing.push(`generation: ${e.hash.slice(0, 12)} awaits a confirm again (rolled back at ${status.pendingConfirm.secondsLeft}s)`);
  if (e.firewall && (s.nft ?? "").trim() !== "loaded") missing.push("firewall: table inet meshfleet is not loaded");
  if (e.tailscale) {
    let state = "unavailable (`tailscale status --json` did not answer)";
    try {
      state = String((JSON.parse(s["ts-status"] ?? "") as { BackendState?: string }).BackendState);
    } catch {
      /* stays unavailable */
    }
    if (state !== "Running") missing.push(`tailscale: BackendState is ${state}, expected Running`);
    let have: string[] | null = null;
    try {
      have = ((JSON.parse(s["ts-prefs"] ?? "") as { AdvertiseRoutes?: string[] | null }).AdvertiseRoutes ?? []) as string[];
    } catch {
      /* unknown */
    }
    const want = e.tailscale.routes;
    if (want.length > 0) {
      if (have === null) missing.push(`routes: unknown (\`tailscale debug prefs\` did not answer); expected ${want.join(", ")} advertised`);
      else {
        const lost = want.filter((r) => !have!.includes(r));
        if (lost.length) missing.push(`routes: not advertised: ${lost.join(", ")}`);
      }
    }
  }
  for (const d of drift) missing.push(`drift: ${d.kind} ${d.subject}: ${d.detail}`);
  return { bootId: (s.boot ?? "").trim(), missing, statusText, generation: status.generation };
}

/** The deploy's error for a host that did not come back whole. */
export function rebootFailure(host: string, hash: string, what: string, missing: string[]): ProviderError {
  return new ProviderError(
    `host ${host}: --reboot-check: ${what}` +
      (missing.length ? `:\n    ${missing.join("\n    ")}` : "") +
      `\n    Generation ${hash.slice(0, 12)} was confirmed before the reboot, so it stays (not rolled back). Fix what is named and run \`meshfleet up --reboot-check --on ${host}\` again, or go back: \`meshfleet rollback --on ${host}\``,
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reboot `n.host` and wait (at most `seconds`) until it answers with a new
 * boot id and every check passes. Returns the findings of the passing check
 * and how long it took; throws naming what did not come back.
 */
export async function rebootAndCheck(n: GenerationInputs, seconds = REBOOT_CHECK_SECONDS): Promise<RebootFindings & { ms: number; downMs: number }> {
  const host = n.host;
  const c = n.connection;
  const expect = rebootExpect(n.bundle);
  const t0 = Date.now();
  const r = await session.run(c, rebootScript(), { what: "reboot (--reboot-check)", privateKey: n.sshPrivateKey, fresh: true, timeoutMs: 30_000 });
  const before = r.stdout.trim().split("\n")[0] ?? "";
  if (r.code !== 0 || !/^[0-9a-f-]{36}$/.test(before)) {
    throw rebootFailure(host, n.hash, `the reboot could not be started (exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 300)})`, []);
  }
  await progress(host, `--reboot-check: rebooting; waiting up to ${seconds}s for it to come back whole`);
  log(`host ${host}: --reboot-check: boot id before the reboot ${before}`);
  // The shared connection dies with this boot: close it now rather than let the next command find out.
  try {
    spawnSync("ssh", ["-O", "exit", ...session.sshArgs(c, { privateKey: n.sshPrivateKey })], { stdio: "ignore", timeout: 5000 });
  } catch {
    /* no master */
  }
  const until = t0 + seconds * 1000;
  let last: RebootFindings | null = null;
  let lastErr = "";
  let downMs = 0;
  let lastMissing = "";
  const script = rebootCheckScript(n.agent, expect);
  while (Date.now() < until) {
    let res: RunResult;
    try {
      res = await session.run(c, script, { what: "checks after the reboot", privateKey: n.sshPrivateKey, fresh: true, attempts: 1, until, timeoutMs: Math.max(5000, Math.min(60_000, until - Date.now())) });
    } catch (e) {
      const m = (e as Error).message;
      // A host key that no longer matches its pin is no boot delay.
      if (/does not match the pinned key|login refused/.test(m)) throw rebootFailure(host, n.hash, `after the reboot ${m}`, []);
      lastErr = m;
      await sleep(1000);
      continue;
    }
    if (res.code === 255) {
      lastErr = res.stderr.trim().slice(0, 300);
      await sleep(1000);
      continue;
    }
    let f: RebootFindings;
    try {
      f = parseRebootCheck(host, res.stdout, expect);
    } catch (e) {
      // The agent not answering yet (a boot still under way) reads as not back.
      lastErr = (e as Error).message;
      await sleep(1000);
      continue;
    }
    if (f.bootId === before || !f.bootId) {
      // The old boot still answers: the reboot has not begun.
      lastErr = `still boot ${before}`;
      await sleep(500);
      continue;
    }
    if (!downMs) {
      downMs = Date.now() - t0;
      await progress(host, `--reboot-check: back on a new boot after ${(downMs / 1000).toFixed(1)}s; checking generation, firewall, tailscale, routes, verify`);
    }
    last = f;
    if (f.missing.length === 0) {
      const ms = Date.now() - t0;
      await progress(host, `--reboot-check: passed in ${(ms / 1000).toFixed(1)}s (generation ${f.generation} active, checks clean)`);
      return { ...f, ms, downMs };
    }
    // Said once per new set of missing pieces, not on every poll.
    // Compared without the seconds some items carry ("rolled back at 12s"), which change on every poll.
    const missing = f.missing.join("; ");
    const same = missing.replace(/\d+(\.\d+)?s\b/g, "#s");
    if (same !== lastMissing) await progress(host, `--reboot-check: not whole yet: ${missing}`);
    lastMissing = same;
    await sleep(2000);
  }
  if (!last) {
    throw rebootFailure(host, n.hash, `the host did not come back within ${seconds}s: no SSH login on a new boot (boot id before: ${before}; last: ${lastErr || "nothing"})`, []);
  }
  throw rebootFailure(host, n.hash, `the host came back (new boot ${last.bootId.slice(0, 8)}) but not whole within ${seconds}s`, last.missing);
}
