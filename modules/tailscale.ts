/**
 * tailscale: the client on every node (nixpkgs services.tailscale).
 * Flags are rendered as argv arrays, one flag per element (nixpkgs#399572),
 * and re-applied on every deploy with `tailscale set` (nixpkgs#276912, #509367).
 */
import { z } from "zod";
import { absPath, environment, extraUpFlags, loginServer, systemdEnvironment } from "../core/freetext.ts";
import { defineModule, type Assertion } from "../core/module.ts";
import { cidr, cidrContains, isNetworkAddress, parseCidr, port, tag, userName, duration } from "../core/schema-types.ts";
import type { TailscaleSettings } from "../core/types.ts";
import { tailscaleSetFlags, tailscaleUpFlags } from "../contract/tailscale.ts";

export const AUTH_KEY_FILE = "/var/lib/meshfleet/secrets/tailscale-authkey";
/**
 * The coordinator's Noise public key as this generation knows it (derived
 * from keySeed, filled in at deploy as the `noise-public-key` secret ref).
 * tailscaled's control client keeps the key it fetched at start for as long
 * as it runs, so a new key (keySeed rotated) must restart it: the file is a
 * restart trigger of tailscaled.service.
 */
export const CONTROL_KEY_FILE = "/var/lib/meshfleet/secrets/control-noise-key.pub";
/** Run before tailscaled starts: waits (at most 60 s) while the control server still presents another Noise key. */
export const CONTROL_KEY_WAIT = "/usr/local/lib/meshfleet/control-key-wait.mjs";
export const NOISE_PUBLIC_KEY_REF = "noise-public-key";

/**
 * Node script for ExecStartPre: during a rotation the nodes may switch before
 * the coordinator's headscale restarts with the new key, and a tailscaled
 * started then would fetch the old key and keep it. Never fails the start:
 * an unreachable server or a timeout starts tailscaled all the same.
 */
export const CONTROL_KEY_WAIT_SCRIPT = [
  "// meshfleet: wait until the control server presents the Noise key this generation expects (at most 60 s).",
  'import { readFileSync } from "node:fs";',
  "const [url, file] = process.argv.slice(2);",
  "let want;",
  'try { want = "mkey:" + readFileSync(file, "utf8").trim(); } catch { process.exit(0); }',
  "const end = Date.now() + 60000;",
  "for (;;) {",
  '  let got = "";',
  "  try {",
  '    const r = await fetch(new URL("/key?v=130", url), { signal: AbortSignal.timeout(3000) });',
  '    if (r.ok) got = String((await r.json()).publicKey ?? "");',
  "  } catch {}",
  '  if (got === "") { console.log("control server not answering its /key: starting tailscaled"); process.exit(0); }',
  '  if (got === want) { console.log("control server presents the expected Noise key"); process.exit(0); }',
  '  if (Date.now() > end) { console.log("control server still presents another Noise key after 60 s: starting tailscaled anyway"); process.exit(0); }',
  "  await new Promise((r) => setTimeout(r, 1000));",
  "}",
  "",
].join("\n");

/** An apt source URL: http(s) or file: (a local mirror), no spaces (one word of a sources line). */
const aptUrl = z.string().regex(/^$|^(https?:\/\/[^\s\[\]]+|file:\/[^\s\[\]]*)$/, { message: "an http(s):// or file:/ URL without spaces, e.g. the repository's URL from Tailscale's install page" });
/** One word of a sources line (a suite or component). */
const aptWord = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._\/-]*$|^$/, { message: "one word of an apt sources line (letters, digits, . _ - /)" });
/** A keyring file in the fleet's folder: relative, no "..", ending .gpg (binary) or .asc (armored), as apt's signed-by tells them apart. */
const aptKeyringFile = z.string().regex(/^$|^(?!\/)(?!.*(^|\/)\.\.(\/|$))[^\s]+\.(gpg|asc)$/, {
  message: "a path inside the fleet's folder ending .gpg (binary keyring) or .asc (armored), without .. (e.g. keys/tailscale-archive-keyring.gpg)",
});

/** Where Tailscale's Debian package puts its binaries; tailscale.apt needs the paths to be these. */
export const PACKAGE_TAILSCALE = "/usr/bin/tailscale";
export const PACKAGE_TAILSCALED = "/usr/sbin/tailscaled";

