/**
 * The image contract of the docker runtime (issue 20): an image is pinned by
 * an exact tag, a registry digest, or, for an image built on the host, its
 * id (`sha256:<64 hex>`, as `docker import`/`docker build` print it) written
 * as the host file's image. meshfleet:imageDigests holds registry digests
 * only: an id was once appended as `repo:tag@sha256:<id>`, which docker looks
 * up in a registry and fails at the switch. Also: compose's `$` escaping and
 * derper's admission URL inside a container.
 */
import { describe, expect, it } from "vitest";
import { composeLiteral, pinnedImage, renderCompose, validateImagePin } from "../../components/dockerService.ts";
import { coordinatorImages, validateCoordinatorArgs } from "../../components/coordinator.ts";
import { evaluateStack } from "./fixtures.ts";

const D = (c: string) => `sha256:${c.repeat(64)}`;

async function vps() {
  const { fleet } = await evaluateStack("home");
  return { fleet, h: fleet.hosts.vps! };
}

describe("image contract", () => {
  it.each([
    [D("a"), true],
    [`docker.io/headscale/headscale@${D("a")}`, true],
    ["docker.io/headscale/headscale:0.29.2", true],
    ["sha256:abc", false],
    [`${D("a")}x`, false],
    ["headscale/headscale:latest", false],
    ["headscale/headscale", false],
  ])("validateImagePin(%s) pinned=%s", (image, ok) => {
    expect(validateImagePin(image, "x").length === 0).toBe(ok);
  });

  it("a registry digest is appended to a repository; an image id takes none", () => {
    expect(pinnedImage("docker.io/headscale/headscale:0.29.2", D("c"))).toBe(`docker.io/headscale/headscale:0.29.2@${D("c")}`);
    expect(pinnedImage(D("a"))).toBe(D("a"));
    expect(() => pinnedImage(D("a"), D("c"))).toThrow(/an image id \(a local image\) cannot take a registry digest .* Fix: drop it from meshfleet:imageDigests/);
  });

  it("an image id in the host file reaches the compose file as it is", async () => {
    const { h } = await vps();
    const local = { ...h, containers: h.containers.map((c) => (c.name === "headscale" ? { ...c, image: D("e") } : c)) };
    const images = coordinatorImages(local, {});
    expect(images.headscale).toBe(D("e"));
    expect(renderCompose(local, images).services.headscale!.image).toBe(D("e"));
  });

  it("check refuses a digest given for an image id, naming the container and the fix", async () => {
    const { fleet, h } = await vps();
    const local = { ...h, containers: h.containers.map((c) => (c.name === "headscale" ? { ...c, image: D("e") } : c)) };
    const info = { serverUrl: fleet.coordinator.serverUrl, runtime: "docker", headscaleVersion: "0.29.2" } as never;
    const problems = validateCoordinatorArgs({ host: local, info, imageDigests: { headscale: D("f") }, secrets: { "noise-key": "x", "derp-key": "y" } } as never);
    expect(problems.filter((p) => /ids are not digests/.test(p))).toEqual([
      `${h.file}: containers[headscale].image: expected a registry image (repo:tag) for the digest meshfleet:imageDigests.headscale, found the image id sha256:eeeeeeeeeeee… (a local image: ids are not digests). Fix: remove headscale from meshfleet:imageDigests`,
    ]);
    const ok = validateCoordinatorArgs({ host: local, info, secrets: { "noise-key": "x", "derp-key": "y" } } as never);
    expect(ok.filter((p) => /image/.test(p))).toEqual([]);
  });
});

describe("compose literals", () => {
  it("a `$` in a command reaches the container as written ($$ in the compose file)", async () => {
    expect(composeLiteral("sleep 6h & wait $!; x=${Y}")).toBe("sleep 6h & wait $$!; x=$${Y}");
    const { h } = await vps();
    const nginx = renderCompose(h).services.nginx as unknown as { command: string[] };
    // Compose 1.29 refused the unescaped `$!` of nginx's reload loop ("Invalid interpolation format").
    expect(nginx.command.join(" ")).toContain("wait $$!");
    expect(nginx.command.join(" ")).not.toMatch(/(^|[^$])\$![^$]/);
  });
});
