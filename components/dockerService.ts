/**
 * Docker runtime plumbing shared by Coordinator, ReverseProxy and DerpRelay:
 * the provider that reaches a host's docker over SSH, and one ContainerSpec
 * (from the evaluated HostSystem) turned into a pinned image, named volumes
 * and a container whose uploads are exactly the host's rendered files.
 */
import * as pulumi from "@pulumi/pulumi";
import * as docker from "@pulumi/docker";
import type { ContainerSpec, HostSystem } from "../core/types.ts";
import type { HostAgent } from "./hostAgent.ts";
import type { SshAccess } from "./shell.ts";

/** Problems with an image reference: it must be pinned by an exact tag or a digest. */
/**
 * What a service beside headscale on the coordinator's host (the reverse
 * proxy, a standalone DERP relay) needs in either runtime.
 */
export interface CoordinatorServiceArgs {
  /**
   * Docker runtime: the host's docker provider (from Coordinator).
   * @default undefined
   * @example coordinator.dockerProvider
   */
  provider?: docker.Provider;
  /**
   * Docker runtime: the network shared with the headscale container.
   * @default undefined
   * @example coordinator.dockerNetwork
   */
  network?: docker.Network;
  /**
   * Docker runtime: pin the image by digest too.
   * @default undefined
   * @example "sha256:…"
   */
  imageDigest?: string;
  /**
   * Systemd runtime: the host's agent push the service check waits for.
   * @default undefined
   * @example coordinator.hostAgent
   */
  hostAgent?: HostAgent;
  /**
   * How the deploy logs in to the host for the service check (pins, private key).
   * @default {}
   * @example { privateKeyPath: "~/.ssh/id_ed25519" }
   */
  ssh?: SshAccess;
  /**
   * Secret values the service's files reference (a standalone relay: `derp-key`).
   * @default {}
   * @example { "derp-key": derpKey }
   */
  secrets?: Record<string, pulumi.Input<string>>;
}

export function validateImagePin(image: string, where: string): string[] {
  const digest = /@sha256:[0-9a-f]{64}$/.test(image);
  const name = image.replace(/@sha256:.*$/, "");
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  const tag = colon > slash ? name.slice(colon + 1) : "";
  if (digest) return [];
  if (!tag) return [`${where}: expected an image pinned by an exact tag or digest, found ${JSON.stringify(image)} (no tag). Fix: write the version, e.g. headscale/headscale:0.29.2`];
  if (tag === "latest" || tag === "stable" || !/\d/.test(tag)) {
    return [`${where}: expected an image pinned by an exact tag or digest, found the moving tag ${JSON.stringify(tag)}. Fix: write the version, e.g. headscale/headscale:0.29.2`];
  }
  return [];
}

/** The image reference with an optional digest appended (`repo:tag@sha256:…`, docker resolves by digest). */
export function pinnedImage(image: string, digest?: string): string {
  if (!digest) return image;
  const d = digest.startsWith("sha256:") ? digest : `sha256:${digest}`;
  return `${image.replace(/@sha256:.*$/, "")}@${d}`;
}

/** Problems with one ContainerSpec against its host (uploads must name files the host renders). */
export function validateContainerSpec(host: HostSystem, spec: ContainerSpec, secrets: readonly string[]): string[] {
  const where = `${host.file}: containers[${spec.name}]`;
  const p = validateImagePin(spec.image, `${where}.image`);
  for (const [i, u] of spec.uploads.entries()) {
    const f = host.files.find((x) => x.path === u.source);
    if (!f) p.push(`${where}.uploads[${i}]: expected a file of host ${host.name} at ${u.source}, found none. Fix: render the file in a module or drop the upload`);
    else if (f.secretRef && !secrets.includes(f.secretRef)) p.push(`${where}.uploads[${i}]: ${u.source} needs secret "${f.secretRef}", which the deploy does not provide`);
    else if ((f.secret || f.secretRef) && !u.secret) p.push(`${where}.uploads[${i}]: ${u.source} is secret but the upload is not marked secret. Fix: secret: true`);
  }
  return p;
}

/** The secret refs the Postgres password fills (modules/headscale.ts): systemd's env file, docker's password file. */
export const POSTGRES_SECRET_REFS = ["headscale-postgres-pgpass"] as const;

/**
 * Problems with a Postgres password before it is written anywhere: it must be
 * one line (both files are line-based) and not empty. The message never shows it.
 */
export function validatePostgresPassword(password: string): string[] {
  if (password === "") return ["meshfleet:headscalePostgresPassword: expected the Postgres password, found an empty value. Fix: pulumi config set --secret meshfleet:headscalePostgresPassword"];
  if (/[\r\n\0]/.test(password)) return ["meshfleet:headscalePostgresPassword: expected a password on one line, found a line break or NUL in it (not shown). Fix: set a password without line breaks"];
  return [];
}

