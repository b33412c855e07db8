/**
 * lxc: the Proxmox container a node runs in (seed 004: CTID 205), with TUN
 * passed through. PVE >= 8.2 has `dev0: /dev/net/tun`; older ones need the
 * cgroup2 device rule and a bind mount (tailscale/tailscale#6941).
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";
import { hostName } from "../core/schema-types.ts";

const TUN_RAW = ["lxc.cgroup2.devices.allow: c 10:200 rwm", "lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file"];

export function pveHasDev0(version: string): boolean {
  const [maj, min] = version.split(".").map(Number);
  return maj > 8 || (maj === 8 && min >= 2);
}

export const lxcOptions = z
    .object({
      enable: z.boolean().default(false).describe("This host is a Proxmox LXC container meshfleet creates or adopts."),
      ctid: z.number().int().min(100).max(999999999).default(100).describe("Container id, e.g. 205."),
      proxmoxHost: z.string().default("").describe("SSH address of the Proxmox node that owns the container."),
      pveVersion: z.string().regex(/^\d+\.\d+$/, { message: "a Proxmox VE version such as 8.2" }).default("8.2").describe("Proxmox VE version (decides how TUN is passed through)."),
      mode: z.enum(["create", "adopt"]).default("adopt").describe("Create the container, or adopt one that exists."),
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
    const conf = `/etc/pve/lxc/${id}.conf`;
    const dev0 = pveHasDev0(o.pveVersion);
    const pct: string[][] = [];
    if (o.mode === "create")
      pct.push(["sh", "-c", `pct status ${id} >/dev/null 2>&1 || pct create ${id} ${o.template} --hostname ${o.hostname || ctx.host} --memory ${o.memory} --cores ${o.cores} --rootfs ${o.rootfs} --net0 ${o.net0} --unprivileged ${o.unprivileged ? 1 : 0} --features nesting=1 --onboot 1`]);
    if (dev0) pct.push(["pct", "set", id, "--dev0", "/dev/net/tun"]);
    else for (const line of TUN_RAW) pct.push(["sh", "-c", `grep -qxF '${line}' ${conf} || echo '${line}' >> ${conf}`]);
    // A running container only sees the new device after a restart.
    pct.push(["sh", "-c", `if pct status ${id} | grep -q running; then pct reboot ${id}; else pct start ${id}; fi`]);
    return {
      lxc: { ctid: o.ctid, proxmoxHost: o.proxmoxHost, pveVersion: o.pveVersion, mode: o.mode, config: dev0 ? ["dev0: /dev/net/tun"] : TUN_RAW, pctCommands: pct },
      assertions: [{
        assertion: o.proxmoxHost !== "",
        path: "lxc.proxmoxHost",
        expected: "the SSH address of the Proxmox node",
        found: '""',
        fix: "set lxc.proxmoxHost, e.g. root@192.168.8.2",
      }],
    };
  },
});
