/**
 * Issue 12 item 16: index.ts refuses a keySeed that is not at least 32
 * random bytes, says how to make one, and never shows the value. The old
 * check (16 characters, in a comment only) let these through.
 */
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import program from "../../index.ts";
import { installMocks } from "./harness.ts";
import { evaluateStack, fakeAgentFile, fakeHeadscale, KEY_SEED, knownHostsFile } from "./fixtures.ts";

async function run(seed: string) {
  const { fleet, dirUsed } = await evaluateStack("home");
  const rec = await installMocks(fakeHeadscale(fleet).respond, {
    stack: "home",
    config: { "meshfleet:hostsDir": dirUsed, "meshfleet:keySeed": seed, "meshfleet:knownHostsPath": knownHostsFile(fleet), "meshfleet:agentPath": fakeAgentFile() },
    secretKeys: ["meshfleet:keySeed"],
  });
  const err = await program().then(
    () => null,
    (e: Error) => e,
  );
  return { err, rec };
}

describe("meshfleet:keySeed", () => {
  it.each([
    ["16 characters", "sixteen-chars-ok"],
    ["a 24-byte base64 value", "Z3JhcGgtdGVzdC1zZWVkLTAxMjM0NTY3"],
    ["a long value of one repeated character", "A".repeat(64)],
    ["a passphrase with spaces", "correct horse battery staple and more words here"],
  ])("refuses %s before any resource exists, naming the fix and not the value", async (_what, seed) => {
    const { err, rec } = await run(seed);
    expect(err).toBeInstanceOf(pulumi.RunError);
    expect(err!.message).toMatch(/^meshfleet:keySeed: expected at least 32 random bytes/);
    expect(err!.message).toContain("openssl rand -base64 32");
    expect(err!.message).not.toContain(seed);
    expect(rec.resources).toEqual([]);
  });

  it("accepts 32 random bytes in base64 (the fixture)", async () => {
    const { err } = await run(KEY_SEED);
    expect(err?.message ?? "").not.toContain("keySeed");
  });
});
