/**
 * `meshfleet import` on bad and unusual input (no headscale needed; the real
 * headscale import is import.real.test.ts): malformed HuJSON named by file,
 * line and column; an unknown config key reported as not mapped; a non-empty
 * --out refused with nothing written; usage errors (exit 2); secrets named,
 * never copied; legacy keys; and check refusing an adopting coordinator that
 * would write over, or not find, the existing keys and database.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { stringify } from "yaml";
import { afterAll, describe, expect, it } from "vitest";
import { dirSource, mapImport, parseTarget, type ImportResult } from "../../cli/commands/import.ts";
import { evaluateFleet } from "../../core/eval.ts";
import { REGISTRY } from "../../modules/index.ts";

const ROOT = path.resolve(import.meta.dirname, "../..");
const tmp = mkdtempSync(path.join(tmpdir(), "mf-import-unit-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;

const BASE = `server_url: https://hs.example.org
listen_addr: 127.0.0.1:8080
noise:
  private_key_path: /var/lib/headscale/noise_private.key
prefixes:
  v4: 100.64.0.0/10
  v6: fd7a:115c:a1e0::/48
database:
  type: sqlite
  sqlite:
    path: /var/lib/headscale/db.sqlite
derp:
  urls: [https://controlplane.tailscale.com/derpmap/default]
dns:
  magic_dns: true
  base_domain: ts.example.net
  nameservers:
    global: [1.1.1.1]
policy:
  mode: file
  path: /etc/headscale/policy.hujson
`;
const POLICY = '// p\n{"groups": {"group:admins": ["alice@",],}, "acls": [{"action": "accept", "src": ["group:admins"], "dst": ["*:*"],},],}\n';

/** config.yaml's oidc section, for a headscale whose users include OIDC logins. */
const OIDC_CONFIG = "oidc:\n  issuer: https://id.example.com/\n  client_id: headscale\n  client_secret_path: /etc/headscale/oidc_secret\n";

/** A --from-dir folder: config.yaml, policy.hujson, users.json, nodes.json. */
function copyDir(o: { config?: string; policy?: string | null; users?: string | null; nodes?: string | null; extra?: Record<string, string> } = {}): string {
  const d = path.join(tmp, `copy${n++}`);
  mkdirSync(d);
  writeFileSync(path.join(d, "config.yaml"), o.config ?? BASE);
  if (o.policy !== null) writeFileSync(path.join(d, "policy.hujson"), o.policy ?? POLICY);
  if (o.users !== null) writeFileSync(path.join(d, "users.json"), o.users ?? '[{"id": 1, "name": "alice"}]');
  if (o.nodes !== null) writeFileSync(path.join(d, "nodes.json"), o.nodes ?? "[]");
  for (const [f, t] of Object.entries(o.extra ?? {})) writeFileSync(path.join(d, f), t);
  return d;
}

