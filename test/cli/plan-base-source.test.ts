/**
 * `meshfleet plan` reads its base revision from git objects in memory
 * (cli/git-tree.ts, mounted as the loader's file source) instead of
 * extracting it with `git archive`. Held to the extracted path
 * (MESHFLEET_PLAN_BASE=archive) on a temp repository: a fleet with imports,
 * a subfolder, symbolic links (a host, an import, a link out of the folder,
 * a loop), and sites read with their sibling folders: the same output, byte
 * for byte, the base's diagnostics too (their temporary folder aside). The
 * tree source itself is held to the disk on every path of an extracted copy,
 * and a source that follows links where the disk does not is caught.
 * Each run is held to the reader it should use (plan counts the bases each
 * reads, and says why it extracts one), under a git configuration of the
 * test's own: the settings and attributes files that make git archive
 * write CRLF line ends send plan to git archive, and those that do not
 * (autocrlf input, a diff attribute) leave it in memory.
 * Faults: a revision that does not exist, a blob missing from the
 * repository, links out of the folder at the base, a reader that never
 * runs, a tree entry named "..".
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { BASE_NOTE, BASE_READER_ENV, baseReads, command } from "../../cli/commands/plan.ts";
import { GitTreeSource, listTree, readBlobs } from "../../cli/git-tree.ts";
import { diskSource, loadFleetDir, mountFileSource, type FileSource } from "../../core/load.ts";

let repo: string;
let first: string;
let outside: string;
const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8" }).trim();
const commit = (msg: string) => {
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", msg);
};
const at = (...p: string[]) => path.join(repo, "hosts", ...p);
const write = (file: string, text: string) => {
  mkdirSync(path.dirname(at(file)), { recursive: true });
  writeFileSync(at(file), text);
};
const link = (file: string, target: string) => symlinkSync(target, at(file));

type Run = { code: number | string; out: string; err: string };

/**
 * The tests' git and the plans under test read no configuration or
 * attributes of the machine's (a global core.autocrlf true would send every
 * plan to git archive, and the two readers would never be compared): an
 * empty global file of the test's own, no system file, the test's own
 * XDG_CONFIG_HOME. Every run also says which reader ran (`same`).
 */
const ISOLATED = ["GIT_CONFIG_GLOBAL", "GIT_CONFIG_NOSYSTEM", "GIT_ATTR_NOSYSTEM", "XDG_CONFIG_HOME"] as const;
const savedEnv = Object.fromEntries(ISOLATED.map((k) => [k, process.env[k]]));
let gitEnv: string;
const globalConfig = () => path.join(gitEnv, "gitconfig");
const userAttributes = () => path.join(gitEnv, "xdg", "git", "attributes");
beforeAll(() => {
  gitEnv = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-gitenv-"));
  writeFileSync(globalConfig(), "");
  mkdirSync(path.join(gitEnv, "xdg", "git"), { recursive: true });
  Object.assign(process.env, { GIT_CONFIG_GLOBAL: globalConfig(), GIT_CONFIG_NOSYSTEM: "1", GIT_ATTR_NOSYSTEM: "1", XDG_CONFIG_HOME: path.join(gitEnv, "xdg") });
});
afterAll(() => {
  for (const k of ISOLATED) if (savedEnv[k] === undefined) delete process.env[k];
  else process.env[k] = savedEnv[k];
  rmSync(gitEnv, { recursive: true, force: true });
});

/** One plan, the base read `how`: its exit code (or the message it throws), stdout and stderr. */
async function plan(stack: string, how: "memory" | "archive", json: boolean, base = "HEAD", dir = at(stack)): Promise<Run> {
  let out = "";
  let err = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void (err += a.join(" ") + "\n"));
  const was = process.env[BASE_READER_ENV];
  if (how === "archive") process.env[BASE_READER_ENV] = "archive";
  else delete process.env[BASE_READER_ENV];
  try {
    const code = await command.run(["--base", base, "--hosts-dir", dir, "--stack", stack, ...(json ? ["--json"] : [])]).catch((x: Error) => `throws: ${x.message}`);
    // Each side names the base's files under its own temporary folder.
    const norm = (s: string) => s.replace(/meshfleet-plan-[A-Za-z0-9]+/g, "meshfleet-plan-TMP");
    return { code: typeof code === "string" ? norm(code) : code, out: norm(out), err: norm(err) };
  } finally {
    if (was === undefined) delete process.env[BASE_READER_ENV];
    else process.env[BASE_READER_ENV] = was;
    o.mockRestore();
    e.mockRestore();
  }
}

