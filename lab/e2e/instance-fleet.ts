/**
 * A copy of hosts/lab whose SSH addresses are lab instance N's, set as the
 * stack's fleet folder in that instance's config file. hosts/lab names
 * instance 0's management addresses; a test that owns another instance
 * deploys this copy instead.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { labTopology } from "../topology.ts";
import { e2ePaths } from "./paths.ts";
import { REPO } from "./pulumi.ts";

/** Writes `<instance dir>/hosts-labN` and points `meshfleet:hostsDir` of the lab stack at it; returns the folder. */
export function writeInstanceFleet(instance: number): string {
  const p = e2ePaths(instance);
  const dir = join(p.dir, `hosts-lab${instance}`);
  const net = labTopology(instance).mgmtSubnet.replace(/\.0\/24$/, ".");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(join(REPO, "hosts", "lab"))) {
    writeFileSync(join(dir, f), readFileSync(join(REPO, "hosts", "lab", f), "utf8").replaceAll("172.31.240.", net));
  }
  const cfg = existsSync(p.stackConfig) ? ((parse(readFileSync(p.stackConfig, "utf8")) as { config?: Record<string, unknown> } | null) ?? {}) : {};
  mkdirSync(p.dir, { recursive: true });
  writeFileSync(p.stackConfig, stringify({ ...cfg, config: { ...(cfg.config ?? {}), "meshfleet:hostsDir": dir } }));
  return dir;
}
