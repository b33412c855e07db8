/**
 * Reading a fleet from git: hosts/<stack>/fleet.yaml and one file per host
 * (`<host>.yaml`, or `<host>.ts` exporting the same shape). YAML priority
 * tags (!mkDefault, !mkForce) become Prio wrappers; parse errors become
 * diagnostics with the line and column.
 *
 * The loader is the fleet's border: every file it reads is a regular file
 * inside the hosts folder (symlinks are followed only when they stay inside
 * it), no bigger than LIMITS.fileBytes, UTF-8 text, one YAML document; the
 * one exception is the policy file fleet.yaml may name (HuJSON, within
 * POLICY_LIMITS), read with the same path and file checks. The
 * `imports:` files of every host are checked here too (inside the folder,
 * no cycle), so evaluation only ever opens files the loader has vetted; a
 * host whose imports are refused is left out of `hosts`, its problems
 * reported once. Nothing is thrown: every problem is a Diagnostic, all of
 * them reported together.
 *
 * Limits (documented in the diagnostics that enforce them):
 *  - a file is at most LIMITS.fileBytes bytes (checked before it is read);
 *  - at most LIMITS.lines lines plus commas (a cheap bound checked before
 *    parsing, so a huge list is refused in milliseconds);
 *  - a list or mapping has at most LIMITS.listItems entries;
 *  - a file holds at most LIMITS.values values once YAML aliases are
 *    expanded (an "alias bomb" stops there), nested at most LIMITS.depth deep.
 */
// Synchronous reads: a fleet is a few small files, and 1,000 awaited reads
// cost more in scheduling than in I/O.
import { closeSync, fstatSync, lstatSync, openSync, readdirSync, readSync, realpathSync, statSync, constants as fsConstants } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from "yaml";
import { diag, ECHO_MAX, quote, recordTypedScalars, show, type TypedScalar } from "./diagnostics.ts";
import { checkFleetFile } from "./fleet-schema.ts";
import { HuJsonError, parseHuJson } from "./hujson.ts";
import { ORDER as POLICY_KEYS } from "./policy/render.ts";
import { caseCollisions, labelProblem, suggestLabel } from "./names.ts";
import { Prio, YAML_PRIORITY_TAGS } from "./priority.ts";
import type { Diagnostic } from "./types.ts";

export interface SourceFile {
  /** Path as shown in diagnostics (relative to the working directory when inside it). */
  file: string;
  /** The parsed value, with Prio wrappers where priority tags were used. */
  value: unknown;
}

export interface LoadedFleet {
  dir: string;
  /** fleet.yaml. Its value holds the policy object, also when the file names a policy file (`policyFile`, as shown). */
  fleet?: SourceFile & { policyFile?: string };
  hosts: { name: string; source: SourceFile }[];
  /**
   * Every file reached through `imports:` (shown path -> parsed file), each
   * read and parsed once; evaluation may take them from here instead of
   * reading them again.
   */
  imports?: Record<string, SourceFile>;
  diagnostics: Diagnostic[];
}

/** The loader's size and shape limits; see the file comment. */
export const LIMITS = {
  /**
   * Bytes in one fleet file (fleet.yaml, a host file, an imported file). A
   * homelab's fleet.yaml is a few KiB; 16 KiB holds a policy of ~120 rules.
   * The bound is what the YAML parser gets through, in a fresh process, in
   * about 200 ms on a busy 2-CPU machine (bench/bad-input).
   */
  fileBytes: 16 * 1024,
  /** Lines plus commas in one YAML file: bounds the values the parser must build before it runs (a 16 KiB file of real YAML has ~600). */
  lines: 2_500,
  /** Items in one list, or keys in one mapping. */
  listItems: 1_000,
  /** Values in one file after aliases are expanded. */
  values: 10_000,
  /** Nesting of lists and mappings. */
  depth: 48,
} as const;

/**
 * The limits of a policy file (fleet.yaml `policy: ./policy.hujson`). HuJSON
 * is read by core/hujson.ts in one pass (3-10x JSON.parse's time), so the
 * bounds are far above the YAML files': 1 MiB holds ~8,800 rules of the usual
 * shape (a 1,000-rule policy is ~100 KiB). Chosen from bench/bad-input, as
 * the YAML limits were: the loader takes the largest allowed policy file in a
 * fresh process in 166 ms of CPU (the largest allowed YAML fleet.yaml: 113 ms;
 * both under the 200 ms the loader is held to), and refuses the hostile ones
 * (200,001 values, 100,000 levels deep, an unclosed 1 MiB string, 10 MB) in
 * 15-75 ms. Measured at other sizes the same way: 256 KiB 95 ms, 512 KiB
 * 117 ms, 2 MiB 230 ms of CPU, past the 200 ms.
 */
export const POLICY_LIMITS = {
  /** Bytes in the policy file. */
  fileBytes: 1024 * 1024,
  /** Values (objects, arrays, strings, numbers, literals): a 1,000-rule policy has ~7,000, 1 MiB of such rules ~62,000. */
  values: 200_000,
  /** Nesting of arrays and objects (a policy nests 4 deep). */
  depth: 32,
} as const;

/** What the reader holds one kind of file to: its size limit and what to do past it, and the fix for a folder in its place. */
interface FileKind {
  bytes: number;
  expected: string;
  fix: string;
  folderFix: (file: string) => string;
}

const YAML_FILE: FileKind = {
  bytes: LIMITS.fileBytes,
  expected: `a fleet file of at most ${LIMITS.fileBytes / 1024} KiB (the documented limit)`,
  fix: "split it into smaller files with imports, or remove what does not belong in a fleet file",
  folderFix: (file) => `remove or rename the directory ${file} (a host is one file), or put shared files in a file named _<name>.yaml`,
};

const POLICY_FILE: FileKind = {
  bytes: POLICY_LIMITS.fileBytes,
  expected: `a policy file of at most ${POLICY_LIMITS.fileBytes / 1024 / 1024} MiB (the documented limit)`,
  fix: "remove rules that are not needed, or name hosts by tags, groups or CIDRs instead of a rule each",
  folderFix: (file) => `point policy at the policy file itself, not the directory ${file}`,
};

export function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : p;
}

/**
 * displayPath(path.join(dir, entry)) for the entries of one folder, with one
 * path.relative for the folder instead of one per entry (two path.resolve
 * and a process.cwd() each: a tenth of loading 10,000 host files). `entry`
 * is a name from the folder's listing (no separator, not "." or "..").
 */
export function displayIn(dir: string): (entry: string) => string {
  const rel = path.relative(process.cwd(), dir);
  if (rel === "") return (entry) => (entry.startsWith("..") ? path.join(dir, entry) : entry);
  if (rel.startsWith("..") || path.isAbsolute(rel)) return (entry) => path.join(dir, entry);
  return (entry) => path.join(rel, entry);
}

const kib = (n: number) => `${Math.round(n / 1024)} KiB`;

// ---------------------------------------------------------------------------
// Text: UTF-8, not binary, not too big

