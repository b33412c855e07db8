/**
 * Bad input: each case is a small fleet with one mistake; its exact
 * diagnostics (file, option path, expected, found, fix) are the contract,
 * snapshotted. The temp folder's path is replaced by <fleet>.
 */
import { describe, expect, it } from "vitest";
import { evaluateFleet, formatDiagnostics, hasErrors } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "./fleet-fixture.ts";

const vps = BASE["vps.yaml"];
const router = BASE["router.yaml"];
const fleet = BASE["fleet.yaml"];

const CASES: Record<string, Record<string, string | null>> = {
  "yaml syntax error": { "laptop.yaml": "imports: [client\naddress: 1.2.3.4\n" },
  "yaml duplicate key": { "laptop.yaml": "imports: [client]\naddress: 10.0.0.5\naddress: 10.0.0.6\n" },
  "yaml unknown tag": { "laptop.yaml": "imports: [client]\naddress: !mkWhatever 10.0.0.5\n" },
  "host file not a mapping": { "laptop.yaml": "- just\n- a list\n" },
  "bad host file name": { "Laptop_1.yaml": "imports: [client]\naddress: 10.0.0.9\n" },
  "host named like a key every object has": { "constructor.yaml": "imports: [client]\naddress: 10.0.0.9\ntailscale:\n  user: alice\n" },
  "duplicate host (yaml and yml)": { "laptop.yml": "imports: [client]\naddress: 10.0.0.6\n" },
  "missing fleet.yaml": { "fleet.yaml": null },
  "unknown top-level option": { "laptop.yaml": BASE["laptop.yaml"] + "adress: 1.2.3.4\n" },
  "unknown module option": { "laptop.yaml": "imports: [client]\naddress: 10.0.0.5\ntailscale:\n  user: alice\n  acceptRoute: true\n" },
  "unknown module": { "laptop.yaml": BASE["laptop.yaml"] + "wireguard:\n  enable: true\n" },
  "wrong type (string for bool)": { "laptop.yaml": "imports: [client]\naddress: 10.0.0.5\ntailscale:\n  user: alice\n  acceptRoutes: \"yes\"\n" },
  "wrong type (number for list)": { "laptop.yaml": "imports: [client]\naddress: 10.0.0.5\ntailscale:\n  user: alice\n  tags: 5\n" },
  "missing address": { "laptop.yaml": "imports: [client]\ntailscale:\n  user: alice\n" },
  "bad CIDR in routes": { "router.yaml": router.replace("routes: [192.168.8.0/24]", "routes: [192.168.8.0/33]") },
  "CIDR with host bits": { "router.yaml": router.replace("routes: [192.168.8.0/24]", "routes: [192.168.8.5/24]") },
  "route not in the host's LAN": { "router.yaml": router.replace("routes: [192.168.8.0/24]", "routes: [192.168.9.0/24]") },
  "overlapping routes on one host": { "router.yaml": router.replace("lan: [192.168.8.0/24]", "lan: [192.168.0.0/16]").replace("routes: [192.168.8.0/24]", "routes: [192.168.0.0/16, 192.168.8.0/24]") },
  "overlapping routes across routers": { "router2.yaml": router.replace("lan: [192.168.8.0/24]", "lan: [192.168.0.0/16]").replace("routes: [192.168.8.0/24]", "routes: [192.168.0.0/16]").replace("192.168.8.205", "192.168.8.206") },
  "subnet router with no routes": { "router.yaml": router.replace("routes: [192.168.8.0/24]", "routes: []") },
  "bad lan CIDR": { "router.yaml": router.replace("lan: [192.168.8.0/24]", "lan: [192.168.8.0]") },
  "unknown import": { "laptop.yaml": BASE["laptop.yaml"].replace("[client]", "[clinet]") },
  "import file missing": { "laptop.yaml": BASE["laptop.yaml"].replace("[client]", "[client, ./common.yaml]") },
  "bad tag name": { "router.yaml": router.replace("tags: [tag:router]", "tags: [router]") },
  "no user and no tags": { "laptop.yaml": "imports: [client]\naddress: 10.0.0.5\n" },
  "user not declared": { "laptop.yaml": BASE["laptop.yaml"].replace("user: alice", "user: bob") },
  "coordinator host missing": { "fleet.yaml": fleet.replace("host: vps", "host: hs1") },
  "coordinator not running headscale": { "vps.yaml": vps.replace("coordinator, ", "") },
  "two coordinators": { "vps2.yaml": vps.replace("203.0.113.10", "203.0.113.11") },
  "coordinator host is another host": { "fleet.yaml": fleet.replace("host: vps", "host: laptop") },
  "server URL without scheme": { "fleet.yaml": fleet.replace("https://hs.example.com", "hs.example.com") },
  "missing serverUrl": { "fleet.yaml": fleet.replace("  serverUrl: https://hs.example.com\n", "") },
  "unknown fleet option": { "fleet.yaml": fleet + "dnss:\n  magicDns: true\n" },
  "base_domain equal to the server URL's host": { "fleet.yaml": fleet + "dns:\n  baseDomain: hs.example.com\n" },
  "server URL inside base_domain": { "fleet.yaml": fleet + "dns:\n  baseDomain: example.com\n" },
  "bad prefix CIDR": { "fleet.yaml": fleet + "prefixes:\n  v4: 100.64.0.0/40\n" },
  "bad allocation": { "fleet.yaml": fleet + "prefixes:\n  allocation: roundrobin\n" },
  "DERP region id out of range": { "fleet.yaml": fleet + "derp:\n  regionId: 5\n" },
  "bad expiration duration": { "fleet.yaml": fleet + "preAuthKeyExpiration: 3 months\n" },
  "port clash between modules": { "vps.yaml": vps + "firewall:\n  allowedTCPPorts: [443]\n" },
  "port out of range": { "vps.yaml": vps + "firewall:\n  allowedUDPPorts: [70000]\n" },
  "conflicting scalars at one priority": { "_common.yaml": "tailscale:\n  acceptRoutes: false\n", "laptop.yaml": BASE["laptop.yaml"].replace("[client]", "[client, ./_common.yaml]") },
  "duplicate tailscale hostname": { "laptop.yaml": BASE["laptop.yaml"] + "  hostname: vps\n" },
  "bad ssh port": { "laptop.yaml": BASE["laptop.yaml"] + "ssh:\n  port: 0\n" },
  "bad runtime": { "laptop.yaml": BASE["laptop.yaml"] + "runtime: podman\n" },
  "lxc without proxmox host": { "router.yaml": router.replace("[subnet-router]", "[subnet-router, proxmox-lxc]") + "lxc:\n  ctid: 205\n" },
  "bad PVE version": { "router.yaml": router.replace("[subnet-router]", "[subnet-router, proxmox-lxc]") + "lxc:\n  ctid: 205\n  proxmoxHost: root@192.168.8.2\n  pveVersion: eight\n" },
  // issue 17: the loader's classes, end to end (one diagnostic each, nothing from evaluation on top)
  "import outside the hosts folder": { "laptop.yaml": BASE["laptop.yaml"].replace("[client]", "[client, ../../etc/common.yaml]") },
  "circular imports": { "_a.yaml": "imports: [./_b.yaml]\n", "_b.yaml": "imports: [./_a.yaml]\n", "laptop.yaml": BASE["laptop.yaml"].replace("[client]", "[client, ./_a.yaml]") },
  "node name with a path in it": { "laptop.yaml": BASE["laptop.yaml"] + "  hostname: ../etc\n" },
  "node names equal but for case": { "laptop.yaml": BASE["laptop.yaml"] + "  hostname: VPS\n" },
  "nameserver not an address": { "fleet.yaml": fleet + "dns:\n  nameservers:\n    global: [one.one.one.one]\n" },
  "baseDomain spelled in capitals with a trailing dot": { "fleet.yaml": fleet.replace("https://hs.example.com", "https://hs.example.com:8443") + "dns:\n  baseDomain: Example.COM.\n" },
  "policy key misspelt": { "fleet.yaml": fleet.replace("  acls:", "  acl:") },
  "YAML alias bomb": { "laptop.yaml": "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n" },
  "multi-document YAML": { "laptop.yaml": BASE["laptop.yaml"] + "---\naddress: 10.0.0.6\n" },
  "value shown as typed": { "laptop.yaml": BASE["laptop.yaml"] + "ssh:\n  port: 0x0\n", "fleet.yaml": fleet + "tailscaleVersion: 1.90\n" },
  // issue 17: free text that reaches a config file, a unit or a command line (core/freetext.ts, wired in the modules)
  "Caddy acmeEmail that breaks the global block": { "vps.yaml": vps + 'reverse-proxy:\n  acmeEmail: "ops@example.com }"\n' },
  "nginx server_name with a second directive": { "vps.yaml": vps + 'reverse-proxy:\n  kind: nginx\n  domain: "hs.example.com; return 200"\n' },
  "derper hostname that reads as a flag": { "vps.yaml": vps.replace("derp:\n", "derp:\n  hostname: -verify-clients\n") },
  "systemd Environment= value on two lines": { "laptop.yaml": BASE["laptop.yaml"] + '  environment:\n    TS_X: "a\\nExecStartPre=/bin/sh"\n' },
  "extraUpFlags setting a typed option's flag": { "laptop.yaml": BASE["laptop.yaml"] + '  extraUpFlags: ["--login-server=https://evil.example"]\n' },
  "Postgres sslmode not one of libpq's": { "vps.yaml": vps + "headscale:\n  database:\n    type: postgres\n    postgres:\n      ssl: strict\n" },
  // issue 17: routes, exit nodes and relays
  "tailscale.advertiseRoutes outside the host's LAN": { "laptop.yaml": BASE["laptop.yaml"] + "  advertiseRoutes: [10.9.0.0/24]\n" },
  "exit node with forwarding forced off": { "laptop.yaml": "imports: [exit-node]\naddress: 10.0.0.5\ntailscale:\n  user: alice\nkernel:\n  sysctl:\n    net.ipv6.conf.all.forwarding: !mkForce \"0\"\n" },
  "subnet router with forwarding forced off": { "router.yaml": router + "kernel:\n  sysctl:\n    net.ipv4.ip_forward: !mkForce \"0\"\n" },
  "subnet router with agent: false": { "router.yaml": router + "agent: false\n" },
  "two DERP relays with one hostname": { "vps.yaml": vps.replace("derp:\n", "derp:\n  hostname: derp.example.com\n"), "relay.yaml": "imports: [derp-relay]\naddress: 203.0.113.20\nderp:\n  hostname: DERP.example.com.\n  derpPort: 8443\n  certMode: manual\ntailscale:\n  user: alice\n" },
  "DERP region id among the public map's": { "vps.yaml": vps.replace("derp:\n", "derp:\n  regionId: 1\n"), "fleet.yaml": fleet + "derp:\n  publicUrls: [https://controlplane.tailscale.com/derpmap/default]\n" },
  "exit node with tailscale disabled": { "laptop.yaml": "imports: [exit-node]\naddress: 10.0.0.5\ntailscale:\n  enable: false\n  user: alice\n" },
  "binary path with an argument in it": { "laptop.yaml": BASE["laptop.yaml"] + "  tailscaledPath: /usr/sbin/tailscaled --tun=userspace-networking\n" },
  "interface name that reads as a flag": { "router.yaml": router.replace("subnet-router:\n", "subnet-router:\n  lanInterface: --help\n") },
  "huge value echoed briefly": { "laptop.yaml": BASE["laptop.yaml"].replace("10.0.0.5", "1".repeat(9000)) + "runtime: " + "p".repeat(4000) + "\n" },
};

