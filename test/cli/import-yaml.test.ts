/**
 * What `meshfleet import` writes as YAML reads back as the same value
 * through the fleet loader: a policy host named `<<` (a legal name in
 * headscale's policy) stays a key, not a YAML merge key.
 */
import { describe, expect, it } from "vitest";
import { yamlText } from "../../cli/commands/import.ts";
import { parseYaml } from "../../core/load.ts";

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
});
