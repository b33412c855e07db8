/**
 * `meshfleet doctor --stack S [--on ...] [--json]`: the preflight before a
 * deploy and the troubleshooter after one. Every host is read over SSH in
 * parallel (one script per host, the same reads as `status` plus the
 * checks'), headscale on the coordinator; each finding says what is wrong,
 * why it matters and the exact fix. Exit 1 when any check fails.
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { MeshfleetError } from "../../core/diagnostics.ts";
import type { HostSystem } from "../../core/types.ts";
import { checkRouteApproval, EXIT_ROUTES, headscaleCommand, nodeOfHost, parsePreAuthKeyList, preAuthKeysListArgs, type HeadscaleNode } from "../../provider/headscale-cli.ts";
import { shq } from "../../provider/quote.ts";
import { flagHelp, parseArgs } from "../args.ts";
import type { Command } from "../command.ts";
import { age, headscaleCliOf, jsonOr, newSession, openStackFleet, stackFlags, table, type StackAccess } from "../fleet-hosts.ts";
import { collectStatus, type HostStatus, type TsStatus } from "./status.ts";

export type Level = "ok" | "warn" | "fail" | "skip";

export interface Finding {
  host: string;
  check: string;
  level: Level;
  /** What is wrong (or what was found, for ok). */
  what: string;
  why?: string;
  fix?: string;
  /** The fix as one command, and where it runs ("local" = the workstation). */
  fixCommand?: { on: string; command: string };
}

/** Ports the coordinator serves, and which processes may hold them. */
export function coordinatorPorts(h: HostSystem): { port: number; proto: "tcp" | "udp"; owners: string[]; role: string; needed: boolean }[] {
  const proxy = h.services.proxy ? [h.services.proxy] : ["caddy", "nginx"];
  const docker = h.runtime === "docker" ? ["docker-proxy"] : [];
  const stun = h.services.derp === "embedded" ? ["headscale"] : ["derper"];
  return [
    { port: 80, proto: "tcp", owners: [...proxy, ...docker], role: "HTTP (ACME challenge, redirect to HTTPS)", needed: !!h.services.proxy },
    { port: 443, proto: "tcp", owners: [...proxy, ...docker], role: "HTTPS: headscale's API and the DERP relay over TLS", needed: !!h.services.proxy },
    { port: 3478, proto: "udp", owners: [...stun, ...docker], role: "STUN: nodes learn their public address (NAT traversal)", needed: !!h.services.derp },
    { port: 41641, proto: "udp", owners: ["tailscaled"], role: "tailscale's WireGuard port (direct connections)", needed: h.tailscale.enable },
  ];
}

