/**
 * A folder of a git revision read straight from git objects, held in memory
 * and served to the loader as a FileSource (core/load.ts): `git ls-tree`
 * lists it (paths, modes), one `git cat-file --batch` reads every blob.
 * `meshfleet plan` reads its base revision this way: at 10,000 hosts,
 * writing the files to a temporary folder (`git archive | tar -x`) and
 * reading them back cost 4-5 s of system CPU on ext4, more than evaluating
 * them (bench/plan-scale/README.md).
 *
 * The tree answers what the extracted folder would: a regular file (modes
 * 100644, 100755), a symbolic link (120000; its blob is the target, resolved
 * as the kernel would for stat, lstat, readdir and open, and as node's
 * fs.realpathSync does for realpath; a path that leaves the tree goes on on
 * the disk as it would from the extracted folder), a folder (a tree, or a
 * submodule, which git archive writes as an empty folder). Errors carry the
 * disk's codes (ENOENT, ENOTDIR, ELOOP), so the loader's checks and messages
 * are the same whichever source they read.
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { MeshfleetError } from "../core/index.ts";
import { diskSource, type FileSource, type FileStat } from "../core/load.ts";

/** One `git ls-tree` entry; `path` relative to the repository's top, with '/'. */
export interface GitEntry {
  mode: string;
  type: "blob" | "tree" | "commit";
  oid: string;
  path: string;
  /** A blob's size in bytes, as `git ls-tree -l` gives it. */
  size?: number;
}

const git = (top: string, args: string[], input?: string, env?: NodeJS.ProcessEnv, maxBuffer = 1 << 30) => execFileSync("git", args, { cwd: top, input, env, maxBuffer, stdio: ["pipe", "pipe", "pipe"] });
const stderrOf = (e: unknown) => String((e as { stderr?: Buffer }).stderr ?? "").trim().split("\n")[0];

/** Every entry of `ref` under `paths` (folders too, recursively): `git ls-tree -r -t -z`. */
export function listTree(top: string, ref: string, paths: string[]): GitEntry[] {
  let out: string;
  try {
    out = git(top, ["ls-tree", "-r", "-t", "-l", "-z", ref, "--", ...paths]).toString("utf8");
  } catch (e) {
    throw new MeshfleetError(`--base ${ref}: git could not list ${paths[0]} (${stderrOf(e)})`);
  }
  const entries: GitEntry[] = [];
  for (const line of out.split("\0")) {
    if (!line) continue;
    const tab = line.indexOf("\t");
    // "<mode> <type> <oid> <size, padded; - for a folder>"
    const [mode, type, oid, size] = line.slice(0, tab).split(/ +/);
    entries.push({ mode, type: type as GitEntry["type"], oid, path: line.slice(tab + 1), ...(type === "blob" && /^\d+$/.test(size ?? "") ? { size: Number(size) } : {}) });
  }
  return entries;
}

/**
 * The bytes of every blob among `entries`, by object id, from one
 * `git cat-file --batch`. A blob git cannot read (a shallow or partial
 * clone, a damaged repository) is an error that names its file; so is a
 * folder whose files pass `maxBuffer` together, and git that does not start.
 */
