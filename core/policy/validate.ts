/**
 * Every check on a policy, reported together as Diagnostics (file, option
 * path, expected, found, fix). The structural rules are headscale 0.29's
 * (types.go Policy.validate, validateTests, the alias/port/proto parsers), so
 * a policy that passes here is one headscale loads; on top of them come the
 * checks only the fleet can make: users that do not exist, tags hosts use but
 * nobody owns, approvers for tags no host has, and lockout.
 *
 * Lockout, precisely: when the policy restricts traffic (it has acls or
 * grants) and the coordinator host is a tailnet node (a key of
 * ctx.hostTags; a coordinator outside the tailnet is not checked), then
 *  - every admin (ctx.adminUsers) must be allowed tcp/22 from one of their
 *    own untagged devices to the coordinator's tailnet address, by the packet
 *    filter (acls/grants); otherwise it is an error;
 *  - with no admins listed, at least one user device must be allowed that;
 *    otherwise it is an error ("nobody can SSH to the coordinator").
 * The check models each admin as one untagged device of that user and each
 * host with its tags (untagged hosts belong to no known user), so a rule
 * written for `autogroup:member`, a group, the user, `*` or a CIDR covering
 * the tailnet all count. Deploys reach hosts over their public address, so
 * this guards the recovery path (SSH over the tailnet when the public port is
 * closed), not the deploy itself.
 */
import type { Diagnostic } from "../types.ts";
import { parseAlias, parseDestination, parseIpSpec, parsePorts, parseProto, protoSupportsPorts, type Alias } from "./alias.ts";
import { hasHostBits, parsePrefix } from "./ipset.ts";
import { evaluateReachability } from "./reachability.ts";
import { policyUserNames } from "./fleet.ts";
import { syntheticIps } from "./synthetic.ts";
import type { Policy } from "./schema.ts";
import type { PolicyNode } from "./resolve.ts";

export interface PolicyContext {
  file: string;
  /** Option path of the policy in the file, usually `policy`. */
  basePath: string;
  users: string[];
  /** fleet.yaml's oidcUsers: people who log in through OpenID Connect, named by e-mail (meshfleet does not create them). */
  oidcUsers?: string[];
  hostTags: Record<string, string[]>;
  hostNames: string[];
  advertisedRoutes: Record<string, string[]>;
  exitNodes: string[];
  coordinatorHost: string;
  adminUsers?: string[];
}

type Where = "src" | "dst" | "sshSrc" | "sshDst" | "nodeAttrs" | "test";

const AUTOGROUPS_FOR: Record<Where, string[]> = {
  src: ["member", "tagged", "danger-all"],
  dst: ["internet", "member", "tagged", "self"],
  sshSrc: ["member", "tagged"],
  sshDst: ["member", "tagged", "self"],
  nodeAttrs: ["member", "tagged"],
  test: ["member", "tagged", "danger-all"],
};