/** `ss -Hlntup` lines → port/proto → process names. */
export function parseSs(text: string): { proto: string; port: number; procs: string[] }[] {
  const out: { proto: string; port: number; procs: string[] }[] = [];
  for (const l of text.split("\n")) {
    const f = l.trim().split(/\s+/);
    if (f.length < 5 || !/^(tcp|udp)$/.test(f[0]!)) continue;
    const port = Number(/:(\d+)$/.exec(f[4]!)?.[1]);
    if (!port) continue;
    out.push({ proto: f[0]!, port, procs: [...l.matchAll(/\("([^"]+)",pid=/g)].map((m) => m[1]!) });
  }
  return out;
}

/**
 * A STUN binding request from the host to a relay, in node's own dgram (node 18
 * has no zlib.crc32). Built as tailscale's net/stun Request builds it: derper
 * answers only requests with SOFTWARE "tailnode" and a FINGERPRINT. Prints ok,
 * timeout or error.
 */
export const STUN_JS =
  "const d=require('dgram'),c=require('crypto');const [h,p]=process.argv.slice(1);const s=d.createSocket(h.includes(':')?'udp6':'udp4');" +
  "const T=[];for(let n=0;n<256;n++){let x=n;for(let k=0;k<8;k++)x=x&1?0xEDB88320^(x>>>1):x>>>1;T[n]=x>>>0}" +
  "const crc=u=>{let x=0xFFFFFFFF;for(const y of u)x=T[(x^y)&255]^(x>>>8);return (x^0xFFFFFFFF)>>>0};" +
  "const b=Buffer.alloc(40);b.writeUInt16BE(1,0);b.writeUInt16BE(20,2);b.writeUInt32BE(0x2112A442,4);c.randomFillSync(b,8,12);" +
  "b.writeUInt16BE(0x8022,20);b.writeUInt16BE(8,22);b.write('tailnode',24,'latin1');" +
  "b.writeUInt16BE(0x8028,32);b.writeUInt16BE(4,34);b.writeUInt32BE((crc(b.subarray(0,32))^0x5354554e)>>>0,36);" +
  "setTimeout(()=>{console.log('timeout');process.exit(0)},2500);" +
  "s.on('message',m=>{if(m.length>=20&&m.readUInt16BE(0)===0x0101&&m.subarray(8,20).equals(b.subarray(8,20))){console.log('ok');process.exit(0)}});" +
  "s.on('error',e=>{console.log('error '+e.message);process.exit(0)});const go=()=>s.send(b,+p,h,()=>{});go();setInterval(go,600);";

/** The relays' STUN endpoints from the fleet's DERP map. */
export function stunTargets(a: Pick<StackAccess, "fleet">): { name: string; host: string; port: number }[] {
  return a.fleet.derpRegions.flatMap((r) => r.nodes.map((n) => ({ name: `${r.regionCode}/${n.name}`, host: n.ipv4 || n.hostName, port: n.stunPort }))).filter((t) => t.port > 0);
}

const TUN_FIX = "mkdir -p /dev/net && { [ -c /dev/net/tun ] || { rm -f /dev/net/tun && mknod /dev/net/tun c 10 200; }; } && chmod 0666 /dev/net/tun";

const isRouter = (h: HostSystem) => h.tailscale.enable && (h.tailscale.advertiseRoutes.length > 0 || h.tailscale.advertiseExitNode);

/** The address families a router forwards: IPv4 with an IPv4 route or as an exit node; the IPv6 routes (::/0 for an exit node). */
export function routedFamilies(h: HostSystem): { v4: boolean; v6: string[] } {
  const exit = h.tailscale.advertiseExitNode;
  return {
    v4: exit || h.tailscale.advertiseRoutes.some((r) => !r.includes(":")),
    v6: [...h.tailscale.advertiseRoutes.filter((r) => r.includes(":")), ...(exit ? ["::/0"] : [])],
  };
}

/** The interfaces whose UDP GRO forwarding the host's units turn on (modules/routing.ts groUnit), with their unit. */
export function groInterfaces(h: HostSystem): { iface: string; unit: string }[] {
  return h.units.flatMap((u) => {
    const m = u.name.startsWith("meshfleet-udp-gro-") ? /^ExecStart=-\S*ethtool -K (\S+) rx-udp-gro-forwarding on/m.exec(u.content) : null;
    return m ? [{ iface: m[1]!.replace(/([%$])\1/g, "$1"), unit: u.name }] : [];
  });
}

/**
 * Whether UDP GRO forwarding took effect on each interface the host's units
 * set it on (`ethtool -k`): ok when on (and rx-gro-list off); skipped when
 * the driver cannot do it (off [fixed], or no such feature: the unit
 * tolerated it); a warning when it could be on and is not.
 */
export function groFindings(h: HostSystem, s: Record<string, string>): Finding[] {
  const check = "udp gro forwarding";
  const ifaces = groInterfaces(h);
  if (!ifaces.length) return [{ host: h.name, check, level: "skip", what: "udpGroForwarding is off for this router (no meshfleet-udp-gro unit)" }];
  return ifaces.map(({ iface, unit }, i): Finding => {
    const out = s[`gro-${i}`] ?? "";
    const state = /unit=(\S*)/.exec(out)?.[1] || "unknown";
    const feature = /^rx-udp-gro-forwarding:\s*(on|off)(\s*\[fixed\])?/m.exec(out);
    const list = /^rx-gro-list:\s*(on|off)(\s*\[fixed\])?/m.exec(out);
    const command = `ethtool -K ${iface} rx-udp-gro-forwarding on rx-gro-list off`;
    if (out.includes("no-ethtool")) return { host: h.name, check, level: "skip", what: `${iface}: ethtool is not installed (${unit} is skipped without it)`, fix: `apt-get install -y ethtool on ${h.name}, then systemctl restart ${unit}` };
    if (/Cannot get|No such device|no device matches/.test(out) && !feature) return { host: h.name, check, level: "warn", what: `${iface}: ethtool cannot read the interface (${out.split("\n").find((l) => /Cannot get|No such device|no device matches/.test(l))?.trim()})`, why: "the unit sets UDP GRO forwarding on an interface the host does not have", fix: `set subnet-router.lanInterface (or exit-node.wanInterface) to the interface \`ip link\` shows on ${h.name}, then \`meshfleet up\`` };
    if (feature?.[1] === "on" && list?.[1] !== "on") return { host: h.name, check, level: "ok", what: `${iface}: rx-udp-gro-forwarding on, rx-gro-list off (${unit} ${state})` };
    if (!feature || (feature[1] === "off" && feature[2])) return { host: h.name, check, level: "skip", what: `${iface}: the driver has no UDP GRO forwarding (${feature ? "off [fixed]" : "no rx-udp-gro-forwarding feature"}); ${unit} tolerated it, nothing to do` };
    return {
      host: h.name, check, level: "warn",
      what: `${iface}: rx-udp-gro-forwarding is ${feature[1]}${list?.[1] === "on" ? " and rx-gro-list is on" : ""} (${unit} is ${state})`,
      why: "a subnet router or exit node forwards far less UDP (WireGuard) throughput without UDP GRO forwarding (tailscale's performance guide for Linux 6.2+)",
      fix: `${command} on ${h.name} now; ${unit} applies it at every boot (systemctl restart ${unit}; \`meshfleet up\` installs it if it is missing)`,
      fixCommand: { on: h.name, command },
    };
  });
}

/** Binaries reverse-proxy's certbot cycle (nginx, tls auto, no certificate files, on a host) runs: certbot, and openssl for the placeholder. */
const CERTBOT_TOOLS = ["certbot", "openssl"];

/** Whether a host whose generation runs the certbot cycle has its binaries (its packages name certbot). */
export function certbotToolFindings(h: HostSystem, s: Record<string, string>): Finding[] {
  if (!h.packages.includes("certbot")) return [];
  const check = "certbot tools";
  const out = s["certbot-tools"] ?? "";
  const missing = CERTBOT_TOOLS.filter((b) => !new RegExp(`^have ${b}$`, "m").test(out));
  if (missing.length === 0) return [{ host: h.name, check, level: "ok", what: CERTBOT_TOOLS.join(" and ") + " installed" }];
  const command = `apt-get install -y ${missing.join(" ")}`;
  return [{
    host: h.name, check, level: "fail",
    what: `${missing.join(" and ")} not found on the host`,
    why: "nginx's certificate comes from certbot, run by meshfleet (reverse-proxy: kind nginx, tls auto, no certificate files), and openssl makes its placeholder: without them nginx does not start and no certificate is issued",
    fix: `${command} on ${h.name}, then \`meshfleet up\``,
    fixCommand: { on: h.name, command },
  }];
}

/** What doctor reads on a host beyond the status script. */
export function doctorScript(h: HostSystem, a: StackAccess): string {
  const m = (s: string) => `echo; echo @@mf:${s}@@`;
  const node = shq(h.agentNodePath || "node");
  const lines = [m("node"), `if command -v ${node} >/dev/null 2>&1; then ${node} --version; else echo missing; fi`];
  if (isRouter(h)) {
    lines.push(m("fwd4"), "cat /proc/sys/net/ipv4/ip_forward", m("fwd6"), "cat /proc/sys/net/ipv6/conf/all/forwarding 2>/dev/null || echo none");
    lines.push(m("tun"), "if [ -c /dev/net/tun ]; then echo present; else echo missing; fi");
    for (const [i, g] of groInterfaces(h).entries()) {
      lines.push(
        m(`gro-${i}`),
        `echo "unit=$(systemctl is-active ${shq(g.unit)} 2>/dev/null)"`,
        `if command -v ethtool >/dev/null 2>&1; then ethtool -k ${shq(g.iface)} 2>&1 | grep -E "^(rx-udp-gro-forwarding|rx-gro-list):|Cannot get|No such device"; else echo "no-ethtool"; fi`,
      );
    }
  }
  if (h.name === a.fleet.coordinator.host) {
    const cli = headscaleCliOf(a);
    lines.push(m("ports"), "ss -Hlntup 2>&1 || echo no-ss");
    lines.push(m("health"), `if command -v curl >/dev/null 2>&1; then curl -s -o /dev/null -w '%{http_code}' --max-time 5 ${shq(`${a.fleet.coordinator.serverUrl.replace(/\/$/, "")}/health`)}; echo " exit=$?"; else echo no-curl; fi`);
    if (cli) lines.push(m("preauth"), `${headscaleCommand(cli, preAuthKeysListArgs())} 2>&1`);
  }
  if (h.packages.includes("certbot")) {
    lines.push(m("certbot-tools"), `for b in ${CERTBOT_TOOLS.join(" ")}; do if command -v "$b" >/dev/null 2>&1; then echo "have $b"; else echo "missing $b"; fi; done`);
  }
  if (h.tailscale.enable) {
    for (const [i, t] of stunTargets(a).entries()) lines.push(m(`stun-${i}`), `${node} -e ${shq(STUN_JS)} ${shq(t.host)} ${t.port} 2>&1 || echo error`);
  }
  return lines.join("\n");
}

function sshFindings(h: HostSystem, st: HostStatus, s: Record<string, string>, stack: string): Finding[] {
  if (!st.reachable) {
    return [{
      host: h.name, check: "ssh", level: "fail",
      what: st.error ?? "cannot log in",
      why: "every deploy, status and rollback goes over SSH with the pinned host key; nothing can be done on this host until it answers",
      fix: `check that ${h.address} port ${h.ssh.port} is reachable from here and that the pin is right (\`meshfleet pin ${h.name} --stack ${stack}\`)`,
    }];
  }
  const out: Finding[] = [{ host: h.name, check: "ssh", level: "ok", what: `logged in as ${h.ssh.user} with the pinned host key (${st.ms} ms)` }];
  const v = s.node ?? "";
  const major = Number(/^v(\d+)\./.exec(v)?.[1]);
  if (!major || major < 18) {
    out.push({
      host: h.name, check: "agent runtime", level: "fail",
      what: v === "missing" || !v ? `no ${h.agentNodePath || "node"} on the host` : `Node.js ${v} is older than 18`,
      why: "meshfleet's agent (which applies each generation and guards against lockout) runs on the host's own Node.js 18 or newer",
      fix: "apt-get install -y nodejs (Debian 12 and 13 and Ubuntu 24.04 ship 18 or newer)",
      fixCommand: { on: h.name, command: "apt-get install -y nodejs" },
    });
  } else out.push({ host: h.name, check: "agent runtime", level: "ok", what: `Node.js ${v}` });
  return out;
}

export function routerFindings(h: HostSystem, s: Record<string, string>): Finding[] {
  if (!isRouter(h)) return [];
  const out: Finding[] = [];
  const what = h.tailscale.advertiseExitNode ? "an exit node" : "a subnet router";
  // Forwarding per family, for the families the node routes: tailscale's own check warns about IPv6 on a
  // host with IPv6 disabled (tailscale#5044), and a node that routes only IPv4 needs no IPv6 forwarding.
  const fam = routedFamilies(h);
  if (!fam.v4) out.push({ host: h.name, check: "ip forwarding", level: "skip", what: "net.ipv4.ip_forward not needed: the node routes no IPv4" });
  else if (s.fwd4 !== "1") {
    out.push({
      host: h.name, check: "ip forwarding", level: "fail",
      what: `net.ipv4.ip_forward is ${s.fwd4 ?? "unknown"} on ${what}`,
      why: `with forwarding off the node accepts traffic for its routes (${[...h.tailscale.advertiseRoutes, ...(h.tailscale.advertiseExitNode ? ["exit"] : [])].join(", ")}) and drops it: the LAN behind it is unreachable over the tailnet`,
      fix: `sysctl -w net.ipv4.ip_forward=1 on ${h.name} now; the generation sets it in /etc/sysctl.d, so \`meshfleet up\` repairs it for good (it shows as drift in \`meshfleet status\`)`,
      fixCommand: { on: h.name, command: "sysctl -w net.ipv4.ip_forward=1" },
    });
  } else out.push({ host: h.name, check: "ip forwarding", level: "ok", what: "net.ipv4.ip_forward = 1" });
  const v6routes = fam.v6;
  if (v6routes.length === 0) out.push({ host: h.name, check: "ip forwarding", level: "skip", what: "net.ipv6.conf.all.forwarding not needed: the node routes no IPv6" });
  else if (s.fwd6 === "none") {
    out.push({
      host: h.name, check: "ip forwarding", level: "fail",
      what: `IPv6 is disabled on the host (no /proc/sys/net/ipv6) but the node routes IPv6 (${v6routes.join(", ")})`,
      why: "the IPv6 routes are advertised and their traffic cannot be forwarded",
      fix: `enable IPv6 on ${h.name} (remove ipv6.disable=1 from the kernel command line, or net.ipv6.conf.all.disable_ipv6=1 from sysctl), or stop advertising the IPv6 routes`,
    });
  } else if (s.fwd6 !== "1") {
    out.push({
      host: h.name, check: "ip forwarding", level: "fail",
      what: `net.ipv6.conf.all.forwarding is ${s.fwd6 ?? "unknown"} but the node routes IPv6 (${v6routes.join(", ")})`,
      why: "IPv6 traffic for those routes is dropped",
      fix: `sysctl -w net.ipv6.conf.all.forwarding=1 on ${h.name}; \`meshfleet up\` repairs it for good`,
      fixCommand: { on: h.name, command: "sysctl -w net.ipv6.conf.all.forwarding=1" },
    });
  } else out.push({ host: h.name, check: "ip forwarding", level: "ok", what: "net.ipv6.conf.all.forwarding = 1" });
  if (s.tun !== "present") {
    const lines = h.lxc?.config?.length ? h.lxc.config : ["lxc.cgroup2.devices.allow: c 10:200 rwm", "lxc.mount.entry: /dev/net/tun dev/net/tun none bind,create=file"];
    const lxc = ` In an LXC container it does not last: on the Proxmox node add to /etc/pve/lxc/${h.lxc?.ctid ?? "<CTID>"}.conf ${lines.map((l) => `\`${l}\``).join(" and ")}, then pct reboot ${h.lxc?.ctid ?? "<CTID>"}.`;
    out.push({
      host: h.name, check: "tun device", level: "fail",
      what: "/dev/net/tun is missing",
      why: "tailscaled needs the TUN device to route packets in kernel mode; without it, it falls back to userspace networking where subnet routing and exit-node forwarding do not work (typical in an unprivileged LXC container)",
      fix: `create it on ${h.name}: ${TUN_FIX}; then systemctl restart tailscaled.${lxc}`,
      fixCommand: { on: h.name, command: TUN_FIX },
    });
  } else out.push({ host: h.name, check: "tun device", level: "ok", what: "/dev/net/tun present" });
  out.push(...groFindings(h, s));
  return out;
}

function coordinatorFindings(h: HostSystem, st: HostStatus, s: Record<string, string>, a: StackAccess, nodes: HeadscaleNode[] | null): Finding[] {
  if (h.name !== a.fleet.coordinator.host || !st.reachable) return [];
  const out: Finding[] = [];
  const deployed = (st.generation?.n ?? 0) > 0;
  const listening = parseSs(s.ports ?? "");
  if ((s.ports ?? "").includes("no-ss")) out.push({ host: h.name, check: "ports", level: "skip", what: "ss is not installed", fix: "apt-get install -y iproute2" });
  else {
    for (const p of coordinatorPorts(h)) {
      if (!p.needed) continue;
      const holders = [...new Set(listening.filter((l) => l.proto === p.proto && l.port === p.port).flatMap((l) => l.procs))];
      const foreign = holders.filter((x) => !p.owners.includes(x));
      const label = `${p.port}/${p.proto}`;
      if (foreign.length > 0) {
        out.push({
          host: h.name, check: `port ${label}`, level: "fail",
          what: `${label} is held by ${foreign.join(", ")}, not ${p.owners.join(" or ")}`,
          why: `the coordinator needs ${label} for ${p.role}`,
          fix: `stop what holds it on ${h.name} (e.g. systemctl disable --now ${foreign[0]}), then \`meshfleet up\``,
          fixCommand: { on: h.name, command: `systemctl disable --now ${foreign[0]}` },
        });
      } else if (holders.length > 0) out.push({ host: h.name, check: `port ${label}`, level: "ok", what: `${label} served by ${holders.join(", ")}` });
      else if (!deployed) out.push({ host: h.name, check: `port ${label}`, level: "ok", what: `${label} is free (nothing deployed yet)` });
      else {
        const unit = p.owners[0] === "tailscaled" ? "tailscaled" : p.owners[0]!;
        out.push({
          host: h.name, check: `port ${label}`, level: "fail",
          what: `nothing listens on ${label} although the fleet is deployed (expected ${p.owners.join(" or ")})`,
          why: `the coordinator needs ${label} for ${p.role}`,
          fix: h.runtime === "docker" ? `docker ps -a on ${h.name}; restart the container that serves it` : `systemctl restart ${unit} on ${h.name}; if it fails, journalctl -u ${unit} -n 50`,
          ...(h.runtime === "docker" ? {} : { fixCommand: { on: h.name, command: `systemctl restart ${unit}` } }),
        });
      }
    }
  }
  // Health: through the public URL (proxy, TLS, headscale).
  const health = s.health ?? "";
  const url = `${a.fleet.coordinator.serverUrl.replace(/\/$/, "")}/health`;
  if (health.includes("no-curl")) out.push({ host: h.name, check: "headscale health", level: "skip", what: "curl is not installed on the coordinator", fix: "apt-get install -y curl" });
  else if (/^200 exit=0/.test(health)) out.push({ host: h.name, check: "headscale health", level: "ok", what: `${url} answers 200` });
  else if (!deployed) out.push({ host: h.name, check: "headscale health", level: "skip", what: "headscale is not deployed yet" });
  else {
    const startCmd = h.runtime === "docker" ? "docker start headscale" : "systemctl start headscale";
    out.push({
      host: h.name, check: "headscale health", level: "fail",
      what: `${url} answers ${/^(\d{3})/.exec(health)?.[1] === "000" ? "nothing" : `HTTP ${/^(\d{3})/.exec(health)?.[1] ?? "?"}`} (curl ${health.replace(/^\d{3}\s*/, "")})`,
      why: "nodes cannot log in, renew keys or learn about new peers or policy changes while the coordinator is down (existing tunnels keep working for a while)",
      fix: `${startCmd} on ${h.name}; if it does not stay up: ${h.runtime === "docker" ? "docker logs headscale" : "journalctl -u headscale -n 50"}`,
      fixCommand: { on: h.name, command: startCmd },
    });
  }
  // Pre-auth keys: a host still to join needs one that is unused and not expired.
  const now = Date.now() / 1000;
  const pending = Object.values(a.fleet.hosts).filter((x) => x.tailscale.enable && nodes && !nodeOfHost(nodes, x.tailscale.hostname || x.name));
  let keys: ReturnType<typeof parsePreAuthKeyList> | null = null;
  try {
    keys = s.preauth !== undefined ? parsePreAuthKeyList(s.preauth) : null;
  } catch {
    keys = null;
  }
  if (keys && nodes) {
    const usable = keys.filter((k) => !k.used && k.expiresAt > now);
    const soon = usable.filter((k) => k.expiresAt - now < 3600);
    if (pending.length > 0 && usable.length === 0) {
      out.push({
        host: h.name, check: "pre-auth keys", level: "fail",
        what: `${pending.map((x) => x.name).join(", ")} ${pending.length === 1 ? "is" : "are"} not registered and headscale holds no unused, unexpired pre-auth key`,
        why: "a host joins the tailnet with a pre-auth key; an expired one is refused",
        fix: `\`meshfleet up ${a.stackArgs} --on ${pending.map((x) => x.name).join(",")}\` (the deploy makes the host's key; preAuthKeyExpiration in fleet.yaml sets how long it lives)`,
      });
    } else if (soon.length > 0 && pending.length > 0) {
      out.push({ host: h.name, check: "pre-auth keys", level: "warn", what: `${soon.length} unused pre-auth key(s) expire within the hour while ${pending.map((x) => x.name).join(", ")} still ${pending.length === 1 ? "has" : "have"} to join`, why: "a host that joins after the expiry is refused", fix: `deploy those hosts now: \`meshfleet up ${a.stackArgs}\`` });
    } else out.push({ host: h.name, check: "pre-auth keys", level: "ok", what: `${keys.length} key(s), ${usable.length} unused and valid${pending.length ? `; still to join: ${pending.map((x) => x.name).join(", ")}` : "; every tailnet host is registered"}` });
  }
  return out;
}

