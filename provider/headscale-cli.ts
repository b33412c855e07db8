/**
 * The headscale CLI as meshfleet drives it (headscale 0.29.2): argv builders,
 * the parsers for its `-o json` output, and the route-approval check. Pure:
 * the provider's headscale resources run these on the coordinator over SSH.
 *
 * JSON facts (cmd/headscale/cli/utils.go): `-o json` is Go's
 * json.MarshalIndent of the protobuf structs with tab indentation, snake_case
 * keys, empty fields omitted, uint64 ids as numbers.
 */
import { personDevice } from "../core/policy/live.ts";
import { shArgv, shq } from "./quote.ts";

type Runtime = "docker" | "systemd";

/** What the fleet asks of a pre-auth key (core PreAuthKeyRequest's fields the CLI reads). */
export interface PreAuthKeyFlags {
  reusable: boolean;
  ephemeral: boolean;
  expiration: string;
  tags: string[];
}

/** Where the headscale CLI runs on the coordinator. */
export interface HeadscaleCli {
  runtime: Runtime;
  /**
   * Docker runtime: the container the CLI runs in (`docker exec <container> headscale ...`).
   * @default "headscale"
   */
  container?: string;
  /**
   * Systemd runtime: the headscale binary on the host.
   * @default "headscale"
   */
  binary?: string;
}

export function headscaleArgv(cli: HeadscaleCli, args: readonly string[]): string[] {
  return cli.runtime === "docker"
    ? ["docker", "exec", cli.container ?? "headscale", "headscale", ...args]
    : [cli.binary ?? "headscale", ...args];
}

export function headscaleCommand(cli: HeadscaleCli, args: readonly string[]): string {
  return shArgv(headscaleArgv(cli, args));
}

/**
 * Make headscale reload its policy: SIGHUP (hscontrol/app.go), whose
 * ReloadPolicy then auto-approves every node's announced routes the policy
 * allows (state.go autoApproveNodes). A restart does not: a route announced
 * before the policy allowing it was loaded stays unapproved (headscale
 * approves on a Hostinfo change only) until such a reload.
 */
export function policyReloadArgv(cli: HeadscaleCli): string[] {
  return cli.runtime === "docker"
    ? ["docker", "kill", "--signal=HUP", cli.container ?? "headscale"]
    : // The main process only: while the unit starts or stops, its auxiliary processes (ExecStartPre) may be
      // past signalling, and systemctl kill then fails for them ("Input/output error").
      ["systemctl", "kill", "--kill-who=main", "--signal=HUP", "headscale.service"];
}

/** True when every problem of checkRouteApproval is a route the node announces and headscale has not approved. */
export function onlyUnapproved(problems: readonly string[]): boolean {
  return problems.length > 0 && problems.every((p) => p.includes("headscale did not approve it"));
}

// ---- users ----

export const usersCreateArgs = (name: string): string[] => ["users", "create", name, "-o", "json"];
// `--force` skips the interactive confirmation (cmd/headscale/cli/root.go); destroy also removes the user's pre-auth keys.
// By id: `--name` would find every user of that name (an OIDC login's too) and refuse when two match.
export const usersDestroyArgs = (id: number): string[] => ["users", "destroy", "--identifier", String(id), "--force"];

export interface HeadscaleUserInfo {
  id: number;
  name: string;
  /** `oidc` for a user an OpenID Connect login made (users list gives it; users create makes none). */
  provider?: string;
  email?: string;
}

/** Parse `users create NAME -o json`; throws a message naming the user on anything else. */
export function parseUserJson(stdout: string, user: string): HeadscaleUserInfo {
  const v = parseJson(stdout, `headscale users create ${user}`);
  const o = v as { id?: unknown; name?: unknown; error?: unknown };
  if (o && typeof o === "object" && typeof o.error === "string") throw new Error(`headscale users create ${user} failed: ${o.error}`);
  const id = typeof o?.id === "string" ? Number(o.id) : o?.id;
  if (typeof id !== "number" || !Number.isInteger(id) || id <= 0 || typeof o.name !== "string") {
    throw new Error(`headscale users create ${user}: expected JSON {id, name}, found ${clip(stdout)}`);
  }
  return { id, name: o.name };
}

