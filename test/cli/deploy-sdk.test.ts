/**
 * What a no-op `meshfleet up` no longer pays for, and that nothing is lost:
 * - the Pulumi SDK loaded with its function-serialization dependencies
 *   deferred (cli/pulumi-sdk.ts): not loaded by the SDK's index or its
 *   Automation API, and still there, for real, when the SDK serializes a
 *   function or computes code paths;
 * - the Pulumi CLI as the Automation API wants it, without running
 *   `pulumi version` (the tools cache's stamp says it), through the SDK's
 *   own version check;
 * - `pulumi stack select` skipped only where a local backend holds the stack.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { pulumiCommand, REPO_ROOT, stackExists } from "../../cli/commands/deploy.ts";
import { toolsStatus } from "../../lab/tools/index.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const tmp = mkdtempSync(join(tmpdir(), "mf-deploy-sdk-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A fresh Node (its own module cache) running `code` as an ES module with tsx, printing JSON. */
function fresh(code: string): Record<string, unknown> {
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { cwd: REPO_ROOT, encoding: "utf8", timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split("\n").at(-1)!) as Record<string, unknown>;
}

const LOADED = `
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const loaded = () => Object.keys(require.cache).map((f) => f.replaceAll("\\\\", "/"));
const has = (part) => loaded().some((f) => f.includes(part));
const heavy = () => ({ typescript: has("/node_modules/typescript/"), arborist: has("/node_modules/@npmcli/arborist/"), modules: loaded().length });
`;

describe("the Pulumi SDK as a deploy loads it", () => {
  it("loads neither TypeScript nor Arborist with the SDK, and both when the SDK uses them", () => {
    const r = fresh(`${LOADED}
      const { automation, deferred } = await import("./cli/pulumi-sdk.ts");
      await automation();
      const pulumi = require("@pulumi/pulumi");
      const before = heavy();
      const fn = await pulumi.runtime.serializeFunction(() => 6 * 7);
      const afterSerialize = heavy();
      const paths = await pulumi.runtime.computeCodePaths({ extraIncludePackages: [] });
      console.log(JSON.stringify({ before, afterSerialize, after: heavy(), text: fn.text.includes("6 * 7"), paths: paths.size > 0, deferred: Object.fromEntries(deferred) }));
    `);
    expect(r.before).toMatchObject({ typescript: false, arborist: false });
    expect((r.before as { modules: number }).modules).toBeLessThan(500);
    // serializeFunction parses the function with the TypeScript compiler: loaded for real, and it works.
    expect(r.afterSerialize).toMatchObject({ typescript: true });
    expect(r.text).toBe(true);
    // computeCodePaths reads the package tree with Arborist: loaded for real, and it works.
    expect(r.after).toMatchObject({ arborist: true });
    expect(r.paths).toBe(true);
    expect(r.deferred).toMatchObject({ typescript: true, "@npmcli/arborist": true });
  });

  it("is the SDK's usual load without the stand-ins (the measure above can fail)", () => {
    const r = fresh(`${LOADED}
      require("@pulumi/pulumi/automation/index.js");
      console.log(JSON.stringify(heavy()));
    `);
    expect(r).toMatchObject({ typescript: true, arborist: true });
    expect(r.modules as number).toBeGreaterThan(800);
  });
});

describe("stackExists", () => {
  it("is true only for a local backend holding this project's stack", () => {
    const dir = join(tmp, "state");
    mkdirSync(join(dir, ".pulumi", "stacks", "meshfleet"), { recursive: true });
    writeFileSync(join(dir, ".pulumi", "stacks", "meshfleet", "lab.json"), "{}");
    writeFileSync(join(dir, ".pulumi", "stacks", "meshfleet", "gz.json.gz"), "");
    expect(stackExists(`file://${dir}`, "lab")).toBe(true);
    expect(stackExists(`file://${dir}`, "gz")).toBe(true);
    expect(stackExists(`file://${dir}`, "home")).toBe(false);
    expect(stackExists(`file://${dir}`, "lab", "other")).toBe(false);
    expect(stackExists(`file://${dir}`, "org/meshfleet/lab")).toBe(false);
    expect(stackExists("s3://bucket/x", "lab")).toBe(false);
    expect(stackExists(undefined, "lab")).toBe(false);
  });
});

const pulumiBuilt = toolsStatus().find((t) => t.name === "pulumi")?.state !== "missing";

describe.skipIf(skipUnlessCi(!pulumiBuilt && "the pulumi CLI is not built (meshfleet tools build)"))("pulumiCommand", () => {
  it("is the pinned CLI at its pinned version, without running it", async () => {
    const pinned = toolsStatus().find((t) => t.name === "pulumi")!;
    const cmd = await pulumiCommand();
    expect(cmd.command).toBe(pinned.binaries.find((b) => b.name === "pulumi")!.path);
    expect(String(cmd.version)).toBe(pinned.version);
    // What `pulumi version` says is what the stamp said.
    const v = spawnSync(cmd.command, ["version"], { encoding: "utf8", env: { ...process.env, PULUMI_SKIP_UPDATE_CHECK: "true" } });
    expect(v.stdout.trim().replace(/^v/, "")).toBe(pinned.version);
  });
});
