/**
 * The provider's diff semantics and its headscale resources, table-driven:
 * - olds are the previous *outputs* (extra keys, computed outputs): only the
 *   keys of news count, so an unchanged resource is no update;
 * - secret inputs arrive wrapped and are compared unwrapped;
 * - a generation's diff names files by path and never carries content;
 * - route approval fails naming host and route, and revokes an approval the
 *   fleet no longer declares; a pre-auth key's output never reaches the log.
 * The headscale CLI is answered by a recorder standing in for ssh (the real
 * CLI is proved in test/components/headscale-cli.real.test.ts).
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { provider, typeOfUrn } from "../../provider/provider.ts";
import { generation } from "../../provider/resources/generation.ts";
import { preAuthKey, routeApproval, user } from "../../provider/resources/headscale.ts";
import { container, pctScript } from "../../provider/resources/proxmox.ts";
import { UNKNOWN } from "../../provider/resources/common.ts";
import { session, type RunResult } from "../../provider/ssh.ts";
import { bundleSummary } from "../../provider/summary.ts";
import type { ContainerInputs, ContainerOutputs, GenerationInputs, GenerationOutputs, PreAuthKeyInputs, RouteApprovalInputs, SshConnection } from "../../provider/types.ts";
import { SECRET_SIG, SIG_KEY } from "../../provider/wire.ts";
import { bundle, file, nftTable } from "../agent/helpers.ts";

const wrap = (value: unknown) => ({ [SIG_KEY]: SECRET_SIG, value });
const conn: SshConnection = { name: "vps", host: "203.0.113.10", port: 22, user: "root", hostKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIvps"] };
const urn = (type: string, name: string) => `urn:pulumi:lab::meshfleet::meshfleet:index:Mesh$meshfleet:index:HostAgent$${type}::${name}`;

function genInputs(b: ReturnType<typeof bundle>): GenerationInputs {
  return {
    host: "router",
    connection: conn,
    agent: { localPath: "/x/agent.mjs", sha256: "a".repeat(64), remotePath: "/usr/local/lib/meshfleet/meshfleet-agent.mjs", node: "node", stateDir: "/var/lib/meshfleet" },
    bundle: JSON.stringify(b),
    confirmTimeoutSeconds: 120,
    once: false,
    ...bundleSummary(b),
  };
}
/** What create would have stored: inputs minus the bundle, plus what the agent said. */
function genOutputs(i: GenerationInputs): GenerationOutputs {
  const { bundle: _b, ...rest } = i;
  return { ...rest, generation: 3, status: '{"generation":3}', drift: [] };
}

const SECRET = "hskey-auth-0123456789abcdef-secret";
const b1 = () => bundle({ files: [file("/etc/app.conf", "v=1\n"), file("/etc/tailscale/authkey", SECRET, { secret: true, mode: "0600" })] });

