/**
 * Issue 15 item 4, the OIDC drill, on lab instance 9 (MESHFLEET_LAB_E2E=1, root,
 * tools built; in CI a missing prerequisite fails, never skips).
 *
 * The drill is lab/e2e/drills/oidc.ts, also a `lab check --drills` item: on
 * the deployed standard lab it starts the pinned `oidc-provider` in the lab's
 * internet namespace (https, a CA made per run and trusted on the VPS),
 * deploys the fleet with headscale.oidc through the typed options and the
 * client secret through the stack secret meshfleet:headscaleOidcClientSecret,
 * logs a fresh tailscaled on the laptop in through the provider with a
 * scripted browser (test/lab/oidc-browser.ts): users outside allowedUsers and
 * allowedDomains are refused, the allowed user's node registers as her OIDC
 * user and pings the VPS; then it puts the fleet back.
 *
 * Here: the drill passes and leaves the lab as it found it (no oidc section,
 * no drill node, no client secret in the stack config); and it fails when the
 * feature is broken: the provider given another client secret than the
 * stack's (a wrong client secret) makes headscale's logins fail, so the drill
 * fails and no node registers.
 */
import { readFileSync } from "node:fs";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hsCli } from "../../lab/e2e/checks.ts";
import { OIDC_NODE, oidcDrill } from "../../lab/e2e/drills/index.ts";
import { OIDC_SECRET_KEY } from "../../lab/e2e/drills/oidc.ts";
import { labDown } from "../../lab/e2e/down.ts";
import { e2ePaths } from "../../lab/e2e/paths.ts";
import { labUp } from "../../lab/e2e/up.ts";
import { labTopology } from "../../lab/topology.ts";
import { skipUnlessCi } from "./ci-gate.ts";
import { labMissing, labOn, toolBinary, writeLabFleet } from "./harness.ts";

const INSTANCE = 9;
const p = e2ePaths(INSTANCE);
const on = labOn(INSTANCE);
const say = (l: string) => process.stderr.write(`[oidc-lab] ${l}\n`);
const t0 = Date.now();
const nodeNames = async () => ((JSON.parse((await on("vps", `${hsCli()} nodes list -o json`)) || "null") ?? []) as { given_name: string }[]).map((n) => n.given_name).sort();

describe.skipIf(skipUnlessCi(labMissing()))(`the OIDC drill on lab instance ${INSTANCE}`, () => {
  let broughtUp = false;

  beforeAll(async () => {
    if (!toolBinary("oidc-provider")) throw new Error("the pinned tool oidc-provider is not built (run `meshfleet tools build --only oidc-provider`)");
    await labDown({ instance: INSTANCE, log: () => {} }).catch(() => undefined);
    writeLabFleet(INSTANCE);
    const r = await labUp({ instance: INSTANCE, log: (l) => process.stderr.write(`[lab${INSTANCE}] ${l}\n`), noBuild: true });
    broughtUp = true;
    if (!r.ok) throw new Error(`lab up --instance ${INSTANCE} (${r.failedStep}): ${r.error}`);
    say(`lab up ${(r.totalMs / 1000).toFixed(1)}s`);
  }, 900_000);

  afterAll(async () => {
    if (broughtUp) await labDown({ instance: INSTANCE, log: () => {} });
    const left = (await execa("ip", ["netns", "list"])).stdout.split("\n").filter((l) => l.startsWith(labTopology(INSTANCE).prefix));
    expect(left).toEqual([]);
    say(`${((Date.now() - t0) / 1000).toFixed(1)}s for the file`);
  }, 300_000);

  it("the drill: a node logs in through the provider as its OIDC user, refused users get nothing; the lab is as it was after", async () => {
    const before = await nodeNames();
    const cfgBefore = readFileSync(p.stackConfig, "utf8");
    const r = await oidcDrill({ instance: INSTANCE, log: say });
    say(`drill: ${r.ok ? "PASS" : "FAIL"} ${r.why} ${JSON.stringify(r.timings)}`);
    expect(r.ok, r.why).toBe(true);
    expect(r.timings).toMatchObject({ oidcUpMs: expect.any(Number), loginMs: expect.any(Number), deployBackMs: expect.any(Number) });
    expect(await nodeNames()).toEqual(before);
    expect(readFileSync(p.stackConfig, "utf8")).toBe(cfgBefore);
    expect(cfgBefore).not.toContain(OIDC_SECRET_KEY);
    expect(await on("vps", "grep -c '^oidc:' /etc/headscale/config.yaml || true")).toBe("0\n");
    expect(await on("vps", "test ! -e /usr/local/share/ca-certificates/meshfleet-lab-oidc-drill.crt && echo gone")).toBe("gone\n");
  }, 900_000);

  it("the drill fails when the provider and the stack disagree on the client secret: headscale's logins fail and no node registers", async () => {
    const before = await nodeNames();
    const r = await oidcDrill({ instance: INSTANCE, providerSecret: "not-the-stack-secret-0123456789", log: say });
    say(`fault injected (wrong client secret): ${r.ok ? "PASS" : "FAIL"} ${r.why}`);
    expect(r.ok).toBe(false);
    expect(r.why).toMatch(/^mallory \(mallory@lab\.test\) was not refused by headscale at its callback with 401 "not authorized": forms login, .*\/oidc\/callback [45]\d\d/);
    expect(r.why).not.toContain("putting the fleet back");
    expect(await nodeNames()).toEqual(before);
    expect(before).not.toContain(OIDC_NODE);
  }, 900_000);
});
