/**
 * The bundle on the deploy side. The contract itself (schema, format, hash)
 * lives in contract/bundle.ts; the one render is core/render.ts renderHost.
 */
import type { HostSystem } from "./types.ts";

export {
  BUNDLE_FORMAT,
  bundleSchema,
  bundleHash,
  canonicalJson,
  checkBundle,
  parseBundle,
  sealBundle,
  sha256,
  type Bundle,
  type BundleFile,
  type BundleUnit,
  type Firewall,
  type TailscaleConfig,
} from "../contract/bundle.ts";
export { renderHost } from "./render.ts";

/** Names of the secrets a host's files need (see FileSpec.secretRef). */
export function secretRefs(host: HostSystem): string[] {
  return [...new Set(host.files.flatMap((f) => (f.secretRef ? [f.secretRef] : [])))].sort();
}
