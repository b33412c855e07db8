/**
 * `meshfleet options` (issue 13, item 6): each option's type, allowed
 * values, default, example and the profiles that set it; an unknown module
 * is an error naming the modules; docs/options.md is the generated
 * reference and must be regenerated when an option changes.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { UsageError } from "../../cli/args.ts";
import { allOptionDocs, command, formatMarkdown, optionGroups } from "../../cli/commands/options.ts";
import { JARGON } from "./help-words.ts";

const REPO = path.resolve(import.meta.dirname, "../..");
const byPath = (p: string) => allOptionDocs().find((d) => d.path === p)!;

async function output(argv: string[]): Promise<string> {
  const lines: string[] = [];
  const spy = vi.spyOn(console, "log").mockImplementation((...a) => void lines.push(a.join(" ")));
  const write = vi.spyOn(process.stdout, "write").mockImplementation((s) => (lines.push(String(s)), true));
  try {
    expect(await command.run(argv)).toBe(0);
  } finally {
    spy.mockRestore();
    write.mockRestore();
  }
  return lines.join("\n");
}
afterEach(() => vi.restoreAllMocks());

describe("meshfleet options", () => {
  it("lists the allowed values of an enumeration", () => {
    expect(byPath("tailscale.netfilterMode")).toMatchObject({ values: ["on", "nodivert", "off"], default: "on", type: 'one of "on", "nodivert", "off"' });
    expect(byPath("headscale.logLevel").values).toEqual(["panic", "fatal", "error", "warn", "info", "debug", "trace"]);
  });

  it("gives a type, a default or `required`, and an example a user can copy", () => {
    expect(byPath("tailscale.advertiseRoutes")).toMatchObject({ type: expect.stringMatching(/^list of \(string: a CIDR such as/), default: [], example: ["192.168.8.0/24"] });
    expect(byPath("tailscale.tags").example).toEqual(["tag:router"]);
    expect(byPath("tailscale.port")).toMatchObject({ type: "integer 1..65535", default: 41641 });
    expect(byPath("address")).toMatchObject({ module: "host", required: true });
  });

  it("names the profiles that set an option", () => {
    expect(byPath("tailscale.enable").setBy.map((s) => s.profile)).toEqual(["subnet-router", "exit-node", "client"]);
    expect(byPath("headscale.enable").setBy).toEqual([{ profile: "coordinator", value: true }]);
  });

  it("`options tailscale` prints the module's options with type, values and profile", async () => {
    const text = await output(["tailscale"]);
    expect(text).toContain("tailscale.netfilterMode\n    How tailscaled manages netfilter rules.\n    type: one of \"on\", \"nodivert\", \"off\"\n    default: \"on\"");
    expect(text).toContain("set by: subnet-router (true), exit-node (true), client (true)");
    expect(text).not.toMatch(/^headscale\./m);
  });

  it("`options nosuch` is a usage error naming the modules", async () => {
    const e = await command.run(["nosuch"]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).toBe(`no module or option "nosuch"; modules: ${optionGroups().join(", ")}`);
    expect((e as Error).message).toMatch(/modules: host, headscale, .*tailscale.*, fleet$/);
    const near = await command.run(["tailscal"]).catch((x: unknown) => x);
    expect((near as Error).message).toMatch(/did you mean tailscale\?/);
  });

  it("docs/options.md is up to date (regenerate: meshfleet options --markdown > docs/options.md)", async () => {
    const doc = readFileSync(path.join(REPO, "docs", "options.md"), "utf8");
    expect(doc).toBe(formatMarkdown());
    expect(await output(["--markdown"])).toBe(doc);
    expect(doc).toContain("### `tailscale.netfilterMode`");
    for (const word of JARGON) expect(doc).not.toMatch(word);
  });
});
