/**
 * Bad input at the loader, class by class (issue 17): files that leave the
 * fleet, names, DNS in fleet.yaml, size and shape, YAML. Each fixture under
 * fixtures/bad-input/<case>/ holds only the files that differ from the base
 * fleet (fleet-fixture.ts); `<name>.absent` deletes a base file and
 * `<name>.fixture` is copied as `<name>` (a .ts host with a syntax error must
 * not be a .ts file of the repo). Cases that need symlinks, folders, bytes
 * that are not UTF-8 or huge files are built here in a temp folder.
 *
 * Each case asserts the exact diagnostics: file, option path and expected,
 * and what "found" and "fix" must (not) contain. Every diagnostic, in every
 * case, must also pass `wellFormed`: file, expected and fix present, one line,
 * a fix that fixes (never `set  to`, never the bad value again).
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatDiagnostics, show, quote } from "../../core/diagnostics.ts";
import { LIMITS, loadFleetDir, parseYaml } from "../../core/load.ts";
import type { Diagnostic } from "../../core/types.ts";
import { writeFleet } from "./fleet-fixture.ts";

const FIXTURES = path.join(import.meta.dirname, "fixtures", "bad-input");

/** The base fleet plus one fixture's files, in a temp folder `<root>/fx`. */
function fixture(name: string): { dir: string; root: string; cleanup: () => void } {
  const files: Record<string, string | null> = {};
  for (const f of readdirSync(path.join(FIXTURES, name))) {
    if (f.endsWith(".absent")) files[f.slice(0, -".absent".length)] = null;
    else files[f.replace(/\.fixture$/, "")] = readFileSync(path.join(FIXTURES, name, f), "utf8");
  }
  const fx = writeFleet(files);
  return { ...fx, root: path.dirname(fx.dir) };
}

interface Want {
  file: string;
  path: string;
  expected: string | RegExp;
  found?: (string | RegExp)[];
  fix?: (string | RegExp)[];
  severity?: "error" | "warning";
}

/** Shown paths are relative to the temp folder; compare them as `<fleet>/x.yaml`. */
function rel(d: Diagnostic, dir: string): Diagnostic {
  const r = (s: string) => s.split(dir).join("<fleet>");
  return { ...d, file: r(d.file), found: r(d.found), fix: r(d.fix), expected: r(d.expected) };
}

function wellFormed(d: Diagnostic) {
  expect(d.file, "file").not.toBe("");
  expect(d.expected, "expected").not.toBe("");
  expect(d.found, "found").not.toBe("");
  expect(d.fix, "fix").not.toBe("");
  for (const s of [d.file, d.path, d.expected, d.found, d.fix]) expect(s).not.toMatch(/[\n\r\u0000\u001b]/);
  expect(d.fix).not.toMatch(/set\s{2,}|set\s+to\b/);
  expect(d.found.length, "found is quoted briefly").toBeLessThanOrEqual(400);
  // A fix that sets something must not set it to the value found wrong.
  const bad = /^"([^"]{2,})"/.exec(d.found)?.[1];
  if (bad) expect(d.fix).not.toMatch(new RegExp(`(\\bto |: )"?${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(["\\s.,;]|$)`));
  expect(formatDiagnostics([d])).not.toMatch(/\n\s+at /);
}

function check(diags: Diagnostic[], dir: string, want: Want[]) {
  const got = diags.map((d) => rel(d, dir));
  for (const d of got) wellFormed(d);
  expect(got.map((d) => `${d.file}: ${d.path}`).sort(), formatDiagnostics(got)).toEqual(want.map((w) => `${w.file}: ${w.path}`).sort());
  for (const w of want) {
    const d = got.find((g) => g.file === w.file && g.path === w.path)!;
    if (typeof w.expected === "string") expect(d.expected).toBe(w.expected);
    else expect(d.expected).toMatch(w.expected);
    expect(d.severity).toBe(w.severity ?? "error");
    for (const f of w.found ?? []) typeof f === "string" ? expect(d.found).toContain(f) : expect(d.found).toMatch(f);
    for (const f of w.fix ?? []) typeof f === "string" ? expect(d.fix).toContain(f) : expect(d.fix).toMatch(f);
  }
}

async function load(name: string) {
  const fx = fixture(name);
  try {
    return { r: await loadFleetDir(fx.dir), dir: fx.dir };
  } finally {
    fx.cleanup();
  }
}

