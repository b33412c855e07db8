/**
 * plan leaves a host out without rendering it when its HostSystem is the
 * same on both sides but for `file` and `warnings` (sameHost,
 * cli/commands/plan.ts). Held to rendering every host: over edits of the
 * home fleet (a setting, a file's content, a firewall port, a host added and
 * removed, the policy, a version), diffGenerations with the skip gives what
 * it gives with every host rendered; a copy of a host that differs only in
 * `file` and `warnings` is the same host with the same bundle hash, and a
 * copy with any other field changed is not the same host.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { diffGenerations, sameHost } from "../../cli/commands/plan.ts";
import { evaluateFleet } from "../../core/index.ts";
import { renderHost, secretRefs } from "../../core/bundle.ts";
import type { FleetSystem, HostSystem } from "../../core/types.ts";
import { REGISTRY } from "../../modules/index.ts";

let dir: string;
beforeAll(() => {
  dir = path.join(mkdtempSync(path.join(tmpdir(), "meshfleet-same-host-")), "home");
  cpSync(path.resolve("hosts/home"), dir, { recursive: true });
});
afterAll(() => rmSync(path.dirname(dir), { recursive: true, force: true }));

const evaluated = async (): Promise<FleetSystem> => {
  const r = await evaluateFleet(REGISTRY, dir, "home");
  expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
  return r.fleet!;
};
const edit = (file: string, f: (s: string) => string) => {
  const before = readFileSync(path.join(dir, file), "utf8");
  writeFileSync(path.join(dir, file), f(before));
};
/** The same fleet with every host marked, so that no host is the same as another: every host rendered. */
const renderAll = (f: FleetSystem): FleetSystem => ({ ...f, hosts: Object.fromEntries(Object.entries(f.hosts).map(([n, h]) => [n, { ...h, renderedAnyway: true } as HostSystem])) });
const hashOf = (h: HostSystem) => renderHost(h, Object.fromEntries(secretRefs(h).map((r) => [r, `(secret ${r})`]))).hash;

const EDITS: [string, () => void][] = [
  ["a tailscale setting", () => edit("laptop.yaml", (s) => s.replace("acceptRoutes: true", "acceptRoutes: false"))],
  ["a service's config file", () => edit("vps.yaml", (s) => s + "headscale:\n  logLevel: debug\n")],
  ["a firewall port", () => edit("exit.yaml", (s) => s + "firewall:\n  allowedTCPPorts: [8080]\n")],
  ["a host added", () => writeFileSync(path.join(dir, "nas.yaml"), "imports: [client]\naddress: 192.168.8.70\ntailscale:\n  tags: [tag:server]\n")],
  ["the policy", () => edit("fleet.yaml", (s) => s.replace("  acls:\n", '  acls:\n    - action: accept\n      src: [tag:exit]\n      dst: ["tag:server:22"]\n'))],
  ["a version", () => edit("fleet.yaml", (s) => s.replace("headscaleVersion: 0.29.2", "headscaleVersion: 0.29.1"))],
  ["a host removed", () => rmSync(path.join(dir, "nas.yaml"))],
];

describe("plan's per-host comparison skips the same host", () => {
  it("over edits of the home fleet: the same entries as with every host rendered, and unchanged hosts skipped", async () => {
    let base = await evaluated();
    let skipped = 0;
    for (const [what, change] of EDITS) {
      change();
      const head = await evaluated();
      const got = diffGenerations(base, head);
      expect(got, what).toEqual(diffGenerations(base, renderAll(head)));
      expect(got.length, what).toBeGreaterThan(0);
      skipped += Object.keys(head.hosts).filter((n) => sameHost(base.hosts[n], head.hosts[n])).length;
      base = head;
    }
    expect(skipped).toBeGreaterThan(EDITS.length);
  });

  it("a copy that differs in file and warnings only: the same host, the same bundle", async () => {
    const fleet = await evaluated();
    for (const h of Object.values(fleet.hosts)) {
      const copy: HostSystem = { ...structuredClone(h), file: `/elsewhere/${h.file}`, warnings: [{ severity: "warning", file: "x", path: "", expected: "", found: "", fix: "" }] };
      expect(sameHost(h, copy), h.name).toBe(true);
      if (h.agent) expect(hashOf(copy), h.name).toBe(hashOf(h));
    }
  });

  it("fault: a copy with any other field changed, or holding what is not plain data, is not the same host", async () => {
    const fleet = await evaluated();
    const h = fleet.hosts.vps;
    for (const k of Object.keys(h) as (keyof HostSystem)[]) {
      if (k === "file" || k === "warnings") continue;
      expect(sameHost(h, { ...structuredClone(h), [k]: "changed" } as HostSystem), k).toBe(false);
    }
    const deep = structuredClone(h);
    deep.files[0] = { ...deep.files[0], content: deep.files[0].content + "\n" };
    expect(sameHost(h, deep)).toBe(false);
    expect(hashOf(deep)).not.toBe(hashOf(h));
    const reordered = { ...structuredClone(h), sysctl: Object.fromEntries(Object.entries(h.sysctl).reverse()) };
    expect(sameHost(h, reordered)).toBe(Object.keys(h.sysctl).length < 2);
    const withMap = () => ({ ...h, lxc: new Map() }) as unknown as HostSystem;
    expect(sameHost(withMap(), withMap())).toBe(false);
  });
});
