/**
 * `meshfleet plan --nodes FILE`: both revisions evaluated on the coordinator's
 * addresses (headscale nodes list --output json), the tailnet's other devices
 * included. A rule written for a CIDR of the tailnet reaches whoever holds
 * those addresses; with stand-in addresses the plan cannot know who that is.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { command } from "../../cli/commands/plan.ts";

let repo: string;
let fleet: string;
let nodesFile: string;
const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8" }).trim();

async function plan(extra: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(console, "error").mockImplementation((s: unknown) => void (err += `${String(s)}\n`));
  try {
    const code = await command.run(["--base", "HEAD", "--hosts-dir", fleet, "--stack", "home", "--json", ...extra]);
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

beforeAll(() => {
  repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-nodes-"));
  fleet = path.join(repo, "hosts", "home");
  cpSync(path.resolve("hosts/home"), fleet, { recursive: true });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "home");
  // The working tree opens tcp/5432 on the servers to the first addresses of the tailnet.
  const f = path.join(fleet, "fleet.yaml");
  writeFileSync(f, readFileSync(f, "utf8").replace("  ssh:\n", '    - action: accept\n      src: ["100.64.0.0/30"]\n      dst: ["tag:server:5432"]\n  ssh:\n'));
  nodesFile = path.join(repo, "nodes.json");
  writeFileSync(nodesFile, JSON.stringify([
    { id: "1", name: "vps", given_name: "vps", ip_addresses: ["100.64.0.1", "fd7a:115c:a1e0::1"], user: { id: "1", name: "tagged-devices" }, tags: ["tag:server"] },
    { id: "2", name: "bobs-phone", given_name: "bobs-phone", ip_addresses: ["100.64.0.2", "fd7a:115c:a1e0::2"], user: { id: "2", name: "bob" } },
    { id: "3", name: "laptop", given_name: "laptop", ip_addresses: ["100.64.0.9", "fd7a:115c:a1e0::9"], user: { id: "3", name: "alice" } },
  ]));
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe("plan --nodes", () => {
  it("shows who really gains access through a CIDR rule", async () => {
    const withNodes = await plan(["--nodes", nodesFile]);
    expect(withNodes.code, withNodes.err).toBe(0);
    const d = JSON.parse(withNodes.out);
    // bob's phone (not a fleet host) holds 100.64.0.2: it gains tcp/5432 on the server.
    expect(d.reach.gained.map((g: { src: string; dst: string }) => `${g.src} -> ${g.dst}`)).toEqual(["bobs-phone -> vps"]);
    const without = JSON.parse((await plan([])).out);
    // On stand-in addresses no node sits in 100.64.0.0/30: the plan shows no change of reach.
    expect(without.reach.gained).toEqual([]);
    expect(without.reach.total).toEqual({ gained: 0, lost: 0, changed: 0 });
  });

  it("refuses a file that is not the coordinator's list (exit 1, the path named)", async () => {
    const bad = path.join(repo, "bad.json");
    writeFileSync(bad, '{"error":"connection refused"}');
    const r = await plan(["--nodes", bad]);
    expect(r.code).toBe(1);
    expect(r.err.split(repo).join("<repo>")).toBe(
      'error: <repo>/bad.json: error: expected a list of nodes, found headscale\'s error "connection refused". Fix: run the command again where headscale is running (it needs the server), then save its output\n' +
        "cannot plan: --nodes <repo>/bad.json is not the coordinator's nodes list\n",
    );
  });
});
