/**
 * `meshfleet backup --stack S [--out DIR] [--now]`: pull the newest snapshot
 * the coordinator's headscale.backup timer took (modules/headscale-backup.ts)
 * to this machine, over the deploy's SSH (OpenSSH, StrictHostKeyChecking=yes
 * against the fleet's pins: cli/fleet-hosts.ts and provider/ssh.ts).
 *
 * With --now it first starts headscale-backup.service (a oneshot: `systemctl
 * start` returns when the snapshot is complete). The host sends each file's
 * size and sha256 with the files; the copy is written as `.partial-<name>`
 * (0700 folder, 0600 files), its hashes compared, SQLite's integrity_check
 * run on it when sqlite3 is installed here, and only then renamed to
 * `<out>/<name>`. A snapshot already pulled (same hashes) is not written
 * twice. It prints where the snapshot went, its age and its size; never the
 * files' contents.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { MeshfleetError } from "../../core/diagnostics.ts";
import type { HostSystem } from "../../core/types.ts";
import { BACKUP_SCRIPT } from "../../modules/headscale-backup.ts";
import { headscaleDatabaseOf, HS, type HeadscaleDatabase } from "../../modules/headscale.ts";
import { shq } from "../../provider/quote.ts";
import { EXIT, flagHelp, parseArgs, UsageError, type Flag } from "../args.ts";
import type { Command } from "../command.ts";
import { age, connectionTo, headscaleCliOf, newSession, openStackFleet, sections, tryRun, type StackAccess } from "../fleet-hosts.ts";

const flags: Flag[] = [
  { name: "stack", value: true, help: "the stack (required): its config is stacks/Pulumi.<stack>.yaml, its fleet meshfleet:hostsDir or hosts/<stack>" },
  { name: "config-file", value: true, help: "read the stack's config from this file instead of stacks/Pulumi.<stack>.yaml" },
  { name: "out", value: true, help: "the folder the snapshot goes into (default: $XDG_DATA_HOME/meshfleet/backups/<stack>, else ~/.local/share/meshfleet/backups/<stack>)" },
  { name: "now", help: "take a snapshot first (start headscale-backup.service on the coordinator and wait for it)" },
  { name: "json", help: "machine-readable result on stdout" },
];

/** What the CLI needs to know of the coordinator's headscale, read from the fleet as rendered (the same files the deploy ships). */
export interface Coordinator {
  host: HostSystem;
  /** The host file that sets it up (for the fixes errors name). */
  file: string;
  /** headscale.backup.dir, or null when headscale.backup is off. */
  backupDir: string | null;
  database: HeadscaleDatabase;
  binary: string;
  config: string;
}

/** The `dir='…'` line of the rendered backup script (modules/headscale-backup.ts backupScript). */
export function backupDirOf(script: string): string | null {
  const m = /^dir='((?:[^']|'\\'')*)'$/m.exec(script);
  return m ? m[1]!.replaceAll(`'\\''`, "'") : null;
}

/** The fleet's coordinator, as `backup` and `restore` need it; errors name the host file and the fix. */
export function coordinatorOf(a: StackAccess, cmd: "backup" | "restore" | "upgrade"): Coordinator {
  const name = a.fleet.coordinator.host;
  const h = a.fleet.hosts[name];
  if (!h) throw new MeshfleetError(`${cmd}: the fleet's coordinator.host is ${name}, which is not a host of ${a.hostsDir}. Fix: set coordinator.host in fleet.yaml to the host that runs headscale`);
  if (h.runtime === "docker") {
    throw new MeshfleetError(`${cmd}: ${h.file}: runtime: docker keeps headscale's database in the headscale-data volume, which meshfleet ${cmd} does not reach. Fix: set runtime: systemd on ${name}, or back up and restore the volume yourself (docs/backup.md)`);
  }
  const cfgFile = h.files.find((f) => f.path === HS.config);
  if (!h.services.headscale || !cfgFile) throw new MeshfleetError(`${cmd}: ${h.file}: headscale is not enabled on the coordinator ${name}. Fix: set headscale.enable: true there`);
  const database = headscaleDatabaseOf(cfgFile.content, HS.pgpass);
  const script = h.files.find((f) => f.path === BACKUP_SCRIPT);
  const cli = headscaleCliOf(a);
  return {
    host: h,
    file: h.file,
    backupDir: script ? backupDirOf(script.content) : null,
    database,
    binary: cli?.binary ?? "headscale",
    config: HS.config,
  };
}

