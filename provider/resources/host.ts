/**
 * meshfleet:host:File — one local file installed on a host (the headscale
 * binary of a systemd-runtime coordinator): pushed on stdin into a temp file
 * beside the target and renamed over it, so a running program never sees
 * half a binary. read reports the live sha256, so a replaced file shows.
 *
 * meshfleet:host:ServiceCheck — systemd units that must be active after the
 * host's generation (the reverse proxy, a standalone DERP relay).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { shq } from "../quote.ts";
import { connectionProblems, session } from "../ssh.ts";
import type { FileInputs, FileOutputs, ServiceCheckInputs, ServiceCheckOutputs } from "../types.ts";
import { ProviderError, topLevelDiff } from "../wire.ts";
import { isUnknown, type CheckFailure, type ResourceHandler } from "./common.ts";
import { pushScript } from "./generation.ts";

function checkConnection(n: { connection: FileInputs["connection"] }): CheckFailure[] {
  return isUnknown(n.connection) ? [] : connectionProblems(n.connection).map((reason) => ({ property: "connection", reason }));
}

const liveShaScript = (remote: string) => `if [ -f ${shq(remote)} ]; then sha256sum ${shq(remote)} | cut -d' ' -f1; fi`;

async function install(n: FileInputs): Promise<FileOutputs> {
  const live = await session.run(n.connection, liveShaScript(n.remotePath), { what: `sha256 of ${n.remotePath}`, privateKey: n.sshPrivateKey });
  if (live.code !== 0) throw new ProviderError(`host ${n.host}: reading ${n.remotePath} failed: ${live.stderr.trim().slice(0, 300)}`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(n.localPath);
  } catch (e) {
    throw new ProviderError(`${n.localPath} cannot be read (${(e as NodeJS.ErrnoException).code}); it is to be installed at ${n.remotePath} on ${n.host}`);
  }
  const sha = createHash("sha256").update(bytes).digest("hex");
  if (live.stdout.trim() !== sha) {
    const dir = n.remotePath.replace(/\/[^/]+$/, "") || "/";
    const r = await session.run(n.connection, `install -d -m 0755 ${shq(dir)}\n${pushScript(n.remotePath, n.mode)}`, {
      what: `push ${n.localPath} → ${n.remotePath} (${bytes.length} bytes)`,
      privateKey: n.sshPrivateKey,
      stdin: bytes,
    });
    if (r.code !== 0) throw new ProviderError(`host ${n.host}: installing ${n.remotePath} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`);
  }
  return { ...n, liveSha256: sha };
}

export const file: ResourceHandler<FileInputs, FileOutputs> = {
  check(n) {
    const f = checkConnection(n);
    if (!isUnknown(n.mode) && !/^0?[0-7]{3,4}$/.test(n.mode)) f.push({ property: "mode", reason: `${n.remotePath} on ${n.host}: expected an octal mode, found ${JSON.stringify(n.mode)}` });
    return f;
  },
  diff(olds, news) {
    const d = topLevelDiff(olds as never, news as never, { ignore: ["localPath"], replaceKeys: ["remotePath"] });
    if (olds.liveSha256 !== undefined && olds.liveSha256 !== news.sha256 && !d.detailedDiff!.sha256) {
      return { ...d, changes: true, detailedDiff: { ...d.detailedDiff, liveSha256: "update" } };
    }
    return d;
  },
  async create(n) {
    return { id: `${n.host}:${n.remotePath}`, outs: await install(n) };
  },
  update: (_id, _o, n) => install(n),
  async read(_id, o) {
    const r = await session.run(o.connection, liveShaScript(o.remotePath), { what: `sha256 of ${o.remotePath} (refresh)`, privateKey: o.sshPrivateKey });
    if (r.code !== 0) throw new ProviderError(`host ${o.host}: reading ${o.remotePath} failed: ${r.stderr.trim().slice(0, 300)}`);
    return { ...o, liveSha256: r.stdout.trim() };
  },
  async delete(_id, o) {
    const r = await session.run(o.connection, `rm -f ${shq(o.remotePath)}`, { what: `remove ${o.remotePath}`, privateKey: o.sshPrivateKey });
    if (r.code !== 0) throw new ProviderError(`host ${o.host}: removing ${o.remotePath} failed: ${r.stderr.trim().slice(0, 300)}`);
  },
};

/** One `systemctl is-active` per unit, printed `unit state`. */
export function serviceStatesScript(units: readonly string[]): string {
  return units.map((u) => `printf '%s %s\\n' ${shq(u)} "$(systemctl is-active ${shq(u)} 2>/dev/null || true)"`).join("\n");
}

export function parseServiceStates(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const m = /^(\S+) (.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2].trim() || "unknown";
  }
  return out;
}

async function states(n: ServiceCheckInputs, what: string): Promise<Record<string, string>> {
  const r = await session.run(n.connection, serviceStatesScript(n.units), { what, privateKey: n.sshPrivateKey });
  if (r.code !== 0) throw new ProviderError(`host ${n.host}: systemctl is-active failed (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`);
  return parseServiceStates(r.stdout);
}

async function checkActive(n: ServiceCheckInputs): Promise<ServiceCheckOutputs> {
  // Units restarted by the switch may take a moment to settle (activating → active).
  let s: Record<string, string> = {};
  for (let i = 0; i < 15; i++) {
    s = await states(n, `is-active ${n.units.join(" ")}`);
    if (n.units.every((u) => s[u] === "active")) return { ...n, states: s };
    if (n.units.some((u) => s[u] === "failed")) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  const bad = n.units.filter((u) => s[u] !== "active");
  throw new ProviderError(bad.map((u) => `host ${n.host}: ${u} is ${s[u] ?? "unknown"}, expected active; see journalctl -u ${u} on ${n.host}`).join("\n"));
}

export const serviceCheck: ResourceHandler<ServiceCheckInputs, ServiceCheckOutputs> = {
  check: (n) => checkConnection(n),
  diff(olds, news) {
    const d = topLevelDiff(olds as never, news as never);
    const down = Object.entries(olds.states ?? {}).filter(([, v]) => v !== "active");
    if (down.length) return { ...d, changes: true, detailedDiff: { ...d.detailedDiff, ...Object.fromEntries(down.map(([u]) => [`states[${JSON.stringify(u)}]`, "update" as const])) } };
    return d;
  },
  async create(n) {
    return { id: `${n.host}:${n.units.join(",")}`, outs: await checkActive(n) };
  },
  update: (_id, _o, n) => checkActive(n),
  async read(_id, o) {
    return { ...o, states: await states(o, `is-active ${o.units.join(" ")} (refresh)`) };
  },
  async delete() {},
};