const CYCLE = "imports without a cycle (a file cannot import itself, directly or through others)";
const INSIDE = "a file inside the hosts folder";
const NODE_NAME = "a node name that is one DNS label (letters, digits, '-', at most 63 characters)";
const NAMESERVER = "an IP address such as 1.1.1.1 or 2606:4700:4700::1111, or a DNS-over-HTTPS URL (https://…)";
const BASE_DOMAIN = "a MagicDNS domain that is not the server URL's host and does not contain it (clients would resolve the coordinator inside the tailnet and lose it)";

/** Fixture name -> the exact diagnostics, and which hosts the loader hands on. */
const CASES: Record<string, { want: Want[]; hosts?: string[]; fleet?: boolean }> = {
  // 1. imports and files that leave the fleet
  "import-outside": {
    want: [{ file: "<fleet>/laptop.yaml", path: "imports[1]", expected: INSIDE, found: ["leaves the hosts folder", "not read"], fix: ["copy the file into the hosts folder"] }],
    hosts: ["router", "vps"],
  },
  "import-absolute": {
    want: [{ file: "<fleet>/laptop.yaml", path: "imports[1]", expected: "a file inside the hosts folder, written ./<file>.yaml", found: ["absolute"] }],
    hosts: ["router", "vps"],
  },
  "import-cycle": {
    want: [{ file: "<fleet>/_b.yaml", path: "imports[0]", expected: CYCLE, found: ["_a.yaml → _b.yaml → _a.yaml"], fix: ["remove ./_a.yaml from imports in <fleet>/_b.yaml"] }],
    hosts: ["vps"],
  },
  "import-self": {
    want: [{ file: "<fleet>/laptop.yaml", path: "imports[1]", expected: CYCLE, found: ["laptop.yaml → laptop.yaml"] }],
    hosts: ["router", "vps"],
  },
  "import-missing": {
    want: [{ file: "<fleet>/laptop.yaml", path: "imports[1]", expected: "a file that exists", found: ['"./_common.yaml"'], fix: ["create <fleet>/_common.yaml"] }],
    hosts: ["router", "vps"],
  },
  "import-not-dotted": {
    want: [{ file: "<fleet>/laptop.yaml", path: "imports[1]", expected: "a profile name, or a file written ./<file>.yaml", fix: ["write it as ./_common.yaml"] }],
    hosts: ["router", "vps"],
  },
  "ts-syntax-error": {
    want: [{ file: "<fleet>/laptop.ts", path: "line 3:23", expected: "TypeScript that parses", found: [","] }],
    hosts: ["router", "vps"],
  },
  "duplicate-host-ts": {
    want: [{ file: "<fleet>/laptop.yaml", path: "", expected: 'one file for host "laptop"', found: ["first: <fleet>/laptop.ts"] }],
  },
  // 2. names
  "name-path-traversal": {
    want: [{ file: "<fleet>/laptop.yaml", path: "tailscale.hostname", expected: NODE_NAME, found: ['"../etc"', "not a path"], fix: ["set tailscale.hostname: etc"] }],
  },
  "name-nul": {
    want: [{ file: "<fleet>/laptop.yaml", path: "tailscale.hostname", expected: NODE_NAME, found: ['"lap\\u0000top"', "NUL"], fix: ["set tailscale.hostname: lap-top"] }],
  },
  "name-newline": {
    want: [{ file: "<fleet>/laptop.yaml", path: "tailscale.hostname", expected: NODE_NAME, found: ['"laptop\\nrouter"', "line break"] }],
  },
  "name-confusable": {
    want: [{ file: "<fleet>/laptop.yaml", path: "tailscale.hostname", expected: NODE_NAME, found: ["U+043E", "look-alike"] }],
  },
  "name-too-long": {
    want: [{ file: "<fleet>/laptop.yaml", path: "tailscale.hostname", expected: NODE_NAME, found: ["64 characters"] }],
  },
  "name-case-collision": {
    want: [{ file: "<fleet>/laptop.yaml", path: "tailscale.hostname", expected: /ignoring case/, found: ['"GW"', '"gw" (<fleet>/gw.yaml)'], fix: ["a name of its own"] }],
  },
  "file-name-uppercase": {
    want: [{ file: "<fleet>/GW.yaml", path: "", expected: /host file named <host>.yaml/, found: ["capital letters"], fix: ["gw.yaml is taken"] }],
  },
  // 3. DNS
  "dns-bad-nameserver": {
    want: [
      { file: "<fleet>/fleet.yaml", path: "dns.nameservers.global[1]", expected: NAMESERVER, found: ['"dns.google"'] },
      { file: "<fleet>/fleet.yaml", path: "dns.nameservers.global[2]", expected: NAMESERVER, found: ['"8.8.8.256"'] },
    ],
    fleet: false,
  },
  "dns-split-bad-domain": {
    want: [
      { file: "<fleet>/fleet.yaml", path: "dns.nameservers.split.home..arpa", expected: "a domain (such as home.arpa) mapped to a list of resolver addresses", found: ["empty label"] },
      { file: "<fleet>/fleet.yaml", path: "dns.nameservers.split.lan[0]", expected: NAMESERVER, found: ['"router.lan"'] },
    ],
    fleet: false,
  },
  "dns-split-not-a-list": {
    want: [{ file: "<fleet>/fleet.yaml", path: "dns.nameservers.split.home.arpa", expected: "an array", found: ['"192.168.8.1"'] }],
    fleet: false,
  },
  "basedomain-spelled-differently": {
    want: [{ file: "<fleet>/fleet.yaml", path: "dns.baseDomain", expected: BASE_DOMAIN, found: ['"HS.Example.COM."', "(same host)"], fix: ["tailnet.internal"] }],
    fleet: false,
  },
  "basedomain-parent": {
    want: [{ file: "<fleet>/fleet.yaml", path: "dns.baseDomain", expected: BASE_DOMAIN, found: ['"example.com."', "inside it"] }],
    fleet: false,
  },
  "basedomain-with-port": {
    want: [{ file: "<fleet>/fleet.yaml", path: "dns.baseDomain", expected: "a domain name such as tailnet.internal", found: ["a port"] }],
    fleet: false,
  },
  "dns-extra-records": {
    want: [
      { file: "<fleet>/fleet.yaml", path: "dns.extraRecords[1].name", expected: "a DNS name such as nas.home.arpa", found: ['"nas home"', "whitespace"] },
      { file: "<fleet>/fleet.yaml", path: "dns.extraRecords[2].value", expected: "an IPv6 address for an AAAA record, such as fd7a:115c:a1e0::1", found: ['"192.168.8.12"'], fix: ["type: A"] },
    ],
    fleet: false,
  },
  "http-server-url": {
    want: [{ file: "<fleet>/fleet.yaml", path: "coordinator.serverUrl", expected: /^an https:\/\/ URL/, severity: "warning", found: ['"http://hs.example.com"'] }],
    fleet: true,
  },
  "policy-silent-no-ops": {
    want: [
      { file: "<fleet>/fleet.yaml", path: 'policy.autoApprovers.routes["192.168.8.5/24"]', expected: /^a network address \(host bits zero\)/, found: ['"192.168.8.5/24"'], fix: ["write the network: 192.168.8.0/24"] },
      { file: "<fleet>/fleet.yaml", path: 'policy.autoApprovers.routes["fd00::1/64"]', expected: /^a network address/, fix: ["write the network: fd00::/64"] },
      { file: "<fleet>/fleet.yaml", path: 'policy.tagOwners["tag:backup"]', expected: /^a tag someone can assign/, severity: "warning", found: ["group:ops, which has no members"] },
    ],
    fleet: false,
  },
  // 5. YAML and messages
  "did-you-mean-fleet": {
    want: [
      { file: "<fleet>/fleet.yaml", path: "coordinator.serverURL", expected: /^one of the options host, serverUrl/, fix: ['did you mean "serverUrl"?'] },
      { file: "<fleet>/fleet.yaml", path: "coordinator.serverUrl", expected: /required/ },
      { file: "<fleet>/fleet.yaml", path: "nameservers", expected: /^one of the options coordinator/, fix: ['remove "nameservers"'] },
      { file: "<fleet>/fleet.yaml", path: "policy.tagOwner", expected: /^one of the options groups, tagOwners/, fix: ['did you mean "tagOwners"?'] },
      { file: "<fleet>/fleet.yaml", path: "policy.acl", expected: /^one of the options groups/, fix: ['did you mean "acls"?'] },
    ],
    fleet: false,
  },
  "typed-as-written": {
    want: [
      { file: "<fleet>/fleet.yaml", path: "tailscaleVersion", expected: "a string", found: ["1.90"] },
      { file: "<fleet>/fleet.yaml", path: "derp.regionId", expected: "at least 900", found: ["0x1F"] },
    ],
    fleet: false,
  },
  "yaml-multidoc": {
    want: [{ file: "<fleet>/laptop.yaml", path: "line 5:1", expected: "one YAML document per file", fix: ["remove the '---' line"] }],
    hosts: ["router", "vps"],
  },
  "yaml-alias-bomb": {
    want: [{ file: "<fleet>/laptop.yaml", path: /./ as unknown as string, expected: new RegExp(`^at most ${LIMITS.values} values in one file, aliases expanded`) }],
    hosts: ["router", "vps"],
  },
  "yaml-alias-self": {
    want: [{ file: "<fleet>/laptop.yaml", path: "lan[1]", expected: "an alias outside the value its anchor names", fix: ["write the value out"] }],
    hosts: ["router", "vps"],
  },
  "yaml-duplicate-key": {
    want: [{ file: "<fleet>/laptop.yaml", path: "address", expected: 'one "address" key in this mapping', found: ["line 3:1", "line 2:1"] }],
    hosts: ["router", "vps"],
  },
  "yaml-binary-tag": {
    want: [{ file: "<fleet>/laptop.yaml", path: "address", expected: "text, a number, true/false or null", found: ["!!binary"] }],
    hosts: ["router", "vps"],
  },
  // 4. size and shape
  "list-too-long": {
    want: [{ file: "<fleet>/laptop.yaml", path: "lan", expected: `a list of at most ${LIMITS.listItems} items (the documented limit)`, found: ["1002 items"] }],
    hosts: ["router", "vps"],
  },
};

