/**
 * Test helpers: build the real bundled agent once, run it against a temp
 * root (files, /proc/sys as plain files, state) with stand-ins for nft,
 * systemctl and tailscale on PATH that keep their state under the root.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { bundleHash, sha256, type Bundle, type BundleFile, type Firewall, type NftRule, type TailscaleConfig } from "../../contract/bundle.ts";
import { emptyBundle } from "../../agent/state.ts";
import { afterAll, afterEach } from "vitest";

// The agent runs through spawnSync, so a file of such tests never gives the
// worker's event loop a turn: vitest's own messages wait, and under load its
// 60 s RPC timeout fires ("Timeout calling onTaskUpdate"). One turn per test.
afterEach(() => new Promise<void>((resolve) => setImmediate(resolve)));

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "../..");
/** MESHFLEET_TEST_AGENT runs the tests against another build (e.g. an older agent, to see an attack test fail on it). */
export const AGENT = process.env.MESHFLEET_TEST_AGENT ?? path.join(REPO, "dist", "meshfleet-agent.mjs");
const FAKEBIN = path.join(HERE, "fakebin");

let built = false;
export function buildAgent(): string {
  if (!built && !process.env.MESHFLEET_TEST_AGENT) {
    execFileSync(process.execPath, [path.join(REPO, "agent", "build.mjs")], { stdio: "pipe" });
    built = true;
  }
  return AGENT;
}

// Every temp root a test file made goes when the file's tests are done, with
// the files written beside it (`<root>-…`: bundles the agent must not see in
// its root). MESHFLEET_KEEP_TMP=1 keeps them, to look at a failure.
const roots: string[] = [];
afterAll(() => {
  if (process.env.MESHFLEET_KEEP_TMP === "1") return;
  for (const r of roots.splice(0)) {
    const beside = fs.readdirSync(path.dirname(r)).filter((n) => n.startsWith(`${path.basename(r)}-`));
    for (const p of [r, ...beside.map((n) => path.join(path.dirname(r), n))]) fs.rmSync(p, { recursive: true, force: true });
  }
});

export function tempRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "mf-agent-"));
  fs.mkdirSync(path.join(root, "sim"));
  roots.push(root);
  return root;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function agent(root: string, args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [AGENT, ...args], {
    encoding: "utf8",
    env: {
      ...process.env,
      PATH: `${FAKEBIN}:${process.env.PATH}`,
      MESHFLEET_ROOT: root,
      MESHFLEET_GUARD: "detached",
      MESHFLEET_PROBE_DEADLINE_MS: "1500",
      ...env,
    },
    timeout: 60_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function file(p: string, content: string, extra: Partial<BundleFile> = {}): BundleFile {
  return { path: p, mode: "0644", owner: "root", group: "root", sha256: sha256(content), content, secret: false, ...extra };
}

type UnitIn = Omit<Bundle["units"][number], "restartTriggers"> & { restartTriggers?: string[] };

/** A sealed bundle from the agent's own empty one; units may leave out restartTriggers ([]). */
export function bundle(parts: Partial<Omit<Bundle, "hash" | "format" | "units">> & { units?: UnitIn[] } = {}): Bundle {
  const { hash: _none, ...empty } = emptyBundle("testhost");
  const { hash: _old, format: _f, ...rest } = parts as Partial<Bundle>;
  const units = (parts.units ?? []).map((u) => ({ ...u, restartTriggers: u.restartTriggers ?? [] }));
  const body: Omit<Bundle, "hash"> = { ...empty, ...rest, units };
  return { ...body, hash: bundleHash(body) };
}

export function writeBundle(root: string, b: Bundle, name = `bundle-${b.hash.slice(0, 8)}.json`): string {
  const p = path.join(root, "..", `${path.basename(root)}-${name}`);
  fs.writeFileSync(p, JSON.stringify(b));
  return p;
}

/** Every file under root except the sim dir, with content: a snapshot to prove "nothing changed". */
export function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (p === path.join(root, "sim", "calls.log")) continue;
      if (e.isSymbolicLink()) out[path.relative(root, p)] = `-> ${fs.readlinkSync(p)}`;
      else if (e.isDirectory()) walk(p);
      else out[path.relative(root, p)] = fs.readFileSync(p, "utf8");
    }
  };
  walk(root);
  return out;
}

export const read = (root: string, p: string): string | null => {
  try {
    return fs.readFileSync(path.join(root, p), "utf8");
  } catch {
    return null;
  }
};

/** The agent's nft table with one input chain holding `rules`. */
export function nftTable(rules: NftRule[], sets: Firewall["sets"] = []): Firewall {
  return {
    family: "inet",
    table: "meshfleet",
    sets,
    chains: [{ name: "input", hook: { type: "filter", hook: "input", priority: "filter", policy: "accept" }, rules }],
  };
}

/** A subnet router's tailscale settings (routes 192.168.8.0/24), with `over` on top. */
export function tailscaleConfig(over: Partial<TailscaleConfig> = {}): TailscaleConfig {
  return {
    loginServer: "https://hs.example.test",
    authKeyFile: "/etc/meshfleet/tailscale-authkey",
    hostname: "router",
    cli: "tailscale",
    tags: ["tag:router"],
    routes: ["192.168.8.0/24"],
    exitNode: false,
    acceptRoutes: false,
    acceptDns: true,
    ssh: false,
    snatSubnetRoutes: true,
    netfilterMode: "on",
    extraUpFlags: [],
    ...over,
  };
}
