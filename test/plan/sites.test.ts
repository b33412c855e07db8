/**
 * `meshfleet plan` across stacks: a temp repository with the example fleet
 * with sites (hosts/core, hosts/home-site, hosts/office). A change made in
 * the core's folder alone shows, from any stack, its effect on every site's
 * hosts, each host labelled with the stack that deploys it; the base is
 * read with its sibling folders.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { command } from "../../cli/commands/plan.ts";

let repo: string;
const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8" }).trim();
const commit = (msg: string) => {
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", msg);
};
const coreFleet = () => path.join(repo, "hosts", "core", "fleet.yaml");
const edit = (f: (s: string) => string) => {
  const before = readFileSync(coreFleet(), "utf8");
  const after = f(before);
  expect(after).not.toBe(before);
  writeFileSync(coreFleet(), after);
};

async function plan(stack: string, json: boolean): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void (err += a.join(" ") + "\n"));
  try {
    const code = await command.run(["--base", "HEAD", "--hosts-dir", path.join(repo, "hosts", stack), "--stack", stack, ...(json ? ["--json"] : [])]);
    return { code, out, err };
  } finally {
    spy.mockRestore();
    e.mockRestore();
  }
}

beforeAll(() => {
  repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-sites-"));
  for (const s of ["core", "home-site", "office"]) cpSync(path.resolve("hosts", s), path.join(repo, "hosts", s), { recursive: true });
  git("init", "-q", "-b", "main");
  commit("fleet with sites");
});
afterAll(() => rmSync(repo, { recursive: true, force: true }));

describe("plan across stacks", () => {
  it("no change, from every stack", async () => {
    for (const s of ["core", "home-site", "office"]) {
      const r = await plan(s, true);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out).empty).toBe(true);
    }
  });

  it("a policy change in core: every stack's plan shows the office losing the home file server, and the core's generation", async () => {
    edit((s) =>
      s
        .replace('dst: ["10.20.0.0/24:*", "192.168.8.10:445"]', 'dst: ["10.20.0.0/24:*"]')
        .replace('accept: ["10.20.0.5:443", "192.168.8.10:445"]\n      deny: ["192.168.8.10:22"]', 'accept: ["10.20.0.5:443"]\n      deny: ["192.168.8.10:445", "192.168.8.10:22"]'),
    );
    try {
      for (const s of ["core", "home-site", "office"]) {
        const r = await plan(s, true);
        expect(r.err).toBe("");
        const d = JSON.parse(r.out);
        // A host of the office (desk) loses a LAN of the home site (through home-router): both sites' hosts in one diff.
        expect(d.reach.lost.map((x: { src: string; dst: string }) => `${x.src} -> ${x.dst}`)).toEqual(["desk -> 192.168.8.0/24 via home-router"]);
        expect(d.warnings.map((w: { kind: string; message: string }) => `${w.kind}: ${w.message}`)).toEqual(["reachability-lost: 192.168.8.0/24 via home-router can no longer be reached from desk"]);
        expect(d.generations.map((g: { host: string; stack?: string }) => `${g.host} (${g.stack})`)).toEqual(["vps (core)"]);
      }
      const md = (await plan("office", false)).out;
      expect(md).toContain("the whole fleet of stacks core, home-site, office (this stack deploys desk, office-router)");
      expect(md).toContain("#### `vps` — stack core");
    } finally {
      git("checkout", "--", "hosts/core/fleet.yaml");
    }
  });

  it("a change of the coordinator's URL in core: a new generation on every site's hosts, each named with its stack", async () => {
    edit((s) => s.replace("serverUrl: https://headscale.example.com", "serverUrl: https://hs.example.org"));
    try {
      const r = await plan("home-site", true);
      expect(r.err).toBe("");
      const g = JSON.parse(r.out).generations as { host: string; stack: string; tailscale: { setting: string; after: unknown }[] }[];
      expect(g.map((x) => `${x.host} (${x.stack})`)).toEqual(["desk (office)", "home-router (home-site)", "laptop (home-site)", "office-router (office)", "vps (core)"]);
      for (const x of g.filter((h) => h.host !== "vps")) expect(JSON.stringify(x.tailscale)).toContain("https://hs.example.org");
    } finally {
      git("checkout", "--", "hosts/core/fleet.yaml");
    }
  });

  it("the base is read with its sibling folders: a host added to a site shows as new, from the core's plan", async () => {
    cpSync(path.join(repo, "hosts", "office", "desk.yaml"), path.join(repo, "hosts", "office", "desk2.yaml"));
    writeFileSync(path.join(repo, "hosts", "office", "desk2.yaml"), readFileSync(path.join(repo, "hosts", "office", "desk.yaml"), "utf8").replace("10.20.0.30", "10.20.0.31"));
    try {
      const r = await plan("core", true);
      expect(r.err).toBe("");
      const d = JSON.parse(r.out);
      expect(d.hosts.added).toEqual(["desk2"]);
      expect(d.generations.map((g: { host: string; stack?: string; change: string }) => `${g.host} (${g.stack}, ${g.change})`)).toEqual(["desk2 (office, new)"]);
    } finally {
      rmSync(path.join(repo, "hosts", "office", "desk2.yaml"));
    }
  });
});
