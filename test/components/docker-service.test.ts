/**
 * A ReverseProxy on its own (as a user of the components would build it):
 * named volumes become docker volumes kept on destroy; an absolute path is
 * a read-only bind mount (certbot's certificates on the host), no volume.
 */
import { describe, expect, it } from "vitest";
import * as docker from "@pulumi/docker";
import { ReverseProxy, validateReverseProxyArgs } from "../../components/index.ts";
import { installMocks, settle, valueOf } from "./harness.ts";
import { evaluateStack } from "./fixtures.ts";

describe("ReverseProxy, docker runtime", () => {
  it("mounts certificate directories read-only and keeps named volumes", async () => {
    const { fleet } = await evaluateStack("home");
    const vps = fleet.hosts.vps;
    const host = {
      ...vps,
      containers: vps.containers.map((c) =>
        c.name === "nginx" ? { ...c, volumes: [{ name: "/etc/letsencrypt", containerPath: "/etc/letsencrypt" }, { name: "nginx-cache", containerPath: "/var/cache/nginx" }] } : c,
      ),
    };
    const rec = await installMocks(() => undefined);
    const provider = new docker.Provider("vps-docker", { host: "ssh://root@203.0.113.10:56777" });
    expect(validateReverseProxyArgs({ host, kind: "nginx", url: "https://headscale.example.com" })).toEqual([
      "ReverseProxy on vps: the docker runtime needs the host's docker provider (Coordinator.dockerProvider)",
    ]);
    const proxy = new ReverseProxy("edge", { host, kind: "nginx", url: "https://headscale.example.com", provider });
    expect(await valueOf(proxy.kind)).toBe("nginx");
    await settle();
    const c = rec.byName("edge-container").inputs;
    expect(c.volumes).toEqual([
      { hostPath: "/etc/letsencrypt", containerPath: "/etc/letsencrypt", readOnly: true },
      { volumeName: "nginx-cache", containerPath: "/var/cache/nginx" },
    ]);
    expect(rec.ofType("docker:index/volume:Volume").map((v) => v.name)).toEqual(["edge-volume-nginx-cache"]);
    expect(rec.parentName("edge-container")).toBe("edge");
    expect(rec.dependsOn("edge-container")).toContain("edge-volume-nginx-cache");
  });
});
