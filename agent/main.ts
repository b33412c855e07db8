/**
 * meshfleet-agent: applies this host's meshfleet generations. Bundled into
 * one file (dist/meshfleet-agent.mjs) that runs on the host's own Node 18.
 */
import { AgentError } from "./activate.ts";
import { realHost } from "./host.ts";
import { renderMetrics, tailscaleMetrics } from "./metrics.ts";
import {
  doBootFirewall,
  doConfirm,
  doDiff,
  doGc,
  doGuardExpire,
  doPeers,
  doRollback,
  doSwitch,
  loadCurrent,
  refreshMetrics,
  withRecovery,
  type Ctx,
} from "./ops.ts";
import { State } from "./state.ts";
import { useTailscaleCli } from "./peers.ts";
import { findDrift, sharingTailscaleStatus } from "./verify.ts";

/** Printed by `confirm --status` before the status document (the provider's inspect.ts reads it). */
const STATUS_MARK = "@@meshfleet-status@@";

interface Command {
  usage: string;
  summary: string;
  help: string;
  run(ctx: Ctx, args: string[], flags: Map<string, string | true>): number | Promise<number>;
}

const num = (flag: string, v: string | true | undefined): number | undefined => {
  if (v === undefined) return undefined;
  if (v === true || !/^\d+$/.test(v)) throw new AgentError(`${flag}: expected a whole number, found ${v === true ? "nothing" : JSON.stringify(v)}`);
  return Number(v);
};

