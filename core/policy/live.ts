/**
 * The tailnet as the coordinator knows it: `headscale nodes list --output json`
 * (headscale 0.29: an array of nodes with `ip_addresses`, `given_name`, `name`,
 * `user.name`, `tags`, `approved_routes`), read from a file the user saved.
 *
 * With it, `check` and `plan` evaluate the policy on the addresses headscale
 * really handed out: the fleet's hosts that have joined take their node's
 * addresses (matched by tailscale hostname, given_name first), and the nodes
 * that are not fleet hosts (laptops, phones) join the evaluation with their
 * user, tags and approved routes, as headscale resolves `alice@` to them.
 * Hosts that have not joined keep stand-in addresses that avoid the real ones.
 *
 * A file that is not such a list is refused with file, path, expected, found
 * and fix; nothing of it is echoed beyond a short excerpt.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import type { Diagnostic } from "../types.ts";
import { parseAddr, parsePrefix } from "./ipset.ts";

export interface LiveNode {
  /** headscale's node id, when the list gives one: a newer registration of the same name (a reinstall) has a higher one. */
  id?: number;
  /** given_name when set (what `tailscale --hostname` and renames give), else name. */
  name: string;
  /** Both names headscale reports, for matching. */
  names: string[];
  user?: string;
  /** The owning user's e-mail, when headscale has one (an OIDC login's): the policy names such a person by it (fleet.yaml oidcUsers). */
  email?: string;
  /** A person's device that logged in through OpenID Connect (personDevice): never taken for a fleet host of the same name. */
  oidc?: true;
  tags: string[];
  ips: string[];
  approvedRoutes: string[];
}

const MAX_NODES = 100_000;

/**
 * Whether a node of headscale's list (`nodes list -o json`) is a person's
 * device that logged in through OpenID Connect: untagged, and owned by an
 * OIDC user (`user.provider: "oidc"`) or registered by an OIDC login
 * (`register_method` 3, REGISTER_METHOD_OIDC). Such a node is never taken for
 * a fleet host of the same name. A tagged node is a server's, however it
 * logged in (headscale lets a web login register tagged nodes): it may be a
 * fleet host that joined before meshfleet took over.
 */
export function personDevice(n: { tags?: unknown; user?: unknown; register_method?: unknown }): boolean {
  if (Array.isArray(n.tags) && n.tags.length > 0) return false;
  const provider = n.user && typeof n.user === "object" ? (n.user as { provider?: unknown }).provider : undefined;
  return provider === "oidc" || n.register_method === 3 || n.register_method === "3" || n.register_method === "REGISTER_METHOD_OIDC";
}

const short = (v: unknown): string => {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
};

