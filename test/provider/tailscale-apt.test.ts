/**
 * tailscale.apt (issue 14 item 2): the option's checks, the repository the
 * spec carries (keyring read from the fleet's folder), the rendered source,
 * pin and script, the decisions, and each refusal's text (file, option,
 * expected, found, fix). The install itself is proved in the lab
 * (test/cli/tailscale-apt-lab.test.ts).
 */
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { prerequisiteSpec, tailscaleRepository } from "../../components/prerequisites.ts";
import { evaluateFleet, formatDiagnostics, type FleetSystem } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import {
  decide,
  parseProbe,
  pinnedAfterInstall,
  probeScript,
  pinText,
  REPO_EXIT,
  repositoryFailure,
  repositoryRemovalScript,
  repositoryScript,
  sourcesLine,
  type AptRepository,
  type PrerequisiteSpec,
  type ProbeFacts,
} from "../../provider/prerequisites.ts";
import { prerequisites } from "../../provider/resources/prerequisites.ts";
import { session, type RunResult } from "../../provider/ssh.ts";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
  vi.restoreAllMocks();
});

/** A binary OpenPGP packet's first byte (public key, old format) and some bytes: what the keyring check reads. */
const BINARY_KEY = Buffer.from([0x99, 0x00, 0x33, 0x04, 0x65, 0x01, 0x02, 0x03]);

/** hosts/lab copied, with edits, and evaluated. */
async function lab(edits: Record<string, (old: string) => string>, files: Record<string, Buffer | string> = {}): Promise<{ dir: string; r: Awaited<ReturnType<typeof evaluateFleet>> }> {
  const root = mkdtempSync(path.join(os.tmpdir(), "mf-ts-apt-"));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  const dir = path.join(root, "lab");
  cpSync("hosts/lab", dir, { recursive: true });
  for (const [name, e] of Object.entries(edits)) writeFileSync(path.join(dir, name), e(readFileSync(path.join(dir, name), "utf8")));
  for (const [name, b] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), b);
  }
  return { dir, r: await evaluateFleet(REGISTRY, dir, "lab") };
}

const withApt = (apt: string, paths = true) => (t: string) =>
  (paths ? t.replace("imports: [client, ./_tools.yaml]", "imports: [client]") : t).replace("  acceptRoutes: true\n", `  acceptRoutes: true\n  apt:\n${apt}`);
const APT = "    enable: true\n    url: https://repo.example/stable/debian\n    keyring: keys/ts.gpg\n";

const repo = (o: Partial<AptRepository> = {}): AptRepository => ({
  name: "tailscale",
  url: "https://repo.example/stable/debian",
  suite: "",
  component: "main",
  keyring: { base64: BINARY_KEY.toString("base64"), armored: false },
  package: "tailscale",
  version: "1.98.10",
  origin: "hosts/home/vps.yaml: tailscale.apt",
  versionOption: "tailscaleVersion",
  ...o,
});
const spec = (r = repo()): PrerequisiteSpec => ({
  host: "vps",
  packages: [],
  node: { path: "node", minimumMajor: 18 },
  binaries: [{ what: "tailscale", path: "/usr/bin/tailscale", versionArgs: ["version"], version: "1.98.10", option: "tailscaleVersion", fix: "turn on tailscale.apt", repository: "tailscale" }],
  repositories: [r],
});
const facts = (tailscale: string | null, codename = "bookworm"): ProbeFacts => ({
  os: { id: "debian", idLike: "", version: "12", codename },
  apt: true,
  node: "v18.19.0",
  packages: {},
  binaries: { "/usr/bin/tailscale": tailscale },
});

