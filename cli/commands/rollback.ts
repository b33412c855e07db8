/**
 * `meshfleet rollback --stack S --on HOST [--to N] --yes`: make an older
 * generation current again, through the host's agent with the lockout
 * guard: `rollback N --confirm-timeout S` over the run's connection, then
 * `confirm HASH` over a NEW SSH connection. A rollback that cut SSH (an
 * older firewall, sshd settings) is never confirmed, and the host's guard
 * puts the previous generation back by itself.
 *
 * The stack's state still records the newer generation: `meshfleet preview
 * --stack S --refresh` shows the host would change, `meshfleet up --stack S
 * --refresh` brings it back to what the fleet in git says.
 */
import { MeshfleetError } from "../../core/diagnostics.ts";
import { flagHelp, parseArgs, type Flag } from "../args.ts";
import type { Command } from "../command.ts";
import { agentCommand, connectionTo, jsonOr, newSession, openStackFleet, stackFlags, tryRun, type StackAccess } from "../fleet-hosts.ts";
import { generationLines, oneHost, readGenerations, type GenerationRow } from "./generations.ts";

const flags: Flag[] = [
  ...stackFlags,
  { name: "to", value: true, help: "the generation to make current (default: the one before the current; see `meshfleet generations`)" },
  { name: "confirm-timeout", value: true, help: "seconds the host waits for the confirm before undoing the rollback (default: meshfleet:confirmTimeoutSeconds, else 120)" },
  { name: "yes", help: "go ahead (without it, rollback only shows what it would do)" },
];

export interface RollbackResult {
  host: string;
  from: { generation: number; hash: string } | null;
  to: { generation: number; hash: string } | null;
  confirmed: boolean;
  drift: { kind: string; subject: string; detail: string }[];
  dryRun: boolean;
}

interface AgentStatusJson {
  generation: number;
  hash: string | null;
  pendingConfirm: unknown;
}

export async function rollback(a: StackAccess, o: { to?: number; confirmTimeoutSeconds: number; dryRun: boolean; say: (l: string) => void }): Promise<RollbackResult> {
  const h = oneHost(a, "rollback");
  const session = newSession();
  try {
    const gens = await readGenerations(a, h, session);
    const cur = gens.find((g) => g.current);
    if (!cur) throw new MeshfleetError(`host ${h.name}: no generation is current, so there is nothing to roll back`);
    let target: GenerationRow | undefined;
    if (o.to !== undefined) {
      target = gens.find((g) => g.generation === o.to);
      if (!target) throw new MeshfleetError(`--to ${o.to}: host ${h.name} has no generation ${o.to} (it has ${gens.map((g) => g.generation).join(", ")}; see \`meshfleet generations ${a.stackArgs} --on ${h.name}\`)`);
      if (target.current) throw new MeshfleetError(`--to ${o.to}: generation ${o.to} is already current on ${h.name}; nothing to do`);
      if (target.status === "failed") throw new MeshfleetError(`--to ${o.to}: generation ${o.to} failed when it was activated (${target.error ?? "see its log"}); pick another`);
    } else {
      // The agent's own rule: the newest older generation that did not fail.
      target = gens.filter((g) => g.generation < cur.generation && g.status !== "failed").pop();
      if (!target) throw new MeshfleetError(`host ${h.name}: no generation before ${cur.generation} to roll back to (generations: ${gens.map((g) => g.generation).join(", ")})`);
    }
    const base = { host: h.name, from: { generation: cur.generation, hash: cur.hash }, to: { generation: target.generation, hash: target.hash } };
    if (o.dryRun) {
      for (const l of generationLines(h.name, gens)) o.say(l);
      o.say(`would roll ${h.name} back from generation ${cur.generation} (${cur.hash.slice(0, 12)}) to ${target.generation} (${target.hash.slice(0, 12)}); nothing was changed. Add --yes to do it`);
      return { ...base, confirmed: false, drift: [], dryRun: true };
    }
    const c = connectionTo(a, h);
    o.say(`${h.name}: rolling back from generation ${cur.generation} to ${target.generation} (lockout guard: ${o.confirmTimeoutSeconds}s)`);
    const rb = await tryRun(session, c, `${agentCommand(h, ["rollback", String(target.generation), "--confirm-timeout", String(o.confirmTimeoutSeconds)])} || exit $?\n${agentCommand(h, ["status", "--json"])}`, { what: `agent rollback ${target.generation}`, timeoutMs: 300_000 });
    if (rb.error || rb.code !== 0) {
      throw new MeshfleetError(`host ${h.name}: the rollback to generation ${target.generation} failed${rb.error ? `: ${rb.error}` : ` (exit ${rb.code}): ${(rb.stderr || rb.stdout).trim().slice(-400)}`}. If it was cut off midway, the host's guard returns it to generation ${cur.generation} within ${o.confirmTimeoutSeconds}s; check with \`meshfleet status ${a.stackArgs} --on ${h.name}\``);
    }
    // The confirm proves a NEW connection still gets in after the rollback.
    const conf = await tryRun(session, c, `${agentCommand(h, ["confirm", target.hash])} || exit $?\n${agentCommand(h, ["status", "--json"])}\necho @@mf:verify@@\n${agentCommand(h, ["verify", "--json"])} || true`, { what: `agent confirm ${target.hash.slice(0, 12)}`, fresh: true, timeoutMs: 120_000 });
    if (conf.error || conf.code !== 0) {
      throw new MeshfleetError(
        `host ${h.name}: generation ${target.generation} could not be confirmed over a new SSH connection (${conf.error ?? (conf.stderr || conf.stdout).trim().slice(0, 300)}); the host's lockout guard puts generation ${cur.generation} back within ${o.confirmTimeoutSeconds}s. Check afterwards with \`meshfleet status ${a.stackArgs} --on ${h.name}\``,
      );
    }
    const [statusText, verifyText = ""] = conf.stdout.split("@@mf:verify@@");
    const st = jsonOr<AgentStatusJson>(statusText!.slice(statusText!.indexOf("{")));
    const vf = jsonOr<{ drift: { kind: string; subject: string; detail: string }[] }>(verifyText);
    if (!st || st.hash !== target.hash) throw new MeshfleetError(`host ${h.name}: after the confirm the agent reports ${st ? `generation ${st.generation} (${st.hash?.slice(0, 12)})` : "no status"}, not ${target.generation} (${target.hash.slice(0, 12)})`);
    const drift = vf?.drift ?? [];
    o.say(`${h.name}: generation ${target.generation} (${target.hash.slice(0, 12)}) is current and confirmed over a new SSH connection; ${drift.length ? `${drift.length} drift item(s): ${drift.map((d) => `${d.kind} ${d.subject}`).join(", ")}` : "no drift"}`);
    if (target.generation > cur.generation) o.say(`\`meshfleet preview ${a.stackArgs} --refresh\` shows whether ${h.name} now matches what the stack last deployed.`);
    else o.say(`${h.name} is now behind the fleet in git (generation ${cur.generation}). \`meshfleet preview ${a.stackArgs} --refresh\` shows what \`up\` would change; \`meshfleet up ${a.stackArgs} --refresh\` brings it back, \`meshfleet rollback ${a.stackArgs} --on ${h.name} --to ${cur.generation} --yes\` too.`);
    return { ...base, confirmed: true, drift, dryRun: false };
  } finally {
    session.close();
  }
}

