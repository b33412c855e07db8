/**
 * The provider in the real Pulumi engine: an Automation API inline program
 * (no language host) whose one meshfleet:host:Generation goes to a
 * throwaway sshd on 127.0.0.1 and the real agent (on a temp root). The
 * engine loads `provider/bin/pulumi-resource-meshfleet` from the project's
 * `plugins.providers`. Proved: up applies and confirms; a second up changes
 * nothing; a file edited by hand shows in refresh and `preview --diff` names
 * it; the next up repairs it; the state holds neither the secret file's
 * content nor the private key text; destroy uninstalls.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { LocalWorkspace, PulumiCommand, type Stack } from "@pulumi/pulumi/automation/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { toolPath } from "../../lab/tools/index.ts";
import { Generation } from "../../provider/sdk.ts";
import { bundleSummary } from "../../provider/summary.ts";
import { bundle, file } from "../agent/helpers.ts";
import { privateAgent } from "./agent.ts";
import { sshdUnavailable, startSshd, type Sshd } from "./sshd.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

function pulumiBin(): string | null {
  try {
    return toolPath("pulumi");
  } catch {
    return null;
  }
}
const why = sshdUnavailable() ?? (pulumiBin() ? null : "no Pulumi CLI (meshfleet tools build)");

const SECRET = "file-secret-9c1e-never-in-state";

describe.skipIf(skipUnlessCi(why))(`the provider in the real engine${why ? ` (skipped: ${why})` : ""}`, () => {
  let sshd: Sshd;
  let tmp: string;
  let stack: Stack;
  let content = "v=1\n";
  const times: Record<string, number> = {};

  beforeAll(async () => {
    const agentPath = privateAgent();
    sshd = await startSshd();
    tmp = mkdtempSync(path.join(tmpdir(), "mf-engine-"));
    mkdirSync(path.join(tmp, "state"));
    const program = async () => {
      const b = bundle({ files: [file("/etc/app/app.conf", content), file("/etc/app/token", SECRET, { secret: true, mode: "0600" })] });
      const g = new Generation("testhost", {
        host: "testhost",
        // Key text, not a path: the secret branch (0600 file for the run, secret in state).
        connection: { name: "testhost", host: "127.0.0.1", port: sshd.port, user: "root", hostKeys: [sshd.hostKey], dialAttempts: 3 },
        sshPrivateKey: pulumi.secret(sshd.clientKeyText),
        agent: {
          localPath: agentPath,
          sha256: createHash("sha256").update(readFileSync(agentPath)).digest("hex"),
          remotePath: path.join(sshd.dir, "agent", "meshfleet-agent.mjs"),
          node: process.execPath,
          stateDir: path.join(sshd.dir, "state"),
        },
        bundle: pulumi.secret(JSON.stringify(b)),
        confirmTimeoutSeconds: 30,
        once: false,
        ...bundleSummary(b),
      });
      return { hash: g.hash, generation: g.generation, drift: g.drift };
    };
    const bin = pulumiBin()!;
    const cmd = await PulumiCommand.get({ root: path.dirname(path.dirname(bin)) });
    const env = {
      PULUMI_CONFIG_PASSPHRASE: "engine-test",
      PULUMI_SKIP_UPDATE_CHECK: "true",
      PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
      MESHFLEET_PROVIDER_LOG: path.join(tmp, "provider.log"),
      // The provider's shim runs `node`: this one.
      PATH: `${path.dirname(process.execPath)}:${process.env.PATH}`,
    };
    stack = await LocalWorkspace.createOrSelectStack(
      { stackName: "engine", projectName: "mfprovider", program },
      {
        workDir: mkdtempSync(path.join(tmp, "work-")),
        pulumiHome: path.join(tmp, "home"),
        pulumiCommand: cmd,
        envVars: env,
        projectSettings: {
          name: "mfprovider",
          runtime: "nodejs",
          backend: { url: `file://${path.join(tmp, "state")}` },
          plugins: { providers: [{ name: "meshfleet", path: path.join(REPO, "provider", "bin") }] },
        } as never,
      },
    );
  }, 60_000);

  afterAll(async () => {
    await sshd?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    // eslint-disable-next-line no-console
    console.log(`engine timings (ms): ${JSON.stringify(times)}`);
  });

  const live = (p: string) => {
    const f = path.join(sshd.root, p);
    return existsSync(f) ? readFileSync(f, "utf8") : null;
  };
  const timed = async <T>(k: string, f: () => Promise<T>) => {
    const t0 = Date.now();
    const r = await f();
    times[k] = Date.now() - t0;
    return r;
  };
  const stateText = () => {
    const dir = path.join(tmp, "state", ".pulumi", "stacks");
    const out: string[] = [];
    const walk = (d: string) => {
      for (const n of readdirSync(d)) {
        const p = path.join(d, n);
        if (statSync(p).isDirectory()) walk(p);
        else out.push(readFileSync(p, "utf8"));
      }
    };
    walk(dir);
    return out.join("\n");
  };

  it("up creates the generation through the provider: switched, confirmed, verified", async () => {
    const r = await timed("firstUp", () => stack.up());
    expect(r.summary.result).toBe("succeeded");
    expect(r.summary.resourceChanges).toMatchObject({ create: 2 });
    expect(r.outputs.generation.value).toBe(1);
    expect(r.outputs.drift.value).toEqual([]);
    expect(live("/etc/app/app.conf")).toBe("v=1\n");
    expect(live("/etc/app/token")).toBe(SECRET);
  }, 120_000);

  it("a second up changes nothing", async () => {
    const r = await timed("noopUp", () => stack.up());
    expect(r.summary.resourceChanges).toEqual({ same: 2 });
  }, 120_000);

  it("a file edited by hand shows in refresh and preview --diff; the next up repairs it", async () => {
    writeFileSync(path.join(sshd.root, "etc/app/app.conf"), "edited by hand\n");
    const ref = await timed("refresh", () => stack.refresh());
    expect(ref.summary.resourceChanges).toMatchObject({ update: 1 });
    let out = "";
    const pv = await stack.preview({ diff: true, onOutput: (s) => (out += s) });
    expect(pv.changeSummary).toMatchObject({ update: 1 });
    // The provider's detailed diff: the drifted file by path, what read found, nothing of the other files.
    expect(out).toMatch(/~ files: \{\s+~ \/etc\/app\/app.conf: \{\s+- drift\s*: "content changed"/);
    expect(out).not.toContain("/etc/app/token");
    expect(out).not.toContain(SECRET);
    const up = await stack.up();
    expect(up.summary.resourceChanges).toMatchObject({ update: 1 });
    expect(live("/etc/app/app.conf")).toBe("v=1\n");
    expect(up.outputs.drift.value).toEqual([]);
  }, 180_000);

  it("a changed file: preview --diff names it, up switches to generation 2", async () => {
    content = "v=2\n";
    let out = "";
    await stack.preview({ diff: true, onOutput: (s) => (out += s) });
    expect(out).toMatch(/~ files: \{\s+~ \/etc\/app\/app.conf: \{[\s\S]*~ sha256: "[0-9a-f]{64}" => "[0-9a-f]{64}"/);
    expect(out).not.toContain("/etc/app/token");
    expect(out).not.toContain("drift");
    const up = await stack.up();
    expect(up.outputs.generation.value).toBe(2);
    expect(live("/etc/app/app.conf")).toBe("v=2\n");
  }, 180_000);

  it("the state holds neither the secret file's content nor the private key text", () => {
    const s = stateText();
    expect(s).toContain("meshfleet:host:Generation");
    expect(s).not.toContain(SECRET);
    expect(s).not.toContain(sshd.clientKeyText.split("\n")[1]);
  });

  it("destroy uninstalls through the agent", async () => {
    const r = await stack.destroy();
    expect(r.summary.result).toBe("succeeded");
    expect(live("/etc/app/app.conf")).toBeNull();
    expect(live("/etc/app/token")).toBeNull();
  }, 120_000);
});
