/**
 * Sites as stacks on the mock engine: the core stack (hosts/core) deploys
 * only its own host but makes every site host's pre-auth key and exports
 * them per site as one secret; a site stack (hosts/office) deploys only its
 * own hosts and reads the coordinator's URL, its keys and the public Noise
 * key from the core through a StackReference, with no resource that
 * connects to the coordinator; a core running another policy stops a site's
 * up (a preview warns).
 */
import { beforeAll, describe, expect, it, vi } from "vitest";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import * as pulumi from "@pulumi/pulumi";
import { Mesh } from "../../components/index.ts";
import { coreMismatch, coreOutputs, policyDigest, readCore, SiteMesh, validateSiteMesh } from "../../components/site.ts";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import type { FleetSystem } from "../../core/types.ts";
import { REGISTRY } from "../../modules/index.ts";
import { installMocks, isSecret, settle, unwrap, valueOf, SIG, SECRET_SIG, type Recorder, type Responder } from "./harness.ts";
import { fakeAgentFile, fakeHeadscale, KEY_SEED, knownHostsFile, REPO, SSH_KEY } from "./fixtures.ts";

async function evaluate(stack: string): Promise<FleetSystem> {
  const r = await evaluateFleet(REGISTRY, path.join(REPO, "hosts", stack), stack);
  if (!r.fleet || r.diagnostics.some((d) => d.severity === "error")) throw new Error(formatDiagnostics(r.diagnostics));
  return r.fleet;
}

const VPS_ADDRESS = "203.0.113.10";
const names = (rec: Recorder, t: string) => rec.ofType(t).map((r) => r.name).sort();
/** Every SSH target a resource would dial. */
const targets = (rec: Recorder) => rec.resources.flatMap((r) => (r.inputs.connection?.host ? [String(r.inputs.connection.host)] : []));

let agentPath: string;
beforeAll(() => {
  agentPath = fakeAgentFile();
});

describe("the core stack", () => {
  let fleet: FleetSystem;
  let rec: Recorder;
  let out: ReturnType<typeof coreOutputs>;
  let hs: ReturnType<typeof fakeHeadscale>;
  beforeAll(async () => {
    fleet = await evaluate("core");
    hs = fakeHeadscale(fleet);
    rec = await installMocks(hs.respond, { stack: "core" });
    const mesh = new Mesh("core", { fleet, keySeed: pulumi.secret(KEY_SEED), ssh: { privateKey: pulumi.secret(SSH_KEY), knownHostsPath: knownHostsFile(fleet) }, agent: { agentPath } });
    out = coreOutputs(mesh, fleet, pulumi.secret(KEY_SEED));
    await valueOf(mesh.summary);
    await valueOf(out.sites);
    await settle();
  });

  it("deploys only its own host, and makes every host's key, the sites' too", () => {
    expect(names(rec, "meshfleet:index:MeshNode")).toEqual(["core-vps"]);
    expect(names(rec, "meshfleet:index:SubnetRouter")).toEqual([]);
    expect(names(rec, "meshfleet:host:Generation")).toEqual(["core-coordinator-bootstrap-generation", "core-vps-agent-generation"]);
    expect(names(rec, "meshfleet:host:Prerequisites")).toEqual(["core-vps-prerequisites"]);
    expect(names(rec, "meshfleet:index:PreAuthKey")).toEqual(["core-key-desk", "core-key-home-router", "core-key-laptop", "core-key-office-router", "core-key-vps"]);
    expect(names(rec, "meshfleet:index:RouteApproval")).toEqual([]);
    expect(new Set(targets(rec))).toEqual(new Set([VPS_ADDRESS]));
  });

  it("exports each site's keys as one secret, and the policy's digest and URL in clear", async () => {
    expect(await isSecret(out.sites)).toBe(true);
    expect(await isSecret(out.noisePublicKey)).toBe(true);
    const sites = await valueOf(out.sites);
    expect(Object.keys(sites).sort()).toEqual(["home-site", "office"]);
    expect(Object.keys(sites.office.preAuthKeys).sort()).toEqual(["desk", "office-router"]);
    expect(Object.keys(sites["home-site"].preAuthKeys).sort()).toEqual(["home-router", "laptop"]);
    expect(sites.office.preAuthKeys.desk).toBe(hs.keys.get("core-key-desk-key"));
    expect(await valueOf(out.policySha256)).toBe(policyDigest(fleet));
    expect(await valueOf(out.coordinatorUrl)).toBe("https://headscale.example.com");
  });
});

