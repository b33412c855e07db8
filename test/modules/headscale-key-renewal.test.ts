/**
 * Issue 15 item 5: a pre-auth key is renewed before it expires for a host
 * that has not joined, and made again for a host whose node key expired, so
 * that `up` logs it in again. The decision is headscale-cli.ts's (pure); the
 * provider's PreAuthKey diff asks headscale for the facts once per run (ssh
 * answered by a recorder here; the lab drill is lab/e2e/drills/key-expiry.ts, run by test/lab/drills-lab.test.ts).
 */
import { existsSync, readFileSync } from "node:fs";
import { afterEach, describe, expect, it, vi } from "vitest";
import { logFile } from "../../provider/log.ts";
import { durationSeconds, parseRenewalFacts, preAuthKeyRenewal, renewalFactsCommand, RENEW_BEFORE_SECONDS, type HeadscaleNode, type PreAuthKeyListed } from "../../provider/headscale-cli.ts";
import { preAuthKey } from "../../provider/resources/headscale.ts";
import { session, type RunResult } from "../../provider/ssh.ts";
import type { PreAuthKeyOutputs, SshConnection } from "../../provider/types.ts";

const NOW = 1_800_000_000;
const DAY = 86400;
const k = { host: "nas", hostname: "nas", keyId: 7, expiration: "90d", reusable: false };
const key = (over: Partial<PreAuthKeyListed> = {}): PreAuthKeyListed => ({ id: 7, expiresAt: NOW + 60 * DAY, used: false, ...over });
const node = (over: Partial<HeadscaleNode> = {}): HeadscaleNode => ({ id: 3, name: "nas", given_name: "nas", online: true, ...over });

describe("preAuthKeyRenewal", () => {
  it("durations: headscale's units; NaN for anything else", () => {
    expect(durationSeconds("90d")).toBe(90 * DAY);
    expect(durationSeconds("2m")).toBe(120);
    expect(durationSeconds("1w")).toBe(7 * DAY);
    expect(durationSeconds("90 d")).toBeNaN();
  });

  it("a host that has not joined: renewed within 14 days of its key's expiry, not before", () => {
    expect(preAuthKeyRenewal(k, [], [key({ expiresAt: NOW + 15 * DAY })], NOW)).toMatchObject({ renew: false });
    const r = preAuthKeyRenewal(k, [], [key({ expiresAt: NOW + RENEW_BEFORE_SECONDS })], NOW);
    expect(r).toEqual({ renew: true, why: `the pre-auth key of nas (id 7) expires in ${RENEW_BEFORE_SECONDS}s and nas has not joined: renewed ${RENEW_BEFORE_SECONDS}s ahead` });
  });

  it("a short key is renewed when half its lifetime is left", () => {
    const short = { ...k, expiration: "1h" };
    expect(preAuthKeyRenewal(short, [], [key({ expiresAt: NOW + 1801 })], NOW).renew).toBe(false);
    expect(preAuthKeyRenewal(short, [], [key({ expiresAt: NOW + 1800 })], NOW).renew).toBe(true);
  });

  it("a host that has not joined: a key that is gone, expired, or used up is made again", () => {
    expect(preAuthKeyRenewal(k, [], [], NOW).why).toMatch(/is gone from headscale and nas has not joined/);
    expect(preAuthKeyRenewal(k, [], [key({ expiresAt: NOW - 1 })], NOW).why).toMatch(/expired and nas has not joined/);
    expect(preAuthKeyRenewal(k, [], [key({ used: true })], NOW).why).toMatch(/one-use pre-auth key of nas \(id 7\) was used, but no node named nas/);
    expect(preAuthKeyRenewal({ ...k, reusable: true }, [], [key({ used: true })], NOW).renew).toBe(false);
  });

  it("a joined host keeps its key whatever the key's expiry, unless its node key expired", () => {
    expect(preAuthKeyRenewal(k, [node()], [key({ expiresAt: NOW - DAY, used: true })], NOW)).toMatchObject({ renew: false, why: "nas has joined (node 3) and its node key is valid" });
    expect(preAuthKeyRenewal(k, [node({ expiry: { seconds: String(NOW + DAY) } })], [], NOW).renew).toBe(false);
    const r = preAuthKeyRenewal(k, [node({ expiry: { seconds: NOW - 60 } })], [key({ used: true })], NOW);
    expect(r).toEqual({ renew: true, why: `the node key of nas expired ${new Date((NOW - 60) * 1000).toISOString()}: a new pre-auth key for it to log in again` });
    // 0 is headscale's "never" (a tagged node).
    expect(preAuthKeyRenewal(k, [node({ expiry: { seconds: 0 } })], [], NOW).renew).toBe(false);
  });

  it("the node is found by its registered name, the newest one first", () => {
    const ns = [node({ id: 2, expiry: { seconds: NOW - 5 } }), node({ id: 9 })];
    expect(preAuthKeyRenewal(k, ns, [], NOW).renew).toBe(false);
    expect(preAuthKeyRenewal({ ...k, hostname: "nas-router" }, [node({ name: "nas-router", given_name: "nas-router" })], [], NOW).renew).toBe(false);
  });

  it("the facts: one command, two lists; anything else is an error naming the command", () => {
    expect(renewalFactsCommand({ runtime: "systemd", binary: "/usr/local/bin/headscale" })).toBe(
      "/usr/local/bin/headscale nodes list -o json && echo @@mf:keys@@ && /usr/local/bin/headscale preauthkeys list -o json",
    );
    expect(parseRenewalFacts('[{"id": 1, "name": "a"}]\n@@mf:keys@@\n[{"id": 4, "expiration": {"seconds": 5}, "used": true}]')).toEqual({
      nodes: [{ id: 1, name: "a" }],
      keys: [{ id: 4, expiresAt: 5, used: true }],
    });
    expect(() => parseRenewalFacts("null")).toThrow(/expected two JSON lists/);
  });
});