export function readBlobs(top: string, ref: string, entries: GitEntry[], maxBuffer = 1 << 30): Map<string, Uint8Array> {
  const wanted = [...new Set(entries.filter((e) => e.type === "blob").map((e) => e.oid))];
  const blobs = new Map<string, Uint8Array>();
  if (!wanted.length) return blobs;
  const pathOf = (oid: string) => entries.find((e) => e.oid === oid)!.path;
  const mib = (n: number) => (n % (1 << 20) ? `${n} bytes` : `${n / (1 << 20)} MiB`);
  const tooMuch = (total: string, why: string) =>
    new MeshfleetError(`--base ${ref}: the files plan reads at that revision (the fleet's folder, with its sibling site folders for a fleet with sites) pass ${total} together, more than it reads at once (${why}); move what is not the fleet's (large files, archives, images) out of those folders`);
  // Sized by the listing, refused before anything is read: git would send every byte first.
  const sized = new Map(entries.filter((e) => e.type === "blob" && e.size !== undefined).map((e) => [e.oid, e]));
  if (sized.size === wanted.length) {
    // What cat-file --batch sends of each: "<oid> blob <size>\n", the bytes, "\n".
    const total = [...sized.values()].reduce((a, e) => a + e.oid.length + 8 + String(e.size).length + e.size!, 0);
    if (total > maxBuffer) {
      const largest = [...sized.values()].sort((a, b) => b.size! - a.size!).slice(0, 3).map((e) => `${e.path}: ${e.size} bytes`);
      throw tooMuch(mib(maxBuffer), `${total} bytes with git's headers; the largest: ${largest.join(", ")}`);
    }
  }
  let out: Buffer;
  try {
    out = git(top, ["cat-file", "--batch"], wanted.join("\n") + "\n", undefined, maxBuffer);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOBUFS") throw tooMuch(mib(maxBuffer), `git cat-file: ${code}`);
    throw new MeshfleetError(`--base ${ref}: git could not read the fleet's files at that revision (git cat-file: ${stderrOf(e) || code || (e as Error).message}); check that git runs (git --version) and the repository (git fsck)`);
  }
  let at = 0;
  for (const oid of wanted) {
    const nl = out.indexOf(10, at);
    const [got, type, size] = out.toString("latin1", at, nl < 0 ? out.length : nl).split(" ");
    if (nl < 0 || got !== oid || type !== "blob")
      throw new MeshfleetError(`--base ${ref}: git cannot read ${pathOf(oid)} at that revision (object ${oid} ${type === "missing" ? "is missing" : `came back as ${JSON.stringify(type ?? "")}`}); fetch the revision again (git fetch), or check the repository (git fsck)`);
    const start = nl + 1;
    blobs.set(oid, out.subarray(start, start + Number(size)));
    at = start + Number(size) + 1;
  }
  return blobs;
}

/**
 * Why `git archive` could write other bytes than the blobs hold, if it
 * could: it applies the attributes (end-of-line conversion, filters such as
 * Git LFS's, `ident`, `export-subst`, `export-ignore`, an encoding) of
 * `.gitattributes` files in the revision and of the repository's, the
 * user's and the system's attributes files, and `core.autocrlf`. Any of them
 * present sends plan to the extracted folder, which applies them; a fleet
 * needs none. Git answers for itself: the configuration through
 * `git config` (a bare `autocrlf`, `2` and `yes` are true; `input` converts
 * on add only, not in git archive), the attributes files through
 * `git check-attr` on every listed path, against an empty index (so the
 * working tree's and the index's `.gitattributes`, which git archive does
 * not read, do not answer). `attr.tree` (newer git reads attributes from
 * that tree) sends plan to the extracted folder too. `entries` must include the
 * listing of every `.gitattributes` above the folder (`attributePaths`).
 */
export function archiveMayRewrite(top: string, entries: GitEntry[]): string | undefined {
  const attrs = entries.find((e) => e.type === "blob" && path.posix.basename(e.path) === ".gitattributes");
  if (attrs) return `${attrs.path} may change the files git archive writes`;
  let config = "";
  try {
    config = git(top, ["config", "-z", "--get-regexp", "^(core\\.autocrlf|attr\\.tree)$"]).toString("utf8");
  } catch {
    // exit 1: neither is set
  }
  let autocrlf: string | undefined;
  for (const kv of config.split("\0").filter(Boolean)) {
    // `key\nvalue`, or `key` alone for a bare key (`[core]\n\tautocrlf`, which is true).
    const nl = kv.indexOf("\n");
    const key = nl < 0 ? kv : kv.slice(0, nl);
    if (key === "attr.tree") return "attr.tree is set";
    if (key === "core.autocrlf") autocrlf = kv; // the last one counts
  }
  const raw = autocrlf?.includes("\n") ? autocrlf.slice(autocrlf.indexOf("\n") + 1) : undefined;
  if (autocrlf !== undefined && raw?.toLowerCase() !== "input") {
    // git's own reading of the value: `git -c key[=value]` holds it as a configuration file would.
    let value: string;
    try {
      value = git(top, ["-c", raw === undefined ? "meshfleet.autocrlf" : `meshfleet.autocrlf=${raw}`, "config", "--type=bool", "--get", "meshfleet.autocrlf"]).toString("utf8").trim();
    } catch {
      value = "not a boolean";
    }
    if (value !== "false") return `core.autocrlf is ${raw === undefined ? "set with no value (true)" : JSON.stringify(raw)}`;
  }
  const paths = entries.map((e) => e.path).join("\0") + "\0";
  let set: string[];
  try {
    const noIndex = path.join(os.tmpdir(), `meshfleet-no-index-${process.pid}-${Date.now()}`);
    set = git(top, ["check-attr", "-z", "--stdin", "--cached", "-a"], paths, { ...process.env, GIT_INDEX_FILE: noIndex }).toString("utf8").split("\0");
  } catch (e) {
    return `git check-attr failed (${stderrOf(e)})`;
  }
  // Records of three: path, attribute, value; only the attributes git archive applies.
  for (let i = 0; i + 2 < set.length; i += 3)
    if (REWRITING.has(set[i + 1])) return `the attribute ${set[i + 1]} (${set[i + 2]}) applies to ${set[i]}`;
  return undefined;
}

