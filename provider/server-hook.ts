/**
 * The Node SDK's provider server (@pulumi/pulumi 3.248.0, provider/server.js)
 * answers Diff with changes/replaces only: its DiffResult has no field for a
 * detailed diff, so `preview --diff` could not say which file changed. This
 * registers our own Diff handler on the SDK's gRPC service as it is added,
 * filling DiffResponse.detailedDiff (pulumirpc.PropertyDiff per path). Every
 * other method stays the SDK's.
 */
import { createRequire } from "node:module";
import type { DiffKind } from "./wire.ts";
import type { MeshfleetProvider } from "./provider.ts";

const require = createRequire(import.meta.url);

const KIND: Record<DiffKind, number> = { add: 0, "add-replace": 1, delete: 2, "delete-replace": 3, update: 4, "update-replace": 5 };

/** `files["/etc/x"]` → `files`: the top-level key the engine's `diffs` list wants. */
export function topKey(p: string): string {
  return /^[^.[]+/.exec(p)?.[0] ?? p;
}

/**
 * Patch grpc's Server.addService for the next registration of the resource
 * provider service only; call right before the SDK's `main`.
 */
export function installDetailedDiff(provider: MeshfleetProvider): void {
  const grpc = require("@grpc/grpc-js");
  const provrpc = require("@pulumi/pulumi/proto/provider_grpc_pb");
  const provproto = require("@pulumi/pulumi/proto/provider_pb");
  const original = grpc.Server.prototype.addService;
  grpc.Server.prototype.addService = function (service: unknown, impl: Record<string, unknown>) {
    if (service === provrpc.ResourceProviderService) {
      grpc.Server.prototype.addService = original;
      impl.diff = (call: { request: any }, callback: (err: unknown, resp?: unknown) => void) => {
        (async () => {
          const req = call.request;
          const r = await provider.diffDetailed(req.getId(), req.getUrn(), req.getOlds().toJavaScript(), req.getNews().toJavaScript());
          const resp = new provproto.DiffResponse();
          resp.setChanges(r.changes ? provproto.DiffResponse.DiffChanges.DIFF_SOME : provproto.DiffResponse.DiffChanges.DIFF_NONE);
          if (r.replaces?.length) resp.setReplacesList(r.replaces);
          if (r.deleteBeforeReplace) resp.setDeletebeforereplace(true);
          const detailed = r.detailedDiff ?? {};
          resp.setDiffsList([...new Set(Object.keys(detailed).map(topKey))]);
          const m = resp.getDetaileddiffMap();
          for (const [path, kind] of Object.entries(detailed)) {
            const pd = new provproto.PropertyDiff();
            pd.setKind(KIND[kind]);
            // Old outputs against new inputs: drift that `read` marked in the outputs shows too.
            pd.setInputdiff(false);
            m.set(path, pd);
          }
          resp.setHasdetaileddiff(true);
          callback(null, resp);
        })().catch((e) => callback(e));
      };
    }
    return original.call(this, service, impl);
  };
}
