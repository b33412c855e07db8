/**
 * Issue 15 item 4's drill: a lab node logged in through a real OpenID
 * Provider, on the deployed standard lab, which it puts back after.
 *
 * The provider is zitadel/oidc's example OpenID Provider (the pinned tool
 * `oidc-provider`, lab/tools/oidc-provider), run in the lab's internet
 * namespace as an identity provider on the internet would be, over https with
 * a CA made for the run and trusted on the VPS. The fleet is deployed with
 * headscale.oidc set through the typed options and the client secret through
 * the stack secret meshfleet:headscaleOidcClientSecret.
 *
 *   - headscale runs with the rendered oidc section (only_start_if_oidc_is_available:
 *     it reached and trusted the issuer at start); the secret is in a 0600
 *     file holding exactly the stack secret and nowhere in config.yaml;
 *     `headscale configtest` accepts the config;
 *   - a fresh tailscaled on the laptop (userspace networking: the laptop's own
 *     tailscale0 and routes are left alone) runs `tailscale login` with no
 *     auth key; a scripted browser in the internet namespace
 *     (test/lab/oidc-browser.ts) follows its auth URL: headscale -> the
 *     provider's login form -> headscale's callback -> the "register this
 *     node" confirmation;
 *       - a user outside allowedUsers, and one outside allowedDomains, are
 *         refused by headscale (401, its reason in the journal) and no node or
 *         user appears;
 *       - the allowed user's login registers the node as that OIDC user
 *         (provider oidc, her e-mail, register method OIDC), with an address,
 *         and it pings the VPS over the tailnet;
 *       - the fleet names her in its policy by e-mail (fleet.yaml oidcUsers):
 *         that rule alone lets her node reach the VPS's sshd over the tailnet
 *         (tag:server), and nothing lets it reach the subnet router's;
 *   - then the fleet as it was: the drill's node and users deleted from
 *     headscale, its tailscaled and the provider stopped, the CA taken off
 *     the VPS, the stack config back byte for byte (the client secret gone
 *     with it) and the VPS deployed back.
 *
 * (`tailscale ping` is disco, which no policy filters: the sshd banners over
 * `tailscale nc` are what show the rule at work.)
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { parse } from "yaml";
import { HOST_TOOLS_DIR } from "../../hosts/index.ts";
import { labTopology } from "../../topology.ts";
import { loadVersions } from "../../tools/versions.ts";
import { toolStatus } from "../../tools/status.ts";
import { hsCli } from "../coordinator-runtime.ts";
import { labDeploy } from "../deploy-checks.ts";
import { labFleetDir } from "../docker-variant.ts";
import { SERVER_URL } from "../fleet.ts";
import { e2ePaths, STACK } from "../paths.ts";
import { labPulumiEnv, REPO, runPulumi } from "../pulumi.ts";
import { hostOn, must, runDrill, sleep, type DrillResult } from "./drill.ts";

/** The internet namespace's own address on the lab's public bridge: the provider listens there. */
export const ISSUER_IP = "203.0.113.1";
export const ISSUER = `https://${ISSUER_IP}:9443/`;
const CLIENT_ID = "headscale";
export const OIDC_SECRET_KEY = "meshfleet:headscaleOidcClientSecret";
export const OIDC_NODE = "oidc-laptop";
const CA_ON_VPS = "/usr/local/share/ca-certificates/meshfleet-lab-oidc-drill.crt";
// The drill's own tailscaled on the laptop.
const SOCK = "/run/mf-oidc/tailscaled.sock";

const hostTool = (tool: string, bin: string) => `${HOST_TOOLS_DIR}/${tool}@${loadVersions().tools.find((t) => t.name === tool)!.version}/bin/${bin}`;

/** The drill's users: carol may log in; mallory is in allowedDomains but not allowedUsers; eve is outside allowedDomains. */
export const OIDC_USERS = { carol: "carol@lab.test", mallory: "mallory@lab.test", eve: "eve@evil.test" } as const;
type User = keyof typeof OIDC_USERS;

/** vps.yaml's typed OIDC options for the drill. */
export const OIDC_OPTIONS = [
  "  oidc:",
  "    enable: true",
  `    issuer: ${ISSUER}`,
  `    clientId: ${CLIENT_ID}`,
  "    allowedDomains: [lab.test]",
  `    allowedUsers: [${OIDC_USERS.carol}]`,
].join("\n");
// The drill's rule names carol by e-mail, the token headscale matches an OIDC login's user by;
// fleet.yaml's oidcUsers lists her, so meshfleet's check takes it and meshfleet does not create her.
const POLICY_EDIT = ["    - action: accept", `      src: [${OIDC_USERS.carol}]`, '      dst: ["tag:server:*"]'].join("\n");