export const tailscaleOptions = z
  .object({
    enable: z.boolean().default(false).describe("Run tailscaled and join the mesh."),
    loginServer: loginServer.default("").describe("Coordinator URL; empty means fleet.yaml's coordinator.serverUrl."),
    hostname: z.string().default("").describe("Node name in the tailnet; empty means the host's name."),
    user: z.union([userName, z.literal("")]).default("").describe("Headscale user the node logs in as (untagged nodes need one)."),
    tags: z.array(tag).default([]).describe("ACL tags the node advertises, e.g. [tag:router]; owners come from policy.tagOwners."),
    advertiseRoutes: z.array(cidr).default([]).describe("Subnets this node routes (the subnet-router module adds its routes here)."),
    advertiseExitNode: z.boolean().default(false).describe("Offer this node as an exit node."),
    acceptRoutes: z.boolean().default(false).describe("Use subnet routes other nodes advertise (off by default on Linux)."),
    acceptDns: z.boolean().default(true).describe("Use the tailnet's DNS settings."),
    ssh: z.boolean().default(false).describe("Run Tailscale SSH on this node."),
    snatSubnetRoutes: z.boolean().default(true).describe("Masquerade traffic to advertised subnets (off keeps source addresses; the LAN then needs a route back)."),
    netfilterMode: z.enum(["on", "nodivert", "off"]).default("on").describe("How tailscaled manages netfilter rules."),
    port: port.default(41641).describe("UDP port tailscaled listens on for WireGuard."),
    openFirewall: z.boolean().default(true).describe("Open the WireGuard UDP port on the public side."),
    authKey: z
      .object({
        reusable: z.boolean().default(false).describe("The pre-auth key may register several nodes."),
        ephemeral: z.boolean().default(false).describe("The node is removed when it goes offline."),
        expiration: z.union([duration, z.literal("")]).default("").describe("Key lifetime; empty means fleet.yaml's preAuthKeyExpiration."),
      })
      .strict()
      .default({ reusable: false, ephemeral: false, expiration: "" })
      .describe("The pre-auth key meshfleet makes for this node."),
    tailscaledPath: absPath("tailscale.tailscaledPath", "/usr/sbin/tailscaled").default("/usr/sbin/tailscaled").describe("Path of the tailscaled binary on the host."),
    tailscalePath: absPath("tailscale.tailscalePath", "/usr/bin/tailscale").default("/usr/bin/tailscale").describe("Path of the tailscale CLI on the host."),
    apt: z
      .object({
        enable: z.boolean().default(false).describe("Install tailscale from Tailscale's apt repository, at fleet.yaml's tailscaleVersion, when the host lacks it or runs another release; the version is then pinned (apt preferences) and checked after the install. Off: meshfleet installs no tailscale and refuses a host without it."),
        url: aptUrl.default("").describe("The repository's URL as Tailscale's Linux install page gives it for your distribution (docs/deploy.md shows it for Debian and Ubuntu)."),
        suite: aptWord.default("").describe("The repository's suite; empty means the host's release codename from /etc/os-release (bookworm, trixie, noble)."),
        component: aptWord.default("main").describe("The repository's component."),
        keyring: aptKeyringFile.default("").describe("The repository's signing key, a file in the fleet's folder (e.g. keys/tailscale-archive-keyring.gpg): Tailscale's binary `<codename>.noarmor.gpg` saved as .gpg, or its armored `<codename>.gpg` saved as .asc. meshfleet writes it to /usr/share/keyrings/ and the source names it in signed-by."),
      })
      .strict()
      .default({ enable: false, url: "", suite: "", component: "main", keyring: "" })
      .describe("Where the deploy installs tailscale from (docs/deploy.md, \"What each host needs first\")."),
    environment: environment.default({}).describe("Extra environment for tailscaled (e.g. TS_DEBUG_FIREWALL_MODE=nftables)."),
    extraUpFlags: extraUpFlags.default([]).describe("More `tailscale up` flags, one per element."),
  })
  .strict();

declare module "../core/module.ts" {
  interface ModuleOptions {
    tailscale: z.output<typeof tailscaleOptions>;
  }
}

export type TailscaleOptions = z.output<typeof tailscaleOptions>;

/**
 * The routes the node advertises: `tailscale.advertiseRoutes` after the
 * merge (the subnet-router module sets its routes there), first of each kept,
 * each with the option path that holds it. The one route list: the policy,
 * the cross-host check, the flags and the probes all read this.
 */
export function advertisedRoutes(o: TailscaleOptions): { cidr: string; option: string }[] {
  const seen = new Set<string>();
  const out: { cidr: string; option: string }[] = [];
  o.advertiseRoutes.forEach((c, i) => {
    if (seen.has(c)) return;
    seen.add(c);
    out.push({ cidr: c, option: `tailscale.advertiseRoutes[${i}]` });
  });
  return out;
}