/** One strict decoder for every file (a whole-buffer decode keeps no state between calls). */
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Decode a fleet file's bytes; a problem (not UTF-8, binary, UTF-16) as a diagnostic. */
export function decodeText(bytes: Uint8Array, file: string): { text?: string; diagnostics: Diagnostic[] } {
  const fail = (found: string, fix: string) => ({ diagnostics: [diag(file, "", "a UTF-8 text file", found, fix)] });
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff))
    return fail("UTF-16 text (it starts with a UTF-16 byte-order mark)", "save the file as UTF-8");
  const nul = bytes.indexOf(0);
  if (nul >= 0) return fail(`binary data (a NUL byte at line ${lineAt(bytes, nul)})`, "replace the file with the YAML text it should hold; check it is the file you meant");
  try {
    let text = UTF8.decode(bytes);
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    return { text, diagnostics: [] };
  } catch {
    const at = firstInvalidUtf8(bytes);
    return fail(`bytes that are not UTF-8 at line ${lineAt(bytes, at)} (byte 0x${bytes[at].toString(16).padStart(2, "0")})`, "save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)");
  }
}

function lineAt(bytes: Uint8Array, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < bytes.length; i++) if (bytes[i] === 10) line++;
  return line;
}

function firstInvalidUtf8(b: Uint8Array): number {
  for (let i = 0; i < b.length; ) {
    const c = b[i];
    const n = c < 0x80 ? 0 : c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (n < 0) return i;
    for (let k = 1; k <= n; k++) if (i + k >= b.length || (b[i + k] & 0xc0) !== 0x80) return i;
    i += n + 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Where files are read: the disk, or a tree mounted in its place

/** What the loader asks of a path's kind and size (fs.Stats has these). */
export interface FileStat {
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
  size: number;
}

/**
 * Everything the loader reads goes through one of these: the disk by
 * default, or a tree held in memory and mounted at a folder path that is not
 * on the disk (`meshfleet plan` reads its base revision from git objects
 * this way, cli/git-tree.ts, instead of writing 10,000 files to read them
 * back). The loader's checks are written once, against this; a source
 * answers as the disk would, failures thrown with the disk's codes
 * (ENOENT, ENOTDIR, ELOOP).
 */
export interface FileSource {
  /** What is at `p`, a link at `p` itself not followed (lstat). */
  lstat(p: string): FileStat;
  /** What is at `p`, links followed (stat). */
  stat(p: string): FileStat;
  /** `p` with every link resolved (realpath). */
  realpath(p: string): string;
  /** A folder's entries; `isFile`: a regular file, not a link (readdir with file types). */
  readdir(p: string): { name: string; isFile(): boolean }[];
  /**
   * The bytes of the regular file at `p`, a link at `p` itself not followed
   * (opened O_NOFOLLOW); undefined when what opened is not a regular file of
   * at most `maxBytes`; throws when nothing can be opened.
   */
  readRegular(p: string, maxBytes: number): Uint8Array | undefined;
}

export const diskSource: FileSource = {
  lstat: (p) => lstatSync(p),
  stat: (p) => statSync(p),
  realpath: (p) => realpathSync(p),
  readdir: (p) => readdirSync(p, { withFileTypes: true }),
  readRegular(p, maxBytes) {
    const fd = openSync(p, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0));
    try {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size > maxBytes) return undefined;
      const buf = Buffer.allocUnsafe(st.size);
      let off = 0;
      while (off < buf.length) {
        const n = readSync(fd, buf, off, buf.length - off, off);
        if (n === 0) break;
        off += n;
      }
      return buf.subarray(0, off);
    } finally {
      closeSync(fd);
    }
  },
};

/**
 * Mounted sources by folder. A mount, not a parameter: evaluation reaches the
 * loader through loadSites and evaluateFleet, and a fleet with sites reads
 * its sibling folders by path, so a path is what picks the source.
 */
const mounts = new Map<string, FileSource>();

/**
 * Serve every path under the folder `at` (absolute, not on the disk) from
 * `source` until the returned function is called.
 */
export function mountFileSource(at: string, source: FileSource): () => void {
  const key = path.resolve(at);
  if (mounts.has(key)) throw new Error(`a file source is already mounted at ${key}`);
  mounts.set(key, source);
  return () => void mounts.delete(key);
}

function sourceOf(p: string): FileSource {
  if (mounts.size) for (const [at, s] of mounts) if (inside(at, path.resolve(p))) return s;
  return diskSource;
}

// ---------------------------------------------------------------------------
// Files: regular, inside the hosts folder, within the size limit

/** A path's real location (symlinks resolved), or why it has none. */
function realOf(full: string): { real?: string; code?: string } {
  try {
    return { real: sourceOf(full).realpath(full) };
  } catch (e) {
    return { code: (e as NodeJS.ErrnoException).code ?? "EIO" };
  }
}

/** Something (a file, a folder, a link even if dangling) is at `p`. */
function exists(p: string): boolean {
  try {
    sourceOf(p).lstat(p);
    return true;
  } catch {
    return false;
  }
}

const inside = (root: string, p: string) => p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

/**
 * The file `imp` (written in `file`'s imports, at option path `at`) names,
 * when the loader did not read it (a LoadedFleet made without it): checked
 * and read as the loader checks and reads an import, under the hosts folder
 * `dir` (the importing host's own: a site's, in a fleet with sites), from
 * its mounted source (plan's base from git) or the disk, then parsed.
 */
export function readImportFile(dir: string, imp: string, file: string, at: string): { value?: unknown; diagnostics: Diagnostic[] } {
  const where = folderPath(imp, file, dir, IMPORT_PATH);
  if ("problem" in where) return { diagnostics: [diag(file, at, ...where.problem)] };
  const shown = displayPath(where.full);
  const root = realOf(dir).real;
  if (!root || !exists(where.full)) return { diagnostics: [diag(file, at, "a file that exists", quote(imp), `create ${shown} or fix the path`)] };
  const r = readFleetFile(where.full, shown, root, "an imported file");
  if (!r.bytes) return { diagnostics: r.diagnostics };
  const t = decodeText(r.bytes, shown);
  if (t.text === undefined) return { diagnostics: [...r.diagnostics, ...t.diagnostics] };
  const y = parseYaml(t.text, shown);
  return { value: y.value, diagnostics: [...r.diagnostics, ...t.diagnostics, ...y.diagnostics] };
}

/**
 * Read one fleet file safely. `root` is the hosts folder's real path: the
 * file (after symlinks) must be inside it. Nothing outside is ever read, and
 * a refused file's contents are never quoted.
 */
export function readFleetFile(full: string, file: string, root: string, what = "a file", listedRegular = false, size: FileKind = YAML_FILE): { bytes?: Uint8Array; diagnostics: Diagnostic[] } {
  if (listedRegular) {
    const bytes = readListedRegular(full);
    if (bytes) return { bytes, diagnostics: [] };
  }
  const fail = (found: string, fix: string) => ({ diagnostics: [diag(file, "", `${what} inside the hosts folder`, found, fix)] });
  let l;
  try {
    l = sourceOf(full).lstat(full);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return fail(code === "ENOENT" || code === "ENOTDIR" ? "no such file" : `a file that cannot be read (${code})`, code === "ENOENT" || code === "ENOTDIR" ? `create ${file}, or fix the name` : `make ${file} readable`);
  }
  let real = full;
  if (l.isSymbolicLink()) {
    const r = realOf(full);
    if (!r.real)
      return fail(
        r.code === "ELOOP" ? "a symbolic link that loops" : "a symbolic link to a file that does not exist",
        `replace the link ${file} with the file itself, or remove it`,
      );
    if (!inside(root, r.real))
      return fail("a symbolic link to a file outside the hosts folder (it was not read)", `copy the file into the hosts folder instead of linking to it, or remove the link ${file}`);
    real = r.real;
  } else {
    const r = realOf(full);
    if (r.real && !inside(root, r.real))
      return fail("a path that leaves the hosts folder through a linked folder (it was not read)", `keep the file inside the hosts folder itself`);
    if (r.real) real = r.real;
  }
  let st;
  try {
    st = sourceOf(real).stat(real);
  } catch (e) {
    return fail(`a file that cannot be read (${(e as NodeJS.ErrnoException).code})`, `make ${file} readable`);
  }
  if (st.isDirectory()) return fail("a directory", size.folderFix(file));
  if (!st.isFile()) return fail("a special file (a pipe, socket or device), which is not read", `replace ${file} with a regular file`);
  if (st.size > size.bytes) return { diagnostics: [diag(file, "", size.expected, `${st.size} bytes`, size.fix)] };
  // Open without following a link the checks above did not see (the file
  // could be swapped between the check and the read).
  try {
    const bytes = sourceOf(real).readRegular(real, size.bytes);
    if (!bytes) return fail("a file that changed while it was read", `run the command again`);
    return { bytes, diagnostics: [] };
  } catch (e) {
    return fail(`a file that cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`, `make ${file} a readable regular file`);
  }
}