function meshFindings(h: HostSystem, st: HostStatus, s: Record<string, string>, a: StackAccess, nodesJson: string | undefined, nodes: HeadscaleNode[] | null, skewMs: number | null): Finding[] {
  if (!st.reachable) return [];
  const out: Finding[] = [];
  // Clock skew: TLS, node keys and the lockout guard's deadline all assume the clocks agree.
  if (skewMs !== null) {
    const abs = Math.abs(skewMs);
    if (abs > 30_000) out.push({ host: h.name, check: "clock", level: abs > 300_000 ? "fail" : "warn", what: `the host's clock is ${age(skewMs)} ${skewMs > 0 ? "ahead of" : "behind"} this workstation`, why: "TLS certificates, node key expiry and the lockout guard's confirm deadline all depend on agreeing clocks", fix: `turn on NTP on ${h.name}: timedatectl set-ntp true (or install chrony)`, fixCommand: { on: h.name, command: "timedatectl set-ntp true" } });
    else out.push({ host: h.name, check: "clock", level: "ok", what: `within ${Math.max(1, Math.round(abs / 1000))} s of this workstation` });
  }
  if (!h.tailscale.enable) return out;
  // UDP to the relays (STUN): what NAT traversal starts from.
  for (const [i, t] of stunTargets(a).entries()) {
    const r = (s[`stun-${i}`] ?? "").trim();
    if (r === "ok") out.push({ host: h.name, check: "udp to relay", level: "ok", what: `STUN ${t.host}:${t.port}/udp (${t.name}) answers` });
    else {
      out.push({
        host: h.name, check: "udp to relay", level: "fail",
        what: `no STUN answer from ${t.host}:${t.port}/udp (${t.name}): ${r || "no output"}`,
        why: "without UDP to the relay a node cannot learn its public address: NAT traversal fails and traffic stays on the slower DERP relay over TCP (or stops, if that is blocked too)",
        fix: `allow ${t.port}/udp (and 41641/udp) to the relay: in the VPS provider's firewall, and on the relay host (\`nft list ruleset\` shows what drops it); check on the relay: ss -ulpn | grep ${t.port}`,
      });
    }
  }
  const ts = jsonOr<TsStatus>(s.ts);
  if (!ts) {
    out.push({ host: h.name, check: "tailscale", level: (st.generation?.n ?? 0) > 0 ? "fail" : "skip", what: (st.generation?.n ?? 0) > 0 ? "tailscale status --json gave no answer" : "tailscale is not set up yet (nothing deployed)", why: "the host is not on the tailnet", fix: `systemctl status tailscaled on ${h.name}; \`meshfleet up ${a.stackArgs} --on ${h.name}\`` });
    return out;
  }
  if (ts.BackendState !== "Running") {
    out.push({ host: h.name, check: "tailscale", level: "fail", what: `tailscaled is ${ts.BackendState}`, why: "the host is not on the tailnet", fix: `journalctl -u tailscaled -n 50 on ${h.name}; \`meshfleet up ${a.stackArgs} --on ${h.name}\` runs tailscale up again` });
  } else out.push({ host: h.name, check: "tailscale", level: "ok", what: `Running ${ts.Version?.split("-")[0] ?? ""}`.trim() });
  // Node key expiry.
  const hsNode = st.headscale;
  const exp = hsNode?.expiry ?? (ts.Self?.KeyExpiry && !ts.Self.KeyExpiry.startsWith("0001-") ? ts.Self.KeyExpiry : null);
  if (exp) {
    const left = Date.parse(exp) - Date.now();
    if (left < 14 * 86400_000) {
      out.push({
        host: h.name, check: "node key", level: left < 0 ? "fail" : "warn",
        what: left < 0 ? `the node key expired ${age(-left)} ago` : `the node key expires in ${age(left)}`,
        why: "a node with an expired key drops off the tailnet until it logs in again",
        fix: `tag the node (tailscale.tags in its host file: tagged nodes do not expire) and run \`meshfleet up ${a.stackArgs} --on ${h.name}\`, or renew now: tailscale up --force-reauth on ${h.name}`,
      });
    } else out.push({ host: h.name, check: "node key", level: "ok", what: `expires in ${age(left)}` });
  } else out.push({ host: h.name, check: "node key", level: "ok", what: "does not expire (tagged node or expiry off)" });
  // Routes advertised and approved (headscale's view).
  const want = { host: h.name, hostname: h.tailscale.hostname || h.name, routes: h.tailscale.advertiseRoutes, exitNode: h.tailscale.advertiseExitNode };
  if ((want.routes.length > 0 || want.exitNode) && nodesJson && nodes) {
    const problems = checkRouteApproval(nodesJson, want);
    const node = nodeOfHost(nodes, want.hostname);
    const wanted = [...want.routes, ...(want.exitNode ? EXIT_ROUTES : [])];
    if (problems.length === 0) out.push({ host: h.name, check: "routes", level: "ok", what: `${wanted.join(", ")} advertised and approved` });
    for (const p of problems) {
      const cli = headscaleCliOf(a);
      const approve = node && cli ? headscaleCommand(cli, ["nodes", "approve-routes", "-i", String(node.id), "-r", [...new Set([...(node.approved_routes ?? []), ...wanted.filter((r) => (node.available_routes ?? []).includes(r))])].join(",")]) : undefined;
      const notApproved = / did not approve /.test(p);
      out.push({
        host: h.name, check: "routes", level: "fail",
        what: p.replace(/^host [^:]+: /, ""),
        why: "a route headscale has not approved is not offered to any peer: the LAN (or exit) behind this node is unreachable",
        fix: notApproved && approve ? `approve it now on ${a.fleet.coordinator.host}: ${approve}; for good, make the policy's autoApprovers cover the node (then \`meshfleet up\`)` : `see above; then \`meshfleet up ${a.stackArgs} --on ${h.name}\``,
        ...(notApproved && approve ? { fixCommand: { on: a.fleet.coordinator.host, command: approve } } : {}),
      });
    }
  }
  // Each peer's path.
  const active = st.tailscale.peers.filter((p) => p.online && p.path !== "idle");
  const relayed = active.filter((p) => p.path === "relayed");
  if (relayed.length > 0) {
    out.push({ host: h.name, check: "peer paths", level: "warn", what: `relayed through DERP to ${relayed.map((p) => `${p.peer} (${p.via})`).join(", ")}`, why: "relayed traffic is slower and limited by the relay; usually UDP is blocked or both ends are behind hard NAT", fix: `tailscale ping ${relayed[0]!.peer} on ${h.name} shows whether a direct path forms; open 41641/udp towards this host if it can be opened` });
  } else out.push({ host: h.name, check: "peer paths", level: "ok", what: active.length ? `direct to ${active.map((p) => `${p.peer} (${p.via})`).join(", ")}` : `no active peer traffic right now (${st.tailscale.peers.filter((p) => p.online).length} peers online)` });
  return out;
}

