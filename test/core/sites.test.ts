/**
 * Sites as stacks (core/sites.ts): the example in hosts/core, hosts/home-site
 * and hosts/office evaluates as one fleet from any of its folders, each
 * stack deploying its own folder's hosts; and every way the folders can
 * disagree is one diagnostic with file, option path, expected, found, fix.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { evaluateFleet, formatDiagnostic, hasErrors } from "../../core/index.ts";
import { checkFleetFile } from "../../core/fleet-schema.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE } from "./fleet-fixture.ts";

const REPO = path.resolve(import.meta.dirname, "../..");
const hosts = (s: string) => path.join(REPO, "hosts", s);

describe("the example fleet with sites", () => {
  it("evaluates as one fleet from each of its folders; each stack deploys its own hosts", async () => {
    const all = ["desk", "home-router", "laptop", "office-router", "vps"];
    for (const [stack, local] of [["core", ["vps"]], ["home-site", ["home-router", "laptop"]], ["office", ["desk", "office-router"]]] as const) {
      const r = await evaluateFleet(REGISTRY, hosts(stack), stack);
      expect(r.diagnostics.filter((d) => d.severity === "error").map(formatDiagnostic)).toEqual([]);
      const f = r.fleet!;
      expect(Object.keys(f.hosts).sort()).toEqual(all);
      expect([...f.sites!.local].sort()).toEqual(local);
      expect(f.sites!.site).toBe(stack === "core" ? null : stack);
      expect(f.sites!.core).toEqual({ dir: expect.stringMatching(/hosts[/\\]core$/), stack: "core", hosts: ["vps"] });
      expect(Object.fromEntries(Object.entries(f.sites!.sites).map(([k, v]) => [k, v.hosts.sort()]))).toEqual({ "home-site": ["home-router", "laptop"], office: ["desk", "office-router"] });
      // The policy and its approvers cover every site's routers, whichever folder was evaluated.
      expect(f.autoApprovers.routes).toEqual({ "192.168.8.0/24": ["tag:router"], "10.20.0.0/24": ["tag:router"] });
      // The core makes every host's key, the sites' too.
      expect(f.preAuthKeys.map((k) => k.host).sort()).toEqual(all);
      expect(f.coordinator.host).toBe("vps");
      expect(f.hosts["home-router"].tailscale.loginServer).toBe("https://headscale.example.com");
    }
  });

  it("renders the same policy from every folder", async () => {
    const [a, b, c] = await Promise.all(["core", "home-site", "office"].map((s) => evaluateFleet(REGISTRY, hosts(s), s)));
    expect(b.fleet!.policyHuJson).toBe(a.fleet!.policyHuJson);
    expect(c.fleet!.policyHuJson).toBe(a.fleet!.policyHuJson);
  });

  it("leaves a fleet without sites as it was", async () => {
    const r = await evaluateFleet(REGISTRY, hosts("home"), "home");
    expect(r.fleet!.sites).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------
// Folders that disagree

const made: string[] = [];
afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Folders under a temp root: { core: { "fleet.yaml": ..., ... }, home: {...} }; returns the root. */
function tree(folders: Record<string, Record<string, string>>): string {
  const root = mkdtempSync(path.join(os.tmpdir(), "meshfleet-sites-"));
  made.push(root);
  for (const [dir, files] of Object.entries(folders)) {
    mkdirSync(path.join(root, dir), { recursive: true });
    for (const [f, text] of Object.entries(files)) writeFileSync(path.join(root, dir, f), text);
  }
  return root;
}

const coreFleet = (sites: string[]) => BASE["fleet.yaml"].replace("users: [alice]", `users: [alice]\nsites: [${sites.join(", ")}]`);
const site = (coreDir = "../core", stack = "core") => `core:\n  stack: ${stack}\n  dir: ${coreDir}\n`;
const CORE = (sites: string[]) => ({ "fleet.yaml": coreFleet(sites), "vps.yaml": BASE["vps.yaml"] });

