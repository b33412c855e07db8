/**
 * Progress the user sees while a step of the provider takes long (a reboot
 * check waits up to minutes): a line sent to the engine as an info message on
 * the resource being worked on, which `meshfleet up` prints under that
 * resource's host (and `pulumi up` under the resource). It also goes to the
 * provider's log file.
 *
 * The SDK's provider server connects its own engine client only for
 * Construct and Call, not for the create/update of a custom resource, so this
 * keeps one client of its own at the engine address the engine passed on the
 * provider's command line. A line that cannot be sent is dropped: progress
 * never fails a deploy. Callers pass no secret.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createRequire } from "node:module";
import { log } from "./log.ts";

const require = createRequire(import.meta.url);

let engineAddress: string | undefined;
let client: { log(req: unknown, md: unknown, o: { deadline: number }, cb: (err: unknown) => void): void; close(): void } | null = null;
const current = new AsyncLocalStorage<string>();

/** The engine's address from the provider's arguments, read as the SDK's provider server reads it. */
export function setEngineAddress(args: string[]): void {
  client?.close();
  client = null;
  engineAddress = require("@pulumi/pulumi/provider/internals.js").parseArgs(args)?.engineAddress;
}

/** Run `body` with `urn` as the resource that progress lines belong to. */
export function forResource<T>(urn: string, body: () => Promise<T>): Promise<T> {
  return current.run(urn, body);
}

function engine(): typeof client {
  if (client || !engineAddress) return client;
  try {
    const grpc = require("@grpc/grpc-js");
    const { EngineClient } = require("@pulumi/pulumi/proto/engine_grpc_pb");
    client = new EngineClient(engineAddress, grpc.credentials.createInsecure());
  } catch (e) {
    log(`progress: no engine client (${(e as Error).message}); progress goes to this log only`);
    engineAddress = undefined;
  }
  return client;
}

/**
 * Say `line` about `host` on the current resource: to the engine (an info
 * message; the CLI puts the host in front) and to the provider's log (as
 * "host H: line"). Resolves when sent or dropped.
 */
export function progress(host: string, line: string): Promise<void> {
  log(`host ${host}: ${line}`);
  const c = engine();
  const urn = current.getStore();
  if (!c || !urn) return Promise.resolve();
  const pb = require("@pulumi/pulumi/proto/engine_pb");
  const req = new pb.LogRequest();
  req.setSeverity(pb.LogSeverity.INFO);
  req.setMessage(line);
  req.setUrn(urn);
  req.setEphemeral(false);
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 5000);
    // The same 5 s bound on the call itself, so it does not stay open after the line is dropped.
    c.log(req, new (require("@grpc/grpc-js").Metadata)(), { deadline: Date.now() + 5000 }, (err: unknown) => {
      clearTimeout(timer);
      if (err) log(`progress: the engine did not take a line: ${(err as Error).message}`);
      resolve();
    });
  });
}