async function dnsFindings(a: StackAccess): Promise<Finding[]> {
  const coord = a.fleet.hosts[a.fleet.coordinator.host];
  let host: string;
  try {
    host = new URL(a.fleet.coordinator.serverUrl).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return [{ host: a.fleet.coordinator.host, check: "public name", level: "fail", what: `serverUrl ${JSON.stringify(a.fleet.coordinator.serverUrl)} is not a URL`, fix: "set coordinator.serverUrl in fleet.yaml, e.g. https://hs.example.org" }];
  }
  if (isIP(host)) return [{ host: a.fleet.coordinator.host, check: "public name", level: "ok", what: `serverUrl uses the address ${host} (no DNS record needed)` }];
  try {
    const addrs = (await lookup(host, { all: true })).map((x) => x.address);
    if (coord && isIP(coord.address) && !addrs.includes(coord.address)) {
      return [{ host: coord.name, check: "public name", level: "warn", what: `${host} resolves to ${addrs.join(", ")}, not ${coord.address} (the coordinator's SSH address)`, why: "nodes reach headscale at the name; if the name points elsewhere they cannot log in (fine if the VPS has a separate public address)", fix: `set the A record of ${host} to the VPS's public address` }];
    }
    return [{ host: a.fleet.coordinator.host, check: "public name", level: "ok", what: `${host} resolves to ${addrs.join(", ")}` }];
  } catch (e) {
    return [{ host: a.fleet.coordinator.host, check: "public name", level: "fail", what: `${host} does not resolve (${(e as NodeJS.ErrnoException).code ?? e})`, why: "nodes find the coordinator by this name, and Let's Encrypt needs it to issue the certificate", fix: `create an A record ${host} → the VPS's public IPv4 at your DNS provider` }];
  }
}

