/**
 * The exact command lines the components run on the coordinator, run here
 * through sh against a real headscale 0.29.2 serving the lab fleet's rendered
 * config on loopback: readiness, users, pre-auth keys (user and tags-only),
 * expiry on delete from the create step's own output, user destroy, and the
 * route approval listing. The parsers read real output, not a fixture.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import * as rt from "../modules/realtools/index.ts";
import {
  checkRouteApproval,
  headscaleCommand,
  parsePreAuthKeyJson,
  parseUserJson,
  preAuthKeyCreateArgs,
  preAuthKeyExpireScript,
  readyScript,
  routeApprovalScript,
  usersDestroyArgs,
  usersCreateArgs,
  type HeadscaleCli,
} from "../../components/index.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import { evaluateStack, KEY_SEED } from "./fixtures.ts";

const HEADSCALE = rt.toolPath("headscale");

describe.skipIf(!HEADSCALE)("the headscale CLI commands against a real headscale (lab fleet config)", () => {
  it("creates a user and keys, expires a key on delete, destroys the user; route listing parses", async () => {
    const { fleet } = await evaluateStack("lab");
    const vps = fleet.hosts.vps;
    const file = (p: string) => vps.files.find((f) => f.path === p)!.content;
    const [http, metrics, grpc] = [await rt.freePort(), await rt.freePort(), await rt.freePort()];
    const config = file("/etc/headscale/config.yaml")
      .replace("listen_addr: 127.0.0.1:8080", `listen_addr: 127.0.0.1:${http}`)
      .replace("metrics_listen_addr: 127.0.0.1:9090", `metrics_listen_addr: 127.0.0.1:${metrics}`)
      .replace("grpc_listen_addr: 127.0.0.1:50443", `grpc_listen_addr: 127.0.0.1:${grpc}`);
    const t = rt.tempDir("mf-components-hs");
    try {
      const cfg = rt.layoutHeadscale(t.dir, {
        config,
        policy: file("/etc/headscale/policy.hujson"),
        derpMap: file("/etc/headscale/derp.yaml"),
        noiseKey: derivePrivateKey(KEY_SEED, "noise"),
      });
      const cli: HeadscaleCli = { runtime: "systemd", binary: HEADSCALE! };
      const sh = (script: string, env: Record<string, string> = {}) =>
        spawnSync("sh", ["-c", script], { env: { ...process.env, HEADSCALE_CONFIG: cfg, ...env }, encoding: "utf8", timeout: 60_000 });

      const r = await rt.withHeadscaleServing(cfg, "", `http://127.0.0.1:${http}/health`, async () => {
        const ready = sh(readyScript(cli, "vps", 20));
        expect(ready.status, ready.stderr).toBe(0);
        expect(ready.stdout.trim()).toBe("ready");

        const userOut = sh(headscaleCommand(cli, usersCreateArgs("alice")));
        expect(userOut.status, userOut.stderr).toBe(0);
        const user = parseUserJson(userOut.stdout, "alice");
        expect(user.name).toBe("alice");
        expect(user.id).toBeGreaterThan(0);

        const req = fleet.preAuthKeys.find((k) => k.host === "laptop")!;
        const keyOut = sh(headscaleCommand(cli, preAuthKeyCreateArgs(user.id, req)));
        expect(keyOut.status, keyOut.stderr).toBe(0);
        const key = parsePreAuthKeyJson(keyOut.stdout, "laptop");
        expect(key.key).toMatch(/^hskey-auth-/);

        const routerReq = fleet.preAuthKeys.find((k) => k.host === "lxc-tailscale")!;
        expect(routerReq.tags).toEqual(["tag:router"]);
        const tagOut = sh(headscaleCommand(cli, preAuthKeyCreateArgs(routerReq.user ? user.id : undefined, routerReq)));
        expect(tagOut.status, tagOut.stderr).toBe(0);
        const tagKey = parsePreAuthKeyJson(tagOut.stdout, "lxc-tailscale");
        expect(tagKey.id).not.toBe(key.id);

        // The delete step finds the key's id in the create step's output and expires that key only.
        const expire = sh(preAuthKeyExpireScript(cli), { PULUMI_COMMAND_STDOUT: keyOut.stdout });
        expect(expire.status, expire.stderr).toBe(0);
        const list = sh(headscaleCommand(cli, ["preauthkeys", "list", "-o", "json"]));
        expect(list.status, list.stderr).toBe(0);
        const keys = JSON.parse(list.stdout) as { id: number; expiration?: { seconds: number } }[];
        const expiredAt = (id: number) => keys.find((k) => Number(k.id) === id)?.expiration?.seconds ?? Infinity;
        expect(expiredAt(key.id)).toBeLessThanOrEqual(Date.now() / 1000 + 5);
        // The other key keeps its expiry (the lab asks for 1d).
        expect(expiredAt(tagKey.id)).toBeGreaterThan(Date.now() / 1000 + 3600);
        // Listing never shows a whole key.
        expect(list.stdout).not.toContain(key.key);

        // No node joined: the route check says so, naming host and routes.
        const routes = sh(routeApprovalScript(cli, { host: "lxc-tailscale", hostname: "lxc-tailscale", routes: ["192.168.8.0/24"], exitNode: false }, 2));
        expect(routes.status, routes.stderr).toBe(0);
        expect(checkRouteApproval(routes.stdout, { host: "lxc-tailscale", hostname: "lxc-tailscale", routes: ["192.168.8.0/24"], exitNode: false })).toEqual([
          expect.stringContaining('host lxc-tailscale: no node named "lxc-tailscale" is registered with headscale'),
        ]);

        const destroy = sh(headscaleCommand(cli, usersDestroyArgs("alice")));
        expect(destroy.status, destroy.stderr).toBe(0);
        const users = sh(headscaleCommand(cli, ["users", "list", "-o", "json"]));
        expect(users.stdout).not.toContain('"alice"');
        return "done";
      });
      expect(r.ok, r.output).toBe(true);
      expect(r.result).toBe("done");
    } finally {
      t.cleanup();
    }
  }, 120_000);
});
