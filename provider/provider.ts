/**
 * meshfleet's Pulumi provider: one handler per resource type, behind the
 * Node SDK's `Provider` interface. Secrets are unwrapped before a handler
 * sees them; `check` hands the engine its inputs back untouched (wrapped),
 * so their secretness is kept.
 */
import type * as sdk from "@pulumi/pulumi/provider/index.js";
import { log } from "./log.ts";
import { forResource } from "./progress.ts";
import { container } from "./resources/proxmox.ts";
import { generation } from "./resources/generation.ts";
import { preAuthKey, ready, routeApproval, user } from "./resources/headscale.ts";
import { file, serviceCheck } from "./resources/host.ts";
import { placement } from "./resources/placement.ts";
import { prerequisites } from "./resources/prerequisites.ts";
import type { AsyncDiffHandler, ResourceHandler } from "./resources/common.ts";
import { TOKENS, type Token } from "./types.ts";
import { ProviderError, unwrapSecrets, type DetailedDiffResult } from "./wire.ts";

export const VERSION = "0.1.0";

export const HANDLERS: Record<Token, ResourceHandler<any, any> | AsyncDiffHandler<any, any>> = {
  [TOKENS.generation]: generation,
  [TOKENS.file]: file,
  [TOKENS.serviceCheck]: serviceCheck,
  [TOKENS.prerequisites]: prerequisites,
  [TOKENS.user]: user,
  [TOKENS.preAuthKey]: preAuthKey,
  [TOKENS.routeApproval]: routeApproval,
  [TOKENS.ready]: ready,
  [TOKENS.placement]: placement,
  [TOKENS.container]: container,
};

/** The type token of a URN (`urn:pulumi:stack::project::parent$type::name`). */
export function typeOfUrn(urn: string): string {
  return urn.split("::")[2]?.split("$").pop() ?? "";
}

const nameOfUrn = (urn: string) => urn.split("::").slice(3).join("::");

function handler(urn: string): ResourceHandler<any, any> | AsyncDiffHandler<any, any> {
  const t = typeOfUrn(urn) as Token;
  const h = HANDLERS[t];
  if (!h) throw new ProviderError(`meshfleet provider ${VERSION} has no resource type ${t} (known: ${Object.keys(HANDLERS).join(", ")})`);
  return h;
}

/** Drop undefined values (protobuf Structs cannot hold them). */
function plain<T>(v: T): T {
  return JSON.parse(JSON.stringify(v ?? {}));
}

/** Log and rethrow as a message-only error (the engine prints `message`, never our stack). */
async function traced<T>(op: string, urn: string, body: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    const r = await forResource(urn, body);
    log(`${op} ${typeOfUrn(urn)} ${nameOfUrn(urn)}: ok in ${Date.now() - t0} ms`);
    return r;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log(`${op} ${typeOfUrn(urn)} ${nameOfUrn(urn)}: FAILED in ${Date.now() - t0} ms: ${msg}${e instanceof ProviderError ? "" : `\n${(e as Error)?.stack ?? ""}`}`);
    throw new Error(msg);
  }
}

export interface MeshfleetProvider extends sdk.Provider {
  /** diff with per-property detail (sent by server-hook.ts). */
  diffDetailed(id: string, urn: string, olds: any, news: any): Promise<DetailedDiffResult>;
}

export const provider: MeshfleetProvider = {
  version: VERSION,

  async check(urn, _olds, news) {
    const failures = handler(urn).check?.(unwrapSecrets(news)) ?? [];
    if (failures.length) log(`check ${typeOfUrn(urn)} ${nameOfUrn(urn)}: ${failures.map((f) => `${f.property}: ${f.reason}`).join("; ")}`);
    return { inputs: news, failures };
  },

  async diffDetailed(_id, urn, olds, news) {
    // Under the resource's URN: a diff may say something the preview shows (a coordinator move's steps).
    const r = await forResource(urn, async () => handler(urn).diff(unwrapSecrets(olds), unwrapSecrets(news)));
    log(`diff ${typeOfUrn(urn)} ${nameOfUrn(urn)}: ${r.changes ? Object.entries(r.detailedDiff ?? {}).map(([k, v]) => `${k} ${v}`).join(", ") || "changes" : "no changes"}`);
    return r;
  },

  async diff(id, urn, olds, news) {
    const r = await this.diffDetailed(id, urn, olds, news);
    return { changes: r.changes, replaces: r.replaces, deleteBeforeReplace: r.deleteBeforeReplace };
  },

  create: (urn, inputs) =>
    traced("create", urn, async () => {
      const r = await handler(urn).create(unwrapSecrets(inputs));
      return { id: r.id, outs: plain(r.outs) };
    }),

  update: (id, urn, olds, news) =>
    traced("update", urn, async () => {
      const h = handler(urn);
      const outs = h.update ? await h.update(id, unwrapSecrets(olds), unwrapSecrets(news)) : (await h.create(unwrapSecrets(news))).outs;
      return { outs: plain(outs) };
    }),

  read: (id, urn, props) =>
    traced("read", urn, async () => {
      const o = await handler(urn).read(id, unwrapSecrets(props));
      // An empty id tells the engine the resource is gone.
      return o ? { id, props: plain(o) } : { id: "", props: {} };
    }),

  delete: (id, urn, props) => traced("delete", urn, () => handler(urn).delete(id, unwrapSecrets(props))),
};
