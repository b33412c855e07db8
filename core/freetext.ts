/**
 * Free text that lands in a config file, a unit, a command line or a flag
 * (issue 17): each value gets a schema for what its target can hold, so a
 * newline, a brace or a second flag hidden in a string is refused with a
 * diagnostic instead of changing the file it is written into.
 *
 * Every check comes twice: a function returning the problem as
 * `{ expected, fix }` (undefined when the value is fine), for assertions
 * with a path of their own, and a zod schema whose message is the expected
 * text, for option declarations. Modules call them; nothing here renders.
 */
import { z } from "zod";
import { quote } from "./diagnostics.ts";
import { labelProblem } from "./names.ts";
import { parseIpv4, parseIpv6 } from "./schema-types.ts";

export interface TextProblem {
  /** What the target can hold, phrased for "expected ...". */
  expected: string;
  /** What the value has that the target cannot hold, phrased for "found ...". */
  found: string;
  /** The setting that fixes it; never the bad value again. */
  fix: string;
}

const CONTROL = /[\u0000-\u001f\u007f]/;

function controlProblem(v: string): string | undefined {
  const m = CONTROL.exec(v);
  if (!m) return undefined;
  const c = m[0].charCodeAt(0);
  return c === 10 || c === 13 ? "a line break" : c === 0 ? "a NUL byte" : `a control character (U+${c.toString(16).toUpperCase().padStart(4, "0")})`;
}

/** Why `s` is not a DNS name (labels of letters, digits, '-', dot-separated, ≤ 253); undefined when it is one. */
export function dnsNameProblem(s: string, opts: { wildcard?: boolean } = {}): string | undefined {
  if (s === "") return "an empty name";
  let body = s.endsWith(".") ? s.slice(0, -1) : s;
  if (opts.wildcard && body.startsWith("*.")) body = body.slice(2);
  if (body.length > 253) return `${body.length} characters (a DNS name has at most 253)`;
  for (const label of body.split(".")) {
    if (label === "") return "an empty label (two dots in a row, or a leading dot)";
    const p = labelProblem(label);
    if (p) return p;
  }
  return undefined;
}

// --- Caddy: the ACME account e-mail in the global options block -----------

/**
 * An e-mail address for Caddy's global `email` option. The Caddyfile lexer
 * splits on whitespace and treats `{`/`}` as blocks and placeholders and `#`
 * as a comment, so only the plain address characters are allowed.
 */
