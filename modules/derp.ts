/**
 * A DERP relay: either the standalone `derper` (tailscale.com/cmd/derper) or
 * Headscale's embedded DERP server on the coordinator. The relays of the fleet
 * become one region of the DERP map Headscale serves (see `derpRegionsOf`).
 */
import { z } from "zod";
import { absPath, derpHostname } from "../core/freetext.ts";
import { defineModule, type Assertion, type Contribution, type ModuleContext, type PeerView } from "../core/module.ts";
import type { ContainerSpec, DerpRegion, FileSpec, UnitSpec } from "../core/types.ts";
import { parseIpv4, port } from "../core/schema-types.ts";

export const derpOptions = z
  .object({
    enable: z.boolean().default(false).describe("Run a DERP relay on this host."),
    mode: z
      .enum(["derper", "embedded"])
      .default("derper")
      .describe("`derper`: the standalone relay (its own unit or container). `embedded`: Headscale's built-in relay (coordinator only)."),
    regionId: z
      .number()
      .int()
      .min(0)
      .max(999)
      .default(0)
      .describe("DERP region this relay serves; 0 takes fleet.yaml derp.regionId. The embedded relay and derper must not share one."),
    hostname: derpHostname
      .default("")
      .describe("Name clients dial and the TLS certificate is for; \"\" uses the host's address."),
    ipv4: z
      .string()
      .default("")
      .describe("Public IPv4 address put in the DERP map (clients dial it instead of resolving the name); \"\" uses the hostname when it is an IPv4."),
    derpPort: port.default(443).describe("TCP port of the DERP (HTTPS) listener."),
    stunPort: port.default(3478).describe("UDP port of the STUN listener."),
    certMode: z
      .enum(["letsencrypt", "manual"])
      .default("letsencrypt")
      .describe("derper's -certmode: `letsencrypt` (needs derpPort 443 and a public DNS name) or `manual` (certs in certDir; an IP hostname gets a self-signed one)."),
    certDir: absPath("derp.certDir", "/var/lib/derper/certs").default("/var/lib/derper/certs").describe("derper's -certdir."),
    verifyClients: z
      .boolean()
      .default(true)
      .describe("Only relay for nodes Headscale knows (derper -verify-client-url to Headscale's /verify, failing closed)."),
    verifyClientUrl: z
      .string()
      .default("")
      .describe("Admission URL; \"\" uses the coordinator's /verify (loopback when Headscale runs on this host)."),
    insecureForTests: z
      .boolean()
      .default(false)
      .describe("Mark the node InsecureForTests in the DERP map (clients skip certificate checks): for the lab's self-signed relay only."),
    canPort80: z.boolean().default(false).describe("Tell clients the relay also answers on port 80 (captive-portal checks)."),
    package: absPath("derp.package", "/usr/local/bin/derper").default("/usr/local/bin/derper").describe("Path of the derper binary (systemd runtime)."),
    image: z
      .string()
      .default("")
      .describe("Container image with derper at /usr/local/bin/derper (docker runtime): repo:tag, repo@sha256:<digest>, or the id (sha256:…) of an image built on the host; there is no official image, so it must be set."),
    openFirewall: z.boolean().default(true).describe("Open derpPort/tcp and stunPort/udp on the public side."),
  })
  .strict();

export type DerpOptions = z.output<typeof derpOptions>;

declare module "../core/module.ts" {
  interface ModuleOptions {
    derp: DerpOptions;
  }
}

export const DERPER_STATE_DIR = "/var/lib/derper";
/** derper keeps its identity in a JSON file (`{"PrivateKey": …}`) it writes itself on first start. */
export const DERPER_KEY_FILE = `${DERPER_STATE_DIR}/derper.key`;

function enabledDerp(p: PeerView): DerpOptions | null {
  const o = p.config.derp;
  return o.enable ? o : null;
}

