/**
 * The deploy engine for real: runDeploy (what `meshfleet up | preview |
 * refresh | destroy` and `lab up` run) with the built Pulumi CLI, an inline
 * program and a small file provider declared by path in the project's
 * Pulumi.yaml, in a throwaway project folder with an empty PULUMI_HOME. It
 * proves the plumbing H3 owns: the stack's salt lands in `--config-file` and
 * the project's stack file stays byte for byte; per-host lines and counts;
 * secrets never in the state in clear; drift seen by refresh and repaired by
 * up; a no-op up changes nothing; and no plugin is installed anywhere.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT, runDeploy, type DeployOptions } from "../../cli/commands/deploy.ts";
import { toolsStatus } from "../../lab/tools/index.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const pulumiBuilt = toolsStatus().find((t) => t.name === "pulumi")?.state !== "missing";
const root = mkdtempSync(join(tmpdir(), "mf-engine-"));
const cwd = process.cwd();
afterAll(() => {
  process.chdir(cwd);
  rmSync(root, { recursive: true, force: true });
});

const STACK_FILE = "# the project's own stack file: the engine must leave it exactly as it is\nconfig:\n  meshfleet:note: kept\n";
const SECRET = "s3cret-not-in-state-7d1f";

function project(): { env: Record<string, string>; configFile: string; files: string } {
  mkdirSync(join(root, "bin"), { recursive: true });
  mkdirSync(join(root, "stacks"), { recursive: true });
  mkdirSync(join(root, "hosts", "t"), { recursive: true });
  mkdirSync(join(root, "files"), { recursive: true });
  for (const h of ["vps", "laptop"]) writeFileSync(join(root, "hosts", "t", `${h}.yaml`), `address: 10.0.0.${h.length}\n`);
  writeFileSync(join(root, "hosts", "t", "fleet.yaml"), "coordinator: {host: vps}\n");
  writeFileSync(
    join(root, "Pulumi.yaml"),
    "name: meshfleet\nruntime: nodejs\nstackConfigDir: stacks\nplugins:\n  providers:\n    - name: mftest\n      path: ./bin\n",
  );
  writeFileSync(join(root, "stacks", "Pulumi.t.yaml"), STACK_FILE);
  const shim = join(root, "bin", "pulumi-resource-mftest");
  writeFileSync(shim, `#!/bin/sh\nexec node --import "${join(REPO_ROOT, "node_modules", "tsx", "dist", "loader.mjs")}" "${join(REPO_ROOT, "test", "cli", "fixtures", "file-provider.ts")}" "$@"\n`);
  chmodSync(shim, 0o755);
  const configFile = join(root, "own", "Pulumi.t.yaml");
  mkdirSync(join(root, "own"), { recursive: true });
  writeFileSync(configFile, "config:\n  meshfleet:greeting: hello\n");
  return {
    env: { MESHFLEET_STATE_DIR: join(root, "state"), PULUMI_HOME: join(root, "home"), PULUMI_BACKEND_URL: "", PULUMI_CONFIG_PASSPHRASE: "engine-test" },
    configFile,
    files: join(root, "files"),
  };
}

class File extends pulumi.CustomResource {
  constructor(name: string, props: { path: string; content: pulumi.Input<string> }, opts?: pulumi.CustomResourceOptions) {
    super("mftest:index:File", name, props, opts);
  }
}

function programFor(files: string, laptopText: string) {
  return async () => {
    const greeting = new pulumi.Config("meshfleet").require("greeting");
    class Host extends pulumi.ComponentResource {
      constructor(name: string, text: string) {
        super("mftest:index:Host", name);
        new File(`${name}-motd`, { path: join(files, name), content: `${greeting} ${text}\n` }, { parent: this });
        this.registerOutputs({});
      }
    }
    new Host("vps", "from the coordinator");
    new Host("laptop", laptopText);
    new File("fleet-token", { path: join(files, "token"), content: pulumi.secret(SECRET) });
    return { hello: greeting, token: pulumi.secret(SECRET) };
  };
}

function stateText(): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const x = join(d, f);
      if (statSync(x).isDirectory()) walk(x);
      else out.push(readFileSync(x, "utf8"));
    }
  };
  walk(join(root, "state"));
  return out.join("\n");
}

describe.skipIf(skipUnlessCi(!pulumiBuilt && "the pulumi CLI is not built: run `meshfleet tools build`"))("runDeploy with the built pulumi CLI", () => {
  const { env, configFile, files } = project();
  const lines: string[] = [];
  const run = (o: Partial<DeployOptions> & Pick<DeployOptions, "verb">, laptopText = "on the road") =>
    runDeploy({ stack: "t", root, configFile, env, program: programFor(files, laptopText), say: (l) => lines.push(l), ...o });

  it("up creates every resource, groups them by host, moves the salt into --config-file, keeps secrets out of the state", async () => {
    const r = await run({ verb: "up" });
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.changes).toMatchObject({ create: 6 });
    const by = Object.fromEntries(r.hosts.map((h) => [h.host, h.ops]));
    expect(by).toEqual({ vps: { create: 2 }, laptop: { create: 2 }, "(fleet)": { create: 1 } });
    expect(readFileSync(join(files, "laptop"), "utf8")).toBe("hello on the road\n");
    expect(r.outputs).toEqual({ hello: "hello", token: "[secret]" });
    expect(readFileSync(join(root, "stacks", "Pulumi.t.yaml"), "utf8")).toBe(STACK_FILE);
    expect(readFileSync(configFile, "utf8")).toMatch(/^encryptionsalt: v1:/m);
    expect(readFileSync(join(files, "token"), "utf8")).toBe(SECRET);
    expect(stateText()).not.toContain(SECRET);
    expect(lines.some((l) => /^\s*[\d.]+s\s+laptop\s+\+\s+mftest:index:File laptop-motd {2}create done/.test(l))).toBe(true);
    // Nothing installed: the provider came from Pulumi.yaml's path, the program ran inline.
    expect(existsSync(join(root, "home", "plugins")) ? readdirSync(join(root, "home", "plugins")) : []).toEqual([]);
  }, 180_000);

  it("a second up changes nothing", async () => {
    const t0 = Date.now();
    const r = await run({ verb: "up" });
    console.log(`no-op up of ${Object.values(r.changes).reduce((a, b) => a + b, 0)} resources: ${Date.now() - t0} ms`);
    expect(r.ok).toBe(true);
    expect(Object.keys(r.changes)).toEqual(["same"]);
  }, 120_000);

  it("a file edited by hand shows as drift on its host in refresh, and up puts it back", async () => {
    writeFileSync(join(files, "vps"), "edited by hand\n");
    const refresh = await run({ verb: "refresh" });
    expect(refresh.ok).toBe(true);
    expect(refresh.changes).toMatchObject({ update: 1 });
    const vps = refresh.hosts.find((h) => h.host === "vps")!;
    expect(vps.ops.update).toBe(1);
    expect(refresh.hosts.find((h) => h.host === "laptop")!.ops.update ?? 0).toBe(0);
    const up = await run({ verb: "up" });
    expect(up.ok).toBe(true);
    expect(up.hosts.find((h) => h.host === "vps")!.ops).toMatchObject({ update: 1 });
    expect(readFileSync(join(files, "vps"), "utf8")).toBe("hello from the coordinator\n");
  }, 180_000);

  it("preview names the one host a change touches, and which property", async () => {
    lines.length = 0;
    const r = await run({ verb: "preview", diff: true }, "at home");
    expect(r.ok).toBe(true);
    expect(r.hosts.find((h) => h.host === "laptop")!.ops).toMatchObject({ update: 1 });
    expect(r.hosts.find((h) => h.host === "vps")!.ops).not.toHaveProperty("update");
    expect(r.resources.find((x) => x.name === "laptop-motd")!.diff).toEqual([{ key: "content", kind: "update" }]);
    expect(lines.join("\n")).toMatch(/laptop\s+~\s+mftest:index:File laptop-motd {2}will update\n\s+~\s+content/);
    expect(readFileSync(join(files, "laptop"), "utf8")).toBe("hello on the road\n");
  }, 120_000);

  it("destroy removes everything", async () => {
    const r = await run({ verb: "destroy" });
    expect(r.ok).toBe(true);
    expect(existsSync(join(files, "vps"))).toBe(false);
    expect(existsSync(join(files, "laptop"))).toBe(false);
    expect(readFileSync(join(root, "stacks", "Pulumi.t.yaml"), "utf8")).toBe(STACK_FILE);
  }, 120_000);

  it("a failing resource fails the run and is named with its host", async () => {
    const r = await runDeploy({
      stack: "t", root, configFile, env, verb: "up",
      program: async () => {
        new File("laptop-bad", { path: join(root, "no-such-dir", "x"), content: "x" });
        return {};
      },
    });
    expect(r.ok).toBe(false);
    expect(r.errors.join("\n")).toMatch(/^laptop: .*ENOENT/m);
    expect(r.hosts.find((h) => h.host === "laptop")!.failed).toEqual(["mftest:index:File laptop-bad"]);
  }, 120_000);
});
