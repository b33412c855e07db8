/** meshfleet render: write every artifact per host and mesh-wide. */
import { mkdir, rm, writeFile, chmod } from "node:fs/promises";
import path from "node:path";
import { allArtifacts } from "../../core/artifacts.ts";
import { evaluateFleet, formatDiagnostics, hasErrors, MeshfleetError } from "../../core/index.ts";
import { fleetDir, fleetFlags, flagHelp, parseArgs } from "../args.ts";
import type { Command } from "../main.ts";

const flags = [...fleetFlags, { name: "out", value: true, help: "output folder (required); emptied first" }];

export const command: Command = {
  name: "render",
  summary: "write every rendered file: DIR/<host>/... and DIR/fleet/...",
  usage: `usage: meshfleet render [--stack S | --hosts-dir DIR] --out DIR [--json]\n\nEvaluates the fleet and writes what each host gets (config files, systemd\nunits, sysctl, the nftables table, tailscale flags, containers, LXC config)\nand the mesh-wide files (policy HuJSON, DERP regions, DNS, users, keys to\nmake). Secret files are listed in <host>/meshfleet/SECRETS, never written.\n\n${flagHelp(flags)}`,
  async run(argv) {
    const { opts } = parseArgs(argv, flags);
    if (typeof opts.out !== "string") throw new MeshfleetError("render needs --out DIR");
    const { dir, stack } = fleetDir(opts);
    const r = await evaluateFleet(dir, stack);
    if (!r.fleet || hasErrors(r.diagnostics)) {
      console.error(formatDiagnostics(r.diagnostics));
      console.error(`nothing written: fix the error(s) above first.`);
      return 1;
    }
    const out = opts.out;
    await rm(out, { recursive: true, force: true });
    const arts = allArtifacts(r.fleet);
    for (const a of arts) {
      const p = path.join(out, a.path);
      await mkdir(path.dirname(p), { recursive: true });
      await writeFile(p, a.content);
      await chmod(p, parseInt(a.mode, 8));
    }
    if (opts.json) console.log(JSON.stringify({ out, files: arts.map((a) => a.path) }, null, 2));
    else console.log(`wrote ${arts.length} files for ${Object.keys(r.fleet.hosts).length} hosts to ${out}`);
    return 0;
  },
};
