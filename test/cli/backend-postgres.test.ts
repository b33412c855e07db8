/**
 * cli/state-backend.ts as data: the backend URL's password redacted wherever
 * it stands, Pulumi 3.248's lock error parsed (the Automation API repeats the
 * CLI's stderr, so a holder appears more than once), meshfleet's messages
 * for a live and a dead holder, and pending operations read from an exported
 * deployment. The real backend, lock and kill are in backend-postgres.real.test.ts.
 */
import { hostname } from "node:os";
import { describe, expect, it } from "vitest";
import {
  backendProblem,
  isStale,
  lockMessage,
  onLockError,
  parseLockError,
  pendingOfDeployment,
  redact,
  redactError,
  createOrSelectShared,
  redactUrl,
  rememberBackend,
  rewritePendingWarning,
} from "../../cli/state-backend.ts";

// What pulumi 3.248 printed for a locked stack in the real test (URL as Pulumi prints it, password and all).
const lockError = (pw: string, host: string, pid: number) =>
  `code: 255\n stdout: \n stderr: error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with \`pulumi cancel\`.\n` +
  `  postgres://meshfleet:${pw}@127.0.0.1:5432/meshfleet_state/.pulumi/locks/organization/meshfleet/home/4f1c.json?sslmode=disable: created by root@${host} (pid ${pid}) at 2026-11-30T18:40:02Z\n` +
  `\n err?: Error: error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with \`pulumi cancel\`.\n` +
  `  postgres://meshfleet:${pw}@127.0.0.1:5432/meshfleet_state/.pulumi/locks/organization/meshfleet/home/4f1c.json?sslmode=disable: created by root@${host} (pid ${pid}) at 2026-11-30T18:40:02Z\n`;

describe("redaction", () => {
  it.each([
    ["postgres://u:pw123456@db:5432/state?sslmode=require", "postgres://u:***@db:5432/state?sslmode=require"],
    ["postgres://u@db/state", "postgres://u@db/state"],
    ["postgres://db/state?sslmode=disable&password=hunter22", "postgres://db/state?sslmode=disable&password=***"],
    ["s3://bucket/prefix", "s3://bucket/prefix"],
    ["file:///root/.local/state", "file:///root/.local/state"],
    ["unable to open bucket postgres://u:p%40ss%2Fw0rd@h:1/d: failed to ping", "unable to open bucket postgres://u:***@h:1/d: failed to ping"],
  ])("%s", (url, want) => expect(redactUrl(url)).toBe(want));

  it("hides a remembered password wherever it appears, raw or decoded, and in an error's nested texts", () => {
    rememberBackend("postgres://meshfleet:s%3Acret-Pw-42@127.0.0.1:5432/db");
    expect(redact("auth failed for password s:cret-Pw-42 (s%3Acret-Pw-42)")).toBe("auth failed for password *** (***)");
    const e = Object.assign(new Error("stack home: postgres://meshfleet:s%3Acret-Pw-42@127.0.0.1:5432/db"), {
      commandResult: { stderr: "s:cret-Pw-42", err: { stderr: "x s%3Acret-Pw-42 y" } },
    });
    redactError(e);
    expect(JSON.stringify({ m: e.message, s: e.stack, c: e.commandResult })).not.toMatch(/cret-Pw-42/);
    expect(e.message).toBe("stack home: postgres://meshfleet:***@127.0.0.1:5432/db");
  });

  it("refuses postgresql:// with the fix, and anything that is not a URL", () => {
    expect(backendProblem("postgresql://u:secretpw@h/d")).toBe(
      "--backend postgresql://u:***@h/d: Pulumi's PostgreSQL backend takes postgres://, not postgresql://. Fix: --backend postgres://u:***@h/d",
    );
    expect(backendProblem("db.example.net")).toMatch(/^--backend db\.example\.net: expected a backend URL/);
    expect(backendProblem("postgres://u:p@h/d?sslmode=verify-full")).toBeUndefined();
  });
});

