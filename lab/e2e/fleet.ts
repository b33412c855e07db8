/**
 * The lab's fleet as the e2e steps see it: its folder, coordinator and hosts.
 * A file of its own so that checks, the deploy steps and `down` can all read
 * it without importing each other.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./pulumi.ts";

export const FLEET_DIR = join(REPO, "hosts", "lab");
export const COORDINATOR = "vps";
export const SERVER_URL = "https://203.0.113.10";

/** The fleet's hosts (one YAML per host; fleet.yaml and _shared files are not hosts). */
export function fleetHosts(dir = FLEET_DIR): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml") && f !== "fleet.yaml" && !f.startsWith("_"))
    .map((f) => f.slice(0, -5))
    .sort();
}
