/**
 * `meshfleet plan` per host (issue 13, item 5): ten scripted edits of the
 * home fleet, each committed in a temp git repository and planned against
 * the commit before. Each report states the effect (a host section with
 * files, restarts, tailscale settings and firewall lines, or a warning);
 * none says "No change".
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { command, type HostGeneration, type PlanWarning } from "../../cli/commands/plan.ts";

let repo: string;
let fleet: string;
const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8" }).trim();
const edit = (file: string, f: (s: string) => string) => writeFileSync(path.join(fleet, file), f(readFileSync(path.join(fleet, file), "utf8")));

async function plan(json: boolean): Promise<string> {
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const err = vi.spyOn(console, "error").mockImplementation(() => {});
  try {
    expect(await command.run(["--base", "HEAD", "--hosts-dir", fleet, "--stack", "home", ...(json ? ["--json"] : [])])).toBe(0);
    return out;
  } finally {
    spy.mockRestore();
    err.mockRestore();
  }
}

/** Make the edit, plan it against HEAD (JSON and Markdown), then commit it for the next one. */
async function step(change: () => void) {
  change();
  const json = JSON.parse(await plan(true)) as { generations: HostGeneration[]; warnings: PlanWarning[]; empty: boolean; policyChanged: boolean };
  const md = await plan(false);
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "step");
  expect(json.empty).toBe(false);
  expect(md).not.toMatch(/No change/);
  const gen = (h: string) => json.generations.find((g) => g.host === h);
  return { json, md, gen };
}

beforeAll(() => {
  repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-gen-"));
  fleet = path.join(repo, "hosts", "home");
  cpSync(path.resolve("hosts/home"), fleet, { recursive: true });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "home");
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe("plan over ten edits of the home fleet", { timeout: 120_000 }, () => {
  it("1. the laptop's acceptRoutes off: a warning that it loses the LAN routes, and its tailscale setting", async () => {
    const r = await step(() => edit("laptop.yaml", (s) => s.replace("acceptRoutes: true", "acceptRoutes: false")));
    expect(r.json.warnings).toContainEqual(expect.objectContaining({ kind: "routes-lost", host: "laptop", message: expect.stringContaining("192.168.8.0/24 (via lxc-tailscale)") }));
    expect(r.gen("laptop")?.tailscale).toContainEqual({ setting: "acceptRoutes", before: true, after: false });
    expect(r.md).toContain("**routes-lost**: laptop stops using the subnet routes it used");
    expect(r.md).toContain("- tailscale acceptRoutes: true → false");
  });

  it("2. headscale's logLevel: the VPS's config file changes and headscale restarts", async () => {
    const r = await step(() => edit("vps.yaml", (s) => s + "headscale:\n  logLevel: debug\n"));
    const vps = r.gen("vps")!;
    expect(vps.change).toBe("changed");
    expect(vps.files.changed.some((f) => f.includes("headscale"))).toBe(true);
    // The VPS runs headscale in docker (runtime: docker): the container restarts for its new config file.
    expect(vps.containers.restarted).toContainEqual({ container: "headscale", because: [expect.stringMatching(/headscale.*config/)] });
    expect(r.json.generations.map((g) => g.host)).toEqual(["vps"]);
    expect(r.md).toMatch(/#### `vps`[\s\S]*restarts container `headscale` \(`[^`]*headscale[^`]*` changed\)/);
  });

  it("3. a headscale downgrade (0.29.2 → 0.29.1) is a warning", async () => {
    const r = await step(() => edit("fleet.yaml", (s) => s.replace("headscaleVersion: 0.29.2", "headscaleVersion: 0.29.1")));
    expect(r.json.warnings).toContainEqual(expect.objectContaining({ kind: "downgrade", message: expect.stringMatching(/headscale goes back from 0\.29\.2 to 0\.29\.1/) }));
  });

  it("4. a route removed: the router's new generation and the route gone", async () => {
    const r = await step(() => edit("lxc-tailscale.yaml", (s) => s.replace("routes: [192.168.8.0/24, 192.168.20.0/24]", "routes: [192.168.8.0/24]")));
    expect(r.gen("lxc-tailscale")?.tailscale.some((t) => t.setting === "routes" || /route/i.test(t.setting))).toBe(true);
    expect(r.md).toMatch(/192\.168\.20\.0\/24/);
  });

  it("5. a firewall port opened, then 6. closed: the nft lines added and removed, and a warning on closing", async () => {
    const open = await step(() => edit("exit.yaml", (s) => s + "firewall:\n  allowedTCPPorts: [8080]\n"));
    expect(open.gen("exit")?.firewall.added.join("\n")).toMatch(/8080/);
    expect(open.md).toMatch(/```diff\n(?:.*\n)*\+ .*8080/);
    const closed = await step(() => edit("exit.yaml", (s) => s.replace("allowedTCPPorts: [8080]", "allowedTCPPorts: []")));
    expect(closed.gen("exit")?.firewall.removed.join("\n")).toMatch(/8080/);
    expect(closed.json.warnings.some((w) => w.kind === "reachability-lost" && w.host === "exit")).toBe(true);
  });

  it("7. a host added: its first generation", async () => {
    const r = await step(() => writeFileSync(path.join(fleet, "nas.yaml"), "imports: [client]\naddress: 192.168.8.70\ntailscale:\n  tags: [tag:server]\n"));
    expect(r.gen("nas")).toMatchObject({ change: "new" });
    expect(r.gen("nas")!.units.started.length).toBeGreaterThan(0);
  });

  it("8. an ACL widened: the policy and who reaches what", async () => {
    const r = await step(() =>
      edit("fleet.yaml", (s) => s.replace("  acls:\n", "  acls:\n    - action: accept\n      src: [tag:exit]\n      dst: [\"tag:server:22\"]\n")),
    );
    expect(r.json.policyChanged).toBe(true);
    expect(r.md).toMatch(/Reachability|policy/i);
  });

  it("9. the firewall turned off on a host, then 10. on again: the table goes and comes, with a warning", async () => {
    const off = await step(() => edit("exit.yaml", (s) => s.replace("firewall:\n  allowedTCPPorts: []\n", "firewall:\n  enable: false\n")));
    expect(off.gen("exit")?.firewall.removed.length).toBeGreaterThan(0);
    const on = await step(() => edit("exit.yaml", (s) => s.replace("firewall:\n  enable: false\n", "")));
    expect(on.gen("exit")?.firewall.added.length).toBeGreaterThan(0);
    expect(on.json.warnings).toContainEqual(expect.objectContaining({ kind: "firewall-closes", host: "exit" }));
  });
});
