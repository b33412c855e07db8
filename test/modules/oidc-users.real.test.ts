/**
 * fleet.yaml `oidcUsers` against the real headscale 0.29.2: the policy
 * meshfleet renders for a fleet that names an OIDC person by e-mail is
 * checked by headscale on a database holding meshfleet's user (alice), an
 * OIDC-like user (name carol, e-mail carol@example.com: headscale matches a
 * token against name and e-mail alike, whatever made the user) and their
 * nodes. headscale's own `tests` block and meshfleet's reachability, on the
 * nodes headscale lists, give the same answers; and the clash meshfleet
 * refuses (the address also a user's name) is one headscale refuses too.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import { parseHuJson } from "../../core/hujson.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import { networkModel } from "../../core/netdiff/index.ts";
import { parseNodesList } from "../../core/policy/live.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { makeCtx } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

const NOISE = derivePrivateKey("test-seed-0123456789", "noise");
const FLEET = BASE["fleet.yaml"].replace("users: [alice]\n", "users: [alice]\noidcUsers: [carol@example.com]\n") +
  "    - action: accept\n      src: [carol@example.com]\n      dst: [\"tag:router:22\"]\n";
const VPS = BASE["vps.yaml"] + "headscale:\n  oidc:\n    enable: true\n    issuer: https://id.example.com/\n    clientId: headscale\n";

let cleanups: (() => void)[] = [];
afterEach(() => {
  cleanups.forEach((c) => c());
  cleanups = [];
});

describe("oidcUsers on headscale 0.29.2", () => {
  const skip = rt.missing("headscale");

  it.skipIf(skip)("the rendered policy resolves carol@example.com to the OIDC person's node in headscale as in meshfleet; an address that is also a user's name is refused by both", async () => {
    const f = writeFleet({ "fleet.yaml": FLEET, "vps.yaml": VPS });
    cleanups.push(f.cleanup);
    const ev = await evaluateFleet(REGISTRY, f.dir, "fx");
    expect(ev.diagnostics.filter((d) => d.severity === "error"), formatDiagnostics(ev.diagnostics)).toEqual([]);
    const fleet = ev.fleet!;

    // headscale on loopback, its config as meshfleet renders it (without OIDC: there is no provider here; the policy is under test).
    const c = headscaleModule.config(headscaleModule.options.parse({ enable: true }), makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true } } } }));
    const t = rt.tempDir("hs-oidc-users");
    cleanups.push(t.cleanup);
    const { cfg, http } = await rt.loopbackHeadscale(t.dir, c.files!.find((x) => x.path.endsWith("/config.yaml"))!.content, NOISE, { policy: fleet.policyHuJson });
    const hs = (...args: string[]) => {
      const r = spawnSync(rt.toolPath("headscale")!, ["-c", cfg, ...args, "-o", "json"], { encoding: "utf8", timeout: 30_000 });
      if (r.status !== 0) throw new Error(`headscale ${args.join(" ")}: ${r.stderr}${r.stdout}`);
      return JSON.parse(r.stdout);
    };
    const register = (name: string, user: string) => {
      const id = `hskey-authreq-${name.padEnd(24, "x")}`;
      hs("debug", "create-node", "--name", name, "--user", user, "--key", id);
      return hs("auth", "register", "--user", user, "--auth-id", id) as { id: number };
    };
    const served = await rt.withHeadscaleServing(cfg, "", `http://127.0.0.1:${http}/health`, async () => {
      hs("users", "create", "alice");
      hs("users", "create", "carol", "--email", "carol@example.com");
      register("laptop", "alice");
      const router = register("router", "alice");
      hs("nodes", "tag", "-i", String(router.id), "-t", "tag:router");
      register("carol-phone", "carol");
      return JSON.stringify(hs("nodes", "list"));
    });
    expect(served.ok, served.output).toBe(true);
    const list = served.result!;

    // meshfleet, on the nodes headscale lists.
    const live = parseNodesList(list, "nodes.json");
    expect(live.diagnostics).toEqual([]);
    expect(live.nodes.find((n) => n.name === "carol-phone")).toMatchObject({ user: "carol", email: "carol@example.com" });
    const reach = networkModel(fleet, live.nodes).reach;
    const ours = (dst: string) => reach.explain("carol-phone", dst, 22, "tcp").allowed;
    expect({ router: ours("router"), laptop: ours("laptop") }).toEqual({ router: true, laptop: false });

    // headscale, with a tests block on the same policy: passes when its answers are meshfleet's, fails when one is not.
    const check = (tests: unknown[]) => {
      const p = join(t.dir, "etc", "checked.hujson");
      writeFileSync(p, JSON.stringify({ ...(parseHuJson(fleet.policyHuJson) as object), tests }, null, 2));
      return spawnSync(rt.toolPath("headscale")!, ["policy", "check", "-c", cfg, "-f", p, "--bypass-grpc-and-access-database-directly", "--force"], { encoding: "utf8", timeout: 60_000 });
    };
    const agree = check([{ src: "carol@example.com", accept: ["tag:router:22"], deny: ["alice@:22"] }]);
    expect(agree.status, agree.stdout + agree.stderr).toBe(0);
    const disagree = check([{ src: "carol@example.com", accept: ["alice@:22"] }]);
    expect(disagree.status, "a test headscale should fail (carol does not reach alice's laptop): without it the passing one proves nothing").not.toBe(0);
    expect(disagree.stdout + disagree.stderr).toContain("carol@example.com -> alice@:22: expected ALLOWED, got DENIED");

    // An address that is also a user's name: headscale finds two users for the token and refuses the whole policy; meshfleet refuses the fleet first.
    const clash = await rt.withHeadscaleServing(cfg, "", `http://127.0.0.1:${http}/health`, async () => hs("users", "create", "carol@example.com"));
    expect(clash.ok, clash.output).toBe(true);
    const refused = check([]);
    expect(refused.status).not.toBe(0);
    expect(refused.stdout + refused.stderr).toMatch(/multiple users found: token "carol@example.com"/);
    const g = writeFleet({ "fleet.yaml": FLEET.replace("users: [alice]", "users: [alice, carol@example.com]"), "vps.yaml": VPS });
    cleanups.push(g.cleanup);
    const ours2 = await evaluateFleet(REGISTRY, g.dir, "fx");
    expect(formatDiagnostics(ours2.diagnostics)).toMatch(/oidcUsers\[0\]: expected a person meshfleet does not also create \(not in users\)/);
  }, 120_000);
});
