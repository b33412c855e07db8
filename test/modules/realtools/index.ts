/**
 * Run the real programs that read meshfleet's rendered files (caddy, nginx,
 * headscale) against them, in a temp dir, and report {ok, output}.
 * A missing program skips the test with a reason, unless
 * MESHFLEET_REQUIRE_TOOLS is set (CI), where it fails instead.
 */
import { execa } from "execa";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { skipUnlessCi } from "../../lab/ci-gate.ts";
import { loadVersions } from "../../../lab/tools/versions.ts";
import { evaluateFleet, formatDiagnostics } from "../../../core/index.ts";
import type { FleetSystem } from "../../../core/types.ts";
import { REGISTRY } from "../../../modules/index.ts";

export interface ToolResult {
  ok: boolean;
  /** stdout + stderr, for the assertion message. */
  output: string;
  exitCode?: number;
}

const toolsDir = () => process.env.MESHFLEET_TOOLS_DIR ?? join(homedir(), ".cache", "meshfleet", "tools");

/**
 * The headscale version matrix (issue 18 item 3): the pinned release and the
 * newest of the minor before it, each a tool of lab/versions.json that
 * `meshfleet tools build` builds. "headscale" is the pinned one.
 */
export const HEADSCALE_MATRIX = (["headscale", "headscale-0.28"] as const).map((tool) => {
  const t = loadVersions().tools.find((x) => x.name === tool);
  if (!t) throw new Error(`lab/versions.json: tools.${tool}: expected a pinned headscale for the version matrix, found none`);
  return { tool, version: t.version };
});
export type HeadscaleTool = (typeof HEADSCALE_MATRIX)[number]["tool"];
const headscaleAt = (tool: HeadscaleTool) => join(toolsDir(), `${tool}@${HEADSCALE_MATRIX.find((m) => m.tool === tool)!.version}`, "bin", "headscale");

/** Absolute path of a tool, or null if it is not installed. */
export function toolPath(name: "caddy" | "nginx" | "openssl" | "derper" | HeadscaleTool): string | null {
  const candidates: Record<string, string[]> = {
    caddy: ["/usr/bin/caddy"],
    nginx: ["/usr/sbin/nginx"],
    openssl: ["/usr/bin/openssl"],
    headscale: [headscaleAt("headscale")],
    "headscale-0.28": [headscaleAt("headscale-0.28")],
    derper: [join(toolsDir(), "tailscale@1.98.10", "bin", "derper")],
  };
  return candidates[name].find((p) => existsSync(p)) ?? null;
}

