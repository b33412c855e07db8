/**
 * How a deploy loads the Pulumi Node SDK.
 *
 * `@pulumi/pulumi` 3.248.0 loads, with its index or its Automation API,
 * what only function serialization uses (`pulumi.runtime.serializeFunction`,
 * `computeCodePaths`, dynamic providers): the TypeScript compiler
 * (runtime/closure/parseFunction.js through typescript-shim.js) and npm's
 * Arborist with its dependency tree (runtime/closure/codePaths.js). That is
 * 790 of the 1,115 modules it loads and about 0.8 s of CPU, paid by every
 * `meshfleet up` before anything else can happen. meshfleet serializes no
 * function, so those modules are handed to the SDK as stand-ins that load
 * the real module on first use: nothing changes but when they load.
 */
import Module from "node:module";

/** Parent file (under @pulumi/pulumi/) → the requests it gets a stand-in for. */
const DEFERRED: Record<string, string[]> = {
  "runtime/closure/codePaths.js": ["@npmcli/arborist", "fdir", "normalize-package-data"],
  "typescript-shim.js": ["typescript"],
};

const INSTALLED = Symbol.for("meshfleet.deferPulumiSdkDeps");

type Load = (request: string, parent: { filename?: string } | undefined, isMain: boolean) => unknown;

/** The requests that were deferred, and whether each has since been loaded for real. */
export const deferred = new Map<string, boolean>();

function deferredFor(parent: string | undefined, request: string): boolean {
  if (!parent) return false;
  const at = parent.replaceAll("\\", "/").lastIndexOf("/node_modules/@pulumi/pulumi/");
  if (at < 0) return false;
  const rel = parent.slice(at + "/node_modules/@pulumi/pulumi/".length).replaceAll("\\", "/");
  return DEFERRED[rel]?.includes(request) ?? false;
}

/**
 * Install the stand-ins (once per process; before the SDK is first loaded,
 * or it has loaded the real modules already). The stand-in for Arborist says
 * `__esModule` so that the SDK's `__importStar` keeps it as it is instead of
 * copying every export (which would load it); the others are plain `require`s
 * or default imports, which never look at it before a call.
 */
export function deferPulumiSdkDeps(): void {
  const g = globalThis as Record<symbol, unknown>;
  if (g[INSTALLED]) return;
  g[INSTALLED] = true;
  const M = Module as unknown as { _load: Load };
  const load = M._load;
  M._load = function (this: unknown, request, parent, isMain) {
    if (!deferredFor(parent?.filename, request)) return load.call(this, request, parent, isMain);
    let real: unknown;
    const get = (): any => {
      if (real === undefined) {
        real = load.call(this, request, parent, isMain);
        deferred.set(request, true);
      }
      return real;
    };
    deferred.set(request, deferred.get(request) ?? false);
    return new Proxy(function () {}, {
      get: (_, k) => (k === "__esModule" ? request === "@npmcli/arborist" : get()[k]),
      has: (_, k) => k in get(),
      apply: (_, self, args) => Reflect.apply(get(), self, args),
      construct: (_, args) => Reflect.construct(get(), args),
    });
  };
}

/** The Automation API, with the SDK loaded as above. */
export async function automation(): Promise<typeof import("@pulumi/pulumi/automation/index.js")> {
  deferPulumiSdkDeps();
  return import("@pulumi/pulumi/automation/index.js");
}