const COMMANDS: Record<string, Command> = {
  switch: {
    usage: "switch <bundle.json> [--confirm-timeout S] [--keep N]",
    summary: "stage and activate a bundle as a new generation",
    help: `Checks the bundle against its contract (format, fields, paths, hashes)
before touching anything, stages it as generation N, then activates: files,
sysctl, the nft table (one transaction), systemd units, tailscale; then runs
the bundle's health probes. A failing step or probe rolls back to the previous
generation. The bundle that is already current is re-applied where the host
drifted from it (what \`verify\` reports: a flushed table, an edited file, a
stopped unit, a foreign drop-in), else it is a no-op. A bundle under the
state folder's incoming/ is deleted once read.
  --confirm-timeout S   start a lockout guard: unless \`confirm\` runs within S
                        seconds (over a new ssh connection), roll back by itself
  --keep N              generations kept after a successful switch (default 10);
                        only the current one and the next rollback target keep
                        their secrets
  --repair              accepted for older deploys (repairing is the default)`,
    run: (ctx, args, flags) => {
      if (args.length !== 1) throw new AgentError("switch: expected one bundle file (usage: switch <bundle.json> [--confirm-timeout S])");
      return doSwitch(ctx, args[0], { confirmTimeoutS: num("--confirm-timeout", flags.get("confirm-timeout")), repair: flags.has("repair"), keep: num("--keep", flags.get("keep")) });
    },
  },
  confirm: {
    usage: "confirm [HASH] [--status]",
    summary: "keep the generation a guarded switch activated",
    help: `Stops the lockout guard of the last \`switch --confirm-timeout\`, keeping its generation.
With HASH (a bundle hash), fails unless that generation is the current one (the guard may have rolled it back).
Without HASH, fails when the guard already rolled the last switch back.
  --status   once confirmed, print a line ${STATUS_MARK} and then what
             \`status --json --verify\` prints, from the same process (the deploy
             reads the host with the confirm's own connection). The exit code is
             the confirm's: a status that cannot be read says so on stderr only.`,
    run: (ctx, args, flags) => {
      const code = doConfirm(ctx, args[0]);
      if (code !== 0 || !flags.has("status")) return code;
      try {
        const doc = statusReport(ctx, true);
        ctx.log(STATUS_MARK);
        ctx.log(JSON.stringify(doc, null, 2));
      } catch (e) {
        // The generation is confirmed whatever happens here: the deploy reads the status again.
        process.stderr.write(`meshfleet-agent: confirmed, but the status could not be read: ${(e as Error).message}\n`);
      }
      return code;
    },
  },
  rollback: {
    usage: "rollback [N] [--confirm-timeout S]",
    summary: "make generation N (default: the previous one) current again",
    help: "Activates an older generation; files, sysctls, the nft table, units and tailscale settings follow it.\n`rollback 0` releases everything meshfleet owns (restoring files it had replaced).",
    run: (ctx, args, flags) => doRollback(ctx, num("N", args[0]), num("--confirm-timeout", flags.get("confirm-timeout"))),
  },
  status: {
    usage: "status [--json] [--verify]",
    summary: "show the current generation, a pending confirm and the last switch",
    help: "Prints the current generation, whether it awaits confirm, and the last switch's result.\nWith --verify, also what `verify` finds (one process for both: `meshfleet status` reads a host with one call).",
    run: (ctx, _a, flags) => {
      const s = statusReport(ctx, flags.has("verify"));
      if (flags.has("json")) ctx.log(JSON.stringify(s, null, 2));
      else {
        ctx.log(s.generation ? `host ${s.host}: generation ${s.generation} (bundle ${s.hash!.slice(0, 12)}, created ${s.createdAt})` : "no generation is active");
        const p = s.pendingConfirm;
        if (p) ctx.log(`awaiting confirm of generation ${p.generation}: ${p.secondsLeft}s left, else rollback to ${p.previous}`);
        const last = s.lastSwitch;
        if (last) ctx.log(`last switch: generation ${last.generation} ${last.success ? "succeeded" : `failed (${last.error})`} at ${new Date(last.timestamp).toISOString()}`);
        if (s.verify) ctx.log(s.verify.clean ? "no drift" : `${s.verify.drift.length} drift item(s): ${s.verify.drift.map((d) => `${d.kind} ${d.subject}`).join(", ")}`);
      }
      return 0;
    },
  },
  verify: {
    usage: "verify [--json]",
    summary: "compare the live host with the current generation (exit 1 on drift)",
    help: "Checks owned files (content, mode, owner), sysctls, table inet meshfleet, units and tailscale settings.",
    run: (ctx, _a, flags) =>
      withRecovery(ctx, false, () => {
        const g = loadCurrent(ctx);
        const report = verifyReport(ctx, g);
        const drift = report.drift;
        if (flags.has("json")) ctx.log(JSON.stringify(report, null, 2));
        else if (drift.length === 0) ctx.log(`generation ${g.n}: no drift`);
        else {
          ctx.log(`generation ${g.n}: ${drift.length} drift item(s):`);
          for (const d of drift) ctx.log(`  ${d.kind} ${d.subject}: ${d.detail}`);
        }
        return drift.length === 0 ? 0 : 1;
      }),
  },
  diff: {
    usage: "diff <bundle.json>",
    summary: "show what a switch to this bundle would change (a dry activate)",
    help: "Reads the live host and prints each change a switch would make; secret contents are never shown.",
    run: (ctx, args) => {
      if (args.length !== 1) throw new AgentError("diff: expected one bundle file (usage: diff <bundle.json>)");
      return doDiff(ctx, args[0]);
    },
  },
  generations: {
    usage: "generations [--json]",
    summary: "list generations",
    help: "Lists every kept generation with its state; `*` marks the current one. A generation whose secrets\nwere pruned (`switch --keep`) cannot be rolled back to (secretsPruned in --json).",
    run: (ctx, _a, flags) =>
      withRecovery(ctx, false, () => {
        const cur = ctx.state.currentNumber();
        const rows = ctx.state.generationNumbers().map((n) => {
          const g = ctx.state.load(n);
          return { generation: n, current: n === cur, status: g.meta.status, createdAt: g.meta.createdAt, hash: g.meta.hash, error: g.meta.error, secretsPruned: g.meta.secretsPruned === true };
        });
        if (flags.has("json")) ctx.log(JSON.stringify(rows, null, 2));
        else for (const r of rows) ctx.log(`${r.current ? "*" : " "} ${String(r.generation).padStart(4)}  ${r.createdAt}  ${r.hash.slice(0, 12)}  ${r.status}${r.error ? ` (${r.error})` : ""}${r.secretsPruned ? " (secrets pruned: cannot be rolled back to)" : ""}`);
        return 0;
      }),
  },
  gc: {
    usage: "gc [--keep N]",
    summary: "delete old generations (keeps the newest N, default 5, and the current one)",
    help: "Removes generation records only; the live host is not touched.",
    run: (ctx, _a, flags) => doGc(ctx, num("--keep", flags.get("keep")) ?? 5),
  },
  metrics: {
    usage: "metrics [--print]",
    summary: "write the Prometheus textfile (tailscale and meshfleet gauges)",
    help: "Writes meshfleet.prom atomically into the generation's metrics.textfileDir; --print also prints it.",
    run: (ctx, _a, flags) =>
      withRecovery(ctx, false, () => {
        const file = refreshMetrics(ctx);
        if (flags.has("print")) {
          const g = loadCurrent(ctx);
          ctx.log(file ? ctx.host.readFile(file) ?? "" : renderMetrics({ ...tailscaleMetrics(ctx.host), generation: g.n, drift: findDrift(ctx.host, g).length, lastSwitchSuccess: 0, lastSwitchTimestamp: 0 }));
        }
        if (file) ctx.log(`wrote ${file}`);
        else ctx.log("metrics are off in the current generation; nothing written");
        return 0;
      }),
  },
  peers: {
    usage: "peers [--repin]",
    summary: "refresh the policy's peer sets (host-side enforcement) from tailscale status",
    help: `Fills the peers_* sets of table inet meshfleet with the live tailnet addresses of the hosts
the fleet's policy lets in. Run by meshfleet-peers.timer; a no-op where the policy is not enforced.
A host is known by the node key it was first seen with under its coordinator-assigned name (never
the name a node reports); another key under that name is refused until \`--repin\`.
  --repin   pin every allowed host to the node the coordinator lists under its name now`,
    run: (ctx, _a, flags) => doPeers(ctx, flags.has("repin")),
  },
  "boot-firewall": {
    usage: "boot-firewall",
    summary: "at boot, before the network: load the current generation's nft table",
    help: `Run by meshfleet-firewall.service, ordered before network-pre.target: the kernel
starts without table inet meshfleet, so this loads the current generation's table
(peer sets filled with the pinned addresses) before any interface is up.`,
    run: (ctx) => doBootFirewall(ctx),
  },
  "guard-expire": {
    usage: "guard-expire <N>",
    summary: "(internal) the lockout guard's action",
    help: "Rolls back generation N unless it was confirmed. Run by the guard timer.",
    run: (ctx, args) => doGuardExpire(ctx, num("N", args[0]) ?? 0),
  },
  boot: {
    usage: "boot",
    summary: "at boot: finish or roll back an interrupted switch, keep an unconfirmed generation's guard",
    help: `Run by meshfleet-boot.service. The lockout guard is a transient timer that
a reboot loses: this recovers an interrupted switch, rolls back a generation
whose confirm deadline passed, and otherwise waits out the deadline itself.`,
    run: async (ctx) => {
      // Waits for the lock (a flock: no stale owner can hold it across a reboot), then recovers.
      withRecovery(ctx, true, () => undefined);
      try {
        // Where meshfleet-firewall.service is missing (an older bundle) or failed.
        doBootFirewall(ctx);
      } catch (e) {
        ctx.log(`boot: ${(e as Error).message}`);
      }
      const p = ctx.state.pending();
      if (!p) {
        ctx.log("boot: no generation awaits confirm");
        return 0;
      }
      ctx.log(`boot: generation ${p.generation} awaits confirm; rolling back to ${p.previous} at ${new Date(p.deadline).toISOString()} unless it comes`);
      await new Promise((r) => setTimeout(r, Math.max(0, p.deadline - Date.now())));
      return ctx.state.pending()?.generation === p.generation ? doGuardExpire(ctx, p.generation) : 0;
    },
  },
  "guard-wait": {
    usage: "guard-wait <N> <deadline-ms>",
    summary: "(internal) detached guard: wait, then guard-expire",
    help: "Sleeps until the deadline, then acts like guard-expire.",
    run: async (ctx, args) => {
      const n = num("N", args[0]) ?? 0;
      const deadline = num("deadline", args[1]) ?? 0;
      await new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())));
      return doGuardExpire(ctx, n);
    },
  },
};