export function regionIdOf(o: DerpOptions, ctx: ModuleContext): number {
  return o.regionId === 0 ? ctx.fleet.derp.regionId : o.regionId;
}

function nodeHost(o: DerpOptions, p: PeerView): string {
  return o.hostname !== "" ? o.hostname : p.address;
}

/**
 * The address clients dial (it wins over the host name). Never the SSH
 * address by default: that is often a management or private address.
 */
function nodeIpv4(o: DerpOptions, hostName: string): string | undefined {
  if (o.ipv4 !== "") return o.ipv4;
  return parseIpv4(hostName) !== null ? hostName : undefined;
}

/**
 * The regions served by standalone derper hosts: what the DERP map file
 * (`derp.paths`) holds. Sorted by region, then host, so the file is stable.
 */
export function derperRegionsOf(ctx: ModuleContext): DerpRegion[] {
  const byRegion = new Map<number, DerpRegion>();
  for (const name of Object.keys(ctx.hosts).sort()) {
    const p = ctx.hosts[name];
    const o = enabledDerp(p);
    if (!o || o.mode !== "derper") continue;
    const id = regionIdOf(o, ctx);
    let r = byRegion.get(id);
    if (!r) {
      const own = id === ctx.fleet.derp.regionId;
      r = {
        regionId: id,
        regionCode: own ? ctx.fleet.derp.regionCode : `${ctx.fleet.derp.regionCode}-${id}`,
        regionName: own ? ctx.fleet.derp.regionName : `${ctx.fleet.derp.regionName} ${id}`,
        nodes: [],
      };
      byRegion.set(id, r);
    }
    const ipv4 = nodeIpv4(o, nodeHost(o, p));
    r.nodes.push({
      name: `${id}-${name}`,
      hostName: nodeHost(o, p),
      ...(ipv4 ? { ipv4 } : {}),
      stunPort: o.stunPort,
      derpPort: o.derpPort,
      ...(o.insecureForTests ? { insecureForTests: true } : {}),
      ...(o.canPort80 ? { canPort80: true } : {}),
    });
  }
  return [...byRegion.values()].sort((a, b) => a.regionId - b.regionId);
}

/** The embedded relay's region (at most one: it must run on the coordinator). */
export function embeddedRegionOf(ctx: ModuleContext): DerpRegion | null {
  const coord = ctx.hosts[ctx.fleet.coordinator.host];
  if (!coord) return null;
  const o = enabledDerp(coord);
  if (!o || o.mode !== "embedded") return null;
  const server = new URL(ctx.fleet.coordinator.serverUrl);
  const ipv4 = nodeIpv4(o, server.hostname);
  const id = regionIdOf(o, ctx);
  return {
    regionId: id,
    regionCode: ctx.fleet.derp.regionCode,
    regionName: ctx.fleet.derp.regionName,
    nodes: [
      {
        // Headscale names its node after the region and serves DERP on the server URL's host and port.
        name: `${id}`,
        hostName: server.hostname,
        ...(ipv4 ? { ipv4 } : {}),
        stunPort: o.stunPort,
        derpPort: server.port ? Number(server.port) : server.protocol === "https:" ? 443 : 80,
        ...(o.insecureForTests ? { insecureForTests: true } : {}),
      },
    ],
  };
}

/** Every DERP region the fleet runs itself: derper regions, then the embedded one. */
export function derpRegionsOf(ctx: ModuleContext): DerpRegion[] {
  const emb = embeddedRegionOf(ctx);
  return [...derperRegionsOf(ctx), ...(emb ? [emb] : [])];
}

/**
 * The DERP map file for Headscale's `derp.paths`. Headscale parses it with
 * yaml.v3 into tailcfg.DERPMap, whose fields carry no yaml tags, so the keys
 * must be the lowercased Go field names; CamelCase keys silently yield an
 * empty map (and Headscale then refuses to start: "initial DERPMap is empty").
 */
