/**
 * meshfleet:headscale:* — users, pre-auth keys, route approvals and the
 * readiness check, through the headscale CLI on the coordinator (over SSH;
 * in its container for the docker runtime). Argv and JSON facts are in
 * headscale-cli.ts (headscale 0.29.2).
 */
import {
  approveRoutesArgs,
  checkRouteApproval,
  EXIT_ROUTES,
  findNode,
  headscaleCommand,
  nodeOfHost,
  nodesListArgs,
  onlyUnapproved,
  parsePreAuthKeyJson,
  policyReloadArgv,
  parsePreAuthKeyList,
  parseUserJson,
  parseUsersList,
  preAuthKeyCreateArgs,
  preAuthKeyExpireArgs,
  preAuthKeysListArgs,
  readyScript,
  usersCreateArgs,
  usersDestroyArgs,
  usersListArgs,
  parseRenewalFacts,
  preAuthKeyRenewal,
  renewalFactsCommand,
  type HeadscaleNode,
  type KeyRenewal,
  type PreAuthKeyListed,
} from "../headscale-cli.ts";
import { log } from "../log.ts";
import { shArgv } from "../quote.ts";
import { connectionProblems, session, type RunResult } from "../ssh.ts";
import type {
  HeadscaleBase,
  PreAuthKeyInputs,
  PreAuthKeyOutputs,
  ReadyInputs,
  ReadyOutputs,
  RouteApprovalInputs,
  RouteApprovalOutputs,
  UserInputs,
  UserOutputs,
} from "../types.ts";
import { deepEqual, ProviderError, topLevelDiff, type DetailedDiffResult } from "../wire.ts";
import { isUnknown, poll, type AsyncDiffHandler, type CheckFailure, type ResourceHandler } from "./common.ts";

function checkConnection(n: HeadscaleBase): CheckFailure[] {
  return isUnknown(n.connection) ? [] : connectionProblems(n.connection).map((reason) => ({ property: "connection", reason }));
}

async function hs(r: HeadscaleBase, args: string[], what: string, quiet = false): Promise<RunResult> {
  return session.run(r.connection, headscaleCommand(r.cli, args), { what, privateKey: r.sshPrivateKey, quiet });
}

function failed(host: string, what: string, r: RunResult, showOutput = true): ProviderError {
  const text = showOutput ? (r.stderr || r.stdout).trim().slice(0, 400) : `${r.stderr.trim().slice(0, 200)} (stdout withheld: it may hold a key)`;
  return new ProviderError(`coordinator ${host}: ${what} failed (exit ${r.code}): ${text}`);
}

// ---- users ----

export const user: ResourceHandler<UserInputs, UserOutputs> = {
  check: (n) => checkConnection(n),
  diff(olds, news) {
    // A new name is a new user, never a rename behind the fleet's back.
    return { ...topLevelDiff(olds as never, news as never, { replaceKeys: ["name"] }), deleteBeforeReplace: true };
  },
  async create(n) {
    const list = await hs(n, usersListArgs(), "users list");
    if (list.code !== 0) throw failed(n.connection.name, "headscale users list", list);
    const named = parseUsersList(list.stdout).filter((u) => u.name === n.name);
    // A person's OIDC login of that name: not taken over (removing the name from users would then delete their user), and
    // not beside it either (headscale finds two users for the token carol@ and refuses any policy that names it).
    const person = named.find((u) => u.provider === "oidc");
    if (person)
      throw new ProviderError(
        `coordinator ${n.connection.name}: headscale already has a user named ${n.name} that an OpenID Connect login made${person.email ? ` (${person.email})` : ""}; meshfleet neither takes it over (removing ${n.name} from users would then delete that person's user) nor keeps a user of the same name beside it (headscale refuses any policy naming ${n.name}@ then). ` +
          `Fix: list ${person.email ?? "their e-mail"} in fleet.yaml oidcUsers instead of ${n.name} in users, or give meshfleet's user another name`,
      );
    const existing = named[0];
    if (existing) {
      log(`headscale user ${n.name} exists (id ${existing.id}); adopted`);
      return { id: String(existing.id), outs: { ...n, userId: existing.id } };
    }
    const r = await hs(n, usersCreateArgs(n.name), `users create ${n.name}`);
    if (r.code !== 0) throw failed(n.connection.name, `headscale users create ${n.name}`, r);
    const info = parseUserJson(r.stdout, n.name);
    return { id: String(info.id), outs: { ...n, userId: info.id } };
  },
  async update(_id, olds, news) {
    return { ...news, userId: olds.userId };
  },
  async read(_id, o) {
    const list = await hs(o, usersListArgs(), "users list (refresh)");
    if (list.code !== 0) throw failed(o.connection.name, "headscale users list", list);
    // meshfleet's user, never a person's OIDC login of the same name (create does not take one over).
    const u = parseUsersList(list.stdout).find((x) => x.name === o.name && x.provider !== "oidc");
    return u ? { ...o, userId: u.id } : null;
  },
  async delete(_id, o) {
    // meshfleet's own user, by its id; one already gone is done, and a person's OIDC login is never destroyed.
    const list = await hs(o, usersListArgs(), "users list (delete)");
    if (list.code !== 0) throw failed(o.connection.name, "headscale users list", list);
    const mine = parseUsersList(list.stdout).find((u) => (o.userId !== undefined ? u.id === o.userId : u.name === o.name) && u.provider !== "oidc");
    if (!mine) return;
    const r = await hs(o, usersDestroyArgs(mine.id), `users destroy ${o.name}`);
    if (r.code !== 0) throw failed(o.connection.name, `headscale users destroy ${o.name} (id ${mine.id})`, r);
  },
};

