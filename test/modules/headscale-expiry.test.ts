/**
 * fleet.yaml nodeExpiry (issue 15 item 5): node.expiry in headscale's config,
 * tagged servers exempt. headscale 0.29 exempts every tagged node by itself
 * (state.go: the default expiry is applied only to untagged nodes), so
 * exemptTags is checked against the hosts' tags rather than rendered. Bad
 * input: each mistake with its exact diagnostic. Real tool: headscale 0.29.2
 * parses the value (it only logs and ignores one it cannot parse, so
 * configtest alone proves nothing), a node registered through it gets that
 * expiry, and one tagged by the admin afterwards keeps it (headscale clears
 * the expiry only when a node registers or re-authenticates tagged) until
 * `headscale nodes expire --disable`.
 */
import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { evaluateFleet, formatDiagnostics } from "../../core/index.ts";
import { derivePrivateKey } from "../../core/keys.ts";
import type { Contribution, ModuleContext } from "../../core/module.ts";
import { headscaleModule } from "../../modules/headscale.ts";
import { REGISTRY } from "../../modules/index.ts";
import { BASE, writeFleet } from "../core/fleet-fixture.ts";
import { makeCtx } from "./realtools/context.ts";
import * as rt from "./realtools/index.ts";

const NOISE = derivePrivateKey("test-seed-0123456789", "noise");
const fleetYaml = BASE["fleet.yaml"];

let cleanups: (() => void)[] = [];
afterEach(() => {
  cleanups.forEach((c) => c());
  cleanups = [];
});

async function diagnostics(files: Record<string, string>): Promise<string> {
  const f = writeFleet(files);
  cleanups.push(f.cleanup);
  const r = await evaluateFleet(REGISTRY, f.dir, "fx");
  return formatDiagnostics(r.diagnostics).replaceAll(f.dir, "<fleet>");
}
const withExpiry = (block: string) => ({ "fleet.yaml": fleetYaml + block });

function ctxWith(fleet: Record<string, unknown>): ModuleContext {
  return makeCtx("vps", { vps: { address: "203.0.113.10", options: { headscale: { enable: true } } } }, fleet);
}
const config = (c: Contribution) => parse(c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content);
const run = (ctx: ModuleContext) => headscaleModule.config(headscaleModule.options.parse(ctx.self.config.headscale), ctx);

