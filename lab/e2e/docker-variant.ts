/**
 * The lab's docker variant (issue 20): `meshfleet lab up --docker`.
 *
 * The same fleet as hosts/lab, except the VPS: it boots as a docker host
 * (Debian's docker.io in a layer above the lab root, lab/hosts/docker.ts)
 * and runs headscale, nginx and derper as containers of its generation
 * (`runtime: docker`). Its images are made on the VPS from local files, none
 * pulled:
 *   - a Debian base: the lab's own root, `docker import`ed;
 *   - nginx: Debian's nginx package (the lab's cached .deb files) installed
 *     on that base by `docker build`;
 *   - headscale and derper: the built static binaries alone.
 * Each is pinned in the variant's VPS file by the image id docker printed
 * (`image: sha256:…`, the image contract in components/dockerService.ts).
 *
 * The variant's fleet is written by code beside the lab's state (hosts/lab
 * copied, vps.yaml replaced) and the lab stack's hostsDir points at it; a
 * marker there tells `lab check` and the other lab steps which fleet is
 * deployed. nginx serves TLS with a certificate from a lab CA made here,
 * which the nodes trust (the standard lab's Caddy CA is not involved).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parse } from "yaml";
import { sshArgs, sshExec } from "../hosts/index.ts";
import { ACME_DEBS, cachedDebs, SETUP_FIX } from "../hosts/debs.ts";
import { headscaleImage, importImage, type LocalImage } from "../hosts/docker.ts";
import { run } from "../hosts/exec.ts";
import { readMarker } from "../hosts/rootfs.ts";
import { rootfsDir, toolsDir } from "../hosts/paths.ts";
import { loadVersions } from "../tools/index.ts";
import { labTopology } from "../topology.ts";
import { COORDINATOR, FLEET_DIR, fleetHosts } from "./fleet.ts";
import { e2ePaths } from "./paths.ts";

/** "postgres": `lab up --postgres` (lab/e2e/postgres-variant.ts), the coordinator's database in a local Postgres. */
export type LabVariant = "standard" | "docker" | "postgres";

const markerFile = (instance: number) => join(e2ePaths(instance).dir, "variant.json");

/** The variant lab up last deployed on this instance ("standard" when none is recorded). */
export function labVariant(instance: number): LabVariant {
  try {
    const v = (JSON.parse(readFileSync(markerFile(instance), "utf8")) as { variant?: LabVariant }).variant;
    return v === "docker" || v === "postgres" ? v : "standard";
  } catch {
    return "standard";
  }
}

export function setLabVariant(instance: number, variant: LabVariant, extra: Record<string, unknown> = {}): void {
  mkdirSync(e2ePaths(instance).dir, { recursive: true });
  writeFileSync(markerFile(instance), JSON.stringify({ variant, at: new Date().toISOString(), ...extra }, null, 2) + "\n");
}

/** Where the variant's fleet is written (outside the repo: its VPS file names this machine's image ids). */
export function variantFleetDir(instance: number): string {
  return join(e2ePaths(instance).dir, "hosts-docker");
}

/** Where `lab up --postgres` writes its fleet (lab/e2e/postgres-variant.ts). */
export function postgresFleetDir(instance: number): string {
  return join(e2ePaths(instance).dir, "hosts-postgres");
}

/** The stack config's meshfleet:hostsDir on this instance, if it has one. */
export function stackHostsDirOf(instance: number): string | undefined {
  const f = e2ePaths(instance).stackConfig;
  if (!existsSync(f)) return undefined;
  const v = (parse(readFileSync(f, "utf8")) as { config?: Record<string, unknown> } | null)?.config?.["meshfleet:hostsDir"];
  return typeof v === "string" ? v : undefined;
}

/** The fleet folder the lab deploys on this instance: hosts/lab, or the docker variant's. */
export function labFleetDir(instance: number): string {
  const v = labVariant(instance);
  return v === "docker" ? variantFleetDir(instance) : v === "postgres" ? postgresFleetDir(instance) : FLEET_DIR;
}

/** The images of the variant's VPS, by the id docker gave each. */
export interface VariantImages {
  base: string;
  nginx: string;
  headscale: string;
  derper: string;
}

/** Where the VPS keeps nginx's certificate and key (the reverse proxy mounts the folder read-only). */
export const TLS_DIR = "/etc/meshfleet-lab/tls";
const NODE_CA_PATH = "/usr/local/share/ca-certificates/meshfleet-lab-docker.crt";
/** Debian bookworm's nginx, which the image is built from. */
export const NGINX_VERSION = "1.22";

