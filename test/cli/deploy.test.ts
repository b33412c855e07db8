/**
 * The deploy engine's pure parts: which host a resource belongs to, what
 * `--on` selects and targets, the summary, the state folder; and the CLI's
 * refusals (no --stack, no --yes off a terminal) run as a user would.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  attributeHosts, cliError, defaultStateDir, deployEnv, EventTracker, firewallPolicyNote, FLEET_WIDE, hostInName, REPO_ROOT, selectHosts, summaryLines,
  targetUrns, urnName, urnType, withDependencies, type DeployResult, type ResourceInfo,
} from "../../cli/commands/deploy.ts";

const urn = (type: string, name: string) => `urn:pulumi:lab::meshfleet::${type}::${name}`;
const HOSTS = ["laptop", "lxc-tailscale", "vps", "lxc"];

describe("which host a resource belongs to", () => {
  it("reads the name and type out of a URN, parents' types included", () => {
    const u = "urn:pulumi:lab::meshfleet::meshfleet:index:Mesh$meshfleet:host:Generation::lab-vps";
    expect(urnName(u)).toBe("lab-vps");
    expect(urnType(u)).toBe("meshfleet:host:Generation");
  });

  it("finds a host as a whole word in a name, the longest one first", () => {
    expect(hostInName("lab-lxc-tailscale-generation", HOSTS)).toBe("lxc-tailscale");
    expect(hostInName("lxc-ct", HOSTS)).toBe("lxc");
    expect(hostInName("vps", HOSTS)).toBe("vps");
    expect(hostInName("lab/vps:agent", HOSTS)).toBe("vps");
    expect(hostInName("vpsx-key", HOSTS)).toBeUndefined();
    expect(hostInName("lab-user-alice", HOSTS)).toBeUndefined();
  });

  it("prefers a host input, then the name, then the parent's host", () => {
    const res = new Map<string, ResourceInfo>([
      [urn("meshfleet:index:Node", "node-a"), { urn: urn("meshfleet:index:Node", "node-a"), type: "meshfleet:index:Node", name: "node-a", hostInput: "laptop" }],
      [urn("meshfleet:host:Generation", "gen-1"), { urn: urn("meshfleet:host:Generation", "gen-1"), type: "meshfleet:host:Generation", name: "gen-1", parent: urn("meshfleet:index:Node", "node-a") }],
      [urn("meshfleet:headscale:PreAuthKey", "vps-key"), { urn: urn("meshfleet:headscale:PreAuthKey", "vps-key"), type: "meshfleet:headscale:PreAuthKey", name: "vps-key", hostInput: "not-a-host" }],
      [urn("meshfleet:headscale:User", "lab-user-alice"), { urn: urn("meshfleet:headscale:User", "lab-user-alice"), type: "meshfleet:headscale:User", name: "lab-user-alice" }],
    ]);
    attributeHosts(res, HOSTS);
    expect([...res.values()].map((r) => [r.name, r.host])).toEqual([
      ["node-a", "laptop"],
      ["gen-1", "laptop"],
      ["vps-key", "vps"],
      ["lab-user-alice", undefined],
    ]);
  });
});

describe("--on", () => {
  const fleet = [
    { name: "vps", roles: ["coordinator", "client"], tags: ["tag:server"] },
    { name: "lxc-tailscale", roles: ["subnet-router"], tags: ["tag:router"] },
    { name: "laptop", roles: ["client"], tags: [] },
  ];

  it("selects by name, @role and @tag, repeatable and comma-separated", () => {
    expect(selectHosts(["laptop"], fleet)).toEqual(["laptop"]);
    expect(selectHosts(["@subnet-router"], fleet)).toEqual(["lxc-tailscale"]);
    expect(selectHosts(["@router"], fleet)).toEqual(["lxc-tailscale"]);
    expect(selectHosts(["@tag:server", "laptop,@client"], fleet).sort()).toEqual(["laptop", "vps"]);
  });

  it("names what exists when a selector matches nothing, all problems at once", () => {
    expect(() => selectHosts(["nas", "@exit-node"], fleet)).toThrow(
      '--on nas: no such host (hosts: vps, lxc-tailscale, laptop)\n--on @exit-node: no host has the role or tag "exit-node" (roles: client, coordinator, subnet-router; tags: tag:router, tag:server)',
    );
  });

  it("brings a subnet router's coordinator along, and nothing else", () => {
    const f = { coordinator: "vps", hosts: [{ name: "vps", joins: false }, { name: "lxc-tailscale", joins: true }, { name: "laptop", joins: true }] };
    expect(withDependencies(["lxc-tailscale"], f).sort()).toEqual(["lxc-tailscale", "vps"]);
    expect(withDependencies(["vps"], f)).toEqual(["vps"]);
  });

  it("targets the hosts' resources, fleet-wide ones, their ancestors and providers, not other hosts'", () => {
    const stackUrn = urn("pulumi:pulumi:Stack", "meshfleet-lab");
    const mesh = urn("meshfleet:index:Mesh", "lab");
    const prov = urn("pulumi:providers:meshfleet", "default");
    const r = (type: string, name: string, host?: string, parent = mesh): ResourceInfo => ({ urn: urn(type, name), type, name, host, parent, provider: type.startsWith("meshfleet:") && !type.startsWith("meshfleet:index") ? prov : undefined });
    const all: ResourceInfo[] = [
      { urn: stackUrn, type: "pulumi:pulumi:Stack", name: "meshfleet-lab" },
      { urn: prov, type: "pulumi:providers:meshfleet", name: "default" },
      r("meshfleet:index:Mesh", "lab", undefined, stackUrn),
      r("meshfleet:headscale:User", "lab-user-alice"),
      r("meshfleet:host:Generation", "lab-vps", "vps"),
      r("meshfleet:host:Generation", "lab-laptop", "laptop"),
      r("meshfleet:headscale:PreAuthKey", "lab-laptop-key", "laptop"),
    ];
    const t = targetUrns(all, ["vps"]);
    expect(t).toEqual([stackUrn, mesh, urn("meshfleet:headscale:User", "lab-user-alice"), urn("meshfleet:host:Generation", "lab-vps"), prov].sort());
    expect(t.some((u) => u.includes("laptop"))).toBe(false);
  });
});

describe("events to lines and a per-host result", () => {
  it("prints each change led by its host, never a value, and counts per host", () => {
    const lines: string[] = [];
    const t = new EventTracker(["vps", "laptop"], { say: (l) => lines.push(l), diff: true });
    const gen = "urn:pulumi:lab::meshfleet::meshfleet:index:Mesh$meshfleet:host:Generation::lab-vps";
    const meta = {
      op: "update" as const, urn: gen, type: "meshfleet:host:Generation", provider: "",
      new: { type: "meshfleet:host:Generation", urn: gen, id: "x", parent: "", inputs: { host: "vps", secretThing: "hskey-auth-SECRET" }, outputs: {}, provider: "urn:pulumi:lab::meshfleet::pulumi:providers:meshfleet::default::id" },
      detailedDiff: { 'files["/etc/headscale/config.yaml"]': { diffKind: "update" as never, inputDiff: true } },
    };
    t.handle({ sequence: 1, timestamp: 0, resourcePreEvent: { metadata: meta } });
    t.handle({ sequence: 2, timestamp: 0, resOutputsEvent: { metadata: meta } });
    const same = { ...meta, op: "same" as const, urn: urn("meshfleet:host:Generation", "lab-laptop"), new: { ...meta.new, inputs: { host: "laptop" } }, detailedDiff: undefined };
    t.handle({ sequence: 3, timestamp: 0, resOutputsEvent: { metadata: same } });
    const user = { ...same, urn: urn("meshfleet:headscale:User", "lab-user-alice"), type: "meshfleet:headscale:User", op: "create" as const, new: { ...meta.new, inputs: {} } };
    t.handle({ sequence: 4, timestamp: 0, resOpFailedEvent: { metadata: user, status: 1, steps: 1 } });
    t.handle({ sequence: 5, timestamp: 0, diagnosticEvent: { urn: user.urn, message: "headscale users create alice: exit 1\n", color: "never", severity: "error" } });
    expect(lines.join("\n")).not.toContain("SECRET");
    expect(lines[0]).toMatch(/^vps\s+~\s+meshfleet:host:Generation lab-vps {2}update\.\.\.$/);
    expect(lines[1]).toMatch(/^vps\s+~\s+meshfleet:host:Generation lab-vps {2}update done$/);
    expect(lines[2]).toMatch(/~\s+files\["\/etc\/headscale\/config\.yaml"\]$/);
    expect(lines[3]).toMatch(/^\(fleet\)\s+\+\s+meshfleet:headscale:User lab-user-alice {2}create FAILED$/);
    expect(lines[4]).toMatch(/^\(fleet\)\s+error: meshfleet:headscale:User lab-user-alice: headscale users create alice: exit 1$/);
    const by = Object.fromEntries(t.perHost().map((h) => [h.host, h]));
    expect(by.vps!.ops).toEqual({ update: 1 });
    expect(by.laptop!.ops).toEqual({ same: 1 });
    expect(by[FLEET_WIDE]!.failed).toEqual(["meshfleet:headscale:User lab-user-alice"]);
    expect(by[FLEET_WIDE]!.errors).toEqual(["headscale users create alice: exit 1"]);
  });

  it("a host whose firewall starts dropping says so in words, in preview and up, with or without --diff", () => {
    expect(firewallPolicyNote("input accept", "input drop")).toBe("firewall: input policy becomes drop (was accept): everything not opened by a rule is now dropped");
    expect(firewallPolicyNote("input drop, forward accept", "input accept, forward accept")).toBe("firewall: input policy becomes accept (was drop): what was dropped is now accepted");
    expect(firewallPolicyNote("", "input drop")).toBe("firewall: input policy becomes drop (was no chain: accepted): everything not opened by a rule is now dropped");
    expect(firewallPolicyNote("input drop", "input drop")).toBeNull();
    expect(firewallPolicyNote(undefined, "input drop")).toBeNull();
    const lines: string[] = [];
    const t = new EventTracker(["nas"], { say: (l) => lines.push(l), preview: true });
    const gen = "urn:pulumi:lab::meshfleet::meshfleet:index:Mesh$meshfleet:host:Generation::lab-nas";
    const meta = {
      op: "update" as const, urn: gen, type: "meshfleet:host:Generation", provider: "",
      old: { type: "meshfleet:host:Generation", urn: gen, id: "x", parent: "", inputs: { host: "nas", firewallPolicy: "input accept" }, outputs: { firewallPolicy: "input accept" }, provider: "" },
      new: { type: "meshfleet:host:Generation", urn: gen, id: "x", parent: "", inputs: { host: "nas", firewallPolicy: "input drop" }, outputs: {}, provider: "" },
      detailedDiff: { firewall: { diffKind: "update" as never, inputDiff: true }, firewallPolicy: { diffKind: "update" as never, inputDiff: true } },
    };
    t.handle({ sequence: 1, timestamp: 0, resourcePreEvent: { metadata: meta } });
    t.handle({ sequence: 2, timestamp: 0, resOutputsEvent: { metadata: meta } });
    expect(lines[0]).toMatch(/^nas\s+~\s+meshfleet:host:Generation lab-nas {2}will update$/);
    expect(lines[1]).toMatch(/^\s+! firewall: input policy becomes drop \(was accept\): everything not opened by a rule is now dropped$/);
    expect(lines).toHaveLength(2);
  });

  it("summarizes per host, outputs and errors", () => {
    const r: DeployResult = {
      verb: "up", stack: "lab", ok: false, changes: { same: 3, update: 1 }, ms: 4200, backend: "file:///x",
      hosts: [
        { host: "vps", ops: { update: 1, same: 1 }, failed: [], errors: [], ms: 2100 },
        { host: "laptop", ops: { same: 1 }, failed: ["meshfleet:host:Generation lab-laptop"], errors: ["lab-laptop: the guard rolled back"], ms: 0 },
      ],
      resources: [], outputs: { coordinatorUrl: "https://203.0.113.10", summary: "[secret]" }, errors: ["laptop: the guard rolled back to generation 2"], warnings: [],
    };
    expect(summaryLines(r)).toEqual([
      "meshfleet up lab: FAILED in 4.2s, 4 resources: 1 updated, 3 unchanged",
      "  vps       1 updated, 1 unchanged (2.1s)",
      "  laptop    FAILED 1 unchanged",
      "  output coordinatorUrl: https://203.0.113.10",
      "  output summary: [secret]",
      "  error: laptop: the guard rolled back to generation 2",
    ]);
  });

  it("keeps the CLI's error lines out of an Automation API failure", () => {
    const e = new Error("code: 255\n stdout: Updating (lab):\n\n stderr: error: update failed\nerror: lab-vps: ssh: host key mismatch\n");
    expect(cliError(e)).toBe("update failed; lab-vps: ssh: host key mismatch");
  });
});

describe("where state goes", () => {
  it("defaults to a file backend and a Pulumi home outside the repo; PULUMI_BACKEND_URL and PULUMI_HOME win", () => {
    const env = { HOME: "/home/u", PATH: "/usr/bin" };
    expect(defaultStateDir(env)).toMatch(/\.local\/state\/meshfleet\/pulumi$/);
    expect(defaultStateDir({ XDG_STATE_HOME: "/xdg" })).toBe("/xdg/meshfleet/pulumi");
    const d = deployEnv({ MESHFLEET_STATE_DIR: join(REPO_ROOT, "..", "mf-state-test-never-made"), PULUMI_BACKEND_URL: "s3://bucket/x", PULUMI_HOME: "/tmp" }, env);
    expect(d.PULUMI_BACKEND_URL).toBe("s3://bucket/x");
    expect(d.PULUMI_HOME).toBe("/tmp");
    expect(d.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION).toBe("true");
    expect(d.PATH.split(":")[0]).toBe(join(process.execPath, ".."));
  });
});

describe("meshfleet up/preview/refresh/destroy as a user runs them", () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [join(REPO_ROOT, "bin", "meshfleet.mjs"), ...args], { encoding: "utf8", cwd: REPO_ROOT, input: "", timeout: 60_000 });

  it("asks for a stack, naming the ones in stacks/", () => {
    const r = cli("up", "--yes");
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(/^meshfleet: meshfleet up: which stack\? Add --stack S \(stacks\/ has: .*lab/);
  });

  it("refuses to change anything without --yes when stdin is not a terminal, with the fix", () => {
    for (const verb of ["up", "destroy", "refresh"]) {
      const r = cli(verb, "--stack", "lab");
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`refusing to ${verb} stack lab without --yes`);
      expect(r.stderr).toContain(`meshfleet ${verb} --stack lab --yes`);
    }
  });

  it("documents the state folder, the backend variable, the passphrase and --on in --help", () => {
    const r = cli("up", "--help");
    expect(r.status).toBe(0);
    for (const s of ["--stack", "--on", "--diff", "--yes", "--json", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "--secrets-provider", ".local/state/meshfleet/pulumi", "Other hosts are left exactly as"]) {
      expect(r.stdout).toContain(s);
    }
  });
});

describe("components named for a role", () => {
  it("belong to the one host all their children belong to, never to two", () => {
    const mk = (type: string, name: string, parent?: string, hostInput?: string): [string, ResourceInfo] => [urn(type, name), { urn: urn(type, name), type, name, parent: parent ? urn("meshfleet:index:" + parent.split(":")[0], parent.split(":")[1]!) : undefined, hostInput }];
    const res = new Map<string, ResourceInfo>([
      mk("meshfleet:index:Mesh", "lab"),
      mk("meshfleet:index:Coordinator", "lab-coordinator", "Mesh:lab"),
      mk("meshfleet:host:Generation", "lab-coordinator-generation", "Coordinator:lab-coordinator", "vps"),
    ]);
    res.set(urn("meshfleet:host:Generation", "lab-node-a"), { urn: urn("meshfleet:host:Generation", "lab-node-a"), type: "meshfleet:host:Generation", name: "lab-node-a", parent: urn("meshfleet:index:Mesh", "lab"), hostInput: "laptop" });
    attributeHosts(res, HOSTS);
    expect(res.get(urn("meshfleet:index:Coordinator", "lab-coordinator"))!.host).toBe("vps");
    expect(res.get(urn("meshfleet:index:Mesh", "lab"))!.host).toBeUndefined();
  });
});
