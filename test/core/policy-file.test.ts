/**
 * fleet.yaml `policy: ./policy.hujson`: the policy in a file of its own, in
 * headscale's format. The loaded fleet holds the same policy object as the
 * inline form (so everything downstream is unchanged); every problem of the
 * file itself is one diagnostic with its fix; a problem inside the policy is
 * named in the policy file at the path inside it, never fleet.yaml's
 * `policy.` path.
 */
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/eval.ts";
import { formatDiagnostic } from "../../core/diagnostics.ts";
import { inPolicyFile, loadFleetDir, POLICY_LIMITS } from "../../core/load.ts";
import { runFleetTests } from "../../core/policy/fleet.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "./fleet-fixture.ts";

const FLEET = BASE["fleet.yaml"].replace(/policy:[\s\S]*$/, "policy: ./policy.hujson\n");
/** BASE's policy, as headscale would hold it: comments and trailing commas. */
const POLICY = `// the tailnet's policy
{
  "tagOwners": { "tag:router": ["alice@"], },
  /* one rule */
  "acls": [
    { "action": "accept", "src": ["alice@"], "dst": ["*:*"] },
  ],
}
`;

const cleanups: (() => void)[] = [];
afterEach(() => cleanups.splice(0).forEach((c) => c()));
function fleetWith(files: Record<string, string | null>): string {
  const f = writeFleet(files);
  cleanups.push(f.cleanup);
  return f.dir;
}