/**
 * The secret file from the password: a libpq password file (`host:port:db:user:password`,
 * `*` matching any; `\\` and `:` escaped) that headscale's Postgres driver reads
 * through PGPASSFILE when its config has no password.
 */
export function postgresSecretFiles(password: string): Record<(typeof POSTGRES_SECRET_REFS)[number], string> {
  return {
    "headscale-postgres-pgpass": `*:*:*:*:${password.replace(/\\/g, "\\\\").replace(/:/g, "\\:")}\n`,
  };
}

/** The docker provider for a host, reached over SSH like the seeds' `docker compose` on the VPS. */
export function dockerHost(host: HostSystem): string {
  const port = host.ssh.port && host.ssh.port !== 22 ? `:${host.ssh.port}` : "";
  return `ssh://${host.ssh.user}@${host.address}${port}`;
}

export function dockerSshOpts(privateKeyPath?: string, knownHostsPath?: string): string[] {
  // The docker provider shells out to ssh(1), which wants a key file, not key text.
  // With the stack's known_hosts file the host key is checked against it; without one, ssh's own files are used.
  const opts = ["-o", "BatchMode=yes", ...(knownHostsPath ? ["-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHostsPath}`] : ["-o", "StrictHostKeyChecking=accept-new"])];
  return privateKeyPath ? [...opts, "-i", privateKeyPath] : opts;
}

/** Upload contents of a container: the host's files, secret ones as Pulumi secrets. */
export function containerUploads(host: HostSystem, spec: ContainerSpec, secrets: Record<string, pulumi.Input<string>>): docker.types.input.ContainerUpload[] {
  return spec.uploads.map((u) => {
    const f = host.files.find((x) => x.path === u.source)!;
    const content: pulumi.Input<string> = f.secretRef ? pulumi.secret(secrets[f.secretRef]) : f.secret || u.secret ? pulumi.secret(f.content) : f.content;
    return { file: u.containerPath, content };
  });
}

export interface DockerServiceOptions {
  provider: docker.Provider;
  /** A user network the host's containers share, so that a proxy reaches `headscale:8080` by name. */
  network?: docker.Network;
  imageDigest?: string;
  secrets: Record<string, pulumi.Input<string>>;
  /** Seconds `pulumi up` waits for the container's health check to pass. */
  waitTimeoutSeconds?: number;
}

export interface DockerService {
  image: docker.RemoteImage;
  volumes: docker.Volume[];
  container: docker.Container;
}

const isBindMount = (name: string) => name.startsWith("/");

/** Create the image, volumes and container of one spec, each a child of `parent` named `<prefix>-…`. */
export function dockerService(parent: pulumi.Resource, prefix: string, host: HostSystem, spec: ContainerSpec, o: DockerServiceOptions): DockerService {
  const copts = { parent, provider: o.provider };
  const image = new docker.RemoteImage(`${prefix}-image`, { name: pinnedImage(spec.image, o.imageDigest), keepLocally: true }, copts);
  // A volume "name" that is an absolute path is a read-only bind mount of that host directory
  // (certificates certbot keeps on the host); any other name is a docker named volume, kept on
  // `pulumi destroy` because it holds headscale's database.
  const named = spec.volumes.filter((v) => !isBindMount(v.name));
  const volumes = named.map((v) => new docker.Volume(`${prefix}-volume-${v.name}`, { name: v.name }, { ...copts, retainOnDelete: true }));
  const container = new docker.Container(
    `${prefix}-container`,
    {
      name: spec.name,
      image: image.imageId,
      ports: spec.ports.map((p) => ({ internal: p.internal, external: p.external, protocol: p.protocol, ...(p.ip ? { ip: p.ip } : {}) })),
      volumes: spec.volumes.map((v) =>
        isBindMount(v.name) ? { hostPath: v.name, containerPath: v.containerPath, readOnly: true } : { volumeName: v.name, containerPath: v.containerPath },
      ),
      envs: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
      ...(spec.command.length ? { command: spec.command } : {}),
      uploads: containerUploads(host, spec, o.secrets),
      restart: spec.restart,
      ...(spec.healthcheck
        ? {
            healthcheck: { tests: spec.healthcheck.test, interval: spec.healthcheck.interval, timeout: spec.healthcheck.timeout, retries: spec.healthcheck.retries },
            // `pulumi up` returns only when the health check passes: the next step may use the service.
            wait: true,
            waitTimeout: o.waitTimeoutSeconds ?? 120,
          }
        : {}),
      ...(o.network ? { networksAdvanced: [{ name: o.network.name, aliases: [spec.name] }] } : {}),
    },
    { ...copts, dependsOn: volumes },
  );
  return { image, volumes, container };
}
