/**
 * ReverseProxy: Caddy or nginx in front of headscale (TLS, HTTP/1.1 upgrade
 * to the control protocol, no buffering). Its container (docker runtime,
 * in the host's compose file) or its unit (systemd runtime) and its config
 * are in the host's generation (HostAgent); this checks the service is
 * active after the switch.
 */
import * as pulumi from "@pulumi/pulumi";
import type { HostSystem } from "../core/types.ts";
import { validateContainerSpec, type CoordinatorServiceArgs } from "./dockerService.ts";
import { COMPOSE_UNIT } from "../agent/compose.ts";
import { ServiceCheck } from "../provider/sdk.ts";
import { assertNoProblems, hostConnection, privateKeyInput } from "./shell.ts";

export type ProxyKind = "caddy" | "nginx";

export interface ReverseProxyArgs extends CoordinatorServiceArgs {
  /**
   * The host the proxy runs on (usually the coordinator VPS).
   * @example fleet.hosts["vps"]
   */
  host: HostSystem;
  /**
   * Which proxy the fleet chose.
   * @default "caddy"
   * @example "nginx"
   */
  kind?: ProxyKind;
  /**
   * The public URL it serves (headscale's server_url).
   * @example "https://headscale.example.com"
   */
  url: string;
}

export function validateReverseProxyArgs(args: ReverseProxyArgs): string[] {
  const h = args.host;
  const kind = args.kind ?? "caddy";
  if (h.runtime === "docker") {
    const spec = h.containers.find((c) => c.name === kind);
    if (!spec) return [`${h.file}: containers: expected a "${kind}" container for the reverse proxy, found ${JSON.stringify(h.containers.map((c) => c.name))}`];
    const p = validateContainerSpec(h, spec, Object.keys(args.secrets ?? {}));
    if (!args.hostAgent) p.push(`ReverseProxy on ${h.name}: the docker runtime needs the host's HostAgent (Coordinator.hostAgent): the container is in its generation`);
    return p;
  }
  const unit = `${kind}.service`;
  const p: string[] = [];
  if (!h.units.some((u) => u.name === unit)) p.push(`${h.file}: units: expected ${unit} for the ${kind} reverse proxy, found ${JSON.stringify(h.units.map((u) => u.name))}`);
  if (!args.hostAgent) p.push(`ReverseProxy on ${h.name}: the systemd runtime needs the host's HostAgent (Coordinator.hostAgent)`);
  return p;
}

export class ReverseProxy extends pulumi.ComponentResource {
  public readonly url: pulumi.Output<string>;
  public readonly kind: pulumi.Output<string>;
  public readonly check?: ServiceCheck;

  constructor(name: string, args: ReverseProxyArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateReverseProxyArgs(args), `ReverseProxy ${name}`);
    super("meshfleet:index:ReverseProxy", name, {}, opts);
    const h = args.host;
    const kind = args.kind ?? "caddy";
    // Docker runtime: the agent has already seen the container pass its health check; the compose unit is what systemd runs.
    const units = h.runtime === "docker" ? [COMPOSE_UNIT] : [`${kind}.service`];
    this.check = new ServiceCheck(
      `${name}-check`,
      { host: h.name, connection: hostConnection(h, args.ssh), ...privateKeyInput(args.ssh), units, trigger: args.hostAgent!.generation },
      { parent: this, dependsOn: [args.hostAgent!.confirmed] },
    );
    this.url = pulumi.output(args.url);
    this.kind = pulumi.output(kind);
    this.registerOutputs({ url: this.url, kind: this.kind });
  }
}
