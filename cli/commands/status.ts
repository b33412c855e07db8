/**
 * `meshfleet status --stack S [--on ...] [--json]`: one table of the fleet,
 * read live from every host over SSH in parallel (one connection per host,
 * the host's own reads in parallel there too) and from headscale on the
 * coordinator: generation (hash, age, confirmed), drift, tailscale state and
 * online, direct/relayed peers, routes advertised and approved, key expiry,
 * agent and tailscale versions.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { MeshfleetError } from "../../core/diagnostics.ts";
import type { HostSystem } from "../../core/types.ts";
import { headscaleCommand, nodeExpirySeconds, nodeOfHost, nodesListArgs, preAuthKeysListArgs, type HeadscaleNode } from "../../provider/headscale-cli.ts";
import type { PreAuthKeyRequest } from "../../core/types.ts";
import { shq } from "../../provider/quote.ts";
import type { SshSession } from "../../provider/ssh.ts";
import { flagHelp, parseArgs } from "../args.ts";
import type { Command } from "../command.ts";
import { headscaleRelease } from "../../modules/headscale-versions.ts";
import { age, agentCommand, AGENT_HOST_PATH, connectionTo, headscaleCliOf, jsonOr, newSession, openStackFleet, REPO_ROOT, sections, stackFlags, table, tryRun, type StackAccess } from "../fleet-hosts.ts";

/** What `tailscale status --json` holds that status and doctor read. */
export interface TsStatus {
  Version?: string;
  BackendState?: string;
  Self?: { HostName?: string; Online?: boolean; KeyExpiry?: string; TailscaleIPs?: string[] };
  Peer?: Record<string, { HostName?: string; DNSName?: string; Online?: boolean; CurAddr?: string; Relay?: string; PeerRelay?: string; Active?: boolean; KeyExpiry?: string }>;
}

export interface PeerPath {
  peer: string;
  online: boolean;
  path: "direct" | "relayed" | "idle";
  via: string;
}

/** Each peer's path from `tailscale status --json`: direct when it has a current UDP address, relayed when only a DERP home is known. */
export function peerPaths(ts: TsStatus | undefined): PeerPath[] {
  return Object.values(ts?.Peer ?? {}).map((p) => ({
    peer: p.HostName || (p.DNSName ?? "").split(".")[0] || "?",
    online: p.Online === true,
    // No current UDP address: traffic (if any) goes through the DERP home; without recent traffic the path is not known yet.
    path: p.CurAddr ? "direct" : p.Active && p.Relay ? "relayed" : "idle",
    via: p.CurAddr || (p.Relay ? `derp:${p.Relay}` : ""),
  }));
}

export interface HostStatus {
  host: string;
  /** Whether it answered over SSH; null: not asked (no agent: a device joined by hand, whose row is headscale's). */
  reachable: boolean | null;
  error?: string;
  /** ms for the host's SSH round trip. */
  ms: number;
  generation: { n: number; hash: string | null; createdAt: string | null; ageSeconds: number | null; confirmed: boolean; pendingConfirm: unknown } | null;
  drift: { clean: boolean; items: { kind: string; subject: string; detail: string }[] } | null;
  tailscale: {
    enabled: boolean;
    state: string | null;
    online: boolean | null;
    version: string | null;
    /** The fleet's tailscaleVersion; `version` below it is named in the table. */
    wanted: string;
    /** The oldest client the fleet's headscale release accepts (null: not known); below it is named first. */
    minimum: string | null;
    peers: PeerPath[];
    keyExpiry: string | null;
  };
  headscale: { registered: boolean; online: boolean | null; advertised: string[]; approved: string[]; expiry: string | null } | null;
  agent: { sha256: string | null; matchesLocal: boolean | null };
}

/** A key that expires within 14 days (or has expired): a node's key, or the pre-auth key of a host that has not joined. */
export interface Expiring {
  kind: "node key" | "pre-auth key";
  host: string;
  /** ISO time. */
  at: string;
  expired: boolean;
  /** What to do about it. */
  fix: string;
}

export interface FleetStatus {
  stack: string;
  at: string;
  ms: number;
  coordinator: string;
  headscaleError?: string;
  hosts: HostStatus[];
  /** Keys that expire within 14 days, soonest first (headscale's view; empty when it could not be read). */
  expiring?: Expiring[];
}

