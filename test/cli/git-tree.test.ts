/**
 * The git tree source (cli/git-tree.ts) against the same commit extracted
 * with git archive, on seeded random trees: files, folders and symbolic
 * links (relative ones with `.` and `..`, through linked folders, chains,
 * loops, dangling ones, absolute ones to a folder outside). For every path
 * of every tree, and paths under each, lstat, stat, realpath, readdir and
 * the O_NOFOLLOW read answer as the disk does, down to the error code.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GitTreeSource, listTree, readBlobs } from "../../cli/git-tree.ts";
import { diskSource, type FileSource } from "../../core/load.ts";

const TREES = 40;
const NAMES = ["a", "b.yaml", "c", "d.yaml"];

/** mulberry32: a small seeded generator, so a failure can be made again. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let work: string;
let repo: string;
let extracted: string;
let outside: string;
const mount = () => path.join(tmpdir(), "meshfleet-git-tree-mounted");
const made: string[] = [];

/** A random tree under `dir`, `depth` folders below the tree's own folder; every path made is recorded. */
function grow(random: () => number, dir: string, rel: string, depth: number) {
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
  for (const name of NAMES) {
    const r = random();
    const full = path.join(dir, name);
    const p = `${rel}/${name}`;
    if (r < 0.3) writeFileSync(full, `v: ${Math.floor(random() * 1000)}\n`.repeat(1 + Math.floor(random() * 3)));
    else if (r < 0.5 && depth < 3) {
      mkdirSync(full);
      grow(random, full, p, depth + 1);
    } else if (r < 0.85) {
      // Never more `..` than lead back to the repository's top: what lies above differs between the two roots.
      const parts = Array.from({ length: 1 + Math.floor(random() * 4) }, () => (random() < 0.35 ? ".." : random() < 0.1 ? "." : pick(NAMES)));
      let up = 0;
      const target = parts.filter((x) => (x === ".." ? ++up <= depth + 1 : true)).join("/");
      symlinkSync(random() < 0.1 ? path.join(outside, pick(["f.yaml", "dir", "none"])) : target || ".", full);
    } else continue;
    made.push(p);
  }
}

beforeAll(() => {
  work = mkdtempSync(path.join(tmpdir(), "meshfleet-git-tree-"));
  repo = path.join(work, "repo");
  outside = path.join(work, "outside");
  mkdirSync(path.join(outside, "dir"), { recursive: true });
  writeFileSync(path.join(outside, "f.yaml"), "outside: true\n");
  writeFileSync(path.join(outside, "dir", "g.yaml"), "outside: true\n");
  for (let t = 0; t < TREES; t++) {
    const dir = path.join(repo, "trees", `t${t}`);
    mkdirSync(dir, { recursive: true });
    made.push(`trees/t${t}`);
    grow(rng(t + 1), dir, `trees/t${t}`, 0);
  }
  const git = (...a: string[]) => execFileSync("git", a, { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "trees");
  // Extracted beside the mount's depth (both directly under the temporary folder).
  extracted = mkdtempSync(path.join(tmpdir(), "meshfleet-git-tree-x-"));
  execFileSync("tar", ["-x", "-C", extracted], { input: git("archive", "--format=tar", "HEAD", "--", "trees") });
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  rmSync(extracted, { recursive: true, force: true });
});

function answers(s: FileSource, root: string, p: string) {
  const full = path.join(root, p);
  const rel = (x: string) => (x === root || x.startsWith(root + path.sep) ? `<root>${x.slice(root.length)}` : x);
  const attempt = (f: () => unknown) => {
    try {
      return f();
    } catch (e) {
      return `error ${(e as NodeJS.ErrnoException).code}`;
    }
  };
  const kind = (x: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean; size: number }) =>
    x.isFile() ? `file ${x.size}` : x.isDirectory() ? "dir" : x.isSymbolicLink() ? `link ${x.size}` : "other";
  return {
    p,
    lstat: attempt(() => kind(s.lstat(full))),
    stat: attempt(() => kind(s.stat(full))),
    realpath: attempt(() => rel(s.realpath(full))),
    readdir: attempt(() => s.readdir(full).map((d) => `${d.name}${d.isFile() ? "" : "/"}`).sort()),
    read: attempt(() => {
      const b = s.readRegular(full, 64);
      return b === undefined ? "not a regular file of at most 64 bytes" : Buffer.from(b).toString("utf8");
    }),
  };
}

