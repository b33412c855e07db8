/**
 * The whole program (index.ts) for a fleet with sites, on the mock engine:
 * the core stack's run exports what its sites read, and those very outputs,
 * handed to the office stack's run as its StackReference's answer, make the
 * office's hosts carry the keys the core's headscale made for them. The site
 * run needs no key seed and declares nothing of the core's.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, it } from "vitest";
import program from "../../index.ts";
import { policyDigest } from "../../components/site.ts";
import { evaluateFleet } from "../../core/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { REGISTRY } from "../../modules/index.ts";
import { SSH_KEY_TEXT } from "../fixtures/keys.ts";
import { installMocks, isSecret, settle, unwrap, valueOf, SIG, SECRET_SIG, clearSecrets, type Responder } from "./harness.ts";
import { fakeAgentFile, fakeHeadscale, KEY_SEED, knownHostsFile, REPO } from "./fixtures.ts";
import { scratchDir } from "../scratch.ts";

const dir = (s: string) => path.join(REPO, "hosts", s);
let keyFile: string;
let agentPath: string;
let core: FleetSystem;
let coreOut: Record<string, pulumi.Output<unknown>>;
let coreKeys: Map<string, string>;

beforeAll(async () => {
  core = (await evaluateFleet(REGISTRY, dir("core"), "core")).fleet!;
  keyFile = path.join(scratchDir("meshfleet-ssh-"), "id_test");
  writeFileSync(keyFile, SSH_KEY_TEXT, { mode: 0o600 });
  agentPath = fakeAgentFile();
  const hs = fakeHeadscale(core);
  await installMocks(hs.respond, {
    stack: "core",
    config: { "meshfleet:hostsDir": dir("core"), "meshfleet:keySeed": KEY_SEED, "meshfleet:sshPrivateKeyPath": keyFile, "meshfleet:knownHostsPath": knownHostsFile(core), "meshfleet:agentPath": agentPath },
    secretKeys: ["meshfleet:keySeed"],
  });
  coreOut = await program();
  await valueOf(coreOut.summary);
  await valueOf(coreOut.sites);
  await settle();
  coreKeys = hs.keys;
});

describe("the core stack's program", () => {
  it("exports its usual outputs plus what its sites read, the keys as one secret", async () => {
    expect(Object.keys(coreOut).sort()).toEqual(["coordinatorUrl", "joinInstructions", "nodes", "noisePublicKey", "policySha256", "sites", "summary"]);
    expect(await isSecret(coreOut.sites)).toBe(true);
    expect(await isSecret(coreOut.noisePublicKey)).toBe(true);
    expect(await isSecret(coreOut.policySha256)).toBe(false);
    const sites = (await valueOf(coreOut.sites)) as Record<string, { preAuthKeys: Record<string, string> }>;
    expect(sites.office.preAuthKeys["office-router"]).toBe(coreKeys.get("core-key-office-router-key"));
    expect(Object.keys(await valueOf(coreOut.nodes) as object)).toEqual(["vps"]);
  });
});

describe("a site stack's program, fed the core's outputs", () => {
  it("deploys the office's hosts with the keys the core made, and nothing of the core's", async () => {
    const office = (await evaluateFleet(REGISTRY, dir("office"), "office")).fleet!;
    const wrap = (value: unknown) => ({ [SIG]: SECRET_SIG, value });
    const state = {
      outputs: {
        coordinatorUrl: await valueOf(coreOut.coordinatorUrl),
        policySha256: await valueOf(coreOut.policySha256),
        noisePublicKey: wrap(await valueOf(coreOut.noisePublicKey)),
        sites: wrap(await valueOf(coreOut.sites)),
      },
      secretOutputNames: ["noisePublicKey", "sites"],
    };
    expect(state.outputs.policySha256).toBe(policyDigest(office));
    const refs: string[] = [];
    const base = fakeHeadscale(office).respond;
    const respond: Responder = (r) => (r.type === "pulumi:pulumi:StackReference" ? (refs.push(`${r.name} -> ${r.inputs.name}`), state) : base(r));
    const rec = await installMocks(respond, {
      stack: "office",
      config: { "meshfleet:hostsDir": dir("office"), "meshfleet:sshPrivateKeyPath": keyFile, "meshfleet:knownHostsPath": knownHostsFile(office), "meshfleet:agentPath": agentPath },
    });
    const out = await program();
    expect(Object.keys(await valueOf(out.nodes) as object).sort()).toEqual(["desk", "office-router"]);
    await settle();
    expect(refs).toEqual(["office-core -> core"]);
    expect(rec.ofType("meshfleet:index:SiteMesh").map((r) => r.name)).toEqual(["office"]);
    expect(rec.ofType("meshfleet:index:Mesh")).toEqual([]);
    expect(rec.resources.filter((r) => r.type.startsWith("meshfleet:headscale:"))).toEqual([]);
    const hosts = new Set(rec.resources.flatMap((r) => (r.inputs.host && r.custom ? [String(r.inputs.host)] : [])));
    expect(hosts).toEqual(new Set(["desk", "office-router"]));
    const bundle = String(unwrap(rec.byName("office-office-router-agent-generation").raw.bundle));
    expect(bundle).toContain(coreKeys.get("core-key-office-router-key"));
    // The keys are in no resource input outside a secret wrapper.
    const leaks = rec.resources.flatMap((r) => clearSecrets(r.raw, [/hskey-auth-/]).map((p) => `${r.name}: ${p}`));
    expect(leaks).toEqual([]);
  });
});
