/**
 * `meshfleet render --out DIR` over an earlier render (cli/commands/render.ts):
 * the files both renders write are overwritten in place (same inode, no
 * unlink and create per file; a file already holding the bytes is not
 * written), the result is byte for byte and mode for mode
 * what a render into a new folder writes, and anything in the way (a link
 * where a file or folder goes) is refused before the earlier render is
 * touched. Nothing outside DIR is reached: not through a linked folder, not
 * through a hard link to a rendered file.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RENDER_MARKER } from "../../cli/commands/render.ts";
import { renderHome } from "./render-run.ts";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "mf-render-over-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const run = renderHome;

/** Every entry under dir: a file's content and mode, a folder, a link's target. */
function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const p = path.join(dir, r);
      const mode = (fs.lstatSync(p).mode & 0o7777).toString(8);
      if (e.isSymbolicLink()) out.set(r, `link -> ${fs.readlinkSync(p)}`);
      else if (e.isDirectory()) {
        out.set(r, `dir ${mode}`);
        walk(r);
      } else out.set(r, `${mode} ${fs.readFileSync(p, "utf8")}`);
    }
  };
  walk("");
  return out;
}

const listed = (out: string) => fs.readFileSync(path.join(out, RENDER_MARKER), "utf8").split("\n").slice(1).filter(Boolean);
const NFT = "vps/meshfleet/nftables.nft";