/** 1536 → "1.5 KiB" */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v >= 10 ? Math.round(v) : Math.round(v * 10) / 10} ${units[i]}`;
}

/** A snapshot folder's name (`20261130T181500.123456789Z`, the backup script's stamp) as a time. */
export function stampTime(name: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d+))?Z$/.exec(name);
  if (!m) return null;
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${(m[7] ?? "0").padEnd(3, "0").slice(0, 3)}Z`);
}

export interface SqliteFacts {
  /** "ok", SQLite's first complaint, or "not checked" when sqlite3 is not installed here. */
  integrity: string;
  users: number | null;
  nodes: number | null;
}

/** integrity_check and headscale's user and node counts of a SQLite file, with the sqlite3 CLI when it is installed here (read-only). */
export function localSqliteFacts(file: string): SqliteFacts {
  // immutable=1 (and read-only): a snapshot in WAL mode opened with -readonly leaves -wal/-shm files beside it; this reads the file as it is.
  const uri = `file:${path.resolve(file).replace(/[%?#]/g, (ch) => `%${ch.charCodeAt(0).toString(16)}`)}?mode=ro&immutable=1`;
  const q = (sql: string) => spawnSync("sqlite3", ["-batch", uri, sql], { encoding: "utf8", timeout: 120_000 });
  const ic = q("PRAGMA integrity_check");
  if (ic.error && (ic.error as NodeJS.ErrnoException).code === "ENOENT") return { integrity: "not checked", users: null, nodes: null };
  const integrity = ic.status === 0 && ic.stdout.trim() === "ok" ? "ok" : (ic.stdout.trim() || ic.stderr.trim()).split("\n")[0]!.slice(0, 200) || `sqlite3 exit ${ic.status}`;
  const count = (table: string) => {
    const r = q(`SELECT count(*) FROM ${table}`);
    return r.status === 0 && /^\d+$/.test(r.stdout.trim()) ? Number(r.stdout.trim()) : null;
  };
  return integrity === "ok" ? { integrity, users: count("users"), nodes: count("nodes") } : { integrity, users: null, nodes: null };
}

export function defaultOutDir(stack: string, env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(homedir(), ".local", "share");
  return path.join(base, "meshfleet", "backups", stack);
}

export interface PulledFile {
  name: string;
  bytes: number;
  sha256: string;
}

export interface BackupResult {
  host: string;
  snapshot: string;
  path: string;
  takenAt: string | null;
  ageSeconds: number | null;
  bytes: number;
  files: PulledFile[];
  integrity: string;
  users: number | null;
  nodes: number | null;
  alreadyHere: boolean;
  took: boolean;
  seconds: number;
}

/** The script that lists the newest snapshot's files (size, sha256, name) and sends each as base64 (ssh output is text). */
export function pullScript(dir: string): string {
  return [
    "set -eu",
    `dir=${shq(dir)}`,
    `[ -d "$dir" ] || { echo "no folder $dir: the backup timer has not run yet" >&2; exit 3; }`,
    `newest=$(ls -1d "$dir"/2*Z 2>/dev/null | sort | tail -n 1)`,
    `[ -n "$newest" ] || { echo "no snapshot in $dir yet" >&2; exit 3; }`,
    `echo @@mf:name@@; basename "$newest"`,
    `echo @@mf:now@@; date -u +%s`,
    `cd "$newest"`,
    `echo @@mf:files@@; for f in *; do printf '%s %s %s\\n' "$(stat -c %s "$f")" "$(sha256sum < "$f" | cut -d' ' -f1)" "$f"; done`,
    `i=0; for f in *; do echo "@@mf:file-$i@@"; base64 < "$f" | tr -d '\\n'; echo; i=$((i + 1)); done`,
  ].join("\n");
}

