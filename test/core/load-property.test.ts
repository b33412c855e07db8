/**
 * Property test of the loader (issue 17): random host names, import graphs,
 * symlinks and YAML shapes. Whatever the folder holds, loadFleetDir
 *  - resolves (never throws), and every problem is a well-formed diagnostic;
 *  - opens no file outside the hosts folder: every open is recorded (node:fs
 *    is wrapped) and checked, a sentinel outside must never show up, and a
 *    FIFO outside would hang the test if it were ever read.
 */
import { execFileSync } from "node:child_process";
import * as realFs from "node:fs";
import os from "node:os";
import path from "node:path";
import fc from "fast-check";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

const opened: string[] = [];
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const track = <F extends (...a: any[]) => any>(f: F) => ((p: unknown, ...rest: unknown[]) => {
    if (typeof p === "string" || p instanceof URL || Buffer.isBuffer(p)) opened.push(String(p));
    return f(p, ...rest);
  }) as unknown as F;
  const wrapped = { ...fs, openSync: track(fs.openSync), readFileSync: track(fs.readFileSync), createReadStream: track(fs.createReadStream) };
  return { ...wrapped, default: wrapped };
});

const { loadFleetDir } = await import("../../core/load.ts");

const SENTINEL = "SENTINEL-OUTSIDE-THE-FLEET";
let root: string;

beforeAll(() => {
  root = realFs.mkdtempSync(path.join(os.tmpdir(), "mf-prop-"));
  realFs.mkdirSync(path.join(root, "outside"));
  realFs.writeFileSync(path.join(root, "outside", "secret.yaml"), `address: ${SENTINEL}\nimports: [client]\n`);
  execFileSync("mkfifo", [path.join(root, "outside", "pipe.yaml")]);
});
afterAll(() => realFs.rmSync(root, { recursive: true, force: true }));

const FRAGMENTS = ["&a ", "*a", "*b", "&b ", "<<: ", "<<: *a\n", "---\n", "...\n", "[", "]", "{", "}", "- ", ": ", "\n", "\n  ", "\n    ", ",", "!mkForce ", "!mkDefault ", "!!binary ", "!!str ", "!custom ", '"', "'", "# c\n", "key", "imports", "tailscale", "hostname", "address", "0.30", "0x1F", "~", "null", "\t", "é", "а", "\\u0000", "? ", "|\n  x\n", ">\n  y\n", "%YAML 1.2\n---\n"];

const yamlText = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => stringify(v)),
  fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 40 }).map((a) => a.join("")),
  fc.string({ maxLength: 200 }),
  fc.record({
    imports: fc.array(fc.constantFrom("client", "coordinator", "./_f0.yaml", "./_f1.yaml", "./_f2.yaml", "../outside/secret.yaml", "../outside/pipe.yaml", "./../outside/secret.yaml", "/etc/passwd", "./missing.yaml", "./sub/../_f0.yaml", "_f1.yaml", "./lnk.yaml", "./dir.yaml", "./h0.yaml", "../fx/_f2.yaml", "./lnkdir/secret.yaml", "./lnkdir/pipe.yaml", "./lnkdir/../lnk.yaml"), { maxLength: 4 }),
    address: fc.constantFrom("10.0.0.1", SENTINEL.toLowerCase()),
    tailscale: fc.record({ hostname: fc.oneof(fc.string({ maxLength: 70 }), fc.constantFrom("GW", "gw", "../etc", "a\nb", "rоuter", "h0", "H0")) }, { requiredKeys: [] }),
  }, { requiredKeys: [] }).map((v) => stringify(v)),
);

const hostName = fc.oneof(
  fc.stringMatching(/^[a-z0-9-]{1,12}$/),
  fc.constantFrom("gw", "GW", "h0", "H0", "rоuter", "a_b", "-x", "x".repeat(70), "fleet", "a.b", "..", "new\nline", "é"),
  fc.string({ minLength: 1, maxLength: 20 }),
);

const entry = fc.record({
  name: hostName,
  ext: fc.constantFrom("yaml", "yml", "YAML", "txt"),
  kind: fc.constantFrom("file", "file", "file", "link-secret", "link-pipe", "link-inside", "dangling", "dir", "link-outside-dir"),
  text: yamlText,
});