const imp = (dir: string): ImportResult => mapImport(dirSource(dir), { hostName: "coordinator" });
const byKey = (r: ImportResult, k: string) => r.items.filter((i) => i.key === k);

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin/meshfleet.mjs"), ...args], { encoding: "utf8", cwd: ROOT, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("meshfleet import: bad input", () => {
  it("names the policy file, line and column of malformed HuJSON, and writes nothing", () => {
    const d = copyDir({ policy: '// p\n{\n  "groups": {"group:admins": ["alice@"]}\n  "acls": [],\n}\n' });
    const out = path.join(tmp, "out-bad-hujson");
    const r = cli(["import", "--from-dir", d, "--out", out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${path.join(d, "policy.hujson")}: line 4, column 3: expected HuJSON: ',' or '}' after the value of "groups", found "\\"". Fix: fix the file (headscale itself refuses it: \`headscale policy check -f FILE\`) and import again`);
    expect(r.stderr).toContain("nothing was written");
    expect(existsSync(out)).toBe(false);
  }, 120_000);

  it("reports an unknown config key as not mapped (and still writes the fleet)", () => {
    const d = copyDir({ config: `${BASE}frobnicate: {level: 3}\nlisten_adr: 0.0.0.0:8080\n` });
    const r = imp(d);
    expect(r.problems).toEqual([]);
    expect(byKey(r, "frobnicate.level")).toEqual([expect.objectContaining({ kind: "unmapped", value: "3", note: expect.stringContaining("not a headscale 0.29 setting") })]);
    expect(byKey(r, "listen_adr")).toEqual([expect.objectContaining({ kind: "unmapped" })]);
    expect(JSON.stringify(r.host)).not.toContain("frobnicate");
    const out = path.join(tmp, "out-unknown");
    const c = cli(["import", "--from-dir", d, "--out", out, "--json"]);
    expect(c.status, c.stderr).toBe(0);
    const j = JSON.parse(c.stdout);
    expect(j.items.filter((i: { kind: string }) => i.kind === "unmapped").map((i: { key: string }) => i.key).sort()).toEqual(["frobnicate.level", "listen_adr"]);
    expect(j.check.ok).toBe(true);
    expect(readFileSync(path.join(out, "IMPORT.md"), "utf8")).toMatch(/## Not mapped \(2\)[\s\S]*`frobnicate\.level` = 3 — not a headscale 0\.29 setting/);
  }, 120_000);

  it("refuses a non-empty --out without --force, touching nothing", () => {
    const d = copyDir();
    const out = path.join(tmp, "out-busy");
    mkdirSync(out);
    writeFileSync(path.join(out, "fleet.yaml"), "mine\n");
    const r = cli(["import", "--from-dir", d, "--out", out]);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`meshfleet import: --out ${out}: not empty (fleet.yaml); nothing was written. Fix: choose an empty or new folder, or add --force to replace only fleet.yaml, policy.hujson, the host file, nodes.json and IMPORT.md there (nothing else is deleted; a policy.hujson an earlier import wrote is removed when the policy now fits fleet.yaml)\n`);
    expect(readdirSync(out)).toEqual(["fleet.yaml"]);
    expect(readFileSync(path.join(out, "fleet.yaml"), "utf8")).toBe("mine\n");
    // --force replaces import's own files and leaves the rest.
    writeFileSync(path.join(out, "notes.txt"), "keep\n");
    const f = cli(["import", "--from-dir", d, "--out", out, "--force"]);
    expect(f.status, f.stderr).toBe(0);
    expect(readdirSync(out).sort()).toEqual(["IMPORT.md", "coordinator.yaml", "fleet.yaml", "nodes.json", "notes.txt"]);
    expect(readFileSync(path.join(out, "notes.txt"), "utf8")).toBe("keep\n");
  }, 120_000);

  it.each([
    [[], "where is the headscale? --from [user@]HOST[:PORT] or --from-dir DIR"],
    [["--from", "a", "--from-dir", "b", "--out", "x"], "give --from or --from-dir, not both"],
    [["--from-dir", "b"], "where to write the fleet? --out DIR or --stack S (hosts/<S>)"],
    [["--from-dir", "b", "--out", "x", "--name", "Bad_Name"], '--name "Bad_Name": a host name (lowercase letters, digits, -)'],
    [["--from", "root@host:99999", "--out", "x"], "--from root@host:99999: port 99999 is not 1-65535"],
  ])("usage error %j: exit 2", (args, msg) => {
    const r = cli(["import", ...args]);
    expect(r.status).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe(`meshfleet import: ${msg}`);
  }, 120_000);

  it("refuses --from without a pinned host key before connecting, naming the fix", () => {
    const r = cli(["import", "--from", "root@203.0.113.9:2222", "--out", path.join(tmp, "never")]);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe("meshfleet: --from root@203.0.113.9:2222: no pinned SSH host key for [203.0.113.9]:2222, so nothing is sent to it. Fix: ssh-keyscan -p 2222 203.0.113.9 >> known_hosts, compare `ssh-keygen -lf known_hosts` with the host's own fingerprint, then add --known-hosts known_hosts");
    expect(existsSync(path.join(tmp, "never"))).toBe(false);
  }, 120_000);

  it.each([
    ["alice@vps.example.com", { user: "alice", host: "vps.example.com", port: 22 }],
    ["203.0.113.9:2222", { user: "root", host: "203.0.113.9", port: 2222 }],
    ["root@[2001:db8::1]:22", { user: "root", host: "2001:db8::1", port: 22 }],
  ])("reads --from %s", (s, want) => {
    expect(parseTarget(s)).toEqual(want);
  });

  it("names what is missing: users.json, nodes.json, the policy file, a database policy", () => {
    expect(imp(copyDir({ users: null, nodes: null })).problems.map((p) => `${p.path}: ${p.fix}`)).toEqual([
      "users: save it beside config.yaml: headscale users list -o json > users.json",
      "nodes: save it beside config.yaml: headscale nodes list -o json > nodes.json",
    ]);
    const d = copyDir({ policy: null });
    expect(imp(d).problems.map((p) => `${p.path}: ${p.found}: ${p.fix}`)).toEqual([
      "policy.path: /etc/headscale/policy.hujson: not found in the copy: copy /etc/headscale/policy.hujson into the --from-dir folder (policy.hujson)",
    ]);
    const db = copyDir({ config: BASE.replace("mode: file", "mode: database"), policy: null });
    expect(imp(db).problems.map((p) => p.fix)).toEqual(["save it with `headscale policy get > policy.hujson` next to config.yaml (--from-dir), or use --from"]);
    expect(imp(copyDir({ users: '{"error": "connecting to headscale: context deadline exceeded"}' })).problems.map((p) => p.found)).toEqual([
      'headscale\'s error: "connecting to headscale: context deadline exceeded"',
    ]);
    expect(imp(copyDir({ config: "server_url: [unclosed\n" })).problems[0]).toMatchObject({ path: "line 2, column 1", expected: "YAML" });
  });

  it("names secrets and never copies them", () => {
    const cfg = BASE.replace("type: sqlite\n  sqlite:\n    path: /var/lib/headscale/db.sqlite", "type: postgres\n  postgres:\n    host: db.internal\n    port: 5432\n    name: hs\n    user: hs\n    pass: PgS3cret-value\n    ssl: require")
      + "oidc:\n  enabled: true\n  issuer: https://id.example.org\n  client_id: headscale\n  client_secret: OidcS3cret-value\n  allowed_domains: [example.org]\n";
    const d = copyDir({ config: cfg });
    const out = path.join(tmp, "out-secrets");
    const r = cli(["import", "--from-dir", d, "--out", out]);
    const everything = r.stdout + r.stderr + readdirSync(out).map((f) => readFileSync(path.join(out, f), "utf8")).join("\n");
    expect(everything).not.toContain("PgS3cret-value");
    expect(everything).not.toContain("OidcS3cret-value");
    expect(r.stdout).toContain("secret: database.postgres.pass: not copied. pulumi config set --secret meshfleet:headscalePostgresPassword");
    expect(r.stdout).toContain("secret: oidc.client_secret: not copied. pulumi config set --secret meshfleet:headscaleOidcClientSecret");
    const host = readFileSync(path.join(out, "coordinator.yaml"), "utf8");
    expect(host).toContain("host: db.internal");
    expect(host).toContain("clientId: headscale");
    expect(r.status, r.stderr).toBe(0);
  }, 120_000);

  it("a user an OIDC login made goes to oidcUsers by e-mail, and the policy names it so; the written fleet passes check", () => {
    const users = JSON.stringify([{ id: 1, name: "alice", provider: "" }, { id: 2, name: "carol", email: "carol@example.com", provider: "oidc", provider_id: "https://id.example.com/2" }]);
    const policy = '{"groups": {"group:admins": ["alice@", "carol@"]}, "acls": [{"action": "accept", "src": ["group:admins"], "dst": ["*:*"]}, {"action": "accept", "src": ["carol@"], "dst": ["alice@:22"]}]}\n';
    const d = copyDir({ users, policy, config: BASE + OIDC_CONFIG });
    const r = imp(d);
    expect(r.problems).toEqual([]);
    expect(r.fleet.users).toEqual(["alice"]);
    expect(r.fleet.oidcUsers).toEqual(["carol@example.com"]);
    const p = r.fleet.policy as { groups: Record<string, string[]>; acls: { src: string[]; dst: string[] }[] };
    expect(p.groups["group:admins"]).toEqual(["alice@", "carol@example.com"]);
    expect(p.acls[1]).toEqual({ action: "accept", src: ["carol@example.com"], dst: ["alice@:22"] });
    expect(byKey(r, "policy").find((i) => i.kind === "changed")).toMatchObject({ value: "carol@ -> carol@example.com" });
    expect(byKey(r, "users").find((i) => i.to === "fleet.yaml users")).toMatchObject({ note: expect.stringMatching(/^1 of 1 headscale's own;/) });
    const out = path.join(tmp, "out-oidc-users");
    const c = cli(["import", "--from-dir", d, "--out", out, "--json"]);
    expect(c.status, c.stderr).toBe(0);
    expect(JSON.parse(c.stdout).check.ok, c.stdout).toBe(true);
  }, 120_000);

  it("OIDC users: only alias positions are rewritten (not ssh login names, hosts or grants' app), and a name two users share is left and said", () => {
    const users = JSON.stringify([
      { id: 1, name: "alice" },
      { id: 2, name: "carol", email: "carol@example.com", provider: "oidc" },
      { id: 3, name: "dave", email: "dave@example.com", provider: "oidc" },
      { id: 4, name: "dave" },
    ]);
    const policy = JSON.stringify({
      hosts: { carol: "10.0.0.1/32" },
      tagOwners: { "tag:x": ["carol@"] },
      acls: [{ action: "accept", src: ["carol@", "dave@"], dst: ["carol@:22"] }],
      grants: [{ src: ["carol@"], dst: ["tag:x"], app: { "example.com/cap": [{ owner: "carol@" }] } }],
      ssh: [{ action: "accept", src: ["carol@"], dst: ["autogroup:self"], users: ["autogroup:nonroot"] }],
      autoApprovers: { routes: { "10.1.0.0/24": ["carol@"] }, exitNode: ["carol@"] },
      tests: [{ src: "carol@", accept: ["carol@:22"] }],
    });
    const r = imp(copyDir({ users, policy, config: BASE + OIDC_CONFIG }));
    expect(r.problems).toEqual([]);
    expect(r.fleet.users).toEqual(["alice", "dave"]);
    expect(r.fleet.oidcUsers).toEqual(["carol@example.com", "dave@example.com"]);
    const p = r.fleet.policy as Record<string, unknown>;
    expect(p).toEqual({
      hosts: { carol: "10.0.0.1/32" },
      tagOwners: { "tag:x": ["carol@example.com"] },
      acls: [{ action: "accept", src: ["carol@example.com", "dave@"], dst: ["carol@example.com:22"] }],
      grants: [{ src: ["carol@example.com"], dst: ["tag:x"], app: { "example.com/cap": [{ owner: "carol@" }] } }],
      ssh: [{ action: "accept", src: ["carol@example.com"], dst: ["autogroup:self"], users: ["autogroup:nonroot"] }],
      autoApprovers: { routes: { "10.1.0.0/24": ["carol@example.com"] }, exitNode: ["carol@example.com"] },
      tests: [{ src: "carol@example.com", accept: ["carol@example.com:22"] }],
    });
    expect(byKey(r, "policy").find((i) => i.kind === "unmapped")).toMatchObject({ value: "dave@", note: expect.stringContaining("2 headscale users are named dave") });
  });

  it("maps legacy keys: randomize_client_port into the policy, dns_config named as refused", () => {
    const r = imp(copyDir({ config: `${BASE}randomize_client_port: true\ndns_config:\n  magic_dns: true\nephemeral_node_inactivity_timeout: 40m\n` }));
    expect((r.fleet.policy as Record<string, unknown>).randomizeClientPort).toBe(true);
    expect(byKey(r, "dns_config.magic_dns")).toEqual([expect.objectContaining({ kind: "unmapped", note: expect.stringContaining("headscale 0.29 refuses it") })]);
    expect((r.host.headscale as Record<string, unknown>).ephemeralInactivityTimeout).toBe("40m");
  });

  it.each([
    ["an empty policy file", { policy: "{}\n" }],
    ["a policy with groups only", { policy: '{"groups": {"group:a": ["alice@"]}}' }],
    ["no policy file at all", { config: BASE.replace("  path: /etc/headscale/policy.hujson\n", ""), policy: null }],
  ])("writes headscale's allow-all (%s) as one explicit rule, which check accepts", async (_, o) => {
    const d = copyDir(o);
    const r = imp(d);
    expect(r.problems).toEqual([]);
    expect((r.fleet.policy as Record<string, unknown>).acls).toEqual([{ action: "accept", src: ["*"], dst: ["*:*"] }]);
    expect(byKey(r, "policy.acls")).toEqual([expect.objectContaining({ kind: "changed", value: "no acls and no grants (allow-all)" })]);
    const f = path.join(tmp, `fleet${n++}`);
    mkdirSync(f);
    writeFileSync(path.join(f, "fleet.yaml"), stringify(r.fleet));
    writeFileSync(path.join(f, "coordinator.yaml"), stringify(r.host));
    const ev = await evaluateFleet(REGISTRY, f, "t");
    expect(ev.diagnostics.filter((x) => x.severity === "error")).toEqual([]);
  });

  it("moves a headscale that did TLS itself behind the reverse proxy, and says so", () => {
    const r = imp(copyDir({ config: BASE.replace("listen_addr: 127.0.0.1:8080", "listen_addr: 0.0.0.0:443") + "tls_letsencrypt_hostname: hs.example.org\nacme_email: ops@example.org\n" }));
    expect(r.host["reverse-proxy"]).toEqual({ acmeEmail: "ops@example.org" });
    expect((r.host.headscale as Record<string, unknown>).listenAddr).toBe("127.0.0.1:8080");
    expect(r.host.imports).toEqual(["coordinator", "reverse-proxy"]);
    expect(byKey(r, "listen_addr")[0]!.note).toContain("headscale did TLS itself before");
    expect(byKey(r, "tls_letsencrypt_hostname")[0]).toMatchObject({ kind: "changed", note: expect.stringContaining("the reverse proxy gets the certificate") });
  });
});

describe("check refuses an adopting coordinator that would lose the existing state", () => {
  async function checkWith(host: Record<string, unknown>, fleetExtra: Record<string, unknown> = {}) {
    const d = path.join(tmp, `fleet${n++}`);
    mkdirSync(d);
    writeFileSync(path.join(d, "fleet.yaml"), stringify({ coordinator: { host: "vps", serverUrl: "https://hs.example.org" }, users: ["alice"], policy: { acls: [{ action: "accept", src: ["alice@"], dst: ["*:*"] }] }, derp: { publicUrls: ["https://controlplane.tailscale.com/derpmap/default"] }, ...fleetExtra }));
    writeFileSync(path.join(d, "vps.yaml"), stringify({ imports: ["coordinator", "reverse-proxy"], address: "203.0.113.10", ...host }));
    const r = await evaluateFleet(REGISTRY, d, "t");
    return r.diagnostics.filter((x) => x.severity === "error").map((x) => `${x.path}: expected ${x.expected}, found ${x.found}. Fix: ${x.fix}`);
  }

  it("accepts the adopted defaults and writes no key file", async () => {
    expect(await checkWith({ headscale: { adopt: { enable: true } } })).toEqual([]);
  });

  it("refuses the docker runtime (its state is in a volume, not where the old files are)", async () => {
    const errs = await checkWith({ runtime: "docker", headscale: { adopt: { enable: true } } });
    expect(errs).toEqual([
      "headscale.adopt.enable: expected the systemd runtime (headscale reads the existing files where they are), found runtime: docker, whose headscale keeps /var/lib/headscale in the headscale-data volume: the existing key and database would not be there and headscale would start empty. Fix: set runtime: systemd in this host file (or copy the state into the volume by hand and set headscale.adopt.enable: false)",
    ]);
  });

  it("refuses a key path the deploy writes over, a key under /root, a database outside the state folder, and extraSettings that point elsewhere", async () => {
    const errs = await checkWith({
      headscale: {
        adopt: { enable: true, noisePrivateKeyPath: "/etc/headscale/config.yaml", derpPrivateKeyPath: "/root/derp.key" },
        database: { sqlitePath: "/srv/headscale/db.sqlite" },
        extraSettings: { noise: { private_key_path: "/tmp/other.key" } },
      },
    });
    expect(errs).toMatchSnapshot();
  });

  it("refuses adopting the Noise key where meshfleet writes its own DERP key", async () => {
    const errs = await checkWith({ imports: ["coordinator", "reverse-proxy", "derp-relay"], derp: { mode: "embedded" }, headscale: { adopt: { enable: true, noisePrivateKeyPath: "/var/lib/headscale/derp_server_private.key" } } });
    expect(errs).toEqual([
      "headscale.adopt.noisePrivateKeyPath: expected an existing file the deploy leaves alone, found /var/lib/headscale/derp_server_private.key, which the deploy writes over (/var/lib/headscale/derp_server_private.key). Fix: move the existing file (with headscale stopped) and set headscale.adopt.noisePrivateKeyPath to where it now is",
    ]);
  });

  it("refuses the same file for the Noise and the DERP key", async () => {
    const errs = await checkWith({ headscale: { adopt: { enable: true, noisePrivateKeyPath: "/var/lib/headscale/k", derpPrivateKeyPath: "/var/lib/headscale/k" } } });
    expect(errs).toEqual([
      'headscale.adopt.derpPrivateKeyPath: expected a DERP key file other than the Noise key (headscale refuses the same key for both), found /var/lib/headscale/k. Fix: set headscale.adopt.derpPrivateKeyPath: "" (meshfleet then writes a DERP key of its own)',
    ]);
  });
});