/** `preauthkeys list -o json` as status reads it (keys masked by headscale). */
interface ListedKey {
  id?: number | string;
  user?: { name?: string } | null;
  acl_tags?: string[];
  used?: boolean;
  reusable?: boolean;
  expiration?: { seconds?: number | string };
}

/**
 * What expires within 14 days: each agent host's node key (headscale's
 * expiry), and for each host the fleet makes a pre-auth key for that has not
 * joined, the newest unused key that fits its request (same user, same tags).
 * headscale's list does not say which host a key is for; a key that fits two
 * waiting hosts is named for both.
 */
export function expiringKeys(
  hosts: { name: string; hostname: string; tailscale: boolean }[],
  requests: readonly PreAuthKeyRequest[],
  nodes: readonly HeadscaleNode[],
  keys: readonly ListedKey[],
  nowMs: number,
): Expiring[] {
  const out: Expiring[] = [];
  const soon = (ms: number) => ms - nowMs < SOON_MS;
  for (const h of hosts) {
    if (!h.tailscale) continue;
    const node = nodeOfHost(nodes, h.hostname);
    const req = requests.find((r) => r.host === h.name);
    if (node) {
      const exp = nodeExpirySeconds(node);
      if (exp === null || !soon(exp * 1000)) continue;
      const expired = exp * 1000 <= nowMs;
      out.push({
        kind: "node key",
        host: h.name,
        at: new Date(exp * 1000).toISOString(),
        expired,
        fix: req
          ? expired
            ? "`meshfleet up` makes it a new pre-auth key and logs it in again"
            : "after it expires, `meshfleet up` logs it in again; or now: `tailscale up --force-reauth` on the host"
          : "log it in again (`tailscale up --force-reauth`): the fleet makes no pre-auth key for it",
      });
      continue;
    }
    if (!req) continue;
    const fits = keys
      .filter((k) => !k.used || k.reusable)
      .filter((k) => (k.user?.name ?? "") === (req.user ?? "") && [...(k.acl_tags ?? [])].sort().join(",") === [...req.tags].sort().join(","))
      .sort((a, b) => Number(b.id ?? 0) - Number(a.id ?? 0))[0];
    const exp = Number(fits?.expiration?.seconds ?? 0);
    if (!fits || !(exp > 0) || !soon(exp * 1000)) continue;
    out.push({
      kind: "pre-auth key",
      host: h.name,
      at: new Date(exp * 1000).toISOString(),
      expired: exp * 1000 <= nowMs,
      fix: `${h.name} has not joined yet; \`meshfleet up\` renews its key (id ${fits.id})`,
    });
  }
  return out.sort((a, b) => a.at.localeCompare(b.at));
}

const mark = (s: string) => `echo; echo @@mf:${s}@@`;

/** The one script a host runs for status: the agent's and tailscale's reads in parallel, then each printed in its section. */
export function statusScript(h: HostSystem, o: { headscale?: string; headscaleKeys?: string }): string {
  const t = '"$t"';
  const lines = [
    't=$(mktemp -d) || exit 1',
    `trap 'rm -rf "$t"' EXIT`,
    `if [ -f ${shq(AGENT_HOST_PATH)} ]; then`,
    // One agent process for both reads; an agent from before `status --verify` ignores the flag and is asked again.
    `  (${agentCommand(h, ["status", "--json", "--verify"])} >${t}/status 2>&1; grep -q '"verify"' ${t}/status || ${agentCommand(h, ["verify", "--json"])} >${t}/verify 2>&1) &`,
    `  (sha256sum ${shq(AGENT_HOST_PATH)} | cut -c1-64 >${t}/agent) &`,
    "fi",
  ];
  if (h.tailscale.enable) lines.push(`(${shq(h.tailscale.cli || "tailscale")} status --json >${t}/ts 2>${t}/ts.err) &`);
  if (o.headscale) lines.push(`(${o.headscale} >${t}/nodes 2>&1) &`);
  if (o.headscaleKeys) lines.push(`(${o.headscaleKeys} >${t}/keys 2>&1) &`);
  lines.push("wait");
  for (const s of ["status", "verify", "agent", "ts", "nodes", "keys"]) lines.push(mark(s), `cat ${t}/${s} 2>/dev/null`);
  lines.push(mark("now"), "date +%s%3N", mark("end"));
  return lines.join("\n");
}

