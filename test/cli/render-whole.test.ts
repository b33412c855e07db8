/**
 * `meshfleet render --out DIR` into a new DIR (cli/commands/render.ts): the
 * files are written into a hidden folder beside DIR and renamed into place, so
 * DIR never exists half-written. A render killed while it writes leaves no
 * DIR (its hidden folder stays; the next render does not need it), and the
 * next render writes DIR whole.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { command as render, RENDER_MARKER } from "../../cli/commands/render.ts";
import { generateFleet } from "../../bench/eval-scale/generate.ts";

const REPO = path.resolve(import.meta.dirname, "../..");
const root = fs.mkdtempSync(path.join(os.tmpdir(), "mf-render-whole-"));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const run = async (fleet: string, out: string) => {
  const log = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    return await render.run(["--hosts-dir", fleet, "--out", out]);
  } finally {
    log.mockRestore();
  }
};

describe("render --out into a new folder", () => {
  it("writes it whole and leaves nothing beside it", async () => {
    const parent = path.join(root, "plain");
    const out = path.join(parent, "deeper", "out");
    expect(await run("hosts/home", out)).toBe(0);
    expect(fs.readdirSync(path.dirname(out))).toEqual(["out"]);
    const files = fs.readFileSync(path.join(out, RENDER_MARKER), "utf8").split("\n").slice(1).filter(Boolean);
    for (const f of files) expect(fs.statSync(path.join(out, f)).isFile(), f).toBe(true);
    // The folder's mode is what mkdir under this umask makes, not mkdtemp's 0700.
    expect(fs.statSync(out).mode & 0o777).toBe(0o777 & ~process.umask());
  });

  it("killed while it writes, leaves no half-written folder; the next render writes it whole", async () => {
    const fleet = path.join(root, "fleet");
    fs.mkdirSync(fleet);
    generateFleet(fleet, 400);
    const parent = path.join(root, "killed");
    fs.mkdirSync(parent);
    const out = path.join(parent, "out");
    // The TypeScript itself (not a prebuilt dist/cli that may be older than it).
    const child = spawn(process.execPath, [path.join(REPO, "bin", "meshfleet.mjs"), "render", "--hosts-dir", fleet, "--out", out], {
      cwd: REPO,
      env: { ...process.env, MESHFLEET_TSX: "1" },
      stdio: "ignore",
    });
    const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on("exit", (code, signal) => resolve(signal ?? code)));
    let alive = true;
    void exited.then(() => (alive = false));
    // Kill it once it has written something, wherever that is: DIR itself, or a folder beside it.
    const written = () => fs.existsSync(out) || fs.readdirSync(parent).some((n) => fs.existsSync(path.join(parent, n, RENDER_MARKER)));
    while (alive && !written()) await new Promise((r) => setTimeout(r, 1));
    child.kill("SIGKILL");
    expect(await exited, "the render finished before it could be killed: make the fleet larger").toBe("SIGKILL");
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(parent).every((n) => n.startsWith(".out.meshfleet-render-"))).toBe(true);

    expect(await run(fleet, out)).toBe(0);
    const files = fs.readFileSync(path.join(out, RENDER_MARKER), "utf8").split("\n").slice(1).filter(Boolean);
    expect(files.length).toBeGreaterThan(4000);
    for (const f of files) expect(fs.statSync(path.join(out, f)).isFile(), f).toBe(true);
  }, 60_000);
});
