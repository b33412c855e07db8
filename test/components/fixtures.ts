/**
 * Fleets for the component tests, evaluated by the real loader and modules
 * from hosts/<stack>, and a simulated headscale/agent for the mock engine.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { EXIT_ROUTES } from "../../components/headscaleCli.ts";
import type { Responder } from "./harness.ts";
import { scratchDir } from "../scratch.ts";

export const REPO = join(import.meta.dirname, "..", "..");

export interface EvaluatedFleet {
  fleet: FleetSystem;
  /** The directory that was evaluated. */
  dirUsed: string;
}

/** hosts/<stack> through the real loader and modules; any error diagnostic fails the test with its text. */
export async function evaluateStack(stack: "home" | "lab"): Promise<EvaluatedFleet> {
  const dir = join(REPO, "hosts", stack);
  const r = await evaluateFleet(REGISTRY, dir);
  if (!r.fleet || r.diagnostics.some((d) => d.severity === "error")) throw new Error(`hosts/${stack} did not evaluate:\n${formatDiagnostics(r.diagnostics)}`);
  return { fleet: r.fleet, dirUsed: dir };
}

/** A stand-in agent bundle (the real one is built by `npm run build:agent`). */
export function fakeAgentFile(): string {
  const dir = scratchDir("meshfleet-agent-");
  const p = join(dir, "meshfleet-agent.mjs");
  writeFileSync(p, "// test stand-in for the bundled agent\n");
  return p;
}

export const KEY_SEED = "bWVzaGZsZWV0LXRlc3Qtc2VlZC1ub3QtYS1zZWNyZXQ="; // base64 of a 32-byte test string, not a secret

/** A stand-in host key per name (shaped like an ed25519 public key). */
export const hostKeyOf = (name: string) => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${Buffer.from(name.padEnd(24, "-")).toString("base64").replace(/=+$/, "")}`;

/**
 * A known_hosts file pinning every agent host of the fleet and the Proxmox
 * nodes, as `meshfleet pin` records it; `hashed` hosts are written as
 * hashed entries (`ssh-keygen -H`), which only `ssh-keygen -F` can match.
 */
export function knownHostsFile(fleet: FleetSystem, o: { hashed?: string[]; leaveOut?: string[] } = {}): string {
  const dir = scratchDir("meshfleet-known-");
  const lines: string[] = [];
  const entry = (address: string, port: number, key: string) => `${port === 22 ? address : `[${address}]:${port}`} ${key}`;
  for (const h of Object.values(fleet.hosts)) {
    if (!h.agent || o.leaveOut?.includes(h.name)) continue;
    lines.push(entry(h.address, h.ssh.port, hostKeyOf(h.name)));
    if (h.lxc) {
      const node = h.lxc.proxmoxHost.replace(/^.*@/, "");
      lines.push(entry(node, 22, hostKeyOf(`pve-${node}`)));
    }
  }
  const plain = join(dir, "known_hosts");
  writeFileSync(plain, [...new Set(lines)].join("\n") + "\n");
  for (const name of o.hashed ?? []) {
    const h = fleet.hosts[name];
    // ssh-keygen -H hashes every entry of a file: hash a one-line file and put it in place of the plain line.
    const one = join(dir, `one-${name}`);
    writeFileSync(one, entry(h.address, h.ssh.port, hostKeyOf(h.name)) + "\n");
    execFileSync("ssh-keygen", ["-H", "-f", one], { stdio: "ignore" });
    const hashed = readFileSync(one, "utf8").trim();
    writeFileSync(plain, readFileSync(plain, "utf8").replace(entry(h.address, h.ssh.port, hostKeyOf(h.name)), hashed));
  }
  return plain;
}
export { SSH_KEY } from "../fixtures/keys.ts";

export interface FakeHeadscale {
  respond: Responder;
  /** Keys handed out, by the resource that asked (the simulated `preauthkeys create`). */
  keys: Map<string, string>;
  users: Map<string, number>;
}

/**
 * headscale 0.29 as the CLI answers (`-o json` is tab-indented JSON), with
 * route approval from the fleet's autoApprovers; `deny` drops approvals.
 */
export function fakeHeadscale(fleet: FleetSystem, opts: { deny?: { host: string; route: string }[] } = {}): FakeHeadscale {
  const users = new Map<string, number>();
  const keys = new Map<string, string>();
  let keyId = 0;
  const json = (v: unknown) => JSON.stringify(v, null, "\t");
  const nodes = () =>
    Object.values(fleet.hosts)
      .filter((h) => h.tailscale.enable)
      .map((h, i) => {
        const t = h.tailscale;
        const owners = [...t.tags, ...(t.tags.length ? [] : ["alice@"])];
        const available = [...t.advertiseRoutes, ...(t.advertiseExitNode ? EXIT_ROUTES : [])];
        const approved = available.filter((r) => {
          if (opts.deny?.some((d) => d.host === h.name && d.route === r)) return false;
          const by = EXIT_ROUTES.includes(r as never) ? fleet.autoApprovers.exitNode : (fleet.autoApprovers.routes[r] ?? []);
          return by.some((o) => owners.includes(o));
        });
        return { id: i + 1, name: t.hostname || h.name, given_name: t.hostname || h.name, tags: t.tags, available_routes: available, approved_routes: approved, subnet_routes: approved };
      });
  // What meshfleet's provider answers for each resource type (its logic is proved in test/provider).
  const respond: Responder = ({ type, name, inputs }) => {
    switch (type) {
      case "meshfleet:headscale:User": {
        const id = users.get(inputs.name) ?? users.size + 1;
        users.set(inputs.name, id);
        return { userId: id };
      }
      case "meshfleet:headscale:PreAuthKey": {
        const key = `hskey-auth-${randomBytes(12).toString("hex")}`;
        keys.set(name, key);
        return { key, keyId: ++keyId, expired: false };
      }
      case "meshfleet:headscale:RouteApproval": {
        // (The provider fails the resource when a declared route is not approved: test/provider/headscale.test.ts.)
        const node = nodes().find((n) => n.given_name === inputs.hostname)!;
        return { nodeId: node.id, approvedRoutes: [...node.approved_routes].sort() };
      }
      case "meshfleet:headscale:Ready":
        return { state: "serving" };
      case "meshfleet:host:Generation":
        return { generation: 2, status: json({ host: inputs.host, generation: 2, hash: inputs.hash, pendingConfirm: null, lastSwitch: { generation: 2, success: true } }), drift: [] };
      case "meshfleet:host:ServiceCheck":
        return { states: Object.fromEntries((inputs.units as string[]).map((u) => [u, "active"])) };
      case "meshfleet:host:File":
        return { liveSha256: inputs.sha256 };
      case "meshfleet:proxmox:Container":
        return { status: "status: running", missingConfig: [] };
      default:
        return undefined;
    }
  };
  return { respond, keys, users };
}
