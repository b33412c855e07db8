/** meshfleet render: write every host's bundle files, as they land, and the mesh-wide files. */
import { chmod, lstat, mkdir, readdir, readFile, rmdir, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { allArtifacts } from "../../core/artifacts.ts";
import { evaluateFleet, formatDiagnostics, hasErrors, MeshfleetError } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { fleetFlags, fleetLine, flagHelp, parseArgs, resolveFleet, UsageError } from "../args.ts";
import type { Command } from "../command.ts";
import { renderPolicyFor } from "../policy-for.ts";

/** Marks a folder as render output and lists what the render wrote, so the next render removes only that. */
export const RENDER_MARKER = ".meshfleet-render";
const MARKER_HEAD = "# meshfleet render output; the next `meshfleet render --out` here replaces the files listed below\n";

const flags = [
  ...fleetFlags,
  { name: "out", value: true, help: "output folder (required): new, empty, or an earlier render's; with --policy-for, the file to write" },
  { name: "policy-for", value: true, help: "write only the policy, for another coordinator: tailscale-saas (Tailscale's admin console)" },
];

async function entries(dir: string): Promise<string[] | null> {
  try {
    return await readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    if (code === "ENOTDIR") throw new MeshfleetError(`render --out ${dir}: that is a file, not a folder; nothing was written. Fix: pick a new or empty folder`, [], { cause: e });
    throw e;
  }
}

/** The files an earlier render wrote into `out`, or null when `out` holds something else. */
async function previousRender(out: string): Promise<string[] | null> {
  let text: string;
  try {
    text = await readFile(path.join(out, RENDER_MARKER), "utf8");
  } catch {
    return null;
  }
  if (!text.startsWith(MARKER_HEAD)) return null;
  const files = text.slice(MARKER_HEAD.length).split("\n").filter(Boolean);
  // Only paths inside `out`: a tampered marker must not reach elsewhere.
  return files.filter((f) => !path.isAbsolute(f) && !f.split(/[\\/]/).includes(".."));
}

/** Remove an earlier render's files and the folders they leave empty; anything else stays. */
async function clearPrevious(out: string, files: string[]): Promise<void> {
  const dirs = new Set<string>();
  for (const f of files) {
    const p = path.join(out, f);
    try {
      if ((await lstat(p)).isFile()) await unlink(p);
    } catch {
      // already gone
    }
    for (let d = path.dirname(f); d !== "." && d !== ""; d = path.dirname(d)) dirs.add(d);
  }
  for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
    const left = await entries(path.join(out, d));
    if (left && left.length === 0) await rmdir(path.join(out, d));
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
    const existing = await entries(out);
    const previous = existing && existing.length ? await previousRender(out) : [];
    if (existing && existing.length && previous === null)
      throw new MeshfleetError(
        `render --out ${out}: the folder is not empty and is not an earlier render's output (no ${RENDER_MARKER} file); nothing was written. Fix: pick a new or empty folder`,
      );
    const { dir, stack } = resolveFleet(opts);
    const r = await evaluateFleet(REGISTRY, dir, stack);
    if (!r.fleet || hasErrors(r.diagnostics)) {
      console.error(formatDiagnostics(r.diagnostics));
      console.error(`nothing written: fix the error(s) above first.`);
      return 1;
    }
    const arts = allArtifacts(r.fleet);
    if (previous?.length) await clearPrevious(out, previous);
    await mkdir(out, { recursive: true });
    // The marker first: an interrupted render can still be replaced by the next one.
    await writeFile(path.join(out, RENDER_MARKER), MARKER_HEAD + arts.map((a) => a.path).join("\n") + "\n");
    for (const a of arts) {
      const p = path.join(out, a.path);
      await mkdir(path.dirname(p), { recursive: true });
      const st = await lstat(p).catch(() => null);
      if (st && !st.isFile()) throw new MeshfleetError(`render --out ${out}: ${a.path} is there and is not a regular file (a link or folder); remove it, then render again`);
      await writeFile(p, a.content);
      await chmod(p, parseInt(a.mode, 8));
    }
    if (opts.json) console.log(JSON.stringify({ stack, dir, out, files: arts.map((a) => a.path) }, null, 2));
    else console.log(`${fleetLine({ dir, stack })}: wrote ${arts.length} files for ${Object.keys(r.fleet.hosts).length} hosts to ${out}`);
    return 0;
  },
};
