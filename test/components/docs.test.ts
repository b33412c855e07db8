/**
 * The components' public contract reads like sst's: every field of every
 * `*Args` interface says its default (when optional) and shows an example;
 * the stack files only hold settings index.ts reads and no secret in clear.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { REPO } from "./fixtures.ts";

describe("component Args documentation", () => {
  const dir = join(REPO, "components");
  const missing: string[] = [];
  let fields = 0;
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".ts"))) {
    const src = ts.createSourceFile(f, readFileSync(join(dir, f), "utf8"), ts.ScriptTarget.ES2022, true);
    src.forEachChild((n) => {
      if (!ts.isInterfaceDeclaration(n) || !/Args$/.test(n.name.text)) return;
      for (const m of n.members) {
        if (!ts.isPropertySignature(m)) continue;
        fields++;
        const name = `${f}: ${n.name.text}.${m.name.getText(src)}`;
        const tags = ts.getJSDocTags(m).map((t) => t.tagName.text);
        const hasDoc = ts.getJSDocCommentsAndTags(m).length > 0;
        if (!hasDoc) missing.push(`${name}: no TSDoc`);
        if (m.questionToken && !tags.includes("default")) missing.push(`${name}: optional without @default`);
        if (!tags.includes("example")) missing.push(`${name}: no @example`);
      }
    });
  }
  it("every field has TSDoc and an @example, optional ones a @default", () => {
    expect(fields).toBeGreaterThan(50);
    expect(missing).toEqual([]);
  });
});

describe("stack files", () => {
  const read = new Set(["meshfleet:hostsDir", "meshfleet:keySeed", "meshfleet:sshPrivateKeyPath", "meshfleet:agentPath", "meshfleet:confirmTimeoutSeconds", "meshfleet:headscaleBinaryPath", "meshfleet:imageDigests"]);
  const index = readFileSync(join(REPO, "index.ts"), "utf8");
  it.each(["lab", "home"])("Pulumi.%s.yaml sets only settings index.ts reads, no secret in clear, and its fleet exists", (stack) => {
    const doc = parse(readFileSync(join(REPO, "stacks", `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
    for (const k of Object.keys(doc.config)) {
      expect(read.has(k), k).toBe(true);
      expect(index).toContain(`"${k.replace("meshfleet:", "")}"`);
    }
    const seed = doc.config["meshfleet:keySeed"];
    expect(seed === undefined || (typeof seed === "object" && seed !== null && "secure" in seed)).toBe(true);
    expect(readdirSync(join(REPO, String(doc.config["meshfleet:hostsDir"])))).toContain("fleet.yaml");
  });
});
