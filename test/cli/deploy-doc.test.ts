/**
 * docs/deploy.md's commands are real: every `npx meshfleet ...` line names a
 * command cli/main.ts has, and every --flag it passes is one that command's
 * usage lists (the usage is printed from the same flag table parseArgs
 * checks). The lab proof of status/doctor/rollback is test/cli/fleet-lab.test.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

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

  it("catches a flag the CLI does not have", async () => {
    expect(new RegExp(`--on-host(?![a-z-])`).test(await usageOf("status"))).toBe(false);
    expect(new RegExp(`--on(?![a-z-])`).test(await usageOf("status"))).toBe(true);
  });
});
