/**
 * Every command's --help, snapshotted (issue 13, proof), in words a user
 * knows (item 7: no "seed 004", "the seeds' setup", "phase 1-2"), and the
 * top-level --help listing exactly the commands cli/main.ts dispatches.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { Command } from "../../cli/command.ts";
import { completionCommand } from "../../cli/commands/completion.ts";
import { JARGON } from "./help-words.ts";

const REPO = path.resolve(import.meta.dirname, "../..");

/** The same table as cli/main.ts (which runs on import, so it cannot be imported here); the test below checks they agree. */
const TABLE: Record<string, () => Promise<{ command: Command }>> = {
  check: () => import("../../cli/commands/check.ts"),
  render: () => import("../../cli/commands/render.ts"),
  hosts: () => import("../../cli/commands/hosts.ts"),
  options: () => import("../../cli/commands/options.ts"),
  plan: () => import("../../cli/commands/plan.ts"),
  join: () => import("../../cli/commands/join.ts"),
  up: () => import("../../cli/commands/up.ts").then((m) => ({ command: m.up })),
  preview: () => import("../../cli/commands/up.ts").then((m) => ({ command: m.preview })),
  refresh: () => import("../../cli/commands/up.ts").then((m) => ({ command: m.refresh })),
  destroy: () => import("../../cli/commands/up.ts").then((m) => ({ command: m.destroy })),
  pin: () => import("../../cli/commands/pin.ts"),
  tools: () => import("../../cli/commands/tools.ts"),
  lab: () => import("../../cli/commands/lab.ts"),
  status: () => import("../../cli/commands/status.ts"),
  doctor: () => import("../../cli/commands/doctor.ts"),
  rollback: () => import("../../cli/commands/rollback.ts"),
  generations: () => import("../../cli/commands/generations.ts"),
  import: () => import("../../cli/commands/import.ts"),
  backup: () => import("../../cli/commands/backup.ts"),
  restore: () => import("../../cli/commands/restore.ts"),
};
TABLE.completion = async () => ({ command: completionCommand(TABLE) });


describe("meshfleet --help", () => {
  it("lists every command of cli/main.ts, each with its summary", () => {
    const r = spawnSync(process.execPath, [path.join(REPO, "bin", "meshfleet.mjs"), "--help"], {
      cwd: REPO,
      encoding: "utf8",
      env: { ...process.env, MESHFLEET_TSX: "1" },
      timeout: 120_000,
    });
    expect(r.status).toBe(0);
    const listed = [...r.stdout.matchAll(/^ {2}([a-z][a-z-]*) +(.*)$/gm)].map((m) => m[1]);
    expect(listed).toEqual(Object.keys(TABLE));
    expect(r.stdout).toMatchSnapshot();
  });

  for (const name of Object.keys(TABLE)) {
    it(`meshfleet ${name} --help`, async () => {
      const { command } = await TABLE[name]();
      expect(command.usage).toMatch(new RegExp(`^usage: meshfleet ${name}\\b`));
      for (const word of JARGON) {
        expect(command.usage, `${name}'s usage`).not.toMatch(word);
        expect(command.summary, `${name}'s summary`).not.toMatch(word);
      }
      expect(`${command.summary}\n\n${command.usage}`).toMatchSnapshot();
    });
  }
});

describe("the example fleets", () => {
  it("speak without the project's history words", () => {
    for (const stack of readdirSync(path.join(REPO, "hosts")))
      for (const f of readdirSync(path.join(REPO, "hosts", stack)).filter((x) => /\.(ya?ml|ts)$/.test(x))) {
        const text = readFileSync(path.join(REPO, "hosts", stack, f), "utf8");
        for (const word of JARGON) expect(text, `hosts/${stack}/${f}`).not.toMatch(word);
      }
  });
});
