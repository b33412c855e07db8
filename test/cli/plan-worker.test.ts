/**
 * `meshfleet plan` evaluates a large fleet's working tree on a worker thread
 * while the main thread reads and evaluates the base (cli/parallel-eval.ts
 * `evaluateOnWorker`). Held to the one-thread path (MESHFLEET_THREADS=1) on
 * a temp repository, with the worker let in at any size: the same exit
 * code, Markdown, JSON and errors, byte for byte, with no change, with a
 * change to the policy and a host, and with a working tree that does not
 * evaluate. Each run is held to the path it should take (plan counts where
 * it evaluated the working tree, and the bases it read): a fleet with sites
 * is declined before the worker starts, and a folder with a TypeScript host
 * never reaches it.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { baseReads, command, headReads } from "../../cli/commands/plan.ts";
import { evaluateOnWorker } from "../../cli/parallel-eval.ts";
import { evaluateFleet } from "../../core/eval.ts";
import { REGISTRY } from "../../modules/index.ts";

let repo: string;
const minHosts = headReads.minHosts;
const at = (...p: string[]) => path.join(repo, "hosts", ...p);
const git = (...args: string[]) => execFileSync("git", args, { cwd: repo, encoding: "utf8", env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null", GIT_CONFIG_NOSYSTEM: "1" } }).trim();
const commit = (msg: string) => {
  git("add", "-A");
  git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", msg);
};
const edit = (file: string, from: string, to: string) => {
  const text = readFileSync(at(file), "utf8");
  expect(text).toContain(from);
  writeFileSync(at(file), text.replace(from, to));
};

type Run = { code: number | string; out: string; err: string };

/** One plan on `threads` threads: its exit code (or the message it throws), stdout and stderr. */
async function plan(stack: string, threads: 1 | 2, json: boolean): Promise<Run> {
  let out = "";
  let err = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void (err += a.join(" ") + "\n"));
  const was = process.env.MESHFLEET_THREADS;
  process.env.MESHFLEET_THREADS = String(threads);
  try {
    const code = await command.run(["--base", "HEAD", "--hosts-dir", at(stack), "--stack", stack, ...(json ? ["--json"] : [])]).catch((x: Error) => `throws: ${x.message}`);
    // Each run mounts the base under a temporary folder of its own.
    const norm = (s: string) => s.replace(/meshfleet-plan-[A-Za-z0-9]+/g, "meshfleet-plan-TMP");
    return { code: typeof code === "string" ? norm(code) : code, out: norm(out), err: norm(err) };
  } finally {
    if (was === undefined) delete process.env.MESHFLEET_THREADS;
    else process.env.MESHFLEET_THREADS = was;
    o.mockRestore();
    e.mockRestore();
  }
}

/** Hosts the worker did not send in the last `same` (the base's, its digest the same), per run. */
let reused: number[] = [];

/** Both paths on `stack`, Markdown and JSON: the same runs; the two-thread run took `path`. */
async function same(stack: string, path: "worker" | "here"): Promise<Run[]> {
  const runs: Run[] = [];
  reused = [];
  for (const json of [false, true]) {
    const before = { ...headReads };
    const bases = baseReads.memory + baseReads.archive;
    const two = await plan(stack, 2, json);
    expect({ worker: headReads.worker - before.worker, here: headReads.here - before.here }).toEqual(path === "worker" ? { worker: 1, here: 0 } : { worker: 0, here: 1 });
    // The base is read once, on either path.
    expect(baseReads.memory + baseReads.archive - bases).toBe(1);
    reused.push(headReads.reused - before.reused);
    const one = await plan(stack, 1, json);
    expect(two).toEqual(one);
    runs.push(two);
  }
  return runs;
}

beforeAll(() => {
  headReads.minHosts = 1;
  repo = mkdtempSync(path.join(tmpdir(), "meshfleet-plan-worker-"));
  for (const s of ["home", "core", "home-site", "office"]) cpSync(path.resolve("hosts", s), at(s), { recursive: true });
  git("init", "-q", "-b", "main");
  commit("fleets");
}, 60_000);
afterAll(() => {
  headReads.minHosts = minHosts;
  rmSync(repo, { recursive: true, force: true });
});