describe("the option", () => {
  it("carries url, suite, component and keyring to the host's tailscale settings; off, nothing", async () => {
    const { r } = await lab({ "laptop.yaml": withApt(APT + "    suite: trixie\n") });
    expect(r.fleet, formatDiagnostics(r.diagnostics)).toBeDefined();
    expect(r.fleet!.hosts.laptop!.tailscale).toMatchObject({ aptUrl: "https://repo.example/stable/debian", aptSuite: "trixie", aptComponent: "main", aptKeyring: "keys/ts.gpg" });
    expect(r.fleet!.hosts.vps!.tailscale.aptUrl).toBeUndefined();
  });

  it("refuses apt without a URL or keyring, and with tailscale paths the package does not install: file, option, expected, found, fix", async () => {
    const { r } = await lab({ "laptop.yaml": withApt("    enable: true\n", false) });
    expect(r.fleet).toBeUndefined();
    const text = formatDiagnostics(r.diagnostics);
    expect(text).toContain("tailscale.apt.url");
    expect(text).toMatch(/tailscale\.apt\.url.*expected the repository's URL \(tailscale\.apt\.enable is true\).*found "".*set tailscale\.apt\.url to the URL Tailscale's install page gives/s);
    expect(text).toMatch(/tailscale\.apt\.keyring.*found "".*save Tailscale's <codename>\.noarmor\.gpg in the fleet's folder/s);
    expect(text).toMatch(/_tools\.yaml.*tailscale\.tailscalePath.*expected \/usr\/bin\/tailscale, where Tailscale's package installs it.*found "\/opt\/meshfleet\/tools\/tailscale@1\.98\.10\/bin\/tailscale".*remove tailscale\.tailscalePath/s);
    expect(text).toMatch(/tailscale\.tailscaledPath.*expected \/usr\/sbin\/tailscaled/s);
  });

  it("refuses a keyring outside the fleet's folder or of a form apt does not name, and a URL with spaces", async () => {
    for (const [line, what] of [
      ["    keyring: ../keys/ts.gpg\n", "tailscale.apt.keyring"],
      ["    keyring: /etc/ts.gpg\n", "tailscale.apt.keyring"],
      ["    keyring: keys/ts.key\n", "tailscale.apt.keyring"],
      ["    url: ftp://x/y\n", "tailscale.apt.url"],
      ["    suite: 'book worm'\n", "tailscale.apt.suite"],
    ] as const) {
      const apt = APT.split("\n").filter((l) => !l.startsWith(line.split(":")[0]!)).join("\n") + line;
      const { r } = await lab({ "laptop.yaml": withApt(apt) });
      expect(r.fleet, line).toBeUndefined();
      expect(formatDiagnostics(r.diagnostics), line).toContain(what);
    }
  });
});

describe("the repository in the spec", () => {
  const laptopOf = async (files: Record<string, Buffer | string>, apt = APT) => {
    const { r, dir } = await lab({ "laptop.yaml": withApt(apt) }, files);
    expect(r.fleet, formatDiagnostics(r.diagnostics)).toBeDefined();
    return { h: r.fleet!.hosts.laptop!, dir, fleet: r.fleet as FleetSystem };
  };

  it("reads the keyring from the fleet's folder; the tailscale binary comes from it", async () => {
    const { h, dir } = await laptopOf({ "keys/ts.gpg": BINARY_KEY });
    const s = prerequisiteSpec(h, { tailscaleVersion: "1.98.10", fleetDir: dir });
    expect(s.repositories).toEqual([
      { name: "tailscale", url: "https://repo.example/stable/debian", suite: "", component: "main", keyring: { base64: BINARY_KEY.toString("base64"), armored: false }, package: "tailscale", version: "1.98.10", origin: `${h.file}: tailscale.apt`, versionOption: "tailscaleVersion" },
    ]);
    expect(s.binaries[0]).toMatchObject({ path: "/usr/bin/tailscale", repository: "tailscale" });
    // Without fleetDir: the host file's folder, which is the fleet's.
    expect(tailscaleRepository(h, { tailscaleVersion: "1.98.10" })!.keyring.base64).toBe(BINARY_KEY.toString("base64"));
  });

  it("an armored key as .asc is kept armored; hosts without the option have no repository", async () => {
    const asc = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZQ==\n-----END PGP PUBLIC KEY BLOCK-----\n";
    const { h, fleet } = await laptopOf({ "keys/ts.asc": asc }, APT.replace("ts.gpg", "ts.asc"));
    expect(tailscaleRepository(h, { tailscaleVersion: "1.98.10" })!.keyring).toEqual({ base64: Buffer.from(asc).toString("base64"), armored: true });
    expect(prerequisiteSpec(fleet.hosts.vps!, { tailscaleVersion: "1.98.10" }).repositories).toBeUndefined();
  });

  it("a missing or malformed keyring stops the deploy before anything is declared: file, option, expected, found, fix", async () => {
    const { h } = await laptopOf({});
    expect(() => tailscaleRepository(h, { tailscaleVersion: "1.98.10" })).toThrow(
      new RegExp(`^${h.file.replace(/[.\\/]/g, "\\$&")}: tailscale\\.apt\\.keyring: expected the repository's signing key at .*keys/ts\\.gpg, found no such file\\. Fix: save the keyring the repository publishes \\(Tailscale's <codename>\\.noarmor\\.gpg\\) there and check its fingerprint`),
    );
    const armoredAsGpg = await laptopOf({ "keys/ts.gpg": "-----BEGIN PGP PUBLIC KEY BLOCK-----\n" });
    expect(() => tailscaleRepository(armoredAsGpg.h, { tailscaleVersion: "1.98.10" })).toThrow(/expected a binary OpenPGP keyring \(\.gpg\) at .*found an armored key in a \.gpg file \(apt reads \.gpg as binary\)\. Fix: save Tailscale's <codename>\.noarmor\.gpg as a \.gpg file/);
    const empty = await laptopOf({ "keys/ts.gpg": "" });
    expect(() => tailscaleRepository(empty.h, { tailscaleVersion: "1.98.10" })).toThrow(/found an empty file/);
    const text = await laptopOf({ "keys/ts.asc": "hello" }, APT.replace("ts.gpg", "ts.asc"));
    expect(() => tailscaleRepository(text.h, { tailscaleVersion: "1.98.10" })).toThrow(/expected an armored OpenPGP public key \(\.asc\) .*found a file that is not an armored OpenPGP public key/);
  });
});

describe("rendering", () => {
  it("the sources line names the keyring in signed-by, with the host's codename or the set suite", () => {
    expect(sourcesLine(repo(), "bookworm")).toBe("deb [signed-by=/usr/share/keyrings/tailscale-archive-keyring.gpg] https://repo.example/stable/debian bookworm main");
    expect(sourcesLine(repo({ suite: "noble", keyring: { base64: "", armored: true } }), "bookworm")).toBe("deb [signed-by=/usr/share/keyrings/tailscale-archive-keyring.asc] https://repo.example/stable/debian noble main");
  });

  it("the pin holds the package at the fleet's version", () => {
    expect(pinText(repo())).toBe("# meshfleet: tailscale stays at the fleet's tailscaleVersion (hosts/home/vps.yaml: tailscale.apt)\nPackage: tailscale\nPin: version 1.98.10\nPin-Priority: 1001\n");
  });

  it("the script writes keyring, source and pin, refreshes this source alone, and installs the pinned version; without install it only writes", () => {
    const s = repositoryScript(repo(), "bookworm", { install: true });
    expect(s).toContain(`printf %s ${BINARY_KEY.toString("base64")} | base64 -d > /usr/share/keyrings/tailscale-archive-keyring.gpg.new && mv /usr/share/keyrings/tailscale-archive-keyring.gpg.new /usr/share/keyrings/tailscale-archive-keyring.gpg`);
    expect(s).toContain("rm -f /usr/share/keyrings/tailscale-archive-keyring.asc");
    expect(s).toContain("'deb [signed-by=/usr/share/keyrings/tailscale-archive-keyring.gpg] https://repo.example/stable/debian bookworm main' > /etc/apt/sources.list.d/tailscale.list");
    expect(s).toContain("-o Dir::Etc::sourcelist=/etc/apt/sources.list.d/tailscale.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 update");
    expect(s).toContain("install -y -q --no-install-recommends --allow-downgrades tailscale=1.98.10");
    expect(s).toContain(`exit ${REPO_EXIT.update}`);
    expect(s).toContain(`exit ${REPO_EXIT.noVersion}`);
    const w = repositoryScript(repo(), "bookworm", { install: false });
    expect(w).toContain("/etc/apt/preferences.d/tailscale");
    expect(w).not.toContain("apt-get");
  });
});

describe("the probe, run for real on this machine", () => {
  it("reads a repository package's installed Debian version, and none for one not installed", () => {
    const s = { ...spec(repo({ package: "dpkg" })), repositories: [repo({ package: "dpkg" }), repo({ name: "other", package: "meshfleet-no-such-package" })] };
    const r = spawnSync("sh", ["-c", probeScript(s)], { encoding: "utf8" });
    expect(r.status).toBe(0);
    const own = spawnSync("dpkg-query", ["-W", "-f=${Version}", "dpkg"], { encoding: "utf8" }).stdout;
    expect(own).toMatch(/^\d/);
    expect(parseProbe(r.stdout).debVersions).toEqual({ dpkg: own, "meshfleet-no-such-package": "" });
  });
});

describe("removal, run for real on a copy of the host's folders", () => {
  it("removes the pin, source and keyring meshfleet wrote, and never a file without its marker", () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "mf-ts-apt-rm-"));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const script = repositoryScript(repo(), "bookworm", { install: false }).replaceAll("/usr/share/", `${root}/usr/share/`).replaceAll("/etc/apt/", `${root}/etc/apt/`);
    expect(spawnSync("sh", ["-c", script]).status).toBe(0);
    const files = ["etc/apt/preferences.d/tailscale", "etc/apt/sources.list.d/tailscale.list", "usr/share/keyrings/tailscale-archive-keyring.gpg"].map((f) => path.join(root, f));
    expect(files.map((f) => existsSync(f))).toEqual([true, true, true]);
    expect(readFileSync(files[1]!, "utf8")).toBe(`# meshfleet: hosts/home/vps.yaml: tailscale.apt\n${sourcesLine(repo(), "bookworm").replace("/usr/share/", `${root}/usr/share/`)}\n`);
    const removal = repositoryRemovalScript(repo()).replaceAll("/usr/share/", `${root}/usr/share/`).replaceAll("/etc/apt/", `${root}/etc/apt/`);
    // A source the user wrote by hand (no marker) stays, and so does its keyring.
    writeFileSync(files[1]!, `${sourcesLine(repo(), "bookworm")}\n`);
    expect(spawnSync("sh", ["-c", removal]).status).toBe(0);
    expect(files.map((f) => existsSync(f))).toEqual([false, true, true]);
    writeFileSync(files[1]!, `# meshfleet: x\n${sourcesLine(repo(), "bookworm")}\n`);
    expect(spawnSync("sh", ["-c", removal]).status).toBe(0);
    expect(files.map((f) => existsSync(f))).toEqual([false, false, false]);
  });
});

