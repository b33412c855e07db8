/**
 * Progress from the provider reaches the engine: a real gRPC Engine service
 * on loopback (the service the Pulumi engine serves to providers) receives
 * each line as an info message on the resource being worked on.
 */
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { forResource, progress, setEngineAddress } from "../../provider/progress.ts";

const require = createRequire(import.meta.url);
const grpc = require("@grpc/grpc-js");
const enginerpc = require("@pulumi/pulumi/proto/engine_grpc_pb");
const pb = require("@pulumi/pulumi/proto/engine_pb");
const empty = require("google-protobuf/google/protobuf/empty_pb");

const URN = "urn:pulumi:lab::meshfleet::meshfleet:host:Generation::lxc-tailscale";

describe("provider progress", () => {
  const got: Array<{ severity: number; message: string; urn: string; ephemeral: boolean }> = [];
  let server: any;

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(enginerpc.EngineService, {
      log: (call: any, cb: any) => {
        const r = call.request;
        got.push({ severity: r.getSeverity(), message: r.getMessage(), urn: r.getUrn(), ephemeral: r.getEphemeral() });
        cb(null, new empty.Empty());
      },
    });
    const port = await new Promise<number>((res, rej) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e: Error | null, p: number) => (e ? rej(e) : res(p))));
    // As the engine starts a provider: flags, then its own address.
    setEngineAddress(["--logtostderr", "-v=9", `127.0.0.1:${port}`]);
  });
  afterAll(() => server?.forceShutdown());

  it("sends a line on the current resource as a non-ephemeral info message, without the host (the CLI adds it)", async () => {
    await forResource(URN, () => progress("lxc-tailscale", "--reboot-check: rebooting"));
    expect(got).toEqual([{ severity: pb.LogSeverity.INFO, message: "--reboot-check: rebooting", urn: URN, ephemeral: false }]);
  });

  it("sends nothing outside a resource's operation", async () => {
    const n = got.length;
    await progress("vps", "not on a resource");
    expect(got.length).toBe(n);
  });

  it("an engine that is gone drops the line and never throws", async () => {
    setEngineAddress(["127.0.0.1:1"]);
    const n = got.length;
    const t0 = Date.now();
    await expect(forResource(URN, () => progress("vps", "dropped"))).resolves.toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(6000);
    expect(got.length).toBe(n);
  });
});
