/**
 * `meshfleet hosts` (issue 13, items 3 and 7): it names the fleet it read,
 * and --json gives lists as JSON arrays (never comma-joined strings or "-").
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { command } from "../../cli/commands/hosts.ts";

async function run(argv: string[]): Promise<string> {
  const lines: string[] = [];
  vi.spyOn(console, "log").mockImplementation((...a) => void lines.push(a.join(" ")));
  expect(await command.run(argv)).toBe(0);
  return lines.join("\n");
}
afterEach(() => vi.restoreAllMocks());

describe("meshfleet hosts", () => {
  it("--json: the stack, its folder, and every list as an array", async () => {
    const out = JSON.parse(await run(["--stack", "home", "--json"]));
    expect(out).toMatchObject({ stack: "home", dir: "hosts/home" });
    const byName = Object.fromEntries(out.hosts.map((h: { host: string }) => [h.host, h]));
    expect(byName["lxc-tailscale"]).toMatchObject({ roles: expect.arrayContaining(["subnet-router"]), routes: expect.arrayContaining([expect.stringMatching(/\/\d+$/)]) });
    expect(byName.phone).toMatchObject({ agent: false, runtime: null, services: [], ports: [] });
    expect(byName.exit).toMatchObject({ exitNode: true, routes: [] });
    for (const h of out.hosts) {
      for (const k of ["roles", "services", "tags", "routes", "ports"]) expect(Array.isArray(h[k]), `${h.host}.${k}`).toBe(true);
      const strings = JSON.stringify(h).match(/"(?:[^"\\]|\\.)*"/g) ?? [];
      expect(strings.filter((x) => x === '"-"' || x.includes(",")), h.host).toEqual([]);
      for (const p of h.ports) expect(p).toEqual({ port: expect.any(Number), proto: expect.stringMatching(/^(tcp|udp)$/), from: expect.stringMatching(/^(any|tailnet)$/) });
    }
  });

  it("the table names the fleet first", async () => {
    const text = await run(["-s", "lab"]);
    expect(text.split("\n")[0]).toBe("fleet: lab (hosts/lab)");
    expect(text).toMatch(/^HOST +ROLES +ADDRESS/m);
  });
});