/** A fleet folder's file with the drill's OIDC options (vps.yaml) and policy rule (fleet.yaml). Pure; throws when the block it edits is gone. */
export function withOidc(file: string, text: string): string {
  if (file === "vps.yaml") {
    if (!/^headscale:\n/m.test(text)) throw new Error("vps.yaml has no headscale: section to add oidc to");
    return text.replace(/^headscale:\n/m, `headscale:\n${OIDC_OPTIONS}\n`);
  }
  if (file === "fleet.yaml") {
    if (!/^ {2}acls:\n/m.test(text)) throw new Error("fleet.yaml has no policy.acls to add the drill's rule to");
    if (!/^users: .*\n/m.test(text) || /^oidcUsers:/m.test(text)) throw new Error("fleet.yaml has no users: line to put oidcUsers after, or has oidcUsers already");
    return text.replace(/^ {2}acls:\n/m, `  acls:\n${POLICY_EDIT}\n`).replace(/^users: .*\n/m, (l) => `${l}oidcUsers: [${OIDC_USERS.carol}]\n`);
  }
  return text;
}

export interface OidcDrillOptions {
  instance: number;
  /** headscale's CLI on the VPS, as a command prefix. @default hsCli() */
  hs?: string;
  /**
   * The client secret the provider is given. @default the stack's. The
   * drill's own test gives it another one, as a wrong client secret in the
   * stack would be, to show that headscale's logins are then refused and the
   * drill fails.
   */
  providerSecret?: string;
  log?: (line: string) => void;
}

interface BrowserResult {
  hops: { method: string; url: string; status: number }[];
  status: number;
  text: string;
  submitted: string[];
}
type HsNode = { id: string | number; given_name: string; ip_addresses: string[]; register_method?: string | number; user?: { id?: string | number; name?: string; email?: string; provider?: string } };
type Status = { BackendState: string; AuthURL?: string; TailscaleIPs?: string[] };

