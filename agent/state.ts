/**
 * The agent's own state under /var/lib/meshfleet: numbered generations, the
 * `current` symlink, the step journal, the confirm deadline, backups of
 * files it took over, and the lock. Every write is atomic and fsynced, so a
 * crash leaves either the old or the new state file, never half of one.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { BUNDLE_FORMAT, sealBundle, type Bundle } from "../contract/bundle.ts";
import { STATE_DIR } from "../contract/constants.ts";
import type { Host } from "./host.ts";
import { desiredFiles, type DesiredFile } from "./desired.ts";
import { fromStored, rulesetOf } from "./legacy.ts";

export { STATE_DIR };

export interface ManifestEntry {
  path: string;
  kind: DesiredFile["kind"];
  sha256: string;
  mode: string;
  owner: string;
  group: string;
  secret: boolean;
}

export interface GenerationMeta {
  generation: number;
  host: string;
  hash: string;
  createdAt: string;
  /** Filled once known: the switch that made it current succeeded, or failed and was rolled back. */
  status: "staged" | "active" | "failed";
  error?: string;
  /** Its secret files' contents were deleted (gc): it can no longer be rolled back to. */
  secretsPruned?: boolean;
}

export interface Generation {
  n: number;
  bundle: Bundle;
  meta: GenerationMeta;
  /** `nft -s list table inet meshfleet` right after this generation was applied, for drift checks. */
  nftLive: string | null;
}

export interface Journal {
  op: "switch" | "rollback";
  from: number;
  to: number;
  startedAt: string;
  done: string[];
}

export interface Pending {
  generation: number;
  previous: number;
  deadline: number;
  guard: { kind: "systemd"; unit: string } | { kind: "detached"; pid: number };
}

export interface LastSwitch {
  success: boolean;
  timestamp: number;
  generation: number;
  error?: string;
}

/** Generation 0: nothing owned. Activating it releases everything. */
export function emptyBundle(host: string): Bundle {
  return sealBundle({
    format: BUNDLE_FORMAT,
    host,
    files: [],
    sysctl: {},
    units: [],
    firewall: null,
    tailscale: null,
    probes: [],
    metrics: { enable: false, textfileDir: "" },
    bestEffort: [],
  });
}

export class State {
  constructor(readonly host: Host) {}

