/**
 * A policy file (fleet.yaml `policy: ./policy.hujson`) in a fleet with
 * sites, through `meshfleet plan`: the base revision is read from git with
 * the policy file in it, and a site stack resolves the path against the
 * core's folder (a policy.hujson in the site's own folder is never read).
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { baseReads, command } from "../../cli/commands/plan.ts";
import { evaluateFleet } from "../../core/eval.ts";
import { stripPrio } from "../../core/merge.ts";
import { loadFleetDir } from "../../core/load.ts";
import { REGISTRY } from "../../modules/index.ts";

let repo: string;
const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8" }).trim();
const commit = (msg: string) => {
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", msg);
};
const core = (f: string) => path.join(repo, "hosts", "core", f);
let inlineHuJson: string;
// The machine's git configuration and attributes are not read (a global core.autocrlf true would send plan to git archive).
const ISOLATED = ["GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_ATTR_NOSYSTEM", "XDG_CONFIG_HOME"] as const;
const savedEnv = Object.fromEntries(ISOLATED.map((k) => [k, process.env[k]]));
let gitEnv: string;

async function plan(stack: string): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void (err += a.join(" ") + "\n"));
  const read = baseReads.memory;
  try {
    const code = await command.run(["--base", "HEAD", "--hosts-dir", path.join(repo, "hosts", stack), "--stack", stack, "--json"]);
    expect(baseReads.memory - read, "the base read from git objects in memory").toBe(1);
    return { code, out, err };
  } finally {
    spy.mockRestore();
    e.mockRestore();
  }
}

beforeAll(async () => {
  repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-policy-file-"));
  gitEnv = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-policy-gitenv-"));
  mkdirSync(path.join(gitEnv, "xdg"));
  writeFileSync(path.join(gitEnv, "gitconfig"), "");
  Object.assign(process.env, { GIT_CONFIG_GLOBAL: path.join(gitEnv, "gitconfig"), GIT_CONFIG_NOSYSTEM: "1", GIT_ATTR_NOSYSTEM: "1", XDG_CONFIG_HOME: path.join(gitEnv, "xdg") });
  for (const s of ["core", "home-site", "office"]) cpSync(path.resolve("hosts", s), path.join(repo, "hosts", s), { recursive: true });
  inlineHuJson = (await evaluateFleet(REGISTRY, path.join(repo, "hosts", "office"), "office")).fleet!.policyHuJson;
  // The core's policy moved into policy.hujson, as headscale's file: the same policy, with a comment.
  const policy = stripPrio((await loadFleetDir(path.join(repo, "hosts", "core"))).fleet!.value as Record<string, unknown>) as { policy: unknown };
  writeFileSync(core("policy.hujson"), `// the fleet's policy, in headscale's format\n${JSON.stringify(policy.policy, null, 2)}\n`);
  writeFileSync(core("fleet.yaml"), readFileSync(core("fleet.yaml"), "utf8").replace(/^policy:\n(  .*\n|\s*\n)*/m, "policy: ./policy.hujson\n"));
  expect(readFileSync(core("fleet.yaml"), "utf8")).not.toContain("acls:");
  // A site's own policy.hujson is not its fleet's policy: were it read, the site would not evaluate.
  writeFileSync(path.join(repo, "hosts", "office", "policy.hujson"), "{ not a policy");
  git("init", "-q", "-b", "main");
  commit("fleet with sites, the policy in the core's policy.hujson");
});
afterAll(() => {
  for (const k of ISOLATED) if (savedEnv[k] === undefined) delete process.env[k];
  else process.env[k] = savedEnv[k];
  rmSync(repo, { recursive: true, force: true });
  rmSync(gitEnv, { recursive: true, force: true });
});

describe("a policy file in a fleet with sites", () => {
  it("every stack evaluates the core's policy file, resolved against the core's folder, as the inline policy", async () => {
    for (const s of ["core", "home-site", "office"]) {
      const r = await evaluateFleet(REGISTRY, path.join(repo, "hosts", s), s);
      expect(r.diagnostics).toEqual([]);
      expect(r.fleet!.policyHuJson).toBe(inlineHuJson);
      expect(r.fleet!.policyFile).toBe(core("policy.hujson").startsWith(process.cwd()) ? path.relative(process.cwd(), core("policy.hujson")) : core("policy.hujson"));
    }
  });

  it("plan with no change: the base reads the policy file from git, and nothing differs", async () => {
    for (const s of ["core", "office"]) {
      const r = await plan(s);
      expect(r.err).toBe("");
      expect(r.code).toBe(0);
      expect(JSON.parse(r.out).empty).toBe(true);
    }
  });

  it("a change in the policy file shows from a site's plan: the office loses the home file server", async () => {
    const before = readFileSync(core("policy.hujson"), "utf8");
    const after = before.replace(/,\s*"192\.168\.8\.10:445"\s*\]/, "]").replace(/"accept": \[\s*"10\.20\.0\.5:443",\s*"192\.168\.8\.10:445"\s*\],\s*"deny": \[/, '"accept": ["10.20.0.5:443"], "deny": ["192.168.8.10:445", ');
    expect(after).not.toBe(before);
    writeFileSync(core("policy.hujson"), after);
    try {
      const r = await plan("office");
      expect(r.err).toBe("");
      const d = JSON.parse(r.out);
      expect(d.policyChanged).toBe(true);
      expect(d.reach.lost.map((x: { src: string; dst: string }) => `${x.src} -> ${x.dst}`)).toEqual(["desk -> 192.168.8.0/24 via home-router"]);
      expect(d.generations.map((g: { host: string; stack?: string }) => `${g.host} (${g.stack})`)).toEqual(["vps (core)"]);
    } finally {
      writeFileSync(core("policy.hujson"), before);
    }
  });

  it("a policy file that is not committed is not in the base: plan says so at the base revision", async () => {
    git("rm", "-q", "--cached", "hosts/core/policy.hujson");
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "the policy file left out of git");
    try {
      const r = await plan("core");
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/HEAD:\S*hosts\/core\/fleet\.yaml: policy: expected a policy file that exists, found "\.\/policy\.hujson"/);
      expect(r.err).toContain("cannot plan: the fleet does not evaluate at HEAD");
    } finally {
      git("add", "hosts/core/policy.hujson");
      commit("the policy file back");
    }
  });
});
