/**
 * meshfleet:host:Generation — one host's generation, applied by its agent.
 *
 * create/update: push the agent when its sha256 differs from the host's copy,
 * send the bundle on stdin and `switch` with the lockout guard armed (one
 * round trip with the preparation when the agent is already there), then
 * `confirm <hash> --status` over a NEW ssh connection (a switch that cut SSH
 * is rolled back by the host itself), whose process then prints the status
 * and what `verify` finds. A guard that rolled back, or a confirm that came too late,
 * fails the deploy naming the host; the confirm is not retried past the
 * guard's window, so that failure comes when the window closes.
 * diff: per file (path, mode, owner, digest), per unit, sysctl key, firewall
 * and tailscale digests; never content.
 * read: the agent's status and verify, so `refresh` shows drift and the next
 * `up` repairs it (`switch --repair`).
 * delete: `rollback 0` with the guard, when this resource's generation is
 * the one the host runs (a superseded bootstrap generation deletes nothing).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { log } from "../log.ts";
import { shq } from "../quote.ts";
import { connectionProblems, session, type RunOptions, type RunResult } from "../ssh.ts";
import type { DriftItem, FileSummary, GenerationInputs, GenerationOutputs, SshConnection, AgentSpec } from "../types.ts";
import { deepEqual, keyPath, ProviderError, recordDiff, unwrapSecrets, type DetailedDiffResult, type DiffKind } from "../wire.ts";
import { isUnknown, type ResourceHandler, type CheckFailure } from "./common.ts";
import { agentCmd, confirmScript, inspectScript, parseInspect, statusAfterMark, type AgentStatus } from "./inspect.ts";
import { rebootAndCheck } from "./reboot.ts";

export { inspectScript, parseInspect, type AgentStatus } from "./inspect.ts";


/** Prepare the host: Node present, the agent's folders exist; print the installed agent's sha256. */
export function prepareScript(host: string, a: AgentSpec): string {
  const dir = a.remotePath.replace(/\/[^/]+$/, "") || "/";
  return [
    "set -eu",
    `if ! command -v ${shq(a.node)} >/dev/null 2>&1; then echo ${shq(`meshfleet: ${host} has no ${a.node} (Node.js 18 or newer); install the nodejs package on it`)} >&2; exit 3; fi`,
    `install -d -m 0755 ${shq(dir)}`,
    `install -d -m 0700 ${shq(a.stateDir)}`,
    `if [ -f ${shq(a.remotePath)} ]; then sha256sum ${shq(a.remotePath)} | cut -d' ' -f1; fi`,
  ].join("\n");
}

const PUSH_MARK = "@@meshfleet-push-agent@@";

/**
 * Prepare and switch in one round trip, when the host already has this
 * agent: otherwise print PUSH_MARK and change nothing (the bundle on stdin
 * is not read), and the caller pushes the agent and switches after.
 */