export const command: Command = {
  name: "rollback",
  summary: "make an older generation current on a host (agent rollback, confirmed over a new SSH connection)",
  usage: `usage: meshfleet rollback --stack S --on HOST [--to N] [--confirm-timeout S] --yes [--json]

Makes generation N (default: the one before the current) current again on
HOST through its agent, with the lockout guard: the agent rolls back and
waits; meshfleet then confirms the generation's hash over a NEW SSH
connection. If that connection cannot be made (the older generation's
firewall or sshd shut it out), nothing confirms it and the host goes back
to the generation it ran, by itself, after the timeout.

Afterwards the host is behind the fleet in git: \`meshfleet status\` shows
the older generation, \`meshfleet preview --stack S --refresh\` what \`up\`
would change, and \`meshfleet up --stack S --refresh\` brings it back.
Without --yes it only shows what it would do.

${flagHelp(flags)}`,
  async run(argv) {
    const { opts, lists } = parseArgs(argv, flags, { positionals: [], hint: "the host goes with --on, the generation with --to" });
    if (typeof opts.stack !== "string") throw new MeshfleetError("meshfleet rollback: which stack? Add --stack S");
    const num = (flag: string, v: unknown, min: number) => {
      if (v === undefined) return undefined;
      if (typeof v !== "string" || !/^\d+$/.test(v) || Number(v) < min) throw new MeshfleetError(`--${flag}: expected a whole number ≥ ${min}, found ${JSON.stringify(v)}`);
      return Number(v);
    };
    const to = num("to", opts.to, 1);
    const a = await openStackFleet({ stack: opts.stack, configFile: typeof opts["config-file"] === "string" ? opts["config-file"] : undefined, on: lists.on });
    const confirmTimeoutSeconds = num("confirm-timeout", opts["confirm-timeout"], 10) ?? (Number(a.config["meshfleet:confirmTimeoutSeconds"]) || 120);
    const json = !!opts.json;
    const say = (l: string) => (json ? process.stderr : process.stdout).write(l + "\n");
    const r = await rollback(a, { to, confirmTimeoutSeconds, dryRun: !opts.yes, say });
    if (json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
    return r.dryRun ? 2 : 0;
  },
};
