/**
 * lxc: the Proxmox container a node runs in (seed 004: CTID 205), with TUN
 * passed through, by Proxmox VE version:
 *  - PVE >= 8.1 (pve-container 5.0.7, "allow passing raw device nodes through
 *    to containers"): `pct set <ctid> --dev0 /dev/net/tun`. PVE makes the
 *    node itself, owned by the container's root mapped through its idmap.
 *  - before that, a privileged container: the cgroup2 device rule and a bind
 *    mount of the host's /dev/net/tun (tailscale/tailscale#6941).
 *  - before that, an unprivileged container: the same rule, bound to a node
 *    of the container's own, owned by its mapped root (the host's root-owned
 *    node reads as nobody inside), as PVE 8.1 does for dev0.
 * Every variant first checks that the Proxmox node has /dev/net/tun at all:
 * a kernel without the tun module fails with a clear error instead of a
 * container whose tailscaled cannot start (tailscale#16932).
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";
import { hostName } from "../core/schema-types.ts";

const TUN_ALLOW = "lxc.cgroup2.devices.allow: c 10:200 rwm";

/** Where an unprivileged container's own TUN node lives on the Proxmox node (PVE < 8.1). */
export const ctTunNode = (ctid: number): string => `/var/lib/meshfleet/lxc/${ctid}/tun`;

/** PVE 8.1 has `dev[n]` device passthrough (pve-container 5.0.7, 2023-11-21). */
export function pveHasDev0(version: string): boolean {
  const [maj, min] = version.split(".").map(Number);
  return maj > 8 || (maj === 8 && min >= 1);
}

export type TunVariant = "dev0" | "bind-host" | "bind-mapped";
export const tunVariant = (pveVersion: string, unprivileged: boolean): TunVariant => (pveHasDev0(pveVersion) ? "dev0" : unprivileged ? "bind-mapped" : "bind-host");

/** The lines /etc/pve/lxc/<ctid>.conf needs for each variant. */
export function tunConfig(variant: TunVariant, ctid: number): string[] {
  if (variant === "dev0") return ["dev0: /dev/net/tun"];
  const source = variant === "bind-host" ? "/dev/net/tun" : ctTunNode(ctid);
  return [TUN_ALLOW, `lxc.mount.entry: ${source} dev/net/tun none bind,create=file`];
}

/** On the Proxmox node: /dev/net/tun there, or load tun, or fail saying so. */
export function tunCheck(host: string, ctid: number): string[] {
  const msg = `meshfleet: ${host}: the Proxmox node has no /dev/net/tun and modprobe tun failed: its kernel $(uname -r) lacks the tun module (tailscale#16932), so CT ${ctid} cannot get TUN. Load it (modprobe tun; echo tun > /etc/modules-load.d/tun.conf) or boot a kernel that has it, then deploy again`;
  return ["sh", "-c", `[ -c /dev/net/tun ] || modprobe tun 2>/dev/null || true; [ -c /dev/net/tun ] || { echo "${msg}" >&2; exit 1; }`];
}

/**
 * For an unprivileged CT before PVE 8.1: the CT's own TUN node (char 10:200),
 * owned by the CT's root as its idmap maps it (PVE's default 100000) and
 * mode 0660, so tailscaled (root in the CT) opens it and no other CT can.
 */
export function mappedTunNode(ctid: number): string[] {
  const conf = `/etc/pve/lxc/${ctid}.conf`;
  const node = ctTunNode(ctid);
  const root = (kind: "u" | "g") => `$(awk '/^\\[/ {exit} $1 == "lxc.idmap:" && $2 == "${kind}" && $3 == "0" {print $4; exit}' ${conf})`;
  return [
    "sh",
    "-c",
    `uid=${root("u")}; gid=${root("g")}; mkdir -p ${node.replace(/\/tun$/, "")} && { [ -c ${node} ] || mknod ${node} c 10 200; } && chown "\${uid:-100000}:\${gid:-100000}" ${node} && chmod 0660 ${node}`,
  ];
}

