/**
 * Drift a refresh must show, for real through ssh and the real agent (on a
 * temp root, nft and systemctl being the agent tests' stand-ins that keep
 * their state there): a unit that stopped, the nft table flushed; each is
 * named by diff and repaired by the next update. And the two small host
 * resources: a File pushed by rename and re-pushed when changed on the host,
 * a ServiceCheck that names the host and unit that is not active.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Firewall } from "../../contract/bundle.ts";
import { generation } from "../../provider/resources/generation.ts";
import { file as hostFile, serviceCheck } from "../../provider/resources/host.ts";
import { session } from "../../provider/ssh.ts";
import { bundleSummary } from "../../provider/summary.ts";
import type { GenerationInputs, GenerationOutputs, SshConnection } from "../../provider/types.ts";
import { bundle, file } from "../agent/helpers.ts";
import { privateAgent } from "./agent.ts";
import { sshdUnavailable, startSshd, type Sshd } from "./sshd.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const why = sshdUnavailable();

const FW: Firewall = {
  family: "inet",
  table: "meshfleet",
  sets: [],
  chains: [{ name: "input", hook: { type: "filter", hook: "input", priority: "filter", policy: "accept" }, rules: [{ l4: { proto: "tcp", dports: [8080] }, verdict: "accept" }] }],
};

describe.skipIf(skipUnlessCi(why))(`host drift and host resources through ssh${why ? ` (skipped: ${why})` : ""}`, () => {
  let sshd: Sshd;
  let conn: SshConnection;
  let agentPath: string;
  const local = mkdtempSync(path.join(tmpdir(), "mf-hostfile-"));

  beforeAll(async () => {
    agentPath = privateAgent();
    sshd = await startSshd();
    conn = { name: "testhost", host: "127.0.0.1", port: sshd.port, user: "root", hostKeys: [sshd.hostKey], privateKeyPath: sshd.clientKeyPath, dialAttempts: 3 };
  }, 30_000);
  afterAll(async () => {
    session.close();
    await sshd?.stop();
    rmSync(local, { recursive: true, force: true });
  });

  const sim = (p: string) => path.join(sshd.root, "sim", p);
  const b = () => bundle({ files: [file("/etc/app/app.conf", "v=1\n")], units: [{ name: "app.service", content: "[Service]\nExecStart=/usr/bin/app\n", enable: true }], firewall: FW });
  const inputs = (): GenerationInputs => ({
    host: "testhost",
    connection: conn,
    agent: { localPath: agentPath, sha256: createHash("sha256").update(readFileSync(agentPath)).digest("hex"), remotePath: path.join(sshd.dir, "agent", "a.mjs"), node: process.execPath, stateDir: path.join(sshd.dir, "state") },
    bundle: JSON.stringify(b()),
    confirmTimeoutSeconds: 30,
    ...bundleSummary(b()),
  });
  let state: GenerationOutputs;

  it("a unit that stopped is drift on units[name]; update starts it again", async () => {
    state = (await generation.create(inputs())).outs;
    expect(readFileSync(sim("active"), "utf8")).toContain("app.service");
    writeFileSync(sim("active"), "");
    const read = (await generation.read("testhost", state))!;
    expect(read.drift).toEqual([{ kind: "unit", subject: "app.service", detail: "is inactive, expected active" }]);
    expect(generation.diff(read, inputs()).detailedDiff).toEqual({ 'units["app.service"]': "update" });
    state = await generation.update!("testhost", read, inputs());
    expect(readFileSync(sim("active"), "utf8")).toContain("app.service");
    expect(state.drift).toEqual([]);
  }, 60_000);

  it("a flushed nft table is drift on firewall; update loads it again", async () => {
    expect(existsSync(sim("nft"))).toBe(true);
    rmSync(sim("nft"));
    const read = (await generation.read("testhost", state))!;
    expect(read.drift).toEqual([{ kind: "nftables", subject: "table inet meshfleet", detail: "missing" }]);
    expect(generation.diff(read, inputs()).detailedDiff).toEqual({ firewall: "update" });
    state = await generation.update!("testhost", read, inputs());
    expect(readFileSync(sim("nft"), "utf8")).toContain("tcp dport 8080 accept");
    expect(generation.diff((await generation.read("testhost", state))!, inputs()).changes).toBe(false);
  }, 60_000);

  it("ServiceCheck: active passes; a stopped unit shows at read and fails the check naming host and unit", async () => {
    const n = { host: "testhost", connection: conn, units: ["app.service"], trigger: state.hash };
    const ok = await serviceCheck.create(n);
    expect(ok.outs.states).toEqual({ "app.service": "active" });
    writeFileSync(sim("active"), "");
    const read = (await serviceCheck.read(ok.id, ok.outs))!;
    expect(read.states).toEqual({ "app.service": "inactive" });
    expect(serviceCheck.diff(read, n)).toMatchObject({ changes: true, detailedDiff: { 'states["app.service"]': "update" } });
    await expect(serviceCheck.update!(ok.id, read, n)).rejects.toThrow("host testhost: app.service is inactive, expected active; see journalctl -u app.service on testhost");
  }, 60_000);

  it("File: pushed 0755 by rename, re-pushed when changed on the host, removed on delete", async () => {
    const src = path.join(local, "headscale");
    writeFileSync(src, "#!/bin/sh\necho fake headscale\n");
    const remote = path.join(sshd.dir, "bin", "headscale");
    const n = { host: "testhost", connection: conn, localPath: src, sha256: createHash("sha256").update(readFileSync(src)).digest("hex"), remotePath: remote, mode: "0755" };
    const r = await hostFile.create(n);
    expect(readFileSync(remote, "utf8")).toBe(readFileSync(src, "utf8"));
    expect(statSync(remote).mode & 0o777).toBe(0o755);
    expect(hostFile.diff(r.outs, n).changes).toBe(false);
    writeFileSync(remote, "tampered\n");
    const read = (await hostFile.read(r.id, r.outs))!;
    expect(hostFile.diff(read, n)).toMatchObject({ changes: true, detailedDiff: { liveSha256: "update" } });
    await hostFile.update!(r.id, read, n);
    expect(readFileSync(remote, "utf8")).toBe(readFileSync(src, "utf8"));
    await hostFile.delete(r.id, r.outs);
    expect(existsSync(remote)).toBe(false);
  }, 60_000);
});
