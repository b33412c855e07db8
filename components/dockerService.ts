/**
 * Docker runtime: the checks on a host's ContainerSpecs (images pinned,
 * uploads naming files the host renders, the Postgres password file) and
 * the render that makes the containers part of the host's generation: one
 * compose file and the unit that runs it, delivered and activated by the
 * host's agent (agent/compose.ts). No docker API is reached from the deploy
 * machine.
 */
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import { headscaleDatabaseOf, type HeadscaleDatabase } from "../modules/headscale.ts";
import type { ContainerSpec, FileSpec, HostSystem, UnitSpec } from "../core/types.ts";
import { COMPOSE_FILE, COMPOSE_PROJECT, COMPOSE_UNIT, type ComposeFile } from "../agent/compose.ts";
import { STATE_DIR } from "../contract/constants.ts";
import { shq } from "../provider/quote.ts";
import type { HostAgent } from "./hostAgent.ts";
import type { SshAccess } from "./shell.ts";

/**
 * What a service beside headscale on the coordinator's host (the reverse
 * proxy, a standalone DERP relay) needs in either runtime.
 */
export interface CoordinatorServiceArgs {
  /**
   * The host's agent push the service check waits for (either runtime: the
   * container or the unit is in its generation).
   * @default undefined
   * @example coordinator.hostAgent
   */
  hostAgent?: HostAgent;
  /**
   * How the deploy logs in to the host for the service check (pins, private key).
   * @default {}
   * @example { privateKeyPath: "~/.ssh/id_ed25519" }
   */
  ssh?: SshAccess;
  /**
   * Secret values the service's files reference (a standalone relay: `derp-key`).
   * @default {}
   * @example { "derp-key": derpKey }
   */
  secrets?: Record<string, pulumi.Input<string>>;
}

/**
 * The image contract (issue 20). An image is named one of three ways, each
 * pinned: `repo:tag` (an exact version tag), `repo@sha256:<digest>` or
 * `repo:tag@sha256:<digest>` (a registry's manifest digest), or
 * `sha256:<64 hex>` alone: an image id, what `docker import` and
 * `docker build` print for an image made on the host itself (no registry
 * knows it). `meshfleet:imageDigests` carries registry digests only, appended
 * to a repository: an id is never a digest (docker would look it up in a
 * registry as `repo@sha256:<id>` and fail), so a local image is written as the
 * host file's `image:` (headscale.image, reverse-proxy.image, derp.image) and
 * a digest given for it as well is refused.
 */
export const IMAGE_ID_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** Problems with an image reference: it must be pinned by an exact tag, a digest, or be an image id. */
export function validateImagePin(image: string, where: string): string[] {
  if (IMAGE_ID_PATTERN.test(image)) return [];
  const digest = /@sha256:[0-9a-f]{64}$/.test(image);
  const name = image.replace(/@sha256:.*$/, "");
  const slash = name.lastIndexOf("/");
  const colon = name.lastIndexOf(":");
  const tag = colon > slash ? name.slice(colon + 1) : "";
  if (digest) return [];
  if (!tag) return [`${where}: expected an image pinned by an exact tag or digest, found ${JSON.stringify(image)} (no tag). Fix: write the version, e.g. headscale/headscale:0.29.2`];
  if (tag === "latest" || tag === "stable" || !/\d/.test(tag)) {
    return [`${where}: expected an image pinned by an exact tag or digest, found the moving tag ${JSON.stringify(tag)}. Fix: write the version, e.g. headscale/headscale:0.29.2`];
  }
  return [];
}

/**
 * The image reference with an optional registry digest appended
 * (`repo:tag@sha256:…`, docker resolves by digest). An image id takes no
 * digest: see IMAGE_ID_PATTERN.
 */
export function pinnedImage(image: string, digest?: string): string {
  if (!digest) return image;
  if (IMAGE_ID_PATTERN.test(image)) {
    throw new Error(`image ${image.slice(0, 19)}…: an image id (a local image) cannot take a registry digest (${digest.slice(0, 19)}…). Fix: drop it from meshfleet:imageDigests, or name a registry image (repo:tag) in the host file`);
  }
  const d = digest.startsWith("sha256:") ? digest : `sha256:${digest}`;
  return `${image.replace(/@sha256:.*$/, "")}@${d}`;
}