/** Each route: a network address, inside one of the host's LANs, not overlapping another route of the host. */
function routeAssertions(routes: { cidr: string; option: string }[], lan: string[], file: string): Assertion[] {
  const lans = lan.map((c) => parseCidr(c)).filter((c) => c !== null);
  const a: Assertion[] = [];
  routes.forEach(({ cidr: r, option }, i) => {
    const c = parseCidr(r)!;
    a.push({ assertion: isNetworkAddress(c), path: option, expected: "a network address (host bits zero)", found: JSON.stringify(r), fix: `write the network, e.g. ${networkOf(r)}` });
    a.push({
      assertion: lans.some((l) => cidrContains(l, c)),
      path: option,
      expected: `a subnet inside the host's LAN (${lan.join(", ") || "no lan declared"})`,
      found: JSON.stringify(r),
      fix: `add the LAN to \`lan\` in ${file}, or advertise a subnet the host is attached to`,
    });
    routes.forEach(({ cidr: other, option: otherOption }, j) => {
      if (j <= i) return;
      const d = parseCidr(other)!;
      a.push({
        assertion: !(cidrContains(c, d) || cidrContains(d, c)),
        path: otherOption,
        expected: "routes that do not overlap each other",
        found: `${other}, which overlaps routes[${i}] ${r}`,
        fix: "keep only the wider route or split them so they do not overlap",
      });
    });
  });
  return a;
}

function networkOf(r: string): string {
  const c = parseCidr(r);
  if (!c || c.v6) return r;
  const mask = ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - c.bits)) - 1n);
  const a = c.addr & mask;
  return `${[24n, 16n, 8n, 0n].map((s) => (a >> s) & 255n).join(".")}/${c.bits}`;
}

/** tailscale.apt: a URL and a keyring to install from, and the paths the package installs to. */
function aptAssertions(o: TailscaleOptions): Assertion[] {
  if (!o.apt.enable) return [];
  return [
    { assertion: o.apt.url !== "", path: "tailscale.apt.url", expected: "the repository's URL (tailscale.apt.enable is true)", found: '""', fix: "set tailscale.apt.url to the URL Tailscale's install page gives for your distribution (docs/deploy.md), or turn tailscale.apt.enable off" },
    { assertion: o.apt.keyring !== "", path: "tailscale.apt.keyring", expected: "the repository's signing key, a file in the fleet's folder (tailscale.apt.enable is true)", found: '""', fix: "save Tailscale's <codename>.noarmor.gpg in the fleet's folder (e.g. keys/tailscale-archive-keyring.gpg) and set tailscale.apt.keyring to it" },
    ...([["tailscalePath", o.tailscalePath, PACKAGE_TAILSCALE], ["tailscaledPath", o.tailscaledPath, PACKAGE_TAILSCALED]] as const).map(([k, v, want]) => ({
      assertion: v === want,
      path: `tailscale.${k}`,
      expected: `${want}, where Tailscale's package installs it (tailscale.apt.enable is true)`,
      found: JSON.stringify(v),
      fix: `remove tailscale.${k} (its default is ${want}), or turn tailscale.apt.enable off to run a tailscale meshfleet does not install`,
    })),
  ];
}

/** The settings as the bundle's typed tailscale config, whose flags the contract builds (one definition). */
const flagsOf = (s: Omit<TailscaleSettings, "upArgs" | "setArgs">): Parameters<typeof tailscaleUpFlags>[0] => ({
  cli: s.cli, loginServer: s.loginServer, authKeyFile: s.authKeyFile, hostname: s.hostname, tags: s.tags,
  routes: s.advertiseRoutes, exitNode: s.advertiseExitNode, acceptRoutes: s.acceptRoutes, acceptDns: s.acceptDns,
  ssh: s.ssh, snatSubnetRoutes: s.snatSubnetRoutes, netfilterMode: s.netfilterMode, extraUpFlags: s.extraUpFlags,
});

