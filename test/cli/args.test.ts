/**
 * Strict argument parsing and the choice of fleet (issue 13, items 3 and 4):
 * an unknown flag or a stray argument is a usage error (exit 2, with the
 * usage), --stack comes from the flag or the only stack, a mistyped stack
 * lists the stacks, and every fleet command says which fleet it read.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fleetFlags, listStacks, parseArgs, resolveFleet, UsageError, type Flag } from "../../cli/args.ts";
import { command as check } from "../../cli/commands/check.ts";
import { command as hosts } from "../../cli/commands/hosts.ts";
import { command as join } from "../../cli/commands/join.ts";
import { command as options } from "../../cli/commands/options.ts";
import { command as plan } from "../../cli/commands/plan.ts";
import { command as render } from "../../cli/commands/render.ts";

const REPO = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(tmpdir(), "mf-args-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The CLI as a user runs it, from the TypeScript (the prebuilt bundle may be stale while others edit). */
function cli(args: string[], cwd = REPO) {
  const r = spawnSync(process.execPath, [path.join(REPO, "bin", "meshfleet.mjs"), ...args], {
    cwd,
    encoding: "utf8",
    env: { ...process.env, MESHFLEET_TSX: "1", NO_COLOR: "1" },
    timeout: 120_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function usageError(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error("expected a UsageError");
}

const flags: Flag[] = [...fleetFlags, { name: "on", value: true, repeat: true, help: "" }];

describe("parseArgs (node:util, strict)", () => {
  it("reads flags in every spelling", () => {
    expect(parseArgs(["--stack", "home", "--json"], flags).opts).toEqual({ stack: "home", json: true });
    expect(parseArgs(["--stack=home"], flags).opts).toEqual({ stack: "home" });
    expect(parseArgs(["-s", "home"], flags).opts).toEqual({ stack: "home" });
    const r = parseArgs(["--on", "a", "--on=b", "x"], flags, { positionals: ["HOST"] });
    expect(r.lists.on).toEqual(["a", "b"]);
    expect(r.positional).toEqual(["x"]);
  });

  it.each([
    [["--bogus"], /unknown option --bogus; options: --stack, --hosts-dir, --json/],
    [["--stak", "home"], /unknown option --stak \(did you mean --stack\?\)/],
    [["-x"], /unknown option -x/],
    [["--stack"], /--stack needs a value/],
    [["--json=yes"], /--json is a switch and takes no value/],
  ])("%j is a usage error", (argv, msg) => {
    expect(usageError(() => parseArgs(argv, flags))).toMatch(msg);
  });

  it("refuses stray arguments when the command says what it takes", () => {
    expect(usageError(() => parseArgs(["home"], flags, { positionals: [] }))).toBe('unexpected argument "home" (it takes none; flags start with --)');
    expect(usageError(() => parseArgs(["a", "b"], flags, { positionals: ["HOST"] }))).toBe('unexpected argument "b" (it takes HOST)');
  });
});

describe("which fleet", () => {
  const root = (name: string, stacks: string[]) => {
    const r = path.join(tmp, name);
    for (const s of stacks) {
      mkdirSync(path.join(r, "hosts", s), { recursive: true });
      writeFileSync(path.join(r, "hosts", s, "fleet.yaml"), "{}\n");
    }
    mkdirSync(path.join(r, "hosts", "not-a-stack"), { recursive: true }); // no fleet.yaml
    return r;
  };

  it("takes the only stack when there is one", () => {
    const r = root("one", ["home"]);
    expect(listStacks(r)).toEqual(["home"]);
    expect(resolveFleet({}, r)).toEqual({ dir: path.join("hosts", "home"), stack: "home" });
  });

  it("asks which of several, listing them", () => {
    const r = root("two", ["lab", "home"]);
    expect(usageError(() => resolveFleet({}, r))).toBe("which stack? stacks: home, lab; pass --stack home (or -s home)");
    expect(resolveFleet({ stack: "lab" }, r).stack).toBe("lab");
  });

  it("names the stacks when the one asked for does not exist", () => {
    const r = root("typo", ["lab", "home"]);
    expect(usageError(() => resolveFleet({ stack: "hom" }, r))).toBe('no stack "hom": hosts/hom/fleet.yaml does not exist (did you mean home?); stacks: home, lab');
    expect(usageError(() => resolveFleet({ stack: "not-a-stack" }, r))).toMatch(/stacks: home, lab$/);
  });

  it("says so when there is none", () => {
    expect(usageError(() => resolveFleet({}, path.join(tmp, "empty")))).toMatch(/there are none \(no folder under hosts\/ holds a fleet\.yaml\); pass --hosts-dir DIR/);
  });

  it("--hosts-dir wins and names the stack after the folder", () => {
    expect(resolveFleet({ "hosts-dir": "x/y/home" }, tmp)).toEqual({ dir: "x/y/home", stack: "home" });
  });
});

describe("every fleet command refuses what it cannot take", () => {
  it.each([
    [check, ["home"]],
    [hosts, ["--stack", "home", "extra"]],
    [render, ["--out"]],
    [plan, ["--base", "HEAD", "--bogus"]],
    [join, ["phone", "laptop"]],
    [options, ["tailscale", "headscale"]],
  ] as const)("%s", async (c, argv) => {
    await expect(c.run([...argv])).rejects.toBeInstanceOf(UsageError);
  });
});

describe("the CLI as a process", () => {
  it("`check home` (a stray argument) exits 2 with the usage on stderr and nothing on stdout", () => {
    const r = cli(["check", "home"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain('meshfleet check: unexpected argument "home"');
    expect(r.stderr).toContain("usage: meshfleet check");
  });

  it("`hosts -s home` reads the home fleet and says so", () => {
    const r = cli(["hosts", "-s", "home"]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")[0]).toBe("fleet: home (hosts/home)");
    expect(r.stdout).toMatch(/^phone /m);
    // A client keeps traffic outside the tailnet (firewall accept): every port is open, not only the declared ones.
    expect(r.stdout).toMatch(/^laptop .* accept {4}all \(declared: 41641\/udp,22\/tcp\)$/m);
    expect(r.stdout).toMatch(/^exit .* drop {6}41641\/udp,22\/tcp$/m);
    expect(r.stdout).toMatch(/^phone .* - {9}-$/m);
  });

  it.each([
    [["status", "vps"], "status", "hosts go with --on"],
    [["doctor", "vps"], "doctor", "hosts go with --on"],
    [["generations", "laptop"], "generations", "the host goes with --on"],
    [["rollback", "laptop"], "rollback", "the generation with --to"],
    [["up", "vps"], "up", "hosts go with --on"],
    [["preview", "--stack", "lab", "vps"], "preview", "hosts go with --on"],
    [["pin", "vps", "laptop"], "pin", "it takes HOST"],
    [["pin"], "pin", "needs the host to pin"],
  ])("`%s` (a stray or missing argument) exits 2 before touching anything, saying where it belongs", (argv, name, hint) => {
    const r = cli(argv);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain(`meshfleet ${name}: `);
    expect(r.stderr).toContain(hint);
    expect(r.stderr).toContain(`usage: meshfleet ${name}`);
  });

  it("a mistyped stack exits 2 listing the stacks; --version and an unknown command follow the same codes", () => {
    const typo = cli(["check", "--stack", "hom"]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/no stack "hom".*stacks: core, home, home-site, lab, office/);
    const v = cli(["--version"]);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^meshfleet \d+\.\d+\.\d+\n$/);
    expect(cli(["nosuch"]).code).toBe(2);
  });

  it("check prints its diagnostics to stderr and exits 1 on a broken fleet", () => {
    const dir = path.join(tmp, "broken");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "fleet.yaml"), "coordinator: { host: nosuch, serverUrl: https://hs.example.com }\n");
    writeFileSync(path.join(dir, "a.yaml"), "address: 10.0.0.1\ntailscale: { netfilterMode: sometimes }\n");
    const r = cli(["check", "--hosts-dir", dir]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("tailscale.netfilterMode");
    expect(r.stderr).toMatch(/error\(s\) in fleet: broken/);
  });
});
