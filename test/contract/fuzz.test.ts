/**
 * Property tests (fast-check, bounded runs) of what an attacker controls:
 * the bundle the agent reads, and the paths in it against the agent's own
 * path handling (a temp root with folders and links a service user planted).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ABS_PATH, bundleHash, canonicalJson, parseBundle, sha256, type Bundle } from "../../contract/bundle.ts";
import { realHost, UnsafePathError } from "../../agent/host.ts";
import { emptyBundle } from "../../agent/state.ts";
import { NEEDS_ROOT, skipUnlessCi } from "../lab/ci-gate.ts";

const RUNS = Number(process.env.MESHFLEET_FUZZ_RUNS ?? 150);

function sealedWith(files: Bundle["files"]): Bundle {
  const { hash: _h, ...body } = emptyBundle("fuzz");
  const b = { ...body, files };
  return { ...b, hash: bundleHash(b) };
}
const fileAt = (p: string, content = "x\n"): Bundle["files"][number] => ({ path: p, mode: "0644", owner: "root", group: "root", sha256: sha256(content), content, secret: false });

describe("parseBundle on hostile input", () => {
  it("never throws, and every problem is one line", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (x) => {
        const r = parseBundle(x);
        if (!r.ok) for (const p of r.problems) expect(p).not.toMatch(/\n/);
      }),
      { numRuns: RUNS },
    );
  });

  it("a valid bundle with one field replaced by anything is refused or still exactly valid (never throws)", () => {
    const base = sealedWith([fileAt("/etc/a.conf")]) as unknown as Record<string, unknown>;
    fc.assert(
      fc.property(fc.constantFrom(...Object.keys(base)), fc.jsonValue({ maxDepth: 3 }), (k, v) => {
        const r = parseBundle({ ...base, [k]: v });
        if (r.ok) expect(bundleHash(r.bundle)).toBe(r.bundle.hash);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("canonicalJson (what the bundle hash is taken over)", () => {
  /** The definition: JSON.stringify of a copy with keys sorted at every level. */
  const sorted = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(sorted) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted((v as Record<string, unknown>)[k])])) : v;
  it("equals JSON.stringify of the key-sorted copy, and does not depend on key order", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), (x) => {
        const c = canonicalJson(x);
        expect(c).toBe(JSON.stringify(sorted(x)));
        const reversed = JSON.parse(JSON.stringify(x), (_k, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).reverse()) : v));
        expect(canonicalJson(reversed)).toBe(c);
      }),
      { numRuns: RUNS * 2 },
    );
  });
});

describe("bundle paths (item 11)", () => {
  const messy = fc.array(fc.constantFrom("/", "/", ".", "..", "a", "b", "\0", "\n", " ", "//"), { maxLength: 10 }).map((xs) => xs.join(""));
  it("an accepted path is absolute and normalized, and under any root it stays inside that root", () => {
    fc.assert(
      fc.property(messy, (p) => {
        const r = parseBundle(sealedWith([fileAt(p)]));
        const normal = p.startsWith("/") && path.posix.normalize(p) === p && !p.endsWith("/") && !p.includes("\0") && !p.includes("\n");
        expect(r.ok).toBe(normal && ABS_PATH.test(p));
        if (r.ok) {
          const root = "/tmp/some-root";
          expect(realHost(root).p(p).startsWith(`${root}/`)).toBe(true);
          expect(p.split("/").slice(1).every((s) => s !== "" && s !== "." && s !== "..")).toBe(true);
        }
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("every normalized absolute path of ordinary segments is accepted (nothing refused for nothing)", () => {
    const seg = fc.stringMatching(/^[A-Za-z0-9._@:+-]{1,12}$/).filter((s) => s !== "." && s !== "..");
    fc.assert(
      fc.property(fc.array(seg, { minLength: 1, maxLength: 5 }), (segs) => {
        expect(parseBundle(sealedWith([fileAt(`/${segs.join("/")}`)])).ok).toBe(true);
      }),
      { numRuns: RUNS },
    );
  });
});

describe.skipIf(skipUnlessCi(process.getuid?.() !== 0 && NEEDS_ROOT))("the agent's writes under what a service user planted (item 2)", () => {
  const EVIL = 1234;
  type Plant = "none" | "link-at-file" | "link-at-old-temp" | "link-as-folder" | "link-above-new-folder" | "evil-folder";
  it("root never writes, chowns or creates anything outside the host root, whatever is planted", () => {
    fc.assert(
      fc.property(
        fc.array(fc.stringMatching(/^[a-z]{1,6}$/), { minLength: 1, maxLength: 3 }),
        fc.stringMatching(/^[a-z]{1,6}$/),
        fc.constantFrom<Plant>("none", "link-at-file", "link-at-old-temp", "link-as-folder", "link-above-new-folder", "evil-folder"),
        fc.constantFrom(0, EVIL),
        (dirs, name, plant, owner) => {
          const root = fs.mkdtempSync(path.join(os.tmpdir(), "mf-fuzz-root-"));
          const victimDir = fs.mkdtempSync(path.join(os.tmpdir(), "mf-fuzz-victim-"));
          const victim = path.join(victimDir, name);
          fs.writeFileSync(victim, "VICTIM\n", { mode: 0o600 });
          try {
            const dir = path.join(root, ...dirs);
            fs.mkdirSync(dir, { recursive: true });
            // The service user owns the folder the file goes in, as headscale owns /var/lib/headscale.
            if (plant !== "none") fs.chownSync(dir, EVIL, EVIL);
            const planted = (p: string, to: string) => {
              fs.symlinkSync(to, p);
              fs.lchownSync(p, EVIL, EVIL);
            };
            let target = path.join(dir, name);
            if (plant === "link-at-file") planted(target, victim);
            if (plant === "link-at-old-temp") planted(path.join(dir, `.${name}.meshfleet-tmp`), victim);
            if (plant === "link-as-folder") {
              planted(path.join(dir, "sub"), victimDir);
              target = path.join(dir, "sub", name);
            }
            if (plant === "link-above-new-folder") {
              // The folder the file goes in does not exist yet: making it must not go through the link either.
              planted(path.join(dir, "sub"), victimDir);
              target = path.join(dir, "sub", "new", name);
            }
            const hostPath = "/" + path.relative(root, target);
            const before = fs.readdirSync(victimDir).sort();
            try {
              realHost(root).writeFileAtomic(hostPath, "NEW\n", 0o600, owner, owner);
            } catch (e) {
              if (!(e instanceof UnsafePathError)) throw e;
            }
            expect(fs.readFileSync(victim, "utf8")).toBe("VICTIM\n");
            expect(fs.statSync(victim).uid).toBe(0);
            expect(fs.readdirSync(victimDir).sort()).toEqual(before);
            // Root's own file never lands in the service user's folder.
            if (plant !== "none" && owner === 0) expect(fs.existsSync(path.join(dir, name)) && fs.lstatSync(path.join(dir, name)).isFile()).toBe(false);
          } finally {
            fs.rmSync(root, { recursive: true, force: true });
            fs.rmSync(victimDir, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: Math.min(RUNS, 80) },
    );
  });
});
