/**
 * The exact `tailscale up` / `tailscale set` argv the agent runs
 * (agent/tailscale.ts over contract/tailscale.ts), for every host of
 * hosts/home and hosts/lab, given to the real tailscale CLI (the tools
 * cache's 1.98.10) talking to a real tailscaled that runs unprivileged
 * here: userspace networking, its own state folder and socket, logs off.
 * The CLI refuses an unknown flag or a bad boolean before it connects, and
 * tailscaled refuses a bad value (`--netfilter-mode=bogus`), so a flag the
 * contract gets wrong fails here. Nothing leaves loopback: `up` logs in to
 * http://127.0.0.1:9 (nothing listens) and gives up after 2 s; the fleet's
 * real login server is checked as a URL instead.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import { tailscaleAction } from "../../agent/tailscale.ts";
import { secretRefs } from "../../core/bundle.ts";
import { renderHost } from "../../core/render.ts";
import type { TailscaleConfig } from "../../contract/bundle.ts";
import { evaluateStack } from "./fixtures.ts";

const BIN = join(process.env.MESHFLEET_TOOLS_DIR ?? join(homedir(), ".cache", "meshfleet", "tools"), "tailscale@1.98.10", "bin");
const have = existsSync(join(BIN, "tailscale")) && existsSync(join(BIN, "tailscaled"));
const NOWHERE = "http://127.0.0.1:9";

type Case = { host: string; op: string; why: string; argv: string[] };

async function cases(): Promise<Case[]> {
  const out: Case[] = [];
  for (const stack of ["home", "lab"] as const) {
    const { fleet } = await evaluateStack(stack);
    for (const h of Object.values(fleet.hosts)) {
      const secrets = Object.fromEntries(secretRefs(h).map((r) => [r, `test-value-of-${r}`]));
      const t = renderHost(h, secrets).tailscale as TailscaleConfig | null | undefined;
      if (!t) continue;
      const other: TailscaleConfig = { ...t, loginServer: `${t.loginServer}/old`, acceptRoutes: !t.acceptRoutes, tags: [...t.tags, "tag:old"] };
      const changed: TailscaleConfig = { ...t, acceptRoutes: !t.acceptRoutes };
      // Every branch of the agent's decision: logged out, login server changed, first configure, tags changed, settings changed.
      const branches: [string, TailscaleConfig | null][] = [["NeedsLogin", null], ["Running", { ...other, tags: t.tags }], ["Running", null], ["Running", { ...t, tags: [...t.tags, "tag:old"] }], ["Running", changed]];
      for (const [state, applied] of branches) {
        const a = tailscaleAction(state, applied, t);
        if (a.op !== "none") out.push({ host: `${stack}/${h.name}`, op: a.op, why: a.why, argv: a.argv });
      }
    }
  }
  return out;
}

describe.skipIf(skipUnlessCi(!have && `the tailscale CLI and tailscaled 1.98.10 are not built (${BIN}): run \`meshfleet tools build\``))("tailscale argv from the contract against the real tailscale CLI and tailscaled", () => {
  let dir = "";
  let daemon: ChildProcess | undefined;
  const sock = () => join(dir, "sock");
  // Async, so the worker's event loop keeps answering vitest while tailscale waits.
  const cli = (argv: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((res) =>
      execFile(join(BIN, "tailscale"), [`--socket=${sock()}`, ...argv], { encoding: "utf8", timeout: 20_000, env: { ...process.env, TS_NO_LOGS_NO_SUPPORT: "true" } }, (e, stdout, stderr) =>
        res({ status: e ? (typeof e.code === "number" ? e.code : -1) : 0, stdout, stderr }),
      ),
    );

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "mf-ts-argv-"));
    writeFileSync(join(dir, "authkey"), "hskey-auth-not-a-real-key\n", { mode: 0o600 });
    daemon = spawn(join(BIN, "tailscaled"), ["--tun=userspace-networking", `--statedir=${join(dir, "state")}`, `--socket=${sock()}`, "--port=0", "--no-logs-no-support"], {
      stdio: "ignore",
      env: { ...process.env, TS_NO_LOGS_NO_SUPPORT: "true" },
    });
    for (let i = 0; i < 100 && !existsSync(sock()); i++) await new Promise((r) => setTimeout(r, 100));
    expect(existsSync(sock()), "tailscaled did not open its socket").toBe(true);
  }, 30_000);

  afterAll(() => {
    daemon?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The agent's argv with the login server pointed at loopback, the auth key at a test file, and a short timeout. */
  const local = (argv: string[]) =>
    argv.map((a, i) => (a.startsWith("--login-server=") ? `--login-server=${NOWHERE}` : a.startsWith("file:") ? `file:${join(dir, "authkey")}` : argv[i - 1] === "--timeout" ? "2s" : a));

  const REFUSED = /flag provided but not defined|invalid (boolean )?value|parse error|requires mentioning all non-default flags|is not a valid|invalid/i;

  it("the CLI and tailscaled refuse a bad flag name and a bad value here (the check can fail)", async () => {
    const bad = await cli(["set", "--advertise-routez=10.0.0.0/8"]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr + bad.stdout).toMatch(/flag provided but not defined: -advertise-routez/);
    const value = await cli(["set", "--netfilter-mode=bogus"]);
    expect(value.status).not.toBe(0);
    expect(value.stderr + value.stdout).toMatch(/invalid value --netfilter-mode="bogus"/);
    const upBad = await cli(["up", `--login-server=${NOWHERE}`, "--accept-routes=maybe", "--timeout", "2s"]);
    expect(upBad.stderr + upBad.stdout).toMatch(/invalid boolean value "maybe" for -accept-routes/);
  });

  it("every up/set argv the agent builds for hosts/home and hosts/lab is accepted", async () => {
    const all = await cases();
    // Both fleets have tailscale hosts, and every branch of tailscaleAction gives argv.
    expect(new Set(all.map((c) => c.host.split("/")[0])).size).toBe(2);
    expect(new Set(all.map((c) => c.op))).toEqual(new Set(["up", "set"]));
    const refused: string[] = [];
    const seen = new Set<string>();
    for (const c of all) {
      for (const a of c.argv.filter((x) => x.startsWith("--login-server="))) expect(() => new URL(a.slice("--login-server=".length)), `${c.host}: ${a}`).not.toThrow();
      const argv = local(c.argv);
      if (seen.has(argv.join("\0"))) continue;
      seen.add(argv.join("\0"));
      const r = await cli(argv);
      const text = (r.stderr + r.stdout).trim();
      // set applies locally (exit 0); up passes validation and then waits for a login that cannot come.
      const ok = c.op === "set" ? r.status === 0 : /timeout waiting for Tailscale service to enter a Running state|context deadline exceeded/.test(text) && !REFUSED.test(text.replace(/timeout waiting.*$/m, ""));
      if (!ok) refused.push(`${c.host} (${c.why}): tailscale ${c.argv.join(" ")}\n  -> exit ${r.status}: ${text.split("\n").slice(0, 3).join(" | ")}`);
    }
    expect(refused, refused.join("\n")).toEqual([]);
  }, 180_000);
});
