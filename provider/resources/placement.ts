/**
 * meshfleet:headscale:Placement — which host runs the coordinator. Created
 * once, it records the host. When `coordinator.host` names another host, its
 * update moves the database there before that host's generation starts
 * headscale (the steps: provider/placement.ts). A preview shows the move
 * (host: old => new) and the log states its steps. Deleting it changes nothing.
 */
import { log } from "../log.ts";
import { moveRefusal, moveSteps, parseRead, readScript, stageScript, installScript, type PlacementSide } from "../placement.ts";
import { progress } from "../progress.ts";
import { connectionProblems, session, type RunResult } from "../ssh.ts";
import type { PlacementInputs, PlacementOutputs } from "../types.ts";
import { ProviderError, topLevelDiff, type DetailedDiffResult } from "../wire.ts";
import { isUnknown, type AsyncDiffHandler, type CheckFailure } from "./common.ts";

const side = (p: PlacementInputs): PlacementSide => ({ host: p.host, runtime: p.runtime, container: p.container, databasePath: p.databasePath });

function failed(host: string, what: string, r: RunResult): ProviderError {
  return new ProviderError(`coordinator move, ${host}: ${what} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().slice(0, 400)}`);
}

async function move(olds: PlacementOutputs, news: PlacementInputs): Promise<PlacementOutputs> {
  const refusal = moveRefusal({ from: olds.host, to: news.host, databaseType: news.databaseType, postgresHost: news.postgresHost, adopted: news.adopted || olds.adopted });
  if (refusal) throw new ProviderError(refusal);
  if (news.databaseType === "postgres") {
    // A database server both hosts reach: nothing to carry, headscale on the new host uses it.
    log(`coordinator ${olds.host} -> ${news.host}: the database is on ${news.postgresHost}; nothing to copy`);
    return { ...news, movedFrom: olds.host, movedAt: new Date().toISOString() };
  }
  await progress(news.host, `coordinator moves here from ${olds.host}: ${moveSteps(olds.host, news.host, news.serverUrl).map((s, i) => `${i + 1}. ${s}`).join("; ")}`);
  const read = await session.run(olds.connection, readScript(side(olds)), { what: `stop headscale and read its database (move to ${news.host})`, privateKey: olds.sshPrivateKey, quiet: true, timeoutMs: 10 * 60_000 });
  if (read.code !== 0) throw failed(olds.host, "stopping headscale and reading its database", read);
  const files = parseRead(read.stdout);
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "Z");
  for (const f of files) {
    const r = await session.run(news.connection, stageScript(side(news), f, stamp), { what: `database copy ${f.name} to ${news.host}`, privateKey: news.sshPrivateKey, stdin: Buffer.from(f.base64, "base64"), timeoutMs: 10 * 60_000 });
    if (r.code !== 0) throw failed(news.host, `receiving ${f.name} (headscale on ${olds.host} is stopped; \`meshfleet up\` again retries the move, or set coordinator.host back to ${olds.host} and run it)`, r);
  }
  const put = await session.run(news.connection, installScript(side(news), stamp), { what: `database in place on ${news.host}`, privateKey: news.sshPrivateKey });
  if (put.code !== 0) throw failed(news.host, "putting the database in place", put);
  const size = files.reduce((n, f) => n + Math.floor((f.base64.length * 3) / 4), 0);
  await progress(news.host, `database from ${olds.host} in place (${files.map((f) => f.name).join(", ")}, ${size} bytes)${put.stdout.trim() ? `; ${put.stdout.trim().replace(/\n/g, "; ")}` : ""}`);
  return { ...news, movedFrom: olds.host, movedAt: new Date().toISOString() };
}

export const placement: AsyncDiffHandler<PlacementInputs, PlacementOutputs> = {
  check(n): CheckFailure[] {
    return isUnknown(n.connection) ? [] : connectionProblems(n.connection).map((reason) => ({ property: "connection", reason }));
  },
  async diff(olds, news): Promise<DetailedDiffResult> {
    const d = topLevelDiff(olds as never, news as never, { ignore: ["movedFrom", "movedAt"] });
    if (d.changes && !isUnknown(news.host) && olds.host !== news.host) {
      await progress(news.host, `the coordinator moves here from ${olds.host}: ${moveSteps(olds.host, news.host, news.serverUrl).map((s, i) => `${i + 1}. ${s}`).join("; ")}`);
      const refusal = moveRefusal({ from: olds.host, to: news.host, databaseType: news.databaseType, postgresHost: news.postgresHost, adopted: news.adopted || olds.adopted });
      if (refusal) throw new ProviderError(refusal);
    }
    return d;
  },
  async create(n) {
    return { id: n.host, outs: { ...n } };
  },
  async update(_id, olds, news) {
    if (olds.host !== news.host) return move(olds, news);
    return { ...news, movedFrom: olds.movedFrom, movedAt: olds.movedAt };
  },
  async read(_id, o) {
    return o;
  },
  async delete() {},
};