export function derpMapFile(regions: DerpRegion[]): { regions: Map<number, unknown> } {
  // A Map keeps the ids integers in YAML: a quoted "900" key does not decode into Go's map[int].
  const out = new Map<number, unknown>();
  for (const r of regions) {
    out.set(r.regionId, {
      regionid: r.regionId,
      regioncode: r.regionCode,
      regionname: r.regionName,
      nodes: r.nodes.map((n) => ({
        name: n.name,
        regionid: r.regionId,
        hostname: n.hostName,
        ...(n.ipv4 ? { ipv4: n.ipv4 } : {}),
        stunport: n.stunPort,
        derpport: n.derpPort,
        ...(n.insecureForTests ? { insecurefortests: true } : {}),
        ...(n.canPort80 ? { canport80: true } : {}),
      })),
    });
  }
  return { regions: out };
}

/** derper's argv (one flag per element). */
export function derperArgs(o: DerpOptions, ctx: ModuleContext, binary: string): string[] {
  const args = [
    binary,
    `-a=:${o.derpPort}`,
    // The HTTP listener (port 80) would collide with the reverse proxy on the coordinator;
    // TLS-ALPN-01 on the DERP port is enough for autocert.
    "-http-port=-1",
    `-hostname=${nodeHost(o, ctx.self)}`,
    `-certmode=${o.certMode}`,
    `-certdir=${o.certDir}`,
    "-stun=true",
    `-stun-port=${o.stunPort}`,
    `-c=${DERPER_KEY_FILE}`,
  ];
  if (o.verifyClients) {
    args.push(`-verify-client-url=${verifyUrlOf(o, ctx)}`);
    // derper's default is fail-open: an unreachable Headscale would admit anyone.
    args.push("-verify-client-url-fail-open=false");
  }
  return args;
}

export function verifyUrlOf(o: DerpOptions, ctx: ModuleContext): string {
  if (o.verifyClientUrl !== "") return o.verifyClientUrl;
  const coord = ctx.hosts[ctx.fleet.coordinator.host];
  const hs = coord?.config.headscale;
  if (ctx.host === ctx.fleet.coordinator.host && hs?.enable) {
    // In a container the loopback is derper's own: headscale is its compose neighbour, named by docker's DNS.
    if (ctx.self.runtime === "docker") return `http://headscale:${hs.listenAddr.slice(hs.listenAddr.lastIndexOf(":") + 1)}/verify`;
    return `http://${loopbackOf(hs.listenAddr)}/verify`;
  }
  return `${ctx.fleet.coordinator.serverUrl.replace(/\/+$/, "")}/verify`;
}

/** `0.0.0.0:8080` → `127.0.0.1:8080`: where a local client reaches a listener. */
export function loopbackOf(listen: string): string {
  const i = listen.lastIndexOf(":");
  const host = listen.slice(0, i);
  const p = listen.slice(i + 1);
  if (host === "" || host === "0.0.0.0") return `127.0.0.1:${p}`;
  if (host === "[::]") return `[::1]:${p}`;
  return listen;
}

function derperUnit(o: DerpOptions, ctx: ModuleContext): UnitSpec {
  const content = [
    "[Unit]",
    "Description=Tailscale DERP relay (meshfleet)",
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    "[Service]",
    `ExecStart=${derperArgs(o, ctx, o.package).join(" ")}`,
    "DynamicUser=yes",
    "StateDirectory=derper",
    "StateDirectoryMode=0700",
    "Restart=always",
    "RestartSec=5",
    // Binding 443 needs the capability; nothing else does.
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
  return { name: "derper.service", content, enable: true };
}

function derperContainer(o: DerpOptions, ctx: ModuleContext): ContainerSpec {
  return {
    name: "derper",
    image: o.image,
    ports: [
      { internal: o.derpPort, external: o.derpPort, protocol: "tcp" },
      { internal: o.stunPort, external: o.stunPort, protocol: "udp" },
    ],
    volumes: [{ name: "derper-data", containerPath: DERPER_STATE_DIR }],
    env: {},
    command: derperArgs(o, ctx, "/usr/local/bin/derper"),
    uploads: [],
    restart: "unless-stopped",
  };
}

/**
 * A relay name only a lab uses: an IPv4 in the documentation ranges
 * (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) or a name under a
 * reserved TLD (.test, .example, .invalid, .localhost; RFC 6761).
 */
export function isLabName(name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, "");
  if (parseIpv4(n) !== null) return /^(192\.0\.2|198\.51\.100|203\.0\.113)\.\d+$/.test(n);
  return /\.(test|example|invalid|localhost)$/.test(n);
}

