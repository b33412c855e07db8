/**
 * `meshfleet plan` on a real git history: a temp repository with the home
 * fleet, then one commit per kind of change. Each plan must report the
 * change made and nothing else.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { command } from "../../cli/commands/plan.ts";
import type { NetworkDiff } from "../../core/netdiff/index.ts";

let repo: string;
let fleet: string;
const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8" }).trim();
const commit = (msg: string) => {
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", msg);
};
const edit = (file: string, f: (s: string) => string) => writeFileSync(path.join(fleet, file), f(readFileSync(path.join(fleet, file), "utf8")));

async function plan(base: string, json = true): Promise<{ code: number; out: string }> {
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const err = vi.spyOn(console, "error").mockImplementation(() => {});
  try {
    const code = await command.run(["--base", base, "--hosts-dir", fleet, "--stack", "home", ...(json ? ["--json"] : [])]);
    return { code, out };
  } finally {
    spy.mockRestore();
    err.mockRestore();
  }
}
const diffOf = async (base: string): Promise<NetworkDiff> => {
  const r = await plan(base);
  expect(r.code).toBe(0);
  return JSON.parse(r.out);
};
/** Everything in the diff that is not empty, by section. */
const touched = (d: NetworkDiff) => {
  const t: string[] = [];
  if (d.hosts.added.length || d.hosts.removed.length) t.push("hosts");
  if (d.hosts.roles.length) t.push("roles");
  if (d.hosts.tags.length) t.push("tags");
  if (d.routes.added.length || d.routes.removed.length) t.push("routes");
  if (d.exitNodes.added.length || d.exitNodes.removed.length) t.push("exitNodes");
  if (d.reach.total.gained || d.reach.total.lost || d.reach.total.changed) t.push("reach");
  if (d.dns.added.length || d.dns.removed.length) t.push("dns");
  if (d.publicPorts.opened.length || d.publicPorts.closed.length) t.push("ports");
  if (d.firewall.policies.length || d.firewall.limited.added.length || d.firewall.limited.removed.length) t.push("firewall");
  if (d.versions.length) t.push("versions");
  if (d.policyChanged) t.push("policy");
  return t;
};

beforeAll(() => {
  repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-test-"));
  fleet = path.join(repo, "hosts", "home");
  cpSync(path.resolve("hosts/home"), fleet, { recursive: true });
  git("init", "-q", "-b", "main");
  commit("home fleet");
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe("meshfleet plan over a commit sequence", () => {
  it("reports no change against HEAD", async () => {
    const d = await diffOf("HEAD");
    expect(d.empty).toBe(true);
    expect((await plan("HEAD", false)).out).toContain("No change to the network.");
  });

  it("a new client host: the host and its reachability, nothing else (its firewall drops nothing: no ports, no policy change)", async () => {
    cpSync(path.join(fleet, "laptop.yaml"), path.join(fleet, "desk.yaml"));
    edit("desk.yaml", (s) => s.replace("address: 192.168.8.50", "address: 192.168.8.51"));
    commit("add desk");
    const d = await diffOf("HEAD~1");
    expect(d.hosts.added).toEqual(["desk"]);
    // A plain client keeps every port it had (input policy accept): nothing is opened or closed (issue 13 item 1).
    expect(touched(d).sort()).toEqual(["hosts", "reach"]);
    expect(d.reach.gained.every((c) => c.src === "desk" || c.dst === "desk")).toBe(true);
    expect(d.reach.gained.find((c) => c.src === "desk" && c.dst === "192.168.8.0/24 via lxc-tailscale")?.why).toEqual(["acls[0]: group:admins -> *:*"]);
    expect(d.reach.total.lost + d.reach.total.changed).toBe(0);
    expect(d.publicPorts.opened).toEqual([]);
  });

  it("a policy rule: the pairs it opens and the rule responsible", async () => {
    edit("fleet.yaml", (s) => s.replace("  ssh:\n", "    - action: accept\n      src: [tag:server]\n      dst: [\"tag:router:22\"]\n  ssh:\n"));
    commit("servers may ssh the router");
    const d = await diffOf("HEAD~1");
    expect(touched(d).sort()).toEqual(["policy", "reach"]);
    expect(d.reach.gained).toEqual([{ src: "vps", dst: "lxc-tailscale", kind: "node", before: "", after: "any:22", why: ["acls[2]: tag:server -> tag:router:22"] }]);
  });

  it("a new route: the route, its approval and the pairs through it", async () => {
    edit("lxc-tailscale.yaml", (s) => s.replace("lan: [192.168.8.0/24, 192.168.20.0/24]", "lan: [192.168.8.0/24, 192.168.20.0/24, 192.168.30.0/24]").replace("routes: [192.168.8.0/24, 192.168.20.0/24]", "routes: [192.168.8.0/24, 192.168.20.0/24, 192.168.30.0/24]"));
    commit("route the lab vlan");
    const d = await diffOf("HEAD~1");
    expect(d.routes.added).toEqual([{ host: "lxc-tailscale", route: "192.168.30.0/24", approved: true }]);
    expect(d.reach.gained.map((c) => c.dst)).toEqual(d.reach.gained.map(() => "192.168.30.0/24 via lxc-tailscale"));
    expect(d.reach.total.gained).toBeGreaterThan(0);
    // The generated autoApprovers change the policy text too.
    expect(touched(d).sort()).toEqual(["policy", "reach", "routes"]);
  });

  it("removing a host: the host and every pair it was in (a client: no ports to close)", async () => {
    rmSync(path.join(fleet, "desk.yaml"));
    commit("drop desk");
    const d = await diffOf("HEAD~1");
    expect(d.hosts.removed).toEqual(["desk"]);
    expect(d.reach.lost.length).toBeGreaterThan(0);
    expect(d.reach.lost.every((c) => c.src === "desk" || c.dst === "desk")).toBe(true);
    expect(touched(d).sort()).toEqual(["hosts", "reach"]);
  });

  it("against the first commit, sums the whole history", async () => {
    const d = await diffOf("HEAD~4");
    expect(d.hosts.added).toEqual([]);
    expect(d.routes.added.map((r) => r.route)).toEqual(["192.168.30.0/24"]);
    expect(d.reach.gained.some((c) => c.src === "vps" && c.dst === "lxc-tailscale")).toBe(true);
    const md = (await plan("HEAD~4", false)).out;
    expect(md).toContain("```mermaid");
    expect(md).toContain("192.168.30.0/24");
  });

  it("a base without the fleet folder is an empty fleet; a bad ref is one line", async () => {
    writeFileSync(path.join(repo, "README"), "x");
    git("checkout", "-q", "--orphan", "empty");
    git("rm", "-rq", "--cached", ".");
    git("add", "README");
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "empty");
    const emptyRef = git("rev-parse", "HEAD");
    git("checkout", "-q", "-f", "main");
    const d = await diffOf(emptyRef);
    expect(d.hosts.added.length).toBe(5);
    await expect(command.run(["--base", "no-such-ref", "--hosts-dir", fleet])).rejects.toThrow(/--base no-such-ref: not a git revision/);
  });
});
