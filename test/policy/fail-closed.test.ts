/**
 * A policy that fails closed (core/policy/fail-closed.ts): a fleet whose
 * policy has no rules, or only empty rule lists, is refused with the exact
 * diagnostic; allow-all passes only when written out; `plan` warns when a
 * change widens the reach to everything.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { evaluateFleet, type Diagnostic } from "../../core/index.ts";
import { allowsEverything, EXPLICIT_ALLOW_ALL } from "../../core/policy/fail-closed.ts";
import type { Policy } from "../../core/policy/index.ts";
import { planWarnings } from "../../cli/commands/plan.ts";
import { diffNetwork, networkModel } from "../../core/netdiff/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { writeFleet } from "../core/fleet-fixture.ts";

const HEAD = "coordinator:\n  host: vps\n  serverUrl: https://hs.example.com\nusers: [alice]\n";
const TAGS = "policy:\n  tagOwners:\n    tag:router: [alice@]\n";
const FIX = `write the rules you mean; to allow every node everything, say so: policy.${EXPLICIT_ALLOW_ALL}`;

async function errorsOf(fleetYaml: string): Promise<Diagnostic[]> {
  const { dir, cleanup } = writeFleet({ "fleet.yaml": fleetYaml });
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    return r.diagnostics.filter((d) => d.severity === "error").map((d) => ({ ...d, file: d.file.replace(dir, "FLEET") }));
  } finally {
    cleanup();
  }
}

/** The fail-closed errors (a policy with no rule also fails the lockout check, which is not this file's). */
const ours = (d: Diagnostic) => d.fix === FIX;

const emptyList = (path: string, which: string): Diagnostic => ({
  severity: "error",
  file: "FLEET/fleet.yaml",
  path,
  expected: "at least one rule (a policy fails closed)",
  found: `${which} and no rule: headscale has read an empty list as allow-all (before 0.29, headscale#1602, #3211) and as deny-all (0.29), so the reach depends on the server's version`,
  fix: FIX,
});

describe("check refuses a policy whose reach is decided by omission", () => {
  it.each([
    ["no policy at all", HEAD, "no policy: headscale then allows every node to reach every node and every advertised route"],
    ["a policy with tagOwners but neither acls nor grants", HEAD + TAGS, "neither acls nor grants: headscale reads that as allow-all, every node reaches every node and every advertised route"],
  ])("%s", async (_name, yaml, found) => {
    const errors = await errorsOf(yaml);
    // The router's tag needs an owner in the first case too: only the fail-closed error is asserted there.
    expect(errors.filter((d) => d.fix === FIX)).toEqual([
      { severity: "error", file: "FLEET/fleet.yaml", path: "policy", expected: "policy.acls or policy.grants with at least one rule (a policy fails closed)", found, fix: FIX },
    ]);
    if (yaml.includes("tagOwners")) expect(errors).toHaveLength(1);
  });

  it("acls: [] (allow-all or deny-all, by headscale version)", async () => {
    expect((await errorsOf(HEAD + TAGS + "  acls: []\n")).filter(ours)).toEqual([emptyList("policy.acls", "acls: []")]);
  });

  it("grants: []", async () => {
    expect((await errorsOf(HEAD + TAGS + "  grants: []\n")).filter(ours)).toEqual([emptyList("policy.grants", "grants: []")]);
  });

  it("acls: [] and grants: [] together: one error, at acls", async () => {
    expect((await errorsOf(HEAD + TAGS + "  acls: []\n  grants: []\n")).filter(ours)).toEqual([emptyList("policy.acls", "acls: [] and grants: []")]);
  });

  it("allow-all written out passes, and so do grants with a rule", async () => {
    expect(await errorsOf(HEAD + TAGS + '  acls:\n    - action: accept\n      src: ["*"]\n      dst: ["*:*"]\n')).toEqual([]);
    expect(await errorsOf(HEAD + TAGS + '  grants:\n    - src: [alice@]\n      dst: ["*"]\n      ip: ["*"]\n')).toEqual([]);
    // An empty list beside a list with rules decides nothing by omission.
    expect(await errorsOf(HEAD + TAGS + '  acls: []\n  grants:\n    - src: [alice@]\n      dst: ["*"]\n      ip: ["tcp:22"]\n')).toEqual([]);
  });

  it("meshfleet check prints it and exits 1", () => {
    const { dir, cleanup } = writeFleet({ "fleet.yaml": HEAD + TAGS + "  acls: []\n" });
    try {
      const r = spawnSync("node", ["bin/meshfleet.mjs", "check", "--hosts-dir", dir], { encoding: "utf8", timeout: 60_000 });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain(`${dir}/fleet.yaml: policy.acls: expected at least one rule (a policy fails closed), found acls: [] and no rule: headscale has read an empty list as allow-all`);
      expect(r.stderr).toContain(`Fix: ${FIX}`);
    } finally {
      cleanup();
    }
  }, 60_000);
});

describe("allowsEverything", () => {
  it.each<[string, Policy, boolean]>([
    ["no rules (headscale's allow-all)", {}, true],
    ["* -> *:*", { acls: [{ action: "accept", src: ["*"], dst: ["*:*"] }] }, true],
    ["* -> *:* on tcp only", { acls: [{ action: "accept", src: ["*"], dst: ["*:*"], proto: "tcp" }] }, false],
    ["alice -> *:*", { acls: [{ action: "accept", src: ["alice@"], dst: ["*:*"] }] }, false],
    ["* -> tag:web:443", { acls: [{ action: "accept", src: ["*"], dst: ["tag:web:443"] }] }, false],
    ["grant * -> * ip *", { grants: [{ src: ["*"], dst: ["*"], ip: ["*"] }] }, true],
    ["grant * -> * tcp:22", { grants: [{ src: ["*"], dst: ["*"], ip: ["tcp:22"] }] }, false],
    ["deny-all (grants: [])", { grants: [] }, false],
  ])("%s: %s", (_n, p, want) => {
    expect(allowsEverything(p)).toBe(want);
  });
});

describe("plan warns when a change widens the reach to everything", () => {
  const fleetOf = async (acl: string) => {
    const { dir, cleanup } = writeFleet({ "fleet.yaml": HEAD + TAGS + acl });
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
      return r.fleet!;
    } finally {
      cleanup();
    }
  };
  it("alice -> *:* becomes * -> *:*: one allow-all warning; the other way round, none", async () => {
    const narrow = await fleetOf('  acls:\n    - action: accept\n      src: [alice@]\n      dst: ["*:*"]\n');
    const wide = await fleetOf('  acls:\n    - action: accept\n      src: ["*"]\n      dst: ["*:*"]\n');
    const widened = planWarnings(narrow, wide, diffNetwork(networkModel(narrow), networkModel(wide))).filter((w) => w.kind === "allow-all");
    expect(widened).toEqual([
      {
        kind: "allow-all",
        message: 'the policy now lets every node reach every node and every advertised route on every port (an accept from "*" to "*:*"): every LAN behind a subnet router is open to every device of the tailnet',
      },
    ]);
    expect(planWarnings(wide, narrow, diffNetwork(networkModel(wide), networkModel(narrow))).filter((w) => w.kind === "allow-all")).toEqual([]);
    expect(planWarnings(wide, wide, diffNetwork(networkModel(wide), networkModel(wide))).filter((w) => w.kind === "allow-all")).toEqual([]);
  }, 30_000);
});