/** Problems with one ContainerSpec against its host (uploads must name files the host renders). */
export function validateContainerSpec(host: HostSystem, spec: ContainerSpec, secrets: readonly string[]): string[] {
  const where = `${host.file}: containers[${spec.name}]`;
  const p = validateImagePin(spec.image, `${where}.image`);
  for (const [i, u] of spec.uploads.entries()) {
    const f = host.files.find((x) => x.path === u.source);
    if (!f) p.push(`${where}.uploads[${i}]: expected a file of host ${host.name} at ${u.source}, found none. Fix: render the file in a module or drop the upload`);
    else if (f.secretRef && !secrets.includes(f.secretRef)) p.push(`${where}.uploads[${i}]: ${u.source} needs secret "${f.secretRef}", which the deploy does not provide`);
    else if ((f.secret || f.secretRef) && !u.secret) p.push(`${where}.uploads[${i}]: ${u.source} is secret but the upload is not marked secret. Fix: secret: true`);
  }
  return p;
}

/** The secret refs the Postgres password fills (modules/headscale.ts): systemd's env file, docker's password file. */
export const POSTGRES_SECRET_REFS = ["headscale-postgres-pgpass"] as const;

/**
 * Problems with a Postgres password before it is written anywhere: it must be
 * one line (both files are line-based) and not empty. The message never shows it.
 */
export function validatePostgresPassword(password: string): string[] {
  if (password === "") return ["meshfleet:headscalePostgresPassword: expected the Postgres password, found an empty value. Fix: pulumi config set --secret meshfleet:headscalePostgresPassword"];
  if (/[\r\n\0]/.test(password)) return ["meshfleet:headscalePostgresPassword: expected a password on one line, found a line break or NUL in it (not shown). Fix: set a password without line breaks"];
  return [];
}

/**
 * The secret file from the password: a libpq password file (`host:port:db:user:password`,
 * `*` matching any; `\\` and `:` escaped) that headscale's Postgres driver reads
 * through PGPASSFILE when its config has no password.
 */
export function postgresSecretFiles(password: string): Record<(typeof POSTGRES_SECRET_REFS)[number], string> {
  return {
    "headscale-postgres-pgpass": `*:*:*:*:${password.replace(/\\/g, "\\\\").replace(/:/g, "\\:")}\n`,
  };
}

const isBindMount = (name: string) => name.startsWith("/");

// ---------------------------------------------------------------------------
// Containers as part of the generation (issue 20): the host's ContainerSpecs
// become one compose file and one unit in the host's generation, delivered by
// its agent like every other file and unit.

/** What `composeHost` needs beyond the host. */
export interface ComposeOptions {
  /**
   * The exact image each container runs, by container name: `repo@sha256:…`
   * (a registry digest) or `sha256:…` (an image id, as `docker import` gives).
   * A container without one keeps its spec's image, which must then be pinned
   * by digest.
   */
  images?: Record<string, string>;
  /** The compose program on the host. Debian bookworm's docker.io has no compose plugin: its `docker-compose` (1.29) is used. */
  composeCommand?: string;
  /**
   * Owner of the files written into a named volume's folder (keys inside
   * headscale's state dir): the systemd runtime's owner of that folder, so
   * a runtime switch leaves the same file, owner and mode. @default root
   */
  volumeFileOwner?: { owner: string; group: string };
  /** Files added to the generation in this runtime (the sysusers line that makes that owner). @default [] */
  extraFiles?: FileSpec[];
}

const IMAGE_ID = IMAGE_ID_PATTERN;
const DIGEST_PINNED = /@sha256:[0-9a-f]{64}$/;

/**
 * The image reference a container runs in the generation: its digest-pinned
 * form when a digest or an id (`sha256:…`, as `docker import` gives) is
 * given, else the spec's exact tag (validateImagePin refuses moving tags).
 */
export function composeImage(spec: ContainerSpec, images: Record<string, string> = {}): string {
  const ref = images[spec.name] ?? spec.image;
  if (IMAGE_ID.test(ref) || DIGEST_PINNED.test(ref)) return ref;
  const p = validateImagePin(ref, `containers[${spec.name}].image`);
  if (p.length) throw new Error(p[0]);
  return ref;
}

