/**
 * `meshfleet status` lists what expires within 14 days (issue 15 item 5):
 * node keys from headscale, and the pre-auth key of each host that has not
 * joined yet, each with what to do. Pure: expiringKeys and statusLines.
 */
import { describe, expect, it } from "vitest";
import { expiringKeys, statusLines, type FleetStatus } from "../../cli/commands/status.ts";
import type { PreAuthKeyRequest } from "../../core/types.ts";

const NOW = Date.parse("2026-12-01T00:00:00Z");
const S = NOW / 1000;
const DAY = 86400;
const hosts = [
  { name: "laptop", hostname: "laptop", tailscale: true },
  { name: "nas", hostname: "nas", tailscale: true },
  { name: "vps", hostname: "vps", tailscale: false },
  { name: "phone", hostname: "phone", tailscale: true },
];
const req = (host: string, over: Partial<PreAuthKeyRequest> = {}): PreAuthKeyRequest => ({ host, user: "alice", reusable: false, ephemeral: false, expiration: "90d", tags: [], ...over });

describe("expiringKeys", () => {
  it("node keys within 14 days, expired ones first, with the fix; tagged (no expiry) and far ones left out", () => {
    const nodes = [
      { id: 1, name: "laptop", given_name: "laptop", expiry: { seconds: S + 3 * DAY } },
      { id: 2, name: "phone", given_name: "phone", expiry: { seconds: S - 60 } },
      { id: 3, name: "nas", given_name: "nas", expiry: { seconds: 0 } },
    ];
    const e = expiringKeys(hosts, [req("laptop"), req("nas", { user: "", tags: ["tag:nas"] })], nodes, [], NOW);
    expect(e).toEqual([
      { kind: "node key", host: "phone", at: new Date((S - 60) * 1000).toISOString(), expired: true, fix: "log it in again (`tailscale up --force-reauth`): the fleet makes no pre-auth key for it" },
      { kind: "node key", host: "laptop", at: new Date((S + 3 * DAY) * 1000).toISOString(), expired: false, fix: "after it expires, `meshfleet up` logs it in again; or now: `tailscale up --force-reauth` on the host" },
    ]);
    expect(expiringKeys(hosts, [req("phone")], nodes, [], NOW)[0]!.fix).toBe("`meshfleet up` makes it a new pre-auth key and logs it in again");
    expect(expiringKeys(hosts, [], [{ id: 1, name: "laptop", expiry: { seconds: S + 15 * DAY } }], [], NOW)).toEqual([]);
  });

  it("a host that has not joined: the newest unused key that fits its request (user and tags)", () => {
    const keys = [
      { id: 4, user: { name: "alice" }, acl_tags: [], used: false, expiration: { seconds: S + 5 * DAY } },
      { id: 5, user: null, acl_tags: ["tag:nas"], used: false, expiration: { seconds: S + 2 * DAY } },
      { id: 6, user: null, acl_tags: ["tag:nas"], used: true, expiration: { seconds: S + 1 * DAY } },
      { id: 7, user: null, acl_tags: ["tag:other"], used: false, expiration: { seconds: S + 1 * DAY } },
    ];
    const e = expiringKeys(hosts, [req("nas", { user: "", tags: ["tag:nas"] })], [], keys, NOW);
    expect(e).toEqual([{ kind: "pre-auth key", host: "nas", at: new Date((S + 2 * DAY) * 1000).toISOString(), expired: false, fix: "nas has not joined yet; `meshfleet up` renews its key (id 5)" }]);
    // A key 20 days out is not listed; a host without a key request is not either.
    expect(expiringKeys(hosts, [req("laptop")], [], [{ ...keys[0]!, expiration: { seconds: S + 20 * DAY } }], NOW)).toEqual([]);
  });

  it("statusLines prints each after the table", () => {
    const s: FleetStatus = {
      stack: "lab",
      at: "",
      ms: 10,
      coordinator: "vps",
      hosts: [],
      expiring: [{ kind: "node key", host: "laptop", at: "2026-12-01T00:00:00.000Z", expired: true, fix: "`meshfleet up` makes it a new pre-auth key and logs it in again" }],
    };
    expect(statusLines(s)).toContain("EXPIRED: node key of laptop (at 2026-12-01T00:00:00.000Z): `meshfleet up` makes it a new pre-auth key and logs it in again");
  });
});
