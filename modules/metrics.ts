/** metrics: the node_exporter textfile directory the agent writes its metrics to, and the timer that runs it. */
import { z } from "zod";
import { absPath } from "../core/freetext.ts";
import { AGENT_HOST_PATH } from "../contract/constants.ts";
import { defineModule } from "../core/module.ts";

export const metricsOptions = z
  .object({
    enable: z.boolean().default(true).describe("Write tailscale_* and meshfleet_* metrics."),
    textfileDir: absPath("metrics.textfileDir", "/var/lib/prometheus/node-exporter").default("/var/lib/prometheus/node-exporter").describe("node_exporter --collector.textfile.directory."),
    intervalSeconds: z.number().int().min(10).max(3600).default(60).describe("How often the metrics are refreshed."),
  })
  .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    metrics: z.output<typeof metricsOptions>;
  }
}

export const metricsModule = defineModule({
  name: "metrics",
  description: "Prometheus metrics through node_exporter's textfile collector.",
  options: metricsOptions,
  config(o, ctx) {
    const metrics = { enable: o.enable, textfileDir: o.textfileDir };
    if (!o.enable) return { metrics };
    const node = ctx.self.config["meshfleet-agent"].nodePath;
    return {
      metrics,
      units: [
        {
          name: "meshfleet-metrics.service",
          enable: false,
          content: `[Unit]\nDescription=meshfleet metrics (textfile)\n\n[Service]\nType=oneshot\nExecStart=${node} ${AGENT_HOST_PATH} metrics\n`,
        },
        {
          name: "meshfleet-metrics.timer",
          enable: true,
          content: `[Unit]\nDescription=meshfleet metrics every ${o.intervalSeconds}s\n\n[Timer]\nOnBootSec=30\nOnUnitActiveSec=${o.intervalSeconds}\n\n[Install]\nWantedBy=timers.target\n`,
        },
      ],
    };
  },
});