describe("loader: bad input, class by class", () => {
  it("every fixture folder has a case, and every case a folder", () => {
    expect(readdirSync(FIXTURES).sort()).toEqual([...Object.keys(CASES), "yaml-anchors-ok"].sort());
  });

  for (const [name, c] of Object.entries(CASES)) {
    it(name, async () => {
      const { r, dir } = await load(name);
      if (name === "yaml-alias-bomb") {
        expect(r.diagnostics).toHaveLength(1);
        wellFormed(r.diagnostics[0]);
        expect(r.diagnostics[0].expected).toMatch(c.want[0].expected as RegExp);
      } else check(r.diagnostics, dir, c.want);
      if (c.hosts) expect(r.hosts.map((h) => h.name).sort()).toEqual(c.hosts);
      if (c.fleet === false) expect(r.fleet).toBeUndefined();
      if (c.fleet === true) expect(r.fleet).toBeDefined(); // a warning does not stop evaluation
    });
  }

  it("yaml-anchors-ok: aliases and << merge keys expand, never to null", async () => {
    const { r } = await load("yaml-anchors-ok");
    expect(r.diagnostics).toEqual([]);
    const laptop = r.hosts.find((h) => h.name === "laptop")!.source.value as Record<string, any>;
    expect(laptop["subnet-router"].routes).toEqual(["192.168.8.0/24"]);
    const router = r.hosts.find((h) => h.name === "router")!.source.value as Record<string, any>;
    expect(router.subnet_router).toBeUndefined();
    expect(router["subnet-router"].routes).toEqual(["192.168.8.0/24"]);
    expect(router.tailscale).toEqual({ tags: ["tag:router"], acceptRoutes: false });
  });

  it("merge keys: explicit keys win, then earlier sources; a merge of a non-mapping is an error", () => {
    const ok = parseYaml("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 0\n", "t.yaml");
    expect(ok.diagnostics).toEqual([]);
    expect((ok.value as any).c).toEqual({ x: 0, y: 1, z: 2 });
    const bad = parseYaml("a: &a [1]\nc:\n  <<: *a\n", "t.yaml");
    expect(bad.value).toBeUndefined();
    expect(bad.diagnostics.map((d) => [d.path, d.expected])).toEqual([["c.<<", "a mapping (or an alias to one) after <<:"]]);
  });

  it("an alias of a scalar keeps the scalar (never null)", () => {
    const r = parseYaml("a: &p 8443\nb: *p\nc: &s hello\nd: [*s, *s]\n", "t.yaml");
    expect(r.value).toEqual({ a: 8443, b: 8443, c: "hello", d: ["hello", "hello"] });
  });
});

