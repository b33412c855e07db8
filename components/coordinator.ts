/**
 * Coordinator: Headscale on the VPS, in one of two runtimes, both delivered
 * as the host's generation through HostAgent.
 *
 * - `docker` (the seeds' setup): the host's containers (headscale, and the
 *   proxy and relay beside it) as a compose file and the unit that runs it
 *   (coordinatorGenerationHost), images pinned by digest or id, files and
 *   keys written by the agent and mounted read-only, the database in
 *   /var/lib/headscale.
 * - `systemd` (NixOS style, the lab): the binary, a hardened unit and the
 *   files.
 *
 * Either way it ends with `ready` (meshfleet:headscale:Ready): done once the
 * headscale CLI answers on the host, which users, keys and nodes wait for.
 */
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { CoordinatorInfo, HostSystem } from "../core/types.ts";
import { CoordinatorPlacement, HeadscaleReady, HostFile } from "../provider/sdk.ts";
import type { PlacementInputs } from "../provider/types.ts";
import { placementFacts } from "./placement-facts.ts";
import { composeHost, IMAGE_ID_PATTERN, pinnedImage, validateContainerSpec, validateImagePin } from "./dockerService.ts";
import { HS } from "../modules/headscale.ts";
import type { HeadscaleCli } from "./headscaleCli.ts";
import { headscaleBinaryFile } from "./headscale-binary.ts";
import { bootstrapHost, HostAgent, type HostAgentArgs } from "./hostAgent.ts";
import { assertNoProblems, connectionIssues, hostConnection, privateKeyInput, withAfter, type SshAccess } from "./shell.ts";

export interface CoordinatorArgs {
  /**
   * The evaluated coordinator host (roles include `coordinator`).
   * @example fleet.hosts[fleet.coordinator.host]
   */
  host: HostSystem;
  /**
   * The fleet's coordinator facts (server URL, version, runtime).
   * @example fleet.coordinator
   */
  info: CoordinatorInfo;
  /**
   * Secret values the host's files reference (`noise-key`, `derp-key`).
   * @default {}
   * @example { "noise-key": noiseKey, "derp-key": derpKey }
   */
  secrets?: Record<string, pulumi.Input<string>>;
  /**
   * How the deploy logs in to the host (pins, private key); the docker
   * provider uses the key file and the known_hosts file too.
   * @default {}
   * @example { privateKeyPath: "~/.ssh/id_ed25519", knownHostsPath: "~/.config/meshfleet/known_hosts" }
   */
  ssh?: SshAccess;
  /**
   * Name of the headscale container in `host.containers` (docker runtime).
   * @default "headscale"
   * @example "hs"
   */
  containerName?: string;
  /**
   * Pin the image by a registry digest as well as tag (docker runtime). Not
   * an image id: a local image is named by its id in headscale.image itself.
   * @default undefined
   * @example "sha256:4b1c…"
   */
  imageDigest?: string;
  /**
   * Digests of the host's other containers by name (the proxy, derper), docker runtime:
   * the generation's compose file holds them all, each pinned by digest.
   * @default {}
   * @example { nginx: "sha256:…" }
   */
  imageDigests?: Record<string, string>;
  /**
   * A headscale binary on this machine to install on the host (systemd runtime);
   * unset means the host already has it (package or image).
   * @default undefined
   * @example "/home/alice/.cache/meshfleet/tools/headscale@0.29.2/bin/headscale" (absolute, or relative to the repository's root; no ~)
   */
  binaryPath?: string;
  /**
   * Where the headscale binary lives on the host (systemd runtime).
   * @default "/usr/local/bin/headscale"
   * @example "/opt/headscale/bin/headscale"
   */
  binaryRemotePath?: string;
  /**
   * Resources the coordinator's binary push and generation wait for (Mesh:
   * every agent host's Prerequisites, once all are declared).
   * @default []
   * @example Promise.resolve([prerequisites])
   */
  after?: Promise<pulumi.Resource[]>;
  /**
   * A move to this host whose database and keys were put there by hand
   * (stack setting meshfleet:coordinatorMovedByHand): the Placement records
   * the new host and copies nothing. For moves meshfleet refuses (adopted
   * keys, Postgres on the coordinator) and an old host that is gone.
   * @default false
   * @example true
   */
  movedByHand?: boolean;
  /**
   * Seconds to wait for headscale to answer before the deploy fails.
   * @default 120
   * @example 300
   */
  readyTimeoutSeconds?: number;
  /**
   * Options passed to the host's HostAgent (agent path, confirm timeout).
   * @default {}
   * @example { confirmTimeoutSeconds: 300 }
   */
  agent?: Partial<Pick<HostAgentArgs, "agentPath" | "remoteAgentPath" | "stateDir" | "confirmTimeoutSeconds" | "node">>;
  /**
   * The host also joins the mesh as a node (it reads `preauth:<host>`). Systemd
   * runtime: its first generation is pushed without the tailscale join
   * (bootstrap, once); the full one comes from its MeshNode when the key
   * exists. Docker runtime: the host's agent is left to its MeshNode entirely.
   * @default false
   * @example secretRefs(host).includes(`preauth:${host.name}`)
   */
  joinsMesh?: boolean;
}

