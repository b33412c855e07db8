/**
 * Goldens of every file the home fleet renders (the seeds' setup). A change
 * to any rendered byte shows up here for review; the real programs accept
 * the same files in render-real.test.ts.
 */
import { describe, expect, it } from "vitest";
import { allArtifacts } from "../../core/artifacts.ts";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";

describe("hosts/home renders the same files", async () => {
  const r = await evaluateFleet(REGISTRY, "hosts/home", "home");
  const arts = allArtifacts(r.fleet!);
  it("renders something for every host with an agent", () => {
    for (const h of Object.values(r.fleet!.hosts)) {
      if (h.agent) expect(arts.some((a) => a.path.startsWith(`${h.name}/`)), h.name).toBe(true);
      else expect(arts.some((a) => a.path.startsWith(`${h.name}/`)), `${h.name} has no agent`).toBe(h.tailscale.enable);
    }
  });
  for (const a of arts)
    it(a.path, async () => {
      await expect(a.content).toMatchFileSnapshot(`__goldens__/home/${a.path}`);
    });
});