describe("PreAuthKey diff asks headscale whether to renew", () => {
  const conn: SshConnection = { name: "vps", host: "203.0.113.11", port: 22, user: "root", hostKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIvps"] };
  const base = { cli: { runtime: "systemd" as const, binary: "/usr/local/bin/headscale" }, connection: conn };
  const SECRET = "hskey-auth-renewalsecret-0123456789";
  const olds: PreAuthKeyOutputs = { ...base, host: "nas", userId: 1, reusable: false, ephemeral: false, expiration: "90d", tags: [], key: SECRET, keyId: 7, expired: false };
  const { key: _k, keyId: _i, expired: _e, ...news } = olds;
  let port = 2200;
  afterEach(() => vi.restoreAllMocks());

  function facts(nodes: unknown[], keys: unknown[], code = 0) {
    const seen: string[] = [];
    vi.spyOn(session, "run").mockImplementation(async (_c, script, o) => {
      seen.push(`${script} quiet=${o?.quiet === true}`);
      return { code, stdout: code ? "" : `${JSON.stringify(nodes)}\n@@mf:keys@@\n${JSON.stringify(keys)}`, stderr: code ? "connection refused" : "" } as RunResult;
    });
    // Each case its own coordinator address: the facts are kept per coordinator for a run.
    const connection = { ...conn, port: port++ };
    return { seen, olds: { ...olds, connection }, news: { ...news, connection } };
  }

  it("a key 10 days from expiry for a host that has not joined: replaced; the key is never in the log", async () => {
    const file = logFile();
    const before = file && existsSync(file) ? readFileSync(file, "utf8").length : 0;
    const f = facts([], [{ id: 7, expiration: { seconds: Math.floor(Date.now() / 1000) + 10 * DAY } }]);
    expect(await preAuthKey.diff(f.olds, f.news)).toMatchObject({ changes: true, replaces: ["key"] });
    expect(f.seen).toEqual(["/usr/local/bin/headscale nodes list -o json && echo @@mf:keys@@ && /usr/local/bin/headscale preauthkeys list -o json quiet=true"]);
    if (file) {
      const logged = readFileSync(file, "utf8").slice(before);
      expect(logged).toMatch(/pre-auth key of nas: the pre-auth key of nas \(id 7\) expires in \d+s and nas has not joined: renewed 1209600s ahead; a new key replaces it/);
      expect(logged).not.toContain(SECRET);
    }
  });

  it("a key 30 days from expiry: unchanged; a second key's diff in the same run asks no second time", async () => {
    const f = facts([], [{ id: 7, expiration: { seconds: Math.floor(Date.now() / 1000) + 30 * DAY } }]);
    expect((await preAuthKey.diff(f.olds, f.news)).changes).toBe(false);
    expect((await preAuthKey.diff(f.olds, f.news)).changes).toBe(false);
    expect(f.seen).toHaveLength(1);
  });

  it("the host joined and its node key expired: replaced (the new key logs it in again)", async () => {
    const f = facts([{ id: 3, name: "nas", given_name: "nas", expiry: { seconds: Math.floor(Date.now() / 1000) - 30 } }], [{ id: 7, used: true, expiration: { seconds: 1 } }]);
    expect(await preAuthKey.diff(f.olds, f.news)).toMatchObject({ changes: true, replaces: ["key"] });
  });

  it("the lookup dials once with a short deadline (a preview does not wait out 30 dials), and the 20 s cache counts from the answer", async () => {
    const opts: { attempts?: number; until?: number; timeoutMs?: number }[] = [];
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      const t0 = Date.now();
      vi.spyOn(session, "run").mockImplementation(async (_c, _s, o) => {
        opts.push({ attempts: o.attempts, until: o.until, timeoutMs: o.timeoutMs });
        await new Promise((r) => setTimeout(r, 0));
        vi.setSystemTime(Date.now() + 25_000); // a slow answer
        return { code: 0, stdout: `[]\n@@mf:keys@@\n${JSON.stringify([{ id: 7, expiration: { seconds: Math.floor(t0 / 1000) + 30 * DAY } }])}`, stderr: "" };
      });
      const connection = { ...conn, port: port++ };
      const f = { olds: { ...olds, connection }, news: { ...news, connection } };
      expect((await preAuthKey.diff(f.olds, f.news)).changes).toBe(false);
      expect((await preAuthKey.diff(f.olds, f.news)).changes).toBe(false);
      expect(opts).toHaveLength(1);
      expect(opts[0]!.attempts).toBe(1);
      expect(opts[0]!.until! - t0).toBeLessThanOrEqual(10_000);
      expect(opts[0]!.timeoutMs).toBeLessThanOrEqual(30_000);
    } finally {
      vi.useRealTimers();
    }
  });

  it("headscale cannot be asked: the key is left as it is (the deploy goes on)", async () => {
    const f = facts([], [], 255);
    expect((await preAuthKey.diff(f.olds, f.news)).changes).toBe(false);
  });
});
