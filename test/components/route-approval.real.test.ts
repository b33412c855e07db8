/**
 * Route approval by the fleet's generated autoApprovers, against the real
 * headscale of each release of the version matrix (the pinned 0.29.2 and the
 * newest 0.28, issue 18 item 3) and real tailscaled 1.98.10 (tools cache).
 * For each, the fleets are rendered with coordinator.headscaleVersion set to
 * that release. For hosts/lab
 * and hosts/home: headscale serves the lab coordinator's rendered config with
 * that fleet's rendered policy.hujson (its autoApprovers as generated); every
 * host that advertises routes or an exit node registers a userspace
 * tailscaled with a pre-auth key made from the fleet's own request (its
 * tags) and the exact `tailscale up` flags of contract/tailscale.ts. Each
 * advertised route must come back approved in `headscale nodes list`, so
 * autoApprovers generated wrong (a wrong tag, a missing route) fail here as
 * "routes not approved". Nothing is approved by hand and no fake decides.
 *
 * Both daemons run in a network namespace of their own with only loopback
 * (root; CI runs as root): loopback and a veth pair inside it, so nothing the client tries reaches a network.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isRoot, NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";
import * as rt from "../modules/realtools/index.ts";
import { headscaleCommand, parsePreAuthKeyJson, parseUserJson, preAuthKeyCreateArgs, readyScript, usersCreateArgs, type HeadscaleCli } from "../../components/index.ts";
import { secretRefs } from "../../core/bundle.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import { renderHost } from "../../core/render.ts";
import { advertisedRoutes, tailscaleUpFlags } from "../../contract/tailscale.ts";
import type { TailscaleConfig } from "../../contract/bundle.ts";
import { KEY_SEED } from "./fixtures.ts";

type Release = (typeof rt.HEADSCALE_MATRIX)[number];
const TS_BIN = join(process.env.MESHFLEET_TOOLS_DIR ?? join(homedir(), ".cache", "meshfleet", "tools"), "tailscale@1.98.10", "bin");
const whyNot = (hv: Release) =>
  !isRoot() ? NEEDS_ROOT : !rt.toolPath(hv.tool) || !existsSync(join(TS_BIN, "tailscaled")) ? `${hv.tool} ${hv.version} and tailscale 1.98.10 are not built: run \`meshfleet tools build\`` : "";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sh = (script: string, env: Record<string, string> = {}) => spawnSync("sh", ["-c", script], { env: { ...process.env, ...env }, encoding: "utf8", timeout: 60_000 });

async function approvalsFor(stack: "lab" | "home", hv: Release): Promise<{ host: string; advertised: string[]; approved: string[]; log: string }[]> {
  const HEADSCALE = rt.toolPath(hv.tool);
  const lab = await rt.evaluateStackAt("lab", hv.version);
  const fleet = await rt.evaluateStackAt(stack, hv.version);
  const coord = fleet.hosts[fleet.coordinator.host]!;
  const policy = coord.files.find((f) => f.path.endsWith("/policy.hujson"))?.content;
  if (!policy) throw new Error(`hosts/${stack}: the coordinator renders no policy.hujson`);
  const labFile = (p: string) => lab.hosts.vps!.files.find((f) => f.path === p)!.content;
  const ns = `mf-routes-${process.pid}-${stack}-${hv.version}`;
  const t = rt.tempDir(`mf-routes-${stack}`);
  const procs: ChildProcess[] = [];
  const out: { host: string; advertised: string[]; approved: string[]; log: string }[] = [];
  execFileSync("ip", ["netns", "add", ns]);
  try {
    // tailscaled pauses its control client while it sees no network: give it a link with a default
    // route, a veth pair with both ends in this namespace (what goes out one end comes to the other, unanswered).
    for (const a of [["link", "set", "lo", "up"], ["link", "add", "v0", "type", "veth", "peer", "name", "v1"], ["addr", "add", "10.255.0.1/24", "dev", "v0"], ["link", "set", "v0", "up"], ["link", "set", "v1", "up"], ["route", "add", "default", "via", "10.255.0.2", "dev", "v0"]]) execFileSync("ip", ["netns", "exec", ns, "ip", ...a]);
    const url = "http://127.0.0.1:8080";
    const config = labFile("/etc/headscale/config.yaml").replace(/^server_url: .*$/m, `server_url: ${url}`);
    // A relay map on loopback (nothing listens): the client has a DERP map, and nothing leaves the namespace anyway.
    const derpMap = "regions:\n  900:\n    regionid: 900\n    regioncode: t\n    regionname: test\n    nodes:\n      - name: 900a\n        regionid: 900\n        hostname: 127.0.0.1\n        ipv4: 127.0.0.1\n        stunport: 3479\n        derpport: 8444\n        insecurefortests: true\n";
    const cfg = rt.layoutHeadscale(t.dir, { config, policy, derpMap, noiseKey: derivePrivateKey(KEY_SEED, "noise") });
    let hsLog = "";
    const hs = spawn("ip", ["netns", "exec", ns, HEADSCALE!, "serve", "-c", cfg], { stdio: ["ignore", "pipe", "pipe"] });
    hs.stdout!.on("data", (d: Buffer) => (hsLog += d.toString()));
    hs.stderr!.on("data", (d: Buffer) => (hsLog += d.toString()));
    procs.push(hs);
    const cli: HeadscaleCli = { runtime: "systemd", binary: HEADSCALE! };
    const env = { HEADSCALE_CONFIG: cfg };
    const ready = sh(readyScript(cli, "test", 30), env);
    expect(ready.status, `${ready.stderr}\n${hsLog.slice(-2000)}`).toBe(0);

    const users = new Map<string, number>();
    for (const req of fleet.preAuthKeys) {
      const h = fleet.hosts[req.host]!;
      const ts = renderHost(h, Object.fromEntries(secretRefs(h).map((r) => [r, "x"]))).tailscale as TailscaleConfig | null;
      if (!ts || advertisedRoutes(ts).length === 0) continue;
      if (req.user && !users.has(req.user)) {
        const u = sh(headscaleCommand(cli, usersCreateArgs(req.user)), env);
        users.set(req.user, parseUserJson(u.stdout, req.user).id);
      }
      const k = sh(headscaleCommand(cli, preAuthKeyCreateArgs(req.user ? users.get(req.user) : undefined, req)), env);
      expect(k.status, k.stderr).toBe(0);
      const key = parsePreAuthKeyJson(k.stdout, req.host).key;
      const d = join(t.dir, `ts-${req.host}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, "key"), key + "\n", { mode: 0o600 });
      const sock = join(d, "sock");
      const tsd = spawn("ip", ["netns", "exec", ns, join(TS_BIN, "tailscaled"), "--tun=userspace-networking", `--statedir=${d}/state`, `--socket=${sock}`, "--port=0", "--no-logs-no-support"], { stdio: ["ignore", openSync(join(d, "log"), "w"), openSync(join(d, "log"), "a")], env: { ...process.env, TS_NO_LOGS_NO_SUPPORT: "true" } });
      procs.push(tsd);
      for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(100);
      const flags = tailscaleUpFlags(ts).map((f) => (f.startsWith("--login-server=") ? `--login-server=${url}` : f));
      const up = spawnSync(join(TS_BIN, "tailscale"), [`--socket=${sock}`, "up", "--auth-key", `file:${join(d, "key")}`, ...flags, "--timeout", "30s"], { encoding: "utf8", timeout: 60_000 });
      const upText = (up.stdout + up.stderr).replace(/hskey-[A-Za-z0-9_-]+/g, "hskey-[redacted]");
      // Approval is asynchronous to registration: poll the coordinator's view.
      let approved: string[] = [];
      let nodes = "";
      for (let i = 0; i < 30; i++) {
        const n = sh(headscaleCommand(cli, ["nodes", "list", "-o", "json"]), env);
        nodes = n.stdout.replace(/\s+/g, " ").slice(0, 600);
        const node = ((JSON.parse(n.stdout || "[]") ?? []) as { given_name?: string; approved_routes?: string[] }[]).find((x) => x.given_name === ts.hostname);
        approved = [...(node?.approved_routes ?? [])].sort();
        if (advertisedRoutes(ts).every((r) => approved.includes(r))) break;
        await sleep(500);
      }
      out.push({ host: req.host, advertised: advertisedRoutes(ts), approved, log: `nodes: ${nodes}; tailscale up: exit ${up.status} ${upText.trim().slice(0, 300)}${up.status === 0 ? "" : `; tailscaled: ${readFileSync(join(d, "log"), "utf8").split("\n").filter((l) => /control|login|regist|auth|http/i.test(l)).slice(-8).join(" | ").replace(/hskey-[A-Za-z0-9_-]+/g, "hskey-[redacted]")}; headscale: ${hsLog.split("\n").filter((l) => /ERR|WRN/.test(l)).slice(-4).join(" | ")}`}` });
    }
  } finally {
    for (const p of procs.reverse()) p.kill("SIGTERM");
    await sleep(300);
    spawnSync("ip", ["netns", "del", ns]);
    t.cleanup();
  }
  return out;
}

for (const hv of rt.HEADSCALE_MATRIX) {
  describe.skipIf(skipUnlessCi(whyNot(hv)))(`routes approved by the fleet's generated autoApprovers (real headscale ${hv.version}, real tailscaled)`, () => {
    it(`the binary is ${hv.version} (\`headscale version\`)`, async () => {
      expect(await rt.headscaleVersionOf(hv.tool)).toBe(hv.version);
    });
    for (const stack of ["lab", "home"] as const) {
      it(`hosts/${stack}: every advertised route (and exit node) of every router is approved by headscale itself`, async () => {
        const r = await approvalsFor(stack, hv);
        expect(r.length, "no host of this fleet advertises a route: nothing was tested").toBeGreaterThan(0);
        for (const x of r) expect(x.approved, `${stack}/${x.host} advertises ${x.advertised.join(", ")}; headscale approved ${x.approved.join(", ") || "nothing"} (${x.log})`).toEqual(x.advertised);
      }, 120_000);
    }
  });
}
