/** Services restart when a file they read changes, even one their unit text does not name. */
import { expect, it } from "vitest";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { unitDependencies } from "../../agent/desired.ts";

it("headscale restarts on a new policy or DERP map (the unit names only config.yaml)", async () => {
  const r = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
  const vps = r.fleet!.hosts.vps;
  const unit = vps.units.find((u) => u.name === "headscale.service")!;
  expect(unit.content).not.toContain("policy.hujson");
  const deps = unitDependencies(unit, vps.files.map((f) => f.path));
  expect(deps).toEqual(expect.arrayContaining(["/etc/headscale/config.yaml", "/etc/headscale/policy.hujson", "/etc/headscale/derp.yaml"]));
  expect(deps).not.toContain("/etc/caddy/Caddyfile");
});