/** For `it.skipIf(...)`: a reason to skip, or "" to run. Throws when tools are required. */
export function missing(...names: Parameters<typeof toolPath>[0][]): string {
  const gone = names.filter((n) => toolPath(n) === null);
  if (gone.length === 0) return "";
  const why = `${gone.join(", ")} ${gone.length > 1 ? "are" : "is"} not installed (apt-get install caddy nginx openssl; \`meshfleet tools build\` builds headscale, headscale-0.28 and derper into ${toolsDir()})`;
  return skipUnlessCi(why) ? `skipped: ${why}` : "";
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `meshfleet-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

async function run(file: string, args: string[], env: Record<string, string> = {}, cwd?: string): Promise<ToolResult> {
  const r = await execa(file, args, { reject: false, all: true, env: { ...process.env, ...env }, cwd, timeout: 60_000 });
  return { ok: r.exitCode === 0 && !r.timedOut, output: `${file} ${args.join(" ")}\n${r.all ?? ""}`, exitCode: r.exitCode };
}

/** `caddy validate` with a private HOME/XDG so it touches nothing of the machine's. */
export async function caddyValidate(caddyfile: string): Promise<ToolResult> {
  const t = tempDir("caddy");
  try {
    const f = join(t.dir, "Caddyfile");
    writeFileSync(f, caddyfile);
    return await run(toolPath("caddy")!, ["validate", "--config", f, "--adapter", "caddyfile"], {
      HOME: t.dir, XDG_DATA_HOME: join(t.dir, "data"), XDG_CONFIG_HOME: join(t.dir, "config"),
    });
  } finally {
    t.cleanup();
  }
}

/** A self-signed certificate for nginx -t (which loads the files it names). */
export async function selfSignedCert(dir: string, cn: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const r = await run(toolPath("openssl")!, [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", `/CN=${cn}`, "-keyout", key, "-out", cert,
  ]);
  if (!r.ok) throw new Error(r.output);
  return { cert, key };
}

/**
 * `nginx -t` with the file included inside `http {}` of a wrapper main
 * config, the way Debian's nginx.conf includes conf.d/*.conf. Prefix, pid,
 * error log and temp paths live in a temp dir, so no root paths are needed.
 */
/** Whether this machine's nginx (`nginx -v`: "nginx version: nginx/1.22.1") is at least `want`. */
export async function localNginxAtLeast(want: string): Promise<boolean> {
  const r = await execa("nginx", ["-v"], { reject: false, all: true });
  const m = /nginx\/(\d+)\.(\d+)\.(\d+)/.exec(r.all ?? "");
  if (!m) throw new Error(`nginx -v printed no version: ${r.all}`);
  const have = m.slice(1, 4).map(Number);
  const w = want.split(".").map(Number);
  for (let i = 0; i < 3; i++) if (have[i] !== w[i]) return have[i]! > w[i]!;
  return true;
}

/**
 * A config rendered for nginx >= 1.25.1 (`http2 on;`, as for hosts/home's pinned
 * nginx 1.28 image), made readable by an older nginx on this machine: HTTP/2
 * said the way nginx < 1.25.1 says it (`listen ... ssl http2`), the form the
 * module renders for those versions (test/modules/reverse-proxy-acme.test.ts
 * holds it to that). Everything else is left for the real `nginx -t` to check.
 */
export async function forLocalNginx(conf: string): Promise<string> {
  if (!/^\s*http2 on;$/m.test(conf) || (await localNginxAtLeast("1.25.1"))) return conf;
  const out = conf.replace(/^\s*http2 on;\n/m, "").replace(/^(\s*listen\s+\S+\s+ssl);$/gm, "$1 http2;");
  if (/\bhttp2 on;/.test(out) || !/ ssl http2;/.test(out)) throw new Error("forLocalNginx: the config's HTTP/2 lines are not the shape it knows");
  return out;
}

export async function nginxTest(confD: string, dir: string): Promise<ToolResult> {
  mkdirSync(join(dir, "conf.d"), { recursive: true });
  const inc = join(dir, "conf.d", "meshfleet-headscale.conf");
  writeFileSync(inc, confD);
  const main = [
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log;`,
    "events {}",
    "http {",
    `    access_log ${dir}/access.log;`,
    `    client_body_temp_path ${dir}/body;`,
    `    proxy_temp_path ${dir}/proxy;`,
    `    fastcgi_temp_path ${dir}/fastcgi;`,
    `    uwsgi_temp_path ${dir}/uwsgi;`,
    `    scgi_temp_path ${dir}/scgi;`,
    `    include ${dir}/conf.d/*.conf;`,
    "}",
    "",
  ].join("\n");
  const f = join(dir, "nginx.conf");
  writeFileSync(f, main);
  return run(toolPath("nginx")!, ["-t", "-p", dir, "-c", f, "-e", join(dir, "error.log")]);
}

/** Rewrite the absolute paths of a rendered headscale config into `dir`. */
export function relocateHeadscale(text: string, dir: string): string {
  return text
    .replaceAll("/etc/headscale/", `${dir}/etc/`)
    .replaceAll("/var/lib/headscale/", `${dir}/lib/`)
    .replaceAll("/var/run/headscale/", `${dir}/run/`);
}

export interface HeadscaleFiles {
  config: string;
  policy: string;
  derpMap?: string;
  noiseKey: string;
  derpKey?: string;
}

/** Lay the files out under `dir` (paths relocated) and return the config path. */
export function layoutHeadscale(dir: string, f: HeadscaleFiles): string {
  for (const d of ["etc", "lib", "run"]) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
  const cfg = join(dir, "etc", "config.yaml");
  writeFileSync(cfg, relocateHeadscale(f.config, dir));
  writeFileSync(join(dir, "etc", "policy.hujson"), f.policy);
  if (f.derpMap !== undefined) writeFileSync(join(dir, "etc", "derp.yaml"), f.derpMap);
  writeFileSync(join(dir, "lib", "noise_private.key"), f.noiseKey + "\n", { mode: 0o600 });
  if (f.derpKey !== undefined) writeFileSync(join(dir, "lib", "derp_server_private.key"), f.derpKey + "\n", { mode: 0o600 });
  return cfg;
}

/** `headscale configtest`, by the pinned headscale or another of the matrix. */
export async function headscaleConfigtest(configPath: string, tool: HeadscaleTool = "headscale"): Promise<ToolResult> {
  return run(toolPath(tool)!, ["configtest", "-c", configPath]);
}

/**
 * `headscale policy check`. 0.29 resolves users from the config's database
 * (--bypass...); 0.28's takes no config (`-c` is an unknown flag there) and
 * checks the policy against no users and no nodes.
 */