async function errors(root: string, folder: string): Promise<string[]> {
  const r = await evaluateFleet(REGISTRY, path.join(root, folder), folder);
  expect(hasErrors(r.diagnostics)).toBe(true);
  expect(r.fleet).toBeUndefined();
  return r.diagnostics.filter((d) => d.severity === "error").map((d) => formatDiagnostic(d).split(root + path.sep).join("<tmp>/"));
}

describe("a fleet whose folders disagree", () => {
  it("a small valid tree evaluates (the cases below each break one thing of it)", async () => {
    const root = tree({ core: CORE(["home"]), home: { "fleet.yaml": site(), "router.yaml": BASE["router.yaml"] } });
    const r = await evaluateFleet(REGISTRY, path.join(root, "home"), "home");
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(r.fleet!.sites!.local).toEqual(["router"]);
  });

  it("a host in two sites", async () => {
    const root = tree({
      core: CORE(["home", "office"]),
      home: { "fleet.yaml": site(), "router.yaml": BASE["router.yaml"] },
      office: { "fleet.yaml": site(), "router.yaml": BASE["router.yaml"] },
    });
    const want = 'error: <tmp>/office/router.yaml: expected a host name no other folder of the fleet uses (a host belongs to one site), found "router", also <tmp>/home/router.yaml (home). Fix: remove one of the two files, or rename one (the file name is the host\'s name)';
    expect(await errors(root, "office")).toEqual([want]);
    expect(await errors(root, "core")).toEqual([want]);
  });

  it("a site host named like a core host", async () => {
    const root = tree({ core: CORE(["home"]), home: { "fleet.yaml": site(), "vps.yaml": BASE["laptop.yaml"] } });
    expect(await errors(root, "home")).toEqual([
      'error: <tmp>/home/vps.yaml: expected a host name no other folder of the fleet uses (a host belongs to one site), found "vps", also <tmp>/core/vps.yaml (the core). Fix: remove one of the two files, or rename one (the file name is the host\'s name)',
    ]);
  });

  it("a site that names a missing core", async () => {
    const root = tree({ home: { "fleet.yaml": site("../hq"), "router.yaml": BASE["router.yaml"] } });
    expect(await errors(root, "home")).toEqual([
      'error: <tmp>/home/fleet.yaml: core.dir: expected the folder of this site\'s core stack, beside this one, holding the core\'s fleet.yaml (coordinator, sites), found "../hq" (<tmp>/hq): no such folder. Fix: set core.dir to the core\'s folder (e.g. ../core), or create <tmp>/hq/fleet.yaml with coordinator and sites: [home]',
    ]);
  });

  it("a site whose core does not list it", async () => {
    const root = tree({ core: CORE(["office"]), office: { "fleet.yaml": site() }, home: { "fleet.yaml": site(), "router.yaml": BASE["router.yaml"] } });
    expect(await errors(root, "home")).toEqual([
      "error: <tmp>/home/fleet.yaml: core.dir: expected a core that lists this site (home) in its sites, found <tmp>/core/fleet.yaml lists office. Fix: add home to sites in <tmp>/core/fleet.yaml, or point core.dir at this site's core",
    ]);
  });

  it("a core that lists a missing site", async () => {
    const root = tree({ core: CORE(["home", "offcie"]), home: { "fleet.yaml": site(), "router.yaml": BASE["router.yaml"] } });
    const want = 'error: <tmp>/core/fleet.yaml: sites[1]: expected the name of a site folder beside this one, holding a fleet.yaml with core: { stack, dir }, found "offcie": no <tmp>/offcie/fleet.yaml. Fix: create <tmp>/offcie/fleet.yaml with core: { stack: <core stack>, dir: ../core }, or remove offcie from sites';
    expect(await errors(root, "core")).toContain(want);
    expect(await errors(root, "home")).toContain(want);
  });

  it("a listed site that is a fleet of its own, or names another core", async () => {
    const root = tree({
      core: CORE(["home", "lab"]),
      home: { "fleet.yaml": site("../core2") },
      core2: CORE(["home"]),
      lab: { "fleet.yaml": BASE["fleet.yaml"].replace("host: vps", "host: lab-vps"), "lab-vps.yaml": BASE["vps.yaml"] },
    });
    expect(await errors(root, "core")).toEqual([
      'error: <tmp>/home/fleet.yaml: core.dir: expected the core that lists this site (<tmp>/core), found "../core2". Fix: set core.dir: ../core, or remove home from sites in <tmp>/core/fleet.yaml',
      "error: <tmp>/lab/fleet.yaml: expected a site's fleet file (core: { stack, dir }), since <tmp>/core/fleet.yaml lists lab in sites, found a fleet file of its own (coordinator, ...). Fix: replace it with core: { stack: <core stack>, dir: ../core }, or remove lab from sites in <tmp>/core/fleet.yaml",
    ]);
  });

  it("sites that name the core's stack differently", async () => {
    const root = tree({ core: CORE(["a", "b"]), a: { "fleet.yaml": site("../core", "core") }, b: { "fleet.yaml": site("../core", "prod-core") } });
    expect(await errors(root, "core")).toEqual(['error: <tmp>/b/fleet.yaml: core.stack: expected the core\'s stack name the other sites use (core), found "prod-core". Fix: set core.stack: core']);
  });

  it("a coordinator in a site", async () => {
    const root = tree({
      core: { "fleet.yaml": coreFleet(["home"]), "laptop.yaml": BASE["laptop.yaml"] },
      home: { "fleet.yaml": site(), "vps.yaml": BASE["vps.yaml"] },
    });
    expect(await errors(root, "home")).toContain(
      'error: <tmp>/core/fleet.yaml: coordinator.host: expected a host of the core\'s own folder (the core stack deploys the coordinator; sites only read its URL and their keys), found "vps", a host of site home (<tmp>/home/vps.yaml). Fix: move <tmp>/home/vps.yaml into <tmp>/core',
    );
  });

  it("a site naming another site as its core", async () => {
    const root = tree({ core: CORE(["a", "b"]), a: { "fleet.yaml": site() }, b: { "fleet.yaml": site("../a") } });
    expect(await errors(root, "b")).toEqual([
      'error: <tmp>/b/fleet.yaml: core.dir: expected the folder of the core (its fleet.yaml has coordinator and sites), found "../a", which is itself a site (its fleet.yaml has core:). Fix: point core.dir at the folder whose fleet.yaml has coordinator.host',
    ]);
  });
});