// ---- pre-auth keys ----

/** `preauthkeys create` argv; a tags-only key (no user) is allowed by headscale 0.29. */
export function preAuthKeyCreateArgs(userId: number | undefined, req: PreAuthKeyFlags): string[] {
  const args = ["preauthkeys", "create"];
  if (userId !== undefined) args.push("-u", String(userId));
  if (req.reusable) args.push("--reusable");
  if (req.ephemeral) args.push("--ephemeral");
  args.push("-e", req.expiration);
  if (req.tags.length > 0) args.push("--tags", req.tags.join(","));
  args.push("-o", "json");
  return args;
}

export interface PreAuthKeyInfo {
  id: number;
  key: string;
}

/** Parse `preauthkeys create -o json`. The error text never includes the output (it holds the key). */
export function parsePreAuthKeyJson(stdout: string, host: string): PreAuthKeyInfo {
  let v: unknown;
  try {
    v = JSON.parse(stdout);
  } catch {
    throw new Error(`pre-auth key for ${host}: headscale did not print JSON (${stdout.length} bytes; output withheld, it may hold a key)`);
  }
  const o = v as { id?: unknown; key?: unknown; error?: unknown };
  if (typeof o?.error === "string") throw new Error(`pre-auth key for ${host}: headscale said: ${o.error}`);
  const id = typeof o?.id === "string" ? Number(o.id) : o?.id;
  if (typeof o?.key !== "string" || !o.key.startsWith("hskey-auth-") || typeof id !== "number") {
    throw new Error(`pre-auth key for ${host}: expected JSON {id, key: "hskey-auth-…"} from headscale preauthkeys create`);
  }
  return { id, key: o.key };
}

export const preAuthKeyExpireArgs = (id: number): string[] => ["preauthkeys", "expire", "--id", String(id), "-o", "json"];
export const preAuthKeysListArgs = (): string[] => ["preauthkeys", "list", "-o", "json"];

export interface PreAuthKeyListed {
  id: number;
  /** Unix seconds; Infinity when none. */
  expiresAt: number;
  used: boolean;
}

/** Parse `preauthkeys list -o json` (keys are masked there). */
export function parsePreAuthKeyList(stdout: string): PreAuthKeyListed[] {
  const v = parseJson(stdout, "headscale preauthkeys list");
  if (v !== null && !Array.isArray(v)) throw new Error(`headscale preauthkeys list: ${errorOf(v) ?? clip(stdout)}`);
  return ((v ?? []) as { id?: unknown; expiration?: { seconds?: unknown }; used?: unknown }[]).map((k) => ({
    id: Number(k.id),
    expiresAt: k.expiration?.seconds !== undefined ? Number(k.expiration.seconds) : Infinity,
    used: k.used === true,
  }));
}

export const usersListArgs = (): string[] => ["users", "list", "-o", "json"];

/** Parse `users list -o json`. */
export function parseUsersList(stdout: string): HeadscaleUserInfo[] {
  const v = parseJson(stdout, "headscale users list");
  if (v !== null && !Array.isArray(v)) throw new Error(`headscale users list: ${errorOf(v) ?? clip(stdout)}`);
  return ((v ?? []) as { id?: unknown; name?: unknown; provider?: unknown; email?: unknown }[]).map((u) => ({
    id: Number(u.id),
    name: String(u.name ?? ""),
    ...(typeof u.provider === "string" && u.provider !== "" ? { provider: u.provider } : {}),
    ...(typeof u.email === "string" && u.email !== "" ? { email: u.email } : {}),
  }));
}

function errorOf(v: unknown): string | undefined {
  const e = (v as { error?: unknown })?.error;
  return typeof e === "string" ? e : undefined;
}

