/**
 * The lab's docker variant, the parts that need no root (issue 20): a
 * normal host's nspawn arguments and environment are exactly as before; a
 * docker host adds what dockerd needs; its overlay stacks the docker layer
 * above the lab root. The booted variant is test/lab/docker-lab.test.ts.
 */
import { describe, expect, it } from "vitest";
import { apiVfsWritable, DOCKER_PACKAGES, dockerLayerDir, dockerNspawnArgs, headscaleImage, lowerDirs, wantedDockerMarker } from "../../lab/hosts/docker.ts";
import { dockerDataDir, hostPaths, nspawnArgs } from "../../lab/hosts/machine.ts";
import { rootfsDir } from "../../lab/hosts/paths.ts";
import { findHost, labTopology } from "../../lab/topology.ts";

const topo = labTopology(2);
const vps = findHost(topo, "vps");
const p = hostPaths(2, "vps");

describe("lab docker variant", () => {
  it("leaves a normal host's boot as it was", () => {
    const normal = nspawnArgs(vps, p, "mfl2-vps");
    expect(nspawnArgs(vps, p, "mfl2-vps", false)).toEqual(normal);
    expect(normal).toContain("--capability=CAP_NET_ADMIN");
    expect(normal.some((a) => a.startsWith("--system-call-filter") || a === "--capability=all" || a === "--bind=/sys/fs/cgroup")).toBe(false);
    expect(apiVfsWritable(false)).toBe("network");
    expect(lowerDirs(false)).toBe(rootfsDir());
  });

  it("a docker host adds every capability, the keyring and bpf calls, the cgroup tree and its own /var/lib/docker", () => {
    const normal = nspawnArgs(vps, p, "mfl2-vps");
    const docker = nspawnArgs(vps, p, "mfl2-vps", true);
    expect(docker.slice(0, normal.length)).toEqual(normal);
    expect(docker.slice(normal.length)).toEqual(dockerNspawnArgs(dockerDataDir(p)));
    expect(docker).toContain("--capability=all");
    expect(docker).toContain("--system-call-filter=add_key keyctl bpf");
    expect(docker).toContain("--bind=/sys/fs/cgroup");
    expect(docker).toContain(`--bind=${p.dir}/docker:/var/lib/docker`);
    expect(apiVfsWritable(true)).toBe("yes");
    // overlayfs: the leftmost lower layer is on top.
    expect(lowerDirs(true)).toBe(`${dockerLayerDir()}:${rootfsDir()}`);
  });

  it("the layer is remade when its packages or the base root change", () => {
    expect(DOCKER_PACKAGES).toEqual(["docker.io", "docker-compose"]);
    expect(wantedDockerMarker("a")).not.toEqual(wantedDockerMarker("b"));
    expect(wantedDockerMarker("a").packages).toEqual(["docker-compose", "docker.io"]);
  });

  it("headscale's image is the binary alone, run as its entrypoint", () => {
    const img = headscaleImage("/x/headscale", "0.29.2");
    expect(img.tag).toBe("meshfleet-lab/headscale:0.29.2");
    expect(img.files.find((f) => f.path === "usr/local/bin/headscale")).toEqual({ path: "usr/local/bin/headscale", from: "/x/headscale", mode: 0o755 });
    expect(img.changes).toContain('ENTRYPOINT ["/usr/local/bin/headscale"]');
    expect(img.dirs).toContain("var/run/headscale");
  });
});
