/**
 * The provider process: `pulumi-resource-meshfleet` (provider/bin) runs this
 * with node and tsx. The engine starts one per run; it serves every
 * meshfleet:* resource of that run and closes its SSH connections on exit.
 */
import { main } from "@pulumi/pulumi/provider/index.js";
import { log } from "./log.ts";
import { setEngineAddress } from "./progress.ts";
import { provider, VERSION } from "./provider.ts";
import { installDetailedDiff } from "./server-hook.ts";
import { installCleanup } from "./ssh.ts";

log(`meshfleet provider ${VERSION} starting (node ${process.version})`);
installCleanup();
exitWithEngine();
installDetailedDiff(provider);
setEngineAddress(process.argv.slice(2));
await main(provider, process.argv.slice(2));

/**
 * The engine that started this process talks to it over gRPC and ends it when the run ends; an engine
 * killed mid-run (SIGKILL, the OOM killer, a CI job stopped) never does, and the provider would serve on
 * with nobody to serve. Once the engine is gone this process is re-parented: it then closes its SSH
 * connections and exits (installCleanup's exit handler).
 */
function exitWithEngine(): void {
  const engine = process.ppid;
  setInterval(() => {
    if (process.ppid === engine) return;
    log(`the engine (pid ${engine}) is gone: exiting`);
    process.exit(1);
  }, 1000).unref();
}
