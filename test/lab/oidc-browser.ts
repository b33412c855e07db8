/**
 * A scripted browser for the OIDC drill (test/lab/oidc-lab.test.ts): fetch with a
 * cookie jar that follows a node's auth URL through headscale, the provider's
 * login form and headscale's confirmation form, as a person clicking would.
 *
 * It must run where both headscale and the provider are reachable (the lab's
 * internet namespace), so the drill runs this file as a script there:
 *   ip netns exec <ns> node --import tsx oidc-browser.ts   (stdin: JSON {start, username, password})
 * with NODE_EXTRA_CA_CERTS naming the roots the VPS trusts. It prints one JSON
 * line: every request made (method, URL without query, status) and the last
 * page's status and text. No redirect is followed automatically, so each hop
 * is seen; no TLS check is skipped.
 */
import { fileURLToPath } from "node:url";

export interface BrowserHop {
  method: "GET" | "POST";
  /** origin + path (the query, which carries codes and state, is left out). */
  url: string;
  status: number;
}
export interface BrowserResult {
  hops: BrowserHop[];
  /** The last response's status and its text with tags removed (first 400 characters). */
  status: number;
  text: string;
  /** Which forms were submitted: "login" (the provider's), "confirm" (headscale's). */
  submitted: string[];
}

/** Cookies per host; enough for the Lax/Strict, path-scoped cookies headscale and the provider set. */
class Jar {
  private byHost = new Map<string, Map<string, string>>();
  take(url: URL, res: Response): void {
    const jar = this.byHost.get(url.host) ?? new Map<string, string>();
    for (const c of res.headers.getSetCookie()) {
      const [pair, ...attrs] = c.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const maxAge = attrs.map((a) => /^\s*max-age=(-?\d+)/i.exec(a)?.[1]).find((x) => x !== undefined);
      if (value === "" || (maxAge !== undefined && Number(maxAge) <= 0)) jar.delete(name);
      else jar.set(name, value);
    }
    this.byHost.set(url.host, jar);
  }
  header(url: URL): string {
    return [...(this.byHost.get(url.host) ?? new Map<string, string>())].map(([k, v]) => `${k}=${v}`).join("; ");
  }
}

const attr = (tag: string, name: string): string | undefined => new RegExp(`\\s${name}="([^"]*)"`, "i").exec(tag)?.[1]?.replaceAll("&amp;", "&");

/** The first form of a page: its action and its inputs' names and values. */
export function parseForm(html: string): { action: string; fields: Record<string, string> } | null {
  const form = /<form\b[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return null;
  const action = attr(form[0].slice(0, form[0].indexOf(">") + 1), "action") ?? "";
  const fields: Record<string, string> = {};
  for (const m of form[1].matchAll(/<input\b[^>]*>/gi)) {
    const name = attr(m[0], "name");
    if (name) fields[name] = attr(m[0], "value") ?? "";
  }
  return { action, fields };
}

export async function oidcBrowserLogin(o: { start: string; username: string; password: string }): Promise<BrowserResult> {
  const jar = new Jar();
  const hops: BrowserHop[] = [];
  const submitted: string[] = [];
  let url = new URL(o.start);
  let method: "GET" | "POST" = "GET";
  let body: URLSearchParams | undefined;
  for (let i = 0; i < 20; i++) {
    const res = await fetch(url, {
      method,
      redirect: "manual",
      headers: { cookie: jar.header(url), ...(body ? { "content-type": "application/x-www-form-urlencoded" } : {}) },
      body,
      signal: AbortSignal.timeout(20_000),
    });
    jar.take(url, res);
    hops.push({ method, url: `${url.origin}${url.pathname}`, status: res.status });
    const location = res.headers.get("location");
    if (res.status >= 300 && res.status < 400 && location) {
      url = new URL(location, url);
      method = "GET";
      body = undefined;
      continue;
    }
    const html = await res.text();
    const form = res.status === 200 ? parseForm(html) : null;
    // The provider's login form (username, password), then headscale's "register this node?" form (its CSRF token).
    const kind = form && "username" in form.fields && "password" in form.fields ? "login" : form && "headscale_register_confirm" in form.fields ? "confirm" : null;
    if (!form || !kind || submitted.includes(kind)) {
      const text = html.replace(/<style[\s\S]*?<\/style>/gi, "").replace(/<[^>]+>/g, " ").replace(/\s+/g, " ").trim().slice(0, 400);
      return { hops, status: res.status, text, submitted };
    }
    submitted.push(kind);
    body = new URLSearchParams(kind === "login" ? { ...form.fields, username: o.username, password: o.password } : form.fields);
    url = new URL(form.action, url);
    method = "POST";
  }
  throw new Error(`more than 20 requests from ${o.start}: ${hops.map((h) => `${h.method} ${h.url} ${h.status}`).join(", ")}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  await oidcBrowserLogin(JSON.parse(Buffer.concat(chunks).toString("utf8")) as { start: string; username: string; password: string }).then(
    (r) => process.stdout.write(`${JSON.stringify(r)}\n`),
    (e: Error) => {
      process.stderr.write(`${e.message}${e.cause ? `: ${String((e.cause as Error).message ?? e.cause)}` : ""}\n`);
      process.exit(1);
    },
  );
}
