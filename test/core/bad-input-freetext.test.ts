/**
 * Free text that reaches a config file, a unit or a command line
 * (core/freetext.ts): table-driven accept/refuse cases, and the real tools
 * where this machine has them — nginx and caddy read a config holding every
 * accepted value exactly as written, and tailscale's own `up --help` is the
 * flag list. A refused value is also shown to change the target's meaning
 * (so the refusal guards against something real).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import {
  acmeEmail, acmeEmailProblem, derpHostnameProblem, environment, environmentLine, envNameProblem, envValueProblem, extraUpFlags,
  serverNameProblem, sslmodeProblem, TAILSCALE_UP_FLAGS, upFlagProblem,
} from "../../core/freetext.ts";
import { toolPath } from "../../lab/tools/index.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const which = (cmd: string) => spawnSync("sh", ["-c", `command -v ${cmd}`]).status === 0;

const EMAILS_OK = ["", "ops@example.com", "first.last+acme@mail.example.co.uk", "a_b%c@x-y.example"];
const EMAILS_BAD = ["ops@example.com\n}\n:80 {\n\trespond hi", "ops @example.com", "{env.EMAIL}", "ops@example.com # c", "no-at-sign", "a@b@c", "ops@exa_mple.com", "ops@-example.com", 'a"b@example.com'];
const NAMES_OK = ["headscale.example.com", "*.example.com", ".example.com", "_", "localhost", "hs.example.com."];
const NAMES_BAD = ["hs.example.com; return 200", "hs.example.com\n", "a b", "~^(www)\\.example\\.com$", "hs.$host", "hs.example..com", "ex{ample}.com", "-hs.example.com"];
const DERP_OK = ["", "derp.example.com", "203.0.113.10", "2001:db8::1"];
const DERP_BAD = ["-a=:0", "derp.example.com -verify-clients", "derp\nexample", "derp_1.example.com", "a..b"];
const FLAGS_OK = ["--operator=alice", "--shields-up", "--shields-up=false", "--exit-node=100.64.0.7", "--exit-node-allow-lan-access", "--stateful-filtering=true"];
const FLAGS_BAD: [string, RegExp][] = [
  ["--hostname=x", /tailscale\.hostname/],
  ["--login-server=https://evil.example.com", /tailscale\.loginServer/],
  ["--authkey=tskey-123", /tailscale\.authKey/],
  ["--advertise-tags=tag:x", /tailscale\.tags/],
  ["--reset", /meshfleet/],
  ["--operator=alice --ssh", /one flag per list element/],
  ["--operater=alice", /did you mean --operator/],
  ["--no-such-flag", /does not know/],
  ["-ssh", /--name/],
  ["--operator=alice\n--ssh", /line break/],
];

describe("free text: accept and refuse", () => {
  it.each(EMAILS_OK)("acmeEmail accepts %j", (v) => expect(acmeEmailProblem(v)).toBeUndefined());
  it.each(EMAILS_BAD)("acmeEmail refuses %j", (v) => {
    const p = acmeEmailProblem(v)!;
    expect(p.expected).toMatch(/^an e-mail address/);
    expect(p.found.split("\n")).toHaveLength(1);
    expect(p.fix).not.toContain(v);
  });
  it.each(NAMES_OK)("server_name accepts %j", (v) => expect(serverNameProblem(v)).toBeUndefined());
  it.each(NAMES_BAD)("server_name refuses %j", (v) => {
    const p = serverNameProblem(v)!;
    expect(p.expected).toMatch(/server_name/);
    expect(p.fix).not.toContain(v);
  });
  it.each(DERP_OK)("derp.hostname accepts %j", (v) => expect(derpHostnameProblem(v)).toBeUndefined());
  it.each(DERP_BAD)("derp.hostname refuses %j", (v) => expect(derpHostnameProblem(v)?.expected).toMatch(/DNS name .* or its IP address/));
  it.each(FLAGS_OK)("extraUpFlags accepts %j", (v) => expect(upFlagProblem(v)).toBeUndefined());
  it.each(FLAGS_BAD)("extraUpFlags refuses %j", (v, why) => {
    const p = upFlagProblem(v)!;
    expect(`${p.found} ${p.fix}`).toMatch(why);
  });
  it("sslmode: libpq's six values, and a fix for case", () => {
    for (const m of ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]) expect(sslmodeProblem(m)).toBeUndefined();
    expect(sslmodeProblem("Require")?.fix).toBe("write it in lowercase: require");
    expect(sslmodeProblem("on")?.expected).toBe("a Postgres sslmode: one of disable, allow, prefer, require, verify-ca, verify-full");
  });
  it("Environment=: names, one-line values, and the quoting systemd needs", () => {
    expect(envNameProblem("TS_DEBUG_FIREWALL_MODE")).toBeUndefined();
    expect(envNameProblem("1X")?.expected).toMatch(/variable name/);
    expect(envNameProblem("A B")).toBeDefined();
    expect(envValueProblem("a\nExecStartPre=/bin/sh -c evil")?.found).toMatch(/line break/);
    expect(environmentLine("A", 'x y "q" 100% \\n')).toBe('Environment="A=x y \\"q\\" 100%% \\\\n"');
    expect(() => environmentLine("A", "x\ny")).toThrow(/one line/);
  });
  it("zod schemas carry the expected text, per element or key", () => {
    const r = extraUpFlags.safeParse(["--shields-up", "--hostname=x"]);
    expect(r.success).toBe(false);
    expect(r.error!.issues.map((i) => [i.path, i.message.split(" (")[0]])).toEqual([[[1], "a `tailscale up` flag such as --operator=alice or --shields-up, one per element, not one meshfleet sets itself"]]);
    const e = environment.safeParse({ OK: "1", "BAD NAME": "2", V: "a\nb" });
    expect(e.error!.issues.map((i) => i.path)).toEqual([["BAD NAME"], ["V"]]);
    expect(acmeEmail.safeParse("ops@example.com").success).toBe(true);
  });
});

describe("free text: the real tools agree", () => {
  it.skipIf(skipUnlessCi(!which("nginx") && "nginx is not installed (apt-get install nginx; scripts/setup.sh installs it)"))("nginx -t accepts a server block with each accepted server_name, and a refused one changes the config", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "mf-nginx-"));
    try {
      const conf = (name: string) => `pid ${dir}/nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\n  access_log off;\n  client_body_temp_path ${dir};\n  proxy_temp_path ${dir};\n  fastcgi_temp_path ${dir};\n  uwsgi_temp_path ${dir};\n  scgi_temp_path ${dir};\n  server {\n    listen 127.0.0.1:18080;\n    server_name ${name};\n  }\n}\n`;
      const test = (name: string) => {
        writeFileSync(path.join(dir, "nginx.conf"), conf(name));
        return spawnSync("nginx", ["-t", "-q", "-p", dir, "-c", path.join(dir, "nginx.conf")], { encoding: "utf8" });
      };
      for (const n of NAMES_OK) expect(test(n).status, `${n}: ${test(n).stderr}`).toBe(0);
      // "hs.example.com; return 200" is valid nginx: the value became a second directive.
      expect(test("hs.example.com; return 200").status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(skipUnlessCi(!which("caddy") && "caddy is not installed (apt-get install caddy; scripts/setup.sh installs it)"))("caddy adapt reads each accepted acmeEmail back unchanged; a refused one rewrites the Caddyfile", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "mf-caddy-"));
    try {
      const adapt = (email: string) => {
        writeFileSync(path.join(dir, "Caddyfile"), `{\n\temail ${email}\n}\n\n:18081 {\n\trespond "ok"\n}\n`);
        const r = spawnSync("caddy", ["adapt", "--config", path.join(dir, "Caddyfile"), "--adapter", "caddyfile"], { encoding: "utf8", env: { ...process.env, HOME: dir } });
        return r.status === 0 ? JSON.stringify(JSON.parse(r.stdout)) : null;
      };
      for (const e of EMAILS_OK.filter(Boolean)) expect(adapt(e), e).toContain(JSON.stringify(e));
      // The newline-and-brace value adds a second site to the config: exactly what the schema prevents.
      const injected = adapt("ops@example.com\n}\n:80 {\n\trespond hi");
      expect(injected ?? "").toContain(":80");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  // The project's own lookup: the tools folder (MESHFLEET_TOOLS_DIR) or PATH, at the pinned version.
  const tsBin = (() => {
    try {
      return toolPath("tailscale");
    } catch {
      return undefined;
    }
  })();
  it.skipIf(skipUnlessCi(!tsBin && "the tailscale CLI 1.98.10 is not built: run `meshfleet tools build`"))("TAILSCALE_UP_FLAGS is tailscale's own `up --help` list (plus the --authkey spelling)", () => {
    const help = spawnSync(tsBin!, ["up", "--help"], { encoding: "utf8" });
    const flags = [...`${help.stdout}${help.stderr}`.matchAll(/^\s+--([a-z0-9-]+)/gm)].map((m) => m[1]);
    expect([...new Set(flags)].sort()).toEqual(TAILSCALE_UP_FLAGS.filter((f) => f !== "authkey").sort());
  });
});