/**
 * A named volume lives at the container's path on the host too (a local
 * volume bound to that folder): headscale's database stays in
 * /var/lib/headscale whichever runtime serves it, so switching between
 * `runtime: systemd` and `runtime: docker` keeps the database and keys.
 */
export function volumeHostPath(v: { name: string; containerPath: string }): string {
  return v.containerPath;
}

/** The named volume a container path lies in, if any. */
function volumeOf(spec: ContainerSpec, containerPath: string): { name: string; containerPath: string } | undefined {
  return spec.volumes.find((v) => !isBindMount(v.name) && containerPath.startsWith(`${v.containerPath}/`));
}

/** The compose file with its network: `default`, on the fixed subnet the containers need (headscale.dockerSubnet). */
export type ComposeFileWithNetwork = ComposeFile & {
  networks?: { default: { ipam: { driver: "default"; config: { subnet: string }[] } } };
};

/**
 * The subnet of the host's compose network: the one its containers name
 * (headscale trusts the proxy's container from it), or none (docker picks).
 * Containers naming different subnets are refused: there is one network.
 */
export function composeSubnet(host: HostSystem): string | undefined {
  const named = [...new Set(host.containers.map((c) => c.subnet).filter((s): s is string => !!s))];
  if (named.length > 1) {
    const who = host.containers.filter((c) => c.subnet).map((c) => `${c.name}: ${c.subnet}`).join(", ");
    throw new Error(`${host.file}: containers: expected one subnet for the compose network, found ${who}. Fix: give every container the same subnet (headscale.dockerSubnet)`);
  }
  return named[0];
}

/**
 * A value compose must pass through as written: compose interpolates `$VAR`
 * and `${VAR}` in every string of the file (JSON too), and refuses `$!`
 * ("Invalid interpolation format"); `$$` is its literal `$`.
 */
export function composeLiteral(v: string): string {
  return v.replaceAll("$", "$$$$");
}

/** The compose file (as JSON, which compose reads as YAML) for the host's containers. Pure. */
export function renderCompose(host: HostSystem, images: Record<string, string> = {}): ComposeFileWithNetwork {
  const subnet = composeSubnet(host);
  const services: ComposeFile["services"] = {};
  const volumes: NonNullable<ComposeFile["volumes"]> = {};
  for (const spec of [...host.containers].sort((a, b) => a.name.localeCompare(b.name))) {
    const mounts: string[] = [];
    for (const v of spec.volumes) {
      if (isBindMount(v.name)) mounts.push(`${v.name}:${v.containerPath}:ro`);
      else {
        mounts.push(`${v.name}:${v.containerPath}`);
        volumes[v.name] = { name: v.name, driver: "local", driver_opts: { type: "none", o: "bind", device: volumeHostPath(v) } };
      }
    }
    // Files, secrets included, are the host's own files (the agent writes them with their
    // modes: secrets 0600 root) mounted read-only: nothing is copied into a container or an image.
    const sources: string[] = [];
    for (const u of spec.uploads) {
      // A file inside a named volume is written by the agent into the volume's folder (see composeHost), not mounted.
      if (!volumeOf(spec, u.containerPath)) mounts.push(`${u.source}:${u.containerPath}:ro`);
      sources.push(u.source);
    }
    // A mounted file's change must recreate the container (compose sees only its own file): the
    // label carries the sha256 of the non-secret files' content and the names of secret ones.
    const files = host.files.filter((f) => sources.includes(f.path)).sort((a, b) => a.path.localeCompare(b.path));
    const digest = createHash("sha256");
    for (const f of files) digest.update(`${f.path}\0${f.secret || f.secretRef ? `secret:${f.secretRef ?? ""}` : f.content}\0`);
    const svc: ComposeFile["services"][string] & Record<string, unknown> = {
      image: composeImage(spec, images),
      container_name: spec.name,
      restart: spec.restart,
      ...(spec.command.length ? { command: spec.command.map(composeLiteral) } : {}),
      ...(Object.keys(spec.env).length ? { environment: Object.fromEntries(Object.entries(spec.env).map(([k, v]) => [k, composeLiteral(v)])) } : {}),
      ports: spec.ports.map((p) => `${p.ip ? `${p.ip.includes(":") ? `[${p.ip}]` : p.ip}:` : ""}${p.external}:${p.internal}/${p.protocol}`),
      volumes: mounts,
      labels: { "meshfleet.files": digest.digest("hex") },
      ...(spec.healthcheck ? { healthcheck: { ...spec.healthcheck, test: spec.healthcheck.test.map(composeLiteral) } } : {}),
    };
    services[spec.name] = svc;
  }
  return {
    version: "2.4",
    services,
    ...(Object.keys(volumes).length ? { volumes } : {}),
    // Every service is on the project's default network; declared, so its subnet is fixed.
    ...(subnet ? { networks: { default: { ipam: { driver: "default" as const, config: [{ subnet }] } } } } : {}),
  };
}

