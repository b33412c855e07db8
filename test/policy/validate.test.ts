/**
 * core/policy/validate.ts, one check at a time: each bad policy gets exactly
 * the diagnostics listed (option path, expected, found, fix), and each sound
 * variant next to a check gets none. Pure and fast, for Stryker (npm run
 * mutate -- policy-validate); policy.test.ts holds the first table and its
 * snapshots.
 */
import { describe, expect, it } from "vitest";
import { policySchema, validatePolicy, type PolicyContext } from "../../core/policy/index.ts";

const ctx: PolicyContext = {
  file: "hosts/home/fleet.yaml", basePath: "policy", users: ["alice", "bob@"],
  hostTags: { vps: ["tag:server"], router: ["tag:router"] },
  hostNames: ["vps", "router", "laptop"], advertisedRoutes: { router: ["192.168.8.0/24"] }, exitNodes: [],
  coordinatorHost: "vps", adminUsers: ["alice"],
};
const good = {
  groups: { "group:admins": ["alice@"] },
  tagOwners: { "tag:server": ["group:admins"], "tag:router": ["alice@"] },
  hosts: { nas: "192.168.8.10", lan: "192.168.8.0/24", nas6: "fd00::10", lan6: "fd00::/64" },
  acls: [{ action: "accept", src: ["group:admins"], dst: ["*:*"] }],
};
const diags = (patch: object, c: PolicyContext = ctx) => validatePolicy(policySchema.parse({ ...good, ...patch }), c).map((d) => [d.path, d.expected, d.found, d.fix]);
const acl = (src: string[], dst: string[], proto?: string) => ({ acls: [...good.acls, { action: "accept", src, dst, ...(proto === undefined ? {} : { proto }) }] });
const grant = (g: object) => ({ grants: [{ src: ["alice@"], dst: ["tag:server"], ip: ["*"], ...g }] });
const ssh = (r: object) => ({ ssh: [{ action: "accept", src: ["group:admins"], dst: ["tag:server"], users: ["root"], ...r }] });
const sshTest = (t: object) => ({ sshTests: [{ src: "alice@", dst: ["tag:server"], accept: ["root"], ...t }] });
const test = (t: object) => ({ tests: [{ src: "alice@", accept: ["tag:server:22"], ...t }] });