/**
 * Before a deploy (doctor as the preflight) what the deploy itself sets up is
 * not a fault: a host's forwarding and UDP GRO come with its first
 * generation, and the relays with the coordinator's. Those findings are
 * skipped, saying so; everything the deploy needs first is still checked.
 */
export function beforeFirstDeploy(st: HostStatus, fleetDeployed: boolean, fs: Finding[]): Finding[] {
  const hostDeployed = (st.generation?.n ?? 0) > 0;
  return fs.map((f) => {
    if (f.level !== "fail" && f.level !== "warn") return f;
    if (!hostDeployed && (f.check === "ip forwarding" || f.check === "udp gro forwarding")) return { host: f.host, check: f.check, level: "skip", what: `${f.what}: the host's first generation sets it (nothing deployed yet)` };
    if (!fleetDeployed && f.check === "udp to relay") return { host: f.host, check: f.check, level: "skip", what: `the relay is not deployed yet (${f.what}); the first \`meshfleet up\` starts it` };
    return f;
  });
}

/** Run every check; findings in host order, fleet-wide ones first. */
export async function runDoctor(a: StackAccess): Promise<{ ok: boolean; ms: number; findings: Finding[] }> {
  const t0 = Date.now();
  const session = newSession();
  try {
    const [{ status, raw }, dns] = await Promise.all([collectStatus(a, session, (h) => doctorScript(h, a)), dnsFindings(a)]);
    const coordRaw = raw[a.fleet.coordinator.host] ?? {};
    const parsed = jsonOr<HeadscaleNode[]>(coordRaw.nodes);
    const nodes = Array.isArray(parsed) ? parsed : null;
    const findings: Finding[] = [...dns];
    const byName = new Map(status.hosts.map((h) => [h.host, h]));
    const fleetDeployed = (status.hosts.find((x) => x.host === a.fleet.coordinator.host)?.generation?.n ?? 0) > 0;
    for (const h of a.selected) {
      const st = byName.get(h.name)!;
      const s = raw[h.name] ?? {};
      if (!h.agent) {
        // Joined by hand (a phone): nothing runs there that meshfleet could log in to or check.
        findings.push({ host: h.name, check: "ssh", level: "skip", what: "runs no agent (joined by hand): not checked over SSH" });
        continue;
      }
      findings.push(...sshFindings(h, st, s, a.stack));
      if (!st.reachable) continue;
      const hostNow = Number(s.now);
      const skew = hostNow ? hostNow - (Date.parse(status.at) - Math.round(st.ms / 2)) : null;
      findings.push(...coordinatorFindings(h, st, s, a, nodes));
      findings.push(...beforeFirstDeploy(st, fleetDeployed, [...routerFindings(h, s), ...certbotToolFindings(h, s), ...meshFindings(h, st, s, a, coordRaw.nodes, nodes, skew !== null && Math.abs(skew) > st.ms + 2000 ? skew : skew !== null ? 0 : null)]));
    }
    if (!nodes && (status.hosts.find((x) => x.host === a.fleet.coordinator.host)?.generation?.n ?? 0) > 0) {
      findings.push({ host: a.fleet.coordinator.host, check: "headscale cli", level: "fail", what: `headscale nodes list failed: ${(coordRaw.nodes ?? status.headscaleError ?? "").slice(0, 200)}`, why: "routes, registrations and keys cannot be checked", fix: `see the headscale health finding; on ${a.fleet.coordinator.host}: journalctl -u headscale -n 50` });
    }
    return { ok: !findings.some((f) => f.level === "fail"), ms: Date.now() - t0, findings };
  } finally {
    session.close();
  }
}