export function acmeEmailProblem(v: string): TextProblem | undefined {
  const expected = "an e-mail address such as admin@example.com (letters, digits and . _ % + - before the @, a DNS name after it)";
  if (v === "") return undefined; // "" means no contact address
  const cp = controlProblem(v);
  if (cp) return { expected, found: `${quote(v)}, which has ${cp}`, fix: "set reverse-proxy.acmeEmail to one address on one line" };
  const m = /^([A-Za-z0-9._%+-]+)@([^@]+)$/.exec(v);
  if (!m) return { expected, found: `${quote(v)}, which ${/[\s{}#"'`;]/.test(v) ? "has characters the Caddyfile reads as syntax (space, { } # quotes ;)" : "is not local@domain"}`, fix: "set reverse-proxy.acmeEmail to a plain address such as admin@example.com" };
  const d = dnsNameProblem(m[2]);
  if (d) return { expected, found: `${quote(v)}, whose domain has ${d}`, fix: "set reverse-proxy.acmeEmail to an address at a real domain" };
  return undefined;
}

// --- nginx: server_name ----------------------------------------------------

/**
 * One nginx `server_name` entry: a DNS name, `*.example.com`, `.example.com`
 * or `_` (catch-all). Regular expressions (`~...`) are refused: meshfleet
 * writes the name into `server_name ...;`, where `;`, `{`, `}`, `$`, quotes
 * and whitespace would end or change the directive.
 */
export function serverNameProblem(v: string): TextProblem | undefined {
  const expected = "a host name for nginx's server_name, such as headscale.example.com or *.example.com";
  const cp = controlProblem(v);
  if (cp) return { expected, found: `${quote(v)}, which has ${cp}`, fix: "set reverse-proxy.domain to one host name" };
  if (v === "_") return undefined;
  if (/[\s;{}$"'\\]/.test(v)) return { expected, found: `${quote(v)}, which has characters nginx reads as syntax (space ; { } $ quotes \\)`, fix: "set reverse-proxy.domain to one host name (several names: one reverse proxy each)" };
  if (v.startsWith("~")) return { expected, found: `${quote(v)}, a regular expression`, fix: "set reverse-proxy.domain to a plain host name" };
  const name = v.startsWith(".") ? v.slice(1) : v;
  const p = dnsNameProblem(name, { wildcard: true });
  if (p) return { expected, found: `${quote(v)}, which has ${p}`, fix: "set reverse-proxy.domain to the coordinator's public DNS name" };
  return undefined;
}

// --- derper: -hostname -------------------------------------------------------

/** derper's `-hostname`: a DNS name or an IP address, one argv element that cannot pass for a flag. */
export function derpHostnameProblem(v: string): TextProblem | undefined {
  const expected = "the relay's DNS name (e.g. derp.example.com) or its IP address";
  if (v === "") return undefined; // "" means the host's address
  const cp = controlProblem(v);
  if (cp) return { expected, found: `${quote(v)}, which has ${cp}`, fix: "set derp.hostname to one name" };
  if (v.startsWith("-")) return { expected, found: `${quote(v)}, which reads as a flag`, fix: "set derp.hostname to the relay's DNS name" };
  if (parseIpv4(v) !== null || parseIpv6(v) !== null) return undefined;
  const p = dnsNameProblem(v);
  if (p) return { expected, found: `${quote(v)}, which has ${p}`, fix: "set derp.hostname to the relay's DNS name, or \"\" to use the host's address" };
  return undefined;
}

// --- systemd: Environment= ---------------------------------------------------

/** An environment variable name as systemd accepts it in Environment= (and a shell would too). */
export function envNameProblem(k: string): TextProblem | undefined {
  if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) return undefined;
  return { expected: "an environment variable name (letters, digits, '_', not starting with a digit)", found: quote(k), fix: "rename the variable, e.g. TS_DEBUG_FIREWALL_MODE" };
}

/** A value for Environment=: one line, no NUL (systemd reads a unit line by line). */
export function envValueProblem(v: string): TextProblem | undefined {
  const cp = controlProblem(v.replace(/\t/g, " "));
  if (!cp) return undefined;
  return { expected: "a value on one line (systemd reads Environment= line by line)", found: `${quote(v)}, which has ${cp}`, fix: "write the value on one line; put multi-line data in a file and pass its path" };
}

/**
 * The `Environment=` line for KEY=value, quoted for systemd: the assignment
 * in double quotes, `\` and `"` escaped, and `%` doubled (systemd expands
 * %-specifiers in Environment=). Throws on a value envValueProblem refuses:
 * check first.
 */
export function environmentLine(key: string, value: string): string {
  const bad = envNameProblem(key) ?? envValueProblem(value);
  if (bad) throw new Error(`environmentLine: ${bad.expected}, found ${bad.found}`);
  const esc = `${key}=${value}`.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/%/g, "%%");
  return `Environment="${esc}"`;
}

/**
 * `Environment=KEY=value` as is when systemd reads it back unchanged (no
 * space, quote, backslash, `%` or `$`), else environmentLine's quoted form.
 */
export function systemdEnvironment(key: string, value: string): string {
  const bad = envNameProblem(key) ?? envValueProblem(value);
  if (bad) throw new Error(`systemdEnvironment: ${bad.expected}, found ${bad.found}`);
  return /^[A-Za-z0-9_.,:/+@=-]*$/.test(value) ? `Environment=${key}=${value}` : environmentLine(key, value);
}

// --- tailscale up: extraUpFlags ----------------------------------------------

/** `tailscale up` flags of tailscale 1.98 (`tailscale up --help`), with `--authkey`, the older spelling it still takes. */
export const TAILSCALE_UP_FLAGS = [
  "accept-dns", "accept-risk", "accept-routes", "advertise-connector", "advertise-exit-node", "advertise-routes", "advertise-tags",
  "audience", "auth-key", "authkey", "client-id", "client-secret", "exit-node", "exit-node-allow-lan-access", "force-reauth", "hostname",
  "id-token", "json", "login-server", "netfilter-mode", "operator", "qr", "qr-format", "report-posture", "reset", "shields-up",
  "snat-subnet-routes", "ssh", "stateful-filtering", "timeout",
] as const;