const world = fc.record({
  fleet: fc.oneof(fc.constant("coordinator:\n  host: h0\n  serverUrl: https://hs.example.com\nusers: [alice]\n"), yamlText),
  hosts: fc.array(entry, { maxLength: 6 }),
  includes: fc.array(yamlText, { minLength: 3, maxLength: 3 }),
});

let n = 0;
function build(w: any): string {
  const dir = path.join(root, `fx${n++}`);
  realFs.mkdirSync(dir);
  realFs.writeFileSync(path.join(dir, "fleet.yaml"), w.fleet);
  w.includes.forEach((t: string, i: number) => realFs.writeFileSync(path.join(dir, `_f${i}.yaml`), t));
  realFs.mkdirSync(path.join(dir, "dir.yaml"));
  realFs.symlinkSync(path.join(root, "outside", "secret.yaml"), path.join(dir, "lnk.yaml"));
  realFs.symlinkSync(path.join(root, "outside"), path.join(dir, "lnkdir")); // a folder inside that is the one outside
  for (const h of w.hosts) {
    const file = path.join(dir, `${h.name}.${h.ext}`);
    if (path.dirname(file) !== dir || h.name.includes("\0")) continue; // not a name a folder can hold
    try {
      switch (h.kind) {
        case "file": realFs.writeFileSync(file, h.text, { flag: "wx" }); break; // never through a link made earlier (a FIFO would block)
        case "link-secret": realFs.symlinkSync(path.join(root, "outside", "secret.yaml"), file); break;
        case "link-pipe": realFs.symlinkSync("../outside/pipe.yaml", file); break;
        case "link-inside": realFs.symlinkSync("_f0.yaml", file); break;
        case "dangling": realFs.symlinkSync("nowhere.yaml", file); break;
        case "dir": realFs.mkdirSync(file); break;
        case "link-outside-dir": realFs.symlinkSync(path.join(root, "outside"), file); break;
      }
    } catch {
      // the same name twice, or one the file system refuses: skip it
    }
  }
  return dir;
}

describe("loader: property", () => {
  it("the recorder sees the loader's reads (so the property below can fail)", async () => {
    const dir = build({ fleet: "users: [alice]\n", hosts: [{ name: "h1", ext: "yaml", kind: "file", text: "address: 10.0.0.1\n" }], includes: ["", "", ""] });
    opened.length = 0;
    await loadFleetDir(dir);
    expect(opened.map((p) => path.basename(p)).sort()).toEqual(["fleet.yaml", "h1.yaml"]);
  });

  it("never throws, always classifies, never opens a file outside the hosts folder", async () => {
    await fc.assert(
      fc.asyncProperty(world, async (w) => {
        if (process.env.MESHFLEET_PROPERTY_LOG) realFs.appendFileSync(process.env.MESHFLEET_PROPERTY_LOG, JSON.stringify(w) + "\n");
        const dir = build(w);
        const realDir = realFs.realpathSync(dir);
        opened.length = 0;
        const r = await loadFleetDir(dir);
        for (const p of opened) {
          const real = realFs.realpathSync(path.resolve(p));
          expect(real === realDir || real.startsWith(realDir + path.sep), `opened ${p}`).toBe(true);
        }
        expect(JSON.stringify(r)).not.toContain(SENTINEL);
        for (const d of r.diagnostics) {
          expect(d.file).not.toBe("");
          expect(d.expected).not.toBe("");
          expect(d.found).not.toBe("");
          expect(d.fix).not.toBe("");
          for (const s of [d.file, d.path, d.expected, d.found, d.fix]) expect(s).not.toMatch(/[\n\r\u0000]/);
          expect(d.fix).not.toMatch(/set\s{2,}|^set\s+to /);
          expect(d.found.length).toBeLessThanOrEqual(400);
        }
        for (const h of r.hosts) expect(path.resolve(h.source.file).startsWith(path.resolve(dir) + path.sep)).toBe(true);
        for (const f of Object.keys(r.imports ?? {})) expect(path.resolve(f).startsWith(path.resolve(dir) + path.sep)).toBe(true);
        realFs.rmSync(dir, { recursive: true, force: true });
      }),
      { numRuns: Number(process.env.MESHFLEET_PROPERTY_RUNS ?? 150) },
    );
  }, 120_000);
});
