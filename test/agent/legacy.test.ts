/**
 * A host upgraded to this agent still has generations an older agent stored
 * (bundle format 1: the nft table as text, tailscale settings with argv).
 * Its current one must stay readable, a switch from it must work, and a
 * rollback (or a failed first switch) must bring it back, nft text and all.
 * New bundles in format 1 are refused (bundle.test.ts); stored ones are not.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { nftRuleset } from "../../contract/nftables.ts";
import { sha256 } from "../../contract/bundle.ts";
import { agent, buildAgent, bundle, file, read, tempRoot, writeBundle } from "./helpers.ts";

beforeAll(() => {
  buildAgent();
});

const LEGACY_NFT = "table inet meshfleet {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 7000 accept\n\t}\n}\n";
const CONF = "v=legacy\n";

/** What the format-1 agent left: its generation 1 current, its files, sysctl and table live. */
function legacyHost(): string {
  const root = tempRoot();
  const w = (p: string, s: string, mode = 0o644) => {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), s, { mode });
  };
  const v1 = {
    format: 1,
    host: "testhost",
    hash: "a".repeat(64),
    files: [{ path: "/etc/app/app.conf", mode: "0644", owner: "root", group: "root", sha256: sha256(CONF), content: CONF, secret: false }],
    sysctl: { "net.ipv4.ip_forward": "1" },
    nftables: LEGACY_NFT,
    units: [],
    tailscale: null,
    probes: [],
    metrics: { enable: false, textfileDir: "" },
    bestEffort: [],
    peerSets: { peers_0: { members: ["laptop"], cidrs: ["192.168.50.0/24"] } },
  };
  const g = "var/lib/meshfleet/generations/1";
  w(`${g}/bundle.json`, JSON.stringify(v1) + "\n", 0o600);
  w(`${g}/meta.json`, JSON.stringify({ generation: 1, host: "testhost", hash: v1.hash, createdAt: "2026-11-01T00:00:00.000Z", status: "active" }) + "\n", 0o600);
  w(`${g}/nftables.nft`, LEGACY_NFT, 0o600);
  fs.symlinkSync("generations/1", path.join(root, "var/lib/meshfleet/current"));
  w("etc/app/app.conf", CONF);
  w("etc/sysctl.d/90-meshfleet.conf", "net.ipv4.ip_forward = 1\n");
  w("proc/sys/net/ipv4/ip_forward", "1\n");
  w("sim/nft", LEGACY_NFT);
  return root;
}

const fw = {
  family: "inet" as const,
  table: "meshfleet" as const,
  sets: [],
  chains: [{ name: "input", hook: { type: "filter" as const, hook: "input" as const, priority: "filter" as const, policy: "accept" as const }, rules: [{ l4: { proto: "tcp" as const, dports: [8080] }, verdict: "accept" as const }] }],
};
const next = () => bundle({ files: [file("/etc/app/app.conf", "v=2\n")], sysctl: { "net.ipv4.ip_forward": "1" }, firewall: fw });

describe("generations an older agent stored", () => {
  it("the current one reads: status names it, diff plans from it", () => {
    const root = legacyHost();
    const s = agent(root, ["status"]);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stdout).toContain("host testhost: generation 1 (bundle aaaaaaaaaaaa");
    const d = agent(root, ["diff", writeBundle(root, next())]);
    expect(d.code, d.stderr).toBe(0);
    expect(d.stdout).toContain("nftables: replace table inet meshfleet (ruleset changed (from a generation an older agent wrote))");
    expect(d.stdout).toContain("file: write /etc/app/app.conf (content changed)");
  });

  it("a switch from it works, and rollback brings its files and its table text back", () => {
    const root = legacyHost();
    const r = agent(root, ["switch", writeBundle(root, next())]);
    expect(r.code, r.stderr).toBe(0);
    expect(read(root, "etc/app/app.conf")).toBe("v=2\n");
    expect(read(root, "sim/nft")?.trim()).toBe(nftRuleset(fw)!.trim());
    const back = agent(root, ["rollback"]);
    expect(back.code, back.stderr).toBe(0);
    expect(read(root, "etc/app/app.conf")).toBe(CONF);
    expect(read(root, "sim/nft")?.trim()).toBe(LEGACY_NFT.trim());
    expect(fs.readlinkSync(path.join(root, "var/lib/meshfleet/current"))).toBe("generations/1");
    // Its peer sets (format 1 kept them beside the text) are refreshed as before.
    fs.writeFileSync(path.join(root, "sim/ts-status.json"), JSON.stringify({ BackendState: "Running", Peer: { "nodekey:a": { HostName: "laptop", DNSName: "laptop.tailnet.", TailscaleIPs: ["100.64.0.3"] } } }));
    const p = agent(root, ["peers"]);
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toContain("peers: 2 set(s) refreshed; 1/1 allowed hosts online (laptop)");
    expect(read(root, "var/lib/meshfleet/nft-peers.nft")).toContain("add element inet meshfleet peers_0_v4 { 192.168.50.0/24, 100.64.0.3 }");
  });

  it("a failed first switch rolls back to it", () => {
    const root = legacyHost();
    fs.writeFileSync(path.join(root, "sim/fail-units"), "new.service\n");
    const b = bundle({ ...next(), units: [{ name: "new.service", content: "[Service]\nExecStart=/bin/true\n", enable: true }] });
    const r = agent(root, ["switch", writeBundle(root, b)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rolled back to generation 1/);
    expect(read(root, "etc/app/app.conf")).toBe(CONF);
    expect(read(root, "sim/nft")?.trim()).toBe(LEGACY_NFT.trim());
  });
});