// ---- pre-auth keys ----

const KEY_REQUEST = ["host", "userId", "reusable", "ephemeral", "expiration", "tags"] as const;

export const preAuthKey: AsyncDiffHandler<PreAuthKeyInputs, PreAuthKeyOutputs> = {
  check(n) {
    const f = checkConnection(n);
    if (!isUnknown(n.expiration) && !/^\d+(ns|us|µs|ms|s|m|h|d|w|y)$/.test(n.expiration)) f.push({ property: "expiration", reason: `pre-auth key for ${n.host}: expected a duration like 90d, found ${JSON.stringify(n.expiration)}` });
    if (n.userId === undefined && Array.isArray(n.tags) && n.tags.length === 0) f.push({ property: "tags", reason: `pre-auth key for ${n.host}: needs a user or tags (headscale 0.29)` });
    return f;
  },
  async diff(olds, news): Promise<DetailedDiffResult> {
    // Keys are made, never edited: any change of the request is a new key; the old one is expired after.
    const d = topLevelDiff(olds as never, news as never, { replaceKeys: [...KEY_REQUEST] });
    const renew = () => {
      d.detailedDiff!.key = "update-replace";
      d.replaces!.push("key");
      return { ...d, changes: true };
    };
    // A key found expired (or gone) at the last refresh is made again.
    if (olds.expired) return renew();
    if ((d.replaces ?? []).length > 0 || !olds.keyId || isUnknown(news.connection) || isUnknown(news.cli)) return d;
    // Renewal before expiry, or after the host's node key expired: asked of headscale now.
    const r = await renewalOf(olds, news);
    if (r?.renew) {
      log(`pre-auth key of ${news.host}: ${r.why}; a new key replaces it`);
      return renew();
    }
    return d;
  },
  async create(n) {
    // The output holds the key: `quiet` keeps it out of the provider log.
    const r = await hs(n, preAuthKeyCreateArgs(n.userId, n), `preauthkeys create for ${n.host}`, true);
    if (r.code !== 0) throw failed(n.connection.name, `headscale preauthkeys create (for ${n.host})`, r, false);
    const info = parsePreAuthKeyJson(r.stdout, n.host);
    return { id: String(info.id), outs: { ...n, key: info.key, keyId: info.id, expired: false } };
  },
  async update(_id, olds, news) {
    // Only the connection changed (every request key replaces).
    return { ...news, key: olds.key, keyId: olds.keyId, expired: olds.expired };
  },
  async read(_id, o) {
    const r = await hs(o, preAuthKeysListArgs(), "preauthkeys list (refresh)");
    if (r.code !== 0) throw failed(o.connection.name, "headscale preauthkeys list", r);
    const k = parsePreAuthKeyList(r.stdout).find((x) => x.id === o.keyId);
    const expired = !k || k.expiresAt <= Date.now() / 1000;
    return { ...o, expired };
  },
  async delete(_id, o) {
    if (!o.keyId) return;
    const r = await hs(o, preAuthKeyExpireArgs(o.keyId), `preauthkeys expire --id ${o.keyId}`);
    if (r.code !== 0 && !/not found|record not found/i.test(r.stderr + r.stdout)) throw failed(o.connection.name, `headscale preauthkeys expire --id ${o.keyId} (key of ${o.host})`, r);
  },
};

/** Facts per coordinator for one run: every key's diff asks once (a diff runs for each key, in parallel). */
const coordinatorFacts = new Map<string, { at: number; facts: Promise<{ nodes: HeadscaleNode[]; keys: PreAuthKeyListed[] } | null> }>();
const FACTS_TTL_MS = 20_000;
/** The lookup's dial (one attempt) and whole command: a preview does not wait on an unreachable coordinator. */
const FACTS_DIAL_MS = 5_000;
const FACTS_TIMEOUT_MS = 20_000;

