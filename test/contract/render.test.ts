/**
 * One render: `meshfleet render` writes exactly what the agent puts on the
 * host. Every home-fleet bundle is switched to by the real bundled agent in a
 * temp root, and the files it wrote are compared with the render's, byte for
 * byte and mode for mode; the nft table it loaded with the render's script.
 * And `render --out` never deletes what is not its own.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { sealBundle, type Bundle } from "../../contract/bundle.ts";
import { desiredFiles } from "../../contract/desired.ts";
import { nftRuleset, nftScript } from "../../contract/nftables.ts";
import { hostArtifacts } from "../../core/artifacts.ts";
import { secretRefs } from "../../core/bundle.ts";
import { evaluateFleet } from "../../core/index.ts";
import { renderHost } from "../../core/render.ts";
import type { FleetSystem } from "../../core/types.ts";
import { REGISTRY } from "../../modules/index.ts";
import { RENDER_MARKER } from "../../cli/commands/render.ts";
import { renderHome } from "../cli/render-run.ts";
import { standInSecrets } from "../fixtures/secrets.ts";
import { agent, buildAgent, read, tempRoot, writeBundle } from "../agent/helpers.ts";

let fleet: FleetSystem;
beforeAll(async () => {
  const r = await evaluateFleet(REGISTRY, "hosts/home", "home");
  fleet = r.fleet!;
  buildAgent();
});

/** Every regular file under root that the agent wrote for the bundle (not its state, not the test's stand-ins). */
function landed(root: string, b: Bundle): Map<string, { content: string; mode: string }> {
  const out = new Map<string, { content: string; mode: string }>();
  // The agent's own state, its metrics textfile, the accounts systemd-sysusers made, the stand-ins' files.
  const skip = new Set(["sim", "proc", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", `${b.metrics.textfileDir.slice(1)}/meshfleet.prom`]);
  const state = (r: string) => r.startsWith("var/lib/meshfleet/") && !r.startsWith("var/lib/meshfleet/secrets");
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skip.has(r) || state(r)) continue;
      if (e.isDirectory()) walk(r);
      else if (e.isFile() && !/[-+]$/.test(e.name)) out.set(r, { content: fs.readFileSync(path.join(root, r), "utf8"), mode: (fs.statSync(path.join(root, r)).mode & 0o7777).toString(8).padStart(4, "0") });
    }
  };
  walk("");
  return out;
}

describe("render writes what the agent lands", () => {
  it("for every home host with an agent: the same files, contents, modes and nft table", () => {
    const hosts = Object.values(fleet.hosts).filter((h) => h.agent);
    expect(hosts.length).toBeGreaterThan(2);
    for (const h of hosts) {
      const rendered = hostArtifacts(h);
      // Probes would reach for services a temp root does not run, and the tailscale CLI is the test's
      // stand-in on PATH; the files are what is compared here.
      const full = renderHost(h, standInSecrets(secretRefs(h)));
      const { hash: _h, ...body } = full;
      const b: Bundle = sealBundle({ ...body, probes: [], tailscale: body.tailscale && { ...body.tailscale, cli: "tailscale" } });
      const root = tempRoot();
      fs.writeFileSync(path.join(root, "sim/ts-status.json"), JSON.stringify({ BackendState: "Running", Self: { Tags: full.tailscale?.tags ?? [] } }));
      const r = agent(root, ["switch", writeBundle(root, b)]);
      expect(r.code, `${h.name}: ${r.stderr}`).toBe(0);

      const onHost = landed(root, b);
      const secretList = rendered.find((a) => a.path === "meshfleet/SECRETS")?.content ?? "";
      const secretPaths = secretList.split("\n").filter((l) => l.startsWith("/")).map((l) => l.split("\t")[0].slice(1));
      const renderedHostFiles = rendered.filter((a) => !a.path.startsWith("meshfleet/"));
      // Every file the render shows is on the host, as rendered.
      for (const a of renderedHostFiles) {
        expect(onHost.get(a.path)?.content, `${h.name}: ${a.path}`).toBe(a.content);
        expect(onHost.get(a.path)?.mode, `${h.name}: ${a.path} mode`).toBe(a.mode);
      }
      // Every file on the host is in the render: written, or listed as a secret.
      expect([...onHost.keys()].sort(), h.name).toEqual([...renderedHostFiles.map((a) => a.path), ...secretPaths].sort());
      // The table the agent loaded is the render's script's table.
      const script = rendered.find((a) => a.path === "meshfleet/nftables.nft");
      expect(script?.content, h.name).toBe(nftScript(b.firewall));
      // The stand-in nft keeps what the script loads after its create and delete lines.
      expect(read(root, "sim/nft"), h.name).toBe(script!.content.split("\n").slice(2).join("\n"));
      expect(read(root, "sim/nft")?.trim(), h.name).toBe(nftRuleset(b.firewall)?.trim());
    }
  }, 120_000);

  it("the list render takes (desiredFiles without hashes) is the agent's list, only the sysctl and unit files' sha256 left out", () => {
    let own = 0;
    for (const h of Object.values(fleet.hosts).filter((x) => x.agent)) {
      const b = renderHost(h, standInSecrets(secretRefs(h)));
      const withHashes = desiredFiles(b);
      const without = desiredFiles(b, false);
      expect(without.map((f) => ({ ...f, sha256: "" })), h.name).toEqual(withHashes.map((f) => ({ ...f, sha256: "" })));
      without.forEach((f, i) => {
        if (f.kind === "file") expect(f.sha256, `${h.name}: ${f.path}`).toBe(withHashes[i].sha256);
        else {
          expect(f.sha256, `${h.name}: ${f.path}`).toBe("");
          expect(withHashes[i].sha256).toMatch(/^[0-9a-f]{64}$/);
          own++;
        }
      });
    }
    expect(own).toBeGreaterThan(5);
  });

  it("the sysctl file is the agent's, not a second rendering", () => {
    const h = Object.values(fleet.hosts).find((x) => Object.keys(x.sysctl).length)!;
    const a = hostArtifacts(h).find((x) => x.path === "etc/sysctl.d/90-meshfleet.conf")!;
    expect(a.content.split("\n")[0]).toBe("# Written by the meshfleet agent; changes here are reverted on the next switch.");
    for (const [k, v] of Object.entries(h.sysctl)) expect(a.content).toContain(`\n${k} = ${v}\n`);
  });
});