export function headscaleNodesCommand(fleetAccess: StackAccess): string | undefined {
  const cli = headscaleCliOf(fleetAccess);
  return cli ? headscaleCommand(cli, nodesListArgs()) : undefined;
}

function localAgentSha(a: StackAccess): string | null {
  const p = typeof a.config["meshfleet:agentPath"] === "string" ? (a.config["meshfleet:agentPath"] as string) : "dist/meshfleet-agent.mjs";
  const file = path.isAbsolute(p) ? p : path.join(REPO_ROOT, p);
  return existsSync(file) ? createHash("sha256").update(readFileSync(file)).digest("hex") : null;
}

/** Read the whole selection's status; the raw sections per host come back too (doctor reads more of them). */
export async function collectStatus(a: StackAccess, session: SshSession, extra: (h: HostSystem) => string = () => ""): Promise<{ status: FleetStatus; raw: Record<string, Record<string, string>> }> {
  const t0 = Date.now();
  const coordName = a.fleet.coordinator.host;
  const hsCmd = headscaleNodesCommand(a);
  const cli = headscaleCliOf(a);
  const hsKeys = cli && a.fleet.preAuthKeys.length > 0 ? headscaleCommand(cli, preAuthKeysListArgs()) : undefined;
  // The coordinator is read even when --on leaves it out: routes and registration live there.
  const targets = a.selected.some((h) => h.name === coordName) || !a.fleet.hosts[coordName] ? a.selected : [...a.selected, a.fleet.hosts[coordName]!];
  const results = await Promise.all(
    targets.map(async (h) => {
      // A host without an agent (a phone, a device joined by hand) is never logged in to: its row is headscale's.
      if (!h.agent) return { h, r: { code: 0, stdout: "", stderr: "", ms: 0 } };
      const coord = h.name === coordName;
      const script = statusScript(h, { headscale: coord ? hsCmd : undefined, headscaleKeys: coord && hsKeys ? hsKeys : undefined }) + "\n" + extra(h);
      return { h, r: await tryRun(session, connectionTo(a, h), script, { what: "status", timeoutMs: 20_000 }) };
    }),
  );
  const raw: Record<string, Record<string, string>> = {};
  for (const { h, r } of results) raw[h.name] = r.error ? {} : sections(r.stdout);
  const coordRaw = raw[coordName] ?? {};
  const nodes = jsonOr<HeadscaleNode[] | { error?: string }>(coordRaw.nodes);
  const nodeList = Array.isArray(nodes) ? nodes : null;
  const headscaleError = nodeList ? undefined : results.find((x) => x.h.name === coordName)?.r.error ?? `headscale nodes list on ${coordName}: ${(coordRaw.nodes ?? "no answer").slice(0, 200)}`;
  const localSha = localAgentSha(a);
  const hosts: HostStatus[] = results
    .filter(({ h }) => a.selected.includes(h))
    .map(({ h, r }) => {
      const s = raw[h.name]!;
      const st = jsonOr<{ generation: number; hash: string | null; createdAt: string | null; pendingConfirm: unknown }>(s.status);
      type Verify = { clean: boolean; drift: { kind: string; subject: string; detail: string }[] };
      const vf = (st as { verify?: Verify } | null)?.verify ?? jsonOr<Verify>(s.verify);
      const ts = jsonOr<TsStatus>(s.ts);
      const now = Number(s.now) || Date.now();
      const node = nodeList ? nodeOfHost(nodeList, h.tailscale.hostname || h.name) : undefined;
      const exp = (node as { expiry?: { seconds?: number | string } } | undefined)?.expiry?.seconds;
      return {
        host: h.name,
        reachable: h.agent ? !r.error : null,
        ...(r.error ? { error: r.error } : {}),
        ms: r.ms,
        generation: st
          ? {
              n: st.generation,
              hash: st.hash,
              createdAt: st.createdAt,
              ageSeconds: st.createdAt ? Math.round((now - Date.parse(st.createdAt)) / 1000) : null,
              confirmed: st.generation > 0 && !st.pendingConfirm,
              pendingConfirm: st.pendingConfirm ?? null,
            }
          : null,
        drift: vf ? { clean: vf.clean, items: vf.drift ?? [] } : null,
        tailscale: {
          enabled: h.tailscale.enable,
          state: ts?.BackendState ?? null,
          online: ts?.Self ? ts.Self.Online !== false && ts.BackendState === "Running" : null,
          version: ts?.Version ? ts.Version.split("-")[0]! : null,
          wanted: a.fleet.tailscaleVersion,
          minimum: headscaleRelease(a.fleet.coordinator.headscaleVersion)?.minTailscale ?? null,
          peers: peerPaths(ts),
          keyExpiry: ts?.Self?.KeyExpiry ?? null,
        },
        headscale: nodeList && h.tailscale.enable
          ? {
              registered: !!node,
              online: node ? node.online === true : null,
              advertised: node?.available_routes ?? [],
              approved: node?.approved_routes ?? [],
              expiry: exp !== undefined && Number(exp) > 0 ? new Date(Number(exp) * 1000).toISOString() : null,
            }
          : null,
        agent: { sha256: s.agent && /^[0-9a-f]{64}$/.test(s.agent) ? s.agent : null, matchesLocal: s.agent && localSha ? s.agent === localSha : null },
      };
    });
  const keyList = jsonOr<ListedKey[]>(coordRaw.keys);
  const expiring = nodeList
    ? expiringKeys(
        a.selected.map((h) => ({ name: h.name, hostname: h.tailscale.hostname || h.name, tailscale: h.tailscale.enable })),
        a.fleet.preAuthKeys,
        nodeList,
        Array.isArray(keyList) ? keyList : [],
        Number(coordRaw.now) || Date.now(),
      )
    : [];
  return { status: { stack: a.stack, at: new Date().toISOString(), ms: Date.now() - t0, coordinator: coordName, ...(headscaleError ? { headscaleError } : {}), hosts, expiring }, raw };
}