function mainHelp(): string {
  const rows = Object.entries(COMMANDS)
    .filter(([n]) => !n.startsWith("guard-"))
    .map(([, c]) => `  ${c.usage.padEnd(46)} ${c.summary}`);
  return [
    "usage: meshfleet-agent <command> [args] [--root DIR] [--debug]",
    "",
    "Applies this host's meshfleet generations atomically (state in /var/lib/meshfleet).",
    "",
    "commands:",
    ...rows,
    "",
    "  --root DIR   act on DIR as if it were / (tests); also MESHFLEET_ROOT",
    "  --debug      print stack traces",
    "Run `<command> --help` for details.",
  ].join("\n");
}

/** What `status --json` prints (with `verify` embedded when asked). */
function statusReport(ctx: Ctx, withVerify: boolean) {
  return withRecovery(ctx, false, () => {
    const g = loadCurrent(ctx);
    const p = ctx.state.pending();
    return {
      host: g.n ? g.bundle.host : null,
      generation: g.n,
      hash: g.n ? g.bundle.hash : null,
      createdAt: g.n ? g.meta.createdAt : null,
      pendingConfirm: p ? { generation: p.generation, previous: p.previous, secondsLeft: Math.max(0, Math.round((p.deadline - Date.now()) / 1000)) } : null,
      lastSwitch: ctx.state.lastSwitch(),
      interrupted: ctx.state.journal(),
      ...(withVerify ? { verify: verifyOrNull(ctx, g) } : {}),
    };
  });
}