/** The variant's VPS file: hosts/lab/vps.yaml on the docker runtime, each service's image pinned by id. Pure. */
export function dockerVpsYaml(images: Pick<VariantImages, "nginx" | "headscale" | "derper">, address: string): string {
  return [
    "# Written by `meshfleet lab up --docker` (lab/e2e/docker-variant.ts): the lab's VPS on the docker runtime.",
    "imports: [coordinator, reverse-proxy, derp-relay, client, ./_tools.yaml]",
    "description: The lab's VPS on the docker runtime (headscale, nginx, derper in containers)",
    `address: ${address}`,
    "runtime: docker",
    "headscale:",
    `  image: ${images.headscale}`,
    "reverse-proxy:",
    "  kind: nginx",
    "  tls: auto",
    `  certificate: ${TLS_DIR}/fullchain.pem`,
    `  certificateKey: ${TLS_DIR}/privkey.pem`,
    `  nginxVersion: "${NGINX_VERSION}"`,
    `  image: ${images.nginx}`,
    "derp:",
    `  image: ${images.derper}`,
    "  hostname: 203.0.113.10",
    "  derpPort: 8443",
    "  certMode: manual",
    "  insecureForTests: true",
    "tailscale:",
    "  tags: [tag:server]",
    "",
  ].join("\n");
}

/** Write the variant's fleet: hosts/lab as it is, with the VPS file replaced. Returns its folder. */
export function writeVariantFleet(instance: number, images: VariantImages): string {
  const dir = variantFleetDir(instance);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  // hosts/lab names instance 0's SSH addresses; each instance has its own management /24.
  const topo = labTopology(instance);
  const net = topo.mgmtSubnet.replace(/\.0\/24$/, ".");
  for (const f of readdirSync(FLEET_DIR)) writeFileSync(join(dir, f), readFileSync(join(FLEET_DIR, f), "utf8").replaceAll("172.31.240.", net));
  const address = topo.hosts.find((h) => h.name === COORDINATOR)?.mgmt ?? "";
  writeFileSync(join(dir, `${COORDINATOR}.yaml`), dockerVpsYaml(images, address));
  return dir;
}