export function derpAssertions(o: DerpOptions, ctx: ModuleContext): Assertion[] {
  const a: Assertion[] = [];
  const isCoord = ctx.host === ctx.fleet.coordinator.host;
  const relayName = o.mode === "embedded" ? new URL(ctx.fleet.coordinator.serverUrl).hostname : nodeHost(o, ctx.self);
  // Every client skips the relay's certificate check: a man in the middle reads the relayed (still WireGuard-encrypted) traffic's metadata and can impersonate the relay.
  a.push({
    assertion: !o.insecureForTests || isLabName(relayName),
    path: "derp.insecureForTests",
    expected: "false outside a lab (the lab's relay names are documentation addresses or .test/.example names)",
    found: `true for the relay ${JSON.stringify(relayName)}, so every client would skip its certificate check`,
    fix: "remove derp.insecureForTests and give the relay a certificate clients trust (derp.certMode: letsencrypt with a DNS name, or manual with a CA-signed certificate)",
  });
  // With a public DERP map merged in, a region id outside 900-999 can be one of Tailscale's
  // own regions, which Headscale then replaces (or is replaced by) without a word.
  const rid = regionIdOf(o, ctx);
  a.push({
    assertion: rid >= 900 || ctx.fleet.derp.publicUrls.length === 0,
    path: "derp.regionId",
    expected: "a region id in 900-999 while fleet.yaml derp.publicUrls merges a public DERP map (its regions use the ids below 900)",
    found: String(rid),
    fix: `set derp.regionId to an id in 900-999 other than the fleet's (e.g. ${ctx.fleet.derp.regionId === 999 ? 998 : 999}), or 0 for the fleet's region`,
  });
  if (o.mode === "embedded") {
    a.push({
      assertion: isCoord,
      path: "derp.mode",
      expected: `"embedded" only on the coordinator (${ctx.fleet.coordinator.host}), where Headscale runs`,
      found: `"embedded" on ${ctx.host}`,
      fix: `set derp.mode: derper on ${ctx.host}, or move it to hosts/${ctx.stack}/${ctx.fleet.coordinator.host}.yaml`,
    });
    const hs = ctx.hosts[ctx.fleet.coordinator.host]?.config.headscale;
    a.push({
      assertion: !isCoord || !!hs?.enable,
      path: "derp.mode",
      expected: "headscale.enable: true on this host (the embedded relay is part of Headscale)",
      found: "headscale.enable: false",
      fix: "set headscale.enable: true, or derp.mode: derper",
    });
    const id = regionIdOf(o, ctx);
    const clash = derperRegionsOf(ctx).find((r) => r.regionId === id);
    a.push({
      assertion: !clash,
      path: "derp.regionId",
      expected: `a region id no derper host serves (the embedded region would replace region ${id} of the DERP map file)`,
      found: `region ${id}, also served by derper on ${clash?.nodes.map((n) => n.name.replace(/^\d+-/, "")).join(", ")}`,
      fix: `set derp.regionId to another id in 900-999 (e.g. ${id === 999 ? 998 : 999}) on ${ctx.host}`,
    });
    return a;
  }
  // Two relays with one name: clients dial one of them for both, and the certificate fits only one.
  const norm = (h: string) => h.toLowerCase().replace(/\.$/, "");
  const mine = norm(nodeHost(o, ctx.self));
  const emb = embeddedRegionOf(ctx);
  const twin = emb && norm(emb.nodes[0].hostName) === mine
    ? `${ctx.fleet.coordinator.host} (the embedded relay, on the server URL's host)`
    : Object.keys(ctx.hosts).sort().find((n) => {
        if (n >= ctx.host) return false;
        const p = ctx.hosts[n];
        const po = enabledDerp(p);
        return po?.mode === "derper" && norm(nodeHost(po, p)) === mine;
      });
  a.push({
    assertion: !twin,
    path: "derp.hostname",
    expected: "a name no other DERP relay of the fleet uses",
    found: `${JSON.stringify(nodeHost(o, ctx.self))}, also the relay on host ${twin}`,
    fix: `set derp.hostname on ${ctx.host} to a name of its own that points at ${ctx.self.address}`,
  });
  a.push({
    assertion: o.certMode !== "letsencrypt" || o.derpPort === 443,
    path: "derp.derpPort",
    expected: "443 with certMode letsencrypt (derper only serves TLS on 443 or with -certmode manual)",
    found: String(o.derpPort),
    fix: "set derp.derpPort: 443, or derp.certMode: manual with a certificate in derp.certDir",
  });
  a.push({
    assertion: o.certMode !== "letsencrypt" || parseIpv4(nodeHost(o, ctx.self)) === null,
    path: "derp.hostname",
    expected: "a DNS name with certMode letsencrypt (Let's Encrypt gives no certificates for IP addresses)",
    found: JSON.stringify(nodeHost(o, ctx.self)),
    fix: "set derp.hostname to the relay's DNS name, or derp.certMode: manual (an IP hostname then gets a self-signed certificate; set derp.insecureForTests only in a lab)",
  });
  const proxy = ctx.self.config["reverse-proxy"];
  a.push({
    assertion: !(proxy.enable && o.derpPort === 443),
    path: "derp.derpPort",
    expected: "a port the reverse proxy on this host does not use",
    found: "443, which reverse-proxy also listens on",
    fix: "set derp.derpPort to another port (e.g. 8443) with derp.certMode: manual, or use derp.mode: embedded behind the proxy",
  });
  a.push({
    assertion: ctx.self.runtime !== "docker" || o.image !== "",
    path: "derp.image",
    expected: "an image holding /usr/local/bin/derper, pinned to a tag (the docker runtime runs derper in a container)",
    found: '""',
    fix: "set derp.image (e.g. a derper built from tailscale.com/cmd/derper at the fleet's tailscale version)",
  });
  return a;
}