/**
 * The verify report, or null when verify itself fails (said on stderr): the
 * status still prints and exits 0, and the provider reads null as drift
 * (parseInspect), so a broken verify is drift, not a failed deploy after its confirm.
 */
function verifyOrNull(ctx: Ctx, g: ReturnType<typeof loadCurrent>) {
  try {
    return verifyReport(ctx, g);
  } catch (e) {
    process.stderr.write(`meshfleet-agent: verify failed: ${(e as Error).message}\n`);
    return null;
  }
}

/** What `verify` reports (and `status --verify` embeds); the metrics are refreshed as a side output. */
function verifyReport(ctx: Ctx, g: ReturnType<typeof loadCurrent>) {
  const c: Ctx = { ...ctx, host: sharingTailscaleStatus(ctx.host) };
  const drift = findDrift(c.host, g);
  try {
    refreshMetrics(c, drift.length);
  } catch {
    // metrics are a side output of verify; the verdict stands without them
  }
  return { generation: g.n, clean: drift.length === 0, drift };
}

function parse(argv: string[]): { positional: string[]; flags: Map<string, string | true> } {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  const valued = new Set(["confirm-timeout", "keep", "root"]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const [k, v] = a.slice(2).split("=", 2);
      if (v !== undefined) flags.set(k, v);
      else if (valued.has(k)) {
        if (i + 1 >= argv.length) throw new AgentError(`--${k}: expected a value`);
        flags.set(k, argv[++i]);
      } else flags.set(k, true);
    } else if (a === "-h") flags.set("help", true);
    else positional.push(a);
  }
  return { positional, flags };
}

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  try {
    const { positional, flags } = parse(argv);
    const [name, ...args] = positional;
    if (!name) {
      process.stdout.write(mainHelp() + "\n");
      return flags.has("help") ? 0 : 2;
    }
    const cmd = COMMANDS[name];
    if (!cmd) throw new AgentError(`unknown command ${JSON.stringify(name)}; run --help for the list`);
    if (flags.has("help")) {
      process.stdout.write(`usage: meshfleet-agent ${cmd.usage}\n\n${cmd.help}\n`);
      return 0;
    }
    const root = (flags.get("root") as string | undefined) ?? process.env.MESHFLEET_ROOT ?? "/";
    const host = realHost(root);
    const ctx: Ctx = { host, state: new State(host), log: (l) => process.stdout.write(l + "\n") };
    try {
      useTailscaleCli(loadCurrent(ctx).bundle);
    } catch {
      /* no generation yet: `tailscale` from PATH */
    }
    return await cmd.run(ctx, args, flags);
  } catch (e) {
    if (e instanceof AgentError) {
      process.stderr.write(`meshfleet-agent: ${e.message}\n`);
      if (debug) process.stderr.write(`${e.stack}\n`);
      return 1;
    }
    process.stderr.write(`meshfleet-agent: internal error: ${(e as Error).message}${debug ? `\n${(e as Error).stack}` : " (run with --debug for the stack)"}\n`);
    return 70;
  }
}

// A switch must outlive its SSH session: a dropped connection neither stops it (SIGHUP) nor crashes it (EPIPE).
process.on("SIGHUP", () => {});
process.stdout.on("error", () => {});
process.stderr.on("error", () => {});

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