/**
 * headscale's nodes and pre-auth keys, asked once per coordinator within 20 s
 * (one quiet SSH call shared by every diff that needs them), or null when
 * headscale cannot be asked: `what` then says what is left as it is.
 */
function factsOf(n: HeadscaleBase, what: string): Promise<{ nodes: HeadscaleNode[]; keys: PreAuthKeyListed[] } | null> {
  const where = `${n.connection.name}@${n.connection.host}:${n.connection.port ?? 22}`;
  let hit = coordinatorFacts.get(where);
  if (!hit || Date.now() - hit.at > FACTS_TTL_MS) {
    const facts = (async () => {
      // One dial, briefly: a preview that cannot reach the coordinator leaves things as they are, not after 30 dials.
      const run = await session
        .run(n.connection, renewalFactsCommand(n.cli), { what: "nodes and pre-auth keys", privateKey: n.sshPrivateKey, quiet: true, attempts: 1, until: Date.now() + FACTS_DIAL_MS, timeoutMs: FACTS_TIMEOUT_MS })
        .catch((e: Error) => ({ code: 255, stdout: "", stderr: e.message }) as RunResult);
      if (run.code !== 0) {
        log(`could not ask headscale on ${n.connection.name} for its nodes and pre-auth keys (exit ${run.code}: ${run.stderr.trim().slice(0, 200)}); ${what}`);
        return null;
      }
      try {
        return parseRenewalFacts(run.stdout);
      } catch (e) {
        log(`${(e as Error).message.slice(0, 200)}; ${what}`);
        return null;
      }
    })();
    // Stamped when the facts are in (kept while they are asked for): the TTL counts from the answer.
    const entry = { at: Infinity, facts };
    void facts.finally(() => (entry.at = Date.now()));
    hit = entry;
    coordinatorFacts.set(where, hit);
  }
  return hit.facts;
}

async function renewalOf(olds: PreAuthKeyOutputs, news: PreAuthKeyInputs): Promise<KeyRenewal | null> {
  const facts = await factsOf(news, "pre-auth keys are left as they are");
  if (!facts) return null;
  return preAuthKeyRenewal({ host: news.host, hostname: news.hostname ?? news.host, keyId: olds.keyId, expiration: olds.expiration, reusable: olds.reusable }, facts.nodes, facts.keys, Date.now() / 1000);
}

// ---- route approval ----

/** How many times a policy reload that fails is tried, and how far apart. */
const RELOAD_TRIES = 3;
const RELOAD_SPACING_MS = 2_000;

function wanted(n: Pick<RouteApprovalInputs, "routes" | "exitNode">): string[] {
  return [...n.routes, ...(n.exitNode ? EXIT_ROUTES : [])];
}

/**
 * Wait for the node and its declared routes to be approved; then revoke any
 * approval the fleet no longer declares (headscale keeps approving a route a
 * router stopped advertising, so a stale approval would pass a check).
 */
async function approve(n: RouteApprovalInputs): Promise<RouteApprovalOutputs> {
  const want = { host: n.host, hostname: n.hostname, routes: n.routes, exitNode: n.exitNode };
  let last = "";
  let problems: string[] = [];
  let reloaded = false;
  // A reload that fails (headscale restarting in the same deploy: the coordinator's own generation, a
  // coordinator move) is tried again, up to RELOAD_TRIES, a few seconds apart; the last failure is said
  // if the routes are still not approved at the end.
  let reloadTries = 0;
  let reloadAt = 0;
  let reloadFailed: string | null = null;
  const ok = await poll(n.timeoutSeconds * 1000, 500, async () => {
    const r = await hs(n, nodesListArgs(), `nodes list (routes of ${n.host})`, true);
    if (r.code !== 0) throw failed(n.connection.name, "headscale nodes list", r);
    last = r.stdout;
    problems = checkRouteApproval(last, want);
    // The node's generation and the coordinator's (which carries the policy) are deployed side by
    // side: a route announced before headscale restarted with the policy allowing it is not
    // auto-approved until headscale reloads its policy. Once, and approval still comes from the policy.
    if (!reloaded && reloadTries < RELOAD_TRIES && Date.now() - reloadAt >= RELOAD_SPACING_MS && onlyUnapproved(problems)) {
      reloadTries++;
      reloadAt = Date.now();
      const hup = await session.run(n.connection, shArgv(policyReloadArgv(n.cli)), { what: `reload headscale's policy (routes of ${n.host} announced, not approved)`, privateKey: n.sshPrivateKey });
      if (hup.code !== 0) {
        reloadFailed = failed(n.connection.name, "reloading headscale's policy (SIGHUP)", hup).message;
        return null;
      }
      reloaded = true;
      reloadFailed = null;
      return null;
    }
    return problems.length === 0 ? true : null;
  });
  if (!ok) throw new ProviderError([...problems, ...(reloadFailed ? [`${reloadFailed} (tried ${reloadTries} times)`] : [])].join("\n"));
  const node = findNode(last, n.hostname)!;
  const approved = node.approved_routes ?? [];
  const keep = approved.filter((r) => wanted(n).includes(r));
  if (keep.length !== approved.length) {
    const stale = approved.filter((r) => !keep.includes(r));
    const r = await hs(n, approveRoutesArgs(Number(node.id), keep), `approve-routes ${n.host}: revoke ${stale.join(",")}`);
    if (r.code !== 0) throw failed(n.connection.name, `revoking ${stale.join(", ")} of ${n.host} (headscale nodes approve-routes)`, r);
    log(`host ${n.host}: revoked approval of ${stale.join(", ")} (no longer declared in the fleet)`);
  }
  return { ...n, nodeId: Number(node.id), approvedRoutes: [...keep].sort() };
}

