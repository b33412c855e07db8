/**
 * The LXC container of a host on Proxmox (meshfleet:proxmox:Container),
 * created or adopted with `pct` over SSH to the Proxmox node: TUN
 * passthrough in its config, started. The Proxmox node's host key is pinned
 * like any host's (the stack's known_hosts file).
 */
import * as pulumi from "@pulumi/pulumi";
import type { HostSystem, LxcSettings } from "../core/types.ts";
import { ProxmoxContainer } from "../provider/sdk.ts";
import { assertNoProblems, connectionIssues, privateKeyInput, targetConnection, type SshAccess } from "./shell.ts";

export { pctScript, pctDeleteScript } from "../provider/resources/proxmox.ts";

export function validateLxc(host: HostSystem, ssh?: SshAccess): string[] {
  const l = host.lxc;
  if (!l) return [];
  const where = `${host.file}: lxc`;
  const p: string[] = [];
  if (!Number.isInteger(l.ctid) || l.ctid < 100) p.push(`${where}.ctid: expected a Proxmox CT id (an integer ≥ 100), found ${l.ctid}`);
  if (!l.proxmoxHost) p.push(`${where}.proxmoxHost: expected the Proxmox node's SSH address, found nothing`);
  else if (ssh) p.push(...connectionIssues(proxmoxConnection(host as HostSystem & { lxc: LxcSettings }, ssh), `${where}.proxmoxHost`));
  for (const [i, argv] of l.pctCommands.entries()) {
    const shell = argv[0] === "sh" && argv[1] === "-c" && argv.length === 3;
    if (argv[0] !== "pct" && !shell) p.push(`${where}.pctCommands[${i}]: expected a pct command (or sh -c SCRIPT), found ${JSON.stringify(argv.join(" "))}`);
    else if (argv[0] === "pct" && argv[2] !== undefined && argv[2] !== String(l.ctid)) p.push(`${where}.pctCommands[${i}]: targets CT ${argv[2]}, but the host's ctid is ${l.ctid}`);
  }
  if (l.mode === "create" && !l.pctCommands.some((a) => a[1] === "create")) p.push(`${where}.mode: "create" needs a \`pct create\` among pctCommands, found none`);
  return p;
}

/** The Proxmox node's connection (`lxc.proxmoxHost`, pinned from the stack's known_hosts file). */
export function proxmoxConnection(host: HostSystem & { lxc: LxcSettings }, ssh: SshAccess = {}) {
  const t = host.lxc.proxmoxHost;
  return targetConnection(`Proxmox node ${t} (of ${host.name})`, t, ssh);
}

export interface ProxmoxLxcArgs {
  /**
   * The host that lives in the CT (its `lxc` settings are used).
   * @example fleet.hosts["router"]
   */
  host: HostSystem & { lxc: LxcSettings };
  /**
   * How the deploy logs in to the Proxmox node (pins, private key).
   * @default {}
   * @example { knownHostsPath: "~/.config/meshfleet/known_hosts" }
   */
  ssh?: SshAccess;
}

export class ProxmoxLxc extends pulumi.ComponentResource {
  public readonly ctid: pulumi.Output<number>;
  /** `pct status` after the run. */
  public readonly status: pulumi.Output<string>;
  public readonly resource: ProxmoxContainer;

  constructor(name: string, args: ProxmoxLxcArgs, opts?: pulumi.ComponentResourceOptions) {
    assertNoProblems(validateLxc(args.host, args.ssh), `ProxmoxLxc ${name}`);
    super("meshfleet:index:ProxmoxLxc", name, {}, opts);
    const l = args.host.lxc;
    this.resource = new ProxmoxContainer(
      `${name}-ct`,
      {
        host: args.host.name,
        connection: proxmoxConnection(args.host, args.ssh),
        ...privateKeyInput(args.ssh),
        ctid: l.ctid,
        mode: l.mode,
        config: [...l.config],
        pctCommands: l.pctCommands.map((a) => [...a]),
      },
      { parent: this },
    );
    this.ctid = pulumi.output(l.ctid);
    this.status = this.resource.status;
    this.registerOutputs({ ctid: this.ctid, status: this.status });
  }
}
