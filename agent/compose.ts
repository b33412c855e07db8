/**
 * Containers as part of a generation (the docker runtime, issue 20).
 *
 * A generation with containers carries them as one compose file (JSON, which
 * every compose reads as YAML) at COMPOSE_FILE, plus COMPOSE_UNIT, a oneshot
 * unit that runs `docker-compose up -d --remove-orphans` on it. The agent's
 * ordinary machinery writes both and restarts the unit when the compose file
 * or a file it mounts changes; a rollback writes the previous compose file
 * back, and the unit brings the previous images up again (images are pinned
 * by digest or id and never pruned here). This file adds what the ordinary
 * machinery cannot see: each container's own health after activation, and
 * drift inside docker (a container stopped or gone, an image changed, a
 * volume missing).
 */
import type { Bundle } from "../contract/bundle.ts";
import { describeFailure, type Host } from "./host.ts";

export const COMPOSE_DIR = "/etc/meshfleet/compose";
export const COMPOSE_FILE = `${COMPOSE_DIR}/docker-compose.yml`;
export const COMPOSE_UNIT = "meshfleet-compose.service";
/** The compose project: container and network names are not prefixed by a folder name. */
export const COMPOSE_PROJECT = "meshfleet";

export interface ComposeService {
  image: string;
  container_name: string;
  volumes?: string[];
  healthcheck?: { test: string[]; interval?: string; timeout?: string; retries?: number };
  labels?: Record<string, string>;
}

export interface ComposeFile {
  version: string;
  services: Record<string, ComposeService>;
  volumes?: Record<string, { name: string; driver?: string; driver_opts?: Record<string, string> }>;
}

/** The compose file a bundle carries, or null when it runs no containers. */
export function composeOf(bundle: Bundle): ComposeFile | null {
  const f = bundle.files.find((x) => x.path === COMPOSE_FILE);
  if (!f) return null;
  try {
    const c = JSON.parse(f.content) as ComposeFile;
    return c && typeof c.services === "object" ? c : null;
  } catch {
    return null;
  }
}

interface Inspected {
  Image: string;
  State: { Status: string; Running: boolean; Health?: { Status: string } };
}

function docker(host: Host, args: string[], timeoutMs = 30_000) {
  return host.run(["docker", ...args], { timeoutMs });
}

/** The image id a reference names on this host (`sha256:…`), or null when the host does not have it. */
export function imageId(host: Host, ref: string): string | null {
  const r = docker(host, ["image", "inspect", "--format", "{{.Id}}", ref]);
  return r.code === 0 ? r.stdout.trim() : null;
}

function inspect(host: Host, name: string): Inspected | null {
  const r = docker(host, ["container", "inspect", name]);
  if (r.code !== 0) return null;
  try {
    return (JSON.parse(r.stdout) as Inspected[])[0] ?? null;
  } catch {
    return null;
  }
}

export interface ContainerDrift {
  kind: "container";
  subject: string;
  detail: string;
}

/** Docker against the bundle's compose file: containers running, healthy and on their pinned image; volumes there. */
export function composeDrift(host: Host, bundle: Bundle): ContainerDrift[] {
  const c = composeOf(bundle);
  if (!c) return [];
  const out: ContainerDrift[] = [];
  for (const [svc, s] of Object.entries(c.services)) {
    const subject = s.container_name ?? svc;
    const live = inspect(host, subject);
    if (!live) {
      out.push({ kind: "container", subject, detail: "missing (docker has no such container)" });
      continue;
    }
    if (!live.State.Running) out.push({ kind: "container", subject, detail: `is ${live.State.Status}, expected running` });
    else if (live.State.Health && live.State.Health.Status === "unhealthy") out.push({ kind: "container", subject, detail: "is unhealthy (its health check fails)" });
    const want = imageId(host, s.image);
    if (want === null) out.push({ kind: "container", subject, detail: `image ${s.image} is not on the host` });
    else if (live.Image !== want) out.push({ kind: "container", subject, detail: `runs image ${live.Image.slice(0, 19)}, expected ${want.slice(0, 19)} (${s.image})` });
  }
  for (const v of Object.values(c.volumes ?? {})) {
    if (docker(host, ["volume", "inspect", v.name]).code !== 0) out.push({ kind: "container", subject: `volume ${v.name}`, detail: "missing" });
  }
  return out;
}

/** Left of a guarded switch's confirm window after the containers: the remaining steps, the probes and the deploy's confirm. */
export const CONFIRM_MARGIN_MS = 10_000;

/**
 * After the units step: every container of the bundle must run and pass its
 * own health check (run now with `docker exec`, not docker's next interval)
 * within `timeoutMs`, and, in a guarded switch, before `confirmDeadline`
 * (the pending confirm's deadline, epoch ms) less CONFIRM_MARGIN_MS: a wait
 * past it would have the guard roll back a healthy switch. Throws with the
 * last problem seen; the switch then rolls back like any failing step.
 */
export function awaitContainers(host: Host, bundle: Bundle, log: (line: string) => void, timeoutMs = composeTimeoutMs(), confirmDeadline?: number): void {
  const c = composeOf(bundle);
  if (!c) return;
  const t0 = Date.now();
  const guarded = confirmDeadline !== undefined && confirmDeadline - CONFIRM_MARGIN_MS < t0 + timeoutMs;
  const until = guarded ? confirmDeadline - CONFIRM_MARGIN_MS : t0 + timeoutMs;
  for (const [svc, s] of Object.entries(c.services)) {
    const name = s.container_name ?? svc;
    let problem = "";
    for (;;) {
      problem = containerProblem(host, name, s);
      if (!problem || Date.now() > until) break;
      host.run(["sleep", "1"], { timeoutMs: 5_000 });
    }
    if (problem) {
      const waited = `${Math.max(0, Math.round((until - t0) / 1000))} s`;
      throw new ComposeError(
        guarded
          ? `containers: ${name}: ${problem} after ${waited}, when the lockout guard's confirm window (less ${CONFIRM_MARGIN_MS / 1000} s for the confirm) ran out. Fix: raise confirmTimeoutSeconds (meshfleet:confirmTimeoutSeconds) if the container needs longer to become healthy`
          : `containers: ${name}: ${problem} after ${waited}`,
      );
    }
    log(`  container ${name}: running${s.healthcheck ? ", health check passes" : ""}`);
  }
}

export class ComposeError extends Error {}

function containerProblem(host: Host, name: string, s: ComposeService): string {
  const live = inspect(host, name);
  if (!live) return "not created";
  if (!live.State.Running) return `is ${live.State.Status}`;
  // The compose file writes a literal `$` as `$$` (compose interpolates); docker exec takes it as is.
  const test = (s.healthcheck?.test ?? []).map((t) => t.replaceAll("$$", "$"));
  if (test.length === 0 || test[0] === "NONE") return "";
  const argv = test[0] === "CMD-SHELL" ? ["sh", "-c", test.slice(1).join(" ")] : test[0] === "CMD" ? test.slice(1) : test;
  const r = docker(host, ["exec", name, ...argv], 15_000);
  return r.code === 0 ? "" : `health check ${describeFailure(argv, r)}`;
}

function composeTimeoutMs(): number {
  const v = Number(process.env.MESHFLEET_COMPOSE_TIMEOUT_S);
  return Number.isFinite(v) && v > 0 ? v * 1000 : 120_000;
}