function toolVersion(name: string): string {
  const v = loadVersions().tools.find((t) => t.name === name)?.version;
  if (!v) throw new Error(`lab/versions.json names no ${name}`);
  return v;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const ID = /^sha256:[0-9a-f]{64}$/;

/** The Debian base: the lab's root as an image (documentation and caches left out). */
async function importBase(instance: number): Promise<string> {
  const excludes = ["./usr/share/doc", "./usr/share/man", "./usr/share/locale", "./usr/share/info", "./var/cache/apt", "./var/lib/apt/lists", "./opt/meshfleet"]
    .map((e) => `--exclude=${q(e)}`)
    .join(" ");
  const remote = `docker import -c 'CMD ["/bin/bash"]' - meshfleet-lab/debian:bookworm`;
  const ssh = sshArgs(COORDINATOR, { instance }).map(q).join(" ");
  const r = await run(["sh", "-c", `tar --numeric-owner -C ${q(rootfsDir())} ${excludes} -c . | ssh ${ssh} ${q(remote)}`], { timeoutMs: 10 * 60_000 });
  const id = r.stdout.trim().split("\n").pop() ?? "";
  if (!ID.test(id)) throw new Error(`docker import of the lab root: expected an image id, found ${JSON.stringify(id)}`);
  return id;
}

/** The Dockerfile of the nginx image: Debian's package on the lab's Debian base. Pure. */
export function nginxDockerfile(debs: readonly string[]): string {
  return [
    "FROM meshfleet-lab/debian:bookworm",
    `COPY ${debs.join(" ")} /tmp/debs/`,
    // No service starts during the build (there is no init in a build container).
    "RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \\",
    "    && dpkg -i /tmp/debs/*.deb && rm -rf /tmp/debs /usr/sbin/policy-rc.d /etc/nginx/sites-enabled/default",
    'CMD ["nginx", "-g", "daemon off;"]',
    "",
  ].join("\n");
}

/** nginx from Debian's package, built on the VPS with `docker build` from the lab's cached .deb files. */
async function buildNginx(instance: number): Promise<string> {
  const debs = (cachedDebs(ACME_DEBS) ?? []).filter((f) => /^nginx(-common)?_/.test(basename(f)));
  if (debs.length !== 2) throw new Error(`the lab's nginx .deb files are not cached (${ACME_DEBS.name}): ${SETUP_FIX}`);
  const ctx = join(tmpdir(), `meshfleet-nginx-image-${process.pid}`);
  rmSync(ctx, { recursive: true, force: true });
  mkdirSync(ctx, { recursive: true });
  try {
    for (const d of debs) cpSync(d, join(ctx, basename(d)));
    writeFileSync(join(ctx, "Dockerfile"), nginxDockerfile(debs.map((d) => basename(d))));
    // The classic builder: Debian's docker.io 20.10 has no BuildKit.
    const remote = `DOCKER_BUILDKIT=0 docker build -q -t meshfleet-lab/nginx:${NGINX_VERSION} -`;
    const ssh = sshArgs(COORDINATOR, { instance }).map(q).join(" ");
    const r = await run(["sh", "-c", `tar -C ${q(ctx)} -c . | ssh ${ssh} ${q(remote)}`], { timeoutMs: 10 * 60_000 });
    const id = r.stdout.trim().split("\n").pop() ?? "";
    if (!ID.test(id)) throw new Error(`docker build of nginx: expected an image id, found ${JSON.stringify(id)}`);
    return id;
  } finally {
    rmSync(ctx, { recursive: true, force: true });
  }
}

/** derper's image: the built static binary alone; the generation's command names it. */
export function derperImage(binary: string, version: string): LocalImage {
  return {
    tag: `meshfleet-lab/derper:${version}`,
    files: [
      { path: "usr/local/bin/derper", from: binary, mode: 0o755 },
      { path: "etc/passwd", content: "root:x:0:0:root:/root:/sbin/nologin\n" },
      { path: "etc/group", content: "root:x:0:\n" },
    ],
    dirs: ["var/lib/derper", "root"],
    privateDirs: ["var/lib/derper"],
  };
}

/** Bump when an image's recipe (its files, folders, modes) changes: the kept images are made again. */
const IMAGE_RECIPE = 2;
const fileSha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

/**
 * The id of the image tagged `tag` on the VPS when it was made from `input`
 * (recorded on the VPS beside docker's data), else a new one from `make`.
 */
async function kept(instance: number, tag: string, source: string, make: () => Promise<string>): Promise<string> {
  const input = `recipe ${IMAGE_RECIPE} ${source}`;
  const rec = `/var/lib/docker/meshfleet-lab-images/${tag.replace(/[/:]/g, "_")}`;
  const have = await sshExec(COORDINATOR, `cat ${rec} 2>/dev/null && docker image inspect --format '{{.Id}}' ${q(tag)}`, { instance, timeoutMs: 30_000 });
  const [was, id] = have.stdout.trim().split("\n");
  if (have.code === 0 && was === input && id && ID.test(id)) return id;
  const made = await make();
  const r = await sshExec(COORDINATOR, `mkdir -p $(dirname ${rec}) && cat > ${rec}`, { instance, input: `${input}\n` });
  if (r.code !== 0) throw new Error(`${COORDINATOR}: recording ${tag}'s input: ${r.stderr.trim()}`);
  return made;
}

/** Build every image of the variant's VPS on it; returns their ids. */
export async function buildVariantImages(instance: number, log: (line: string) => void = () => {}): Promise<VariantImages & { ms: Record<string, number> }> {
  const ms: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const t = Date.now();
    const v = await f();
    ms[name] = Date.now() - t;
    log(`${name}: ${String(v).slice(0, 19)}… in ${(ms[name] / 1000).toFixed(1)}s`);
    return v;
  };
  const ssh = sshArgs(COORDINATOR, { instance });
  const hsV = toolVersion("headscale");
  const tsV = toolVersion("tailscale");
  const hsBin = join(toolsDir(), `headscale@${hsV}`, "bin", "headscale");
  const derperBin = join(toolsDir(), `tailscale@${tsV}`, "bin", "derper");
  // `docker import` makes a new id on every run (it records the time): an image already on the VPS
  // from the same input is kept, so a second `lab up` pins the same ids and deploys nothing new.
  const base = await timed("debian base", () => kept(instance, "meshfleet-lab/debian:bookworm", `root ${readMarker(rootfsDir())?.madeAt ?? "?"}`, () => importBase(instance)));
  // docker build's own cache gives the same id for the same base and packages.
  const nginx = await timed("nginx", () => buildNginx(instance));
  const headscale = await timed("headscale", () => kept(instance, `meshfleet-lab/headscale:${hsV}`, fileSha(hsBin), () => importImage(ssh, headscaleImage(hsBin, hsV))));
  const derper = await timed("derper", () => kept(instance, `meshfleet-lab/derper:${tsV}`, fileSha(derperBin), () => importImage(ssh, derperImage(derperBin, tsV))));
  return { base, nginx, headscale, derper, ms };
}

/**
 * The lab CA and nginx's certificate for the server URL's address (made once
 * per instance, kept 0600 beside the lab's state): the certificate and key go
 * to the VPS (key 0600 root), the CA to every fleet host's trust store.
 */