export const routeApproval: AsyncDiffHandler<RouteApprovalInputs, RouteApprovalOutputs> = {
  check: (n) => checkConnection(n),
  async diff(olds, news) {
    const d = topLevelDiff(olds as never, news as never, { ignore: ["timeoutSeconds"] });
    if (d.changes || isUnknown(news.routes) || isUnknown(news.exitNode)) return d;
    // What headscale approves differs from what the fleet declares: re-approve/revoke. Asked live
    // (shared with the key renewal's lookup): a deploy that failed halfway left the state's last
    // read behind, and headscale may have auto-approved a route since.
    const facts = await factsOf(news, `the approvals of ${news.host} are compared with the last deploy's read`);
    const live = facts ? nodeOfHost(facts.nodes, news.hostname) ?? null : null;
    // headscale answered but lists no such node (deleted by hand): approve() waits for it and names it.
    if (facts && !live) {
      d.detailedDiff!.approvedRoutes = "update";
      return { ...d, changes: true };
    }
    const approved = live ? (live.approved_routes ?? []) : olds.approvedRoutes;
    if (approved && !deepEqual([...approved].sort(), [...wanted(news)].sort())) {
      d.detailedDiff!.approvedRoutes = "update";
      return { ...d, changes: true };
    }
    return d;
  },
  async create(n) {
    const outs = await approve(n);
    return { id: `${n.host}`, outs };
  },
  update: (_id, _olds, news) => approve(news),
  async read(_id, o) {
    const r = await hs(o, nodesListArgs(), `nodes list (refresh routes of ${o.host})`, true);
    if (r.code !== 0) throw failed(o.connection.name, "headscale nodes list", r);
    const node = findNode(r.stdout, o.hostname);
    return { ...o, nodeId: node ? Number(node.id) : 0, approvedRoutes: [...(node?.approved_routes ?? [])].sort() };
  },
  async delete(_id, o) {
    // The fleet no longer declares routes for this node: revoke what headscale approves.
    const r = await hs(o, nodesListArgs(), `nodes list (revoke routes of ${o.host})`, true);
    if (r.code !== 0) throw failed(o.connection.name, "headscale nodes list", r);
    const node = findNode(r.stdout, o.hostname);
    if (!node || !(node.approved_routes ?? []).length) return;
    const rv = await hs(o, approveRoutesArgs(Number(node.id), []), `approve-routes ${o.host}: revoke all`);
    if (rv.code !== 0) throw failed(o.connection.name, `revoking the routes of ${o.host}`, rv);
    log(`host ${o.host}: revoked approval of ${(node.approved_routes ?? []).join(", ")}`);
  },
};

// ---- readiness ----

export const ready: ResourceHandler<ReadyInputs, ReadyOutputs> = {
  check: (n) => checkConnection(n),
  diff(olds, news) {
    const d = topLevelDiff(olds as never, news as never, { ignore: ["timeoutSeconds"] });
    if (olds.state && olds.state !== "serving") return { ...d, changes: true, detailedDiff: { ...d.detailedDiff, state: "update" } };
    return d;
  },
  async create(n) {
    return { id: n.host, outs: await waitReady(n) };
  },
  update: (_id, _o, n) => waitReady(n),
  async read(_id, o) {
    const r = await hs(o, usersListArgs(), "users list (refresh readiness)");
    return { ...o, state: r.code === 0 ? "serving" : `not answering: ${(r.stderr || r.stdout).trim().slice(0, 120)}` };
  },
  async delete() {},
};

async function waitReady(n: ReadyInputs): Promise<ReadyOutputs> {
  const r = await session.run(n.connection, readyScript(n.cli, n.host, n.timeoutSeconds), {
    what: "headscale ready",
    privateKey: n.sshPrivateKey,
    timeoutMs: (n.timeoutSeconds + 60) * 1000,
  });
  if (r.code !== 0) throw failed(n.host, "waiting for headscale to answer", r);
  return { ...n, state: "serving" };
}

