/**
 * What `meshfleet import` writes as YAML reads back as the same value
 * through the fleet loader: a policy host named `<<` (a legal name in
 * headscale's policy) stays a key, not a YAML merge key.
 */
import { describe, expect, it } from "vitest";
import { limitPassed, yamlText } from "../../cli/commands/import.ts";
import { LIMITS, parseYaml } from "../../core/load.ts";

describe("import's YAML", () => {
  it("reads back through the loader as the value written, a key `<<` included", () => {
    const values = [
      { policy: { hosts: { "<<": "100.64.0.1/32", nas: "100.64.0.2/32" } } },
      { policy: { groups: { "group:admins": ["alice@"] }, acls: [{ action: "accept", src: ["group:admins"], dst: ["<<:22"] }] } },
      { a: { "<<": { b: 1 } }, c: ["<<", "x"] },
    ];
    for (const v of values) {
      const text = yamlText(v);
      const r = parseYaml(text, "fleet.yaml", true);
      expect(r.diagnostics, text).toEqual([]);
      expect(r.value, text).toEqual(v);
    }
  });

  it("writes lists of plain values on one line", () => {
    expect(yamlText({ src: ["group:admins", "tag:server"] })).toBe("src: [group:admins, tag:server]\n");
  });

  it("only the loader's limits move a policy out of fleet.yaml: every other problem of the text stays for check", () => {
    const problems = (text: string) => parseYaml(text, "fleet.yaml", true).diagnostics;
    const cases: [string, string, boolean][] = [
      ["bytes", `policy:\n  hosts:\n${Array.from({ length: 700 }, (_, i) => `    host-${i}: 10.0.${i % 250}.0/24`).join("\n")}\n`, true],
      ["lines", `acls: [${Array.from({ length: LIMITS.lines + 10 }, () => "1").join(",")}]\n`, true],
      ["a merge key", "hosts:\n  <<: 10.1.0.0/16\n", false],
      ["two documents", "a: 1\n---\nb: 2\n", false],
      ["an unknown tag", "a: !nope 1\n", false],
      ["syntax", "a: [1, 2\n", false],
    ];
    for (const [what, text, limit] of cases) {
      const ds = problems(text);
      expect(ds.length, what).toBeGreaterThan(0);
      expect(ds.some((d) => limitPassed(d) !== undefined), `${what}: ${JSON.stringify(ds)}`).toBe(limit);
    }
  });
});