describe("render --out over an earlier render", () => {
  it("overwrites the files in place and ends as a render into a new folder does", async () => {
    const fresh = path.join(root, "fresh");
    const out = path.join(root, "again");
    expect(await run(fresh)).toBe(0);
    expect(await run(out)).toBe(0);
    const files = listed(out);
    expect(files.length).toBeGreaterThan(10);
    // An open descriptor per file: written in place, each still names the file (1 link) and reads
    // the new content; unlinked and made anew, it would hold a deleted inode (0 links), never reused meanwhile.
    const fds = new Map(files.map((f) => [f, fs.openSync(path.join(out, f), "r")]));
    // Edits the next render must undo: content, a longer and a shorter file, a mode.
    fs.writeFileSync(path.join(out, NFT), "edited, and longer than a line: ".repeat(400));
    const short = files.find((f) => f !== NFT && fs.statSync(path.join(out, f)).size > 100)!;
    fs.writeFileSync(path.join(out, short), "x");
    fs.chmodSync(path.join(out, NFT), 0o600);
    // A file already holding the render's bytes is not written again: its time stays.
    const same = files.find((f) => f !== NFT && f !== short)!;
    const past = new Date("2020-01-02T03:04:05Z");
    fs.utimesSync(path.join(out, same), past, past);
    expect(await run(out)).toBe(0);
    expect(fs.statSync(path.join(out, same)).mtimeMs).toBe(past.getTime());
    expect(fs.statSync(path.join(out, NFT)).mtimeMs).toBeGreaterThan(past.getTime());
    expect(tree(out)).toEqual(tree(fresh));
    try {
      for (const [f, fd] of fds) {
        expect(fs.fstatSync(fd).nlink, f).toBe(1);
        expect(fs.fstatSync(fd).ino, f).toBe(fs.statSync(path.join(out, f)).ino);
      }
    } finally {
      for (const fd of fds.values()) fs.closeSync(fd);
    }
  });

  it("refuses a link where a file goes before changing anything: the earlier render stays whole", async () => {
    const out = path.join(root, "link-file");
    expect(await run(out)).toBe(0);
    // A stale file of the earlier render (listed, not written by this one): the clean-up must not run either.
    fs.mkdirSync(path.join(out, "stale/etc"), { recursive: true });
    fs.writeFileSync(path.join(out, "stale/etc/old.conf"), "from an old render");
    fs.appendFileSync(path.join(out, RENDER_MARKER), "stale/etc/old.conf\n");
    fs.writeFileSync(path.join(out, NFT), "the user's edit");
    const target = path.join(root, "outside.txt");
    fs.writeFileSync(target, "not the render's");
    const at = listed(out).find((f) => f.endsWith(".service"))!;
    fs.rmSync(path.join(out, at));
    fs.symlinkSync(target, path.join(out, at));
    const before = tree(out);
    await expect(run(out)).rejects.toThrow(new RegExp(`${at.replace(/[./]/g, "\\$&")} is there and is not a regular file \\(a link or folder\\); remove it, then render again \\(nothing was written\\)`));
    expect(tree(out)).toEqual(before);
    expect(fs.readFileSync(target, "utf8")).toBe("not the render's");
  });

  it("refuses a link where a folder goes, and reaches nothing through it", async () => {
    const out = path.join(root, "link-folder");
    expect(await run(out)).toBe(0);
    // vps/etc made a link to a folder outside, holding a file where the render writes one.
    const outside = path.join(root, "outside-etc");
    fs.cpSync(path.join(out, "vps/etc"), outside, { recursive: true });
    const victim = listed(out).find((f) => f.startsWith("vps/etc/"))!.slice("vps/etc/".length);
    fs.writeFileSync(path.join(outside, victim), "someone else's");
    // One of its files stale in the marker: the old clean-up unlinked it through the link.
    fs.appendFileSync(path.join(out, RENDER_MARKER), `vps/etc/${victim}.old\n`);
    fs.writeFileSync(path.join(outside, `${victim}.old`), "someone else's too");
    fs.rmSync(path.join(out, "vps/etc"), { recursive: true });
    fs.symlinkSync(outside, path.join(out, "vps/etc"));
    const before = tree(outside);
    await expect(run(out)).rejects.toThrow(/vps\/etc is there and is not a folder \(a link or file\), where the render puts a folder; nothing was written/);
    expect(tree(outside)).toEqual(before);
    expect(fs.readFileSync(path.join(outside, victim), "utf8")).toBe("someone else's");
    expect(fs.readlinkSync(path.join(out, "vps/etc"))).toBe(outside);
  });

  it("replaces a rendered file that has another hard link, leaving the other name's content alone", async () => {
    const out = path.join(root, "hardlink");
    expect(await run(out)).toBe(0);
    const want = fs.readFileSync(path.join(out, NFT), "utf8");
    const other = path.join(root, "kept-nft");
    fs.linkSync(path.join(out, NFT), other);
    fs.writeFileSync(other, "the user's copy, edited");
    expect(await run(out)).toBe(0);
    expect(fs.readFileSync(path.join(out, NFT), "utf8")).toBe(want);
    expect(fs.readFileSync(other, "utf8")).toBe("the user's copy, edited");
    expect(fs.statSync(path.join(out, NFT)).nlink).toBe(1);
  });

  it("a stale file goes with its emptied folders, a stale file where a folder now goes makes way for it", async () => {
    const out = path.join(root, "stale");
    expect(await run(out)).toBe(0);
    fs.mkdirSync(path.join(out, "gone/etc"), { recursive: true });
    fs.writeFileSync(path.join(out, "gone/etc/old.conf"), "old");
    // The earlier render had a file at vps/etc (the new one needs a folder there): moved aside by hand here.
    fs.renameSync(path.join(out, "vps/etc"), path.join(root, "vps-etc-aside"));
    fs.writeFileSync(path.join(out, "vps/etc"), "an old render's file");
    fs.appendFileSync(path.join(out, RENDER_MARKER), "gone/etc/old.conf\nvps/etc\n");
    expect(await run(out)).toBe(0);
    expect(fs.existsSync(path.join(out, "gone"))).toBe(false);
    expect(fs.lstatSync(path.join(out, "vps/etc")).isDirectory()).toBe(true);
    expect(tree(path.join(out, "vps/etc"))).toEqual(tree(path.join(root, "vps-etc-aside")));
  });

  it("a stale folder that is a link: nothing is removed through it, and the render goes on", async () => {
    const out = path.join(root, "stale-link");
    expect(await run(out)).toBe(0);
    const mine = path.join(root, "mine");
    fs.mkdirSync(path.join(mine, "etc"), { recursive: true });
    fs.writeFileSync(path.join(mine, "etc/app.conf"), "the user's");
    fs.writeFileSync(path.join(mine, "notes.txt"), "the user's too");
    fs.symlinkSync(mine, path.join(out, "oldhost"));
    fs.appendFileSync(path.join(out, RENDER_MARKER), "oldhost/etc/app.conf\n");
    const before = tree(mine);
    expect(await run(out)).toBe(0);
    expect(tree(mine)).toEqual(before);
    expect(fs.readlinkSync(path.join(out, "oldhost"))).toBe(mine);
    expect(listed(out)).not.toContain("oldhost/etc/app.conf");
  });

  it("a link where the earlier render had a file and the new one needs a folder is refused; nothing is written through it", async () => {
    const out = path.join(root, "stale-file-link");
    expect(await run(out)).toBe(0);
    const outside = path.join(root, "outside-etc2");
    fs.cpSync(path.join(out, "vps/etc"), outside, { recursive: true });
    const victim = listed(out).find((f) => f.startsWith("vps/etc/"))!.slice("vps/etc/".length);
    fs.writeFileSync(path.join(outside, victim), "someone else's");
    fs.rmSync(path.join(out, "vps/etc"), { recursive: true });
    fs.symlinkSync(outside, path.join(out, "vps/etc"));
    fs.appendFileSync(path.join(out, RENDER_MARKER), "vps/etc\n");
    const before = tree(outside);
    await expect(run(out)).rejects.toThrow(/vps\/etc is there and is not a folder \(a link or file\), where the render puts a folder; nothing was written/);
    expect(tree(outside)).toEqual(before);
  });

  it("a marker with no files listed still has every path checked: a link where a folder goes is refused", async () => {
    const out = path.join(root, "empty-marker");
    const elsewhere = path.join(root, "elsewhere");
    fs.mkdirSync(out);
    fs.mkdirSync(elsewhere);
    const head = fs.readFileSync(path.join(root, "fresh", RENDER_MARKER), "utf8").split("\n")[0] + "\n";
    fs.writeFileSync(path.join(out, RENDER_MARKER), head);
    fs.writeFileSync(path.join(out, "notes.txt"), "the user's");
    fs.symlinkSync(elsewhere, path.join(out, "vps"));
    await expect(run(out)).rejects.toThrow(/vps is there and is not a folder/);
    expect(fs.readdirSync(elsewhere)).toEqual([]);
    expect(fs.readFileSync(path.join(out, "notes.txt"), "utf8")).toBe("the user's");
  });

  it("a folder where a file goes, holding a stale file and a user's file, is refused before the stale file goes", async () => {
    const out = path.join(root, "dir-at-file");
    expect(await run(out)).toBe(0);
    fs.rmSync(path.join(out, NFT));
    fs.mkdirSync(path.join(out, NFT));
    fs.writeFileSync(path.join(out, NFT, "part.nft"), "stale");
    fs.writeFileSync(path.join(out, NFT, "user.txt"), "the user's");
    fs.appendFileSync(path.join(out, RENDER_MARKER), `${NFT}/part.nft\n`);
    const before = tree(out);
    await expect(run(out)).rejects.toThrow(/nftables\.nft is there and is not a regular file/);
    expect(tree(out)).toEqual(before);
  });

  it("a read-only file with the render's bytes gets its mode back without a write; folder modes come back too", async () => {
    const fresh = path.join(root, "fresh");
    const out = path.join(root, "modes");
    expect(await run(out)).toBe(0);
    fs.chmodSync(path.join(out, NFT), 0o444);
    fs.chmodSync(path.join(out, "vps/meshfleet"), 0o700);
    const ino = fs.statSync(path.join(out, NFT)).ino;
    expect(await run(out)).toBe(0);
    expect(fs.statSync(path.join(out, NFT)).ino).toBe(ino);
    expect(tree(out)).toEqual(tree(fresh));
  });

  it("an empty DIR is written whole and renamed over it; the marker is never missing", async () => {
    const out = path.join(root, "empty-dir");
    fs.mkdirSync(out);
    const ino = fs.statSync(out).ino;
    expect(await run(out)).toBe(0);
    expect(fs.statSync(out).ino).not.toBe(ino); // the hidden folder, renamed over the empty one
    expect(tree(out)).toEqual(tree(path.join(root, "fresh")));
    expect(fs.readdirSync(root).filter((e) => e.includes("meshfleet-render-"))).toEqual([]);
    expect(fs.existsSync(path.join(out, `${RENDER_MARKER}.next`))).toBe(false);
  });
});
