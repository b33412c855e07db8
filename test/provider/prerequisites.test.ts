/**
 * The prerequisites probe and its decisions (issue 14 item 2): the probe is
 * real shell run on this machine (a Debian system: dpkg-query, os-release),
 * the decisions are checked for every refusal and install case.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { decide, installScript, parseProbe, probeScript, releaseIn, type PrerequisiteSpec, type ProbeFacts } from "../../provider/prerequisites.ts";
import { prerequisites } from "../../provider/resources/prerequisites.ts";
import { session, type RunResult } from "../../provider/ssh.ts";
import type { PrerequisitesInputs } from "../../provider/types.ts";

const spec = (o: Partial<PrerequisiteSpec> = {}): PrerequisiteSpec => ({ host: "nas", packages: [], node: { path: "node", minimumMajor: 18 }, binaries: [], ...o });
const debian = (o: Partial<ProbeFacts> = {}): ProbeFacts => ({ os: { id: "debian", idLike: "", version: "12" }, apt: true, node: "v18.19.0", packages: {}, binaries: {}, ...o });

describe("the probe, run for real on this machine", () => {
  it("reads os-release, apt, node, installed and missing packages, and a pinned binary's version line", () => {
    const dir = mkdtempSync(join(tmpdir(), "mf-prereq-"));
    const fake = join(dir, "tailscale");
    writeFileSync(fake, "#!/bin/sh\n[ \"$1\" = version ] && printf '1.98.10\\n  tailscale commit: x\\n'\n");
    chmodSync(fake, 0o755);
    const s = spec({
      packages: [{ name: "dpkg" }, { name: "meshfleet-no-such-package" }, { name: "sqlite3-by-hand", command: "sh" }],
      node: { path: process.execPath, minimumMajor: 18 },
      binaries: [
        { what: "tailscale", path: fake, versionArgs: ["version"], version: "1.98.10", option: "tailscaleVersion", fix: "x" },
        { what: "headscale", path: join(dir, "absent"), versionArgs: ["version"], version: "0.29.2", option: "coordinator.headscaleVersion", fix: "y" },
      ],
    });
    const r = spawnSync("sh", ["-c", probeScript(s)], { encoding: "utf8" });
    expect(r.status).toBe(0);
    const f = parseProbe(r.stdout);
    expect(f.os.id).toMatch(/^(debian|ubuntu)$/);
    // The release's codename, for a vendor repository's suite (tailscale.apt).
    expect(f.os.codename).toMatch(/^[a-z]+$/);
    expect(f.apt).toBe(true);
    expect(f.node).toBe(process.version);
    // dpkg is installed on every Debian system; the made-up one is not; "sh" stands for a binary put there by hand.
    expect(f.packages).toEqual({ dpkg: true, "meshfleet-no-such-package": false, "sqlite3-by-hand": true });
    expect(f.binaries).toEqual({ [fake]: "1.98.10", [join(dir, "absent")]: null });
    expect(decide(s, f)).toEqual({
      refusals: [`host nas: headscale is missing at ${join(dir, "absent")} (coordinator.headscaleVersion: 0.29.2). Fix: y`],
      install: ["meshfleet-no-such-package"],
      warnings: [],
      repositories: [],
    });
    rmSync(dir, { recursive: true, force: true });
  });

  it("a node command that is not there reads as absent", () => {
    const f = parseProbe(spawnSync("sh", ["-c", probeScript(spec({ node: { path: "meshfleet-no-such-node", minimumMajor: 18 } }))], { encoding: "utf8" }).stdout);
    expect(f.node).toBe("");
  });
});

describe("decisions", () => {
  it("a non-Debian host is refused, naming what was found and the fix, and nothing else is decided", () => {
    const d = decide(spec({ packages: [{ name: "caddy" }] }), debian({ os: { id: "fedora", idLike: "", version: "41" }, apt: false, packages: { caddy: false } }));
    expect(d.install).toEqual([]);
    expect(d.refusals).toEqual([expect.stringMatching(/^host nas: expected a Debian-family system with apt-get .*found fedora 41 without apt-get\. .*fix: deploy this host from a Debian or Ubuntu image/)]);
  });

  it("Ubuntu and Debian derivatives pass (ID_LIKE)", () => {
    expect(decide(spec(), debian({ os: { id: "ubuntu", idLike: "debian", version: "24.04" } })).refusals).toEqual([]);
    expect(decide(spec(), debian({ os: { id: "raspbian", idLike: "debian", version: "12" } })).refusals).toEqual([]);
    expect(decide(spec(), debian({ os: { id: "elementary", idLike: "ubuntu", version: "8" } })).refusals).toEqual([]);
  });

  it("Node older than 18 is refused, never replaced; a missing node is installed as Debian's nodejs", () => {
    expect(decide(spec(), debian({ node: "v16.20.2" })).refusals).toEqual([expect.stringContaining("host nas: the agent needs Node 18 or newer at node, found v16.20.2")]);
    expect(decide(spec(), debian({ node: "v18.0.0" })).refusals).toEqual([]);
    expect(decide(spec(), debian({ node: "" }))).toMatchObject({ refusals: [], install: ["nodejs"] });
    expect(decide(spec({ node: { path: "/opt/node20/bin/node", minimumMajor: 18 } }), debian({ node: "" })).refusals).toEqual([expect.stringContaining("/opt/node20/bin/node, which is missing")]);
  });

  it("missing packages are installed once each; installed ones are not", () => {
    const d = decide(spec({ packages: [{ name: "caddy" }, { name: "sqlite3" }, { name: "sqlite3" }] }), debian({ packages: { caddy: true, sqlite3: false } }));
    expect(d).toEqual({ refusals: [], install: ["sqlite3"], warnings: [], repositories: [] });
  });

  it("a pinned binary at another release is a warning, not a refusal; a deployed one that is missing is fine", () => {
    const b = { what: "tailscale", path: "/usr/bin/tailscale", versionArgs: ["version"], version: "1.98.10", option: "tailscaleVersion", fix: "install it" };
    expect(decide(spec({ binaries: [b] }), debian({ binaries: { "/usr/bin/tailscale": "1.96.2" } }))).toEqual({
      refusals: [],
      install: [],
      warnings: ["host nas: tailscale at /usr/bin/tailscale is 1.96.2, the fleet pins 1.98.10 (tailscaleVersion); fix: install it, or set tailscaleVersion to 1.96.2"],
      repositories: [],
    });
    expect(decide(spec({ binaries: [{ ...b, deployed: true }] }), debian({ binaries: { "/usr/bin/tailscale": null } })).refusals).toEqual([]);
    expect(decide(spec({ binaries: [b] }), debian({ binaries: { "/usr/bin/tailscale": null } })).refusals).toEqual(["host nas: tailscale is missing at /usr/bin/tailscale (tailscaleVersion: 1.98.10). Fix: install it"]);
  });

  it("release numbers are read from version lines", () => {
    expect(releaseIn("v0.29.2")).toBe("0.29.2");
    expect(releaseIn("1.98.10")).toBe("1.98.10");
    expect(releaseIn("headscale version v0.28.0 (commit x)")).toBe("0.28.0");
    expect(releaseIn("unknown")).toBe("");
  });

  it("install refreshes the package lists only when the first try fails, and quotes names", () => {
    const s = installScript(["sqlite3", "prometheus-node-exporter"]);
    expect(s).toContain("install -y -q --no-install-recommends sqlite3 prometheus-node-exporter >/tmp/meshfleet-apt.log 2>&1 || { apt-get -o DPkg::Lock::Timeout=600 update -q");
    expect(s).toContain("DEBIAN_FRONTEND=noninteractive");
    // dpkg's lock held by unattended-upgrades on a fresh VPS is waited for; a conffile never prompts.
    expect(s.match(/apt-get -o DPkg::Lock::Timeout=600 /g)).toHaveLength(3);
    expect(s).toContain("--force-confdef -o Dpkg::Options::=--force-confold install");
  });
});

describe("the resource", () => {
  afterEach(() => vi.restoreAllMocks());
  const n: PrerequisitesInputs = {
    host: "nas",
    connection: { name: "nas", host: "127.0.0.1", port: 22, user: "root", hostKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"] },
    spec: spec({ packages: [{ name: "sqlite3", command: "sqlite3" }] }),
  };
  const probeOut = (sqlite: boolean, os = "debian") => `os\t${os}\t\t12\napt\tyes\nnode\tv18.19.0\npkg\tsqlite3\t${sqlite ? "yes" : "no"}\n`;

  it("diff: nothing missing is no change; a missing package is an update; a refusal fails the preview", async () => {
    let installed = true;
    let os = "debian";
    vi.spyOn(session, "run").mockImplementation(async () => ({ code: 0, stdout: probeOut(installed, os), stderr: "" }) as RunResult);
    const olds = { ...n, installed: [] };
    expect((await prerequisites.diff(olds, n)).changes).toBe(false);
    installed = false;
    expect(await prerequisites.diff(olds, n)).toMatchObject({ changes: true, detailedDiff: { installed: "update" } });
    os = "alpine";
    await expect(prerequisites.diff(olds, n)).rejects.toThrow(/host nas: expected a Debian-family system[\s\S]*Nothing was changed on nas/);
  });

  it("diff: a host that cannot be reached is left as it is, asked once and briefly (a laptop that is off does not stop the deploy); update stays strict", async () => {
    const opts: { attempts?: number; until?: number }[] = [];
    vi.spyOn(session, "run").mockImplementation(async (_c, _s, o) => {
      opts.push({ attempts: o?.attempts, until: o?.until });
      throw new Error("host nas: cannot reach sshd after 1 attempts: Connection refused");
    });
    const t0 = Date.now();
    expect((await prerequisites.diff({ ...n, installed: [] }, n)).changes).toBe(false);
    expect(opts).toHaveLength(1);
    expect(opts[0]!.attempts).toBe(1);
    expect(opts[0]!.until! - t0).toBeLessThanOrEqual(10_000);
    await expect(prerequisites.update!("nas", { ...n, installed: [] }, n)).rejects.toThrow(/host nas: reading its prerequisites failed \(exit 255\): host nas: cannot reach sshd/);
  });

  it("update installs what is missing and probes again; an apt failure names the host, the packages and the fix", async () => {
    const seen: string[] = [];
    let installed = false;
    let aptOk = true;
    vi.spyOn(session, "run").mockImplementation(async (_c, script) => {
      seen.push(script.includes("--no-install-recommends") ? "install" : "probe");
      if (script.includes("--no-install-recommends")) {
        if (!aptOk) return { code: 1, stdout: "", stderr: "E: Unable to locate package sqlite3" } as RunResult;
        installed = true;
        return { code: 0, stdout: "", stderr: "" } as RunResult;
      }
      return { code: 0, stdout: probeOut(installed), stderr: "" } as RunResult;
    });
    expect(await prerequisites.update!("nas", { ...n, installed: [] }, n)).toMatchObject({ installed: ["sqlite3"] });
    expect(seen).toEqual(["probe", "install", "probe"]);
    installed = false;
    aptOk = false;
    await expect(prerequisites.update!("nas", { ...n, installed: [] }, n)).rejects.toThrow(/host nas: apt-get install sqlite3 failed \(exit 1\):\nE: Unable to locate package sqlite3\nFix: make the packages installable on nas/);
  });
});
