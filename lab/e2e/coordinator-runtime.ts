/**
 * What `lab check` does to the coordinator, for either runtime (issue 20):
 * the VPS runs headscale as headscale.service (hosts/lab) or as the
 * container `headscale` of its compose project (the docker variant). Each
 * helper is shell run on the VPS that asks the host which one it runs (the
 * compose file of its generation names a headscale container, or not), so a
 * check neither needs to know the variant nor skips an item on docker.
 */
import { HOST_TOOLS_DIR } from "../hosts/index.ts";
import { loadVersions } from "../tools/index.ts";

const COMPOSE_FILE = "/etc/meshfleet/compose/docker-compose.yml";

/** Shell test, true when the host's generation runs headscale in docker. */
export const HS_IN_DOCKER = `grep -qs '"container_name": "headscale"' ${COMPOSE_FILE}`;

const version = (name: string) => loadVersions().tools.find((t) => t.name === name)?.version ?? "?";

/**
 * The headscale CLI as a command prefix (`${hsCli()} nodes list -o json`):
 * `docker exec` into the container, or the tool binary with the host's config.
 */
export function hsCli(): string {
  const host = `${HOST_TOOLS_DIR}/headscale@${version("headscale")}/bin/headscale -c /etc/headscale/config.yaml`;
  return `sh -c 'if ${HS_IN_DOCKER.replace(/'/g, `'"'"'`)}; then exec docker exec -i headscale headscale "$@"; else exec ${host} "$@"; fi' headscale`;
}

/**
 * Shell: stop, start or restart headscale; `is-active` prints `active` when it
 * serves (systemctl's word; a running container counts). A stopped container
 * stays stopped: its restart policy is unless-stopped.
 */
export function hsService(action: "stop" | "start" | "restart" | "is-active"): string {
  const docker =
    action === "is-active"
      ? `[ "$(docker container inspect --format '{{.State.Running}}' headscale 2>/dev/null)" = true ] && echo active || { echo inactive; false; }`
      : `docker ${action} headscale >/dev/null`;
  return `{ if ${HS_IN_DOCKER}; then ${docker}; else systemctl ${action} headscale; fi; }`;
}

/** Where headscale's policy file is on the host: the container mounts it from the docker runtime's folder. */
export function hsPolicyPath(): string {
  return `$(if ${HS_IN_DOCKER}; then echo /opt/meshfleet/headscale/policy.hujson; else echo /etc/headscale/policy.hujson; fi)`;
}