describe("loader: files that are not plain files inside the folder", () => {
  const SECRET = "TOP-SECRET-OUTSIDE-CONTENT";
  function world() {
    const fx = writeFleet({});
    const root = path.dirname(fx.dir);
    mkdirSync(path.join(root, "outside"));
    writeFileSync(path.join(root, "outside", "secret.yaml"), `address: ${SECRET}\nimports: [client]\n`);
    return { ...fx, root };
  }

  it("a host file that is a symlink to a file outside: refused, target never read or quoted", async () => {
    const w = world();
    try {
      symlinkSync(path.join(w.root, "outside", "secret.yaml"), path.join(w.dir, "evil.yaml"));
      symlinkSync("../outside/secret.yaml", path.join(w.dir, "evil2.yaml"));
      const r = await loadFleetDir(w.dir);
      check(r.diagnostics, w.dir, [
        { file: "<fleet>/evil.yaml", path: "", expected: "a host file inside the hosts folder", found: ["symbolic link to a file outside the hosts folder", "not read"], fix: ["copy the file into the hosts folder"] },
        { file: "<fleet>/evil2.yaml", path: "", expected: "a host file inside the hosts folder", found: ["symbolic link to a file outside"] },
      ]);
      expect(JSON.stringify(r)).not.toContain(SECRET);
      expect(r.hosts.map((h) => h.name).sort()).toEqual(["laptop", "router", "vps"]);
    } finally {
      w.cleanup();
    }
  });

  it("a symlink inside the folder to another file inside is followed", async () => {
    const w = world();
    try {
      writeFileSync(path.join(w.dir, "_desk.yaml"), "imports: [client]\naddress: 10.0.0.9\ntailscale:\n  user: alice\n");
      symlinkSync("_desk.yaml", path.join(w.dir, "desk.yaml"));
      const r = await loadFleetDir(w.dir);
      expect(r.diagnostics).toEqual([]);
      expect(r.hosts.map((h) => h.name)).toContain("desk");
    } finally {
      w.cleanup();
    }
  });

  it("a dangling symlink, a directory and a FIFO where a host file is expected: named, no errno", async () => {
    const w = world();
    try {
      symlinkSync("gone.yaml", path.join(w.dir, "ghost.yaml"));
      mkdirSync(path.join(w.dir, "box.yaml"));
      const { execFileSync } = await import("node:child_process");
      execFileSync("mkfifo", [path.join(w.dir, "pipe.yaml")]); // reading it would hang the loader
      const r = await loadFleetDir(w.dir);
      check(r.diagnostics, w.dir, [
        { file: "<fleet>/box.yaml", path: "", expected: "a host file inside the hosts folder", found: ["a directory"], fix: ["<fleet>/box.yaml"] },
        { file: "<fleet>/ghost.yaml", path: "", expected: "a host file inside the hosts folder", found: ["symbolic link to a file that does not exist"] },
        { file: "<fleet>/pipe.yaml", path: "", expected: "a host file inside the hosts folder", found: ["special file"] },
      ]);
      expect(formatDiagnostics(r.diagnostics)).not.toMatch(/EISDIR|ENOENT|ENXIO/);
    } finally {
      w.cleanup();
    }
  });

  it("an import that is a symlink pointing outside, or a directory: refused, the host left out", async () => {
    const w = world();
    try {
      symlinkSync(path.join(w.root, "outside", "secret.yaml"), path.join(w.dir, "_shared.yaml"));
      mkdirSync(path.join(w.dir, "_dir.yaml"));
      writeFileSync(path.join(w.dir, "laptop.yaml"), "imports: [client, ./_shared.yaml]\naddress: 10.0.0.5\ntailscale:\n  user: alice\n");
      writeFileSync(path.join(w.dir, "router.yaml"), readFileSync(path.join(w.dir, "router.yaml"), "utf8").replace("[subnet-router]", "[subnet-router, ./_dir.yaml]"));
      const r = await loadFleetDir(w.dir);
      check(r.diagnostics, w.dir, [
        { file: "<fleet>/_shared.yaml", path: "", expected: "an imported file inside the hosts folder", found: ["outside the hosts folder"] },
        { file: "<fleet>/_dir.yaml", path: "", expected: "an imported file inside the hosts folder", found: ["a directory"] },
      ]);
      expect(JSON.stringify(r)).not.toContain(SECRET);
      expect(r.hosts.map((h) => h.name)).toEqual(["vps"]);
    } finally {
      w.cleanup();
    }
  });

  it("fleet.yaml that is a directory, or a link outside, or fleet.yaml and fleet.yml both: named, the fleet not handed on", async () => {
    for (const mode of ["dir", "link", "both"] as const) {
      const w = world();
      try {
        const f = path.join(w.dir, "fleet.yaml");
        if (mode === "both") writeFileSync(path.join(w.dir, "fleet.yml"), readFileSync(f, "utf8"));
        else {
          rmSync(f);
          if (mode === "dir") mkdirSync(f);
          else symlinkSync(path.join(w.root, "outside", "secret.yaml"), f);
        }
        const r = await loadFleetDir(w.dir);
        if (mode === "both") check(r.diagnostics, w.dir, [{ file: "<fleet>/fleet.yml", path: "", expected: "one fleet file", fix: ["remove fleet.yml"] }]);
        else {
          check(r.diagnostics, w.dir, [{ file: "<fleet>/fleet.yaml", path: "", expected: "the fleet file inside the hosts folder", found: [mode === "dir" ? "a directory" : "outside the hosts folder"] }]);
          expect(r.fleet).toBeUndefined();
        }
        expect(JSON.stringify(r)).not.toContain(SECRET);
      } finally {
        w.cleanup();
      }
    }
  });

  it("a folder of its own linked outside (hosts/x -> elsewhere) is still the hosts folder", async () => {
    const w = world();
    try {
      symlinkSync(w.dir, path.join(w.root, "alias"));
      const r = await loadFleetDir(path.join(w.root, "alias"));
      expect(r.diagnostics).toEqual([]);
    } finally {
      w.cleanup();
    }
  });
});

