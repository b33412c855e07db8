/**
 * agent/compose.ts in the real bundled agent under a temp root (issue 20),
 * with a stand-in docker (test/agent/compose-fakebin/docker) whose
 * containers, images and volumes the test sets: the health wait after the
 * units step (a failing one rolls the switch back) and verify's container
 * drift. The real docker run is test/lab/docker-lab.test.ts.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { COMPOSE_FILE, COMPOSE_UNIT } from "../../agent/compose.ts";
import { agent, buildAgent, bundle, file, REPO, tempRoot, writeBundle } from "./helpers.ts";

const ID1 = `sha256:${"1".repeat(64)}`;
const ID2 = `sha256:${"2".repeat(64)}`;
const PATHS = `${path.join(REPO, "test/agent/compose-fakebin")}:${path.join(REPO, "test/agent/fakebin")}:${process.env.PATH}`;
const run = (root: string, args: string[], env: Record<string, string> = {}) => agent(root, args, { PATH: PATHS, MESHFLEET_COMPOSE_TIMEOUT_S: "2", ...env });

const compose = (image: string) =>
  JSON.stringify({
    version: "2.4",
    services: { headscale: { image, container_name: "headscale", volumes: ["headscale-data:/var/lib/headscale"], healthcheck: { test: ["CMD", "headscale", "health"] } } },
    volumes: { "headscale-data": { name: "headscale-data", driver: "local", driver_opts: { type: "none", o: "bind", device: "/var/lib/headscale" } } },
  });
// The unit names the compose file, so a new compose file restarts it (as composeUnit's does).
const unit = { name: COMPOSE_UNIT, content: `[Service]\nType=oneshot\nExecStart=/usr/bin/docker-compose -f ${COMPOSE_FILE} up -d\n[Install]\nWantedBy=multi-user.target\n`, enable: true };
const gen = (image: string) => bundle({ files: [file(COMPOSE_FILE, compose(image))], units: [unit] });

function docker(root: string, o: { container?: [string, string] | null; images?: Record<string, string>; volume?: boolean; unhealthy?: string }) {
  const d = path.join(root, "sim", "docker");
  for (const x of ["containers", "images", "volumes", "unhealthy"]) fs.mkdirSync(path.join(d, x), { recursive: true });
  if (o.container === null) fs.rmSync(path.join(d, "containers", "headscale"), { force: true });
  else if (o.container) fs.writeFileSync(path.join(d, "containers", "headscale"), o.container.join(" ") + "\n");
  for (const [ref, id] of Object.entries(o.images ?? {})) fs.writeFileSync(path.join(d, "images", ref.replace(/[/:@]/g, "_")), id + "\n");
  if (o.volume !== undefined) {
    if (o.volume) fs.writeFileSync(path.join(d, "volumes", "headscale-data"), "");
    else fs.rmSync(path.join(d, "volumes", "headscale-data"), { force: true });
  }
  if (o.unhealthy !== undefined) fs.writeFileSync(path.join(d, "unhealthy", "headscale"), o.unhealthy);
}

beforeAll(() => {
  buildAgent();
});

describe("containers in the generation (stand-in docker)", () => {
  it("a switch waits for the container to run and pass its health check; verify is clean", () => {
    const root = tempRoot();
    docker(root, { container: ["running", ID1], images: { [ID1]: ID1 }, volume: true });
    const r = run(root, ["switch", writeBundle(root, gen(ID1))]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("container headscale: running, health check passes");
    expect(fs.readFileSync(path.join(root, "sim", "calls.log"), "utf8")).toContain("docker exec headscale headscale health");
    expect(run(root, ["verify"]).stdout).toMatch(/no drift/);
  });

  it("verify reports a stopped container, another image, a missing volume and a missing container", () => {
    const root = tempRoot();
    docker(root, { container: ["running", ID1], images: { [ID1]: ID1 }, volume: true });
    expect(run(root, ["switch", writeBundle(root, gen(ID1))]).code).toBe(0);
    docker(root, { container: ["exited", ID1] });
    let v = run(root, ["verify"]);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain("container headscale: is exited, expected running");
    docker(root, { container: ["running", ID2], volume: false });
    v = run(root, ["verify"]);
    expect(v.stdout).toContain(`container headscale: runs image ${ID2.slice(0, 19)}, expected ${ID1.slice(0, 19)}`);
    expect(v.stdout).toContain("container volume headscale-data: missing");
    docker(root, { container: null, volume: true });
    expect(run(root, ["verify"]).stdout).toContain("container headscale: missing");
  });

  it("a container whose health check fails makes the switch fail and roll back to the previous generation", () => {
    const root = tempRoot();
    docker(root, { container: ["running", ID1], images: { [ID1]: ID1, [ID2]: ID2 }, volume: true });
    expect(run(root, ["switch", writeBundle(root, gen(ID1))]).code).toBe(0);
    docker(root, { unhealthy: ID2 });
    const r = run(root, ["switch", writeBundle(root, gen(ID2))]);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toContain(`unit ${COMPOSE_UNIT} restarted`);
    expect(r.stdout + r.stderr).toMatch(/containers: headscale: health check `headscale health` exited with code 1: unhealthy after 2 s/);
    expect(r.stdout + r.stderr).toMatch(/rolled back to generation 1/);
    expect(fs.readFileSync(path.join(root, COMPOSE_FILE), "utf8")).toContain(ID1);
  });

  it("a verify that throws (docker answers without State) leaves status --json --verify and confirm --status at exit 0 with verify: null, the error on stderr", () => {
    const root = tempRoot();
    docker(root, { container: ["running", ID1], images: { [ID1]: ID1 }, volume: true });
    const b = gen(ID1);
    expect(run(root, ["switch", writeBundle(root, b), "--confirm-timeout", "300"]).code).toBe(0);
    const bin = path.join(root, "broken-bin");
    fs.mkdirSync(bin);
    fs.writeFileSync(path.join(bin, "docker"), '#!/bin/sh\necho \'[{"Image":"x"}]\'\n', { mode: 0o755 });
    const broken = { PATH: `${bin}:${PATHS}` };
    const c = run(root, ["confirm", b.hash, "--status"], broken);
    expect(c.code, c.stderr).toBe(0);
    expect(JSON.parse(c.stdout.split("@@meshfleet-status@@\n")[1]!)).toMatchObject({ generation: 1, hash: b.hash, pendingConfirm: null, verify: null });
    expect(c.stderr).toMatch(/meshfleet-agent: verify failed: /);
    const s = run(root, ["status", "--json", "--verify"], broken);
    expect(s.code, s.stderr).toBe(0);
    expect(JSON.parse(s.stdout)).toMatchObject({ generation: 1, hash: b.hash, verify: null });
    expect(s.stderr).toMatch(/meshfleet-agent: verify failed: /);
  });

  it("in a guarded switch the health wait ends before the confirm deadline (not after its own 30 s), naming confirmTimeoutSeconds", () => {
    const root = tempRoot();
    docker(root, { container: ["running", ID1], images: { [ID1]: ID1, [ID2]: ID2 }, volume: true });
    expect(run(root, ["switch", writeBundle(root, gen(ID1))]).code).toBe(0);
    docker(root, { unhealthy: ID2 });
    const t0 = Date.now();
    const r = run(root, ["switch", writeBundle(root, gen(ID2)), "--confirm-timeout", "14"], { MESHFLEET_COMPOSE_TIMEOUT_S: "30" });
    const took = Date.now() - t0;
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/containers: headscale: health check .* after [34] s, when the lockout guard's confirm window .* Fix: raise confirmTimeoutSeconds \(meshfleet:confirmTimeoutSeconds\)/);
    expect(r.stdout + r.stderr).toMatch(/rolled back to generation 1/);
    expect(took).toBeLessThan(14_000);
  }, 60_000);

  it("a bundle without a compose file never calls docker", () => {
    const root = tempRoot();
    expect(run(root, ["switch", writeBundle(root, bundle({ files: [file("/etc/x.conf", "x\n")] }))]).code).toBe(0);
    expect(run(root, ["verify"]).stdout).toMatch(/no drift/);
    expect(fs.readFileSync(path.join(root, "sim", "calls.log"), "utf8")).not.toContain("docker ");
  });
});
