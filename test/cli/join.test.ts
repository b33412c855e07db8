/**
 * `meshfleet join` reads the stack's secret `joinInstructions` output through
 * the pinned Pulumi CLI and the Automation API, as `meshfleet up` wrote it:
 * no `pulumi` on PATH is needed, the value comes back decrypted, and a stack
 * never deployed is named with the fix (never created).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { LocalWorkspace, Stack } from "@pulumi/pulumi/automation/index.js";
import { afterAll, describe, expect, it } from "vitest";
import { deployEnv, pulumiCommand } from "../../cli/commands/deploy.ts";
import { joinOutputs } from "../../cli/commands/join.ts";
import { toolsStatus } from "../../lab/tools/index.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const pulumiBuilt = toolsStatus().find((t) => t.name === "pulumi")?.state !== "missing";
const root = mkdtempSync(join(tmpdir(), "mf-join-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const KEY = "hskey-auth-join-test-4be1";

describe.skipIf(skipUnlessCi(!pulumiBuilt && "the Pulumi CLI is not built: run `node bin/meshfleet.mjs tools build`"))("meshfleet join reads the stack through the Automation API", () => {
  const env = { MESHFLEET_STATE_DIR: join(root, "state"), PULUMI_BACKEND_URL: "", PULUMI_CONFIG_PASSPHRASE: "join-test", PATH: "/usr/bin:/bin" };
  mkdirSync(join(root, "stacks"), { recursive: true });
  writeFileSync(join(root, "Pulumi.yaml"), "name: meshfleet\nruntime: nodejs\nstackConfigDir: stacks\n");

  it("a never-deployed stack is named with the fix, and not created", async () => {
    await expect(joinOutputs("nosuch", { root, env })).rejects.toThrow(/stack nosuch: .*run `meshfleet up --stack nosuch` first/);
    expect(existsSync(join(root, "stacks", "Pulumi.nosuch.yaml"))).toBe(false);
  }, 120_000);

  it("returns the phone's instructions decrypted, with no pulumi on PATH", async () => {
    const ws = await LocalWorkspace.create({
      workDir: root,
      pulumiCommand: await pulumiCommand(),
      envVars: deployEnv(env),
      program: async () => ({ joinInstructions: pulumi.secret({ phone: `Pre-auth key: ${KEY}` }) }),
    });
    const stack = await Stack.create("j", ws);
    await stack.up();
    const got = await joinOutputs("j", { root, env });
    expect(got).toEqual({ phone: `Pre-auth key: ${KEY}` });
  }, 180_000);
});