/** A core stack's outputs as a StackReference read returns them (secrets wrapped as the engine sends them). */
function coreState(o: { url?: string; sha?: string; keys?: Record<string, string>; noise?: string }) {
  const secret = (value: unknown) => ({ [SIG]: SECRET_SIG, value });
  return {
    outputs: {
      ...(o.url ? { coordinatorUrl: o.url } : {}),
      ...(o.sha ? { policySha256: o.sha } : {}),
      ...(o.noise ? { noisePublicKey: secret(o.noise) } : {}),
      ...(o.keys ? { sites: secret({ office: { preAuthKeys: o.keys } }) } : {}),
    },
    secretOutputNames: ["noisePublicKey", "sites"],
  };
}

async function siteRun(fleet: FleetSystem, state: ReturnType<typeof coreState>, preview: boolean) {
  const reads: { name: string; inputs: Record<string, any> }[] = [];
  const base = fakeHeadscale(fleet).respond;
  const respond: Responder = (r) => {
    if (r.type === "pulumi:pulumi:StackReference") {
      reads.push({ name: r.name, inputs: r.inputs });
      return state;
    }
    return base(r);
  };
  const rec = await installMocks(respond, { stack: "office", preview });
  const { core } = await readCore("office-core", fleet.sites!.core.stack);
  const make = () => new SiteMesh("office", { fleet, core, ssh: { privateKey: pulumi.secret(SSH_KEY), knownHostsPath: knownHostsFile(fleet) }, agent: { agentPath } });
  return { rec, make, reads, core };
}

describe("a site whose core stack cannot be read", () => {
  it("stops naming the core stack and the fix, not with the engine's bare error", async () => {
    const fleet = await evaluate("office");
    await installMocks(fakeHeadscale(fleet).respond, { stack: "office" });
    // The engine's answer for a stack that is not there, at the read of its outputs (a mock that throws at
    // the resource itself would leave the resource's own promises rejected and unhandled).
    const read = vi.spyOn(pulumi.StackReference.prototype, "getOutputDetails").mockRejectedValue(new Error('failed to read resource #core \'office-core\' [pulumi:pulumi:StackReference]: unknown stack "core"'));
    await expect(readCore("office-core", "core")).rejects.toThrow(/the core stack core could not be read \(.*unknown stack.*\)\. Fix: deploy the core first \(`meshfleet up --stack core`\)/);
    read.mockRestore();
  });
});