export function validatePolicy(policy: Policy, ctx: PolicyContext): Diagnostic[] {
  const out: Diagnostic[] = [];
  const base = ctx.basePath;
  const users = new Set(ctx.users.map((u) => u.replace(/@$/, "")));
  const groups = policy.groups ?? {};
  const tagOwners = policy.tagOwners ?? {};
  const hosts = policy.hosts ?? {};
  const err = (path: string, expected: string, found: string, fix: string, severity: Diagnostic["severity"] = "error") =>
    out.push({ severity, file: ctx.file, path: path ? `${base}.${path}` : base, expected, found, fix });

  const oidcUsers = new Set(ctx.oidcUsers ?? []);
  // The part before @ of each OIDC person's e-mail, to their addresses: headscale names an OIDC user after its
  // preferred_username, which is usually that.
  const oidcLocal = new Map<string, string>();
  for (const e of oidcUsers) {
    const local = e.slice(0, e.indexOf("@"));
    oidcLocal.set(local, oidcLocal.has(local) ? `${oidcLocal.get(local)} or ${e}` : e);
  }
  const checkUser = (u: string, path: string) => {
    const name = u.replace(/@$/, "");
    if (users.has(name)) {
      // headscale matches `carol@` against every user's name and e-mail: with meshfleet's carol and an OIDC carol it finds two and refuses the whole policy.
      const twin = oidcLocal.get(name);
      if (twin && !name.includes("@"))
        err(path, `a user token headscale finds one user for (${name}@ matches every user named ${name}, and ${twin} will most likely log in as ${name})`, JSON.stringify(u),
          `name the OIDC person ${twin} in the policy and give meshfleet's user another name in fleet.yaml users, or remove ${twin} from oidcUsers`, "warning");
      return;
    }
    if (oidcUsers.has(name)) return;
    const local = name.includes("@") ? undefined : oidcLocal.get(name);
    const known = [...[...users].map((x) => `${x}@`), ...oidcUsers];
    err(path, `a user from fleet.yaml users${oidcUsers.size ? " or oidcUsers" : ""} (${known.join(", ") || "none declared"})`, `unknown user ${JSON.stringify(u)}`,
      local ? `write the OIDC person as ${local} (headscale matches ${name}@ by name, which an OIDC login only usually gives)`
        : name.includes("@") ? `add ${name} to oidcUsers in fleet.yaml if this person logs in through OpenID Connect, or fix the address`
        : `add ${name} to users in fleet.yaml, or fix the name`);
  };
  const checkRef = (a: Alias, path: string, where: Where) => {
    switch (a.kind) {
      case "user":
        checkUser(a.text, path);
        break;
      case "group":
        if (!(a.text in groups)) err(path, `a group defined in ${base}.groups`, `unknown group ${JSON.stringify(a.text)}`, `define ${a.text} under ${base}.groups, or fix the name`);
        break;
      case "tag":
        if (!(a.text in tagOwners)) err(path, `a tag defined in ${base}.tagOwners`, `unknown tag ${JSON.stringify(a.text)}`, `add ${a.text} to ${base}.tagOwners with its owners, or fix the name`);
        break;
      case "host":
        if (!(a.text in hosts)) err(path, `a host defined in ${base}.hosts (or a user written with @, a group:, tag: or CIDR)`, `unknown host ${JSON.stringify(a.text)}`, `add ${a.text} to ${base}.hosts with its IP, or write the user as ${a.text}@`);
        break;
      case "autogroup":
        if (!AUTOGROUPS_FOR[where].includes(a.name)) {
          err(path, `one of ${AUTOGROUPS_FOR[where].map((x) => `autogroup:${x}`).join(", ")} here`, JSON.stringify(a.text), `use a supported autogroup, or name the users/tags directly`);
        }
        break;
      case "wildcard":
        if (where === "sshDst") err(path, "tags, autogroup:member/tagged/self or the source user", `"*"`, `name the destination tags or use autogroup:self`);
        break;
      case "prefix":
        if (where === "sshDst") err(path, "tags, autogroup:member/tagged/self or the source user", JSON.stringify(a.text), `SSH destinations cannot be addresses; use the host's tag`);
        break;
    }
    if (a.kind === "host" && where === "sshDst") err(path, "tags, autogroup:member/tagged/self or the source user", `host ${JSON.stringify(a.text)}`, `SSH destinations cannot be hosts entries; use the host's tag`);
    // headscale's SSHSrcAliases take users, groups, tags and autogroups only (an address or `*` refuses the whole policy).
    if (where === "sshSrc" && (a.kind === "host" || a.kind === "prefix" || a.kind === "wildcard")) {
      err(path, "users (alice@), group:x, tag:x or autogroup:member/tagged as SSH sources", JSON.stringify(a.text), a.kind === "wildcard" ? "use autogroup:member (user devices) or autogroup:tagged" : "name the source devices by tag, user or group");
    }
  };
  const alias = (raw: string, path: string, where: Where): Alias | null => {
    const a = parseAlias(raw);
    if (!a.ok) {
      err(path, "a user (alice@), group:x, tag:x, autogroup:x, host name, IP or CIDR", JSON.stringify(raw), a.error);
      return null;
    }
    checkRef(a.value, path, where);
    return a.value;
  };

  // groups
  for (const [g, members] of Object.entries(groups)) {
    if (!g.startsWith("group:")) err(`groups.${g}`, "a name starting with group:", JSON.stringify(g), `rename it group:${g}`);
    members.forEach((m, i) => {
      const p = `groups["${g}"][${i}]`;
      if (m.startsWith("group:")) err(p, "users (groups cannot contain groups)", JSON.stringify(m), `list the members of ${m} here instead`);
      else if (!m.includes("@")) err(p, "a user written with @ (alice@)", JSON.stringify(m), `write it as ${m}@`);
      else checkUser(m, p);
    });
  }

  // tagOwners
  for (const [t, owners] of Object.entries(tagOwners)) {
    if (!/^tag:[A-Za-z][A-Za-z0-9._-]*$/.test(t)) err(`tagOwners["${t}"]`, "tag:<name> starting with a letter", JSON.stringify(t), "rename the tag, e.g. tag:router");
    owners.forEach((o, i) => {
      const p = `tagOwners["${t}"][${i}]`;
      if (o.includes("@")) checkUser(o, p);
      else if (o.startsWith("group:")) { if (!(o in groups)) err(p, `a group defined in ${base}.groups`, `unknown group ${JSON.stringify(o)}`, `define ${o} under ${base}.groups`); }
      else if (o.startsWith("tag:")) { if (!(o in tagOwners)) err(p, `a tag defined in ${base}.tagOwners`, `unknown tag ${JSON.stringify(o)}`, `add ${o} to ${base}.tagOwners`); }
      else err(p, "a user (alice@), group:x or tag:x", JSON.stringify(o), `write a user as ${o}@`);
    });
  }

  // hosts
  for (const [h, v] of Object.entries(hosts)) {
    if (h.includes("@") || h.includes(":") || h === "") err(`hosts["${h}"]`, "a name without @ or :", JSON.stringify(h), "rename the host entry");
    if (!parsePrefix(v)) err(`hosts["${h}"]`, "an IP address or CIDR", JSON.stringify(v), "write e.g. 192.168.8.10 or 192.168.8.0/24");
  }

  // acls
  (policy.acls ?? []).forEach((acl, i) => {
    const p = `acls[${i}]`;
    const proto = parseProto(acl.proto);
    if (!proto.ok) err(`${p}.proto`, "a protocol name (tcp, udp, icmp, …) or number 1-255, or nothing for all", JSON.stringify(acl.proto), proto.error);
    const srcs = acl.src.map((s, j) => alias(s, `${p}.src[${j}]`, "src"));
    let hasSelf = false;
    acl.dst.forEach((d, j) => {
      const dp = `${p}.dst[${j}]`;
      const parsed = parseDestination(d);
      if (!parsed.ok) {
        err(dp, "alias:ports, e.g. tag:web:443, host:22, 192.168.8.0/24:*", JSON.stringify(d), parsed.error);
        return;
      }
      checkRef(parsed.value.alias, dp, "dst");
      if (parsed.value.alias.kind === "autogroup" && parsed.value.alias.name === "self") hasSelf = true;
      if (proto.ok && !protoSupportsPorts(proto.value) && parsed.value.ports.some((r) => r.first !== 0 || r.last !== 65535)) {
        err(dp, `ports "*" with proto ${proto.value} (only tcp, udp and sctp have ports)`, JSON.stringify(d), `write ${d.slice(0, d.lastIndexOf(":"))}:*`);
      }
    });
    if (hasSelf) {
      srcs.forEach((a, j) => {
        if (a && !(a.kind === "user" || a.kind === "group" || a.kind === "wildcard" || (a.kind === "autogroup" && a.name === "member"))) {
          err(`${p}.src[${j}]`, "users, groups, autogroup:member or * as sources of autogroup:self", JSON.stringify(a.text), "move autogroup:self to a rule of its own with user sources");
        }
      });
    }
  });

  // grants
  (policy.grants ?? []).forEach((g, i) => {
    const p = `grants[${i}]`;
    const srcs = g.src.map((s, j) => alias(s, `${p}.src[${j}]`, "src"));
    const dsts = g.dst.map((d, j) => alias(d, `${p}.dst[${j}]`, "dst"));
    if ((g.ip ?? []).length === 0 && Object.keys(g.app ?? {}).length === 0) err(p, "ip or app", "neither", `add ip: ["*"] (or the ports, e.g. tcp:443)`);
    (g.ip ?? []).forEach((ip, j) => {
      const spec = parseIpSpec(ip);
      if (!spec.ok) err(`${p}.ip[${j}]`, `*, a port list, or proto:ports (tcp:443, udp:53)`, JSON.stringify(ip), spec.error);
      else if (!protoSupportsPorts(spec.value.proto) && !(spec.value.ports.length === 1 && spec.value.ports[0].first === 0 && spec.value.ports[0].last === 65535)) {
        err(`${p}.ip[${j}]`, `ports "*" with ${spec.value.proto}`, JSON.stringify(ip), `write ${spec.value.proto}:*`);
      }
    });
    dsts.forEach((d, j) => {
      if (d?.kind === "prefix" && d.prefix.bits === 0) err(`${p}.dst[${j}]`, `"*" or autogroup:internet for all addresses`, JSON.stringify(d.text), `write "*" (the tailnet) or autogroup:internet (through exit nodes)`);
    });
    (g.via ?? []).forEach((v, j) => {
      if (!(v in tagOwners)) err(`${p}.via[${j}]`, `a tag defined in ${base}.tagOwners`, `unknown tag ${JSON.stringify(v)}`, `add ${v} to ${base}.tagOwners, or fix the name`);
    });
    if (dsts.some((d) => d?.kind === "autogroup" && d.name === "self")) {
      srcs.forEach((a, j) => {
        if (a && !(a.kind === "user" || a.kind === "group" || (a.kind === "autogroup" && a.name === "member"))) {
          err(`${p}.src[${j}]`, "users, groups or autogroup:member as grant sources of autogroup:self", JSON.stringify(a.text), "use autogroup:member instead of * (grants reject * with autogroup:self)");
        }
      });
    }
  });

  // ssh
  (policy.ssh ?? []).forEach((r, i) => {
    const p = `ssh[${i}]`;
    if (r.users.length === 0) err(`${p}.users`, "at least one login user (root, autogroup:nonroot, a name)", "[]", `add users: [autogroup:nonroot]`);
    r.users.forEach((u, j) => {
      if (u === "" || u === "*") err(`${p}.users[${j}]`, "a login user (root, autogroup:nonroot, a name)", JSON.stringify(u), `use autogroup:nonroot for any non-root user`);
    });
    const srcs = r.src.map((s, j) => alias(s, `${p}.src[${j}]`, "sshSrc")).filter((a): a is Alias => a !== null);
    const dsts = r.dst.map((d, j) => alias(d, `${p}.dst[${j}]`, "sshDst"));
    const tagged = srcs.some((a) => a.kind === "tag" || (a.kind === "autogroup" && a.name === "tagged"));
    const srcUsers = srcs.filter((a) => a.kind === "user").map((a) => a.text);
    const groupish = srcs.some((a) => a.kind === "group" || (a.kind === "autogroup" && a.name === "member"));
    dsts.forEach((d, j) => {
      if (!d) return;
      const dp = `${p}.dst[${j}]`;
      if (d.kind === "user") {
        if (tagged) err(dp, "tags or autogroup:tagged as destinations of tagged sources", JSON.stringify(d.text), "tags cannot SSH to user devices; use tag destinations");
        else if (groupish || srcUsers.length !== 1 || srcUsers[0] !== d.text) err(dp, `the source user only (${d.text} as the sole source)`, JSON.stringify(d.text), "use autogroup:self for same-user SSH");
      }
      if (d.kind === "autogroup" && (d.name === "self" || d.name === "member") && tagged) {
        err(dp, "user or group sources for user-owned destinations", JSON.stringify(d.text), "remove tags from src, or target tags");
      }
    });
    if (r.checkPeriod !== undefined && r.action !== "check") err(`${p}.checkPeriod`, `checkPeriod only with action: check`, `action: ${r.action}`, "remove checkPeriod or set action: check");
  });

  // autoApprovers
  const hostTagSet = new Set(Object.values(ctx.hostTags).flat());
  const approver = (o: string, path: string) => {
    if (o.includes("@")) checkUser(o, path);
    else if (o.startsWith("group:")) { if (!(o in groups)) err(path, `a group defined in ${base}.groups`, `unknown group ${JSON.stringify(o)}`, `define ${o}`); }
    else if (o.startsWith("tag:")) {
      if (!(o in tagOwners)) err(path, `a tag defined in ${base}.tagOwners`, `unknown tag ${JSON.stringify(o)}`, `add ${o} to ${base}.tagOwners`);
      else if (!hostTagSet.has(o)) err(path, "a tag some host carries", `${o} (no host has it)`, `give the router host tailscale.tags: [${o}], or remove this approver`, "warning");
    } else err(path, "a user (alice@), group:x or tag:x", JSON.stringify(o), `write a user as ${o}@`);
  };
  for (const [cidr, owners] of Object.entries(policy.autoApprovers?.routes ?? {})) {
    const path = `autoApprovers.routes["${cidr}"]`;
    if (!parsePrefix(cidr)) err(path, "a CIDR", JSON.stringify(cidr), "write e.g. 192.168.8.0/24");
    owners.forEach((o, j) => approver(o, `${path}[${j}]`));
  }
  (policy.autoApprovers?.exitNode ?? []).forEach((o, j) => approver(o, `autoApprovers.exitNode[${j}]`));

  // nodeAttrs
  (policy.nodeAttrs ?? []).forEach((n, i) => n.target.forEach((t, j) => alias(t, `nodeAttrs[${i}].target[${j}]`, "nodeAttrs")));

  // tests
  (policy.tests ?? []).forEach((t, i) => {
    const p = `tests[${i}]`;
    alias(t.src, `${p}.src`, "test");
    if ((t.accept ?? []).length === 0 && (t.deny ?? []).length === 0) err(p, "accept or deny (at least one)", "neither", "add accept: [host:port] or deny: [host:port]");
    const proto = parseProto(t.proto);
    if (t.proto !== undefined && (!proto.ok || !["", "tcp", "udp", "sctp"].includes(proto.value))) {
      err(`${p}.proto`, "tcp, udp, sctp or nothing", JSON.stringify(t.proto), "tests describe one connection: use tcp or udp");
    }
    for (const kind of ["accept", "deny"] as const) {
      (t[kind] ?? []).forEach((d, j) => {
        const dp = `${p}.${kind}[${j}]`;
        const parsed = parseDestination(d);
        if (!parsed.ok) return err(dp, "host:port", JSON.stringify(d), parsed.error);
        const a = parsed.value.alias;
        if (a.kind === "autogroup" && a.name === "internet") return err(dp, "one host:port", JSON.stringify(d), "autogroup:internet cannot be tested; test an address instead");
        if (parsed.value.ports.length !== 1 || parsed.value.ports[0].first !== parsed.value.ports[0].last) {
          return err(dp, "one port (tests check one connection)", JSON.stringify(d), `split it into one entry per port`);
        }
        if (a.kind === "prefix" && d.includes("/")) return err(dp, "one host, not a CIDR", JSON.stringify(d), "test one address of the range");
        if (a.kind === "host" && hosts[a.text] && (parsePrefix(hosts[a.text])?.bits ?? 0) < (parsePrefix(hosts[a.text])?.v6 ? 128 : 32)) {
          return err(dp, "one host, not a CIDR", `${JSON.stringify(d)} (${a.text} is ${hosts[a.text]})`, "test one address of the range");
        }
        checkRef(a, dp, "test");
      });
    }
  });

  // sshTests: the shapes headscale refuses when it parses the policy (validateSSHTests).
  (policy.sshTests ?? []).forEach((t, i) => {
    const p = `sshTests[${i}]`;
    if (t.src.trim() === "") err(`${p}.src`, "one source alias (a user, group, tag, host or IP)", '""', "name the source, e.g. alice@ or tag:ci");
    else alias(t.src.trim(), `${p}.src`, "test");
    if (t.dst.length === 0) err(`${p}.dst`, "at least one destination", "[]", "add a destination, e.g. dst: [tag:server]");
    t.dst.forEach((d, j) => {
      const dp = `${p}.dst[${j}]`;
      const a = parseAlias(d.trim());
      if (!a.ok) return err(dp, "a host, tag, user, IP or autogroup", JSON.stringify(d), a.error);
      const v = a.value;
      const one = "one SSH host (a tag, host, user, IP or autogroup:member/tagged/self)";
      if (v.kind === "autogroup" && v.name === "internet") return err(dp, one, JSON.stringify(d), "autogroup:internet cannot be an SSH destination; name the host's tag");
      if (v.kind === "prefix" && v.prefix.bits < (v.prefix.v6 ? 128 : 32)) return err(dp, one, JSON.stringify(d), "test one address of the range, or the host's tag");
      if (v.kind === "tag" && !(v.text in tagOwners)) {
        const port = /^(tag:[^:]+):\d[\d,-]*$/.exec(v.text);
        return err(dp, `a tag defined in ${base}.tagOwners (sshTests destinations have no port)`, `unknown tag ${JSON.stringify(v.text)}`, port ? `write ${port[1]} (SSH is always port 22)` : `add ${v.text} to ${base}.tagOwners, or fix the name`);
      }
      if (v.kind === "host" && hosts[v.text] !== undefined) {
        const hp = parsePrefix(hosts[v.text]);
        if (hp && hp.bits < (hp.v6 ? 128 : 32)) return err(dp, one, `${JSON.stringify(d)} (${v.text} is ${hosts[v.text]})`, "test one address of the range, or the host's tag");
      }
      if (v.kind === "user" || v.kind === "group" || v.kind === "host") checkRef(v, dp, "test");
    });
    if ((t.accept ?? []).length + (t.deny ?? []).length + (t.check ?? []).length === 0) {
      err(p, "accept, deny or check (at least one login user)", "none", "add accept: [root] or deny: [root], the login users to test");
    }
    for (const kind of ["accept", "deny", "check"] as const) {
      (t[kind] ?? []).forEach((u, j) => {
        if (u.trim() === "") err(`${p}.${kind}[${j}]`, "a login user (root, a name)", '""', "name the login user, e.g. root");
      });
    }
  });

  // Tags the hosts carry must be owned by someone.
  for (const [host, tags] of Object.entries(ctx.hostTags).sort(([a], [b]) => a.localeCompare(b))) {
    for (const t of tags) {
      const owners = tagOwners[t];
      if (owners === undefined) {
        err(`tagOwners`, `an entry for ${t} (host ${host} uses it)`, "none", `add "${t}": [<admin>@] under ${base}.tagOwners`);
      } else if (owners.length === 0) {
        err(`tagOwners["${t}"]`, `at least one owner (host ${host} uses ${t})`, "[]", `list who may assign ${t}, e.g. ["${[...users][0] ?? "admin"}@"]`);
      }
    }
  }

  // Routes a host advertises with no way to approve them are only a warning:
  // they can still be approved by hand (headscale nodes approve-routes).

  out.push(...lockout(policy, ctx, err));
  return out;
}

