/**
 * In-process host for unit tests of agent/plan.ts and agent/activate.ts:
 * the real Host (realHost) on a temp root, so files, /proc/sys (plain files
 * there), backups and the state folder are the agent's real code on a real
 * filesystem; only the programs (nft, systemctl, tailscale, run) are answered
 * here, each call recorded. What those programs do for real is proved by
 * test/agent/real.test.ts and the tailscale/nft real tests.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { realHost, type Host, type RunResult } from "../../agent/host.ts";
import { State } from "../../agent/state.ts";
import { afterAll } from "vitest";

const roots: string[] = [];
afterAll(() => {
  for (const r of roots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
});

export interface Sim {
  root: string;
  host: Host;
  state: State;
  /** Every program call, as "prog arg arg". */
  calls: string[];
  /** The live meshfleet table as `nft -s list` prints it; null when absent. */
  nft: string | null;
  /** What `nft -f` was last given (the script's text). */
  nftLoaded: string | null;
  /** The last peer-set script `nft -f` was given. */
  peerScript: string | null;
  /** Make the next `nft -f` fail with this stderr. */
  nftError: string | null;
  active: Set<string>;
  enabled: Set<string>;
  /** Units whose restart (or enable) fails. */
  failUnits: Set<string>;
  /** systemctl verbs that fail for every unit (e.g. "stop"). */
  failVerbs: Set<string>;
  /** BackendState that `tailscale status --json` reports; null: prints no JSON. */
  backendState: string | null;
  tailscaleCode: number;
  /** Results of host.run by argv[0]; default success. */
  runResults: Map<string, Partial<RunResult>>;
  /** Called on each host.run before its result is returned (e.g. systemd-sysusers making users). */
  onRun: ((argv: string[], opts?: { timeoutMs?: number }) => void) | null;
  /** Sysctl keys whose write throws. */
  sysctlRejects: Set<string>;
}

const ok = (stdout = ""): RunResult => ({ code: 0, stdout, stderr: "", timedOut: false });

export function simRoot(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "mf-sim-"));
  roots.push(root);
  return root;
}

export function sim(root = simRoot()): Sim {
  const real = realHost(root);
  const s: Sim = {
    root,
    host: real,
    state: undefined as unknown as State,
    calls: [],
    nft: null,
    nftLoaded: null,
    nftError: null,
    peerScript: null,
    active: new Set(),
    enabled: new Set(),
    failUnits: new Set(),
    failVerbs: new Set(),
    backendState: "Running",
    tailscaleCode: 0,
    runResults: new Map(),
    sysctlRejects: new Set(),
    onRun: null,
  };
  const host: Host = {
    ...real,
    run(argv, opts) {
      s.calls.push(argv.join(" "));
      s.onRun?.(argv, opts);
      const r = s.runResults.get(argv[0]);
      return { ...ok(), ...r };
    },
    writeSysctl(key, value) {
      if (s.sysctlRejects.has(key)) throw new Error(`EACCES: permission denied, open '/proc/sys/${key.replace(/\./g, "/")}'`);
      real.writeSysctl(key, value);
    },
    nftApply(file) {
      s.calls.push(`nft -f ${file}`);
      if (s.nftError !== null) return { code: 1, stdout: "", stderr: s.nftError, timedOut: false };
      const text = fs.readFileSync(file, "utf8");
      // A peer-set script (flush set / add element) leaves the table as it is.
      if (!text.startsWith("table inet meshfleet {}\n")) {
        s.peerScript = text;
        return ok();
      }
      s.nftLoaded = text;
      // The agent's script: create-if-missing, delete, then the table (or nothing when the firewall is off).
      const body = text.split("\n").slice(2).join("\n").trim();
      s.nft = body ? body + "\n" : null;
      return ok();
    },
    nftList() {
      s.calls.push("nft -s list table inet meshfleet");
      return s.nft;
    },
    systemctl(args) {
      s.calls.push(`systemctl ${args.join(" ")}`);
      const [verb, unit] = args;
      // One line per unit, as systemctl prints them.
      const units = args.slice(1);
      if (verb === "is-active") return { code: units.some((u) => s.active.has(u)) ? 0 : 3, stdout: units.map((u) => (s.active.has(u) ? "active\n" : "inactive\n")).join(""), stderr: "", timedOut: false };
      if (verb === "is-enabled") return { code: units.some((u) => s.enabled.has(u)) ? 0 : 1, stdout: units.map((u) => (s.enabled.has(u) ? "enabled\n" : "disabled\n")).join(""), stderr: "", timedOut: false };
      if (s.failVerbs.has(verb) || ((verb === "restart" || verb === "enable") && s.failUnits.has(unit)))
        return { code: 1, stdout: "", stderr: `Job for ${unit} failed.\nSee "systemctl status ${unit}" for details.`, timedOut: false };
      if (verb === "enable") s.enabled.add(unit);
      if (verb === "disable") s.enabled.delete(unit);
      if (verb === "restart") s.active.add(unit);
      if (verb === "stop") s.active.delete(unit);
      return ok();
    },
    tailscale(args, timeoutMs) {
      s.calls.push(`tailscale ${args.join(" ")}`);
      void timeoutMs;
      if (args[0] === "status") {
        if (s.backendState === null) return { code: 1, stdout: "failed to connect to local tailscaled\n", stderr: "", timedOut: false };
        return { code: s.backendState === "Running" ? 0 : 1, stdout: JSON.stringify({ BackendState: s.backendState, Peer: {} }), stderr: "", timedOut: false };
      }
      if (s.tailscaleCode !== 0) return { code: s.tailscaleCode, stdout: "", stderr: "backend error: invalid key: unable to validate API key", timedOut: false };
      return ok();
    },
  };
  s.host = host;
  s.state = new State(host);
  return s;
}

/** Put a file under the sim root (host path), making folders. */
export function put(s: Sim, hostPath: string, content: string, mode = 0o644): void {
  const p = path.join(s.root, hostPath);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  fs.chmodSync(p, mode);
}

export function get(s: Sim, hostPath: string): string | null {
  try {
    return fs.readFileSync(path.join(s.root, hostPath), "utf8");
  } catch {
    return null;
  }
}
