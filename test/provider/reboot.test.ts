/**
 * `up --reboot-check` (issue 18 §4), the pure parts: what the bundle says must
 * come back, how one check's output is read (each missing piece named), the
 * reboot script, the deploy's message, the Generation diff, and how the flag
 * reaches the program (MESHFLEET_REBOOT_CHECK, read by HostAgent). The reboot
 * itself is proved on the lab: test/cli/reboot-lab.test.ts.
 */
import { describe, expect, it } from "vitest";
import { UsageError } from "../../cli/args.ts";
import { rebootCheckProblem, rebootCheckValue } from "../../cli/commands/deploy.ts";
import { preview, rebootCheckLines, up } from "../../cli/commands/up.ts";
import { rebootCheckFor } from "../../components/hostAgent.ts";
import { generation } from "../../provider/resources/generation.ts";
import { parseRebootCheck, rebootCheckScript, rebootExpect, rebootFailure, rebootScript } from "../../provider/resources/reboot.ts";
import type { GenerationInputs, GenerationOutputs } from "../../provider/types.ts";

const HASH = "a".repeat(64);
const agent = { localPath: "/x/agent.mjs", sha256: "b".repeat(64), remotePath: "/usr/local/lib/meshfleet/meshfleet-agent.mjs", node: "node", stateDir: "/var/lib/meshfleet" };
const bundle = (o: { firewall?: unknown; tailscale?: unknown } = {}) =>
  JSON.stringify({
    hash: HASH,
    firewall: "firewall" in o ? o.firewall : { sets: [], chains: [] },
    tailscale: "tailscale" in o ? o.tailscale : { cli: "/opt/ts/bin/tailscale", routes: ["192.168.8.0/24"], exitNode: false },
  });

const status = (o: Partial<{ hash: string | null; generation: number; pendingConfirm: unknown }> = {}) =>
  JSON.stringify({ host: "router", generation: 4, hash: HASH, pendingConfirm: null, lastSwitch: null, ...o });

/** What `status --json --verify` prints: the status with verify embedded (a status that is not JSON as it is). */
function inspected(st: string, verify: string): string {
  try {
    return JSON.stringify({ ...JSON.parse(st), verify: JSON.parse(verify) });
  } catch {
    return st;
  }
}

/** One check's stdout, as rebootCheckScript's sections print it. */
function out(o: { boot?: string; nft?: string; ts?: string; prefs?: string; status?: string; verify?: string } = {}): string {
  return [
    "@@meshfleet-reboot-boot@@", o.boot ?? "11111111-2222-3333-4444-555555555555",
    "@@meshfleet-reboot-nft@@", o.nft ?? "loaded",
    // As tailscale prints it: no newline after the JSON (the script puts one before each mark).
    "@@meshfleet-reboot-ts-status@@", (o.ts ?? JSON.stringify({ BackendState: "Running", Peer: {} }, null, 2)) + "\n",
    "@@meshfleet-reboot-ts-prefs@@", o.prefs ?? JSON.stringify({ AdvertiseRoutes: ["192.168.8.0/24"] }),
    "@@meshfleet-reboot-inspect@@", inspected(o.status ?? status(), o.verify ?? JSON.stringify({ drift: [] })),
  ].join("\n");
}

describe("rebootExpect: what must come back, from the bundle", () => {
  it.each([
    ["firewall and tailscale with a route", bundle(), { hash: HASH, firewall: true, tailscale: { cli: "/opt/ts/bin/tailscale", routes: ["192.168.8.0/24"] } }],
    ["no firewall, no tailscale", bundle({ firewall: null, tailscale: null }), { hash: HASH, firewall: false, tailscale: null }],
    ["an exit node advertises both default routes", bundle({ tailscale: { cli: "tailscale", routes: [], exitNode: true } }), { hash: HASH, firewall: true, tailscale: { cli: "tailscale", routes: ["0.0.0.0/0", "::/0"] } }],
  ])("%s", (_n, b, want) => expect(rebootExpect(b)).toEqual(want));
});

