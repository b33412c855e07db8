/**
 * kernel: sysctl settings (NixOS `boot.kernel.sysctl`). Modules set them here
 * through the same priority merge as host files (subnet-router and
 * exit-node set forwarding), so a host can override any of them:
 *
 *   kernel:
 *     sysctl:
 *       net.ipv6.conf.all.forwarding: !mkForce "0"
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";

export const kernelOptions = z
  .object({
    sysctl: z
      .record(z.string().regex(/^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$/, { message: "a sysctl key such as net.ipv4.ip_forward" }), z.string())
      .default({})
      .describe("sysctl keys and values (as strings), written to the host's sysctl.d file, e.g. {net.ipv4.ip_forward: \"1\"}."),
  })
  .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    kernel: z.output<typeof kernelOptions>;
  }
}

export const kernelModule = defineModule({
  name: "kernel",
  description: "Kernel settings (sysctl), set by host files and by other modules through one priority merge.",
  options: kernelOptions,
  config(o) {
    return Object.keys(o.sysctl).length ? { sysctl: o.sysctl } : {};
  },
});
