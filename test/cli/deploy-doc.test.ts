/**
 * docs/deploy.md's commands are real: every `npx meshfleet ...` line names a
 * command cli/main.ts has, and every --flag it passes is one that command's
 * usage lists (the usage is printed from the same flag table parseArgs
 * checks). Every code block is marked run or skipped-with-why for the lab
 * test that runs the guide's blocks themselves (test/lab/guide-lab.test.ts).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { guideBlocks } from "./guide-blocks.ts";

const REPO = join(import.meta.dirname, "..", "..");
const doc = readFileSync(join(REPO, "docs", "deploy.md"), "utf8");
const main = readFileSync(join(REPO, "cli", "main.ts"), "utf8");

/** `npx meshfleet ...` invocations, from code blocks and inline code, comments cut off. */
function invocations(text: string): string[][] {
  const out: string[][] = [];
  for (const m of text.matchAll(/npx meshfleet ([^`\n#]*)/g)) {
    const argv = m[1]!.trim().split(/\s+/).filter(Boolean);
    if (argv.length) out.push(argv);
  }
  return out;
}

async function usageOf(name: string): Promise<string> {
  const loader = new RegExp(`^\\s*${name}: \\(\\) => import\\("\\./commands/([a-z-]+)\\.ts"\\)(?:\\.then\\(\\(m\\) => \\(\\{ command: m\\.(\\w+) \\}\\)\\))?`, "m").exec(main);
  if (!loader) throw new Error(`cli/main.ts has no command "${name}"`);
  const mod = (await import(join(REPO, "cli", "commands", `${loader[1]}.ts`))) as Record<string, { usage: string }>;
  return mod[loader[2] ?? "command"]!.usage;
}

describe("docs/deploy.md", () => {
  const calls = invocations(doc);

  it("has the guide's steps", () => {
    for (const h of ["stack and its secrets", "DNS", "firewall", "What each host needs first", "Pin every host", "meshfleet doctor", "first deploy", "Joining the phone", "When something fails"]) expect(doc).toContain(h);
    for (const port of ["80/tcp", "443/tcp", "3478/udp", "41641/udp"]) expect(doc).toContain(port);
    expect(doc).toContain("openssl rand -base64 32 | pulumi config set --stack mine --secret meshfleet:keySeed");
    expect(calls.length).toBeGreaterThan(15);
  });

  it("uses only commands and flags the CLI has", async () => {
    const problems: string[] = [];
    for (const argv of calls) {
      const [name, ...rest] = argv;
      let usage: string;
      try {
        usage = await usageOf(name!);
      } catch (e) {
        problems.push(`${argv.join(" ")}: ${(e as Error).message}`);
        continue;
      }
      for (const a of rest.filter((x) => x.startsWith("--"))) {
        const flag = a.split("=")[0]!;
        if (!new RegExp(`${flag.replace(/[-]/g, "\\-")}(?![a-z-])`).test(usage)) problems.push(`meshfleet ${argv.join(" ")}: ${flag} is not in \`meshfleet ${name} --help\``);
      }
    }
    expect(problems).toEqual([]);
  });

  it("marks every code block as run by the lab test, or says why not", () => {
    const { blocks, problems } = guideBlocks(doc);
    expect(problems).toEqual([]);
    expect(blocks.filter((b) => b.mode !== "skip").map((b) => b.section)).toEqual([
      "1. The workstation",
      "2. The fleet",
      "3. The stack and its secrets",
      "7. Pin every host's SSH key",
      "8. Preflight: `meshfleet doctor`",
      "9. The first deploy",
      "9. The first deploy",
      "10. Joining the phone",
      "When something fails",
      "When something fails",
      "When something fails",
      "When something fails",
    ]);
    for (const b of blocks.filter((x) => x.mode === "skip")) expect(b.why!.length, `line ${b.line}`).toBeGreaterThan(20);
    // Every meshfleet command in a code block is in a block the lab runs, or its block says why not.
    expect(blocks.filter((b) => b.mode === "skip" && b.text.includes("npx meshfleet")).map((b) => b.section)).toEqual(["Moving to or from Tailscale's service"]);
  });

  it("finds an unmarked block and a marked one", () => {
    expect(guideBlocks("# A\n```sh\nls\n```\n").problems).toEqual(["line 2 (A): a code block without a `<!-- lab: run -->` or `<!-- lab: skip: why -->` line before it"]);
    expect(guideBlocks("# A\n  <!-- lab: skip: no mirror here -->\n  ```sh\n  apt-get update\n  ```\n").blocks).toEqual([{ line: 3, section: "A", lang: "sh", text: "apt-get update", mode: "skip", why: "no mirror here" }]);
  });

  it("catches a flag the CLI does not have", async () => {
    expect(new RegExp(`--on-host(?![a-z-])`).test(await usageOf("status"))).toBe(false);
    expect(new RegExp(`--on(?![a-z-])`).test(await usageOf("status"))).toBe(true);
  });
});
