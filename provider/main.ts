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
installDetailedDiff(provider);
setEngineAddress(process.argv.slice(2));
await main(provider, process.argv.slice(2));
