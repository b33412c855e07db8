/**
 * meshfleet:host:Prerequisites — what a host needs before its generation
 * (provider/prerequisites.ts). diff probes the host read-only and fails on
 * what meshfleet cannot install, so a preview refuses it too; create and
 * update install the missing Debian packages and probe again. Every host's
 * generation waits for every host's prerequisites (components/mesh.ts), so
 * a refusal leaves every host's configuration as it was. A vendor
 * repository (tailscale.apt) is set up, its package installed at the pinned
 * version and checked after; when the fleet drops it, its source, keyring and
 * pin are removed. Deleting the resource removes nothing: packages stay
 * installed.
 */
import { decide, installScript, parseProbe, pinnedAfterInstall, probeScript, repositoryFailure, repositoryRemovalScript, repositoryScript, type PrerequisiteDecision, type ProbeFacts } from "../prerequisites.ts";
import { log } from "../log.ts";
import { connectionProblems, session, type RunResult } from "../ssh.ts";
import type { PrerequisitesInputs, PrerequisitesOutputs } from "../types.ts";
import { ProviderError, topLevelDiff } from "../wire.ts";
import { isUnknown, type AsyncDiffHandler, type CheckFailure } from "./common.ts";

function checkConnection(n: PrerequisitesInputs): CheckFailure[] {
  return isUnknown(n.connection) ? [] : connectionProblems(n.connection).map((reason) => ({ property: "connection", reason }));
}

/** The probe's dial in a diff (one attempt, briefly): a host that is off must not hold every preview for minutes. */
const DIFF_DIAL_MS = 5_000;
const DIFF_TIMEOUT_MS = 20_000;

async function probe(n: PrerequisitesInputs, why: string, o: { brief?: boolean } = {}): Promise<PrerequisiteDecision & { facts: ProbeFacts }> {
  const r = await session.run(n.connection, probeScript(n.spec), {
    what: `prerequisites of ${n.host} (${why})`,
    privateKey: n.sshPrivateKey,
    quiet: true,
    ...(o.brief ? { attempts: 1, until: Date.now() + DIFF_DIAL_MS, timeoutMs: DIFF_TIMEOUT_MS } : {}),
  }).catch((e: Error) => ({ code: 255, stdout: "", stderr: e.message }) as RunResult);
  if (r.code !== 0) throw new Unreachable(`host ${n.host}: reading its prerequisites failed (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`);
  const facts = parseProbe(r.stdout);
  const d = decide(n.spec, facts);
  for (const w of d.warnings) log(w);
  if (d.refusals.length) throw new ProviderError(`${d.refusals.join("\n")}\nNothing was changed on ${n.host}; no host's generation is switched while a host's prerequisites are refused.`);
  return { ...d, facts };
}

/** The probe itself failed (the host or its sshd is not there), as opposed to a refusal. */
class Unreachable extends ProviderError {}

async function ensure(n: PrerequisitesInputs): Promise<PrerequisitesOutputs> {
  const d = await probe(n, "before installing");
  const codename = d.facts.os.codename ?? "";
  // The vendor repositories' files are written every time (same bytes, same files): a new keyring in
  // the fleet lands on the next deploy even when the pinned package is already there. apt runs only
  // when the package is missing or at another release.
  const installed: string[] = [];
  for (const repo of n.spec.repositories ?? []) {
    if (!repo.suite && !codename) continue; // decide() refused it when the package was needed
    const needed = d.repositories.includes(repo) || d.repositories.some((x) => x.name === repo.name);
    if (needed) log(`host ${n.host}: installing ${repo.package} ${repo.version} from ${repo.url} (${repo.origin})`);
    const r = await session.run(n.connection, repositoryScript(repo, codename, { install: needed }), {
      what: needed ? `apt-get install ${repo.package}=${repo.version} on ${n.host}` : `${repo.name} apt source on ${n.host}`,
      privateKey: n.sshPrivateKey,
      timeoutMs: 15 * 60_000,
    });
    if (r.code !== 0) throw new ProviderError(`${repositoryFailure(n.host, repo, codename, r.code, r.stderr)}\nNo host's generation was switched.`);
    if (needed) installed.push(`${repo.package}=${repo.version}`);
  }
  if (installed.length) {
    const after = await probe(n, "after installing from the vendor's repository");
    const wrong = pinnedAfterInstall(n.spec, after.facts);
    if (wrong.length) throw new ProviderError(`${wrong.join("\n")}\nNo host's generation was switched.`);
  }
  if (d.install.length) {
    log(`host ${n.host}: installing ${d.install.join(", ")} (apt-get)`);
    const r = await session.run(n.connection, installScript(d.install), { what: `apt-get install ${d.install.join(" ")} on ${n.host}`, privateKey: n.sshPrivateKey, timeoutMs: 15 * 60_000 });
    if (r.code !== 0) {
      throw new ProviderError(
        `host ${n.host}: apt-get install ${d.install.join(" ")} failed (exit ${r.code}):\n${r.stderr.trim().slice(-1500)}\nFix: make the packages installable on ${n.host} (its apt sources reach a Debian mirror), or install them by hand; no host's generation was switched.`,
      );
    }
    const after = await probe(n, "after installing");
    if (after.install.length) throw new ProviderError(`host ${n.host}: apt-get reported success but ${after.install.join(", ")} still ${after.install.length === 1 ? "is" : "are"} missing; see /tmp/meshfleet-apt.log on the host`);
  }
  return { ...n, installed: [...installed, ...d.install] };
}

export const prerequisites: AsyncDiffHandler<PrerequisitesInputs, PrerequisitesOutputs> = {
  check: (n) => checkConnection(n),
  async diff(olds, news) {
    const d = topLevelDiff(olds as never, news as never);
    if (isUnknown(news.connection) || isUnknown(news.spec)) return d;
    // Asked every run, read-only: a package removed by hand since, or a refusal, shows in a preview.
    // A host that cannot be reached is left as it is here (its generation's own steps decide), as
    // before this resource existed: a laptop that is off does not stop the fleet's deploy.
    let live: PrerequisiteDecision;
    try {
      live = await probe(news, "diff", { brief: true });
    } catch (e) {
      if (!(e instanceof Unreachable)) throw e;
      log(`prerequisites of ${news.host} not checked (${(e as Error).message.slice(0, 200)}); left as they are`);
      return d;
    }
    if (live.install.length || live.repositories.length) return { ...d, changes: true, detailedDiff: { ...d.detailedDiff, installed: "update" } };
    return d;
  },
  async create(n) {
    return { id: n.host, outs: await ensure(n) };
  },
  async update(_id, olds, n) {
    // A repository the fleet no longer names (tailscale.apt turned off): its pin would hold the package
    // at the old version for good. Its files go; the package stays.
    for (const gone of (olds.spec?.repositories ?? []).filter((r) => !(n.spec.repositories ?? []).some((x) => x.name === r.name))) {
      const r = await session.run(n.connection, repositoryRemovalScript(gone), { what: `removing the ${gone.name} apt source from ${n.host}`, privateKey: n.sshPrivateKey });
      if (r.code !== 0) throw new ProviderError(`host ${n.host}: removing the ${gone.name} apt source and pin failed (exit ${r.code}): ${r.stderr.trim().slice(-500)}`);
      log(`host ${n.host}: the ${gone.name} apt source, keyring and pin removed (${gone.package} stays installed)`);
    }
    return ensure(n);
  },
  async read(_id, o) {
    return o;
  },
  async delete() {},
};
