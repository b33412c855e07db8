/**
 * The real peers, started by hand in the lab: headscale (with its embedded
 * DERP over plain HTTP) on vps, tailscaled on lxc-tailscale (subnet router for
 * the home LAN) and on laptop (behind its own NAT). The proof: laptop cannot
 * reach nas before the mesh, and reaches it through the approved subnet route
 * after. Needs root and the Go-built tools in ~/.cache/meshfleet/tools.
 *
 * Findings the end-to-end lab reuses (see also lab/hosts/README.md):
 * - Plain-HTTP DERP: headscale's embedded DERP advertises HostName/IPv4 and
 *   DERPPort from server_url (http://203.0.113.10:8080 gives port 8080);
 *   clients need TS_DEBUG_USE_DERP_HTTP=1 to dial it without TLS. Then nodes
 *   reach Running within seconds.
 * - tailscaled runs fine under systemd-run in an nspawn host with
 *   TS_DEBUG_FIREWALL_MODE=nftables and /dev/net/tun bound in.
 */
import { existsSync, readdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NEEDS_ROOT, skipUnlessCi } from "./ci-gate.ts";
import { lab, toolsDir, HOST_TOOLS_DIR } from "../../lab/hosts/index.ts";

const L = lab(9);
const isRoot = process.getuid?.() === 0;

/** Path inside a host of a Go-built tool, from the newest built `<name>@<version>` in the tools cache. */
function hostTool(pkg: string, bin: string): string {
  const dir = toolsDir();
  const versions = existsSync(dir) ? readdirSync(dir).filter((d) => new RegExp(`^${pkg}@\\d+\\.\\d+\\.\\d+$`).test(d)).sort() : [];
  const v = versions.at(-1);
  if (!v || !existsSync(`${dir}/${v}/bin/${bin}`)) {
    throw new Error(`${dir}/${pkg}@<version>/bin/${bin}: not built (expected the lab tools; build them first)`);
  }
  return `${HOST_TOOLS_DIR}/${v}/bin/${bin}`;
}

const VPS = L.address("vps");
const SERVER_URL = `http://${VPS}:8080`;
const HOME_LAN = "192.168.8.0/24";

function headscaleConfig(): string {
  return `server_url: ${SERVER_URL}
listen_addr: 0.0.0.0:8080
metrics_listen_addr: 127.0.0.1:9090
grpc_listen_addr: 127.0.0.1:50443
disable_check_updates: true
noise:
  private_key_path: /var/lib/headscale/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
  allocation: sequential
derp:
  server:
    enabled: true
    region_id: 900
    region_code: lab
    region_name: Lab embedded DERP
    verify_clients: true
    stun_listen_addr: 0.0.0.0:3478
    private_key_path: /var/lib/headscale/derp_server_private.key
    automatically_add_embedded_derp_region: true
    ipv4: ${VPS}
  urls: []
  paths: []
  auto_update_enabled: false
database:
  type: sqlite
  sqlite:
    path: /var/lib/headscale/db.sqlite
    write_ahead_log: true
log:
  level: info
  format: text
policy:
  mode: file
  path: ""
dns:
  magic_dns: false
  override_local_dns: false
  base_domain: tailnet.lab
unix_socket: /var/run/headscale/headscale.sock
unix_socket_permission: "0770"
`;
}