/** -1, 0 or 1 comparing dotted release numbers ("1.96.4" < "1.98.10"). */
export function compareVersions(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** Node keys expiring within this are flagged SOON (renew with `meshfleet up`, or `tailscale up --force-reauth`). */
const SOON_MS = 14 * 24 * 3600 * 1000;

export function expiry(iso: string | null, now = Date.now()): string {
  if (!iso || iso.startsWith("0001-")) return "never";
  const ms = Date.parse(iso) - now;
  return ms < 0 ? `EXPIRED ${age(-ms)} ago` : ms < SOON_MS ? `in ${age(ms)} (SOON)` : `in ${age(ms)}`;
}

export function statusLines(s: FleetStatus): string[] {
  const rows = s.hosts.map((h) => {
    if (h.reachable === false) return [h.host, "UNREACHABLE", "", "", "", "", "", "", (h.error ?? "").slice(0, 120)];
    const g = h.generation;
    const gen = g ? (g.n ? `${g.n} ${g.hash?.slice(0, 12)} ${g.ageSeconds !== null ? age(g.ageSeconds * 1000) : "?"}${g.confirmed ? "" : " UNCONFIRMED"}` : "none") : "no agent";
    const drift = h.drift ? (h.drift.clean ? "clean" : `${h.drift.items.length} item(s)`) : "-";
    const t = h.tailscale;
    const hs = h.headscale;
    // A host without an agent is not asked: headscale says whether its node is online.
    const tsState = !t.enabled
      ? "off"
      : h.reachable === null
        ? !hs ? "?" : !hs.registered ? "not registered" : hs.online === null ? "?" : hs.online ? "online (headscale)" : "OFFLINE (headscale)"
        : `${t.state ?? "?"}${t.online === null ? "" : t.online ? " online" : " OFFLINE"}`;
    const online = t.peers.filter((p) => p.online);
    const paths = !t.enabled || h.reachable === null ? "-" : `${online.filter((p) => p.path === "direct").length} direct, ${online.filter((p) => p.path === "relayed").length} relayed`;
    const routes = !hs ? "-" : !hs.registered ? "not registered" : hs.advertised.length === 0 ? "none" : hs.advertised.map((r) => (hs.approved.includes(r) ? r : `${r} (NOT APPROVED)`)).join(" ");
    const keyExp = !t.enabled || (hs && !hs.registered) ? "-" : expiry(hs?.expiry ?? t.keyExpiry);
    const tooOld = t.version !== null && t.minimum !== null && compareVersions(t.version, t.minimum) < 0;
    const below = t.version !== null && compareVersions(t.version, t.wanted) < 0;
    const flag = tooOld ? ` (BELOW headscale's minimum ${t.minimum}: it cannot connect)` : below ? ` (BELOW the fleet's ${t.wanted})` : "";
    const agent = h.reachable === null ? "none" : h.agent.sha256 ? h.agent.sha256.slice(0, 8) + (h.agent.matchesLocal === false ? " (not dist's)" : "") : "missing";
    const versions = `agent ${agent}, ts ${t.version ?? "-"}${flag}`;
    return [h.host, gen, drift, tsState, paths, routes, keyExp, versions, h.reachable === null ? "joined by hand: headscale's view" : ""];
  });
  const out = table(["HOST", "GENERATION", "DRIFT", "TAILSCALE", "PEERS", "ROUTES", "KEY EXPIRY", "VERSIONS", "NOTE"], rows);
  if (s.headscaleError) out.push(`headscale (${s.coordinator}): ${s.headscaleError}`);
  for (const e of s.expiring ?? []) out.push(`${e.expired ? "EXPIRED" : "expires within 14 days"}: ${e.kind} of ${e.host} (${e.expired ? "at" : "on"} ${e.at}): ${e.fix}`);
  for (const h of s.hosts) for (const d of h.drift?.items ?? []) out.push(`drift ${h.host}: ${d.kind} ${d.subject}: ${d.detail}`);
  const asked = s.hosts.filter((h) => h.reachable !== null).length;
  out.push(`read ${asked} host(s) in ${(s.ms / 1000).toFixed(1)}s${asked < s.hosts.length ? `; ${s.hosts.length - asked} without an agent from headscale's node list` : ""}`);
  return out;
}

export const command: Command = {
  name: "status",
  summary: "one table of the fleet: generation, drift, tailscale, peers, routes, expiry, versions",
  usage: `usage: meshfleet status --stack S [--on HOST|@role|@tag] [--config-file FILE] [--json]

Reads every host over SSH in parallel (the deploy's pins and key; see
\`meshfleet up --help\`) and headscale's node list on the coordinator:
  GENERATION  the agent's current generation: number, bundle hash, age;
              UNCONFIRMED while a lockout guard waits for its confirm
  DRIFT       what \`meshfleet-agent verify\` finds changed on the host
  TAILSCALE   tailscaled's state and whether the node is online
  PEERS       online peers reached directly or through a DERP relay
  ROUTES      routes the node advertises, and whether headscale approved them
  KEY EXPIRY  the node key's expiry (headscale's view, else tailscale's),
              SOON within 14 days
  VERSIONS    the agent's sha256 (flagged when it is not this checkout's
              dist/ bundle) and tailscale's version, flagged when it is
              below the fleet's tailscaleVersion or below the oldest
              client the fleet's headscale release accepts
After the table, every key that expires within 14 days or has expired:
node keys, and the pre-auth key of each host that has not joined yet, with
what to do (\`meshfleet up\` renews a waiting host's key, and logs in again
a host whose node key expired).
A host without an agent (agent: false, a device joined by hand) is not
asked: its row is headscale's view of its node ("reachable": null in
--json).

${flagHelp(stackFlags)}

Exit code: 0 read every host, 1 some host could not be read, 2 bad usage.`,
  async run(argv) {
    const { opts, lists } = parseArgs(argv, stackFlags, { positionals: [], hint: "hosts go with --on" });
    if (typeof opts.stack !== "string") throw new MeshfleetError("meshfleet status: which stack? Add --stack S");
    const a = await openStackFleet({ stack: opts.stack, configFile: typeof opts["config-file"] === "string" ? opts["config-file"] : undefined, on: lists.on });
    const session = newSession();
    try {
      const { status } = await collectStatus(a, session);
      if (opts.json) process.stdout.write(JSON.stringify(status, null, 2) + "\n");
      else for (const l of statusLines(status)) process.stdout.write(l + "\n");
      return status.hosts.every((h) => h.reachable !== false) ? 0 : 1;
    } finally {
      session.close();
    }
  },
};