const lines = (diags: { severity: string }[]) => diags.filter((d) => d.severity === "error").map((d) => formatDiagnostic(d as never).replace(/^error: .*?fx\//, ""));

describe("policy: ./policy.hujson", () => {
  it("loads as the same policy as the inline form, and evaluates to the same policy file for headscale", async () => {
    const inline = fleetWith({});
    const filed = fleetWith({ "fleet.yaml": FLEET, "policy.hujson": POLICY });
    const [a, b] = [await loadFleetDir(inline), await loadFleetDir(filed)];
    expect(b.diagnostics).toEqual([]);
    expect((b.fleet!.value as { policy: unknown }).policy).toEqual((a.fleet!.value as { policy: unknown }).policy);
    expect(b.fleet!.policyFile).toMatch(/fx\/policy\.hujson$/);
    expect(a.fleet!.policyFile).toBeUndefined();
    const [ea, eb] = [await evaluateFleet(REGISTRY, inline, "fx"), await evaluateFleet(REGISTRY, filed, "fx")];
    expect(eb.diagnostics).toEqual([]);
    expect(eb.fleet!.policyHuJson).toBe(ea.fleet!.policyHuJson);
    expect(eb.fleet!.policy).toEqual(ea.fleet!.policy);
  });

  it("a policy file in a subfolder, and a .json name, resolve against fleet.yaml's folder", async () => {
    const dir = fleetWith({ "fleet.yaml": FLEET.replace("./policy.hujson", "./policy/tailnet.json") });
    mkdirSync(path.join(dir, "policy"));
    writeFileSync(path.join(dir, "policy", "tailnet.json"), POLICY);
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    expect(r.diagnostics).toEqual([]);
    expect(r.fleet!.policyFile).toMatch(/fx\/policy\/tailnet\.json$/);
  });

  it("a problem inside the policy names the policy file and the path inside it (schema, validation, no-op checks, tests)", async () => {
    const bad = `{
  "groups": { "group:empty": [] },
  "tagOwners": { "tag:router": ["alice@"], "tag:x": ["group:empty"] },
  "autoApprovers": { "routes": { "192.168.8.5/24": ["tag:router"] } },
  "acls": [
    { "action": "accept", "src": ["alice@"], "dst": ["*:*"] },
    { "action": "accept", "src": ["bob@"], "dst": ["tag:nope:22"] },
  ],
}`;
    const r = await evaluateFleet(REGISTRY, fleetWith({ "fleet.yaml": FLEET, "policy.hujson": bad }), "fx");
    const all = r.diagnostics.map((d) => `${d.severity} ${d.file.replace(/^.*fx\//, "")}: ${d.path}`);
    expect(all).toEqual([
      'error policy.hujson: autoApprovers.routes["192.168.8.5/24"]',
      'warning policy.hujson: tagOwners["tag:x"]',
    ]);
    // The loader stops at its errors; once they are fixed, evaluation's own checks name the file too.
    const r2 = await evaluateFleet(REGISTRY, fleetWith({ "fleet.yaml": FLEET, "policy.hujson": bad.replace("192.168.8.5/24", "192.168.8.0/24") }), "fx");
    expect(r2.diagnostics.filter((d) => d.severity === "error").map((d) => `${d.file.replace(/^.*fx\//, "")}: ${d.path}`)).toEqual([
      "policy.hujson: acls[1].src[0]",
      "policy.hujson: acls[1].dst[0]",
    ]);
    const unknown = await evaluateFleet(REGISTRY, fleetWith({ "fleet.yaml": FLEET, "policy.hujson": POLICY.replace('"acls"', '"acl"') }), "fx");
    expect(lines(unknown.diagnostics)).toEqual(['policy.hujson: acl: expected one of the options groups, tagOwners, hosts, acls, grants, ssh, autoApprovers, nodeAttrs, tests, sshTests, randomizeClientPort, found unknown option "acl" at policy. Fix: did you mean "acls"? Rename it.']);
  });

  it("a module's problem with the policy (headscale 0.28 has no grants) is named in the policy file too", async () => {
    const fleet = FLEET.replace("  serverUrl: https://hs.example.com\n", "  serverUrl: https://hs.example.com\n  headscaleVersion: 0.28.0\n");
    const grants = POLICY.replace('"acls"', '"grants": [{ "src": ["alice@"], "dst": ["*"], "ip": ["*"] }],\n  "acls"');
    const r = await evaluateFleet(REGISTRY, fleetWith({ "fleet.yaml": fleet, "policy.hujson": grants }), "fx");
    expect(lines(r.diagnostics)).toEqual([expect.stringMatching(/^policy\.hujson: grants: expected a policy headscale 0\.28\.0 reads/)]);
  });

  it("the policy's tests, as check runs them, are named in the policy file", async () => {
    const failing = POLICY.replace('"acls"', '"tests": [{ "src": "alice@", "deny": ["tag:router:22"] }],\n  "acls"');
    const r = await evaluateFleet(REGISTRY, fleetWith({ "fleet.yaml": FLEET, "policy.hujson": failing }), "fx");
    expect(r.diagnostics).toEqual([]);
    const t = runFleetTests(r.fleet!);
    expect(t.diagnostics.map((d) => d.path)).toEqual(["policy.tests[0].deny[0]"]);
    const moved = inPolicyFile(t.diagnostics, r.fleet!.dir, r.fleet!.policyFile);
    expect(moved.map((d) => `${d.file.replace(/^.*fx\//, "")}: ${d.path}`)).toEqual(["policy.hujson: tests[0].deny[0]"]);
  });

  it("a moved fix names the key inside the policy file (acls, not policy.acls) and writes rules as JSON; the inline fleet keeps YAML", async () => {
    const fixes = async (files: Record<string, string>) => (await evaluateFleet(REGISTRY, fleetWith(files), "fx")).diagnostics.filter((d) => d.severity === "error").map((d) => `${d.path}: ${d.expected} | ${d.fix}`);
    // Neither acls nor grants (fail-closed).
    const noRules = '{ "tagOwners": { "tag:router": ["alice@"] } }';
    expect(await fixes({ "fleet.yaml": FLEET, "policy.hujson": noRules })).toEqual([
      ': acls or grants with at least one rule (a policy fails closed) | write the rules you mean; to allow every node everything, say so: "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]',
    ]);
    expect(await fixes({ "fleet.yaml": BASE["fleet.yaml"].replace(/  acls:[\s\S]*$/, "") })).toEqual([
      'policy: policy.acls or policy.grants with at least one rule (a policy fails closed) | write the rules you mean; to allow every node everything, say so: policy.acls: [{action: accept, src: ["*"], dst: ["*:*"]}]',
    ]);
    // An admin who cannot SSH to the coordinator, and an unknown group.
    const admin = FLEET.replace("users: [alice]", "users: [alice, bob]\nadmins: [bob]");
    const rules = '{ "tagOwners": { "tag:router": ["alice@"] }, "acls": [{ "action": "accept", "src": ["alice@", "group:ops"], "dst": ["*:*"] }] }';
    const filed = await fixes({ "fleet.yaml": admin, "policy.hujson": rules });
    expect(filed).toContainEqual(expect.stringMatching(/^acls: admin bob@ allowed tcp:22 to the coordinator vps \| add \{"action": "accept", "src": \["bob@"\], "dst": \["[^"]+:22"\]\} to acls$/));
    expect(filed).toContainEqual('acls[0].src[1]: a group defined in groups | define group:ops under groups, or fix the name');
    const inline = await fixes({ "fleet.yaml": BASE["fleet.yaml"].replace("users: [alice]", "users: [alice, bob]\nadmins: [bob]").replace("src: [alice@]", "src: [alice@, group:ops]") });
    expect(inline).toContainEqual(expect.stringMatching(/^policy\.acls: admin bob@ allowed tcp:22 to the coordinator vps \| add \{action: accept, src: \[bob@\], dst: \[[^\]"]+:22\]\} to policy\.acls$/));
    expect(inline).toContainEqual("policy.acls[0].src[1]: a group defined in policy.groups | define group:ops under policy.groups, or fix the name");
  });

  it("a moved text keeps file names, paths with brackets and prose; only a policy. key prefix and YAML flow values change", () => {
    const d = { severity: "error" as const, file: "fx/fleet.yaml", path: "policy.acls[2]", expected: "a tag of policy.tagOwners, as in policy.hujson", found: "policy.acls", fix: 'add "tag:x": [<admin>@] under policy.tagOwners; see acls[3] and policy.hujson, or set x: {a: 1}' };
    const [m] = inPolicyFile([d], "fx", "fx/p.hujson");
    expect(m).toEqual({ ...d, file: "fx/p.hujson", path: "acls[2]", expected: "a tag of tagOwners, as in policy.hujson", fix: 'add "tag:x": ["<admin>@"] under tagOwners; see acls[3] and policy.hujson, or set "x": {"a": 1}' });
  });

  it("a problem outside the policy that names a part of it (nodeExpiry.exemptTags) names that part in the policy file; inline, as before", async () => {
    const expiry = 'nodeExpiry:\n  after: 180d\n  exemptTags: [tag:router, tag:nope]\n';
    const fixes = async (files: Record<string, string>) =>
      (await evaluateFleet(REGISTRY, fleetWith(files), "fx")).diagnostics.filter((d) => d.path.startsWith("nodeExpiry")).map((d) => `${d.file.replace(/^.*fx\//, "")}: ${d.path}: ${d.expected} | ${d.found} | ${d.fix}`.replace(/\S*fx\//g, ""));
    expect(await fixes({ "fleet.yaml": FLEET + expiry, "policy.hujson": POLICY })).toEqual([
      'fleet.yaml: nodeExpiry.exemptTags[1]: a tag of tagOwners in policy.hujson (tag:server) | "tag:nope", which tagOwners in policy.hujson does not define | add tag:nope to tagOwners in policy.hujson, or remove it here',
    ]);
    expect(await fixes({ "fleet.yaml": BASE["fleet.yaml"] + expiry })).toEqual([
      'fleet.yaml: nodeExpiry.exemptTags[1]: a tag of policy.tagOwners (tag:server) | "tag:nope", which policy.tagOwners does not define | add tag:nope to policy.tagOwners, or remove it here',
    ]);
  });

  it("a part of the policy named outside it: its path kept, brackets and all; file names and other words left alone", () => {
    const d = {
      severity: "warning" as const, file: "fx/vps.yaml", path: "tailscale.tags",
      expected: "an owner in policy.tagOwners[\"tag:x\"] or policy.groups, or policy.hosts.my-nas, or policy.tagOwners['tag:y']",
      found: "mypolicy.acls, policy.hujson, policy.JSON, policy.example.com, policy.aclsx",
      fix: "see policy.acls[3].dst, then run check",
    };
    const [moved] = inPolicyFile([d], "fx", "fx/p.hujson");
    expect(moved).toEqual({
      ...d,
      expected: "an owner in tagOwners[\"tag:x\"] in fx/p.hujson or groups in fx/p.hujson, or hosts.my-nas in fx/p.hujson, or tagOwners['tag:y'] in fx/p.hujson",
      fix: "see acls[3].dst in fx/p.hujson, then run check",
    });
    // Twice through (the loader's diagnostics go through it again when the fleet is evaluated): the same.
    expect(inPolicyFile([moved], "fx", "fx/p.hujson")).toEqual([moved]);
    expect(inPolicyFile([d], "fx", undefined)).toEqual([d]);
  });

  it("inPolicyFile moves only fleet.yaml's policy paths, and nothing without a policy file", () => {
    const d = (file: string, p: string) => ({ severity: "error" as const, file, path: p, expected: "", found: "", fix: "" });
    const diags = [d("fx/fleet.yaml", "policy.acls[0]"), d("fx/fleet.yaml", "policy"), d("fx/fleet.yaml", "policyx"), d("fx/fleet.yaml", "users[0]"), d("fx/vps.yaml", "policy.acls"), d("other/fleet.yaml", "policy.acls")];
    expect(inPolicyFile(diags, "fx", "fx/p.hujson").map((x) => `${x.file}: ${x.path}`)).toEqual([
      "fx/p.hujson: acls[0]", "fx/p.hujson: ", "fx/fleet.yaml: policyx", "fx/fleet.yaml: users[0]", "fx/vps.yaml: policy.acls", "other/fleet.yaml: policy.acls",
    ]);
    expect(inPolicyFile(diags, "fx", undefined)).toBe(diags);
  });
});

describe("policy file problems: one diagnostic each, with the fix", () => {
  const cases: [string, Record<string, string | null>, string][] = [
    ["no such file", { "fleet.yaml": FLEET }, 'fleet.yaml: policy: expected a policy file that exists, found "./policy.hujson". Fix: create'],
    ["not written ./", { "fleet.yaml": FLEET.replace("./policy.hujson", "policy.hujson"), "policy.hujson": POLICY }, 'fleet.yaml: policy: expected the policy as a mapping, or a file written ./<file>.hujson, found "policy.hujson". Fix: write it as ./policy.hujson'],
    ["an empty path", { "fleet.yaml": FLEET.replace("./policy.hujson", '""') }, 'fleet.yaml: policy: expected the policy as a mapping, or a file written ./<file>.hujson, found "". Fix: write the path, e.g. ./policy.hujson'],
    ["outside the folder", { "fleet.yaml": FLEET.replace("./policy.hujson", "../policy.hujson") }, 'fleet.yaml: policy: expected a file inside the hosts folder, found "../policy.hujson", which leaves the hosts folder (it was not read). Fix: copy the file into the hosts folder and set policy: ./<file>.hujson'],
    ["absolute", { "fleet.yaml": FLEET.replace("./policy.hujson", "/etc/headscale/policy.hujson") }, "fleet.yaml: policy: expected a file inside the hosts folder, written ./<file>.hujson, found \"/etc/headscale/policy.hujson\", an absolute or Windows path"],
    ["a YAML name", { "fleet.yaml": FLEET.replace("./policy.hujson", "./_policy.yaml"), "_policy.yaml": "acls: []\n" }, "fleet.yaml: policy: expected a HuJSON policy file (./<file>.hujson), headscale's own format"],
    ["a syntax error", { "fleet.yaml": FLEET, "policy.hujson": '{\n  "acls": [\n    { "action": accept }\n  ]\n}\n' }, "policy.hujson: line 3:17: expected HuJSON, headscale's policy format (JSON with // comments and trailing commas): a value (object, array, string, number, true, false or null), found \"accept\". Fix: fix the syntax at that line"],
    ["a duplicate key", { "fleet.yaml": FLEET, "policy.hujson": '{ "acls": [],\n "acls": [] }' }, 'policy.hujson: line 2:2: expected HuJSON'],
    ["not an object", { "fleet.yaml": FLEET, "policy.hujson": '[{ "action": "accept" }]' }, "policy.hujson: expected one policy object, as headscale's policy file holds"],
    ["an empty file", { "fleet.yaml": FLEET, "policy.hujson": "" }, "policy.hujson: line 1:1: expected HuJSON"],
    ["not UTF-8", { "fleet.yaml": FLEET, "policy.hujson": null }, "policy.hujson: expected a UTF-8 text file"],
    ["too large", { "fleet.yaml": FLEET, "policy.hujson": `{ "acls": [], "hosts": { ${Array.from({ length: 60_000 }, (_, i) => `"h${i}": "10.0.0.1"`).join(", ")} } }` }, `policy.hujson: expected a policy file of at most 1 MiB (the documented limit), found`],
    ["too many values", { "fleet.yaml": FLEET, "policy.hujson": `{ "acls": [], "x": [${"0,".repeat(POLICY_LIMITS.values)}0] }` }, `policy.hujson: line 1:`],
    ["too deep", { "fleet.yaml": FLEET, "policy.hujson": `{ "x": ${"[".repeat(40)}${"]".repeat(40)} }` }, `policy.hujson: line 1:${8 + POLICY_LIMITS.depth}: expected arrays and objects nested at most ${POLICY_LIMITS.depth} deep, found more than ${POLICY_LIMITS.depth} levels of nesting (at line 1, column ${8 + POLICY_LIMITS.depth})`],
  ];
  it.each(cases)("%s", async (name, files, want) => {
    const dir = fleetWith(files);
    if (name === "not UTF-8") writeFileSync(path.join(dir, "policy.hujson"), Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x7d]));
    const r = await loadFleetDir(dir);
    const errs = lines(r.diagnostics);
    expect(errs).toHaveLength(1);
    expect(errs[0]).toContain(want);
    expect(r.fleet).toBeUndefined();
  });

  it("too many values: said as the limit, with the fix", async () => {
    const r = await loadFleetDir(fleetWith({ "fleet.yaml": FLEET, "policy.hujson": `{ "acls": [], "x": [${"0,".repeat(POLICY_LIMITS.values)}0] }` }));
    expect(lines(r.diagnostics)[0]).toMatch(/expected a policy of at most 200000 values \(the documented limit\), found more than 200000 values \(counting stopped at line 1, column (\d+)\)\. Fix: remove rules/);
    // The value past the limit: the object, acls' list and x's list are three, so it is the 199,998th 0 of x, two characters each from column 21.
    expect(lines(r.diagnostics)[0]).toContain(`line 1:${21 + 2 * (POLICY_LIMITS.values - 3)}: `);
    expect(lines(r.diagnostics)[0]).toContain(`column ${21 + 2 * (POLICY_LIMITS.values - 3)})`);
  });

  it("a directory, and a link out of the folder, are refused without being read", async () => {
    const d1 = fleetWith({ "fleet.yaml": FLEET });
    mkdirSync(path.join(d1, "policy.hujson"));
    expect(lines((await loadFleetDir(d1)).diagnostics)).toEqual([expect.stringContaining("policy.hujson: expected a policy file inside the hosts folder, found a directory. Fix: point policy at the policy file itself")]);
    const d2 = fleetWith({ "fleet.yaml": FLEET });
    writeFileSync(path.join(d2, "..", "outside.hujson"), POLICY);
    symlinkSync(path.join(d2, "..", "outside.hujson"), path.join(d2, "policy.hujson"));
    expect(lines((await loadFleetDir(d2)).diagnostics)).toEqual([expect.stringContaining("policy.hujson: expected a policy file inside the hosts folder, found a symbolic link to a file outside the hosts folder (it was not read)")]);
    // A link that stays inside the folder is followed.
    const d3 = fleetWith({ "fleet.yaml": FLEET, "_real.hujson": POLICY });
    symlinkSync("_real.hujson", path.join(d3, "policy.hujson"));
    expect((await loadFleetDir(d3)).diagnostics).toEqual([]);
  });

  it("the largest allowed policy file loads (1,000 rules and more, far past the YAML limit)", async () => {
    const rules = Array.from({ length: 6000 }, (_, i) => `    { "action": "accept", "src": ["alice@"], "dst": ["10.${i % 250}.${i % 200}.0/24:${1 + (i % 60000)}"] },`);
    const text = `{\n  "tagOwners": { "tag:router": ["alice@"] },\n  "acls": [\n${rules.join("\n")}\n  ],\n}\n`;
    expect(Buffer.byteLength(text)).toBeGreaterThan(400 * 1024);
    expect(Buffer.byteLength(text)).toBeLessThan(POLICY_LIMITS.fileBytes);
    const r = await loadFleetDir(fleetWith({ "fleet.yaml": FLEET, "policy.hujson": text }));
    expect(r.diagnostics).toEqual([]);
    expect((r.fleet!.value as { policy: { acls: unknown[] } }).policy.acls).toHaveLength(6000);
  });
});