describe("Generation diff", () => {
  it("an unchanged generation is no update, though olds are outputs with more keys", () => {
    const news = genInputs(b1());
    expect(generation.diff(genOutputs(news), news)).toMatchObject({ changes: false });
  });

  it("through the provider: news with wrapped secrets against plain outputs is still no update", async () => {
    const news = genInputs(b1());
    const wrapped = { ...news, bundle: wrap(news.bundle), sshPrivateKey: wrap("KEY") };
    const r = await provider.diffDetailed("router", urn("meshfleet:host:Generation", "g"), { ...genOutputs(news), sshPrivateKey: "KEY" }, wrapped);
    expect(r.changes).toBe(false);
    // check hands the inputs back wrapped: the engine keeps them secret.
    const c = await provider.check!(urn("meshfleet:host:Generation", "g"), {}, wrapped);
    expect(c.inputs.bundle).toEqual(wrap(news.bundle));
    expect(c.failures).toEqual([]);
  });

  it("a changed secret file is named by path; its content is nowhere in the diff", () => {
    const old = genInputs(b1());
    const b2 = bundle({ files: [file("/etc/app.conf", "v=1\n"), file("/etc/tailscale/authkey", "hskey-auth-NEW-secret-value", { secret: true, mode: "0600" }), file("/etc/new.conf", "n\n")] });
    const d = generation.diff(genOutputs(old), genInputs(b2));
    expect(d.changes).toBe(true);
    expect(d.detailedDiff).toEqual({ hash: "update", 'files["/etc/tailscale/authkey"]': "update", 'files["/etc/new.conf"]': "add" });
    expect(JSON.stringify(d)).not.toContain("secret-value");
    // What preview --diff displays of the file: mode, owner, digest; never the content.
    expect(JSON.stringify(genInputs(b2).files)).not.toContain("hskey-auth");
  });

  it("a firewall whose input policy changes is an update of firewallPolicy too; a state from before firewallPolicy existed is no update for that alone", () => {
    const open = bundle({ firewall: nftTable([]) });
    const closedTable = nftTable([]);
    closedTable.chains[0].hook!.policy = "drop";
    const closed = bundle({ firewall: closedTable });
    expect(bundleSummary(open).firewallPolicy).toBe("input accept");
    expect(bundleSummary(closed).firewallPolicy).toBe("input drop");
    expect(bundleSummary(bundle()).firewallPolicy).toBe("");
    const d = generation.diff(genOutputs(genInputs(open)), genInputs(closed));
    expect(d.detailedDiff).toMatchObject({ firewall: "update", firewallPolicy: "update" });
    const { firewallPolicy: _none, ...older } = genOutputs(genInputs(open));
    expect(generation.diff(older, genInputs(open))).toMatchObject({ changes: false });
    expect(generation.diff(older, genInputs(closed)).detailedDiff).not.toHaveProperty("firewallPolicy");
  });

  it("drift found by read is an update on the drifted path", () => {
    const news = genInputs(b1());
    const olds = { ...genOutputs(news), units: { "headscale.service": "drift: is inactive, expected active" }, drift: [{ kind: "unit", subject: "headscale.service", detail: "is inactive, expected active" }] };
    expect(generation.diff(olds, { ...news, units: { "headscale.service": "abc" } }).detailedDiff).toEqual({ 'units["headscale.service"]': "update" });
    const fw = { ...genOutputs(news), drift: [{ kind: "nftables", subject: "table inet meshfleet", detail: "missing" }] };
    expect(generation.diff(fw, news).detailedDiff).toEqual({ firewall: "update" });
  });

  it("a bootstrap generation (once) is never updated; a new host name replaces", () => {
    const news = { ...genInputs(b1()), once: true };
    const changed = { ...genInputs(bundle({ files: [file("/etc/app.conf", "v=9\n")] })), once: true };
    expect(generation.diff(genOutputs(news), changed).changes).toBe(false);
    const moved = generation.diff(genOutputs(genInputs(b1())), { ...genInputs(b1()), host: "router2" });
    expect(moved).toMatchObject({ changes: true, replaces: ["host"], deleteBeforeReplace: true });
  });

  it("a host with no pin fails check with the fix", async () => {
    const c = await provider.check!(urn("meshfleet:host:Generation", "g"), {}, { ...genInputs(b1()), connection: { ...conn, hostKeys: [] } });
    expect(c.failures).toEqual([
      {
        property: "connection",
        reason: "host vps (203.0.113.10): no pinned SSH host key, so nothing is sent to it. Fix: `npx meshfleet pin vps` (shows the fingerprint and records it), or set ssh.hostKey in its host file",
      },
    ]);
  });
});

describe("Generation create refuses an agent file other than the one the program hashed", () => {
  afterEach(() => vi.restoreAllMocks());
  it("a rebuilt or half-written agent: nothing is sent to the host", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "mf-agent-race-"));
    const agent = path.join(dir, "meshfleet-agent.mjs");
    writeFileSync(agent, "");
    const run = vi.spyOn(session, "run");
    const i = genInputs(b1());
    const err = await generation.create({ ...i, agent: { ...i.agent, localPath: agent } }).catch((e: Error) => e);
    rmSync(dir, { recursive: true, force: true });
    expect(String(err)).toMatch(new RegExp(`^Error: the agent bundle ${agent} changed while this deploy ran \\(0 bytes, sha256 e3b0c44298fc; the program read aaaaaaaaaaaa\\); nothing was sent to router\\.`));
    expect(run).not.toHaveBeenCalled();
  });
});

describe("preview with values not known yet", () => {
  it("a generation whose bundle waits on a new key diffs as an update of hash and files", () => {
    const news = { ...genInputs(b1()), hash: UNKNOWN, files: UNKNOWN as never, units: UNKNOWN as never, bundle: UNKNOWN };
    expect(generation.diff(genOutputs(genInputs(b1())), news).detailedDiff).toMatchObject({ hash: "update", files: "update", units: "update" });
  });
});

describe("Proxmox container", () => {
  afterEach(() => vi.restoreAllMocks());
  const ct: ContainerInputs = { host: "router", connection: conn, ctid: 205, mode: "create", config: ["dev0: /dev/net/tun"], pctCommands: [["pct", "create", "205", "local:vztmpl/debian-12.tar.zst"]] };
  const outs: ContainerOutputs = { ...ct, status: "status: running", missingConfig: [] };
  const answer = (stdout: string) => vi.spyOn(session, "run").mockResolvedValue({ code: 0, stdout, stderr: "" });

  it("read: a CT meshfleet created and that is gone is gone (the next up creates it); an adopted one stays and is re-checked", async () => {
    answer("status: missing\n@@missing@@\ndev0: /dev/net/tun\n");
    expect(await container.read("205", outs)).toBeNull();
    // Adopted: kept, and the next up's pct script says the CT is missing (see scripts.test.ts).
    const adopted = (await container.read("205", { ...outs, mode: "adopt" }))!;
    expect(adopted.status).toBe("status: missing");
    expect(container.diff(adopted, { ...ct, mode: "adopt" }).changes).toBe(true);
    answer("status: running\n@@missing@@\ndev0: /dev/net/tun\n");
    const r = (await container.read("205", outs))!;
    expect(r.missingConfig).toEqual(["dev0: /dev/net/tun"]);
    expect(container.diff(r, ct)).toMatchObject({ changes: true, detailedDiff: { status: "update" } });
    expect(container.diff(outs, ct).changes).toBe(false);
    expect(container.diff(outs, { ...ct, ctid: 206 })).toMatchObject({ replaces: ["ctid"] });
  });

  it("every pct value is its own quoted argument", () => {
    const s = pctScript("router", { ...ct, pctCommands: [["pct", "set", "205", "--description", "it's; rm -rf /"]], mode: "adopt" });
    expect(s).toContain(`pct set 205 --description 'it'"'"'s; rm -rf /'`);
  });
});

