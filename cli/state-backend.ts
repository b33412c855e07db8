/**
 * Shared state: what meshfleet adds around Pulumi's backends when several
 * people (or CI) deploy one stack, e.g. Pulumi's DIY PostgreSQL backend
 * (`postgres://user:password@host:port/db?sslmode=...`, pulumi 3.248
 * pkg/backend/diy/postgres: one table, `pulumi_state` unless `table=` says
 * otherwise, a row per blob key).
 *
 * - The backend URL's password never reaches a message or a log: Pulumi
 *   itself prints the URL whole (`unable to open bucket postgres://u:pw@...`,
 *   and the lock file's URL in its lock error), so every text meshfleet
 *   shows or writes goes through `redact`.
 * - The lock: a DIY backend locks a stack by writing a lock object (pid,
 *   user, host, time) and checking that no other exists (check, write,
 *   check again: two runs that start together can both see the other and
 *   both give up). meshfleet turns Pulumi's lock error into one that names
 *   the holder and since when, waits for a live holder (retrying, with
 *   jitter, so two runs that both gave up do not collide again), and tells
 *   a lock whose process is gone. Pulumi 3.248 never clears such a lock
 *   itself; `meshfleet refresh` does, when the holder ran on this machine
 *   and its pid no longer exists (nothing else can prove a holder dead).
 * - Pending operations (a run killed while the provider was creating,
 *   updating or deleting something): named per resource with the fix.
 */
import { spawnSync } from "node:child_process";
import { hostname } from "node:os";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Redaction.

/** Every secret text seen in a backend URL this process uses (passwords, raw and decoded). */
const secretTexts = new Set<string>();