describe("a repository apt cannot read, run for real with apt-get standing in", () => {
  it("exits REPO_EXIT.update and takes out what it wrote: a source apt cannot read would break every later apt-get update", () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "mf-ts-apt-bad-"));
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(path.join(root, "bin"));
    // apt-get update reports a bad signature the way it does: exit 0 with a W: line.
    writeFileSync(path.join(root, "bin", "apt-get"), "#!/bin/sh\necho 'W: GPG error: file:/srv/x bookworm InRelease: NO_PUBKEY 0123'\nexit 0\n");
    chmodSync(path.join(root, "bin", "apt-get"), 0o755);
    const script = repositoryScript(repo(), "bookworm", { install: true })
      .replaceAll("/usr/share/", `${root}/usr/share/`)
      .replaceAll("/etc/apt/", `${root}/etc/apt/`)
      .replaceAll("/tmp/meshfleet-apt-", `${root}/apt-`)
      .replace("PATH=", `PATH=${root}/bin:`);
    const r = spawnSync("sh", ["-c", script], { encoding: "utf8" });
    expect(r.status).toBe(REPO_EXIT.update);
    expect(r.stderr).toContain("NO_PUBKEY");
    const files = ["etc/apt/preferences.d/tailscale", "etc/apt/sources.list.d/tailscale.list", "usr/share/keyrings/tailscale-archive-keyring.gpg"].map((f) => path.join(root, f));
    expect(files.map((f) => existsSync(f))).toEqual([false, false, false]);
  });
});