/**
 * The common case, in two system calls instead of six: `full` is an entry of
 * the hosts folder itself that the folder listing gave as a regular file (no
 * link, so inside the folder). Opened without following a link (in case it
 * was swapped since the listing) and checked on the open file: a regular file
 * within the size limit. Anything else (undefined) takes the full path, which
 * says what is wrong.
 */
function readListedRegular(full: string): Uint8Array | undefined {
  try {
    return sourceOf(full).readRegular(full, LIMITS.fileBytes);
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// YAML

/** LIMITS.depth list markers ("- ") in a row on one line. */
const DEEP_LIST_MARKERS = new RegExp(`(?:-[ \\t]+){${LIMITS.depth}}`);

/**
 * Parse one YAML text; returns the value or diagnostics. Aliases and `<<`
 * merge keys are expanded (within LIMITS.values); nothing becomes null
 * silently. When there is any error, there is no value. The usual host file
 * is read by parseSimpleYaml; `full` always takes the YAML library (the
 * tests compare the two).
 */
export function parseYaml(text: string, file: string, full = false): { value?: unknown; diagnostics: Diagnostic[] } {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > LIMITS.fileBytes)
    return { diagnostics: [diag(file, "", `a fleet file of at most ${kib(LIMITS.fileBytes)} (the documented limit)`, `${bytes} bytes`, "split it into smaller files with imports, or remove what does not belong in a fleet file")] };
  let lines = 0;
  let flowDepth = 0;
  let maxFlow = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10 || c === 44) lines++;
    else if (c === 91 || c === 123) maxFlow = Math.max(maxFlow, ++flowDepth);
    else if (c === 93 || c === 125) flowDepth--;
  }
  if (lines > LIMITS.lines)
    return { diagnostics: [diag(file, "", `at most ${LIMITS.lines} lines and list items (the documented limit)`, `${lines}`, "split the file with imports, or shorten its lists")] };
  if (maxFlow > LIMITS.depth * 4 || DEEP_LIST_MARKERS.test(text))
    return { diagnostics: [diag(file, "", `lists and mappings nested at most ${LIMITS.depth} deep`, maxFlow > LIMITS.depth * 4 ? `${maxFlow} opening brackets in a row` : `more than ${LIMITS.depth} list markers ("- ") on one line`, "flatten the structure")] };

  if (!full) {
    const simple = parseSimpleYaml(text);
    if (simple !== undefined) {
      recordTypedScalars(file, new Map());
      return { value: simple, diagnostics: [] };
    }
  }
  const lineCounter = new LineCounter();
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { prettyErrors: false, uniqueKeys: false, merge: true, lineCounter });
  } catch (e) {
    // The parser recurses per nesting level; "- - - - …" on one line can exhaust the stack.
    return { diagnostics: [diag(file, "", `lists and mappings nested at most ${LIMITS.depth} deep`, e instanceof RangeError ? "nesting too deep to parse" : `a file the YAML parser gave up on (${(e as Error).message.split("\n")[0]})`, "flatten the structure")] };
  }
  const at = (pos: number | undefined) => {
    const p = lineCounter.linePos(pos ?? 0);
    return `line ${p.line}:${p.col}`;
  };
  const diagnostics: Diagnostic[] = [];
  for (const e of doc.errors) {
    if (e.code === "MULTIPLE_DOCS") {
      diagnostics.push(diag(file, at(e.pos[0]), "one YAML document per file", "a second document after a '---' line", "remove the '---' line (and what follows it, or move it into a file of its own)"));
      break;
    }
    diagnostics.push(diag(file, at(e.pos[0]), "valid YAML", brief(e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "")), "fix the YAML syntax at that line"));
  }
  for (const w of doc.warnings) {
    if (w.code === "TAG_RESOLVE_FAILED" && /!mk(Default|Force)/.test(w.message)) continue;
    diagnostics.push(diag(file, at(w.pos[0]), "a known YAML tag (!mkDefault, !mkForce)", brief(w.message.split("\n")[0]), "remove the tag or use !mkDefault / !mkForce"));
  }
  if (diagnostics.length) return { diagnostics };
  const w = new Walker(doc, file, at);
  const value = w.value(doc.contents as YamlNode | null, "", 0);
  recordTypedScalars(file, w.typed);
  if (w.out.length) return { diagnostics: w.out };
  return { value: value ?? {}, diagnostics: [] };
}

/**
 * The usual host file, read without the YAML library (whose lexer, parser and
 * composer cost ~0.5 ms a file even for five lines, most of a 1,000-host
 * load): nothing but block mappings, one plain word per value, flow lists of
 * plain words on one line (`[a, b]`) and block lists of plain words (`- a`),
 * full-line comments and blank lines. Every word is one the YAML 1.2 core
 * schema reads as text, or exactly `true`, `false`, `null` or a decimal
 * integer written canonically (so no scalar's source differs from its value
 * and none needs recording as typed). Anything else (quotes, anchors,
 * aliases, tags, `<<`, flow mappings, block scalars, comments after a value,
 * tabs, CR, an empty value, a duplicate key, odd indentation, a list longer
 * than LIMITS.listItems, nesting deeper than LIMITS.depth, a key the schema
 * would read as something other than itself) gives undefined and the full
 * parser reads the file, with its positions and diagnostics. A test checks
 * the value is the full parser's on generated files of this shape and near it.
 */