/** The attributes that change what git archive writes (the rest, such as diff or merge, do not). */
const REWRITING = new Set(["text", "eol", "crlf", "filter", "ident", "export-subst", "export-ignore", "working-tree-encoding"]);

/** `folder`'s own `.gitattributes` and every one above it (`a/b` -> .gitattributes, a/.gitattributes). */
export function attributePaths(folder: string): string[] {
  const parts = folder === "." ? [] : folder.split("/");
  return parts.map((_, i) => [...parts.slice(0, i), ".gitattributes"].join("/")).concat(parts.length ? [] : [".gitattributes"]);
}

type Node = { kind: "dir"; names: string[] } | { kind: "file"; bytes: Uint8Array } | { kind: "link"; target: string };

const errno = (code: string, p: string) => Object.assign(new Error(`${code}: ${p}`), { code });
const isInside = (root: string, p: string) => p === root || p.startsWith(root + path.sep);

const statOf = (n: Node): FileStat => ({
  isFile: () => n.kind === "file",
  isDirectory: () => n.kind === "dir",
  isSymbolicLink: () => n.kind === "link",
  size: n.kind === "file" ? n.bytes.length : n.kind === "link" ? Buffer.byteLength(n.target) : 4096,
});

/** Links followed before ELOOP, as Linux's path walk (MAXSYMLINKS). */
const MAX_LINKS = 40;

/**
 * The listed entries, mounted at `at` (the repository's top as the extracted
 * folder would hold it). A path with an empty, `.` or `..` part, or one listed
 * twice (a tree entry named `a/b` beside a folder `a`), is refused: git
 * writes no such tree, path.join would make it another entry's, and
 * git checkout and git archive refuse it too. `ref` names the revision in
 * that error.
 */
export class GitTreeSource implements FileSource {
  private nodes = new Map<string, Node>();
  /** The paths the listing named, as against folders made for the entries inside them. */
  private listed = new Set<string>();

  constructor(private at: string, entries: GitEntry[], blobs: Map<string, Uint8Array>, ref?: string) {
    this.nodes.set(at, { kind: "dir", names: [] });
    const refuse = (p: string, why: string) =>
      new MeshfleetError(`${ref === undefined ? "" : `--base ${ref}: `}the revision's tree holds the path ${JSON.stringify(p)}, ${why}, which git refuses to check out; the tree is damaged or made by hand: check it (git fsck), or compare with another revision`);
    for (const e of entries) {
      if (e.path.split("/").some((x) => x === "" || x === "." || x === "..")) throw refuse(e.path, 'with an empty, "." or ".." part');
      const full = path.join(at, ...e.path.split("/"));
      if (this.nodes.has(full)) {
        // A folder already made for an entry inside it is listed once more; anything else is there twice.
        if (e.type !== "blob" && this.nodes.get(full)!.kind === "dir" && !this.listed.has(full)) {
          this.listed.add(full);
          continue;
        }
        throw refuse(e.path, "listed twice");
      }
      this.listed.add(full);
      if (e.type !== "blob") {
        this.folder(full);
        continue;
      }
      const bytes = blobs.get(e.oid)!;
      this.folder(path.dirname(full)).names.push(path.basename(full));
      this.nodes.set(full, e.mode === "120000" ? { kind: "link", target: Buffer.from(bytes).toString("utf8") } : { kind: "file", bytes });
    }
  }