function lockout(policy: Policy, ctx: PolicyContext, err: (path: string, expected: string, found: string, fix: string) => void): Diagnostic[] {
  if (policy.acls === undefined && policy.grants === undefined) return [];
  // Only a coordinator that is itself a tailnet node (hostTags lists the nodes) can be reached over
  // the tailnet; one outside it is reached over its own address, which the policy does not govern.
  if (!Object.hasOwn(ctx.hostTags, ctx.coordinatorHost)) return [];
  const admins = (ctx.adminUsers ?? []).map((u) => u.replace(/@$/, ""));
  // Without admins, any user of the fleet will do: its own (users) or one who logs in through OIDC (oidcUsers).
  const candidates = admins.length > 0 ? admins : policyUserNames(ctx);
  // Whether an admin's device reaches the coordinator depends on those two nodes only (no routes are
  // involved), so the other hosts are left out: the check costs the same for 3 hosts or 1,000.
  const hostNodes: PolicyNode[] = [{ name: ctx.coordinatorHost, tags: ctx.hostTags[ctx.coordinatorHost] ?? [], ips: [], approvedRoutes: [] }];
  const adminNodes: PolicyNode[] = candidates.map((u) => ({ name: `\u0000device of ${u}`, user: u, tags: [], ips: [], approvedRoutes: [] }));
  const nodes = syntheticIps([...hostNodes, ...adminNodes]);
  let reach;
  try {
    reach = evaluateReachability(nodes, policy, { users: policyUserNames(ctx) });
  } catch {
    return [];
  }
  const coordTags = ctx.hostTags[ctx.coordinatorHost] ?? [];
  const dstHint = coordTags.length > 0 ? `${coordTags[0]}:22` : "autogroup:member:22";
  const okFor = (u: string) => reach.explain(`\u0000device of ${u}`, ctx.coordinatorHost, 22, "tcp");
  const where = policy.acls !== undefined ? "acls" : "grants";
  if (admins.length > 0) {
    for (const u of admins) {
      const r = okFor(u);
      if (!r.allowed) {
        // A token is the name with a trailing @ (alice@), or an e-mail as it is (carol@example.com).
        const token = u.includes("@") ? u : `${u}@`;
        err(where, `admin ${token} allowed tcp:22 to the coordinator ${ctx.coordinatorHost}`, r.why, `add {action: accept, src: [${token}], dst: [${dstHint}]} to ${ctx.basePath}.acls`);
      }
    }
  } else if (candidates.length > 0 && !candidates.some((u) => okFor(u).allowed)) {
    err(where, `some user allowed tcp:22 to the coordinator ${ctx.coordinatorHost}`, "no user device can SSH to it over the tailnet", `list admins in fleet.yaml and add {action: accept, src: [<admin>@], dst: [${dstHint}]} to ${ctx.basePath}.acls`);
  }
  return [];
}

export { parsePorts, hasHostBits };