export function prepareAndSwitchScript(host: string, a: AgentSpec, agentSha256: string, confirmTimeoutSeconds: number, repair: boolean): string {
  return [
    prepareScript(host, a).replace(/\nif \[ -f .*$/, ""),
    `cur=$(if [ -f ${shq(a.remotePath)} ]; then sha256sum ${shq(a.remotePath)} | cut -d' ' -f1; fi)`,
    `if [ "$cur" != ${shq(agentSha256)} ]; then echo ${PUSH_MARK}; exit 0; fi`,
    switchScript(a, confirmTimeoutSeconds, repair).replace(/^set -eu\n/, ""),
  ].join("\n");
}

/** Write stdin to `remote` through a temp file and one rename: a reader never sees half a file. */
export function pushScript(remote: string, mode: string): string {
  const tmp = `${remote}.meshfleet-tmp`;
  return ["set -eu", "umask 077", `cat > ${shq(tmp)}`, `chmod ${shq(mode)} ${shq(tmp)}`, `mv -f ${shq(tmp)} ${shq(remote)}`].join("\n");
}

/** The switch: the bundle arrives on stdin and never touches argv or logs. */
export function switchScript(a: AgentSpec, confirmTimeoutSeconds: number, repair: boolean): string {
  const incoming = `${a.stateDir}/incoming`;
  const file = `${incoming}/bundle.json`;
  return [
    "set -eu",
    "umask 077",
    `mkdir -p ${shq(incoming)}`,
    `cat > ${shq(`${file}.tmp`)}`,
    `mv -f ${shq(`${file}.tmp`)} ${shq(file)}`,
    agentCmd(a, ["switch", file, "--confirm-timeout", String(confirmTimeoutSeconds), ...(repair ? ["--repair"] : [])]),
  ].join("\n");
}

/** Where a drift item shows in the generation's outputs (and so in `preview --diff`). */
export function driftPath(d: DriftItem): string {
  switch (d.kind) {
    case "file":
      return keyPath("files", d.subject);
    case "unit":
      return keyPath("units", d.subject);
    case "sysctl":
      return keyPath("sysctl", d.subject);
    case "nftables":
    case "firewall":
      return "firewall";
    case "tailscale":
      return "tailscale";
    default:
      return "hash";
  }
}

/** A generation hash without the drift note markDrift may have added to it. */
export function plainHash(h: string): string {
  const i = h.indexOf(" (drift: ");
  return i < 0 ? h : h.slice(0, i);
}

/** Outputs with what `verify` found marked where diff and display look. */
export function markDrift(o: GenerationOutputs, drift: DriftItem[]): GenerationOutputs {
  const files: Record<string, FileSummary> = Object.fromEntries(Object.entries(o.files ?? {}).map(([p, f]) => [p, { ...f, drift: undefined }]));
  const units = { ...(o.units ?? {}) };
  const sysctl = { ...(o.sysctl ?? {}) };
  let firewall = o.firewall;
  let tailscale = o.tailscale;
  let hash = o.hash;
  for (const d of drift) {
    const note = `drift: ${d.detail}`;
    if (d.kind === "file" && files[d.subject]) files[d.subject] = { ...files[d.subject], drift: files[d.subject].drift ? `${files[d.subject].drift}; ${d.detail}` : d.detail };
    else if (d.kind === "unit") units[d.subject] = note;
    else if (d.kind === "sysctl") sysctl[d.subject] = note;
    else if (d.kind === "nftables" || d.kind === "firewall") firewall = note;
    else if (d.kind === "tailscale") tailscale = note;
    else hash = `${hash} (${note})`;
  }
  for (const f of Object.values(files)) if (f.drift === undefined) delete f.drift;
  return { ...o, files, units, sysctl, firewall, tailscale, hash, drift };
}

const clip = (t: string) => t.trim().replace(/\s+/g, " ").slice(0, 200) || "no output";

function runFailure(host: string, step: string, r: RunResult): ProviderError {
  const why = (r.stderr || r.stdout).trim().split("\n").slice(-6).join("\n    ");
  return new ProviderError(`host ${host}: ${step} failed (exit ${r.code}):\n    ${why || "(no output)"}`);
}

export const generation: ResourceHandler<GenerationInputs, GenerationOutputs> = {
  check(news) {
    const f: CheckFailure[] = [];
    const n = unwrapSecrets<GenerationInputs>(news);
    if (!isUnknown(n.connection)) for (const p of connectionProblems(n.connection)) f.push({ property: "connection", reason: p });
    if (!isUnknown(n.confirmTimeoutSeconds) && (!Number.isInteger(n.confirmTimeoutSeconds) || n.confirmTimeoutSeconds < 10)) {
      f.push({ property: "confirmTimeoutSeconds", reason: `host ${n.host}: expected a whole number of seconds ≥ 10, found ${n.confirmTimeoutSeconds}` });
    }
    return f;
  },

  diff(olds, news): DetailedDiffResult {
    // A bootstrap generation is pushed once; the host's own generation takes over after it. On
    // another host (the coordinator moved) it is pushed once there.
    if (news.once && olds.once && olds.hash !== undefined && olds.host === news.host) return { changes: false };
    const d: Record<string, DiffKind> = {};
    const replaces: string[] = [];
    if (olds.host !== news.host) {
      d.host = "update-replace";
      replaces.push("host");
    }
    if (olds.hash !== news.hash) d.hash = "update";
    if (isUnknown(news.files) || !olds.files) d.files = "update";
    else {
      const plain = (f: unknown) => {
        const { drift: _d, ...rest } = (f ?? {}) as Record<string, unknown>;
        return rest;
      };
      Object.assign(d, recordDiff("files", olds.files, news.files, (a, b) => deepEqual(plain(a), plain(b)) && !(a as { drift?: string }).drift));
    }
    for (const k of ["units", "sysctl"] as const) {
      if (isUnknown(news[k])) d[k] = "update";
      else Object.assign(d, recordDiff(k, olds[k], news[k]));
    }
    for (const k of ["firewall", "tailscale"] as const) if (olds[k] !== news[k]) d[k] = "update";
    // A state from before firewallPolicy existed has none: no change for that alone.
    if (olds.firewallPolicy !== undefined && !isUnknown(news.firewallPolicy) && olds.firewallPolicy !== news.firewallPolicy) d.firewallPolicy = "update";
    if (!isUnknown(news.agent) && olds.agent) {
      if (olds.agent.sha256 !== news.agent.sha256) d["agent.sha256"] = "update";
      for (const k of ["remotePath", "node", "stateDir"] as const) if (olds.agent[k] !== news.agent[k]) d[`agent.${k}`] = "update";
    } else if (!deepEqual(olds.agent, news.agent)) d.agent = "update";
    if (!deepEqual(olds.connection, news.connection)) d.connection = "update";
    if (!deepEqual(olds.sshPrivateKey ?? null, news.sshPrivateKey ?? null)) d.sshPrivateKey = "update";
    // Drift the last read found that the map comparisons above cannot see.
    for (const x of olds.drift ?? []) {
      const p = driftPath(x);
      if (!d[p] && !(p.startsWith("files[") && d.files)) d[p] = "update";
    }
    // `up --reboot-check`: this run reboots the host, unchanged or not (the switch of the same hash changes nothing).
    if (news.rebootCheck === true && !news.once) d.rebootCheck = "update";
    return { changes: Object.keys(d).length > 0, replaces, detailedDiff: d, deleteBeforeReplace: replaces.length > 0 };
  },

  async create(inputs) {
    const outs = await apply(inputs, null);
    return { id: `${inputs.host}`, outs };
  },

  async update(_id, olds, news) {
    return apply(news, olds);
  },

  async read(_id, props) {
    const o = props;
    if (o.once) return o;
    const r = await session.run(o.connection, inspectScript(o.agent) + `\nsha256sum ${shq(o.agent.remotePath)} 2>/dev/null | cut -d' ' -f1 || true`, {
      what: "agent status + verify (refresh)",
      privateKey: o.sshPrivateKey,
    });
    if (r.code !== 0) throw runFailure(o.host, "reading the agent's status", r);
    const lines = r.stdout.trimEnd().split("\n");
    const liveAgent = /^[0-9a-f]{64}$/.test(lines[lines.length - 1] ?? "") ? lines.pop()! : "";
    const { status, statusText, drift } = parseInspect(o.host, lines.join("\n"));
    const base: GenerationOutputs = {
      ...o,
      hash: status.hash ?? "",
      generation: status.generation,
      status: statusText,
      agent: { ...o.agent, sha256: liveAgent || "missing" },
    };
    // o.hash may carry the note of drift an earlier refresh stored (a deploy that failed after it
    // keeps that state): compare the hash itself, or that drift is forgotten and never repaired.
    return markDrift(base, status.hash === plainHash(o.hash) ? drift : []);
  },

  async delete(_id, props) {
    const o = props;
    const r = await session.run(o.connection, `if [ -f ${shq(o.agent.remotePath)} ]; then ${agentCmd(o.agent, ["status", "--json"])}; else echo '{"generation":0,"hash":null}'; fi`, {
      what: "agent status (delete)",
      privateKey: o.sshPrivateKey,
    });
    if (r.code !== 0) throw runFailure(o.host, "reading the agent's status before uninstalling", r);
    const { status } = parseInspect(o.host, r.stdout);
    if (!status.hash || status.hash !== plainHash(o.hash)) {
      log(`host ${o.host}: runs ${status.hash ? `generation ${status.generation} (${status.hash.slice(0, 12)})` : "no generation"}, not ${o.hash.slice(0, 12)}; nothing to uninstall`);
      return;
    }
    const rb = await session.run(o.connection, agentCmd(o.agent, ["rollback", "0", "--confirm-timeout", String(o.confirmTimeoutSeconds)]), {
      what: "agent rollback 0 (uninstall)",
      privateKey: o.sshPrivateKey,
    });
    if (rb.code !== 0) throw runFailure(o.host, "uninstalling (agent rollback 0)", rb);
    const c = await session.run(o.connection, agentCmd(o.agent, ["confirm"]), { what: "agent confirm (uninstall)", fresh: true, privateKey: o.sshPrivateKey });
    if (c.code !== 0) {
      throw new ProviderError(
        `host ${o.host}: the uninstall was not confirmed over a new SSH connection, so the host's guard puts generation ${status.generation} back: ${(c.stderr || c.stdout).trim().slice(0, 300)}`,
      );
    }
  },
};

/** Push, switch, confirm, inspect. `olds` is null on create. */
async function apply(n: GenerationInputs, olds: GenerationOutputs | null): Promise<GenerationOutputs> {
  const c: SshConnection = n.connection;
  const host = n.host;
  const run = (script: string, what: string, extra: Omit<RunOptions, "what"> = {}) =>
    session.run(c, script, { what, privateKey: n.sshPrivateKey, ...extra });

  let localBytes: Buffer;
  try {
    localBytes = readFileSync(n.agent.localPath);
  } catch (e) {
    throw new ProviderError(`the agent bundle ${n.agent.localPath} cannot be read (${(e as NodeJS.ErrnoException).code}); nothing was sent to ${host}. Fix: npm run build:agent`);
  }
  const localSha = createHash("sha256").update(localBytes).digest("hex");
  // Only the agent the program saw is pushed: a rebuild while the deploy runs (or a half-written file) stops here.
  if (localSha !== n.agent.sha256 || localBytes.length === 0) {
    throw new ProviderError(
      `the agent bundle ${n.agent.localPath} changed while this deploy ran (${localBytes.length} bytes, sha256 ${localSha.slice(0, 12)}; the program read ${n.agent.sha256.slice(0, 12)}); nothing was sent to ${host}. Run the deploy again once \`npm run build:agent\` is done`,
    );
  }
  // Same hash and drift last seen: the agent re-applies the current generation in place.
  const repair = !!olds && olds.hash !== undefined && (olds.drift?.length ?? 0) > 0;
  const switching = `switch to ${n.hash.slice(0, 12)}${repair ? " (repair)" : ""}`;
  // One round trip when the host has this agent already (the usual case): prepare, then switch.
  let sw = await run(prepareAndSwitchScript(host, n.agent, localSha, n.confirmTimeoutSeconds, repair), `prepare + ${switching}`, { stdin: n.bundle });
  if (sw.code === 0 && sw.stdout.trim().split("\n").pop() === PUSH_MARK) {
    const push = await run(pushScript(n.agent.remotePath, "0644"), `push agent (${localBytes.length} bytes)`, { stdin: localBytes });
    if (push.code !== 0) throw runFailure(host, "pushing the agent", push);
    sw = await run(switchScript(n.agent, n.confirmTimeoutSeconds, repair), switching, { stdin: n.bundle });
  }
  log(`host ${host}: switch said: ${sw.stdout.trim().split("\n").slice(-3).join(" | ")}`);
  if (sw.code === 3 && sw.stderr.includes(`${host} has no ${n.agent.node}`)) throw runFailure(host, "preparing the host", sw);
  if (sw.code !== 0) throw runFailure(host, `switching to generation ${n.hash.slice(0, 12)}`, sw);

  // A separate TCP connection and login: if the switch cut SSH, this fails and the guard rolls back.
  // The guard was armed during the switch, so its window has closed by `until`: dialing after that
  // can only reach the rolled-back host, and would hold the failure back by a dial's retries.
  const until = Date.now() + n.confirmTimeoutSeconds * 1000;
  // The confirm's own process then prints the status and what verify finds (`confirm --status`):
  // read after the confirm, in the process the confirm started anyway, so a switch costs the host
  // two agent processes (switch, confirm) and one session on the shared connection.
  let conf: RunResult;
  try {
    conf = await run(confirmScript(n.agent, n.hash), `confirm ${n.hash.slice(0, 12)} + status + verify`, { fresh: true, until });
  } catch (e) {
    // A refused login or host key after the switch is a lockout like a refused dial.
    conf = { code: 255, stdout: "", stderr: (e as Error).message };
  }
  if (conf.code !== 0) {
    const why = (conf.stderr || conf.stdout).trim().split("\n").slice(-3).join(" ");
    throw new ProviderError(
      conf.code !== 255
        ? `host ${host}: generation ${n.hash.slice(0, 12)} was not kept: ${why}`
        : Date.now() >= until
          ? `host ${host}: generation ${n.hash.slice(0, 12)} could not be confirmed: no new SSH connection got through in the lockout guard's ${n.confirmTimeoutSeconds}s window after the switch (${why}); the host's guard has rolled it back to its previous generation`
          : `host ${host}: generation ${n.hash.slice(0, 12)} could not be confirmed: a new SSH connection after the switch failed (${why}); the host's lockout guard rolls it back to its previous generation within ${n.confirmTimeoutSeconds}s`,
    );
  }
  // Confirmed. A status the confirm could not print (it says so on stderr), or one cut short, is asked for again.
  const printed = statusAfterMark(conf.stdout) ?? "";
  let read: ReturnType<typeof parseInspect> | undefined;
  if (printed.trim()) {
    try {
      read = parseInspect(host, printed);
    } catch (e) {
      log(`host ${host}: the status the confirm printed does not parse (${clip((e as Error).message)}); asking again`);
    }
  } else log(`host ${host}: the confirm printed no status (${clip(conf.stderr)}); asking again`);
  if (!read) {
    const ins = await run(inspectScript(n.agent), "status + verify");
    if (ins.code !== 0) throw runFailure(host, "reading the agent's status and verify after the confirm", ins);
    read = parseInspect(host, ins.stdout);
  }
  // `confirm <hash>` succeeded, so that generation is current and nothing awaits confirmation.
  const status: AgentStatus = { ...read.status, pendingConfirm: null };
  const statusText = JSON.stringify(status, null, 2);
  const drift = read.drift;
  if (status.hash !== n.hash) {
    throw new ProviderError(`host ${host}: after the confirm the host runs ${status.hash ? status.hash.slice(0, 12) : "no generation"}, not ${n.hash.slice(0, 12)} (its guard rolled back?); see \`meshfleet-agent status\` on ${host}`);
  }
  if (drift.length) log(`host ${host}: verify right after the switch found ${drift.length} item(s): ${drift.map((d) => `${d.kind} ${d.subject}: ${d.detail}`).join("; ")}`);
  const { bundle: _secret, rebootCheck, ...rest } = n;
  const base: GenerationOutputs = { ...rest, agent: { ...n.agent, sha256: n.agent.sha256 }, generation: status.generation, status: statusText, drift: [] };
  if (!rebootCheck || n.once) return markDrift(base, drift);
  // Confirmed and verified: now reboot, and keep the deploy only if all of it comes back (reboot.ts).
  const back = await rebootAndCheck(n);
  log(`host ${host}: --reboot-check passed in ${(back.ms / 1000).toFixed(1)}s (back after ${(back.downMs / 1000).toFixed(1)}s)`);
  return markDrift({ ...base, generation: back.generation, status: back.statusText }, []);
}