describe("decisions", () => {
  it("missing or at another release: installed from the repository, not refused; at the pinned release: nothing", () => {
    expect(decide(spec(), facts(null))).toMatchObject({ refusals: [], warnings: [], repositories: [repo()] });
    expect(decide(spec(), facts("1.96.2"))).toMatchObject({ refusals: [], warnings: [], repositories: [repo()] });
    expect(decide(spec(), facts("1.98.10\n"))).toMatchObject({ refusals: [], warnings: [], repositories: [] });
    // The binary says the release but the package is another build (or none): installed from the repository.
    expect(decide(spec(), { ...facts("1.98.10"), debVersions: { tailscale: "1.98.9" } }).repositories).toEqual([repo()]);
    expect(decide(spec(), { ...facts("1.98.10"), debVersions: { tailscale: "" } }).repositories).toEqual([repo()]);
    expect(decide(spec(), { ...facts("1.98.10"), debVersions: { tailscale: "1.98.10" } }).repositories).toEqual([]);
  });

  it("no codename and no suite set is refused with the fix", () => {
    expect(decide(spec(), facts(null, "")).refusals).toEqual([
      "host vps: hosts/home/vps.yaml: tailscale.apt: expected the host's release codename for the repository's suite, found no VERSION_CODENAME in /etc/os-release. Fix: set tailscale.apt.suite to the suite the repository uses for this release (e.g. bookworm)",
    ]);
    expect(decide(spec(repo({ suite: "bookworm" })), facts(null, "")).refusals).toEqual([]);
  });

  it("after the install the binary must report the pinned release", () => {
    expect(pinnedAfterInstall(spec(), facts("1.98.10"))).toEqual([]);
    expect(pinnedAfterInstall(spec(), facts("1.98.9"))).toEqual([
      "host vps: hosts/home/vps.yaml: tailscale.apt: installed tailscale=1.98.10, expected /usr/bin/tailscale to report 1.98.10 (tailscaleVersion), found 1.98.9. Fix: the repository's tailscale 1.98.10 holds another build: check tailscale.apt.url, or set tailscaleVersion to the release it ships",
    ]);
    expect(pinnedAfterInstall(spec(), facts(null))[0]).toContain("found no file there");
    expect(pinnedAfterInstall(spec(), { ...facts("1.98.10"), debVersions: { tailscale: "1.98.9" } })).toEqual([
      "host vps: hosts/home/vps.yaml: tailscale.apt: installed tailscale=1.98.10, expected dpkg to list tailscale 1.98.10 (tailscaleVersion), found 1.98.9. Fix: see /tmp/meshfleet-apt-tailscale.log on vps; a hold (apt-mark showhold) or another pin in /etc/apt/preferences.d can keep another version",
    ]);
  });
});

