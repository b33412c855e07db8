/**
 * sshd: an sshd drop-in (keys only) kept reachable by the firewall — the
 * deploy path itself, so the firewall can never be rendered without it.
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";

export const sshdOptions = z
  .object({
    enable: z.boolean().default(true).describe("Manage sshd's meshfleet drop-in."),
    passwordAuthentication: z.boolean().default(false).describe("Allow passwords (keys only when false)."),
    permitRootLogin: z.enum(["yes", "no", "prohibit-password"]).default("prohibit-password").describe("sshd PermitRootLogin."),
    openFirewall: z.boolean().default(true).describe("Open the SSH port (host `ssh.port`) in the firewall."),
  })
  .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    sshd: z.output<typeof sshdOptions>;
  }
}

export const sshModule = defineModule({
  name: "sshd",
  description: "OpenSSH server settings (the path meshfleet deploys through).",
  options: sshdOptions,
  config(o, ctx) {
    if (!o.enable) return {};
    const sshPort = ctx.self.config.ssh.port;
    const from = ctx.self.config.firewall.sshFrom;
    return {
      files: [{
        path: "/etc/ssh/sshd_config.d/50-meshfleet.conf",
        mode: "0644", owner: "root", group: "root",
        content: [
          "# managed by meshfleet",
          `Port ${sshPort}`,
          `PasswordAuthentication ${o.passwordAuthentication ? "yes" : "no"}`,
          "KbdInteractiveAuthentication no",
          `PermitRootLogin ${o.permitRootLogin}`,
          "",
        ].join("\n"),
      }],
      inbound: o.openFirewall ? [{ proto: "tcp", port: sshPort, from, owner: "ssh", comment: "sshd (deploy path)", required: "meshfleet deploys over SSH" }] : [],
      // Validate before reload, so a bad drop-in never takes sshd down.
      bestEffort: [{ argv: ["sh", "-c", "sshd -t && systemctl reload ssh"], why: "reload sshd after its drop-in changed" }],
      probes: [{ name: "sshd listening", kind: "tcp", host: "127.0.0.1", port: sshPort }],
      assertions: [{
        assertion: o.openFirewall || !ctx.self.config.firewall.enable,
        path: "sshd.openFirewall",
        expected: "true while the firewall is on (meshfleet deploys over SSH)",
        found: "false",
        fix: "leave sshd.openFirewall true, or list the management interface in firewall.trustedInterfaces and set sshd.openFirewall: !mkForce false",
      }],
    };
  },
});
