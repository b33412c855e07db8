/**
 * DerpRelay: the fleet's own DERP relay, either headscale's embedded one
 * (`derp.server.enabled`, nothing separate to run: headscale serves it) or a
 * standalone `derper` (a container in the host's compose file, or a systemd
 * unit, both in the host's generation) that verifies clients against
 * headscale's /verify.
 */
import * as pulumi from "@pulumi/pulumi";
import type { DerpRegion, HostSystem } from "../core/types.ts";
import { validateContainerSpec, type CoordinatorServiceArgs } from "./dockerService.ts";
import { COMPOSE_UNIT } from "../agent/compose.ts";
import { ServiceCheck } from "../provider/sdk.ts";
import { assertNoProblems, hostConnection, privateKeyInput } from "./shell.ts";

export type DerpMode = "embedded" | "standalone";

export interface DerpRelayArgs extends CoordinatorServiceArgs {
  /**
   * The host the relay runs on.
   * @example fleet.hosts["vps"]
   */
  host: HostSystem;
  /**
   * headscale's embedded DERP, or a standalone derper.
   * @default "embedded"
   * @example "standalone"
   */
  mode?: DerpMode;
  /**
   * The region this relay serves (from the fleet's DERP map).
   * @example fleet.derpRegions[0]
   */
  region: DerpRegion;
}

export function validateDerpRelayArgs(args: DerpRelayArgs): string[] {
  const h = args.host;
  const p: string[] = [];
  if (args.region.nodes.length === 0) p.push(`fleet.yaml: derp.regions[${args.region.regionId}]: expected at least one DERP node, found none`);
  if ((args.mode ?? "embedded") === "embedded") return p;
  if (h.runtime === "docker") {
    const spec = h.containers.find((c) => c.name === "derper");
    if (!spec) p.push(`${h.file}: containers: expected a "derper" container for the standalone DERP relay, found ${JSON.stringify(h.containers.map((c) => c.name))}`);
    else p.push(...validateContainerSpec(h, spec, Object.keys(args.secrets ?? {})));
    if (!args.hostAgent) p.push(`DerpRelay on ${h.name}: the docker runtime needs the host's HostAgent: the container is in its generation`);
  } else {
    if (!h.units.some((u) => u.name === "derper.service")) p.push(`${h.file}: units: expected derper.service for the standalone DERP relay, found ${JSON.stringify(h.units.map((u) => u.name))}`);
    if (!args.hostAgent) p.push(`DerpRelay on ${h.name}: the systemd runtime needs the host's HostAgent`);
  }
  return p;
}

export class DerpRelay extends pulumi.ComponentResource {
  public readonly mode: pulumi.Output<string>;
  public readonly regionId: pulumi.Output<number>;
  public readonly hostName: pulumi.Output<string>;
  public readonly check?: ServiceCheck;

  constructor(name: string, args: DerpRelayArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateDerpRelayArgs(args), `DerpRelay ${name}`);
    super("meshfleet:index:DerpRelay", name, {}, opts);
    const h = args.host;
    const mode = args.mode ?? "embedded";
    if (mode === "standalone") {
      const units = h.runtime === "docker" ? [COMPOSE_UNIT] : ["derper.service"];
      this.check = new ServiceCheck(
        `${name}-check`,
        { host: h.name, connection: hostConnection(h, args.ssh), ...privateKeyInput(args.ssh), units, trigger: args.hostAgent!.generation },
        { parent: this, dependsOn: [args.hostAgent!.confirmed] },
      );
    }
    this.mode = pulumi.output(mode);
    this.regionId = pulumi.output(args.region.regionId);
    this.hostName = pulumi.output(args.region.nodes[0]?.hostName ?? "");
    this.registerOutputs({ mode: this.mode, regionId: this.regionId, hostName: this.hostName });
  }
}
