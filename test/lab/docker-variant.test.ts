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
import { execFileSync } from "node:child_process";
import { parse } from "yaml";
import { dockerVpsYaml, nginxDockerfile, derperImage } from "../../lab/e2e/docker-variant.ts";
import { HS_IN_DOCKER, hsCli, hsPolicyPath, hsService } from "../../lab/e2e/coordinator-runtime.ts";

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

  it("the variant's VPS file: the docker runtime, nginx with the lab's certificate, each image pinned by id", () => {
    const D = (c: string) => `sha256:${c.repeat(64)}`;
    const y = parse(dockerVpsYaml({ nginx: D("a"), headscale: D("b"), derper: D("c") }, "172.31.242.10")) as Record<string, Record<string, unknown>>;
    expect(y.runtime).toBe("docker");
    expect(y.address).toBe("172.31.242.10");
    expect(y.headscale).toEqual({ image: D("b") });
    expect(y["reverse-proxy"]).toMatchObject({ kind: "nginx", image: D("a"), nginxVersion: "1.22", certificate: "/etc/meshfleet-lab/tls/fullchain.pem" });
    expect(y.derp).toMatchObject({ image: D("c"), derpPort: 8443, certMode: "manual" });
  });

  it("nginx's image is Debian's package on the lab's base; derper's is the binary alone", () => {
    const f = nginxDockerfile(["nginx-common_1.22.1-9_all.deb", "nginx_1.22.1-9_amd64.deb"]);
    expect(f).toMatch(/^FROM meshfleet-lab\/debian:bookworm\n/);
    expect(f).toContain("COPY nginx-common_1.22.1-9_all.deb nginx_1.22.1-9_amd64.deb /tmp/debs/");
    expect(f).toContain("dpkg -i /tmp/debs/*.deb");
    const d = derperImage("/x/derper", "1.98.10");
    expect(d.files[0]).toEqual({ path: "usr/local/bin/derper", from: "/x/derper", mode: 0o755 });
    expect(d.changes ?? []).toEqual([]);
    // An empty volume's first mount takes the image folder's mode: the state folders ship 0700.
    expect(d.privateDirs).toEqual(["var/lib/derper"]);
    expect(headscaleImage("/x/headscale", "0.29.2").privateDirs).toEqual(["var/lib/headscale"]);
  });

  it("lab check's coordinator commands are valid shell for either runtime", () => {
    for (const cmd of [`${hsCli()} nodes list -o json`, `${hsService("stop")} && ! ${hsService("is-active")} >/dev/null`, hsService("restart"), `p=${hsPolicyPath()}; cp -p $p $p.x`]) {
      execFileSync("sh", ["-n", "-c", cmd]);
    }
    expect(hsCli()).toContain('docker exec -i headscale headscale "$@"');
    expect(hsCli()).toMatch(/-c \/etc\/headscale\/config.yaml "\$@"; fi' headscale$/);
    // The test the helpers share, run for real: no compose file here, so the systemd branch.
    expect(() => execFileSync("sh", ["-c", HS_IN_DOCKER])).toThrow();
  });
});