/** Parses the JSON text of `headscale nodes list --output json`. */
export function parseNodesList(text: string, file: string): { nodes: LiveNode[]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const fix = "save the coordinator's list with: headscale nodes list --output json > FILE";
  const bad = (path: string, expected: string, found: string, f = fix) => diagnostics.push({ severity: "error", file, path, expected, found, fix: f });
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    // Stryker disable next-line MethodExpression: V8's JSON.parse messages stay under 80 characters (a position in a 16 MiB file has at most 8 digits); the cut is a guard
    bad("", "the JSON output of headscale nodes list --output json", `not JSON (${(e as Error).message.slice(0, 80)})`);
    return { nodes: [], diagnostics };
  }
  if (data !== null && typeof data === "object" && !Array.isArray(data) && "error" in data) {
    bad("error", "a list of nodes", `headscale's error ${short((data as { error: unknown }).error)}`, "run the command again where headscale is running (it needs the server), then save its output");
    return { nodes: [], diagnostics };
  }
  // headscale prints `null` for a tailnet with no nodes.
  if (data === null) return { nodes: [], diagnostics };
  if (!Array.isArray(data)) {
    bad("", "a JSON list of nodes", short(data));
    return { nodes: [], diagnostics };
  }
  if (data.length > MAX_NODES) {
    bad("", `at most ${MAX_NODES} nodes`, `${data.length} entries`, "give the list of one tailnet");
    return { nodes: [], diagnostics };
  }
  const nodes: LiveNode[] = [];
  const strings = (v: unknown, path: string, what: string): string[] | null => {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      bad(path, `a list of ${what}`, short(v));
      return null;
    }
    return v as string[];
  };
  data.forEach((n: unknown, i) => {
    const at = `[${i}]`;
    if (n === null || typeof n !== "object" || Array.isArray(n)) return void bad(at, "a node object", short(n));
    const o = n as Record<string, unknown>;
    const name = typeof o.name === "string" ? o.name : "";
    const given = typeof o.given_name === "string" ? o.given_name : "";
    if (name === "" && given === "") return void bad(at, "a node with name or given_name", short(n));
    const ips = strings(o.ip_addresses, `${at}.ip_addresses`, "addresses");
    const tags = strings(o.tags, `${at}.tags`, "tags (tag:x)");
    const routes = strings(o.approved_routes, `${at}.approved_routes`, "CIDRs");
    if (!ips || !tags || !routes) return;
    let ok = true;
    ips.forEach((ip, j) => {
      if (!parseAddr(ip)) {
        ok = false;
        bad(`${at}.ip_addresses[${j}]`, "an IPv4 or IPv6 address", short(ip));
      }
    });
    tags.forEach((t, j) => {
      if (!/^tag:[A-Za-z][A-Za-z0-9._-]*$/.test(t)) {
        ok = false;
        bad(`${at}.tags[${j}]`, "tag:<name>", short(t));
      }
    });
    routes.forEach((r, j) => {
      if (!parsePrefix(r) || !r.includes("/")) {
        ok = false;
        bad(`${at}.approved_routes[${j}]`, "a CIDR", short(r));
      }
    });
    const user = o.user && typeof o.user === "object" && typeof (o.user as { name?: unknown }).name === "string" ? (o.user as { name: string }).name : undefined;
    const mail = o.user && typeof o.user === "object" ? (o.user as { email?: unknown }).email : undefined;
    const email = typeof mail === "string" && mail !== "" ? mail : undefined;
    const oidc = personDevice(o);
    const id = typeof o.id === "number" || (typeof o.id === "string" && /^\d+$/.test(o.id)) ? Number(o.id) : undefined;
    if (ok) nodes.push({ ...(id !== undefined ? { id } : {}), name: given || name, names: [...new Set([given, name].filter(Boolean))], user, ...(email ? { email } : {}), ...(oidc ? { oidc: true as const } : {}), tags, ips, approvedRoutes: routes });
  });
  return { nodes, diagnostics };
}

/**
 * `--nodes FILE` of check and plan: read with a size limit; a missing file, a
 * folder, a huge or non-UTF-8 file is a diagnostic, never a stack trace.
 */
/** 16 MiB: a tailnet of ~20,000 nodes. */
export const MAX_NODES_FILE = 16 << 20;

export function readNodesFile(file: string): { file: string; nodes: LiveNode[]; diagnostics: Diagnostic[] } {
  const fail = (expected: string, found: string, fix: string) => ({ file, nodes: [], diagnostics: [{ severity: "error" as const, file, path: "--nodes", expected, found, fix }] });
  const how = "save the coordinator's list with: headscale nodes list --output json > nodes.json";
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    return fail("a readable file", (e as NodeJS.ErrnoException).code ?? "unreadable", how);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return fail("a regular file", st.isDirectory() ? "a folder" : "not a regular file", how);
    if (st.size > MAX_NODES_FILE) return fail(`at most ${MAX_NODES_FILE} bytes`, `${st.size} bytes`, "give the list of one tailnet");
    const buf = Buffer.alloc(st.size);
    let off = 0;
    // Stryker disable next-line EqualityOperator: at off = size one more read asks for 0 bytes, gets 0 and stops
    while (off < st.size) {
      // Stryker disable next-line ArithmeticOperator: off is 0 at the first read, and that read takes a regular file whole
      const n = readSync(fd, buf, off, st.size - off, off);
      // Stryker disable next-line ConditionalExpression: a read gives 0 before the end only when the file shrinks while it is read
      if (n === 0) break;
      off += n;
    }
    const text = new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(0, off));
    return { file, ...parseNodesList(text, file) };
  } catch (e) {
    return fail("UTF-8 JSON text", e instanceof TypeError ? "bytes that are not UTF-8" : ((e as NodeJS.ErrnoException).code ?? "unreadable"), how);
  } finally {
    closeSync(fd);
  }
}