describe("bad input: one clear diagnostic per problem", () => {
  it("has at least 40 cases", () => expect(Object.keys(CASES).length).toBeGreaterThanOrEqual(40));

  for (const [name, files] of Object.entries(CASES)) {
    it(name, async () => {
      const { dir, cleanup } = writeFleet(files);
      try {
        const r = await evaluateFleet(REGISTRY, dir, "fx");
        expect(hasErrors(r.diagnostics), "the case must be rejected").toBe(true);
        expect(r.fleet).toBeUndefined();
        const text = formatDiagnostics(r.diagnostics).split(dir).join("<fleet>");
        expect(text).not.toMatch(/\n\s+at /); // no stack traces
        for (const d of r.diagnostics) {
          expect(d.file).not.toBe("");
          expect(d.expected).not.toBe("");
          expect(d.fix).not.toBe("");
          // The fix must fix: never "set  to ...", never setting the value found wrong again.
          expect(d.fix).not.toMatch(/set\s{2,}|^set\s+to /);
          const bad = /^"([^"]{2,})"/.exec(d.found)?.[1];
          if (bad) expect(d.fix).not.toMatch(new RegExp(`(\\bto |: )"?${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(["\\s.,;]|$)`));
          for (const f of [d.file, d.path, d.expected, d.found, d.fix]) expect(f).not.toMatch(/[\n\r\u0000\u001b]/);
        }
        expect(text).toMatchSnapshot();
      } finally {
        cleanup();
      }
    });
  }

  it("the base fixture itself is valid", async () => {
    const { dir, cleanup } = writeFleet();
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      expect(formatDiagnostics(r.diagnostics)).toBe("");
      expect(Object.keys(r.fleet!.hosts).sort()).toEqual(["laptop", "router", "vps"]);
    } finally {
      cleanup();
    }
  });
});