/** A shell loop that returns once the headscale CLI reaches the server (gRPC on its unix socket). */
export function readyScript(cli: HeadscaleCli, host: string, timeoutSeconds: number): string {
  const probe = headscaleCommand(cli, usersListArgs());
  // By the clock (ms): against a headscale that is down each probe itself takes about 5 s, so counting
  // tries of 2 s ran three times longer than the timeout said. The last pause is cut to what is left,
  // so the wait ends at most one probe after the deadline.
  return [
    `now_ms() { echo $(( $(date +%s%N) / 1000000 )); }`,
    `end=$(( $(now_ms) + ${Math.max(1, Math.ceil(timeoutSeconds)) * 1000} ))`,
    `while :; do`,
    `  if ${probe} >/dev/null 2>&1; then echo ready; exit 0; fi`,
    `  left=$(( end - $(now_ms) ))`,
    `  [ "$left" -gt 0 ] || break`,
    `  if [ "$left" -gt 2000 ]; then sleep 2; else sleep "$(( left / 1000 )).$(( left % 1000 / 100 ))"; fi`,
    `done`,
    `echo ${shq(`meshfleet: headscale on ${host} did not answer within ${timeoutSeconds}s; check its log (journalctl -u headscale or docker logs headscale)`)} >&2`,
    `exit 1`,
  ].join("\n");
}

// ---- nodes and routes ----

export const nodesListArgs = (): string[] => ["nodes", "list", "-o", "json"];
/** Replaces the node's approved set (`-r ""` clears it); an exit route approves both 0.0.0.0/0 and ::/0. */
export const approveRoutesArgs = (id: number, routes: readonly string[]): string[] => ["nodes", "approve-routes", "-i", String(id), "-r", routes.join(",")];

export interface HeadscaleNode {
  id?: number | string;
  name?: string;
  given_name?: string;
  online?: boolean;
  /** The node key's expiry (unix seconds); absent or 0 when it never expires (a tagged node). */
  expiry?: { seconds?: number | string };
  tags?: string[];
  approved_routes?: string[];
  available_routes?: string[];
  subnet_routes?: string[];
  /** The owner; an OpenID Connect login has `provider: "oidc"` (tagged nodes show `tagged-devices`). */
  user?: { id?: number | string; name?: string; provider?: string; email?: string };
  /** How it joined: 1 a pre-auth key, 2 the CLI, 3 an OpenID Connect login (encoding/json: a number, absent when 0). */
  register_method?: number | string;
}

/**
 * The node of a fleet host: the newest registration (highest id; a reinstall
 * leaves several) named `hostname`, by given name or by the name it reported.
 * A fleet host joins with a pre-auth key meshfleet made for a fleet user or
 * for tags, so a person's device that logged in through OpenID Connect and
 * reports the same name (core/policy/live.ts personDevice) is not taken for
 * the host (its routes approved, its key taken as the host's). The matcher
 * behind route approval, key renewal, `status` and `doctor`.
 */
export function nodeOfHost(nodes: readonly HeadscaleNode[], hostname: string): HeadscaleNode | undefined {
  let best: HeadscaleNode | undefined;
  for (const n of nodes) {
    if (n.given_name !== hostname && n.name !== hostname) continue;
    if (personDevice(n)) continue;
    if (!best || Number(n.id ?? 0) > Number(best.id ?? 0)) best = n;
  }
  return best;
}

/** A person's OIDC device holding the name, when no fleet node does: what a "no node" message says about it. */
function personHolding(nodes: readonly HeadscaleNode[], hostname: string): string {
  const n = nodes.find((x) => (x.given_name === hostname || x.name === hostname) && personDevice(x));
  return n ? ` (node ${n.id ?? "?"} of that name is ${n.user?.email || n.user?.name || "a person"}'s device, logged in through OpenID Connect: not this host)` : "";
}

