/**
 * meshfleet:host:Generation's handler against a real sshd on 127.0.0.1 and
 * the real bundled agent (acting on a temp root): create switches and
 * confirms over a new connection; a file edited by hand shows up in read and
 * in diff, and update repairs it; a generation that locks the deploy out
 * (its new login is refused) fails naming the host and the guard puts the
 * previous generation back; delete uninstalls; a wrong host key is refused
 * before anything is sent.
 */
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generation } from "../../provider/resources/generation.ts";
import { session } from "../../provider/ssh.ts";
import { bundleSummary } from "../../provider/summary.ts";
import type { GenerationInputs, GenerationOutputs, SshConnection } from "../../provider/types.ts";
import { bundle, file } from "../agent/helpers.ts";
import { privateAgent } from "./agent.ts";
import { sshdUnavailable, startSshd, type Sshd } from "./sshd.ts";
import { createHash } from "node:crypto";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const why = sshdUnavailable();

describe.skipIf(skipUnlessCi(why))(`Generation against a real sshd and agent${why ? ` (skipped: ${why})` : ""}`, () => {
  let sshd: Sshd;
  let conn: SshConnection;
  let agentPath: string;

  beforeAll(async () => {
    agentPath = privateAgent();
    // authorized_keys lives under the agent's root, so a generation can lock the deploy out.
    sshd = await startSshd();
    conn = { name: "testhost", host: "127.0.0.1", port: sshd.port, user: "root", hostKeys: [sshd.hostKey], privateKeyPath: sshd.clientKeyPath, dialAttempts: 3 };
  }, 30_000);
  afterAll(async () => {
    session.close();
    await sshd?.stop();
  });

  const inputs = (b: ReturnType<typeof bundle>, extra: Partial<GenerationInputs> = {}): GenerationInputs => ({
    host: "testhost",
    connection: conn,
    agent: {
      localPath: agentPath,
      sha256: createHash("sha256").update(readFileSync(agentPath)).digest("hex"),
      remotePath: path.join(sshd.dir, "agent", "meshfleet-agent.mjs"),
      node: process.execPath,
      stateDir: path.join(sshd.dir, "state"),
    },
    bundle: JSON.stringify(b),
    confirmTimeoutSeconds: 10,
    ...bundleSummary(b),
    ...extra,
  });
  const live = (p: string) => {
    const f = path.join(sshd.root, p);
    return existsSync(f) ? readFileSync(f, "utf8") : null;
  };

  const gen1 = () => bundle({ files: [file("/etc/app/app.conf", "v=1\n"), file("/etc/app/token", "SECRET-TOKEN-1", { secret: true, mode: "0600" })] });
  const gen2 = () => bundle({ files: [file("/etc/app/app.conf", "v=2\n"), file("/etc/app/token", "SECRET-TOKEN-1", { secret: true, mode: "0600" }), file("/etc/app/new.conf", "new\n")] });

  let state: GenerationOutputs;

  it("create: pushes the agent, switches, confirms that hash over a new connection, verifies", async () => {
    const b = gen1();
    const r = await generation.create(inputs(b));
    state = r.outs;
    expect(state.hash).toBe(b.hash);
    expect(state.generation).toBe(1);
    expect(state.drift).toEqual([]);
    expect(JSON.parse(state.status).pendingConfirm).toBeNull();
    expect(live("/etc/app/app.conf")).toBe("v=1\n");
    expect(live("/etc/app/token")).toBe("SECRET-TOKEN-1");
    // The bundle (with the secret) never lands in outputs.
    expect(JSON.stringify(state)).not.toContain("SECRET-TOKEN-1");
    expect("bundle" in state).toBe(false);
    // Nothing changed: no update.
    expect(generation.diff(state, inputs(b)).changes).toBe(false);
  }, 60_000);

  it("read shows a file edited by hand; diff names it; update repairs it", async () => {
    writeFileSync(path.join(sshd.root, "etc/app/app.conf"), "edited by hand\n");
    const read = (await generation.read("testhost", state))!;
    expect(read.drift).toEqual([expect.objectContaining({ kind: "file", subject: "/etc/app/app.conf" })]);
    expect(read.files["/etc/app/app.conf"].drift).toMatch(/content changed/);
    const d = generation.diff(read, inputs(gen1()));
    expect(d.changes).toBe(true);
    expect(d.detailedDiff).toEqual({ 'files["/etc/app/app.conf"]': "update" });
    state = await generation.update!("testhost", read, inputs(gen1()));
    expect(live("/etc/app/app.conf")).toBe("v=1\n");
    expect(state.drift).toEqual([]);
    expect(state.generation).toBe(1);
    expect(generation.diff((await generation.read("testhost", state))!, inputs(gen1())).changes).toBe(false);
  }, 60_000);

  it("a new generation: diff lists files by path, never their content; update switches to generation 2", async () => {
    const b = gen2();
    const d = generation.diff(state, inputs(b));
    expect(d.detailedDiff).toEqual({ hash: "update", 'files["/etc/app/app.conf"]': "update", 'files["/etc/app/new.conf"]': "add" });
    state = await generation.update!("testhost", state, inputs(b));
    expect(state.generation).toBe(2);
    expect(live("/etc/app/new.conf")).toBe("new\n");
  }, 60_000);

  it("a generation that locks the deploy out fails naming the host; the guard restores the previous one", async () => {
    const lockout = bundle({ files: [...gen2().files, file("/etc/ssh/authorized_keys", "# nobody\n", { mode: "0600" })] });
    // sshd reads authorized_keys under the agent's root for this test.
    const err = await generation.update!("testhost", state, inputs(lockout, { connection: conn })).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/^host testhost: generation [0-9a-f]{12} could not be confirmed: a new SSH connection after the switch failed/);
    expect((err as Error).message).toMatch(/rolls it back to its previous generation/);
    // The guard (10 s) rolls back; the shared connection still answers status.
    await new Promise((r) => setTimeout(r, 13_000));
    const read = (await generation.read("testhost", state))!;
    expect(read.hash).toBe(gen2().hash);
    expect(JSON.parse(read.status).lastSwitch).toMatchObject({ success: false });
    expect(live("/etc/ssh/authorized_keys")).toBe(readFileSync(path.join(sshd.dir, "authorized_keys"), "utf8"));
  }, 60_000);

  it("a host key that does not match the pin is refused before anything is sent", async () => {
    const wrong: SshConnection = { ...conn, hostKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJvZ3VzYm9ndXNib2d1c2JvZ3VzYm9ndXNib2d1c2JvZ3Vz"] };
    const err = await generation.update!("testhost", state, inputs(gen1(), { connection: wrong })).catch((e: Error) => e);
    expect((err as Error).message).toBe(
      `host testhost ([127.0.0.1]:${sshd.port}): its SSH host key does not match the pinned key, so nothing was sent to it. If the host was reinstalled, check its key out of band and pin it again: \`npx meshfleet pin testhost\``,
    );
    expect(live("/etc/app/app.conf")).toBe("v=2\n");
  }, 30_000);

  it("delete uninstalls through the agent (rollback 0, guarded and confirmed)", async () => {
    await generation.delete("testhost", state);
    expect(live("/etc/app/app.conf")).toBeNull();
    expect(live("/etc/app/new.conf")).toBeNull();
    const read = (await generation.read("testhost", state))!;
    expect(JSON.parse(read.status)).toMatchObject({ generation: 0, pendingConfirm: null });
    // Deleting again (the host runs another generation, or none) touches nothing.
    await generation.delete("testhost", state);
  }, 60_000);
});
