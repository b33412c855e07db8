/**
 * systemd: the host's units as one option tree (NixOS `systemd.services`).
 * Modules' units are definitions of `systemd.units.<name>`, merged by
 * priority with the host's own (core/eval.ts mergedUnits), so a host file
 * can stop or replace a module's unit:
 *
 *   systemd:
 *     units:
 *       derper.service:
 *         enable: !mkForce false
 *
 * and add units of its own (with `content`).
 */
import { z } from "zod";
import { defineModule } from "../core/module.ts";

const unitName = z.string().regex(/^[A-Za-z0-9@._:\\-]+\.(service|timer|socket|path|target|mount)$/, { message: "a systemd unit name such as tailscaled.service" });
const absPath = z.string().regex(/^(?:\/(?!\.\.?(?:\/|$))[^/\0\n\r]+)+$/, { message: 'an absolute path without "..", "." or empty segments' });

export const systemdOptions = z
  .object({
    units: z
      .record(
        unitName,
        z
          .object({
            enable: z.boolean().optional().describe("Enable and start the unit (a module's units: true; a unit of the host's own: true unless set)."),
            content: z.string().optional().describe("The unit file's text: needed for a unit of the host's own; `!mkForce` replaces a module's."),
            restartTriggers: z.array(absPath).optional().describe("Files whose change restarts the unit; added to a module's (`!mkForce` replaces them)."),
          })
          .strict(),
      )
      .default({})
      .describe("Units by name, merged by priority with the units modules define (e.g. {derper.service: {enable: !mkForce false}})."),
  })
  .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    systemd: z.output<typeof systemdOptions>;
  }
}

export const systemdModule = defineModule({
  name: "systemd",
  description: "systemd units: the modules' and the host's own, merged by priority (the host can !mkForce a module's unit).",
  options: systemdOptions,
  // The units are assembled in evaluation, where the modules' definitions of them are known.
  config: () => ({}),
});