/**
 * The unit that runs the compose file (oneshot: `up -d` returns once the containers are created).
 * `guarded`: the container whose database the guard (COMPOSE_DB_GUARD) keeps around an image switch.
 */
export function composeUnit(compose: ComposeFile, composeCommand = "/usr/bin/docker-compose", guarded?: string): UnitSpec {
  const dc = `${composeCommand} -p ${COMPOSE_PROJECT} -f ${COMPOSE_FILE}`;
  const dirs = [...new Set(Object.values(compose.volumes ?? {}).map((v) => v.driver_opts?.device).filter((d): d is string => !!d))].sort();
  return {
    name: COMPOSE_UNIT,
    enable: true,
    content: [
      "[Unit]",
      "Description=meshfleet containers (compose project meshfleet)",
      "Requires=docker.service",
      "After=docker.service network-online.target",
      "Wants=network-online.target",
      "",
      "[Service]",
      "Type=oneshot",
      "RemainAfterExit=yes",
      // The volumes hold databases and keys, and their containers run as root: the folders are root's
      // alone (a container's root made headscale's database 0644 in a 0755 folder otherwise). An empty
      // volume's first mount copies the image's folder, mode included, after this: images should ship
      // their state folder 0700 (the lab's do).
      ...(dirs.length ? [`ExecStartPre=/bin/mkdir -p ${dirs.join(" ")}`, `ExecStartPre=/bin/chmod 0700 ${dirs.join(" ")}`] : []),
      // headscale's database around an image switch (COMPOSE_DB_GUARD): a restart has removed the containers
      // (ExecStop), so the database is as the old image left it. Before the network prune: a Postgres
      // reached at the compose network's gateway is reached there from the host too.
      ...(guarded ? [`ExecStartPre=/bin/sh ${COMPOSE_DB_GUARD}`] : []),
      // A network compose made before (docker's pick, or another subnet) is not changed by `up`, which
      // stops with "needs to be recreated": drop the project's unused networks (ExecStop removed the
      // containers), so `up` makes the network as the compose file declares it.
      `ExecStartPre=-/bin/sh -c 'docker network prune -f --filter label=com.docker.compose.project=${COMPOSE_PROJECT} >/dev/null'`,
      `ExecStart=${dc} up -d --remove-orphans`,
      // Before they go, the image the guarded container ran is recorded for the guard: a start the guard did
      // not see (a rollback to a generation from before it) ran another image than the guard last recorded.
      ...(guarded ? [ranImageRecorder(guarded)] : []),
      // Stop finds the project's containers by compose's label, not through the compose file: a
      // generation without containers has removed that file by the time its unit is stopped.
      // Volumes stay: they hold the database.
      `ExecStop=/bin/sh -c 'ids=$$(docker ps -aq --filter label=com.docker.compose.project=${COMPOSE_PROJECT}); [ -z "$$ids" ] || docker rm -f $$ids'`,
      "TimeoutStartSec=300",
      "",
      "[Install]",
      "WantedBy=multi-user.target",
      "",
    ].join("\n"),
  };
}

/**
 * The host as its agent's generation carries it in the docker runtime: its
 * files, plus the compose file and the unit that runs it (restarted when the
 * compose file or a file a container mounts changes). `containers` is kept
 * for the record; the agent acts on the compose file.
 */
