/**
 * node-exporter: Prometheus' node_exporter (Debian's prometheus-node-exporter)
 * serving the host's metrics, the agent's textfile metrics among them
 * (metrics.textfileDir), on the tailnet only: its port is never opened on
 * the public side; on tailscale0 the policy decides who may scrape it.
 */
import { z } from "zod";
import { absPath } from "../core/freetext.ts";
import { defineModule } from "../core/module.ts";
import { port } from "../core/schema-types.ts";

export const nodeExporterOptions = z
  .object({
    enable: z.boolean().default(false).describe("Run prometheus-node-exporter, reachable over the tailnet only."),
    port: port.default(9100).describe("TCP port node_exporter listens on (opened on tailscale0 only)."),
    package: absPath("node-exporter.package", "/usr/bin/prometheus-node-exporter").default("/usr/bin/prometheus-node-exporter").describe("Path of the node_exporter binary (Debian's prometheus-node-exporter package)."),
    extraFlags: z
      .array(z.string().regex(/^--[a-z0-9.-]+(=.*)?$/, { message: "a flag such as --collector.systemd" }))
      .default([])
      .describe("More node_exporter flags, one per element."),
  })
  .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    "node-exporter": z.output<typeof nodeExporterOptions>;
  }
}

export const UNIT = "prometheus-node-exporter.service";

export const nodeExporterModule = defineModule({
  name: "node-exporter",
  description: "Prometheus node_exporter with the agent's textfile metrics, on the tailnet only.",
  options: nodeExporterOptions,
  facts(o) {
    return { services: { nodeExporter: o.enable } };
  },
  config(o, ctx) {
    if (!o.enable) return {};
    const textfileDir = ctx.self.config.metrics.textfileDir;
    const argv = [o.package, `--web.listen-address=:${o.port}`, `--collector.textfile.directory=${textfileDir}`, ...o.extraFlags];
    return {
      packages: ["prometheus-node-exporter"],
      units: [{
        name: UNIT,
        enable: true,
        content: [
          "[Unit]",
          "Description=Prometheus node_exporter (meshfleet; tailnet only)",
          "Wants=network-online.target",
          "After=network-online.target",
          "",
          "[Service]",
          `ExecStart=${argv.join(" ")}`,
          "DynamicUser=yes",
          "Restart=on-failure",
          "NoNewPrivileges=yes",
          "ProtectSystem=strict",
          "ProtectHome=read-only",
          "PrivateTmp=yes",
          "ProtectKernelTunables=yes",
          "ProtectControlGroups=yes",
          "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK",
          "",
          "[Install]",
          "WantedBy=multi-user.target",
          "",
        ].join("\n"),
      }],
      tailnetInbound: [{ proto: "tcp", port: o.port, from: [], owner: "node-exporter", comment: "node_exporter metrics (tailnet only)" }],
      probes: [{ name: "node-exporter listening", kind: "tcp", host: "127.0.0.1", port: o.port }],
      assertions: [
        {
          assertion: ctx.self.facts.tailnet !== null,
          path: "node-exporter.enable",
          expected: "a host that joins the mesh (node_exporter is reachable over the tailnet only)",
          found: "tailscale.enable: false",
          fix: "set tailscale.enable: true (or import client), or node-exporter.enable: false",
        },
        {
          assertion: ctx.self.runtime === "systemd",
          path: "node-exporter.enable",
          expected: "the systemd runtime (node_exporter runs as a unit on the host)",
          found: `runtime: ${ctx.self.runtime}`,
          fix: "set node-exporter.enable: false on docker-runtime hosts",
        },
        {
          assertion: ctx.self.config.metrics.enable,
          path: "metrics.enable",
          expected: "true with node-exporter (it serves the agent's textfile metrics)",
          found: "false",
          fix: "set metrics.enable: true, or node-exporter.enable: false",
        },
      ],
    };
  },
});