describe("parseRebootCheck: each missing piece named", () => {
  const e = rebootExpect(bundle());
  it.each([
    ["all back", out(), []],
    ["another generation", out({ status: status({ hash: "c".repeat(64), generation: 3 }) }), [`generation: the host runs ${"c".repeat(12)} (generation 3), not ${HASH.slice(0, 12)}`]],
    ["no generation", out({ status: status({ hash: null, generation: 0 }) }), [`generation: the host runs no generation, not ${HASH.slice(0, 12)}`]],
    ["firewall table missing", out({ nft: "missing" }), ["firewall: table inet meshfleet is not loaded"]],
    ["tailscale stopped", out({ ts: JSON.stringify({ BackendState: "Stopped" }) }), ["tailscale: BackendState is Stopped, expected Running"]],
    ["tailscaled not running at all", out({ ts: "", prefs: "" }), ["tailscale: BackendState is unavailable (`tailscale status --json` did not answer), expected Running", "routes: unknown (`tailscale debug prefs` did not answer); expected 192.168.8.0/24 advertised"]],
    ["route not advertised", out({ prefs: JSON.stringify({ AdvertiseRoutes: null }) }), ["routes: not advertised: 192.168.8.0/24"]],
    ["drift", out({ verify: JSON.stringify({ drift: [{ kind: "unit", subject: "tailscaled.service", detail: "is disabled, expected enabled" }] }) }), ["drift: unit tailscaled.service: is disabled, expected enabled"]],
  ])("%s", (_n, stdout, missing) => {
    const f = parseRebootCheck("router", stdout, e);
    expect(f.missing).toEqual(missing);
    expect(f.bootId).toBe("11111111-2222-3333-4444-555555555555");
  });

  it("a host without firewall or tailscale is checked for its generation and drift only", () => {
    const f = parseRebootCheck("nas", out({ nft: "missing", ts: "", prefs: "" }), rebootExpect(bundle({ firewall: null, tailscale: null })));
    expect(f.missing).toEqual([]);
    expect(f.generation).toBe(4);
  });

  it("an agent that does not answer in JSON is an error (the caller keeps waiting)", () => {
    expect(() => parseRebootCheck("router", out({ status: "node: not found" }), e)).toThrow(/did not print JSON/);
  });
});

describe("the scripts", () => {
  it("the reboot prints the boot id, then leaves the reboot to a timer of PID 1", () => {
    const s = rebootScript();
    expect(s.indexOf("cat /proc/sys/kernel/random/boot_id")).toBeLessThan(s.indexOf("systemd-run"));
    expect(s).toMatch(/systemd-run .*--on-active=2 .*systemctl reboot --no-block$/);
  });
  it("each mark of the check stands on a line of its own, whatever the line before ended with", () => {
    for (const m of rebootCheckScript(agent, rebootExpect(bundle())).matchAll(/echo (@@meshfleet-reboot-[a-z-]+@@)/g)) expect(rebootCheckScript(agent, rebootExpect(bundle()))).toContain(`echo; echo ${m[1]}`);
  });
  it("the check asks tailscale only where it is managed, with the bundle's CLI", () => {
    expect(rebootCheckScript(agent, rebootExpect(bundle()))).toContain("timeout 10 /opt/ts/bin/tailscale status --json");
    expect(rebootCheckScript(agent, rebootExpect(bundle({ tailscale: null })))).not.toContain("tailscale");
  });
});

it("the failure names the host, what is missing, that nothing was rolled back, and the fix", () => {
  expect(rebootFailure("lxc-tailscale", HASH, "the host came back (new boot 1111aaaa) but not whole within 180s", ["tailscale: BackendState is Stopped, expected Running"]).message).toMatchInlineSnapshot(`
    "host lxc-tailscale: --reboot-check: the host came back (new boot 1111aaaa) but not whole within 180s:
        tailscale: BackendState is Stopped, expected Running
        Generation aaaaaaaaaaaa was confirmed before the reboot, so it stays (not rolled back). Fix what is named and run \`meshfleet up --reboot-check --on lxc-tailscale\` again, or go back: \`meshfleet rollback --on lxc-tailscale\`"
  `);
});