/** Check what the host sent and write it as `<out>/<name>` (0700/0600) through a `.partial-` folder. */
export function writeSnapshot(out: string, sent: Record<string, string>): { dir: string; files: PulledFile[]; alreadyHere: boolean } {
  const name = sent.name ?? "";
  if (!/^2\d{7}T\d{6}(\.\d+)?Z$/.test(name)) throw new MeshfleetError(`backup: the coordinator named its newest snapshot ${JSON.stringify(name.slice(0, 60))}, not a UTC time; nothing was written`);
  const listed = (sent.files ?? "").split("\n").filter(Boolean).map((l) => {
    const m = /^(\d+) ([0-9a-f]{64}) ([A-Za-z0-9._-]+)$/.exec(l);
    if (!m) throw new MeshfleetError(`backup: cannot read the coordinator's file list (${JSON.stringify(l.slice(0, 80))}); nothing was written`);
    return { bytes: Number(m[1]), sha256: m[2]!, name: m[3]! };
  });
  if (!listed.some((f) => f.name === "db.sqlite" || f.name === "db.pgdump")) throw new MeshfleetError(`backup: snapshot ${name} holds no database (${listed.map((f) => f.name).join(", ") || "no files"}); nothing was written`);
  const data = listed.map((f, i) => {
    const buf = Buffer.from(sent[`file-${i}`] ?? "", "base64");
    const sha = createHash("sha256").update(buf).digest("hex");
    if (buf.length !== f.bytes || sha !== f.sha256) {
      throw new MeshfleetError(`backup: ${name}/${f.name} arrived with ${buf.length} bytes and sha256 ${sha.slice(0, 16)}…, the coordinator sent ${f.bytes} bytes, ${f.sha256.slice(0, 16)}…; nothing was written. Try again`);
    }
    return buf;
  });
  mkdirSync(out, { recursive: true, mode: 0o700 });
  chmodSync(out, 0o700);
  const dest = path.join(out, name);
  if (existsSync(dest)) {
    const same = listed.every((f) => existsSync(path.join(dest, f.name)) && createHash("sha256").update(readFileSync(path.join(dest, f.name))).digest("hex") === f.sha256);
    if (same && readdirSync(dest).length === listed.length) return { dir: dest, files: listed, alreadyHere: true };
    throw new MeshfleetError(`backup: ${dest} exists and differs from the coordinator's snapshot ${name}; nothing was written. Fix: move it away, or pass another --out`);
  }
  const tmp = path.join(out, `.partial-${name}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { mode: 0o700 });
  listed.forEach((f, i) => writeFileSync(path.join(tmp, f.name), data[i]!, { mode: 0o600 }));
  renameSync(tmp, dest);
  return { dir: dest, files: listed, alreadyHere: false };
}

export async function pullBackup(a: StackAccess, o: { out: string; now: boolean; say: (l: string) => void }): Promise<BackupResult> {
  const t0 = Date.now();
  const c = coordinatorOf(a, "backup");
  if (!c.backupDir) {
    throw new MeshfleetError(`backup: ${c.file}: headscale.backup is off on the coordinator ${c.host.name}, so it keeps no snapshots to pull. Fix: set headscale.backup.enable: true there and run \`meshfleet up ${a.stackArgs}\`, then \`meshfleet backup ${a.stackArgs} --now\``);
  }
  const session = newSession();
  try {
    const conn = connectionTo(a, c.host, { connectTimeoutSeconds: 10, dialAttempts: 3 });
    if (o.now) {
      o.say(`${c.host.name}: taking a snapshot (systemctl start headscale-backup.service)`);
      const r = await tryRun(session, conn, "systemctl start headscale-backup.service || { rc=$?; journalctl -u headscale-backup.service -n 15 --no-pager -o cat 2>/dev/null; exit $rc; }", { what: "backup: take a snapshot", timeoutMs: 900_000 });
      if (r.error || r.code !== 0) {
        const why = r.error ?? `exit ${r.code}: ${(r.stdout + r.stderr).trim().split("\n").slice(-6).join(" / ").slice(0, 600)}`;
        throw new MeshfleetError(`backup: the snapshot on ${c.host.name} failed (${why}). ${/not (be )?found|not loaded/i.test(r.stdout + r.stderr) ? `Its unit is not installed: run \`meshfleet up ${a.stackArgs}\` after setting headscale.backup.enable: true in ${c.file}` : `See \`journalctl -u headscale-backup.service\` on ${c.host.name}`}`);
      }
    }
    const r = await tryRun(session, conn, pullScript(c.backupDir), { what: "backup: pull the newest snapshot", timeoutMs: 900_000 });
    if (r.error) throw new MeshfleetError(`backup: ${r.error}`);
    if (r.code === 3) throw new MeshfleetError(`backup: ${c.host.name}: ${r.stderr.trim()}. Fix: \`meshfleet backup ${a.stackArgs} --now\` takes one`);
    if (r.code !== 0) throw new MeshfleetError(`backup: reading the snapshots on ${c.host.name} failed (exit ${r.code}): ${r.stderr.trim().slice(0, 300)}`);
    const sent = sections(r.stdout);
    const w = writeSnapshot(o.out, sent);
    const db = w.files.find((f) => f.name === "db.sqlite");
    const facts: SqliteFacts = db ? localSqliteFacts(path.join(w.dir, db.name)) : { integrity: "not checked (pg_dump file)", users: null, nodes: null };
    if (facts.integrity !== "ok" && !facts.integrity.startsWith("not checked")) {
      if (!w.alreadyHere) rmSync(w.dir, { recursive: true, force: true });
      throw new MeshfleetError(`backup: the snapshot ${sent.name} from ${c.host.name} fails SQLite's integrity_check here (${facts.integrity}); it was not kept. Take a new one with --now`);
    }
    const taken = stampTime(sent.name!);
    const hostNow = Number(sent.now) * 1000;
    const total = w.files.reduce((n, f) => n + f.bytes, 0);
    return {
      host: c.host.name,
      snapshot: sent.name!,
      path: w.dir,
      takenAt: taken?.toISOString() ?? null,
      ageSeconds: taken && hostNow ? Math.max(0, Math.round((hostNow - taken.getTime()) / 1000)) : null,
      bytes: total,
      files: w.files,
      integrity: facts.integrity,
      users: facts.users,
      nodes: facts.nodes,
      alreadyHere: w.alreadyHere,
      took: o.now,
      seconds: Math.round((Date.now() - t0) / 100) / 10,
    };
  } finally {
    session.close();
  }
}

