/**
 * core/policy/live.ts: `headscale nodes list --output json` read into live
 * nodes, each refusal exact (path, expected, found), and the file reader's
 * limits. In process and fast, for Stryker (npm run mutate -- policy-io);
 * fleet-policy.test.ts holds the CLI's use of it.
 */
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_NODES_FILE, parseNodesList, readNodesFile } from "../../core/policy/live.ts";

const fix = "save the coordinator's list with: headscale nodes list --output json > FILE";
const e = (path: string, expected: string, found: string, f = fix) => ({ severity: "error", file: "n.json", path, expected, found, fix: f });
const parse = (v: unknown) => parseNodesList(typeof v === "string" ? v : JSON.stringify(v), "n.json");

describe("parseNodesList", () => {
  it("reads nodes: given_name first (both names kept, once), the user's name, tags, addresses and approved routes", () => {
    expect(parse([
      { name: "laptop-x1", given_name: "laptop", user: { name: "alice" }, tags: [], ip_addresses: ["100.64.0.1", "fd7a:115c:a1e0::1"], approved_routes: [] },
      { name: "web", given_name: "web", user: { id: 3 }, tags: ["tag:web", "tag:Web-2.x_y"], ip_addresses: ["100.64.0.2"], approved_routes: ["10.0.0.0/8", "::/0"] },
      { name: "r", user: "alice", ip_addresses: null, tags: null, approved_routes: null },
      { given_name: "g", user: null },
    ])).toEqual({
      nodes: [
        { name: "laptop", names: ["laptop", "laptop-x1"], user: "alice", tags: [], ips: ["100.64.0.1", "fd7a:115c:a1e0::1"], approvedRoutes: [] },
        { name: "web", names: ["web"], user: undefined, tags: ["tag:web", "tag:Web-2.x_y"], ips: ["100.64.0.2"], approvedRoutes: ["10.0.0.0/8", "::/0"] },
        { name: "r", names: ["r"], user: undefined, tags: [], ips: [], approvedRoutes: [] },
        { name: "g", names: ["g"], user: undefined, tags: [], ips: [], approvedRoutes: [] },
      ],
      diagnostics: [],
    });
  });

  it("refuses what is not a list of nodes, with no nodes", () => {
    expect(parse('"nodes"')).toEqual({ nodes: [], diagnostics: [e("", "a JSON list of nodes", '"nodes"')] });
    expect(parse("7")).toEqual({ nodes: [], diagnostics: [e("", "a JSON list of nodes", "7")] });
    expect(parse({ error: { code: 14, message: "connection refused" } })).toEqual({
      nodes: [], diagnostics: [e("error", "a list of nodes", 'headscale\'s error {"code":14,"message":"connection refused"}', "run the command again where headscale is running (it needs the server), then save its output")],
    });
    expect(parse("x".repeat(300))).toEqual({ nodes: [], diagnostics: [e("", "the JSON output of headscale nodes list --output json", `not JSON (Unexpected token 'x', "xxxxxxxxxx"... is not valid JSON)`)] });
  });

  it("leaves out a node with a bad entry and names each; keeps the good ones", () => {
    const r = parse([
      null, [1], { name: "a", tags: ["tag:x", 5] }, { name: "b", tags: ["xtag:b", "tag:b c", "tag:1b"] }, { name: "c", approved_routes: "10.0.0.0/8" },
      { name: "d", ip_addresses: ["100.64.0.4", "nope"] }, { name: "e", approved_routes: ["10.0.0.0/8", "10.0.0.1", "bogus"] }, { name: "ok", ip_addresses: ["100.64.0.9"] },
    ]);
    expect(r.diagnostics).toEqual([
      e("[0]", "a node object", "null"),
      e("[1]", "a node object", "[1]"),
      e("[2].tags", "a list of tags (tag:x)", '["tag:x",5]'),
      e("[3].tags[0]", "tag:<name>", '"xtag:b"'),
      e("[3].tags[1]", "tag:<name>", '"tag:b c"'),
      e("[3].tags[2]", "tag:<name>", '"tag:1b"'),
      e("[4].approved_routes", "a list of CIDRs", '"10.0.0.0/8"'),
      e("[5].ip_addresses[1]", "an IPv4 or IPv6 address", '"nope"'),
      e("[6].approved_routes[1]", "a CIDR", '"10.0.0.1"'),
      e("[6].approved_routes[2]", "a CIDR", '"bogus"'),
    ]);
    expect(r.nodes.map((n) => n.name)).toEqual(["ok"]);
  });

  it("shows a long value cut to 80 characters, one of 80 whole", () => {
    const at80 = "t".repeat(78); // 80 with its quotes
    const at81 = "t".repeat(79);
    expect(parse([{ name: "a", tags: [at80, at81] }]).diagnostics.map((d) => d.found)).toEqual([`"${at80}"`, `"${"t".repeat(76)}...`]);
  });

  it("takes up to 100,000 nodes, no more", () => {
    expect(parse(Array(100_000).fill({ name: "n" })).nodes).toHaveLength(100_000);
    expect(parse(Array(100_001).fill({ name: "n" }))).toEqual({ nodes: [], diagnostics: [e("", "at most 100000 nodes", "100001 entries", "give the list of one tailnet")] });
  });
});

describe("readNodesFile", () => {
  const root = mkdtempSync(join(tmpdir(), "mf-live-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const how = "save the coordinator's list with: headscale nodes list --output json > nodes.json";
  const refused = (f: string, expected: string, found: string, fix = how) => ({ file: f, nodes: [], diagnostics: [{ severity: "error", file: f, path: "--nodes", expected, found, fix }] });

  it("reads a file of up to 16 MiB; a bigger one is refused unread", () => {
    const f = join(root, "max.json");
    writeFileSync(f, `[${" ".repeat(MAX_NODES_FILE - 2)}]`);
    expect(readNodesFile(f)).toEqual({ file: f, nodes: [], diagnostics: [] });
    writeFileSync(f, `[${" ".repeat(MAX_NODES_FILE - 1)}]`);
    expect(readNodesFile(f)).toEqual(refused(f, `at most ${MAX_NODES_FILE} bytes`, `${MAX_NODES_FILE + 1} bytes`, "give the list of one tailnet"));
    const ok = join(root, "ok.json");
    writeFileSync(ok, JSON.stringify([{ name: "a", ip_addresses: ["100.64.0.1"] }]));
    expect(readNodesFile(ok)).toEqual({ file: ok, nodes: [{ name: "a", names: ["a"], user: undefined, tags: [], ips: ["100.64.0.1"], approvedRoutes: [] }], diagnostics: [] });
  });

  it("names a file that is not a regular one, and closes every file it opened", () => {
    const fifo = "/dev/null";
    expect(readNodesFile(fifo)).toEqual(refused(fifo, "a regular file", "not a regular file"));
    const open = () => readdirSync("/proc/self/fd").length;
    const ok = join(root, "one.json");
    writeFileSync(ok, "[]");
    const before = open();
    for (let i = 0; i < 20; i++) {
      readNodesFile(ok);
      readNodesFile(root);
      readNodesFile(fifo);
    }
    expect(open()).toBe(before);
    // The count itself works: a file left open shows.
    const fd = openSync(ok, "r");
    expect(open()).toBe(before + 1);
    closeSync(fd);
  });
});