describe("render --out", () => {
  const run = renderHome;
  const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "mf-render-"));

  it("writes into a new folder, with its marker", async () => {
    const out = path.join(tmp(), "new");
    expect(await run(out)).toBe(0);
    expect(fs.readFileSync(path.join(out, RENDER_MARKER), "utf8")).toContain("vps/etc/systemd/system/");
    expect(fs.existsSync(path.join(out, "vps/meshfleet/nftables.nft"))).toBe(true);
  });

  it("refuses a non-empty folder that is not an earlier render's, and touches nothing in it", async () => {
    const out = tmp();
    fs.writeFileSync(path.join(out, "thesis.tex"), "years of work");
    await expect(run(out)).rejects.toThrow(/is not empty and is not an earlier render's output \(no \.meshfleet-render file\); nothing was written/);
    expect(fs.readdirSync(out)).toEqual(["thesis.tex"]);
    expect(fs.readFileSync(path.join(out, "thesis.tex"), "utf8")).toBe("years of work");
  });

  it("refuses a file given as the folder", async () => {
    const f = path.join(tmp(), "notes.txt");
    fs.writeFileSync(f, "mine");
    await expect(run(f)).rejects.toThrow(/render --out .*notes\.txt: that is a file, not a folder; nothing was written/);
    expect(fs.readFileSync(f, "utf8")).toBe("mine");
  });

  it("over an earlier render: replaces its files (a stale one goes), keeps what the user added", async () => {
    const out = path.join(tmp(), "r");
    expect(await run(out)).toBe(0);
    fs.writeFileSync(path.join(out, "notes.md"), "mine");
    fs.mkdirSync(path.join(out, "stale/etc"), { recursive: true });
    fs.writeFileSync(path.join(out, "stale/etc/old.conf"), "from an old render");
    fs.appendFileSync(path.join(out, RENDER_MARKER), "stale/etc/old.conf\n");
    fs.writeFileSync(path.join(out, "vps/meshfleet/nftables.nft"), "edited");
    expect(await run(out)).toBe(0);
    expect(fs.readFileSync(path.join(out, "notes.md"), "utf8")).toBe("mine");
    expect(fs.existsSync(path.join(out, "stale"))).toBe(false);
    expect(fs.readFileSync(path.join(out, "vps/meshfleet/nftables.nft"), "utf8")).toMatch(/^table inet meshfleet \{\}\ndelete table inet meshfleet\ntable inet meshfleet \{/);
  });

  it("a marker naming paths outside the folder reaches nothing outside it", async () => {
    const parent = tmp();
    const out = path.join(parent, "r");
    expect(await run(out)).toBe(0);
    fs.writeFileSync(path.join(parent, "outside.txt"), "keep");
    fs.appendFileSync(path.join(out, RENDER_MARKER), "../outside.txt\n" + path.join(parent, "outside.txt") + "\n");
    expect(await run(out)).toBe(0);
    expect(fs.readFileSync(path.join(parent, "outside.txt"), "utf8")).toBe("keep");
  });
});