describe("validatePolicy: sound variants beside each check", () => {
  it.each<[string, object]>([
    ["the base policy", {}],
    ["autogroups each place allows", {
      acls: [...good.acls, { action: "accept", src: ["autogroup:member", "autogroup:tagged", "autogroup:danger-all"], dst: ["autogroup:internet:*", "autogroup:member:22", "autogroup:tagged:22"] }],
      ssh: [{ action: "accept", src: ["autogroup:member"], dst: ["autogroup:self", "autogroup:member"], users: ["root"] }, { action: "accept", src: ["autogroup:tagged"], dst: ["autogroup:tagged", "tag:server"], users: ["autogroup:nonroot"] }],
      nodeAttrs: [{ target: ["autogroup:member", "autogroup:tagged", "alice@", "group:admins", "tag:server", "*", "100.64.0.1"], attr: ["funnel"] }],
      tests: [{ src: "autogroup:danger-all", accept: ["tag:server:22"] }, { src: "autogroup:tagged", deny: ["autogroup:member:22"] }],
    }],
    ["autogroup:self with user, group, * and member sources (acl)", acl(["alice@", "group:admins", "*", "autogroup:member"], ["autogroup:self:*"])],
    ["autogroup:self with user, group and member sources (grant)", grant({ src: ["alice@", "group:admins", "autogroup:member"], dst: ["autogroup:self"] })],
    ["icmp and a numbered proto with every port", acl(["alice@"], ["tag:server:*"], "icmp")],
    ["grant: icmp:*, any proto with ports, sctp with ports, via a known tag, app only", {
      grants: [{ src: ["alice@"], dst: ["tag:server", "nas", "lan6"], ip: ["icmp:*", "22", "sctp:9", "tcp:1-2"], via: ["tag:router"] }, { src: ["alice@"], dst: ["tag:server"], app: { "tailscale.com/cap/x": [{}] } }],
    }],
    ["grant to a /1 and to a single address", grant({ dst: ["0.0.0.0/1", "::/1", "192.168.8.1"] })],
    ["tagOwners: users, groups and tags that exist", { tagOwners: { ...good.tagOwners, "tag:a.b_c-1": ["bob@", "group:admins", "tag:server"] } }],
    ["hosts: v4, v6, ranges", {}],
    ["ssh: the sole source user to itself; check with checkPeriod; tags to tags", {
      ssh: [
        { action: "accept", src: ["alice@"], dst: ["alice@"], users: ["root"] },
        { action: "check", src: ["group:admins"], dst: ["tag:server"], users: ["root"], checkPeriod: "12h" },
        { action: "accept", src: ["tag:router"], dst: ["tag:server", "autogroup:tagged"], users: ["root"] },
      ],
    }],
    ["autoApprovers: users, groups, carried tags; exit nodes", { autoApprovers: { routes: { "192.168.8.0/24": ["alice@", "group:admins", "tag:router"], "fd00::/64": ["bob@"] }, exitNode: ["tag:server", "alice@", "group:admins"] } }],
    ["tests: tcp, udp, sctp, single hosts", { tests: [{ src: "alice@", proto: "tcp", accept: ["tag:server:22", "nas:445", "nas6:22", "100.64.0.1:22"] }, { src: "group:admins", proto: "UDP", deny: ["tag:router:53"] }, { src: "bob@", proto: "sctp", deny: ["[fd00::1]:9"] }] }],
    ["sshTests: a user, a tag, a group, one host, one address, autogroups", {
      sshTests: [{ src: " alice@ ", dst: ["tag:server", "alice@", "group:admins", "nas", "nas6", "100.64.0.1", "fd00::1/128", "autogroup:member", "autogroup:self"], accept: ["root"], deny: ["bob"], check: ["alice"] }],
    }],
  ])("%s: no diagnostic", (_name, patch) => {
    expect(diags(patch)).toEqual([]);
  });
});