describe("a site's fleet.yaml", () => {
  const f = "hosts/home-site/fleet.yaml";
  const show = (v: unknown) => checkFleetFile(v, f).map(formatDiagnostic);
  it("is core: { stack, dir } alone", () => {
    expect(show({ core: { stack: "core", dir: "../core" } })).toEqual([]);
    expect(show({ core: { stack: "acme/meshfleet/core", dir: "../core/" } })).toEqual([]);
  });
  it("refuses the core's settings, unknown keys, and a core that is not a sibling folder", () => {
    expect(show({ core: { stack: "core", dir: "../core" }, policy: {} })).toEqual([
      'error: hosts/home-site/fleet.yaml: policy: expected a site\'s fleet file: core: { stack, dir } alone (the mesh-wide settings are the core\'s), found "policy" in a site (this file has core:). Fix: move policy into the core\'s fleet.yaml, or remove core: to make this folder a fleet of its own',
    ]);
    expect(show({ core: { stack: "core", dri: "../core" } }).join("\n")).toMatch(/core\.dri: .*did you mean "dir"\?/);
    const far = show({ core: { stack: "core", dir: "/srv/fleet/core" } });
    expect(far).toHaveLength(1);
    expect(far[0]).toMatch(/^error: hosts\/home-site\/fleet\.yaml: core\.dir: .*\.\.\/<name>.*"\/srv\/fleet\/core"/);
    expect(show({ core: { stack: "bad name", dir: "../core" } })[0]).toMatch(/core\.stack: .*Pulumi stack name/);
  });
  it("a core's sites are folder names", () => {
    const d = checkFleetFile({ coordinator: { host: "vps", serverUrl: "https://hs.example.com" }, sites: ["Home Site"] }, "hosts/core/fleet.yaml").map(formatDiagnostic);
    expect(d.join("\n")).toMatch(/hosts\/core\/fleet\.yaml: sites\[0\]/);
  });
});