describe("refusal messages", () => {
  it("a bad signature or unreachable repository names the option, what apt said and the fix", () => {
    expect(repositoryFailure("vps", repo(), "bookworm", REPO_EXIT.update, "E: The repository 'x bookworm InRelease' is not signed.\n")).toBe(
      "host vps: hosts/home/vps.yaml: tailscale.apt: apt could not read the repository https://repo.example/stable/debian bookworm main: expected its lists signed by the key in tailscale.apt.keyring, found:\nE: The repository 'x bookworm InRelease' is not signed.\nFix: if apt says NO_PUBKEY or BADSIG, the keyring is not the repository's signing key: fetch it again from the repository (its <codename>.noarmor.gpg) and check its fingerprint; otherwise check tailscale.apt.url, tailscale.apt.suite and that vps reaches the repository. Nothing was installed, and the source, pin and keyring were taken out again (a source apt cannot read breaks every apt-get update on the host).",
    );
  });

  it("a version the repository lacks names what it offers, and the fix", () => {
    expect(repositoryFailure("vps", repo(), "bookworm", REPO_EXIT.noVersion, "versions:\n1.98.12 1.98.11 ")).toBe(
      "host vps: hosts/home/vps.yaml: tailscale.apt: expected https://repo.example/stable/debian bookworm main to offer tailscale 1.98.10 (tailscaleVersion), found only 1.98.12, 1.98.11. Fix: set tailscaleVersion in fleet.yaml to a version the repository offers, or point tailscale.apt.url at a repository that has 1.98.10. Nothing was installed.",
    );
    expect(repositoryFailure("vps", repo(), "bookworm", REPO_EXIT.noVersion, "versions:\n")).toContain("found no tailscale package there");
  });

  it("another install failure points at the log", () => {
    expect(repositoryFailure("vps", repo(), "bookworm", REPO_EXIT.install, "E: dpkg was interrupted")).toMatch(/^host vps: hosts\/home\/vps\.yaml: tailscale\.apt: apt-get install tailscale=1\.98\.10 from .* failed \(exit 22\):\nE: dpkg was interrupted\nFix: see \/tmp\/meshfleet-apt-tailscale\.log on vps/);
  });
});