describe("the lock", () => {
  it("parses Pulumi's lock error once per holder, and nothing else", () => {
    expect(parseLockError(lockError("pw", "ci-runner", 4242))).toEqual([{ user: "root", host: "ci-runner", pid: 4242, since: "2026-11-30T18:40:02Z" }]);
    expect(parseLockError("error: failed to ping PostgreSQL: connection refused")).toBeUndefined();
  });

  it("a holder is stale only on this machine with its pid gone", () => {
    expect(isStale({ user: "root", host: hostname(), pid: 2 ** 22 + 7, since: "" })).toBe(true);
    expect(isStale({ user: "root", host: hostname(), pid: process.pid, since: "" })).toBe(false);
    expect(isStale({ user: "root", host: `not-${hostname()}`, pid: 2 ** 22 + 7, since: "" })).toBe(false);
  });

  it("names a live holder and since when, with the fix", () => {
    const h = { user: "alice", host: "laptop-x", pid: 31, since: new Date(Date.now() - 42_000).toISOString() };
    expect(lockMessage("home", [h], { waitedSeconds: 600 })).toMatch(
      /^stack home is locked by another run: alice@laptop-x \(pid 31\) since \S+ \(4\d s ago\); nothing was changed after waiting 600 s\. Fix: wait for it to finish and run again \(--lock-wait SECONDS waits for it\)\. If that run is dead .* `pulumi cancel --yes --stack home` against the same backend, then `meshfleet refresh --stack home`$/,
    );
  });

  it("with --lock-wait 0 fails at once; a dead holder is never waited for, and refresh clears it", async () => {
    const live = lockError("pw", "elsewhere", 7);
    const said: string[] = [];
    let cancelled = 0;
    const w = { seconds: 0, stack: "home", verb: "up", say: (l: string) => said.push(l), cancel: async () => void cancelled++ };
    const t0 = Date.now();
    expect(await onLockError({}, new Error(live), w)).toMatch(/^stack home is locked by another run: root@elsewhere \(pid 7\)/);
    expect(Date.now() - t0).toBeLessThan(500);
    const dead = lockError("pw", hostname(), 2 ** 22 + 7);
    const pending = () => [{ urn: "urn:pulumi:home::meshfleet::meshfleet:host:Generation::vps", type: "meshfleet:host:Generation", name: "vps", op: "creating" }];
    expect(await onLockError({}, new Error(dead), { ...w, seconds: 600, pending })).toMatch(
      /, and that process no longer runs on this machine \(killed or crashed mid-run\); it left meshfleet:host:Generation vps \(interrupted while creating\) half done\. Fix: `meshfleet refresh --stack home`/,
    );
    expect(cancelled).toBe(0);
    expect(await onLockError({}, new Error(dead), { ...w, verb: "refresh", pending })).toBe("retry");
    expect(cancelled).toBe(1);
    expect(said.join("\n")).toMatch(/cleared the lock left by root@\S+ \(pid \d+\)[\s\S]*it left meshfleet:host:Generation vps \(interrupted while creating\) half done/);
    expect(await onLockError({}, new Error("some other failure"), w)).toBeUndefined();
  });

  it("waits for a live holder, saying so once, then gives up naming the wait", async () => {
    const said: string[] = [];
    const key = {};
    const w = { seconds: 2, stack: "home", verb: "up", say: (l: string) => said.push(l), cancel: async () => {} };
    const err = new Error(lockError("pw", "elsewhere", 7));
    const outcomes: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await onLockError(key, err, w);
      outcomes.push(r);
      if (r !== "retry") break;
    }
    expect(outcomes[0]).toBe("retry");
    expect(outcomes.at(-1)).toMatch(/^stack home is locked by another run: .* nothing was changed after waiting \d s\./);
    expect(said).toEqual([expect.stringMatching(/^waiting for the lock: stack home is locked by root@elsewhere \(pid 7\) since 2026-11-30T18:40:02Z \(\d+ (s|min|h) ago\) \(up to 2 s; --lock-wait 0 fails at once\)$/)]);
  }, 20_000);
});

