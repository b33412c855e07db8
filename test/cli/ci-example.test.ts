/**
 * The CI examples (examples/ci/*.yml) pass actionlint 1.7.12, built from its
 * Go module by `meshfleet tools build` (lab/versions.json), and deploy.yml
 * keeps the promises its header makes: up on a push to main only, one deploy
 * per stack at a time and never cancelled, secrets only in the deploy job
 * (through its environment), none on a pull request, and the result posted
 * as the commit's status. actionlint runs without shellcheck and pyflakes so
 * that the verdict does not depend on what else the machine has.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { REPO_ROOT } from "../../cli/commands/deploy.ts";
import { toolPath } from "../../lab/tools/index.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const DIR = join(REPO_ROOT, "examples", "ci");
const examples = readdirSync(DIR).filter((f) => f.endsWith(".yml")).sort();

function actionlintBin(): string | null {
  try {
    return toolPath("actionlint");
  } catch {
    return null;
  }
}
const ACTIONLINT = actionlintBin();
const lint = (file: string) => spawnSync(ACTIONLINT!, ["-no-color", "-shellcheck=", "-pyflakes=", file], { encoding: "utf8", timeout: 60_000 });

const tmp = mkdtempSync(join(tmpdir(), "mf-ci-example-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.skipIf(skipUnlessCi(!ACTIONLINT && "actionlint is not built: run `meshfleet tools build --only actionlint`"))("actionlint on examples/ci", () => {
  it.each(examples)("%s passes", (f) => {
    const r = lint(join(DIR, f));
    expect(`${r.stdout}${r.stderr}`).toBe("");
    expect(r.status).toBe(0);
  });

  it("finds what it should: deploy.yml with a misspelt context fails, naming the line", () => {
    const bad = join(tmp, "deploy.yml");
    writeFileSync(bad, readFileSync(join(DIR, "deploy.yml"), "utf8").replace("${{ secrets.MESHFLEET_PASSPHRASE }}", "${{ secret.MESHFLEET_PASSPHRASE }}"));
    const r = lint(bad);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/deploy\.yml:\d+:\d+: undefined variable "secret"/);
  });
});

type Step = { name?: string; run?: string; uses?: string; if?: string; env?: Record<string, string>; with?: Record<string, unknown> };
type Job = {
  if?: string;
  environment?: string;
  permissions?: Record<string, string>;
  concurrency?: { group: string; "cancel-in-progress": boolean };
  strategy?: { matrix?: { stack?: string[] } };
  env?: Record<string, string>;
  steps: Step[];
};

describe("examples/ci/deploy.yml", () => {
  const text = readFileSync(join(DIR, "deploy.yml"), "utf8");
  const wf = parse(text) as { on: Record<string, { branches?: string[] }>; permissions: Record<string, string>; jobs: Record<string, Job> };
  const { plan, deploy } = wf.jobs as { plan: Job; deploy: Job };
  const secretsIn = (o: unknown) => JSON.stringify(o).match(/secrets\.[A-Z_]+/g) ?? [];

  it("runs on a push to main and on pull requests, with a read-only token by default", () => {
    expect(wf.on.push!.branches).toEqual(["main"]);
    expect(Object.keys(wf.on).sort()).toEqual(["pull_request", "push"]);
    expect(wf.permissions).toEqual({ contents: "read" });
  });

  it("deploys with meshfleet up --yes --stack, only on a push to main, one at a time per stack, never cancelled", () => {
    expect(deploy.if).toBe("github.event_name == 'push' && github.ref == 'refs/heads/main'");
    expect(deploy.concurrency).toEqual({ group: "meshfleet-deploy-${{ matrix.stack }}", "cancel-in-progress": false });
    expect(deploy.strategy!.matrix!.stack!.length).toBeGreaterThan(0);
    const up = deploy.steps.find((s) => s.name === "meshfleet up")!;
    expect(up.run).toMatch(/npx meshfleet up --yes --stack "\$STACK"/);
    expect(up.run).toMatch(/set -o pipefail/);
  });

  it("takes secrets only from the secret store, only in the deploy job, behind its environment", () => {
    expect(deploy.environment).toBe("stack-deploy");
    expect(secretsIn(deploy).sort()).toEqual(["secrets.MESHFLEET_BACKEND_URL", "secrets.MESHFLEET_PASSPHRASE", "secrets.MESHFLEET_SSH_KEY"]);
    // Every secret reaches its step through env, never spliced into a script.
    for (const s of deploy.steps) expect(secretsIn({ run: s.run, script: s.with?.script })).toEqual([]);
    // Nothing else in the file names a secret, and no literal backend URL or key is in it.
    expect(secretsIn(text).length).toBe(3);
    expect(text).not.toMatch(/postgres:\/\/\S*:\S*@|BEGIN OPENSSH PRIVATE KEY/);
  });

  it("the pull request job has no secret, no environment and no write permission, and runs check and plan", () => {
    expect(plan.if).toBe("github.event_name == 'pull_request'");
    expect(secretsIn(plan)).toEqual([]);
    expect(plan.environment).toBeUndefined();
    expect(plan.permissions).toBeUndefined();
    expect(JSON.stringify(plan)).not.toMatch(/github\.token|GITHUB_TOKEN/);
    const runs = plan.steps.map((s) => s.run ?? "").join("\n");
    expect(runs).toMatch(/npx meshfleet check --stack "\$STACK"/);
    expect(runs).toMatch(/npx meshfleet plan --base "origin\/\$BASE_REF" --stack "\$STACK"/);
    expect(plan.steps.find((s) => s.uses?.startsWith("actions/checkout"))!.with).toMatchObject({ "persist-credentials": false });
  });

  it("posts the result as the commit's status, whatever the outcome, with statuses: write in that job only", () => {
    expect(deploy.permissions).toEqual({ contents: "read", statuses: "write" });
    const post = deploy.steps.find((s) => s.name === "status and summary")!;
    expect(post.if).toBe("always()");
    expect(String(post.with!.script)).toMatch(/createCommitStatus\(\{[\s\S]*state: ok \? "success" : "failure"/);
    expect(String(post.with!.script)).toContain("context: `meshfleet/deploy/${process.env.STACK}`");
    const order = deploy.steps.map((s) => s.name ?? s.uses ?? s.run);
    expect(order.indexOf("status pending")).toBeLessThan(order.indexOf("meshfleet up"));
    expect(order.indexOf("meshfleet up")).toBeLessThan(order.indexOf("status and summary"));
  });
});
