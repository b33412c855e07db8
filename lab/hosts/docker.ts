/**
 * The lab's docker variant (issue 20): a host that runs Debian's docker.io.
 *
 * The docker packages live in a layer of their own above the cached Debian
 * root (an overlay upper dir made once and then used as a second lower
 * layer), so the normal lab root does not grow and normal hosts boot exactly
 * as before. A docker host boots with what dockerd needs inside nspawn:
 * writable API file systems, every capability, the keyring and bpf system
 * calls, and the host's cgroup tree bound in (this kernel's hosts use cgroup
 * v1, where runc must make /sys/fs/cgroup/<controller>/docker).
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LabError, run } from "./exec.ts";
import { labCacheDir, rootfsDir } from "./paths.ts";
import { readMarker, withLock } from "./rootfs.ts";
import { SETUP_FIX, strictEnv } from "./debs.ts";

/**
 * Debian bookworm offers docker.io 20.10 and the Python docker-compose 1.29
 * (no compose plugin): the agent runs `docker-compose`.
 */
export const DOCKER_PACKAGES: readonly string[] = ["docker.io", "docker-compose"];

/** Bump when `buildDockerLayer` changes what it puts in the layer. */
const LAYER_VERSION = 1;
const MARKER = ".meshfleet-docker-layer.json";

export interface DockerLayerMarker {
  format: 1;
  packages: string[];
  layer: number;
  /** The base root's madeAt: a remade base root remakes the layer. */
  base: string;
  madeAt?: string;
  installMs?: number;
}

export function dockerLayerDir(): string {
  return join(labCacheDir(), "layer-bookworm-docker");
}

export function wantedDockerMarker(base = readMarker(rootfsDir())?.madeAt ?? ""): DockerLayerMarker {
  return { format: 1, packages: [...DOCKER_PACKAGES].sort(), layer: LAYER_VERSION, base };
}

export function dockerLayerIsCurrent(dir = dockerLayerDir()): boolean {
  try {
    const m = JSON.parse(readFileSync(join(dir, MARKER), "utf8")) as DockerLayerMarker;
    const w = wantedDockerMarker();
    return m.format === w.format && m.layer === w.layer && m.base === w.base && JSON.stringify(m.packages) === JSON.stringify(w.packages);
  } catch {
    return false;
  }
}

/** The overlay lowerdir of a host: the docker layer above the base root, or the base root alone. */
export function lowerDirs(dockerHost: boolean): string {
  return dockerHost ? `${dockerLayerDir()}:${rootfsDir()}` : rootfsDir();
}

/** dockerd's settings in the lab: container logs do not grow without bound. */
export const DAEMON_JSON = JSON.stringify({ "log-driver": "json-file", "log-opts": { "max-size": "1m", "max-file": "2" } }, null, 2) + "\n";

/**
 * Make the docker layer if it is missing or stale: an overlay over the base
 * root whose upper dir receives `apt-get install` run in a chroot (the host's
 * resolver is lent for the download and taken back), then kept as the layer.
 * setup (scripts/setup.sh, through lab/hosts/prepare.ts) makes it; in CI
 * (`allowFetch` defaults to false there) a missing layer is an error naming
 * setup, so a lab test never downloads packages.
 */