  /** The folder node at `full`, made (with its parents) if the listing has not named it yet. */
  private folder(full: string): { kind: "dir"; names: string[] } {
    const n = this.nodes.get(full);
    if (n?.kind === "dir") return n;
    const made = { kind: "dir" as const, names: [] };
    this.nodes.set(full, made);
    if (full !== this.at) this.folder(path.dirname(full)).names.push(path.basename(full));
    return made;
  }

  /**
   * Where `p` leads: the node, links on the way followed (the last one too
   * with `followLast`), as the kernel's path walk does; or the path to go on
   * with on the disk when a link or `..` leaves the tree.
   */
  private walk(p: string, followLast: boolean): { real: string; node: Node } | { disk: string } {
    let cur = this.at;
    const rest = path.relative(this.at, path.resolve(p)).split(path.sep).filter((x) => x !== "");
    let links = 0;
    while (rest.length) {
      const part = rest.shift()!;
      if (part === ".") continue;
      const next = part === ".." ? path.dirname(cur) : path.join(cur, part);
      if (!isInside(this.at, next)) return { disk: path.join(next, ...rest) };
      const node = this.nodes.get(next);
      if (!node) throw errno("ENOENT", p);
      if (node.kind === "link" && (rest.length || followLast)) {
        if (++links > MAX_LINKS) throw errno("ELOOP", p);
        if (node.target === "") throw errno("ENOENT", p);
        if (path.isAbsolute(node.target)) {
          const abs = path.join(node.target, ...rest);
          if (!isInside(this.at, abs)) return { disk: abs };
          cur = this.at;
          rest.splice(0, rest.length, ...path.relative(this.at, abs).split(path.sep).filter((x) => x !== ""));
        } else rest.unshift(...node.target.split("/").filter((x) => x !== ""));
        continue;
      }
      if (rest.length && node.kind !== "dir") throw errno("ENOTDIR", p);
      cur = next;
    }
    return { real: cur, node: this.nodes.get(cur)! };
  }

  lstat(p: string): FileStat {
    const w = this.walk(p, false);
    return "disk" in w ? diskSource.lstat(w.disk) : statOf(w.node);
  }

  stat(p: string): FileStat {
    const w = this.walk(p, true);
    return "disk" in w ? diskSource.stat(w.disk) : statOf(w.node);
  }

  /**
   * As node's fs.realpathSync, which the loader uses on the disk, and which
   * is not the kernel's walk: each link is checked with stat, then its
   * target is joined to the rest of the path as text (a `..` after a link
   * to a folder is taken from the text, not from where the link leads), and
   * the walk starts again.
   */
  realpath(p: string): string {
    let full = path.resolve(p);
    for (let links = 0; ; ) {
      if (!isInside(this.at, full)) return diskSource.realpath(full);
      const parts = path.relative(this.at, full).split(path.sep).filter((x) => x !== "");
      let cur = this.at;
      let again = false;
      for (let i = 0; i < parts.length && !again; i++) {
        const next = path.join(cur, parts[i]);
        const node = this.nodes.get(next);
        if (!node) throw errno("ENOENT", p);
        if (node.kind === "link") {
          this.stat(next); // a link that loops or leads nowhere fails here, as node's stat does
          if (++links > MAX_LINKS) throw errno("ELOOP", p);
          full = path.resolve(cur, node.target, ...parts.slice(i + 1));
          again = true;
        } else if (i < parts.length - 1 && node.kind !== "dir") throw errno("ENOTDIR", p);
        else cur = next;
      }
      if (!again) return cur;
    }
  }

  readdir(p: string): { name: string; isFile(): boolean }[] {
    const w = this.walk(p, true);
    if ("disk" in w) return diskSource.readdir(w.disk);
    if (w.node.kind !== "dir") throw errno("ENOTDIR", p);
    return w.node.names.map((name) => ({ name, isFile: () => this.nodes.get(path.join(w.real, name))?.kind === "file" }));
  }

  readRegular(p: string, maxBytes: number): Uint8Array | undefined {
    const w = this.walk(p, false);
    if ("disk" in w) return diskSource.readRegular(w.disk, maxBytes);
    // O_NOFOLLOW on a link fails with ELOOP; a folder opens, and is not a regular file.
    if (w.node.kind === "link") throw errno("ELOOP", p);
    return w.node.kind === "file" && w.node.bytes.length <= maxBytes ? w.node.bytes : undefined;
  }
}