export interface RouteExpectation {
  /** The fleet host (named in every message). */
  host: string;
  /** The name the node registered with (`tailscale up --hostname`). */
  hostname: string;
  /** Subnet routes the fleet declares for it. */
  routes: string[];
  /** Whether it advertises itself as an exit node. */
  exitNode: boolean;
}

export const EXIT_ROUTES = ["0.0.0.0/0", "::/0"] as const;

/**
 * The routes a host should serve against what headscale approved (`nodes list
 * -o json`). Each problem names the host and route and says how to fix it;
 * empty means every declared route is approved.
 */
export function checkRouteApproval(nodesJson: string, want: RouteExpectation): string[] {
  const parsed = parseJson(nodesJson, "headscale nodes list");
  if (parsed !== null && !Array.isArray(parsed)) {
    const err = (parsed as { error?: unknown }).error;
    return [`host ${want.host}: headscale nodes list failed: ${typeof err === "string" ? err : clip(nodesJson)}`];
  }
  const nodes = (parsed ?? []) as HeadscaleNode[];
  const node = nodeOfHost(nodes, want.hostname);
  if (!node) {
    return [
      `host ${want.host}: no node named "${want.hostname}" is registered with headscale${personHolding(nodes, want.hostname)}, so its routes (${[...want.routes, ...(want.exitNode ? ["exit-node"] : [])].join(", ")}) cannot be approved; check that the agent ran \`tailscale up\` on ${want.host} (meshfleet-agent status)`,
    ];
  }
  const approved = new Set(node.approved_routes ?? []);
  const available = new Set(node.available_routes ?? []);
  const problems: string[] = [];
  const wanted = [...want.routes, ...(want.exitNode ? EXIT_ROUTES : [])];
  for (const route of wanted) {
    const label = EXIT_ROUTES.includes(route as (typeof EXIT_ROUTES)[number]) ? `exit-node route ${route}` : `route ${route}`;
    if (approved.has(route)) continue;
    if (!available.has(route)) {
      problems.push(
        `host ${want.host}: ${label} is declared in the fleet but the node does not announce it to headscale (available: ${list(available)}); check tailscale.${route.includes("/0") ? "advertiseExitNode" : "advertiseRoutes"} and the agent's \`tailscale set\` on ${want.host}`,
      );
    } else {
      problems.push(
        `host ${want.host}: ${label} is declared in the fleet but headscale did not approve it (approved: ${list(approved)}); make autoApprovers.${route.includes("/0") ? "exitNode" : `routes["${route}"]`} in the policy cover the node's owner or tags (${(node.tags ?? []).join(", ") || "no tags"}), then redeploy`,
      );
    }
  }
  return problems;
}

