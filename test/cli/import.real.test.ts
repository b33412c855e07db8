/**
 * `meshfleet import --from-dir` on a real headscale 0.29.2 serving on
 * loopback: users, nodes (one tagged) and a pre-auth key are made through
 * its CLI, its policy is HuJSON with comments and trailing commas, and its
 * /etc/headscale copy plus the two JSON lists are imported. Then:
 *  - `meshfleet check --nodes` accepts the imported fleet;
 *  - the coordinator rendered from it keeps server_url, prefixes, base
 *    domain and the policy (parsed and compared), writes no key file, and
 *    `headscale configtest` accepts its config.yaml;
 *  - headscale serving that rendered config on the OLD state (keys and
 *    database adopted) lists the same users and nodes with the same
 *    addresses, and the key files are byte for byte what they were;
 *  - no private key text is in anything import wrote or printed.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/eval.ts";
import { parseHuJson } from "../../core/hujson.ts";
import { REGISTRY } from "../../modules/index.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import * as rt from "../modules/realtools/index.ts";
import { hostConfig, POLICY } from "./import-fixtures.ts";

const HEADSCALE = rt.toolPath("headscale");
const ROOT = path.resolve(import.meta.dirname, "../..");

const sha = (f: string) => createHash("sha256").update(readFileSync(f)).digest("hex");

describe.skipIf(skipUnlessCi(!HEADSCALE && "headscale 0.29.2 is not built: run `meshfleet tools build`"))("meshfleet import on a real headscale 0.29.2", () => {
  it("imports config, HuJSON policy, users and nodes; check passes; the rendered coordinator keeps the state", async () => {
    const ports = { http: await rt.freePort(), metrics: await rt.freePort(), grpc: await rt.freePort(), stun: await rt.freePort() };
    const t = rt.tempDir("mf-import");
    try {
      const cfgText = hostConfig(ports);
      // The old server: host paths relocated into the temp dir (etc/, lib/, run/).
      const noise = JSON.parse(spawnSync(HEADSCALE!, ["generate", "private-key", "-o", "json"], { encoding: "utf8" }).stdout).private_key as string;
      const derp = JSON.parse(spawnSync(HEADSCALE!, ["generate", "private-key", "-o", "json"], { encoding: "utf8" }).stdout).private_key as string;
      const cfg = rt.layoutHeadscale(t.dir, { config: cfgText, policy: "{}\n", noiseKey: noise, derpKey: derp });
      writeFileSync(path.join(t.dir, "etc", "acl.hujson"), POLICY);
      const copy = path.join(t.dir, "copy");
      const hs = (args: string[], c = cfg) => {
        const r = spawnSync(HEADSCALE!, [...args, "-c", c], { encoding: "utf8", timeout: 60_000 });
        expect(r.status, `headscale ${args.join(" ")}: ${r.stdout}${r.stderr}`).toBe(0);
        return r.stdout;
      };
      const health = `http://127.0.0.1:${ports.http}/health`;
      const before = await rt.withHeadscaleServing(cfg, "", health, async () => {
        const alice = JSON.parse(hs(["users", "create", "alice", "-o", "json"]));
        const bob = JSON.parse(hs(["users", "create", "bob", "-o", "json"]));
        // Two nodes: alice's laptop, and a server tagged tag:server.
        for (const [name, user] of [["laptop", "alice"], ["server", "alice"]]) {
          const id = `hskey-authreq-${createHash("sha256").update(name + t.dir).digest("hex").slice(0, 24)}`;
          hs(["debug", "create-node", "--name", name, "--user", user, "--key", id, "-o", "json"]);
          hs(["auth", "register", "--auth-id", id, "--user", user, "-o", "json"]);
        }
        const listed = JSON.parse(hs(["nodes", "list", "-o", "json"])) as { id: number; name: string }[];
        const server = listed.find((n) => n.name === "server")!;
        hs(["nodes", "tag", "-i", String(server.id), "-t", "tag:server", "-o", "json"]);
        const key = JSON.parse(hs(["preauthkeys", "create", "-u", String(bob.id), "--reusable", "-e", "1h", "-o", "json"]));
        expect(key.key).toMatch(/^hskey-auth-/);
        // The copy: /etc/headscale as on the host, plus the two lists.
        spawnSync("mkdir", ["-p", copy]);
        writeFileSync(path.join(copy, "config.yaml"), cfgText);
        writeFileSync(path.join(copy, "acl.hujson"), POLICY);
        writeFileSync(path.join(copy, "users.json"), hs(["users", "list", "-o", "json"]));
        writeFileSync(path.join(copy, "nodes.json"), hs(["nodes", "list", "-o", "json"]));
        void alice;
        return { nodes: JSON.parse(hs(["nodes", "list", "-o", "json"])) as { name: string; ip_addresses: string[]; tags?: string[] }[], preauth: key.key as string };
      });
      expect(before.ok, before.output).toBe(true);
      const old = before.result!;
      expect(old.nodes.map((n) => n.name).sort()).toEqual(["laptop", "server"]);
      const keySums = [sha(path.join(t.dir, "lib", "noise_private.key")), sha(path.join(t.dir, "lib", "derp_server_private.key"))];

      // import
      const out = path.join(t.dir, "fleet");
      const imp = spawnSync(process.execPath, [path.join(ROOT, "bin/meshfleet.mjs"), "import", "--from-dir", copy, "--out", out], { encoding: "utf8", timeout: 120_000, cwd: ROOT });
      expect(imp.status, imp.stdout + imp.stderr).toBe(0);
      expect(imp.stdout).toContain("not mapped: frobnicate_level = 3");
      expect(readdirSync(out).sort()).toEqual(["IMPORT.md", "coordinator.yaml", "fleet.yaml", "nodes.json"]);
      const written = readdirSync(out).map((f) => readFileSync(path.join(out, f), "utf8")).join("\n") + imp.stdout + imp.stderr;
      for (const secret of [noise, derp, noise.slice(8), derp.slice(8), old.preauth]) expect(written).not.toContain(secret);
      const report = readFileSync(path.join(out, "IMPORT.md"), "utf8");
      expect(report).toMatch(/## Not mapped \(1\)[\s\S]*`frobnicate_level` = 3/);
      expect(report).toContain("`node.routes.ha.probe_interval` = \"15s\" → headscale.extraSettings.node.routes.ha.probe_interval");
      expect(report).toContain("`dns.search_domains` = [\"home.arpa\"] → headscale.extraSettings.dns.search_domains");

      // meshfleet check on the result, with the nodes it wrote
      const check = spawnSync(process.execPath, [path.join(ROOT, "bin/meshfleet.mjs"), "check", "--hosts-dir", out, "--nodes", path.join(out, "nodes.json")], { encoding: "utf8", timeout: 120_000, cwd: ROOT });
      expect(check.status, check.stdout + check.stderr).toBe(0);
      expect(check.stdout).toMatch(/^ok: /);

      // Render the imported coordinator.
      const ev = await evaluateFleet(REGISTRY, out, "imported");
      expect(ev.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
      const coord = ev.fleet!.hosts.coordinator!;
      const file = (p: string) => coord.files.find((f) => f.path === p);
      const rendered = file("/etc/headscale/config.yaml")!.content;
      const r = parseYaml(rendered) as Record<string, any>;
      const o = parseYaml(cfgText) as Record<string, any>;
      expect(r.server_url).toBe(o.server_url);
      expect(r.prefixes).toEqual(o.prefixes);
      expect(r.dns.base_domain).toBe(o.dns.base_domain);
      expect(r.dns.nameservers).toEqual(o.dns.nameservers);
      expect(r.dns.search_domains).toEqual(["home.arpa"]);
      expect(r.node.routes.ha.probe_interval).toBe("15s");
      expect(r.node.ephemeral.inactivity_timeout).toBe("45m");
      expect(r.derp.server).toMatchObject({ enabled: true, region_id: 999, region_code: "home", private_key_path: "/var/lib/headscale/derp_server_private.key" });
      expect(r.derp.update_frequency).toBe("6h");
      expect(r.noise.private_key_path).toBe("/var/lib/headscale/noise_private.key");
      expect(r.database.sqlite.path).toBe("/var/lib/headscale/db.sqlite");
      expect(r.log.level).toBe("debug");
      expect(r).not.toHaveProperty("frobnicate_level");
      // The same policy, compared parsed.
      const policyText = file("/etc/headscale/policy.hujson")!.content;
      expect(parseHuJson(policyText)).toEqual(parseHuJson(POLICY));
      // No key file is written: the old ones are adopted.
      expect(coord.files.filter((f) => f.secretRef === "noise-key" || f.secretRef === "derp-key")).toEqual([]);
      expect(coord.files.map((f) => f.path)).not.toContain("/var/lib/headscale/noise_private.key");

      // configtest and serve of the rendered config on the old state (its keys, its database).
      const cfg2 = path.join(t.dir, "etc", "rendered.yaml");
      writeFileSync(cfg2, rt.relocateHeadscale(rendered, t.dir));
      writeFileSync(path.join(t.dir, "etc", "policy.hujson"), policyText);
      const ct = await rt.headscaleConfigtest(cfg2);
      expect(ct.ok, ct.output).toBe(true);
      const after = await rt.withHeadscaleServing(cfg2, "", health, async () => ({
        users: (JSON.parse(hs(["users", "list", "-o", "json"], cfg2)) as { name: string }[]).map((u) => u.name).sort(),
        nodes: JSON.parse(hs(["nodes", "list", "-o", "json"], cfg2)) as { name: string; ip_addresses: string[]; tags?: string[] }[],
        policy: hs(["policy", "check", "-f", path.join(t.dir, "etc", "policy.hujson")], cfg2),
      }));
      expect(after.ok, after.output).toBe(true);
      expect(after.result!.users).toEqual(["alice", "bob"]);
      const strip = (ns: { name: string; ip_addresses: string[]; tags?: string[] }[]) => ns.map((n) => ({ name: n.name, ips: n.ip_addresses, tags: n.tags ?? [] })).sort((a, b) => a.name.localeCompare(b.name));
      expect(strip(after.result!.nodes)).toEqual(strip(old.nodes));
      expect(strip(old.nodes).find((n) => n.name === "server")!.tags).toEqual(["tag:server"]);
      expect([sha(path.join(t.dir, "lib", "noise_private.key")), sha(path.join(t.dir, "lib", "derp_server_private.key"))]).toEqual(keySums);
    } finally {
      t.cleanup();
    }
  }, 240_000);
});