describe("plan's working tree on a worker thread, held to one thread", () => {
  it("no change: the same output, the working tree evaluated on the worker", async () => {
    const [md, json] = await same("home", "worker");
    expect(md.code).toBe(0);
    expect(md.err).toBe("");
    expect(JSON.parse(json.out).empty).toBe(true);
    // Every host is the base's: the worker sent none.
    const hosts = Object.keys((await evaluateFleet(REGISTRY, at("home"), "home")).fleet!.hosts).length;
    expect(reused).toEqual([hosts, hosts]);
  }, 120_000);

  it("a change to the policy and to a host: the same output, and the change shows", async () => {
    edit("home/fleet.yaml", 'dst: ["tag:server:*"]', 'dst: ["tag:server:9100"]');
    edit("home/lxc-tailscale.yaml", "routes: [192.168.8.0/24, 192.168.20.0/24]", "routes: [192.168.8.0/24]");
    const [md, json] = await same("home", "worker");
    expect(md.code).toBe(0);
    expect(md.out).toContain("192.168.20.0/24");
    expect(md.out).toContain("lxc-tailscale");
    expect(JSON.parse(json.out).policyChanged).toBe(true);
    // The changed hosts came from the worker, the others from the base.
    const hosts = Object.keys((await evaluateFleet(REGISTRY, at("home"), "home")).fleet!.hosts).length;
    expect(reused[0]).toBeGreaterThan(0);
    expect(reused[0]).toBeLessThan(hosts);
    expect(reused[1]).toBe(reused[0]);
    commit("the change");
  }, 120_000);

  it("a working tree that does not evaluate: the same errors and exit code", async () => {
    edit("home/lxc-tailscale.yaml", "routes: [192.168.8.0/24]", "routes: [192.168.8.0/33]");
    const [md] = await same("home", "worker");
    expect(md.code).toBe(1);
    expect(md.err).toContain("192.168.8.0/33");
    expect(md.err).toContain("cannot plan: the fleet does not evaluate");
    git("checkout", "-q", "--", ".");
  }, 120_000);

  it("a fleet with sites: declined before the worker starts, evaluated here with the base's sibling folders, read once", async () => {
    edit("core/fleet.yaml", '"192.168.8.10:445"]', '"192.168.8.10:445", "192.168.8.10:22"]');
    const [md] = await same("core", "here");
    expect(md.code).toBe(0);
    git("checkout", "-q", "--", ".");
  }, 120_000);

  it("the worker's FleetSystem is evaluateFleet's, field for field, warnings and diagnostics included", async () => {
    // A warning (exempt tags with no expiry) in the fleet's warnings and the diagnostics.
    writeFileSync(at("home/fleet.yaml"), readFileSync(at("home/fleet.yaml"), "utf8") + 'nodeExpiry:\n  after: "0"\n  exemptTags: [tag:server]\n');
    for (const [dir, stack] of [[at("home"), "home"], [path.resolve("hosts/lab"), "lab"]] as const) {
      const job = await evaluateOnWorker(dir, stack, { threads: 2, minHosts: 1 });
      if (typeof job === "string") throw new Error(`no worker for ${dir}: ${job}`);
      const got = await job.result;
      expect(got, job.why).toBeDefined();
      const want = await evaluateFleet(REGISTRY, dir, stack);
      // evaluateFleet's result is plain data (no class instance, Map or function the copy would lose), and the copy is it.
      expect(want).toStrictEqual(JSON.parse(JSON.stringify(want)));
      expect(got).toStrictEqual(JSON.parse(JSON.stringify(want)));
      expect(got).toEqual(want);
      if (stack === "home") expect(want.fleet?.warnings.map((w) => w.path)).toEqual(["nodeExpiry.exemptTags"]);
    }
    git("checkout", "-q", "--", ".");
  }, 120_000);

  it("with the base's hosts: only the hosts that differ are sent, and the FleetSystem is still evaluateFleet's", async () => {
    // A warning on the coordinator's HostSystem, naming fleet.yaml (in the base, under the base's folder).
    writeFileSync(at("home/fleet.yaml"), readFileSync(at("home/fleet.yaml"), "utf8") + 'nodeExpiry:\n  after: "0"\n  exemptTags: [tag:server]\n');
    // The base: the same fleet in a folder of another name (every file differs), the laptop not accepting routes.
    const base = at("home-base");
    cpSync(at("home"), base, { recursive: true });
    try {
      const laptop = readFileSync(path.join(base, "laptop.yaml"), "utf8");
      expect(laptop).toContain("acceptRoutes: true");
      writeFileSync(path.join(base, "laptop.yaml"), laptop.replace("acceptRoutes: true", "acceptRoutes: false"));
      const want = await evaluateFleet(REGISTRY, at("home"), "home");
      const names = Object.keys(want.fleet!.hosts);
      expect(want.fleet!.warnings.map((w) => w.path)).toEqual(["nodeExpiry.exemptTags"]);
      const baseFleet = (await evaluateFleet(REGISTRY, base, "home")).fleet!;
      const job = await evaluateOnWorker(at("home"), "home", { threads: 2, minHosts: 1, withBase: true });
      if (typeof job === "string") throw new Error(`no worker: ${job}`);
      job.base(baseFleet.hosts);
      expect(() => job.base(baseFleet.hosts), "base() twice").toThrow(/once/);
      const got = await job.result;
      expect(got, job.why).toBeDefined();
      // The hosts the change leaves alone (but for their file and warnings: the base's folder has another name) are the base's objects.
      const alike = names.filter((n) => isDeepStrictEqual({ ...want.fleet!.hosts[n], file: "", warnings: [] }, { ...baseFleet.hosts[n], file: "", warnings: [] }));
      expect(alike).not.toContain("laptop");
      // The coordinator, with the fleet's warning: taken from the base, with its own warnings.
      expect(alike).toContain(want.fleet!.coordinator.host);
      expect(want.fleet!.hosts[want.fleet!.coordinator.host].warnings).toHaveLength(1);
      expect(job.reused).toBe(alike.length);
      // Its own file and warnings, the rest the base's: evaluateFleet's result, field for field.
      expect(got).toStrictEqual(JSON.parse(JSON.stringify(want)));
      expect(Object.keys(got!.fleet!.hosts)).toEqual(names);
      for (const n of alike) expect(got!.fleet!.hosts[n].tailscale, n).toBe(baseFleet.hosts[n].tailscale);
    } finally {
      rmSync(base, { recursive: true, force: true });
      git("checkout", "-q", "--", ".");
    }
  }, 120_000);

  it("a host file named constructor (a key every object has) is refused before anything is evaluated", async () => {
    writeFileSync(at("home/constructor.yaml"), readFileSync(at("home/laptop.yaml"), "utf8").replace(/^address: .*$/m, "address: 192.168.8.77"));
    try {
      const r = await evaluateFleet(REGISTRY, at("home"), "home");
      expect(r.fleet).toBeUndefined();
      expect(r.diagnostics.map((d) => `${path.basename(d.file)}: ${d.fix}`)).toEqual(["constructor.yaml: rename the file to constructor-host.yaml (prefix it with _ to keep it out of the fleet)"]);
    } finally {
      rmSync(at("home/constructor.yaml"));
    }
  }, 60_000);

  it("a TypeScript host in the folder: the worker is never started", async () => {
    writeFileSync(at("home", "extra.ts"), 'export default { imports: ["client"], address: "192.168.8.77", tailscale: { user: "alice" } };\n');
    try {
      const [md] = await same("home", "here");
      expect(md.code).toBe(0);
      expect(md.out).toContain("extra");
    } finally {
      rmSync(at("home", "extra.ts"));
    }
  }, 120_000);
});
