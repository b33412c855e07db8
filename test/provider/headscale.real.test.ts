/**
 * The provider's headscale resources for real: a headscale 0.29.2 serving
 * the lab fleet's rendered config on loopback, reached through a throwaway
 * sshd on 127.0.0.1 exactly as the coordinator is reached (pinned host key,
 * shared connection). Ready waits for it; a user is created, adopted when it
 * exists, read, destroyed; a pre-auth key is created, read, expired on
 * delete (and then read as expired, so the next up makes a new one); route
 * approval of a node that never joined fails naming the host.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as rt from "../modules/realtools/index.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import { preAuthKey, ready, routeApproval, user } from "../../provider/resources/headscale.ts";
import { session } from "../../provider/ssh.ts";
import type { HeadscaleCliSpec, SshConnection } from "../../provider/types.ts";
import { evaluateStack, KEY_SEED } from "../components/fixtures.ts";
import { sshdUnavailable, startSshd, type Sshd } from "./sshd.ts";
import { skipUnlessCi } from "../lab/ci-gate.ts";

const HEADSCALE = rt.toolPath("headscale");
const why = sshdUnavailable() ?? (HEADSCALE ? null : "no headscale (meshfleet tools build)");

describe.skipIf(skipUnlessCi(why))(`headscale resources through ssh against a real headscale${why ? ` (skipped: ${why})` : ""}`, () => {
  let sshd: Sshd;
  let stop: () => void = () => {};
  let t: { dir: string; cleanup: () => void };
  let base: { cli: HeadscaleCliSpec; connection: SshConnection };

  beforeAll(async () => {
    const { fleet } = await evaluateStack("lab");
    const vps = fleet.hosts.vps;
    const file = (p: string) => vps.files.find((f) => f.path === p)!.content;
    t = rt.tempDir("mf-provider-hs");
    const { cfg, http } = await rt.loopbackHeadscale(t.dir, file("/etc/headscale/config.yaml"), derivePrivateKey(KEY_SEED, "noise"), {
      policy: file("/etc/headscale/policy.hujson"),
      derpMap: file("/etc/headscale/derp.yaml"),
    });
    // headscale serves until the promise below resolves; the tests run meanwhile.
    let release!: () => void;
    const serving = new Promise<void>((r) => (release = r));
    let up!: () => void;
    const started = new Promise<void>((r) => (up = r));
    // (withHeadscaleServing stops it after 60 s at the latest.)
    const res = rt.withHeadscaleServing(cfg, "", `http://127.0.0.1:${http}/health`, async () => {
      up();
      await serving;
      return "done";
    });
    stop = release;
    await Promise.race([started, res.then((r) => Promise.reject(new Error(`headscale did not serve: ${r.output.slice(-500)}`)))]);
    sshd = await startSshd({ HEADSCALE_CONFIG: cfg });
    base = {
      cli: { runtime: "systemd", binary: HEADSCALE! },
      connection: { name: "vps", host: "127.0.0.1", port: sshd.port, user: "root", hostKeys: [sshd.hostKey], privateKeyPath: sshd.clientKeyPath, dialAttempts: 3 },
    };
  }, 60_000);

  afterAll(async () => {
    session.close();
    stop();
    await sshd?.stop();
    t?.cleanup();
  });

  it("Ready waits until the CLI answers", async () => {
    const r = await ready.create({ ...base, host: "vps", timeoutSeconds: 20, trigger: "g1" });
    expect(r.outs.state).toBe("serving");
  }, 60_000);

  let userId = 0;
  it("User: created, adopted when it exists, read, destroyed", async () => {
    const a = await user.create({ ...base, name: "alice" });
    userId = a.outs.userId;
    expect(userId).toBeGreaterThan(0);
    const again = await user.create({ ...base, name: "alice" });
    expect(again.outs.userId).toBe(userId);
    expect((await user.read(String(userId), a.outs))!.userId).toBe(userId);
    const bob = await user.create({ ...base, name: "bob" });
    await user.delete(String(bob.outs.userId), bob.outs);
    expect(await user.read(String(bob.outs.userId), bob.outs)).toBeNull();
  }, 60_000);

  it("PreAuthKey: created as hskey-auth-…, expired on delete, then read as expired (a new one comes next up)", async () => {
    const req = { ...base, host: "laptop", userId, reusable: false, ephemeral: false, expiration: "1h", tags: [] as string[] };
    const k = await preAuthKey.create(req);
    expect(k.outs.key).toMatch(/^hskey-auth-/);
    expect((await preAuthKey.read(k.id, k.outs))!.expired).toBe(false);
    await preAuthKey.delete(k.id, k.outs);
    const after = (await preAuthKey.read(k.id, k.outs))!;
    expect(after.expired).toBe(true);
    expect(await preAuthKey.diff(after, req)).toMatchObject({ changes: true, replaces: ["key"] });
    // A tags-only key (no user), as the lab's router gets.
    const tagged = await preAuthKey.create({ ...req, host: "lxc-tailscale", userId: undefined, tags: ["tag:router"] });
    expect(tagged.outs.keyId).not.toBe(k.outs.keyId);
  }, 60_000);

  it("RouteApproval of a node that never joined fails naming the host and its routes", async () => {
    const err = await routeApproval
      .create({ ...base, host: "lxc-tailscale", hostname: "lxc-tailscale", routes: ["192.168.8.0/24"], exitNode: false, trigger: "g1", timeoutSeconds: 0 })
      .catch((e: Error) => e);
    expect(String(err)).toContain('host lxc-tailscale: no node named "lxc-tailscale" is registered with headscale, so its routes (192.168.8.0/24) cannot be approved');
  }, 60_000);
});
