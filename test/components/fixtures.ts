/**
 * Fleets for the component tests, evaluated by the real loader and modules
 * from hosts/<stack>, and a simulated headscale/agent for the mock engine.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { EXIT_ROUTES } from "../../components/headscaleCli.ts";
import type { Responder } from "./harness.ts";

export const REPO = join(import.meta.dirname, "..", "..");

export interface EvaluatedFleet {
  fleet: FleetSystem;
  /** The directory that was evaluated. */
  dirUsed: string;
}

/** hosts/<stack> through the real loader and modules; any error diagnostic fails the test with its text. */
export async function evaluateStack(stack: "home" | "lab"): Promise<EvaluatedFleet> {
  const dir = join(REPO, "hosts", stack);
  const r = await evaluateFleet(dir);
  if (!r.fleet || r.diagnostics.some((d) => d.severity === "error")) throw new Error(`hosts/${stack} did not evaluate:\n${formatDiagnostics(r.diagnostics)}`);
  return { fleet: r.fleet, dirUsed: dir };
}

/** A stand-in agent bundle (the real one is built by `npm run build:agent`). */
export function fakeAgentFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "meshfleet-agent-"));
  const p = join(dir, "meshfleet-agent.mjs");
  writeFileSync(p, "// test stand-in for the bundled agent\n");
  return p;
}

export const KEY_SEED = "test-seed-0123456789abcdef-not-a-real-one";
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
  const respond: Responder = ({ type, name, inputs }) => {
    if (type !== "command:remote:Command") return undefined;
    const create = String(inputs.create ?? "");
    let m: RegExpExecArray | null;
    if ((m = /users create (\S+) -o json/.exec(create))) {
      const id = users.get(m[1]) ?? users.size + 1;
      users.set(m[1], id);
      return { stdout: json({ id, name: m[1], created_at: { seconds: 1 } }) };
    }
    if (/preauthkeys create/.test(create)) {
      const key = `hskey-auth-${randomBytes(12).toString("hex")}`;
      const uid = /-u (\d+)/.exec(create)?.[1];
      keys.set(name, key);
      return { stdout: json({ ...(uid ? { user: { id: Number(uid), name: "alice" } } : {}), id: ++keyId, key, reusable: /--reusable/.test(create), acl_tags: /--tags (\S+)/.exec(create)?.[1].split(",") }) };
    }
    if (/nodes list -o json/.test(create)) return { stdout: json(nodes()) };
    if (/users list -o json/.test(create)) return { stdout: "ready" };
    if (/ status --json$/.test(create)) return { stdout: json({ host: "h", generation: 2, hash: "abc", pendingConfirm: null, lastSwitch: { generation: 2, success: true } }) };
    if (/pct status/.test(create)) return { stdout: "status: running" };
    return { stdout: "" };
  };
  return { respond, keys, users };
}
