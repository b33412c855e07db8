/**
 * Both ways into the one program register the same resource graph: index.ts
 * loaded the way Pulumi's Node.js host loads it for `pulumi up` (an ES module
 * whose only export is a default function, called inside the stack), and the
 * inline program `meshfleet up` hands to the Automation API (loadProgram +
 * inlineProgram), and the build of index.ts the prebuilt CLI (dist/cli,
 * cli/build.mjs) runs it from. Run under Pulumi's mocks with the lab fleet;
 * every resource's type, name and parent, and the stack outputs' names, must
 * match.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { inlineProgram, loadProgram, REPO_ROOT } from "../../cli/commands/deploy.ts";
import { SSH_KEY } from "../fixtures/keys.ts";

const dir = mkdtempSync(join(tmpdir(), "mf-graph-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let made: Record<string, string> | undefined;
/** The lab stack's config with stand-in secrets and a known_hosts pinning every lab host (made once). */
function labConfig(): Record<string, string> {
  return (made ??= makeLabConfig());
}

function makeLabConfig(): Record<string, string> {
  const hostsDir = join(REPO_ROOT, "hosts", "lab");
  const known: string[] = [];
  for (const f of readdirSync(hostsDir).filter((x) => x.endsWith(".yaml") && x !== "fleet.yaml" && !x.startsWith("_"))) {
    const address = (parse(readFileSync(join(hostsDir, f), "utf8")) as { address: string }).address;
    const k = join(dir, `host-${f}`);
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", k]);
    known.push(`${address} ${readFileSync(`${k}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ")}`);
  }
  writeFileSync(join(dir, "known_hosts"), known.join("\n") + "\n");
  writeFileSync(join(dir, "id_test"), SSH_KEY, { mode: 0o600 });
  return {
    "meshfleet:hostsDir": hostsDir,
    "meshfleet:keySeed": "Z3JhcGgtdGVzdC1zZWVkLTAxMjM0NTY3ODlhYmNkZWY=",
    "meshfleet:sshPrivateKeyPath": join(dir, "id_test"),
    "meshfleet:knownHostsPath": join(dir, "known_hosts"),
    "meshfleet:agentPath": join(REPO_ROOT, "dist", "meshfleet-agent.mjs"),
  };
}

interface Graph {
  resources: string[];
  outputs: string[];
}

async function graphOf(entry: () => Promise<unknown>, config: Record<string, string>): Promise<Graph> {
  const seen: { type: string; name: string; parent: string }[] = [];
  let n = 0;
  await pulumi.runtime.setMocks(
    {
      newResource(a) {
        seen.push({ type: a.type, name: a.name, parent: "" });
        return { id: a.custom ? `${a.name}-id-${++n}` : undefined, state: a.inputs };
      },
      call(a) {
        return a.inputs;
      },
    },
    "meshfleet",
    "lab",
    true,
  );
  pulumi.runtime.setAllConfig(config, ["meshfleet:keySeed"]);
  let outputs: Record<string, unknown> = {};
  await pulumi.runtime.runInPulumiStack(async () => (outputs = ((await entry()) ?? {}) as Record<string, unknown>));
  // Registrations finish asynchronously: wait until the count holds still.
  for (let last = -1; last !== seen.length; ) {
    last = seen.length;
    await new Promise((r) => setTimeout(r, 200));
  }
  return { resources: seen.map((r) => `${r.type}::${r.name}`).sort(), outputs: Object.keys(outputs).sort() };
}

describe("pulumi up and meshfleet up run the same program", () => {
  it("registers the same resources and outputs through both entries", async () => {
    const config = labConfig();
    // What Pulumi's Node.js host does with `main: index.ts`: import the ES module, refuse
    // default + named exports, call the default export inside the stack.
    const nodeHost = async () => {
      const mod = (await import(pathToFileURL(join(REPO_ROOT, "index.ts")).href)) as Record<string, unknown>;
      expect(Object.keys(mod)).toEqual(["default"]);
      const fn = mod.default;
      return fn instanceof Function ? await fn() : fn;
    };
    const viaPulumi = await graphOf(nodeHost, config);
    const viaMeshfleet = await graphOf(inlineProgram(await loadProgram()), config);
    expect(viaPulumi.resources.length).toBeGreaterThan(10);
    expect(viaPulumi.resources.some((r) => r.startsWith("pulumi:pulumi:Stack::"))).toBe(true);
    expect(viaMeshfleet.resources).toEqual(viaPulumi.resources);
    expect(viaMeshfleet.outputs).toEqual(viaPulumi.outputs);
    expect(viaPulumi.outputs.length).toBeGreaterThan(0);
  }, 120_000);

  it("registers the same resources and outputs from the prebuilt CLI's build of the program", async () => {
    const config = labConfig();
    // Inside the repo: the chunks import packages (the same @pulumi/pulumi) from node_modules.
    const out = join(REPO_ROOT, "dist", `cli-graph-${process.pid}`);
    try {
      execFileSync(process.execPath, [join(REPO_ROOT, "cli", "build.mjs"), "--outdir", out], { cwd: REPO_ROOT, encoding: "utf8", timeout: 240_000 });
      const built = (await import(pathToFileURL(join(out, "program.mjs")).href)) as { default?: unknown };
      expect(typeof built.default).toBe("function");
      // The bundle's deploy code imports the bundled program, not index.ts.
      const chunks = readdirSync(out).filter((f) => f.endsWith(".mjs")).map((f) => readFileSync(join(out, f), "utf8"));
      expect(chunks.some((c) => c.includes('await import("./program.mjs")'))).toBe(true);
      const viaSource = await graphOf(inlineProgram(await loadProgram()), config);
      const viaBundle = await graphOf(inlineProgram(built.default as () => Promise<Record<string, unknown>>), config);
      expect(viaBundle.resources.length).toBeGreaterThan(10);
      expect(viaBundle.resources).toEqual(viaSource.resources);
      expect(viaBundle.outputs).toEqual(viaSource.outputs);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 300_000);
});
