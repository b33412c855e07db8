/**
 * `meshfleet import` of a headscale whose policy is too large for fleet.yaml
 * (the loader's YAML limits hold ~120 rules): the policy goes to
 * policy.hujson as headscale's text, comments kept, fleet.yaml says
 * `policy: ./policy.hujson`, and the imported fleet passes check. A policy
 * that fits stays inline, as before.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { command } from "../../cli/commands/import.ts";
import { parseHuJson } from "../../core/hujson.ts";
import { LIMITS, loadFleetDir } from "../../core/load.ts";
import { hostConfig } from "./import-fixtures.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "mf-import-policy-file-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** The existing headscale of the other import tests (its config names /etc/headscale/acl.hujson). */
const CONFIG = hostConfig({ http: 8080, metrics: 9090, grpc: 50443, stun: 3478 });

/** headscale's policy file with `rules` ACLs, a comment on each: past fleet.yaml's limits from ~120 rules. */
function policy(rules: number, extra = ""): string {
  const acls = Array.from({ length: rules }, (_, i) => `    // rule ${i}: admins reach the servers of LAN ${i % 250}\n    {"action": "accept", "src": ["group:admins"], "dst": ["10.${i % 250}.${i % 200}.0/24:${1 + i}"],},`);
  return `// The tailnet's policy, as headscale reads it.\n{\n  "groups": {"group:admins": ["alice@",],},${extra}\n  "acls": [\n${acls.join("\n")}\n  ],\n}\n`;
}

async function importFrom(pol: string, into?: string, json = true): Promise<{ code: number; out: string; text: string; json: { ok: boolean; written: string[]; removed: string[]; check: { ok: boolean }; items: { key: string; kind: string; to?: string; note?: string }[] } }> {
  const from = path.join(tmp, `from${n}`);
  const out = into ?? path.join(tmp, `out${n}`);
  n++;
  mkdirSync(from);
  writeFileSync(path.join(from, "config.yaml"), CONFIG);
  writeFileSync(path.join(from, "acl.hujson"), pol);
  writeFileSync(path.join(from, "users.json"), '[{"id": 1, "name": "alice"}]');
  writeFileSync(path.join(from, "nodes.json"), "[]");
  let text = "";
  const log = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void (text += a.join(" ") + "\n"));
  const err = vi.spyOn(console, "error").mockImplementation(() => {});
  try {
    const code = await command.run(["--from-dir", from, "--out", out, ...(into ? ["--force"] : []), ...(json ? ["--json"] : [])]);
    return { code, out, text, json: json ? JSON.parse(text) : undefined };
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
}