export function composeHost(host: HostSystem, o: ComposeOptions = {}): HostSystem {
  if (host.containers.length === 0) return host;
  const compose = renderCompose(host, o.images);
  const db = containerDatabaseOf(host);
  const guarded = db ? compose.services[db.container] : undefined;
  const unit = composeUnit(compose, o.composeCommand, guarded ? db!.container : undefined);
  // Files a container sees inside a named volume are written at that path on the host, where the
  // volume's folder is (a file mounted into a volume would leave an empty mount point in it instead).
  const moved = new Map<string, string>();
  for (const c of host.containers) for (const u of c.uploads) if (volumeOf(c, u.containerPath)) moved.set(u.source, u.containerPath);
  const owner = o.volumeFileOwner ?? { owner: "root", group: "root" };
  const files = host.files.map((f) => (moved.has(f.path) ? { ...f, path: moved.get(f.path)!, ...owner } : f));
  const mounted = [...new Set(host.containers.flatMap((c) => c.uploads.map((u) => moved.get(u.source) ?? u.source)))].sort();
  return {
    ...host,
    files: [
      ...(o.extraFiles ?? []),
      ...files,
      { path: COMPOSE_FILE, content: JSON.stringify(compose, null, 2) + "\n", mode: "0644", owner: "root", group: "root" },
      ...(db && guarded ? [{ path: COMPOSE_DB_GUARD, content: dbGuardScript({ ...db, image: guarded.image }), mode: "0700", owner: "root", group: "root" }] : []),
    ],
    // pg_dump and pg_restore run on the host (the headscale image has neither).
    ...(db?.database.type === "postgres" && !host.packages.includes("postgresql-client") ? { packages: [...host.packages, "postgresql-client"] } : {}),
    units: [...host.units, { ...unit, restartTriggers: mounted }],
    probes: [...host.probes, { name: "containers-unit", kind: "unit-active", unit: COMPOSE_UNIT }],
  };
}

// ---------------------------------------------------------------------------
// headscale's database around an image switch (issue 15 item 6 on the docker
// runtime): the systemd runtime's upgrade (cli/headscale-upgrade.ts) copies
// the database with headscale stopped before the new binary and puts it back
// when the new release fails its health check. Here the image switch is the
// agent's: the new compose file lands, the compose unit restarts, and a failing
// container health check makes the agent roll the generation back, which
// writes the old compose file and restarts the unit again. So the backup and
// its restore run in that unit, between ExecStop (every container removed:
// headscale is stopped) and `up`.

/** Where the guard keeps the image headscale last started from and the snapshot taken leaving it (0700 root). */
export const COMPOSE_DB_GUARD_DIR = `${STATE_DIR}/compose-db`;
/** The guard, one script per generation (it names that generation's image). */
export const COMPOSE_DB_GUARD = "/usr/local/lib/meshfleet/compose-image-switch-db.sh";
/**
 * The compose unit's first ExecStop when a container's database is guarded: the image that container
 * ran (docker's id, as the guard's `docker image inspect` gives it), written where the guard keeps its
 * record, before ExecStop removes the containers. Without it, a start the guard did not run in (a
 * rollback to a generation from before the guard) left the record naming the image rolled back from,
 * and the next guarded start to that image took no copy of the database though the image did switch.
 * Nothing is written when the container is not there (it never started, or was removed by hand); a
 * failure here does not hold the stop (`-`).
 */
export function ranImageRecorder(container: string): string {
  const dir = COMPOSE_DB_GUARD_DIR;
  return `ExecStop=-/bin/sh -c 'umask 077; img=$$(docker container inspect --format "{{.Image}}" ${container} 2>/dev/null) && [ -n "$$img" ] && mkdir -p ${dir} && echo "$$img" > ${dir}/${container}.image'`;
}

/** Seconds after an image switch within which a rollback of it puts the database back (a failed switch's automatic rollback comes within minutes). */
export const RESTORE_WINDOW_S = 900;

/** The agent's step journal: `"op": "rollback"` while it rolls a generation back (agent/state.ts). */
const AGENT_JOURNAL = `${STATE_DIR}/journal.json`;

export type ContainerDatabase = HeadscaleDatabase;