export function validateCoordinatorArgs(args: CoordinatorArgs): string[] {
  const h = args.host;
  const p: string[] = [];
  if (h.address) p.push(...connectionIssues(hostConnection(h, args.ssh), `${h.file}: ssh.hostKey`));
  if (!/^https?:\/\//.test(args.info.serverUrl)) p.push(`fleet.yaml: coordinator.serverUrl: expected http:// or https://, found ${JSON.stringify(args.info.serverUrl)}`);
  if (args.info.runtime !== h.runtime) p.push(`${h.file}: runtime: the coordinator runs "${args.info.runtime}" but host ${h.name} says "${h.runtime}"`);
  if (h.runtime === "docker") {
    const name = args.containerName ?? "headscale";
    const spec = h.containers.find((c) => c.name === name);
    if (!spec) p.push(`${h.file}: containers: expected a container named "${name}" for the docker runtime, found ${JSON.stringify(h.containers.map((c) => c.name))}`);
    else p.push(...validateContainerSpec(h, spec, Object.keys(args.secrets ?? {})));
    if (!h.agent) p.push(`${h.file}: agent: the docker runtime delivers the containers through the agent (a compose file in the host's generation); found agent: false. Fix: agent: true`);
    const digests = { ...(args.imageDigests ?? {}), ...(args.imageDigest ? { [name]: args.imageDigest } : {}) };
    for (const c of h.containers) {
      if (digests[c.name] && IMAGE_ID_PATTERN.test(c.image)) {
        p.push(`${h.file}: containers[${c.name}].image: expected a registry image (repo:tag) for the digest meshfleet:imageDigests.${c.name}, found the image id ${c.image.slice(0, 19)}… (a local image: ids are not digests). Fix: remove ${c.name} from meshfleet:imageDigests`);
        continue;
      }
      p.push(...validateImagePin(pinnedImage(c.image, digests[c.name]), `${h.file}: containers[${c.name}].image`));
    }
  } else {
    if (!h.agent) p.push(`${h.file}: agent: the systemd runtime delivers headscale through the agent; found agent: false. Fix: agent: true or runtime: docker`);
    if (!h.units.some((u) => u.name === "headscale.service")) p.push(`${h.file}: units: expected headscale.service for the systemd runtime, found ${JSON.stringify(h.units.map((u) => u.name))}`);
    if (args.binaryPath && !existsSync(headscaleBinaryFile(args.binaryPath))) p.push(`Coordinator ${h.name}: binaryPath: ${args.binaryPath} does not exist. Fix: build headscale ${args.info.headscaleVersion} or unset binaryPath`);
  }
  return p;
}

/** The headscale binary a systemd unit runs (`ExecStart=/path/headscale serve …`), if it names one. */
export function headscaleBinaryOf(host: HostSystem): string | undefined {
  const unit = host.units.find((u) => u.name === "headscale.service");
  return unit ? /^ExecStart=-?(\S+)/m.exec(unit.content)?.[1] : undefined;
}

/** The CLI location for a coordinator host: the container, or the binary its unit runs. */
export function coordinatorCli(host: HostSystem, o: { containerName?: string; binaryPath?: string; binaryRemotePath?: string } = {}): HeadscaleCli {
  if (host.runtime === "docker") return { runtime: "docker", container: o.containerName ?? "headscale" };
  const installed = o.binaryPath ? (o.binaryRemotePath ?? "/usr/local/bin/headscale") : undefined;
  return { runtime: "systemd", binary: installed ?? headscaleBinaryOf(host) ?? "headscale" };
}

/**
 * The coordinator host as its agent's generation carries it in the docker
 * runtime (issue 20): headscale's container as a compose file and its unit
 * (composeHost). Keys headscale keeps in its state dir are written there on
 * the host, as headscale:headscale 0600 like the systemd runtime writes them,
 * and the database stays in /var/lib/headscale (the volume's folder), so a
 * switch between the runtimes keeps both.
 */
export function coordinatorGenerationHost(h: HostSystem, o: { images?: Record<string, string>; composeCommand?: string } = {}): HostSystem {
  if (h.runtime !== "docker") return h;
  return composeHost(h, {
    images: o.images,
    composeCommand: o.composeCommand,
    volumeFileOwner: { owner: "headscale", group: "headscale" },
    extraFiles: [
      { path: "/etc/sysusers.d/headscale.conf", content: `u headscale - "Headscale coordination server" ${HS.stateDir} /usr/sbin/nologin\n`, mode: "0644", owner: "root", group: "root" },
    ],
  });
}

/** Each container's image with its digest from the args (headscale: imageDigest), as the compose file pins it. */
export function coordinatorImages(h: HostSystem, args: Pick<CoordinatorArgs, "imageDigest" | "imageDigests" | "containerName">): Record<string, string> {
  const digests: Record<string, string> = { ...(args.imageDigests ?? {}) };
  if (args.imageDigest) digests[args.containerName ?? "headscale"] = args.imageDigest;
  return Object.fromEntries(h.containers.map((c) => [c.name, pinnedImage(c.image, digests[c.name])]));
}

export class Coordinator extends pulumi.ComponentResource {
  /** The URL clients log in to (`--login-server`). */
  public readonly url: pulumi.Output<string>;
  public readonly runtime: pulumi.Output<string>;
  /** Where the CLI runs; HeadscaleUser/PreAuthKey use it. */
  public readonly cli: HeadscaleCli;
  /** Depend on this: headscale answers (`ready.state` is "serving"). */
  public readonly ready: HeadscaleReady;
  /** The host as its generation carries it (docker runtime: with the compose file and its unit). */
  public readonly generationHost: HostSystem;
  /** The host's agent push (the bootstrap one when the host joins the mesh). */
  public readonly hostAgent: HostAgent;

  constructor(name: string, args: CoordinatorArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateCoordinatorArgs(args), `Coordinator ${name}`);
    super("meshfleet:index:Coordinator", name, {}, opts);
    const h = args.host;
    const secrets = args.secrets ?? {};
    const connection = hostConnection(h, args.ssh);
    const key = privateKeyInput(args.ssh);
    this.cli = coordinatorCli(h, args);
    const waitFor: pulumi.Resource[] = [];

    this.generationHost = coordinatorGenerationHost(h, { images: h.runtime === "docker" ? coordinatorImages(h, args) : undefined });
    // Which host runs headscale, under one name for the stack: when coordinator.host names another
    // host, its update moves the database there before that host's generation starts headscale.
    const placement = new CoordinatorPlacement(
      `${name}-placement`,
      {
        host: h.name,
        connection,
        ...key,
        runtime: h.runtime,
        ...(h.runtime === "docker" ? { container: args.containerName ?? "headscale" } : {}),
        ...placementFacts(h, args.containerName),
        serverUrl: args.info.serverUrl,
        ...(args.movedByHand ? { movedByHand: true } : {}),
      },
      { parent: this, ...(args.after ? { dependsOn: args.after } : {}) },
    );
    waitFor.push(placement);
    if (h.runtime === "systemd" && args.binaryPath) {
      const local = headscaleBinaryFile(args.binaryPath);
      const sha = createHash("sha256").update(readFileSync(local)).digest("hex");
      // Pushed into a temp file beside the target and renamed over it: a running headscale never sees half a binary.
      const install = new HostFile(
        `${name}-binary`,
        { host: h.name, connection, ...key, localPath: local, sha256: sha, remotePath: args.binaryRemotePath ?? "/usr/local/bin/headscale", mode: "0755" },
        { parent: this, ...(args.after ? { dependsOn: args.after } : {}) },
      );
      waitFor.push(install);
    }

    // headscale (its unit, or its container in the compose file) and its files arrive with the host's generation.
    const bootstrap = args.joinsMesh === true;
    this.hostAgent = new HostAgent(
      `${name}-${bootstrap ? "bootstrap" : "agent"}`,
      { host: bootstrap ? bootstrapHost(this.generationHost) : this.generationHost, secrets, ssh: args.ssh, once: bootstrap, ...args.agent },
      { parent: this, dependsOn: withAfter(args.after, [...waitFor]) },
    );
    waitFor.push(this.hostAgent.confirmed);

    this.ready = new HeadscaleReady(
      `${name}-ready`,
      {
        host: h.name,
        connection,
        ...key,
        cli: this.cli,
        timeoutSeconds: args.readyTimeoutSeconds ?? 120,
        // Re-checked whenever what runs headscale changed.
        trigger: this.hostAgent.generation,
      },
      { parent: this, dependsOn: waitFor },
    );

    this.url = pulumi.output(args.info.serverUrl);
    this.runtime = pulumi.output(h.runtime);
    this.registerOutputs({ url: this.url, runtime: this.runtime, ready: this.ready.state });
  }
}
