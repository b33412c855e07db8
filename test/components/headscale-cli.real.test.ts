/**
 * The exact command lines the provider's headscale resources run on the
 * coordinator, run here through sh against a real headscale 0.29.2 serving
 * the lab fleet's rendered config on loopback: readiness, users (list and
 * create), pre-auth keys (user and tags-only), expiry by id, user destroy,
 * and the node listing route approval reads. The parsers read real output,
 * not a fixture.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { skipUnlessCi } from "../lab/ci-gate.ts";
import * as rt from "../modules/realtools/index.ts";
import {
  checkRouteApproval,
  headscaleCommand,
  nodesListArgs,
  parsePreAuthKeyJson,
  parsePreAuthKeyList,
  parseUserJson,
  parseUsersList,
  preAuthKeyCreateArgs,
  preAuthKeyExpireArgs,
  preAuthKeysListArgs,
  readyScript,
  usersDestroyArgs,
  usersCreateArgs,
  usersListArgs,
  type HeadscaleCli,
} from "../../components/index.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import { evaluateStack, KEY_SEED } from "./fixtures.ts";

const HEADSCALE = rt.toolPath("headscale");

describe.skipIf(skipUnlessCi(!HEADSCALE && "headscale 0.29.2 is not built: run `meshfleet tools build`"))("the headscale CLI commands against a real headscale (lab fleet config)", () => {
  it("creates a user and keys, expires a key on delete, destroys the user; route listing parses", async () => {
    const { fleet } = await evaluateStack("lab");
    const vps = fleet.hosts.vps;
    const file = (p: string) => vps.files.find((f) => f.path === p)!.content;
    const t = rt.tempDir("mf-components-hs");
    try {
      const { cfg, http } = await rt.loopbackHeadscale(t.dir, file("/etc/headscale/config.yaml"), derivePrivateKey(KEY_SEED, "noise"), {
        policy: file("/etc/headscale/policy.hujson"),
        derpMap: file("/etc/headscale/derp.yaml"),
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
        expect(parseUsersList(sh(headscaleCommand(cli, usersListArgs())).stdout)).toContainEqual({ id: user.id, name: "alice" });

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

        // Delete expires the key by its id, and that key only.
        const expire = sh(headscaleCommand(cli, preAuthKeyExpireArgs(key.id)));
        expect(expire.status, expire.stderr).toBe(0);
        const list = sh(headscaleCommand(cli, preAuthKeysListArgs()));
        expect(list.status, list.stderr).toBe(0);
        const keys = parsePreAuthKeyList(list.stdout);
        const expiredAt = (id: number) => keys.find((k) => k.id === id)?.expiresAt ?? Infinity;
        expect(expiredAt(key.id)).toBeLessThanOrEqual(Date.now() / 1000 + 5);
        // The other key keeps its expiry (the lab asks for 1d).
        expect(expiredAt(tagKey.id)).toBeGreaterThan(Date.now() / 1000 + 3600);
        // Listing never shows a whole key.
        expect(list.stdout).not.toContain(key.key);

        // No node joined: the route check says so, naming host and routes.
        const routes = sh(headscaleCommand(cli, nodesListArgs()));
        expect(routes.status, routes.stderr).toBe(0);
        expect(checkRouteApproval(routes.stdout, { host: "lxc-tailscale", hostname: "lxc-tailscale", routes: ["192.168.8.0/24"], exitNode: false })).toEqual([
          expect.stringContaining('host lxc-tailscale: no node named "lxc-tailscale" is registered with headscale'),
        ]);

        const aliceId = (JSON.parse(sh(headscaleCommand(cli, ["users", "list", "-o", "json"])).stdout) as { id: number; name: string }[]).find((u) => u.name === "alice")!.id;
        const destroy = sh(headscaleCommand(cli, usersDestroyArgs(aliceId)));
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