export const lxcOptions = z
    .object({
      enable: z.boolean().default(false).describe("This host is a Proxmox LXC container meshfleet creates or adopts."),
      ctid: z.number().int().min(100).max(999999999).default(100).describe("Container id, e.g. 205."),
      proxmoxHost: z.string().default("").describe("SSH address of the Proxmox node that owns the container."),
      pveVersion: z.string().regex(/^\d+\.\d+$/, { message: "a Proxmox VE version such as 8.2" }).default("8.2").describe("Proxmox VE version (`pveversion`), which decides how TUN is passed through: 8.1 and later `dev0: /dev/net/tun`; before, the cgroup2 rule and a bind mount (of a node owned by the CT's mapped root when unprivileged)."),
      mode: z.enum(["create", "adopt"]).default("adopt").describe("adopt: a container that exists, with sshd (the deploy's key), Node 18+ and tailscale. create is refused for now: pct create gives none of them, so the deploy could not reach it."),
      template: z.string().default("local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst").describe("Template for `pct create`."),
      hostname: z.union([hostName, z.literal("")]).default("").describe("Container hostname; empty means the host's name."),
      memory: z.number().int().min(64).default(512).describe("Memory in MiB."),
      cores: z.number().int().min(1).default(1).describe("CPU cores."),
      rootfs: z.string().default("local-lvm:4").describe("Root disk as storage:GiB."),
      net0: z.string().default("name=eth0,bridge=vmbr0,ip=dhcp").describe("pct --net0 value."),
      unprivileged: z.boolean().default(true).describe("Run unprivileged."),
    })
    .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    lxc: z.output<typeof lxcOptions>;
  }
}

export const lxcModule = defineModule({
  name: "lxc",
  description: "Run the node in a Proxmox LXC container with TUN passthrough.",
  options: lxcOptions,
  config(o, ctx) {
    if (!o.enable) return {};
    const id = String(o.ctid);
    const variant = tunVariant(o.pveVersion, o.unprivileged);
    const pct: string[][] = [];
    // First, before anything changes: the node can give TUN at all (the provider runs node checks first).
    pct.push(tunCheck(ctx.host, o.ctid));
    // One argument each; the provider runs it only when the CT does not exist yet.
    if (o.mode === "create")
      pct.push(["pct", "create", id, o.template, "--hostname", o.hostname || ctx.host, "--memory", String(o.memory), "--cores", String(o.cores), "--rootfs", o.rootfs, "--net0", o.net0, "--unprivileged", o.unprivileged ? "1" : "0", "--features", "nesting=1", "--onboot", "1"]);
    // The config lines themselves are added by the provider (before any snapshot section of the CT's config).
    if (variant === "dev0") pct.push(["pct", "set", id, "--dev0", "/dev/net/tun"]);
    if (variant === "bind-mapped") pct.push(mappedTunNode(o.ctid));
    // No start or reboot here: the provider starts a stopped CT and reboots a running one only when its
    // config changed (a running container sees a new device only after a restart), not on every deploy.
    return {
      lxc: { ctid: o.ctid, proxmoxHost: o.proxmoxHost, pveVersion: o.pveVersion, mode: o.mode, config: tunConfig(variant, o.ctid), pctCommands: pct },
      assertions: [{
        assertion: o.proxmoxHost !== "",
        path: "lxc.proxmoxHost",
        expected: "the SSH address of the Proxmox node",
        found: '""',
        fix: "set lxc.proxmoxHost, e.g. root@192.168.8.2",
      }, {
        // A container pct create makes has no SSH key for the deploy, no Node for the agent and no tailscale:
        // the deploy would create it and then fail to reach it (issue 12 item 6). Until the deploy installs
        // prerequisites, the container is made by hand and adopted.
        assertion: o.mode !== "create",
        path: "lxc.mode",
        expected: '"adopt": a container that already runs sshd with the deploy\'s key, Node 18+ and tailscale',
        found: '"create" (pct create gives a container with no SSH key, no Node and no tailscale, so the deploy could not reach it)',
        fix: `create CT ${id} on the Proxmox node with \`pct create ${id} ${o.template} --ssh-public-keys KEYFILE ...\`, install openssh-server, nodejs and tailscale in it, then set lxc.mode: adopt`,
      }],
    };
  },
});