export async function headscalePolicyCheck(configPath: string, policyPath: string, tool: HeadscaleTool = "headscale"): Promise<ToolResult> {
  if (HEADSCALE_MATRIX.find((m) => m.tool === tool)!.version.startsWith("0.28.")) return run(toolPath(tool)!, ["policy", "check", "-f", policyPath]);
  return run(toolPath(tool)!, [
    "policy", "check", "-c", configPath, "-f", policyPath, "--bypass-grpc-and-access-database-directly", "--force",
  ]);
}

/**
 * A rendered headscale config.yaml laid out under `dir` to serve on loopback:
 * its three listeners on free ports, a one-region DERP map that no client
 * uses, an allow-all policy. Returns the config path and the HTTP port.
 */
export async function loopbackHeadscale(dir: string, configYaml: string, noiseKey: string, o: { policy?: string; derpMap?: string } = {}): Promise<{ cfg: string; http: number }> {
  const [http, metrics, grpc] = [await freePort(), await freePort(), await freePort()];
  const config = configYaml
    .replace("listen_addr: 127.0.0.1:8080", `listen_addr: 127.0.0.1:${http}`)
    .replace("metrics_listen_addr: 127.0.0.1:9090", `metrics_listen_addr: 127.0.0.1:${metrics}`)
    .replace("grpc_listen_addr: 127.0.0.1:50443", `grpc_listen_addr: 127.0.0.1:${grpc}`)
    // headscale will not start without a DERP region: a config with none gets a local one it never dials.
    .replace("  paths: []", "  paths:\n    - /etc/headscale/derp.yaml");
  const derpMap = o.derpMap ?? "regions:\n  900:\n    regionid: 900\n    regioncode: t\n    regionname: t\n    nodes:\n      - {name: '1', regionid: 900, hostname: 127.0.0.1, ipv4: 127.0.0.1, stunport: -1, derpport: 9}\n";
  const policy = o.policy ?? `{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}\n`;
  return { cfg: layoutHeadscale(dir, { config, policy, noiseKey, derpMap }), http };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/**
 * Start `headscale serve` on loopback ports only, wait for /health, hand the
 * metrics/debug base URL to `probe`, and stop it (by its own pid).
 */
export async function withHeadscaleServing<T>(
  configPath: string,
  metricsBase: string,
  healthUrl: string,
  probe: () => Promise<T>,
): Promise<{ result?: T; output: string; ok: boolean }> {
  const child = execa(toolPath("headscale")!, ["serve", "-c", configPath], { reject: false, all: true, timeout: 60_000 });
  let output = "";
  child.all?.on("data", (d: Buffer) => (output += d.toString()));
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) return { ok: false, output };
      try {
        const r = await fetch(healthUrl);
        if (r.status === 200) break;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) return { ok: false, output: output + "\n(timed out waiting for /health)" };
      await new Promise((r) => setTimeout(r, 200));
    }
    void metricsBase;
    return { ok: true, result: await probe(), output };
  } finally {
    child.kill("SIGTERM");
    await child;
  }
}

/** What `headscale version` says its release is ("headscale version v0.28.0" -> "0.28.0"), or the whole output. */
export async function headscaleVersionOf(tool: HeadscaleTool): Promise<string> {
  const r = await run(toolPath(tool)!, ["version"]);
  return /headscale version v(\d+\.\d+\.\d+\S*)/.exec(r.output)?.[1] ?? r.output;
}

/**
 * hosts/<stack> evaluated with fleet.yaml's coordinator.headscaleVersion set to
 * `headscaleVersion` (a copy in a temp dir; the rest of the fleet as it is), so
 * the coordinator's files are rendered for that release. Any error fails.
 */
export async function evaluateStackAt(stack: "home" | "lab", headscaleVersion: string): Promise<FleetSystem> {
  const t = tempDir(`fleet-${stack}`);
  try {
    const dir = join(t.dir, stack);
    cpSync(join(import.meta.dirname, "..", "..", "..", "hosts", stack), dir, { recursive: true });
    const f = join(dir, "fleet.yaml");
    const text = readFileSync(f, "utf8");
    const pinned = text.replace(/^(  headscaleVersion: )\S+$/m, `$1${headscaleVersion}`);
    if (!/^  headscaleVersion: /m.test(text)) throw new Error(`hosts/${stack}/fleet.yaml: coordinator.headscaleVersion: expected a pinned release to replace, found none`);
    writeFileSync(f, pinned);
    const r = await evaluateFleet(REGISTRY, dir, stack);
    if (!r.fleet || r.diagnostics.some((d) => d.severity === "error")) throw new Error(`hosts/${stack} with headscale ${headscaleVersion} did not evaluate:\n${formatDiagnostics(r.diagnostics)}`);
    return r.fleet as FleetSystem;
  } finally {
    t.cleanup();
  }
}
