/**
 * Issue 17, free text: each module option that reaches a config file, a unit
 * or a command line is checked by core/freetext.ts when the fleet is
 * evaluated, so a bad value gives one diagnostic (file, option path,
 * expected, found, fix) and nothing renders; a valid value still passes and
 * renders as written.
 */
import { describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";

const vps = BASE["vps.yaml"];
const laptop = BASE["laptop.yaml"];

async function evaluate(files: Record<string, string>) {
  const { dir, cleanup } = writeFleet(files);
  try {
    const r = await evaluateFleet(REGISTRY, dir, "fx");
    return { ...r, diagnostics: r.diagnostics.map((d) => ({ ...d, file: d.file.split(dir).join("<fleet>") })) };
  } finally {
    cleanup();
  }
}

interface Want { file: string; path: string; expected: RegExp; found: string; fix: RegExp }

const BAD: Record<string, { files: Record<string, string>; want: Want[] }> = {
  "Caddy acmeEmail with a brace": {
    files: { "vps.yaml": vps + 'reverse-proxy:\n  acmeEmail: "ops@example.com }"\n' },
    want: [{ file: "<fleet>/vps.yaml", path: "reverse-proxy.acmeEmail", expected: /^an e-mail address such as admin@example\.com/, found: '"ops@example.com }", whose domain has whitespace (U+0020)', fix: /^set reverse-proxy\.acmeEmail to an address at a real domain$/ }],
  },
  "Caddy acmeEmail with a line break (a second global option)": {
    files: { "vps.yaml": vps + 'reverse-proxy:\n  acmeEmail: "ops@example.com\\n\\tdebug"\n' },
    want: [{ file: "<fleet>/vps.yaml", path: "reverse-proxy.acmeEmail", expected: /^an e-mail address/, found: '"ops@example.com\\n\\tdebug", which has a line break', fix: /one address on one line/ }],
  },
  "nginx server_name with a second directive": {
    files: { "vps.yaml": vps + 'reverse-proxy:\n  kind: nginx\n  domain: "hs.example.com; return 200"\n' },
    want: [{ file: "<fleet>/vps.yaml", path: "reverse-proxy.domain", expected: /^a host name for nginx's server_name/, found: '"hs.example.com; return 200", which has characters nginx reads as syntax (space ; { } $ quotes \\)', fix: /^set reverse-proxy\.domain to one host name/ }],
  },
  "nginx server_name as a regular expression": {
    files: { "vps.yaml": vps + 'reverse-proxy:\n  kind: nginx\n  domain: "~^hs"\n' },
    want: [{ file: "<fleet>/vps.yaml", path: "reverse-proxy.domain", expected: /^a host name for nginx's server_name/, found: '"~^hs", a regular expression', fix: /plain host name/ }],
  },
  "Caddy site address with nginx's catch-all": {
    files: { "vps.yaml": vps + 'reverse-proxy:\n  domain: "_"\n' },
    want: [{ file: "<fleet>/vps.yaml", path: "reverse-proxy.domain", expected: /^one host name for Caddy's site address/, found: '"_"', fix: /public DNS name, or reverse-proxy\.kind: nginx/ }],
  },
  "derper hostname that reads as a flag": {
    files: { "vps.yaml": vps.replace("derp:\n", "derp:\n  hostname: -verify-clients\n") },
    want: [{ file: "<fleet>/vps.yaml", path: "derp.hostname", expected: /^the relay's DNS name .* or its IP address$/, found: '"-verify-clients", which reads as a flag', fix: /^set derp\.hostname to the relay's DNS name$/ }],
  },
  "derper hostname with a space": {
    files: { "vps.yaml": vps.replace("derp:\n", "derp:\n  hostname: derp.example.com -dev\n") },
    want: [{ file: "<fleet>/vps.yaml", path: "derp.hostname", expected: /^the relay's DNS name/, found: '"derp.example.com -dev", which has whitespace (U+0020)', fix: /^set derp\.hostname to the relay's DNS name, or "" / }],
  },
  "Environment= name and multi-line value": {
    files: { "laptop.yaml": laptop + '  environment:\n    "BAD KEY": x\n    TS_X: "a\\nExecStartPre=/bin/sh"\n' },
    want: [
      { file: "<fleet>/laptop.yaml", path: "tailscale.environment.BAD KEY", expected: /^an environment variable name/, found: '"BAD KEY"', fix: /^rename the variable/ },
      { file: "<fleet>/laptop.yaml", path: "tailscale.environment.TS_X", expected: /^a value on one line \(systemd reads Environment= line by line\)$/, found: '"a\\nExecStartPre=/bin/sh", which has a line break', fix: /^write the value on one line/ },
    ],
  },
  "extraUpFlags: a typed option's flag, two in one, an unknown one": {
    files: { "laptop.yaml": laptop + '  extraUpFlags: ["--login-server=https://evil.example", "--shields-up --ssh", "--frobnicate", "--advertise-routes=0.0.0.0/0"]\n' },
    want: [
      { file: "<fleet>/laptop.yaml", path: "tailscale.extraUpFlags[0]", expected: /not one meshfleet sets itself$/, found: "--login-server, which is set from tailscale.loginServer", fix: /^remove it and set tailscale\.loginServer instead$/ },
      { file: "<fleet>/laptop.yaml", path: "tailscale.extraUpFlags[1]", expected: /^a `tailscale up` flag/, found: '"--shields-up --ssh"', fix: /^split it: one flag per list element$/ },
      { file: "<fleet>/laptop.yaml", path: "tailscale.extraUpFlags[2]", expected: /^a `tailscale up` flag/, found: "--frobnicate, which tailscale up does not know", fix: /tailscale up --help/ },
      { file: "<fleet>/laptop.yaml", path: "tailscale.extraUpFlags[3]", expected: /not one meshfleet sets itself$/, found: "--advertise-routes, which is set from tailscale.advertiseRoutes (or subnet-router.routes)", fix: /^remove it and set tailscale\.advertiseRoutes instead$/ },
    ],
  },
  "Postgres sslmode in capitals": {
    files: { "vps.yaml": vps + "headscale:\n  database:\n    type: postgres\n    postgres:\n      ssl: Require\n" },
    want: [{ file: "<fleet>/vps.yaml", path: "headscale.database.postgres.ssl", expected: /^a Postgres sslmode: one of disable, allow, prefer, require, verify-ca, verify-full$/, found: '"Require"', fix: /^write it in lowercase: require$/ }],
  },
  "Postgres sslmode unknown": {
    files: { "vps.yaml": vps + "headscale:\n  database:\n    type: postgres\n    postgres:\n      ssl: strict\n" },
    want: [{ file: "<fleet>/vps.yaml", path: "headscale.database.postgres.ssl", expected: /^a Postgres sslmode/, found: '"strict"', fix: /^set headscale\.database\.postgres\.ssl to true \(require\), false \(disable\)/ }],
  },
  "tailscaledPath with a second argument for ExecStart=": {
    files: { "laptop.yaml": laptop + "  tailscaledPath: /usr/sbin/tailscaled --tun=userspace-networking\n" },
    want: [{ file: "<fleet>/laptop.yaml", path: "tailscale.tailscaledPath", expected: /^an absolute path such as \/usr\/sbin\/tailscaled/, found: '"/usr/sbin/tailscaled --tun=userspace-networking", which has characters a unit or config file reads as syntax', fix: /^set tailscale\.tailscaledPath to a path without spaces/ }],
  },
  "derper certDir relative": {
    files: { "vps.yaml": vps.replace("derp:\n", "derp:\n  certDir: certs\n") },
    want: [{ file: "<fleet>/vps.yaml", path: "derp.certDir", expected: /^an absolute path such as \/var\/lib\/derper\/certs/, found: '"certs", a relative path', fix: /^set derp\.certDir to the full path, starting with \/$/ }],
  },
  "nginx certificate path that ends the directive": {
    files: { "vps.yaml": vps + "reverse-proxy:\n  kind: nginx\n  certificate: /etc/ssl/a.pem;include /etc/shadow\n" },
    want: [{ file: "<fleet>/vps.yaml", path: "reverse-proxy.certificate", expected: /^an absolute path/, found: '"/etc/ssl/a.pem;include /etc/shadow", which has characters a unit or config file reads as syntax', fix: /^set reverse-proxy\.certificate to a path without spaces/ }],
  },
  "subnet-router lanInterface that reads as a flag": {
    files: { "router.yaml": BASE["router.yaml"].replace("subnet-router:\n", "subnet-router:\n  lanInterface: --help\n") },
    want: [{ file: "<fleet>/router.yaml", path: "subnet-router.lanInterface", expected: /^a network interface name such as eth0/, found: '"--help", which reads as a flag', fix: /^set subnet-router\.lanInterface to the interface's name as `ip link` shows it$/ }],
  },
  "tailscale loginServer without a scheme": {
    files: { "laptop.yaml": laptop + "  loginServer: hs.example.com\n" },
    want: [{ file: "<fleet>/laptop.yaml", path: "tailscale.loginServer", expected: /^an http:\/\/ or https:\/\/ URL/, found: '"hs.example.com"', fix: /^set tailscale\.loginServer to the coordinator's URL with https:\/\/, or remove it$/ }],
  },
  "headscale trusted proxy that is not a CIDR": {
    files: { "vps.yaml": vps + "headscale:\n  trustedProxies: [127.0.0.1/32, localhost]\n" },
    want: [{ file: "<fleet>/vps.yaml", path: "headscale.trustedProxies[1]", expected: /^a CIDR narrower than \/0/, found: '"localhost"', fix: /^write the proxy's address as a CIDR, e\.g\. 127\.0\.0\.1\/32 \(a name is not accepted\)$/ }],
  },
};

describe("issue 17: free text in module options is checked before anything renders", () => {
  for (const [name, { files, want }] of Object.entries(BAD)) {
    it(name, async () => {
      const r = await evaluate(files);
      expect(r.fleet, "nothing renders").toBeUndefined();
      expect(r.diagnostics).toHaveLength(want.length);
      want.forEach((w, i) => {
        const d = r.diagnostics[i];
        expect(d.severity).toBe("error");
        expect(d.file).toBe(w.file);
        expect(d.path).toBe(w.path);
        expect(d.expected).toMatch(w.expected);
        expect(d.found).toBe(w.found);
        expect(d.fix).toMatch(w.fix);
        expect(d.found.length).toBeLessThanOrEqual(120);
        for (const f of [d.file, d.path, d.expected, d.found, d.fix]) expect(f).not.toMatch(/[\n\r\u0000]/);
      });
    });
  }

  it("valid values pass and render as written", async () => {
    const r = await evaluate({
      "vps.yaml": vps.replace("derp:\n", "derp:\n  hostname: derp.example.com\n") +
        "reverse-proxy:\n  kind: nginx\n  domain: hs.example.com\n" +
        "headscale:\n  database:\n    type: postgres\n    postgres:\n      ssl: verify-full\n",
      "laptop.yaml": laptop + '  extraUpFlags: ["--operator=alice", "--shields-up"]\n  environment:\n    TS_DEBUG_FIREWALL_MODE: nftables\n    TS_NOTE: "50% done \\"ok\\""\n',
    });
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    const vpsHost = r.fleet!.hosts.vps;
    const nginx = vpsHost.files.find((f) => f.path.endsWith("meshfleet-headscale.conf"))!;
    expect(nginx.content).toContain("server_name hs.example.com;");
    const laptopHost = r.fleet!.hosts.laptop;
    expect(laptopHost.tailscale.extraUpFlags).toEqual(["--operator=alice", "--shields-up"]);
    const unit = laptopHost.units.find((u) => u.name === "tailscaled.service")!.content;
    expect(unit).toContain("Environment=TS_DEBUG_FIREWALL_MODE=nftables\n");
    expect(unit).toContain('Environment="TS_NOTE=50%% done \\"ok\\""\n');
    expect(unit).toContain("Environment=TS_NO_LOGS_NO_SUPPORT=true\n");
  });

  it("valid paths, interface names and login server pass and render", async () => {
    const r = await evaluate({
      "vps.yaml": vps + "reverse-proxy:\n  kind: nginx\n  certificate: /etc/ssl/hs/fullchain.pem\n  certificateKey: /etc/ssl/hs/privkey.pem\n",
      "laptop.yaml": laptop + "  tailscaledPath: /opt/meshfleet/tools/tailscale@1.98.10/bin/tailscaled\n  loginServer: https://hs.example.com\n",
      "router.yaml": BASE["router.yaml"].replace("subnet-router:\n", "subnet-router:\n  lanInterface: enp3s0.10\n"),
    });
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(r.fleet!.hosts.vps.files.find((f) => f.path.endsWith("meshfleet-headscale.conf"))!.content).toContain("ssl_certificate /etc/ssl/hs/fullchain.pem;");
    expect(r.fleet!.hosts.laptop.units.find((u) => u.name === "tailscaled.service")!.content).toContain("ExecStart=/opt/meshfleet/tools/tailscale@1.98.10/bin/tailscaled ");
    // UDP GRO forwarding is a unit per interface (issue 18), no longer a best-effort command.
    expect(r.fleet!.hosts.router.units.find((u) => u.name === "meshfleet-udp-gro-enp3s0.10.service")!.content).toContain("ethtool -K enp3s0.10 rx-udp-gro-forwarding on rx-gro-list off");
  });

  it("headscale on docker with Postgres passes: the password goes in a file PGPASSFILE names (test/components/docker-postgres.test.ts)", async () => {
    const r = await evaluate({ "vps.yaml": vps.replace("derp:\n", "derp:\n  image: ghcr.io/example/derper:1.98.10\n") + "runtime: docker\nheadscale:\n  database:\n    type: postgres\n" });
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(r.fleet!.hosts.vps.containers.find((c) => c.name === "headscale")!.env).toEqual({ PGPASSFILE: "/etc/headscale/pgpass" });
  });

  it("headscale on docker with SQLite passes", async () => {
    const r = await evaluate({ "vps.yaml": vps.replace("derp:\n", "derp:\n  image: ghcr.io/example/derper:1.98.10\n") + "runtime: docker\n" });
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    expect(r.fleet!.hosts.vps.containers.map((c) => c.name)).toContain("headscale");
  });

  it("a Caddy ACME e-mail and a derper IP hostname pass", async () => {
    const r = await evaluate({ "vps.yaml": vps.replace("derp:\n", "derp:\n  hostname: 203.0.113.10\n") + "reverse-proxy:\n  acmeEmail: ops+hs@example.com\n" });
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    const caddy = r.fleet!.hosts.vps.files.find((f) => f.path.endsWith("Caddyfile"))!;
    expect(caddy.content).toContain("\temail ops+hs@example.com\n");
  });
});