export function parseSimpleYaml(text: string): Record<string, unknown> | undefined {
  if (text.includes("\t") || text.includes("\r")) return undefined;
  type Frame = { indent: number; map?: Record<string, unknown>; list?: unknown[] };
  const root: Record<string, unknown> = {};
  const stack: Frame[] = [{ indent: 0, map: root }];
  let pending: { key: string; indent: number; into: Record<string, unknown> } | undefined;
  let any = false;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    let ind = start;
    while (text.charCodeAt(ind) === 32) ind++;
    let stop = end;
    while (stop > ind && text.charCodeAt(stop - 1) === 32) stop--;
    const line = text.slice(ind, stop);
    const indent = ind - start;
    start = end + 1;
    if (line === "" || line[0] === "#") continue;
    any = true;
    let top: Frame;
    if (pending) {
      if (indent <= pending.indent || stack.length > LIMITS.depth - 8) return undefined;
      top = line.startsWith("- ") ? { indent, list: [] } : { indent, map: {} };
      pending.into[pending.key] = top.list ?? top.map;
      stack.push(top);
      pending = undefined;
    } else {
      while (stack.length > 1 && stack[stack.length - 1].indent > indent) stack.pop();
      top = stack[stack.length - 1];
      if (top.indent !== indent) return undefined;
    }
    if (top.list) {
      if (!line.startsWith("- ") || top.list.length >= LIMITS.listItems) return undefined;
      const v = simpleWord(line.slice(2));
      if (v === NOT_SIMPLE) return undefined;
      top.list.push(v);
      continue;
    }
    const map = top.map!;
    const colon = line.indexOf(":");
    if (colon < 1) return undefined;
    const key = line.slice(0, colon);
    if (!SIMPLE_KEY.test(key) || /^(true|false|null)$/i.test(key) || Object.prototype.hasOwnProperty.call(map, key)) return undefined;
    if (Object.keys(map).length >= LIMITS.listItems) return undefined;
    if (colon === line.length - 1) {
      pending = { key, indent, into: map };
      map[key] = null; // keeps the key's place; replaced by the block below it
      continue;
    }
    if (line.charCodeAt(colon + 1) !== 32) return undefined;
    const rest = line.slice(colon + 2).trim();
    if (rest[0] === "[") {
      if (rest[rest.length - 1] !== "]") return undefined;
      const inner = rest.slice(1, -1);
      const items: unknown[] = [];
      if (inner.trim() !== "") {
        for (const part of inner.split(",")) {
          const v = simpleWord(part.trim());
          if (v === NOT_SIMPLE || items.length >= LIMITS.listItems) return undefined;
          items.push(v);
        }
      }
      map[key] = items;
      continue;
    }
    const v = simpleWord(rest);
    if (v === NOT_SIMPLE) return undefined;
    map[key] = v;
  }
  return pending || !any ? undefined : root;
}

const NOT_SIMPLE = Symbol("not simple");
const SIMPLE_KEY = /^[A-Za-z][A-Za-z0-9_-]*$/;
/** A plain word: no indicator first, nothing YAML reads specially inside (no space, quote, '#', ',', brackets), not ending in ':'. */
const SIMPLE_WORD = /^[A-Za-z0-9_/][A-Za-z0-9_./@:+-]*$/;

/** A word's value under the YAML 1.2 core schema, when it is plainly text, true/false/null or a canonical integer; else NOT_SIMPLE. */
function simpleWord(w: string): unknown {
  if (!SIMPLE_WORD.test(w) || w.endsWith(":")) return NOT_SIMPLE;
  const c = w.charCodeAt(0);
  if (c >= 48 && c <= 57) {
    if (/^(0|[1-9][0-9]{0,14})$/.test(w)) return Number(w);
    // Octal, hex, integers with leading zeros, floats and exponents are the schema's; a long integer too.
    if (/^0[oOxX]/.test(w) || /^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/.test(w)) return NOT_SIMPLE;
    return w;
  }
  if (w === "true") return true;
  if (w === "false") return false;
  if (w === "null") return null;
  if (/^(true|false|null)$/i.test(w)) return NOT_SIMPLE;
  return w;
}

const joinPath = (base: string, key: string | number) => (typeof key === "number" ? `${base}[${key}]` : base ? `${base}.${key}` : key);

/** A plain scalar's own type (`1` -> 1, `true` -> true); text that is not one plain scalar stays text. */
function plainScalar(source: string): unknown {
  const d = parseDocument(source, { prettyErrors: false });
  return !d.errors.length && isScalar(d.contents) ? d.contents.value : source;
}

/** Turns YAML nodes into values: aliases and merge keys expanded within the limits, duplicates and odd keys reported. */
class Walker {
  out: Diagnostic[] = [];
  typed = new Map<string, TypedScalar>();
  private budget: number = LIMITS.values;
  private stopped = false;
  private expanding = new Set<YamlNode>();
  /** The outermost alias being expanded, where a blown value budget is reported. */
  private alias: { path: string; name: string; at: string } | undefined;

  constructor(private doc: Document.Parsed, private file: string, private at: (pos: number | undefined) => string) {}

  private err(path: string, expected: string, found: string, fix: string) {
    this.out.push(diag(this.file, path, expected, found, fix));
  }

  value(node: YamlNode | null | undefined, p: string, depth: number): unknown {
    if (node === null || node === undefined) return null;
    if (this.stopped) return undefined;
    if (--this.budget < 0) {
      this.stopped = true;
      const a = this.alias;
      this.err(
        a ? a.path : p,
        `at most ${LIMITS.values} values in one file, aliases expanded (the documented limit)`,
        a ? `more once *${a.name} (${a.at}) is expanded` : `more, at ${this.at(node.range?.[0])}`,
        "write the values out, or use fewer aliases of large anchors",
      );
      return undefined;
    }
    if (depth > LIMITS.depth) {
      this.stopped = true;
      this.err(p, `lists and mappings nested at most ${LIMITS.depth} deep`, `deeper, at ${this.at(node.range?.[0])}`, "flatten the structure");
      return undefined;
    }
    if (isAlias(node)) {
      const target = node.resolve(this.doc) as YamlNode | undefined;
      if (!target) {
        this.err(p, "an alias to an anchor defined above it", `*${node.source}, which no anchor (&${node.source}) defines`, `define &${node.source} before it, or write the value out`);
        return undefined;
      }
      if (this.expanding.has(target)) {
        this.err(p, "an alias outside the value its anchor names", `*${node.source} inside &${node.source} itself (it would never end)`, `write the value out instead of *${node.source}`);
        return undefined;
      }
      this.expanding.add(target);
      const outer = this.alias;
      this.alias ??= { path: p, name: node.source, at: this.at(node.range?.[0]) };
      try {
        return this.value(target, p, depth);
      } finally {
        this.expanding.delete(target);
        this.alias = outer;
      }
    }
    let v: unknown;
    if (isMap(node)) {
      if (node.items.length > LIMITS.listItems) {
        this.err(p, `a mapping of at most ${LIMITS.listItems} keys (the documented limit)`, `${node.items.length} keys`, "split it, or move part of it into an imported file");
        return undefined;
      }
      this.expanding.add(node);
      const o: Record<string, unknown> = {};
      const line = new Map<string, string>();
      const merged: Record<string, unknown>[] = [];
      for (const pair of node.items) {
        const key = pair.key as YamlNode | null;
        if (isScalar(key) && typeof key.value === "symbol") {
          merged.push(...this.mergeSources(pair.value as YamlNode | null, joinPath(p, "<<"), depth));
          continue;
        }
        if (key !== null && !isScalar(key)) {
          this.err(p, "plain keys (text)", `a ${isMap(key) ? "mapping" : isSeq(key) ? "list" : "alias"} used as a key at ${this.at(key.range?.[0])}`, "write the key as plain text");
          continue;
        }
        const k = key === null || key.value === null ? "" : String(key.value);
        const kp = joinPath(p, k);
        const where = this.at(key?.range?.[0] ?? (pair.value as YamlNode | null)?.range?.[0]);
        if (line.has(k)) {
          this.err(kp, `one "${k}" key in this mapping`, `a second one at ${where} (the first is at ${line.get(k)})`, "remove one of the two, or merge their values");
          continue;
        }
        line.set(k, where);
        const val = this.value(pair.value as YamlNode | null, kp, depth + 1);
        // `__proto__` stays an ordinary (unknown) option, never the object's prototype (the only
        // key an assignment would not simply define: Object.prototype's one accessor).
        if (k === "__proto__") Object.defineProperty(o, k, { value: val, enumerable: true, writable: true, configurable: true });
        else o[k] = val;
      }
      this.expanding.delete(node);
      // Merge keys: explicit keys win, then earlier merge sources over later ones (YAML 1.1 merge).
      for (const src of merged)
        for (const [k, val] of Object.entries(src)) if (!Object.prototype.hasOwnProperty.call(o, k)) Object.defineProperty(o, k, { value: val, enumerable: true, writable: true, configurable: true });
      v = o;
    } else if (isSeq(node)) {
      if (node.items.length > LIMITS.listItems) {
        this.err(p, `a list of at most ${LIMITS.listItems} items (the documented limit)`, `${node.items.length} items`, "split it, or move part of it into an imported file");
        return undefined;
      }
      this.expanding.add(node);
      v = node.items.map((n, i) => this.value(n as YamlNode | null, joinPath(p, i), depth + 1));
      this.expanding.delete(node);
    } else if (isScalar(node)) {
      v = node.value;
      // A custom tag makes yaml read the scalar as a string; a plain scalar
      // under !mkForce keeps its own type (`!mkForce 1` is the number 1).
      if (node.tag && node.tag in YAML_PRIORITY_TAGS && node.type === "PLAIN") v = plainScalar(String(node.source ?? v));
      if (v !== null && typeof v === "object") {
        this.err(p, "text, a number, true/false or null", `a ${(node.tag ?? "tagged").replace("tag:yaml.org,2002:", "!!")} value`, "write the value as plain text");
        return undefined;
      }
      if (typeof v !== "string" && typeof node.source === "string" && node.source.trim() !== "" && node.source !== String(v)) this.typed.set(p, node.source.length > ECHO_MAX ? { parsed: show(v), source: `${node.source.slice(0, ECHO_MAX - 3)}... (${node.source.length} characters)`, cut: true } : { parsed: show(v), source: node.source });
    }
    const tag = (node as { tag?: string }).tag;
    if (tag && tag in YAML_PRIORITY_TAGS) return new Prio(YAML_PRIORITY_TAGS[tag], v);
    return v;
  }