/**
 * Both readers on every stack, Markdown and JSON: the same runs. The run
 * left to choose its reader reads the base in memory (plan's count of the
 * bases each reader read says so), or, with `extracted`, extracts it and
 * says why (plan's note on stderr, left out of the comparison); `noBase`:
 * neither reads one (no such revision, or no such folder at it). A reader
 * that never runs, silently or not, fails here.
 */
async function same(stacks: string[], { base = "HEAD", dir, extracted, noBase = false }: { base?: string; dir?: string; extracted?: RegExp; noBase?: boolean } = {}): Promise<Run[]> {
  const runs: Run[] = [];
  for (const stack of stacks)
    for (const json of [false, true]) {
      const before = { ...baseReads };
      const memory = await plan(stack, "memory", json, base, dir);
      expect({ memory: baseReads.memory - before.memory, archive: baseReads.archive - before.archive }).toEqual(noBase ? { memory: 0, archive: 0 } : extracted ? { memory: 0, archive: 1 } : { memory: 1, archive: 0 });
      const lines = memory.err.split("\n");
      const notes = lines.filter((l) => l.startsWith(BASE_NOTE));
      expect(notes).toEqual(extracted ? [expect.stringMatching(extracted)] : []);
      memory.err = lines.filter((l) => !l.startsWith(BASE_NOTE)).join("\n");
      expect(memory).toEqual(await plan(stack, "archive", json, base, dir));
      runs.push(memory);
    }
  return runs;
}