describe("git tree source: random trees against the extracted folder", () => {
  it(`${TREES} seeded trees: every path and the paths under it answer as on the disk`, () => {
    const entries = listTree(repo, "HEAD", ["trees"]);
    const tree = new GitTreeSource(mount(), entries, readBlobs(repo, "HEAD", entries));
    const paths = made.flatMap((p) => [p, `${p}/a`, `${p}/b.yaml`, `${p}/x/..`]);
    let links = 0;
    for (const p of paths) {
      const want = answers(diskSource, extracted, p);
      if (String(want.lstat).startsWith("link")) links++;
      expect(answers(tree, mount(), p)).toEqual(want);
    }
    // The trees hold what they are meant to: links of every kind, loops and dangling ones among them.
    expect(links).toBeGreaterThan(50);
    const realpaths = paths.map((p) => String(answers(diskSource, extracted, p).realpath));
    for (const code of ["ENOENT", "ELOOP", "ENOTDIR"]) expect(realpaths.some((r) => r === `error ${code}`), code).toBe(true);
    expect(realpaths.some((r) => r.startsWith(outside))).toBe(true);
    // And paths where node's realpath (the loader's) and the kernel's differ: a `..` after a link to a folder.
    const real = (f: (p: string) => string, p: string) => {
      try {
        return f(path.join(extracted, p));
      } catch (e) {
        return (e as NodeJS.ErrnoException).code;
      }
    };
    expect(paths.filter((p) => real(realpathSync, p) !== real(realpathSync.native, p)).length).toBeGreaterThan(0);
  });
});

describe("git tree source: what it refuses, and git's failures", () => {
  const oid = () => listTree(repo, "HEAD", ["trees"]).find((e) => e.type === "blob")!.oid;
  const blob = (p: string) => ({ mode: "100644", type: "blob" as const, oid: oid(), path: p });

  it("fault: paths with an empty, \".\" or \"..\" part, or listed twice, are refused (path.join would make them other entries)", () => {
    const blobs = readBlobs(repo, "HEAD", [blob("x")]);
    for (const bad of ["trees/..", "trees/./x.yaml", "trees//x.yaml", "trees/a/../x.yaml", ""])
      expect(() => new GitTreeSource(mount(), [blob("trees/x.yaml"), blob(bad)], blobs, "HEAD"), bad).toThrow(`--base HEAD: the revision's tree holds the path ${JSON.stringify(bad)}, with an empty, "." or ".." part`);
    const twice = [{ ...blob("trees"), type: "tree" as const }, blob("trees/x.yaml"), blob("trees/x.yaml")];
    expect(() => new GitTreeSource(mount(), twice, blobs)).toThrow(`the revision's tree holds the path "trees/x.yaml", listed twice`);
    // A folder listed after an entry inside it made it is the same folder, not a second one.
    const tree = new GitTreeSource(mount(), [blob("trees/x.yaml"), { ...blob("trees"), type: "tree" }], blobs);
    expect(tree.readdir(path.join(mount(), "trees")).map((d) => d.name)).toEqual(["x.yaml"]);
  });

  it("fault: more bytes than plan reads at once, and git that does not start: errors that name the revision and what to do", () => {
    const entries = listTree(repo, "HEAD", ["trees"]);
    // Sized by the listing: refused before git sends a byte, naming the largest files.
    expect(entries.filter((e) => e.type === "blob").every((e) => Number.isInteger(e.size) && e.size! > 0)).toBe(true);
    const largest = entries.filter((e) => e.type === "blob").sort((a, b) => b.size! - a.size!)[0];
    expect(() => readBlobs(repo, "HEAD~0", entries, 64)).toThrow(
      new RegExp(`^--base HEAD~0: the files plan reads at that revision \\(the fleet's folder, with its sibling site folders for a fleet with sites\\) pass 64 bytes together, more than it reads at once \\(\\d+ bytes with git's headers; the largest: [^:]+: ${largest.size} bytes, .*\\); move what is not the fleet's \\(large files, archives, images\\) out of those folders$`),
    );
    // At the boundary: exactly what git sends is read, a byte less is refused before git runs.
    const wanted = [...new Set(entries.filter((e) => e.type === "blob").map((e) => e.oid))];
    const exact = execFileSync("git", ["cat-file", "--batch"], { cwd: repo, input: wanted.join("\n") + "\n", maxBuffer: 1 << 26 }).length;
    expect(readBlobs(repo, "HEAD", entries, exact).size).toBe(wanted.length);
    expect(() => readBlobs(repo, "HEAD", entries, exact - 1)).toThrow(`more than it reads at once (${exact} bytes with git's headers; the largest: `);
    // Not sized (entries made by hand): git's own limit says it.
    expect(() => readBlobs(repo, "HEAD~0", entries.map(({ size: _, ...e }) => e), 64)).toThrow(
      "--base HEAD~0: the files plan reads at that revision (the fleet's folder, with its sibling site folders for a fleet with sites) pass 64 bytes together, more than it reads at once (git cat-file: ENOBUFS); move what is not the fleet's (large files, archives, images) out of those folders",
    );
    expect(readBlobs(repo, "HEAD", entries).size).toBeGreaterThan(0);
    expect(() => readBlobs(path.join(work, "no-such-folder"), "HEAD", entries)).toThrow(/^--base HEAD: git could not read the fleet's files at that revision \(git cat-file: ENOENT\); check that git runs \(git --version\) and the repository \(git fsck\)$/);
  });
});
