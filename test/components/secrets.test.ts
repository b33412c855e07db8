/**
 * No secret in clear anywhere Pulumi would store or print it: every
 * resource's inputs, every component's outputs, every custom resource's
 * outputs (unless the engine is told to keep them secret) and the stack's
 * outputs, for the whole program (index.ts) on the home fleet.
 */
import { beforeAll, describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import program from "../../index.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import { clearSecrets, installMocks, settle, SIG, SECRET_SIG, type Recorder } from "./harness.ts";
import { evaluateStack, fakeAgentFile, fakeHeadscale, KEY_SEED, knownHostsFile } from "./fixtures.ts";
import { writeFileSync } from "node:fs";
import { scratchDir } from "../scratch.ts";
import { join } from "node:path";

import { SSH_KEY_TEXT } from "../fixtures/keys.ts";
let rec: Recorder;
let outputs: Record<string, pulumi.Output<unknown>>;
let handedOut: string[];
let keyFile: string;
const needles = (): (string | RegExp)[] => [
  /privkey:[0-9a-f]{64}/,
  /hskey-auth-/,
  KEY_SEED,
  derivePrivateKey(KEY_SEED, "noise"),
  derivePrivateKey(KEY_SEED, "derp"),
  "ssh-test-key-material-7f3a",
  ...handedOut,
];

beforeAll(async () => {
  const { fleet, dirUsed } = await evaluateStack("home");
  const knownHosts = knownHostsFile(fleet);
  const hs = fakeHeadscale(fleet);
  const keyDir = scratchDir("meshfleet-ssh-");
  keyFile = join(keyDir, "id_test");
  writeFileSync(keyFile, SSH_KEY_TEXT, { mode: 0o600 });
  rec = await installMocks(hs.respond, {
    stack: "home",
    config: {
      "meshfleet:hostsDir": dirUsed,
      "meshfleet:keySeed": KEY_SEED,
      "meshfleet:sshPrivateKeyPath": keyFile,
      "meshfleet:knownHostsPath": knownHosts,
      "meshfleet:agentPath": fakeAgentFile(),
    },
    secretKeys: ["meshfleet:keySeed"],
  });
  outputs = await program();
  await (outputs.summary as any).promise();
  await settle();
  handedOut = [...hs.keys.values()];
});

describe("secrets stay secret (index.ts on the home fleet)", () => {
  it("really handed out keys and derived key material (the test can find something)", () => {
    expect(handedOut.length).toBe(5);
    const everything = JSON.stringify(rec.resources.map((r) => r.inputs));
    expect(everything).toContain(derivePrivateKey(KEY_SEED, "noise"));
    expect(everything).toContain(handedOut[0]);
    // The SSH key is used by path: its text is nowhere in the program's resources.
    expect(everything).not.toContain("ssh-test-key-material-7f3a");
    expect(everything).toContain(keyFile);
  });

  it("no resource input holds a secret outside a secret wrapper", () => {
    const leaks = rec.resources.flatMap((r) => clearSecrets(r.raw, needles()).map((p) => `${r.type} ${r.name}: inputs.${p}`));
    expect(leaks).toEqual([]);
  });

  it("no component output holds a secret in clear", () => {
    const leaks = rec.resources.filter((r) => r.outputs).flatMap((r) => clearSecrets(r.outputs, needles()).map((p) => `${r.name}: outputs.${p}`));
    expect(leaks).toEqual([]);
    expect(rec.resources.filter((r) => !r.custom && r.outputs).length).toBeGreaterThan(10);
  });

  it("a custom resource output with a secret is either a secret input echoed back or an additional secret output", () => {
    const leaks: string[] = [];
    for (const r of rec.resources.filter((x) => x.custom)) {
      for (const [k, v] of Object.entries(r.state)) {
        if (clearSecrets(v, needles()).length === 0) continue;
        // The engine keeps an echoed input secret when the input was (wrapped, so nothing in clear there).
        const inputWasSecret = r.raw[k] !== undefined && JSON.stringify(r.raw[k]).includes(SECRET_SIG) && clearSecrets(r.raw[k], needles()).length === 0;
        if (!inputWasSecret && !r.additionalSecretOutputs.includes(k)) leaks.push(`${r.type} ${r.name}: ${k}`);
      }
    }
    expect(leaks).toEqual([]);
  });

  it("the stack outputs hold no secret in clear and the join instructions are a secret", async () => {
    for (const [k, o] of Object.entries(outputs)) {
      const secret = await (o as any).isSecret;
      const v = await (o as any).promise();
      if (!secret) expect(clearSecrets(v, needles()), `stack output ${k}`).toEqual([]);
    }
    expect(await (outputs.joinInstructions as any).isSecret).toBe(true);
    expect(JSON.stringify(await (outputs.joinInstructions as any).promise())).toMatch(/hskey-auth-/);
  });

  it("secret wrappers are what the engine recognises", () => {
    expect(SIG).toBe((pulumi.runtime as any).specialSigKey);
    expect(SECRET_SIG).toBe((pulumi.runtime as any).specialSecretSig);
  });
});
