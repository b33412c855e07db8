/**
 * The docker runtime as part of the generation (issue 20): hosts/home's VPS
 * (headscale and nginx in docker) evaluated by the real modules, rendered by
 * composeHost / coordinatorGenerationHost into a compose file and its unit,
 * and the bundle the agent gets from it. The real docker run of the same
 * render is test/lab/docker-lab.test.ts.
 */
import { describe, expect, it } from "vitest";
import { composeHost, composeImage, composeUnit, renderCompose } from "../../components/dockerService.ts";
import { coordinatorGenerationHost } from "../../components/coordinator.ts";
import { COMPOSE_FILE, COMPOSE_UNIT, composeOf, type ComposeFile } from "../../agent/compose.ts";
import { renderHost } from "../../core/render.ts";
import { derivePrivateKey, publicKeyOf } from "../../core/keys.ts";
import { NOISE_PUBLIC_KEY_REF } from "../../modules/tailscale.ts";
import { evaluateStack, KEY_SEED } from "./fixtures.ts";

const D = (c: string) => `sha256:${c.repeat(64)}`;
const images = { headscale: `docker.io/headscale/headscale@${D("a")}`, nginx: D("b") };

async function vps() {
  const { fleet } = await evaluateStack("home");
  return fleet.hosts.vps!;
}

describe("compose render", () => {
  it("pins each image by its digest or id when given, else by its exact tag, and refuses a moving tag", async () => {
    const h = await vps();
    const spec = h.containers.find((c) => c.name === "headscale")!;
    expect(composeImage(spec, images)).toBe(images.headscale);
    expect(composeImage(spec, { headscale: D("c") })).toBe(D("c"));
    expect(composeImage(spec)).toBe("docker.io/headscale/headscale:0.29.2");
    expect(() => composeImage({ ...spec, image: "headscale/headscale:latest" })).toThrow(/containers\[headscale\]\.image: expected an image pinned by an exact tag or digest, found the moving tag "latest"/);
    expect(renderCompose(h, { headscale: images.headscale }).services.nginx!.image).toBe(h.containers.find((c) => c.name === "nginx")!.image);
  });

  it("mounts files read-only from the host, keeps secrets out of the compose file, and binds named volumes to the same path on the host", async () => {
    const h = await vps();
    const c = renderCompose(h, images);
    const hs = c.services.headscale!;
    expect(hs.container_name).toBe("headscale");
    expect(hs.volumes).toContain("headscale-data:/var/lib/headscale");
    expect(hs.volumes).toContain("/opt/meshfleet/headscale/config.yaml:/etc/headscale/config.yaml:ro");
    // Keys inside the data volume are written into the volume's folder, not mounted on top of it.
    expect(hs.volumes!.some((v) => v.includes("noise_private.key"))).toBe(false);
    expect(c.volumes).toEqual({ "headscale-data": { name: "headscale-data", driver: "local", driver_opts: { type: "none", o: "bind", device: "/var/lib/headscale" } } });
    expect((hs as unknown as { ports: string[] }).ports.length).toBeGreaterThan(0);
    expect(hs.healthcheck?.test).toEqual(["CMD", "headscale", "health"]);
    expect(Object.keys(c.services).sort()).toEqual(["headscale", "nginx"]);
  });

  it("changes a container's label when a file it mounts changes, and only that container's", async () => {
    const h = await vps();
    const a = renderCompose(h, images);
    const files = h.files.map((f) => (f.path === "/opt/meshfleet/headscale/policy.hujson" ? { ...f, content: f.content + "\n" } : f));
    const b = renderCompose({ ...h, files }, images);
    expect(b.services.headscale!.labels!["meshfleet.files"]).not.toBe(a.services.headscale!.labels!["meshfleet.files"]);
    expect(b.services.nginx!.labels!["meshfleet.files"]).toBe(a.services.nginx!.labels!["meshfleet.files"]);
  });

  it("the unit runs docker-compose up and stops the project's containers without the compose file", () => {
    const c: ComposeFile = { version: "2.4", services: {}, volumes: { d: { name: "d", driver: "local", driver_opts: { type: "none", o: "bind", device: "/var/lib/x" } } } };
    const u = composeUnit(c);
    expect(u.name).toBe(COMPOSE_UNIT);
    expect(u.content).toContain(`ExecStart=/usr/bin/docker-compose -p meshfleet -f ${COMPOSE_FILE} up -d --remove-orphans`);
    expect(u.content).toContain("ExecStartPre=/bin/mkdir -p /var/lib/x");
    expect(u.content).toContain("ExecStartPre=/bin/chmod 0700 /var/lib/x");
    expect(u.content).toMatch(/^ExecStop=.*label=com\.docker\.compose\.project=meshfleet/m);
    expect(u.content).not.toContain("ExecStop=/usr/bin/docker-compose");
    // systemd would expand a single $ itself
    expect(u.content).toMatch(/\$\$\(docker ps/);
  });

  it("the coordinator's generation: keys in headscale's state dir as headscale 0600, the compose file and unit, secrets filled only in the bundle's key files", async () => {
    const h = await vps();
    const g = coordinatorGenerationHost(h, { images });
    expect(g.files.find((f) => f.path === "/var/lib/headscale/noise_private.key")).toMatchObject({ mode: "0600", owner: "headscale", group: "headscale", secretRef: "noise-key" });
    expect(g.files.some((f) => f.path === "/opt/meshfleet/headscale/noise_private.key")).toBe(false);
    expect(g.files.find((f) => f.path === "/etc/sysusers.d/headscale.conf")?.content).toMatch(/^u headscale - .* \/var\/lib\/headscale /);
    const unit = g.units.find((u) => u.name === COMPOSE_UNIT)!;
    expect(unit.restartTriggers).toContain("/var/lib/headscale/noise_private.key");
    expect(unit.restartTriggers).toContain("/opt/meshfleet/headscale/config.yaml");
    expect(g.probes).toContainEqual({ name: "containers-unit", kind: "unit-active", unit: COMPOSE_UNIT });
    const secrets = { "noise-key": derivePrivateKey(KEY_SEED, "noise"), "derp-key": derivePrivateKey(KEY_SEED, "derp") };
    const b = renderHost(g, { ...secrets, "preauth:vps": "hskey-auth-test", [NOISE_PUBLIC_KEY_REF]: publicKeyOf(secrets["noise-key"]) });
    const compose = composeOf(b)!;
    expect(compose.services.headscale!.image).toBe(images.headscale);
    const text = b.files.find((f) => f.path === COMPOSE_FILE)!.content;
    for (const v of Object.values(secrets)) expect(text).not.toContain(v);
    expect(b.units.map((u) => u.name)).toContain(COMPOSE_UNIT);
    // The systemd runtime is left as it is.
    const sys = { ...h, runtime: "systemd" as const };
    expect(coordinatorGenerationHost(sys)).toBe(sys);
  });

  it("a host without containers is unchanged", async () => {
    const h = await vps();
    const none = { ...h, containers: [] };
    expect(composeHost(none)).toBe(none);
  });
});