describe("the resource", () => {
  const n = {
    host: "vps",
    connection: { name: "vps", host: "127.0.0.1", port: 22, user: "root", hostKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"] },
    spec: spec(),
  };
  const probeOut = (ts: string) => `os\tdebian\t\t12\tbookworm\napt\tyes\nnode\tv18.19.0\nbin\t/usr/bin/tailscale\t${ts}\n`;

  it("diff: tailscale missing is an update; update sets up the repository, installs, and checks the version after", async () => {
    let ts = "";
    const seen: string[] = [];
    vi.spyOn(session, "run").mockImplementation(async (_c, script) => {
      if (script.includes("sources.list.d")) {
        seen.push(script.includes("tailscale=1.98.10") ? "repo+install" : "repo");
        ts = "1.98.10";
        return { code: 0, stdout: "", stderr: "" } as RunResult;
      }
      seen.push("probe");
      return { code: 0, stdout: probeOut(ts), stderr: "" } as RunResult;
    });
    expect(await prerequisites.diff({ ...n, installed: [] }, n)).toMatchObject({ changes: true, detailedDiff: { installed: "update" } });
    seen.length = 0;
    expect(await prerequisites.update!("vps", { ...n, installed: [] }, n)).toMatchObject({ installed: ["tailscale=1.98.10"] });
    expect(seen).toEqual(["probe", "repo+install", "probe"]);
    // At the version: the files are written again (a new keyring lands), apt is not run.
    seen.length = 0;
    expect(await prerequisites.update!("vps", { ...n, installed: [] }, n)).toMatchObject({ installed: [] });
    expect(seen).toEqual(["probe", "repo"]);
    // tailscale.apt turned off: the repository's files go, then the usual probe.
    seen.length = 0;
    const off = { ...n, spec: { ...n.spec, repositories: undefined, binaries: n.spec.binaries.map(({ repository: _, ...b }) => b) } };
    vi.restoreAllMocks();
    vi.spyOn(session, "run").mockImplementation(async (_c, script) => {
      seen.push(script.includes("grep -q '^# meshfleet: '") ? "remove" : "probe");
      return { code: 0, stdout: probeOut("1.98.10"), stderr: "" } as RunResult;
    });
    await prerequisites.update!("vps", { ...n, installed: [] }, off);
    expect(seen).toEqual(["remove", "probe"]);
  });

  it("a failed repository step and a binary at another release after the install fail the update, naming the host", async () => {
    vi.spyOn(session, "run").mockImplementation(async (_c, script) =>
      (script.includes("sources.list.d") ? { code: REPO_EXIT.update, stdout: "", stderr: "W: GPG error: NO_PUBKEY 0123" } : { code: 0, stdout: probeOut(""), stderr: "" }) as RunResult,
    );
    await expect(prerequisites.update!("vps", { ...n, installed: [] }, n)).rejects.toThrow(/host vps: .*tailscale\.apt: apt could not read the repository[\s\S]*NO_PUBKEY 0123[\s\S]*No host's generation was switched\./);
    vi.restoreAllMocks();
    vi.spyOn(session, "run").mockImplementation(async (_c, script) =>
      ({ code: 0, stdout: script.includes("sources.list.d") ? "" : probeOut("1.98.9"), stderr: "" }) as RunResult,
    );
    await expect(prerequisites.update!("vps", { ...n, installed: [] }, n)).rejects.toThrow(/installed tailscale=1\.98\.10, expected \/usr\/bin\/tailscale to report 1\.98\.10 \(tailscaleVersion\), found 1\.98\.9/);
  });
});