describe("meshfleet import: a policy too large for fleet.yaml", () => {
  it("writes policy.hujson as headscale had it, comments kept, and fleet.yaml names it; the fleet passes check", async () => {
    const text = policy(400);
    const r = await importFrom(text);
    expect(r.code).toBe(0);
    expect(r.json.check.ok).toBe(true);
    expect(r.json.written.map((w) => path.basename(w))).toEqual(["fleet.yaml", "policy.hujson", "coordinator.yaml", "nodes.json", "IMPORT.md"]);
    expect(readFileSync(path.join(r.out, "policy.hujson"), "utf8")).toBe(text);
    const fleetYaml = readFileSync(path.join(r.out, "fleet.yaml"), "utf8");
    expect(fleetYaml).toMatch(/^policy: \.\/policy\.hujson$/m);
    expect(fleetYaml).not.toContain("acls");
    const loaded = await loadFleetDir(r.out);
    expect(loaded.diagnostics).toEqual([]);
    expect((loaded.fleet!.value as { policy: unknown }).policy).toEqual(parseHuJson(text));
    const item = r.json.items.find((i) => i.key === "policy" && i.kind === "mapped")!;
    expect(item.to).toBe("policy.hujson (fleet.yaml policy: ./policy.hujson)");
    expect(item.note).toMatch(/too large for fleet\.yaml \(\d+ bytes of YAML, past meshfleet's 16 KiB limit\)/);
    expect(readFileSync(path.join(r.out, "IMPORT.md"), "utf8")).toContain("`policy` → policy.hujson (fleet.yaml policy: ./policy.hujson)");
  });

  it("a policy the import changed (a key headscale 0.29 does not know, left out) is written as the policy fleet.yaml would hold", async () => {
    const r = await importFrom(policy(400, '\n  "derpMap": {"regions": {}},'));
    expect(r.code).toBe(0);
    expect(r.json.check.ok).toBe(true);
    const written = readFileSync(path.join(r.out, "policy.hujson"), "utf8");
    expect(written).toMatch(/^\/\/ The policy meshfleet import took from .*acl\.hujson, with the changes IMPORT\.md lists/);
    expect(written).not.toContain("derpMap");
    expect((parseHuJson(written) as { acls: unknown[] }).acls).toHaveLength(400);
    expect(r.json.items.find((i) => i.key === "policy.derpMap")?.kind).toBe("unmapped");
  });

  it("the note names the limit fleet.yaml would pass: here its lines (a group of 2,600 members, in 10 KiB)", async () => {
    const r = await importFrom(policy(1, `\n  "groups": {"group:many": [${Array(2600).fill('"a@"').join(",")}]},`).replace(/\n  "groups": \{"group:admins": \["alice@",\],\},/, ""));
    expect(existsSync(path.join(r.out, "policy.hujson"))).toBe(true);
    const item = r.json.items.find((i) => i.key === "policy" && i.kind === "mapped")!;
    expect(item.note).toMatch(/too large for fleet\.yaml \(\d+ lines and list items, past meshfleet's 2500 limit\)/);
    expect(item.note).not.toContain("bytes");
  });

  it("a problem of the inline fleet.yaml that is not a size limit (a policy host that is not an address) leaves the policy inline, and check reports it", async () => {
    const r = await importFrom(policy(20, '\n  "hosts": {"lan": "10.1.0.0/33"},'));
    expect(existsSync(path.join(r.out, "policy.hujson"))).toBe(false);
    expect(readFileSync(path.join(r.out, "fleet.yaml"), "utf8")).toContain("acls:");
    expect(JSON.stringify(r.json.items)).not.toContain("too large");
    expect(r.json.check.ok).toBe(false);
    expect(JSON.stringify(r.json.check)).toContain("10.1.0.0/33");
  });

  it("a policy host named << is written as a quoted key and imports clean (plain, YAML would read it as a merge key)", async () => {
    const r = await importFrom(policy(20, '\n  "hosts": {"<<": "10.1.0.0/16"},'));
    expect(readFileSync(path.join(r.out, "fleet.yaml"), "utf8")).toContain('"<<": 10.1.0.0/16');
    expect(r.json.check.ok, JSON.stringify(r.json.check)).toBe(true);
  });

  it("--force over an import that wrote policy.hujson, with a policy that now fits: the old file is removed, and the output says so", async () => {
    const first = await importFrom(policy(400));
    expect(existsSync(path.join(first.out, "policy.hujson"))).toBe(true);
    const again = await importFrom(policy(20), first.out);
    expect(again.code).toBe(0);
    expect(again.json.check.ok).toBe(true);
    expect(existsSync(path.join(first.out, "policy.hujson"))).toBe(false);
    expect(again.json.removed).toEqual([path.join(first.out, "policy.hujson")]);
    expect(readFileSync(path.join(first.out, "fleet.yaml"), "utf8")).toContain("acls:");
    // The text output names it too.
    await importFrom(policy(400), first.out);
    const text = await importFrom(policy(20), first.out, false);
    expect(text.text).toContain(`removed ${path.join(first.out, "policy.hujson")}: the policy now fits fleet.yaml`);
    expect(existsSync(path.join(first.out, "policy.hujson"))).toBe(false);
    // A policy.hujson the folder's fleet.yaml does not name is not the import's: it stays.
    writeFileSync(path.join(first.out, "policy.hujson"), "{}\n");
    const other = await importFrom(policy(20), first.out);
    expect(other.json.removed).toEqual([]);
    expect(readFileSync(path.join(first.out, "policy.hujson"), "utf8")).toBe("{}\n");
    // Still too large: policy.hujson is rewritten, not removed.
    const large = await importFrom(policy(400), first.out);
    expect(large.json.removed).toEqual([]);
    expect(existsSync(path.join(first.out, "policy.hujson"))).toBe(true);
  });

  it("a policy that fits stays inline in fleet.yaml, with no policy.hujson, as before", async () => {
    const r = await importFrom(policy(20));
    expect(r.code).toBe(0);
    expect(r.json.check.ok).toBe(true);
    expect(existsSync(path.join(r.out, "policy.hujson"))).toBe(false);
    const fleetYaml = readFileSync(path.join(r.out, "fleet.yaml"), "utf8");
    expect(Buffer.byteLength(fleetYaml)).toBeLessThan(LIMITS.fileBytes);
    expect(fleetYaml).toContain("acls:");
    expect(r.json.items.find((i) => i.key === "policy" && i.kind === "mapped")!.to).toBe("fleet.yaml policy");
  });
});