/** Flags meshfleet sets from typed options (the option that sets each), or owns (--reset, --json, --timeout, --force-reauth). */
export const TAILSCALE_TYPED_FLAGS: Record<string, string> = {
  "login-server": "tailscale.loginServer",
  hostname: "tailscale.hostname",
  "auth-key": "tailscale.authKey",
  authkey: "tailscale.authKey",
  "advertise-routes": "tailscale.advertiseRoutes (or subnet-router.routes)",
  "advertise-exit-node": "tailscale.advertiseExitNode (or the exit-node profile)",
  "advertise-tags": "tailscale.tags",
  "accept-routes": "tailscale.acceptRoutes",
  "accept-dns": "tailscale.acceptDns",
  ssh: "tailscale.ssh",
  "snat-subnet-routes": "tailscale.snatSubnetRoutes",
  "netfilter-mode": "tailscale.netfilterMode",
  reset: "meshfleet (every deploy re-applies all flags)",
  json: "meshfleet (it reads up's output)",
  timeout: "meshfleet (it always passes one)",
  "force-reauth": "meshfleet (on a new login server)",
  qr: "nothing: there is no terminal to show a QR code on",
  "qr-format": "nothing: there is no terminal to show a QR code on",
};

/** One extraUpFlags element: `--flag` or `--flag=value`, a flag tailscale up knows and no typed option sets. */
export function upFlagProblem(flag: string): TextProblem | undefined {
  const expected = "a `tailscale up` flag such as --operator=alice or --shields-up, one per element";
  const cp = controlProblem(flag);
  if (cp) return { expected, found: `${quote(flag)}, which has ${cp}`, fix: "write one flag per element, on one line" };
  const m = /^--([a-z0-9-]+)(=(.*))?$/s.exec(flag);
  if (!m) return { expected, found: quote(flag), fix: /\s--?[a-z]/.test(flag) ? "split it: one flag per list element" : "write it as --name or --name=value" };
  if (/\s/.test(m[3] ?? "")) return { expected, found: `${quote(flag)}, a value with spaces`, fix: /\s--?[a-z]/.test(m[3]!) ? "split it: one flag per list element" : "write the value without spaces" };
  const name = m[1];
  const owner = TAILSCALE_TYPED_FLAGS[name];
  if (owner) return { expected: `${expected}, not one meshfleet sets itself`, found: `--${name}, which ${owner.startsWith("meshfleet") || owner.startsWith("nothing") ? "is set by" : "is set from"} ${owner}`, fix: owner.startsWith("tailscale.") ? `remove it and set ${owner.split(" ")[0]} instead` : "remove it" };
  if (!(TAILSCALE_UP_FLAGS as readonly string[]).includes(name)) {
    const near = TAILSCALE_UP_FLAGS.find((f) => f.startsWith(name.slice(0, 4)));
    return { expected, found: `--${name}, which tailscale up does not know`, fix: near && !TAILSCALE_TYPED_FLAGS[near] ? `did you mean --${near}?` : "remove it (see `tailscale up --help`)" };
  }
  return undefined;
}

// --- Postgres: sslmode ---------------------------------------------------------

/** libpq's sslmode values. */
export const SSLMODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;

export function sslmodeProblem(v: string): TextProblem | undefined {
  if ((SSLMODES as readonly string[]).includes(v)) return undefined;
  const near = SSLMODES.find((m) => m === v.toLowerCase().trim());
  return { expected: `a Postgres sslmode: one of ${SSLMODES.join(", ")}`, found: quote(v), fix: near ? `write it in lowercase: ${near}` : "set headscale.database.postgres.ssl to true (require), false (disable) or one of those modes" };
}

// --- zod schemas for option declarations -------------------------------------

/** A zod string checked by one of the functions above; the issue's message is the expected text and its input the value. */
export function checkedString(check: (v: string) => TextProblem | undefined) {
  return z.string().superRefine((v, ctx) => {
    const p = check(v);
    if (p) ctx.addIssue({ code: "custom", message: `${p.expected} (found ${p.found}; ${p.fix})`, input: v, params: { ...p } });
  });
}

