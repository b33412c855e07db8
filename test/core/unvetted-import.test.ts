/**
 * An import the loader did not read (a LoadedFleet made without `imports`,
 * as a caller of the exported evaluateLoaded may make one) is read as the
 * loader reads one: from the folder's mounted source (plan's base from git is
 * not on the disk), inside the host's own folder (a site's, in a fleet with
 * sites), then parsed. Before, evaluation read it straight from the disk: on
 * a mounted folder it found nothing, and a path out of the folder was read.
 * The loader now also hands on a host file another host imports.
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { generateFleet } from "../../bench/eval-scale/generate.ts";
import { evaluateLoaded } from "../../core/eval.ts";
import { loadSites } from "../../core/sites.ts";
import { diskSource, loadFleetDir, mountFileSource, type FileSource, type LoadedFleet } from "../../core/load.ts";
import { REGISTRY } from "../../modules/index.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "mf-unvetted-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The folder `real` served at `at` (a path not on the disk), links and errors as the disk gives them. */
function servedAt(at: string, real: string): FileSource {
  const to = (p: string) => real + p.slice(at.length);
  const back = (p: string) => (p.startsWith(real) ? at + p.slice(real.length) : p);
  return {
    lstat: (p) => diskSource.lstat(to(p)),
    stat: (p) => diskSource.stat(to(p)),
    realpath: (p) => back(diskSource.realpath(to(p))),
    readdir: (p) => diskSource.readdir(to(p)),
    readRegular: (p, n) => diskSource.readRegular(to(p), n),
  };
}

const withoutImports = (l: LoadedFleet): LoadedFleet => ({ ...l, imports: undefined });
const texts = (r: { diagnostics: { file: string; path: string; found: string }[] }) => r.diagnostics.map((d) => `${path.basename(d.file)}: ${d.path}: ${d.found}`);

describe("an import the loader did not read", () => {
  const dir = path.join(root, "fleet");
  mkdirSync(dir);
  generateFleet(dir, 12, 5);
  writeFileSync(path.join(dir, "_common.yaml"), "firewall:\n  allowedTCPPorts: [8080]\n");
  writeFileSync(path.join(dir, "h1.yaml"), "imports: [client, ./_common.yaml]\naddress: 198.51.100.1\ntailscale:\n  user: alice\n");

  it("is read through the folder's mounted source, as the loader read it", async () => {
    const vetted = evaluateLoaded(REGISTRY, await loadFleetDir(dir), "stack");
    expect(JSON.stringify(vetted.fleet!.hosts.h1!.firewall.inbound)).toMatch(/8080/);
    const mount = path.join(root, "not-on-the-disk");
    const unmount = mountFileSource(mount, servedAt(mount, dir));
    try {
      const loaded = await loadFleetDir(mount);
      expect(Object.keys(loaded.imports ?? {})).toHaveLength(1);
      const r = evaluateLoaded(REGISTRY, withoutImports(loaded), "stack");
      expect(texts(r)).toEqual(texts(vetted)); // one warning of the imported file's, the same
      expect(r.fleet!.hosts.h1!.firewall).toEqual(vetted.fleet!.hosts.h1!.firewall);
    } finally {
      unmount();
    }
  });

  it("a host file another host imports is handed on by the loader; the same result read here", async () => {
    const two = path.join(root, "two");
    mkdirSync(two);
    generateFleet(two, 12, 5);
    writeFileSync(path.join(two, "h2.yaml"), "imports: [./h1.yaml]\n");
    const loaded = await loadFleetDir(two);
    expect(Object.keys(loaded.imports ?? {}).map((f) => path.basename(f))).toEqual(["h1.yaml"]);
    const vetted = evaluateLoaded(REGISTRY, loaded, "stack");
    expect(texts(evaluateLoaded(REGISTRY, withoutImports(loaded), "stack"))).toEqual(texts(vetted));
  });

  it("in a fleet with sites, an import inside the site's own folder", async () => {
    const hosts = path.join(root, "sites");
    for (const f of ["core", "office", "home-site"]) cpSync(path.join(import.meta.dirname, "../../hosts", f), path.join(hosts, f), { recursive: true });
    const office = path.join(hosts, "office");
    writeFileSync(path.join(office, "_common.yaml"), "firewall:\n  allowedTCPPorts: [8080]\n");
    writeFileSync(path.join(office, "desk.yaml"), readFileSync(path.join(office, "desk.yaml"), "utf8").replace("imports: [client]", "imports: [client, ./_common.yaml]"));
    const { loaded } = await loadSites(office);
    expect(loaded.diagnostics).toEqual([]);
    const vetted = evaluateLoaded(REGISTRY, loaded, "office");
    expect(vetted.fleet, texts(vetted).join("\n")).toBeDefined();
    const r = evaluateLoaded(REGISTRY, withoutImports(loaded), "office");
    expect(texts(r)).toEqual(texts(vetted));
    expect(JSON.stringify(r.fleet!.hosts.desk!.firewall.inbound)).toMatch(/8080/);
  });

  it("out of the folder: refused, not read; missing: named", async () => {
    const loaded = withoutImports(await loadFleetDir(dir));
    writeFileSync(path.join(root, "outside.yaml"), "firewall:\n  allowedTCPPorts: [9999]\n");
    const h1 = loaded.hosts.find((h) => h.name === "h1")!;
    const out = { ...loaded, hosts: loaded.hosts.map((h) => (h === h1 ? { ...h, source: { ...h.source, value: { ...(h.source.value as object), imports: ["client", "../outside.yaml"] } } } : h)) };
    const r = evaluateLoaded(REGISTRY, out, "stack");
    expect(r.fleet).toBeUndefined();
    expect(texts(r).join("\n")).toMatch(/outside\.yaml/);
    expect(JSON.stringify(r)).not.toMatch(/9999/);
    const missing = { ...loaded, hosts: loaded.hosts.map((h) => (h === h1 ? { ...h, source: { ...h.source, value: { ...(h.source.value as object), imports: ["client", "./_gone.yaml"] } } } : h)) };
    expect(texts(evaluateLoaded(REGISTRY, missing, "stack"))).toEqual(['h1.yaml: imports[1]: "./_gone.yaml"']);
  });
});