export async function provideTls(instance: number, ip = "203.0.113.10"): Promise<string> {
  const dir = join(e2ePaths(instance).dir, "secrets", "docker-tls");
  const f = (n: string) => join(dir, n);
  if (!existsSync(f("leaf.crt"))) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const ossl = (args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
    ossl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "30", "-subj", "/CN=meshfleet lab docker CA"]);
    ossl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f("leaf.key"), "-out", f("leaf.csr"), "-subj", `/CN=${ip}`]);
    writeFileSync(f("ext"), `subjectAltName=IP:${ip}\nextendedKeyUsage=serverAuth\n`);
    ossl(["x509", "-req", "-in", f("leaf.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("leaf.crt"), "-days", "30", "-extfile", f("ext")]);
    for (const k of ["ca.key", "leaf.key"]) chmodSync(f(k), 0o600);
  }
  const chain = readFileSync(f("leaf.crt"), "utf8") + readFileSync(f("ca.crt"), "utf8");
  const put = async (host: string, path: string, mode: string, content: string) => {
    const r = await sshExec(host, `mkdir -p $(dirname ${path}) && umask 077 && cat > ${path}.tmp && chmod ${mode} ${path}.tmp && mv ${path}.tmp ${path}`, { instance, input: content });
    if (r.code !== 0) throw new Error(`${host}: writing ${path}: ${r.stderr.trim()}`);
  };
  await put(COORDINATOR, `${TLS_DIR}/fullchain.pem`, "0644", chain);
  await put(COORDINATOR, `${TLS_DIR}/privkey.pem`, "0600", readFileSync(f("leaf.key"), "utf8"));
  const ca = readFileSync(f("ca.crt"), "utf8");
  for (const h of fleetHosts()) {
    await put(h, NODE_CA_PATH, "0644", ca);
    const r = await sshExec(h, "update-ca-certificates >/dev/null 2>&1", { instance, timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`${h}: update-ca-certificates: exit ${r.code}`);
  }
  return `nginx's certificate for ${ip} on ${COORDINATOR}; the lab CA trusted on ${fleetHosts().join(", ")}`;
}

/** After the deploy: TLS to the server URL verifies from a node (system trust store, no -k). */
export async function verifyTls(instance: number, url: string, node = "laptop"): Promise<string> {
  const r = await sshExec(node, `curl -sS -o /dev/null -w '%{http_code}' --max-time 10 ${q(url)}/health`, { instance });
  if (r.code !== 0 || r.stdout.trim() !== "200") throw new Error(`curl ${url}/health from ${node}: ${r.stderr.trim() || r.stdout.trim()}`);
  return `${url}/health -> 200 (verified TLS from ${node}, nginx in docker)`;
}

/** The containers of the variant's VPS (for the secrets test and the report). */
export const VARIANT_CONTAINERS = ["headscale", "nginx", "derper"] as const;

/**
 * `lab up`'s variant step, after the hosts: with `docker`, the VPS must be a
 * docker host; its images are built, the variant's fleet written and
 * recorded as this instance's. Without, the standard fleet is recorded.
 * Returns the fleet folder to deploy and the hostsDir the stack must be set
 * to (undefined: leave the stack's as it is).
 */
export async function prepareVariant(
  instance: number,
  docker: boolean,
  log: (line: string) => void,
): Promise<{ fleetDir: string; stackHostsDir?: string; detail: string; images?: VariantImages }> {
  const was = labVariant(instance);
  if (!docker) {
    setLabVariant(instance, "standard");
    // After `lab up --docker` or `--postgres` only while the stack still deploys that variant's fleet: a fleet a
    // test wrote since (its own hostsDir, after a `lab down` removed the stack config) is kept.
    const back =
      (was === "docker" && stackHostsDirOf(instance) === variantFleetDir(instance)) || (was === "postgres" && stackHostsDirOf(instance) === postgresFleetDir(instance));
    return { fleetDir: FLEET_DIR, stackHostsDir: back ? FLEET_DIR : undefined, detail: "standard" };
  }
  // A host just booted may still be starting docker ("activating"): wait for it to settle.
  const d = await sshExec(COORDINATOR, "for i in $(seq 120); do s=$(systemctl is-active docker); [ \"$s\" = activating ] || break; sleep 1; done; echo $s", { instance, timeoutMs: 150_000 });
  if (d.stdout.trim() !== "active") {
    throw new Error(`${COORDINATOR} is not a docker host (docker: ${d.stdout.trim() || d.stderr.trim()}); it was booted by a standard lab up. Fix: meshfleet lab down --instance ${instance}, then lab up --docker`);
  }
  const images = await buildVariantImages(instance, log);
  const dir = writeVariantFleet(instance, images);
  setLabVariant(instance, "docker", { images: { base: images.base, nginx: images.nginx, headscale: images.headscale, derper: images.derper }, imageMs: images.ms });
  return { fleetDir: dir, stackHostsDir: dir, detail: `images built (${Object.entries(images.ms).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}s`).join(", ")}); fleet ${dir}`, images };
}