const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:@/?#]*):([^\s@/?#]*)@/gi;
const PASSWORD_PARAM = /([?&](?:password|sslpassword)=)([^&\s#]*)/gi;

/** The URL with its password (userinfo or `password=` parameter) shown as `***`. */
export function redactUrl(url: string): string {
  return url.replace(USERINFO, (_, head: string, pw: string) => (pw ? `${head}:***@` : `${head}:@`)).replace(PASSWORD_PARAM, "$1***");
}

/** Remembers the backend URL's secrets so that `redact` hides them wherever they appear. */
export function rememberBackend(url: string | undefined): void {
  if (!url) return;
  for (const m of url.matchAll(USERINFO)) addSecret(m[2]!);
  for (const m of url.matchAll(PASSWORD_PARAM)) addSecret(m[2]!);
}

function addSecret(raw: string): void {
  // Too short a text would blank out ordinary words; such a password is not worth the name anyway.
  for (const s of [raw, safeDecode(raw)]) if (s.length >= 4) secretTexts.add(s);
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Text with every backend password (in a URL or on its own) replaced by `***`. */
export function redact(text: string): string {
  let out = redactUrl(text);
  for (const s of secretTexts) out = out.split(s).join("***");
  return out;
}

/** Checks a backend URL before Pulumi sees it; returns the problem with its fix, or undefined. */
export function backendProblem(url: string): string | undefined {
  if (/^postgresql:\/\//i.test(url)) return `--backend ${redactUrl(url)}: Pulumi's PostgreSQL backend takes postgres://, not postgresql://. Fix: --backend ${redactUrl(url.replace(/^postgresql:/i, "postgres:"))}`;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return `--backend ${redactUrl(url)}: expected a backend URL (postgres://user:password@host:port/db, s3://bucket, file:///path, https://api.pulumi.com)`;
  return undefined;
}

// ---------------------------------------------------------------------------
// The stack's lock.

export interface LockHolder {
  user: string;
  host: string;
  pid: number;
  /** When the holder took the lock (RFC 3339, as Pulumi wrote it). */
  since: string;
}

/** Pulumi's lock error ("the stack is currently locked by N lock(s) ... created by u@h (pid N) at T"), parsed; undefined for any other error. */
export function parseLockError(text: string): LockHolder[] | undefined {
  if (!/the stack is currently locked by \d+ lock/.test(text)) return undefined;
  const holders: LockHolder[] = [];
  for (const m of text.matchAll(/created by (\S+?)@(\S+) \(pid (\d+)\) at (\S+)/g)) {
    const h = { user: m[1]!, host: m[2]!, pid: Number(m[3]), since: m[4]! };
    // The Automation API's error carries the CLI's stderr more than once.
    if (!holders.some((x) => x.user === h.user && x.host === h.host && x.pid === h.pid && x.since === h.since)) holders.push(h);
  }
  return holders;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, owned by someone else.
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A holder provably gone: it ran on this machine and its pid no longer exists. */
export function isStale(h: LockHolder, here = hostname()): boolean {
  return h.host === here && h.pid > 0 && !processAlive(h.pid);
}

function ago(since: string, now = Date.now()): string {
  const t = Date.parse(since);
  if (Number.isNaN(t)) return "";
  const s = Math.max(0, Math.round((now - t) / 1000));
  return s < 120 ? ` (${s} s ago)` : s < 7200 ? ` (${Math.round(s / 60)} min ago)` : ` (${Math.round(s / 3600)} h ago)`;
}

export function describeHolder(h: LockHolder): string {
  return `${h.user}@${h.host} (pid ${h.pid}) since ${h.since}${ago(h.since)}`;
}

/** meshfleet's message for a lock it will not wait for (or waited for too long). */
export function lockMessage(stack: string, holders: LockHolder[], opts: { waitedSeconds?: number; pending?: PendingOperation[] } = {}): string {
  const who = holders.length ? holders.map(describeHolder).join("; ") : "a run Pulumi could not name";
  const stale = holders.length > 0 && holders.every((h) => isStale(h));
  if (stale) {
    const left = opts.pending?.length ? `; it left ${pendingList(opts.pending)} half done` : "";
    return `stack ${stack} is locked by ${who}, and that process no longer runs on this machine (killed or crashed mid-run)${left}. ` +
      `Fix: \`meshfleet refresh --stack ${stack}\` clears its lock and reads back what it left half done; then run the deploy again`;
  }
  const waited = opts.waitedSeconds !== undefined ? ` after waiting ${opts.waitedSeconds} s` : "";
  return `stack ${stack} is locked by another run: ${who}; nothing was changed${waited}. ` +
    `Fix: wait for it to finish and run again (--lock-wait SECONDS waits for it). If that run is dead (its machine or CI job is gone), ` +
    `clear its lock with \`pulumi cancel --yes --stack ${stack}\` against the same backend, then \`meshfleet refresh --stack ${stack}\``;
}

export interface LockWait {
  /** How long to wait for a live holder, in seconds (0: fail at once). */
  seconds: number;
  stack: string;
  verb: string;
  say?: (line: string) => void;
  /** Clears every lock of the stack (`pulumi cancel`); only called for a stale holder during refresh. */
  cancel: () => Promise<void>;
  /** The pending operations in the stack's state (read when a dead run is found). */
  pending?: () => PendingOperation[];
}

const waits = new WeakMap<object, { started: number; said: string; attempts: number }>();

/**
 * What to do with a failed run: "retry" (the lock was waited for or a stale
 * one cleared), a meshfleet message for a lock error, or undefined for any
 * other error. `key` identifies one meshfleet run (its options object).
 */
export async function onLockError(key: object, error: unknown, w: LockWait): Promise<"retry" | string | undefined> {
  const text = String((error as Error)?.message ?? error);
  const holders = parseLockError(text);
  if (!holders) return undefined;
  let st = waits.get(key);
  if (!st) waits.set(key, (st = { started: Date.now(), said: "", attempts: 0 }));
  st.attempts++;
  if (holders.length > 0 && holders.every((h) => isStale(h))) {
    let pending: PendingOperation[] = [];
    try {
      pending = w.pending?.() ?? [];
    } catch {
      /* the lock message stands without them */
    }
    if (w.verb !== "refresh" || st.attempts > 3) return lockMessage(w.stack, holders, { pending });
    await w.cancel();
    w.say?.(`cleared the lock left by ${holders.map(describeHolder).join("; ")}: that process no longer runs on this machine`);
    if (pending.length) {
      w.say?.(`it left ${pendingList(pending)} half done: refresh reads each back and clears the pending operation (a half-made create is dropped from the state and the next up makes it again: a host's generation is applied again, a headscale user adopted as it is, a pre-auth key made anew)`);
    }
    return "retry";
  }
  const waited = Math.round((Date.now() - st.started) / 1000);
  if (Date.now() - st.started >= w.seconds * 1000) return lockMessage(w.stack, holders, w.seconds > 0 ? { waitedSeconds: waited } : {});
  const line = `waiting for the lock: stack ${w.stack} is locked by ${holders.map(describeHolder).join("; ")} (up to ${w.seconds} s; --lock-wait 0 fails at once)`;
  const who = holders.map((h) => `${h.user}@${h.host}:${h.pid}`).join(",");
  if (st.said !== who) w.say?.(line);
  st.said = who;
  // Jitter: two runs that both gave up in Pulumi's check-write-check come back at different times.
  await sleep(1000 + Math.floor(Math.random() * 1500));
  return "retry";
}

// ---------------------------------------------------------------------------
// Pending operations.

export interface PendingOperation {
  urn: string;
  type: string;
  name: string;
  /** creating, updating, deleting, reading, importing. */
  op: string;
}

/**
 * Pulumi's warning when an up starts on a state with pending operations
 * ("Attempting to deploy or update resources with N pending operations from
 * previous deployment. * <urn>, interrupted while creating ..."), which
 * tells the user to run `pulumi refresh` interactively, becomes meshfleet's:
 * each resource by type and name, what happens now and the fix. Any other
 * message comes back as it was.
 */
export function rewritePendingWarning(message: string): string {
  if (!/pending operations? from previous deployment/i.test(message)) return message;
  const ops: PendingOperation[] = [];
  for (const m of message.matchAll(/(urn:pulumi:\S+?),\s+interrupted while (\w+)/g)) {
    const urn = m[1]!;
    const parts = urn.split("::");
    const q = parts[parts.length - 2] ?? "";
    ops.push({ urn, type: q.slice(q.lastIndexOf("$") + 1), name: parts[parts.length - 1] ?? "", op: m[2]! });
  }
  if (ops.length === 0) return message;
  const stack = /^urn:pulumi:([^:]+)::/.exec(ops[0]!.urn)?.[1] ?? "S";
  return `a run that did not finish left ${pendingList(ops)} half done; its real state is unknown, and this run does it again. ` +
    `Fix: \`meshfleet refresh --stack ${stack}\` reads every resource back and clears the pending operation (Pulumi keeps it, and this warning, until a refresh)`;
}

/**
 * Creates or selects the stack on a backend that others use at the same
 * time. Two first runs race twice: in `CREATE TABLE IF NOT EXISTS` (Postgres
 * can refuse the second with a duplicate pg_type key) and in `stack init`
 * ("already exists" when the other created it between select and init, or
 * "currently locked" when it is already updating it). A third, seen in CI:
 * `stack init` lists the backend's blobs while the other run writes them,
 * and a blob listed is gone when read ("could not list bucket: blob
 * (code=NotFound)"): tried again, like the table race. And a fourth: init
 * says the stack exists, and select does not find it yet ("no stack named
 * ... found"): from the top again. Up to 5 attempts in all.
 */
export async function createOrSelectShared<S>(createOrSelect: () => Promise<S>, select: () => Promise<S>): Promise<S> {
  const ATTEMPTS = 5;
  for (let attempt = 1; ; attempt++) {
    try {
      return await createOrSelect();
    } catch (e) {
      const text = String((e as Error)?.message ?? e);
      // "could not create stack: the stack is currently locked": the other run created it and is updating it
      // (seen in CI); select it, and the update's own lock wait takes over.
      if (/already exists|could not create stack: the stack is currently locked/.test(text)) {
        try {
          return await select();
        } catch (e2) {
          // Seen in CI too: the stack the other run is making is not listed yet ("no stack named ... found"): from the top again.
          if (attempt >= ATTEMPTS || !/no stack named .* found/.test(String((e2 as Error)?.message ?? e2))) throw e2;
          await sleep(200 + Math.floor(Math.random() * 600));
          continue;
        }
      }
      const transient = /failed to create table [\s\S]*duplicate key value violates unique constraint|could not list bucket: blob \(code=NotFound\)/.test(text);
      if (attempt >= ATTEMPTS || !transient) throw e;
      await sleep(200 + Math.floor(Math.random() * 600));
    }
  }
}

/** The pending operations of an exported deployment (`pulumi stack export`). */
export function pendingOfDeployment(deployment: unknown): PendingOperation[] {
  const ops = (deployment as { pending_operations?: { op?: string; type?: string; resource?: { urn?: string; type?: string } }[] })?.pending_operations ?? [];
  return ops.map((p) => {
    const urn = p.resource?.urn ?? "";
    return { urn, type: p.resource?.type ?? "", name: urn.slice(urn.lastIndexOf("::") + 2), op: p.type ?? p.op ?? "" };
  });
}

function pendingList(ops: PendingOperation[]): string {
  return ops.map((p) => `${p.type} ${p.name} (interrupted while ${p.op})`).join(", ");
}

/**
 * The stack's pending operations, from `pulumi stack export` without
 * --show-secrets (the Automation API's exportStack would decrypt them).
 */
export function exportPending(cmd: string, cwd: string, env: Record<string, string>, stack: string): PendingOperation[] {
  const r = spawnSync(cmd, ["stack", "export", "--stack", stack, "--non-interactive"], { cwd, env, encoding: "utf8", maxBuffer: 256 << 20 });
  if (r.status !== 0) return [];
  return pendingOfDeployment((JSON.parse(r.stdout) as { deployment?: unknown }).deployment);
}

/**
 * The error with every text in it redacted, in place: message, stack and the
 * strings the Automation API keeps beside them (commandResult.stdout/stderr,
 * execa's own error), since --debug prints the cause whole.
 */
export function redactError(e: unknown, depth = 0, seen = new Set<object>()): unknown {
  if (typeof e === "string") return redact(e);
  if (!e || typeof e !== "object" || seen.has(e) || depth > 5) return e;
  seen.add(e);
  const o = e as Record<string, unknown>;
  for (const k of new Set([...Object.keys(o), ...(e instanceof Error ? ["message", "stack"] : [])])) {
    const v = o[k];
    try {
      if (typeof v === "string") o[k] = redact(v);
      else if (v && typeof v === "object") redactError(v, depth + 1, seen);
    } catch {
      /* a read-only property: left as it is */
    }
  }
  if (e instanceof Error && e.cause) redactError(e.cause, depth + 1, seen);
  return e;
}