function list(s: Set<string>): string {
  return s.size ? [...s].join(", ") : "none";
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what}: expected JSON output, found ${clip(text)}`);
  }
}

function clip(s: string): string {
  const t = s.trim();
  return JSON.stringify(t.length > 200 ? `${t.slice(0, 200)}…` : t);
}

/** The live registration of a hostname (the newest, when a reinstall left several), or null. */
export function findNode(nodesJson: string, hostname: string): HeadscaleNode | null {
  const parsed = parseJson(nodesJson, "headscale nodes list");
  if (parsed !== null && !Array.isArray(parsed)) throw new Error(`headscale nodes list: ${errorOf(parsed) ?? clip(nodesJson)}`);
  return nodeOfHost((parsed ?? []) as HeadscaleNode[], hostname) ?? null;
}

// ---- key renewal (issue 15 item 5) ----

/** A pre-auth key is renewed this long before it expires, or half its lifetime when that is shorter. */
export const RENEW_BEFORE_SECONDS = 14 * 24 * 3600;

const UNIT_SECONDS: Record<string, number> = { ns: 1e-9, us: 1e-6, "µs": 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400, y: 365 * 86400 };

/** Seconds of a headscale duration like 90d or 24h; NaN when it is not one. */
export function durationSeconds(d: string): number {
  const m = /^(\d+)(ns|us|µs|ms|s|m|h|d|w|y)$/.exec(d);
  return m ? Number(m[1]) * UNIT_SECONDS[m[2]!]! : NaN;
}

/** The node key's expiry in unix seconds, or null when it never expires. */
export function nodeExpirySeconds(n: HeadscaleNode): number | null {
  const s = Number(n.expiry?.seconds ?? 0);
  return Number.isFinite(s) && s > 0 ? s : null;
}

export interface KeyRenewal {
  renew: boolean;
  /** Why (or why not), for the provider log and plan; never the key. */
  why: string;
}

/**
 * Whether `up` makes a new pre-auth key for a host, from what headscale says
 * now: the host has not joined and its key is gone, used up, expired or
 * expires within the renewal window; or the host joined and its node key
 * expired (it must log in again, and its key was used). A joined host whose
 * node key is valid keeps its key, whatever the key's own expiry: it no
 * longer needs one, and a new one would only churn its generation.
 */
export function preAuthKeyRenewal(
  k: { host: string; hostname: string; keyId: number; expiration: string; reusable: boolean },
  nodes: readonly HeadscaleNode[],
  keys: readonly PreAuthKeyListed[],
  nowSeconds: number,
): KeyRenewal {
  const node = nodeOfHost(nodes, k.hostname);
  if (node) {
    const exp = nodeExpirySeconds(node);
    if (exp !== null && exp <= nowSeconds) return { renew: true, why: `the node key of ${k.host} expired ${new Date(exp * 1000).toISOString()}: a new pre-auth key for it to log in again` };
    return { renew: false, why: `${k.host} has joined (node ${node.id ?? "?"}) and its node key is valid` };
  }
  const listed = keys.find((x) => x.id === k.keyId);
  if (!listed) return { renew: true, why: `the pre-auth key of ${k.host} (id ${k.keyId}) is gone from headscale and ${k.host} has not joined` };
  if (listed.expiresAt <= nowSeconds) return { renew: true, why: `the pre-auth key of ${k.host} (id ${k.keyId}) expired and ${k.host} has not joined` };
  if (listed.used && !k.reusable) return { renew: true, why: `the one-use pre-auth key of ${k.host} (id ${k.keyId}) was used, but no node named ${k.hostname} is registered` };
  const life = durationSeconds(k.expiration);
  const window = Math.min(RENEW_BEFORE_SECONDS, Number.isFinite(life) ? life / 2 : RENEW_BEFORE_SECONDS);
  const left = listed.expiresAt - nowSeconds;
  if (left <= window) return { renew: true, why: `the pre-auth key of ${k.host} (id ${k.keyId}) expires in ${Math.round(left)}s and ${k.host} has not joined: renewed ${Math.round(window)}s ahead` };
  return { renew: false, why: `the pre-auth key of ${k.host} (id ${k.keyId}) is valid for ${Math.round(left)}s more` };
}

/** One command for the renewal facts: nodes, then keys, split by a marker line. */
export function renewalFactsCommand(cli: HeadscaleCli): string {
  return `${headscaleCommand(cli, nodesListArgs())} && echo @@mf:keys@@ && ${headscaleCommand(cli, preAuthKeysListArgs())}`;
}

export function parseRenewalFacts(stdout: string): { nodes: HeadscaleNode[]; keys: PreAuthKeyListed[] } {
  const [n, k] = stdout.split(/^@@mf:keys@@$/m);
  if (k === undefined) throw new Error(`headscale nodes/preauthkeys list: expected two JSON lists, found ${clip(stdout)}`);
  const nodes = parseJson(n!, "headscale nodes list");
  if (nodes !== null && !Array.isArray(nodes)) throw new Error(`headscale nodes list: ${errorOf(nodes) ?? clip(n!)}`);
  return { nodes: (nodes ?? []) as HeadscaleNode[], keys: parsePreAuthKeyList(k) };
}
