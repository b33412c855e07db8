/**
 * A ReverseProxy on its own (as a user of the components would build it),
 * docker runtime: its container is in the host's generation (the compose
 * file), so it needs the host's HostAgent and checks the compose unit after
 * that generation is confirmed. Named volumes and bind mounts are the
 * compose render's (test/components/compose.test.ts).
 */
import { describe, expect, it } from "vitest";
import * as pulumi from "@pulumi/pulumi";
import { HostAgent, ReverseProxy, validateReverseProxyArgs } from "../../components/index.ts";
import { COMPOSE_UNIT } from "../../agent/compose.ts";
import { installMocks, settle, valueOf } from "./harness.ts";
import { evaluateStack, fakeAgentFile, KEY_SEED, knownHostsFile, SSH_KEY } from "./fixtures.ts";
import { coordinatorGenerationHost } from "../../components/coordinator.ts";
import { derivePrivateKey, publicKeyOf } from "../../core/keys.ts";

describe("ReverseProxy, docker runtime", () => {
  it("needs the host's agent push and checks the compose unit after it", async () => {
    const { fleet } = await evaluateStack("home");
    const vps = fleet.hosts.vps!;
    const rec = await installMocks(() => undefined);
    expect(validateReverseProxyArgs({ host: vps, kind: "nginx", url: "https://headscale.example.com" })).toEqual([
      "ReverseProxy on vps: the docker runtime needs the host's HostAgent (Coordinator.hostAgent): the container is in its generation",
    ]);
    const noise = derivePrivateKey(KEY_SEED, "noise");
    const secrets = { "noise-key": pulumi.secret(noise), "derp-key": pulumi.secret(derivePrivateKey(KEY_SEED, "derp")), "noise-public-key": pulumi.secret(publicKeyOf(noise)), "preauth:vps": pulumi.secret("hskey-auth-test") };
    const ssh = { privateKey: pulumi.secret(SSH_KEY), knownHostsPath: knownHostsFile(fleet) };
    const hostAgent = new HostAgent("vps-agent", { host: coordinatorGenerationHost(vps), secrets, ssh, agentPath: fakeAgentFile() });
    const proxy = new ReverseProxy("edge", { host: vps, kind: "nginx", url: "https://headscale.example.com", hostAgent, ssh });
    expect(await valueOf(proxy.kind)).toBe("nginx");
    await settle();
    const check = rec.byName("edge-check");
    expect(check.inputs.units).toEqual([COMPOSE_UNIT]);
    expect(rec.parentName("edge-check")).toBe("edge");
    expect(rec.dependsOn("edge-check")).toContain("vps-agent-generation");
    expect(rec.ofType("pulumi:providers:docker")).toEqual([]);
  });
});