export const derpModule = defineModule({
  name: "derp",
  description: "A DERP relay (standalone derper, or Headscale's embedded one) and its region in the DERP map.",
  options: derpOptions,
  facts(o) {
    return { services: { derp: !o.enable ? null : o.mode === "derper" ? "standalone" : "embedded" } };
  },
  config(o, ctx): Contribution {
    if (!o.enable) return {};
    const assertions = derpAssertions(o, ctx);
    // The embedded relay's STUN port is opened by the headscale module, which runs it.
    if (o.mode === "embedded") return { assertions };
    const inbound = o.openFirewall
      ? [
          { proto: "udp" as const, port: o.stunPort, from: [], owner: "derp", comment: "DERP STUN" },
          // The embedded relay is reached through the reverse proxy's 443.
          ...(o.mode === "derper" ? [{ proto: "tcp" as const, port: o.derpPort, from: [], owner: "derp", comment: "DERP relay" }] : []),
        ]
      : [];
    const probes = [{ name: "derper", kind: "tcp" as const, host: "127.0.0.1", port: o.derpPort }];
    const files: FileSpec[] = [];
    if (ctx.self.runtime === "docker") {
      return { files, inbound, containers: [derperContainer(o, ctx)], probes, assertions };
    }
    return { files, inbound, units: [derperUnit(o, ctx)], probes, assertions };
  },
});