describe("two first runs on a shared backend", () => {
  const race = new Error('stderr: error: unable to open bucket postgres://u:***@h/d: failed to create table pulumi_state: pq: duplicate key value violates unique constraint "pg_type_typname_nsp_index" (23505)');
  it("the table race is tried again, the stack race selects, anything else is thrown", async () => {
    const calls: string[] = [];
    const seq = (errs: (Error | null)[]) => async () => {
      const e = errs.shift();
      calls.push(e ? "fail" : "ok");
      if (e) throw e;
      return "stack";
    };
    expect(await createOrSelectShared(seq([race, null]), async () => "selected")).toBe("stack");
    expect(calls).toEqual(["fail", "ok"]);
    expect(await createOrSelectShared(seq([new Error("error: stack 'organization/meshfleet/x' already exists")]), async () => "selected")).toBe("selected");
    // CI saw this one: the other run created the stack and already holds its update lock.
    expect(await createOrSelectShared(seq([new Error("error: could not create stack: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.")]), async () => "selected")).toBe("selected");
    // CI saw this one too: stack init listed a blob the other run was replacing.
    const gone = new Error("error: could not create stack: could not list bucket: blob (code=NotFound): sql: no rows in result set");
    calls.length = 0;
    expect(await createOrSelectShared(seq([gone, null]), async () => "selected")).toBe("stack");
    expect(calls).toEqual(["fail", "ok"]);
    await expect(createOrSelectShared(seq([gone, gone, gone, gone, gone]), async () => "selected")).rejects.toBe(gone);
    // And this one: init says the stack exists, select does not find it yet; from the top again, then selected there.
    const exists = new Error("error: stack 'organization/meshfleet/pgtest' already exists");
    const notYet = new Error("error: no stack named 'pgtest' found");
    const selects: Error[] = [notYet];
    const select = async () => {
      const e = selects.shift();
      if (e) throw e;
      return "selected";
    };
    calls.length = 0;
    expect(await createOrSelectShared(seq([exists, exists]), select)).toBe("selected");
    expect(calls).toEqual(["fail", "fail"]);
    await expect(createOrSelectShared(seq([exists, exists, exists, exists, exists]), async () => { throw notYet; })).rejects.toBe(notYet);
    // Another error from select is not retried.
    await expect(createOrSelectShared(seq([exists]), async () => { throw new Error("password authentication failed"); })).rejects.toThrow("password authentication failed");
    await expect(createOrSelectShared(seq([race, race, race, race, race]), async () => "selected")).rejects.toBe(race);
    await expect(createOrSelectShared(seq([new Error("password authentication failed")]), async () => "selected")).rejects.toThrow("password authentication failed");
  });
});

describe("pending operations", () => {
  // Pulumi 3.248's warning as the engine sent it in the real test.
  const warning =
    "Attempting to deploy or update resources with 1 pending operations from previous deployment.\n" +
    "  * urn:pulumi:pgcancel::meshfleet::meshfleet:host:Generation::testhost, interrupted while creating\n" +
    "These resources are in an unknown state because the Pulumi CLI was interrupted while waiting for changes to these resources to complete. [...]\n" +
    "Note that `pulumi refresh` will need to be run interactively to clear pending CREATE operations.";

  it("Pulumi's warning becomes meshfleet's: the resource, what happens now, and the fix", () => {
    expect(rewritePendingWarning(warning)).toBe(
      "a run that did not finish left meshfleet:host:Generation testhost (interrupted while creating) half done; its real state is unknown, and this run does it again. " +
        "Fix: `meshfleet refresh --stack pgcancel` reads every resource back and clears the pending operation (Pulumi keeps it, and this warning, until a refresh)",
    );
    expect(rewritePendingWarning("some other warning")).toBe("some other warning");
  });

  it("are read from an exported deployment", () => {
    expect(
      pendingOfDeployment({
        pending_operations: [{ type: "creating", resource: { urn: "urn:pulumi:s::meshfleet::meshfleet:host:Generation::vps", type: "meshfleet:host:Generation" } }],
      }),
    ).toEqual([{ urn: "urn:pulumi:s::meshfleet::meshfleet:host:Generation::vps", type: "meshfleet:host:Generation", name: "vps", op: "creating" }]);
    expect(pendingOfDeployment({ resources: [] })).toEqual([]);
  });
});