const ICON: Record<Level, string> = { ok: "ok  ", warn: "WARN", fail: "FAIL", skip: "skip" };

export function doctorLines(r: { ok: boolean; ms: number; findings: Finding[] }, verbose: boolean): string[] {
  const out: string[] = [];
  const shown = r.findings.filter((f) => verbose || f.level === "fail" || f.level === "warn");
  const rows = r.findings.filter((f) => f.level === "ok" || f.level === "skip").map((f) => [ICON[f.level], f.host, f.check, f.what]);
  if (verbose) out.push(...table(["", "HOST", "CHECK", "FOUND"], rows));
  for (const f of shown.filter((x) => x.level === "fail" || x.level === "warn")) {
    out.push(`${ICON[f.level]} ${f.host}: ${f.check}: ${f.what}`);
    if (f.why) out.push(`     why: ${f.why}`);
    if (f.fix) out.push(`     fix: ${f.fix}`);
  }
  const n = (l: Level) => r.findings.filter((f) => f.level === l).length;
  out.push(`doctor: ${n("fail")} failed, ${n("warn")} warnings, ${n("ok")} ok, ${n("skip")} skipped in ${(r.ms / 1000).toFixed(1)}s${verbose ? "" : " (--verbose lists the passing checks)"}`);
  return out;
}