/**
 * headscale's database as the config its container mounts names it (the
 * file the host renders), or null when the host runs no headscale container.
 * SQLite's path is the same on the host: the volume is bound to that folder.
 */
export function containerDatabaseOf(host: HostSystem): { container: string; database: ContainerDatabase } | null {
  const spec = host.containers.find((c) => c.name === "headscale");
  const cfgUpload = spec?.uploads.find((u) => u.containerPath.endsWith("/config.yaml"));
  const cfgFile = cfgUpload && host.files.find((f) => f.path === cfgUpload.source);
  if (!spec || !cfgFile || cfgFile.secret || cfgFile.secretRef) return null;
  // The password file the container reads (PGPASSFILE) is the host's own file at the same path.
  const pgpass = spec.uploads.find((u) => u.containerPath === spec.env.PGPASSFILE)?.source;
  const database = headscaleDatabaseOf(cfgFile.content, pgpass ?? "");
  if (database.type === "postgres" && !pgpass) return null;
  return { container: spec.name, database };
}

/**
 * The guard the compose unit runs before `up` (POSIX sh, pure). With the
 * image `image` resolved to its id and the id headscale last started from:
 *   - the same: it records the id;
 *   - none recorded (a host deployed before the guard, or its state folder
 *     lost): this start may be a switch, so the database is copied as for one,
 *     into a `no-record-<time>` file that no switch overwrites and no rollback
 *     restores (the image it was made under is not known): for a restore by
 *     hand. Nothing to copy on a first start (SQLite: no database yet;
 *     Postgres: no compose network yet, whose gateway the server is reached
 *     at). A copy that fails stops the unit, naming how to record an image
 *     that did not change; the agent's rollback with no record goes through;
 *   - another, while the agent rolls back (its journal says so) to the image
 *     the last snapshot was taken leaving: the database goes back to that
 *     snapshot (SQLite: the file, the one the new image used kept beside it;
 *     Postgres: pg_restore --clean in one transaction), the snapshot is kept;
 *   - another, otherwise (a switch): a snapshot of the database first
 *     (SQLite: the file with its -wal/-shm; Postgres: pg_dump, custom format).
 * A snapshot or a restore that fails stops the unit: the switch fails and the
 * agent rolls back; a failed restore leaves headscale stopped rather than
 * starting the old release on what the new one left. Only the last switch's
 * snapshot is kept: a rollback to an older generation restores nothing. A
 * rollback to a generation from before the guard runs no guard, and restores
 * nothing; the record is put right at the next guarded generation's stop
 * (`ranImageRecorder`: the image the container ran), so the start after it
 * sees the switch and copies the database.
 */
