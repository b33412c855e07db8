/**
 * What a move of the coordinator needs to know, read from its HostSystem: no
 * Pulumi here, so `plan` reads the same facts as the Coordinator component.
 */
import { parse as parseYaml } from "yaml";
import type { HostSystem } from "../core/types.ts";
import { headscaleDatabaseOf, HS } from "../modules/headscale.ts";
import type { PlacementInputs } from "../provider/types.ts";

/**
 * What a move of the coordinator needs to know of its database and keys, read
 * from the host's rendered headscale config: the database (type, SQLite path,
 * Postgres host), and whether its Noise key is one meshfleet writes (derived
 * from keySeed) or an adopted file it cannot carry. On the docker runtime the
 * files headscale reads are uploads into its container: found by the path
 * the container sees.
 */
export function placementFacts(h: HostSystem, containerName = "headscale"): Pick<PlacementInputs, "databaseType" | "databasePath" | "postgresHost" | "adopted"> {
  const uploads = h.runtime === "docker" ? (h.containers.find((c) => c.name === containerName)?.uploads ?? []) : [];
  const onHost = (p: string) => uploads.find((u) => u.containerPath === p)?.source ?? p;
  const has = (p: string) => h.files.some((f) => f.path === p || f.path === onHost(p));
  const text = h.files.find((f) => f.path === onHost(HS.config))?.content ?? "";
  const db = headscaleDatabaseOf(text, HS.pgpass);
  const noise = ((parseYaml(text) ?? {}) as { noise?: { private_key_path?: string } }).noise?.private_key_path ?? HS.noiseKey;
  return {
    databaseType: db.type,
    databasePath: db.type === "sqlite" ? db.path : `${HS.stateDir}/db.sqlite`,
    ...(db.type === "postgres" ? { postgresHost: db.host } : {}),
    adopted: !has(noise),
  };
}