describe("a site stack", () => {
  let fleet: FleetSystem;
  const KEYS = { desk: "hskey-auth-desk-from-core", "office-router": "hskey-auth-router-from-core" };
  const NOISE = "mkey:" + "ab".repeat(32);
  beforeAll(async () => {
    fleet = await evaluate("office");
  });

  it("deploys only its own hosts, with the keys and URL it read from the core stack", async () => {
    const { rec, make, reads, core } = await siteRun(fleet, coreState({ url: "https://headscale.example.com", sha: policyDigest(fleet), keys: KEYS, noise: NOISE }), false);
    // The secret outputs were read as secrets (the harness hands them over wrapped, as the engine does).
    expect(core.sites).toEqual({ office: { preAuthKeys: KEYS } });
    const site = make();
    expect(site.coreProblems).toEqual([]);
    const nodes = await valueOf(site.nodes);
    await settle();
    expect(Object.keys(nodes).sort()).toEqual(["desk", "office-router"]);
    expect(reads).toEqual([{ name: "office-core", inputs: expect.objectContaining({ name: "core" }) }]);
    expect(names(rec, "meshfleet:index:SiteMesh")).toEqual(["office"]);
    expect(names(rec, "meshfleet:index:SubnetRouter")).toEqual(["office-office-router"]);
    expect(names(rec, "meshfleet:index:MeshNode")).toEqual(["office-desk"]);
    expect(names(rec, "meshfleet:host:Generation")).toEqual(["office-desk-agent-generation", "office-office-router-agent-generation"]);
    expect(names(rec, "meshfleet:host:Prerequisites")).toEqual(["office-desk-prerequisites", "office-office-router-prerequisites"]);
    // Nothing of the coordinator's: no Coordinator, user, key, route approval, nor a connection to its host.
    for (const t of ["meshfleet:index:Coordinator", "meshfleet:index:HeadscaleUser", "meshfleet:index:PreAuthKey", "meshfleet:index:RouteApproval", "meshfleet:headscale:RouteApproval"]) expect(names(rec, t)).toEqual([]);
    expect(new Set(targets(rec))).toEqual(new Set(["10.20.0.30", "10.20.0.2"]));
    // Each host's generation carries the key the core made for it, only inside the secret bundle.
    const gen = rec.byName("office-office-router-agent-generation");
    expect((gen.raw.bundle as Record<string, unknown>)[SIG]).toBe(SECRET_SIG);
    const bundle = String(unwrap(gen.raw.bundle));
    expect(bundle).toContain(KEYS["office-router"]);
    expect(bundle).not.toContain(KEYS.desk);
    expect(bundle).toContain(NOISE);
    expect(String(unwrap(rec.byName("office-desk-agent-generation").raw.bundle))).toContain(KEYS.desk);
    expect(bundle).toContain("https://headscale.example.com"); // the login server, as evaluated from the core's fleet.yaml
    expect(await valueOf(site.coordinatorUrl)).toBe("https://headscale.example.com");
  });

  it("an up against a core that runs another policy declares nothing; a preview warns and goes on", async () => {
    const stale = coreState({ url: "https://headscale.example.com", sha: "0".repeat(64), keys: KEYS, noise: NOISE });
    const pv = await siteRun(fleet, stale, true);
    const site = pv.make();
    expect(site.coreProblems.join("\n")).toMatch(/^core stack core: policySha256: expected [0-9a-f]{12}… \(the policy this site evaluated, whose autoApprovers approve its routers' routes\), found 000000000000…: the coordinator runs another policy\. Fix: meshfleet up --stack core first, then this site$/);
    await valueOf(site.nodes);
    await settle();
    expect(names(pv.rec, "meshfleet:host:Generation")).toHaveLength(2);

    const up = await siteRun(fleet, stale, false);
    expect(up.make).toThrow(/meshfleet cannot deploy site stack office:\n {2}- core stack core: policySha256: expected /);
    await settle();
    expect(up.rec.resources.map((r) => r.type)).toEqual([]);
  });
});

describe("what a site checks of its core", () => {
  let fleet: FleetSystem;
  beforeAll(async () => {
    fleet = await evaluate("office");
  });
  const ok = () => ({ coordinatorUrl: "https://headscale.example.com", policySha256: policyDigest(fleet), noisePublicKey: "k", sites: { office: { preAuthKeys: { desk: "a", "office-router": "b" } } } });
  it.each([
    ["nothing wrong", {}, []],
    ["a core never deployed", { coordinatorUrl: undefined, policySha256: undefined }, ["core stack core: expected its outputs coordinatorUrl and policySha256, found none (is the core deployed?). Fix: meshfleet up --stack core first"]],
    ["another URL", { coordinatorUrl: "https://old.example.com" }, ["core stack core: coordinatorUrl: expected https://headscale.example.com (coordinator.serverUrl in the core's fleet.yaml, which this site's hosts log in to), found https://old.example.com. Fix: meshfleet up --stack core (the core runs an older fleet.yaml), or bring this checkout up to date"]],
    ["a host's key missing", { sites: { office: { preAuthKeys: { desk: "a" } } } }, ["core stack core: sites.office.preAuthKeys.office-router: expected the host's pre-auth key, found none. Fix: meshfleet up --stack core (the core makes every site host's key)"]],
    ["no Noise key", { noisePublicKey: undefined }, ["core stack core: noisePublicKey: expected the coordinator's public Noise key, found none. Fix: meshfleet up --stack core"]],
  ])("%s", (_, change, want) => {
    expect(coreMismatch(fleet, { ...ok(), ...change }, "core")).toEqual(want);
  });

  it("a site host that reads a secret only the core has is refused before anything exists", () => {
    const h = fleet.hosts.desk;
    const bad: FleetSystem = { ...fleet, hosts: { ...fleet.hosts, desk: { ...h, files: [...h.files, { ...h.files[0], path: "/etc/x", secretRef: "derp-key" } as never] } } };
    const p = validateSiteMesh({ fleet: bad, ssh: { privateKey: "k", knownHostsPath: knownHostsFile(fleet) }, agent: { agentPath } });
    expect(p.join("\n")).toContain('secret "derp-key" is one only the core stack has');
  });

  it("the core's folder is not a site", async () => {
    const core = await evaluate("core");
    expect(validateSiteMesh({ fleet: core })).toEqual(["stack core: expected a site's folder (its fleet.yaml is core: { stack, dir }), found the core. Fix: deploy it with Mesh"]);
  });
});

describe("the example's stack files", () => {
  const index = readFileSync(path.join(REPO, "index.ts"), "utf8");
  it.each(["core", "home-site", "office"])("Pulumi.%s.yaml sets only settings index.ts reads, no secret in clear, and names its folder", (stack) => {
    const doc = parse(readFileSync(path.join(REPO, "stacks", `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
    for (const k of Object.keys(doc.config)) expect(index).toContain(`"${k.replace("meshfleet:", "")}"`);
    expect(doc.config["meshfleet:hostsDir"]).toBe(`hosts/${stack}`);
    // A site needs no key seed: the keys derived from it are the core's.
    expect(doc.config["meshfleet:keySeed"]).toBeUndefined();
  });
});