describe("Generation diff with rebootCheck", () => {
  const olds = { host: "r", hash: HASH, files: {}, units: {}, sysctl: {}, firewall: "f", tailscale: "t", agent, connection: { name: "r", host: "10.0.0.1", port: 22, user: "root", hostKeys: ["ssh-ed25519 AAAA"] }, confirmTimeoutSeconds: 120, generation: 4, status: "{}", drift: [] } as GenerationOutputs;
  const news = (x: Partial<GenerationInputs> = {}) => ({ ...olds, bundle: "{}", ...x }) as unknown as GenerationInputs;
  it("unchanged without it", () => expect(generation.diff(olds, news()).changes).toBe(false));
  it("an update of its own with it (the host reboots though nothing else changed)", () => expect(generation.diff(olds, news({ rebootCheck: true }))).toMatchObject({ changes: true, detailedDiff: { rebootCheck: "update" }, replaces: [] }));
  it("never for a bootstrap generation", () => expect(generation.diff({ ...olds, once: true }, news({ once: true, rebootCheck: true })).changes).toBe(false));
});

describe("the flag reaches the program", () => {
  it.each([
    [undefined, "router", false],
    ["", "router", false],
    ["*", "router", true],
    ["router", "router", true],
    ["vps, router", "router", true],
    ["routerx", "router", false],
  ])("MESHFLEET_REBOOT_CHECK=%j for %s: %s", (v, h, want) => expect(rebootCheckFor(h, v)).toBe(want));

  it("the hosts --on picked (not the coordinator brought along), else every host", () => {
    expect(rebootCheckValue(["lxc-tailscale"])).toBe("lxc-tailscale");
    expect(rebootCheckValue(undefined)).toBe("*");
  });

  it.each([
    [{ verb: "up" as const, rebootCheck: true }, null],
    [{ verb: "up" as const, rebootCheck: false, expectNoChanges: true }, null],
    [{ verb: "up" as const, rebootCheck: true, expectNoChanges: true }, /reboot is a change of its own/],
    [{ verb: "refresh" as const, rebootCheck: true }, /only `meshfleet up` reboots hosts/],
  ])("%j", (o, want) => (want === null ? expect(rebootCheckProblem(o)).toBeNull() : expect(rebootCheckProblem(o)).toMatch(want)));

  it("`up --reboot-check` is parsed into the deploy (refused here with --expect-no-changes, before anything runs)", async () => {
    await expect(up.run(["--stack", "lab", "--reboot-check", "--expect-no-changes", "--yes"])).rejects.toThrow(/--reboot-check with --expect-no-changes/);
  });
  it("preview has no --reboot-check", async () => {
    await expect(preview.run(["--stack", "lab", "--reboot-check"])).rejects.toBeInstanceOf(UsageError);
  });

  it("the summary lines after up say which host came back", () => {
    const base = { verb: "up" as const, stack: "s", ok: true, changes: {}, hosts: [], outputs: {}, errors: [], warnings: [], ms: 1, backend: "" };
    const g = { urn: "u", type: "meshfleet:host:Generation", name: "router-agent-generation", host: "router", op: "update", diff: [{ key: "rebootCheck", kind: "update" }], ms: 23_400, errors: [], done: true };
    expect(rebootCheckLines({ ...base, resources: [g] })).toEqual(["  --reboot-check: router: came back with its generation active, firewall, tailscale and routes, no drift (switch + reboot + checks 23.4s)"]);
    expect(rebootCheckLines({ ...base, ok: false, resources: [{ ...g, failed: true }] })).toEqual(["  --reboot-check: router: did not come back whole (see the error above)"]);
    expect(rebootCheckLines({ ...base, resources: [] })).toEqual(["  --reboot-check: no host was rebooted (no agent host selected)"]);
  });
});
