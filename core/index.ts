/** The public surface of core/: what cli/, components/ and tests may use. */
export { evaluateFleet, evaluateLoaded, hostSchema, type EvalResult } from "./eval.ts";
export { loadFleetDir, parseYaml } from "./load.ts";
export { formatDiagnostic, formatDiagnostics, sortDiagnostics, hasErrors, MeshfleetError } from "./diagnostics.ts";
export { mkDefault, mkForce, mkOverride, PRIORITY } from "./priority.ts";
export { makeBundle, checkBundle, secretRefs, canonicalJson, sha256, type Bundle } from "./bundle.ts";
export { derivePrivateKey, publicKeyOf } from "./keys.ts";
export { renderNftables } from "../modules/firewall.ts";
export type * from "./types.ts";
export { AGENT_HOST_PATH } from "./types.ts";