export function oidcDrill(o: OidcDrillOptions): Promise<DrillResult> {
  const { instance } = o;
  const hs = o.hs ?? hsCli();
  const on = hostOn(instance);
  const say = o.log ?? (() => {});
  const p = e2ePaths(instance);
  const inet = `${labTopology(instance).prefix}inet`;
  const work = join(p.dir, "oidc");
  const ts = `${hostTool("tailscale", "tailscale")} --socket ${SOCK}`;
  const passwords = Object.fromEntries(Object.keys(OIDC_USERS).map((u) => [u, randomBytes(12).toString("hex")])) as Record<User, string>;
  const clientSecret = randomBytes(24).toString("base64url");
  const nodes = async () => (JSON.parse((await on("vps", `${hs} nodes list -o json`)) || "null") ?? []) as HsNode[];
  const hsUsers = async () => (JSON.parse((await on("vps", `${hs} users list -o json`)) || "null") ?? []) as { id?: string | number; name?: string; email?: string }[];
  const status = async () => JSON.parse(await on("laptop", `${ts} status --json`)) as Status;
  let provider: ChildProcess | undefined;
  const providerLog = join(work, "provider.log");
  const bundle = join(work, "vps-roots.pem");

  /** The browser, run in the internet namespace, trusting what the VPS trusts. */
  const browse = async (start: string, user: User): Promise<BrowserResult> => {
    const r = await execa("ip", ["netns", "exec", inet, process.execPath, "--import", "tsx", join(REPO, "test", "lab", "oidc-browser.ts")], {
      cwd: REPO,
      input: JSON.stringify({ start, username: OIDC_USERS[user], password: passwords[user] }),
      env: { ...process.env, NODE_EXTRA_CA_CERTS: bundle },
      reject: false,
      timeout: 120_000,
    });
    if (r.exitCode !== 0) throw new Error(`the browser as ${user}: exit ${r.exitCode}: ${String(r.stderr).slice(-400)}; provider log: ${readFileSync(providerLog, "utf8").split("\n").slice(-8).join(" | ")}`);
    return JSON.parse(String(r.stdout)) as BrowserResult;
  };
  const hopsOf = (r: BrowserResult) => r.hops.map((h) => `${h.method} ${h.url} ${h.status}`).join(" -> ");

  return runDrill(async (t) => {
    const bin = toolStatus(loadVersions().tools.find((x) => x.name === "oidc-provider")!).binaries[0]?.path;
    must(bin && existsSync(bin), "the pinned tool oidc-provider is not built (run `meshfleet tools build --only oidc-provider`)");
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true, mode: 0o700 });
    const cfgBefore = readFileSync(p.stackConfig, "utf8");
    const current = ((parse(cfgBefore) as { config?: Record<string, unknown> } | null)?.config?.["meshfleet:hostsDir"] as string | undefined) ?? labFleetDir(instance);
    const edited = join(p.dir, "hosts-drill-oidc");
    const before = (await nodes()).map((n) => n.given_name).sort();
    let body: string | undefined;
    let failed: unknown;
    try {
      body = await drive();
    } catch (e) {
      failed = e;
    }
    // The fleet as it was, also after a failed step; each part of the clean-up is tried.
    const problems: string[] = [];
    const tb = Date.now();
    const tryTo = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        problems.push(`${what}: ${(e as Error).message.slice(0, 300)}`);
      }
    };
    await tryTo("stopping the drill's tailscaled", () => on("laptop", "systemctl stop mf-oidc-login.service mf-oidc-tailscaled.service 2>/dev/null; rm -rf /var/lib/mf-oidc /run/mf-oidc; true"));
    await tryTo("deleting the drill's node", async () => {
      for (const n of (await nodes()).filter((x) => x.given_name === OIDC_NODE)) await on("vps", `${hs} nodes delete -i ${n.id} --force`);
    });
    await tryTo("deleting the drill's users", async () => {
      const mine = new Set<string>(Object.values(OIDC_USERS));
      for (const u of (await hsUsers()).filter((x) => mine.has(x.email ?? ""))) await on("vps", `${hs} users destroy --identifier ${u.id} --force`);
    });
    if (provider && provider.exitCode === null) {
      provider.kill("SIGTERM");
      await new Promise((r) => provider!.once("exit", r));
    }
    await tryTo("taking the drill's CA off the VPS", () => on("vps", `rm -f ${CA_ON_VPS} && update-ca-certificates --fresh >/dev/null`, { timeoutMs: 60_000 }));
    writeFileSync(p.stackConfig, cfgBefore);
    rmSync(edited, { recursive: true, force: true });
    const back = await labDeploy(instance, { verb: "up", on: ["vps"] });
    t.deployBackMs = Date.now() - tb;
    if (!back.ok) problems.push(`deploying the fleet back (no oidc) failed: ${back.errors.join("; ")}`);
    const after = (await nodes().catch(() => [] as HsNode[])).map((n) => n.given_name).sort();
    if (after.join() !== before.join()) problems.push(`headscale's nodes after the drill: ${after.join(", ")}; before: ${before.join(", ")}`);
    // The client secret, the users' passwords and the CA key of this run.
    rmSync(work, { recursive: true, force: true });
    const put = problems.length ? `; putting the fleet back: ${problems.join("; ")}` : "";
    if (failed) throw new Error(`${(failed as Error).message}${put}`);
    must(!put, put.slice(2));
    return `${body}; the fleet put back in ${(t.deployBackMs / 1000).toFixed(1)}s`;

    async function drive(): Promise<string> {
      // 1. The provider's CA and certificate, its users, the client secret.
      const certs = await makeCerts(work);
      writeFileSync(join(work, "provider-secret"), o.providerSecret ?? clientSecret, { mode: 0o600 });
      const userFile = Object.fromEntries(
        (Object.keys(OIDC_USERS) as User[]).map((id) => [id, { ID: id, Username: OIDC_USERS[id], Password: passwords[id], FirstName: id, LastName: "Lab", Email: OIDC_USERS[id], EmailVerified: true, PreferredLanguage: "en" }]),
      );
      writeFileSync(join(work, "users.json"), JSON.stringify(userFile), { mode: 0o600 });

      // 2. The fleet with the typed oidc options; the client secret through the stack's secret config, on stdin.
      rmSync(edited, { recursive: true, force: true });
      cpSync(current, edited, { recursive: true });
      for (const f of ["vps.yaml", "fleet.yaml"]) writeFileSync(join(edited, f), withOidc(f, readFileSync(join(edited, f), "utf8")));
      const env = labPulumiEnv(instance);
      const set = await runPulumi(["config", "set", "--config-file", p.stackConfig, "--stack", STACK, "meshfleet:hostsDir", edited], { env });
      must(set.code === 0, `pulumi config set meshfleet:hostsDir: ${set.stderr.trim()}`);
      const sec = await runPulumi(["config", "set", "--secret", "--config-file", p.stackConfig, "--stack", STACK, OIDC_SECRET_KEY], { env, input: clientSecret });
      must(sec.code === 0, `pulumi config set --secret ${OIDC_SECRET_KEY}: ${sec.stderr.trim()}`);

      // 3. The provider, before headscale restarts (it waits for the issuer at start); the VPS trusts the drill's CA.
      const log = openSync(providerLog, "w");
      provider = spawn("ip", ["netns", "exec", inet, bin!, "-issuer", ISSUER, "-listen", `${ISSUER_IP}:9443`, "-tls-cert", certs.cert, "-tls-key", certs.key,
        "-client-id", CLIENT_ID, "-client-secret-file", join(work, "provider-secret"), "-redirect-uri", `${SERVER_URL}/oidc/callback`, "-users-file", join(work, "users.json")],
        { stdio: ["ignore", log, log] });
      closeSync(log);
      await on("vps", `cat > ${CA_ON_VPS} && update-ca-certificates >/dev/null`, { input: readFileSync(certs.ca, "utf8"), timeoutMs: 60_000 });
      let disc = "";
      for (let i = 0; i < 30 && !disc.includes('"issuer"'); i++) {
        must(provider.exitCode === null, `oidc-provider exited ${provider.exitCode}: ${readFileSync(providerLog, "utf8").slice(-600)}`);
        disc = await on("vps", `curl -sS --max-time 3 ${ISSUER}.well-known/openid-configuration || true`);
        if (!disc.includes('"issuer"')) await sleep(500);
      }
      must(disc.includes('"issuer"') && (JSON.parse(disc) as { issuer: string }).issuer === ISSUER, `the provider's discovery document, fetched from the VPS with its system trust: ${disc.slice(0, 200)}`);
      writeFileSync(bundle, await on("vps", "cat /etc/ssl/certs/ca-certificates.crt"));

      // 4. The deploy with oidc on.
      const td = Date.now();
      const up = await labDeploy(instance, { verb: "up", on: ["vps"] });
      t.oidcUpMs = Date.now() - td;
      must(up.ok, `up --on vps with headscale.oidc: ${up.errors.join("; ").slice(0, 1500)}`);
      const cfg = await on("vps", "cat /etc/headscale/config.yaml");
      must(new RegExp(`^oidc:\\n(  .*\\n)*  issuer: ${ISSUER.replaceAll(".", "\\.")}\\n`, "m").test(cfg), "headscale's config.yaml has no oidc section with the drill's issuer");
      must(/^ {2}client_secret_path: \/var\/lib\/headscale\/oidc_client_secret$/m.test(cfg), "headscale's oidc section does not read the client secret from /var/lib/headscale/oidc_client_secret");
      must(!cfg.includes(clientSecret), "the client secret is in config.yaml");
      const mode = (await on("vps", "stat -c '%a' /var/lib/headscale/oidc_client_secret")).trim();
      must(mode === "600", `/var/lib/headscale/oidc_client_secret is mode ${mode}, expected 600`);
      // Compared without printing: the file holds exactly the stack secret.
      const sha = (await on("vps", "sha256sum < /var/lib/headscale/oidc_client_secret")).split(" ")[0];
      must(sha === createHash("sha256").update(clientSecret).digest("hex"), "the VPS's oidc_client_secret is not the stack secret");
      must(/exit=0\s*$/.test(await on("vps", `${hs} configtest 2>&1; echo exit=$?`)), "headscale configtest refuses the rendered config");
      must(/pass/.test(await on("vps", `curl -sS --max-time 5 ${SERVER_URL}/health`)), `${SERVER_URL}/health does not pass`);

      // 5. A fresh tailscaled on the laptop logs in with no auth key: it waits for the browser (--timeout, or it waits forever).
      await on("laptop", [
        "mkdir -p /var/lib/mf-oidc /run/mf-oidc",
        `systemd-run --unit=mf-oidc-tailscaled --collect ${hostTool("tailscale", "tailscaled")} --tun=userspace-networking --statedir=/var/lib/mf-oidc --socket=${SOCK} --port=0 >/dev/null`,
      ].join(" && "));
      for (let i = 0; i < 40 && !(await on("laptop", `test -S ${SOCK} && echo up || true`)).includes("up"); i++) await sleep(250);
      const t0 = Date.now();
      const login = `${ts} login --login-server ${SERVER_URL} --hostname ${OIDC_NODE} --accept-dns=false --timeout=240s`;
      await on("laptop", `rm -f /run/mf-oidc/login.rc && systemd-run --unit=mf-oidc-login --collect sh -c '${login} >/run/mf-oidc/login.log 2>&1; echo $? >/run/mf-oidc/login.rc' >/dev/null`);
      let st: Status = { BackendState: "" };
      for (let i = 0; i < 60 && !st.AuthURL; i++) {
        st = await status();
        if (!st.AuthURL) await sleep(500);
      }
      must(new RegExp(`^${SERVER_URL.replaceAll(".", "\\.")}/register/\\S+$`).test(st.AuthURL ?? ""), `no auth URL from the laptop's tailscale login (state ${st.BackendState})`);
      t.authUrlMs = Date.now() - t0;

      // 6. Refused: in the domain but not in allowedUsers; outside allowedDomains. headscale's page says only "not authorized"; its log says why.
      for (const [user, why] of [["mallory", "unauthorised user"], ["eve", "unauthorised domain"]] as const) {
        const since = (await on("vps", "date -u '+%Y-%m-%d %H:%M:%S'")).trim();
        const r = await browse(st.AuthURL!, user);
        say(`${user}: ${hopsOf(r)} | ${r.text.slice(0, 120)}`);
        must(r.submitted.join() === "login" && r.hops.at(-1)?.url === `${SERVER_URL}/oidc/callback` && r.status === 401 && /not authorized/i.test(r.text),
          `${user} (${OIDC_USERS[user]}) was not refused by headscale at its callback with 401 "not authorized": forms ${r.submitted.join(",") || "none"}, ${hopsOf(r)}: ${r.text.slice(0, 160)}`);
        const n = (await on("vps", `journalctl -u headscale --since '${since}' --no-pager -o cat | grep -c 'user msg: ${why}' || true`)).trim();
        must(n !== "0", `headscale refused ${user} but its journal does not say "${why}"`);
      }
      must(!(await nodes()).some((n) => n.given_name === OIDC_NODE), `${OIDC_NODE} is registered after the refused logins`);
      const emails = (await hsUsers()).map((u) => u.email);
      must(!emails.includes(OIDC_USERS.mallory) && !emails.includes(OIDC_USERS.eve), `a refused user is in headscale's users: ${emails.join(", ")}`);
      must((await status()).BackendState === "NeedsLogin", "the laptop's drill tailscaled is not waiting for a login after the refusals");

      // 7. Allowed: the whole way through, the confirmation included.
      const tl = Date.now();
      const ok = await browse(st.AuthURL!, "carol");
      say(`carol: ${hopsOf(ok)} | ${ok.text.slice(0, 160)}`);
      must(ok.submitted.join() === "login,confirm" && ok.status === 200, `carol's login through the provider was refused: forms ${ok.submitted.join(",") || "none"}, ${hopsOf(ok)}: ${ok.text.slice(0, 200)}`);
      const posts = ok.hops.filter((h) => h.method === "POST").map((h) => h.url);
      must(posts[0] === `${ISSUER}login/username` && posts[1]?.startsWith(`${SERVER_URL}/register/confirm/`), `carol's forms went to ${posts.join(", ")}`);
      for (let i = 0; i < 120 && st.BackendState !== "Running"; i++) {
        st = await status();
        if (st.BackendState !== "Running") await sleep(500);
      }
      t.loginMs = Date.now() - tl;
      must(st.BackendState === "Running", `the drill's tailscaled is ${st.BackendState} 60 s after carol's login`);
      let rc = "";
      for (let i = 0; i < 40 && !rc; i++) {
        rc = (await on("laptop", "cat /run/mf-oidc/login.rc 2>/dev/null || true")).trim();
        if (!rc) await sleep(250);
      }
      must(rc === "0", `tailscale login exited ${rc || "not at all"}: ${await on("laptop", "tail -5 /run/mf-oidc/login.log")}`);

      // 8. Registered under the OIDC user, with an address; it reaches the VPS over the tailnet.
      const all = await nodes();
      const me = all.find((n) => n.given_name === OIDC_NODE);
      must(me, `${OIDC_NODE} is not in headscale's nodes`);
      must(me.user?.email === OIDC_USERS.carol && me.user?.provider === "oidc", `${OIDC_NODE} is registered under ${JSON.stringify(me.user)}, expected the OIDC user ${OIDC_USERS.carol}`);
      // headscale's JSON gives the enum's number: 3 is REGISTER_METHOD_OIDC (1 auth key, 2 CLI).
      must(me.register_method === 3 || me.register_method === "REGISTER_METHOD_OIDC", `${OIDC_NODE}'s register method is ${me.register_method}, expected OIDC`);
      must(me.ip_addresses.length > 0 && [...(st.TailscaleIPs ?? [])].sort().join() === [...me.ip_addresses].sort().join(), `${OIDC_NODE}'s addresses: headscale ${me.ip_addresses.join(",")}, its tailscale ${(st.TailscaleIPs ?? []).join(",")}`);
      const vpsIp = all.find((n) => n.given_name === "vps")?.ip_addresses.find((a) => a.includes("."));
      must(vpsIp, "headscale lists no vps node with an IPv4 address");
      const pong = await on("laptop", `${ts} ping --until-direct=false -c 5 --timeout 5s ${vpsIp}`, { timeoutMs: 120_000 });
      must(/pong from vps /.test(pong), `${OIDC_NODE} -> vps ${vpsIp}: ${pong.trim().split("\n").at(-1)}`);
      // 9. The policy at work: the rule naming carol@… by e-mail lets her node reach tag:server (the VPS's sshd answers over the
      //    tailnet); no rule lets it reach the subnet router (tag:router), whose sshd stays silent. Each stdin stays open a few
      //    seconds so the banner can arrive; a connection the peer's filter drops never opens.
      const banner = async (ip: string) => (await on("laptop", `sleep 4 | timeout 12 ${ts} nc ${ip} 22 2>/dev/null | head -c 8; true`, { timeoutMs: 30_000 })).trim();
      const routerIp = all.find((n) => n.given_name === "lxc-tailscale")?.ip_addresses.find((a) => a.includes("."));
      must(routerIp, "headscale lists no lxc-tailscale node with an IPv4 address");
      let toVps = "";
      for (let i = 0; i < 10 && !toVps.startsWith("SSH-2.0"); i++) {
        toVps = await banner(vpsIp);
        if (!toVps.startsWith("SSH-2.0")) await sleep(1000);
      }
      must(toVps.startsWith("SSH-2.0"), `${OIDC_NODE} -> vps ${vpsIp}:22 over the tailnet (the rule naming ${OIDC_USERS.carol}): ${JSON.stringify(toVps) || "no answer"}`);
      const toRouter = await banner(routerIp);
      must(toRouter === "", `${OIDC_NODE} -> lxc-tailscale ${routerIp}:22 answered ${JSON.stringify(toRouter)}, but no rule lets ${OIDC_USERS.carol} reach tag:router`);
      return `headscale up with the typed oidc options in ${(t.oidcUpMs / 1000).toFixed(1)}s (secret in its 0600 file only); mallory and eve refused (401, the reasons in the journal); carol's login through the provider registered ${OIDC_NODE} as the OIDC user ${OIDC_USERS.carol} (${me.ip_addresses.join(", ")}) in ${(t.loginMs / 1000).toFixed(1)}s, and it pings vps; the policy's rule naming ${OIDC_USERS.carol} (oidcUsers) lets it reach vps's sshd, and nothing lets it reach lxc-tailscale's`;
    }
  });
}

/** A CA made for this run and the provider's certificate for the issuer's address. */
async function makeCerts(work: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (n: string) => join(work, n);
  await execa("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")]);
  await execa("openssl", ["req", "-x509", "-new", "-key", f("ca.key"), "-out", f("ca.crt"), "-days", "2", "-sha256", "-subj", "/CN=meshfleet lab OIDC drill CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await execa("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("tls.key")]);
  await execa("openssl", ["req", "-new", "-key", f("tls.key"), "-out", f("tls.csr"), "-subj", `/CN=${ISSUER_IP}`]);
  writeFileSync(f("ext.cnf"), `subjectAltName=IP:${ISSUER_IP}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  await execa("openssl", ["x509", "-req", "-in", f("tls.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("tls.crt"), "-days", "2", "-sha256", "-extfile", f("ext.cnf")]);
  for (const k of ["ca.key", "tls.key"]) chmodSync(f(k), 0o600);
  return { ca: f("ca.crt"), cert: f("tls.crt"), key: f("tls.key") };
}