describe("provider plumbing", () => {
  it.each([
    ["urn:pulumi:lab::meshfleet::meshfleet:index:Mesh$meshfleet:host:Generation::lab-vps-agent-generation", "meshfleet:host:Generation"],
    ["urn:pulumi:lab::meshfleet::meshfleet:headscale:User::u", "meshfleet:headscale:User"],
  ])("typeOfUrn(%s)", (u, t) => expect(typeOfUrn(u)).toBe(t));

  it("an unknown type fails naming it", async () => {
    await expect(provider.create!(urn("meshfleet:host:Nope", "x"), {})).rejects.toThrow(/has no resource type meshfleet:host:Nope/);
  });
});

describe("headscale resources (ssh answered by a recorder)", () => {
  const logDir = mkdtempSync(path.join(tmpdir(), "mf-prov-log-"));
  process.env.MESHFLEET_PROVIDER_LOG = path.join(logDir, "provider.log");
  afterEach(() => vi.restoreAllMocks());
  afterAll(() => rmSync(logDir, { recursive: true, force: true }));

  /** Answer each remote script by the first matching pattern; record the scripts. */
  function answer(rules: [RegExp, (script: string) => Partial<RunResult>][]) {
    const seen: string[] = [];
    vi.spyOn(session, "run").mockImplementation(async (_c, script) => {
      seen.push(script);
      for (const [re, f] of rules) if (re.test(script)) return { code: 0, stdout: "", stderr: "", ...f(script) };
      return { code: 1, stdout: "", stderr: `unexpected: ${script}` };
    });
    return seen;
  }
  const base = { cli: { runtime: "systemd" as const, binary: "/usr/local/bin/headscale" }, connection: conn };
  const ra: RouteApprovalInputs = { ...base, host: "router", hostname: "router", routes: ["192.168.8.0/24"], exitNode: false, trigger: "h1", timeoutSeconds: 0 };
  const nodes = (approved: string[], available = ["192.168.8.0/24", "192.168.9.0/24"]) => JSON.stringify([{ id: 5, name: "router", given_name: "router", tags: ["tag:router"], approved_routes: approved, available_routes: available }], null, "\t");

  it("route approval fails naming host and route when headscale did not approve a declared route, after one policy reload", async () => {
    const seen = answer([
      [/nodes list/, () => ({ stdout: nodes([]) })],
      [/^systemctl kill --kill-who=main --signal=HUP headscale\.service$/, () => ({})],
    ]);
    await expect(routeApproval.create({ ...ra, timeoutSeconds: 2 })).rejects.toThrow(
      `host router: route 192.168.8.0/24 is declared in the fleet but headscale did not approve it (approved: none); make autoApprovers.routes["192.168.8.0/24"] in the policy cover the node's owner or tags (tag:router), then redeploy`,
    );
    expect(seen.filter((x) => x.includes("HUP"))).toHaveLength(1);
  });

  it("route approval has headscale reload its policy once when an announced route is not approved (announced before the policy was loaded)", async () => {
    let hup = false;
    const seen = answer([
      [/nodes list/, () => ({ stdout: nodes(hup ? ["192.168.8.0/24"] : []) })],
      [/kill --signal=HUP/, () => ((hup = true), {})],
    ]);
    const out = await routeApproval.create({ ...ra, cli: { runtime: "docker", container: "hs" }, timeoutSeconds: 10 });
    expect(out.outs).toMatchObject({ nodeId: 5, approvedRoutes: ["192.168.8.0/24"] });
    expect(seen.filter((x) => x.includes("HUP"))).toEqual(["docker kill --signal=HUP hs"]);
    // A route the node does not announce yet is waited for; no reload for it.
    hup = false;
    const waiting = answer([[/nodes list/, () => ({ stdout: nodes([], []) })]]);
    await expect(routeApproval.create(ra)).rejects.toThrow(/does not announce it to headscale/);
    expect(waiting.some((x) => x.includes("HUP"))).toBe(false);
  });

  it("a policy reload that fails while headscale restarts is tried again, and the last failure is said if approval never comes", async () => {
    let tries = 0;
    let approved = false;
    const seen = answer([
      [/nodes list/, () => ({ stdout: nodes(approved ? ["192.168.8.0/24"] : []) })],
      [/kill --kill-who=main --signal=HUP/, () => (++tries < 2 ? { code: 1, stderr: "Failed to kill unit headscale.service: Input/output error" } : ((approved = true), {}))],
    ]);
    const out = await routeApproval.create({ ...ra, timeoutSeconds: 15 });
    expect(out.outs).toMatchObject({ nodeId: 5, approvedRoutes: ["192.168.8.0/24"] });
    expect(seen.filter((x) => x.includes("HUP"))).toHaveLength(2);
    // Every reload failing: the routes' problem and the reload's, with the count.
    const failing = answer([
      [/nodes list/, () => ({ stdout: nodes([]) })],
      [/kill --kill-who=main --signal=HUP/, () => ({ code: 1, stderr: "Failed to kill unit headscale.service: Input/output error" })],
    ]);
    const err = await routeApproval.create({ ...ra, timeoutSeconds: 8 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/headscale did not approve it[\s\S]*reloading headscale's policy \(SIGHUP\)[\s\S]*Input\/output error[\s\S]*\(tried 3 times\)/);
    expect(failing.filter((x) => x.includes("HUP"))).toHaveLength(3);
  });

  it("route approval revokes an approval the fleet no longer declares (approve-routes replaces the set)", async () => {
    const seen = answer([
      [/nodes list/, () => ({ stdout: nodes(["192.168.8.0/24", "192.168.9.0/24"]) })],
      [/approve-routes/, () => ({ stdout: "{}" })],
    ]);
    const out = await routeApproval.create(ra);
    expect(out.outs).toMatchObject({ nodeId: 5, approvedRoutes: ["192.168.8.0/24"] });
    expect(seen).toContain("/usr/local/bin/headscale nodes approve-routes -i 5 -r 192.168.8.0/24");
    // read sees a stale approval again: diff asks for an update.
    answer([[/nodes list/, () => ({ stdout: nodes(["192.168.8.0/24", "192.168.9.0/24"]) })]]);
    const read = (await routeApproval.read("router", out.outs))!;
    expect(read.approvedRoutes).toEqual(["192.168.8.0/24", "192.168.9.0/24"]);
    expect(await routeApproval.diff(read, ra)).toMatchObject({ changes: true, detailedDiff: { approvedRoutes: "update" } });
    expect((await routeApproval.diff(out.outs, ra)).changes).toBe(false);
  });

  it("route approval's diff compares what headscale approves now, not the last deploy's read (a failed deploy left it behind)", async () => {
    const live = (approved: string[], port: number) => {
      const seen = answer([[/nodes list -o json && echo @@mf:keys@@/, () => ({ stdout: `${nodes(approved)}\n@@mf:keys@@\n[]` })]]);
      const at = { ...ra, connection: { ...ra.connection, port } };
      return { seen, news: at, olds: { ...at, nodeId: 5, approvedRoutes: ["192.168.8.0/24"] } };
    };
    // The state says 192.168.8.0/24 only, as declared; headscale auto-approved 192.168.9.0/24 since.
    const stale = live(["192.168.8.0/24", "192.168.9.0/24"], 2301);
    expect(await routeApproval.diff(stale.olds, stale.news)).toMatchObject({ changes: true, detailedDiff: { approvedRoutes: "update" } });
    expect(stale.seen).toHaveLength(1);
    // headscale approves exactly what is declared: no change, and the run's facts are asked once.
    const same = live(["192.168.8.0/24"], 2302);
    expect((await routeApproval.diff(same.olds, same.news)).changes).toBe(false);
    expect((await routeApproval.diff(same.olds, same.news)).changes).toBe(false);
    expect(same.seen).toHaveLength(1);
    // A declared route headscale no longer approves (revoked by hand): approved again.
    const revoked = live([], 2303);
    expect((await routeApproval.diff(revoked.olds, revoked.news)).changes).toBe(true);
    // headscale answers without the node (deleted by hand): an update, whose approve() names it.
    const gone = live([], 2305);
    answer([[/nodes list -o json && echo @@mf:keys@@/, () => ({ stdout: "[]\n@@mf:keys@@\n[]" })]]);
    expect((await routeApproval.diff(gone.olds, gone.news)).changes).toBe(true);
    // headscale cannot be asked: the last read decides, as before.
    answer([[/nodes list/, () => ({ code: 255, stderr: "connection refused" })]]);
    const away = { ...ra, connection: { ...ra.connection, port: 2304 } };
    expect((await routeApproval.diff({ ...away, nodeId: 5, approvedRoutes: ["192.168.8.0/24"] }, away)).changes).toBe(false);
    expect((await routeApproval.diff({ ...away, nodeId: 5, approvedRoutes: ["192.168.8.0/24", "192.168.9.0/24"] }, away)).changes).toBe(true);
  });

  it("deleting a route approval revokes the node's approvals", async () => {
    const seen = answer([
      [/nodes list/, () => ({ stdout: nodes(["192.168.8.0/24"]) })],
      [/approve-routes/, () => ({ stdout: "{}" })],
    ]);
    await routeApproval.delete("router", { ...ra, nodeId: 5, approvedRoutes: ["192.168.8.0/24"] });
    expect(seen).toContain("/usr/local/bin/headscale nodes approve-routes -i 5 -r ''");
  });

  it("a pre-auth key: created quietly, expired by id on delete, replaced on any change, its key never logged", async () => {
    const key: PreAuthKeyInputs = { ...base, host: "laptop", userId: 1, reusable: false, ephemeral: false, expiration: "90d", tags: [] };
    const seen = answer([[/preauthkeys create/, () => ({ stdout: JSON.stringify({ id: 7, key: SECRET }, null, "\t") })], [/preauthkeys expire/, () => ({})]]);
    const r = await preAuthKey.create(key);
    expect(r.outs).toMatchObject({ key: SECRET, keyId: 7, expired: false });
    expect(seen[0]).toBe("/usr/local/bin/headscale preauthkeys create -u 1 -e 90d -o json");
    expect((await preAuthKey.diff(r.outs, key)).changes).toBe(false);
    expect(await preAuthKey.diff(r.outs, { ...key, tags: ["tag:laptop"] })).toMatchObject({ changes: true, replaces: ["tags"] });
    expect(await preAuthKey.diff({ ...r.outs, expired: true }, key)).toMatchObject({ changes: true, replaces: ["key"] });
    await preAuthKey.delete("7", r.outs);
    expect(seen.at(-1)).toBe("/usr/local/bin/headscale preauthkeys expire --id 7 -o json");
    // A failed create never repeats headscale's output (it may hold a key).
    answer([[/preauthkeys create/, () => ({ code: 1, stdout: `{"key":"${SECRET}"}`, stderr: "rpc error" })]]);
    const err = await preAuthKey.create(key).catch((e: Error) => e);
    expect(String(err)).toBe("Error: coordinator vps: headscale preauthkeys create (for laptop) failed (exit 1): rpc error (stdout withheld: it may hold a key)");
  });

  it("a user that exists is adopted, not created twice", async () => {
    const seen = answer([[/users list/, () => ({ stdout: JSON.stringify([{ id: 3, name: "alice" }]) })]]);
    const r = await user.create({ ...base, name: "alice" });
    expect(r).toMatchObject({ id: "3", outs: { userId: 3 } });
    expect(seen).toEqual(["/usr/local/bin/headscale users list -o json"]);
    expect(user.diff(r.outs, { ...base, name: "bob" })).toMatchObject({ changes: true, replaces: ["name"], deleteBeforeReplace: true });
  });

  it("a user of that name an OIDC login made is neither taken over nor joined: create says to list the person in oidcUsers; read and delete never touch it", async () => {
    const oidc = { id: 7, name: "carol", email: "carol@example.com", provider: "oidc", provider_id: "https://id.example.com/7" };
    const message =
      "coordinator vps: headscale already has a user named carol that an OpenID Connect login made (carol@example.com); meshfleet neither takes it over (removing carol from users would then delete that person's user) nor keeps a user of the same name beside it (headscale refuses any policy naming carol@ then). Fix: list carol@example.com in fleet.yaml oidcUsers instead of carol in users, or give meshfleet's user another name";
    const seen = answer([[/users list/, () => ({ stdout: JSON.stringify([{ id: 3, name: "alice" }, oidc]) })]]);
    await expect(user.create({ ...base, name: "carol" })).rejects.toThrow(message);
    expect(seen).toEqual(["/usr/local/bin/headscale users list -o json"]);
    expect(await user.read("4", { ...base, name: "carol", userId: 4 })).toBeNull();
    // A local carol beside it (made by hand): still refused, since any policy naming carol@ would stop headscale.
    answer([[/users list/, () => ({ stdout: JSON.stringify([oidc, { id: 9, name: "carol" }]) })]]);
    await expect(user.create({ ...base, name: "carol" })).rejects.toThrow(message);
    // Delete: meshfleet's own user by its id; the person's OIDC login (state that once adopted it) is left alone; one gone is done.
    const del = answer([[/users list/, () => ({ stdout: JSON.stringify([oidc, { id: 9, name: "carol" }]) })], [/users destroy/, () => ({ stdout: "" })]]);
    await user.delete("9", { ...base, name: "carol", userId: 9 });
    expect(del).toEqual(["/usr/local/bin/headscale users list -o json", "/usr/local/bin/headscale users destroy --identifier 9 --force"]);
    const none = answer([[/users list/, () => ({ stdout: JSON.stringify([oidc]) })]]);
    await user.delete("7", { ...base, name: "carol", userId: 7 });
    await user.delete("9", { ...base, name: "carol", userId: 9 });
    expect(none).toEqual(["/usr/local/bin/headscale users list -o json", "/usr/local/bin/headscale users list -o json"]);
  });
});

describe("the lockout guard's confirm gives up when the guard's window closes", () => {
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  it("ssh: a refused dial is retried only until `until`, then fails naming the host", async () => {
    // A port nothing listens on: every dial is refused at once.
    const { createServer } = await import("node:net");
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const port = (srv.address() as { port: number }).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const c: SshConnection = { name: "laptop", host: "127.0.0.1", port, user: "root", hostKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlaptop"], dialAttempts: 30 };
    const t0 = Date.now();
    const err = await session.run(c, "true", { what: "confirm", fresh: true, until: t0 + 1500 }).catch((e: Error) => e);
    const took = Date.now() - t0;
    session.close();
    expect(String(err)).toMatch(new RegExp(`^Error: host laptop \\(\\[127\\.0\\.0\\.1\\]:${port}\\): cannot reach sshd after \\d+ attempts \\(its deadline passed\\): .*Connection refused`));
    // 30 attempts would take about 45 s of pauses alone.
    expect(took).toBeLessThan(4000);
  });

  function agentFile(): { dir: string; path: string; sha256: string } {
    const dir = mkdtempSync(path.join(tmpdir(), "mf-agent-"));
    const p = path.join(dir, "meshfleet-agent.mjs");
    writeFileSync(p, "// agent\n");
    return { dir, path: p, sha256: createHash("sha256").update("// agent\n").digest("hex") };
  }

  it("a host that stays unreachable after the switch fails when the window closes, naming it; one round trip prepares and switches", async () => {
    const a = agentFile();
    const i = genInputs(b1());
    const inputs: GenerationInputs = { ...i, agent: { ...i.agent, localPath: a.path, sha256: a.sha256 } };
    const calls: { script: string; fresh?: boolean; until?: number; attempts?: number }[] = [];
    vi.spyOn(session, "run").mockImplementation(async (_c, script, o) => {
      calls.push({ script, fresh: o.fresh, until: o.until, attempts: o.attempts });
      if (/ switch /.test(script)) return { code: 0, stdout: "generation 4 is active; awaiting confirm within 120s", stderr: "" };
      if (o.fresh) {
        // The dial kept failing until the deadline: the clock is past it now.
        vi.setSystemTime(o.until! + 1);
        throw new Error("host router (203.0.113.10): cannot reach sshd after 40 attempts (its deadline passed): Connection timed out");
      }
      return { code: 0, stdout: "", stderr: "" };
    });
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.now();
    const err = await generation.create(inputs).catch((e: Error) => e);
    rmSync(a.dir, { recursive: true, force: true });
    expect(String(err)).toMatch(
      /^Error: host router: generation [0-9a-f]{12} could not be confirmed: no new SSH connection got through in the lockout guard's 120s window after the switch \(.*its deadline passed.*\); the host's guard has rolled it back to its previous generation$/,
    );
    // prepare + switch in one script (the agent was there), then the confirm on a new connection, whose process
    // also prints the status and verify: nothing else runs on the host, so nothing waits for a lockout.
    expect(calls[0]!.script).toMatch(/sha256sum[\s\S]*cat > '?\/var\/lib\/meshfleet\/incoming\/bundle\.json\.tmp[\s\S]* switch /);
    const confirm = calls.find((c) => c.fresh)!;
    expect(confirm.script).toBe(`node /usr/local/lib/meshfleet/meshfleet-agent.mjs confirm ${inputs.hash} --status`);
    expect(confirm.until! - t0).toBeGreaterThanOrEqual(120_000);
    expect(confirm.until! - t0).toBeLessThan(125_000);
    expect(calls).toHaveLength(2);
  });

  const confirmed = (hash: string, drift: unknown[] = []) =>
    `generation 4 (bundle ${hash.slice(0, 12)}) confirmed\n@@meshfleet-status@@\n${JSON.stringify({ host: "router", generation: 4, hash, pendingConfirm: null, lastSwitch: null, verify: { generation: 4, clean: drift.length === 0, drift } }, null, 2)}\n`;

  it("one switch costs two agent processes: the status and verify come from the confirm's own process, drift included", async () => {
    const a = agentFile();
    const i = genInputs(b1());
    const inputs: GenerationInputs = { ...i, agent: { ...i.agent, localPath: a.path, sha256: a.sha256 } };
    const calls: { script: string; fresh?: boolean }[] = [];
    const drift = [{ kind: "unit", subject: "app.service", detail: "is activating, expected active" }];
    vi.spyOn(session, "run").mockImplementation(async (_c, script, o) => {
      calls.push({ script, fresh: o.fresh });
      if (o.fresh) return { code: 0, stdout: confirmed(inputs.hash, drift), stderr: "" };
      return { code: 0, stdout: "generation 4 is active; awaiting confirm within 120s", stderr: "" };
    });
    const r = await generation.create(inputs);
    rmSync(a.dir, { recursive: true, force: true });
    // Every agent process on the host: the switch (one round trip with the preparation) and the confirm.
    const agentRuns = calls.flatMap((c) => [...c.script.matchAll(/meshfleet-agent\.mjs'? '?([a-z]+)/g)].map((m) => m[1]));
    expect(agentRuns).toEqual(["switch", "confirm"]);
    expect(calls.filter((c) => !c.fresh)).toHaveLength(1);
    expect(r.outs).toMatchObject({ generation: 4, hash: inputs.hash, drift });
    expect(r.outs.units["app.service"]).toBe("drift: is activating, expected active");
    expect(JSON.parse(r.outs.status)).toEqual({ host: "router", generation: 4, hash: inputs.hash, pendingConfirm: null, lastSwitch: null });
  });

  it("a confirm that kept the generation but printed no status is followed by one status + verify over the shared connection", async () => {
    const a = agentFile();
    const i = genInputs(b1());
    const inputs: GenerationInputs = { ...i, agent: { ...i.agent, localPath: a.path, sha256: a.sha256 } };
    const seen: { what: string; script: string }[] = [];
    vi.spyOn(session, "run").mockImplementation(async (_c, script, o) => {
      seen.push({ what: o.what, script });
      if (o.fresh) return { code: 0, stdout: `generation 4 (bundle ${inputs.hash.slice(0, 12)}) confirmed\n`, stderr: "meshfleet-agent: confirmed, but the status could not be read: EIO\n" };
      if (o.what === "status + verify") return { code: 0, stdout: JSON.stringify({ host: "router", generation: 4, hash: inputs.hash, pendingConfirm: null, lastSwitch: null, verify: { drift: [] } }), stderr: "" };
      return { code: 0, stdout: "generation 4 is active", stderr: "" };
    });
    const r = await generation.create(inputs);
    rmSync(a.dir, { recursive: true, force: true });
    expect(seen.map((x) => x.what)).toEqual([`prepare + switch to ${inputs.hash.slice(0, 12)}`, `confirm ${inputs.hash.slice(0, 12)} + status + verify`, "status + verify"]);
    expect(seen[2]!.script).toBe("node /usr/local/lib/meshfleet/meshfleet-agent.mjs status --json --verify");
    expect(r.outs).toMatchObject({ generation: 4, hash: inputs.hash, drift: [] });
  });

  it("a confirm whose status after the mark is cut short is followed by one status + verify too, not a failed deploy", async () => {
    const a = agentFile();
    const i = genInputs(b1());
    const inputs: GenerationInputs = { ...i, agent: { ...i.agent, localPath: a.path, sha256: a.sha256 } };
    const seen: string[] = [];
    vi.spyOn(session, "run").mockImplementation(async (_c, _s, o) => {
      seen.push(o.what);
      if (o.fresh) return { code: 0, stdout: confirmed(inputs.hash).slice(0, -40), stderr: "" };
      if (o.what === "status + verify") return { code: 0, stdout: JSON.stringify({ host: "router", generation: 4, hash: inputs.hash, pendingConfirm: null, lastSwitch: null, verify: { drift: [] } }), stderr: "" };
      return { code: 0, stdout: "generation 4 is active", stderr: "" };
    });
    const r = await generation.create(inputs);
    rmSync(a.dir, { recursive: true, force: true });
    expect(seen).toEqual([`prepare + switch to ${inputs.hash.slice(0, 12)}`, `confirm ${inputs.hash.slice(0, 12)} + status + verify`, "status + verify"]);
    expect(r.outs).toMatchObject({ generation: 4, hash: inputs.hash, drift: [] });
  });

  it("a verify the agent could not run (verify: null) is a drift item, and the confirmed deploy stands", async () => {
    const a = agentFile();
    const i = genInputs(b1());
    const inputs: GenerationInputs = { ...i, agent: { ...i.agent, localPath: a.path, sha256: a.sha256 } };
    const doc = { host: "router", generation: 4, hash: inputs.hash, pendingConfirm: null, lastSwitch: null, verify: null };
    vi.spyOn(session, "run").mockImplementation(async (_c, _s, o) =>
      o.fresh
        ? { code: 0, stdout: `confirmed\n@@meshfleet-status@@\n${JSON.stringify(doc)}\n`, stderr: "meshfleet-agent: verify failed: boom\n" }
        : { code: 0, stdout: "generation 4 is active", stderr: "" },
    );
    const r = await generation.create(inputs);
    rmSync(a.dir, { recursive: true, force: true });
    expect(r.outs.drift).toEqual([{ kind: "agent", subject: "verify", detail: "verify failed on the host (the agent said why on stderr; run `meshfleet-agent verify` there)" }]);
    expect(r.outs.generation).toBe(4);
  });

  it("a confirm whose status shows another generation fails the deploy, naming the host", async () => {
    const a = agentFile();
    const i = genInputs(b1());
    const inputs: GenerationInputs = { ...i, agent: { ...i.agent, localPath: a.path, sha256: a.sha256 } };
    vi.spyOn(session, "run").mockImplementation(async (_c, _s, o) =>
      o.fresh ? { code: 0, stdout: confirmed("e".repeat(64)), stderr: "" } : { code: 0, stdout: "generation 4 is active", stderr: "" },
    );
    const err = await generation.create(inputs).catch((e: Error) => e);
    rmSync(a.dir, { recursive: true, force: true });
    expect(String(err)).toMatch(/host router: after the confirm the host runs eeeeeeeeeeee, not [0-9a-f]{12}/);
  });

  it("a host without this agent gets it pushed, then switches", async () => {
    const a = agentFile();
    const i = genInputs(b1());
    const inputs: GenerationInputs = { ...i, agent: { ...i.agent, localPath: a.path, sha256: a.sha256 } };
    const seen: string[] = [];
    vi.spyOn(session, "run").mockImplementation(async (_c, script, o) => {
      seen.push(o.what);
      if (o.what.startsWith("prepare + switch")) return { code: 0, stdout: "@@meshfleet-push-agent@@\n", stderr: "" };
      if (o.fresh) return { code: 0, stdout: confirmed(inputs.hash), stderr: "" };
      return { code: 0, stdout: "generation 4 is active", stderr: "" };
    });
    const r = await generation.create(inputs);
    rmSync(a.dir, { recursive: true, force: true });
    expect(seen).toEqual([
      `prepare + switch to ${inputs.hash.slice(0, 12)}`,
      "push agent (9 bytes)",
      `switch to ${inputs.hash.slice(0, 12)}`,
      `confirm ${inputs.hash.slice(0, 12)} + status + verify`,
    ]);
    expect(r.outs).toMatchObject({ generation: 4, hash: inputs.hash, drift: [] });
    expect(JSON.parse(r.outs.status)).toMatchObject({ generation: 4, pendingConfirm: null });
  });
});

describe("refresh reads a host with one agent process", () => {
  afterEach(() => vi.restoreAllMocks());

  it("status --json --verify, its embedded verify parsed as drift; the status kept without it", async () => {
    const news = genInputs(b1());
    const scripts: string[] = [];
    const drift = [{ kind: "file", subject: "/etc/app.conf", detail: "content changed" }];
    vi.spyOn(session, "run").mockImplementation(async (_c, script) => {
      scripts.push(script);
      return { code: 0, stdout: `${JSON.stringify({ host: "router", generation: 3, hash: news.hash, pendingConfirm: null, lastSwitch: null, verify: { generation: 3, clean: false, drift } }, null, 2)}\n${"a".repeat(64)}\n`, stderr: "" };
    });
    const o = (await generation.read("router", genOutputs(news)))!;
    expect(scripts).toHaveLength(1);
    expect(scripts[0]).toContain("meshfleet-agent.mjs status --json --verify");
    expect(scripts[0]).not.toMatch(/ verify --json/);
    expect(o.drift).toEqual(drift);
    expect(o.files["/etc/app.conf"]!.drift).toBe("content changed");
    expect(JSON.parse(o.status)).toEqual({ host: "router", generation: 3, hash: news.hash, pendingConfirm: null, lastSwitch: null });
    expect(o.agent.sha256).toBe("a".repeat(64));
  });
});

describe("drift an earlier refresh stored survives the next refresh (up --refresh after a failed deploy)", () => {
  afterEach(() => vi.restoreAllMocks());

  it("a second read of a host still drifting keeps the drift, so the next up repairs it", async () => {
    const news = genInputs(b1());
    const drift = [
      { kind: "file", subject: "/etc/app.conf", detail: "content differs" },
      { kind: "generation", subject: "files", detail: "1 file changed by hand" },
    ];
    const answer = () =>
      `${JSON.stringify({ host: "router", generation: 3, hash: news.hash, pendingConfirm: null, lastSwitch: null, verify: { drift } })}\n${"a".repeat(64)}\n`;
    vi.spyOn(session, "run").mockImplementation(async () => ({ code: 0, stdout: answer(), stderr: "" }));
    // The first refresh marks the drift; a deploy that then fails (a refused host key) leaves these outputs in the state.
    const first = (await generation.read("router", genOutputs(news)))!;
    expect(first.hash).toMatch(new RegExp(`^${news.hash} \\(drift: `));
    expect(first.drift).toHaveLength(2);
    // up --refresh reads again: the drift is still there and the diff still asks for an update.
    const second = (await generation.read("router", first))!;
    expect(second.drift).toEqual(drift);
    expect(second.files["/etc/app.conf"]!.drift).toBe("content differs");
    const d = generation.diff(second, news);
    expect(d.changes).toBe(true);
    expect(d.detailedDiff).toMatchObject({ 'files["/etc/app.conf"]': "update", hash: "update" });
  });
});

describe("headscale readiness wait", () => {
  it("gives up by the clock: a probe that itself takes a second does not stretch a 6 s wait past one probe after it", async () => {
    const { readyScript } = await import("../../provider/headscale-cli.ts");
    const { spawnSync, execFileSync } = await import("node:child_process");
    const dir = mkdtempSync(path.join(tmpdir(), "mf-ready-"));
    try {
      const slow = path.join(dir, "headscale");
      writeFileSync(slow, "#!/bin/sh\nsleep 1\nexit 1\n", { mode: 0o755 });
      execFileSync("chmod", ["0755", slow]);
      const t0 = Date.now();
      const r = spawnSync("sh", ["-c", readyScript({ runtime: "systemd", binary: slow }, "vps", 6)], { encoding: "utf8", timeout: 30_000 });
      const ms = Date.now() - t0;
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("headscale on vps did not answer within 6s");
      // Counting tries of 2 s took (1 + 2) × 3 = 9 s here; by the clock it ends within one probe after 6 s.
      expect(ms).toBeGreaterThanOrEqual(5900);
      expect(ms).toBeLessThan(8300);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
