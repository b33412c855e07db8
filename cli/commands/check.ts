/** meshfleet check: validate and evaluate a fleet; every problem, then exit 1 on any error. */
// Direct imports, not core/index.ts: check needs neither the bundle format (zod/mini) nor key derivation (@noble),
// and a cold `meshfleet check` pays for every module it loads.
import { evaluateFleet } from "../../core/eval.ts";
import { inPolicyFile } from "../../core/load.ts";
import { formatDiagnostics, hasErrors } from "../../core/diagnostics.ts";
import { REGISTRY } from "../../modules/index.ts";
import { fleetFlags, fleetLine, flagHelp, parseArgs, resolveFleet } from "../args.ts";
import type { Command } from "../command.ts";
import { runFleetTests } from "../../core/policy/fleet.ts";
import { readNodesFile } from "../../core/policy/live.ts";
import type { Flag } from "../args.ts";
import { tuneForShortRun } from "../short-run.ts";

const flags: Flag[] = [
  ...fleetFlags,
  { name: "nodes", value: true, help: "the coordinator's nodes (headscale nodes list --output json saved to a file): evaluate the policy's tests on their real addresses" },
];

export const command: Command = {
  name: "check",
  summary: "validate and evaluate a fleet, run the policy's tests, print every problem",
  flags,
  usage: `usage: meshfleet check [--stack S | --hosts-dir DIR] [--nodes FILE] [--json]

Reads hosts/<stack>/fleet.yaml and the host files, evaluates every module,
runs the policy's tests and sshTests, and prints each problem (to stderr) as
file: option path: expected, found, fix. The tests run on stand-in node
addresses unless --nodes gives the coordinator's own list (headscale nodes
list --output json): then joined hosts take their real addresses and the
other nodes (users' devices) take part, as in headscale's own policy check.
Exit 0 when the fleet is valid (warnings allowed), 1 when it has errors,
2 for a command line it cannot take.

${flagHelp(flags)}`,
  async run(argv) {
    tuneForShortRun();
    const { opts } = parseArgs(argv, flags, { positionals: [] });
    const { dir, stack } = resolveFleet(opts);
    const t0 = performance.now();
    const live = typeof opts.nodes === "string" ? readNodesFile(opts.nodes) : undefined;
    const r = await evaluateFleet(REGISTRY, dir, stack);
    const tests = r.fleet && !(live && hasErrors(live.diagnostics)) ? runFleetTests(r.fleet, { live: live?.nodes, liveFile: live?.file }) : { results: [], diagnostics: [] };
    const diagnostics = [...(live?.diagnostics ?? []), ...r.diagnostics, ...(r.fleet ? inPolicyFile(tests.diagnostics, r.fleet.dir, r.fleet.policyFile) : [])];
    const ok = !hasErrors(diagnostics);
    if (opts.json) {
      console.log(JSON.stringify({ ok, stack, dir, hosts: r.fleet ? Object.keys(r.fleet.hosts) : [], diagnostics, policyTests: tests.results }, null, 2));
    } else {
      if (diagnostics.length) console.error(formatDiagnostics(diagnostics));
      const ms = Math.round(performance.now() - t0);
      if (ok) {
        const n = Object.keys(r.fleet!.hosts).length;
        const passed = tests.results.filter((x) => x.pass).length;
        console.log(`ok: ${fleetLine({ dir, stack })}: ${n} hosts evaluated${tests.results.length ? `, ${passed}/${tests.results.length} policy tests pass` : ""} (${ms} ms)`);
      } else console.error(`${diagnostics.filter((d) => d.severity === "error").length} error(s) in ${fleetLine({ dir, stack })}; nothing was deployed.`);
    }
    return ok ? 0 : 1;
  },
};