  get dir(): string {
    return this.host.p(STATE_DIR);
  }
  file(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  private writeJson(rel: string, value: unknown): void {
    fs.mkdirSync(this.dir, { recursive: true });
    this.host.writeFileAtomic(path.join(STATE_DIR, rel), JSON.stringify(value, null, 2) + "\n", 0o600);
  }
  private readJson<T>(rel: string): T | null {
    try {
      return JSON.parse(fs.readFileSync(this.file(rel), "utf8")) as T;
    } catch {
      return null;
    }
  }

  generationNumbers(): number[] {
    let names: string[] = [];
    try {
      names = fs.readdirSync(this.file("generations"));
    } catch {
      return [];
    }
    return names.filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  }

  currentNumber(): number {
    try {
      const t = fs.readlinkSync(this.file("current"));
      const n = Number(path.basename(t));
      return Number.isInteger(n) ? n : 0;
    } catch {
      return 0;
    }
  }

  load(n: number, hostName = "unknown"): Generation {
    if (n === 0) {
      return { n: 0, bundle: emptyBundle(hostName), meta: { generation: 0, host: hostName, hash: "", createdAt: "", status: "active" }, nftLive: null };
    }
    const dir = this.file("generations", String(n));
    const bundle = fromStored(JSON.parse(fs.readFileSync(path.join(dir, "bundle.json"), "utf8")));
    const meta = JSON.parse(fs.readFileSync(path.join(dir, "meta.json"), "utf8")) as GenerationMeta;
    let nftLive: string | null = null;
    try {
      nftLive = fs.readFileSync(path.join(dir, "nftables.live"), "utf8");
    } catch {
      nftLive = null;
    }
    return { n, bundle, meta, nftLive };
  }

  /**
   * Write generation N's directory under a temp name and rename it into
   * place: bundle, manifest (every owned file's sha256/mode/owner), nft
   * ruleset, sysctls, units, tailscale settings.
   */
  stage(n: number, bundle: Bundle): Generation {
    const gens = this.file("generations");
    fs.mkdirSync(gens, { recursive: true });
    const tmp = path.join(gens, `.staging-${n}`);
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(path.join(tmp, "units"), { recursive: true, mode: 0o700 });
    const put = (rel: string, text: string) => {
      const fd = fs.openSync(path.join(tmp, rel), "w", 0o600);
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
      fs.closeSync(fd);
    };
    const meta: GenerationMeta = { generation: n, host: bundle.host, hash: bundle.hash, createdAt: new Date().toISOString(), status: "staged" };
    put("bundle.json", JSON.stringify(bundle) + "\n");
    put("meta.json", JSON.stringify(meta, null, 2) + "\n");
    put("manifest.json", JSON.stringify(manifestOf(bundle), null, 2) + "\n");
    const ruleset = rulesetOf(bundle);
    if (ruleset !== null) put("nftables.nft", ruleset);
    put("sysctl.json", JSON.stringify(bundle.sysctl, null, 2) + "\n");
    for (const u of bundle.units) put(path.join("units", u.name), u.content);
    put("tailscale.json", JSON.stringify(bundle.tailscale, null, 2) + "\n");
    fs.renameSync(tmp, path.join(gens, String(n)));
    return { n, bundle, meta, nftLive: null };
  }

  setMeta(n: number, patch: Partial<GenerationMeta>): void {
    if (n === 0) return;
    const g = this.load(n);
    this.writeJson(path.join("generations", String(n), "meta.json"), { ...g.meta, ...patch });
  }

  recordNftLive(n: number, listing: string | null): void {
    if (n === 0) return;
    const rel = path.join(STATE_DIR, "generations", String(n), "nftables.live");
    if (listing === null) this.host.removeFile(rel);
    else this.host.writeFileAtomic(rel, listing, 0o600);
  }

  /** Point `current` at generation N: a new symlink renamed over the old one. */
  setCurrent(n: number): void {
    const tmp = this.file(".current.tmp");
    fs.rmSync(tmp, { force: true });
    if (n === 0) {
      fs.rmSync(this.file("current"), { force: true });
      return;
    }
    fs.symlinkSync(path.join("generations", String(n)), tmp);
    fs.renameSync(tmp, this.file("current"));
    const fd = fs.openSync(this.dir, "r");
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }

  /** Drop generation N's secret contents (bundle.json keeps their sha256); true when something was pruned. */
  pruneSecrets(n: number): boolean {
    const g = this.load(n);
    if (g.meta.secretsPruned || !g.bundle.files.some((f) => f.secret)) return false;
    // The stored JSON as it is (an older agent's format too), only secret contents emptied.
    const rel = path.join("generations", String(n), "bundle.json");
    const raw = JSON.parse(fs.readFileSync(this.file(rel), "utf8")) as { files: { secret: boolean; content: string }[] };
    this.writeJson(rel, { ...raw, files: raw.files.map((f) => (f.secret ? { ...f, content: "" } : f)) });
    this.setMeta(n, { secretsPruned: true });
    return true;
  }

  removeGeneration(n: number): void {
    fs.rmSync(this.file("generations", String(n)), { recursive: true, force: true });
  }
  removeStaging(): void {
    try {
      for (const name of fs.readdirSync(this.file("generations")))
        if (name.startsWith(".staging-")) fs.rmSync(this.file("generations", name), { recursive: true, force: true });
    } catch {
      // no generations yet
    }
  }

  journal(): Journal | null {
    return this.readJson<Journal>("journal.json");
  }
  writeJournal(j: Journal): void {
    this.writeJson("journal.json", j);
  }
  clearJournal(): void {
    this.host.removeFile(path.join(STATE_DIR, "journal.json"));
  }

  pending(): Pending | null {
    return this.readJson<Pending>("pending.json");
  }
  writePending(p: Pending): void {
    this.writeJson("pending.json", p);
  }
  clearPending(): void {
    this.host.removeFile(path.join(STATE_DIR, "pending.json"));
  }

  lastSwitch(): LastSwitch | null {
    return this.readJson<LastSwitch>("last-switch.json");
  }
  writeLastSwitch(s: LastSwitch): void {
    this.writeJson("last-switch.json", s);
  }

  // Backups of what was on the host before the agent took a path or a sysctl key over.
  private backupRel(hostPath: string): string {
    return path.join("backups", Buffer.from(hostPath).toString("hex") + ".json");
  }
  backupFile(hostPath: string): void {
    const rel = this.backupRel(hostPath);
    if (fs.existsSync(this.file(rel))) return;
    const st = this.host.stat(hostPath);
    if (!st) return;
    // A link is kept as a link: reading through it would copy (and later restore) whatever it points at.
    if (st.type === "symlink") {
      this.writeJson(rel, { path: hostPath, symlink: fs.readlinkSync(this.host.p(hostPath)) });
      return;
    }
    if (st.type !== "file") return;
    const fd = fs.openSync(this.host.p(hostPath), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    let raw: Buffer;
    try {
      raw = fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.writeJson(rel, { path: hostPath, mode: st.mode, uid: st.uid, gid: st.gid, content: raw.toString("base64") });
  }
  hasBackup(hostPath: string): boolean {
    return fs.existsSync(this.file(this.backupRel(hostPath)));
  }
  /** Put the pre-existing file back; false when there was none to restore. */
  restoreFile(hostPath: string): boolean {
    const b = this.readJson<{ mode: number; uid: number; gid: number; content: string; symlink?: string }>(this.backupRel(hostPath));
    if (!b) return false;
    if (b.symlink !== undefined) this.host.writeSymlink(hostPath, b.symlink);
    else this.host.writeFileAtomic(hostPath, Buffer.from(b.content, "base64"), b.mode, b.uid, b.gid);
    this.host.removeFile(path.join(STATE_DIR, this.backupRel(hostPath)));
    return true;
  }
  sysctlBackups(): Record<string, string> {
    return this.readJson<Record<string, string>>("backups/sysctl.json") ?? {};
  }
  writeSysctlBackups(b: Record<string, string>): void {
    fs.mkdirSync(this.file("backups"), { recursive: true });
    this.writeJson("backups/sysctl.json", b);
  }
}

export function manifestOf(bundle: Bundle): ManifestEntry[] {
  return desiredFiles(bundle).map((f) => ({
    path: f.path,
    kind: f.kind,
    sha256: f.sha256,
    mode: f.mode,
    owner: f.owner,
    group: f.group,
    secret: f.secret,
  }));
}