async function ok(host: string, cmd: string, input?: string, timeoutMs = 90_000): Promise<string> {
  const r = await L.sshExec(host, cmd, { input, timeoutMs });
  if (r.code !== 0) throw new Error(`${host}: ${cmd}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Retry `cmd` on `host` until it exits 0 or `timeoutMs` passes; returns whether it did. */
async function eventually(host: string, cmd: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if ((await L.sshExec(host, cmd, { timeoutMs: 15_000 })).code === 0) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

interface HsNode {
  id: string | number;
  name: string;
  given_name?: string;
  approved_routes?: string[];
  available_routes?: string[];
  subnet_routes?: string[];
}

describe.skipIf(skipUnlessCi(!isRoot && NEEDS_ROOT))("real peers in the lab (headscale + tailscaled + subnet route)", () => {
  let HS: string;
  let TS: string;
  let TSD: string;
  const hs = (args: string) => `${HS} -c /etc/headscale/config.yaml ${args}`;
  const ts = (args: string) => `${TS} --socket=/run/tailscale/tailscaled.sock ${args}`;

  beforeAll(async () => {
    HS = hostTool("headscale", "headscale");
    TS = hostTool("tailscale", "tailscale");
    TSD = hostTool("tailscale", "tailscaled");
    await L.down();
    await L.up({ hosts: ["vps", "lxc-tailscale", "nas", "laptop"], log: (l) => process.stderr.write(`[lab9] ${l}\n`) });
  }, 600_000);

  afterAll(async () => {
    await L.down();
  }, 120_000);

  it("laptop cannot reach nas before the mesh", async () => {
    const r = await L.sshExec("laptop", "ping -c1 -W1 192.168.8.10");
    expect(r.code).not.toBe(0);
  }, 30_000);

  it("runs headscale on vps, reachable from laptop through its NAT", async () => {
    await ok("vps", "mkdir -p /etc/headscale /var/lib/headscale && cat > /etc/headscale/config.yaml", headscaleConfig());
    await ok("vps", hs("configtest"));
    await ok("vps", `systemd-run --unit=headscale ${HS} serve -c /etc/headscale/config.yaml`);
    expect(await eventually("vps", "curl -sf http://127.0.0.1:8080/health", 30_000)).toBe(true);
    expect(await ok("laptop", `curl -sf ${SERVER_URL}/health`)).toContain("pass");
  }, 90_000);

  let authKey = "";
  it("makes a user and a pre-auth key with the CLI's JSON output", async () => {
    const user = JSON.parse(await ok("vps", hs("users create lab -o json"))) as { id: number; name: string };
    expect(user.name).toBe("lab");
    const key = JSON.parse(await ok("vps", hs(`preauthkeys create -u ${user.id} --reusable -e 1h -o json`))) as { key: string };
    expect(key.key).toMatch(/^hskey-auth-/);
    authKey = key.key;
  }, 60_000);

  async function join(host: string, upFlags: string): Promise<string> {
    // The key goes over SSH's stdin into a 0600 file, never onto a command line or into a log.
    await ok(host, "umask 077 && mkdir -p /etc/tailscale /var/lib/tailscale && cat > /etc/tailscale/authkey", authKey);
    await ok(
      host,
      [
        "systemd-run --unit=tailscaled",
        "--setenv=TS_DEBUG_FIREWALL_MODE=nftables",
        // Plain-HTTP DERP (the embedded one, on server_url's port).
        "--setenv=TS_DEBUG_USE_DERP_HTTP=1",
        // A lab guard: never talk to Tailscale's own control plane.
        "--setenv=TS_PANIC_IF_HIT_MAIN_CONTROL=1",
        TSD,
        "--state=/var/lib/tailscale/tailscaled.state",
        "--socket=/run/tailscale/tailscaled.sock",
        "--port=41641",
        "--no-logs-no-support",
      ].join(" "),
    );
    expect(await eventually(host, "test -S /run/tailscale/tailscaled.sock", 30_000)).toBe(true);
    const out = await ok(
      host,
      ts(`up --login-server ${SERVER_URL} --auth-key file:/etc/tailscale/authkey --hostname ${host} --accept-dns=false ${upFlags} --timeout 60s --json`),
      undefined,
      90_000,
    );
    return out;
  }

  it("joins lxc-tailscale as the subnet router (Running over plain-HTTP DERP)", async () => {
    await ok("lxc-tailscale", "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
    const out = await join("lxc-tailscale", `--advertise-routes ${HOME_LAN}`);
    expect(JSON.parse(out.slice(out.indexOf("{")))).toMatchObject({ BackendState: "Running" });
  }, 120_000);

  it("approves the advertised route with headscale nodes approve-routes", async () => {
    const nodes = JSON.parse(await ok("vps", hs("nodes list -o json"))) as HsNode[];
    const router = nodes.find((n) => n.given_name === "lxc-tailscale" || n.name === "lxc-tailscale");
    expect(router?.available_routes).toEqual([HOME_LAN]);
    expect(router?.approved_routes ?? []).toEqual([]);
    const approved = JSON.parse(await ok("vps", hs(`nodes approve-routes -i ${router!.id} -r ${HOME_LAN} -o json`))) as HsNode;
    expect(approved.approved_routes).toEqual([HOME_LAN]);
    expect(approved.subnet_routes).toEqual([HOME_LAN]);
  }, 60_000);

  it("joins laptop with --accept-routes and reaches nas through the mesh", async () => {
    const out = await join("laptop", "--accept-routes");
    expect(JSON.parse(out.slice(out.indexOf("{")))).toMatchObject({ BackendState: "Running" });
    expect(await eventually("laptop", "ping -c1 -W1 192.168.8.10", 60_000)).toBe(true);
    // TCP too; nas sees the subnet router's LAN address (tailscale SNATs subnet traffic by default).
    await ok("nas", "rm -f /tmp/got; (timeout 30 nc -lvn 8000 >/tmp/got 2>&1 &)");
    expect(await eventually("laptop", "echo via-mesh | nc -N -w3 192.168.8.10 8000", 20_000)).toBe(true);
    const got = await ok("nas", "sleep 0.3; cat /tmp/got");
    expect(got).toContain("via-mesh");
    expect(got).toContain("Connection received on 192.168.8.205");
  }, 180_000);

  it("reports how laptop reaches the router (direct or DERP)", async () => {
    // Give hole punching time (30 s at most): both sides sit behind masquerading NATs. tailscale ping stops
    // once it gets a direct pong; until then its replies come via DERP.
    for (let i = 0; i < 6; i++) {
      const p = await L.sshExec("laptop", ts("ping -c 10 100.64.0.1"), { timeoutMs: 30_000 });
      if (/via 203\.0\.113\.20:41641/.test(p.stdout)) break;
    }
    const st = JSON.parse(await ok("laptop", ts("status --json"))) as {
      BackendState: string;
      Peer: Record<string, { HostName: string; CurAddr?: string; Relay?: string; PrimaryRoutes?: string[] }>;
    };
    expect(st.BackendState).toBe("Running");
    const router = Object.values(st.Peer).find((p) => p.HostName === "lxc-tailscale");
    expect(router?.PrimaryRoutes).toEqual([HOME_LAN]);
    const path = router?.CurAddr ? `direct ${router.CurAddr}` : `DERP ${router?.Relay}`;
    process.stderr.write(`[lab9] laptop -> lxc-tailscale: ${path}\n`);
    // Direct is what the NATs allow (endpoint-independent masquerade, inbound dropped unless asked for).
    expect(router?.CurAddr).toBe("203.0.113.20:41641");
  }, 60_000);
});