describe("validatePolicy: each check's exact diagnostic", () => {
  it.each<[string, object, string[][], PolicyContext?]>([
    ["no users declared", { groups: { "group:admins": ["alice@"] } }, [
      ["policy.groups[\"group:admins\"][0]", "a user from fleet.yaml users (none declared)", "unknown user \"alice@\"", "add alice to users in fleet.yaml, or fix the name"],
      ["policy.tagOwners[\"tag:router\"][0]", "a user from fleet.yaml users (none declared)", "unknown user \"alice@\"", "add alice to users in fleet.yaml, or fix the name"],
    ], { ...ctx, users: [], adminUsers: [] }],
    ["group name without group:", { groups: { ...good.groups, admins: ["alice@"] } }, [
      ["policy.groups.admins", "a name starting with group:", "\"admins\"", "rename it group:admins"],
    ]],
    ["tag name starting with a digit", { tagOwners: { ...good.tagOwners, "tag:1x": ["alice@"] } }, [
      ["policy.tagOwners[\"tag:1x\"]", "tag:<name> starting with a letter", "\"tag:1x\"", "rename the tag, e.g. tag:router"],
    ]],
    ["tag name with a space", { tagOwners: { ...good.tagOwners, "tag:a b": ["alice@"] } }, [
      ["policy.tagOwners[\"tag:a b\"]", "tag:<name> starting with a letter", "\"tag:a b\"", "rename the tag, e.g. tag:router"],
    ]],
    ["tag owner: unknown user, unknown group, unknown tag, bare word", { tagOwners: { ...good.tagOwners, "tag:x": ["carol@", "group:nope", "tag:nope", "alice"] } }, [
      ["policy.tagOwners[\"tag:x\"][0]", "a user from fleet.yaml users (alice@, bob@)", "unknown user \"carol@\"", "add carol to users in fleet.yaml, or fix the name"],
      ["policy.tagOwners[\"tag:x\"][1]", "a group defined in policy.groups", "unknown group \"group:nope\"", "define group:nope under policy.groups"],
      ["policy.tagOwners[\"tag:x\"][2]", "a tag defined in policy.tagOwners", "unknown tag \"tag:nope\"", "add tag:nope to policy.tagOwners"],
      ["policy.tagOwners[\"tag:x\"][3]", "a user (alice@), group:x or tag:x", "\"alice\"", "write a user as alice@"],
    ]],
    ["host names with @, with :, empty", { hosts: { ...good.hosts, "a@b": "10.0.0.1", "a:b": "10.0.0.2", "": "10.0.0.3" } }, [
      ["policy.hosts[\"a@b\"]", "a name without @ or :", "\"a@b\"", "rename the host entry"],
      ["policy.hosts[\"a:b\"]", "a name without @ or :", "\"a:b\"", "rename the host entry"],
      ["policy.hosts[\"\"]", "a name without @ or :", "\"\"", "rename the host entry"],
    ]],
    ["autogroup:self as an acl source", acl(["autogroup:self"], ["tag:server:22"]), [
      ["policy.acls[1].src[0]", "one of autogroup:member, autogroup:tagged, autogroup:danger-all here", "\"autogroup:self\"", "use a supported autogroup, or name the users/tags directly"],
    ]],
    ["autogroup:internet as a test source", test({ src: "autogroup:internet" }), [
      ["policy.tests[0].src", "one of autogroup:member, autogroup:tagged, autogroup:danger-all here", "\"autogroup:internet\"", "use a supported autogroup, or name the users/tags directly"],
    ]],
    ["autogroup:danger-all as an ssh source and destination", ssh({ src: ["autogroup:danger-all"], dst: ["autogroup:internet"] }), [
      ["policy.ssh[0].src[0]", "one of autogroup:member, autogroup:tagged here", "\"autogroup:danger-all\"", "use a supported autogroup, or name the users/tags directly"],
      ["policy.ssh[0].dst[0]", "one of autogroup:member, autogroup:tagged, autogroup:self here", "\"autogroup:internet\"", "use a supported autogroup, or name the users/tags directly"],
    ]],
    ["autogroup:self as a node attribute target", { nodeAttrs: [{ target: ["autogroup:self"], attr: ["funnel"] }] }, [
      ["policy.nodeAttrs[0].target[0]", "one of autogroup:member, autogroup:tagged here", "\"autogroup:self\"", "use a supported autogroup, or name the users/tags directly"],
    ]],
    ["ssh to * and to an address", ssh({ dst: ["*", "100.64.0.1"] }), [
      ["policy.ssh[0].dst[0]", "tags, autogroup:member/tagged/self or the source user", "\"*\"", "name the destination tags or use autogroup:self"],
      ["policy.ssh[0].dst[1]", "tags, autogroup:member/tagged/self or the source user", "\"100.64.0.1\"", "SSH destinations cannot be addresses; use the host's tag"],
    ]],
    ["ssh from a host, an address and *", ssh({ src: ["nas", "100.64.0.0/10", "*"] }), [
      ["policy.ssh[0].src[0]", "users (alice@), group:x, tag:x or autogroup:member/tagged as SSH sources", "\"nas\"", "name the source devices by tag, user or group"],
      ["policy.ssh[0].src[1]", "users (alice@), group:x, tag:x or autogroup:member/tagged as SSH sources", "\"100.64.0.0/10\"", "name the source devices by tag, user or group"],
      ["policy.ssh[0].src[2]", "users (alice@), group:x, tag:x or autogroup:member/tagged as SSH sources", "\"*\"", "use autogroup:member (user devices) or autogroup:tagged"],
    ]],
    ["unparsable source", acl(["tag:1"], ["tag:server:22"]), [
      ["policy.acls[1].src[0]", "a user (alice@), group:x, tag:x, autogroup:x, host name, IP or CIDR", "\"tag:1\"", "tag names must start with a letter after 'tag:', found \"tag:1\""],
    ]],
    ["udp has ports, icmp has not (acl dst with a range)", acl(["alice@"], ["tag:server:1-2", "nas:*"], "icmp"), [
      ["policy.acls[1].dst[0]", "ports \"*\" with proto icmp (only tcp, udp and sctp have ports)", "\"tag:server:1-2\"", "write tag:server:*"],
    ]],
    ["self with a host, a prefix and a tag source (acl)", acl(["nas", "10.0.0.0/8", "autogroup:tagged"], ["autogroup:self:22"]), [
      ["policy.acls[1].src[0]", "users, groups, autogroup:member or * as sources of autogroup:self", "\"nas\"", "move autogroup:self to a rule of its own with user sources"],
      ["policy.acls[1].src[1]", "users, groups, autogroup:member or * as sources of autogroup:self", "\"10.0.0.0/8\"", "move autogroup:self to a rule of its own with user sources"],
      ["policy.acls[1].src[2]", "users, groups, autogroup:member or * as sources of autogroup:self", "\"autogroup:tagged\"", "move autogroup:self to a rule of its own with user sources"],
    ]],
    ["self with * and a tag source (grant)", grant({ src: ["*", "tag:server", "nas"], dst: ["autogroup:self"] }), [
      ["policy.grants[0].src[0]", "users, groups or autogroup:member as grant sources of autogroup:self", "\"*\"", "use autogroup:member instead of * (grants reject * with autogroup:self)"],
      ["policy.grants[0].src[1]", "users, groups or autogroup:member as grant sources of autogroup:self", "\"tag:server\"", "use autogroup:member instead of * (grants reject * with autogroup:self)"],
      ["policy.grants[0].src[2]", "users, groups or autogroup:member as grant sources of autogroup:self", "\"nas\"", "use autogroup:member instead of * (grants reject * with autogroup:self)"],
    ]],
    ["grant ip: bad spec, icmp with a port, gre with a range", grant({ ip: ["tcp:x", "icmp:8", "gre:1-2"] }), [
      ["policy.grants[0].ip[0]", "*, a port list, or proto:ports (tcp:443, udp:53)", "\"tcp:x\"", "ip \"tcp:x\": port \"x\" is not a number"],
      ["policy.grants[0].ip[1]", "ports \"*\" with icmp", "\"icmp:8\"", "write icmp:*"],
      ["policy.grants[0].ip[2]", "ports \"*\" with gre", "\"gre:1-2\"", "write gre:*"],
    ]],
    ["grant with an empty ip and no app", grant({ ip: [] }), [
      ["policy.grants[0]", "ip or app", "neither", "add ip: [\"*\"] (or the ports, e.g. tcp:443)"],
    ]],
    ["grant to ::/0", grant({ dst: ["::/0", "tag:server"] }), [
      ["policy.grants[0].dst[0]", "\"*\" or autogroup:internet for all addresses", "\"::/0\"", "write \"*\" (the tailnet) or autogroup:internet (through exit nodes)"],
    ]],
    ["grant via an unknown tag", grant({ via: ["tag:router", "tag:nope"] }), [
      ["policy.grants[0].via[1]", "a tag defined in policy.tagOwners", "unknown tag \"tag:nope\"", "add tag:nope to policy.tagOwners, or fix the name"],
    ]],
    ["ssh login users: empty and *", ssh({ users: ["root", "", "*"] }), [
      ["policy.ssh[0].users[1]", "a login user (root, autogroup:nonroot, a name)", "\"\"", "use autogroup:nonroot for any non-root user"],
      ["policy.ssh[0].users[2]", "a login user (root, autogroup:nonroot, a name)", "\"*\"", "use autogroup:nonroot for any non-root user"],
    ]],
    ["ssh from a group to a user", ssh({ dst: ["alice@"] }), [
      ["policy.ssh[0].dst[0]", "the source user only (alice@ as the sole source)", "\"alice@\"", "use autogroup:self for same-user SSH"],
    ]],
    ["ssh from autogroup:member to a user", ssh({ src: ["autogroup:member"], dst: ["alice@"] }), [
      ["policy.ssh[0].dst[0]", "the source user only (alice@ as the sole source)", "\"alice@\"", "use autogroup:self for same-user SSH"],
    ]],
    ["ssh from two users to one of them", ssh({ src: ["alice@", "bob@"], dst: ["alice@"] }), [
      ["policy.ssh[0].dst[0]", "the source user only (alice@ as the sole source)", "\"alice@\"", "use autogroup:self for same-user SSH"],
    ]],
    ["ssh from one user to another", ssh({ src: ["bob@"], dst: ["alice@"] }), [
      ["policy.ssh[0].dst[0]", "the source user only (alice@ as the sole source)", "\"alice@\"", "use autogroup:self for same-user SSH"],
    ]],
    ["ssh from autogroup:tagged to a user", ssh({ src: ["autogroup:tagged"], dst: ["bob@"] }), [
      ["policy.ssh[0].dst[0]", "tags or autogroup:tagged as destinations of tagged sources", "\"bob@\"", "tags cannot SSH to user devices; use tag destinations"],
    ]],
    ["ssh from a tag to autogroup:self and autogroup:member", ssh({ src: ["tag:router"], dst: ["autogroup:self", "autogroup:member", "autogroup:tagged"] }), [
      ["policy.ssh[0].dst[0]", "user or group sources for user-owned destinations", "\"autogroup:self\"", "remove tags from src, or target tags"],
      ["policy.ssh[0].dst[1]", "user or group sources for user-owned destinations", "\"autogroup:member\"", "remove tags from src, or target tags"],
    ]],
    ["ssh checkPeriod with accept", ssh({ checkPeriod: "1h" }), [
      ["policy.ssh[0].checkPeriod", "checkPeriod only with action: check", "action: accept", "remove checkPeriod or set action: check"],
    ]],
    ["approvers: unknown user, unknown group, unknown tag, bare word", { autoApprovers: { routes: { "192.168.8.0/24": ["carol@", "group:nope", "tag:nope", "router"] } } }, [
      ["policy.autoApprovers.routes[\"192.168.8.0/24\"][0]", "a user from fleet.yaml users (alice@, bob@)", "unknown user \"carol@\"", "add carol to users in fleet.yaml, or fix the name"],
      ["policy.autoApprovers.routes[\"192.168.8.0/24\"][1]", "a group defined in policy.groups", "unknown group \"group:nope\"", "define group:nope"],
      ["policy.autoApprovers.routes[\"192.168.8.0/24\"][2]", "a tag defined in policy.tagOwners", "unknown tag \"tag:nope\"", "add tag:nope to policy.tagOwners"],
      ["policy.autoApprovers.routes[\"192.168.8.0/24\"][3]", "a user (alice@), group:x or tag:x", "\"router\"", "write a user as router@"],
    ]],
    ["exit-node approvers: a tag no host has, a bare word", { tagOwners: { ...good.tagOwners, "tag:gone": ["alice@"] }, autoApprovers: { exitNode: ["tag:gone", "exit"] } }, [
      ["policy.autoApprovers.exitNode[0]", "a tag some host carries", "tag:gone (no host has it)", "give the router host tailscale.tags: [tag:gone], or remove this approver"],
      ["policy.autoApprovers.exitNode[1]", "a user (alice@), group:x or tag:x", "\"exit\"", "write a user as exit@"],
    ]],
    ["node attribute target unparsable", { nodeAttrs: [{ target: ["tag:1"], attr: ["funnel"] }] }, [
      ["policy.nodeAttrs[0].target[0]", "a user (alice@), group:x, tag:x, autogroup:x, host name, IP or CIDR", "\"tag:1\"", "tag names must start with a letter after 'tag:', found \"tag:1\""],
    ]],
    ["test source unknown", test({ src: "group:nope" }), [
      ["policy.tests[0].src", "a group defined in policy.groups", "unknown group \"group:nope\"", "define group:nope under policy.groups, or fix the name"],
    ]],
    ["test proto unknown, and gre", { tests: [{ src: "alice@", proto: "tpc", accept: ["tag:server:22"] }, { src: "alice@", proto: "gre", accept: ["tag:server:22"] }] }, [
      ["policy.tests[0].proto", "tcp, udp, sctp or nothing", "\"tpc\"", "tests describe one connection: use tcp or udp"],
      ["policy.tests[1].proto", "tcp, udp, sctp or nothing", "\"gre\"", "tests describe one connection: use tcp or udp"],
    ]],
    ["test destinations: unparsable, the internet, a range of ports, a CIDR host, a v6 CIDR host, an unknown tag", test({ accept: ["nas", "autogroup:internet:443", "tag:server:1-2"], deny: ["lan:22", "lan6:22", "tag:nope:22", "[fd00::/64]:22"] }), [
      ["policy.tests[0].accept[0]", "host:port", "\"nas\"", "\"nas\" has no port: write it as alias:port, e.g. tag:web:443 or host:*"],
      ["policy.tests[0].accept[1]", "one host:port", "\"autogroup:internet:443\"", "autogroup:internet cannot be tested; test an address instead"],
      ["policy.tests[0].accept[2]", "one port (tests check one connection)", "\"tag:server:1-2\"", "split it into one entry per port"],
      ["policy.tests[0].deny[0]", "one host, not a CIDR", "\"lan:22\" (lan is 192.168.8.0/24)", "test one address of the range"],
      ["policy.tests[0].deny[1]", "one host, not a CIDR", "\"lan6:22\" (lan6 is fd00::/64)", "test one address of the range"],
      ["policy.tests[0].deny[2]", "a tag defined in policy.tagOwners", "unknown tag \"tag:nope\"", "add tag:nope to policy.tagOwners with its owners, or fix the name"],
      ["policy.tests[0].deny[3]", "host:port", "\"[fd00::/64]:22\"", "square brackets are only valid around IPv6 addresses, found \"[fd00::/64]:22\""],
    ]],
    ["sshTests: empty source, no destination, no login users", sshTest({ src: "  ", dst: [], accept: [] }), [
      ["policy.sshTests[0].src", "one source alias (a user, group, tag, host or IP)", "\"\"", "name the source, e.g. alice@ or tag:ci"],
      ["policy.sshTests[0].dst", "at least one destination", "[]", "add a destination, e.g. dst: [tag:server]"],
      ["policy.sshTests[0]", "accept, deny or check (at least one login user)", "none", "add accept: [root] or deny: [root], the login users to test"],
    ]],
    ["sshTests: an unknown source", sshTest({ src: "carol@" }), [
      ["policy.sshTests[0].src", "a user from fleet.yaml users (alice@, bob@)", "unknown user \"carol@\"", "add carol to users in fleet.yaml, or fix the name"],
    ]],
    ["sshTests destinations: unparsable, the internet, a range, a v6 range, an unknown tag, a tag with a port, a range host, an unknown user, group and host", sshTest({ dst: ["x:y", "autogroup:internet", "10.0.0.0/8", "fd00::/64", "tag:nope", "tag:server:22", "lan", "lan6", "carol@", "group:nope", "nope"] }), [
      ["policy.sshTests[0].dst[0]", "a host, tag, user, IP or autogroup", "\"x:y\"", "\"x:y\" is not a user (alice@), group:, tag:, autogroup:, host name, IP or CIDR"],
      ["policy.sshTests[0].dst[1]", "one SSH host (a tag, host, user, IP or autogroup:member/tagged/self)", "\"autogroup:internet\"", "autogroup:internet cannot be an SSH destination; name the host's tag"],
      ["policy.sshTests[0].dst[2]", "one SSH host (a tag, host, user, IP or autogroup:member/tagged/self)", "\"10.0.0.0/8\"", "test one address of the range, or the host's tag"],
      ["policy.sshTests[0].dst[3]", "one SSH host (a tag, host, user, IP or autogroup:member/tagged/self)", "\"fd00::/64\"", "test one address of the range, or the host's tag"],
      ["policy.sshTests[0].dst[4]", "a tag defined in policy.tagOwners (sshTests destinations have no port)", "unknown tag \"tag:nope\"", "add tag:nope to policy.tagOwners, or fix the name"],
      ["policy.sshTests[0].dst[5]", "a tag defined in policy.tagOwners (sshTests destinations have no port)", "unknown tag \"tag:server:22\"", "write tag:server (SSH is always port 22)"],
      ["policy.sshTests[0].dst[6]", "one SSH host (a tag, host, user, IP or autogroup:member/tagged/self)", "\"lan\" (lan is 192.168.8.0/24)", "test one address of the range, or the host's tag"],
      ["policy.sshTests[0].dst[7]", "one SSH host (a tag, host, user, IP or autogroup:member/tagged/self)", "\"lan6\" (lan6 is fd00::/64)", "test one address of the range, or the host's tag"],
      ["policy.sshTests[0].dst[8]", "a user from fleet.yaml users (alice@, bob@)", "unknown user \"carol@\"", "add carol to users in fleet.yaml, or fix the name"],
      ["policy.sshTests[0].dst[9]", "a group defined in policy.groups", "unknown group \"group:nope\"", "define group:nope under policy.groups, or fix the name"],
      ["policy.sshTests[0].dst[10]", "a host defined in policy.hosts (or a user written with @, a group:, tag: or CIDR)", "unknown host \"nope\"", "add nope to policy.hosts with its IP, or write the user as nope@"],
    ]],
    ["sshTests: empty login users", sshTest({ accept: [" "], deny: [""], check: ["", "root"] }), [
      ["policy.sshTests[0].accept[0]", "a login user (root, a name)", "\"\"", "name the login user, e.g. root"],
      ["policy.sshTests[0].deny[0]", "a login user (root, a name)", "\"\"", "name the login user, e.g. root"],
      ["policy.sshTests[0].check[0]", "a login user (root, a name)", "\"\"", "name the login user, e.g. root"],
    ]],
    ["lockout with no admins listed: nobody reaches the coordinator", { acls: [{ action: "accept", src: ["tag:router"], dst: ["tag:server:22"] }] }, [
      ["policy.acls", "some user allowed tcp:22 to the coordinator vps", "no user device can SSH to it over the tailnet", "list admins in fleet.yaml and add {action: accept, src: [<admin>@], dst: [tag:server:22]} to policy.acls"],
    ], { ...ctx, adminUsers: [] }],
    ["lockout, grants only, untagged coordinator", { acls: undefined, grants: [{ src: ["tag:router"], dst: ["*"], ip: ["tcp:22"] }] }, [
      ["policy.grants", "admin alice@ allowed tcp:22 to the coordinator vps", "no rule matched", "add {action: accept, src: [alice@], dst: [autogroup:member:22]} to policy.acls"],
    ], { ...ctx, hostTags: { ...ctx.hostTags, vps: [] } }],
  ])("%s", (_name, patch, want, c) => {
    expect(diags(patch, c)).toEqual(want);
  });
});