describe("loader: size, encoding and echo", () => {
  it("a file over the size limit is refused from its size, before it is read (in milliseconds)", async () => {
    const w = writeFleet({ "laptop.yaml": `imports: [client]\naddress: 10.0.0.5\nlan: [${Array(LIMITS.fileBytes).fill("10.0.0.0/24").join(",")}]\n` });
    try {
      const t = performance.now();
      const r = await loadFleetDir(w.dir);
      const ms = performance.now() - t;
      check(r.diagnostics, w.dir, [{ file: "<fleet>/laptop.yaml", path: "", expected: `a fleet file of at most ${LIMITS.fileBytes / 1024} KiB (the documented limit)`, found: [/^\d+ bytes$/] }]);
      expect(ms).toBeLessThan(1000);
    } finally {
      w.cleanup();
    }
  });

  it("too many lines (a long block list) is refused before parsing", () => {
    const text = `lan:\n${"- 1\n".repeat(LIMITS.lines)}`;
    const r = parseYaml(text, "big.yaml");
    expect(r.diagnostics.map((d) => [d.path, d.expected])).toEqual([["", `at most ${LIMITS.lines} lines and list items (the documented limit)`]]);
  });

  it("deep nesting is refused, never a stack overflow", () => {
    for (const text of [`a: ${"[".repeat(5000)}${"]".repeat(5000)}\n`, `a: ${"- ".repeat(3000)}x\n`, `${"a:\n ".repeat(60)}b: 1\n`.replace(/\n /g, (m, i) => "\n" + " ".repeat(i / 4))]) {
      const r = parseYaml(text, "deep.yaml");
      expect(r.value).toBeUndefined();
      expect(r.diagnostics.length).toBeGreaterThan(0);
      for (const d of r.diagnostics) wellFormed(d);
    }
  });

  it("not UTF-8, UTF-16 and binary files say so", async () => {
    const w = writeFleet({ "laptop.yaml": null });
    try {
      writeFileSync(path.join(w.dir, "laptop.yaml"), Buffer.from("imports: [client]\naddress: caf\xe9\n", "latin1"));
      writeFileSync(path.join(w.dir, "desk.yaml"), Buffer.from("\ufeffaddress: x\n", "utf16le"));
      writeFileSync(path.join(w.dir, "blob.yaml"), Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2]));
      const r = await loadFleetDir(w.dir);
      check(r.diagnostics, w.dir, [
        { file: "<fleet>/laptop.yaml", path: "", expected: "a UTF-8 text file", found: ["not UTF-8 at line 2", "0xe9"], fix: ["save the file as UTF-8"] },
        { file: "<fleet>/desk.yaml", path: "", expected: "a UTF-8 text file", found: ["UTF-16"] },
        { file: "<fleet>/blob.yaml", path: "", expected: "a UTF-8 text file", found: ["binary data"] },
      ]);
    } finally {
      w.cleanup();
    }
  });

  it("a huge or binary value is echoed as at most ~80 characters, escaped", () => {
    const s = show("x".repeat(10_000_000));
    expect(s.length).toBeLessThan(110);
    expect(s).toContain("10000000 characters");
    expect(quote("a\u0000b\u001b[31m")).toBe('"a\\u0000b\\u001b[31m"');
    expect(show({ a: "y".repeat(500) }).length).toBeLessThan(110);
  });
});