export async function ensureDockerLayer(
  log: (msg: string) => void = () => {},
  opts: { allowFetch?: boolean } = {},
): Promise<{ path: string; made: boolean; installMs?: number }> {
  const dir = dockerLayerDir();
  if (dockerLayerIsCurrent(dir)) return { path: dir, made: false };
  if (!(opts.allowFetch ?? !strictEnv())) throw new LabError(`lab docker layer: ${dir} is missing or stale (${DOCKER_PACKAGES.join(", ")} over the lab root); ${SETUP_FIX}`);
  return withLock(`${dir}.lock`, "lab docker layer", async () => {
    if (dockerLayerIsCurrent(dir)) return { path: dir, made: false };
    const users = readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => / - overlay /.test(l) && l.includes(`lowerdir=${dir}:`));
    if (users.length > 0) throw new LabError(`lab docker layer: ${dir} must be remade but running hosts use it; run 'meshfleet lab hosts down --instance N' for each lab first`);
    const partial = `${dir}.partial`;
    const merged = join(partial, "merged");
    await run(["umount", merged], { allowFail: true });
    rmSync(partial, { recursive: true, force: true });
    for (const d of ["upper", "work", "merged"]) mkdirSync(join(partial, d), { recursive: true });
    await run(["mount", "-t", "overlay", "meshfleet-docker-layer", "-o", `lowerdir=${rootfsDir()},upperdir=${join(partial, "upper")},workdir=${join(partial, "work")}`, merged]);
    const t0 = Date.now();
    try {
      const resolv = join(merged, "etc/resolv.conf");
      const labResolv = readFileSync(resolv, "utf8");
      writeFileSync(resolv, readFileSync("/etc/resolv.conf", "utf8"));
      // No service starts in the chroot.
      writeFileSync(join(merged, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", { mode: 0o755 });
      const env = { DEBIAN_FRONTEND: "noninteractive", PATH: "/usr/sbin:/usr/bin:/sbin:/bin" };
      log(`apt-get install ${DOCKER_PACKAGES.join(" ")}`);
      await run(["chroot", merged, "apt-get", "update"], { env, timeoutMs: 10 * 60_000 });
      await run(["chroot", merged, "apt-get", "install", "-y", "--no-install-recommends", ...DOCKER_PACKAGES], { env, timeoutMs: 20 * 60_000 });
      await run(["chroot", merged, "apt-get", "clean"], { env });
      rmSync(join(merged, "usr/sbin/policy-rc.d"), { force: true });
      rmSync(join(merged, "var/lib/apt/lists"), { recursive: true, force: true });
      mkdirSync(join(merged, "var/lib/apt/lists/partial"), { recursive: true });
      writeFileSync(resolv, labResolv);
      mkdirSync(join(merged, "etc/docker"), { recursive: true });
      writeFileSync(join(merged, "etc/docker/daemon.json"), DAEMON_JSON);
      writeFileSync(join(merged, MARKER), JSON.stringify({ ...wantedDockerMarker(), madeAt: new Date().toISOString(), installMs: Date.now() - t0 }, null, 2) + "\n");
    } finally {
      await run(["umount", merged], { allowFail: true });
    }
    const installMs = Date.now() - t0;
    rmSync(dir, { recursive: true, force: true });
    renameSync(join(partial, "upper"), dir);
    rmSync(partial, { recursive: true, force: true });
    return { path: dir, made: true, installMs };
  });
}

/**
 * What a docker host adds to nspawn's arguments. /var/lib/docker is a
 * folder of the host's run dir bound in: overlay2 cannot stack on the
 * host's own overlay root.
 */
export function dockerNspawnArgs(dockerDataDir: string): string[] {
  return ["--capability=all", "--system-call-filter=add_key keyctl bpf", "--bind=/sys/fs/cgroup", `--bind=${dockerDataDir}:/var/lib/docker`];
}

/** SYSTEMD_NSPAWN_API_VFS_WRITABLE for a host: docker needs /proc/sys and /sys writable, others only the network part. */
export function apiVfsWritable(dockerHost: boolean): string {
  return dockerHost ? "yes" : "network";
}

/** One file of an image built from local files. */
export interface ImageFile {
  /** Path inside the image. */
  path: string;
  /** A file on this machine to copy in, or the content itself. */
  from?: string;
  content?: string;
  mode?: number;
}

export interface LocalImage {
  /** Files of the image; their parent folders are made. */
  files: ImageFile[];
  /** Empty folders the image has (a state dir, /tmp). */
  dirs?: string[];
  /**
   * Of those, the ones that are root's alone (0700): a state folder a named volume is mounted on.
   * Docker copies an empty volume's first mount from the image, mode included, so a 0755 folder
   * here would open the volume's folder on the host.
   */
  privateDirs?: string[];
  /** Dockerfile instructions `docker import -c` takes (ENTRYPOINT, ENV, CMD). */
  changes?: string[];
  /** A tag for people reading `docker images`; the id is what a generation pins. */
  tag: string;
}

/**
 * Build an image on a lab host without a registry: a tarball of local files
 * piped to `docker import` over the lab's SSH. Returns the image id
 * (`sha256:…`), which a generation pins.
 */
export async function importImage(sshArgv: readonly string[] /* ssh options and destination */, image: LocalImage): Promise<string> {
  const { mkdtempSync, copyFileSync, chmodSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const stage = mkdtempSync(join(tmpdir(), "meshfleet-image-"));
  try {
    for (const d of [...(image.dirs ?? []), "tmp"]) mkdirSync(join(stage, d), { recursive: true });
    chmodSync(join(stage, "tmp"), 0o1777);
    for (const d of image.privateDirs ?? []) {
      mkdirSync(join(stage, d), { recursive: true });
      chmodSync(join(stage, d), 0o700);
    }
    for (const f of image.files) {
      const dest = join(stage, f.path);
      mkdirSync(join(dest, ".."), { recursive: true });
      if (f.from) copyFileSync(f.from, dest);
      else writeFileSync(dest, f.content ?? "");
      if (f.mode !== undefined) chmodSync(dest, f.mode);
    }
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const changes = (image.changes ?? []).map((c) => `-c ${q(c)}`).join(" ");
    const remote = `docker import ${changes} - ${image.tag}`;
    const r = await run(["sh", "-c", `tar --numeric-owner --owner=0 --group=0 -C ${q(stage)} -c . | ssh ${sshArgv.map(q).join(" ")} ${q(remote)}`], { timeoutMs: 5 * 60_000 });
    const id = r.stdout.trim().split("\n").pop() ?? "";
    if (!/^sha256:[0-9a-f]{64}$/.test(id)) throw new LabError(`docker import ${image.tag}: expected an image id, found ${JSON.stringify(id)}`);
    return id;
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/** headscale's image for the lab: the built static binary alone, run as `headscale …`. */
export function headscaleImage(binary: string, version: string): LocalImage {
  return {
    tag: `meshfleet-lab/headscale:${version}`,
    files: [
      { path: "usr/local/bin/headscale", from: binary, mode: 0o755 },
      { path: "etc/passwd", content: "root:x:0:0:root:/root:/sbin/nologin\n" },
      { path: "etc/group", content: "root:x:0:\n" },
    ],
    dirs: ["etc/headscale", "var/lib/headscale", "var/run/headscale", "root"],
    privateDirs: ["var/lib/headscale"],
    changes: ['ENTRYPOINT ["/usr/local/bin/headscale"]', "ENV PATH=/usr/local/bin:/usr/bin:/bin"],
  };
}