  /** The mappings a `<<:` key merges: one mapping (or alias to one), or a list of them. */
  private mergeSources(node: YamlNode | null, p: string, depth: number): Record<string, unknown>[] {
    const one = (n: YamlNode | null): Record<string, unknown> | undefined => {
      const v = this.value(n, p, depth + 1);
      if (v && typeof v === "object" && !Array.isArray(v) && !(v instanceof Prio)) return v as Record<string, unknown>;
      if (v !== undefined) this.err(p, "a mapping (or an alias to one) after <<:", show(v), "merge a mapping, e.g. <<: *defaults where &defaults names a mapping");
      return undefined;
    };
    const target = isAlias(node) ? (node.resolve(this.doc) as YamlNode | undefined) : node;
    if (isSeq(target) && !isAlias(node)) return target.items.map((n) => one(n as YamlNode)).filter((x): x is Record<string, unknown> => !!x);
    const r = one(node);
    return r ? [r] : [];
  }
}

// ---------------------------------------------------------------------------
// Paths to other files of the folder: imports, the policy file

/** How a path to another file of the hosts folder is written, for the messages. */
interface FolderPathKind {
  /** The form to write, e.g. ./<file>.yaml. */
  form: string;
  /** An example of a real path of that form. */
  example: string;
  /** What else the value may be, said when it does not start with ./ or ../ (ends with ", or "). */
  orElse: string;
  /** How the fix says to use a file put in the folder ("import it as"). */
  use: string;
  ext: RegExp;
  extExpected: string;
  extFix: string;
}

const IMPORT_PATH: FolderPathKind = {
  form: "./<file>.yaml", example: "./_common.yaml", orElse: "a profile name, or ", use: "import it as", ext: /\.ya?ml$/i,
  extExpected: "a YAML file (./<file>.yaml)", extFix: "import a .yaml file (a .ts host cannot be imported)",
};

const POLICY_PATH: FolderPathKind = {
  form: "./<file>.hujson", example: "./policy.hujson", orElse: "the policy as a mapping, or ", use: "set policy:", ext: /\.(hujson|json)$/i,
  extExpected: "a HuJSON policy file (./<file>.hujson), headscale's own format", extFix: "name the file <name>.hujson (or .json) and write the policy in it as headscale reads it",
};

/**
 * A path written in `file` to another file of the hosts folder `dir`: its
 * full path, or the problem (expected, found, fix): a control character, an
 * absolute or Windows path, no ./ or ../ in front, a path that leaves the
 * folder, another extension. Nothing is read: the reader (readFleetFile) says
 * whether the file is there, regular, and inside the folder through its links.
 */
function folderPath(p: string, file: string, dir: string, kind: FolderPathKind): { full: string } | { problem: [string, string, string] } {
  if (/[\u0000-\u001f\u007f]/.test(p)) return { problem: ["a file path of printable characters", `${quote(p)}, which has a control character`, `write the path without control characters, e.g. ${kind.example}`] };
  if (path.isAbsolute(p) || p.includes("\\")) return { problem: [`a file inside the hosts folder, written ${kind.form}`, `${quote(p)}, an absolute or Windows path`, `copy the file into the hosts folder and ${kind.use} ${kind.form}`] };
  if (!p.startsWith("./") && !p.startsWith("../")) return { problem: [`${kind.orElse}a file written ${kind.form}`, quote(p), p === "" ? `write the path, e.g. ${kind.example}` : p.startsWith(".") ? `write the path as ${kind.form}` : `write it as ./${p}`] };
  const full = path.resolve(path.dirname(file), p);
  if (!inside(path.resolve(dir), full)) return { problem: ["a file inside the hosts folder", `${quote(p)}, which leaves the hosts folder (it was not read)`, `copy the file into the hosts folder and ${kind.use} ${kind.form}`] };
  if (!kind.ext.test(p)) return { problem: [kind.extExpected, quote(p), kind.extFix] };
  return { full };
}

/**
 * fleet.yaml's `policy: ./policy.hujson`: the policy in a file of its own, in
 * headscale's format (HuJSON: JSON with comments and trailing commas), for a
 * policy larger than a YAML file may be. Read here, so the fleet value holds
 * the policy object as if it were written inline, and every check, render and
 * plan downstream is the same. The path follows an import's rules
 * (folderPath, readFleetFile); the file has its own limits (POLICY_LIMITS).
 * A fleet.yaml whose policy is not a string is returned as it is; undefined
 * when the file cannot be used (its problems in `out`).
 */
