/**
 * The loader names a host file by displayPath (relative to the working
 * folder when inside it); for the entries of one folder it works that out
 * once per folder (displayIn). The two must agree on every kind of folder.
 */
import path from "node:path";
import { describe, expect, it } from "vitest";
import { displayIn, displayPath } from "../../core/load.ts";

describe("displayIn: displayPath of a folder's entries, one path.relative per folder", () => {
  it("agrees with displayPath(path.join(dir, entry)) for folders inside, outside, at and around the working folder", () => {
    const cwd = process.cwd();
    const dirs = [cwd, `${cwd}/`, path.join(cwd, "hosts", "home"), "hosts/home", "./hosts/home/", "hosts/../hosts/office", "..", "../elsewhere", path.join(cwd, "..", "sibling"), "/", "/srv/fleet", ".", "./", "..hidden", "a/..b"];
    const entries = ["h1.yaml", "x-y.yml", "vps.ts", "..yaml", ".hidden.yaml", "_draft.yaml", "a b.yaml"];
    let n = 0;
    for (const dir of dirs)
      for (const entry of entries) {
        expect(displayIn(dir)(entry), `${dir} + ${entry}`).toBe(displayPath(path.join(dir, entry)));
        n++;
      }
    expect(n).toBe(dirs.length * entries.length);
  });
});