export const tailscaleModule = defineModule({
  name: "tailscale",
  description: "The Tailscale client (tailscaled) and how the node joins the mesh.",
  options: tailscaleOptions,
  facts(o, host) {
    if (!o.enable) return { services: { tailnet: false, subnetRouter: false, exitNode: false }, tailnet: null };
    const routes = advertisedRoutes(o);
    return {
      services: { tailnet: true, subnetRouter: routes.length > 0, exitNode: o.advertiseExitNode },
      tailnet: { name: o.hostname || host.name, nameOption: "tailscale.hostname", tags: o.tags, user: o.user, routes, exitNode: o.advertiseExitNode },
    };
  },
  config(o, ctx) {
    if (!o.enable) return { tailscale: { cli: o.tailscalePath } };
    const agent = ctx.self.config.agent;
    const user = o.user;
    const expiration = o.authKey.expiration || ctx.fleet.preAuthKeyExpiration;
    // Only a keySeed-derived key can change under a node: an adopted key (headscale.adopt) stays, and a
    // coordinator meshfleet does not run has keys of its own.
    const coordHs = ctx.hosts[ctx.fleet.coordinator.host]?.config.headscale;
    const controlKey = !!coordHs?.enable && !coordHs.adopt.enable && (o.loginServer === "" || o.loginServer === ctx.fleet.coordinator.serverUrl);
    const env = { TS_NO_LOGS_NO_SUPPORT: "true", ...o.environment };
    const routes = advertisedRoutes(o);
    const settings: Omit<TailscaleSettings, "upArgs" | "setArgs"> = {
      netfilterMode: o.netfilterMode,
      extraUpFlags: o.extraUpFlags,
      enable: true,
      loginServer: o.loginServer || ctx.fleet.coordinator.serverUrl,
      authKeyFile: AUTH_KEY_FILE,
      hostname: o.hostname || ctx.host,
      tags: o.tags,
      advertiseRoutes: routes.map((r) => r.cidr),
      advertiseExitNode: o.advertiseExitNode,
      acceptRoutes: o.acceptRoutes,
      acceptDns: o.acceptDns,
      ssh: o.ssh,
      snatSubnetRoutes: o.snatSubnetRoutes,
      cli: o.tailscalePath,
      ...(o.apt.enable ? { aptUrl: o.apt.url, aptSuite: o.apt.suite, aptComponent: o.apt.component, aptKeyring: o.apt.keyring } : {}),
    };
    return {
      tailscale: { ...settings, upArgs: tailscaleUpFlags(flagsOf(settings)), setArgs: tailscaleSetFlags(flagsOf(settings)) },
      files: agent
        ? [
            { path: AUTH_KEY_FILE, content: "", mode: "0600", owner: "root", group: "root", secret: true, secretRef: `preauth:${ctx.host}` },
            ...(controlKey
              ? [
                  { path: CONTROL_KEY_FILE, content: "", mode: "0600", owner: "root", group: "root", secret: true, secretRef: NOISE_PUBLIC_KEY_REF },
                  { path: CONTROL_KEY_WAIT, content: CONTROL_KEY_WAIT_SCRIPT, mode: "0644", owner: "root", group: "root" },
                ]
              : []),
          ]
        : [],
      units: agent
        ? [{
            name: "tailscaled.service",
            enable: true,
            content: [
              "[Unit]",
              "Description=Tailscale node agent (managed by meshfleet)",
              "Wants=network-pre.target",
              "After=network-pre.target NetworkManager.service systemd-resolved.service",
              "",
              "[Service]",
              ...Object.entries(env).sort().map(([k, v]) => systemdEnvironment(k, v)),
              ...(controlKey ? [`ExecStartPre=-${ctx.self.config["meshfleet-agent"].nodePath} --use-openssl-ca ${CONTROL_KEY_WAIT} ${settings.loginServer} ${CONTROL_KEY_FILE}`] : []),
              `ExecStart=${o.tailscaledPath} --state=/var/lib/tailscale/tailscaled.state --socket=/run/tailscale/tailscaled.sock --port=${o.port}`,
              `ExecStopPost=${o.tailscaledPath} --cleanup`,
              "Restart=on-failure",
              "RuntimeDirectory=tailscale",
              "RuntimeDirectoryMode=0755",
              "StateDirectory=tailscale",
              "StateDirectoryMode=0700",
              "Type=notify",
              "",
              "[Install]",
              "WantedBy=multi-user.target",
              "",
            ].join("\n"),
            ...(controlKey ? { restartTriggers: [CONTROL_KEY_FILE] } : {}),
          }]
        : [],
      inbound: o.openFirewall && agent ? [{ proto: "udp", port: o.port, from: [], owner: "tailscale", comment: "tailscale wireguard" }] : [],
      probes: agent ? [{ name: "tailscaled running", kind: "tailscale-running" }] : [],
      fleet: {
        preAuthKeys: [{ host: ctx.host, user, reusable: o.authKey.reusable, ephemeral: o.authKey.ephemeral, expiration, tags: o.tags }],
        users: user ? [user] : [],
      },
      assertions: [
        ...routeAssertions(routes, ctx.self.lan, ctx.file.split(/[\\/]/).pop() ?? ctx.file),
        ...aptAssertions(o),
        {
          assertion: o.tags.length > 0 || user !== "",
          path: "tailscale.user",
          expected: "a user, or at least one tag (a pre-auth key needs one or the other)",
          found: "neither",
          fix: "set tailscale.user to one of fleet.yaml's users, or tailscale.tags",
        },
        {
          assertion: user === "" || ctx.fleet.users.includes(user),
          path: "tailscale.user",
          expected: `one of fleet.yaml's users (${ctx.fleet.users.join(", ") || "none declared"})`,
          found: JSON.stringify(user),
          fix: `add "${user}" to users in ${ctx.fleetFile}, or pick a declared user`,
        },
      ],
    };
  },
});

