/** meshfleet render: write every host's bundle files, as they land, and the mesh-wide files. */
import { chmodSync, closeSync, constants, fchmodSync, fstatSync, ftruncateSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmdirSync, rmSync, type Stats, statSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import path from "node:path";
import { evaluateParallel } from "../parallel-eval.ts";
import { evaluateFleet, formatDiagnostics, hasErrors, MeshfleetError } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { fleetFlags, fleetLine, flagHelp, parseArgs, resolveFleet, UsageError } from "../args.ts";
import type { Command } from "../command.ts";
import { renderPolicyFor } from "../policy-for.ts";
import { tuneForShortRun } from "../short-run.ts";

/** Marks a folder as render output and lists what the render wrote, so the next render removes only that. */
export const RENDER_MARKER = ".meshfleet-render";
const MARKER_HEAD = "# meshfleet render output; the next `meshfleet render --out` here replaces the files listed below\n";

const flags = [
  ...fleetFlags,
  { name: "out", value: true, help: "output folder (required): new, empty, or an earlier render's; with --policy-for, the file to write" },
  { name: "policy-for", value: true, help: "write only the policy, for another coordinator: tailscale-saas (Tailscale's admin console)" },
];

// Plain synchronous calls: a 1,000-host render writes ~10,000 small files, and each
// promise call costs a trip through the thread pool (writing them so took 4-6 s).
function entries(dir: string): string[] | null {
  try {
    return readdirSync(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ENOTDIR") throw new MeshfleetError(`render --out ${dir}: that is a file, not a folder; nothing was written. Fix: pick a new or empty folder`, [], { cause: e });
    throw e;
  }
}

/** The files an earlier render wrote into `out`, or null when `out` holds something else. */
function previousRender(out: string): string[] | null {
  let text: string;
  try {
    text = readFileSync(path.join(out, RENDER_MARKER), "utf8");
  } catch {
    return null;
  }
  if (!text.startsWith(MARKER_HEAD)) return null;
  const files = text.slice(MARKER_HEAD.length).split("\n").filter(Boolean);
  // Only paths inside `out`: a tampered marker must not reach elsewhere.
  return files.filter((f) => !path.isAbsolute(f) && !f.split(/[\\/]/).includes(".."));
}

/** What stands at a path: its lstat, or null when nothing does. */
function lstatOrNull(p: string): Stats | null {
  try {
    return lstatSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

/**
 * Over an earlier render, before anything is changed: what already stands
 * where the new render writes, and which of the earlier render's stale files
 * can go. A conflict is refused here, so the earlier render stays as it was.
 *  - A folder the render needs must be a real folder (not a link: files would
 *    land wherever it points) or absent. The one exception is the earlier
 *    render's own stale file where the new layout needs a folder: it goes.
 *  - A file the render writes must be absent, or a regular file the earlier
 *    render wrote (listed in its marker): a user's file, a folder or a link
 *    there is refused.
 *  - A stale file goes only when it is a regular file and every folder above
 *    it inside DIR is a real folder; anything else is left alone, so nothing
 *    outside DIR is reached through a link.
 */
function preflight(
  out: string,
  folders: readonly string[],
  files: readonly string[],
  listed: ReadonlySet<string>,
  stale: ReadonlySet<string>,
): { dirs: Map<string, Stats>; found: Map<string, Stats>; removable: string[] } {
  const real = new Map<string, boolean>([[".", true]]);
  /** Whether d (relative to out) is a real folder, and so is every folder above it. */
  const realDir = (d: string): boolean => {
    let r = real.get(d);
    if (r === undefined) {
      r = realDir(path.dirname(d)) && (lstatOrNull(path.join(out, d))?.isDirectory() ?? false);
      real.set(d, r);
    }
    return r;
  };
  const removable = [...stale].filter((f) => realDir(path.dirname(f)) && (lstatOrNull(path.join(out, f))?.isFile() ?? false));
  const goes = new Set(removable);
  const dirs = new Map<string, Stats>();
  const absent = new Set<string>();
  for (const d of folders) {
    const parent = path.dirname(d);
    if (parent !== "." && !dirs.has(parent)) {
      absent.add(d); // under a folder that is not there: nothing is
      continue;
    }
    const st = lstatOrNull(path.join(out, d));
    if (!st || goes.has(d)) absent.add(d);
    else if (st.isDirectory()) dirs.set(d, st);
    else throw new MeshfleetError(`render --out ${out}: ${d} is there and is not a folder (a link or file), where the render puts a folder; nothing was written. Fix: remove it, then render again`);
  }
  const found = new Map<string, Stats>();
  for (const f of files) {
    const parent = path.dirname(f);
    if (parent !== "." && !dirs.has(parent)) continue;
    const st = lstatOrNull(path.join(out, f));
    if (!st) continue;
    if (!st.isFile()) throw new MeshfleetError(`render --out ${out}: ${f} is there and is not a regular file (a link or folder); remove it, then render again (nothing was written)`);
    if (!listed.has(f))
      throw new MeshfleetError(
        `render --out ${out}: ${f} is there, and the earlier render did not write it (it is not listed in ${RENDER_MARKER}); nothing was written. Fix: move it out of ${out}, then render again`,
      );
    found.set(f, st);
  }
  return { dirs, found, removable };
}

/** Remove the earlier render's stale files (checked by preflight), and the folders they leave empty that the new render does not fill. */
function clearStale(out: string, removable: readonly string[], keep: ReadonlySet<string>): void {
  const dirs = new Set<string>();
  for (const f of removable) {
    try {
      unlinkSync(path.join(out, f));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    for (let d = path.dirname(f); d !== "." && d !== ""; d = path.dirname(d)) dirs.add(d);
  }
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
    if (keep.has(d)) continue;
    const left = entries(path.join(out, d));
    if (left && left.length === 0) rmdirSync(path.join(out, d));
  }
}

/** Every folder the files go in, parents before children (each made once, not once per file). */
function foldersOf(files: readonly string[]): string[] {
  const dirs = new Set<string>();
  for (const f of files)
    for (let d = path.dirname(f); d !== "." && d !== "" && !dirs.has(d); d = path.dirname(d)) dirs.add(d);
  return [...dirs].sort((a, b) => a.length - b.length);
}

/**
 * Write one file at its mode. A new file is created exclusively (O_EXCL: it
 * is not a link or anything else already there), the common case; a path
 * that exists (a file the user put where the render writes) must be a
 * regular file, and is overwritten. The mode is set on the open file when
 * the umask (`masked`: the bits it clears) would change it, and on a file
 * that was there.
 */
function writeArtifact(out: string, rel: string, content: string, mode: number, masked: number): void {
  const p = path.join(out, rel);
  let fd: number;
  let chmod = (mode & masked) !== 0;
  try {
    fd = openSync(p, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, mode);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    if (!lstatSync(p).isFile()) throw new MeshfleetError(`render --out ${out}: ${rel} is there and is not a regular file (a link or folder); remove it, then render again`);
    fd = openSync(p, constants.O_WRONLY | constants.O_TRUNC | constants.O_NOFOLLOW);
    chmod = true;
  }
  try {
    writeFileSync(fd, content);
    if (chmod) fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write a file the earlier render (or the user) left where this one writes:
 * in place, so the file keeps its inode (no unlink and create per file: on
 * ext4 without a journal, new inodes right after many were freed are the
 * slowest part of a render). A file that already holds these bytes is not
 * written at all (it is read and compared). Otherwise the new bytes go over
 * the old and the rest is cut off, never truncating to 0 first: on ext4 a
 * file truncated to 0 and rewritten is flushed at close (auto_da_alloc),
 * which cost more than the writes. O_NOFOLLOW: a link put there since the
 * check is refused. A file with other hard links is replaced instead, so a
 * write reaches nothing outside the folder. The mode is set when it differs.
 */
function overwriteArtifact(out: string, rel: string, content: string, mode: number, st: Stats, masked: number): void {
  const p = path.join(out, rel);
  if (st.nlink > 1) {
    unlinkSync(p);
    return writeArtifact(out, rel, content, mode, masked);
  }
  const bytes = Buffer.from(content);
  // Read-only to compare: a file that holds these bytes needs no write access (a read-only file stays as it is).
  const rd = openSync(p, constants.O_RDONLY | constants.O_NOFOLLOW);
  let same: boolean;
  try {
    const size = fstatSync(rd).size; // now, not at the check
    same = size === bytes.length;
    if (same && size > 0) {
      const old = Buffer.allocUnsafe(size);
      same = readSync(rd, old, 0, size, 0) === size && old.equals(bytes);
    }
    if (same && (fstatSync(rd).mode & 0o7777) !== mode) fchmodSync(rd, mode);
  } finally {
    closeSync(rd);
  }
  if (same) return;
  let fd: number;
  try {
    fd = openSync(p, constants.O_WRONLY | constants.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "EACCES" && code !== "EPERM") throw e;
    // Not writable (its mode was changed): replaced, as a new file, which needs only the folder writable.
    unlinkSync(p);
    return writeArtifact(out, rel, content, mode, masked);
  }
  try {
    for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at, bytes.length - at, at);
    ftruncateSync(fd, bytes.length);
    if ((fstatSync(fd).mode & 0o7777) !== mode) fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

export const command: Command = {
  name: "render",
  flags,
  summary: "write each host's bundle files as they land: DIR/<host>/... and DIR/fleet/...",
  usage: `usage: meshfleet render [--stack S | --hosts-dir DIR] --out DIR [--json]
       meshfleet render --policy-for tailscale-saas --out FILE [--stack S | --hosts-dir DIR] [--json]

Evaluates the fleet and writes, per host, exactly the files its agent writes
(config files, systemd units, the sysctl.d file) at their host paths, plus
what the agent does besides (meshfleet/nftables.nft: the script it loads with
nft -f; meshfleet/tailscale.json: the settings and the up/set argv it runs),
containers and LXC config; and the mesh-wide files (policy HuJSON, DERP
regions, DNS, users, keys to make). Secret files are listed in
<host>/meshfleet/SECRETS, never written.

DIR must be new, empty, or the output of an earlier render (it holds a
${RENDER_MARKER} file); an earlier render's files are replaced, nothing else
in DIR is touched.

With --policy-for tailscale-saas, writes only the policy, as the file
Tailscale's admin console takes: users become logins (fleet.yaml
tailscaleSaas: loginDomain, logins), the autoApprovers the hosts imply are
written out. It then evaluates the fleet under both policies and says whether
every test line and every (source, destination) pair comes out the same;
exit 1 when they differ or a user has no login (then nothing is written).

${flagHelp(flags)}`,
  async run(argv) {
    tuneForShortRun();
    const { opts } = parseArgs(argv, flags, { positionals: [] });
    if (typeof opts.out !== "string" || !opts.out) throw new UsageError("render needs --out DIR");
    const out = opts.out;
    if (typeof opts["policy-for"] === "string") {
      const { dir, stack } = resolveFleet(opts);
      const r = await evaluateFleet(REGISTRY, dir, stack);
      if (!r.fleet || hasErrors(r.diagnostics)) {
        console.error(formatDiagnostics(r.diagnostics));
        console.error(`nothing written: fix the error(s) above first.`);
        return 1;
      }
      return renderPolicyFor(opts["policy-for"], r.fleet, out, !!opts.json);
    }
    const existing = entries(out);
    const previous = existing && existing.length ? previousRender(out) : [];
    if (existing && existing.length && previous === null)
      throw new MeshfleetError(
        `render --out ${out}: the folder is not empty and is not an earlier render's output (no ${RENDER_MARKER} file); nothing was written. Fix: pick a new or empty folder`,
      );
    const { dir, stack } = resolveFleet(opts);
    // evaluateFleet + allArtifacts, shared among threads for a large fleet (the same files and diagnostics).
    const r = await evaluateParallel(dir, stack, { render: true, keepHosts: false });
    if (!r.artifacts || hasErrors(r.diagnostics)) {
      console.error(formatDiagnostics(r.diagnostics));
      console.error(`nothing written: fix the error(s) above first.`);
      return 1;
    }
    const arts = r.artifacts;
    const files = arts.map((a) => a.path);
    const folders = foldersOf(files);
    // Over an earlier render: check everything that stands in the way first (a conflict leaves it
    // untouched), remove only its stale files, and overwrite the rest in place.
    let dirs = new Map<string, Stats>();
    let found = new Map<string, Stats>();
    const over = previous !== null && !!existing?.length;
    if (over) {
      const writes = new Set(files);
      const stale = new Set(previous.filter((f) => !writes.has(f)));
      let removable: string[];
      ({ dirs, found, removable } = preflight(out, folders, files, new Set(previous), stale));
      if (removable.length) clearStale(out, removable, new Set(folders));
    }
    // A new or empty DIR is written whole beside it (a hidden folder in its parent) and renamed into
    // place (over the empty folder), so it never exists half-written; an error removes that folder
    // (a killed render leaves it). An earlier render's DIR is written where it is: one interrupted
    // leaves some files old under the new marker, and the next render replaces them.
    const st = lstatOrNull(out);
    const whole = !over && (st === null || (st.isDirectory() && existing?.length === 0));
    let at = out;
    if (whole) {
      const parent = path.dirname(path.resolve(out));
      mkdirSync(parent, { recursive: true });
      at = mkdtempSync(path.join(parent, `.${path.basename(path.resolve(out))}.meshfleet-render-`));
    } else mkdirSync(out, { recursive: true });
    try {
      // The marker first, made whole beside the earlier one and renamed over it (never a moment with
      // none): an interrupted render can still be replaced by the next one.
      const marker = path.join(at, RENDER_MARKER);
      const next = `${marker}.next`;
      rmSync(next, { force: true });
      writeFileSync(next, MARKER_HEAD + files.join("\n") + "\n", { mode: 0o777, flag: "wx" });
      // The bits the umask clears, read off the new marker (made 0777, then set to 0644): a new
      // file's mode needs a chmod only when the umask clears one of its bits (not under the usual 022).
      const masked = 0o777 & ~statSync(next).mode;
      chmodSync(next, 0o644);
      renameSync(next, marker);
      const folderMode = 0o777 & ~masked; // as mkdir makes them
      for (const d of folders) {
        const had = dirs.get(d);
        if (had) {
          if ((had.mode & 0o7777) !== folderMode) chmodSync(path.join(at, d), folderMode);
          continue;
        }
        // Checked absent (or a stale file since removed): something there now was put there meanwhile.
        mkdirSync(path.join(at, d));
      }
      for (const a of arts) {
        const had = found.get(a.path);
        if (had) overwriteArtifact(at, a.path, a.content, parseInt(a.mode, 8), had, masked);
        else writeArtifact(at, a.path, a.content, parseInt(a.mode, 8), masked);
      }
      if (whole) {
        chmodSync(at, folderMode);
        renameSync(at, out);
      }
    } catch (e) {
      if (whole) rmSync(at, { recursive: true, force: true });
      throw e;
    }
    if (opts.json) console.log(JSON.stringify({ stack, dir, out, files }, null, 2));
    else console.log(`${fleetLine({ dir, stack })}: wrote ${arts.length} files for ${r.hostNames!.length} hosts to ${out}`);
    return 0;
  },
};