export function dbGuardScript(o: {
  container: string;
  image: string;
  database: ContainerDatabase;
  /** Where the record and the snapshot go (tests point it elsewhere). @default COMPOSE_DB_GUARD_DIR */
  stateDir?: string;
  /** The agent's journal. @default the agent's, in its state folder */
  journal?: string;
}): string {
  const db = o.database;
  const stateDir = o.stateDir ?? COMPOSE_DB_GUARD_DIR;
  const journal = o.journal ?? AGENT_JOURNAL;
  const snap = `"$dir"/${o.container}.snapshot`;
  const pgConn = db.type === "postgres" ? `--no-password --host=${shq(db.host)} --port=${db.port} --username=${shq(db.user)} --dbname=${shq(db.name)}` : "";
  const take =
    db.type === "sqlite"
      ? [
          `  for x in "" -wal -shm; do rm -f ${snap}.new$x; if [ -e ${shq(db.path)}$x ]; then cp -p ${shq(db.path)}$x ${snap}.new$x || fail "could not copy ${db.path}$x"; fi; done`,
          `  [ -e ${snap}.new ] || { say "no database at ${db.path} yet: nothing to keep"; printf '%s\\n' "$want" > "$dir"/${o.container}.image; exit 0; }`,
          `  for x in "" -wal -shm; do rm -f ${snap}.sqlite$x; if [ -e ${snap}.new$x ]; then mv -f ${snap}.new$x ${snap}.sqlite$x || fail "could not keep the copy"; fi; done`,
          `  what="${db.path} copied to $dir/${o.container}.snapshot.sqlite"`,
        ]
      : [
          `  command -v pg_dump >/dev/null 2>&1 || fail "pg_dump is not installed on this host (postgresql-client), so the database could not be kept; headscale's image was not switched"`,
          `  pg_dump ${pgConn} --format=custom --file=${snap}.new || fail "pg_dump of $pgname on $pghost:${db.port} failed, so the database could not be kept; headscale's image was not switched"`,
          `  mv -f ${snap}.new ${snap}.pgdump || fail "could not keep the dump"`,
          `  what="Postgres database $pgname dumped to $dir/${o.container}.snapshot.pgdump"`,
        ];
  const restore =
    db.type === "sqlite"
      ? [
          `  for x in "" -wal -shm; do if [ -e ${shq(db.path)}$x ]; then mv -f ${shq(db.path)}$x ${shq(db.path)}.failed-switch-$stamp$x || fail "could not move ${db.path}$x aside"; fi; done`,
          `  for x in "" -wal -shm; do if [ -e ${snap}.sqlite$x ]; then cp -p ${snap}.sqlite$x ${shq(db.path)}.rollback$x && mv -f ${shq(db.path)}.rollback$x ${shq(db.path)}$x || fail "could not put ${snap}.sqlite$x back at ${db.path}$x (the one the new image used is ${db.path}.failed-switch-$stamp)"; fi; done`,
          `  what="${db.path} put back from the snapshot (the one the new image used kept as ${db.path}.failed-switch-$stamp)"`,
        ]
      : [
          // What the new image left is kept first, as SQLite's file is: a restore never loses the live database.
          `  pg_dump ${pgConn} --format=custom --file="$dir"/${o.container}.failed-switch-$stamp.pgdump || fail "pg_dump of $pgname as the new image left it failed, so it was not restored over; headscale is not started. Fix: make pg_dump work (postgresql-client of the server's release), then systemctl restart ${COMPOSE_UNIT}"`,
          `  pg_restore ${pgConn} --clean --if-exists --no-owner --single-transaction --exit-on-error ${snap}.pgdump || fail "pg_restore of $pgname from $dir/${o.container}.snapshot.pgdump failed (one transaction: the database is as the new image left it); headscale is not started. Fix: pg_restore --clean --if-exists --no-owner --single-transaction -d $pgname that file, then systemctl restart ${COMPOSE_UNIT}"`,
          `  what="Postgres database $pgname restored from $dir/${o.container}.snapshot.pgdump (as the new image left it: $dir/${o.container}.failed-switch-$stamp.pgdump)"`,
        ];
  const kept = `"$dir"/${o.container}.no-record-$stamp`;
  const keepAside =
    db.type === "sqlite"
      ? [`  for x in "" -wal -shm; do if [ -e ${snap}.sqlite$x ]; then mv -f ${snap}.sqlite$x ${kept}.sqlite$x || fail "could not keep the copy"; fi; done`, `  what="${db.path} copied to $dir/${o.container}.no-record-$stamp.sqlite"`]
      : [`  mv -f ${snap}.pgdump ${kept}.pgdump || fail "could not keep the dump"`, `  what="Postgres database $pgname dumped to $dir/${o.container}.no-record-$stamp.pgdump"`];
  // No record of the image headscale last ran (a host deployed before the guard, or its state folder lost): this start
  // may switch the image, so the database is copied as for a switch, into a file of its own that no later switch
  // overwrites and no rollback restores (the image it was made under is not known), for a restore by hand.
  const noRecord = [
    `if [ -z "$had" ]; then`,
    `  rm -f "$dir"/${o.container}.snapshot.from "$dir"/${o.container}.snapshot.to`,
    // The agent's rollback gets through: a copy that failed on the way in must not hold headscale stopped on the way back.
    `  if grep -Eq '"op": *"rollback"' ${shq(journal)} 2>/dev/null; then printf '%s\\n' "$want" > "$dir"/${o.container}.image; say "rollback to image $want with no record of the image headscale ran: the database is kept as it is"; exit 0; fi`,
    ...(db.type === "postgres"
      ? [
          // A first start: no compose network yet, and the server at its gateway is not reachable from here before `up` makes it.
          `  if [ -z "$(docker network ls -q --filter label=com.docker.compose.project=${COMPOSE_PROJECT} 2>/dev/null)" ]; then printf '%s\\n' "$want" > "$dir"/${o.container}.image; say "a first start (no compose network yet): nothing to keep"; exit 0; fi`,
        ]
      : []),
    `  fail() { say "$* (there was no record of the image headscale ran before, so this start may be an image switch; if ${o.container}'s image did not change, record it and restart: echo $want > '$dir/${o.container}.image'; systemctl restart ${COMPOSE_UNIT})"; exit 1; }`,
    ...take,
    ...keepAside,
    `  printf '%s\\n' "$want" > "$dir"/${o.container}.image`,
    `  say "no record of the image headscale ran before this start (a host deployed before this guard, or its state folder lost), so it may be an image switch: $what (headscale stopped; restored by hand only: the image it was made under is not known)"`,
    `  exit 0`,
    `fi`,
  ];
  return [
    "#!/bin/sh",
    `# meshfleet (components/dockerService.ts dbGuardScript): ${o.container}'s database around an image switch.`,
    "set -u",
    "umask 077",
    `dir=${shq(stateDir)}`,
    `say() { echo "meshfleet db guard: ${o.container}: $*" >&2; }`,
    `fail() { say "$*"; exit 1; }`,
    ...(db.type === "postgres" ? [`export PGPASSFILE=${shq(db.pgpass)} PGSSLMODE=${shq(db.sslmode)} PGCONNECT_TIMEOUT=15`, `pgname=${shq(db.name)} pghost=${shq(db.host)}`] : []),
    `mkdir -p "$dir" && chmod 0700 "$dir" || fail "cannot make $dir"`,
    // An image that is not on the host: compose's `up` fails and says so; nothing to guard.
    `want=$(docker image inspect --format '{{.Id}}' ${shq(o.image)} 2>/dev/null) || { say "image ${o.image} is not on this host"; exit 0; }`,
    `had=$(cat "$dir"/${o.container}.image 2>/dev/null || true)`,
    `if [ "$had" = "$want" ]; then printf '%s\\n' "$want" > "$dir"/${o.container}.image; exit 0; fi`,
    `stamp=$(date -u +%Y%m%dT%H%M%SZ)`,
    ...noRecord,
    // A rollback of the switch the snapshot was taken for, soon after it (the agent rolls a failed switch
    // back within its health wait and lockout window): a rollback days later (meshfleet rollback to an
    // older generation) keeps the database as it is, with what registered since.
    `if grep -Eq '"op": *"rollback"' ${shq(journal)} 2>/dev/null && [ "$(cat "$dir"/${o.container}.snapshot.from 2>/dev/null)" = "$want" ] && [ "$(cat "$dir"/${o.container}.snapshot.to 2>/dev/null)" = "$had" ]; then`,
    `  age=$(( $(date +%s) - $(stat -c %Y "$dir"/${o.container}.snapshot.to) ))`,
    `  if [ "$age" -gt ${RESTORE_WINDOW_S} ]; then`,
    `    rm -f "$dir"/${o.container}.snapshot.from "$dir"/${o.container}.snapshot.to`,
    `    printf '%s\\n' "$want" > "$dir"/${o.container}.image`,
    `    say "rollback from image $had to $want, $age s after that switch: the database is kept as it is (the copy from before the switch stays in $dir)"`,
    `    exit 0`,
    `  fi`,
    ...restore,
    `  rm -f "$dir"/${o.container}.snapshot.from "$dir"/${o.container}.snapshot.to`,
    `  printf '%s\\n' "$want" > "$dir"/${o.container}.image`,
    `  say "rollback from image $had to $want: $what"`,
    `  exit 0`,
    `fi`,
    `rm -f "$dir"/${o.container}.snapshot.from "$dir"/${o.container}.snapshot.to`,
    ...take.map((l) => l.slice(2)),
    `printf '%s\\n' "$had" > "$dir"/${o.container}.snapshot.from && printf '%s\\n' "$want" > "$dir"/${o.container}.snapshot.to || fail "could not record the snapshot"`,
    `printf '%s\\n' "$want" > "$dir"/${o.container}.image`,
    `say "image $had -> $want: $what (headscale stopped)"`,
    "",
  ].join("\n");
}
