/**
 * How `meshfleet render --out` writes its files (cli/commands/render.ts):
 * each new file created exclusively at its mode, whatever the umask; a path
 * where something other than a regular file stands is refused, and what is
 * there (a link and the file it points at) stays as it was.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RENDER_MARKER } from "../../cli/commands/render.ts";
import { renderHome } from "./render-run.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "mf-render-write-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const run = renderHome;
const modeOf = (p: string) => (fs.statSync(p).mode & 0o7777).toString(8).padStart(4, "0");

describe("render --out writes", () => {
  it("every file at its mode, also under a umask that would narrow it", async () => {
    const out = path.join(root, "modes");
    const before = process.umask(0o077);
    try {
      expect(await run(out)).toBe(0);
    } finally {
      process.umask(before);
    }
    const files = fs.readFileSync(path.join(out, RENDER_MARKER), "utf8").split("\n").slice(1).filter(Boolean);
    expect(files.length).toBeGreaterThan(10);
    const modes = new Map(files.map((f) => [f, modeOf(path.join(out, f))]));
    expect(modes.get("vps/meshfleet/nftables.nft")).toBe("0644");
    expect([...modes.values()].filter((m) => m === "0644").length).toBeGreaterThan(5);
    const scripts = files.filter((f) => f.endsWith(".sh"));
    for (const f of scripts) expect(modes.get(f), f).toBe("0755");
  });

  it("refuses a link where a file goes, and leaves the link and its target alone", async () => {
    const out = path.join(root, "link");
    expect(await run(out)).toBe(0);
    const target = path.join(root, "outside.txt");
    fs.writeFileSync(target, "not the render's");
    const at = path.join(out, "vps/meshfleet/nftables.nft");
    fs.rmSync(at);
    fs.symlinkSync(target, at);
    // Not listed in the marker: the render does not remove it first.
    fs.writeFileSync(path.join(out, RENDER_MARKER), fs.readFileSync(path.join(out, RENDER_MARKER), "utf8").replace("vps/meshfleet/nftables.nft\n", ""));
    await expect(run(out)).rejects.toThrow(/vps\/meshfleet\/nftables\.nft is there and is not a regular file \(a link or folder\); remove it, then render again/);
    expect(fs.lstatSync(at).isSymbolicLink()).toBe(true);
    expect(fs.readFileSync(target, "utf8")).toBe("not the render's");
  });

  it("refuses a regular file it finds where a file goes that the earlier render did not write (not in the marker): nothing else in DIR is touched", async () => {
    const out = path.join(root, "plain");
    expect(await run(out)).toBe(0);
    const at = path.join(out, "vps/meshfleet/nftables.nft");
    fs.writeFileSync(path.join(out, RENDER_MARKER), fs.readFileSync(path.join(out, RENDER_MARKER), "utf8").replace("vps/meshfleet/nftables.nft\n", ""));
    fs.writeFileSync(at, "someone's own file");
    fs.chmodSync(at, 0o600);
    await expect(run(out)).rejects.toThrow(/vps\/meshfleet\/nftables\.nft is there, and the earlier render did not write it \(it is not listed in \.meshfleet-render\); nothing was written\. Fix: move it out of /);
    expect(fs.readFileSync(at, "utf8")).toBe("someone's own file");
    expect(modeOf(at)).toBe("0600");
  });
});