function policyFromFile(value: unknown, fleetFile: string, dir: string, root: string, out: Diagnostic[]): { value: unknown; policyFile?: string } | undefined {
  const fleet = stripPrio(value);
  const ref = fleet && typeof fleet === "object" && !Array.isArray(fleet) ? stripPrio((fleet as Record<string, unknown>).policy) : undefined;
  if (typeof ref !== "string") return { value };
  const bad = (file: string, at: string, expected: string, found: string, fix: string) => void out.push(diag(file, at, expected, found, fix));
  const where = folderPath(ref, fleetFile, dir, POLICY_PATH);
  if ("problem" in where) return bad(fleetFile, "policy", ...where.problem);
  const full = where.full;
  const shown = displayPath(full);
  if (!exists(full)) return bad(fleetFile, "policy", "a policy file that exists", quote(ref), `create ${shown} (headscale's policy file, or the policy: mapping written as JSON), or fix the path`);
  const read = readFleetFile(full, shown, root, "a policy file", false, POLICY_FILE);
  out.push(...read.diagnostics);
  if (!read.bytes) return undefined;
  const t = decodeText(read.bytes, shown);
  out.push(...t.diagnostics);
  if (t.text === undefined) return undefined;
  let policy: unknown;
  try {
    policy = parseHuJson(t.text, { values: POLICY_LIMITS.values, depth: POLICY_LIMITS.depth });
  } catch (e) {
    if (!(e instanceof HuJsonError)) throw e;
    const at = `line ${e.position.line}:${e.position.col}`;
    const where = `line ${e.position.line}, column ${e.position.col}`;
    if (e.limit === "values") return bad(shown, at, `a policy of at most ${POLICY_LIMITS.values} values (the documented limit)`, `more than ${POLICY_LIMITS.values} values (counting stopped at ${where})`, POLICY_FILE.fix);
    if (e.limit === "depth") return bad(shown, at, `arrays and objects nested at most ${POLICY_LIMITS.depth} deep`, `more than ${POLICY_LIMITS.depth} levels of nesting (at ${where})`, "flatten the structure (a policy nests 4 deep)");
    // The parser says "expected X, found Y" (or only what is wrong): split as every diagnostic is.
    const m = /^expected (.*), found (.*)$/.exec(e.reason);
    return bad(shown, at, `HuJSON, headscale's policy format (JSON with // comments and trailing commas)${m ? `: ${m[1]}` : ""}`, brief(m ? m[2]! : e.reason), "fix the syntax at that line");
  }
  if (!policy || typeof policy !== "object" || Array.isArray(policy))
    return bad(shown, "", "one policy object, as headscale's policy file holds ({ \"groups\": ..., \"acls\": [...] })", show(policy), "write the policy as one JSON object in braces");
  return { value: { ...(fleet as Record<string, unknown>), policy }, policyFile: shown };
}

/**
 * Problems inside a policy read from its own file, named where they are: the
 * policy file and the path inside it (`acls[3].dst[0]`), not fleet.yaml at
 * `policy.acls[3].dst[0]`. Every check of the policy (the fleet schema, the
 * policy hooks, the policy's tests, the modules) sees one fleet value and
 * names fleet.yaml; this is the one place that moves them. A fleet without a
 * policy file keeps its diagnostics as they are.
 */