beforeAll(() => {
  repo = first = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-source-"));
  outside = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-outside-"));
  writeFileSync(path.join(outside, "stolen.yaml"), "address: 10.9.9.9\n# not to be read\n");
  for (const s of ["home", "core", "home-site", "office"]) cpSync(path.resolve("hosts", s), at(s), { recursive: true });
  // Imports from a subfolder, directly and through a link; a host that is a link; a link to a folder.
  write("home/shared/common.yaml", "tailscale:\n  user: alice\n  acceptRoutes: true\n");
  write("home/desk.yaml", "imports: [client, ./shared/common.yaml]\naddress: 192.168.8.51\n");
  link("home/_common.yaml", "shared/common.yaml");
  write("home/tablet.yaml", "imports: [client, ./_common.yaml]\naddress: 192.168.8.52\n");
  write("home/shared/mini.yaml", "imports: [client]\naddress: 192.168.8.53\ntailscale:\n  user: alice\n");
  link("home/mini.yaml", "shared/mini.yaml");
  link("home/_linked", "shared");
  write("home/via-folder.yaml", "imports: [client, ./_linked/common.yaml]\naddress: 192.168.8.54\n");
  write("home/README.md", "not a host\n");
  // A site's import from its own subfolder.
  write("office/parts/_desk.yaml", "tailscale:\n  acceptRoutes: true\n");
  writeFileSync(at("office", "desk.yaml"), readFileSync(at("office", "desk.yaml"), "utf8").replace("imports: [", "imports: [./parts/_desk.yaml, "));
  git("init", "-q", "-b", "main");
  commit("fleet with imports, links and sites");
});
afterAll(() => {
  rmSync(first, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

describe("plan's base from git objects, held to git archive", () => {
  it("no change: the same output from every stack", async () => {
    const runs = await same(["home", "core", "home-site", "office"]);
    for (const r of runs) expect(r.err).toBe("");
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("a change through an imported file, a linked host and the core's policy: the same output, and the change shows", async () => {
    write("home/shared/common.yaml", "tailscale:\n  user: alice\n  acceptRoutes: false\n");
    write("home/shared/mini.yaml", "imports: [client]\naddress: 192.168.8.55\ntailscale:\n  user: alice\n");
    writeFileSync(at("core", "fleet.yaml"), readFileSync(at("core", "fleet.yaml"), "utf8").replace('"192.168.8.10:445"]', '"192.168.8.10:445", "192.168.8.10:22"]'));
    const runs = await same(["home", "core", "office"]);
    expect(runs.map((r) => r.err).join("")).toBe("");
    const [homeMd, , , coreJson] = runs.map((r) => r.out);
    expect(homeMd).toContain("desk");
    expect(homeMd).toContain("tablet");
    expect(homeMd).toContain("via-folder");
    expect(JSON.parse(coreJson).policyChanged).toBe(true);
    commit("the change");
  });

  it("a fleet folder that did not exist at the base: an empty base on both paths", async () => {
    cpSync(at("home"), at("new"), { recursive: true, verbatimSymlinks: true });
    const [md] = await same(["new"], { noBase: true });
    expect(md.err).toBe("");
    expect(md.code).toBe(0);
    expect(md.out).toContain("vps");
    rmSync(at("new"), { recursive: true });
  });

  it("fault: links out of the folder at the base are refused on both paths, and never read", async () => {
    link("home/stolen.yaml", path.join(outside, "stolen.yaml"));
    link("home/escape.yaml", "../../../../../../../../../.." + path.join(outside, "stolen.yaml"));
    link("home/gone.yaml", "../core/fleet.yaml"); // a sibling the base's folder alone does not hold
    link("home/loop.yaml", "loop.yaml");
    link("office/far.yaml", "../home-site/laptop.yaml"); // a sibling's file, read when the siblings are
    commit("links out");
    for (const f of ["home/stolen.yaml", "home/escape.yaml", "home/gone.yaml", "home/loop.yaml", "office/far.yaml"]) unlinkSync(at(f));
    const [md] = await same(["home"]);
    expect(md.code).toBe(1);
    expect(md.err).toContain("stolen.yaml: expected a host file inside the hosts folder, found a symbolic link to a file outside the hosts folder (it was not read)");
    expect(md.err).toContain("escape.yaml: expected a host file inside the hosts folder, found a symbolic link to a file outside the hosts folder");
    expect(md.err).toContain("gone.yaml: expected a host file inside the hosts folder, found a symbolic link to a file that does not exist");
    expect(md.err).toContain("loop.yaml: expected a host file inside the hosts folder, found a symbolic link that loops");
    expect(md.err).toMatch(/HEAD:\S*meshfleet-plan-TMP\/hosts\/home\/stolen\.yaml/);
    expect(md.err).not.toContain("10.9.9.9");
    // From the core, the office is read with its siblings: its link reaches a file that exists, outside its folder.
    const [core] = await same(["core"]);
    expect(core.code).toBe(1);
    expect(core.err).toContain("far.yaml: expected a host file inside the hosts folder, found a symbolic link to a file outside the hosts folder");
    commit("links removed");
  });

  it("fault: a revision that does not exist", async () => {
    const [md] = await same(["home"], { base: "no-such-ref", noBase: true });
    expect(md.code).toMatch(/^throws: --base no-such-ref: not a git revision of this repository/);
  });
});

describe("the git tree source answers as the extracted folder does", () => {
  const ops = (s: FileSource, p: string, root: string) => {
    const rel = (x: string) => (x.startsWith(root) ? `<root>${x.slice(root.length)}` : x);
    const tryOp = (f: () => unknown) => {
      try {
        return f();
      } catch (e) {
        return `error ${(e as NodeJS.ErrnoException).code}`;
      }
    };
    const st = (x: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; size: number }) => `${x.isFile() ? "file" : x.isDirectory() ? "dir" : x.isSymbolicLink() ? "link" : "other"}${x.isFile() || x.isSymbolicLink() ? ` ${x.size}` : ""}`;
    return {
      lstat: tryOp(() => st(s.lstat(p))),
      stat: tryOp(() => st(s.stat(p))),
      realpath: tryOp(() => rel(s.realpath(p))),
      readdir: tryOp(() => s.readdir(p).map((d) => `${d.name}${d.isFile() ? "" : "/"}`).sort()),
      read: tryOp(() => { const b = s.readRegular(p, 16 * 1024); return b === undefined ? "not a regular file" : Buffer.from(b).toString("utf8"); }),
    };
  };

  let extracted: string;
  let mount: string;
  let tree: GitTreeSource;
  const paths = [
    "", "hosts", "hosts/home", "hosts/home/desk.yaml", "hosts/home/_common.yaml", "hosts/home/mini.yaml", "hosts/home/_linked", "hosts/home/_linked/common.yaml",
    "hosts/home/shared", "hosts/home/stolen.yaml", "hosts/home/escape.yaml", "hosts/home/gone.yaml", "hosts/home/loop.yaml", "hosts/home/loop.yaml/x",
    "hosts/home/desk.yaml/x", "hosts/home/nothing.yaml", "hosts/home/_linked/../fleet.yaml", "hosts/home/../core/fleet.yaml", "hosts/core/vps.yaml",
    // `..` after a link is taken from where the link leads, not from the path's text.
    "hosts/home/_via.yaml", "hosts/home/_chain.yaml", "hosts/home/_deep", "hosts/home/_deep/x.yaml", "hosts/home/_out", "hosts/home/_out/stolen.yaml", "hosts/home/_dangling",
  ];

  beforeAll(() => {
    link("home/stolen.yaml", path.join(outside, "stolen.yaml"));
    link("home/escape.yaml", "../../../../../../../../../.." + path.join(outside, "stolen.yaml"));
    link("home/gone.yaml", "../core/fleet.yaml");
    link("home/loop.yaml", "loop.yaml");
    write("home/shared/sub/x.yaml", "x: 1\n");
    link("home/_deep", "shared/sub");
    link("home/_via.yaml", "_deep/../common.yaml");
    link("home/_chain.yaml", "_common.yaml");
    link("home/_out", outside);
    link("home/_dangling", "nowhere/else");
    commit("links for the source test");
    const top = git("rev-parse", "--show-toplevel");
    extracted = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-extracted-"));
    execFileSync("tar", ["-x", "-C", extracted], { input: execFileSync("git", ["archive", "--format=tar", "HEAD", "--", "hosts/home"], { cwd: top }) });
    const entries = listTree(top, "HEAD", ["hosts/home"]);
    mount = path.join(tmpdir(), "meshfleet-plan-mounted-test");
    tree = new GitTreeSource(mount, entries, readBlobs(top, "HEAD", entries));
  });
  afterAll(() => rmSync(extracted, { recursive: true, force: true }));

  it("every kind of path: the same kind, size, real path, listing, bytes or error code", () => {
    for (const p of paths) expect({ p, ...ops(tree, path.join(mount, p), mount) }).toEqual({ p, ...ops(diskSource, path.join(extracted, p), extracted) });
  });

  it("the loader on the mounted tree: what it loads from the extracted folder; a source that follows links where the disk does not is caught", async () => {
    const norm = (x: unknown, root: string) => JSON.parse(JSON.stringify(x).replaceAll(root, "<root>"));
    const fromDisk = norm(await loadFleetDir(path.join(extracted, "hosts/home")), extracted);
    const mounted = async (s: FileSource) => {
      const unmount = mountFileSource(mount, s);
      try {
        return norm(await loadFleetDir(path.join(mount, "hosts/home")), mount);
      } finally {
        unmount();
      }
    };
    expect(fromDisk.diagnostics.length).toBeGreaterThan(0);
    expect(await mounted(tree)).toEqual(fromDisk);
    // Fault injected: lstat that follows links (a link out of the folder then reads as a file inside it).
    const follows: FileSource = { lstat: (p) => tree.stat(p), stat: (p) => tree.stat(p), realpath: (p) => tree.realpath(p), readdir: (p) => tree.readdir(p), readRegular: (p, n) => tree.readRegular(p, n) };
    expect(await mounted(follows)).not.toEqual(fromDisk);
  });

  it("fault: a blob missing from the repository is an error naming its file", async () => {
    const oid = git("rev-parse", "HEAD:hosts/home/desk.yaml");
    const gitDir = path.resolve(repo, git("rev-parse", "--git-dir"));
    const object = path.join(gitDir, "objects", oid.slice(0, 2), oid.slice(2));
    const saved = readFileSync(object);
    rmSync(object, { force: true });
    try {
      const r = await plan("home", "memory", true);
      expect(r.code).toBe(`throws: --base HEAD: git cannot read hosts/home/desk.yaml at that revision (object ${oid} is missing); fetch the revision again (git fetch), or check the repository (git fsck)`);
    } finally {
      writeFileSync(object, saved);
    }
  });
});

describe("where the base is extracted instead, and a fleet at the repository's top", () => {
  const repos: string[] = [];
  /** A fresh repository holding hosts/home, `change` made before its first commit. */
  const fresh = (change: () => void) => {
    repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-source-"));
    repos.push(repo);
    cpSync(path.resolve("hosts/home"), at("home"), { recursive: true });
    git("init", "-q", "-b", "main");
    change();
    commit("base");
  };
  afterAll(() => repos.forEach((r) => rmSync(r, { recursive: true, force: true })));

  it("a .ts host file at the base: extracted (node imports it from the disk), the same output", async () => {
    fresh(() => write("home/tablet.ts", 'export default { imports: ["client"], address: "192.168.8.56", tailscale: { user: "alice" } };\n'));
    write("home/tablet.ts", 'export default { imports: ["client"], address: "192.168.8.56", tailscale: { user: "alice", acceptRoutes: true } };\n');
    const [md, json] = await same(["home"], { extracted: /hosts\/home\/tablet\.ts is a TypeScript host file/ });
    expect(md.code).toBe(0);
    expect(JSON.parse(json.out).generations.map((g: { host: string }) => g.host)).toEqual(["tablet"]);
  });

  it("git attributes at the base (export-ignore): extracted, so the base is what git archive writes, the same output", async () => {
    fresh(() => {
      write("home/desk.yaml", "imports: [client]\naddress: 192.168.8.51\ntailscale:\n  user: alice\n");
      writeFileSync(path.join(repo, ".gitattributes"), "hosts/home/desk.yaml export-ignore\n");
    });
    const [md, json] = await same(["home"], { extracted: /\.gitattributes may change the files git archive writes/ });
    expect(md.code).toBe(0);
    // git archive leaves desk.yaml out of the base: it shows as new, as it did before the base was read in memory.
    expect(JSON.parse(json.out).hosts.added).toEqual(["desk"]);
  });

  // About 16,000 bytes in 1,000 lines: under 16 KiB with LF line ends, over it with CRLF.
  const big = `imports: [client]\naddress: 192.168.8.58\ntailscale:\n  user: alice\n${Array.from({ length: 1000 }, (_, i) => `# comment ${String(i).padStart(5, "0")}`).join("\n")}\n`;
  const refusedBig = /HEAD:\S*big\.yaml: expected a fleet file of at most 16 KiB/;
  /** Where git archive writes CRLF line ends, and where it does not: what plan reads, and the reader it says it used. */
  const settings: { name: string; set: () => void; extracted?: RegExp; crlf: boolean }[] = [
    { name: "core.autocrlf true", set: () => git("config", "core.autocrlf", "true"), extracted: /core\.autocrlf is "true"/, crlf: true },
    { name: "a bare core.autocrlf (true)", set: () => writeFileSync(path.join(repo, ".git", "config"), "[core]\n\tautocrlf\n", { flag: "a" }), extracted: /core\.autocrlf is set with no value/, crlf: true },
    { name: "core.autocrlf 2 (true)", set: () => git("config", "core.autocrlf", "2"), extracted: /core\.autocrlf is "2"/, crlf: true },
    { name: "core.autocrlf true in the user's configuration", set: () => writeFileSync(globalConfig(), "[core]\n\tautocrlf = yes\n"), extracted: /core\.autocrlf is "yes"/, crlf: true },
    { name: "core.autocrlf input (converts on add only)", set: () => git("config", "core.autocrlf", "input"), crlf: false },
    { name: "core.autocrlf true, then false", set: () => (git("config", "--add", "core.autocrlf", "true"), git("config", "--add", "core.autocrlf", "off")), crlf: false },
    { name: "eol=crlf in the user's attributes file", set: () => writeFileSync(userAttributes(), "*.yaml text eol=crlf\n"), extracted: /the attribute (text|eol) \((set|crlf)\) applies to hosts\/home\//, crlf: true },
    { name: "eol=crlf in core.attributesFile", set: () => (writeFileSync(path.join(gitEnv, "attrs"), "*.yaml eol=crlf\n"), git("config", "core.attributesFile", path.join(gitEnv, "attrs"))), extracted: /the attribute eol \(crlf\) applies/, crlf: true },
    { name: "eol=crlf in the repository's info/attributes", set: () => (mkdirSync(path.join(repo, ".git", "info"), { recursive: true }), writeFileSync(path.join(repo, ".git", "info", "attributes"), "hosts/home/big.yaml eol=crlf\n")), extracted: /the attribute eol \(crlf\) applies to hosts\/home\/big\.yaml/, crlf: true },
    { name: "a user's attributes file that rewrites nothing (diff only)", set: () => writeFileSync(userAttributes(), "*.yaml diff=yaml\n*.png binary\n"), crlf: false },
    { name: "attr.tree (newer git reads attributes from it)", set: () => git("config", "attr.tree", "HEAD"), extracted: /attr\.tree is set/, crlf: false },
  ];
  for (const c of settings)
    it(`${c.name}: ${c.extracted ? "extracted" : "read in memory"}, and the base is what git archive writes (${c.crlf ? "CRLF: a host file pushed past 16 KiB is refused" : "LF"})`, async () => {
      fresh(() => write("home/big.yaml", big));
      c.set();
      try {
        const [md] = await same(["home"], { extracted: c.extracted });
        expect(md.code).toBe(c.crlf ? 1 : 0);
        if (c.crlf) expect(md.err).toMatch(refusedBig);
        else expect(md.err).toBe("");
      } finally {
        writeFileSync(globalConfig(), "");
        rmSync(userAttributes(), { force: true });
      }
    });

  it("fault: a reader that never runs is caught: a user's core.autocrlf true sends plan to git archive, and `same` fails on the count and on the note", async () => {
    fresh(() => undefined);
    writeFileSync(globalConfig(), "[core]\n\tautocrlf = true\n");
    try {
      // The count fails first: it would tell a reader that falls back silently, with no note.
      await expect(same(["home"])).rejects.toThrow("expected { memory: +0, archive: 1 } to deeply equal { memory: 1, archive: +0 }");
      const before = baseReads.archive;
      await expect(same(["home"], { extracted: /core\.autocrlf is "true"/ })).resolves.toHaveLength(2);
      expect(baseReads.archive - before).toBe(4); // two runs left to choose, two told to extract
    } finally {
      writeFileSync(globalConfig(), "");
    }
    expect((await same(["home"]))[0].code).toBe(0);
  });

  it("fault: a tree entry named \"..\" (made by hand; git archive refuses it) is refused with a clear error, never aliased to the folder", async () => {
    fresh(() => undefined);
    const blob = git("rev-parse", "HEAD:hosts/home/vps.yaml");
    // git mktree takes the name "..", which git checkout and git archive refuse.
    const home = execFileSync("git", ["mktree"], { cwd: repo, input: `100644 blob ${blob}\t..\n100644 blob ${blob}\tvps.yaml\n`, encoding: "utf8" }).trim();
    const hosts = execFileSync("git", ["mktree"], { cwd: repo, input: `040000 tree ${home}\thome\n`, encoding: "utf8" }).trim();
    const root = execFileSync("git", ["mktree"], { cwd: repo, input: `040000 tree ${hosts}\thosts\n`, encoding: "utf8" }).trim();
    const crafted = git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit-tree", "-m", "crafted", root);
    const r = await plan("home", "memory", true, crafted);
    expect(r.code).toBe(`throws: --base ${crafted}: the revision's tree holds the path "hosts/home/..", with an empty, "." or ".." part, which git refuses to check out; the tree is damaged or made by hand: check it (git fsck), or compare with another revision`);
  });

  it("the fleet at the repository's top, no subfolder: the base is read (it used to be planned as an empty fleet)", async () => {
    repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-source-"));
    repos.push(repo);
    cpSync(path.resolve("hosts/home"), repo, { recursive: true });
    git("init", "-q", "-b", "main");
    commit("base");
    const [md, json] = await same(["top"], { dir: repo });
    expect(md.code).toBe(0);
    expect(JSON.parse(json.out).empty).toBe(true);
  });
});