export function backupLine(r: BackupResult): string {
  const what = r.users !== null ? `, ${r.users} user(s), ${r.nodes ?? "?"} node(s)` : "";
  return `${r.alreadyHere ? "already here" : "backup"}: ${r.path} (from ${r.host}, taken ${r.ageSeconds !== null ? `${age(r.ageSeconds * 1000)} ago` : "at an unknown time"}, ${bytes(r.bytes)} in ${r.files.length} files, sha256 matches, integrity ${r.integrity}${what}; ${r.seconds}s)`;
}

export const command: Command = {
  name: "backup",
  summary: "pull the newest snapshot of headscale's database from the coordinator (--now takes one first)",
  usage: `usage: meshfleet backup --stack S [--out DIR] [--now] [--json]

Copies the newest snapshot the coordinator's headscale.backup timer took
(the database, config.yaml and policy.hujson) to this machine, over SSH with
the deploy's pinned host keys. With --now it takes one first. The files'
sizes and sha256 come from the host and are checked here; a SQLite snapshot
is also checked with integrity_check when sqlite3 is installed here. The
copy lands in DIR/<time>/ (folder 0700, files 0600), and a snapshot already
pulled is not written twice. It prints where it went, its age and its size.

Needs headscale.backup.enable: true on the coordinator (and a \`meshfleet
up\` since). Put a snapshot back with \`meshfleet restore --stack S DIR\`.
Exit 0 pulled (or already here), 1 failed, 2 a command line it cannot take.

${flagHelp(flags)}`,
  flags,
  async run(argv) {
    const { opts } = parseArgs(argv, flags, { positionals: [], hint: "the folder goes with --out" });
    if (typeof opts.stack !== "string") throw new UsageError("which stack? Add --stack S");
    const json = !!opts.json;
    const say = (l: string) => (json ? process.stderr : process.stdout).write(l + "\n");
    const a = await openStackFleet({ stack: opts.stack, configFile: typeof opts["config-file"] === "string" ? opts["config-file"] : undefined });
    const out = path.resolve(typeof opts.out === "string" ? opts.out : defaultOutDir(opts.stack));
    if (existsSync(out) && !statSync(out).isDirectory()) throw new UsageError(`--out ${opts.out}: a file, expected a folder`);
    const r = await pullBackup(a, { out, now: !!opts.now, say });
    if (json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
    else say(backupLine(r));
    return EXIT.ok;
  },
};