const flags = [...stackFlags, { name: "verbose", help: "list every check, the passing ones too" }];

export const command: Command = {
  name: "doctor",
  summary: "preflight and troubleshooter: what is wrong on each host, why it matters, the exact fix",
  usage: `usage: meshfleet doctor --stack S [--on HOST|@role|@tag] [--config-file FILE] [--json] [--verbose]

Before the first \`meshfleet up\` it is the preflight; afterwards, the
troubleshooter. Reads every host over SSH in parallel and checks:
  ssh             reachable with the pinned host key and the deploy key
  agent runtime   Node.js 18 or newer on the host
  public name     the coordinator's serverUrl resolves (to the VPS)
  port 80/tcp, 443/tcp, 3478/udp, 41641/udp   on the coordinator: free
                  before the deploy, held by caddy/nginx, derper, tailscaled after
  headscale health  <serverUrl>/health answers 200 from the coordinator
  pre-auth keys   a host still to join has an unused, unexpired key
  udp to relay    a STUN request from each node to each DERP relay is answered
  ip forwarding, tun device, udp gro forwarding   on subnet routers and exit nodes
  routes          advertised and approved by headscale (headscale nodes list)
  peer paths      each active peer direct or relayed (tailscale status --json)
  node key        expiry (warns 14 days ahead)
  clock           the host's clock against this workstation's
Each problem prints what is wrong, why it matters and the fix; --json gives
every finding with a fixCommand where the fix is one command.

${flagHelp(flags)}

Exit code: 0 no check failed (warnings allowed), 1 some check failed, 2 bad usage.`,
  async run(argv) {
    const { opts, lists } = parseArgs(argv, flags, { positionals: [], hint: "hosts go with --on" });
    if (typeof opts.stack !== "string") throw new MeshfleetError("meshfleet doctor: which stack? Add --stack S");
    const a = await openStackFleet({ stack: opts.stack, configFile: typeof opts["config-file"] === "string" ? opts["config-file"] : undefined, on: lists.on });
    const r = await runDoctor(a);
    if (opts.json) process.stdout.write(JSON.stringify({ stack: a.stack, ...r }, null, 2) + "\n");
    else for (const l of doctorLines(r, !!opts.verbose)) process.stdout.write(l + "\n");
    return r.ok ? 0 : 1;
  },
};