export function inPolicyFile(diagnostics: Diagnostic[], dir: string, policyFile: string | undefined): Diagnostic[] {
  if (!policyFile) return diagnostics;
  const folder = path.resolve(dir);
  const isFleetFile = (f: string) => /^fleet\.ya?ml$/.test(path.basename(f)) && path.resolve(path.dirname(f)) === folder;
  return diagnostics.map((d) => {
    const m = /^policy(?:\.|(?=\[)|$)/.exec(d.path);
    if (m && isFleetFile(d.file)) return { ...d, file: policyFile, path: d.path.slice(m[0].length), expected: inPolicyText(d.expected), fix: jsonFlow(inPolicyText(d.fix)) };
    // A problem elsewhere (nodeExpiry.exemptTags, a host's tags) that names a part of the policy: named in its file.
    const named = (t: string) => t.replace(POLICY_PART, (_, part: string) => `${part} in ${policyFile}`);
    return `${d.expected}\n${d.found}\n${d.fix}`.search(POLICY_PART) >= 0 ? { ...d, expected: named(d.expected), found: named(d.found), fix: named(d.fix) } : d;
  });
}

/**
 * fleet.yaml's `policy.tagOwners`, `policy.acls[3].dst`, `policy.hosts.my-nas` in prose: a key of
 * headscale's policy after `policy.`, so a file name (policy.hujson) or a value a user wrote
 * (policy.example.com) is not one.
 */
const POLICY_PART = new RegExp(`(?<![\\w.$/-])policy\\.((?:${POLICY_KEYS.join("|")})\\b(?:\\[\\d+\\]|\\["[^"\\]]*"\\]|\\['[^'\\]]*'\\]|\\.[A-Za-z0-9][\\w-]*)*)`, "g");

/** A moved diagnostic's text: fleet.yaml's `policy.acls` is `acls` in the policy file (a file name, policy.hujson, stays). */
function inPolicyText(s: string): string {
  return s.replace(/(?<![\w.$/-])policy\.(?!(?:hu)?json\b)(?=[A-Za-z])/g, "");
}

/**
 * A moved fix's YAML flow collections (`{action: accept, src: [alice@]}`,
 * `acls: [...]`) written as the JSON the policy file holds
 * (`{"action": "accept", "src": ["alice@"]}`, `"acls": [...]`). A bracket
 * that is not one YAML flow value (`acls[3]`, prose) stays as it is.
 */
function jsonFlow(s: string): string {
  if (!/(?:^|\s)[[{]/.test(s)) return s;
  let out = "";
  for (let i = 0; i < s.length; ) {
    const end = (s[i] === "{" || s[i] === "[") && (i === 0 || /\s/.test(s[i - 1]!)) ? flowEnd(s, i) : -1;
    const doc = end > 0 ? parseDocument(s.slice(i, end + 1), { prettyErrors: false }) : undefined;
    if (doc && !doc.errors.length && !doc.warnings.length && (isMap(doc.contents) || isSeq(doc.contents))) {
      const key = /(?<=^|\s)[A-Za-z]\w*: $/.exec(out);
      if (key) out = `${out.slice(0, key.index)}${JSON.stringify(key[0].slice(0, -2))}: `;
      out += jsonText(doc.toJS());
      i = end + 1;
    } else out += s[i++];
  }
  return out;
}

/** Where the flow collection opening at `start` closes (brackets in double quotes skipped); -1 if it does not. */
function flowEnd(s: string, start: number): number {
  let depth = 0;
  for (let i = start, quoted = false; i < s.length; i++) {
    const c = s[i];
    if (c === '"') quoted = !quoted;
    else if (quoted) continue;
    else if (c === "{" || c === "[") depth++;
    else if ((c === "}" || c === "]") && --depth === 0) return i;
  }
  return -1;
}

/** JSON on one line, with a space after each colon and comma, as a policy file is written. */
function jsonText(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(jsonText).join(", ")}]`;
  if (v && typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${jsonText(x)}`).join(", ")}}`;
  return JSON.stringify(v);
}

// ---------------------------------------------------------------------------
// The fleet folder

const FILE_EXT = /\.(ya?ml|ts)$/i;

function stripPrio(v: unknown): unknown {
  while (v instanceof Prio) v = v.value;
  return v;
}

export async function loadFleetDir(dir: string): Promise<LoadedFleet> {
  return (await loadFleetShard(dir)).loaded;
}

/**
 * The loader, with `only`: read only these host entries (file names in the
 * folder); every other entry is still listed and its name checked, but not
 * read. A shard of the parallel evaluation (core/shard.ts) loads its hosts
 * this way, and the node names across shards are checked again by
 * `nodeNameProblems` on every shard's `named`.
 */
export async function loadFleetShard(dir: string, only?: ReadonlySet<string>): Promise<{ loaded: LoadedFleet; named: NamedHost[] }> {
  const diagnostics: Diagnostic[] = [];
  const shown = displayPath(dir);
  const root = realOf(dir).real;
  let entries: string[];
  /** Entries the listing gave as regular files (not links): read by the short path. */
  const regular = new Set<string>();
  try {
    if (!root) throw Object.assign(new Error("missing"), { code: realOf(dir).code });
    if (!sourceOf(root).stat(root).isDirectory()) throw Object.assign(new Error("not a folder"), { code: "ENOTDIR" });
    const listed = sourceOf(dir).readdir(dir);
    for (const d of listed) if (d.isFile()) regular.add(d.name);
    entries = listed.map((d) => d.name).sort();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      loaded: {
        dir,
        hosts: [],
        diagnostics: [diag(shown, "", "a folder holding fleet.yaml and one file per host", code === "ENOTDIR" ? "a file, not a folder" : code === "ENOENT" ? "no such folder" : `a folder that cannot be read (${code})`, "pass --stack NAME for hosts/NAME, or --hosts-dir DIR")],
      },
      named: [],
    };
  }

  const dirJoined = path.join(dir);
  const readText = (full: string, file: string, what?: string): string | undefined => {
    const r = readFleetFile(full, file, root, what, path.dirname(full) === dirJoined && regular.has(path.basename(full)));
    diagnostics.push(...r.diagnostics);
    if (!r.bytes) return undefined;
    const t = decodeText(r.bytes, file);
    diagnostics.push(...t.diagnostics);
    return t.text;
  };

  // fleet.yaml
  let fleet: LoadedFleet["fleet"];
  const fleetNames: string[] = entries.filter((e) => e === "fleet.yaml" || e === "fleet.yml");
  const fleetName = fleetNames[0];
  if (fleetNames.length > 1)
    diagnostics.push(diag(displayPath(path.join(dir, fleetNames[1])), "", "one fleet file", `both ${fleetNames.join(" and ")}`, `remove ${fleetNames[1]} (fleet.yaml is the one read)`));
  if (!fleetName) {
    diagnostics.push(diag(path.join(shown, "fleet.yaml"), "", "the mesh-wide settings file fleet.yaml", "no such file", "create fleet.yaml with at least coordinator.host and coordinator.serverUrl"));
  } else {
    const file = displayPath(path.join(dir, fleetName));
    const text = readText(path.join(dir, fleetName), file, "the fleet file");
    if (text !== undefined) {
      const r = parseYaml(text, file);
      diagnostics.push(...r.diagnostics);
      const withPolicy = r.value === undefined ? undefined : policyFromFile(r.value, file, dir, root, diagnostics);
      if (withPolicy) {
        const problems = inPolicyFile(checkFleetFile(stripPrioDeep(withPolicy.value), file), dir, withPolicy.policyFile);
        diagnostics.push(...problems);
        // A fleet.yaml with errors is not handed on: evaluation would report them a second time.
        if (!problems.some((d) => d.severity === "error")) fleet = { file, ...withPolicy };
      }
    }
  }

  // host files
  const hosts: LoadedFleet["hosts"] = [];
  /** Host name -> the entry that gave it first. */
  const seen = new Map<string, string>();
  const named: NamedHost[] = [];
  const shownEntry = displayIn(dir);
  for (const entry of entries) {
    if (fleetNames.includes(entry) || entry.startsWith("_") || entry.startsWith(".")) continue;
    if (!FILE_EXT.test(entry)) {
      // Not a host file by its name; a folder or a README is no concern of the loader.
      continue;
    }
    const ext = /\.([^.]+)$/.exec(entry)![1];
    const stem = entry.slice(0, -(ext.length + 1));
    // A host's name keys every record of hosts: `constructor` would find what every JavaScript object has.
    const reserved = Object.hasOwn(Object.prototype, stem);
    const problem =
      labelProblem(stem, { lowercase: true }) ??
      (ext !== ext.toLowerCase() ? `the extension .${ext} (write it in lowercase)` : undefined) ??
      (reserved ? "the name of a key every JavaScript object has, and meshfleet looks hosts up by name" : undefined);
    if (problem) {
      const file = shownEntry(entry);
      const better = reserved ? `${stem}-host` : suggestLabel(stem);
      const taken = better !== undefined && entries.some((e) => e.replace(FILE_EXT, "") === better && e !== entry);
      diagnostics.push(
        diag(
          file,
          "",
          reserved
            ? "a host file named <host>.yaml whose name meshfleet can take (not constructor)"
            : "a host file named <host>.yaml whose name is a DNS label (lowercase letters, digits, '-', at most 63 characters)",
          `${quote(entry)}, which has ${problem}`,
          better && !taken
            ? `rename the file to ${better}.${ext.toLowerCase()} (prefix it with _ to keep it out of the fleet)`
            : better
              ? `rename the file: ${better}.${ext.toLowerCase()} is taken by another host, so pick another name (prefix it with _ to keep it out of the fleet)`
              : "rename the file to the host's name in lowercase letters, digits and '-' (prefix it with _ to keep it out of the fleet)",
        ),
      );
      continue;
    }
    const name = stem;
    if (seen.has(name)) {
      diagnostics.push(diag(shownEntry(entry), "", `one file for host "${name}"`, `a second one (first: ${shownEntry(seen.get(name)!)})`, `remove or rename one of them`));
      continue;
    }
    seen.set(name, entry);
    // Every shard goes through every entry (a host name may be given twice across shards); only its own are read.
    if (only && !only.has(entry)) continue;
    const full = path.join(dir, entry);
    const file = shownEntry(entry);
    if (ext === "ts") {
      const text = readText(full, file, "a host file");
      if (text === undefined) continue;
      const syntax = await tsSyntaxProblem(text, file);
      if (syntax) {
        diagnostics.push(syntax);
        continue;
      }
      try {
        // The prebuilt CLI starts its TypeScript hooks (a loader thread) only when a .ts host file is met.
        const startHooks = (globalThis as Record<symbol, unknown>)[Symbol.for("meshfleet.registerTsHooks")];
        if (typeof startHooks === "function") startHooks();
        const mod = await import(pathToFileURL(full).href);
        const value = typeof mod.default === "function" ? await mod.default() : mod.default;
        if (!value || typeof value !== "object" || Array.isArray(value)) {
          diagnostics.push(diag(file, "", "a default export: the host's options object (or a function returning it)", show(value), "export default { imports: [...], address: ..., ... }"));
          continue;
        }
        hosts.push({ name, source: { file, value } });
        named.push({ name: nodeNameOf(value, name), file, path: hasOwnHostname(value) ? "tailscale.hostname" : "" });
      } catch (e) {
        diagnostics.push(diag(file, "", "a TypeScript module that loads", firstLine(e), "fix the error in the host module"));
      }
      continue;
    }
    const text = readText(full, file, "a host file");
    if (text === undefined) continue;
    const r = parseYaml(text, file);
    diagnostics.push(...r.diagnostics);
    if (r.value === undefined) continue;
    hosts.push({ name, source: { file, value: r.value } });
    named.push({ name: nodeNameOf(r.value, name), file, path: hasOwnHostname(r.value) ? "tailscale.hostname" : "" });
  }

  diagnostics.push(...nodeNameProblems(named));

  // imports: files inside the folder, each read once, no cycles
  const imports = new Imports(dir, root, readText, diagnostics);
  const kept = hosts.filter((h) => imports.check(h.source));
  return { loaded: { dir, fleet, hosts: kept, imports: imports.files, diagnostics }, named };
}

/** A host's node name as the loader checks it: the file's stem, or its own tailscale.hostname (then `path` says so). */
export interface NamedHost { name: string; file: string; path: string }

/** The node names' problems: each a DNS label, none equal to another after case folding. */
export function nodeNameProblems(named: NamedHost[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const n of named) {
    if (!n.path) continue;
    const problem = labelProblem(n.name);
    if (problem) {
      const better = suggestLabel(n.name);
      out.push(diag(n.file, n.path, "a node name that is one DNS label (letters, digits, '-', at most 63 characters)", `${quote(n.name)}, which has ${problem}`, better ? `set tailscale.hostname: ${better}` : "set tailscale.hostname to a name of letters, digits and '-', or remove it to use the file name"));
    }
  }
  for (const pair of caseCollisions(named.filter((n) => !labelProblem(n.name)))) {
    // Blame the host that chose its name (tailscale.hostname) over one named by its file.
    const [other, culprit] = !pair.second.path && pair.first.path ? [pair.second, pair.first] : [pair.first, pair.second];
    out.push(
      diag(
        culprit.file,
        culprit.path,
        "a node name no other host has, ignoring case (tailscale and MagicDNS lowercase names)",
        `${quote(culprit.name)}, the same name as ${quote(other.name)} (${other.file}) in other capitals`,
        culprit.path ? "set tailscale.hostname to a name of its own" : `set tailscale.hostname: <another name> in ${culprit.file}`,
      ),
    );
  }
  return out;
}

function firstLine(e: unknown): string {
  return brief(String((e as Error)?.message ?? e).split("\n")[0]);
}

/** A parser's or module's message, cut: it may quote the input (a huge tag, a long line). */
function brief(s: string): string {
  return s.length > 160 ? `${s.slice(0, 157)}...` : s;
}

function stripPrioDeep(v: unknown): unknown {
  v = stripPrio(v);
  if (Array.isArray(v)) return v.map(stripPrioDeep);
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, stripPrioDeep(x)]));
  return v;
}

function tailscaleOf(value: unknown): Record<string, unknown> | undefined {
  const v = stripPrio(value);
  if (!v || typeof v !== "object" || Array.isArray(v)) return undefined;
  const ts = stripPrio((v as Record<string, unknown>).tailscale);
  return ts && typeof ts === "object" && !Array.isArray(ts) ? (ts as Record<string, unknown>) : undefined;
}

function hasOwnHostname(value: unknown): boolean {
  const h = stripPrio(tailscaleOf(value)?.hostname);
  return typeof h === "string" && h !== "";
}

/** The node name a host file asks for: tailscale.hostname, else the file's name. */
function nodeNameOf(value: unknown, host: string): string {
  const h = stripPrio(tailscaleOf(value)?.hostname);
  return typeof h === "string" && h !== "" ? h : host;
}

/**
 * A `.ts` host with a syntax error: named with its line and column before it
 * is run (the module loader's own error is a stack of its internals). tsx,
 * which runs the CLI, brings esbuild; without it the check is skipped and the
 * import's error is reported instead.
 */
async function tsSyntaxProblem(text: string, file: string): Promise<Diagnostic | undefined> {
  let transform: ((code: string, opts: object) => unknown) | undefined;
  try {
    const esbuild = (await import("esbuild")) as { transformSync?: (code: string, opts: object) => unknown; default?: { transformSync?: (code: string, opts: object) => unknown } };
    transform = esbuild.transformSync ?? esbuild.default?.transformSync;
  } catch {
    return undefined;
  }
  if (!transform) return undefined;
  try {
    transform(text, { loader: "ts", format: "esm", logLevel: "silent" });
    return undefined;
  } catch (e) {
    const err = (e as { errors?: { text: string; location?: { line: number; column: number } }[] }).errors?.[0];
    if (!err) return diag(file, "", "TypeScript that parses", firstLine(e), "fix the syntax error");
    const where = err.location ? `line ${err.location.line}:${err.location.column + 1}` : "";
    return diag(file, where, "TypeScript that parses", err.text, "fix the syntax error at that line");
  }
}

/**
 * Checks every host's `imports:` files: inside the hosts folder, regular,
 * parsed once, no cycles. A depth-first walk over the import graph: a file
 * on the current path seen again is a cycle (reported once per cycle); a file
 * already finished keeps its verdict, so a shared file is walked once.
 */
class Imports {
  files: Record<string, SourceFile> = {};
  private parsed = new Map<string, SourceFile | null>();
  private done = new Map<string, boolean>();
  private cycles = new Set<string>();

  constructor(
    private dir: string,
    private root: string,
    private readText: (full: string, file: string, what?: string) => string | undefined,
    private out: Diagnostic[],
  ) {}

  /** True when the host's import graph is sound (evaluation may read it). */
  check(host: SourceFile): boolean {
    const key = path.resolve(host.file);
    this.parsed.set(key, host);
    return this.visit(key, host, []);
  }

  private visit(key: string, source: SourceFile, stack: string[]): boolean {
    const known = this.done.get(key);
    if (known !== undefined) return known;
    stack.push(key);
    const ok = this.walk(source.file, source.value, stack);
    stack.pop();
    this.done.set(key, ok);
    return ok;
  }

  private walk(file: string, value: unknown, stack: string[]): boolean {
    const v = stripPrio(value);
    if (!v || typeof v !== "object" || Array.isArray(v)) return true;
    const list = stripPrio((v as Record<string, unknown>).imports);
    if (!Array.isArray(list)) return true; // evaluation reports a non-list
    let ok = true;
    list.forEach((raw, i) => {
      const imp = stripPrio(raw);
      if (typeof imp !== "string") return; // evaluation reports it
      const at = `imports[${i}]`;
      const isPath = imp.startsWith(".") || imp.includes("/") || imp.includes("\\") || /\.ya?ml$/i.test(imp) || /[\u0000-\u001f\u007f]/.test(imp);
      if (!isPath) return; // a profile name: evaluation checks it
      const bad = (expected: string, found: string, fix: string) => {
        this.out.push(diag(file, at, expected, found, fix));
        ok = false;
      };
      const where = folderPath(imp, file, this.dir, IMPORT_PATH);
      if ("problem" in where) return bad(...where.problem);
      const full = where.full;
      const shown = displayPath(full);
      const cycleAt = stack.indexOf(full);
      if (cycleAt >= 0) {
        ok = false;
        const members = stack.slice(cycleAt);
        const id = [...members].sort().join("\0");
        if (!this.cycles.has(id)) {
          this.cycles.add(id);
          const names = [...members, full].map((f) => path.basename(f));
          this.out.push(diag(file, at, "imports without a cycle (a file cannot import itself, directly or through others)", `the cycle ${names.join(" → ")}`, `remove ${imp} from imports in ${file}`));
        }
        return;
      }
      let source = this.parsed.get(full);
      if (source === undefined && !exists(full)) return bad("a file that exists", quote(imp), `create ${shown} or fix the path`);
      if (source === undefined) {
        source = this.read(full, shown);
        this.parsed.set(full, source);
      } else if (source) this.files[shown] = source; // a host file imported by another: evaluation finds it here too
      if (source === null || !this.visit(full, source, stack)) ok = false;
    });
    return ok;
  }

  private read(full: string, shown: string): SourceFile | null {
    const text = this.readText(full, shown, "an imported file");
    if (text === undefined) return null;
    const r = parseYaml(text, shown);
    this.out.push(...r.diagnostics);
    if (r.value === undefined) return null;
    const val = stripPrio(r.value);
    if (!val || typeof val !== "object" || Array.isArray(val)) {
      this.out.push(diag(shown, "", "a mapping of options (like a host file)", show(stripPrioDeep(val)), "write the file as key: value lines"));
      return null;
    }
    const source = { file: shown, value: r.value };
    this.files[shown] = source;
    return source;
  }
}

