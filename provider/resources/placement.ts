/**
 * meshfleet:headscale:Placement — which host runs the coordinator. Created
 * once, it records the host. When `coordinator.host` names another host, its
 * update moves the database there before that host's generation starts
 * headscale (the steps: provider/placement.ts). A preview shows the move
 * (host: old => new) and the log states its steps. Deleting it changes nothing.
 */
import { installScript, moveRefusal, moveSteps, MOVED_BY_HAND, parseRead, readScript, restartScript, stageScript, stopScript, type DatabaseFile, type PlacementSide } from "../placement.ts";
import { progress } from "../progress.ts";
import { shq } from "../quote.ts";
import { connectionProblems, session, type RunResult } from "../ssh.ts";
import type { PlacementInputs, PlacementOutputs } from "../types.ts";
import { ProviderError, topLevelDiff, type DetailedDiffResult } from "../wire.ts";
import { isUnknown, type AsyncDiffHandler, type CheckFailure } from "./common.ts";

const side = (p: PlacementInputs): PlacementSide => ({ host: p.host, runtime: p.runtime, container: p.container, databasePath: p.databasePath });

function failed(host: string, what: string, r: RunResult, o: { showStdout?: boolean } = {}): ProviderError {
  // The read's stdout is the database itself: never shown.
  const text = (r.stderr || (o.showStdout === false ? "" : r.stdout)).trim().slice(0, 400);
  return new ProviderError(`coordinator move, ${host}: ${what} failed (exit ${r.code}): ${text || "(no output)"}`);
}

/**
 * After headscale on the old host was stopped and the move then failed before the new host got
 * the database: headscale is started on the old host again, and the error says which happened.
 */
async function failedAfterStop(olds: PlacementOutputs, news: PlacementInputs, e: ProviderError): Promise<ProviderError> {
  const r = await session.run(olds.connection, restartScript(side(olds)), { what: `start headscale again (the move to ${news.host} failed)`, privateKey: olds.sshPrivateKey }).catch((x: Error) => ({ code: 255, stdout: "", stderr: x.message }) as RunResult);
  const state =
    r.code === 0
      ? `headscale on ${olds.host} was started again, on its own database: nothing moved.`
      : `headscale on ${olds.host} is stopped and could not be started again (exit ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 200)}); start it there by hand.`;
  return new ProviderError(`${e.message}\n${state} Fix the cause and run \`meshfleet up\` again to retry the move, or set coordinator.host back to ${olds.host}.`);
}

async function move(olds: PlacementOutputs, news: PlacementInputs): Promise<PlacementOutputs> {
  const moved = { ...news, movedFrom: olds.host, movedAt: new Date().toISOString() };
  if (news.movedByHand) {
    // The setting may have been left on from an earlier move: a SQLite database must really be here, or
    // headscale would start on an empty one.
    if (news.databaseType === "sqlite") {
      const there = await session.run(news.connection, `test -s ${shq(news.databasePath)}`, { what: `is headscale's database on ${news.host} (moved by hand)`, privateKey: news.sshPrivateKey });
      if (there.code !== 0) {
        throw new ProviderError(
          `coordinator ${olds.host} -> ${news.host}: ${MOVED_BY_HAND} is set, but there is no database at ${news.databasePath} on ${news.host}; headscale there would start empty. Fix: put the database there (docs/move.md, "Moves you do by hand"), or \`pulumi config rm ${MOVED_BY_HAND}\` to let the deploy carry it from ${olds.host}. Nothing was changed.`,
        );
      }
    }
    await progress(news.host, `the coordinator moves here from ${olds.host}; its database and keys were put here by hand (${MOVED_BY_HAND}): nothing is copied`);
    return moved;
  }
  const refusal = moveRefusal({ from: olds.host, to: news.host, databaseType: news.databaseType, postgresHost: news.postgresHost, adopted: news.adopted || olds.adopted });
  if (refusal) throw new ProviderError(refusal);
  if (news.databaseType === "postgres") {
    // A database server both hosts reach: nothing to carry. The old headscale stops first: two
    // headscales on one database would both hand out addresses.
    const stop = await session.run(olds.connection, stopScript(side(olds)), { what: `stop headscale (the coordinator moves to ${news.host})`, privateKey: olds.sshPrivateKey });
    if (stop.code !== 0) throw failed(olds.host, "stopping headscale", stop);
    await progress(news.host, `the coordinator moves here from ${olds.host}: headscale there stopped; the database stays on ${news.postgresHost}`);
    return moved;
  }
  await progress(news.host, `coordinator moves here from ${olds.host}: ${moveSteps(olds.host, news.host, news.serverUrl).map((s, i) => `${i + 1}. ${s}`).join("; ")}`);
  const read = await session.run(olds.connection, readScript(side(olds)), { what: `stop headscale and read its database (move to ${news.host})`, privateKey: olds.sshPrivateKey, quiet: true, timeoutMs: 10 * 60_000 });
  // Exit 3: no database, checked before anything stopped.
  if (read.code === 3) throw failed(olds.host, "finding headscale's database (nothing was stopped)", read, { showStdout: false });
  if (read.code !== 0) throw await failedAfterStop(olds, news, failed(olds.host, "stopping headscale and reading its database", read, { showStdout: false }));
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "Z");
  let files: DatabaseFile[];
  try {
    files = parseRead(read.stdout);
    for (const f of files) {
      const r = await session.run(news.connection, stageScript(side(news), f, stamp), { what: `database copy ${f.name} to ${news.host}`, privateKey: news.sshPrivateKey, stdin: Buffer.from(f.base64, "base64"), timeoutMs: 10 * 60_000 });
      if (r.code !== 0) throw failed(news.host, `receiving ${f.name}`, r);
    }
  } catch (e) {
    throw await failedAfterStop(olds, news, e instanceof ProviderError ? e : new ProviderError(`coordinator move, ${olds.host}: ${(e as Error).message}`));
  }
  const put = await session.run(news.connection, installScript(side(news), stamp), { what: `database in place on ${news.host}`, privateKey: news.sshPrivateKey });
  if (put.code !== 0) throw await failedAfterStop(olds, news, failed(news.host, "putting the database in place", put));
  const size = files.reduce((n, f) => n + Math.floor((f.base64.length * 3) / 4), 0);
  await progress(news.host, `database from ${olds.host} in place (${files.map((f) => f.name).join(", ")}, ${size} bytes)${put.stdout.trim() ? `; ${put.stdout.trim().replace(/\n/g, "; ")}` : ""}`);
  return moved;
}

export const placement: AsyncDiffHandler<PlacementInputs, PlacementOutputs> = {
  check(n): CheckFailure[] {
    return isUnknown(n.connection) ? [] : connectionProblems(n.connection).map((reason) => ({ property: "connection", reason }));
  },
  async diff(olds, news): Promise<DetailedDiffResult> {
    // movedByHand is a one-off instruction for a move, not a state of the coordinator: no change by itself.
    const d = topLevelDiff(olds as never, news as never, { ignore: ["movedFrom", "movedAt", "movedByHand"] });
    if (d.changes && !isUnknown(news.host) && olds.host !== news.host) {
      await progress(news.host, `the coordinator moves here from ${olds.host}: ${moveSteps(olds.host, news.host, news.serverUrl, news.databaseType === "postgres" ? news.postgresHost : undefined).map((s, i) => `${i + 1}. ${s}`).join("; ")}`);
      const refusal = news.movedByHand ? null : moveRefusal({ from: olds.host, to: news.host, databaseType: news.databaseType, postgresHost: news.postgresHost, adopted: news.adopted || olds.adopted });
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