export const acmeEmail = checkedString(acmeEmailProblem);
export const serverName = checkedString(serverNameProblem);
/** reverse-proxy.domain: "" (the host of coordinator.serverUrl) or a server_name entry. */
export const proxyDomain = checkedString((v) => (v === "" ? undefined : serverNameProblem(v)));
/** A libpq sslmode given as a string (headscale.database.postgres.ssl also takes true/false). */
export const sslmodeText = checkedString(sslmodeProblem);
export const derpHostname = checkedString(derpHostnameProblem);
export const sslmode = z.enum(SSLMODES, { message: `a Postgres sslmode: one of ${SSLMODES.join(", ")}` });
export const environment = z.record(z.string(), z.string()).superRefine((env, ctx) => {
  for (const [k, v] of Object.entries(env)) {
    const p = envNameProblem(k) ?? envValueProblem(v);
    if (p) ctx.addIssue({ code: "custom", path: [k], message: `${p.expected} (found ${p.found}; ${p.fix})`, input: v, params: { ...p } });
  }
});
export const extraUpFlags = z.array(z.string()).superRefine((flags, ctx) => {
  flags.forEach((f, i) => {
    const p = upFlagProblem(f);
    if (p) ctx.addIssue({ code: "custom", path: [i], message: `${p.expected} (found ${p.found}; ${p.fix})`, input: f, params: { ...p } });
  });
});

// --- Paths and interface names written into units, flags and config directives ---

/**
 * An absolute path that a unit line (ExecStart=), a flag or a config
 * directive takes as one word: no whitespace (a second argument), no quotes,
 * `;`, `{`, `}`, `$`, `%` or `\` (nginx and systemd syntax), no `..`.
 */
export function absPathProblem(option: string, example: string) {
  return (v: string): TextProblem | undefined => {
    const expected = `an absolute path such as ${example} (letters, digits and / . _ - + @ :)`;
    const cp = controlProblem(v);
    if (cp) return { expected, found: `${quote(v)}, which has ${cp}`, fix: `set ${option} to one path on one line` };
    if (!v.startsWith("/")) return { expected, found: `${quote(v)}, a relative path`, fix: `set ${option} to the full path, starting with /` };
    if (/[\s"'`;{}$%\\]/.test(v)) return { expected, found: `${quote(v)}, which has characters a unit or config file reads as syntax`, fix: `set ${option} to a path without spaces, quotes or ; { } $ % \\` };
    if (v.split("/").includes("..")) return { expected, found: `${quote(v)}, which climbs with ..`, fix: `set ${option} to the path with .. resolved` };
    if (!/^[A-Za-z0-9/._+@:-]+$/.test(v)) return { expected, found: `${quote(v)}, which has characters outside letters, digits and / . _ - + @ :`, fix: `set ${option} to a plain path such as ${example}` };
    return undefined;
  };
}

/** An absolute path option (see absPathProblem); `orEmpty` lets "" through for options where it means a default. */
export const absPath = (option: string, example: string, orEmpty = false) => {
  const check = absPathProblem(option, example);
  return checkedString((v) => (orEmpty && v === "" ? undefined : check(v)));
};

/** A Linux interface name (IFNAMSIZ 16: at most 15 bytes, no '/', whitespace or ':'), one argv element. */
export function ifaceProblem(option: string) {
  return (v: string): TextProblem | undefined => {
    const expected = "a network interface name such as eth0 (at most 15 characters, no / : or spaces)";
    if (v === "" || v === "." || v === ".." || v.length > 15 || /[\s/:\u0000-\u001f\u007f]/.test(v) || v.startsWith("-"))
      return { expected, found: v.startsWith("-") ? `${quote(v)}, which reads as a flag` : quote(v), fix: `set ${option} to the interface's name as \`ip link\` shows it` };
    return undefined;
  };
}
export const ifaceName = (option: string) => checkedString(ifaceProblem(option));

/** tailscale.loginServer: "" (the fleet's serverUrl) or an http(s) URL, one flag value. */
export function loginServerProblem(v: string): TextProblem | undefined {
  if (v === "") return undefined;
  const expected = "an http:// or https:// URL such as https://hs.example.com, or \"\" for fleet.yaml coordinator.serverUrl";
  const cp = controlProblem(v);
  if (cp || /\s/.test(v)) return { expected, found: `${quote(v)}, which has ${cp ?? "whitespace"}`, fix: "set tailscale.loginServer to one URL, or remove it to use coordinator.serverUrl" };
  let u: URL | undefined;
  try { u = new URL(v); } catch { u = undefined; }
  if (!u || (u.protocol !== "https:" && u.protocol !== "http:")) return { expected, found: quote(v), fix: "set tailscale.loginServer to the coordinator's URL with https://, or remove it" };
  return undefined;
}
export const loginServer = checkedString(loginServerProblem);
