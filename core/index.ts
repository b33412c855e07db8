/**
 * The public surface of core/: what cli/, components/ and tests may use.
 * core/ imports nothing from modules/: evaluation takes the module registry
 * as its first argument (`evaluateFleet(REGISTRY, dir, stack)`, REGISTRY
 * from modules/index.ts).
 */
export { evaluateFleet, evaluateLoaded, hostSchema, type EvalResult } from "./eval.ts";
export type { HostConfig, ModuleOptions, ModuleRegistry, MeshModule, PeerView, HostFacts } from "./module.ts";
export { loadFleetDir, parseYaml } from "./load.ts";
export { formatDiagnostic, formatDiagnostics, sortDiagnostics, hasErrors, MeshfleetError } from "./diagnostics.ts";
export { mkDefault, mkForce, mkOverride, PRIORITY } from "./priority.ts";
export { renderHost, parseBundle, checkBundle, secretRefs, canonicalJson, sha256, BUNDLE_FORMAT, type Bundle } from "./bundle.ts";
export { derivePrivateKey, publicKeyOf } from "./keys.ts";
export { renderNftables } from "./render.ts";
export type * from "./types.ts";
export { AGENT_HOST_PATH } from "./types.ts";