describe("nodeExpiry", () => {
  it("renders node.expiry when set, and nothing (headscale's default: never) when not", () => {
    expect(config(run(ctxWith({ nodeExpiry: { after: "180d", exemptTags: [] } }))).node).toEqual({ expiry: "180d", ephemeral: { inactivity_timeout: "30m" } });
    expect(config(run(ctxWith({}))).node).toEqual({ ephemeral: { inactivity_timeout: "30m" } });
  });

  it("a fleet whose tagged hosts are all exempt passes without a word", async () => {
    expect(await diagnostics(withExpiry("nodeExpiry:\n  after: 180d\n  exemptTags: [tag:router]\n"))).toBe("");
  });

  it("bad input, each with its exact diagnostic", async () => {
    expect(await diagnostics(withExpiry("nodeExpiry:\n  after: 6 months\n"))).toBe(
      'error: <fleet>/fleet.yaml: nodeExpiry.after: expected a duration such as 180d or 90d, or "0" (keys never expire), found "6 months". Fix: set nodeExpiry.after to a duration such as 180d or 90d, or "0" (keys never expire) — How long a node\'s key lasts after it logs in (headscale\'s node.expiry; Tailscale\'s service uses 180d); then the node drops every tunnel until someone logs it in again. "0": never.',
    );
    expect(await diagnostics(withExpiry("nodeExpiry:\n  after: 180d\n  exemptTags: [router, tag:web, tag:router]\n"))).toBe(
      [
        'error: <fleet>/fleet.yaml: nodeExpiry.exemptTags[0]: expected a tag of policy.tagOwners (tag:server), found "router". Fix: write it as a tag: tag:router',
        'error: <fleet>/fleet.yaml: nodeExpiry.exemptTags[1]: expected a tag of policy.tagOwners (tag:server), found "tag:web", which policy.tagOwners does not define. Fix: add tag:web to policy.tagOwners, or remove it here',
      ].join("\n"),
    );
    // headscale would not expire the router: the fleet may not say it does.
    expect(await diagnostics(withExpiry("nodeExpiry:\n  after: 180d\n"))).toBe(
      "error: <fleet>/router.yaml: tailscale.tags: expected tags listed in nodeExpiry.exemptTags: headscale 0.29 never expires a tagged node, whatever node.expiry says, found tag:router on router, not in nodeExpiry.exemptTags (empty). Fix: add tag:router to nodeExpiry.exemptTags in <fleet>/fleet.yaml (that is what headscale does), or take tag:router off router",
    );
    expect(await diagnostics(withExpiry("nodeExpiry:\n  exemptTags: [tag:router]\n"))).toBe(
      'warning: <fleet>/fleet.yaml: nodeExpiry.exemptTags: expected exempt tags only with an expiry (nodeExpiry.after), found tag:router with nodeExpiry.after: "0" (no key expires). Fix: set nodeExpiry.after (e.g. 180d), or remove nodeExpiry.exemptTags',
    );
    expect(await diagnostics(withExpiry("nodeExpiry:\n  after: 180d\n  exemptTags: [tag:router]\n  exempt: [vps]\n"))).toBe(
      'error: <fleet>/fleet.yaml: nodeExpiry.exempt: expected one of the options after, exemptTags, found unknown option "exempt" at nodeExpiry. Fix: remove "exempt" from nodeExpiry',
    );
  });

  it("an untagged host that routes for others is warned about: its routes go when its key expires", async () => {
    const router = BASE["router.yaml"].replace("tags: [tag:router]", "user: alice");
    const out = await diagnostics({ ...withExpiry("nodeExpiry:\n  after: 90d\n  exemptTags: [tag:router]\n"), "router.yaml": router });
    expect(out).toBe(
      "warning: <fleet>/router.yaml: tailscale.tags: expected a tag on a host that routes for others (tagged nodes never expire), found router joins as user alice and advertises routes: its key expires 90d after it logs in, and it then drops every tunnel and its routes until someone logs it in again. Fix: give it a tag (tailscale.tags: [tag:router]) that nodeExpiry.exemptTags lists",
    );
  });

  describe("headscale 0.29.2", () => {
    const skip = rt.missing("headscale");

    /** Serve the rendered config on loopback; register an untagged node and tag a second one; return their expiries. */
    async function expiries(after: string): Promise<{ parsed: boolean; user: number | null; taggedAfter: number | null; disabled: number | null; output: string }> {
      const c = run(ctxWith({ nodeExpiry: { after, exemptTags: [] }, policy: {} }));
      const policy = `{"tagOwners": {"tag:server": ["alice@"]}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}\n`;
      const t = rt.tempDir("hs-expiry");
      try {
        const { cfg, http } = await rt.loopbackHeadscale(t.dir, c.files!.find((f) => f.path.endsWith("/config.yaml"))!.content, NOISE, { policy });
        const test = await rt.headscaleConfigtest(cfg);
        expect(test.ok, test.output).toBe(true);
        const hs = (...args: string[]) => {
          const r = spawnSync(rt.toolPath("headscale")!, ["-c", cfg, ...args, "-o", "json"], { encoding: "utf8", timeout: 30_000 });
          if (r.status !== 0) throw new Error(`headscale ${args.join(" ")}: ${r.stderr}${r.stdout}`);
          return JSON.parse(r.stdout);
        };
        const register = (name: string) => {
          const id = `hskey-authreq-${name.padEnd(24, "x")}`;
          hs("debug", "create-node", "--name", name, "--user", "alice", "--key", id);
          return hs("auth", "register", "--user", "alice", "--auth-id", id);
        };
        const r = await rt.withHeadscaleServing(cfg, "", `http://127.0.0.1:${http}/health`, async () => {
          hs("users", "create", "alice");
          const a = register("laptop");
          const b = register("server");
          const exp = (id: number) => (hs("nodes", "list") as { id: number; expiry?: { seconds?: number } }[]).find((n) => n.id === id)?.expiry?.seconds ?? null;
          // Tagged by the admin after it registered: headscale keeps the expiry it had (SetNodeTags leaves it);
          // only a node that registers tagged (meshfleet's tagged pre-auth keys) or re-authenticates with
          // --advertise-tags has none. `nodes expire --disable` clears it.
          hs("nodes", "tag", "-i", String(b.id), "-t", "tag:server");
          const taggedAfter = exp(b.id);
          hs("nodes", "expire", "-i", String(b.id), "--disable");
          return { user: exp(a.id), taggedAfter, disabled: exp(b.id) };
        });
        expect(r.ok, r.output).toBe(true);
        return { parsed: !/failed to parse node\.expiry/.test(test.output + r.output), ...r.result!, output: r.output };
      } finally {
        t.cleanup();
      }
    }

    it.skipIf(skip)("applies the rendered expiry to a user's node; a node tagged afterwards keeps it until `nodes expire --disable`; none without the option", async () => {
      const now = Date.now() / 1000;
      const set = await expiries("180d");
      expect(set.parsed, set.output).toBe(true);
      expect(set.user).not.toBeNull();
      expect(Math.abs(set.user! - (now + 180 * 86400))).toBeLessThan(120);
      expect(Math.abs(set.taggedAfter! - (now + 180 * 86400))).toBeLessThan(120);
      expect(set.disabled ?? 0).toBeLessThanOrEqual(0);
      const never = await expiries("0");
      expect(never.user ?? 0).toBeLessThanOrEqual(0);
    }, 120_000);
  });
});
